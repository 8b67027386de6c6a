//! Where to send a user after login: only back into this site, or to an allowed host.
//!
//! An open redirect turns a trusted login page into a phishing tool (`/login?next=https://evil`),
//! so a target is honoured only if it is a plain absolute path on this origin, or an absolute
//! `http(s)` URL whose host is on the allow-list (forward auth sends users back to the app
//! they came from, `?rd=https://app.example.com/…`). Anything a browser could read as another
//! host — `//evil.net`, `/\evil.net`, `https://evil.net`, control characters — falls back to
//! `/`.

/// The longest return target kept: a login URL carrying more is someone's experiment.
const MAX_LEN: usize = 2048;

/// Whether `host` (as the URL parser spells it: lower case, IDNA) is `entry`, or under it
/// when `entry` is a domain written `.example.com` — at a label boundary, so
/// `example.com.evil.net` and `evilexample.com` are not.
fn host_allowed(entry: &str, host: &str) -> bool {
    match entry.strip_prefix('.') {
        Some(domain) => {
            host.eq_ignore_ascii_case(domain)
                || host.len() > domain.len() + 1
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                    && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
        }
        None => entry.eq_ignore_ascii_case(host),
    }
}

/// A checked local return path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReturnTo(String);

impl ReturnTo {
    /// The home page.
    pub(crate) fn home() -> Self {
        Self("/".to_owned())
    }

    /// The login page, saying that the visitor is signed out.
    pub(crate) fn signed_out() -> Self {
        Self(crate::web::pages::signed_out_url())
    }

    /// `candidate` if it is a safe local path or an http(s) URL on one of `allowed_hosts`
    /// (host names, compared without case; any port; an entry `.example.com` allows that
    /// domain and every host under it), else `/`.
    pub(crate) fn parse(candidate: Option<&str>, allowed_hosts: &[String]) -> Self {
        candidate
            .and_then(|c| Self::checked(c, allowed_hosts))
            .unwrap_or_else(Self::home)
    }

    /// `candidate` if it is a safe local path or an http(s) URL on one of `allowed_hosts`.
    pub(crate) fn checked(candidate: &str, allowed_hosts: &[String]) -> Option<Self> {
        Self::local(candidate).or_else(|| Self::allowed(candidate, allowed_hosts))
    }

    /// Whether `candidate` is short enough and free of control characters to be kept or
    /// shown at all.
    pub(crate) fn fits(candidate: &str) -> bool {
        candidate.len() <= MAX_LEN && !candidate.chars().any(char::is_control)
    }

    fn allowed(candidate: &str, allowed_hosts: &[String]) -> Option<Self> {
        if !Self::fits(candidate) {
            return None;
        }
        let url = url::Url::parse(candidate).ok()?;
        let https = url.scheme() == "https";
        // Plain http is followed to a host named exactly, or on loopback; a whole domain
        // (`.example.com`, a cookie domain's) only over https: its session cookie is `Secure`,
        // and a redirect must not walk the browser onto an unencrypted hop.
        let plain_ok = |h: &str| {
            url.host()
                .is_some_and(|host| crate::config::is_loopback_host(&host))
                || {
                    allowed_hosts
                        .iter()
                        .any(|a| !a.starts_with('.') && host_allowed(a, h))
                }
        };
        let ok = matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && url.host_str().is_some_and(|h| {
                allowed_hosts.iter().any(|a| host_allowed(a, h)) && (https || plain_ok(h))
            });
        ok.then(|| Self(url.to_string()))
    }

    fn local(p: &str) -> Option<Self> {
        let b = p.as_bytes();
        let local = b.first() == Some(&b'/')
            && !matches!(b.get(1), Some(b'/' | b'\\'))
            && p.len() <= MAX_LEN
            && p.chars().all(|c| !c.is_control() && c != '\\');
        // Resolve it as a browser would against a dummy origin and make sure it stays there.
        let stays = url::Url::parse("https://origin.invalid")
            .and_then(|base| base.join(p))
            .is_ok_and(|u| u.host_str() == Some("origin.invalid"));
        (local && stays).then(|| Self(p.to_owned()))
    }

    /// The path.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(c: Option<&str>) -> ReturnTo {
        ReturnTo::parse(c, &["app.example.com".to_owned()])
    }

    #[test]
    fn allowed_hosts_only() {
        assert_eq!(
            parse(Some("https://app.example.com/x?y=1")).as_str(),
            "https://app.example.com/x?y=1"
        );
        assert_eq!(
            parse(Some("http://APP.example.com:8080/")).as_str(),
            "http://app.example.com:8080/"
        );
        for bad in [
            "https://app.example.com.evil.net/",
            "https://evil.net/?https://app.example.com",
            "https://user@evil.net",
            "https://app.example.com@evil.net/",
            "ftp://app.example.com/",
            "https://evil.app.example.com/",
        ] {
            assert_eq!(parse(Some(bad)).as_str(), "/", "{bad}");
        }
    }

    /// Issue 15: in domain mode every host under the cookie domain is a return target, and
    /// none of the tricks that make a browser read another host is.
    #[test]
    fn a_domain_allows_its_hosts_and_no_tricks() {
        let hosts = [".example.com".to_owned(), "other.net".to_owned()];
        let ok = |c: &str| ReturnTo::checked(c, &hosts).map(|r| r.as_str().to_owned());
        assert_eq!(
            ok("https://grafana.example.com/x").as_deref(),
            Some("https://grafana.example.com/x")
        );
        assert!(ok("https://a.b.example.com/").is_some());
        assert!(ok("https://example.com/").is_some());
        assert!(ok("https://other.net/").is_some());
        for bad in [
            "https://example.com.evil.net/",
            "https://evilexample.com/",
            "//evil.net",
            "https:/\\evil.net",
            "https:\\\\evil.net",
            "https://grafana.example.com@evil.net/",
            "https://user@grafana.example.com/",
            "https://evil.net/?https://grafana.example.com",
            "javascript://grafana.example.com/%0aalert(1)",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
        // A domain entry is followed over https only; an exact host (or loopback) over http too.
        assert_eq!(ok("http://grafana.example.com/x"), None);
        assert!(ok("http://other.net/x").is_some());
        let dev = [".localhost".to_owned()];
        assert!(ReturnTo::checked("http://app.localhost:3000/", &dev).is_some());
        let long = format!("https://grafana.example.com/{}", "a".repeat(2100));
        assert_eq!(ok(&long), None, "over 2 KiB");
    }

    #[test]
    fn only_local_paths_survive() {
        for ok in ["/", "/account/sessions", "/a?b=c#d", "/%2F%2Fevil.net"] {
            assert_eq!(parse(Some(ok)).as_str(), ok);
        }
        for bad in [
            "//evil.net",
            "/\\evil.net",
            "\\\\evil.net",
            "https://evil.net",
            "javascript:alert(1)",
            "evil.net",
            "/\tevil",
            "",
            "/\n/evil.net",
        ] {
            assert_eq!(parse(Some(bad)).as_str(), "/", "{bad:?}");
        }
        assert_eq!(parse(None).as_str(), "/");
    }
}
