//! The pages in a real browser: `e2e/pages.test.js` (Playwright driving Debian's Chromium)
//! against a real server reached at its public URL `http://localhost:PORT`, as in the README's
//! quickstart. What the browser itself enforces — the `__Host-` cookie's acceptance, `SameSite`,
//! `Sec-Fetch-Site` on a real cross-site form post, forms working with script disabled — is
//! only observable there; `pages.rs` covers the same flows at the HTTP level.
//!
//! Needs `node`, `e2e/node_modules` (`cd e2e && npm ci`) and Chromium at `/usr/bin/chromium`
//! (`apt-get install chromium`; `CLOAKROOM_E2E_CHROMIUM` names another binary). Without them
//! the test is skipped with a message, unless `CLOAKROOM_REQUIRE_SERVICES=1` (as in CI), where
//! a missing piece is a failure. `CLOAKROOM_E2E_ARTIFACTS=DIR` keeps the screenshot of "Your
//! devices" there.
//!
//! The server reads time from a clock this test controls, as every server of the suite does.
//! A scenario that needs time to pass (a session that idles out) writes a number of seconds to
//! the file `advance` in `CLOAKROOM_E2E_CLOCK_DIR`; this test moves the clock on by that much
//! and removes the file, which tells the script it is done.
//!
//! The server mails through a real SMTP sink (aiosmtpd, as in the mail tests). A scenario that
//! follows a mailed link writes the file `mail-request` there; this test answers with
//! `mail.json`, every message the sink holds, decoded, and removes the request. It signs in
//! through a real OpenID provider too (`e2e/oidc-provider.mjs`, see `oidc.rs`), shown on the
//! login page as "Fixture ID".

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::start_at;

const SCRIPT: &str = "pages.test.js";
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// The script gives up on its own after two minutes; this only catches a wedged `node`.
const DEADLINE: Duration = Duration::from_secs(180);

/// `e2e/` at the repository root, two levels above this crate.
fn e2e_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .nth(2)
        .unwrap_or(crate_dir)
        .join("e2e")
}

fn chromium() -> PathBuf {
    std::env::var_os("CLOAKROOM_E2E_CHROMIUM")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from)
}

/// Why the browser tests cannot run here, if they cannot.
fn missing(dir: &Path, chromium: &Path) -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Some(format!(
                "`node --version` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Err(e) => {
            return Some(format!(
                "`node` cannot be run ({e}); install Node.js 20 or later"
            ));
        }
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Some(format!(
            "{} has no node_modules/playwright-core; run `npm ci` there",
            dir.display()
        ));
    }
    if !chromium.is_file() {
        return Some(format!(
            "no browser at {}; run `apt-get install -y chromium`",
            chromium.display()
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_work_in_a_real_browser() {
    let dir = e2e_dir();
    let chromium = chromium();
    if let Some(why) = missing(&dir, &chromium) {
        return cloakroom_testkit::skip(format!("browser tests: {why}")).unwrap_or(());
    }

    let Some(sink) = crate::procs::SmtpSink::start().await else {
        return;
    };
    // The OpenID provider registers the server's redirect URI, so the port comes first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(provider) = crate::oidc::Provider::start(port) else {
        return;
    };
    let server = start_at(port, |raw| {
        crate::support::for_browser(raw, Some(&sink.url()));
        raw.oidc = vec![crate::oidc::fixture_config(&provider)];
        raw.passkey_login = true;
    })
    .await;
    let base = server.state.settings().public_origin.as_str().to_owned();
    let temp = tempfile::tempdir().unwrap();
    // The screenshot goes with the temporary directory unless CLOAKROOM_E2E_ARTIFACTS names a
    // directory to keep it in.
    let artifacts = std::env::var_os("CLOAKROOM_E2E_ARTIFACTS")
        .filter(|p| !p.is_empty())
        .map_or_else(|| temp.path().to_owned(), PathBuf::from);
    std::fs::create_dir_all(&artifacts).unwrap();
    let clock_dir = temp.path().join("clock");
    std::fs::create_dir_all(&clock_dir).unwrap();
    let advance = clock_dir.join("advance");
    let mail_request = clock_dir.join("mail-request");
    let now_request = clock_dir.join("now-request");
    // One file for both streams keeps the output in the order it was written.
    let log_path = temp.path().join("node.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new("node")
        .args(["--test-reporter=spec", SCRIPT])
        .current_dir(&dir)
        .env("CLOAKROOM_E2E_BASE_URL", &base)
        .env("CLOAKROOM_E2E_CHROMIUM", &chromium)
        .env("CLOAKROOM_E2E_ARTIFACTS", &artifacts)
        .env("CLOAKROOM_E2E_CLOCK_DIR", &clock_dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // The server runs on this runtime's workers while the browser drives it, so wait without
    // blocking them.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        // The script writes the request whole (a rename), so a read never sees half of it.
        if let Ok(text) = std::fs::read_to_string(&advance) {
            let secs: u64 = text.trim().parse().unwrap();
            server.clock.advance(Duration::from_secs(secs));
            std::fs::remove_file(&advance).unwrap();
        }
        // The server's time (its clock is the test's), for the authenticator codes the
        // script computes.
        if now_request.exists() {
            let tmp = clock_dir.join("now.tmp");
            let now = cloakroom_core::Clock::now(&server.clock).as_unix_millis();
            std::fs::write(&tmp, now.to_string()).unwrap();
            std::fs::rename(&tmp, clock_dir.join("now")).unwrap();
            std::fs::remove_file(&now_request).unwrap();
        }
        if mail_request.exists() {
            let messages = serde_json::to_vec(&sink.messages()).unwrap();
            let tmp = clock_dir.join("mail.json.tmp");
            std::fs::write(&tmp, messages).unwrap();
            std::fs::rename(&tmp, clock_dir.join("mail.json")).unwrap();
            std::fs::remove_file(&mail_request).unwrap();
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = started.elapsed();
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        // Shown by `cargo test -- --nocapture`: which scenarios ran, and how long they took.
        Some(s) if s.success() => {
            eprintln!("{output}\nbrowser tests against {base} passed in {took:.1?}");
        }
        Some(s) => panic!("browser tests against {base} failed ({s}) after {took:.1?}:\n{output}"),
        None => {
            panic!("browser tests against {base} did not finish within {DEADLINE:?}:\n{output}")
        }
    }
}
