//! Session tokens, handles, ids and CSRF tokens: strict parsers never panic, and whatever
//! they accept has exactly one spelling.
#![no_main]

use cloakroom_core::{CsrfSecret, SessionHandle, SessionId, SessionToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(token) = SessionToken::parse(text) {
        assert_eq!(token.expose_cookie_value(), text, "a token with two spellings");
    }
    if let Ok(handle) = SessionHandle::parse(text) {
        assert_eq!(handle.as_str(), text);
    }
    if let Ok(id) = SessionId::from_hex(text) {
        assert_eq!(id.to_hex(), text.to_ascii_lowercase());
    }
    let secret = CsrfSecret::from_bytes([7; 32]);
    if secret.verify(text) {
        // Only a masked copy of this very secret may verify.
        assert_eq!(text.len(), cloakroom_core::csrf::CSRF_TOKEN_LEN);
    }
});
