//! How a [`Session`] is laid out in Redis: key names and the record hash.
//!
//! A record is a hash. The fields the scripts must compare or compute with are plain decimal
//! fields — `v` (version), `u` (user), `h` (handle), `ls` (last seen), `ie` (idle expiry), `ae`
//! (absolute expiry) — and everything else is one JSON field `b` that Redis never looks
//! inside. So no script ever parses JSON: Lua's `cjson` would round numbers in application
//! data through doubles, and a touch is then a two-field `HSET` instead of a
//! decode-modify-encode of the whole record. The hash fields are authoritative for what they
//! hold, which is how `save` keeps a record's user and handle whatever the caller sends.

use std::collections::HashMap;
use std::net::IpAddr;

use cloakroom_core::link::LinkId;
use cloakroom_core::store::BoxError;
use cloakroom_core::{
    AuthMethod, CsrfSecret, Session, SessionData, SessionHandle, SessionId, Timestamp, UserId,
};
use serde::{Deserialize, Serialize};

/// Key names under one prefix.
///
/// * `<prefix>s:<hex id>` — a session record. No hash tag: records spread over every slot.
/// * `<prefix>{u:<user>}:idx` — the user's index, a sorted set of hex ids scored by expiry.
/// * `<prefix>{u:<user>}:epoch` — the user's revocation counter.
/// * `<prefix>l:<link id>` — a consumed single-use link (base64url id; its value is the link's
///   expiry in ms). No hash tag, like records.
///
/// The two per-user keys share the hash tag `{u:<user>}`, so they live in one Cluster slot and
/// one script may touch both. (A user id containing `}` only shortens the tag; both keys still
/// get the same one.)
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn record(&self, id: &SessionId) -> String {
        format!("{}s:{}", self.prefix, id.to_hex())
    }

    /// The record key for an id already in hex (an index member).
    pub(crate) fn record_hex(&self, hex: &str) -> String {
        format!("{}s:{hex}", self.prefix)
    }

    pub(crate) fn index(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:idx", self.prefix)
    }

    /// The pub/sub channel every change to a session record is announced on (one for the
    /// whole prefix; see [`crate::invalidation`]).
    pub(crate) fn channel(&self) -> String {
        format!("{}invalidations", self.prefix)
    }

    pub(crate) fn epoch(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:epoch", self.prefix)
    }

    pub(crate) fn link(&self, id: &LinkId) -> String {
        format!("{}l:{id}", self.prefix)
    }

    /// The `SCAN MATCH` pattern for every consumed-link key.
    pub(crate) fn link_pattern(&self) -> String {
        format!("{}l:*", self.prefix)
    }

    /// The `SCAN MATCH` pattern for every index key. The prefix holds no glob characters (the
    /// configuration refuses them), but a user id might, so it is matched by `*` only.
    pub(crate) fn index_pattern(&self) -> String {
        format!("{}{{u:*}}:idx", self.prefix)
    }
}

/// A record as the `b` field holds it: everything the scripts never need.
#[derive(Serialize)]
struct BodyRef<'a> {
    created_at: Timestamp,
    auth_time: Timestamp,
    auth_method: &'a AuthMethod,
    remember: bool,
    user_agent: &'a Option<String>,
    ip: &'a Option<IpAddr>,
    csrf_secret: &'a CsrfSecret,
    data: &'a SessionData,
}

#[derive(Deserialize)]
struct Body {
    created_at: Timestamp,
    auth_time: Timestamp,
    auth_method: AuthMethod,
    remember: bool,
    user_agent: Option<String>,
    ip: Option<IpAddr>,
    csrf_secret: CsrfSecret,
    data: SessionData,
}

pub(crate) fn body(s: &Session) -> Result<String, serde_json::Error> {
    serde_json::to_string(&BodyRef {
        created_at: s.created_at,
        auth_time: s.auth_time,
        auth_method: &s.auth_method,
        remember: s.remember,
        user_agent: &s.user_agent,
        ip: &s.ip,
        csrf_secret: &s.csrf_secret,
        data: &s.data,
    })
}

/// A record that Redis returned but that does not decode into a [`Session`].
#[derive(Debug, thiserror::Error)]
#[error("session record field {field:?}: {reason}")]
pub(crate) struct Undecodable {
    field: &'static str,
    #[source]
    reason: BoxError,
}

fn bad(field: &'static str, reason: impl Into<BoxError>) -> Undecodable {
    Undecodable {
        field,
        reason: reason.into(),
    }
}

/// Decodes the fields of `HGETALL <record>`. The caller has checked the map is non-empty.
pub(crate) fn decode(id: SessionId, f: &HashMap<String, String>) -> Result<Session, Undecodable> {
    let get = |field: &'static str| f.get(field).ok_or_else(|| bad(field, "missing"));
    let ts = |field: &'static str| -> Result<Timestamp, Undecodable> {
        get(field)?
            .parse::<i64>()
            .map(Timestamp::from_unix_millis)
            .map_err(|e| bad(field, e))
    };
    let body: Body = serde_json::from_str(get("b")?).map_err(|e| bad("b", e))?;
    Ok(Session {
        id,
        user_id: UserId::new(get("u")?.as_str()).map_err(|e| bad("u", e))?,
        handle: SessionHandle::parse(get("h")?).map_err(|e| bad("h", e))?,
        created_at: body.created_at,
        last_seen_at: ts("ls")?,
        idle_expires_at: ts("ie")?,
        absolute_expires_at: ts("ae")?,
        auth_time: body.auth_time,
        auth_method: body.auth_method,
        remember: body.remember,
        user_agent: body.user_agent,
        ip: body.ip,
        csrf_secret: body.csrf_secret,
        data: body.data,
        version: get("v")?.parse().map_err(|e| bad("v", e))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_slot_per_user_and_records_do_not() {
        let k = Keys::new("p:");
        assert_eq!(k.index("alice"), "p:{u:alice}:idx");
        assert_eq!(k.epoch("alice"), "p:{u:alice}:epoch");
        assert_eq!(k.index_pattern(), "p:{u:*}:idx");
        let slot = |key: &str| redis::cluster_routing::Slot::for_key(key.as_bytes());
        assert_eq!(slot(&k.index("a}b")), slot(&k.epoch("a}b")));
        assert_eq!(slot(&k.index("alice")), slot(&k.epoch("alice")));
    }
}
