//! `cloakroom backup` and `cloakroom restore` (issue 18, item 11): a consistent copy taken
//! while a server is busy creating accounts, put back on another server; a restore refused
//! while a server holds the data directory.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloakroom_testkit::http::{Browser, Client};
use serde_json::json;

use crate::cli::{error_line, run};
use crate::procs::ServeProcess;
use crate::support::PASSWORD;

/// A server as a process that lets one address sign up as often as the test needs (the
/// sign-up throttle is not the subject here).
async fn busy_server(dir: Option<tempfile::TempDir>) -> ServeProcess {
    let args = |port: u16| {
        ["--listen", &format!("127.0.0.1:{port}")]
            .into_iter()
            .chain([
                "--signup-limit-per-network",
                "1000000",
                "--hash-workers",
                "2",
            ])
            .map(str::to_owned)
            .collect()
    };
    match dir {
        Some(dir) => ServeProcess::start_in(dir, args, &[]).await,
        None => ServeProcess::start(args, &[]).await,
    }
}

/// A browser on the server's public URL (`http://localhost:PORT`, reached at 127.0.0.1).
fn browser(server: &ServeProcess) -> Browser {
    Browser::new(Client::new(
        &server.base,
        &format!("http://localhost:{}", server.port),
    ))
}

/// `cloakroom ARGS --data-dir DIR`, off the async runtime.
async fn admin(args: Vec<String>, dir: std::path::PathBuf) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut argv: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        argv.extend([OsStr::new("--data-dir"), dir.as_os_str()]);
        run(&argv)
    })
    .await
    .unwrap()
}

/// One account's sign-up: when its request left, and when its 201 came back.
struct SignUp {
    name: String,
    sent: Instant,
    acknowledged: Instant,
}

