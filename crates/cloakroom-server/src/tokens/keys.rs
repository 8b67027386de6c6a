//! Service-JWT signing keys: generation, storage, rotation with overlap, and the JWKS.
//!
//! Keys live as one JSON file each in `<data_dir>/keys/` (mode 0600, in a 0700 directory),
//! written atomically. A key's life has three dates:
//!
//! * `created_at` — it appears in the JWKS from now on;
//! * `signs_from` — it signs new tokens from then on. On rotation this is at least one JWKS
//!   cache lifetime later, so every verifier has had the chance to fetch the new public key
//!   before the first token signed by it arrives;
//! * `retire_at` — set on the *previous* key when a new one takes over: every token it signed
//!   has expired by then (maximum token lifetime plus a margin), and it leaves the JWKS.
//!
//! The very first key signs at once: nobody can have cached a JWKS that did not exist.
//! Private keys are never served or logged (`Debug` is redacted).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cloakroom_core::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::{Deserialize, Serialize};

/// How long verifiers may cache the JWKS (`Cache-Control: max-age`).
pub(crate) const JWKS_MAX_AGE: Duration = Duration::from_secs(300);
/// The longest a service JWT may live.
pub(crate) const MAX_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Extra time around rotations for clock skew and slow caches.
pub(crate) const ROTATION_MARGIN: Duration = Duration::from_secs(60);

/// The signature algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// Ed25519 (`EdDSA`), the default: small, fast, no nonce pitfalls.
    // The JOSE spelling is what key files hold; the lower-case one is what the docs and the
    // flag use, so a setting accepts both.
    #[serde(rename = "EdDSA", alias = "eddsa")]
    #[value(name = "eddsa", alias = "EdDSA")]
    EdDsa,
    /// ECDSA on P-256 (`ES256`), for verifiers without Ed25519 support.
    #[serde(rename = "ES256", alias = "es256")]
    #[value(name = "es256", alias = "ES256")]
    Es256,
}

impl KeyAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }

    /// The JOSE name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    /// The algorithm a JOSE name ([`as_str`](Self::as_str)) names.
    pub(crate) fn from_jose(name: &str) -> Option<Self> {
        // The flag's aliases are the JOSE names.
        <Self as clap::ValueEnum>::from_str(name, false).ok()
    }
}

/// Why keys could not be read, written or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the key directory failed.
    #[error("key directory {path}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not parse.
    #[error("key file {path} is not a valid key: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// One key as stored on disk.
#[derive(Clone, Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    alg: KeyAlgorithm,
    created_at: Timestamp,
    signs_from: Timestamp,
    retire_at: Option<Timestamp>,
    /// PKCS#8 DER of the private key, base64.
    private_pkcs8: String,
}

/// A loaded key pair.
#[derive(Clone)]
pub(crate) struct SigningKey {
    file: KeyFile,
    encoding: EncodingKey,
    /// The public JWK (without private parts).
    jwk: serde_json::Value,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.file.kid)
            .field("alg", &self.file.alg)
            .field("signs_from", &self.file.signs_from)
            .field("retire_at", &self.file.retire_at)
            .field("private", &"[redacted]")
            .finish()
    }
}

impl SigningKey {
    /// The key id.
    pub(crate) fn kid(&self) -> &str {
        &self.file.kid
    }

    /// The algorithm.
    pub(crate) fn alg(&self) -> KeyAlgorithm {
        self.file.alg
    }

    /// The jsonwebtoken algorithm.
    pub(crate) fn jwt_algorithm(&self) -> Algorithm {
        self.file.alg.jwt()
    }

    /// The private key, for signing.
    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// When it starts signing.
    pub(crate) fn signs_from(&self) -> Timestamp {
        self.file.signs_from
    }

    /// When it leaves the JWKS, if scheduled.
    pub(crate) fn retire_at(&self) -> Option<Timestamp> {
        self.file.retire_at
    }

    /// When it was made (and published).
    pub(crate) fn created_at(&self) -> Timestamp {
        self.file.created_at
    }

