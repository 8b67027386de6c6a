//! The admin API, `/api/admin/…`: accounts and their groups, for the members of
//! `admin_group` (default `cloakroom-admins`) only.
//!
//! Membership is read per request, like every identity (see [`crate::identity`]): removing
//! someone from the admin group takes their admin rights away on their next request, on every
//! session. Everything else is the API's: the session cookie or a native app's bearer token,
//! and for a state change the origin and CSRF checks of the session layer.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use cloakroom_axum::Session;
use cloakroom_core::accounts::{Account, GroupName, Username};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::events;
use crate::state::AppState;
use crate::web::device::rfc3339;
use crate::web::error::{ApiJson, WebError};

/// A signed-in member of `admin_group`.
#[derive(Debug)]
pub(crate) struct Administrator {
    /// Their username, for the security log.
    username: String,
}

impl FromRequestParts<AppState> for Administrator {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let session = Session::from_request_parts(parts, state).await?;
        let identity = state.identities.of(session.user_id()).await?;
        match identity {
            Some(i) if i.groups.contains(&state.settings.admin_group) => Ok(Self {
                username: i.username.clone(),
            }),
            Some(i) => Err(WebError::Denied {
                user: Some(i.username.clone()),
            }),
            // Gone or disabled since the session began.
            None => Err(cloakroom_axum::Rejection::Unauthenticated(
                cloakroom_axum::Unauthenticated::UnknownSession,
            )
            .into()),
        }
    }
}

/// An account, as administrators see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdminUser {
    /// The user id (stable; the service JWT's `sub`).
    id: String,
    /// The username.
    username: String,
    /// Whether sign-in is refused.
    disabled: bool,
    /// The email address, verified or not.
    email: Option<String>,
    /// Whether the address is verified.
    email_verified: bool,
    /// The groups, ordered by name.
    groups: Vec<String>,
    /// RFC 3339.
    created_at: String,
}

fn view(account: &Account, groups: &[GroupName]) -> AdminUser {
    AdminUser {
        id: account.id.as_str().to_owned(),
        username: account.username.as_str().to_owned(),
        disabled: account.disabled,
        email: account.email.as_ref().map(|e| e.as_str().to_owned()),
        email_verified: account.email_verified,
        groups: groups.iter().map(|g| g.as_str().to_owned()).collect(),
        created_at: rfc3339(account.created_at),
    }
}

async fn account_named(state: &AppState, name: &str) -> Result<Account, WebError> {
    let not_found = || WebError::NotFound("There is no account with this username.");
    let username = Username::parse(name).map_err(|_| not_found())?;
    state
        .account_store()
        .by_username(&username)
        .await?
        .ok_or_else(not_found)
}

/// Every account, with its groups.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Every account, ordered by username", body = [AdminUser])))]
pub(crate) async fn users(
    State(state): State<AppState>,
    _admin: Administrator,
) -> Result<Json<Vec<AdminUser>>, WebError> {
    let store = state.account_store();
    let mut out = Vec::new();
    for account in store.list().await? {
        let groups = store.groups(&account.id).await?;
        out.push(view(&account, &groups));
    }
    Ok(Json(out))
}

/// One account, with its groups.
#[utoipa::path(get, path = "/api/admin/users/{username}", tag = "admin",
    params(("username" = String, Path, description = "The username (case does not matter)")),
    security(("session_cookie" = [])),
    responses((status = 200, description = "The account", body = AdminUser)))]
pub(crate) async fn user(
    State(state): State<AppState>,
    _admin: Administrator,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<AdminUser>, WebError> {
    let Path(name) = name.map_err(|_| WebError::NotFound("There is no such account."))?;
    let account = account_named(&state, &name).await?;
    let groups = state.account_store().groups(&account.id).await?;
    Ok(Json(view(&account, &groups)))
}

/// A change of groups.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupChange {
    /// Groups to add the account to.
    #[serde(default)]
    add: Vec<String>,
    /// Groups to remove it from (a name in both lists ends up removed).
    #[serde(default)]
    remove: Vec<String>,
}

fn group_names(names: &[String]) -> Result<Vec<GroupName>, WebError> {
    names
        .iter()
        .map(|n| {
            GroupName::parse(n).map_err(|e| WebError::Body {
                status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_group",
                message: format!("{n:?}: {e}"),
            })
        })
        .collect()
}

/// Adds the account to groups and removes it from others, in one write. The user's next
/// request, on every session, sees the change.
#[utoipa::path(post, path = "/api/admin/users/{username}/groups", tag = "admin",
    params(("username" = String, Path, description = "The username (case does not matter)")),
    request_body = GroupChange,
    security(("session_cookie" = [])),
    responses((status = 200, description = "The account, with its groups now", body = AdminUser)))]
pub(crate) async fn change_groups(
    State(state): State<AppState>,
    admin: Administrator,
    name: Result<Path<String>, PathRejection>,
    ApiJson(change): ApiJson<GroupChange>,
) -> Result<Json<AdminUser>, WebError> {
    let Path(name) = name.map_err(|_| WebError::NotFound("There is no such account."))?;
    let (add, remove) = (group_names(&change.add)?, group_names(&change.remove)?);
    let account = account_named(&state, &name).await?;
    let store = state.account_store();
    if !store.update_groups(&account.id, &add, &remove).await? {
        return Err(WebError::NotFound(
            "There is no account with this username.",
        ));
    }
    events::groups_changed(account.username.as_str(), &add, &remove, &admin.username);
    let groups = store.groups(&account.id).await?;
    Ok(Json(view(&account, &groups)))
}

/// A group and its number of members.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdminGroup {
    /// The group's name.
    name: String,
    /// How many accounts are in it.
    members: u64,
}

/// Every group with members.
#[utoipa::path(get, path = "/api/admin/groups", tag = "admin",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Every group with at least one member, ordered by name", body = [AdminGroup])))]
pub(crate) async fn groups(
    State(state): State<AppState>,
    _admin: Administrator,
) -> Result<Json<Vec<AdminGroup>>, WebError> {
    let sizes = state.account_store().group_sizes().await?;
    Ok(Json(
        sizes
            .into_iter()
            .map(|(g, members)| AdminGroup {
                name: g.as_str().to_owned(),
                members,
            })
            .collect(),
    ))
}
