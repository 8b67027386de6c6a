//! The JWS compact serialization (RFC 7515 §7.1), as far as link tokens need it, and no further.
//!
//! Hand-written rather than taken from a JOSE crate because core must stay free of crypto
//! backends, and the JOSE crates in reach tie signing to a process-wide backend (jsonwebtoken
//! 11 panics at the first signature when none or two are compiled in). What is left once the
//! signature is behind [`LinkKey`](super::LinkKey) is small enough to be strict everywhere:
//!
//! * a size cap before anything else ([`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN));
//! * exactly three parts, each canonical unpadded base64url (one spelling per token, no
//!   whitespace, no padding, no stray trailing bits);
//! * a header of exactly `alg`, `typ` and `kid`, nothing else — an unknown member such as
//!   `crit`, `jku` or `x5u` is refused, not ignored, and so is a duplicate;
//! * the header is checked (algorithm, type, key) before any signature work, and the payload is
//!   parsed only after the signature verified.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{LinkError, MAX_TOKEN_LEN};

/// Longest accepted `kid`.
pub const MAX_KID_LEN: usize = 64;

/// A JOSE header as link tokens carry it. Field order is the serialization order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub(crate) alg: String,
    pub(crate) typ: String,
    pub(crate) kid: String,
}

/// A token split into its parts, the header decoded.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) header: Header,
    /// `BASE64URL(header) "." BASE64URL(payload)`: what the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
}

/// Whether `kid` is one a link key may have: base64url characters, 1 to [`MAX_KID_LEN`].
pub(crate) fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len()) && kid.bytes().all(is_base64url)
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Decodes canonical unpadded base64url; `None` for anything else.
pub(crate) fn decode(part: &str) -> Option<Vec<u8>> {
    // The engine refuses padding, characters outside the URL-safe alphabet and non-zero
    // trailing bits, so an accepted part has exactly one spelling.
    URL_SAFE_NO_PAD.decode(part).ok()
}

pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Splits `token` and decodes its header; checks nothing about what the header says.
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, LinkError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(LinkError::TooLarge);
    }
    // Cheap and byte-wise first: anything outside base64url and the two dots is refused
    // before a part is decoded (this also keeps non-ASCII input away from slicing).
    if !token.bytes().all(|b| is_base64url(b) || b == b'.') {
        return Err(LinkError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LinkError::Malformed);
    };
    // An empty signature is left for the signature check to refuse, so that `alg: none`
    // (which comes with one) is reported as the algorithm it is.
    if header.is_empty() || payload.is_empty() {
        return Err(LinkError::Malformed);
    }
    let header_json = decode(header).ok_or(LinkError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| LinkError::Malformed)?;
    let signing_input = &token[..token.len() - signature.len() - 1];
    Ok(Parsed {
        header,
        signing_input,
        payload,
        signature,
    })
}

/// `BASE64URL(header) "." BASE64URL(payload)`.
pub(crate) fn signing_input(header: &Header, payload: &[u8]) -> Result<String, LinkError> {
    let header = serde_json::to_vec(header).map_err(|_| LinkError::Malformed)?;
    Ok(format!("{}.{}", encode(&header), encode(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        encode(s.as_bytes())
    }

    #[test]
    fn headers_must_be_exactly_alg_typ_kid() {
        let ok = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"EdDSA","typ":"t","kid":"k"}"#),
            b64("{}")
        );
        assert!(parse(&ok).is_ok());
        for header in [
            r#"{"alg":"EdDSA","typ":"t"}"#,
            r#"{"alg":"EdDSA","typ":"t","kid":"k","crit":["exp"]}"#,
            r#"{"alg":"EdDSA","typ":"t","kid":"k","jku":"https://evil"}"#,
            r#"{"alg":"EdDSA","alg":"none","typ":"t","kid":"k"}"#,
            r#"{"alg":1,"typ":"t","kid":"k"}"#,
            r#"["alg","EdDSA"]"#,
            "not json",
        ] {
            let token = format!("{}.{}.sig", b64(header), b64("{}"));
            assert_eq!(parse(&token).unwrap_err(), LinkError::Malformed, "{header}");
        }
    }

    #[test]
    fn structure_is_strict() {
        let h = b64(r#"{"alg":"EdDSA","typ":"t","kid":"k"}"#);
        for bad in [
            String::new(),
            "..".to_owned(),
            h.clone(),
            format!("{h}.e30"),
            format!("{h}.e30.sig.more"),
            ".e30.sig".to_owned(),
            format!("{h}..sig"),
            format!("{h}=.e30.sig"),
            format!("{h}.e30=.sig"),
            format!(" {h}.e30.sig"),
            format!("{h}.e30.si+g"),
            format!("{h}.e30.sig\n"),
            format!("{h}.e30.sïg"),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        // `e31` decodes to the same bytes as `e30` only with non-zero trailing bits: refused.
        assert!(decode("e30").is_some());
        assert!(decode("e31").is_none());
        assert_eq!(
            parse(&format!("{h}.{}.s", "A".repeat(MAX_TOKEN_LEN))).unwrap_err(),
            LinkError::TooLarge
        );
    }

    #[test]
    fn kids_are_short_base64url() {
        assert!(valid_kid("abc-_9"));
        assert!(!valid_kid(""));
        assert!(!valid_kid("a.b"));
        assert!(!valid_kid("../keys"));
        assert!(!valid_kid(&"a".repeat(MAX_KID_LEN + 1)));
    }
}