    /// The Ed25519 private key, for signers outside JOSE (single-use links); `None` for
    /// another algorithm.
    pub(crate) fn ed25519(&self) -> Option<ed25519_dalek::SigningKey> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        if self.file.alg != KeyAlgorithm::EdDsa {
            return None;
        }
        // Decoded once already when the file was loaded; this cannot fail for a loaded key.
        let der = STANDARD.decode(&self.file.private_pkcs8).ok()?;
        ed25519_dalek::SigningKey::from_pkcs8_der(&der).ok()
    }

    fn from_file(file: KeyFile, path: &str) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let der = STANDARD
            .decode(&file.private_pkcs8)
            .map_err(|e| invalid(e.to_string()))?;
        let (encoding, jwk) = match file.alg {
            KeyAlgorithm::EdDsa => {
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der)
                    .map_err(|e| invalid(e.to_string()))?;
                let x = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
                let jwk = serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": x });
                (EncodingKey::from_ed_der(&der), jwk)
            }
            KeyAlgorithm::Es256 => {
                use p256::pkcs8::DecodePrivateKey;
                let key =
                    p256::SecretKey::from_pkcs8_der(&der).map_err(|e| invalid(e.to_string()))?;
                let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                    &key.public_key(),
                    false,
                );
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(invalid("P-256 public key has no affine coordinates".into()));
                };
                let jwk = serde_json::json!({
                    "kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
                });
                (EncodingKey::from_ec_der(&der), jwk)
            }
        };
        let mut jwk = jwk;
        jwk["kid"] = file.kid.clone().into();
        jwk["alg"] = file.alg.as_str().into();
        jwk["use"] = "sig".into();
        Ok(Self {
            file,
            encoding,
            jwk,
        })
    }

    fn generate(
        alg: KeyAlgorithm,
        created_at: Timestamp,
        signs_from: Timestamp,
    ) -> Result<Self, KeyError> {
        let der = match alg {
            KeyAlgorithm::EdDsa => {
                use ed25519_dalek::pkcs8::EncodePrivateKey;
                let key = ed25519_dalek::SigningKey::from_bytes(&random::<32>());
                key.to_pkcs8_der().map(|d| d.as_bytes().to_vec())
            }
            KeyAlgorithm::Es256 => {
                use p256::pkcs8::EncodePrivateKey;
                // A random 32-byte string is a valid scalar except with probability ~2^-128.
                let key = loop {
                    if let Ok(k) = p256::SecretKey::from_slice(&random::<32>()) {
                        break k;
                    }
                };
                key.to_pkcs8_der().map(|d| d.as_bytes().to_vec())
            }
        }
        .map_err(|e| KeyError::Invalid {
            path: "(new key)".into(),
            reason: e.to_string(),
        })?;
        let file = KeyFile {
            kid: URL_SAFE_NO_PAD.encode(random::<12>()),
            alg,
            created_at,
            signs_from,
            retire_at: None,
            private_pkcs8: STANDARD.encode(der),
        };
        Self::from_file(file, "(new key)")
    }

    /// A key made at `now` to take over from the current signer, and when the keys before it
    /// retire: it is published now and signs after one JWKS cache lifetime (plus a margin), so
    /// every verifier has fetched it first; they retire once every token they can still sign
    /// has expired (plus a margin).
    pub(crate) fn successor(
        alg: KeyAlgorithm,
        now: Timestamp,
    ) -> Result<(Self, Timestamp), KeyError> {
        let signs_from = now.saturating_add(JWKS_MAX_AGE + ROTATION_MARGIN);
        let key = Self::generate(alg, now, signs_from)?;
        let retire = signs_from.saturating_add(MAX_TOKEN_TTL + ROTATION_MARGIN);
        Ok((key, retire))
    }

    /// The first key of a set, signing at once (nobody can have cached a key set that did not
    /// exist). It signs from a margin *before* `now`, so that an instance whose clock is behind
    /// the one that made it (see DESIGN.md, "Scale") has a signer too.
    pub(crate) fn first(alg: KeyAlgorithm, now: Timestamp) -> Result<Self, KeyError> {
        Self::generate(alg, now, now.saturating_sub(ROTATION_MARGIN))
    }

    /// The private key as PKCS#8 DER, for sealing into the shared store.
    pub(crate) fn private_der(&self) -> Result<Vec<u8>, KeyError> {
        STANDARD
            .decode(&self.file.private_pkcs8)
            .map_err(|e| KeyError::Invalid {
                path: format!("(key {})", self.file.kid),
                reason: e.to_string(),
            })
    }

    /// A key from its stored parts; `shown` names it in errors.
    pub(crate) fn from_parts(
        kid: String,
        alg: KeyAlgorithm,
        created_at: Timestamp,
        signs_from: Timestamp,
        retire_at: Option<Timestamp>,
        der: &[u8],
        shown: &str,
    ) -> Result<Self, KeyError> {
        let file = KeyFile {
            kid,
            alg,
            created_at,
            signs_from,
            retire_at,
            private_pkcs8: STANDARD.encode(der),
        };
        Self::from_file(file, shown)
    }
}

