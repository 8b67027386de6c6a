//! One sign-in for apps on several subdomains (issue 15), through real nginx and Caddy
//! configured from `examples/nginx/subdomains.conf` and `examples/caddy/Caddyfile.subdomains`:
//! the domain cookie set once on the portal reaches both apps; access rules let a group into
//! one app and refuse everyone else there with a page, never the login page; a health check
//! passes without a session; a native app's bearer token passes forward auth but never reaches
//! the app; signing out on the portal ends the session for every app; and `rd` never leads off
//! the domain.
//!
//! The browser is a [`Visitor`]: every request goes to the proxy's loopback port with the
//! `Host` of the URL it is for, carrying the cookies that a jar honouring `Domain` holds for
//! that host — as a browser would.

use std::path::Path;

use cloakroom_core::accounts::GroupName;
use cloakroom_server::access::{AccessRequest, Outcome, Who};
use cloakroom_server::config::{AccessRuleConfig, RawConfig, RulePolicy};
use cloakroom_testkit::http::Client;
use serde_json::{Value, json};

use crate::procs::{Guarded, free_port, require};
use crate::proxies::{IDENTITY_HEADERS, Proxy, adapted, example, run_caddy, run_nginx};
use crate::support::{DECISION_PATHS, PASSWORD, Reply, TestServer, hidden, start_with, url_encode};

/// The cookie domain; the example files say `example.com`, replaced by this.
const DOMAIN: &str = "example.test";
/// The portal: Cloakroom's public URL.
const PORTAL: &str = "https://auth.example.test";
const GRAFANA: &str = "https://grafana.example.test";
const WIKI: &str = "https://wiki.example.test";
/// The session cookie in domain mode.
const COOKIE: &str = "__Secure-cloakroom";

fn rule(
    domain: &str,
    resources: &[&str],
    subject: &[&str],
    policy: RulePolicy,
) -> AccessRuleConfig {
    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }
    AccessRuleConfig {
        domain: vec![domain.to_owned()],
        resources: strings(resources),
        methods: Vec::new(),
        subject: strings(subject),
        policy,
    }
}

/// Health checks pass anonymously; grafana is for admins, and refuses everyone else; the wiki,
/// which no rule names, is open to any signed-in user (the default policy, `allow`).
///
/// The bypass comes first: an anonymous request stops at the first rule whose domain, path and
/// method match, and at the grafana rule, which has a subject, that means "sign in". The deny
/// after the group rule is what keeps non-admins out: a signed-in user whom a rule's subject
/// does not name walks on to the next rule.
fn rules() -> Vec<AccessRuleConfig> {
    vec![
        rule("*.example.test", &["^/healthz$"], &[], RulePolicy::Bypass),
        rule(
            "grafana.example.test",
            &[],
            &["group:admins"],
            RulePolicy::Allow,
        ),
        rule("grafana.example.test", &[], &[], RulePolicy::Deny),
    ]
}

/// Cloakroom in domain mode behind `proxy`'s subdomain example, in front of grafana and the
/// wiki; `None` when the proxy is not installed (a skip).
async fn behind(proxy: Proxy) -> Option<(TestServer, u16, Guarded, tempfile::TempDir)> {
    match proxy {
        Proxy::Nginx => require("nginx", &["-v"])?,
        Proxy::Caddy => require("caddy", &["version"])?,
    }
    let s = start_with(|raw: &mut RawConfig| {
        raw.public_url = Some(PORTAL.into());
        raw.cookie_domain = Some(DOMAIN.into());
        // The suite's settings list other apps; domain mode's own default,
        // `https://*.example.test`, is what must let these through.
        raw.app_origins = Vec::new();
        raw.trusted_proxies = vec!["127.0.0.1".into()];
        raw.access_rules = rules();
    })
    .await;
    let cloakroom = s.base.trim_start_matches("http://").to_owned();
    let (grafana, wiki) = (
        crate::procs::echo_app("grafana").await,
        crate::procs::echo_app("wiki").await,
    );
    // The public URL does not name the proxy's port: when the port picked for the proxy is
    // taken meanwhile, only the proxy starts again.
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let adapt = |file: &str| {
            let text = example(file);
            assert!(
                text.contains("127.0.0.1:3001") && text.contains("example.com"),
                "{file} lost a placeholder the test replaces"
            );
            adapted(&text, port, &cloakroom, grafana)
                .replace("127.0.0.1:3001", &format!("127.0.0.1:{wiki}"))
                .replace("example.com", DOMAIN)
        };
        let guard = match proxy {
            Proxy::Nginx => run_nginx(dir.path(), port, &adapt("nginx/subdomains.conf")).await,
            Proxy::Caddy => {
                Some(run_caddy(dir.path(), port, &adapt("caddy/Caddyfile.subdomains")).await)
            }
        };
        if let Some(guard) = guard {
            return Some((s, port, guard, dir));
        }
    }
    panic!("{proxy:?} could not listen on any of five free ports")
}

