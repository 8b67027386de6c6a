//! Extractors: [`Session`] (required), `Option<Session>`, [`CurrentUser`] and [`Auth`].

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use cloakroom_core::{
    AuthMethod, NewSession, SessionData, SessionHandle, SessionManager, UpdateError, UserId,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::layer::RequestState;
use crate::rejection::{Rejection, Unauthenticated};

fn state(parts: &Parts) -> Result<Arc<RequestState>, Rejection> {
    parts
        .extensions
        .get::<Arc<RequestState>>()
        .cloned()
        .ok_or(Rejection::LayerMissing)
}

/// Whether the session layer takes this request's session from `Authorization: Bearer` (a
/// native app's token, never sent by a browser on its own), as opposed to a cookie or nothing:
/// for routes that apply CSRF rules of their own, such as forward auth. Only what the layer
/// itself accepts as a bearer counts — a value it leaves to the app behind a proxy does not.
pub fn is_bearer_request(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<Arc<RequestState>>()
        .is_some_and(|s| s.source == crate::layer::Source::Bearer)
}

/// The request's session; rejects with 401 when there is none.
///
/// Reading is free (the record was loaded once for the request). Writes go straight to the
/// store as optimistic, versioned updates, so two concurrent requests on one session never
/// lose each other's changes.
///
/// ```
/// use cloakroom_axum::{Rejection, Session};
///
/// async fn add_to_cart(mut session: Session) -> Result<String, Rejection> {
///     let n = session
///         .update(|data| {
///             let n: u32 = data.get("cart").ok().flatten().unwrap_or(0) + 1;
///             data.insert("cart", &n).map(|()| n)
///         })
///         .await?
///         .map_err(|e| Rejection::InvalidData(e.into()))?;
///     Ok(format!("{n} items"))
/// }
/// ```
pub struct Session {
    state: Arc<RequestState>,
    record: Arc<cloakroom_core::Session>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        let state = state(parts)?;
        let record = state.current().await?;
        Ok(Self { state, record })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = Rejection;

    /// `None` when the request is anonymous; still an error when the store cannot say
    /// (fail closed) or the layer is missing.
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Rejection> {
        match <Self as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(s) => Ok(Some(s)),
            Err(Rejection::Unauthenticated(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Session {
    /// The stored record (as loaded at the start of the request, plus this request's writes).
    pub fn record(&self) -> &cloakroom_core::Session {
        &self.record
    }

    /// Whose session this is.
    pub fn user_id(&self) -> &UserId {
        &self.record.user_id
    }

    /// This session's public handle (for "your devices").
    pub fn handle(&self) -> &SessionHandle {
        &self.record.handle
    }

    /// A fresh CSRF token for this session, to embed in a form (`csrf_token` field) or hand
    /// to a script (`X-CSRF-Token` header). Every call returns a different, equally valid
    /// string.
    pub fn csrf_token(&self) -> String {
        self.record.csrf_secret.masked_token()
    }

    /// Reads `key` from the session data.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Rejection> {
        self.record
            .data
            .get(key)
            .map_err(|e| Rejection::InvalidData(Arc::new(e)))
    }

    /// Sets `key` (an optimistic, versioned write: concurrent requests lose nothing).
    pub async fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), Rejection> {
        let value = serde_json::to_value(value)
            .map_err(|e| Rejection::InvalidData(Arc::new(cloakroom_core::InvalidValue::Json(e))))?;
        self.update(|data| data.insert(key, &value))
            .await?
            .map_err(|e| Rejection::InvalidData(Arc::new(e)))
    }

    /// Removes `key`.
    pub async fn remove(&mut self, key: &str) -> Result<(), Rejection> {
        self.update(|data| {
            data.remove(key);
        })
        .await
    }

    /// Applies `f` to the freshest data and saves it; `f` may run more than once (after losing
    /// a race to another request) and should only change the data it is given.
    pub async fn update<R: Send>(
        &mut self,
        mut f: impl FnMut(&mut SessionData) -> R + Send,
    ) -> Result<R, Rejection> {
        let manager = &self.state.config.manager;
        let mut latest = None;
        let out = manager
            .update_data(&self.record.id, |data| {
                let out = f(data);
                latest = Some(data.clone());
                out
            })
            .await
            .map_err(|e| match e {
                UpdateError::Gone => {
                    self.state.clear_session();
                    Rejection::Unauthenticated(Unauthenticated::Revoked)
                }
                UpdateError::Contended => Rejection::Contended,
                UpdateError::Store(s) => Rejection::from(s),
                _ => Rejection::Contended,
            })?;
        if let Some(data) = latest {
            Arc::make_mut(&mut self.record).data = data;
        }
        Ok(out)
    }

    /// Gives this session a new token and CSRF secret, keeping its data and lifetime; the old
    /// token stops working at once. Call it on every privilege change (OWASP: "renew the
    /// session id after any privilege level change").
    pub async fn rotate(&mut self) -> Result<(), Rejection> {
        let issued = self.state.config.manager.rotate(&self.record).await?;
        self.record = Arc::new(issued.session);
        self.state.set_session(issued.token, self.record.clone());
        Ok(())
    }

    /// After [`rotate`](Self::rotate) on a native app's request: the new token, which the
    /// app must be given in the response (a browser gets it as a cookie, so `None`).
    pub fn new_bearer_token(&self) -> Option<String> {
        self.state.issued_bearer_token()
    }

    /// Ends this session on the server and removes the cookie. The cookie is removed even if
    /// the store fails to end the session (the error is still returned): a browser that asked
    /// to log out must not keep the ticket.
    pub async fn logout(self) -> Result<(), Rejection> {
        let revoked = self.state.config.manager.revoke(&self.record.id).await;
        self.state.clear_session();
        revoked?;
        Ok(())
    }

    /// Ends every other session of this user ("log out of all other devices"). Returns how
    /// many ended.
    pub async fn logout_other_devices(&self) -> Result<u64, Rejection> {
        Ok(self
            .state
            .config
            .manager
            .revoke_all_for_user(&self.record.user_id, Some(&self.record.id))
            .await?)
    }

    /// This user's live sessions ("your devices"), most recently used first.
    pub async fn devices(&self) -> Result<Vec<cloakroom_core::Session>, Rejection> {
        Ok(self
            .state
            .config
            .manager
            .list_for_user(&self.record.user_id)
            .await?)
    }

    /// Ends one of this user's sessions by its public handle. Returns whether it existed
    /// (another user's handle is simply not found). Ending the current session this way also
    /// removes the cookie.
    pub async fn revoke_device(&self, handle: &SessionHandle) -> Result<bool, Rejection> {
        let found = self
            .state
            .config
            .manager
            .revoke_handle(&self.record.user_id, handle)
            .await?;
        if found && handle == &self.record.handle {
            self.state.clear_session();
        }
        Ok(found)
    }

    /// The session manager, for what the extractor does not cover.
    pub fn manager(&self) -> &SessionManager {
        &self.state.config.manager
    }
}

/// The signed-in user's id; rejects with 401 when there is no session.
///
/// ```
/// use cloakroom_axum::CurrentUser;
///
/// async fn greet(CurrentUser(user): CurrentUser) -> String {
///     format!("hello {user}")
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        Ok(Self(state(parts)?.current().await?.user_id.clone()))
    }
}

/// Logging in and out, available with or without a session.
///
/// ```
/// use cloakroom_axum::{Auth, Rejection};
/// use cloakroom_core::{AuthMethod, UserId};
///
/// async fn login(auth: Auth) -> Result<&'static str, Rejection> {
///     // … after checking credentials:
///     let user = UserId::new("alice").map_err(|e| Rejection::InvalidData(e.into()))?;
///     auth.login(auth.new_session(user, AuthMethod::password()).remember(true)).await?;
///     Ok("welcome")
/// }
///
/// async fn logout(auth: Auth) -> Result<&'static str, Rejection> {
///     auth.logout().await?; // works whether or not the request had a session
///     Ok("bye")
/// }
/// ```
pub struct Auth {
    state: Arc<RequestState>,
    /// Recorded on a session this request starts.
    user_agent: Option<HeaderValue>,
    ip: Option<IpAddr>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        let state = state(parts)?;
        Ok(Self {
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            ip: state.config.client_ip(parts),
            state,
        })
    }
}

