//! The Fetch-Metadata / Origin policy on arbitrary header bytes: never panics, and never
//! accepts an Origin that is not byte-for-byte the configured one.
#![no_main]

use cloakroom_core::origin::{Origin, OriginPolicy, RequestSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, Vec<u8>, Vec<u8>, u8)| {
    let (site, origin, referer, which) = input;
    let policy = OriginPolicy::new(Origin::parse("https://app.example.com").unwrap());
    let source = RequestSource {
        sec_fetch_site: (which & 1 != 0).then_some(site.as_slice()),
        origin: (which & 2 != 0).then_some(origin.as_slice()),
        referer: (which & 4 != 0).then_some(referer.as_slice()),
    };
    if policy.check(source).is_ok() {
        if let Some(o) = source.origin {
            assert_eq!(o, b"https://app.example.com");
        }
        if let Some(s) = source.sec_fetch_site {
            assert!(s == b"same-origin" || s == b"none");
        }
    }
    if let Ok(text) = std::str::from_utf8(&origin) {
        let _ = Origin::parse(text);
        let _ = Origin::of_url(text);
    }
});
