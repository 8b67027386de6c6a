//! Issue 18, items 4, 5 and 8: what the pages say, and where. Notices on the login page, each
//! form error under its field, sentences (with correct plurals) in pages and in the API's
//! `message`, times in the reader's terms, the device in hand first in "Your devices", and
//! error pages that offer a signed-out visitor the way in rather than "your account".

use std::time::Duration;

use cloakroom_core::Clock as _;
use cloakroom_testkit::http::CHROME_UA;
use serde_json::json;

use crate::support::{Browser, PASSWORD, hidden, start};

const ANDROID: &str = "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0";
const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) Version/17.5 Safari/604.1";

/// A login form of sofia's with a wrong password.
const WRONG_LOGIN: [(&str, &str); 3] = [
    ("username", "sofia"),
    ("password", "not the password"),
    ("next", "/"),
];

/// The opening tag of the `<input>` whose id is `id`.
fn input_tag<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<input id=\"{id}\""))
        .unwrap_or_else(|| panic!("no input #{id} in {html}"));
    let end = start + html[start..].find('>').unwrap();
    &html[start..=end]
}

/// The value of `name` in an HTML tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// `message` sits right under the input `field` (after its help line, if any), as the
/// element the input's `aria-describedby` names, and the input alone is `aria-invalid`.
#[track_caller]
fn assert_field_error(html: &str, field: &str, message: &str) {
    let tag = input_tag(html, field);
    assert_eq!(attr(tag, "aria-invalid"), Some("true"), "{tag}");
    let error_id = format!("{field}-error");
    let described = attr(tag, "aria-describedby").unwrap_or_default();
    assert!(
        described.split_whitespace().any(|id| id == error_id),
        "{tag}"
    );
    let error = format!("<p class=\"field-error\" role=\"alert\" id=\"{error_id}\">{message}</p>");
    let at = html
        .find(&error)
        .unwrap_or_else(|| panic!("no {error} in {html}"));
    let input_at = html.find(tag).unwrap();
    assert!(input_at < at, "the error comes after its input");
    let between = &html[input_at + tag.len()..at];
    assert!(
        !between.contains("<input") && !between.contains("<label"),
        "nothing but help text between the input and its error: {between}"
    );
    assert_eq!(
        html.matches("aria-invalid=\"true\"").count(),
        1,
        "only {field} is marked invalid: {html}"
    );
    assert!(
        !html.contains("id=\"form-error\""),
        "not above the form too"
    );
}

/// Issue 18: signing out and an expired session both ended on a bare login page.
#[tokio::test]
async fn the_login_page_says_why_the_visitor_is_there() {
    let s = start().await;
    let mut b = s.signed_up("rhea").await;
    let csrf = b.page_csrf("/").await;
    let r = b.form("/logout", &[("csrf_token", &csrf)]).await;
    r.assert(303);
    assert_eq!(r.location(), "/login?notice=signed-out");
    let page = b.get(&r.location()).await;
    page.assert(200);
    assert!(
        page.body
            .contains("<p class=\"notice\" role=\"status\">You have been signed out.</p>"),
        "{}",
        page.body
    );

    // A session that idled out: the page asked for sends its visitor to sign in, and the
    // login page says why, keeping the way back.
    let mut b = s.logged_in("rhea", CHROME_UA).await;
    s.clock.advance(Duration::from_secs(31 * 60));
    let r = b.get("/account/sessions").await;
    r.assert(303);
    assert_eq!(
        r.location(),
        "/login?next=%2Faccount%2Fsessions&notice=expired"
    );
    let page = b.get(&r.location()).await;
    assert!(
        page.body.contains(
            "<p class=\"notice\" role=\"status\">Your session expired, please sign in again.</p>"
        ),
        "{}",
        page.body
    );
    assert_eq!(
        hidden(&page.body, "next").as_deref(),
        Some("/account/sessions")
    );

    // A session ended from another device.
    let mut phone = s.logged_in("rhea", ANDROID).await;
    let mut laptop = s.logged_in("rhea", CHROME_UA).await;
    laptop
        .post_json("/api/sessions/revoke-others", &json!({}))
        .await
        .assert(200);
    let r = phone.get("/").await;
    assert_eq!(r.location(), "/login?next=%2F&notice=ended");
    assert!(
        phone
            .get(&r.location())
            .await
            .body
            .contains("Your session has ended, please sign in again.")
    );

    // Never signed in: nothing to explain.
    assert_eq!(s.browser().get("/").await.location(), "/login?next=%2F");
    // `?notice=` only ever selects one of the fixed sentences; anything else shows nothing.
    let page = s
        .browser()
        .get("/login?notice=%3Cb%3Ehello%3C%2Fb%3E")
        .await;
    page.assert(200);
    assert!(!page.body.contains("role=\"status\""), "{}", page.body);
    assert!(!page.body.contains("hello"), "{}", page.body);
}

