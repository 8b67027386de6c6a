//! TOTP (RFC 6238) through `totp-rs`: SHA-1, 6 digits, 30-second steps, one step of drift
//! either way — what every authenticator app reads from an `otpauth://` URL.

use cloakroom_core::Timestamp;
use totp_rs::{Algorithm, Totp};

/// Bytes of a new secret: 160 bits, RFC 4226's recommendation for HMAC-SHA-1.
pub(crate) const SECRET_LEN: usize = 20;
const DIGITS: u8 = 6;
const STEP_SECS: u64 = 30;
const SKEW: u16 = 1;

/// Why a TOTP could not be built (an account name the URL format cannot carry).
pub(crate) type BuildError = totp_rs::TotpError;

/// The authenticator for `secret`, labelled `issuer:account` in the app.
pub(crate) fn authenticator(
    secret: &[u8],
    issuer: &str,
    account: &str,
) -> Result<Totp, BuildError> {
    // The label is `issuer:account`: a colon in either would split it elsewhere.
    let issuer: String = issuer.chars().filter(|c| *c != ':').collect();
    let account: String = account.chars().filter(|c| *c != ':').collect();
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(SKEW)
        .with_step_duration(STEP_SECS)
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(issuer))
        .build()
}

/// The time step `code` is right for at `now` (within one step either way), if any. The code
/// is six digits, spaces allowed; anything else is simply wrong.
pub(crate) fn check(secret: &[u8], code: &str, now: Timestamp) -> Option<u64> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != usize::from(DIGITS) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = authenticator(secret, "-", "-").ok()?;
    let now = u64::try_from(now.as_unix_secs()).ok()?;
    totp.check(&digits, now)
}

/// The code for `secret` at `now` (tests, and `cloakroom` never shows one).
#[cfg(test)]
pub(crate) fn code_at(secret: &[u8], now: u64) -> String {
    authenticator(secret, "-", "-")
        .expect("build")
        .generate(now)
        .to_string()
}

/// The QR code of `url`, as an SVG document (the pages need no script or image request).
pub(crate) fn qr_svg(url: &str) -> Option<String> {
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(220, 220)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 vectors, truncated to six digits.
    #[test]
    fn codes_match_rfc_6238() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(secret, time), code);
            let at = Timestamp::from_unix_millis(i64::try_from(time).expect("fits") * 1000);
            assert_eq!(check(secret, code, at), Some(time / 30));
        }
        let at = Timestamp::from_unix_millis(59_000);
        assert_eq!(check(secret, "287 082", at), Some(1));
        assert_eq!(check(secret, "28708", at), None);
        assert_eq!(check(secret, "28708a", at), None);
        // One step late is fine, two are not.
        let later = Timestamp::from_unix_millis(89_000);
        assert_eq!(check(secret, "287082", later), Some(1));
        let too_late = Timestamp::from_unix_millis(120_000);
        assert_eq!(check(secret, "287082", too_late), None);
    }

    #[test]
    fn urls_and_qr_codes_carry_the_secret() {
        let totp = authenticator(b"12345678901234567890", "Cloak:room", "alice").expect("build");
        let url = totp.to_url().expect("url");
        assert!(
            url.starts_with("otpauth://totp/Cloakroom:alice?secret="),
            "{url}"
        );
        let svg = qr_svg(&url).expect("svg");
        assert!(svg.contains("<svg"));
    }
}