/// A cookie stored in a [`Jar`].
#[derive(Debug, Clone)]
struct StoredCookie {
    name: String,
    value: String,
    /// The `Domain` attribute (lower case, no leading dot), or the setting host.
    domain: String,
    /// Set without `Domain`: sent to exactly the host that set it.
    host_only: bool,
    path: String,
}

/// A cookie jar that decides which cookies go where as a browser does (RFC 6265): a cookie
/// with `Domain` goes to that domain and every host under it, one without only to the host
/// that set it, and `Path` must match; a `Domain` the setting host is not under makes the
/// browser drop the cookie; `Max-Age=0` removes the cookie of the same name, domain and path
/// — so a removal without the `Domain` the cookie was set with removes nothing. The
/// `__Secure-` and `__Host-` prefixes are enforced as browsers do. `Secure` is not enforced
/// when sending: the test talks plain HTTP to the proxy, where in production TLS terminates
/// in front of it. No public-suffix list: `example.test` is taken to be registrable.
#[derive(Debug, Default)]
struct Jar {
    cookies: Vec<StoredCookie>,
}

impl Jar {
    /// Keeps what `set_cookies` (a response's `Set-Cookie` headers) set, for a request to
    /// `host` and `request_path`.
    fn store(&mut self, host: &str, request_path: &str, set_cookies: &[String]) {
        let host = host.to_ascii_lowercase();
        for line in set_cookies {
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let (mut domain, mut path, mut secure, mut expired) = (None, None, false, false);
            for attribute in parts {
                let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
                let val = val.trim();
                match key.trim().to_ascii_lowercase().as_str() {
                    "domain" if !val.is_empty() => {
                        domain = Some(val.trim_start_matches('.').to_ascii_lowercase());
                    }
                    "path" if val.starts_with('/') => path = Some(val.to_owned()),
                    "secure" => secure = true,
                    "max-age" => expired = val.parse::<i64>().is_ok_and(|secs| secs <= 0),
                    _ => {}
                }
            }
            let prefix_ok = if name.starts_with("__Host-") {
                secure && domain.is_none() && path.as_deref() == Some("/")
            } else if name.starts_with("__Secure-") {
                secure
            } else {
                true
            };
            let (domain, host_only) = match domain {
                Some(d) if domain_match(&host, &d) => (d, false),
                Some(_) => continue,
                None => (host.clone(), true),
            };
            if !prefix_ok {
                continue;
            }
            let path = path.unwrap_or_else(|| default_path(request_path));
            let same = |c: &StoredCookie| c.name == name && c.domain == domain && c.path == path;
            self.cookies.retain(|c| !same(c));
            if !expired {
                self.cookies.push(StoredCookie {
                    name: name.to_owned(),
                    value: value.to_owned(),
                    domain,
                    host_only,
                    path,
                });
            }
        }
    }

    /// The `Cookie` header for a request to `host` and `path`, if any cookie goes there.
    fn header(&self, host: &str, path: &str) -> Option<String> {
        let host = host.to_ascii_lowercase();
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| {
                let host_ok = if c.host_only {
                    c.domain == host
                } else {
                    domain_match(&host, &c.domain)
                };
                host_ok && path_match(path, &c.path)
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// The cookie `name` set with `Domain=domain`.
    fn get(&self, name: &str, domain: &str) -> Option<&StoredCookie> {
        self.cookies
            .iter()
            .find(|c| c.name == name && c.domain == domain && !c.host_only)
    }

    /// Puts a cookie back (a replay of one the server removed).
    fn put(&mut self, cookie: StoredCookie) {
        self.cookies.push(cookie);
    }
}

/// RFC 6265 §5.1.3: `host` is `domain` or a host under it (never an IP address).
fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
            && host.parse::<std::net::IpAddr>().is_err())
}