/// Issue 18: errors were one line above the form, with `aria-describedby` on the form.
/// Now each sits under the field it is about, which carries `aria-invalid` and names it.
#[tokio::test]
async fn each_form_error_sits_under_its_field() {
    let s = start().await;
    let mut b = s.browser();
    let signup = |username: &'static str, password: &'static str, confirm: &'static str| {
        [
            ("username", username),
            ("password", password),
            ("confirm", confirm),
            ("next", "/"),
        ]
    };
    let r = b
        .form("/signup", &signup("sofia", "too short", "too short"))
        .await;
    r.assert(422);
    assert_field_error(
        &r.body,
        "password",
        "The password must be at least 12 characters long.",
    );
    assert_eq!(
        attr(input_tag(&r.body, "password"), "aria-describedby"),
        Some("password-error password-help"),
        "the help still describes it"
    );
    let r = b
        .form(
            "/signup",
            &signup("sofia", PASSWORD, "something else entirely"),
        )
        .await;
    r.assert(422);
    assert_field_error(&r.body, "confirm", "The two passwords differ.");
    let r = b
        .form("/signup", &signup("-sofia", PASSWORD, PASSWORD))
        .await;
    r.assert(422);
    assert_field_error(
        &r.body,
        "username",
        "A username is 3 to 32 characters long: letters, digits, dots, dashes or underscores, starting with a letter or digit.",
    );
    s.signed_up("sofia").await;
    let r = b
        .form("/signup", &signup("SOFIA", PASSWORD, PASSWORD))
        .await;
    r.assert(409);
    assert_field_error(
        &r.body,
        "username",
        "This username is taken. Choose another.",
    );

    let r = b.form("/login", &WRONG_LOGIN).await;
    r.assert(401);
    assert_field_error(&r.body, "password", "Invalid username or password.");
    assert!(
        input_tag(&r.body, "password").contains(" autofocus"),
        "the field to fix has the focus"
    );

    let mut a = s.logged_in("sofia", CHROME_UA).await;
    let csrf = a.page_csrf("/account/password").await;
    let change = |current: &'static str, confirm: &'static str| {
        [
            ("current_password", current),
            ("new_password", "another good phrase"),
            ("confirm", confirm),
        ]
    };
    let fields = change("wrong one here", "another good phrase");
    let mut with_csrf = fields.to_vec();
    with_csrf.push(("csrf_token", &csrf));
    let r = a.form("/account/password", &with_csrf).await;
    r.assert(403);
    assert_field_error(
        &r.body,
        "current_password",
        "Your current password is wrong.",
    );
    let fields = change(PASSWORD, "another good phrasf");
    let mut with_csrf = fields.to_vec();
    with_csrf.push(("csrf_token", &csrf));
    let r = a.form("/account/password", &with_csrf).await;
    r.assert(422);
    assert_field_error(&r.body, "confirm", "The two new passwords differ.");

    // An error about no one field stays above the form, which it describes; no field is
    // marked. Five failures are free, the sixth waits a second: said as a person would.
    for _ in 0..4 {
        b.form("/login", &WRONG_LOGIN).await.assert(401);
    }
    let r = b.form("/login", &WRONG_LOGIN).await;
    r.assert(429);
    assert!(
        r.body.contains(
            "<p class=\"error\" role=\"alert\" id=\"form-error\">Too many attempts. Try again in 1 second.</p>"
        ),
        "{}",
        r.body
    );
    assert!(r.body.contains("aria-describedby=\"form-error\""));
    assert!(!r.body.contains("aria-invalid"), "{}", r.body);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
}

/// Issue 18: "try again in 1 seconds", lower case, no full stop. The API's `message` is a
/// sentence too, while its `error` code stays what programs match on.
#[tokio::test]
async fn api_messages_are_sentences_and_codes_are_unchanged() {
    let s = start().await;
    s.signed_up("tilda").await;
    let mut b = s.browser();
    let login = json!({ "username": "tilda", "password": "not the password" });
    for _ in 0..5 {
        let r = b.post_json("/api/login", &login).await;
        r.assert(401);
        assert_eq!(r.error_code(), "invalid_credentials");
        assert_eq!(r.json()["message"], "Invalid username or password.");
    }
    let r = b.post_json("/api/login", &login).await;
    r.assert(429);
    assert_eq!(r.error_code(), "too_many_attempts");
    assert_eq!(
        r.json()["message"],
        "Too many attempts. Try again in 1 second."
    );

    let r = b.get("/api/session").await;
    r.assert(401);
    assert_eq!(r.error_code(), "unauthenticated");
    assert_eq!(
        r.json()["message"],
        "You are not signed in. Please sign in."
    );

    let r = b
        .req("POST", "/api/signup")
        .body("{", "application/json")
        .send()
        .await;
    assert_eq!(r.error_code(), "malformed_body");
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(char::is_uppercase) && message.ends_with('.'),
        "{message}"
    );

    s.clock.advance(Duration::from_secs(2));
    let mut a = s.logged_in("tilda", CHROME_UA).await;
    let r = a.delete("/api/sessions/AAAAAAAAAAAAAAAAAAAAAA").await;
    r.assert(404);
    assert_eq!(r.error_code(), "not_found");
    assert_eq!(
        r.json()["message"],
        "That session does not exist, or is not yours."
    );
}

