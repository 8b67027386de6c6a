//! The session record — the coat on the hook.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::csrf::CsrfSecret;
use crate::token::{SessionHandle, SessionId};

/// Longest accepted [`UserId`], in bytes.
pub const MAX_USER_ID_LEN: usize = 256;
/// Largest accepted [`SessionData`], serialized as JSON, in bytes.
pub const MAX_DATA_LEN: usize = 16 * 1024;
/// Longest user agent kept on a session, in bytes; longer ones are truncated.
pub const MAX_USER_AGENT_LEN: usize = 512;

/// Why a value was refused as a [`UserId`], [`AuthMethod`] or [`SessionData`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidValue {
    /// The user id is empty, longer than [`MAX_USER_ID_LEN`] or contains control characters.
    #[error("a user id must be 1 to {MAX_USER_ID_LEN} bytes without control characters")]
    UserId,
    /// The auth method is not 1 to 64 printable ASCII characters.
    #[error("an auth method must be 1 to 64 printable ASCII characters")]
    AuthMethod,
    /// The session data would exceed [`MAX_DATA_LEN`] bytes of JSON.
    #[error("session data would be {0} bytes; the limit is {MAX_DATA_LEN}")]
    DataTooLarge(usize),
    /// A value could not be converted to or from JSON.
    #[error("session data value could not be converted")]
    Json(#[source] serde_json::Error),
}

/// Who a session belongs to: the application's stable user identifier.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Checks and wraps a user identifier.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidValue> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_USER_ID_LEN || id.chars().any(char::is_control) {
            return Err(InvalidValue::UserId);
        }
        Ok(Self(id))
    }

    /// The identifier's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: width and alignment (`{:<32}`) are honoured in tables.
        f.pad(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({:?})", self.0)
    }
}

/// How the user proved who they are for this session (`"password"`, `"oidc:google"`, …); kept
/// so step-up decisions can ask for a stronger method.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AuthMethod(String);

impl AuthMethod {
    /// Checks and wraps a method name: 1 to 64 printable ASCII characters.
    pub fn new(method: impl Into<String>) -> Result<Self, InvalidValue> {
        let method = method.into();
        if method.is_empty() || method.len() > 64 || !method.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::AuthMethod);
        }
        Ok(Self(method))
    }

    /// Password login.
    pub fn password() -> Self {
        Self("password".to_owned())
    }

    /// The method's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AuthMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthMethod({:?})", self.0)
    }
}

/// Application data kept on a session: a small JSON object, at most [`MAX_DATA_LEN`] bytes.
///
/// Typed access goes through serde, so handlers read and write their own types:
///
/// ```
/// use cloakroom_core::SessionData;
///
/// let mut data = SessionData::default();
/// data.insert("cart_items", &3_u32).unwrap();
/// assert_eq!(data.get::<u32>("cart_items").unwrap(), Some(3));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionData(Map<String, Value>);

impl SessionData {
    /// Reads `key` as a `T`; `Ok(None)` if absent.
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, InvalidValue> {
        self.0
            .get(key)
            .map(|v| T::deserialize(v).map_err(InvalidValue::Json))
            .transpose()
    }

    /// Sets `key` to `value`, refusing (and changing nothing) if the data would grow past
    /// [`MAX_DATA_LEN`].
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), InvalidValue> {
        let value = serde_json::to_value(value).map_err(InvalidValue::Json)?;
        let previous = self.0.insert(key.to_owned(), value);
        let len = self.json_len();
        if len > MAX_DATA_LEN {
            match previous {
                Some(p) => self.0.insert(key.to_owned(), p),
                None => self.0.remove(key),
            };
            return Err(InvalidValue::DataTooLarge(len));
        }
        Ok(())
    }

    /// Removes `key`, returning its raw value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }

    /// The raw JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Whether there is no data.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The data as JSON text (what SQL stores keep).
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// Parses data stored by [`to_json`](Self::to_json).
    pub fn from_json(text: &str) -> Result<Self, InvalidValue> {
        if text.len() > MAX_DATA_LEN {
            return Err(InvalidValue::DataTooLarge(text.len()));
        }
        serde_json::from_str(text)
            .map(Self)
            .map_err(InvalidValue::Json)
    }

    fn json_len(&self) -> usize {
        serde_json::to_vec(&self.0).map_or(usize::MAX, |v| v.len())
    }
}

/// Which limit a session ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Unused for longer than the idle timeout.
    Idle,
    /// Older than the absolute timeout.
    Absolute,
}

/// A session as the store holds it.
///
/// A plain record: the [`SessionManager`](crate::SessionManager) keeps its invariants
/// (`last_seen_at <= idle_expires_at <= absolute_expires_at`, `version` bumped by every save).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The store key (SHA-256 of the token).
    #[serde(with = "id_hex")]
    pub id: SessionId,
    /// Whose session this is.
    pub user_id: UserId,
    /// The public name of this session, for "your devices".
    pub handle: SessionHandle,
    /// When the session was created.
    pub created_at: Timestamp,
    /// When the session was last used (to within the touch interval).
    pub last_seen_at: Timestamp,
    /// When the session expires if unused; never after `absolute_expires_at`.
    pub idle_expires_at: Timestamp,
    /// When the session expires regardless of use.
    pub absolute_expires_at: Timestamp,
    /// When the user last proved who they are.
    pub auth_time: Timestamp,
    /// How the user last proved who they are.
    pub auth_method: AuthMethod,
    /// Whether this is a "remember me" session (persistent cookie, longer lifetime).
    pub remember: bool,
    /// The user agent that created the session, truncated to [`MAX_USER_AGENT_LEN`] bytes.
    pub user_agent: Option<String>,
    /// The client address that created the session.
    pub ip: Option<IpAddr>,
    /// The secret CSRF tokens for this session are derived from.
    pub csrf_secret: CsrfSecret,
    /// Application data.
    pub data: SessionData,
    /// Incremented by every successful save; the compare-and-set guard against lost updates.
    pub version: u64,
}