/// RFC 6265 §5.1.4.
fn path_match(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request[cookie.len()..].starts_with('/')))
}

/// RFC 6265 §5.1.4's default path: the request path up to its last `/`.
fn default_path(request: &str) -> String {
    match request.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => request[..i].to_owned(),
    }
}

/// A browser, or a native app, on the proxy: each request goes to the proxy's port with the
/// `Host` of the URL it is for, and carries the cookies the jar holds for that host.
struct Visitor {
    client: Client,
    jar: Jar,
}

/// The headers of a top-level navigation (typing a URL, following a link or a redirect).
const NAVIGATION: [(&str, &str); 5] = [
    ("origin", ""),
    ("sec-fetch-site", "none"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("accept", "text/html,application/xhtml+xml"),
];

/// The headers of a native app: no browser's.
const NATIVE: [(&str, &str); 4] = [
    ("origin", ""),
    ("sec-fetch-site", ""),
    ("user-agent", "okhttp/4.12.0"),
    ("accept", "application/json"),
];

impl Visitor {
    fn new(proxy_port: u16) -> Self {
        Self {
            client: Client::new(&format!("http://127.0.0.1:{proxy_port}"), PORTAL),
            jar: Jar::default(),
        }
    }

    /// `method url`, with `headers` set over the client's defaults (an empty value removes
    /// one) and `body` (with its content type); keeps the cookies the answer sets.
    async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(String, &str)>,
    ) -> Reply {
        let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let host = parsed.host_str().unwrap().to_owned();
        let target = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
        let mut req = self.client.req(method, target).header("host", &host);
        if let Some(cookies) = self.jar.header(&host, parsed.path()) {
            req = req.raw_cookie(&cookies);
        }
        for (name, value) in headers {
            req = if value.is_empty() {
                req.without(name)
            } else {
                req.header(name, value)
            };
        }
        if let Some((body, content_type)) = body {
            req = req.body(body, content_type);
        }
        let reply = req.send().await;
        self.jar.store(&host, parsed.path(), &reply.set_cookies());
        reply
    }

    /// Opens `url` as a page.
    async fn open(&mut self, url: &str) -> Reply {
        self.open_with(url, &[]).await
    }

    /// Opens `url` as a page, with `extra` headers.
    async fn open_with(&mut self, url: &str, extra: &[(&str, &str)]) -> Reply {
        let mut headers: Vec<(&str, &str)> = NAVIGATION.to_vec();
        headers.extend_from_slice(extra);
        self.send("GET", url, &headers, None).await
    }

    /// A call of the portal's JSON API from one of its pages.
    async fn api(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut headers = vec![
            ("origin", PORTAL),
            ("sec-fetch-site", "same-origin"),
            ("accept", "application/json"),
        ];
        headers.extend_from_slice(extra);
        let body = body.map(|b| (b.to_string(), "application/json"));
        self.send(method, &format!("{PORTAL}{path}"), &headers, body)
            .await
    }

    /// Submits a form of the portal's pages to `path`.
    async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let headers = [
            ("origin", PORTAL),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
            ("accept", "text/html"),
        ];
        let body = (url_encode(fields), "application/x-www-form-urlencoded");
        self.send("POST", &format!("{PORTAL}{path}"), &headers, Some(body))
            .await
    }
}

/// Every identity header, forged with `value`.
fn forged(value: &str) -> Vec<(&'static str, &str)> {
    IDENTITY_HEADERS.iter().map(|name| (*name, value)).collect()
}

