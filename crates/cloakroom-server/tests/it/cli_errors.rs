//! The `cloakroom` command when something is wrong (issue 18, items 6 and 9): each error said
//! once on one line, a documented exit status, admin commands that never create an empty
//! database, and configuration files whose errors name the file and the setting.

use std::ffi::OsStr;
use std::path::Path;

use crate::cli::{error_line, run, with_database};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Issue 18: an admin command given a `--data-dir` with no database used to create an empty
/// one there and print an empty user list, as if every account were gone. Each admin command
/// now refuses, names the file it looked for and says how to fix it, and creates nothing.
#[test]
fn admin_commands_refuse_a_data_dir_without_a_database() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = root.path().join("missing");
    let commands: [&[&str]; 6] = [
        &["user", "list"],
        &["user", "add", "alice"],
        &["user", "invite"],
        &["sessions", "list", "--user", "alice"],
        &["keys", "list"],
        &["backup", "copy.db"],
    ];
    for dir in [&empty, &missing] {
        for args in commands {
            let mut argv: Vec<&OsStr> = args.iter().copied().map(os).collect();
            argv.extend([os("--data-dir"), dir.as_os_str()]);
            let out = run(&argv);
            let line = error_line(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {line}");
            let db = dir.join("cloakroom.db").display().to_string();
            assert!(
                line.contains(&format!(
                    "{db} is not a Cloakroom database: there is no such file"
                )),
                "{args:?} names the file: {line}"
            );
            assert!(
                line.contains("run `cloakroom serve` once") && line.contains("--data-dir"),
                "{args:?} says how to fix it: {line}"
            );
            assert!(!Path::new(&db).exists(), "{args:?} created {db}");
        }
    }
    assert!(!missing.exists(), "no directory was created");

    // A file that is not a Cloakroom database is named for what it is, and left alone.
    std::fs::write(empty.join("cloakroom.db"), "not a database\n".repeat(100)).unwrap();
    let out = run(&[os("user"), os("list"), os("--data-dir"), empty.as_os_str()]);
    let line = error_line(&out);
    assert!(line.contains("it is not an SQLite database"), "{line}");
    assert_eq!(
        std::fs::read_to_string(empty.join("cloakroom.db")).unwrap(),
        "not a database\n".repeat(100)
    );

    // With a database, the same command works.
    let ok = root.path().join("ok");
    with_database(&ok);
    let out = run(&[os("user"), os("list"), os("--data-dir"), ok.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 18: errors printed "X: X" (a message that repeated its source, then the source).
/// Failures from each layer — the data directory, the listen address, the database, a store
/// setting, a configuration file — print one line in which nothing is said twice.
#[test]
fn every_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let served = dir.path().join("served");
    let garbage = dir.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join("cloakroom.db"), "x".repeat(4096)).unwrap();
    let cases: [(Vec<&OsStr>, &str); 4] = [
        (
            vec![os("serve"), os("--data-dir"), file.as_os_str()],
            "File exists (os error 17)",
        ),
        (
            vec![
                os("serve"),
                os("--listen"),
                os(&listen),
                os("--data-dir"),
                served.as_os_str(),
            ],
            "Address already in use",
        ),
        (
            vec![os("serve"), os("--data-dir"), garbage.as_os_str()],
            "file is not a database",
        ),
        (
            vec![
                os("serve"),
                os("--session-store"),
                os("redis"),
                os("--redis-url"),
                os("http://not-redis"),
            ],
            "`redis_url`",
        ),
    ];
    for (args, want) in cases {
        let out = run(&args);
        let line = error_line(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {line}");
        assert!(line.contains(want), "{args:?}: {line}");
    }
    drop(taken);
}

/// Issue 18: the exit status was undocumented. It is in `--help` and the README, and each
/// code is what a script sees: 0 done, 1 failed, 2 a wrong command line, 3 no such user.
#[test]
fn the_exit_status_says_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    with_database(dir.path());
    let d = dir.path().as_os_str();
    let status = |args: &[&OsStr]| run(args).status.code();

    let help = run(&[os("--help")]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("Exit status:") && text.contains("3  the user named does not exist"),
        "{text}"
    );
    assert_eq!(
        status(&[os("user"), os("list"), os("--data-dir"), d]),
        Some(0)
    );
    assert_eq!(
        status(&[
            os("user"),
            os("list"),
            os("--data-dir"),
            d,
            os("--listen"),
            os("x")
        ]),
        Some(2),
        "a flag `user` does not take"
    );
    assert_eq!(status(&[os("user"), os("frobnicate")]), Some(2));
    for args in [
        &["user", "disable", "nobody"][..],
        &["user", "enable", "nobody"],
        &["sessions", "revoke", "--user", "nobody"],
    ] {
        let mut argv: Vec<&OsStr> = args.iter().copied().map(os).collect();
        argv.extend([os("--data-dir"), d]);
        let out = run(&argv);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert_eq!(error_line(&out), "no user \"nobody\"");
    }
    let out = run(&[
        os("user"),
        os("disable"),
        os("no/body"),
        os("--data-dir"),
        d,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an invalid name is not 'not found'"
    );
    let missing = dir.path().join("missing");
    assert_eq!(
        status(&[
            os("user"),
            os("list"),
            os("--data-dir"),
            missing.as_os_str()
        ]),
        Some(1)
    );
}

/// Issue 18: a broken TOML file printed figment's message twice, named keys as
/// `default.listen` and the file as given on the command line. Now: the file's absolute path,
/// the setting by its name, TOML's own pointer into the file, once.
#[test]
fn configuration_file_errors_read_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap();
    };
    write(
        "syntax.toml",
        "listen = \"127.0.0.1:8080\"\npublic_url = \n",
    );
    write("type.toml", "idle_timeout_secs = \"soon\"\n");
    write("unknown.toml", "lisen = \"127.0.0.1:9000\"\n");
    // Relative to the working directory, as an operator types it.
    let config = |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .args(["user", "list", "--config", name])
            .current_dir(dir.path())
            .env_remove("CLOAKROOM_DATA_DIR")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let full = String::from_utf8_lossy(&out.stderr).into_owned();
        (error_line(&out), full)
    };
    let absolute = |name: &str| {
        format!(
            "configuration file {}",
            dir.path().canonicalize().unwrap().join(name).display()
        )
    };

    let (line, full) = config("syntax.toml");
    assert!(
        line.starts_with(&absolute("syntax.toml")),
        "the absolute path: {line}"
    );
    assert!(line.contains("TOML parse error at line 2"), "{line}");
    assert!(
        full.contains("public_url = "),
        "TOML quotes the line: {full}"
    );
    assert_eq!(full.matches("TOML parse error").count(), 1, "{full}");

    let (line, full) = config("type.toml");
    assert_eq!(
        line,
        format!(
            "{}: `idle_timeout_secs`: invalid type: found string \"soon\", expected u64",
            absolute("type.toml")
        )
    );
    assert!(!full.contains("default."), "{full}");

    let (line, _) = config("unknown.toml");
    assert!(
        line.starts_with(&format!(
            "{}: unknown setting `lisen`",
            absolute("unknown.toml")
        )),
        "{line}"
    );

    // The same from the environment names the variable.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["user", "list"])
        .env("CLOAKROOM_IDLE_TIMEOUT_SECS", "soon")
        .output()
        .unwrap();
    let line = error_line(&out);
    assert_eq!(
        line,
        "environment variable CLOAKROOM_IDLE_TIMEOUT_SECS: invalid type: found string \"soon\", expected u64"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["user", "list"])
        .env("CLOAKROOM_SAME_SITE", "none")
        .output()
        .unwrap();
    assert_eq!(
        error_line(&out),
        "environment variable CLOAKROOM_SAME_SITE: `none` is not one of `lax`, `strict`"
    );
}

/// Issue 18: `--help` showed ten settings of twenty-seven, and every command showed the same
/// ones. `serve --help` lists every setting; `user list --help` the ones it uses.
#[test]
fn serve_help_lists_every_setting() {
    let out = run(&[os("serve"), os("--help")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for (key, _) in cloakroom_server::config::SETTINGS {
        let flag = format!("--{}", key.replace(['_', '.'], "-"));
        assert!(text.contains(&flag), "{flag} in serve --help:\n{text}");
    }
    let out = run(&[os("user"), os("list"), os("--help")]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("--data-dir") && text.contains("--config"),
        "{text}"
    );
    for absent in [
        "--listen",
        "--public-url",
        "--idle-timeout-secs",
        "--signup",
    ] {
        assert!(
            !text.contains(absent),
            "{absent} in user list --help:\n{text}"
        );
    }
}
