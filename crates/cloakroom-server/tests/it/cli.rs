//! The `cloakroom` binary: admin commands against a running server's data, start-up errors,
//! graceful shutdown.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::procs::ServeProcess;
use crate::support::{PASSWORD, start};

/// Runs the `cloakroom` binary on `data_dir` with `env` and `args`, feeding it `stdin`;
/// answers whether it succeeded, its standard output and its standard error.
pub(crate) fn cloakroom(
    data_dir: &std::path::Path,
    env: &[(String, String)],
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("CLOAKROOM_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Creates the database in `data_dir`, as a first `cloakroom serve` would (admin commands
/// never create one).
pub(crate) fn with_database(data_dir: &std::path::Path) {
    cloakroom_server::ensure_data_dir(data_dir).unwrap();
    cloakroom_sqlite::Database::open(cloakroom_server::database_path(data_dir)).unwrap();
}

/// Runs `cloakroom ARGS` with no `CLOAKROOM_*` settings from the test's environment.
pub(crate) fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(args)
        .env_remove("CLOAKROOM_LOG")
        .env_remove("CLOAKROOM_DATA_DIR")
        .env_remove("CLOAKROOM_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The one line `cloakroom` printed for its error, after asserting each part of it (the
/// message and each cause, joined by ": ") is said once: neither repeated nor contained in
/// another part, as "X: X" was.
pub(crate) fn error_line(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("cloakroom: error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"))
        .trim_start_matches("cloakroom: error: ")
        .to_owned();
    let parts: Vec<&str> = line.split(": ").map(str::trim).collect();
    for (i, a) in parts.iter().enumerate() {
        for (j, b) in parts.iter().enumerate() {
            assert!(
                i == j || a.len() < 8 || !b.contains(a),
                "{a:?} is said twice in {line:?}"
            );
        }
    }
    assert_eq!(
        err.matches("cloakroom: error:").count(),
        1,
        "one error line: {err}"
    );
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_against_a_running_server() {
    let s = start().await;
    let dir = s.dir.path().to_owned();
    let env = s.env.clone();
    let run = move |args: &'static [&'static str], stdin: &'static str| {
        let (dir, env) = (dir.clone(), env.clone());
        tokio::task::spawn_blocking(move || cloakroom(&dir, &env, args, stdin))
    };

    let (ok, out, err) = run(&["user", "add", "tess"], "correct horse battery staple\n")
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("created user tess"), "{out}");
    let (ok, _, err) = run(&["user", "add", "tess2"], "short\n").await.unwrap();
    assert!(!ok && err.contains("at least 12 characters"), "{err}");

    // The server sees the CLI's account at once.
    let mut laptop = s
        .logged_in(
            "tess",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        )
        .await;
    let mut phone = s
        .logged_in(
            "tess",
            "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0",
        )
        .await;

    let (ok, out, _) = run(&["user", "list"], "").await.unwrap();
    assert!(
        ok && out.contains("tess") && out.contains("active"),
        "{out}"
    );
    let (ok, out, _) = run(&["sessions", "list", "--user", "TESS"], "")
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("Firefox on Android") && out.contains("Firefox on Linux"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "header + 2 sessions: {out}");

    let (ok, out, _) = run(&["sessions", "revoke", "--user", "tess"], "")
        .await
        .unwrap();
    assert!(ok && out.contains("ended 2 session(s)"), "{out}");
    laptop.get("/api/session").await.assert(401);
    phone.get("/api/session").await.assert(401);

    let mut again = s.logged_in("tess", "curl/8").await;
    let (ok, out, _) = run(&["user", "disable", "tess"], "").await.unwrap();
    assert!(ok && out.contains("ended 1 session(s)"), "{out}");
    again.get("/api/session").await.assert(401);
    let mut b = s.browser();
    b.post_json(
        "/api/login",
        &json!({ "username": "tess", "password": PASSWORD }),
    )
    .await
    .assert(403);
    let (ok, out, _) = run(&["user", "list"], "").await.unwrap();
    assert!(ok && out.contains("disabled"), "{out}");
    let (ok, _, _) = run(&["user", "enable", "tess"], "").await.unwrap();
    assert!(ok);
    b.post_json(
        "/api/login",
        &json!({ "username": "tess", "password": PASSWORD }),
    )
    .await
    .assert(200);

    let (ok, _, err) = run(&["sessions", "list", "--user", "nobody"], "")
        .await
        .unwrap();
    assert!(!ok && err.contains("no user"), "{err}");
}

