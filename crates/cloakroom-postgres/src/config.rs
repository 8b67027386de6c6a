//! [`PostgresConfig`]: which database and schema, and how patient to be with it.

use std::str::FromStr;
use std::time::Duration;

use cloakroom_core::store::BoxError;

/// Why a [`PostgresConfig`] was refused, before any connection is attempted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The connection string did not parse. It is not repeated: it may carry a password.
    #[error("the PostgreSQL connection string is invalid")]
    InvalidUrl(#[source] BoxError),
    /// The schema name is not a plain lowercase SQL identifier.
    #[error("schema name {0:?} must match [a-z_][a-z0-9_]* and be at most 63 bytes")]
    InvalidSchema(String),
    /// The pool size is zero.
    #[error("the pool needs at least one connection")]
    ZeroPoolSize,
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// An `sslmode` that would connect without checking who answers.
    #[error(
        "sslmode={0} is not supported: use sslmode=verify-full (or require, which here also \
         checks the certificate and host name: TLS without that check protects nothing), or \
         sslmode=disable on a private network"
    )]
    UnsupportedSslMode(String),
    /// A CA file holds no PEM certificate.
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) found")]
    NoCertificate,
    /// The connection string can be read as naming `sslmode` in more than one way (a raw `?`
    /// or `@` in a password, an escaped space): percent-encode the password.
    #[error(
        "sslmode cannot be read unambiguously from the connection string: percent-encode \
         special characters in the password and values"
    )]
    AmbiguousSslMode,
}

/// The default schema.
pub const DEFAULT_SCHEMA: &str = "cloakroom";

/// Where the sessions live and how long to wait for the database.
///
/// Defaults, and why:
///
/// | setting | default | reason |
/// | --- | --- | --- |
/// | schema | `cloakroom` | keeps the tables apart from the application's own |
/// | pool size | 16 | sessions are short primary-key queries; 16 connections serve thousands of requests a second without crowding `max_connections` when many instances run |
/// | connect timeout | 2 s | a dead database must fail requests fast (fail closed) |
/// | pool wait timeout | 2 s | when every connection is busy for that long, the database is in trouble; say so instead of queueing |
/// | command timeout | 5 s | hard upper bound on one store call (purge and migrations excepted) |
///
/// ```
/// use cloakroom_postgres::PostgresConfig;
///
/// let config = PostgresConfig::from_url("postgres://app@db.internal/app")?
///     .with_schema("sessions")?
///     .with_pool_size(32)?;
/// # Ok::<(), cloakroom_postgres::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) wait_timeout: Duration,
    pub(crate) command_timeout: Duration,
    /// TLS, when `sslmode` asks for it: the trust anchors to check the server with.
    pub(crate) tls: Option<Tls>,
}

/// How a TLS connection checks the server: always its certificate and host name, against these
/// roots.
#[derive(Clone)]
pub(crate) struct Tls {
    /// PEM certificates of a private authority; `None`: the webpki roots.
    pub(crate) private_roots: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
}

