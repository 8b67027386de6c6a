//! The session cookie: reading what the client presented, writing what it should keep.
//!
//! Policy (RFC 6265bis, OWASP Session Management cheat sheet): the name carries the `__Host-`
//! prefix, which browsers only accept with `Secure`, `Path=/` and no `Domain` — so a sibling
//! subdomain or a plain-HTTP network attacker cannot plant or overwrite it. `HttpOnly` keeps
//! scripts away from the ticket. There is no `Max-Age` unless the user asked to be remembered:
//! an ordinary session cookie dies with the browser session, the server-side record dies at its
//! own expiry, whichever comes first.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use cloakroom_core::SessionToken;

/// The prefix browsers enforce host-only, secure, path-`/` cookies for.
pub const HOST_PREFIX: &str = "__Host-";

/// The prefix browsers enforce secure cookies for: what a cookie with a `Domain` can carry
/// (`__Host-` forbids one).
pub const SECURE_PREFIX: &str = "__Secure-";

/// The default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "__Host-cloakroom";

/// The `SameSite` attribute of the session cookie.
///
/// ```
/// use cloakroom_axum::{SameSite, SessionLayer};
/// # let manager = cloakroom_core::SessionManager::new(cloakroom_core::MemoryStore::new());
/// # let origin = cloakroom_core::origin::Origin::parse("https://app.example.com").unwrap();
/// let layer = SessionLayer::new(manager, origin).with_same_site(SameSite::Strict);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites (following a link into the app keeps you
    /// logged in), never on cross-site subrequests or form posts. The default.
    #[default]
    Lax,
    /// Never sent on any request initiated by another site: stronger, but a link from an email
    /// or another site lands logged out.
    Strict,
}

/// How the session cookie is named and what attributes it carries.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CookiePolicy {
    pub(crate) name: String,
    pub(crate) same_site: SameSite,
    /// `false` only through `danger_insecure_cookie`: no `Secure`, no `__Host-` prefix.
    pub(crate) secure: bool,
    /// The `Domain` attribute, when one session serves every host under a domain.
    pub(crate) domain: Option<String>,
}

impl Default for CookiePolicy {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            same_site: SameSite::Lax,
            secure: true,
            domain: None,
        }
    }
}

impl fmt::Debug for CookiePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookiePolicy")
            .field("name", &self.name)
            .field("same_site", &self.same_site)
            .field("secure", &self.secure)
            .field("domain", &self.domain)
            .finish()
    }
}

/// What the client presented as its session cookie.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented {
    /// No cookie with our exact name.
    Absent,
    /// More than one cookie with our name: we cannot know which one the browser meant, and an
    /// attacker who could plant a second one would love us to guess.
    Duplicate,
    /// A cookie too long or not shaped like a token.
    Malformed,
    /// A well-formed token (not yet checked against the store).
    Token(SessionToken),
}

impl CookiePolicy {
    /// Finds our cookie among every `Cookie` header. Names match exactly: a miscapitalised
    /// `__host-…` is another cookie, one the browser applied none of the prefix rules to.
    ///
    /// The header is read as bytes, not as text. Other sites of the same registrable domain
    /// can write cookies the browser sends us (`theme=café`, Latin-1, a pair without `=`, a
    /// few kilobytes of anything): refusing the whole header for one of them, as a text parse
    /// must, would let a sibling subdomain keep our users signed out. So every pair but ours
    /// is skipped unread, whatever it holds, and only our own value is held to the token's
    /// strict shape. Several `Cookie` lines (HTTP/2 sends one per cookie) read as one header
    /// joined with `; `. There is no size limit of our own: the HTTP server already bounds the
    /// header block, the scan is one pass without allocation, and a limit on the whole header
    /// would be the same hole with a larger cookie.
    pub(crate) fn presented(&self, headers: &HeaderMap) -> Presented {
        match find_cookie(headers, &self.name) {
            Err(DuplicateCookie) => Presented::Duplicate,
            Ok(None) => Presented::Absent,
            // A non-ASCII byte in our value fails both steps: the token is base64url.
            Ok(Some(value)) => std::str::from_utf8(value)
                .ok()
                .and_then(|v| SessionToken::parse(v).ok())
                .map_or(Presented::Malformed, Presented::Token),
        }
    }

