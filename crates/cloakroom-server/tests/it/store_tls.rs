//! Issue 16: TLS to the stores. Managed Redis and PostgreSQL require it, so the server speaks
//! `rediss://` and `sslmode=verify-full` over rustls, and always checks who answers. The tests
//! start a Redis and a PostgreSQL of their own that accept TLS only, with a certificate from a
//! certificate authority made for the run (rcgen), and show: the server works through them
//! with the CA given; without it, or in plain text, it does not start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloakroom_server::Stores;
use cloakroom_server::config::{AccountStoreKind, RawConfig, SessionStoreKind};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::forward::nginx_style;
use crate::support::start_with;

/// A certificate authority made for this run, and a server certificate it signed for
/// 127.0.0.1 and localhost.
struct Ca {
    dir: tempfile::TempDir,
}

impl Ca {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name
            .push(DnType::CommonName, "Cloakroom test CA (throwaway)");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let cert = leaf.signed_by(&key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        // PostgreSQL (running as its own user) reads the files in this directory.
        set_mode(dir.path(), 0o755);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn free_port() -> u16 {
    cloakroom_testkit::redis::free_port()
}

/// The whole chain of an error, as an operator reads it in the log.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `redis-server` on `port`, TLS only (no plain port), with `ca`'s server certificate, keeping
/// nothing on disk.
fn redis_over_tls(ca: &Ca, port: u16) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", "0", "--tls-port", &port.to_string()])
        .arg("--tls-cert-file")
        .arg(ca.path("server.crt"))
        .arg("--tls-key-file")
        .arg(ca.path("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(ca.path("ca.pem"))
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null());
    cmd
}

/// A Redis that accepts TLS only (no plain port), with `ca`'s server certificate.
fn tls_redis(ca: &Ca) -> Option<(Killed, u16)> {
    if !cloakroom_testkit::redis::redis_server_available() {
        return cloakroom_testkit::skip("redis-server is not installed");
    }
    let port = free_port();
    let server = Killed(redis_over_tls(ca, port).spawn().unwrap());
    let ca_file = ca.path("ca.pem");
    let up = cloakroom_testkit::redis::wait_bool(Duration::from_secs(10), || {
        Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&ca_file)
            .args(["-p", &port.to_string(), "ping"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
    });
    assert!(up, "the TLS Redis did not start");
    Some((server, port))
}

/// A 6-node Redis Cluster (3 masters, 3 replicas) that speaks TLS only — to clients, between
/// nodes and for replication — with `ca`'s server certificate on every node, as a managed
/// Cluster with TLS does.
fn tls_redis_cluster(ca: &Ca, dir: &Path) -> Option<(Vec<Killed>, Vec<u16>)> {
    if !cloakroom_testkit::redis::redis_server_available() {
        return cloakroom_testkit::skip("redis-server is not installed");
    }
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < 6 {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let mut nodes = Vec::new();
    for port in &ports {
        let mut cmd = redis_over_tls(ca, *port);
        cmd.current_dir(dir)
            .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")]);
        nodes.push(Killed(cmd.spawn().unwrap()));
    }
    let cli = |port: u16, args: &[&str]| {
        Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(ca.path("ca.pem"))
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let up = cloakroom_testkit::redis::wait_bool(Duration::from_secs(10), || {
        ports
            .iter()
            .all(|p| cli(*p, &["ping"]).is_some_and(|o| o.contains("PONG")))
    });
    assert!(up, "the TLS cluster nodes did not start");
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(ca.path("ca.pem"))
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&created.stdout)
    );
    let ready = cloakroom_testkit::redis::wait_bool(Duration::from_secs(30), || {
        ports.iter().all(|p| {
            cli(*p, &["CLUSTER", "INFO"]).is_some_and(|i| {
                i.contains("cluster_state:ok") && i.contains("cluster_known_nodes:6")
            })
        })
    });
    assert!(ready, "the TLS cluster did not become ready");
    Some((nodes, ports))
}

/// A PostgreSQL of the test's own that accepts TLS connections only (`hostssl`; plain ones
/// are rejected), with `ca`'s server certificate. Run as the `postgres` user (PostgreSQL
/// refuses root).
struct TlsPostgres {
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsPostgres {
    fn start(ca: &Ca) -> Option<Self> {
        let Some(bin) = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).max())
            .filter(|b| b.join("initdb").exists())
        else {
            return cloakroom_testkit::skip("PostgreSQL's server binaries are not installed");
        };
        let as_postgres = |program: &Path| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c.stdout(Stdio::null()).stderr(Stdio::null());
            c
        };
        if !as_postgres(Path::new("true"))
            .status()
            .is_ok_and(|s| s.success())
        {
            return cloakroom_testkit::skip("cannot run programs as the postgres user");
        }
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o755);
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let chown = |p: &Path| {
            assert!(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(p)
                    .status()
                    .unwrap()
                    .success()
            );
        };
        chown(&data);
        let ok = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .status()
            .unwrap();
        assert!(ok.success(), "initdb failed");
        for (from, to) in [("server.crt", "server.crt"), ("server.key", "server.key")] {
            let target = data.join(to);
            std::fs::copy(ca.path(from), &target).unwrap();
            chown(&target);
            set_mode(&target, 0o600);
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let port = free_port();
        let options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c fsync=off",
            data.display()
        );
        let ok = as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "30", "-o", &options, "-l"])
            .arg(data.join("log"))
            .arg("start")
            .status()
            .unwrap();
        assert!(ok.success(), "the TLS PostgreSQL did not start");
        Some(Self {
            data,
            bin,
            port,
            _dir: dir,
        })
    }

    fn url(&self, sslmode: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={sslmode}",
            self.port
        )
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A sign-up (a session written) and a forward-auth check (a session read) through `s`'s
/// stores.
async fn signs_up_and_checks(s: crate::support::TestServer) {
    let mut b = s.signed_up("tess").await;
    nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await
        .assert(200);
}

