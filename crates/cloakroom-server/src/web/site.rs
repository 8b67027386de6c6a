//! What the pages show of the site they belong to: the product name and logo an operator set
//! (`[branding]`), the stylesheets, and the Content-Security-Policy that allows exactly those.
//!
//! Built once at start-up. The operator's stylesheet is read then — a server that would serve
//! pages without the look its operator asked for does not start — and each stylesheet is
//! linked with a digest of its content in the URL (`/static/style.css?v=…`), so it can be
//! cached for a year and a new version is still fetched at once.

use std::path::Path;

use axum::body::Bytes;
use axum::http::HeaderValue;
use sha2::{Digest, Sha256};

use crate::config::BrandingSettings;
use crate::state::StartupError;

/// The built-in stylesheet.
pub(crate) const STYLE_CSS: &str = include_str!("../../static/style.css");
/// The pages' one script: passkeys (WebAuthn needs JavaScript; nothing else does).
pub(crate) const PASSKEYS_JS: &str = include_str!("../../static/passkeys.js");

/// The largest stylesheet an operator may give (it is held in memory and sent with pages).
const MAX_BRANDING_CSS_BYTES: u64 = 256 * 1024;

/// The site as the pages present it.
#[derive(Debug)]
pub(crate) struct Site {
    /// The product name, in the header and every title.
    pub(crate) name: String,
    /// The logo's URL, if any.
    pub(crate) logo_url: Option<String>,
    /// The built-in stylesheet's URL, versioned by its content.
    pub(crate) style_href: String,
    /// The operator's stylesheet's URL, versioned by its content.
    pub(crate) branding_href: Option<String>,
    /// The passkey script's URL, versioned by its content.
    pub(crate) passkeys_js_href: String,
    /// The operator's stylesheet.
    pub(crate) branding_css: Option<Bytes>,
    /// The `Content-Security-Policy` of every response.
    pub(crate) csp: HeaderValue,
}

impl Site {
    /// The site of `branding`, reading its stylesheet now.
    pub(crate) fn load(branding: &BrandingSettings) -> Result<Self, StartupError> {
        let branding_css = branding.css_file.as_deref().map(read_css).transpose()?;
        // Scripts only from here (the passkey script; none inline), requests only to us, no
        // frames, forms only to us. Images from here, and from the logo's host
        // if it is elsewhere; a stylesheet of the operator's may also use fonts from here.
        let mut img_src = "'self'".to_owned();
        if let Some(origin) = &branding.logo_origin {
            img_src.push(' ');
            img_src.push_str(origin.as_str());
        }
        let font_src = if branding_css.is_some() {
            " font-src 'self';"
        } else {
            ""
        };
        let csp = format!(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src {img_src};{font_src} form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        let csp = HeaderValue::from_str(&csp).map_err(|_| {
            // An origin is visible ASCII by construction; this cannot happen.
            StartupError::Misconfigured("branding.logo_url cannot be put in a header".into())
        })?;
        Ok(Self {
            name: branding.name.clone(),
            logo_url: branding.logo_url.clone(),
            style_href: format!("/static/style.css?v={}", version(STYLE_CSS)),
            passkeys_js_href: format!("/static/passkeys.js?v={}", version(PASSKEYS_JS)),
            branding_href: branding_css
                .as_deref()
                .map(|css| format!("/static/branding.css?v={}", version(css))),
            branding_css: branding_css.map(Bytes::from),
            csp,
        })
    }
}

fn read_css(path: &Path) -> Result<String, StartupError> {
    let err = |source| StartupError::Branding {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.len() > MAX_BRANDING_CSS_BYTES {
        return Err(err(std::io::Error::other(format!(
            "larger than {} KiB",
            MAX_BRANDING_CSS_BYTES / 1024
        ))));
    }
    std::fs::read_to_string(path).map_err(err)
}

/// A short digest of a stylesheet, for its URL.
fn version(content: &str) -> String {
    Sha256::digest(content.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branding() -> BrandingSettings {
        BrandingSettings {
            name: "Acme".into(),
            logo_url: None,
            logo_origin: None,
            css_file: None,
        }
    }

    #[test]
    fn the_csp_allows_the_logo_host_and_nothing_else() {
        let site = Site::load(&branding()).unwrap();
        assert_eq!(
            site.csp,
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        let logo = BrandingSettings {
            logo_url: Some("https://cdn.example.com/logo.svg".into()),
            logo_origin: Some(
                cloakroom_core::origin::Origin::parse("https://cdn.example.com").unwrap(),
            ),
            ..branding()
        };
        let site = Site::load(&logo).unwrap();
        assert!(
            site.csp
                .to_str()
                .unwrap()
                .contains("img-src 'self' https://cdn.example.com;"),
            "{:?}",
            site.csp
        );
    }

    #[test]
    fn stylesheets_are_versioned_by_content_and_a_missing_one_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let css = dir.path().join("brand.css");
        std::fs::write(&css, "header.top { background: #123; }").unwrap();
        let with_css = |path: &Path| {
            Site::load(&BrandingSettings {
                css_file: Some(path.to_owned()),
                ..branding()
            })
        };
        let site = with_css(&css).unwrap();
        let first = site.branding_href.clone().unwrap();
        assert!(first.starts_with("/static/branding.css?v="), "{first}");
        assert!(site.csp.to_str().unwrap().contains("font-src 'self'"));
        std::fs::write(&css, "header.top { background: #456; }").unwrap();
        assert_ne!(with_css(&css).unwrap().branding_href.unwrap(), first);
        let missing = dir.path().join("missing.css");
        let e = with_css(&missing).unwrap_err().to_string();
        assert!(
            e.contains("branding.css_file") && e.contains("missing.css"),
            "{e}"
        );
    }
}