impl Tls {
    /// The connector, over rustls on ring.
    pub(crate) fn connector(&self) -> tokio_postgres_rustls::MakeRustlsConnect {
        let mut roots = rustls::RootCertStore::empty();
        match &self.private_roots {
            Some(certs) => {
                for cert in certs {
                    // Checked to parse when they were given.
                    let _ = roots.add(cert.clone());
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        // The ring provider supports the default protocol versions.
        #[allow(clippy::expect_used)]
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_postgres_rustls::MakeRustlsConnect::new(config)
    }
}

/// Takes `sslmode` out of a connection string: the value it names (the last one, as libpq
/// reads repeated parameters) and the string without it, for tokio-postgres to parse the rest.
/// The parameter is found where the syntax puts parameters — the query of a URL, the
/// `key=value` pairs otherwise — so text in a password or a host name never counts as one.
fn take_ssl_mode(conn: &str) -> (Option<String>, String) {
    let is_url = conn.starts_with("postgres://") || conn.starts_with("postgresql://");
    if is_url {
        // As tokio-postgres reads a URL: the credentials run to the first '@', so a '?' in a
        // password does not start the query.
        let after_scheme = conn.find("://").map_or(0, |i| i + 3);
        let from = conn[after_scheme..]
            .find('@')
            .map_or(after_scheme, |i| after_scheme + i + 1);
        let Some(q) = conn[from..].find('?').map(|i| from + i) else {
            return (None, conn.to_owned());
        };
        let (base, query) = (&conn[..q], &conn[q + 1..]);
        let mut mode = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.split_once('=') {
                Some(("sslmode", value)) => {
                    mode = Some(
                        percent_encoding::percent_decode_str(value)
                            .decode_utf8_lossy()
                            .into_owned(),
                    );
                    false
                }
                _ => true,
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (mode, rest);
    }
    // key=value pairs, with libpq's quoting: 'a value with spaces', \' and \\ inside quotes.
    let mut mode = None;
    let mut rest = String::with_capacity(conn.len());
    let mut chars = conn.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut key = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_some_and(|&(_, c)| c == '=') {
            chars.next();
        }
        while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek().is_some_and(|&(_, c)| c == '\'') {
            chars.next();
            while let Some((_, c)) = chars.next() {
                match c {
                    '\'' => break,
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    // An escaped character, a space too, belongs to the value.
                    value.extend(chars.next().map(|(_, c)| c));
                } else {
                    value.push(c);
                }
            }
        }
        let end = chars.peek().map_or(conn.len(), |&(i, _)| i);
        if key == "sslmode" {
            mode = Some(value);
        } else {
            rest.push_str(&conn[start..end]);
            rest.push(' ');
        }
    }
    (mode, rest.trim_end().to_owned())
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("PostgresConfig")
            .field("pg", &self.pg)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("wait_timeout", &self.wait_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("tls", &self.tls.as_ref().map(|t| t.private_roots.is_some()))
            .finish()
    }
}

impl PostgresConfig {
    /// A configuration from a URL (`postgres://user:password@host:5432/db?…`) or a key/value
    /// connection string (`host=… user=…`), as libpq accepts them.
    ///
    /// `sslmode=verify-full` or `require` connects over TLS and checks the server's certificate
    /// and host name against the webpki roots (or [`with_root_certificates`]); there is no mode
    /// that skips the check. Without `sslmode`, or with `disable`, the connection is plain.
    ///
    /// [`with_root_certificates`]: Self::with_root_certificates
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        use tokio_postgres::config::SslMode;
        let (mode, rest) = take_ssl_mode(url);
        let tls = match mode.as_deref() {
            // Plain, as before TLS was supported (tokio-postgres's own default, "prefer",
            // would try TLS first, unchecked).
            None | Some("disable") => None,
            Some("require" | "verify-full") => Some(Tls {
                private_roots: None,
            }),
            Some(other) => return Err(ConfigError::UnsupportedSslMode(other.to_owned())),
        };
        let mut pg = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| ConfigError::InvalidUrl(e.into()))?;
        // What was left must hold no `sslmode` the reading above missed (its default is
        // `prefer`): were the two readings to differ, the string says two things, and TLS is
        // not decided by a guess.
        if pg.get_ssl_mode() != SslMode::Prefer {
            return Err(ConfigError::AmbiguousSslMode);
        }
        pg.ssl_mode(if tls.is_some() {
            SslMode::Require
        } else {
            SslMode::Disable
        });
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(2));
        }
        if pg.get_application_name().is_none() {
            pg.application_name("cloakroom");
        }
        Ok(Self {
            tls,
            ..Self::from_pg_config(pg)
        })
    }

    /// Trusts only the certificate authorities in `pem` (one or more PEM certificates) for the
    /// TLS that `sslmode` asks for, instead of the webpki roots: for a database whose
    /// certificate a private authority signed.
    pub fn with_root_certificates(mut self, pem: &[u8]) -> Result<Self, ConfigError> {
        use rustls_pki_types::pem::PemObject as _;
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err(ConfigError::NoCertificate);
        }
        if let Some(tls) = &mut self.tls {
            tls.private_roots = Some(certs);
        }
        Ok(self)
    }

    /// Whether connections use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A configuration from an already built `tokio_postgres::Config` (its connect timeout and
    /// application name are used as they are).
    pub fn from_pg_config(pg: tokio_postgres::Config) -> Self {
        Self {
            pg,
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: 16,
            wait_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// Keeps the tables in `schema` (default [`DEFAULT_SCHEMA`]), created if missing.
    pub fn with_schema(mut self, schema: &str) -> Result<Self, ConfigError> {
        let mut bytes = schema.bytes();
        let ok = schema.len() <= 63
            && bytes
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(ConfigError::InvalidSchema(schema.to_owned()));
        }
        self.schema = schema.to_owned();
        Ok(self)
    }

    /// At most this many connections (default 16).
    pub fn with_pool_size(mut self, size: usize) -> Result<Self, ConfigError> {
        if size == 0 {
            return Err(ConfigError::ZeroPoolSize);
        }
        self.pool_size = size;
        Ok(self)
    }

    /// How long to wait for a new TCP connection (default 2 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.pg
            .connect_timeout(positive("connect timeout", timeout)?);
        Ok(self)
    }

    /// How long to wait for a free pooled connection (default 2 s).
    pub fn with_wait_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.wait_timeout = positive("wait timeout", timeout)?;
        Ok(self)
    }

    /// The most one store call may take before it reports
    /// [`StoreError::Unavailable`](cloakroom_core::StoreError::Unavailable) (default 5 s).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.command_timeout = positive("command timeout", timeout)?;
        Ok(self)
    }

    /// The `application_name` the connections report (default `cloakroom`), which is what
    /// `pg_stat_activity` shows.
    #[must_use]
    pub fn with_application_name(mut self, name: &str) -> Self {
        self.pg.application_name(name);
        self
    }

    /// The schema in force.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

