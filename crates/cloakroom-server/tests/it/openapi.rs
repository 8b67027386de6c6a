//! `/openapi.json`: valid as an independent validator reads it, and complete against the
//! router.

use std::cell::RefCell;
use std::collections::BTreeSet;

use cloakroom_server::config::SignupMode;
use serde_json::{Value, json};

use crate::support::{
    Browser, DECISION_PATHS, PASSWORD, Reply, TestServer, hidden, start, start_observed_with,
    start_with,
};

/// The document is valid OpenAPI, as PyPI's `openapi-spec-validator` (pinned in `.ci/run`)
/// reads it. Regression: six responses had no `description`, so every generator or proxy
/// that loads the document refused it.
#[tokio::test]
async fn the_document_passes_openapi_spec_validator() {
    let installed = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        cloakroom_testkit::skip::<()>(
            "openapi-spec-validator is not installed (pip install openapi-spec-validator==0.9.0)",
        );
        return;
    }
    let s = start().await;
    let r = s.browser().get("/openapi.json").await;
    r.assert(200);
    let file = s.dir.path().join("openapi.json");
    std::fs::write(&file, &r.body).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--validation-errors", "all"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator refused /openapi.json:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The router as written: `src/web/mod.rs`, where every route has its line (its module docs
/// say so, and [`router_routes`] refuses a router it could not read whole).
const ROUTER_SOURCE: &str = include_str!("../../src/web/mod.rs");

const METHODS: [&str; 9] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace", "any",
];

/// Every `.route(path, method(handler)…)` in the router's source, as `(method, path)`;
/// `any` for a route that takes every method.
fn router_routes() -> Vec<(String, String)> {
    // Routes added any other way would be invisible to this scan.
    for hidden in [
        ".nest(",
        ".nest_service(",
        ".route_service(",
        "on(MethodFilter",
    ] {
        assert!(
            !ROUTER_SOURCE.contains(hidden),
            "the router uses `{hidden}`: teach router_routes to read it"
        );
    }
    for (i, _) in ROUTER_SOURCE.match_indices(".merge(") {
        let arg = &ROUTER_SOURCE[i + ".merge(".len()..];
        let name = &arg[..arg.find(')').unwrap()];
        assert!(
            ROUTER_SOURCE.contains(&format!("let {name} = Router::new()"))
                || ROUTER_SOURCE.contains(&format!("let mut {name} = Router::new()")),
            "the router merges `{name}`, which is not built in mod.rs"
        );
    }
    let mut routes = Vec::new();
    for (i, _) in ROUTER_SOURCE.match_indices(".route(") {
        let rest = ROUTER_SOURCE[i + ".route(".len()..].trim_start();
        let rest = rest.strip_prefix('"').expect("a route's path is a literal");
        let (path, rest) = rest.split_once('"').unwrap();
        // The method router: everything up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .unwrap()
            .0;
        let expr = &rest[..end];
        let before = routes.len();
        for method in METHODS {
            for (j, _) in expr.match_indices(&format!("{method}(")) {
                let prev = expr[..j].chars().next_back();
                if prev.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                    routes.push((method.to_owned(), path.to_owned()));
                }
            }
        }
        assert!(
            routes.len() > before,
            "no method read in `.route(\"{path}\"{expr})`"
        );
    }
    routes.sort();
    routes.dedup();
    routes
}

/// The routes the document leaves out: pages and the stylesheet, for people, not programs.
fn is_page(path: &str) -> bool {
    matches!(
        path,
        "/" | "/login"
            | "/signup"
            | "/logout"
            | "/password-reset"
            | "/verify-email"
            | "/access-denied"
            | "/login/second-factor"
            | "/login/passkey"
            | "/step-up"
    ) || path.starts_with("/account/")
        || path.starts_with("/verify-email/")
        || (path.starts_with("/oidc/") && !path.ends_with("/backchannel-logout"))
        || path.starts_with("/static/")
}

