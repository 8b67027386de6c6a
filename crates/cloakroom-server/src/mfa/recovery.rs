//! Recovery codes: ten single-use codes, shown once, kept as digests
//! ([`RecoveryCodeHash`]).
//!
//! A code is 12 characters of Crockford's base32 (60 random bits), written `xxxx-xxxx-xxxx`.
//! Typing is forgiving the way Crockford intended: case, dashes and spaces do not matter, and
//! `i`/`l` read as `1`, `o` as `0`.

use cloakroom_core::UserId;
use cloakroom_core::mfa::RecoveryCodeHash;

/// How many codes a set has.
pub(crate) const COUNT: usize = 10;
const LEN: usize = 12;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new code, as shown to the user.
pub(crate) fn generate() -> String {
    let bytes: [u8; LEN] = crate::tokens::keys::random();
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect();
    let mut out = String::with_capacity(LEN + 2);
    for (i, group) in chars.chunks(4).enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.extend(group);
    }
    out
}

/// The code as typed, in the one form its digest is taken of; `None` if it cannot be a code.
pub(crate) fn normalize(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let mut out = String::with_capacity(LEN);
    for c in typed.chars() {
        let c = match c.to_ascii_lowercase() {
            '-' | ' ' => continue,
            'i' | 'l' => '1',
            'o' => '0',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        out.push(c);
    }
    (out.len() == LEN).then_some(out)
}

/// A new set: the codes to show, and the digests to store.
pub(crate) fn new_set(user: &UserId) -> (Vec<String>, Vec<RecoveryCodeHash>) {
    let codes: Vec<String> = (0..COUNT).map(|_| generate()).collect();
    let hashes = codes
        .iter()
        .filter_map(|c| normalize(c))
        .map(|c| RecoveryCodeHash::of(user, &c))
        .collect();
    (codes, hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_twelve_characters_in_three_groups_and_read_back_forgivingly() {
        let code = generate();
        assert_eq!(code.len(), 14);
        assert_eq!(code.matches('-').count(), 2);
        let plain = normalize(&code).expect("a code normalises");
        assert_eq!(
            normalize(&code.to_uppercase().replace('-', " ")),
            Some(plain)
        );
        assert_eq!(normalize("IL0O-aaaa-bbbb"), Some("1100aaaabbbb".into()));
        assert_eq!(normalize("short"), None);
        assert_eq!(
            normalize("uuuu-aaaa-bbbb"),
            None,
            "u is not in the alphabet"
        );
        assert_eq!(normalize(&"a".repeat(100)), None);
        let (shown, stored) = new_set(&UserId::new("u").expect("id"));
        assert_eq!((shown.len(), stored.len()), (COUNT, COUNT));
    }
}
