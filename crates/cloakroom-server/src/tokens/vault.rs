//! Where the server's keys live: files in the data directory for one instance, or PostgreSQL
//! shared by every instance.
//!
//! A server signs with three kinds of key: service-JWT keys (published as the JWKS), link keys
//! (password reset, email verification, download links) and the OpenID pre-login key (the
//! cookie that carries a login through the provider). With one instance they are files in
//! `--data-dir`. With several behind a load balancer each must hold the *same* keys — or a
//! verifier that fetched the JWKS from one instance refuses a token another minted, a reset link
//! mailed by one fails on the next, and a login that left through one instance comes back to
//! another that cannot read its cookie. So when the accounts are in PostgreSQL (the deployment
//! with more than one instance) the keys are rows beside them, each private part sealed with
//! the operator's secret ([`crate::secrets`]).
//!
//! * **The first key of each kind** is made by whichever instance comes first, under an
//!   advisory lock; the others find it.
//! * **A wrong secret** opens nothing: start-up stops and says so. It never makes a key of its
//!   own, which would sign tokens no other instance accepts.
//! * **Rotation** (`cloakroom keys rotate`, or `key_rotation_days`) is one transaction for the
//!   cluster, with the overlap rules of [`crate::tokens::keys`]; every instance re-reads the
//!   keys every few seconds, well inside the overlap.

use cloakroom_core::{StoreError, Timestamp};
use cloakroom_postgres::{PostgresKeys, Rotation, StoredKey};

use crate::oidc::prelogin::PreLoginKey;
use crate::secrets::Secrets;
use crate::tokens::keys::{KeyAlgorithm, KeyError, KeyRing, SigningKey};

/// What a key is for: a purpose has its own key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Service JWTs (the JWKS).
    ServiceJwt,
    /// Single-use links.
    Link,
    /// The OpenID pre-login cookie's MAC key.
    OidcPreLogin,
}

impl Purpose {
    const ALL: [Self; 3] = [Self::ServiceJwt, Self::Link, Self::OidcPreLogin];

    fn as_str(self) -> &'static str {
        match self {
            Self::ServiceJwt => "service-jwt",
            Self::Link => "link",
            Self::OidcPreLogin => "oidc-prelogin",
        }
    }
}

/// The pre-login key is not a signing key; its row carries this in `alg`.
const PRELOGIN_ALG: &str = "HS256";

/// Why the shared keys could not be read, made or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// PostgreSQL did not answer, or refused.
    #[error("the shared signing keys")]
    Store(#[from] StoreError),
    /// A key does not open with any secret given.
    #[error(
        "the {purpose} key {kid} in PostgreSQL does not open with the {count} secret(s) given: \
         the secret is wrong, or it was replaced without keeping the old one in the list \
         (newest first). No key was made: one made with this secret would sign what no other \
         instance accepts"
    )]
    WrongSecret {
        /// What the key is for.
        purpose: &'static str,
        /// Its id.
        kid: String,
        /// How many secrets were tried.
        count: usize,
    },
    /// An admin command found no shared key of a kind: the server makes them when it first
    /// starts on this database.
    #[error(
        "there is no shared {purpose} key in PostgreSQL yet: start the server on this database \
         first (it makes the keys), then run the command again"
    )]
    NotMadeYet {
        /// The kind.
        purpose: &'static str,
    },
    /// A stored key opened but is not a key (an unknown algorithm, a bad length).
    #[error("the {purpose} key {kid} in PostgreSQL is unusable: {reason}")]
    Corrupt {
        /// What the key is for.
        purpose: &'static str,
        /// Its id.
        kid: String,
        /// What is wrong.
        reason: String,
    },
    /// Making or decoding a key failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The keys a server works with, wherever they were read from.
#[derive(Debug, Clone)]
pub(crate) struct KeyMaterial {
    pub(crate) service_jwt: KeyRing,
    pub(crate) link: KeyRing,
    pub(crate) prelogin: PreLoginKey,
}

