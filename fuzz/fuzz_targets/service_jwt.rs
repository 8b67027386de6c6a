//! Service-JWT verification on arbitrary tokens and JWKS documents: never a panic, never an
//! accepted token (nothing here is signed by the key in the set).
#![no_main]

use std::sync::OnceLock;

use cloakroom_verify::{Verifier, VerifierConfig};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","alg":"EdDSA","use":"sig"}]}"#;

fn setup() -> &'static (tokio::runtime::Runtime, Verifier) {
    static S: OnceLock<(tokio::runtime::Runtime, Verifier)> = OnceLock::new();
    S.get_or_init(|| {
        let config = VerifierConfig::new("http://127.0.0.1:9/jwks", "https://iss", "https://aud").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        (rt, Verifier::with_static_jwks(config, JWKS.as_bytes()).unwrap())
    })
}

fuzz_target!(|input: (String, Vec<u8>)| {
    let (token, jwks) = input;
    let (rt, verifier) = setup();
    assert!(rt.block_on(verifier.verify(&token)).is_err(), "a forged token verified");
    let config = VerifierConfig::new("http://127.0.0.1:9/jwks", "https://iss", "https://aud").unwrap();
    let _ = Verifier::with_static_jwks(config, &jwks);
});