impl Auth {
    /// A [`NewSession`] for `user`, authenticated by `method`, with this request's user agent
    /// and client IP filled in.
    pub fn new_session(&self, user: UserId, method: AuthMethod) -> NewSession {
        let mut new = NewSession::new(user, method);
        if let Some(ua) = self.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
            new = new.user_agent(ua);
        }
        if let Some(ip) = self.ip {
            new = new.ip(ip);
        }
        new
    }

    /// Logs in: issues a new session and sets its cookie. Whatever session cookie the client
    /// presented is deleted in the same step, so a token planted before login is worthless
    /// after it (session fixation defence).
    ///
    /// Refused on a request the layer let through without an origin check
    /// ([`SessionLayer::with_non_browser_sign_in`](crate::SessionLayer::with_non_browser_sign_in)):
    /// nothing proves it came from our own pages, so it may not set a cookie (login CSRF).
    pub async fn login(&self, new: NewSession) -> Result<Session, Rejection> {
        self.require_verified_origin()?;
        let replacing = self.state.presented_id();
        let issued = self
            .state
            .config
            .manager
            .issue(new, replacing.as_ref())
            .await?;
        let record = Arc::new(issued.session);
        self.state.set_session(issued.token, record.clone());
        Ok(Session {
            state: self.state.clone(),
            record,
        })
    }

    /// Starts a native app's session and hands its token back instead of setting a cookie
    /// (the app sends it as `Authorization: Bearer`; see
    /// [`SessionLayer::with_bearer_sessions`](crate::SessionLayer::with_bearer_sessions)).
    /// The session is marked as a bearer session, whatever `new` says. Nothing the request
    /// presented is replaced: a native sign-in is a new device.
    pub async fn issue_bearer(
        &self,
        new: NewSession,
    ) -> Result<(cloakroom_core::SessionToken, Session), Rejection> {
        let issued = self.state.config.manager.issue(new.bearer(), None).await?;
        let record = Arc::new(issued.session);
        Ok((
            issued.token,
            Session {
                state: self.state.clone(),
                record,
            },
        ))
    }

    /// Whether the request passed the origin check, or needed none (a safe method, a bearer
    /// token). `Err` with the refusal the check would have given otherwise: a browser's
    /// sign-in on a route that also signs native apps in calls this before anything else.
    pub fn require_verified_origin(&self) -> Result<(), Rejection> {
        if self.state.origin_unverified {
            Err(Rejection::CrossOrigin(
                cloakroom_core::origin::CrossOriginRefusal::NoSourceInformation,
            ))
        } else {
            Ok(())
        }
    }

    /// Logs out whatever session the request carries (a no-op without one) and removes the
    /// cookie — even if the store fails to end the session, whose error is still returned.
    pub async fn logout(&self) -> Result<(), Rejection> {
        let revoked = match self.state.presented_id() {
            // Only a session presented the way it was issued is this client's to end: a
            // browser's cookie token sent as a bearer (or the reverse) ends nothing.
            Some(id) => match self.state.current().await {
                Err(Rejection::Unauthenticated(_)) => Ok(()),
                _ => self.state.config.manager.revoke(&id).await.map(drop),
            },
            None => Ok(()),
        };
        self.state.clear_session();
        Ok(revoked?)
    }

    /// The presented session if it is a pending one — a sign-in whose password was right and
    /// whose second factor is still due ([`NewSession::pending`](cloakroom_core::NewSession::pending)).
    /// Every other extractor treats such a session as absent; the route that asks for the
    /// second factor reads it here, and then [`login`](Self::login)s, which replaces it.
    pub async fn pending_session(&self) -> Result<Option<Session>, Rejection> {
        Ok(self.state.pending_session().await?.map(|record| Session {
            state: self.state.clone(),
            record,
        }))
    }

    /// The request's session, if any (as `Option<Session>` would extract it).
    pub async fn session(&self) -> Result<Option<Session>, Rejection> {
        match self.state.current().await {
            Ok(record) => Ok(Some(Session {
                state: self.state.clone(),
                record,
            })),
            Err(Rejection::Unauthenticated(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