    /// `Set-Cookie` for a freshly issued token. `max_age` only for "remember me".
    pub(crate) fn set_cookie(
        &self,
        token: &SessionToken,
        max_age: Option<Duration>,
    ) -> HeaderValue {
        let value = self.render(&token.expose_cookie_value(), max_age.map(|d| d.as_secs()));
        // Name is checked at configuration, the token is base64url and the attributes are
        // constants: the value is always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Set-Cookie` that removes the cookie: same attributes, empty value, `Max-Age=0`.
    pub(crate) fn removal_cookie(&self) -> HeaderValue {
        let value = self.render("", Some(0));
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn render(&self, value: &str, max_age: Option<u64>) -> String {
        let mut c = cookie::Cookie::new(self.name.clone(), value.to_owned());
        c.set_path("/");
        if let Some(domain) = &self.domain {
            c.set_domain(domain.clone());
        }
        c.set_http_only(true);
        c.set_secure(self.secure);
        c.set_same_site(match self.same_site {
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::Strict => cookie::SameSite::Strict,
        });
        if let Some(secs) = max_age {
            c.set_max_age(cookie::time::Duration::seconds(
                i64::try_from(secs).unwrap_or(i64::MAX),
            ));
            if secs == 0 {
                // Old clients that ignore Max-Age still honour an Expires in the past.
                c.set_expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
            }
        }
        c.to_string()
    }
}

/// The same cookie name was presented more than once: which one the browser meant cannot be
/// known, and an attacker who could plant a second one would love us to guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateCookie;

/// The value of the cookie `name` among every `Cookie` header, read as bytes, as the session
/// cookie is: a sibling site's non-ASCII cookie in the same header must not hide ours, so
/// every other pair is skipped unread. `Ok(None)` when absent, an error when presented twice.
/// For an application's own companion cookies, such as a sign-in's pre-login state.
pub fn find_cookie<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h [u8]>, DuplicateCookie> {
    let name = name.as_bytes();
    let mut found: Option<&[u8]> = None;
    let pairs = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b';'));
    for pair in pairs {
        let Some((n, value)) = split_pair(pair) else {
            continue;
        };
        if n != name {
            continue;
        }
        if found.is_some() {
            return Err(DuplicateCookie);
        }
        found = Some(value);
    }
    Ok(found)
}

/// One `name=value` pair of a `Cookie` header, split at the first `=`, with the optional
/// whitespace around name and value trimmed (RFC 6265 §5.4). `None` for a pair without `=`.
fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut halves = pair.splitn(2, |&b| b == b'=');
    let name = halves.next()?;
    let value = halves.next()?;
    Some((name.trim_ascii(), value.trim_ascii()))
}

