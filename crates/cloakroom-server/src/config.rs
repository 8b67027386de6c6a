//! Configuration: built-in defaults, then a TOML file (`--config`), then `CLOAKROOM_*`
//! environment variables, then command-line flags — each overriding the one before.
//!
//! Parsed once at start-up into a [`Settings`] whose fields are already the types the server
//! uses (an [`Origin`], socket addresses, CIDR ranges), so a bad value is a clear start-up
//! error naming the setting, never a panic or a surprise at the first request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cloakroom_core::origin::Origin;
use cloakroom_core::{Lifetime, Policy};

pub use crate::access::{AccessRuleConfig, AccessRules, DefaultPolicy, RulePolicy};
pub use crate::oidc::provider::{OidcProvider, OidcProviderConfig};
pub use crate::tokens::keys::KeyAlgorithm;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Where sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SessionStoreKind {
    /// SQLite in the data directory (the default): durable, one machine.
    Sqlite,
    /// Process memory: fast, lost on restart, one instance only.
    Memory,
    /// A standalone Redis (`redis_url`), shared by every instance.
    Redis,
    /// A Redis Cluster (`redis_cluster_nodes`), shared by every instance.
    RedisCluster,
    /// PostgreSQL (`postgres_url`), shared by every instance.
    Postgres,
}

/// Where accounts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AccountStoreKind {
    /// SQLite in the data directory (the default).
    Sqlite,
    /// PostgreSQL (`postgres_url`), shared by every instance.
    Postgres,
}

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SameSiteSetting {
    /// The default.
    Lax,
    /// Stricter: links from other sites land signed out.
    Strict,
}

/// How session checks use the in-process session cache (`session_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SessionCacheMode {
    /// Exact: this process is the store's only writer (SQLite, memory), so it sees every write
    /// itself. The default for those stores; it changes no guarantee.
    Exact,
    /// Kept exact by the shared store's invalidation feed (Redis pub/sub, PostgreSQL `NOTIFY`):
    /// a revocation made on another instance is refused here once delivered (milliseconds;
    /// see DESIGN.md). Opt-in for `redis`, `redis-cluster` and `postgres`.
    Push,
    /// No cache: every check reads the store.
    Off,
}

/// Who may create an account through `/signup` and `/api/signup`.
///
/// Left unset, sign-up is `open` when the public URL is on a loopback host (`localhost`,
/// `127.0.0.1`, `[::1]`: the quickstart, where only this machine's browsers can use the pages)
/// and `closed` everywhere else, so a server put on the network does not let strangers in
/// until its operator says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SignupMode {
    /// Administrators create accounts with `cloakroom user add`; sign-up answers 403 before it
    /// looks at the username, so it reveals nothing about which names exist.
    Closed,
    /// Anyone may sign up, throttled per client network. Usernames are then public by design:
    /// anyone can find out whether a name is taken by trying to register it, so sign-up
    /// answers 409 for a taken name (the throttle bounds how fast names can be probed).
    Open,
    /// Only with an invitation an administrator minted (`cloakroom user invite`): each code
    /// creates one account and expires. Without a valid code sign-up answers 403 before it
    /// looks at the username; with one, throttled per network like `open`, a taken name
    /// answers 409 (only invited people can probe names, and the inviter can tell them to
    /// pick another).
    Invite,
}

/// A table entry's flag, spelled from its key at compile time (`branding.logo_url` →
/// `branding-logo-url`): clap wants a `&'static str`, and a macro cannot re-spell an
/// identifier.
const fn flag_name<const N: usize>(key: &str) -> [u8; N] {
    let key = key.as_bytes();
    let mut flag = [0; N];
    let mut i = 0;
    while i < N && i < key.len() {
        flag[i] = match key[i] {
            b'_' | b'.' => b'-',
            b => b,
        };
        i += 1;
    }
    flag
}

/// A URL that may carry a password (`smtp_url`): `Debug` shows it with the password replaced,
/// so printing the configuration never prints the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL, password and all.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let user = u.username().to_owned();
                let _ = u.set_password(None);
                let _ = u.set_username("");
                let (scheme, rest) = u.as_str().split_once("://").unwrap_or(("", u.as_str()));
                write!(f, "SecretUrl({scheme}://{user}:[redacted]@{rest})")
            }
            Ok(u) => write!(f, "SecretUrl({u})"),
            Err(_) => f.write_str("SecretUrl([not a URL])"),
        }
    }
}

