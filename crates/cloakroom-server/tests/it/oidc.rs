//! Signing in through an OpenID provider, against a real one: `oidc-provider` (npm, a
//! certified OpenID Provider) run by `e2e/oidc-provider.mjs`. The provider's pages are driven
//! over HTTP here (and by Chromium in `e2e`). Issue 13.
//!
//! Needs `node` and `e2e/node_modules` (`cd e2e && npm ci`); skipped without them, unless
//! `CLOAKROOM_REQUIRE_SERVICES=1`.

use std::io::BufRead as _;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::procs::Guarded;
use crate::support::{TestServer, start_at};

const SECRET: &str = "a client secret for the fixture, long enough";

/// The provider fixture, for a Cloakroom at `http://localhost:{port}`.
pub(crate) struct Provider {
    pub(crate) issuer: String,
    /// The client secret, in a file as `client_secret_file` names it.
    secret_file: tempfile::NamedTempFile,
    _process: Guarded,
}

impl Provider {
    /// Starts the fixture with one client, `cloakroom`, whose redirect and back-channel URIs
    /// are on `port`; `None` (a skip) without node or the npm package.
    pub(crate) fn start(port: u16) -> Option<Self> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            return cloakroom_testkit::skip(format!(
                "OpenID tests: {} has no node_modules/oidc-provider; run `npm ci` there",
                dir.display()
            ));
        }
        let clients = json!([{
            "client_id": "cloakroom",
            "client_secret": SECRET,
            "redirect_uris": [format!("http://localhost:{port}/oidc/fixture/callback")],
            "backchannel_logout_uri": format!("http://localhost:{port}/oidc/fixture/backchannel-logout"),
        }]);
        let mut child = Command::new("node")
            .arg("oidc-provider.mjs")
            .current_dir(&dir)
            .env("OIDC_PORT", "0")
            .env("OIDC_CLIENTS", clients.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the fixture said {line:?}: {e}"));
        let secret_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret_file.path(), format!("{SECRET}\n")).unwrap();
        Some(Self {
            issuer: ready["issuer"].as_str().unwrap().to_owned(),
            secret_file,
            _process: Guarded(child),
        })
    }

    /// Asks the provider to send a back-channel logout for `sub` (and `sid`) to Cloakroom.
    pub(crate) async fn logout(&self, sub: &str, sid: Option<&str>) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/test/backchannel-logout", self.issuer))
            .json(&json!({ "client_id": "cloakroom", "sub": sub, "sid": sid }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// A Cloakroom on a free port that signs in through the fixture as provider `fixture`.
pub(crate) async fn with_provider(
    edit: impl FnOnce(&mut cloakroom_server::config::RawConfig),
) -> Option<(TestServer, Provider)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = Provider::start(port)?;
    let config = fixture_config(&provider);
    let s = start_at(port, move |raw| {
        raw.oidc = vec![config];
        edit(raw);
    })
    .await;
    Some((s, provider))
}

/// The `[[oidc]]` table for the fixture, as provider `fixture` ("Fixture ID").
pub(crate) fn fixture_config(provider: &Provider) -> cloakroom_server::config::OidcProviderConfig {
    cloakroom_server::config::OidcProviderConfig {
        id: "fixture".into(),
        preset: None,
        tenant: None,
        issuer: Some(provider.issuer.clone()),
        client_id: "cloakroom".into(),
        client_secret_file: Some(provider.secret_file.path().to_owned()),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        display_name: Some("Fixture ID".into()),
    }
}

/// A browser at the provider: keeps its cookies by path, follows nothing by itself.
pub(crate) struct ProviderBrowser {
    http: reqwest::Client,
    cookies: Vec<(String, String, String)>,
}

impl ProviderBrowser {
    pub(crate) fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let mut parts = v.split(';');
            let (name, value) = parts.next().unwrap().trim().split_once('=').unwrap();
            let path = parts
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("path"))
                .map_or("/".to_owned(), |(_, p)| p.to_owned());
            self.cookies.retain(|(n, _, p)| !(n == name && *p == path));
            self.cookies.push((name.to_owned(), value.to_owned(), path));
        }
    }

    fn header_for(&self, url: &url::Url) -> String {
        self.cookies
            .iter()
            .filter(|(_, _, p)| url.path().starts_with(p.as_str()))
            .map(|(n, v, _)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(
        &mut self,
        method: reqwest::Method,
        url: &url::Url,
        form: Option<&[(&str, &str)]>,
    ) -> url::Url {
        let mut req = self
            .http
            .request(method, url.clone())
            .header("cookie", self.header_for(url));
        if let Some(form) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(cloakroom_testkit::http::url_encode(form));
        }
        let r = req.send().await.unwrap();
        self.keep(&r);
        assert!(
            r.status().is_redirection(),
            "{url}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        url.join(r.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// From the authorization URL to the callback URL the provider sends the browser to,
    /// signing in as `login` on the way (unless the provider remembers the sign-in).
    pub(crate) async fn authorize(&mut self, authorization: &str, login: &str) -> url::Url {
        let mut at = url::Url::parse(authorization).unwrap();
        for _ in 0..6 {
            if !at.path().starts_with("/auth") && !at.path().starts_with("/interaction") {
                return at;
            }
            at = if at.path().starts_with("/interaction/") {
                let post = at.join(&format!("{}/login", at.path())).unwrap();
                self.send(reqwest::Method::POST, &post, Some(&[("login", login)]))
                    .await
            } else {
                self.send(reqwest::Method::GET, &at, None).await
            };
        }
        panic!("the provider never sent the browser back: {at}");
    }
}

/// `name=value` of the pre-login cookie a response sets (the session cookie's name with
/// `-oidc`).
fn prelogin_cookie(r: &cloakroom_testkit::http::Reply) -> String {
    r.set_cookies()
        .into_iter()
        .find(|c| c.split('=').next().is_some_and(|n| n.ends_with("-oidc")))
        .unwrap_or_else(|| panic!("no pre-login cookie: {:?}", r.set_cookies()))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// A whole sign-in through the provider as `login` in Cloakroom browser `b` (provider
/// browser `op`). Returns the callback's answer.
pub(crate) async fn sign_in(
    b: &mut crate::support::Browser,
    op: &mut ProviderBrowser,
    login: &str,
    next: &str,
) -> cloakroom_testkit::http::Reply {
    let start = b.get(&format!("/oidc/fixture/login?next={next}")).await;
    start.assert(303);
    let cookie = prelogin_cookie(&start);
    let back = op.authorize(&start.location(), login).await;
    assert_eq!(back.path(), "/oidc/fixture/callback", "{back}");
    let path = format!("{}?{}", back.path(), back.query().unwrap());
    // A sibling site's cookie with a non-ASCII value shares the header line: it must not hide
    // ours (regression: the pre-login cookie was read as text, and this refused the sign-in).
    b.req("GET", &path)
        .raw_cookie(&format!("theme=café; {cookie}"))
        .send()
        .await
}

/// The first sign-in makes an account (the provider's username, its verified address) linked
/// to the identity, and a session whose method names the provider; the browser lands on
/// `next`. A second sign-in signs in to the same account. The login page has the button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sign_in_makes_the_account_and_the_next_one_finds_it() {
    let Some((s, _provider)) = with_provider(|_| {}).await else {
        return;
    };
    let mut b = s.browser();
    let page = b.get("/login").await;
    assert!(
        page.body
            .contains(r#"href="/oidc/fixture/login?next=/">Sign in with Fixture ID</a>"#),
        "{}",
        page.body
    );
    let start = b.get("/oidc/fixture/login?next=/account/sessions").await;
    start.assert(303);
    let set = start.set_cookies().join("\n");
    // Host-only: a sibling subdomain cannot plant a cookie of this name beside it.
    assert!(
        set.contains(&format!("__Host-{}-oidc=", s.state.settings().cookie_name)),
        "{set}"
    );
    assert!(
        set.contains("-oidc=")
            && set.contains("HttpOnly")
            && set.contains("Secure")
            && set.contains("SameSite=Lax")
            && set.contains("Max-Age=600"),
        "{set}"
    );
    let to = url::Url::parse(&start.location()).unwrap();
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert!(q.contains_key("state") && q.contains_key("nonce") && q.contains_key("code_challenge"));

    let mut op = ProviderBrowser::new();
    let r = sign_in(&mut b, &mut op, "alice", "/account/sessions").await;
    r.assert(303);
    assert_eq!(r.location(), "/account/sessions");
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.contains("-oidc=;") && c.contains("Max-Age=0")),
        "the pre-login cookie goes: {:?}",
        r.set_cookies()
    );
    let me = b.get("/api/session").await;
    me.assert(200);
    assert_eq!(me.json()["user"]["username"], "alice");
    assert_eq!(me.json()["user"]["email"], "alice@example.com");
    assert_eq!(me.json()["user"]["email_verified"], true);
    assert_eq!(me.json()["session"]["auth_method"], "oidc:fixture");
    let alice = s.account("alice").await.unwrap();
    let ids = s.state.account_store().identities(&alice.id).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].subject, "alice");

    // Again, from another browser: the same account, no "alice-2".
    let mut other = s.browser();
    sign_in(&mut other, &mut ProviderBrowser::new(), "alice", "/")
        .await
        .assert(303);
    assert_eq!(
        other.get("/api/session").await.json()["user"]["id"],
        alice.id.as_str()
    );
    assert!(s.account("alice-2").await.is_none());

    // An address the provider does not vouch for is not taken.
    sign_in(
        &mut s.browser(),
        &mut ProviderBrowser::new(),
        "unverified-bob",
        "/",
    )
    .await
    .assert(303);
    let bob = s.account("unverified-bob").await.unwrap();
    assert_eq!(bob.email, None);

    // A taken username gets a number.
    s.signed_up("carol").await;
    sign_in(&mut s.browser(), &mut ProviderBrowser::new(), "carol", "/")
        .await
        .assert(303);
    assert!(s.account("carol-2").await.is_some());
}

