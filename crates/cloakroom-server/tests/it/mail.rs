//! Mail through a real SMTP server (aiosmtpd, started by the tests on 127.0.0.1): delivered
//! messages read back by Python's `email` package, a server that is down and comes back, one
//! that never does, a `cloakroom serve` killed before it could deliver, and the log in place of
//! SMTP. Issue 12, "Mail".

use std::time::Duration;

use cloakroom_core::link::{PasswordReset, ResetFingerprint};
use cloakroom_core::mail::{EmailAddress, MailId, MailOutbox, MailRecord, MailState};
use cloakroom_server::mail::Mail;

use crate::cli::cloakroom;
use crate::procs::{ServeProcess, SmtpSink, free_port};
use crate::support::{TestServer, start_with};

const FROM: &str = "Example login <login@example.com>";

fn address(a: &str) -> EmailAddress {
    EmailAddress::parse(a).unwrap()
}

/// An in-process server sending to `smtp_url`, retrying after 30 s (on its manual clock).
async fn server_sending_to(smtp_url: &str, max_attempts: u32) -> TestServer {
    let url = smtp_url.to_owned();
    start_with(move |raw| {
        raw.smtp_url = Some(url.parse().unwrap());
        raw.mail_from = Some(FROM.into());
        raw.smtp_timeout_secs = 2;
        raw.mail_retry_secs = 30;
        raw.mail_max_attempts = max_attempts;
    })
    .await
}

/// Polls the outbox until `done` holds for the message (or fails after a while).
async fn wait_until(
    outbox: &dyn MailOutbox,
    id: MailId,
    done: impl Fn(&MailRecord) -> bool,
) -> MailRecord {
    for _ in 0..300 {
        let r = outbox.get(id).await.unwrap().unwrap();
        if done(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{:?}", outbox.get(id).await.unwrap());
}

/// A password-reset mail enqueued through the `Mailer` arrives as one multipart message:
/// From, To and Subject as configured, the text and the HTML part both carrying the link, and
/// the link verifies as a reset link for the user. The request path only enqueued it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mail_is_delivered_with_text_html_and_a_working_link() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let s = server_sending_to(&sink.url(), 10).await;
    let user = cloakroom_core::UserId::new("u-alice").unwrap();
    let hash = cloakroom_core::accounts::PasswordHash::new("$argon2id$v=19$x".into());
    let reset = PasswordReset::new(user.clone(), ResetFingerprint::of(&user, &hash, 0));
    let now = cloakroom_core::Clock::now(&s.clock);
    let (link, _) = s.state.links().reset_url(&reset, now).unwrap();
    let id = s
        .state
        .mailer()
        .enqueue(Mail::PasswordReset {
            to: address("alice@example.com"),
            username: "alice".into(),
            link: link.clone(),
            expires_in: Duration::from_secs(1800),
        })
        .await
        .unwrap();

    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 1, "one message");
    let m = &messages[0];
    let h = &m["headers"];
    assert_eq!(h["From"], FROM);
    assert_eq!(h["To"], "alice@example.com");
    assert_eq!(h["Subject"], "Reset your Cloakroom password");
    assert_eq!(h["Auto-Submitted"], "auto-generated");
    assert_eq!(h["X-MailFrom"], "login@example.com", "the envelope sender");
    assert_eq!(h["X-RcptTo"], "alice@example.com", "the envelope recipient");
    let message_id = h["Message-ID"].as_str().unwrap();
    assert!(
        message_id.starts_with(&format!("<cloakroom.{id}."))
            && message_id.ends_with("@example.com>"),
        "{message_id}"
    );
    assert_eq!(m["content_type"], "multipart/alternative");
    let text = m["text"].as_str().unwrap();
    let html = m["html"].as_str().unwrap();
    assert!(text.starts_with("Hello alice,"), "{text}");
    assert!(text.contains("It works once, for\n30 minutes"), "{text}");
    assert!(
        text.lines().any(|l| l == link),
        "the link on a line of its own: {text}"
    );
    assert!(html.contains(&format!("<a href=\"{link}\">")), "{html}");

    // Follow the link as far as this part of the issue goes: its token is a reset link for
    // alice, signed by this server's link key.
    let token = link.split_once("?token=").unwrap().1;
    let verified = s.state.links().verify::<PasswordReset>(token, now).unwrap();
    assert_eq!(verified.claims.user(), &user);

    let record = wait_until(&**s.state.mailer().outbox(), id, |r| {
        r.state == MailState::Sent
    })
    .await;
    assert_eq!(record.attempts, 1);
}