fn positive(what: &'static str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(ConfigError::ZeroDuration(what))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_schemas_are_checked() {
        let c = PostgresConfig::from_url("postgres://u:hunter2@localhost/db").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(PostgresConfig::from_url("postgres://[bad").is_err());
        assert!(c.clone().with_schema("cloakroom_test_1").is_ok());
        for bad in ["", "1abc", "Upper", "a-b", "a\"b", &"a".repeat(64)] {
            assert!(c.clone().with_schema(bad).is_err(), "{bad}");
        }
        assert!(c.clone().with_pool_size(0).is_err());
        assert!(c.with_command_timeout(Duration::ZERO).is_err());
    }

    #[test]
    fn tls_is_what_sslmode_asks_for_and_always_verified() {
        let plain = PostgresConfig::from_url("postgres://u@db/x").unwrap();
        assert!(!plain.uses_tls());
        assert_eq!(
            plain.pg.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable,
            "no sslmode: plain, as before TLS existed"
        );
        for url in [
            "postgres://u@db/x?sslmode=verify-full",
            "postgres://u@db/x?sslmode=require&connect_timeout=3",
            "host=db user=u sslmode=verify-full",
        ] {
            let c = PostgresConfig::from_url(url).unwrap();
            assert!(c.uses_tls(), "{url}");
            assert_eq!(
                c.pg.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            );
        }
        assert!(
            !PostgresConfig::from_url("postgres://u@db/x?sslmode=disable")
                .unwrap()
                .uses_tls()
        );
        for mode in ["prefer", "allow", "verify-ca", "bogus"] {
            let url = format!("postgres://u@db/x?sslmode={mode}");
            assert!(
                matches!(
                    PostgresConfig::from_url(&url),
                    Err(ConfigError::UnsupportedSslMode(m)) if m == mode
                ),
                "{mode}"
            );
        }
        // Only the parameter counts, never the same text in a password or a value.
        for url in [
            "postgres://u:sslmode=disable@db/x?sslmode=verify-full",
            "postgres://u@db/x?application_name=sslmode=disable&sslmode=verify-full",
            "host=db password='sslmode=disable x' sslmode=verify-full",
            "host=db password=a\\'b sslmode = 'verify-full'",
        ] {
            let c = PostgresConfig::from_url(url).unwrap();
            assert!(c.uses_tls(), "{url}");
        }
        for url in [
            "postgres://u:sslmode=verify-full@db/x",
            "host=db password='sslmode=verify-full'",
        ] {
            assert!(!PostgresConfig::from_url(url).unwrap().uses_tls(), "{url}");
        }
        // Nothing the pre-parser misreads may leave tokio-postgres's TLS choice overridden by a
        // plain connection: a raw '?' in a password, an escaped space in a value.
        for url in [
            "postgres://u:pa?ss@db/x?sslmode=require",
            "sslmode=require application_name=x\\ sslmode=disable",
        ] {
            assert!(
                PostgresConfig::from_url(url).map_or(true, |c| c.uses_tls()),
                "{url} asked for TLS and got a plain connection"
            );
        }
        // The last of repeated parameters wins, as in libpq.
        assert!(
            !PostgresConfig::from_url("postgres://u@db/x?sslmode=verify-full&sslmode=disable")
                .unwrap()
                .uses_tls()
        );
        assert_eq!(
            take_ssl_mode("host=db password='a b' sslmode=require port=5"),
            (
                Some("require".to_owned()),
                "host=db password='a b' port=5".to_owned()
            )
        );
        let tls = PostgresConfig::from_url("postgres://u@db/x?sslmode=verify-full").unwrap();
        assert!(matches!(
            tls.with_root_certificates(b"not a certificate"),
            Err(ConfigError::NoCertificate)
        ));
    }
}
