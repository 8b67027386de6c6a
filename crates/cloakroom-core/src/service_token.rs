//! What a service JWT says — shared by the server that mints them and the verifier in the
//! services behind the proxy, so the two cannot drift apart.

use serde::{Deserialize, Serialize};

/// The `typ` header of service JWTs (RFC 8725 §3.11, explicit typing: a service JWT can never
/// be mistaken for another kind of JWT by a verifier that checks it).
pub const TOKEN_TYPE: &str = "cloakroom-service+jwt";

/// The request header a proxy puts the service JWT in.
pub const JWT_HEADER: &str = "x-cloakroom-jwt";

/// The claims of a service JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClaims {
    /// Issuer: Cloakroom's public URL.
    pub iss: String,
    /// Audience: the origin of the app the request is for.
    pub aud: String,
    /// The user id (stable).
    pub sub: String,
    /// The username.
    pub preferred_username: String,
    /// The public handle of the user's session, or the download link's id (`jti`) when
    /// [`link`](Self::link) is set (for audit logs; never a credential).
    pub sid: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// Whether the request was let through on a download link rather than a session: the
    /// user is the link's maker, and `sid` is the link's id. Absent (false) for sessions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    /// The user's email address, present only once the user has verified it: an app may
    /// take it as the user's, which it could not do with an address anyone can type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's groups, ordered by name, read when the token was minted (a group change
    /// reaches the next token). Absent (empty) for a user in no group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// How the session's user proved who they are (RFC 8176 values): `pwd` for a password,
    /// `otp` for an authenticator app's code, `mfa` once a second factor was given, `fed` for a
    /// sign-in through an OpenID provider. Absent for a download link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The session's assurance level: `aal1` (one factor) or `aal2` (a second factor given in
    /// this session). Absent for a download link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}
