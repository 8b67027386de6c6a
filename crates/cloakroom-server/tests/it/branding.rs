//! Issue 18, item 8: an operator sets the product name, a logo and a stylesheet
//! (`[branding]`), so the pages fit the site they protect — and the Content-Security-Policy
//! stays as tight as it was, widened only by the logo's origin.

use std::process::Command;

use crate::support::{start, start_with};

const DEFAULT_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[tokio::test]
async fn an_operator_brands_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let css_file = dir.path().join("acme.css");
    let css = "header.top { background: #0b3d2e; }\n.brand span { color: #fff; }\n";
    std::fs::write(&css_file, css).unwrap();
    let s = start_with(|raw| {
        raw.branding.name = "Acme Sign-in".into();
        raw.branding.logo_url = Some("https://cdn.example.com/brand/acme.svg".into());
        raw.branding.css_file = Some(css_file.clone());
    })
    .await;
    let mut b = s.browser();
    let page = b.get("/login").await;
    page.assert(200);
    assert!(
        page.body.contains("<title>Sign in · Acme Sign-in</title>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(
            "<img class=\"logo\" src=\"https://cdn.example.com/brand/acme.svg\" alt=\"\"><span>Acme Sign-in</span>"
        ),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Cloakroom"), "{}", page.body);
    assert_eq!(
        page.header("content-security-policy").as_deref(),
        Some(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' https://cdn.example.com; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    );

    // Both stylesheets are linked with a digest of their content, and served as CSS that may
    // be cached for a year.
    let link = |marker: &str| {
        let start = page
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no {marker}"));
        let end = start + page.body[start..].find('"').unwrap();
        page.body[start..end].to_owned()
    };
    let branding = link("/static/branding.css?v=");
    let builtin = link("/static/style.css?v=");
    assert!(
        page.body.find(&builtin) < page.body.find(&branding),
        "the operator's stylesheet comes last, so it wins"
    );
    let r = b.get(&branding).await;
    r.assert(200);
    assert_eq!(r.body, css);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let r = b.get(&builtin).await;
    r.assert(200);
    assert!(r.body.contains(".brand"));

    // Read at start-up: changing the file later changes nothing until a restart.
    std::fs::write(&css_file, "body { display: none; }").unwrap();
    assert_eq!(b.get(&branding).await.body, css);
}

#[tokio::test]
async fn without_branding_the_pages_say_cloakroom_and_the_csp_is_the_tightest() {
    let s = start().await;
    let mut b = s.browser();
    let page = b.get("/login").await;
    assert!(page.body.contains("<title>Sign in · Cloakroom</title>"));
    assert!(!page.body.contains("<img"), "no logo");
    assert!(!page.body.contains("branding.css"));
    assert_eq!(
        page.header("content-security-policy").as_deref(),
        Some(DEFAULT_CSP)
    );
    let r = b.get("/static/branding.css").await;
    r.assert(404);
    // A logo on this host adds nothing to the policy.
    let s = start_with(|raw| raw.branding.logo_url = Some("/assets/logo.png".into())).await;
    let page = s.browser().get("/login").await;
    assert!(
        page.body
            .contains("<img class=\"logo\" src=\"/assets/logo.png\" alt=\"\">")
    );
    assert_eq!(
        page.header("content-security-policy").as_deref(),
        Some(DEFAULT_CSP)
    );
}

/// A stylesheet that cannot be read, or a logo that is not https or a path here, stops the
/// server at start-up with a message naming the setting — not a panic, not pages without
/// the look the operator asked for.
#[test]
fn bad_branding_stops_start_up_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere/brand.css");
    let missing = missing.to_str().unwrap();
    // `cloakroom serve` with `args` and `env`: it must fail, and say so; its stderr.
    let refused = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env_remove("CLOAKROOM_LOG")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    for err in [
        refused(&["--branding-css-file", missing], &[]),
        refused(&[], &[("CLOAKROOM_BRANDING_CSS_FILE", missing)]),
    ] {
        assert!(
            err.contains("branding.css_file") && err.contains(missing),
            "names the setting and the file: {err}"
        );
    }
    let err = refused(
        &["--branding-logo-url", "http://cdn.example.com/logo.svg"],
        &[],
    );
    assert!(err.contains("branding.logo_url"), "{err}");
}