/// Issue 18, item 8: "Your devices" listed the most recently used session first, so the
/// device in hand could be anywhere in the list.
#[tokio::test]
async fn your_devices_lists_this_device_first() {
    let s = start().await;
    s.signed_up("ulla").await;
    s.clock.advance(Duration::from_secs(10));
    let mut phone = s.logged_in("ulla", ANDROID).await;
    s.clock.advance(Duration::from_secs(10));
    s.logged_in("ulla", IPAD).await;
    // The phone is not the most recent: the iPad signed in after it (and looking at the page
    // within the touch interval does not make the phone newer).
    let page = phone.get("/account/sessions").await;
    page.assert(200);
    let rows: Vec<&str> = page.body.split("<li class=\"card device").skip(1).collect();
    let labels: Vec<&str> = rows
        .iter()
        .map(|row| {
            let start = row.find("<strong>").unwrap() + "<strong>".len();
            &row[start..start + row[start..].find("</strong>").unwrap()]
        })
        .collect();
    assert_eq!(
        labels,
        ["Firefox on Android", "Safari on iPad", "Chrome on Linux"],
        "this device, then the others, most recently used first"
    );
    assert!(rows[0].starts_with(" current\""), "{}", rows[0]);
    assert!(rows[0].contains("This device"));
    // The footer points signed-in pages at "Your devices" — except "Your devices" itself.
    assert!(!page.body.contains("<footer>"), "{}", page.body);
    assert!(
        phone
            .get("/")
            .await
            .body
            .contains("Sign it out from <a href=\"/account/sessions\">Your devices</a>.")
    );
}

/// Everything but `datetime="…"` attributes, where an ISO timestamp belongs.
fn visible(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(at) = rest.find("datetime=\"") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "datetime=\"".len()..];
        rest = &after[after.find('"').unwrap() + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether `text` holds something like `2026-12-01T14:05`.
fn has_iso_timestamp(text: &str) -> bool {
    text.as_bytes().windows(16).any(|w| {
        let digits = |r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_digit);
        digits(0..4)
            && w[4] == b'-'
            && digits(5..7)
            && w[7] == b'-'
            && digits(8..10)
            && w[10] == b'T'
            && digits(11..13)
            && w[13] == b':'
    })
}