/// The SMTP server is down when the message is due: the attempt fails, is recorded, and the
/// message waits. The server comes back; at the retry time the message arrives — once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_then_back_gets_the_mail_later() {
    if crate::procs::require("python3", &["-c", "import aiosmtpd"]).is_none() {
        return;
    }
    let port = free_port();
    let s = server_sending_to(&format!("smtp://127.0.0.1:{port}"), 10).await;
    let outbox = s.state.mailer().outbox().clone();
    let id = s
        .state
        .mailer()
        .enqueue(Mail::Test {
            to: address("bob@example.com"),
        })
        .await
        .unwrap();
    let failed = wait_until(&*outbox, id, |r| r.last_error.is_some()).await;
    assert_eq!((failed.state, failed.attempts), (MailState::Pending, 1));
    let now = cloakroom_core::Clock::now(&s.clock);
    assert_eq!(
        failed.next_attempt_at,
        Some(now.saturating_add(Duration::from_secs(30))),
        "retried after mail_retry_secs"
    );

    let sink = SmtpSink::start_on(port).await.unwrap();
    // Not before the retry is due, even when woken.
    s.state.mailer().wake();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sink.messages().is_empty(),
        "delivered before its retry time"
    );
    s.clock.advance(Duration::from_secs(30));
    s.state.mailer().wake();
    let sent = wait_until(&*outbox, id, |r| r.state == MailState::Sent).await;
    assert_eq!(sent.attempts, 2);
    assert_eq!(
        sent.last_error, failed.last_error,
        "the failure stays on record"
    );
    let messages = sink.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["headers"]["To"], "bob@example.com");
    assert_eq!(messages[0]["headers"]["Subject"], "Cloakroom test message");
}

/// With nothing ever listening, the message is tried `mail_max_attempts` times with growing
/// gaps, then marked failed and kept, and `cloakroom mail list` shows why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_never_gets_through_is_marked_failed_and_kept() {
    let port = free_port();
    let s = server_sending_to(&format!("smtp://127.0.0.1:{port}"), 3).await;
    let outbox = s.state.mailer().outbox().clone();
    let id = s
        .state
        .mailer()
        .enqueue(Mail::Test {
            to: address("carol@example.com"),
        })
        .await
        .unwrap();
    for (attempt, wait) in [(1, 30), (2, 60)] {
        let now = cloakroom_core::Clock::now(&s.clock);
        // While attempt N is in flight its record already counts N and still carries attempt
        // N-1's error, and is due at its lease's end (4 x smtp_timeout + 10 s), not a retry.
        let lease_end = Some(now.saturating_add(Duration::from_secs(4 * 2 + 10)));
        let r = wait_until(&*outbox, id, |r| {
            r.attempts == attempt && r.last_error.is_some() && r.next_attempt_at != lease_end
        })
        .await;
        assert_eq!(
            r.next_attempt_at,
            Some(now.saturating_add(Duration::from_secs(wait))),
            "attempt {attempt}: the gap doubles"
        );
        s.clock.advance(Duration::from_secs(wait));
        s.state.mailer().wake();
    }
    let r = wait_until(&*outbox, id, |r| r.state == MailState::Failed).await;
    assert_eq!(r.attempts, 3);
    assert!(
        r.last_error
            .as_deref()
            .unwrap()
            .contains("onnection refused"),
        "{r:?}"
    );

    let (ok, out, err) = cloakroom(s.dir.path(), &s.env, &["mail", "list"], "");
    assert!(ok, "{err}");
    let row = out.lines().nth(1).unwrap();
    assert!(
        row.contains("failed")
            && row.contains("carol@example.com")
            && row.contains("onnection refused"),
        "{out}"
    );
}