#[test]
fn startup_errors_are_clear_and_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["serve", "--public-url", "not a url"], "public_url"),
        (&["serve", "--listen", "nowhere"], "listen"),
        (
            &["serve", "--config", "/nonexistent/cloakroom.toml"],
            "--config",
        ),
        (
            &["serve", "--data-dir", file.to_str().unwrap()],
            "data directory",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Issue 14: the polling near-cache's setting is refused, by flag and by variable, naming the
/// setting that replaced it; the server does not start.
#[test]
fn session_cache_ms_is_refused_naming_session_cache() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloakroom"));
        cmd.args(args).arg("--data-dir").arg(dir.path());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8(out.stderr).unwrap())
    };
    let (ok, err) = run(&["serve", "--session-cache-ms", "100"], None);
    assert!(!ok && err.contains("--session-cache"), "{err}");
    let (ok, err) = run(&["serve"], Some(("CLOAKROOM_SESSION_CACHE_MS", "100")));
    assert!(!ok && err.contains("`session_cache` = \"exact\""), "{err}");
    let (ok, err) = run(&["serve", "--session-cache", "push"], None);
    assert!(!ok && err.contains("shared stores"), "{err}");
}

/// Issue 14: an admin command holds the data directory's lock while it writes sessions with no
/// server running; a server started meanwhile waits for the lock instead of failing (README),
/// and one that finds it held for good says who holds it.
#[test]
fn a_server_waits_for_an_admin_command_holding_the_lock() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let lock = cloakroom_server::DataDirLock::acquire(dir.path()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server gave up while the lock was held for a moment"
    );
    drop(lock);
    let stderr = child.stderr.take().unwrap();
    let serving = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("cloakroom is serving on"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        serving,
        "the server did not start once the lock was released"
    );
}

#[test]
fn a_config_file_and_environment_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cloakroom.toml");
    std::fs::write(
        &config,
        "public_url = \"https://from-file.example\"\nunknown_key = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["user", "list", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success() && err.contains("unknown_key"),
        "unknown keys are refused: {err}"
    );
    // The environment points the command at a directory with no database: it says so,
    // naming that directory, and creates nothing there.
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["user", "list"])
        .env("CLOAKROOM_DATA_DIR", dir.path().join("from-env"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let wanted = dir.path().join("from-env/cloakroom.db");
    assert!(err.contains(&wanted.display().to_string()), "{err}");
    assert!(!dir.path().join("from-env").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--public-url",
            "http://localhost:8080",
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "server did not start");
    // A sign-up hashes a password (tens of milliseconds): long enough to be in flight.
    let request = http
        .post(format!("{base}/api/signup"))
        .header("origin", "http://localhost:8080")
        .json(&json!({ "username": "uma", "password": PASSWORD }))
        .send();
    let pid = child.id().to_string();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    });
    let response = request.await.expect("the in-flight request was answered");
    assert_eq!(response.status(), 201);
    killer.await.unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(status.status.success(), "exit: {:?}", status.status);
    let log = String::from_utf8_lossy(&status.stderr);
    assert!(
        log.contains("cloakroom is serving on http://localhost:8080"),
        "{log}"
    );
    assert!(log.contains("shut down cleanly"), "{log}");
}

/// Issue 14: with the exact session cache (the default on SQLite), an admin command in another
/// process revoking sessions is seen on the very next request: the command announces its
/// write on the server's admin socket and reports success only once the server dropped the
/// cached session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_cached_server_sees_cli_revocations_on_the_next_request() {
    let s = crate::support::start().await;
    if s.state.settings().session_store != cloakroom_server::config::SessionStoreKind::Sqlite {
        return; // The admin socket is SQLite's; shared stores announce through the store.
    }
    let mut b = s.signed_up("vera").await;
    for _ in 0..3 {
        b.get("/api/session").await.assert(200);
    }
    let cache = s.state.session_cache().expect("exact by default");
    assert!(
        cache.stats().hits >= 2,
        "the session is served from the cache"
    );
    let run = |args: &'static [&'static str]| {
        let (dir, env) = (s.dir.path().to_owned(), s.env.clone());
        tokio::task::spawn_blocking(move || cloakroom(&dir, &env, args, ""))
    };
    let (ok, out, err) = run(&["sessions", "revoke", "--user", "vera"])
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    b.get("/api/session").await.assert(401);

    let mut b = s
        .logged_in("vera", cloakroom_testkit::http::CHROME_UA)
        .await;
    b.get("/api/session").await.assert(200);
    b.get("/api/session").await.assert(200);
    let (ok, out, err) = run(&["user", "disable", "vera"]).await.unwrap();
    assert!(ok, "{out}{err}");
    b.get("/api/session").await.assert(401);
}