/// The text of the home page's "Session ends" line, tags removed.
fn session_ends(html: &str) -> String {
    let start = html.find("<dt>Session ends</dt><dd>").unwrap() + "<dt>Session ends</dt><dd>".len();
    let dd = &html[start..start + html[start..].find("</dd>").unwrap()];
    let mut text = String::new();
    let mut in_tag = false;
    for c in dd.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

/// Issue 18: "This session ends 2026-11-26T22:30:00Z". Times are now in the reader's terms —
/// a 12- or 24-hour clock as their `Accept-Language` suggests, "today"/"tomorrow" — in UTC,
/// which they name.
#[tokio::test]
async fn times_are_in_the_readers_terms() {
    let s = start().await;
    let mut b = s.signed_up("vera").await;
    // Sign-up ends 12 hours from now at the latest.
    let ends = time::OffsetDateTime::from_unix_timestamp(s.clock.now().as_unix_secs() + 12 * 3600)
        .unwrap();
    let today = time::OffsetDateTime::from_unix_timestamp(s.clock.now().as_unix_secs())
        .unwrap()
        .date();
    let day = if ends.date() == today {
        "today"
    } else {
        "tomorrow"
    };
    let (h, m) = (ends.hour(), ends.minute());
    let twelve = format!(
        "{} at {}:{m:02} {} UTC at the latest",
        day,
        if h % 12 == 0 { 12 } else { h % 12 },
        if h < 12 { "AM" } else { "PM" }
    );
    let twenty_four = format!("{day} at {h:02}:{m:02} UTC at the latest");
    for (language, want) in [
        ("en-US,en;q=0.9", &twelve),
        ("en-GB,en;q=0.9", &twenty_four),
        ("de-DE,de;q=0.9,en;q=0.8", &twenty_four),
    ] {
        let page = b
            .req("GET", "/")
            .header("accept-language", language)
            .send()
            .await;
        page.assert(200);
        assert_eq!(&session_ends(&page.body), want, "{language}");
        assert!(!has_iso_timestamp(&visible(&page.body)), "{}", page.body);
    }
    let page = b.get("/").await;
    assert_eq!(
        session_ends(&page.body),
        twenty_four,
        "no Accept-Language: 24 hours"
    );
    let devices = b.get("/account/sessions").await;
    assert!(
        devices.body.contains("title=\"today at "),
        "{}",
        devices.body
    );
    assert!(
        !has_iso_timestamp(&visible(&devices.body)),
        "{}",
        devices.body
    );
    assert!(
        has_iso_timestamp(&devices.body),
        "machines still get RFC 3339"
    );
}

async fn page(b: &mut Browser, path: &str) -> crate::support::Reply {
    b.req("GET", path)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
}

/// Issue 18: every error page offered "Back to your account", also to visitors who have
/// none. A signed-out visitor is offered the way in; a signed-in one the way back, with the
/// header every other page shows them.
#[tokio::test]
async fn error_pages_offer_a_way_in_or_back() {
    let s = start().await;
    const BACK: &str = "<a href=\"/\">Back to your account</a>";
    const IN: &str = "<a href=\"/login\">Sign in</a>";

    let mut anon = s.browser();
    let r = page(&mut anon, "/no/such/page").await;
    r.assert(404);
    assert!(r.body.contains(IN) && !r.body.contains(BACK), "{}", r.body);
    assert!(!r.body.contains("Signed in as"));
    assert!(r.body.contains("There is no page at this address."));

    let mut b = s.signed_up("wanda").await;
    let r = page(&mut b, "/no/such/page").await;
    r.assert(404);
    assert!(r.body.contains(BACK) && !r.body.contains(IN), "{}", r.body);
    assert!(r.body.contains("Signed in as <strong>wanda</strong>"));

    // A page handler's refusal.
    let csrf = b.page_csrf("/account/sessions").await;
    let r = b
        .form(
            "/account/sessions/not-a-handle/revoke",
            &[("csrf_token", &csrf)],
        )
        .await;
    r.assert(404);
    assert!(r.body.contains(BACK), "{}", r.body);
    assert!(r.body.contains("Signed in as <strong>wanda</strong>"));
    // The session layer's own refusal of a form without its token: only a signed-in visitor
    // gets that one.
    let r = b.form("/account/sessions/revoke-others", &[]).await;
    r.assert(403);
    assert!(r.body.contains(BACK) && !r.body.contains(IN), "{}", r.body);
    // A refused cross-site form of a signed-out visitor.
    let r = anon
        .req("POST", "/login")
        .header("sec-fetch-site", "cross-site")
        .body(
            crate::support::url_encode(&[("username", "wanda"), ("password", PASSWORD)]),
            "application/x-www-form-urlencoded",
        )
        .send()
        .await;
    r.assert(403);
    assert!(r.body.contains(IN) && !r.body.contains(BACK), "{}", r.body);
    assert!(
        r.body
            .contains("This request was refused because it came from another site."),
        "{}",
        r.body
    );
    // Titles are words, not HTTP reason phrases.
    assert!(r.body.contains("<h1>Not allowed</h1>"), "{}", r.body);
}

/// Issue 18: "Log in" on one page, "sign in" on another. One verb pair now: sign in, sign out.
#[tokio::test]
async fn one_verb_pair_sign_in_and_sign_out() {
    let s = start().await;
    let mut b = s.signed_up("xia").await;
    let mut pages = Vec::new();
    for path in [
        "/",
        "/account/sessions",
        "/account/password",
        "/account/delete",
    ] {
        pages.push(b.get(path).await.body);
    }
    let mut anon = s.browser();
    for path in ["/login", "/signup", "/login?notice=signed-out"] {
        pages.push(anon.get(path).await.body);
    }
    pages.push(page(&mut anon, "/nowhere").await.body);
    for body in &pages {
        let lower = body.to_lowercase();
        for word in [
            "log in",
            "log out",
            "logged in",
            "logged out",
            "login</",
            ">login",
        ] {
            assert!(!lower.contains(word), "{word:?} in {body}");
        }
    }
    assert!(pages[0].contains(">Sign out</button>"));
    assert!(pages[4].contains("<h1>Sign in</h1>") && pages[4].contains(">Sign in</button>"));
}
