//! [`ServiceIdentity`]: the verified caller, as an axum extractor.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::verifier::{JWT_HEADER, ServiceClaims, Verifier, VerifyError};

/// The verified claims of the request's `X-Cloakroom-Jwt`. The router's state must provide an
/// `Arc<Verifier>` (directly or through `FromRef`).
///
/// ```
/// use cloakroom_verify::ServiceIdentity;
///
/// async fn whoami(ServiceIdentity(claims): ServiceIdentity) -> String {
///     claims.preferred_username
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceIdentity(pub ServiceClaims);

/// Why [`ServiceIdentity`] refused: 401 for a missing or invalid token, 503 if the keys could
/// not be fetched.
#[derive(Debug)]
pub struct ServiceIdentityRejection(pub VerifyError);

impl IntoResponse for ServiceIdentityRejection {
    fn into_response(self) -> Response {
        let status = match self.0 {
            VerifyError::Jwks(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self.0, "service token keys unavailable");
        }
        (status, Json(serde_json::json!({ "error": "invalid_service_token", "message": self.0.to_string() })))
            .into_response()
    }
}

impl<S> FromRequestParts<S> for ServiceIdentity
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ServiceIdentityRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Arc::<Verifier>::from_ref(state);
        let token = parts
            .headers
            .get(JWT_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        verifier
            .verify(token)
            .await
            .map(Self)
            .map_err(ServiceIdentityRejection)
    }
}
