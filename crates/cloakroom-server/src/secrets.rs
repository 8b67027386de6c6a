//! The operator's secrets, and the sealing of key material at rest with them.
//!
//! When several instances share their accounts in PostgreSQL they must also share their
//! signing keys (one JWKS, one link key, one OpenID pre-login key), so those keys live in the
//! database too — as Ory Hydra and Kratos keep theirs. A database dump, a replica or a backup
//! must not hand out the keys that sign service JWTs and password-reset links, so every private
//! key is stored sealed: XChaCha20-Poly1305 under a key derived from the operator's secret.
//!
//! * **Where secrets come from.** `CLOAKROOM_SECRETS='["<secret>", …]'` (a JSON list, like the
//!   other list settings in the environment) or `secrets_file` (one secret per line; blank
//!   lines and `#` comments ignored — a systemd credential or a Kubernetes secret mount). Never
//!   a flag: a command line is visible to every user of the machine.
//! * **Newest first.** The first secret seals; every secret is tried when opening, and what an
//!   older one opened is sealed again when the server starts. To rotate the secret itself, in
//!   three rolling restarts: add the new one *second* (everyone can now open it); move it
//!   first (each instance re-seals as it starts, and the rest, holding both, still read the
//!   keys); drop the old one. Putting it first in one step would lock out the instances not
//!   yet restarted.
//! * **At least 32 characters**, so a secret carries enough entropy to be the only thing
//!   between a stolen database and the keys.
//! * **Derivation.** HKDF-SHA256 with a fixed salt and a purpose label gives one 256-bit key per
//!   secret; a random 192-bit nonce per seal (XChaCha's nonce is long enough that random nonces
//!   never collide in practice). The record's identity (purpose, key id, algorithm) is the
//!   associated data, so a sealed key cannot be moved to another row and still open.
//!
//! `Debug` never shows a secret, and no error message carries one.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// The shortest secret accepted, in characters.
pub const MIN_SECRET_LEN: usize = 32;

/// The first byte of every sealed value: the format (derivation, cipher, layout) it was made
/// with, so a later format can be told apart.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;
/// HKDF's salt: fixed, so the same secret gives the same key on every instance.
const SALT: &[u8] = b"cloakroom secrets v1";
/// HKDF's info: what the derived key is for.
const INFO_KEY_SEALING: &[u8] = b"cloakroom: signing keys at rest";

/// Why the secrets could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// `CLOAKROOM_SECRETS` is not a JSON list of strings.
    #[error("CLOAKROOM_SECRETS must be a JSON list of strings, newest first (`[\"<secret>\"]`)")]
    NotAList,
    /// `secrets_file` could not be read.
    #[error("secrets_file {path}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Both sources are set: which one wins would be a guess.
    #[error("both CLOAKROOM_SECRETS and secrets_file are set; keep one")]
    Both,
    /// The source holds no secret.
    #[error("{source_name} holds no secret")]
    Empty {
        /// Where they were read from.
        source_name: String,
    },
    /// A secret is too short to be one.
    #[error(
        "secret #{position} in {source_name} has {len} characters; each needs at least \
         {MIN_SECRET_LEN} (for example the output of `openssl rand -base64 48`)"
    )]
    TooShort {
        /// Its place in the list, from 1.
        position: usize,
        /// Where it was read from.
        source_name: String,
        /// Its length.
        len: usize,
    },
    /// The same secret appears twice.
    #[error("{source_name} lists the same secret twice")]
    Repeated {
        /// Where they were read from.
        source_name: String,
    },
}

/// The operator's secrets, newest first. `Debug` shows how many there are, not what they are.
#[derive(Clone)]
pub struct Secrets {
    /// One derived sealing key per secret, in the same order.
    sealers: Vec<XChaCha20Poly1305>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("count", &self.sealers.len())
            .finish_non_exhaustive()
    }
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Too short, or a format this build does not know.
    #[error("not a sealed value this version of Cloakroom made")]
    Malformed,
    /// No secret in the list opens it: the secret is wrong, was replaced without keeping the old
    /// one in the list, or the value was altered.
    #[error("none of the secrets opens it")]
    NoSecretFits,
}

/// A value opened, and whether it should be sealed again with the newest secret. `Debug`
/// shows its length, never the plaintext (a private key).
pub struct Opened {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// It was sealed with an older secret than the first.
    pub stale: bool,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field(
                "plaintext",
                &format_args!("[{} bytes]", self.plaintext.len()),
            )
            .field("stale", &self.stale)
            .finish()
    }
}