impl KeyMaterial {
    /// The keys in the data directory, made there if missing.
    pub(crate) fn local(
        settings: &crate::config::Settings,
        now: Timestamp,
    ) -> Result<Self, crate::state::StartupError> {
        let dir = &settings.data_dir;
        Ok(Self {
            service_jwt: KeyRing::open(dir, settings.jwt_algorithm, now)?,
            link: KeyRing::open_links(dir, now)?,
            prelogin: PreLoginKey::open(dir)?,
        })
    }
}

/// Key files of one kind from a data directory, sealed for the shared store.
struct LocalKeys {
    keys: Vec<StoredKey>,
    /// The files they came from, removed once the keys are in.
    files: Vec<std::path::PathBuf>,
}

/// The keys in PostgreSQL, and the secrets that open them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedKeys {
    store: PostgresKeys,
    secrets: Secrets,
}

impl SharedKeys {
    /// The key store beside the accounts, opened with `secrets`.
    pub fn new(store: PostgresKeys, secrets: Secrets) -> Self {
        Self { store, secrets }
    }

    /// Reads every key, and seals again with the newest secret what an older one opened. The
    /// kinds that have no key yet get, all in one transaction (so two instances starting with
    /// different secrets never leave keys under both), the keys this instance had as files in
    /// `data_dir` — an instance moving from its own keys to shared ones keeps its tokens and
    /// links valid, and the files are removed once the keys are in — or else a first key (the
    /// service-JWT key with `alg`).
    pub(crate) async fn open(
        &self,
        data_dir: &std::path::Path,
        alg: KeyAlgorithm,
        now: Timestamp,
    ) -> Result<KeyMaterial, VaultError> {
        let mut rows = self.store.load().await?;
        // A purpose a newer version added is left to it.
        rows.retain(|r| purpose_of(r).is_ok());
        // Checked before anything is made: a wrong secret must not add a key of its own.
        for row in &rows {
            self.unseal(row)?;
        }
        let mut first = Vec::new();
        let mut imported = Vec::new();
        for purpose in Purpose::ALL {
            if rows.iter().any(|r| r.purpose == purpose.as_str()) {
                continue;
            }
            match self.local_keys(purpose, data_dir, now)? {
                Some(local) => {
                    first.extend(local.keys);
                    imported.push((purpose, local.files));
                }
                None => first.push(match purpose {
                    Purpose::ServiceJwt => {
                        self.sealed_key(purpose, &SigningKey::first(alg, now)?)?
                    }
                    Purpose::Link => {
                        self.sealed_key(purpose, &SigningKey::first(KeyAlgorithm::EdDsa, now)?)?
                    }
                    Purpose::OidcPreLogin => self.sealed_prelogin(&PreLoginKey::generate(), now),
                }),
            }
        }
        if !first.is_empty() && self.store.insert_first(&first).await? {
            let kids: Vec<&str> = first.iter().map(|k| k.kid.as_str()).collect();
            tracing::info!(kids = ?kids, "made the first shared keys in PostgreSQL");
            for (purpose, files) in imported {
                // Sealed in the database now; a plaintext copy left behind would stay valid
                // for as long as the key (link keys do not rotate).
                for file in &files {
                    if let Err(e) = std::fs::remove_file(file) {
                        tracing::warn!(file = %file.display(), error = %e, "an imported key file could not be removed; delete it by hand");
                    }
                }
                tracing::info!(
                    purpose = purpose.as_str(),
                    files = files.len(),
                    "imported this instance's key files into PostgreSQL, where every instance shares them, and removed them from the data directory"
                );
            }
        }
        if !first.is_empty() {
            // What this instance made, or what another made first.
            rows = self.store.load().await?;
        }
        rows.retain(|r| purpose_of(r).is_ok());
        for row in &rows {
            let opened = self.unseal(row)?;
            if opened.stale {
                let purpose = purpose_of(row)?;
                let context = context(purpose, &row.kid, &row.alg);
                let sealed = self.secrets.seal(&context, &opened.plaintext);
                self.store.reseal(&row.purpose, &row.kid, &sealed).await?;
                tracing::info!(
                    purpose = row.purpose,
                    kid = row.kid,
                    "sealed a shared key again with the newest secret"
                );
            }
        }
        self.material(&rows)
    }

