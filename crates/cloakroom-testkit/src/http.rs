//! A browser-like HTTP client for tests (feature `http`).
//!
//! Tests should send what a browser sends and look at what a browser would see. A [`Client`]
//! sends every request as a same-origin page would (`Sec-Fetch-Site: same-origin`, an exact
//! `Origin`, a user agent), follows no redirects, and hands back a [`Reply`] with the status,
//! headers and body. A test takes away or changes what it is about: `.without("origin")`,
//! `.header("sec-fetch-site", "cross-site")`.
//!
//! Cookies are explicit on a [`Client`] ([`Request::cookie`]), for tests where every replay and
//! attribute matters. A [`Browser`] is a client with a cookie jar for the session cookie: it
//! sends the cookie it holds and keeps whatever the server sets or removes, as a browser does;
//! and, told where the app hands out its CSRF token ([`Browser::csrf_from`]), it sends that
//! token with its unsafe requests.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// The session cookie's default name, `__Host-cloakroom`.
pub const SESSION_COOKIE: &str = "__Host-cloakroom";

/// A user agent that looks like a desktop Chrome, the default of a [`Client`].
pub const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

/// Sends browser-like requests to one server; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    origin: String,
    user_agent: String,
    cookie_name: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the server at `base` (`http://127.0.0.1:PORT`), claiming to be a page on
    /// `origin`.
    ///
    /// # Panics
    /// If reqwest cannot build a client (no TLS is needed, so it always can).
    pub fn new(base: &str, origin: &str) -> Self {
        Self {
            base: base.to_owned(),
            origin: origin.to_owned(),
            user_agent: CHROME_UA.to_owned(),
            cookie_name: SESSION_COOKIE.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a reqwest client without TLS"),
        }
    }

    /// Sends `ua` as the `User-Agent`.
    #[must_use]
    pub fn with_user_agent(mut self, ua: &str) -> Self {
        ua.clone_into(&mut self.user_agent);
        self
    }

    /// Names the session cookie `name` instead of [`SESSION_COOKIE`].
    #[must_use]
    pub fn with_cookie_name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.cookie_name);
        self
    }

    /// Talks to `base` from now on (a proxy in front of the server), claiming to be a page on
    /// `origin`.
    pub fn set_base(&mut self, base: &str, origin: &str) {
        base.clone_into(&mut self.base);
        origin.clone_into(&mut self.origin);
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The user agent this client sends.
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// A request with the same-origin headers a page on this client's origin would send.
    ///
    /// # Panics
    /// If `method` is not a valid method, or the origin or user agent are not valid header
    /// values.
    pub fn req(&self, method: &str, path: &str) -> Request<'_> {
        self.request(method, path, None)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Request<'_> {
        self.req("GET", path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> Request<'_> {
        self.req("POST", path)
    }

    fn request<'a>(
        &'a self,
        method: &str,
        path: &str,
        jar: Option<&'a mut Option<String>>,
    ) -> Request<'a> {
        let mut headers = HeaderMap::new();
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        headers.insert("origin", header_value(&self.origin));
        headers.insert("user-agent", header_value(&self.user_agent));
        Request {
            client: self,
            jar,
            method: method.parse().expect("an HTTP method"),
            path: path.to_owned(),
            headers,
            body: None,
            with_cookie: true,
        }
    }
}

fn header_value(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{v:?} is not a header value: {e}"))
}

/// A [`Client`] with a cookie jar for the session cookie; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Browser {
    client: Client,
    /// The session cookie's value, as the last response left it (`None`: no session cookie).
    /// Tests replay an old cookie by setting it.
    pub cookie: Option<String>,
    csrf_source: Option<(String, String)>,
}

impl Browser {
    /// A browser without cookies, sending through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cookie: None,
            csrf_source: None,
        }
    }

    /// Where the app hands out the session's CSRF token: a `GET path` answering JSON with the
    /// token in `field` (for Cloakroom's server, `/api/session` and `csrf_token`). Without
    /// it, [`csrf`](Self::csrf) finds no token.
    #[must_use]
    pub fn csrf_from(mut self, path: &str, field: &str) -> Self {
        self.csrf_source = Some((path.to_owned(), field.to_owned()));
        self
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Talks to `base` from now on (a proxy in front of the server), claiming to be a page on
    /// `origin`.
    pub fn set_base(&mut self, base: &str, origin: &str) {
        self.client.set_base(base, origin);
    }

    /// A request that carries the jar's cookie (unless [`Request::no_cookie`]) and updates the
    /// jar from the response.
    pub fn req(&mut self, method: &str, path: &str) -> Request<'_> {
        self.client.request(method, path, Some(&mut self.cookie))
    }

    /// `GET path`, sent.
    pub async fn get(&mut self, path: &str) -> Reply {
        self.req("GET", path).send().await
    }

    /// A JSON `POST` with this session's CSRF token, if there is a session and a token source.
    pub async fn post_json(&mut self, path: &str, body: &Value) -> Reply {
        let csrf = self.csrf().await;
        let mut r = self.req("POST", path).json(body);
        if let Some(t) = csrf {
            r = r.csrf(&t);
        }
        r.send().await
    }

    /// A `DELETE` with this session's CSRF token (an empty one if there is none).
    pub async fn delete(&mut self, path: &str) -> Reply {
        let csrf = self.csrf().await.unwrap_or_default();
        self.req("DELETE", path).csrf(&csrf).send().await
    }

    /// The current session's CSRF token, from the [`csrf_from`](Self::csrf_from) source, if
    /// there is a session cookie and the source answers `200`.
    ///
    /// # Panics
    /// If the source answers `200` without the token.
    pub async fn csrf(&mut self) -> Option<String> {
        self.cookie.as_ref()?;
        let (path, field) = self.csrf_source.clone()?;
        let r = self.get(&path).await;
        (r.status == StatusCode::OK).then(|| {
            r.json()[field.as_str()]
                .as_str()
                .unwrap_or_else(|| panic!("no {field} in {path}: {}", r.body))
                .to_owned()
        })
    }

    /// The value of the hidden `csrf_token` field in the page at `path`.
    ///
    /// # Panics
    /// If the page has no such field.
    pub async fn page_csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        hidden(&page.body, "csrf_token")
            .unwrap_or_else(|| panic!("no csrf_token in {path}: {}", page.body))
    }

    /// Submits a form (URL-encoded), as a page's `<form method="post">` does.
    pub async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.req("POST", path)
            .body(url_encode(fields), "application/x-www-form-urlencoded")
            .send()
            .await
    }
}

