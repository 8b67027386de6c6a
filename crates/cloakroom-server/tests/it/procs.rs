//! Real peers (nginx, Caddy, Python) started by the tests: free ports, readiness, cleanup, and
//! the skip-or-fail rule for missing tools.

use std::net::TcpListener;
use std::process::Child;
use std::time::Duration;

/// `Some(())` if `program` runs, else a skip (or a failure under `CLOAKROOM_REQUIRE_SERVICES=1`).
pub fn require(program: &str, probe: &[&str]) -> Option<()> {
    let ok = std::process::Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(())
    } else {
        cloakroom_testkit::skip(format!("`{program}` is not available"))
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on port {port}");
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// stray server behind.
pub struct Guarded(pub Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An app that echoes what reached it: method, path and every header, as JSON.
pub async fn echo_upstream() -> u16 {
    echo_app("app").await
}

/// An app that says which it is (`name`) and echoes what reached it: method, path and every
/// header (the values of a repeated header joined with ", ", so a forged copy beside the real
/// one shows).
pub async fn echo_app(name: &'static str) -> u16 {
    use axum::http::{HeaderMap, Method, Uri};
    let echo = move |method: Method, uri: Uri, headers: HeaderMap| async move {
        let h: serde_json::Map<String, serde_json::Value> = headers
            .keys()
            .map(|k| {
                let values: Vec<String> = headers
                    .get_all(k)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                (k.as_str().to_owned(), values.join(", ").into())
            })
            .collect();
        axum::Json(serde_json::json!({
            "app": name,
            "method": method.as_str(),
            "path": uri.to_string(),
            "headers": h,
        }))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(echo))
            .await
            .unwrap();
    });
    port
}

/// A `cloakroom serve` process on a fresh data directory, its stderr collected.
pub struct ServeProcess {
    child: KilledOnDrop,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl ServeProcess {
    /// Starts `cloakroom serve` with the arguments `args` gives for a free port (it chooses the
    /// listen address) and the extra environment `env`, and waits until it answers.
    pub async fn start(args: impl FnOnce(u16) -> Vec<String>, env: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), args, env).await
    }

    /// [`start`](Self::start) on a data directory the test prepared.
    pub async fn start_in(
        dir: tempfile::TempDir,
        args: impl FnOnce(u16) -> Vec<String>,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .arg("serve")
            .args(args(port))
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("CLOAKROOM_LOG")
            .env_remove("CLOAKROOM_PUBLIC_URL")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                return Self {
                    child: KilledOnDrop(Some(child)),
                    base,
                    port,
                    dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the server did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.get().id()
    }

    /// Runs an admin command on the same data directory; returns its stderr.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path())
            .env_remove("CLOAKROOM_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stderr).unwrap()
    }

    /// Kills the server (SIGKILL: no shutdown, no flushing, as in a crash) and hands back its
    /// data directory and what it had logged.
    pub fn kill(mut self) -> (tempfile::TempDir, String) {
        let mut child = self.child.take();
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        (self.dir, String::from_utf8(out.stderr).unwrap())
    }

    /// Stops the server (SIGTERM) and returns what it logged.
    pub fn stop(self) -> String {
        self.stop_keeping_dir().0
    }

    /// [`stop`](Self::stop), handing back the data directory instead of removing it.
    pub fn stop_keeping_dir(mut self) -> (String, tempfile::TempDir) {
        let child = self.child.take();
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (String::from_utf8(out.stderr).unwrap(), self.dir)
    }
}

/// A server process that a panicking test leaves behind is killed, not leaked (a leaked one
/// keeps its port, and the test runner's output pipe, open).
struct KilledOnDrop(Option<Child>);

impl KilledOnDrop {
    fn get(&self) -> &Child {
        self.0.as_ref().unwrap()
    }

    /// The process, for a test that stops it itself.
    fn take(&mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How often a server's mail sender looks at the outbox when nothing wakes it.
pub const SENDER_POLL: Duration = Duration::from_secs(5);

/// A real SMTP server for the mail tests: aiosmtpd (PyPI) on 127.0.0.1, storing every message
/// it accepts in a Maildir. Killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    maildir: tempfile::TempDir,
    _process: Guarded,
}

impl SmtpSink {
    /// A sink on a free port, or a skip when aiosmtpd is not installed.
    pub async fn start() -> Option<Self> {
        Self::start_on(free_port()).await
    }

    /// A sink on `port` (one a test kept free until now, to play a server that comes back).
    pub async fn start_on(port: u16) -> Option<Self> {
        require("python3", &["-c", "import aiosmtpd"])?;
        let maildir = tempfile::tempdir().unwrap();
        let process = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            // A path that does not exist yet: Python's Maildir only creates the whole tree
            // for one (an existing empty directory would lack `new/` and `cur/`).
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let process = Guarded(process);
        wait_for_port(port).await;
        Some(Self {
            port,
            maildir,
            _process: process,
        })
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as Python's `email` package reads it (an independent
    /// MIME parser): the headers that matter, and the text and HTML bodies decoded.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        const READ: &str = r#"
import email, email.policy, json, mailbox, os, sys
out = []
box = mailbox.Maildir(sys.argv[1], create=False) if os.path.isdir(sys.argv[1]) else {}
for key, msg in sorted(box.items()):
    msg = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    part = lambda kind: msg.get_body((kind,))
    out.append({
        "headers": {k: str(v) for k, v in msg.items()},
        "content_type": msg.get_content_type(),
        "text": part("plain").get_content() if part("plain") else None,
        "html": part("html").get_content() if part("html") else None,
        "raw": msg.as_string(),
    })
print(json.dumps(out))
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", READ])
            .arg(self.maildir.path().join("mail"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits (up to `within`) for `n` messages to have arrived; returns them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let start = std::time::Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= n || start.elapsed() > within {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
