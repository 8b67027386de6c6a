//! [`EmailAddress`]: an address mail can be sent to, parsed once.

use std::fmt;

/// Longest accepted address (RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the
/// angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// Why an email address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an email address is name@domain: at most {MAX_EMAIL_LEN} characters, letters, digits and !#$%&'*+-/=?^_`{{|}}~. before the @, a domain name after it"
)]
pub struct InvalidEmailAddress;

/// An email address in the plain `local@domain` form, the domain in lower case.
///
/// Deliberately narrower than RFC 5322: no quoted local parts, comments, display names, IP
/// literals or non-ASCII (an internationalised domain is given in its `xn--` form). What is
/// left is what people type, and nothing in it can break out of a mail header: no spaces, no
/// line breaks, no `<`, `>`, `,` or `"`.
///
/// ```
/// use cloakroom_core::mail::EmailAddress;
///
/// let a = EmailAddress::parse(" Alice.Smith+cloakroom@Example.COM ").unwrap();
/// assert_eq!(a.as_str(), "Alice.Smith+cloakroom@example.com");
/// assert!(EmailAddress::parse("alice@example.com\r\nBcc: eve@evil.test").is_err());
/// assert!(EmailAddress::parse("Alice <alice@example.com>").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Checks and normalises an address (trimmed, domain lower-cased).
    pub fn parse(text: &str) -> Result<Self, InvalidEmailAddress> {
        let t = text.trim();
        let (local, domain) = t.rsplit_once('@').ok_or(InvalidEmailAddress)?;
        let local_ok = (1..=64).contains(&local.len())
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
        let domain_ok = (1..=253).contains(&domain.len())
            && domain.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if local_ok && domain_ok && t.len() <= MAX_EMAIL_LEN {
            Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
        } else {
            Err(InvalidEmailAddress)
        }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_parse_and_nothing_else() {
        for ok in [
            "a@b",
            "root@localhost",
            "first.last@example.com",
            "x+tag@sub.example.co.uk",
            "o'brien@xn--bcher-kva.example",
            &format!("{}@example.com", "a".repeat(64)),
        ] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "@example.com",
            "alice@",
            "alice",
            "alice@@example.com",
            "al ice@example.com",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "\"alice\"@example.com",
            "alice@exa_mple.com",
            "alice@-example.com",
            "alice@example..com",
            "alice@[127.0.0.1]",
            "alice@exämple.com",
            "Alice <alice@example.com>",
            "alice@example.com, eve@evil.test",
            "alice@example.com\nBcc: eve@evil.test",
            &format!("{}@example.com", "a".repeat(65)),
            &format!("a@{}.com", "b".repeat(250)),
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_domain_is_case_folded_and_the_local_part_kept() {
        let a = EmailAddress::parse("Bob@EXAMPLE.org").unwrap();
        assert_eq!(a.as_str(), "Bob@example.org");
        assert_eq!(a.domain(), "example.org");
    }
}
