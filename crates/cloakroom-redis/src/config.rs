//! [`RedisConfig`]: where the sessions live and how patient to be with the server.

use std::time::Duration;

use cloakroom_core::store::BoxError;

/// Why a [`RedisConfig`] was refused. Checked before any connection is attempted, so a typo
/// fails at startup with a message that says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL did not parse. The URL itself is not repeated: it may carry a password.
    #[error("Redis URL #{index} is not a valid URL")]
    InvalidUrl {
        /// Position of the URL in the list (0 for standalone).
        index: usize,
        /// The parse failure.
        #[source]
        source: BoxError,
    },
    /// A URL has a scheme other than `redis://` or `rediss://` (TLS).
    #[error(
        "Redis URL #{index} has unsupported scheme {scheme:?}; expected \"redis\" or \"rediss\" (TLS)"
    )]
    UnsupportedScheme {
        /// Position of the URL in the list.
        index: usize,
        /// The scheme found.
        scheme: String,
    },
    /// A URL has a `#fragment`, which Redis has no use for (and redis-rs could read
    /// `#insecure` as "do not check the certificate").
    #[error("Redis URL #{index} has a #fragment; remove it")]
    Fragment {
        /// Position of the URL in the list.
        index: usize,
    },
    /// A CA file holds no PEM certificate.
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) found")]
    NoCertificate,
    /// A Cluster configuration named no seed node.
    #[error("a Redis Cluster configuration needs at least one seed URL")]
    NoSeeds,
    /// The key prefix contains characters other than ASCII letters, digits and `:_.-`, or is
    /// longer than 64 bytes. Braces in particular would change which Cluster slot a key hashes
    /// to and break the single-slot scripts.
    #[error(
        "key prefix {0:?} must be at most 64 ASCII letters, digits or `:_.-` (no braces, no glob characters)"
    )]
    InvalidKeyPrefix(String),
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
}

/// Standalone server or Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    Standalone(String),
    Cluster(Vec<String>),
}

/// How to reach Redis and how to lay out keys. Built with [`standalone`](Self::standalone) or
/// [`cluster`](Self::cluster) and refined with the `with_*` methods.
///
/// Defaults, and why:
///
/// | setting | default | reason |
/// | --- | --- | --- |
/// | key prefix | `cloakroom:` | several applications can share one Redis |
/// | connect timeout | 1 s | a dead server must fail requests fast (fail closed), not queue them |
/// | response timeout | 1 s | a session lookup is a sub-millisecond command; a second means trouble |
/// | command timeout | 2 s | hard upper bound on any single round trip, reconnection waits included |
/// | expiry grace | 30 s | records outlive their expiry by this much, so the manager (whose clock may differ from Redis's) reports "expired" rather than "unknown", and clock skew between instances up to this much cannot orphan a live session from its user's index |
///
/// ```
/// use std::time::Duration;
/// use cloakroom_redis::RedisConfig;
///
/// let config = RedisConfig::standalone("redis://127.0.0.1:6379")?
///     .with_key_prefix("shop:sessions:")?
///     .with_command_timeout(Duration::from_millis(1500))?;
/// let cluster = RedisConfig::cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])?;
/// # Ok::<(), cloakroom_redis::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub(crate) topology: Topology,
    pub(crate) key_prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) expiry_grace: Duration,
    /// PEM certificates of the authorities that may sign the servers' certificates, for
    /// `rediss://`; `None`: the system's trust store.
    pub(crate) root_certs: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry passwords: show only how many there are.
        let topology = match &self.topology {
            Topology::Standalone(_) => "standalone".to_owned(),
            Topology::Cluster(seeds) => format!("cluster ({} seeds)", seeds.len()),
        };
        f.debug_struct("RedisConfig")
            .field("topology", &topology)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("expiry_grace", &self.expiry_grace)
            .field("private_ca", &self.root_certs.is_some())
            .finish()
    }
}

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "cloakroom:";

impl RedisConfig {
    /// One Redis (or Valkey) server, e.g. `redis://:password@host:6379/0`.
    pub fn standalone(url: &str) -> Result<Self, ConfigError> {
        check_url(0, url)?;
        Ok(Self::new(Topology::Standalone(url.to_owned())))
    }

    /// A Redis Cluster, reached through any of `seeds` (the client discovers the rest).
    pub fn cluster<I, S>(seeds: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let seeds: Vec<String> = seeds.into_iter().map(|s| s.as_ref().to_owned()).collect();
        if seeds.is_empty() {
            return Err(ConfigError::NoSeeds);
        }
        for (i, url) in seeds.iter().enumerate() {
            check_url(i, url)?;
        }
        Ok(Self::new(Topology::Cluster(seeds)))
    }

    fn new(topology: Topology) -> Self {
        Self {
            topology,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(2),
            expiry_grace: Duration::from_secs(30),
            root_certs: None,
        }
    }