/// The callback refuses what this browser did not start: no pre-login cookie, a `state` that
/// differs, a cookie used already (a replayed callback), another provider's cookie; and the
/// provider's own refusal is a page too. Nothing signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_refuses_what_this_browser_did_not_start() {
    let Some((s, _provider)) = with_provider(|_| {}).await else {
        return;
    };
    let mut b = s.browser();
    let start = b.get("/oidc/fixture/login").await;
    let cookie = prelogin_cookie(&start);
    let mut op = ProviderBrowser::new();
    let back = op.authorize(&start.location(), "mallory").await;
    let path = format!("{}?{}", back.path(), back.query().unwrap());

    // Someone else's browser (no cookie), then a state that is not ours.
    let r = s.browser().req("GET", &path).send().await;
    r.assert(400);
    assert!(r.body.contains("started in another browser"), "{}", r.body);
    let forged = path.replace("state=", "state=x");
    let r = b.req("GET", &forged).raw_cookie(&cookie).send().await;
    r.assert(400);
    // The real callback, once; then its replay.
    b.req("GET", &path)
        .raw_cookie(&cookie)
        .send()
        .await
        .assert(303);
    let mut again = s.browser();
    let r = again.req("GET", &path).raw_cookie(&cookie).send().await;
    r.assert(400);
    again.get("/api/session").await.assert(401);
    // An altered cookie.
    let start = s.browser().get("/oidc/fixture/login").await;
    let mut altered = prelogin_cookie(&start);
    altered.push('x');
    s.browser()
        .req("GET", "/oidc/fixture/callback?code=x&state=y")
        .raw_cookie(&altered)
        .send()
        .await
        .assert(400);
    // The provider said no.
    let start = s.browser().get("/oidc/fixture/login").await;
    let cookie = prelogin_cookie(&start);
    let state = url::Url::parse(&start.location())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let r = s
        .browser()
        .req(
            "GET",
            &format!("/oidc/fixture/callback?error=access_denied&state={state}"),
        )
        .raw_cookie(&cookie)
        .send()
        .await;
    r.assert(403);
    assert!(
        r.body.contains("Fixture ID did not sign you in"),
        "{}",
        r.body
    );
    // No such provider.
    s.browser().get("/oidc/nobody/login").await.assert(404);
}

