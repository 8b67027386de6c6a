//! Forward-auth requests as proxies describe them: arbitrary forwarding headers parse into a
//! request or a clear refusal, never a panic, and an accepted URL is always http(s).
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
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
    }
});