/// The data key that marks a native app's session (see [`Session::is_bearer`]). Reserved:
/// an application writing it would change how its session may be presented.
pub const BEARER_KEY: &str = "cloakroom.bearer";

/// The data key that marks a pending session: a correct password whose second factor is
/// still due (see [`Session::is_pending`]). Reserved, like [`BEARER_KEY`].
pub const PENDING_KEY: &str = "cloakroom.pending";

impl Session {
    /// Whether the session only holds a sign-in half done — the password was right, the
    /// second factor is still due. Such a session signs no one in: the session layer treats it
    /// as absent everywhere but where the second factor is asked for.
    pub fn is_pending(&self) -> bool {
        matches!(self.data.get::<bool>(PENDING_KEY), Ok(Some(true)))
    }

    /// Whether the session belongs to a native app, presenting its token as
    /// `Authorization: Bearer` — never in a cookie; a browser's session is the reverse.
    pub fn is_bearer(&self) -> bool {
        matches!(self.data.get::<bool>(BEARER_KEY), Ok(Some(true)))
    }

    /// Which limit the session has reached at `now`, if any. The absolute limit wins when
    /// both have passed, since it is the one no activity could have avoided.
    pub fn expiry_at(&self, now: Timestamp) -> Option<Expiry> {
        if now >= self.absolute_expires_at {
            Some(Expiry::Absolute)
        } else if now >= self.idle_expires_at {
            Some(Expiry::Idle)
        } else {
            None
        }
    }

    /// Whether the session is usable at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expiry_at(now).is_none()
    }

    /// The earlier of the two expiries: after this instant the record is garbage.
    pub fn expires_at(&self) -> Timestamp {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    /// The bytes this record takes in memory, estimated: the struct, its strings, and its
    /// data with the allocator's and the map's per-item overhead. What a session cache's byte
    /// bound counts ([`CacheLimits`](crate::CacheLimits)).
    pub fn approx_size(&self) -> usize {
        // An `Arc`'s two counters, and one allocation's rounding per heap string.
        const ARC: usize = 16;
        const ALLOC: usize = 16;
        let text = |s: &str| if s.is_empty() { 0 } else { s.len() + ALLOC };
        std::mem::size_of::<Self>()
            + ARC
            + text(self.user_id.as_str())
            + text(self.auth_method.as_str())
            + self.user_agent.as_deref().map_or(0, text)
            + map_size(self.data.as_map())
    }
}

/// A B-tree map node's share per entry (keys, values and edges), roughly.
const MAP_ENTRY: usize = 48;

fn map_size(map: &Map<String, Value>) -> usize {
    map.iter()
        .map(|(k, v)| MAP_ENTRY + k.len() + value_size(v))
        .sum()
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len() + 16,
        Value::Array(items) => items
            .iter()
            .map(|i| std::mem::size_of::<Value>() + value_size(i))
            .sum(),
        Value::Object(m) => map_size(m),
    }
}

/// Truncates a user agent to at most [`MAX_USER_AGENT_LEN`] bytes on a character boundary.
pub fn truncate_user_agent(ua: &str) -> String {
    let mut end = ua.len().min(MAX_USER_AGENT_LEN);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].to_owned()
}

mod id_hex {
    use crate::token::SessionId;

    pub(super) fn serialize<S: serde::Serializer>(id: &SessionId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_hex())
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<SessionId, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        SessionId::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_checked() {
        assert!(UserId::new("").is_err());
        assert!(UserId::new("a\nb").is_err());
        assert!(UserId::new("x".repeat(MAX_USER_ID_LEN + 1)).is_err());
        assert_eq!(UserId::new("alice").unwrap().as_str(), "alice");
    }

    #[test]
    fn data_refuses_to_grow_past_the_limit_and_changes_nothing() {
        let mut data = SessionData::default();
        data.insert("a", "small").unwrap();
        let before = data.clone();
        let big = "x".repeat(MAX_DATA_LEN);
        assert!(matches!(
            data.insert("a", &big),
            Err(InvalidValue::DataTooLarge(_))
        ));
        assert_eq!(data, before);
        assert!(data.insert("b", &big).is_err());
        assert_eq!(data, before);
    }

    #[test]
    fn user_agents_truncate_on_char_boundaries() {
        let ua = "é".repeat(MAX_USER_AGENT_LEN);
        let t = truncate_user_agent(&ua);
        assert!(t.len() <= MAX_USER_AGENT_LEN);
        assert!(t.chars().all(|c| c == 'é'));
    }
}
