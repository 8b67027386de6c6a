//! Where to send a user after login: only back into this site.
//!
//! An open redirect turns a trusted login page into a phishing tool (`/login?next=https://evil`),
//! so a return path is honoured only if it is a plain absolute path on this origin. Anything
//! that a browser could read as another host — `//evil.net`, `/\evil.net`, `https://…`,
//! control characters — falls back to `/`.

/// A checked local return path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnTo(String);

impl ReturnTo {
    /// The home page.
    pub fn home() -> Self {
        Self("/".to_owned())
    }

    /// `candidate` if it is a safe local path, else `/`.
    pub fn parse(candidate: Option<&str>) -> Self {
        candidate.and_then(Self::checked).unwrap_or_else(Self::home)
    }

    fn checked(p: &str) -> Option<Self> {
        let b = p.as_bytes();
        let local = b.first() == Some(&b'/')
            && !matches!(b.get(1), Some(b'/' | b'\\'))
            && p.len() <= 2048
            && p.chars().all(|c| !c.is_control() && c != '\\');
        // Resolve it as a browser would against a dummy origin and make sure it stays there.
        let stays = url::Url::parse("https://origin.invalid")
            .and_then(|base| base.join(p))
            .is_ok_and(|u| u.host_str() == Some("origin.invalid"));
        (local && stays).then(|| Self(p.to_owned()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_survive() {
        for ok in ["/", "/account/sessions", "/a?b=c#d", "/%2F%2Fevil.net"] {
            assert_eq!(ReturnTo::parse(Some(ok)).as_str(), ok);
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
            assert_eq!(ReturnTo::parse(Some(bad)).as_str(), "/", "{bad:?}");
        }
        assert_eq!(ReturnTo::parse(None).as_str(), "/");
    }
}
