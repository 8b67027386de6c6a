//! How a session's user proved who they are: its assurance level (NIST SP 800-63B's AAL) and
//! the RFC 8176 method names apps see.
//!
//! The level lives in the session's data, written by the server alone: `aal2` from the moment
//! a second factor was given in this session (at sign-in or by step-up), with the time, so
//! that sensitive changes can ask for a recent one.

use std::time::Duration;

use cloakroom_core::{Session, Timestamp};

/// When the second factor was last given in this session (Unix milliseconds).
pub(crate) const AAL2_AT: &str = "cloakroom.aal2_at";
/// Which second factor (`totp`, `recovery_code`, `passkey`).
pub(crate) const SECOND_FACTOR: &str = "cloakroom.second_factor";
/// When the password was last checked again in this session (step-up of an account with no
/// second factor), Unix milliseconds.
pub(crate) const REAUTH_AT: &str = "cloakroom.reauth_at";

/// The session's sign-in method (`AuthMethod`) after a passkey alone (`passkey_login`): a
/// passkey verifies its user, so it is both factors, and the session starts at `aal2`.
pub(crate) const PASSKEY_SIGN_IN: &str = "passkey";

/// How long a step-up counts as recent for the changes that ask for one (adding or removing a
/// factor, a new password or address): a quarter of an hour, as Ory Kratos' privileged
/// session.
pub(crate) const STEP_UP_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A session's authenticator assurance level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthLevel {
    /// One factor (a password, or an OpenID provider's sign-in).
    Aal1,
    /// A second factor was given in this session.
    Aal2,
}

impl AuthLevel {
    /// `aal1` or `aal2`, as the API, `Remote-Auth-Level` and the JWT's `acr` spell it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Aal1 => "aal1",
            Self::Aal2 => "aal2",
        }
    }

    /// The level of `session`.
    pub(crate) fn of(session: &Session) -> Self {
        if aal2_at(session).is_some() {
            Self::Aal2
        } else {
            Self::Aal1
        }
    }
}

fn time(session: &Session, key: &str) -> Option<Timestamp> {
    session
        .data
        .get::<i64>(key)
        .ok()
        .flatten()
        .map(Timestamp::from_unix_millis)
}

/// When the second factor was given in this session, if it was.
pub(crate) fn aal2_at(session: &Session) -> Option<Timestamp> {
    time(session, AAL2_AT)
}

/// When this session last proved its user with the password: at sign-in, or again since.
pub(crate) fn password_at(session: &Session) -> Timestamp {
    time(session, REAUTH_AT).map_or(session.auth_time, |t| t.max(session.auth_time))
}

/// RFC 8176 `amr` values for `session`.
pub(crate) fn amr(session: &Session) -> Vec<&'static str> {
    let mut amr = Vec::with_capacity(3);
    let first = session.auth_method.as_str();
    if first.starts_with("oidc:") {
        amr.push("fed");
    } else if first == PASSKEY_SIGN_IN {
        amr.push("hwk");
    } else {
        amr.push("pwd");
    }
    if AuthLevel::of(session) == AuthLevel::Aal2 {
        match session
            .data
            .as_map()
            .get(SECOND_FACTOR)
            .and_then(serde_json::Value::as_str)
        {
            Some("totp") => amr.push("otp"),
            Some("passkey") if first != PASSKEY_SIGN_IN => amr.push("hwk"),
            _ => {}
        }
        amr.push("mfa");
    }
    amr
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom_core::{
        AuthMethod, MemoryStore, NewSession, SessionData, SessionManager, UserId,
    };

    /// A session signed in by `method`, with `second` given at `AAL2_AT` if any.
    async fn session(method: &str, second: Option<&str>) -> Session {
        let mut data = SessionData::default();
        if let Some(factor) = second {
            data.insert(AAL2_AT, &1_700_000_000_000_i64).unwrap();
            data.insert(SECOND_FACTOR, factor).unwrap();
        }
        let new = NewSession::new(UserId::new("u1").unwrap(), AuthMethod::new(method).unwrap())
            .data(data);
        SessionManager::new(MemoryStore::new())
            .issue(new, None)
            .await
            .unwrap()
            .session
    }

    #[tokio::test]
    async fn amr_names_each_way_in_as_rfc_8176_does() {
        let cases = [
            ("password", None, vec!["pwd"]),
            ("password", Some("totp"), vec!["pwd", "otp", "mfa"]),
            ("password", Some("recovery_code"), vec!["pwd", "mfa"]),
            ("password", Some("passkey"), vec!["pwd", "hwk", "mfa"]),
            // A passkey alone: one key, both factors (it verified its user).
            (PASSKEY_SIGN_IN, Some("passkey"), vec!["hwk", "mfa"]),
            ("oidc:google", None, vec!["fed"]),
        ];
        for (method, second, expected) in cases {
            let s = session(method, second).await;
            assert_eq!(amr(&s), expected, "{method} {second:?}");
            let level = if second.is_some() { "aal2" } else { "aal1" };
            assert_eq!(AuthLevel::of(&s).as_str(), level, "{method} {second:?}");
        }
    }
}