    /// Reads every key and changes nothing — no first key, no import, no re-sealing — for an
    /// admin command: a workstation's stale data directory must never become the cluster's
    /// keys. Fails when the server has not made its keys yet.
    pub(crate) async fn read(&self) -> Result<KeyMaterial, VaultError> {
        let mut rows = self.store.load().await?;
        rows.retain(|r| purpose_of(r).is_ok());
        for purpose in Purpose::ALL {
            if !rows.iter().any(|r| r.purpose == purpose.as_str()) {
                return Err(VaultError::NotMadeYet {
                    purpose: purpose.as_str(),
                });
            }
        }
        self.material(&rows)
    }

    fn material(&self, rows: &[StoredKey]) -> Result<KeyMaterial, VaultError> {
        Ok(KeyMaterial {
            service_jwt: KeyRing::from_keys(self.ring(rows, Purpose::ServiceJwt)?),
            link: KeyRing::from_keys(self.ring(rows, Purpose::Link)?),
            prelogin: self.prelogin(rows)?,
        })
    }

    /// The service-JWT keys as they are now (what the server re-reads every few seconds).
    pub(crate) async fn service_jwt(&self) -> Result<KeyRing, VaultError> {
        let rows = self
            .store
            .load_purpose(Purpose::ServiceJwt.as_str())
            .await?;
        Ok(KeyRing::from_keys(self.ring(&rows, Purpose::ServiceJwt)?))
    }

    /// Rotates the service-JWT keys for every instance: a new key (with `alg`) published now,
    /// signing after one JWKS cache lifetime, the current ones retiring when their last token
    /// has expired; keys retired by `now` are deleted. With `unless_newer_than`, nothing
    /// happens when a key was made after that time (another instance's scheduled rotation got
    /// there first). Returns the new key, and when the previous ones retire.
    pub(crate) async fn rotate(
        &self,
        alg: KeyAlgorithm,
        now: Timestamp,
        unless_newer_than: Option<Timestamp>,
    ) -> Result<Option<(SigningKey, Timestamp)>, VaultError> {
        let (key, retire) = SigningKey::successor(alg, now)?;
        let row = self.sealed_key(Purpose::ServiceJwt, &key)?;
        match self
            .store
            .rotate(&row, retire, unless_newer_than, now)
            .await?
        {
            Rotation::Done => Ok(Some((key, retire))),
            Rotation::NotDue => Ok(None),
        }
    }

    /// The keys of `purpose` this instance kept as files in `data_dir` before they were
    /// shared, sealed for the shared store; `None` when there are none. Nothing is created
    /// on disk.
    fn local_keys(
        &self,
        purpose: Purpose,
        data_dir: &std::path::Path,
        now: Timestamp,
    ) -> Result<Option<LocalKeys>, VaultError> {
        let dir = match purpose {
            Purpose::ServiceJwt => crate::tokens::keys::service_jwt_dir(data_dir),
            Purpose::Link => crate::tokens::keys::link_dir(data_dir),
            Purpose::OidcPreLogin => {
                let file = PreLoginKey::path(data_dir);
                if !file.is_file() {
                    return Ok(None);
                }
                let key = PreLoginKey::open(data_dir).map_err(|e| VaultError::Corrupt {
                    purpose: purpose.as_str(),
                    kid: "prelogin".into(),
                    reason: e.to_string(),
                })?;
                return Ok(Some(LocalKeys {
                    keys: vec![self.sealed_prelogin(&key, now)],
                    files: vec![file],
                }));
            }
        };
        if !dir.is_dir() {
            return Ok(None);
        }
        let ring = KeyRing::load_dir(dir.clone())?;
        if ring.keys().is_empty() {
            return Ok(None);
        }
        let keys = ring
            .keys()
            .iter()
            .map(|k| self.sealed_key(purpose, k))
            .collect::<Result<Vec<_>, _>>()?;
        let files = ring
            .keys()
            .iter()
            .map(|k| dir.join(format!("{}.json", k.kid())))
            .collect();
        Ok(Some(LocalKeys { keys, files }))
    }