/// Defines every setting once: its key, type, default and documentation. From that one
/// definition come the TOML key (`listen`), the environment variable (`CLOAKROOM_LISTEN`), the
/// flag (`--listen`, with the doc comment as its help), [`RawConfig`] and its `Default`, and
/// [`SETTINGS`]. A setting cannot exist in one of those places and be missing from another.
///
/// Each entry: doc comment, `name: Type = default`, a sample non-default value as TOML text
/// (for the test that sets every setting each way), and optionally extra `#[arg(…)]`
/// attributes for the flag.
///
/// After the plain settings come tables, `[table: Table, TableFlags] { entries }`: a TOML
/// table (`[branding]` with `name = …`), whose entries are spelled `CLOAKROOM_BRANDING_NAME`
/// and `--branding-name`, and listed in [`SETTINGS`] as `branding.name`. Related settings
/// that only mean something together read better grouped in a file.
///
/// Last, `lists { name: Vec<Entry>; }`: arrays of tables (`[[oidc]]`), read from the file
/// only. An entry is several values that only mean something together and there may be any
/// number of them, which neither one variable nor one flag can spell; they are not in
/// [`SETTINGS`], and the example file documents them under their own test.
macro_rules! settings {
    (
        $(
            $(#[doc = $doc:literal])*
            $name:ident : $ty:ty = $default:expr, sample $sample:literal
            $(, #[arg($($arg:tt)*)])? ;
        )*
        $(
            [
                $(#[doc = $tdoc:literal])*
                $table:ident : $Table:ident, $TableFlags:ident
            ] {
                $(
                    $(#[doc = $fdoc:literal])*
                    $field:ident : $fty:ty = $fdefault:expr, sample $fsample:literal
                    $(, #[arg($($farg:tt)*)])? ;
                )*
            }
        )*
        $(
            lists {
                $(
                    $(#[doc = $ldoc:literal])*
                    $list:ident : Vec<$Entry:ty> ;
                )*
            }
        )?
    ) => {
        /// Raw configuration, as files, environment and flags spell it. Every field has a
        /// default.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct RawConfig {
            $( $(#[doc = $doc])* pub $name: $ty, )*
            $( $(#[doc = $tdoc])* pub $table: $Table, )*
            $($( $(#[doc = $ldoc])* pub $list: Vec<$Entry>, )*)?
        }

        impl Default for RawConfig {
            fn default() -> Self {
                Self {
                    $( $name: $default, )*
                    $( $table: $Table::default(), )*
                    $($( $list: Vec::new(), )*)?
                }
            }
        }

        $(
            $(#[doc = $tdoc])*
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            #[serde(default, deny_unknown_fields)]
            pub struct $Table {
                $( $(#[doc = $fdoc])* pub $field: $fty, )*
            }

            impl Default for $Table {
                fn default() -> Self {
                    Self { $( $field: $fdefault, )* }
                }
            }

            /// The flags of one settings table.
            #[derive(Debug, Clone, Default, Serialize, clap::Args)]
            pub struct $TableFlags {
                $(
                    $(#[doc = $fdoc])*
                    #[arg(
                        long = {
                            const KEY: &str = concat!(stringify!($table), ".", stringify!($field));
                            const FLAG: [u8; KEY.len()] = flag_name(KEY);
                            match std::str::from_utf8(&FLAG) {
                                Ok(flag) => flag,
                                Err(_) => KEY,
                            }
                        },
                        id = concat!(stringify!($table), ".", stringify!($field)),
                        global = true
                        $(, $($farg)*)?
                    )]
                    #[serde(skip_serializing_if = "Option::is_none")]
                    pub $field: Option<$fty>,
                )*
            }
        )*

        /// Settings given as command-line flags: only those present override the file and the
        /// environment.
        #[derive(Debug, Clone, Default, Serialize, clap::Args)]
        pub struct Flags {
            $(
                $(#[doc = $doc])*
                #[arg(long, global = true $(, $($arg)*)?)]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
            $(
                $(#[doc = $tdoc])*
                #[command(flatten)]
                pub $table: $TableFlags,
            )*
        }

        /// Every setting's key (`table.key` for a table's), with a sample non-default value
        /// written as TOML.
        pub const SETTINGS: &[(&str, &str)] = &[
            $( (stringify!($name), $sample), )*
            $( $( (concat!(stringify!($table), ".", stringify!($field)), $fsample), )* )*
        ];

        /// The arrays of tables (`[[oidc]]`): file-only, so not in [`SETTINGS`].
        pub const LISTS: &[&str] = &[ $($( stringify!($list), )*)? ];
    };
}

settings! {
    /// Address to listen on.
    listen: String = "127.0.0.1:8080".into(), sample r#""0.0.0.0:9000""#,
        #[arg(value_name = "ADDR")];
    /// Directory for the SQLite database and signing keys.
    data_dir: PathBuf = PathBuf::from("cloakroom-data"), sample r#""/var/lib/cloakroom""#,
        #[arg(value_name = "DIR")];
    /// The URL users reach the server at; CSRF checks compare against its origin. Unset:
    /// `http://localhost:<the listen port>`, for a server tried on this machine.
    public_url: Option<String> = None, sample r#""https://login.example.com""#,
        #[arg(num_args = 1, value_name = "URL")];
    /// Further origins allowed to send state-changing requests.
    allowed_origins: Vec<String> = Vec::new(), sample r#"["https://app.example.com"]"#,
        #[arg(value_delimiter = ',', value_name = "ORIGINS")];
    /// Where sessions are kept.
    session_store: SessionStoreKind = SessionStoreKind::Sqlite, sample r#""memory""#;
    /// Where accounts are kept.
    account_store: AccountStoreKind = AccountStoreKind::Sqlite, sample r#""postgres""#;
    /// Redis URL (`redis://…`) for `session_store = "redis"`.
    redis_url: Option<String> = None, sample r#""redis://127.0.0.1:6380""#,
        #[arg(num_args = 1, value_name = "URL")];
    /// Redis Cluster seed URLs for `session_store = "redis-cluster"`.
    redis_cluster_nodes: Vec<String> = Vec::new(), sample r#"["redis://127.0.0.1:7000"]"#,
        #[arg(value_delimiter = ',', value_name = "URLS")];
    /// Prefix of every Redis key Cloakroom writes.
    redis_key_prefix: String = cloakroom_redis::DEFAULT_KEY_PREFIX.into(), sample r#""staging:""#,
        #[arg(value_name = "PREFIX")];
    /// PostgreSQL URL for the `postgres` stores.
    postgres_url: Option<String> = None, sample r#""postgres://cloakroom@db/cloakroom""#,
        #[arg(num_args = 1, value_name = "URL")];
    /// PostgreSQL schema for Cloakroom's tables.
    postgres_schema: String = cloakroom_postgres::DEFAULT_SCHEMA.into(), sample r#""auth""#,
        #[arg(value_name = "SCHEMA")];
    /// PEM certificate(s) of the private authority that signed Redis's certificates, for
    /// `rediss://` URLs. Unset: the system's trust store. The certificate and host name are
    /// always checked.
    redis_ca_file: Option<PathBuf> = None, sample r#""/etc/cloakroom/store-ca.pem""#,
        #[arg(num_args = 1, value_name = "FILE")];
    /// PEM certificate(s) of the private authority that signed PostgreSQL's certificate, for
    /// `sslmode=verify-full` (or `require`) in `postgres_url`. Unset: the webpki roots. The
    /// certificate and host name are always checked.
    postgres_ca_file: Option<PathBuf> = None, sample r#""/etc/cloakroom/store-ca.pem""#,
        #[arg(num_args = 1, value_name = "FILE")];
    /// Proxies whose forwarding headers are believed (CIDR ranges or addresses): the request
    /// they describe for forward auth (`X-Original-*`, `X-Forwarded-Method/-Proto/-Host/-Uri`)
    /// and the client address (`X-Forwarded-For`). The default is loopback; a list given
    /// replaces it (include `127.0.0.1` if the proxy also runs on this host).
    trusted_proxies: Vec<String> = vec!["127.0.0.0/8".into(), "::1".into()],
        sample r#"["10.0.0.0/8"]"#, #[arg(value_delimiter = ',', value_name = "CIDRS")];
    /// Origins of the apps behind the proxy (`https://grafana.example.com`, or
    /// `https://*.example.com` for any one label there): forward auth answers, and mints service
    /// JWTs, only for these and the public URL's own origin; any other host gets 403.
    app_origins: Vec<String> = Vec::new(), sample r#"["https://grafana.example.com"]"#,
        #[arg(value_delimiter = ',', value_name = "ORIGINS")];
    /// One sign-in for every app under a domain (`example.com`): the session cookie becomes
    /// `__Secure-<cookie_name>` with `Domain=<cookie_domain>`, sent to every subdomain, the
    /// public URL is the portal the apps send users to, and `app_origins` defaults to
    /// `https://*.<cookie_domain>`. Unset: a `__Host-` cookie for the public URL's host alone
    /// — the default, since any subdomain (a taken-over one too) receives a domain cookie.
    cookie_domain: Option<String> = None, sample r#""localhost""#,
        #[arg(num_args = 1, value_name = "DOMAIN")];
    /// Session cookie name (the `__Host-` prefix is always kept).
    cookie_name: String = cloakroom_axum::DEFAULT_COOKIE_NAME.into(), sample r#""ticket""#,
        #[arg(value_name = "NAME")];
    /// Session cookie `SameSite`.
    same_site: SameSiteSetting = SameSiteSetting::Lax, sample r#""strict""#;
    /// Idle timeout of an ordinary session, in seconds.
    idle_timeout_secs: u64 = Lifetime::STANDARD.idle.as_secs(), sample "600",
        #[arg(value_name = "SECS")];
    /// Absolute lifetime of an ordinary session, in seconds.
    absolute_timeout_secs: u64 = Lifetime::STANDARD.absolute.as_secs(), sample "3600",
        #[arg(value_name = "SECS")];
    /// Idle timeout of a "remember me" session, in seconds.
    remember_idle_timeout_secs: u64 = Lifetime::REMEMBER_ME.idle.as_secs(), sample "86400",
        #[arg(value_name = "SECS")];
    /// Absolute lifetime of a "remember me" session, in seconds.
    remember_absolute_timeout_secs: u64 = Lifetime::REMEMBER_ME.absolute.as_secs(),
        sample "604800", #[arg(value_name = "SECS")];
    /// Minimum seconds between two last-seen writes of a session.
    touch_interval_secs: u64 = 60, sample "30", #[arg(value_name = "SECS")];
    /// The in-process session cache: `exact` (the default for the sqlite and memory stores,
    /// whose only writer is this server), `push` (opt-in for redis, redis-cluster and
    /// postgres: kept exact by the store's invalidation feed) or `off` (every check reads the
    /// store; the default for the shared stores).
    session_cache: Option<SessionCacheMode> = None, sample r#""off""#,
        #[arg(num_args = 1, value_name = "MODE")];
    /// Most sessions the session cache keeps.
    session_cache_max_entries: usize = 100_000, sample "20000", #[arg(value_name = "N")];
    /// Most bytes the session cache keeps, by each session's estimated size.
    session_cache_max_bytes: u64 = 64 << 20, sample "16777216", #[arg(value_name = "BYTES")];
    /// Who may create accounts: `closed` (administrators, with `cloakroom user add`), `open`
    /// (anyone, throttled per network; taken usernames are then public) or `invite` (whoever
    /// holds a single-use code from `cloakroom user invite`). Default: `open` when the public
    /// URL is on a loopback host, else `closed`.
    signup: Option<SignupMode> = None, sample r#""closed""#,
        #[arg(num_args = 1, value_name = "MODE")];
    /// Concurrent password hashes (default: half the CPUs, at least one).
    hash_workers: Option<usize> = None, sample "3", #[arg(num_args = 1, value_name = "N")];
    /// Signature algorithm for new service-JWT keys.
    jwt_algorithm: KeyAlgorithm = KeyAlgorithm::EdDsa, sample r#""es256""#;
    /// Lifetime of service JWTs, in seconds (at most 300).
    jwt_ttl_secs: u64 = 60, sample "120", #[arg(value_name = "SECS")];
    /// A file of secrets, one per line, newest first (blank lines and `#` comments ignored),
    /// each at least 32 characters; or the list in the environment instead, as
    /// `CLOAKROOM_SECRETS='["<secret>", …]'`. Required with `account_store = "postgres"`: the
    /// signing keys then live in PostgreSQL, shared by every instance, sealed with the first
    /// secret (the others still open keys sealed before a secret rotation).
    secrets_file: Option<PathBuf> = None, sample r#""/run/credentials/cloakroom.service/secrets""#,
        #[arg(num_args = 1, value_name = "FILE")];
    /// Rotate the service-JWT signing key every this many days, once for all instances (with
    /// the same overlap as `cloakroom keys rotate`). Unset: keys rotate only by that command.
    key_rotation_days: Option<u64> = None, sample "90",
        #[arg(num_args = 1, value_name = "DAYS")];
    /// A fixed `aud` for service JWTs instead of the forwarded app's origin.
    jwt_audience: Option<String> = None, sample r#""https://api.example.com""#,
        #[arg(num_args = 1, value_name = "AUD")];
    /// Hosts the login page may send users back to (`rd`; `.example.com`: every host under
    /// it); default: the public URL's host (and with `cookie_domain`, every host under it).
    redirect_hosts: Vec<String> = Vec::new(), sample r#"["app.example.com"]"#,
        #[arg(value_delimiter = ',', value_name = "HOSTS")];
    /// Forward auth when no `[[access_rules]]` rule matches: `allow` any signed-in user, or
    /// `deny`.
    default_policy: DefaultPolicy = DefaultPolicy::Allow, sample r#""deny""#;
    /// The group whose members may use the admin API (`/api/admin/…`).
    admin_group: String = "cloakroom-admins".into(), sample r#""ops""#,
        #[arg(value_name = "GROUP")];
    /// Refuse unsafe forwarded requests that a browser marked cross-site.
    forward_auth_csrf: bool = true, sample "false",
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")];
    /// Log as JSON lines.
    json_logs: bool = false, sample "true",
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")];
    /// `Strict-Transport-Security` max-age in seconds, sent when the public URL is `https://`
    /// (0: no HSTS header).
    hsts_max_age_secs: u64 = 365 * 24 * 3600, sample "600", #[arg(value_name = "SECS")];
    /// Seconds a client has to send a request's headers, counted from the connection's start
    /// or the end of the previous response (so it also closes idle kept-alive connections).
    header_read_timeout_secs: u64 = 10, sample "5", #[arg(value_name = "SECS")];
    /// Seconds a request may take from its headers to its response before it is answered 503.
    request_timeout_secs: u64 = 30, sample "20", #[arg(value_name = "SECS")];
    /// Connections served at once; further ones wait in the kernel's backlog.
    max_connections: usize = 4096, sample "100", #[arg(value_name = "N")];
    /// Serve `/metrics` and `/readyz` on this address instead (for example `127.0.0.1:9090`),
    /// and no longer on `listen`. Unset: they are on `listen`, reachable by every client.
    metrics_listen: Option<String> = None, sample r#""127.0.0.1:9090""#,
        #[arg(num_args = 1, value_name = "ADDR")];
    /// Sign-ups from one network (an IPv4 address, an IPv6 /64) before each further one
    /// waits (1 s, doubling up to 15 minutes); forgotten after a quiet hour.
    signup_limit_per_network: u32 = 10, sample "3", #[arg(value_name = "N")];
    /// Where mail is sent: `smtps://user:password@host` (TLS, port 465), `smtp+starttls://…`
    /// (STARTTLS required, port 587) or `smtp://host:port` (no TLS: a relay on this machine).
    /// Unset: mail is not sent but written to the log, links included (for trying Cloakroom
    /// out only).
    smtp_url: Option<SecretUrl> = None, sample r#""smtps://mailer:secret@mail.example.com""#,
        #[arg(num_args = 1, value_name = "URL")];
    /// The `From` of every message (`Name <address>` or an address); required with `smtp_url`.
    mail_from: Option<String> = None, sample r#""Example login <login@example.com>""#,
        #[arg(num_args = 1, value_name = "MAILBOX")];
    /// Seconds each SMTP command may take (an attempt may take four times that).
    smtp_timeout_secs: u64 = 30, sample "10", #[arg(value_name = "SECS")];
    /// Seconds before a failed delivery is tried again; each further retry waits twice as long,
    /// up to an hour.
    mail_retry_secs: u64 = 30, sample "5", #[arg(value_name = "SECS")];
    /// Delivery attempts per message before it is marked failed (kept for `cloakroom mail list`).
    mail_max_attempts: u32 = 10, sample "3", #[arg(value_name = "N")];
    /// A directory of mail templates replacing the built-in ones: `<kind>.txt` (a `Subject:`
    /// line, a blank line, the body) and `<kind>.html`, with `{{ name }}` placeholders; checked
    /// at start-up.
    mail_templates_dir: Option<PathBuf> = None, sample r#""/etc/cloakroom/mail""#,
        #[arg(num_args = 1, value_name = "DIR")];
    /// Lifetime of password-reset links, in seconds (at most 1800).
    password_reset_ttl_secs: u64 = 1800, sample "900", #[arg(value_name = "SECS")];
    /// Sign-in needs a verified email address: sign-up then asks for an address, and a
    /// sign-in before its link is followed is refused with a way to have the link sent again.
    require_verified_email: bool = false, sample "true",
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")];
    /// Passkeys sign in on their own, without the password ("Sign in with a passkey" on the
    /// login page), and are registered as discoverable for it. Passkeys are a second factor
    /// either way. Needs a public URL on a domain name (WebAuthn refuses IP addresses).
    passkey_login: bool = false, sample "true",
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")];
    /// **Dangerous.** Allow an `http://` public URL on a host other than loopback: the session
    /// cookie then travels in clear text (and browsers refuse `__Host-` cookies over it).
    danger_allow_http: bool = false, sample "true",
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")];
    /// A first sign-in through an OpenID provider (`[[oidc]]`) with an identity no account is
    /// linked to creates an account — where sign-up is open (`signup = "open"`): a closed or
    /// invitation-only server never lets a stranger in through a provider. `false`: such a
    /// sign-in is always refused with a page saying so.
    oidc_signup: bool = true, sample "false",
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")];
    /// A first sign-in through an OpenID provider signs in to the local account with the same
    /// email address — and links it — when both the provider and this server have that address
    /// verified. Off: such a user links the provider from "Sign-in methods" while signed in.
    oidc_link_by_email: bool = false, sample "true",
        #[arg(num_args = 0..=1, require_equals = true, default_missing_value = "true")];

    [
        /// How the pages look, so they fit the site they protect: `[branding]` in a file.
        branding: Branding, BrandingFlags
    ] {
        /// The product name the pages show in their header and titles.
        name: String = "Cloakroom".into(), sample r#""Acme Sign-in""#,
            #[arg(value_name = "NAME")];
        /// A logo shown before the name: an `https://` URL (its origin is added to the pages'
        /// Content-Security-Policy `img-src`) or a path on this host (`/assets/logo.svg`).
        logo_url: Option<String> = None, sample r#""https://cdn.example.com/logo.svg""#,
            #[arg(num_args = 1, value_name = "URL")];
        /// A stylesheet loaded after the built-in one, read once at start-up (the server does
        /// not start without it) and served at `/static/branding.css`.
        css_file: Option<PathBuf> = None, sample r#""/etc/cloakroom/branding.css""#,
            #[arg(num_args = 1, value_name = "FILE")];
    }

    lists {
        /// OpenID providers to sign in with (`[[oidc]]` tables; see [`OidcProviderConfig`]).
        oidc: Vec<OidcProviderConfig>;
        /// Forward-auth access rules (`[[access_rules]]` tables, first match wins; see
        /// [`AccessRuleConfig`]).
        access_rules: Vec<AccessRuleConfig>;
    }
}

/// The origins of the apps behind the proxy (`app_origins`), plus the public URL's own.
///
/// An entry is an exact origin (`https://grafana.example.com`) or a wildcard for exactly one
/// DNS label (`https://*.example.com` matches `https://grafana.example.com`, not
/// `https://example.com` nor `https://a.b.example.com`) — the rule TLS wildcard certificates
/// follow (RFC 6125 §6.4.3), so an operator's mental model of "*.example.com" carries over.
/// Scheme and port are part of the match. A wildcard matches only whole labels at a dot
/// boundary: never `https://evilexample.com` nor `https://example.com.evil.net`.
#[derive(Debug, Clone)]
pub struct AppOrigins {
    public: Origin,
    exact: Vec<Origin>,
    /// `(scheme "://", "." suffix)`: `("https://", ".example.com")`, port included if any.
    wildcards: Vec<(String, String)>,
}

impl AppOrigins {
    /// Reads `app_origins` entries; `public` (the public URL's origin) is always allowed.
    pub fn parse(entries: &[String], public: Origin) -> Result<Self, String> {
        let mut exact = Vec::new();
        let mut wildcards = Vec::new();
        for entry in entries {
            let Some((scheme, rest)) = entry.split_once("://*.") else {
                if entry.contains('*') {
                    return Err(format!(
                        "{entry:?}: `*` may only be the whole first label (https://*.example.com)"
                    ));
                }
                exact.push(Origin::parse(entry).map_err(|e| format!("{entry:?}: {e}"))?);
                continue;
            };
            // Parse the part after the wildcard as an origin, so that case, IDNA and default
            // ports are normalised exactly as they are for the requests it is compared with.
            let base = Origin::parse(&format!("{scheme}://{rest}"))
                .map_err(|e| format!("{entry:?}: {e}"))?;
            let host = &base.as_str()[scheme.len() + 3..];
            let name = host.split(':').next().unwrap_or_default();
            if name.starts_with('[')
                || name.parse::<std::net::Ipv4Addr>().is_ok()
                || !name.contains('.')
                || name.contains('*')
            {
                return Err(format!(
                    "{entry:?}: a wildcard needs a domain of at least two labels after `*.`"
                ));
            }
            wildcards.push((format!("{scheme}://"), format!(".{host}")));
        }
        Ok(Self {
            public,
            exact,
            wildcards,
        })
    }

    /// Whether `origin` is one of the apps (or the public URL's origin).
    pub fn allows(&self, origin: &Origin) -> bool {
        let o = origin.as_str();
        *origin == self.public
            || self.exact.contains(origin)
            || self.wildcards.iter().any(|(scheme, suffix)| {
                o.strip_prefix(scheme.as_str())
                    .and_then(|h| h.strip_suffix(suffix.as_str()))
                    .is_some_and(|label| {
                        // One DNS label: letters, digits and hyphens, at most 63 (RFC 1035).
                        (1..=63).contains(&label.len())
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
            })
    }

    /// Whether only the public URL's origin is allowed (`app_origins` unset).
    pub fn is_public_only(&self) -> bool {
        self.exact.is_empty() && self.wildcards.is_empty()
    }
}

/// Checks `cookie_domain`: a DNS name of at least two labels (`example.com`; a bare `com` would
/// hand the cookie to every site under it, were browsers not to refuse it), lower-cased, that
/// the public URL's host is on — the portal must receive the cookie it sets.
fn cookie_domain(text: &str, public: &Origin) -> Result<String, ConfigError> {
    let domain = text.trim().trim_start_matches('.').to_ascii_lowercase();
    if !crate::access::is_host_name(&domain) || !(domain.contains('.') || domain == "localhost") {
        return Err(invalid(
            "cookie_domain",
            format!("{text:?} is not a domain name of at least two labels, such as example.com"),
        ));
    }
    let host = url::Url::parse(public.as_str())
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host != domain && !host.ends_with(&format!(".{domain}")) {
        return Err(invalid(
            "cookie_domain",
            format!(
                "{domain:?} does not contain the public URL's host {host:?}: the portal must \
                 receive the cookie it sets (public_url = \"https://auth.{domain}\", say)"
            ),
        ));
    }
    Ok(domain)
}

/// A configuration problem, naming the setting (and, for a file, the file).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file, environment or flags could not be read into settings. Figment's own message
    /// names keys as `default.listen` (its profile) and says the file's path as given; this
    /// one names the setting, the file's absolute path or the variable, each problem once.
    #[error("{}", describe(.0))]
    Load(Box<figment::Error>),
    /// A setting has a value of the right type but an unusable content.
    #[error("configuration: `{setting}` {problem}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A setting's value was refused by the component it configures, which says why.
    #[error("configuration: `{setting}`")]
    Refused {
        /// The setting's name.
        setting: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One line per problem figment found: where (the file, the variable), which setting, what.
fn describe(error: &figment::Error) -> String {
    use figment::Source;
    use figment::error::Kind;
    let lines: Vec<String> = error
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let place = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(Source::File(path)) => format!("configuration file {}", path.display()),
                _ if e
                    .metadata
                    .as_ref()
                    .is_some_and(|m| m.name.contains("environment")) =>
                {
                    format!(
                        "environment variable CLOAKROOM_{}",
                        key.to_ascii_uppercase()
                    )
                }
                _ => "configuration".to_owned(),
            };
            let what = match &e.kind {
                Kind::UnknownField(field, _) if field == "session_cache_ms" => {
                    SESSION_CACHE_MS_REPLACED.to_owned()
                }
                Kind::UnknownField(field, _) => format!(
                    "unknown setting `{field}` (`cloakroom serve --help` and \
                     examples/cloakroom.toml list them)"
                ),
                Kind::UnknownVariant(value, expected) => format!(
                    "`{value}` is not one of {}",
                    expected
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                // TOML's parser says where in the file, with the line quoted.
                Kind::Message(message) => message.trim_end().to_owned(),
                kind => kind.to_string(),
            };
            let environment = place.starts_with("environment");
            if key.is_empty() || environment || matches!(e.kind, Kind::UnknownField(..)) {
                format!("{place}: {what}")
            } else {
                format!("{place}: `{key}`: {what}")
            }
        })
        .collect();
    lines.join("\n")
}

fn invalid(setting: &'static str, problem: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        setting,
        problem: problem.to_string(),
    }
}

fn refused(
    setting: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> ConfigError {
    ConfigError::Refused {
        setting,
        source: Box::new(e),
    }
}

/// Checked settings, ready to use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the database and keys.
    pub data_dir: PathBuf,
    /// The public origin.
    pub public_origin: Origin,
    /// Further origins for state-changing requests.
    pub allowed_origins: Vec<Origin>,
    /// Where sessions are kept.
    pub session_store: SessionStoreKind,
    /// Where accounts are kept.
    pub account_store: AccountStoreKind,
    /// Redis connection, when sessions are in Redis.
    pub redis: Option<cloakroom_redis::RedisConfig>,
    /// PostgreSQL connection, when a store is in PostgreSQL.
    pub postgres: Option<cloakroom_postgres::PostgresConfig>,
    /// Trusted proxy ranges.
    pub trusted_proxies: Vec<IpNet>,
    /// The apps forward auth serves.
    pub app_origins: AppOrigins,
    /// The domain the session cookie is for, when one sign-in serves its subdomains.
    pub cookie_domain: Option<String>,
    /// Cookie name.
    pub cookie_name: String,
    /// Cookie `SameSite`.
    pub same_site: cloakroom_axum::SameSite,
    /// Session lifecycle policy.
    pub policy: Policy,
    /// The session cache's mode, resolved for the session store.
    pub session_cache: SessionCacheMode,
    /// The session cache's bounds.
    pub session_cache_limits: cloakroom_core::CacheLimits,
    /// Who may create accounts.
    pub signup: SignupMode,
    /// Concurrent password hashes.
    pub hash_workers: usize,
    /// Algorithm of new service-JWT keys.
    pub jwt_algorithm: KeyAlgorithm,
    /// Service-JWT lifetime.
    pub jwt_ttl: Duration,
    /// The operator's secrets from `CLOAKROOM_SECRETS` (or set by the embedding program), if
    /// given; else they are read from `secrets_file` when the stores open.
    pub secrets: Option<crate::secrets::Secrets>,
    /// The file of secrets, read when the stores open.
    pub secrets_file: Option<PathBuf>,
    /// The private CA for `rediss://`, read when the stores open.
    pub redis_ca_file: Option<PathBuf>,
    /// The private CA for PostgreSQL's TLS, read when the stores open.
    pub postgres_ca_file: Option<PathBuf>,
    /// How often the service-JWT key rotates by itself, if at all.
    pub key_rotation: Option<Duration>,
    /// Fixed service-JWT audience, if configured.
    pub jwt_audience: Option<String>,
    /// Hosts `rd` may point at.
    pub redirect_hosts: Vec<String>,
    /// Forward-auth access rules, compiled.
    pub access_rules: std::sync::Arc<AccessRules>,
    /// Members may use the admin API.
    pub admin_group: cloakroom_core::accounts::GroupName,
    /// Forward-auth CSRF check.
    pub forward_auth_csrf: bool,
    /// JSON logs.
    pub json_logs: bool,
    /// `Strict-Transport-Security` max-age, when the public URL is https.
    pub hsts_max_age: Option<Duration>,
    /// Time to send a request's head (also the idle keep-alive bound).
    pub header_read_timeout: Duration,
    /// Time from a request's head to its response.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Sign-ups per network before the next one waits.
    pub signup_limit_per_network: u32,
    /// Where `/metrics` and `/readyz` are served instead of `listen`, if set.
    pub metrics_listen: Option<SocketAddr>,
    /// Mail: transport, sender, retries, templates.
    pub mail: crate::mail::MailSettings,
    /// How long a password-reset link lives.
    pub password_reset_ttl: Duration,
    /// Whether sign-in needs a verified email address.
    pub require_verified_email: bool,
    /// Whether a passkey signs in without the password.
    pub passkey_login: bool,
    /// How the pages look.
    pub branding: BrandingSettings,
    /// OpenID providers, in the order the file lists them (the login page's order).
    pub oidc: Vec<OidcProvider>,
    /// Whether a first OpenID sign-in creates an account.
    pub oidc_signup: bool,
    /// Whether a first OpenID sign-in links to the account with the same verified address.
    pub oidc_link_by_email: bool,
}

impl Settings {
    /// What this configuration shares with other instances only in part, as warnings for the
    /// start-up log: half-shared stores are how one misconfigured instance behind a load
    /// balancer signs users out at random, or serves a JWKS of its own.
    pub fn sharing_warnings(&self) -> Vec<String> {
        let shared_sessions = !matches!(
            self.session_store,
            SessionStoreKind::Sqlite | SessionStoreKind::Memory
        );
        let shared_accounts = self.account_store == AccountStoreKind::Postgres;
        let mut out = Vec::new();
        if shared_sessions && !shared_accounts {
            out.push(
                "the sessions are in a shared store, but the accounts and the signing keys are \
                 in this instance's data directory: other instances on the same sessions do \
                 not know these accounts and serve another JWKS. With more than one instance, \
                 put the accounts in PostgreSQL (account_store = \"postgres\")"
                    .to_owned(),
            );
        }
        if shared_accounts && !shared_sessions {
            out.push(
                "the accounts are shared in PostgreSQL, but the sessions are kept by this \
                 instance alone: behind a load balancer a user signed in here is signed out \
                 on the others, and a revocation there never reaches these sessions. With more \
                 than one instance, put the sessions in Redis or PostgreSQL"
                    .to_owned(),
            );
        }
        out
    }
}

/// The checked `[branding]` settings.
#[derive(Debug, Clone)]
pub struct BrandingSettings {
    /// The product name.
    pub name: String,
    /// The logo, as the pages link it: an `https://` URL or a path on this host.
    pub logo_url: Option<String>,
    /// The logo's origin when it is on another host, for the pages' `img-src`.
    pub logo_origin: Option<Origin>,
    /// The operator's stylesheet (read at start-up).
    pub css_file: Option<PathBuf>,
}

impl Branding {
    /// Checks the product name and the logo's URL. The logo is an `https://` URL or a path
    /// on this host — never `http://` (mixed content), `data:` or `javascript:` (which the
    /// pages' CSP would block anyway, and which have no business in a setting), nor `//host`
    /// (another host, without saying how to reach it).
    fn checked(&self) -> Result<BrandingSettings, ConfigError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(invalid(
                "branding.name",
                "must be 1 to 64 characters, none of them control characters",
            ));
        }
        let (logo_url, logo_origin) = match self.logo_url.as_deref().map(str::trim) {
            None | Some("") => (None, None),
            Some(text) if text.starts_with('/') => {
                let path = crate::web::redirect::ReturnTo::checked(text, &[]).ok_or_else(|| {
                    invalid(
                        "branding.logo_url",
                        format!("{text:?} is not a path on this host"),
                    )
                })?;
                (Some(path.as_str().to_owned()), None)
            }
            Some(text) => {
                let url = url::Url::parse(text)
                    .ok()
                    .filter(|u| {
                        u.scheme() == "https"
                            && u.host_str().is_some()
                            && u.username().is_empty()
                            && u.password().is_none()
                    })
                    .ok_or_else(|| {
                        invalid(
                            "branding.logo_url",
                            format!(
                                "{text:?} must be an https:// URL or a path on this host \
                                 starting with /"
                            ),
                        )
                    })?;
                let origin = Origin::parse(&url.origin().ascii_serialization())
                    .map_err(|e| invalid("branding.logo_url", format!("{text:?}: {e}")))?;
                (Some(url.to_string()), Some(origin))
            }
        };
        Ok(BrandingSettings {
            name: name.to_owned(),
            logo_url,
            logo_origin,
            css_file: self.css_file.clone(),
        })
    }
}

/// Whether browsers treat `origin` as a secure context over plain http (see
/// [`is_loopback_host`]).
fn is_loopback(origin: &Origin) -> bool {
    url::Url::parse(origin.as_str())
        .ok()
        .is_some_and(|u| u.host().is_some_and(|h| is_loopback_host(&h)))
}

/// `localhost`, its subdomains (RFC 6761) and loopback addresses: the hosts browsers treat as
/// secure contexts over plain http, and that only reach this machine.
pub(crate) fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// A listen address: an IP address and port, or `localhost:PORT` (the loopback address, as a
/// newcomer would write it).
fn parse_listen(text: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    text.parse().or_else(|e| match text.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| e),
        _ => Err(e),
    })
}

/// What `session_cache_ms`, the polling near-cache's setting, is refused with: it promised a
/// revocation elsewhere would be seen "within N ms", which the push cache replaced with a
/// measured bound, and on SQLite with no delay at all.
const SESSION_CACHE_MS_REPLACED: &str = "`session_cache_ms` (the polling near-cache) was \
    replaced by `session_cache` = \"exact\" | \"push\" | \"off\" (flag --session-cache, \
    variable CLOAKROOM_SESSION_CACHE): exact is the default for sqlite and memory, push keeps a \
    cache exact on redis and postgres";

/// `CLOAKROOM_*` environment variables that name no setting (a typo such as
/// `CLOAKROOM_PUBLIK_URL` would otherwise be ignored in silence). Variables of other tools
/// (`CLOAKROOM_TEST_*`, `CLOAKROOM_REQUIRE_SERVICES`) and those that are not settings
/// (`CLOAKROOM_CONFIG`, `CLOAKROOM_LOG`, `CLOAKROOM_SECRETS`) are not reported.
pub fn unknown_environment() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            name.strip_prefix("CLOAKROOM_").is_some_and(|rest| {
                setting_of_env(rest).is_none()
                    && !matches!(rest, "CONFIG" | "LOG" | "REQUIRE_SERVICES" | "SECRETS")
                    && !rest.starts_with("TEST_")
                    && !crate::oidc::provider::is_secret_variable(rest)
            })
        })
        .collect()
}

/// A duration setting that must be at least one second.
fn nonzero_secs(setting: &'static str, v: u64) -> Result<Duration, ConfigError> {
    if v == 0 {
        Err(invalid(setting, "must be at least 1 second"))
    } else {
        Ok(Duration::from_secs(v))
    }
}

/// The setting a `CLOAKROOM_*` variable names, from the rest of its name (`BRANDING_NAME` →
/// `branding.name`), if any.
fn setting_of_env(rest: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|(key, _)| *key)
        .find(|key| key.replace('.', "_").eq_ignore_ascii_case(rest))
}

impl RawConfig {
    /// `session_cache`, with its default for the session store, checked against it: `exact`
    /// needs a store this process alone writes to, `push` a store with an invalidation feed.
    fn session_cache_mode(&self) -> Result<SessionCacheMode, ConfigError> {
        let single_writer = matches!(
            self.session_store,
            SessionStoreKind::Sqlite | SessionStoreKind::Memory
        );
        match (self.session_cache, single_writer) {
            (None, true) => Ok(SessionCacheMode::Exact),
            (None, false) => Ok(SessionCacheMode::Off),
            (Some(SessionCacheMode::Exact), false) => Err(invalid(
                "session_cache",
                "`exact` needs a store this server alone writes to (sqlite, memory); with a \
                 shared store use `push`, which the store's invalidation feed keeps exact",
            )),
            (Some(SessionCacheMode::Push), true) => Err(invalid(
                "session_cache",
                "`push` is for the shared stores (redis, redis-cluster, postgres); sqlite and \
                 memory have one writer, so their cache is `exact`",
            )),
            (Some(mode), _) => Ok(mode),
        }
    }

    /// Layers defaults, an optional TOML file, `CLOAKROOM_*` variables and `overrides` (the
    /// command-line flags that were given).
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &impl Serialize,
    ) -> Result<Self, ConfigError> {
        if std::env::var_os("CLOAKROOM_SESSION_CACHE_MS").is_some() {
            return Err(invalid(
                "session_cache_ms",
                format!(
                    "(environment variable CLOAKROOM_SESSION_CACHE_MS): {SESSION_CACHE_MS_REPLACED}"
                ),
            ));
        }
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(path) = file {
            // Absolute, so messages name the file whatever the working directory; exact,
            // because `Toml::file` would search the parent directories for a relative name.
            let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            if !path.is_file() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            // Only our own keys: `CLOAKROOM_TEST_*` and friends belong to other tools. A
            // table's key nests (`CLOAKROOM_BRANDING_NAME` → `branding.name`).
            .merge(Env::prefixed("CLOAKROOM_").filter_map(|rest| {
                setting_of_env(rest.as_str()).map(figment::value::Uncased::from)
            }))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks every value and converts it to the type the server uses.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let listen = parse_listen(&self.listen)
            .map_err(|e| invalid("listen", format!("{:?}: {e}", self.listen)))?;
        // Unset, the public URL follows the listen port: `--listen 127.0.0.1:18789` alone must
        // not leave the pages expecting requests from `localhost:8080` (every form would then
        // be refused as cross-origin).
        let public_url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://localhost:{}", listen.port()));
        let public_origin = Origin::parse(&public_url)
            .map_err(|e| invalid("public_url", format!("{public_url:?}: {e}")))?;
        if !public_origin.is_https() && !is_loopback(&public_origin) && !self.danger_allow_http {
            return Err(invalid(
                "public_url",
                format!(
                    "{:?} is plain http on a host other than loopback: browsers refuse the \
                     session's __Host- cookie there, or send it in clear text; serve it over \
                     https, or set danger_allow_http = true",
                    public_url
                ),
            ));
        }
        let header_read_timeout =
            nonzero_secs("header_read_timeout_secs", self.header_read_timeout_secs)?;
        let request_timeout = nonzero_secs("request_timeout_secs", self.request_timeout_secs)?;
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        let metrics_listen = self
            .metrics_listen
            .as_deref()
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|e| invalid("metrics_listen", format!("{a:?}: {e}")))
            })
            .transpose()?;
        // HSTS only means something over https; over http a browser ignores it.
        let hsts_max_age = (public_origin.is_https() && self.hsts_max_age_secs > 0)
            .then(|| Duration::from_secs(self.hsts_max_age_secs));
        let allowed_origins = self
            .allowed_origins
            .iter()
            .map(|o| {
                Origin::parse(o).map_err(|e| invalid("allowed_origins", format!("{o:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|e| invalid("trusted_proxies", format!("{p:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let name = self
            .cookie_name
            .strip_prefix(cloakroom_axum::HOST_PREFIX)
            .unwrap_or(&self.cookie_name);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "cookie_name",
                "may only contain letters, digits, '-', '_' and '.'",
            ));
        }
        let secs = nonzero_secs;
        let standard = Lifetime {
            idle: secs("idle_timeout_secs", self.idle_timeout_secs)?,
            absolute: secs("absolute_timeout_secs", self.absolute_timeout_secs)?,
        };
        let remember_me = Lifetime {
            idle: secs(
                "remember_idle_timeout_secs",
                self.remember_idle_timeout_secs,
            )?,
            absolute: secs(
                "remember_absolute_timeout_secs",
                self.remember_absolute_timeout_secs,
            )?,
        };
        let policy = Policy::default()
            .with_standard(standard)
            .with_remember_me(remember_me)
            .with_touch_interval(Duration::from_secs(self.touch_interval_secs));
        let redis = match self.session_store {
            SessionStoreKind::Redis => {
                let url = self.redis_url.as_deref().ok_or_else(|| {
                    invalid("redis_url", "is required when session_store is redis")
                })?;
                Some(
                    cloakroom_redis::RedisConfig::standalone(url)
                        .map_err(|e| refused("redis_url", e))?,
                )
            }
            SessionStoreKind::RedisCluster => {
                if self.redis_cluster_nodes.is_empty() {
                    return Err(invalid(
                        "redis_cluster_nodes",
                        "is required when session_store is redis-cluster",
                    ));
                }
                Some(
                    cloakroom_redis::RedisConfig::cluster(&self.redis_cluster_nodes)
                        .map_err(|e| refused("redis_cluster_nodes", e))?,
                )
            }
            _ => None,
        }
        .map(|c| {
            c.with_key_prefix(&self.redis_key_prefix)
                .map_err(|e| refused("redis_key_prefix", e))
        })
        .transpose()?;
        if self.redis_ca_file.is_some() {
            let urls: Vec<&str> = match self.session_store {
                SessionStoreKind::Redis => self.redis_url.iter().map(String::as_str).collect(),
                SessionStoreKind::RedisCluster => self
                    .redis_cluster_nodes
                    .iter()
                    .map(String::as_str)
                    .collect(),
                _ => Vec::new(),
            };
            // Unused (like redis_url) unless the sessions are in Redis.
            if !urls.iter().all(|u| u.starts_with("rediss://")) {
                return Err(invalid(
                    "redis_ca_file",
                    "is for TLS: the Redis URLs must all be rediss://",
                ));
            }
        }
        let needs_postgres = self.session_store == SessionStoreKind::Postgres
            || self.account_store == AccountStoreKind::Postgres;
        let postgres = if needs_postgres {
            let url = self
                .postgres_url
                .as_deref()
                .ok_or_else(|| invalid("postgres_url", "is required for the postgres stores"))?;
            Some(
                cloakroom_postgres::PostgresConfig::from_url(url)
                    .map_err(|e| refused("postgres_url", e))?
                    .with_schema(&self.postgres_schema)
                    .map_err(|e| refused("postgres_schema", e))?
                    .with_application_name("cloakroom"),
            )
        } else {
            None
        };
        if self.postgres_ca_file.is_some() && postgres.as_ref().is_some_and(|p| !p.uses_tls()) {
            return Err(invalid(
                "postgres_ca_file",
                "is for TLS: add sslmode=verify-full to postgres_url",
            ));
        }
        if !(1..=crate::tokens::keys::MAX_TOKEN_TTL.as_secs()).contains(&self.jwt_ttl_secs) {
            return Err(invalid("jwt_ttl_secs", "must be between 1 and 300"));
        }
        let cookie_domain = self
            .cookie_domain
            .as_deref()
            .map(|d| cookie_domain(d, &public_origin))
            .transpose()?;
        for entry in &self.redirect_hosts {
            let name = entry.strip_prefix('.').unwrap_or(entry);
            let ipv6 = name
                .strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok());
            if !(crate::access::is_host_name(name) || ipv6) {
                return Err(invalid(
                    "redirect_hosts",
                    format!(
                        "{entry:?} is not a host name (app.example.com), nor a domain with every \
                         host under it (.example.com)"
                    ),
                ));
            }
        }
        let mut redirect_hosts = self.redirect_hosts.clone();
        if redirect_hosts.is_empty()
            && let Ok(url) = url::Url::parse(public_origin.as_str())
            && let Some(host) = url.host_str()
        {
            redirect_hosts.push(host.to_owned());
        }
        // In domain mode every app under the cookie domain is a place to return to.
        if let Some(domain) = &cookie_domain {
            redirect_hosts.push(format!(".{domain}"));
        }
        let signup = self.signup.unwrap_or_else(|| {
            if is_loopback(&public_origin) {
                SignupMode::Open
            } else {
                SignupMode::Closed
            }
        });
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let hash_workers = match self.hash_workers {
            Some(0) => return Err(invalid("hash_workers", "must be at least 1")),
            Some(n) => n,
            None => (cpus / 2).max(1),
        };
        let mut app_origins = self.app_origins.clone();
        if let Some(domain) = &cookie_domain
            && app_origins.is_empty()
        {
            app_origins.push(format!("https://*.{domain}"));
        }
        let app_origins = AppOrigins::parse(&app_origins, public_origin.clone())
            .map_err(|e| invalid("app_origins", e))?;
        let access_rules = AccessRules::compile(&self.access_rules, self.default_policy)
            .map_err(|e| refused("access_rules", e))?;
        let admin_group = cloakroom_core::accounts::GroupName::parse(&self.admin_group)
            .map_err(|e| invalid("admin_group", format!("{:?}: {e}", self.admin_group)))?;
        let mail = self.mail_settings()?;
        // The variable is read now; the file when the stores open (as other files are, so
        // that settings can be checked away from the machine they are for).
        let env_secrets = std::env::var("CLOAKROOM_SECRETS").ok();
        if env_secrets.is_some() && self.secrets_file.is_some() {
            return Err(refused("secrets_file", crate::secrets::SecretsError::Both));
        }
        let secrets = crate::secrets::Secrets::load(env_secrets.as_deref(), None)
            .map_err(|e| refused("secrets_file", e))?;
        let key_rotation = match self.key_rotation_days {
            None => None,
            Some(0) => return Err(invalid("key_rotation_days", "must be at least 1")),
            Some(days) => Some(Duration::from_secs(days.saturating_mul(86_400))),
        };
        if !(1..=cloakroom_core::link::PasswordReset::MAX_LIFETIME.as_secs())
            .contains(&self.password_reset_ttl_secs)
        {
            return Err(invalid(
                "password_reset_ttl_secs",
                "must be between 1 and 1800",
            ));
        }
        Ok(Settings {
            listen,
            data_dir: self.data_dir.clone(),
            public_origin,
            allowed_origins,
            session_store: self.session_store,
            account_store: self.account_store,
            redis,
            postgres,
            trusted_proxies,
            app_origins,
            cookie_domain,
            access_rules: std::sync::Arc::new(access_rules),
            admin_group,
            cookie_name: name.to_owned(),
            same_site: match self.same_site {
                SameSiteSetting::Lax => cloakroom_axum::SameSite::Lax,
                SameSiteSetting::Strict => cloakroom_axum::SameSite::Strict,
            },
            policy,
            session_cache: self.session_cache_mode()?,
            session_cache_limits: cloakroom_core::CacheLimits::default()
                .with_max_entries(self.session_cache_max_entries)
                .with_max_bytes(self.session_cache_max_bytes),
            signup,
            hash_workers,
            jwt_algorithm: self.jwt_algorithm,
            jwt_ttl: Duration::from_secs(self.jwt_ttl_secs),
            secrets,
            secrets_file: self.secrets_file.clone(),
            redis_ca_file: self.redis_ca_file.clone(),
            postgres_ca_file: self.postgres_ca_file.clone(),
            key_rotation,
            jwt_audience: self.jwt_audience.clone(),
            redirect_hosts,
            forward_auth_csrf: self.forward_auth_csrf,
            json_logs: self.json_logs,
            hsts_max_age,
            header_read_timeout,
            request_timeout,
            max_connections: self.max_connections,
            signup_limit_per_network: self.signup_limit_per_network,
            metrics_listen,
            branding: self.branding.checked()?,
            oidc: crate::oidc::provider::check_all(&self.oidc, &|name| std::env::var(name).ok())
                .map_err(|e| invalid("oidc", e))?,
            oidc_signup: self.oidc_signup,
            oidc_link_by_email: self.oidc_link_by_email,
            mail,
            password_reset_ttl: Duration::from_secs(self.password_reset_ttl_secs),
            require_verified_email: self.require_verified_email,
            passkey_login: self.passkey_login,
        })
    }

    fn mail_settings(&self) -> Result<crate::mail::MailSettings, ConfigError> {
        let smtp = self
            .smtp_url
            .as_ref()
            .map(|u| crate::mail::SmtpUrl::parse(u.expose()).map_err(|e| invalid("smtp_url", e)))
            .transpose()?;
        let from = match (&self.mail_from, &smtp) {
            (Some(m), _) => m.parse::<lettre::message::Mailbox>().map_err(|e| {
                invalid(
                    "mail_from",
                    format!("{m:?}: {e}; write `Name <address>` or an address"),
                )
            })?,
            (None, Some(_)) => {
                return Err(invalid(
                    "mail_from",
                    "is required with smtp_url (the address mail comes from)",
                ));
            }
            // Only shown in the log, where mail goes without smtp_url.
            (None, None) => lettre::message::Mailbox::new(
                Some("Cloakroom".into()),
                lettre::Address::new("cloakroom", "localhost")
                    .map_err(|e| invalid("mail_from", e))?,
            ),
        };
        if self.mail_max_attempts == 0 {
            return Err(invalid("mail_max_attempts", "must be at least 1"));
        }
        let retry = nonzero_secs("mail_retry_secs", self.mail_retry_secs)?;
        Ok(crate::mail::MailSettings {
            smtp,
            from,
            timeout: nonzero_secs("smtp_timeout_secs", self.smtp_timeout_secs)?,
            retry: cloakroom_core::mail::RetryPolicy::new(
                retry,
                retry.max(Duration::from_secs(3600)),
                self.mail_max_attempts,
            ),
            templates_dir: self.mail_templates_dir.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` read as a configuration file, over the defaults (no environment).
    fn from_toml(text: &str) -> RawConfig {
        Figment::from(Serialized::defaults(RawConfig::default()))
            .merge(Toml::string(text))
            .extract()
            .unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// Issue 18: the settings had to be found in the source. `examples/cloakroom.toml` lists
    /// every one, commented out at its default — or, when unset by default, at an example
    /// under a comment saying "unset" — with its unit; this keeps the file true as settings
    /// come and change.
    #[test]
    fn the_example_file_lists_every_setting_at_its_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/cloakroom.toml");
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            from_toml(&text),
            RawConfig::default(),
            "as shipped, the file is the defaults"
        );
        let defaults = serde_json::to_value(RawConfig::default()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Top-level settings come before the first `[table]`; a table's entries (`branding.name`)
        // under its header.
        let header = |i: usize| lines[i].starts_with('[');
        let section = |table: Option<&str>| -> std::ops::Range<usize> {
            let begin = match table {
                None => 0,
                Some(t) => {
                    let head = format!("[{t}]");
                    1 + (0..lines.len())
                        .find(|&i| lines[i] == head)
                        .unwrap_or_else(|| panic!("{path} has a `{head}` table"))
                }
            };
            let end = (begin..lines.len())
                .find(|&i| header(i))
                .unwrap_or(lines.len());
            begin..end
        };
        let mut top = String::new();
        let mut tables: std::collections::BTreeMap<&str, String> = Default::default();
        for (key, _) in SETTINGS {
            let (table, field) = key
                .split_once('.')
                .map_or((None, *key), |(t, f)| (Some(t), f));
            let prefix = format!("#{field} = ");
            let at: Vec<usize> = section(table)
                .filter(|&i| lines[i].starts_with(&prefix))
                .collect();
            assert_eq!(at.len(), 1, "`#{key} = …` appears once in {path}");
            let line = &lines[at[0]][1..];
            let comment: Vec<&str> = lines[..at[0]]
                .iter()
                .rev()
                .take_while(|l| l.starts_with("# "))
                .copied()
                .collect();
            let comment = comment.join(" ");
            assert!(!comment.is_empty(), "{key} is explained");
            let pointer = format!("/{}", key.replace('.', "/"));
            let alone = match table {
                None => line.to_owned(),
                Some(t) => format!("[{t}]\n{line}"),
            };
            let shown = serde_json::to_value(from_toml(&alone)).unwrap();
            let (shown, default) = (shown.pointer(&pointer), defaults.pointer(&pointer));
            if default.is_none_or(serde_json::Value::is_null) {
                assert!(
                    comment.to_ascii_lowercase().contains("unset"),
                    "{key}: say it is unset by default"
                );
            } else {
                assert_eq!(shown, default, "{key}: the default shown is the real one");
            }
            for (suffix, unit) in [("_secs", "seconds"), ("_ms", "milliseconds")] {
                if key.ends_with(suffix) {
                    assert!(comment.contains(unit), "{key}: its unit, {unit}");
                }
            }
            let into = match table {
                None => &mut top,
                Some(t) => tables.entry(t).or_default(),
            };
            into.push_str(line);
            into.push('\n');
        }
        let mut uncommented = top;
        for (table, entries) in tables {
            uncommented.push_str(&format!("[{table}]\n{entries}"));
        }
        // Every value shown is one the server accepts.
        from_toml(&uncommented).settings().unwrap();
    }

    /// `[[oidc]]` is not in `SETTINGS` (a list of tables has no variable or flag); the example
    /// file still documents it, and its commented example is one the server accepts.
    #[test]
    fn the_example_file_documents_oidc_providers() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/cloakroom.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let blocks: Vec<String> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == "#[[oidc]]")
            .map(|(i, _)| {
                lines[i..]
                    .iter()
                    .take_while(|l| l.starts_with('#') && !l.starts_with("# "))
                    .map(|l| format!("{}\n", &l[1..]))
                    .collect()
            })
            .collect();
        assert!(blocks.len() >= 2, "{path} shows [[oidc]] tables");
        let all = blocks.concat();
        let raw = from_toml(&all);
        assert_eq!(raw.oidc.len(), blocks.len());
        // Every field is shown in one of the tables.
        let fields = serde_json::to_value(&raw.oidc[0]).unwrap();
        for field in fields.as_object().unwrap().keys() {
            assert!(all.contains(&format!("\n{field} = ")), "{field} is shown");
        }
        // The secret file it names does not exist here; without it the tables are accepted.
        let mut raw = raw;
        raw.oidc[0].client_secret_file = None;
        let s = raw.settings().unwrap();
        assert_eq!(s.oidc[0].display_name, "Google");
        assert_eq!(s.oidc[1].display_name, "Microsoft");
        assert!(text.contains("CLOAKROOM_OIDC_GOOGLE_CLIENT_SECRET"));
    }

    /// `[[access_rules]]` is file-only too; the example file's commented tables show every
    /// field and are rules the server compiles.
    #[test]
    fn the_example_file_documents_access_rules() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/cloakroom.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let blocks: String = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == "#[[access_rules]]")
            .flat_map(|(i, _)| {
                lines[i..]
                    .iter()
                    .take_while(|l| l.starts_with('#') && !l.starts_with("# "))
                    .map(|l| format!("{}\n", &l[1..]))
            })
            .collect();
        let raw = from_toml(&blocks);
        assert!(
            raw.access_rules.len() >= 2,
            "{path} shows [[access_rules]] tables"
        );
        let fields = serde_json::to_value(&raw.access_rules[1]).unwrap();
        for field in fields.as_object().unwrap().keys() {
            assert!(
                blocks.contains(&format!("\n{field} = ")),
                "{field} is shown"
            );
        }
        // And they decide as their comments say: health checks pass anonymously, the admin
        // API is asked to sign in for.
        let rules = raw.settings().unwrap().access_rules;
        let decide = |url: &str| {
            let url = url::Url::parse(url).unwrap();
            let host = url.host_str().unwrap().to_owned();
            let target = crate::access::RuleTarget::new(host, url.path(), None);
            rules.decide_strictest(&target, "GET", None).outcome
        };
        use crate::access::Outcome;
        assert_eq!(decide("https://wiki.example.com/healthz"), Outcome::Bypass);
        assert_eq!(
            decide("https://grafana.example.com/api/admin/users"),
            Outcome::SignIn
        );
    }

    /// Issue 14: the polling near-cache's setting is refused with a message naming its
    /// replacement, and each cache mode only with the stores it is exact for.
    #[test]
    fn session_cache_modes_and_the_setting_they_replaced() {
        let file = std::env::temp_dir().join(format!("cloakroom-{}.toml", std::process::id()));
        std::fs::write(&file, "session_cache_ms = 100\n").unwrap();
        let e = RawConfig::load(Some(&file), &Flags::default())
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&file).unwrap();
        assert!(
            e.contains("`session_cache` = \"exact\" | \"push\" | \"off\""),
            "{e}"
        );

        let mode = |store, cache| {
            RawConfig {
                session_store: store,
                session_cache: cache,
                redis_url: Some("redis://127.0.0.1:6379".into()),
                postgres_url: Some("postgres://localhost/test".into()),
                ..RawConfig::default()
            }
            .settings()
            .map(|s| s.session_cache)
            .map_err(|e| e.to_string())
        };
        use SessionCacheMode::{Exact, Off, Push};
        use SessionStoreKind::{Memory, Postgres, Redis, Sqlite};
        assert_eq!(mode(Sqlite, None), Ok(Exact));
        assert_eq!(mode(Memory, None), Ok(Exact));
        assert_eq!(mode(Redis, None), Ok(Off));
        assert_eq!(mode(Postgres, None), Ok(Off));
        assert_eq!(mode(Redis, Some(Push)), Ok(Push));
        assert_eq!(mode(Sqlite, Some(Off)), Ok(Off));
        assert!(
            mode(Sqlite, Some(Push))
                .unwrap_err()
                .contains("shared stores")
        );
        assert!(
            mode(Postgres, Some(Exact))
                .unwrap_err()
                .contains("use `push`")
        );
    }

    #[test]
    fn defaults_are_the_documented_embedded_setup() {
        let s = RawConfig::default().settings().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_origin.as_str(), "http://localhost:8080");
        assert_eq!(s.data_dir, PathBuf::from("cloakroom-data"));
        assert_eq!(s.session_store, SessionStoreKind::Sqlite);
        assert_eq!(s.policy.standard, Lifetime::STANDARD);
        assert_eq!(s.signup, SignupMode::Open, "the quickstart signs up");
    }

    #[test]
    fn signup_is_closed_by_default_away_from_loopback() {
        let signup = |url: &str, mode: Option<SignupMode>| {
            let raw = RawConfig {
                public_url: Some(url.into()),
                signup: mode,
                ..RawConfig::default()
            };
            raw.settings().unwrap().signup
        };
        assert_eq!(signup("http://127.0.0.1:8080", None), SignupMode::Open);
        assert_eq!(signup("http://[::1]:8080", None), SignupMode::Open);
        assert_eq!(signup("http://app.localhost", None), SignupMode::Open);
        assert_eq!(
            signup("https://login.example.com", None),
            SignupMode::Closed
        );
        assert_eq!(
            signup("https://localhost.example.com", None),
            SignupMode::Closed
        );
        let open = Some(SignupMode::Open);
        assert_eq!(signup("https://login.example.com", open), SignupMode::Open);
        let closed = Some(SignupMode::Closed);
        assert_eq!(signup("http://localhost:8080", closed), SignupMode::Closed);
        let invite = Some(SignupMode::Invite);
        assert_eq!(
            signup("https://login.example.com", invite),
            SignupMode::Invite
        );
    }

    #[test]
    fn app_origins_are_exact_origins_and_one_label_wildcards() {
        let public = Origin::parse("https://login.example.org").unwrap();
        let apps = AppOrigins::parse(
            &[
                "https://grafana.example.com".into(),
                "https://*.apps.example.net".into(),
                "http://*.example.test:8080".into(),
            ],
            public.clone(),
        )
        .unwrap();
        let allows = |o: &str| apps.allows(&Origin::parse(o).unwrap());
        assert!(allows("https://login.example.org"), "the public origin");
        assert!(allows("https://grafana.example.com"));
        assert!(
            allows("https://GRAFANA.example.com:443"),
            "normalised like requests"
        );
        assert!(allows("https://x-1.apps.example.net"));
        assert!(allows("http://a.example.test:8080"));
        for no in [
            "https://grafana.example.com:8443",
            "http://grafana.example.com",
            "https://apps.example.net",
            "https://a.b.apps.example.net",
            "https://evilapps.example.net",
            "https://apps.example.net.evil.net",
            "https://x.apps.example.net.evil.net",
            "http://x.apps.example.net",
            "http://a.example.test",
            "http://a.example.test:8081",
        ] {
            assert!(!allows(no), "{no}");
        }
        let long = format!("https://{}.apps.example.net", "a".repeat(64));
        assert!(!allows(&long), "a DNS label has at most 63 bytes");
        assert!(
            AppOrigins::parse(&[], public.clone())
                .unwrap()
                .is_public_only()
        );
        for bad in [
            "*",
            "https://*",
            "https://*.com",
            "https://a*.example.com",
            "https://*.*.example.com",
            "https://*.127.0.0.1",
            "https://grafana.example.com/path",
            "ftp://*.example.com",
        ] {
            assert!(
                AppOrigins::parse(&[bad.into()], public.clone()).is_err(),
                "{bad}"
            );
        }
    }

    /// The SMTP password is part of a setting; no `Debug` of the configuration shows it.
    #[test]
    fn the_smtp_password_never_shows_in_debug_output() {
        let raw = RawConfig {
            smtp_url: Some("smtps://mailer:hunter2@mail.example.com".parse().unwrap()),
            mail_from: Some("Login <login@example.com>".into()),
            ..RawConfig::default()
        };
        let shown = format!("{raw:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("mailer:[redacted]@mail.example.com"),
            "{shown}"
        );
        let settings = raw.settings().unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
        let mail = &settings.mail;
        assert_eq!(mail.from.email.to_string(), "login@example.com");
        assert_eq!(mail.retry.max_attempts(), 10);
        let none = RawConfig::default().settings().unwrap().mail;
        assert!(none.smtp.is_none(), "no smtp_url: mail goes to the log");
    }

    #[test]
    fn a_logo_is_an_https_url_or_a_path_on_this_host() {
        let logo = |url: &str| {
            RawConfig {
                branding: Branding {
                    logo_url: Some(url.into()),
                    ..Branding::default()
                },
                ..RawConfig::default()
            }
            .settings()
            .map(|s| s.branding)
        };
        let remote = logo("https://cdn.example.com:8443/brand/logo.svg").unwrap();
        assert_eq!(
            remote.logo_url.as_deref(),
            Some("https://cdn.example.com:8443/brand/logo.svg")
        );
        assert_eq!(
            remote.logo_origin.unwrap().as_str(),
            "https://cdn.example.com:8443"
        );
        let local = logo("/assets/logo.png").unwrap();
        assert_eq!(local.logo_url.as_deref(), Some("/assets/logo.png"));
        assert!(local.logo_origin.is_none(), "nothing to add to the CSP");
        for bad in [
            "http://cdn.example.com/logo.svg",
            "//cdn.example.com/logo.svg",
            "/\\cdn.example.com/logo.svg",
            "data:image/svg+xml,<svg/>",
            "javascript:alert(1)",
            "logo.svg",
            "https://user:pw@cdn.example.com/logo.svg",
        ] {
            let e = logo(bad).unwrap_err().to_string();
            assert!(e.contains("branding.logo_url"), "{bad}: {e}");
        }
        let named = |name: &str| {
            RawConfig {
                branding: Branding {
                    name: name.into(),
                    ..Branding::default()
                },
                ..RawConfig::default()
            }
            .settings()
        };
        assert_eq!(named(" Acme ").unwrap().branding.name, "Acme");
        assert!(named("").is_err() && named("a\nb").is_err());
        assert!(named(&"x".repeat(65)).is_err());
    }

    #[test]
    fn bad_values_name_their_setting() {
        let mut c = RawConfig {
            public_url: Some("localhost:8080/app".into()),
            ..RawConfig::default()
        };
        assert!(c.settings().unwrap_err().to_string().contains("public_url"));
        c = RawConfig {
            listen: "nowhere".into(),
            ..RawConfig::default()
        };
        assert!(c.settings().unwrap_err().to_string().contains("listen"));
        c = RawConfig {
            trusted_proxies: vec!["10.0.0.0/33".into()],
            ..RawConfig::default()
        };
        assert!(
            c.settings()
                .unwrap_err()
                .to_string()
                .contains("trusted_proxies")
        );
        c = RawConfig {
            idle_timeout_secs: 0,
            ..RawConfig::default()
        };
        assert!(
            c.settings()
                .unwrap_err()
                .to_string()
                .contains("idle_timeout_secs")
        );
        c = RawConfig {
            cookie_name: "a;b".into(),
            ..RawConfig::default()
        };
        assert!(
            c.settings()
                .unwrap_err()
                .to_string()
                .contains("cookie_name")
        );
    }
    #[test]
    fn half_shared_stores_are_warned_about() {
        let mut raw = RawConfig::default();
        assert!(raw.settings().unwrap().sharing_warnings().is_empty());
        raw.session_store = SessionStoreKind::Redis;
        raw.redis_url = Some("redis://127.0.0.1:6379".into());
        let w = raw.settings().unwrap().sharing_warnings();
        assert!(w[0].contains("accounts and the signing keys"), "{w:?}");
        raw.account_store = AccountStoreKind::Postgres;
        raw.postgres_url = Some("postgres://cloakroom@db/cloakroom".into());
        assert!(raw.settings().unwrap().sharing_warnings().is_empty());
        raw.session_store = SessionStoreKind::Sqlite;
        let w = raw.settings().unwrap().sharing_warnings();
        assert!(w[0].contains("sessions are kept by this"), "{w:?}");
    }
}