/// Issue 12: "a crash between 'reset requested' and 'mail sent' loses no mail". A message is
/// queued (by `cloakroom mail test`) while the SMTP server is down; `cloakroom serve` tries,
/// fails, and is killed with SIGKILL. The SMTP server comes up, `cloakroom serve` starts again
/// on the same data: the message arrives, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_before_delivery_loses_no_mail_and_sends_it_once() {
    if crate::procs::require("python3", &["-c", "import aiosmtpd"]).is_none() {
        return;
    }
    let smtp_port = free_port();
    let args = move |port: u16| -> Vec<String> {
        [
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--smtp-url",
            &format!("smtp://127.0.0.1:{smtp_port}"),
            "--mail-from",
            FROM,
            "--mail-retry-secs",
            "1",
            "--smtp-timeout-secs",
            "1",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let server = ServeProcess::start(args, &[]).await;
    let (ok, out, err) = cloakroom(
        server.dir.path(),
        &[],
        &["mail", "test", "--no-wait", "dave@example.com"],
        "",
    );
    assert!(
        ok && out.contains("queued test message 1 to dave@example.com"),
        "{out}{err}"
    );

    let db = cloakroom_sqlite::Database::open(server.dir.path().join("cloakroom.db")).unwrap();
    let outbox = cloakroom_sqlite::SqliteOutbox::new(db);
    let id = MailId::new(1);
    let failed = wait_until(&outbox, id, |r| r.last_error.is_some()).await;
    assert_eq!(failed.state, MailState::Pending);
    let (dir, log) = server.kill();
    assert!(
        log.contains("mail delivery failed; it will be tried again"),
        "{log}"
    );

    let sink = SmtpSink::start_on(smtp_port).await.unwrap();
    let server = ServeProcess::start_in(dir, args, &[]).await;
    let sent = wait_until(&outbox, id, |r| r.state == MailState::Sent).await;
    assert!(sent.attempts >= 2, "{sent:?}");
    // Give a second delivery every chance to happen (two of the sender's polls).
    tokio::time::sleep(crate::procs::SENDER_POLL * 2).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "delivered exactly once");
    assert_eq!(messages[0]["headers"]["To"], "dave@example.com");
    let log = server.stop();
    assert!(log.contains("mail delivered"), "{log}");
}

/// Without `smtp_url`, start-up says loudly that mail is not sent, and a message's text —
/// its link included — goes to the log at WARN instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_mail_goes_to_the_log_and_start_up_says_so() {
    let server = ServeProcess::start(
        |port| vec!["--listen".into(), format!("127.0.0.1:{port}")],
        &[],
    )
    .await;
    let (ok, out, err) = cloakroom(
        server.dir.path(),
        &[],
        &["mail", "test", "erin@example.com"],
        "",
    );
    assert!(
        ok && out.contains("delivered test message 1 to erin@example.com"),
        "{out}{err}"
    );
    assert!(out.contains("writes mail to its log"), "{out}");
    let log = server.stop();
    // `Server::run` returns only after the sender task stopped.
    assert!(log.contains("shut down cleanly"), "{log}");
    assert!(
        log.contains("WARN") && log.contains("MAIL IS NOT SENT"),
        "{log}"
    );
    let line = log
        .lines()
        .position(|l| l.contains("mail NOT sent (no smtp_url)"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(log.lines().nth(line).unwrap().contains("WARN"), "{log}");
    assert!(
        log.contains("sent with `cloakroom mail test`"),
        "the body is in the log: {log}"
    );
}

/// Mail settings that cannot work stop the server at start-up with a message naming the
/// setting or file, and never print the SMTP password.
#[test]
fn mail_settings_that_cannot_work_are_refused_at_start_up() {
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("password_reset.txt"),
        "Subject: Reset\n\nThis mail forgot its link.\n",
    )
    .unwrap();
    let dir = templates.path().to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--smtp-url", "smtps://mailer:hunter2@mail.example.com"],
            "`mail_from` is required with smtp_url",
        ),
        (
            vec![
                "--smtp-url",
                "smtp://mailer:hunter2@mail.example.com",
                "--mail-from",
                "a@example.com",
            ],
            "in clear text",
        ),
        (
            vec!["--smtp-url", "mail.example.com"],
            "`smtp_url` is not a URL",
        ),
        (vec!["--mail-from", "not an address"], "`mail_from`"),
        (vec!["--mail-templates-dir", dir], "must contain {{ link }}"),
        (
            vec!["--password-reset-ttl-secs", "3600"],
            "`password_reset_ttl_secs`",
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .arg("serve")
            .args(&args)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env_remove("CLOAKROOM_LOG")
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("hunter2"), "the password was printed: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