    fn unseal(&self, row: &StoredKey) -> Result<crate::secrets::Opened, VaultError> {
        let purpose = purpose_of(row)?;
        self.secrets
            .open(&context(purpose, &row.kid, &row.alg), &row.sealed)
            .map_err(|_| VaultError::WrongSecret {
                purpose: purpose.as_str(),
                kid: row.kid.clone(),
                count: self.secrets.count(),
            })
    }

    fn ring(&self, rows: &[StoredKey], purpose: Purpose) -> Result<Vec<SigningKey>, VaultError> {
        rows.iter()
            .filter(|r| r.purpose == purpose.as_str())
            .map(|r| {
                let corrupt = |reason: String| VaultError::Corrupt {
                    purpose: purpose.as_str(),
                    kid: r.kid.clone(),
                    reason,
                };
                let alg = KeyAlgorithm::from_jose(&r.alg)
                    .ok_or_else(|| corrupt(format!("unknown algorithm {:?}", r.alg)))?;
                let der = self.unseal(r)?.plaintext;
                SigningKey::from_parts(
                    r.kid.clone(),
                    alg,
                    r.created_at,
                    r.signs_from,
                    r.retire_at,
                    &der,
                    &format!("{} key {}", purpose.as_str(), r.kid),
                )
                .map_err(|e| corrupt(e.to_string()))
            })
            .collect()
    }

    fn prelogin(&self, rows: &[StoredKey]) -> Result<PreLoginKey, VaultError> {
        let purpose = Purpose::OidcPreLogin;
        // One such key; the oldest wins should two ever exist.
        let row = rows
            .iter()
            .find(|r| r.purpose == purpose.as_str())
            .ok_or_else(|| VaultError::Corrupt {
                purpose: purpose.as_str(),
                kid: "-".into(),
                reason: "missing".into(),
            })?;
        let bytes = self.unseal(row)?.plaintext;
        let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| VaultError::Corrupt {
            purpose: purpose.as_str(),
            kid: row.kid.clone(),
            reason: format!("{} bytes instead of 32", bytes.len()),
        })?;
        Ok(PreLoginKey::from_bytes(key))
    }

    fn sealed_key(&self, purpose: Purpose, key: &SigningKey) -> Result<StoredKey, VaultError> {
        let alg = key.alg().as_str();
        let sealed = self
            .secrets
            .seal(&context(purpose, key.kid(), alg), &key.private_der()?);
        Ok(StoredKey {
            purpose: purpose.as_str().to_owned(),
            kid: key.kid().to_owned(),
            alg: alg.to_owned(),
            created_at: key.created_at(),
            signs_from: key.signs_from(),
            retire_at: key.retire_at(),
            sealed,
        })
    }

    fn sealed_prelogin(&self, key: &PreLoginKey, now: Timestamp) -> StoredKey {
        let purpose = Purpose::OidcPreLogin;
        let kid = "prelogin";
        StoredKey {
            purpose: purpose.as_str().to_owned(),
            kid: kid.to_owned(),
            alg: PRELOGIN_ALG.to_owned(),
            created_at: now,
            signs_from: now,
            retire_at: None,
            sealed: self
                .secrets
                .seal(&context(purpose, kid, PRELOGIN_ALG), key.bytes()),
        }
    }
}

fn purpose_of(row: &StoredKey) -> Result<Purpose, VaultError> {
    Purpose::ALL
        .into_iter()
        .find(|p| p.as_str() == row.purpose)
        .ok_or_else(|| VaultError::Corrupt {
            purpose: "unknown",
            kid: row.kid.clone(),
            reason: format!("unknown purpose {:?}", row.purpose),
        })
}

/// What a sealed key is bound to: it opens only in the row it was written for.
fn context(purpose: Purpose, kid: &str, alg: &str) -> Vec<u8> {
    format!(
        "cloakroom signing key v1\0{}\0{kid}\0{alg}",
        purpose.as_str()
    )
    .into_bytes()
}