/// Where the service-JWT keys of a data directory are.
pub(crate) fn service_jwt_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// Where the single-use-link keys of a data directory are.
pub(crate) fn link_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("link-keys")
}

/// `N` bytes from the OS CSPRNG, for keys, secrets and codes.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // Same policy as session tokens: no randomness, no keys.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut out).expect("the OS CSPRNG is unavailable");
    out
}

/// A set of keys of one purpose: from a directory, or from the shared key store (see
/// [`crate::tokens::vault`]), which writes through its own path.
#[derive(Debug, Clone)]
pub(crate) struct KeyRing {
    /// The directory the keys are files in; `None` for keys read from the shared store.
    dir: Option<PathBuf>,
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// Loads `<data_dir>/keys`, creating the directory and a first key (signing at once) if
    /// there is none.
    pub(crate) fn open(
        data_dir: &Path,
        alg: KeyAlgorithm,
        now: Timestamp,
    ) -> Result<Self, KeyError> {
        Self::open_dir(service_jwt_dir(data_dir), alg, now, "service-JWT")
    }

    /// Loads the keys in `dir`, creating it and a first key (signing at once) if there is
    /// none; `purpose` names the keys in the log line that says so.
    pub(crate) fn open_dir(
        dir: PathBuf,
        alg: KeyAlgorithm,
        now: Timestamp,
        purpose: &str,
    ) -> Result<Self, KeyError> {
        let mut ring = Self::load_dir(dir)?;
        if ring.keys.is_empty() {
            let key = SigningKey::first(alg, now)?;
            ring.write(&key)?;
            tracing::info!(
                kid = key.kid(),
                alg = alg.as_str(),
                "generated the first {purpose} signing key"
            );
            ring.keys.push(key);
        }
        Ok(ring)
    }

    /// Loads the keys without creating any.
    pub(crate) fn load(data_dir: &Path) -> Result<Self, KeyError> {
        Self::load_dir(service_jwt_dir(data_dir))
    }

    /// Loads `<data_dir>/link-keys`, creating it and a first key if there is none.
    pub(crate) fn open_links(data_dir: &Path, now: Timestamp) -> Result<Self, KeyError> {
        Self::open_dir(link_dir(data_dir), KeyAlgorithm::EdDsa, now, "link")
    }

    /// Rotates the service-JWT keys in `<data_dir>/keys` (see [`rotate`](Self::rotate)),
    /// deleting those retired by `now` first. Returns the new key, when the keys before it
    /// retire, and how many retired keys were deleted.
    pub(crate) fn rotate_files(
        data_dir: &Path,
        alg: KeyAlgorithm,
        now: Timestamp,
    ) -> Result<(SigningKey, Option<Timestamp>, usize), KeyError> {
        let mut ring = Self::open(data_dir, alg, now)?;
        let removed = ring.remove_retired(now)?;
        let key = ring.rotate(alg, now)?;
        let retire = ring.keys.iter().filter_map(SigningKey::retire_at).max();
        Ok((key, retire, removed))
    }

