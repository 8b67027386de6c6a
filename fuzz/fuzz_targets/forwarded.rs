//! Forward-auth requests as proxies describe them: arbitrary forwarding headers parse into a
//! request or a clear refusal, never a panic, and an accepted URL is always http(s). The raw
//! path and query kept for download links is a path of that URL's app, and the link parser
//! takes whatever it holds without a panic.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use cloakroom_core::link::LinkTarget;
use cloakroom_server::ForwardedRequest;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 7] = [
    "x-original-url",
    "x-original-method",
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
    "accept",
];

fuzz_target!(|values: Vec<(u8, Vec<u8>)>| {
    let mut headers = HeaderMap::new();
    for (which, value) in values {
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.append(HeaderName::from_static(NAMES[usize::from(which) % NAMES.len()]), v);
        }
    }
    if let Ok(req) = ForwardedRequest::parse(&headers) {
        if let Some(url) = &req.url {
            assert!(matches!(url.scheme(), "http" | "https"));
            assert!(url.host_str().is_some());
        }
        assert!(req.method.bytes().all(|b| b.is_ascii_uppercase()));
        if let Some(target) = &req.target {
            assert!(target.starts_with('/'));
            let origin = req.app_origin().expect("a target comes with its app's origin");
            if let Ok((t, token)) = LinkTarget::from_request(origin, target) {
                assert_eq!(t.origin(), origin);
                assert!(!token.is_empty());
            }
        }
    }
});
