//! Redis for tests (feature `redis`): the shared standalone Redis with per-test key prefixes
//! cleaned up afterwards, and Redis servers and 6-node Clusters the tests start themselves.
//!
//! Processes the tests start run under a tiny `sh` wrapper that holds a pipe from this test
//! process on its standard input: `redis-server … & read _; kill $!`. When the test process
//! exits — normally, by panic or by SIGKILL — the kernel closes the pipe, `read` returns and
//! the wrapper kills its server. So no node outlives the test binary, even the Cluster shared
//! by every test (held in a `static`, whose destructor never runs). Tests that stop a node on
//! purpose kill it by its PID.

// Test support: a panic is how a helper fails the test that called it, with its location.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;

/// The shared standalone Redis: `CLOAKROOM_TEST_REDIS_URL`, by default
/// `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("CLOAKROOM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix() -> String {
    format!("cloakroom-test:{}:", crate::random_hex())
}

/// Deletes every key under a prefix on the shared standalone Redis when dropped, so test runs
/// leave nothing behind (remember-me records would otherwise linger for weeks). Runs on a
/// thread of its own with its own runtime: the test's runtime may be shutting down.
#[derive(Debug)]
pub struct PrefixGuard(
    /// The key prefix to clean up.
    pub String,
);

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.0);
        let _ = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(redis_url()) else {
                return;
            };
            let Ok(mut conn) = client.get_connection() else {
                return;
            };
            let keys: Vec<String> = redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .clone()
                .iter(&mut conn)
                .map(|it| it.filter_map(Result::ok).collect())
                .unwrap_or_default();
            for chunk in keys.chunks(1000) {
                let _: redis::RedisResult<i64> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
            }
        })
        .join();
    }
}