/// One request being built; [`send`](Self::send) it.
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct Request<'a> {
    client: &'a Client,
    /// The browser's jar, for a [`Browser`]'s request that carries and keeps the cookie.
    jar: Option<&'a mut Option<String>>,
    method: reqwest::Method,
    path: String,
    headers: HeaderMap,
    body: Option<(Vec<u8>, String)>,
    with_cookie: bool,
}

impl Request<'_> {
    /// Adds the session cookie with `value` (an extra `Cookie` header).
    pub fn cookie(self, value: &str) -> Self {
        let header = format!("{}={value}", self.client.cookie_name);
        self.raw_cookie(&header)
    }

    /// Adds a `Cookie` header exactly as given.
    ///
    /// # Panics
    /// If `header` is not a valid header value.
    pub fn raw_cookie(mut self, header: &str) -> Self {
        self.headers.append("cookie", header_value(header));
        self
    }

    /// Sends `token` as `X-CSRF-Token`.
    pub fn csrf(self, token: &str) -> Self {
        self.header("x-csrf-token", token)
    }

    /// Sets a header, replacing any of that name.
    ///
    /// # Panics
    /// If the name or value is not valid.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("{name:?} is not a header name: {e}"));
        self.headers.insert(name, header_value(value));
        self
    }

    /// Adds a header, keeping any of that name (to send it twice).
    ///
    /// # Panics
    /// If the name or value is not valid.
    pub fn add_header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("{name:?} is not a header name: {e}"));
        self.headers.append(name, header_value(value));
        self
    }

    /// Removes a header (one the client sends by default, such as `origin`).
    pub fn without(mut self, name: &str) -> Self {
        self.headers.remove(name);
        self
    }

    /// Leaves the browser's cookie out of this request (its reply still updates the jar).
    pub fn no_cookie(mut self) -> Self {
        self.with_cookie = false;
        self
    }

    /// A JSON body.
    pub fn json(self, v: &Value) -> Self {
        self.body(v.to_string(), "application/json")
    }

    /// A URL-encoded form body, already encoded.
    pub fn form(self, body: &str) -> Self {
        self.body(body, "application/x-www-form-urlencoded")
    }

    /// A body of `content_type`.
    pub fn body(mut self, body: impl Into<Vec<u8>>, content_type: &str) -> Self {
        self.body = Some((body.into(), content_type.to_owned()));
        self
    }

    /// Sends the request and reads the whole response; a [`Browser`]'s request then keeps the
    /// session cookie the response sets (or forgets it on a removal).
    ///
    /// # Panics
    /// If the server cannot be reached or the body is not UTF-8: a test server that does not
    /// answer is a failed test.
    pub async fn send(self) -> Reply {
        let url = format!("{}{}", self.client.base, self.path);
        let mut rb = self
            .client
            .http
            .request(self.method, url)
            .headers(self.headers);
        if self.with_cookie
            && let Some(Some(c)) = self.jar.as_deref()
        {
            rb = rb.header("cookie", format!("{}={c}", self.client.cookie_name));
        }
        if let Some((body, ct)) = self.body {
            rb = rb.header("content-type", ct).body(body);
        }
        let resp = rb.send().await.expect("the test server answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("a UTF-8 body");
        let reply = Reply {
            status,
            headers,
            body,
            cookie_name: self.client.cookie_name.clone(),
        };
        if let Some(jar) = self.jar {
            // The last session cookie the response sets wins, as in a browser.
            if let Some(v) = reply.session_cookies().last() {
                *jar = (!v.is_empty()).then(|| v.clone());
            }
        }
        reply
    }
}

/// A response, reduced to what tests look at.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// Every header.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
    cookie_name: String,
}

impl Reply {
    /// The body as JSON.
    ///
    /// # Panics
    /// If it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error` field of a JSON error body (empty if there is none).
    pub fn error_code(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    /// Every `Set-Cookie` header, as sent.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The session cookie value this response sets (`Some("")` for a removal); the first, if
    /// it sets several.
    pub fn session_cookie(&self) -> Option<String> {
        self.session_cookies().into_iter().next()
    }

    /// Every value this response sets the session cookie to, in order.
    pub fn session_cookies(&self) -> Vec<String> {
        let prefix = format!("{}=", self.cookie_name);
        self.set_cookies()
            .iter()
            .filter_map(|c| c.strip_prefix(&prefix))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
            .collect()
    }

    /// The `Location` header (empty if there is none).
    pub fn location(&self) -> String {
        self.header("location").unwrap_or_default()
    }

    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// Asserts the status, showing the body if it differs.
    ///
    /// # Panics
    /// If the status is not `status`.
    #[track_caller]
    pub fn assert(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self
    }
}

/// URL-encodes form fields.
pub fn url_encode(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Finds `<input type="hidden" name="NAME" value="…">` in a page: the value, as written.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}