/// Whether the server has a route for `method path`: neither its 405 nor its fallback 404.
async fn routed(b: &mut Browser, method: &str, path: &str) -> bool {
    let method = if method == "any" { "GET" } else { method };
    let r = b
        .req(&method.to_ascii_uppercase(), &path.replace("{id}", "x"))
        .send()
        .await;
    let fallback = r.status == 404 && r.body.contains("page not found");
    r.status != 405 && !fallback
}

/// Every route of the router is documented (or is a page), and everything documented is
/// routed. Regression: forward auth, oauth2-proxy's endpoints, the JWKS and the operations
/// endpoints were missing, so a client generated from the document could not call them.
#[tokio::test]
async fn every_route_of_the_router_is_documented_and_every_documented_one_is_routed() {
    let s = start().await;
    let mut b = s.browser();
    let doc = b.get("/openapi.json").await.json();
    let routes = router_routes();
    assert!(routes.len() > 20, "the scan read only {routes:?}");

    let mut missing = Vec::new();
    for (method, path) in &routes {
        assert!(
            routed(&mut b, method, path).await,
            "the scan read {method} {path}, which the server does not route"
        );
        let documented_as = if method == "any" { "get" } else { method };
        if !is_page(path) && !doc["paths"][path][documented_as].is_object() {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );

    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let in_router = routes
                .iter()
                .any(|(m, p)| p == path && (m == method || m == "any"));
            assert!(
                in_router,
                "{method} {path} is documented but not in the router"
            );
            assert!(
                routed(&mut b, method, path).await,
                "{method} {path} is documented but not routed"
            );
        }
    }
}

/// The document, and which of its operations a test has seen answer.
struct Doc {
    doc: Value,
    seen: RefCell<BTreeSet<String>>,
}

impl Doc {
    async fn of(s: &TestServer) -> Self {
        let doc = s.browser().get("/openapi.json").await.json();
        Self {
            doc,
            seen: RefCell::default(),
        }
    }

    /// `#/components/…/Name`, or `v` itself.
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str() {
            Some(r) => self.doc.pointer(r.trim_start_matches('#')).unwrap(),
            None => v,
        }
    }

    /// Asserts that `reply` is an answer the document promises for `method path`: its status
    /// is documented, its body is of a documented media type and conforms to the schema (an
    /// error's code is one the response lists), and the headers it documents are there.
    #[track_caller]
    fn check(&self, method: &str, path: &str, reply: &Reply) {
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        self.seen.borrow_mut().insert(format!("{method} {path}"));
        let status = reply.status.as_u16();
        let response = &op["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which is not documented: {}",
            reply.body
        );
        let response = self.resolve(response);
        let what = format!("{method} {path} → {status}");
        match response["content"].as_object() {
            None => assert!(reply.body.is_empty(), "{what}: an undocumented body"),
            Some(content) => {
                let media = reply.header("content-type").unwrap_or_default();
                let media = media.split(';').next().unwrap().trim();
                let Some(documented) = content.get(media) else {
                    panic!("{what}: `{media}` is not documented ({content:?})");
                };
                if media == "application/json"
                    && !documented["schema"].is_null()
                    && let Err(e) = self.conforms(&documented["schema"], &reply.json())
                {
                    panic!("{what}: {e}\n{}", reply.body);
                }
            }
        }
        for name in ["Location", "Retry-After", "Cache-Control"] {
            if response["headers"][name].is_object() {
                assert!(reply.header(name).is_some(), "{what}: no {name}");
            }
        }
    }

    /// Whether `v` conforms to `schema`, for the part of JSON Schema the document uses.
    fn conforms(&self, schema: &Value, v: &Value) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(all) = schema["allOf"].as_array() {
            for s in all {
                self.conforms(s, v)?;
            }
        }
        if let Some(any) = schema["oneOf"].as_array() {
            let errors: Vec<String> = any
                .iter()
                .filter_map(|s| self.conforms(s, v).err())
                .collect();
            if errors.len() == any.len() {
                return Err(format!("{v} matches none of oneOf: {errors:?}"));
            }
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(v)
        {
            return Err(format!("{v} is not one of {allowed:?}"));
        }
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let integer_as_number = kind == "integer" && types.contains(&"number");
        if !(types.is_empty() || types.contains(&kind) || integer_as_number) {
            return Err(format!("{v} is not of type {types:?}"));
        }
        if let (Some(items), Value::Array(list)) = (schema.get("items"), v) {
            for item in list {
                self.conforms(items, item)?;
            }
        }
        if let (Some(properties), Value::Object(fields)) = (schema["properties"].as_object(), v) {
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                if !fields.contains_key(name) {
                    return Err(format!("no `{name}` in {v}"));
                }
            }
            // A schema with `required` describes a whole object (a struct's schema); one
            // without only narrows fields of another (the codes of an error response).
            let whole = schema.get("required").is_some();
            for (name, value) in fields {
                match properties.get(name) {
                    Some(p) => self.conforms(p, value)?,
                    None if whole => return Err(format!("`{name}` is not documented")),
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// Asserts that every documented operation was seen answering.
    fn assert_all_seen(&self) {
        let seen = self.seen.borrow();
        let unseen: Vec<String> = self.doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| format!("{m} {path}"))
            })
            .filter(|op| !seen.contains(op))
            .collect();
        assert!(unseen.is_empty(), "no answer checked for {unseen:?}");
    }
}