/// Whether `redis-server` can be started (it is on the `PATH`).
pub fn redis_server_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A local port whose Cluster bus port (port + 10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A `redis-server` process started by a test; dropping it stops the server.
#[derive(Debug)]
pub struct Server {
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    /// The server's process id, to stop it behind the test's back.
    pub pid: u32,
    wrapper: Child,
}

impl Server {
    /// Starts a server on `port` with its files in `dir`, as a Cluster node if `cluster`, and
    /// waits until it answers.
    ///
    /// # Panics
    /// If it cannot be started or does not answer within 10 seconds.
    pub fn start(dir: &Path, port: u16, cluster: bool) -> Self {
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--logfile".into(),
            format!("redis-{port}.log"),
        ];
        if cluster {
            args.extend([
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                format!("nodes-{port}.conf"),
                "--cluster-node-timeout".into(),
                "2000".into(),
            ]);
        }
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(
                "redis-server \"$@\" </dev/null >/dev/null 2>&1 & pid=$!; echo $pid; \
                 read _ignored; kill -9 $pid 2>/dev/null; wait",
            )
            .arg("sh")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = line.trim().parse().expect("redis-server pid");
        let server = Self { port, pid, wrapper };
        assert!(
            wait_bool(Duration::from_secs(10), || cli(port, &["PING"])
                .is_some_and(|r| r == "PONG")),
            "redis-server on port {port} did not start"
        );
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server abruptly, as a crash or a lost machine would.
    pub fn kill(&self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        wait_bool(Duration::from_secs(5), || {
            cli(self.port, &["PING"]).is_none()
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing the wrapper's stdin makes it kill the server.
        drop(self.wrapper.stdin.take());
        let _ = self.wrapper.wait();
    }
}

/// `redis-cli -p PORT ARGS…`, its trimmed output if it succeeded.
pub fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.starts_with("Could not connect") && !text.is_empty())
        .then_some(text)
}

/// Calls `f` every 50 ms until it returns `Some` (that value) or `limit` has passed (`None`).
pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T>
where
    T: Sized,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Calls `f` every 50 ms until it returns `true` or `limit` has passed; whether it did.
pub fn wait_bool(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    wait_until(limit, || f().then_some(())).is_some()
}

/// A 3-master, 3-replica Redis Cluster on free local ports; dropping it stops every node.
#[derive(Debug)]
pub struct Cluster {
    /// Its six nodes.
    pub servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node id.
    pub id: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Whether it is a master.
    pub master: bool,
    /// Whether it is marked as failed (`fail` or `fail?`).
    pub failed: bool,
    /// The master it replicates, for a replica.
    pub master_id: Option<String>,
    /// The slot ranges it serves, inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl Cluster {
    /// Starts six nodes and joins them into a Cluster with one replica per master, then waits
    /// until every slot is served and every replica has synced.
    ///
    /// # Panics
    /// If a node does not start or the Cluster does not become ready within 30 seconds.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut servers: Vec<Server> = Vec::new();
        while servers.len() < 6 {
            let port = free_port();
            if servers.iter().any(|s| s.port == port) {
                continue;
            }
            servers.push(Server::start(dir.path(), port, true));
        }
        let addrs: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { servers, _dir: dir };
        let ready = wait_bool(Duration::from_secs(30), || {
            cluster.servers.iter().all(|s| {
                cli(s.port, &["CLUSTER", "INFO"]).is_some_and(|i| {
                    i.contains("cluster_state:ok")
                        && i.contains("cluster_slots_ok:16384")
                        && i.contains("cluster_known_nodes:6")
                })
            }) && cluster.servers.iter().all(|s| {
                // Replicas must have synced, or a failover has nothing to promote.
                cli(s.port, &["INFO", "replication"]).is_some_and(|i| {
                    i.contains("role:master") || i.contains("master_link_status:up")
                })
            })
        });
        assert!(ready, "cluster did not become ready");
        cluster
    }

    /// Every node's URL, as seeds for a Cluster client.
    pub fn seeds(&self) -> Vec<String> {
        self.servers.iter().map(Server::url).collect()
    }

    /// The node on `port`.
    ///
    /// # Panics
    /// If no node of this Cluster listens there.
    pub fn server(&self, port: u16) -> &Server {
        self.servers.iter().find(|s| s.port == port).unwrap()
    }

    /// The topology as the node on `port` sees it.
    pub fn nodes_seen_by(&self, port: u16) -> Vec<NodeInfo> {
        let text = cli(port, &["CLUSTER", "NODES"]).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let addr = f.get(1)?.split('@').next()?;
                let port = addr.rsplit_once(':')?.1.parse().ok()?;
                let flags = f.get(2)?;
                Some(NodeInfo {
                    id: f[0].to_owned(),
                    port,
                    master: flags.split(',').any(|x| x == "master"),
                    failed: flags.split(',').any(|x| x == "fail" || x == "fail?"),
                    master_id: (f.get(3)? != &"-").then(|| f[3].to_owned()),
                    slots: f
                        .get(8..)
                        .unwrap_or_default()
                        .iter()
                        .filter(|r| !r.starts_with('['))
                        .filter_map(|r| {
                            let (a, b) = r.split_once('-').unwrap_or((r, r));
                            Some((a.parse().ok()?, b.parse().ok()?))
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// The port of the master serving `key`, as the node on `via` sees it.
    pub fn master_port_for(&self, via: u16, key: &str) -> u16 {
        let slot: u16 = cli(via, &["CLUSTER", "KEYSLOT", key])
            .unwrap()
            .parse()
            .unwrap();
        self.nodes_seen_by(via)
            .into_iter()
            .find(|n| n.master && !n.failed && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|n| n.port)
            .expect("a master serves every slot")
    }
}

/// The Cluster shared by every test of this binary that does not break it on purpose, or
/// `None` if `redis-server` is not installed.
pub fn shared_cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| redis_server_available().then(Cluster::start))
        .as_ref()
}

/// Everything under `prefix` on the masters among `urls`: key names and values (for a
/// conformance [`Harness::dump`](crate::conformance::Harness::dump)).
///
/// # Panics
/// If a reachable node answers with an error.
pub async fn dump(urls: &[String], prefix: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for url in urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            continue; // a node a test stopped
        };
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
        let role: String = redis::from_redis_value(role[0].clone()).unwrap();
        if role != "master" {
            continue;
        }
        let mut cursor = 0_u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            for key in keys {
                out.extend(&key);
                out.extend(value_bytes(&mut conn, &key).await);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    out
}

async fn value_bytes(conn: &mut impl ConnectionLike, key: &[u8]) -> Vec<u8> {
    let kind: String = redis::cmd("TYPE").arg(key).query_async(conn).await.unwrap();
    let parts: Vec<Vec<u8>> = match kind.as_str() {
        "string" => vec![redis::cmd("GET").arg(key).query_async(conn).await.unwrap()],
        "hash" => redis::cmd("HGETALL")
            .arg(key)
            .query_async(conn)
            .await
            .unwrap(),
        "zset" => redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(conn)
            .await
            .unwrap(),
        "none" => Vec::new(), // expired between SCAN and TYPE
        other => panic!("unexpected key type {other}"),
    };
    parts.concat()
}
