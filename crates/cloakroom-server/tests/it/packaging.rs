//! The systemd unit the Debian package installs (issue 18, item 10). `systemctl` does not run
//! on these machines, so the unit is checked with `systemd-analyze` (`verify`, and `security`
//! for its hardening) and the server is started the way the unit starts it: its `ExecStart`
//! command line, environment, working directory, umask and data directory, as an unprivileged
//! user without capabilities and with no new privileges (what `DynamicUser=`,
//! `NoNewPrivileges=` and `CapabilityBoundingSet=` give it).
//!
//! From the source tree (always), the unit, binary and configuration are laid out in a
//! throwaway root. With `CLOAKROOM_TEST_INSTALLED=1` (set by `.ci/run` after it installed the
//! package), the installed files themselves are checked and run; only the data directory is a
//! throwaway one.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::procs::{Guarded, free_port, require};

const UNIT: &str = "/usr/lib/systemd/system/cloakroom.service";
const STATE_DIR: &str = "/var/lib/cloakroom";
/// The user `DynamicUser=` stands for here: not root, owning nothing else.
const NOBODY: u32 = 65534;

/// Where the unit's files are: the installed ones, or copies under a throwaway root.
struct Layout {
    /// A directory to prefix the unit's paths with (`None`: they are real).
    root: Option<tempfile::TempDir>,
    /// The data directory the service gets, in place of /var/lib/cloakroom.
    state: tempfile::TempDir,
}

impl Layout {
    fn new(installed: bool) -> Self {
        let state = tempfile::tempdir().unwrap();
        if installed {
            return Self { root: None, state };
        }
        let root = tempfile::tempdir().unwrap();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let place = |from: &Path, to: &str, mode: u32| {
            let to = root.path().join(to.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        place(
            Path::new(env!("CARGO_BIN_EXE_cloakroom")),
            "/usr/bin/cloakroom",
            0o755,
        );
        place(
            &manifest.join("../../examples/cloakroom.toml"),
            "/etc/cloakroom/cloakroom.toml",
            0o644,
        );
        // The units the service's refer to (network-online.target, …), for `verify`.
        for entry in std::fs::read_dir("/usr/lib/systemd/system").unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                place(
                    &entry.path(),
                    &format!(
                        "/usr/lib/systemd/system/{}",
                        entry.file_name().to_string_lossy()
                    ),
                    0o644,
                );
            }
        }
        place(
            &manifest.join("../../packaging/cloakroom.service"),
            UNIT,
            0o644,
        );
        Self {
            root: Some(root),
            state,
        }
    }

    /// The file the unit means by `path`.
    fn host(&self, path: &str) -> PathBuf {
        if path == STATE_DIR {
            return self.state.path().to_owned();
        }
        match &self.root {
            Some(root) => root.path().join(path.trim_start_matches('/')),
            None => PathBuf::from(path),
        }
    }

    /// `systemd-analyze ARGS UNIT` (under the throwaway root, if any): its status and output.
    fn analyze(&self, args: &[&str]) -> (bool, String) {
        let mut command = Command::new("systemd-analyze");
        command.args(args);
        if let Some(root) = &self.root {
            command.arg(format!("--root={}", root.path().display()));
        }
        let out = command.arg(UNIT).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }
}

/// The `[Service]` settings of a unit file, each key with every value it was given.
fn service_section(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = String::new();
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((key, value)) = line.split_once('=')
        {
            settings
                .entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    settings
}

/// Issue 18: a Debian package with a hardened systemd unit. The unit verifies without a
/// warning, `systemd-analyze security` rates it well, it carries the hardening the issue names,
/// and the server it starts — as an unprivileged user, with the unit's command line,
/// environment, working directory and umask — serves `/healthz`, keeps its files private and
/// stops cleanly on the unit's `KillSignal=`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_unit_verifies_and_serves_as_the_unit_would() {
    let Some(()) = require("systemd-analyze", &["--version"]) else {
        return;
    };
    let installed = std::env::var("CLOAKROOM_TEST_INSTALLED").is_ok_and(|v| v == "1");
    let layout = Layout::new(installed);

    let (ok, text) = layout.analyze(&["verify"]);
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
    let (_, text) = layout.analyze(&["security", "--offline=yes"]);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for cloakroom.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(
        exposure <= 2.0,
        "exposure {exposure} (0 is best, 10 worst):\n{text}"
    );

    let unit = service_section(&std::fs::read_to_string(layout.host(UNIT)).unwrap());
    let one = |key: &str| -> String {
        match unit.get(key).map(Vec::as_slice) {
            Some([value]) => value.clone(),
            other => panic!("{key}= once in the unit, found {other:?}"),
        }
    };
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "cloakroom"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("UMask", "0077"),
    ] {
        assert_eq!(one(key), value, "{key}=");
    }
    assert!(unit["SystemCallFilter"].contains(&"@system-service".to_owned()));
    assert_eq!(one("KillSignal"), "SIGTERM", "graceful shutdown");

    // The service's view: its data directory is its own, 0700 (StateDirectoryMode=).
    let state = layout.state.path();
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let as_root = is_root();
    if as_root {
        std::os::unix::fs::chown(state, Some(NOBODY), Some(NOBODY)).unwrap();
        // Let the unprivileged user reach the directories on the way to its own.
        for dir in state.ancestors().skip(1).chain(
            layout
                .root
                .iter()
                .flat_map(|r| r.path().ancestors().collect::<Vec<_>>()),
        ) {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode();
            if mode & 0o001 == 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))
                    .unwrap();
            }
        }
    }

    let exec: Vec<String> = one("ExecStart")
        .split_whitespace()
        .map(|word| {
            if word.starts_with('/') {
                layout.host(word).display().to_string()
            } else {
                word.to_owned()
            }
        })
        .collect();
    let port = free_port();
    let mut command = if as_root {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--no-new-privs",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "--",
        ]);
        c
    } else {
        eprintln!("not root: the server runs as this user, with its privileges");
        Command::new("env")
    };
    // UMask= applies before the program starts: a shell sets it, then becomes the command.
    command
        .args([
            "sh",
            "-c",
            &format!("umask {} && exec \"$@\"", one("UMask")),
            "sh",
        ])
        .args(&exec)
        .current_dir(layout.host(&one("WorkingDirectory")))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(
            unit.get("Environment")
                .into_iter()
                .flatten()
                .filter_map(|e| e.split_once('=')),
        )
        // The one thing not from the unit: a free port instead of the default 8080.
        .env("CLOAKROOM_LISTEN", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped());
    let mut server = Guarded(command.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let mut healthy = false;
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
            healthy = r.status() == 200;
            break;
        }
        if server.0.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signal = one("KillSignal");
    let sent = Command::new("kill")
        .args([
            "-s",
            signal.trim_start_matches("SIG"),
            &server.0.id().to_string(),
        ])
        .status()
        .unwrap();
    let status = server.0.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut log).unwrap();
    assert!(healthy, "/healthz did not answer 200 ({status:?}):\n{log}");
    assert!(sent.success(), "{signal} reached the server");
    assert!(status.success(), "{status:?}:\n{log}");
    assert!(log.contains("shut down cleanly"), "{log}");

    for (name, mode) in [
        ("cloakroom.db", 0o600),
        ("cloakroom.lock", 0o600),
        ("keys", 0o700),
    ] {
        let meta = std::fs::metadata(state.join(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{name}");
        if as_root {
            assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), NOBODY, "{name}");
        }
    }
}

/// Whether this process runs as root (it then starts the server as another user, as systemd
/// would). Read from /proc rather than with `libc::getuid` (no unsafe code in this crate).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0")
}
