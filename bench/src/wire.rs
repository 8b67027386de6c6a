//! Bytes on the wire: what a browser or client sends with every request to prove who it is.
//!
//! Counted as HTTP/1.1 sends a header field: `Name: value` plus CRLF. HTTP/2 and HTTP/3 header
//! compression (HPACK/QPACK) can shrink a value that repeats on one connection to a few bytes
//! after the first request, for a cookie and a JWT alike; the first request of every connection,
//! every HTTP/1.1 request and every hop from a proxy to a forward-auth server pay in full.

use cloakroom_core::{Clock, SessionToken, SystemClock};
use serde::Serialize;

use crate::jwt::{Alg, fat_claims, typical_claims};

/// The session cookie's name (`cloakroom_axum::DEFAULT_COOKIE_NAME`).
pub const COOKIE_NAME: &str = "__Host-cloakroom";

/// The `Cookie` header line carrying a session token.
pub fn cookie_header(cookie_value: &str) -> String {
    format!("Cookie: {COOKIE_NAME}={cookie_value}")
}

/// The `Authorization` header line carrying a bearer JWT.
pub fn bearer_header(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Bytes a header line takes in an HTTP/1.1 request (the line plus CRLF).
pub fn http1_bytes(line: &str) -> usize {
    line.len() + 2
}

/// One credential's size.
#[derive(Debug, Clone, Serialize)]
pub struct Size {
    /// What it is.
    pub label: String,
    /// The credential alone (cookie value or JWT), bytes.
    pub credential_bytes: usize,
    /// The whole header field on an HTTP/1.1 wire, bytes.
    pub header_bytes: usize,
}

/// The session cookie next to typical and fat bearer JWTs of every algorithm.
pub fn sizes() -> Result<Vec<Size>, jsonwebtoken::errors::Error> {
    let now = SystemClock.now();
    let cookie = SessionToken::generate().expose_cookie_value();
    let mut out = vec![Size {
        label: "session cookie".to_owned(),
        credential_bytes: cookie.len(),
        header_bytes: http1_bytes(&cookie_header(&cookie)),
    }];
    for (kind, fat) in [("typical", false), ("fat", true)] {
        for alg in Alg::ALL {
            let signer = alg.signer()?;
            let token = if fat {
                signer.sign(&fat_claims(1, now))?
            } else {
                signer.sign(&typical_claims(1, now))?
            };
            out.push(Size {
                label: format!("{kind} JWT {}", alg.name().to_uppercase()),
                credential_bytes: token.len(),
                header_bytes: http1_bytes(&bearer_header(&token)),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_header_is_a_fixed_70_bytes_and_smaller_than_any_jwt() {
        let sizes = sizes().unwrap();
        assert_eq!(sizes[0].credential_bytes, 43);
        assert_eq!(
            sizes[0].header_bytes,
            "Cookie: __Host-cloakroom=".len() + 43 + 2
        );
        assert_eq!(sizes[0].header_bytes, 70);
        for s in &sizes[1..] {
            assert!(s.header_bytes > 4 * sizes[0].header_bytes, "{s:?}");
        }
    }
}