/// `s`, URL-encoded for a query.
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The query parameter `name` of `url` (absolute, or relative to the portal).
fn query_param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(PORTAL).unwrap().join(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The claims of a JWT, unverified (the proxy tests verify signatures; here only what the
/// token says matters).
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The headers `app` received, from its echo in `r`; fails, showing `r`, if the request did
/// not reach that app.
#[track_caller]
fn reached(r: &Reply, app: &str, what: &str) -> Value {
    assert_eq!(r.status.as_u16(), 200, "{what}: {}", r.body);
    let echoed = r.json();
    assert_eq!(echoed["app"], app, "{what}: {}", r.body);
    echoed["headers"].clone()
}

/// `r` refused the signed-in `user` by a rule, for `asked`: nginx sends the browser to the
/// portal's page saying so, Caddy passes Cloakroom's 403 page through. Never the login page.
async fn refused_by_rule(v: &mut Visitor, r: Reply, user: &str, proxy: Proxy, asked: &str) {
    assert!(
        !r.location().contains("/login"),
        "{proxy:?}: a signed-in user was sent to sign in: {}",
        r.location()
    );
    assert!(
        !r.body.contains("\"app\""),
        "{proxy:?}: the app was reached: {}",
        r.body
    );
    let page = match proxy {
        Proxy::Nginx => {
            r.assert(302);
            assert_eq!(
                r.location(),
                format!("{PORTAL}/access-denied?rd={asked}"),
                "{proxy:?}"
            );
            v.open(&r.location()).await
        }
        Proxy::Caddy => r,
    };
    page.assert(403);
    assert!(
        page.body.to_lowercase().contains("signed in as")
            && page.body.contains(user)
            && page.body.contains("grafana.example.test"),
        "{proxy:?}: the page does not say who is refused what: {}",
        page.body
    );
}

async fn one_sign_in_for_every_app(proxy: Proxy) {
    let Some((s, port, _running, _dir)) = behind(proxy).await else {
        return;
    };
    let p = proxy;

    // Accounts, made on the portal; alice is an admin, bob in no group.
    for name in ["alice", "bob"] {
        Visitor::new(port)
            .api(
                "POST",
                "/api/signup",
                Some(&json!({ "username": name, "password": PASSWORD })),
                &[],
            )
            .await
            .assert(201);
    }
    let alice_id = s.account("alice").await.unwrap().id;
    let admins = GroupName::parse("admins").unwrap();
    assert!(
        s.state
            .account_store()
            .update_groups(&alice_id, &[admins], &[])
            .await
            .unwrap()
    );

    // Not signed in: each app sends the browser to the portal's login page, with the way back.
    let mut anon = Visitor::new(port);
    let r = anon.open(&format!("{GRAFANA}/d/home?x=1")).await;
    r.assert(302);
    assert_eq!(
        r.location(),
        format!("{PORTAL}/login?rd=https%3A%2F%2Fgrafana.example.test%2Fd%2Fhome%3Fx%3D1"),
        "{p:?}"
    );
    let r = anon.open(&format!("{WIKI}/")).await;
    r.assert(302);
    assert_eq!(
        r.location(),
        format!("{PORTAL}/login?rd=https%3A%2F%2Fwiki.example.test%2F"),
        "{p:?}"
    );
    // A health check passes without a session (the bypass rule), with no identity, and the
    // forged identity headers are removed there too; the bypass is for that path alone.
    let r = anon
        .open_with(&format!("{GRAFANA}/healthz"), &forged("forged-admin"))
        .await;
    let h = reached(&r, "grafana", &format!("{p:?}: an anonymous health check"));
    for name in IDENTITY_HEADERS {
        assert!(h[*name].is_null(), "{p:?}: {name} reached the app: {h}");
    }
    anon.open(&format!("{GRAFANA}/healthz/x")).await.assert(302);
    // A name the proxy does not serve reaches no app, not even one under the domain.
    for url in ["https://intranet.example.test/", "https://evil.net/"] {
        let r = anon.open(url).await;
        assert_eq!(r.status.as_u16(), 404, "{p:?} {url}: {}", r.body);
    }
    // The forward-auth endpoints are the proxy's alone.
    for path in DECISION_PATHS {
        let r = anon.open(&format!("{PORTAL}{path}")).await;
        assert_eq!(r.status.as_u16(), 404, "{p:?} {path}: {}", r.body);
    }

    // Bob follows the redirect, signs in with the login page's form and is sent back.
    let mut bob = Visitor::new(port);
    let r = bob.open(&format!("{WIKI}/pages/home")).await;
    r.assert(302);
    let login = r.location();
    let rd = query_param(&login, "rd").unwrap_or_else(|| panic!("{p:?}: no rd in {login}"));
    assert_eq!(rd, format!("{WIKI}/pages/home"), "{p:?}");
    let page = bob.open(&login).await;
    page.assert(200);
    assert_eq!(
        hidden(&page.body, "next").as_deref(),
        Some(rd.as_str()),
        "{p:?}: the login page's way back"
    );
    let r = bob
        .submit(
            "/login",
            &[
                ("username", "bob"),
                ("password", PASSWORD),
                ("next", rd.as_str()),
            ],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), rd, "{p:?}: back to the app after signing in");
    assert!(
        bob.jar.get(COOKIE, DOMAIN).is_some(),
        "{p:?}: no domain cookie after the form login: {:?}",
        r.set_cookies()
    );
    let h = reached(
        &bob.open(&rd).await,
        "wiki",
        &format!("{p:?}: bob on the wiki"),
    );
    assert_eq!(h["remote-user"], "bob", "{p:?}: {h}");
    assert!(
        h["remote-groups"].is_null(),
        "{p:?}: bob is in no group: {h}"
    );

    // Alice signs in once, on the portal's API: a domain cookie, not a host-only one.
    let mut alice = Visitor::new(port);
    let r = alice
        .api(
            "POST",
            "/api/login",
            Some(&json!({ "username": "alice", "password": PASSWORD })),
            &[],
        )
        .await;
    r.assert(200);
    let set = r.set_cookies();
    assert!(
        !set.iter().any(|c| c.starts_with("__Host-")),
        "{p:?}: {set:?}"
    );
    let session = set
        .iter()
        .find(|c| c.starts_with(&format!("{COOKIE}=")))
        .unwrap_or_else(|| panic!("{p:?}: no {COOKIE} cookie: {set:?}"));
    let attributes: Vec<String> = session
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for wanted in [
        "domain=example.test",
        "path=/",
        "secure",
        "httponly",
        "samesite=lax",
    ] {
        assert!(
            attributes.iter().any(|a| a.as_str() == wanted),
            "{p:?}: no {wanted}: {session}"
        );
    }
    let token = alice
        .jar
        .get(COOKIE, DOMAIN)
        .unwrap_or_else(|| panic!("{p:?}: the jar refused {session}"))
        .value
        .clone();

    // That one cookie opens both apps: grafana (alice is an admin) with her groups and a
    // service JWT for grafana alone, and the wiki. Neither app sees the session cookie.
    let r = alice.open(&format!("{GRAFANA}/d/home")).await;
    let h = reached(&r, "grafana", &format!("{p:?}: alice on grafana"));
    assert_eq!(h["remote-user"], "alice", "{p:?}: {h}");
    assert_eq!(h["x-auth-request-user"], "alice", "{p:?}: {h}");
    assert_eq!(h["remote-groups"], "admins", "{p:?}: {h}");
    assert_eq!(h["x-auth-request-groups"], "admins", "{p:?}: {h}");
    let jwt = h["x-cloakroom-jwt"]
        .as_str()
        .unwrap_or_else(|| panic!("{p:?}: no JWT reached grafana: {h}"));
    let claims = claims_of(jwt);
    assert_eq!(claims["aud"], GRAFANA, "{p:?}: {claims}");
    assert_eq!(claims["groups"], json!(["admins"]), "{p:?}: {claims}");
    let cookies = h["cookie"].as_str().unwrap_or_default();
    assert!(
        !cookies.contains(&token) && !cookies.contains(COOKIE),
        "{p:?}: grafana received the session cookie: {cookies:?}"
    );
    let h = reached(
        &alice.open(&format!("{WIKI}/")).await,
        "wiki",
        &format!("{p:?}: alice on the wiki"),
    );
    assert_eq!(h["remote-user"], "alice", "{p:?}: {h}");
    let claims = claims_of(h["x-cloakroom-jwt"].as_str().unwrap_or_default());
    assert_eq!(claims["aud"], WIKI, "{p:?}: {claims}");

    // Bob's forged identity headers, his groups among them, never reach an app...
    let r = bob
        .open_with(&format!("{WIKI}/"), &forged("forged-admins"))
        .await;
    let h = reached(&r, "wiki", &format!("{p:?}: bob with forged headers"));
    for name in IDENTITY_HEADERS {
        let seen = h[*name].as_str().unwrap_or_default();
        assert!(
            !seen.contains("forged") && !seen.contains("{http."),
            "{p:?}: the app received a forged or unfilled {name}: {h}"
        );
    }
    assert_eq!(h["remote-user"], "bob", "{p:?}: {h}");
    // ...nor let him into grafana: he is refused with a page that says who he is, and is
    // never sent to sign in again.
    let asked = format!("{GRAFANA}/d/home?x=1");
    let r = bob.open_with(&asked, &forged("admins")).await;
    refused_by_rule(&mut bob, r, "bob", proxy, &asked).await;
    // The portal's page shows no address off the domain.
    let page = bob
        .open(&format!(
            "{PORTAL}/access-denied?rd={}",
            enc("https://evil.net/")
        ))
        .await;
    page.assert(403);
    assert!(!page.body.contains("evil.net"), "{p:?}: {}", page.body);

    // A native app: a session token instead of a cookie, sent as a bearer token through the
    // proxy to Cloakroom — and never to the app. Logging out with it ends it.
    let mut phone = Visitor::new(port);
    let login = json!({
        "username": "alice",
        "password": PASSWORD,
        "client": "native",
        "device_name": "Pixel 8",
    });
    let r = phone
        .send(
            "POST",
            &format!("{PORTAL}/api/login"),
            &NATIVE,
            Some((login.to_string(), "application/json")),
        )
        .await;
    r.assert(200);
    assert!(r.set_cookies().is_empty(), "{p:?}: {:?}", r.set_cookies());
    let answer = r.json();
    let bearer = answer["session_token"].as_str().unwrap_or_default();
    assert_eq!(bearer.len(), 43, "{p:?}: {answer}");
    assert!(!answer["expires_at"].is_null(), "{p:?}: {answer}");
    let authorization = format!("Bearer {bearer}");
    let mut with_bearer: Vec<(&str, &str)> = NATIVE.to_vec();
    with_bearer.push(("authorization", authorization.as_str()));
    let dashboards = format!("{GRAFANA}/api/dashboards");
    let r = phone.send("GET", &dashboards, &with_bearer, None).await;
    let h = reached(&r, "grafana", &format!("{p:?}: a native app"));
    assert_eq!(h["remote-user"], "alice", "{p:?}: {h}");
    assert_eq!(h["remote-groups"], "admins", "{p:?}: {h}");
    assert!(
        h["authorization"].is_null(),
        "{p:?}: the app received the bearer token: {h}"
    );
    phone
        .send(
            "POST",
            &format!("{PORTAL}/api/logout"),
            &with_bearer,
            Some(("{}".to_owned(), "application/json")),
        )
        .await
        .assert(204);
    let r = phone.send("GET", &dashboards, &with_bearer, None).await;
    assert!(
        matches!(r.status.as_u16(), 302 | 401) && !r.body.contains("\"app\""),
        "{p:?}: a revoked bearer token still passes: {} {}",
        r.status,
        r.body
    );

    // Alice signs out on the portal: the removal is for the cookie she has (same name, domain
    // and path, Secure), and the cookie, replayed, is refused by both apps.
    let r = alice.api("GET", "/api/session", None, &[]).await;
    r.assert(200);
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    let stale = alice.jar.get(COOKIE, DOMAIN).unwrap().clone();
    let r = alice
        .api(
            "POST",
            "/api/logout",
            Some(&json!({})),
            &[("x-csrf-token", csrf.as_str())],
        )
        .await;
    r.assert(204);
    assert!(
        alice.jar.get(COOKIE, DOMAIN).is_none(),
        "{p:?}: a browser keeps the cookie: {:?}",
        r.set_cookies()
    );
    alice.jar.put(stale);
    for url in [GRAFANA, WIKI] {
        let r = alice.open(&format!("{url}/")).await;
        r.assert(302);
        assert!(
            r.location().starts_with(&format!("{PORTAL}/login?rd=")),
            "{p:?} {url}: {}",
            r.location()
        );
    }
    // Bob's session is his own.
    reached(
        &bob.open(&format!("{WIKI}/")).await,
        "wiki",
        &format!("{p:?}: bob after alice signed out"),
    );

    // `rd` leads only to hosts under the domain: the tricks are dropped by the sign-in
    // redirect, the login page and its form.
    let too_long = format!("{WIKI}/{}", "a".repeat(2100));
    for rd in [
        "https://example.test.evil.net/",
        "//evil.net",
        "https:/\\evil.net",
        "https://user@evil.net",
        "https://grafana.example.test@evil.net/",
        too_long.as_str(),
    ] {
        let r = anon
            .open(&format!("{PORTAL}/oauth2/sign_in?rd={}", enc(rd)))
            .await;
        assert!(r.status.is_redirection(), "{p:?} {rd}: {}", r.status);
        let back = query_param(&r.location(), "rd");
        assert!(
            back.as_deref()
                .is_none_or(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains("evil")),
            "{p:?}: rd {rd:?} was kept: {}",
            r.location()
        );
        let page = anon.open(&format!("{PORTAL}/login?rd={}", enc(rd))).await;
        page.assert(200);
        let next = hidden(&page.body, "next").unwrap_or_default();
        assert!(
            !next.contains("evil") && !next.contains("aaaa"),
            "{p:?}: the login page keeps {rd:?}: {next}"
        );
    }
    // A fresh browser: one signed in already would need its session's CSRF token.
    let r = Visitor::new(port)
        .submit(
            "/login",
            &[
                ("username", "bob"),
                ("password", PASSWORD),
                ("next", "https://example.test.evil.net/"),
            ],
        )
        .await;
    r.assert(303);
    assert!(!r.location().contains("evil"), "{p:?}: {}", r.location());
    // A URL of an app under the domain is kept.
    let kept = format!("{WIKI}/x");
    let r = anon
        .open(&format!("{PORTAL}/oauth2/sign_in?rd={}", enc(&kept)))
        .await;
    assert_eq!(
        query_param(&r.location(), "rd").as_deref(),
        Some(kept.as_str()),
        "{p:?}: {}",
        r.location()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sign_in_and_access_rules_for_subdomain_apps_through_nginx() {
    one_sign_in_for_every_app(Proxy::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sign_in_and_access_rules_for_subdomain_apps_through_caddy() {
    one_sign_in_for_every_app(Proxy::Caddy).await;
}

/// The jar the tests above rely on sends cookies where a browser would.
#[test]
fn the_cookie_jar_honours_domain_path_and_prefixes() {
    let mut jar = Jar::default();
    jar.store(
        "auth.example.test",
        "/api/login",
        &[
            "__Secure-cloakroom=t1; Domain=example.test; Path=/; Secure; HttpOnly; SameSite=Lax"
                .into(),
            "theme=dark; Path=/".into(),
            "draft=1".into(),
        ],
    );
    assert_eq!(
        jar.header("grafana.example.test", "/d").as_deref(),
        Some("__Secure-cloakroom=t1")
    );
    assert_eq!(
        jar.header("example.test", "/").as_deref(),
        Some("__Secure-cloakroom=t1")
    );
    assert_eq!(
        jar.header("auth.example.test", "/").as_deref(),
        Some("__Secure-cloakroom=t1; theme=dark")
    );
    // `draft` took the default path, `/api`.
    assert_eq!(
        jar.header("auth.example.test", "/api/session").as_deref(),
        Some("__Secure-cloakroom=t1; theme=dark; draft=1")
    );
    for elsewhere in [
        "example.test.evil.net",
        "evilexample.test",
        "test",
        "evil.net",
    ] {
        assert_eq!(jar.header(elsewhere, "/"), None, "{elsewhere}");
    }
    // Dropped as a browser drops them: a Domain the host is not under, a __Secure- cookie
    // without Secure, a __Host- cookie with a Domain.
    jar.store(
        "evil.net",
        "/",
        &["__Secure-cloakroom=x; Domain=example.test; Secure".into()],
    );
    jar.store(
        "auth.example.test",
        "/",
        &[
            "__Secure-other=x; Domain=example.test".into(),
            "__Host-other=x; Domain=example.test; Path=/; Secure".into(),
        ],
    );
    assert_eq!(
        jar.header("wiki.example.test", "/").as_deref(),
        Some("__Secure-cloakroom=t1")
    );
    // A removal without the cookie's Domain removes nothing; with it, the cookie goes.
    jar.store(
        "auth.example.test",
        "/",
        &["__Secure-cloakroom=; Path=/; Secure; Max-Age=0".into()],
    );
    assert!(jar.get("__Secure-cloakroom", "example.test").is_some());
    jar.store(
        "auth.example.test",
        "/",
        &["__Secure-cloakroom=; Domain=example.test; Path=/; Secure; Max-Age=0".into()],
    );
    assert!(jar.get("__Secure-cloakroom", "example.test").is_none());
    assert_eq!(jar.header("wiki.example.test", "/"), None);
}

/// The README's "Protect a dozen apps" configuration is accepted, and its rules decide as
/// the section says (`rules test` output included).
#[test]
fn the_readme_dozen_apps_configuration_decides_as_documented() {
    use figment::providers::{Format as _, Serialized, Toml};
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("## Protect a dozen apps")
        .nth(1)
        .expect("no \"Protect a dozen apps\" section in the README");
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("no TOML block in the section");
    let mut raw: RawConfig = figment::Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string(toml))
        .extract()
        .unwrap_or_else(|e| panic!("the README's configuration does not load: {e}"));
    let dir = tempfile::tempdir().unwrap();
    raw.data_dir = dir.path().to_owned();
    let settings = raw
        .settings()
        .unwrap_or_else(|e| panic!("the README's configuration is refused: {e}"));
    assert_eq!(settings.cookie_domain.as_deref(), Some("example.com"));
    let rules = &settings.access_rules;
    let shown = "#2 domain=grafana.example.com subject=group:admins policy=allow";
    assert_eq!(rules.describe(2), shown);
    assert!(
        section.contains(&format!("# rule:    {shown}")),
        "the README's `rules test` output is not the rule"
    );
    let admins = [GroupName::parse("admins").unwrap()];
    let editors = [GroupName::parse("wiki").unwrap()];
    let none: [GroupName; 0] = [];
    #[rustfmt::skip]
    // (host, path, method, who, outcome)
    type Row<'a> = (&'a str, &'a str, &'a str, Option<(&'a str, &'a [GroupName])>, Outcome);
    let table: &[Row<'_>] = &[
        (
            "grafana.example.com",
            "/healthz",
            "GET",
            None,
            Outcome::Bypass,
        ),
        (
            "grafana.example.com",
            "/d/home",
            "GET",
            None,
            Outcome::SignIn,
        ),
        (
            "grafana.example.com",
            "/api/admin/x",
            "POST",
            Some(("alice", &admins[..])),
            Outcome::Allow,
        ),
        (
            "grafana.example.com",
            "/d/home",
            "GET",
            Some(("bob", &none[..])),
            Outcome::Deny,
        ),
        (
            "wiki.example.com",
            "/page",
            "GET",
            Some(("bob", &none[..])),
            Outcome::Allow,
        ),
        (
            "wiki.example.com",
            "/page",
            "POST",
            Some(("bob", &none[..])),
            Outcome::Deny,
        ),
        (
            "wiki.example.com",
            "/page",
            "POST",
            Some(("carol", &editors[..])),
            Outcome::Allow,
        ),
        (
            "wiki.example.com",
            "/page",
            "POST",
            Some(("alice", &none[..])),
            Outcome::Allow,
        ),
        (
            "nas.example.com",
            "/",
            "GET",
            Some(("alice", &admins[..])),
            Outcome::Deny,
        ),
        ("nas.example.com", "/healthz", "HEAD", None, Outcome::Bypass),
    ];
    for &(host, path, method, who, expected) in table {
        let who = who.map(|(username, groups)| Who { username, groups });
        let decision = rules.decide(&AccessRequest { host, path, method }, who.as_ref());
        assert_eq!(
            decision.outcome,
            expected,
            "{method} https://{host}{path} as {:?}",
            who.map(|w| w.username)
        );
    }
}