/// Checks a cookie name: the characters RFC 6265 allows in a token.
pub(crate) fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_token_among_other_cookies_and_headers() {
        let p = CookiePolicy::default();
        let t = SessionToken::generate();
        let v = t.expose_cookie_value();
        let h = headers(&["a=1; b=2", &format!("theme=dark; __Host-cloakroom={v}")]);
        match p.presented(&h) {
            Presented::Token(found) => assert_eq!(found, t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_cookies_are_refused_deterministically() {
        let p = CookiePolicy::default();
        let v = SessionToken::generate().expose_cookie_value();
        let w = SessionToken::generate().expose_cookie_value();
        assert!(matches!(p.presented(&headers(&[])), Presented::Absent));
        assert!(matches!(
            p.presented(&headers(&[&format!(
                "__Host-cloakroom={v}; __Host-cloakroom={w}"
            )])),
            Presented::Duplicate
        ));
        assert!(matches!(
            p.presented(&headers(&[
                &format!("__Host-cloakroom={v}"),
                &format!("__Host-cloakroom={v}")
            ])),
            Presented::Duplicate
        ));
        assert!(matches!(
            p.presented(&headers(&[&format!("__host-cloakroom={v}")])),
            Presented::Absent
        ));
        assert!(matches!(
            p.presented(&headers(&[&format!("__HOST-cloakroom={v}")])),
            Presented::Absent
        ));
        assert!(matches!(
            p.presented(&headers(&["__Host-cloakroom=short"])),
            Presented::Malformed
        ));
        let huge = format!("__Host-cloakroom={}", "A".repeat(20_000));
        assert!(matches!(
            p.presented(&headers(&[&huge])),
            Presented::Malformed
        ));
    }

    #[test]
    fn set_and_removal_cookies_carry_every_attribute() {
        let p = CookiePolicy::default();
        let t = SessionToken::generate();
        let set = p.set_cookie(&t, None);
        let set = set.to_str().unwrap();
        assert!(set.starts_with(&format!("__Host-cloakroom={}", t.expose_cookie_value())));
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(!set.contains("Max-Age") && !set.contains("Domain"), "{set}");
        let remember = p.set_cookie(&t, Some(Duration::from_secs(3600)));
        assert!(remember.to_str().unwrap().contains("Max-Age=3600"));
        let gone = p.removal_cookie();
        let gone = gone.to_str().unwrap();
        for attr in [
            "__Host-cloakroom=;",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=0",
        ] {
            assert!(gone.contains(attr), "{gone}");
        }
    }

    /// Bytes a `Cookie` header line may carry (`HeaderValue::from_bytes` refuses controls).
    fn header_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            any::<u8>().prop_filter("header byte", |&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
            // The bytes that matter to the parser, and pieces of our name, more often.
            prop::sample::select(b"=; \t\"_-Hhostcloakr\xc3\xa9\xe9".to_vec()),
        ]
    }

    /// Any other site's cookie: arbitrary header bytes, `;` included, that never spell our
    /// name exactly (they may spell it in another case).
    fn junk() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(header_byte(), 0..48).prop_filter("not our cookie", |j| {
            !j.windows(DEFAULT_COOKIE_NAME.len())
                .any(|w| w == DEFAULT_COOKIE_NAME.as_bytes())
        })
    }

    /// Our cookie: mostly a real token, sometimes a value of any shape.
    fn our_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(()).prop_map(|()| SessionToken::generate().expose_cookie_value().into_bytes()),
            prop::collection::vec(header_byte(), 0..48)
                .prop_filter("one pair", |v| !v.contains(&b';')),
        ]
    }

    /// Header lines from pieces, each starting a new line or joining the previous one.
    fn lines(pieces: &[(Vec<u8>, bool)]) -> HeaderMap {
        let mut joined: Vec<Vec<u8>> = Vec::new();
        for (piece, new_line) in pieces {
            match joined.last_mut() {
                Some(last) if !new_line => {
                    last.extend_from_slice(b"; ");
                    last.extend_from_slice(piece);
                }
                _ => joined.push(piece.clone()),
            }
        }
        let mut h = HeaderMap::new();
        for line in joined {
            h.append(header::COOKIE, HeaderValue::from_bytes(&line).unwrap());
        }
        h
    }

    proptest! {
        /// Finding 11: whatever other cookies surround ours, in the same line or other lines,
        /// the answer is the one for our cookie alone.
        #[test]
        fn finding_11_foreign_cookies_never_change_what_we_read(
            before in prop::collection::vec((junk(), any::<bool>()), 0..6),
            ours in prop::option::of((our_value(), any::<bool>())),
            after in prop::collection::vec((junk(), any::<bool>()), 0..6),
        ) {
            let p = CookiePolicy::default();
            let ours = ours.map(|(value, new_line)| {
                ([DEFAULT_COOKIE_NAME.as_bytes(), b"=", &value].concat(), new_line)
            });
            let alone = lines(ours.as_slice());
            let all: Vec<_> = before.into_iter().chain(ours).chain(after).collect();
            prop_assert_eq!(p.presented(&lines(&all)), p.presented(&alone));
        }

        /// Any bytes a header may carry, in any number of lines: an answer, never a panic.
        #[test]
        fn any_cookie_header_parses_without_panicking(
            raw in prop::collection::vec(prop::collection::vec(header_byte(), 0..256), 0..4),
        ) {
            let mut h = HeaderMap::new();
            for line in &raw {
                h.append(header::COOKIE, HeaderValue::from_bytes(line).unwrap());
            }
            let _ = CookiePolicy::default().presented(&h);
        }
    }

    #[test]
    fn a_domain_cookie_says_its_domain_and_stays_secure() {
        let p = CookiePolicy {
            name: "__Secure-cloakroom".into(),
            domain: Some("example.com".into()),
            ..CookiePolicy::default()
        };
        let t = SessionToken::generate();
        for value in [p.set_cookie(&t, None), p.removal_cookie()] {
            let v = value.to_str().unwrap();
            assert!(v.starts_with("__Secure-cloakroom="), "{v}");
            for attr in [
                "Domain=example.com",
                "Secure",
                "HttpOnly",
                "SameSite=Lax",
                "Path=/",
            ] {
                assert!(v.contains(attr), "{v}");
            }
        }
    }

    #[test]
    fn cookie_names_are_tokens() {
        assert!(valid_cookie_name("__Host-app"));
        assert!(!valid_cookie_name("a b"));
        assert!(!valid_cookie_name("a;b"));
        assert!(!valid_cookie_name(""));
    }
}