/// With `oidc_signup = false`, an identity no account is linked to is refused with a page
/// that says so, and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_oidc_signup_an_unknown_identity_is_refused() {
    let Some((s, _provider)) = with_provider(|raw| raw.oidc_signup = false).await else {
        return;
    };
    let mut b = s.browser();
    let r = sign_in(&mut b, &mut ProviderBrowser::new(), "dave", "/").await;
    r.assert(403);
    assert!(
        r.body
            .contains("No account here is linked to this Fixture ID account"),
        "{}",
        r.body
    );
    assert!(s.account("dave").await.is_none());
    b.get("/api/session").await.assert(401);
}

/// A back-channel logout from the provider ends the sessions of that sign-in (its `sid`) on
/// the very next request, and no other session of the account; a logout token that is not
/// the provider's is refused with 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_channel_logout_ends_that_sign_in() {
    let Some((s, provider)) = with_provider(|_| {}).await else {
        return;
    };
    let mut laptop = s.browser();
    sign_in(&mut laptop, &mut ProviderBrowser::new(), "erin", "/")
        .await
        .assert(303);
    let mut phone = s.browser();
    sign_in(&mut phone, &mut ProviderBrowser::new(), "erin", "/")
        .await
        .assert(303);
    let erin = s.account("erin").await.unwrap();
    let laptop_handle = laptop.get("/api/session").await.json()["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sessions = s.state.sessions().list_for_user(&erin.id).await.unwrap();
    assert_eq!(sessions.len(), 2);
    let laptop_sid: String = sessions
        .iter()
        .find(|x| x.handle.as_str() == laptop_handle)
        .unwrap()
        .data
        .get("oidc_sid")
        .unwrap()
        .expect("the session records the provider's sid");

    let (status, body) = provider.logout("erin", Some(&laptop_sid)).await;
    assert_eq!(status, 200, "{body}");
    laptop.get("/api/session").await.assert(401);
    phone.get("/api/session").await.assert(200);

    // Without a sid: every session of that sign-in's account through this provider.
    let (status, body) = provider.logout("erin", None).await;
    assert_eq!(status, 200, "{body}");
    phone.get("/api/session").await.assert(401);

    for bad in ["", "garbage", "a.b.c", &"x".repeat(9000)] {
        let r = s
            .browser()
            .req("POST", "/oidc/fixture/backchannel-logout")
            .without("origin")
            .without("sec-fetch-site")
            .body(
                cloakroom_testkit::http::url_encode(&[("logout_token", bad)]),
                "application/x-www-form-urlencoded",
            )
            .send()
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:.20}: {}", r.body);
        assert_eq!(r.error_code(), "invalid_logout_token");
    }
    // Forgeries a careless verifier accepts: `alg: none`, and HS256 with the provider's public
    // key (its JWKS `n`) as the secret, both naming the provider's key id.
    let jwks: Value = reqwest::get(format!("{}/jwks", provider.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    let now = cloakroom_core::Clock::now(&s.clock).as_unix_secs();
    let claims = json!({
        "iss": provider.issuer, "aud": "cloakroom", "iat": now, "exp": now + 60,
        "jti": "forged", "sub": "erin",
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "kid": rsa["kid"] })),
        b64(&claims)
    );
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = rsa["kid"].as_str().map(String::from);
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(rsa["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    let mut victim = s.browser();
    sign_in(&mut victim, &mut ProviderBrowser::new(), "erin", "/")
        .await
        .assert(303);
    for forged in [none, hs256] {
        let r = s
            .browser()
            .req("POST", "/oidc/fixture/backchannel-logout")
            .without("origin")
            .without("sec-fetch-site")
            .body(
                cloakroom_testkit::http::url_encode(&[("logout_token", &forged)]),
                "application/x-www-form-urlencoded",
            )
            .send()
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        victim.get("/api/session").await.assert(200);
    }
}

async fn verified(s: &TestServer, name: &str, email: &str, verify: bool) {
    let mut b = s.browser();
    b.post_json(
        "/api/signup",
        &json!({ "username": name, "password": crate::support::PASSWORD, "email": email }),
    )
    .await
    .assert(201);
    if verify {
        let a = s.account(name).await.unwrap();
        assert!(
            s.state
                .account_store()
                .mark_email_verified(&a.id, a.email.as_ref().unwrap())
                .await
                .unwrap()
        );
    }
}

/// With `oidc_link_by_email`, a first sign-in whose address the provider verified signs in to
/// the local account with that verified address, and links it — and that address is told a
/// sign-in method was added. A local address that is not verified is no proof: a new account
/// is made instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_by_email_needs_both_sides_verified() {
    let Some(sink) = crate::procs::SmtpSink::start().await else {
        return;
    };
    let url = sink.url();
    let Some((s, _provider)) = with_provider(move |raw| {
        raw.oidc_link_by_email = true;
        raw.smtp_url = Some(url.parse().unwrap());
        raw.mail_from = Some("login@example.com".into());
    })
    .await
    else {
        return;
    };
    verified(&s, "gloria", "grace@example.com", true).await;
    verified(&s, "hank", "henry@example.com", false).await;

    let mut b = s.browser();
    sign_in(&mut b, &mut ProviderBrowser::new(), "grace", "/")
        .await
        .assert(303);
    assert_eq!(
        b.get("/api/session").await.json()["user"]["username"],
        "gloria"
    );
    let gloria = s.account("gloria").await.unwrap();
    let ids = s
        .state
        .account_store()
        .identities(&gloria.id)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "linked");
    let notice = crate::reset::wait_for_mail(&sink, "grace@example.com", "sign-in method", 1).await;
    assert!(
        notice[0]["text"]
            .as_str()
            .unwrap()
            .contains("with Fixture ID"),
        "{notice:?}"
    );

    let mut b = s.browser();
    sign_in(&mut b, &mut ProviderBrowser::new(), "henry", "/")
        .await
        .assert(303);
    assert_eq!(
        b.get("/api/session").await.json()["user"]["username"],
        "henry"
    );
    let hank = s.account("hank").await.unwrap();
    assert!(
        s.state
            .account_store()
            .identities(&hank.id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A signed-in user connects the provider from "Sign-in methods", then signs in with it; an
/// identity connected to another account is refused (409); disconnecting the last one needs
/// the password, so the account keeps a way to sign in. The device list says how each device
/// signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_and_disconnecting_from_the_account() {
    let Some((s, _provider)) = with_provider(|_| {}).await else {
        return;
    };
    let mut jane = s.signed_up("jane").await;
    let page = jane.get("/account/connections").await;
    page.assert(200);
    assert!(page.body.contains("Connect Fixture ID"), "{}", page.body);

    let r = connect(&mut jane, "jane-at-provider").await;
    r.assert(303);
    assert_eq!(r.location(), "/account/connections?notice=connected");
    let page = jane.get("/account/connections?notice=connected").await;
    assert!(page.body.contains("Disconnect Fixture ID"), "{}", page.body);
    // Now the provider signs in to jane's account.
    let mut elsewhere = s.browser();
    sign_in(
        &mut elsewhere,
        &mut ProviderBrowser::new(),
        "jane-at-provider",
        "/",
    )
    .await
    .assert(303);
    assert_eq!(
        elsewhere.get("/api/session").await.json()["user"]["username"],
        "jane"
    );
    let devices = jane.get("/account/sessions").await;
    assert!(devices.body.contains("with Fixture ID"), "{}", devices.body);

    // An identity that signs in to another account cannot be connected to this one.
    sign_in(&mut s.browser(), &mut ProviderBrowser::new(), "kim", "/")
        .await
        .assert(303);
    let r = connect(&mut jane, "kim").await;
    r.assert(409);
    assert!(
        r.body.contains("already connected to another account"),
        "{}",
        r.body
    );

    // Disconnecting the last one: the password, or nothing happens.
    let jane_account = s.account("jane").await.unwrap();
    let id = &s
        .state
        .account_store()
        .identities(&jane_account.id)
        .await
        .unwrap()[0];
    let csrf = jane.page_csrf("/account/connections").await;
    let fields = |password: &'static str| {
        vec![
            ("csrf_token", csrf.clone()),
            ("issuer", id.issuer.clone()),
            ("subject", id.subject.clone()),
            ("password", password.to_owned()),
        ]
    };
    for wrong in ["", "not the password at all"] {
        let pairs = fields(wrong);
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = jane.form("/account/connections/disconnect", &refs).await;
        assert_eq!(r.status.as_u16(), 403, "{}", r.body);
        assert!(r.body.contains("last connected account"), "{}", r.body);
    }
    assert_eq!(
        s.state
            .account_store()
            .identities(&jane_account.id)
            .await
            .unwrap()
            .len(),
        1
    );
    let pairs = fields(crate::support::PASSWORD);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = jane.form("/account/connections/disconnect", &refs).await;
    r.assert(303);
    assert!(
        s.state
            .account_store()
            .identities(&jane_account.id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Connects the provider's `login` to the account signed in in `b`; the callback's answer.
async fn connect(b: &mut crate::support::Browser, login: &str) -> cloakroom_testkit::http::Reply {
    let start = start_connect(b, "").await;
    start.assert(303);
    let cookie = prelogin_cookie(&start);
    let back = ProviderBrowser::new()
        .authorize(&start.location(), login)
        .await;
    let path = format!("{}?{}", back.path(), back.query().unwrap());
    b.req("GET", &path).raw_cookie(&cookie).send().await
}

/// Presses "Connect Fixture ID" on "Sign-in methods", with `password` typed (or not).
async fn start_connect(
    b: &mut crate::support::Browser,
    password: &str,
) -> cloakroom_testkit::http::Reply {
    let csrf = b.page_csrf("/account/connections").await;
    b.form(
        "/account/connections/connect",
        &[
            ("csrf_token", &csrf),
            ("provider", "fixture"),
            ("password", password),
        ],
    )
    .await
}

/// Connecting is a form with the CSRF token (no other site can start it: a GET does not), and
/// needs the password again once the sign-in is older than 5 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_needs_a_fresh_sign_in_or_the_password() {
    let Some((s, _provider)) = with_provider(|_| {}).await else {
        return;
    };
    let mut lee = s.signed_up("lee").await;
    // Another site cannot start it.
    let r = lee
        .req("POST", "/account/connections/connect")
        .header("sec-fetch-site", "cross-site")
        .body("provider=fixture", "application/x-www-form-urlencoded")
        .send()
        .await;
    r.assert(403);
    s.clock.advance(std::time::Duration::from_secs(6 * 60));
    for wrong in ["", "not the password at all"] {
        let r = start_connect(&mut lee, wrong).await;
        assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    }
    start_connect(&mut lee, crate::support::PASSWORD)
        .await
        .assert(303);
}

/// Where sign-up is closed (or by invitation), a provider is no way in: an identity no account
/// is linked to is refused, even with `oidc_signup` on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_server_makes_no_account_through_a_provider() {
    let Some((s, _provider)) = with_provider(|raw| {
        raw.signup = Some(cloakroom_server::config::SignupMode::Closed);
    })
    .await
    else {
        return;
    };
    let mut b = s.browser();
    let r = sign_in(&mut b, &mut ProviderBrowser::new(), "mallory", "/").await;
    r.assert(403);
    assert!(s.account("mallory").await.is_none());
    b.get("/api/session").await.assert(401);
}

/// Where sign-in needs a verified address, a provider's sign-in without one is refused with
/// the page that says so (and no session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_sign_in_without_a_verified_address_is_refused_where_one_is_required() {
    let Some((s, _provider)) = with_provider(|raw| raw.require_verified_email = true).await else {
        return;
    };
    let mut b = s.browser();
    let r = sign_in(&mut b, &mut ProviderBrowser::new(), "unverified-zed", "/").await;
    r.assert(403);
    assert!(
        r.body
            .contains("Confirm your email address before signing in"),
        "{}",
        r.body
    );
    b.get("/api/session").await.assert(401);
    // With the provider's verified address, it works.
    let mut b = s.browser();
    sign_in(&mut b, &mut ProviderBrowser::new(), "yves", "/")
        .await
        .assert(303);
    b.get("/api/session").await.assert(200);
}