/// A server with the stores `tls` configures works (a sign-up and a check); the same settings
/// without the CA (`without_ca`) do not open, and the reason names the certificate. Returns
/// those settings, for further refusals, with the data directory they name.
async fn trusted_only_with_the_ca(
    tls: &impl Fn(&mut RawConfig),
    without_ca: impl Fn(&mut RawConfig),
) -> (RawConfig, tempfile::TempDir) {
    signs_up_and_checks(start_with(tls).await).await;
    let dir = tempfile::tempdir().unwrap();
    let mut raw = crate::support::raw_config(dir.path());
    tls(&mut raw);
    without_ca(&mut raw);
    let why = open_fails(&raw).await;
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    (raw, dir)
}

async fn open_fails(raw: &RawConfig) -> String {
    let err = Stores::open(&raw.settings().unwrap())
        .await
        .expect_err("the stores must not open");
    chain(&err)
}

#[tokio::test]
async fn sessions_in_redis_over_tls_with_a_private_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = Ca::new();
    let Some((_redis, port)) = tls_redis(&ca) else {
        return;
    };
    let tls = |raw: &mut RawConfig| {
        raw.session_store = SessionStoreKind::Redis;
        raw.redis_url = Some(format!("rediss://127.0.0.1:{port}"));
        raw.redis_key_prefix = cloakroom_testkit::redis::unique_prefix();
        raw.redis_ca_file = Some(ca.path("ca.pem"));
        // The invalidation feed's subscription goes over TLS too.
        raw.session_cache = Some(cloakroom_server::config::SessionCacheMode::Push);
    };
    let (mut raw, _dir) = trusted_only_with_the_ca(&tls, |raw| raw.redis_ca_file = None).await;
    // Nor in plain text: there is no plain port.
    tls(&mut raw);
    raw.redis_ca_file = None;
    raw.redis_url = Some(format!("redis://127.0.0.1:{port}"));
    open_fails(&raw).await;
    // A CA file with plain URLs is a configuration mistake, said before connecting.
    raw.redis_ca_file = Some(ca.path("ca.pem"));
    let err = raw.settings().unwrap_err().to_string();
    assert!(err.contains("redis_ca_file"), "{err}");
}

#[tokio::test]
async fn sessions_in_a_redis_cluster_over_tls_with_a_private_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let Some((_nodes, ports)) = tls_redis_cluster(&ca, dir.path()) else {
        return;
    };
    let tls = |raw: &mut RawConfig| {
        raw.session_store = SessionStoreKind::RedisCluster;
        // One seed: the client learns the other nodes from it, and reaches each over TLS.
        raw.redis_cluster_nodes = vec![format!("rediss://127.0.0.1:{}", ports[0])];
        raw.redis_key_prefix = cloakroom_testkit::redis::unique_prefix();
        raw.redis_ca_file = Some(ca.path("ca.pem"));
        raw.session_cache = Some(cloakroom_server::config::SessionCacheMode::Push);
    };
    trusted_only_with_the_ca(&tls, |raw| raw.redis_ca_file = None).await;
}

#[tokio::test]
async fn accounts_and_sessions_in_postgres_over_tls_with_a_private_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = Ca::new();
    let Some(pg) = TlsPostgres::start(&ca) else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let secrets_file = secrets.path().join("secrets");
    std::fs::write(
        &secrets_file,
        "a secret for the TLS test, 32+ characters long",
    )
    .unwrap();
    let tls = |raw: &mut RawConfig| {
        raw.session_store = SessionStoreKind::Postgres;
        raw.account_store = AccountStoreKind::Postgres;
        raw.postgres_url = Some(pg.url("verify-full"));
        raw.postgres_schema = cloakroom_testkit::postgres::unique_schema();
        raw.postgres_ca_file = Some(ca.path("ca.pem"));
        raw.secrets_file = Some(secrets_file.clone());
        // The LISTEN connection of the invalidation feed goes over TLS too.
        raw.session_cache = Some(cloakroom_server::config::SessionCacheMode::Push);
    };
    let (mut raw, _dir) = trusted_only_with_the_ca(&tls, |raw| raw.postgres_ca_file = None).await;
    // `require` checks the certificate as `verify-full` does.
    raw.postgres_url = Some(pg.url("require"));
    open_fails(&raw).await;
    // In plain text the server refuses (it takes TLS connections only).
    tls(&mut raw);
    raw.postgres_url = Some(pg.url("disable"));
    raw.postgres_ca_file = None;
    open_fails(&raw).await;
    // Modes that would not check who answers are refused outright.
    for mode in ["prefer", "allow", "verify-ca"] {
        raw.postgres_url = Some(pg.url(mode));
        let err = raw.settings().unwrap_err().to_string();
        assert!(err.contains("postgres_url"), "{mode}: {err}");
    }
}