    /// Loads the keys in `dir`, creating the directory (empty) if it does not exist.
    pub(crate) fn load_dir(dir: PathBuf) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.display().to_string(),
            source,
        };
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io)?;
        }
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
                path: shown.clone(),
                source,
            })?;
            let file: KeyFile = serde_json::from_str(&text).map_err(|e| KeyError::Invalid {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            keys.push(SigningKey::from_file(file, &shown)?);
        }
        keys.sort_by_key(|k| (k.file.signs_from, k.file.created_at));
        Ok(Self {
            dir: Some(dir),
            keys,
        })
    }

    /// A ring of keys read from elsewhere (the shared key store), oldest signer first.
    pub(crate) fn from_keys(mut keys: Vec<SigningKey>) -> Self {
        keys.sort_by_key(|k| (k.file.signs_from, k.file.created_at));
        Self { dir: None, keys }
    }

    fn dir(&self) -> Result<&Path, KeyError> {
        self.dir.as_deref().ok_or_else(|| KeyError::Invalid {
            path: "(shared key store)".into(),
            reason: "keys in the shared store are changed through it, not as files".into(),
        })
    }

    fn write(&self, key: &SigningKey) -> Result<(), KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.dir()?;
        let path = dir.join(format!("{}.json", key.kid()));
        let tmp = dir.join(format!(".{}.tmp", key.kid()));
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let text =
            serde_json::to_vec_pretty(&key.file).map_err(|e| io(std::io::Error::other(e)))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Whether `other` holds the same keys on the same schedule.
    pub(crate) fn same_keys(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().zip(&other.keys).all(|(a, b)| {
                (a.kid(), a.signs_from(), a.retire_at()) == (b.kid(), b.signs_from(), b.retire_at())
            })
    }

    /// Every key, oldest signer first.
    pub(crate) fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The key that signs at `now`: the latest whose `signs_from` has come and that is not
    /// retired.
    pub(crate) fn signer(&self, now: Timestamp) -> Option<&SigningKey> {
        self.keys
            .iter()
            .filter(|k| k.file.signs_from <= now && k.file.retire_at.is_none_or(|r| r > now))
            .max_by_key(|k| (k.file.signs_from, k.file.created_at))
    }

    /// The public JWKS at `now`: every key not yet retired (including keys that do not sign
    /// yet).
    pub(crate) fn jwks(&self, now: Timestamp) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .filter(|k| k.file.retire_at.is_none_or(|r| r > now))
            .map(|k| k.jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Adds a key that is published now and signs after one JWKS cache lifetime (plus a
    /// margin); schedules the current signer's retirement for when every token it can still
    /// sign has expired. Returns the new key.
    pub(crate) fn rotate(
        &mut self,
        alg: KeyAlgorithm,
        now: Timestamp,
    ) -> Result<SigningKey, KeyError> {
        let (key, retire) = SigningKey::successor(alg, now)?;
        let mut updated = Vec::new();
        for k in &self.keys {
            if k.file.retire_at.is_none() {
                let mut k = k.clone();
                k.file.retire_at = Some(retire);
                updated.push(k);
            }
        }
        self.write(&key)?;
        for k in &updated {
            self.write(k)?;
        }
        self.keys.retain(|k| k.file.retire_at.is_some());
        self.keys.extend(updated);
        self.keys.push(key.clone());
        self.keys
            .sort_by_key(|k| (k.file.signs_from, k.file.created_at));
        Ok(key)
    }

    /// Deletes key files retired before `now` (they are no longer published or used).
    pub(crate) fn remove_retired(&mut self, now: Timestamp) -> Result<usize, KeyError> {
        let (gone, kept): (Vec<_>, Vec<_>) = self
            .keys
            .drain(..)
            .partition(|k| k.file.retire_at.is_some_and(|r| r <= now));
        self.keys = kept;
        let dir = self.dir()?;
        for k in &gone {
            let path = dir.join(format!("{}.json", k.kid()));
            std::fs::remove_file(&path).map_err(|source| KeyError::Io {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000 + secs * 1000)
    }

    #[test]
    fn first_key_signs_at_once_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), KeyAlgorithm::EdDsa, t(0)).unwrap();
        let signer = ring.signer(t(0)).unwrap();
        assert_eq!(signer.alg(), KeyAlgorithm::EdDsa);
        let file = dir
            .path()
            .join("keys")
            .join(format!("{}.json", signer.kid()));
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("keys"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        // Reopening finds the same key rather than making another.
        let again = KeyRing::open(dir.path(), KeyAlgorithm::EdDsa, t(10)).unwrap();
        assert_eq!(again.keys().len(), 1);
        assert_eq!(again.signer(t(10)).unwrap().kid(), signer.kid());
        assert!(!format!("{signer:?}").contains(&ring.keys[0].file.private_pkcs8));
    }

    #[test]
    fn jwks_holds_public_parts_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::open(dir.path(), KeyAlgorithm::EdDsa, t(0)).unwrap();
        ring.rotate(KeyAlgorithm::Es256, t(1)).unwrap();
        let jwks = ring.jwks(t(1));
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for k in keys {
            assert!(k.get("d").is_none(), "private part served: {k}");
            assert_eq!(k["use"], "sig");
            assert!(k["kid"].is_string());
        }
        let ec = keys.iter().find(|k| k["kty"] == "EC").unwrap();
        assert_eq!(
            (ec["crv"].as_str(), ec["alg"].as_str()),
            (Some("P-256"), Some("ES256"))
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(ec["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        let ed = keys.iter().find(|k| k["kty"] == "OKP").unwrap();
        assert_eq!(
            (ed["crv"].as_str(), ed["alg"].as_str()),
            (Some("Ed25519"), Some("EdDSA"))
        );
    }

    #[test]
    fn rotation_publishes_before_signing_and_retires_after_the_last_token_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::open(dir.path(), KeyAlgorithm::EdDsa, t(0)).unwrap();
        let old = ring.signer(t(0)).unwrap().kid().to_owned();
        let new = ring.rotate(KeyAlgorithm::EdDsa, t(100)).unwrap();
        let published = |ring: &KeyRing, at| -> Vec<String> {
            ring.jwks(at)["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect()
        };
        // Published at once, but the old key keeps signing for a JWKS cache lifetime.
        assert!(published(&ring, t(100)).contains(&new.kid().to_owned()));
        assert_eq!(ring.signer(t(100)).unwrap().kid(), old);
        let switch = 100 + (JWKS_MAX_AGE + ROTATION_MARGIN).as_secs() as i64;
        assert_eq!(ring.signer(t(switch - 1)).unwrap().kid(), old);
        assert_eq!(ring.signer(t(switch)).unwrap().kid(), new.kid());
        // The old key stays published until its last token has expired, plus a margin.
        let retire = switch + (MAX_TOKEN_TTL + ROTATION_MARGIN).as_secs() as i64;
        assert!(published(&ring, t(retire - 1)).contains(&old));
        assert!(!published(&ring, t(retire)).contains(&old));
        // The schedule is on disk: another process (the server) sees it.
        let reloaded = KeyRing::load(dir.path()).unwrap();
        assert_eq!(reloaded.signer(t(switch)).unwrap().kid(), new.kid());
        let mut ring = reloaded;
        assert_eq!(ring.remove_retired(t(retire)).unwrap(), 1);
        assert_eq!(KeyRing::load(dir.path()).unwrap().keys().len(), 1);
    }

    #[test]
    fn signing_and_verifying_works_with_the_compiled_crypto_backend() {
        // jsonwebtoken compiles without a backend and panics at the first use; this test is
        // what stops such a build from shipping.
        let dir = tempfile::tempdir().unwrap();
        for alg in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
            let mut ring = KeyRing::open(dir.path(), alg, t(0)).unwrap();
            let key = ring.rotate(alg, t(0)).unwrap();
            let header = jsonwebtoken::Header {
                kid: Some(key.kid().to_owned()),
                ..jsonwebtoken::Header::new(key.jwt_algorithm())
            };
            let claims = serde_json::json!({ "sub": "u", "exp": 4_000_000_000_u64 });
            let token = jsonwebtoken::encode(&header, &claims, key.encoding_key()).unwrap();
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(key.jwt_algorithm());
            validation.required_spec_claims.clear();
            validation.validate_aud = false;
            let data =
                jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
            assert_eq!(data.claims["sub"], "u");
        }
    }
}