    /// Trusts only the certificate authorities in `pem` (one or more PEM certificates) for
    /// `rediss://` connections, instead of the system's trust store: for a store whose
    /// certificates a private authority signed. The certificate and the host name are always
    /// checked; there is no way to turn that off.
    pub fn with_root_certificates(mut self, pem: &[u8]) -> Result<Self, ConfigError> {
        use rustls_pki_types::pem::PemObject as _;
        let found = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
            .filter(Result::is_ok)
            .count();
        if found == 0 {
            return Err(ConfigError::NoCertificate);
        }
        self.root_certs = Some(pem.to_owned());
        Ok(self)
    }

    /// A client for `url` with this configuration's trust anchors.
    pub(crate) fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        match self.certificates() {
            None => redis::Client::open(url),
            Some(certs) => redis::Client::build_with_tls(url, certs),
        }
    }

    /// The private authority to trust, in the form redis-rs takes it; `None`: the system's
    /// trust store.
    pub(crate) fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.root_certs.as_ref().map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        })
    }

    /// Prepends `prefix` to every key (default [`DEFAULT_KEY_PREFIX`]). At most 64 ASCII
    /// letters, digits or `:_.-`; may be empty.
    pub fn with_key_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        let ok = prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-'));
        if !ok {
            return Err(ConfigError::InvalidKeyPrefix(prefix.to_owned()));
        }
        self.key_prefix = prefix.to_owned();
        Ok(self)
    }

    /// How long to wait for a TCP connection (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.connect_timeout = positive("connect timeout", timeout)?;
        Ok(self)
    }

    /// How long to wait for a reply on an established connection (default 1 s).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.response_timeout = positive("response timeout", timeout)?;
        Ok(self)
    }

    /// The most any single round trip may take, waiting for a reconnection included, before
    /// the store reports [`StoreError::Unavailable`](cloakroom_core::StoreError::Unavailable)
    /// (default 2 s).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.command_timeout = positive("command timeout", timeout)?;
        Ok(self)
    }

    /// How long a record is kept past its expiry before Redis drops it (default 30 s). See the
    /// table above; zero is allowed but gives up the clock-skew margin.
    pub fn with_expiry_grace(mut self, grace: Duration) -> Self {
        self.expiry_grace = grace;
        self
    }

    /// The key prefix in force.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }
}

fn positive(what: &'static str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(ConfigError::ZeroDuration(what))
    } else {
        Ok(d)
    }
}

fn check_url(index: usize, url: &str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| ConfigError::InvalidUrl {
        index,
        source: Box::new(e),
    })?;
    // A fragment means nothing to Redis, but redis-rs reads `#insecure` on rediss:// as "skip
    // the certificate check" when its insecure feature is compiled in: refuse them all.
    if parsed.fragment().is_some() {
        return Err(ConfigError::Fragment { index });
    }
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(ConfigError::UnsupportedScheme {
            index,
            scheme: parsed.scheme().to_owned(),
        });
    }
    // Catches what the URL parser accepts but the driver does not (a bad database number…).
    redis::Client::open(url).map_err(|e| ConfigError::InvalidUrl {
        index,
        source: Box::new(e),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_fragment_cannot_turn_certificate_checks_off() {
        // redis-rs reads `#insecure` on a rediss:// URL as "skip certificate checks" when its
        // insecure feature is on; no fragment is accepted, so no build can be talked into it.
        for url in [
            "rediss://127.0.0.1:6379/#insecure",
            "redis://127.0.0.1:6379/0#x",
        ] {
            assert!(RedisConfig::standalone(url).is_err(), "{url}");
            assert!(RedisConfig::cluster([url]).is_err(), "{url}");
        }
    }

    #[test]
    fn urls_and_prefixes_are_checked() {
        assert!(RedisConfig::standalone("redis://127.0.0.1:6379").is_ok());
        assert!(matches!(
            RedisConfig::standalone("not a url"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        assert!(matches!(
            RedisConfig::standalone("http://127.0.0.1"),
            Err(ConfigError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            RedisConfig::cluster(Vec::<String>::new()),
            Err(ConfigError::NoSeeds)
        ));
        let c = RedisConfig::standalone("redis://h").unwrap();
        assert!(c.clone().with_key_prefix("app:s-1.x_").is_ok());
        assert!(c.clone().with_key_prefix("").is_ok());
        for bad in ["{tag}", "a*", "a b", "é"] {
            assert!(
                matches!(
                    c.clone().with_key_prefix(bad),
                    Err(ConfigError::InvalidKeyPrefix(_))
                ),
                "{bad}"
            );
        }
        assert!(c.with_command_timeout(Duration::ZERO).is_err());
    }

    #[test]
    fn debug_never_shows_a_password() {
        let c = RedisConfig::standalone("redis://:hunter2@h:6379").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