/// Beside a server with `session_cache = "off"` the admin commands work too: the server binds
/// its admin socket whenever sessions are in SQLite (a command cannot know the server's cache
/// settings; before issue 15 it bound none there, and a command's session write was refused
/// for want of one). Its identity cache hears account writes the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_beside_a_server_without_a_session_cache() {
    let s = crate::support::start_with(|raw| {
        raw.session_cache = Some(cloakroom_server::config::SessionCacheMode::Off);
    })
    .await;
    if s.state.settings().session_store != cloakroom_server::config::SessionStoreKind::Sqlite {
        return;
    }
    assert!(s.state.session_cache().is_none());
    let mut b = s.signed_up("xena").await;
    b.get("/api/session").await.assert(200);
    let run = |args: &'static [&'static str]| {
        let (dir, env) = (s.dir.path().to_owned(), s.env.clone());
        tokio::task::spawn_blocking(move || cloakroom(&dir, &env, args, ""))
    };
    let (ok, out, err) = run(&["user", "groups", "xena", "--add", "ops"])
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    let r = b
        .req("GET", "/auth/verify")
        .without("origin")
        .without("sec-fetch-site")
        .header("x-original-url", "https://app.example.com/")
        .send()
        .await;
    assert_eq!(r.header("remote-groups").as_deref(), Some("ops"));
    let (ok, out, err) = run(&["sessions", "revoke", "--user", "xena"])
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    b.get("/api/session").await.assert(401);
}

/// An admin command that cannot tell the running server about a session write refuses to make
/// it: here something holds the data directory's lock (as a server does) but answers on no
/// admin socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_write_the_server_cannot_hear_of_is_refused_before_it_is_made() {
    let s = crate::support::start().await;
    if s.state.settings().session_store != cloakroom_server::config::SessionStoreKind::Sqlite {
        return;
    }
    let mut b = s.signed_up("wilma").await;
    b.get("/api/session").await.assert(200);
    std::fs::remove_file(s.dir.path().join("cloakroom.sock")).unwrap();
    let (dir, env) = (s.dir.path().to_owned(), s.env.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        cloakroom(&dir, &env, &["sessions", "revoke", "--user", "wilma"], "")
    })
    .await
    .unwrap();
    assert!(!ok, "{out}{err}");
    assert!(err.contains("admin socket"), "{err}");
    assert!(err.contains("could not be told"), "{err}");
    // Nothing was revoked behind the server's back.
    b.get("/api/session").await.assert(200);
    assert_eq!(
        s.state
            .sessions()
            .list_for_user(&s.account("wilma").await.unwrap().id)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Issue 18: a user who forgot their password had no way back until mail exists. An
/// administrator sets a new one with `cloakroom user set-password`; every session of the
/// user ends with it. The login page leads to the reset page, which says whom to ask when the
/// account has no address to mail a link to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_can_set_a_forgotten_password() {
    let s = start().await;
    let mut old_device = s.signed_up("wanda").await;
    let page = s.browser().get("/login").await;
    assert!(
        page.body
            .contains(r#"<a href="/password-reset">Forgot your password?</a>"#),
        "{}",
        page.body
    );
    let page = s.browser().get("/password-reset").await;
    assert!(
        page.body
            .contains("No email address on your account? Ask your administrator"),
        "{}",
        page.body
    );
    let (dir, env) = (s.dir.path().to_owned(), s.env.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        cloakroom(
            &dir,
            &env,
            &["user", "set-password", "wanda"],
            "a fresh new passphrase 9\n",
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("set the password of wanda; ended 1 session(s)"),
        "{out}"
    );
    old_device.get("/api/session").await.assert(401);
    let mut b = s.browser();
    b.post_json(
        "/api/login",
        &json!({ "username": "wanda", "password": PASSWORD }),
    )
    .await
    .assert(401);
    b.post_json(
        "/api/login",
        &json!({ "username": "wanda", "password": "a fresh new passphrase 9" }),
    )
    .await
    .assert(200);
    // A weak password is refused and changes nothing.
    let (dir, env) = (s.dir.path().to_owned(), s.env.clone());
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        cloakroom(&dir, &env, &["user", "set-password", "wanda"], "short\n")
    })
    .await
    .unwrap();
    assert!(!ok && err.contains("at least 12 characters"), "{err}");
    b.get("/api/session").await.assert(200);
}