impl Secrets {
    /// Reads the secrets from `CLOAKROOM_SECRETS` (`env`, a JSON list) or `secrets_file`, at
    /// most one of them; `None` when neither is set.
    pub fn load(env: Option<&str>, file: Option<&Path>) -> Result<Option<Self>, SecretsError> {
        let (texts, source_name) = match (env, file) {
            (Some(_), Some(_)) => return Err(SecretsError::Both),
            (None, None) => return Ok(None),
            (Some(json), None) => {
                let list: Vec<String> =
                    serde_json::from_str(json).map_err(|_| SecretsError::NotAList)?;
                (list, "CLOAKROOM_SECRETS".to_owned())
            }
            (None, Some(path)) => {
                let shown = crate::data_dir::shown(path);
                let text = std::fs::read_to_string(path).map_err(|source| SecretsError::File {
                    path: shown.clone(),
                    source,
                })?;
                let list = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned)
                    .collect();
                (list, format!("secrets_file {shown}"))
            }
        };
        Self::from_list(&texts, &source_name).map(Some)
    }

    /// Secrets from a list, newest first; `source_name` names where they came from in errors.
    pub fn from_list(texts: &[String], source_name: &str) -> Result<Self, SecretsError> {
        if texts.is_empty() {
            return Err(SecretsError::Empty {
                source_name: source_name.to_owned(),
            });
        }
        for (i, t) in texts.iter().enumerate() {
            let len = t.chars().count();
            if len < MIN_SECRET_LEN {
                return Err(SecretsError::TooShort {
                    position: i + 1,
                    source_name: source_name.to_owned(),
                    len,
                });
            }
            if texts[..i].contains(t) {
                return Err(SecretsError::Repeated {
                    source_name: source_name.to_owned(),
                });
            }
        }
        let sealers = texts.iter().map(|t| sealer(t.as_bytes())).collect();
        Ok(Self { sealers })
    }

    /// How many secrets there are (never none: an empty list is refused).
    pub(crate) fn count(&self) -> usize {
        self.sealers.len()
    }

    /// Seals `plaintext` with the newest secret, bound to `context` (which must be given again
    /// to open it).
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // Same policy as session tokens and keys: no randomness, no keys.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut nonce).expect("the OS CSPRNG is unavailable");
        let sealer = &self.sealers[0];
        let xnonce = XNonce::from(nonce);
        // Encryption fails only for messages longer than the cipher's 2^38-byte limit; a key is
        // under a kilobyte.
        #[allow(clippy::expect_used)]
        let ciphertext = sealer
            .encrypt(
                &xnonce,
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("a key is far below the cipher's message limit");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a value [`seal`](Self::seal) made, trying every secret, newest first.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Opened, OpenError> {
        let Some((&FORMAT_V1, rest)) = sealed.split_first() else {
            return Err(OpenError::Malformed);
        };
        if rest.len() < NONCE_LEN + 16 {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::Malformed)?;
        for (i, sealer) in self.sealers.iter().enumerate() {
            if let Ok(plaintext) = sealer.decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            ) {
                return Ok(Opened {
                    plaintext,
                    stale: i > 0,
                });
            }
        }
        Err(OpenError::NoSecretFits)
    }
}

fn sealer(secret: &[u8]) -> XChaCha20Poly1305 {
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32.
    #[allow(clippy::expect_used)]
    Hkdf::<Sha256>::new(Some(SALT), secret)
        .expand(INFO_KEY_SEALING, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    XChaCha20Poly1305::new(&key.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &[&str]) -> Secrets {
        let texts: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        Secrets::from_list(&texts, "test").unwrap()
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn seals_and_opens_bound_to_its_context() {
        let s = secrets(&[A]);
        let sealed = s.seal(b"service-jwt/kid1", b"private key");
        let opened = s.open(b"service-jwt/kid1", &sealed).unwrap();
        assert_eq!(opened.plaintext, b"private key");
        assert!(!opened.stale);
        assert_eq!(
            s.open(b"service-jwt/kid2", &sealed).unwrap_err(),
            OpenError::NoSecretFits,
            "a sealed key moved to another row does not open"
        );
        // Two seals of the same key differ (random nonces).
        assert_ne!(sealed, s.seal(b"service-jwt/kid1", b"private key"));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            s.open(b"service-jwt/kid1", &altered).unwrap_err(),
            OpenError::NoSecretFits
        );
        assert_eq!(s.open(b"x", &[2, 0, 0]).unwrap_err(), OpenError::Malformed);
        assert_eq!(s.open(b"x", &[]).unwrap_err(), OpenError::Malformed);
    }

    #[test]
    fn an_older_secret_still_opens_and_says_so() {
        let old = secrets(&[A]).seal(b"c", b"k");
        let rotated = secrets(&[B, A]);
        let opened = rotated.open(b"c", &old).unwrap();
        assert_eq!(opened.plaintext, b"k");
        assert!(opened.stale, "sealed with the second secret: re-seal it");
        assert_eq!(
            secrets(&[B]).open(b"c", &old).unwrap_err(),
            OpenError::NoSecretFits,
            "without the old secret it does not open"
        );
    }

    #[test]
    fn sources_are_checked() {
        assert!(Secrets::load(None, None).unwrap().is_none());
        let json = format!(r#"["{B}", "{A}"]"#);
        assert_eq!(
            Secrets::load(Some(&json), None).unwrap().unwrap().count(),
            2
        );
        assert!(matches!(
            Secrets::load(Some(A), None),
            Err(SecretsError::NotAList)
        ));
        assert!(matches!(
            Secrets::load(Some(r#"["short"]"#), None),
            Err(SecretsError::TooShort {
                position: 1,
                len: 5,
                ..
            })
        ));
        assert!(matches!(
            Secrets::load(Some("[]"), None),
            Err(SecretsError::Empty { .. })
        ));
        let repeated = format!(r#"["{A}", "{A}"]"#);
        assert!(matches!(
            Secrets::load(Some(&repeated), None),
            Err(SecretsError::Repeated { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets");
        std::fs::write(&file, format!("# newest first\n{B}\n\n  {A}  \n")).unwrap();
        assert_eq!(
            Secrets::load(None, Some(&file)).unwrap().unwrap().count(),
            2
        );
        assert!(matches!(
            Secrets::load(Some(&json), Some(&file)),
            Err(SecretsError::Both)
        ));
        let shown = format!("{:?}", Secrets::load(Some(&json), None).unwrap().unwrap());
        assert!(!shown.contains(A) && !shown.contains(B), "{shown}");
        let message = Secrets::load(Some(r#"["short-secret"]"#), None)
            .unwrap_err()
            .to_string();
        assert!(!message.contains("short-secret"), "{message}");
    }
}