/// Issue 18: the embedded default holds every account, and there was no way to keep them. A
/// backup taken while four clients keep signing up restores to a server on which every
/// account acknowledged before the backup began signs in; accounts asked for after it ended
/// are not there (the copy is a snapshot, and the second server really runs on it); and no
/// session comes back with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_acknowledged_account() {
    let server = busy_server(None).await;
    let mut before_everything = browser(&server);
    before_everything
        .post_json(
            "/api/signup",
            &json!({ "username": "early", "password": PASSWORD }),
        )
        .await
        .assert(201);

    let done = Arc::new(Mutex::new(Vec::<SignUp>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (done, stop) = (done.clone(), stop.clone());
        let mut b = browser(&server);
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("load-{client}-{i}");
                i += 1;
                let sent = Instant::now();
                let reply = b
                    .req("POST", "/api/signup")
                    .no_cookie()
                    .json(&json!({ "username": name, "password": PASSWORD }))
                    .send()
                    .await;
                // A refusal acknowledges nothing and creates nothing (the throttle answers
                // before any write), so this client waits and goes on. Under a heavily loaded
                // CI machine a 429 was seen here once in several runs; not explained yet.
                if reply.status == 429 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                reply.assert(201);
                let acknowledged = Instant::now();
                done.lock().unwrap().push(SignUp {
                    name,
                    sent,
                    acknowledged,
                });
            }
        }));
    }
    let count = |done: &Mutex<Vec<SignUp>>| done.lock().unwrap().len();
    while count(&done) < 12 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("cloakroom-backup.db");
    let began = Instant::now();
    let out = admin(
        vec!["backup".into(), file.display().to_string()],
        server.dir.path().to_owned(),
    )
    .await;
    let ended = Instant::now();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sessions are not included"), "{stdout}");
    let during = count(&done);
    // Traffic goes on after the backup: these accounts must not be in it.
    while done
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.sent > ended)
        .count()
        < 3
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let log = server.stop();
    let done = std::mem::take(&mut *done.lock().unwrap());
    let before: Vec<&str> = done
        .iter()
        .filter(|s| s.acknowledged < began)
        .map(|s| s.name.as_str())
        .chain(["early"])
        .collect();
    let after: Vec<&str> = done
        .iter()
        .filter(|s| s.sent > ended)
        .map(|s| s.name.as_str())
        .collect();
    eprintln!(
        "{} sign-ups acknowledged before the backup began, {during} by its end, {} asked for after it",
        before.len(),
        after.len()
    );
    assert!(
        before.len() >= 13,
        "{} before, {during} by the end",
        before.len()
    );
    assert!(
        done.iter()
            .any(|s| s.sent < ended && s.acknowledged > began),
        "some sign-ups were in flight while the backup ran"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "the copy holds password hashes"
    );

    let restored = tempfile::tempdir().unwrap();
    let out = admin(
        vec!["restore".into(), file.display().to_string()],
        restored.path().to_owned(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = busy_server(Some(restored)).await;
    for name in &before {
        browser(&second)
            .post_json(
                "/api/login",
                &json!({ "username": name, "password": PASSWORD }),
            )
            .await
            .assert(200);
    }
    for name in after.iter().take(3) {
        let reply = browser(&second)
            .post_json(
                "/api/login",
                &json!({ "username": name, "password": PASSWORD }),
            )
            .await;
        assert_eq!(reply.status, 401, "{name} was created after the backup");
    }
    // The session signed in before the backup does not come back with it.
    before_everything.set_base(&second.base, &format!("http://localhost:{}", second.port));
    before_everything.get("/api/session").await.assert(401);
    drop(log);
    second.stop();
}

/// Issue 18: a restore must not replace the database under a running server. The server holds
/// the data directory's lock while it serves: restore (and a second server) refuse, naming the
/// server's process; once it has stopped, a file that is not a backup is refused without
/// touching anything, and the backup restores. A backup never overwrites a file unless told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_is_refused_while_a_server_holds_the_data_dir() {
    let server = busy_server(None).await;
    browser(&server)
        .post_json(
            "/api/signup",
            &json!({ "username": "keeper", "password": PASSWORD }),
        )
        .await
        .assert(201);
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("keep.db");
    let file_arg = file.display().to_string();
    let dir = server.dir.path().to_owned();

    let out = admin(vec!["backup".into(), file_arg.clone()], dir.clone()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin(vec!["backup".into(), file_arg.clone()], dir.clone()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        error_line(&out).ends_with("keep.db exists; nothing was written"),
        "{}",
        error_line(&out)
    );
    let out = admin(
        vec!["backup".into(), file_arg.clone(), "--force".into()],
        dir.clone(),
    )
    .await;
    assert!(out.status.success(), "--force replaces it");

    let held = format!(
        "the data directory {} is in use by another cloakroom process (pid {})",
        dir.display(),
        server.pid()
    );
    let out = admin(vec!["restore".into(), file_arg.clone()], dir.clone()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).starts_with(&held), "{}", error_line(&out));
    let out = admin(
        vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()],
        dir.clone(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a second server on the same directory"
    );
    assert!(error_line(&out).starts_with(&held), "{}", error_line(&out));

    let (_, dir_guard) = server.stop_keeping_dir();
    let not_a_backup = root.path().join("notes.txt");
    std::fs::write(&not_a_backup, "shopping list\n").unwrap();
    let out = admin(
        vec!["restore".into(), not_a_backup.display().to_string()],
        dir.clone(),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        error_line(&out).contains("notes.txt is not a Cloakroom database"),
        "{}",
        error_line(&out)
    );
    let listed = admin(vec!["user".into(), "list".into()], dir.clone()).await;
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("keeper"),
        "the database is untouched"
    );

    let out = admin(vec!["restore".into(), file_arg], dir.clone()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("restored 1 account(s)"), "{stdout}");
    let listed = admin(vec!["user".into(), "list".into()], dir).await;
    assert!(String::from_utf8_lossy(&listed.stdout).contains("keeper"));
    drop(dir_guard);
}