/// Issue 18: `cloakroom serve --listen 127.0.0.1:PORT` alone used to log "serving on
/// http://localhost:8080" and then refuse every form as cross-origin. The public URL now
/// follows the listen port, the log tells the truth, a form from that URL works, and the log
/// says whether sign-up is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_url_follows_the_listen_port() {
    let server = ServeProcess::start(
        |port| vec!["--listen".to_owned(), format!("127.0.0.1:{port}")],
        &[],
    )
    .await;
    let port = server.port;
    let signup = reqwest::Client::new()
        .post(format!("{}/api/signup", server.base))
        .header("origin", format!("http://localhost:{port}"))
        .json(&json!({ "username": "xena", "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .status();
    let log = server.stop();
    assert_eq!(signup, reqwest::StatusCode::CREATED, "{log}");
    assert!(
        log.contains(&format!("cloakroom is serving on http://localhost:{port}")),
        "{log}"
    );
    assert!(
        log.contains("sign-up is open (the `signup` setting: open, closed or invite): anyone"),
        "{log}"
    );
}

/// Issue 18: `--listen localhost:8080` was refused, a misspelt `CLOAKROOM_*` variable was
/// ignored in silence, and `user list` columns did not line up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_mistakes_are_visible() {
    // `--listen localhost:PORT` serves (ServeProcess waits for it on 127.0.0.1).
    let server = ServeProcess::start(
        |port| vec!["--listen".to_owned(), format!("localhost:{port}")],
        &[("CLOAKROOM_PUBLIK_URL", "https://typo.example")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = server.stop();
    assert!(
        log.contains("CLOAKROOM_PUBLIK_URL names no setting and is ignored"),
        "{log}"
    );

    let env: Vec<(String, String)> = Vec::new();
    let d = dir.path();
    with_database(d);
    for name in ["ali", "a-much-longer-username"] {
        let (ok, _, err) = cloakroom(d, &env, &["user", "add", name], &format!("{PASSWORD}\n"));
        assert!(ok, "{err}");
    }
    let (ok, out, err) = cloakroom(d, &env, &["user", "list"], "");
    assert!(ok, "{err}");
    // Where the second column (the id) starts, on the header and on every row.
    let second_column = |line: &str| {
        let name_end = line.find(' ').unwrap();
        name_end + line[name_end..].len() - line[name_end..].trim_start().len()
    };
    let starts: Vec<usize> = out.lines().map(second_column).collect();
    assert!(
        starts.windows(2).all(|w| w[0] == w[1]),
        "columns line up: {starts:?}\n{out}"
    );
}

/// Issue 13: `[[oidc]]` providers are checked at start-up: an issuer over plain http, or the
/// `github` preset (OAuth 2.0, not OpenID Connect), is named as the problem. (A valid one
/// starts: the sign-in tests in `oidc.rs` run servers with one.)
#[test]
fn oidc_providers_are_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let run = |table: &str| {
        let config = dir.path().join("cloakroom.toml");
        std::fs::write(
            &config,
            format!("[[oidc]]\nid = \"corp\"\n{table}\nclient_id = \"c\"\n"),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("CLOAKROOM_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A server that accepted the table would serve for ever: give it a bound.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("the server started with [[oidc]] {table}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run("issuer = \"http://login.example.com\"");
    assert!(err.contains("`oidc`") && err.contains("https://"), "{err}");
    let err = run("preset = \"github\"");
    assert!(err.contains("OAuth 2.0, not OpenID Connect"), "{err}");
}