/// What the server really answers — success, refusals by the layers and by the handlers, in
/// each group of routes — is what the document says: status, media type, body shape, error
/// code. Every documented operation answers at least once.
#[tokio::test]
async fn documented_answers_match_real_ones() {
    let s = start().await;
    let doc = Doc::of(&s).await;
    let creds = |user: &str, password: &str| json!({ "username": user, "password": password });

    // The JSON API: its own answers and refusals…
    let mut anon = s.browser();
    let r = anon.post_json("/api/signup", &creds("ada", PASSWORD)).await;
    doc.check("post", "/api/signup", &r);
    r.assert(201);
    let mut ada = anon;
    for (body, code) in [
        (creds("ada", PASSWORD), "username_taken"),
        (creds("bob", "short"), "weak_password"),
        (creds("no spaces allowed", PASSWORD), "invalid_username"),
        (
            json!({ "username": "eve", "password": PASSWORD, "email": "not-an-address" }),
            "invalid_email",
        ),
    ] {
        let r = s.browser().post_json("/api/signup", &body).await;
        doc.check("post", "/api/signup", &r);
        assert_eq!(r.error_code(), code);
    }
    // Second factors: set up, refused without a step-up, stepped up, removed.
    {
        use crate::mfa::{base32, totp};
        let r = ada.get("/api/mfa").await;
        doc.check("get", "/api/mfa", &r);
        let r = ada.post_json("/api/mfa/totp", &json!({})).await;
        doc.check("post", "/api/mfa/totp", &r);
        let secret = base32(r.json()["secret"].as_str().unwrap());
        let now = cloakroom_core::Clock::now(&s.clock).as_unix_secs();
        let wrong = if totp(&secret, now) == "000000" {
            "111111"
        } else {
            "000000"
        };
        let r = ada
            .post_json("/api/mfa/totp/confirm", &json!({ "code": wrong }))
            .await;
        doc.check("post", "/api/mfa/totp/confirm", &r);
        r.assert(400);
        let r = ada
            .post_json(
                "/api/mfa/totp/confirm",
                &json!({ "code": totp(&secret, now) }),
            )
            .await;
        doc.check("post", "/api/mfa/totp/confirm", &r);
        let codes = r.json()["recovery_codes"].clone();
        let r = ada.post_json("/api/mfa/recovery-codes", &json!({})).await;
        doc.check("post", "/api/mfa/recovery-codes", &r);
        r.assert(403);
        let r = ada.delete("/api/mfa/totp").await;
        doc.check("delete", "/api/mfa/totp", &r);
        r.assert(403);
        let r = ada
            .post_json("/api/step-up", &json!({ "method": "totp", "code": wrong }))
            .await;
        doc.check("post", "/api/step-up", &r);
        r.assert(401);
        let r = ada
            .post_json(
                "/api/step-up",
                &json!({ "method": "recovery_code", "code": codes[0] }),
            )
            .await;
        doc.check("post", "/api/step-up", &r);
        r.assert(200);
        let r = ada.post_json("/api/mfa/recovery-codes", &json!({})).await;
        doc.check("post", "/api/mfa/recovery-codes", &r);
        r.assert(200);
        let r = ada.delete("/api/mfa/totp").await;
        doc.check("delete", "/api/mfa/totp", &r);
        r.assert(204);
        let r = s
            .browser()
            .post_json(
                "/api/login/second-factor",
                &json!({ "method": "totp", "code": "123456" }),
            )
            .await;
        doc.check("post", "/api/login/second-factor", &r);
        r.assert(401);
    }
    // Password reset: the one answer to every request, and a link's refusals and success.
    let r = s
        .browser()
        .post_json("/api/password-reset", &json!({ "login": "ada" }))
        .await;
    doc.check("post", "/api/password-reset", &r);
    r.assert(202);
    let complete =
        |token: &str, password: &str| json!({ "token": token, "new_password": password });
    let r = s
        .browser()
        .post_json(
            "/api/password-reset/complete",
            &complete("garbage", PASSWORD),
        )
        .await;
    doc.check("post", "/api/password-reset/complete", &r);
    assert_eq!(r.error_code(), "invalid_reset_link");
    s.signed_up("rita").await;
    let rita = s
        .state
        .account_store()
        .by_username(&cloakroom_core::accounts::Username::parse("rita").unwrap())
        .await
        .unwrap()
        .unwrap();
    let epoch = s.state.sessions().revocation_epoch(&rita.id).await.unwrap();
    let reset = cloakroom_core::link::PasswordReset::new(
        rita.id.clone(),
        cloakroom_core::link::ResetFingerprint::of(&rita.id, &rita.password_hash, epoch),
    );
    let (link, _) = s
        .state
        .links()
        .reset_url(&reset, cloakroom_core::Clock::now(&s.clock))
        .unwrap();
    let token = link.split_once("?token=").unwrap().1.to_owned();
    for (password, status) in [
        ("short", 422),
        ("a new passphrase for rita", 200),
        (PASSWORD, 410),
    ] {
        let r = s
            .browser()
            .post_json("/api/password-reset/complete", &complete(&token, password))
            .await;
        doc.check("post", "/api/password-reset/complete", &r);
        r.assert(status);
    }

    // Email: a change (refused, then made), its verification, a new link.
    let change =
        |password: &str| json!({ "email": "ada@example.com", "current_password": password });
    let r = ada
        .post_json("/api/email", &change("not the password"))
        .await;
    doc.check("post", "/api/email", &r);
    assert_eq!(r.error_code(), "wrong_password");
    let r = ada.post_json("/api/email", &change(PASSWORD)).await;
    doc.check("post", "/api/email", &r);
    r.assert(200);
    let r = s
        .browser()
        .post_json("/api/email/resend", &json!({ "login": "ada" }))
        .await;
    doc.check("post", "/api/email/resend", &r);
    r.assert(202);
    let r = s
        .browser()
        .post_json("/api/email/verify", &json!({ "token": "garbage" }))
        .await;
    doc.check("post", "/api/email/verify", &r);
    assert_eq!(r.error_code(), "invalid_verification_link");
    let ada_account = s
        .state
        .account_store()
        .by_username(&cloakroom_core::accounts::Username::parse("ada").unwrap())
        .await
        .unwrap()
        .unwrap();
    let (link, _) = s
        .state
        .links()
        .verify_email_url(
            &cloakroom_core::link::EmailVerification::new(
                ada_account.id.clone(),
                ada_account.email.as_ref().unwrap(),
            ),
            cloakroom_core::Clock::now(&s.clock),
        )
        .unwrap();
    let token = link.split_once("?token=").unwrap().1.to_owned();
    for status in [200, 410] {
        let r = s
            .browser()
            .post_json("/api/email/verify", &json!({ "token": token }))
            .await;
        doc.check("post", "/api/email/verify", &r);
        r.assert(status);
    }

    // A provider's back-channel logout, to a provider this server does not have.
    let r = s
        .browser()
        .req("POST", "/oidc/nobody/backchannel-logout")
        .body("logout_token=x", "application/x-www-form-urlencoded")
        .send()
        .await;
    doc.check("post", "/oidc/{id}/backchannel-logout", &r);
    r.assert(404);

    let mut fresh = s.browser();
    let r = fresh
        .post_json("/api/login", &creds("ada", "not the password"))
        .await;
    doc.check("post", "/api/login", &r);
    assert_eq!(r.error_code(), "invalid_credentials");
    let r = fresh.post_json("/api/login", &creds("ada", PASSWORD)).await;
    doc.check("post", "/api/login", &r);
    r.assert(200);
    for path in ["/api/session", "/api/sessions"] {
        let r = ada.get(path).await;
        doc.check("get", path, &r);
        r.assert(200);
        let r = ada.req("GET", path).no_cookie().send().await;
        doc.check("get", path, &r);
        assert_eq!(r.error_code(), "unauthenticated");
    }
    for handle in ["no-such-handle", "%FF"] {
        let r = ada.delete(&format!("/api/sessions/{handle}")).await;
        doc.check("delete", "/api/sessions/{id}", &r);
        assert_eq!(r.error_code(), "not_found");
    }
    let handle = fresh.get("/api/session").await.json()["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = ada.delete(&format!("/api/sessions/{handle}")).await;
    doc.check("delete", "/api/sessions/{id}", &r);
    r.assert(204);
    let r = ada
        .post_json("/api/sessions/revoke-others", &json!({}))
        .await;
    doc.check("post", "/api/sessions/revoke-others", &r);
    r.assert(200);
    let change = |current: &str| json!({ "current_password": current, "new_password": PASSWORD });
    let r = ada
        .post_json("/api/password", &change("not the password"))
        .await;
    doc.check("post", "/api/password", &r);
    assert_eq!(r.error_code(), "wrong_password");
    let r = ada.post_json("/api/password", &change(PASSWORD)).await;
    doc.check("post", "/api/password", &r);
    r.assert(200);
    let mut leaver = s.signed_up("cat").await;
    let csrf = leaver.csrf().await.unwrap();
    for (password, status) in [("not the password", 403), (PASSWORD, 204)] {
        let r = leaver
            .req("DELETE", "/api/account")
            .csrf(&csrf)
            .json(&json!({ "password": password }))
            .send()
            .await;
        doc.check("delete", "/api/account", &r);
        r.assert(status);
    }

    // …and the layers': origin and CSRF, the body, the throttle.
    let r = s
        .browser()
        .req("POST", "/api/login")
        .header("sec-fetch-site", "cross-site")
        .json(&creds("ada", PASSWORD))
        .send()
        .await;
    doc.check("post", "/api/login", &r);
    assert_eq!(r.error_code(), "cross_origin_request");
    let r = ada.req("POST", "/api/sessions/revoke-others").send().await;
    doc.check("post", "/api/sessions/revoke-others", &r);
    assert_eq!(r.error_code(), "csrf_token_missing");
    let r = ada
        .req("DELETE", "/api/sessions/x")
        .csrf("forged")
        .send()
        .await;
    doc.check("delete", "/api/sessions/{id}", &r);
    assert_eq!(r.error_code(), "csrf_token_invalid");
    for (body, content_type, code) in [
        (
            "username=ada".to_owned(),
            "application/x-www-form-urlencoded",
            "unsupported_media_type",
        ),
        (
            "{\"username\":".to_owned(),
            "application/json",
            "malformed_body",
        ),
        (
            "{\"username\":\"ada\"}".to_owned(),
            "application/json",
            "invalid_body",
        ),
        (
            format!("{{\"username\":\"{}\"}}", "a".repeat(70_000)),
            "application/json",
            "payload_too_large",
        ),
    ] {
        let r = s
            .browser()
            .req("POST", "/api/login")
            .body(body, content_type)
            .send()
            .await;
        doc.check("post", "/api/login", &r);
        assert_eq!(r.error_code(), code);
    }
    s.signed_up("eve").await;
    let mut guesser = s.browser();
    let mut last = None;
    for _ in 0..6 {
        last = Some(
            guesser
                .post_json("/api/login", &creds("eve", "wrong password 1"))
                .await,
        );
    }
    let r = last.unwrap();
    doc.check("post", "/api/login", &r);
    assert_eq!(r.error_code(), "too_many_attempts");

    // Forward auth, in every dialect and at every path.
    let mut ada = s.browser();
    ada.post_json("/api/login", &creds("ada", PASSWORD))
        .await
        .assert(200);
    for path in DECISION_PATHS {
        let r = ada.get(path).await;
        doc.check("get", path, &r);
        assert!(r.status.is_success(), "{path}: {}", r.status);
        let r = s.browser().get(path).await;
        doc.check("get", path, &r);
        r.assert(401);
    }
    let mut proxy = s.browser();
    for (headers, status) in [
        (vec![("x-original-url", "https://app.example.com/a")], 401),
        (vec![("x-original-url", "not a url")], 400),
        (vec![("x-original-url", "https://elsewhere.example/")], 403),
        (
            vec![
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-proto", "https"),
                ("accept", "text/html"),
            ],
            302,
        ),
        (
            vec![
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-method", "POST"),
                ("accept", "text/html"),
            ],
            303,
        ),
    ] {
        let mut req = proxy
            .req("GET", "/auth/verify")
            .without("origin")
            .without("sec-fetch-site");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let r = req.send().await;
        doc.check("get", "/auth/verify", &r);
        r.assert(status);
    }

    // Download links: made by the API, opened and refused by forward auth in both dialects.
    let report = "https://app.example.com/files/report.pdf";
    for (body, status, code) in [
        (json!({ "url": report }), 201, ""),
        (
            json!({ "url": report, "ttl_seconds": 0 }),
            400,
            "invalid_ttl",
        ),
        (
            json!({ "url": "https://app.example.com/a/../b" }),
            400,
            "invalid_url",
        ),
        (
            json!({ "url": "https://elsewhere.example/a" }),
            403,
            "origin_not_allowed",
        ),
    ] {
        let r = ada.post_json("/api/links", &body).await;
        doc.check("post", "/api/links", &r);
        r.assert(status);
        if !code.is_empty() {
            assert_eq!(r.error_code(), code);
        }
    }
    let r = s
        .browser()
        .post_json("/api/links", &json!({ "url": report }))
        .await;
    doc.check("post", "/api/links", &r);
    assert_eq!(r.error_code(), "unauthenticated");
    let link = |ada: &mut crate::support::Browser| {
        let mut ada = ada.clone();
        async move {
            let r = ada
                .post_json("/api/links", &json!({ "url": report, "ttl_seconds": 60 }))
                .await;
            r.json()["url"].as_str().unwrap().to_owned()
        }
    };
    let once = link(&mut ada).await;
    let token = once.split("cloakroom_link=").nth(1).unwrap().to_owned();
    let forwarded = |uri: String| {
        let mut b = s.browser();
        async move {
            b.req("GET", "/auth/verify")
                .without("origin")
                .without("sec-fetch-site")
                .header("x-forwarded-host", "app.example.com")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-uri", &uri)
                .send()
                .await
        }
    };
    let uri = format!("/files/report.pdf?cloakroom_link={token}");
    for (uri, status, code) in [
        (uri.clone(), 200, ""),
        (uri.clone(), 410, "link_used"),
        (
            format!("/files/other.pdf?cloakroom_link={token}"),
            403,
            "link_not_for_this_request",
        ),
        (
            "/files/report.pdf?cloakroom_link=garbage".to_owned(),
            400,
            "invalid_link",
        ),
    ] {
        let r = forwarded(uri).await;
        doc.check("get", "/auth/verify", &r);
        r.assert(status);
        if !code.is_empty() {
            assert_eq!(r.error_code(), code);
        }
    }
    let r = proxy
        .req("GET", "/oauth2/auth")
        .without("origin")
        .without("sec-fetch-site")
        .header("x-original-url", &once)
        .send()
        .await;
    doc.check("get", "/oauth2/auth", &r);
    r.assert(403);
    assert_eq!(r.error_code(), "link_used");
    let later = link(&mut ada).await;
    s.clock.advance(std::time::Duration::from_secs(61));
    let token = later.split("cloakroom_link=").nth(1).unwrap();
    let r = forwarded(format!("/files/report.pdf?cloakroom_link={token}")).await;
    doc.check("get", "/auth/verify", &r);
    assert_eq!(r.error_code(), "link_expired");

    // oauth2-proxy's other endpoints.
    let r = ada.get("/oauth2/userinfo").await;
    doc.check("get", "/oauth2/userinfo", &r);
    assert_eq!(r.json()["preferredUsername"], "ada");
    let r = s.browser().get("/oauth2/userinfo").await;
    doc.check("get", "/oauth2/userinfo", &r);
    r.assert(401);
    let r = s
        .browser()
        .get("/oauth2/sign_in?rd=/account/sessions")
        .await;
    doc.check("get", "/oauth2/sign_in", &r);
    r.assert(303);
    // Regression: a query string that did not parse was answered by axum in plain text.
    let r = s.browser().get("/oauth2/sign_in?rd=/a&rd=/b").await;
    doc.check("get", "/oauth2/sign_in", &r);
    assert_eq!(r.error_code(), "malformed_query");
    let r = s.browser().get("/oauth2/sign_out").await;
    doc.check("get", "/oauth2/sign_out", &r);
    r.assert(303);
    let r = ada.get("/oauth2/sign_out").await;
    doc.check("get", "/oauth2/sign_out", &r);
    r.assert(200);
    let csrf = hidden(&r.body, "csrf_token").unwrap();
    let r = ada.form("/oauth2/sign_out", &[("rd", "/")]).await;
    doc.check("post", "/oauth2/sign_out", &r);
    r.assert(403);
    let r = ada
        .form("/oauth2/sign_out", &[("csrf_token", &csrf), ("rd", "/")])
        .await;
    doc.check("post", "/oauth2/sign_out", &r);
    r.assert(303);

    // Operations.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/.well-known/jwks.json",
    ] {
        let r = s.browser().get(path).await;
        doc.check("get", path, &r);
        r.assert(200);
    }

    // The admin API: for members of admin_group; anyone else signed in is refused 403.
    let mut root = s.signed_up("root").await;
    let mut pleb = s.signed_up("pleb").await;
    let store = s.state.account_store();
    let group = |n: &str| cloakroom_core::accounts::GroupName::parse(n).unwrap();
    let root_id = store
        .by_username(&cloakroom_core::accounts::Username::parse("root").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    store
        .update_groups(&root_id, &[group("cloakroom-admins")], &[])
        .await
        .unwrap();
    for (path, status) in [
        ("/api/admin/users", 200),
        ("/api/admin/users/root", 200),
        ("/api/admin/users/nobody", 404),
        ("/api/admin/groups", 200),
    ] {
        let r = root.get(path).await;
        let documented = if path.ends_with("users/root") || path.ends_with("nobody") {
            "/api/admin/users/{username}"
        } else {
            path
        };
        doc.check("get", documented, &r);
        r.assert(status);
        let r = pleb.get(path).await;
        doc.check("get", documented, &r);
        assert_eq!(r.error_code(), "access_denied", "{path}");
        let r = s.browser().get(path).await;
        doc.check("get", documented, &r);
        r.assert(401);
    }
    for (body, status) in [
        (json!({ "add": ["media"], "remove": ["wiki"] }), 200),
        (json!({ "add": ["no,commas"] }), 422),
        (json!({ "ad": ["media"] }), 422),
    ] {
        let r = root.post_json("/api/admin/users/pleb/groups", &body).await;
        doc.check("post", "/api/admin/users/{username}/groups", &r);
        r.assert(status);
    }
    let r = pleb
        .post_json(
            "/api/admin/users/pleb/groups",
            &json!({ "add": ["cloakroom-admins"] }),
        )
        .await;
    doc.check("post", "/api/admin/users/{username}/groups", &r);
    assert_eq!(r.error_code(), "access_denied");

    // Passkeys: every answer that needs no authenticator (the browser test has the others).
    {
        let mut pat = s.signed_up("pat").await;
        let r = pat.post_json("/api/mfa/passkeys/options", &json!({})).await;
        doc.check("post", "/api/mfa/passkeys/options", &r);
        r.assert(200);
        let fake = json!({
            "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
            "response": { "attestationObject": "AAAA", "clientDataJSON": "AAAA" }
        });
        let r = pat
            .post_json(
                "/api/mfa/passkeys",
                &json!({ "name": "Laptop", "credential": fake }),
            )
            .await;
        doc.check("post", "/api/mfa/passkeys", &r);
        assert_eq!(r.error_code(), "passkey_refused");
        let r = pat.get("/api/mfa/passkeys").await;
        doc.check("get", "/api/mfa/passkeys", &r);
        r.assert(200);
        let csrf = pat.csrf().await.unwrap();
        let r = pat
            .req("PATCH", "/api/mfa/passkeys/AAAA")
            .json(&json!({ "name": "Phone" }))
            .csrf(&csrf)
            .send()
            .await;
        doc.check("patch", "/api/mfa/passkeys/{id}", &r);
        r.assert(404);
        let r = pat.delete("/api/mfa/passkeys/AAAA").await;
        doc.check("delete", "/api/mfa/passkeys/{id}", &r);
        r.assert(404);
        let r = pat
            .post_json("/api/step-up/passkey-options", &json!({}))
            .await;
        doc.check("post", "/api/step-up/passkey-options", &r);
        assert_eq!(r.error_code(), "no_passkeys");
        let mut stranger = s.browser();
        let r = stranger
            .post_json("/api/login/second-factor/passkey-options", &json!({}))
            .await;
        doc.check("post", "/api/login/second-factor/passkey-options", &r);
        assert_eq!(r.error_code(), "no_pending_sign_in");
        let r = stranger
            .post_json("/api/login/passkey-options", &json!({}))
            .await;
        doc.check("post", "/api/login/passkey-options", &r);
        assert_eq!(
            r.error_code(),
            "passkeys_unavailable",
            "passkey_login is off"
        );
        let r = stranger
            .post_json("/api/login/passkey", &json!({ "credential": fake }))
            .await;
        doc.check("post", "/api/login/passkey", &r);
        r.assert(422);
    }

    // Sign-up refused by the server's mode.
    let closed = start_with(|raw| raw.signup = Some(SignupMode::Closed)).await;
    let r = closed
        .browser()
        .post_json("/api/signup", &creds("cy", PASSWORD))
        .await;
    doc.check("post", "/api/signup", &r);
    assert_eq!(r.error_code(), "signup_closed");

    // A store outage, and a store that hangs.
    let (s, observed) = start_observed_with(|raw| {
        raw.request_timeout_secs = 1;
        // What a store failure answers, not the cache in front of it.
        raw.session_cache = Some(cloakroom_server::config::SessionCacheMode::Off);
    })
    .await;
    let mut b = s.signed_up("dee").await;
    let link = b
        .post_json(
            "/api/links",
            &json!({ "url": "https://app.example.com/files/report.pdf" }),
        )
        .await
        .json()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let hold = observed.hold_next_load();
    let r = b.get("/api/session").await;
    doc.check("get", "/api/session", &r);
    assert_eq!(r.error_code(), "timed_out");
    hold.release();
    observed.set_unavailable(true);
    for (method, path) in [
        ("get", "/api/session"),
        ("get", "/auth/verify"),
        ("post", "/api/logout"),
    ] {
        let r = b.req(&method.to_ascii_uppercase(), path).send().await;
        doc.check(method, path, &r);
        assert_eq!(
            r.error_code(),
            "session_store_unavailable",
            "{method} {path}"
        );
    }
    let r = s
        .browser()
        .req("GET", "/auth/verify")
        .without("origin")
        .without("sec-fetch-site")
        .header("x-original-url", &link)
        .send()
        .await;
    doc.check("get", "/auth/verify", &r);
    assert_eq!(
        r.error_code(),
        "store_unavailable",
        "a link, the store down"
    );
    let r = b.get("/readyz").await;
    doc.check("get", "/readyz", &r);
    r.assert(503);
    observed.set_unavailable(false);
    let r = b.post_json("/api/logout", &json!({})).await;
    doc.check("post", "/api/logout", &r);
    r.assert(204);

    doc.assert_all_seen();
}
