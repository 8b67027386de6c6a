//! One decoder from a relational row to a [`Session`], shared by the SQL stores.
//!
//! The SQLite and PostgreSQL crates hold a session in the same fifteen columns. Each reads the
//! columns with its own driver into a [`SessionRow`] of plain values, and this module alone
//! decides which values make a valid [`Session`]: a row that one store would refuse as
//! corrupt, the other refuses too, with the same message. No SQL and no driver type appears
//! here; the drivers' own read errors (a missing column, a NULL where a value belongs) stay
//! with the store that met them.

use std::net::IpAddr;

use crate::clock::Timestamp;
use crate::csrf::CsrfSecret;
use crate::session::{AuthMethod, Session, SessionData, UserId};
use crate::store::{BoxError, StoreError};
use crate::token::{SessionHandle, SessionId};

/// A session's columns as a SQL store holds them, before anything in them is trusted.
///
/// Times are Unix milliseconds. Byte and text columns are borrowed from the driver's row
/// buffer: they are only parsed, and an owned copy of each would be one more allocation on
/// every load.
#[derive(Debug, Clone)]
pub struct SessionRow<'a> {
    /// `id`: the 32-byte [`SessionId`].
    pub id: &'a [u8],
    /// `user_id`.
    pub user_id: String,
    /// `handle`: the public [`SessionHandle`].
    pub handle: &'a str,
    /// `created_at`.
    pub created_at: i64,
    /// `last_seen_at`.
    pub last_seen_at: i64,
    /// `idle_expires_at`.
    pub idle_expires_at: i64,
    /// `absolute_expires_at`.
    pub absolute_expires_at: i64,
    /// `auth_time`.
    pub auth_time: i64,
    /// `auth_method`.
    pub auth_method: String,
    /// `remember`.
    pub remember: bool,
    /// `user_agent`.
    pub user_agent: Option<String>,
    /// `ip`, if the session has one.
    pub ip: Option<IpColumn<'a>>,
    /// `csrf_secret`: 32 bytes.
    pub csrf_secret: &'a [u8],
    /// `data`: the JSON of [`SessionData`].
    pub data: &'a str,
    /// `version`, as a signed 64-bit column holds it; see [`version_column`].
    pub version: i64,
}

/// The `ip` column: text where the database has no address type (SQLite), an address where
/// the driver has already parsed one (PostgreSQL's `inet`).
#[derive(Debug, Clone, Copy)]
pub enum IpColumn<'a> {
    /// An address as text, parsed by the decoder.
    Text(&'a str),
    /// An address the driver decoded.
    Addr(IpAddr),
}

/// A stored row that does not decode into a [`Session`]: which column, and why. The source of
/// the [`StoreError::Corrupt`] that [`SessionRow::decode`] returns.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: {reason}")]
pub struct CorruptColumn {
    /// The column's name.
    pub column: &'static str,
    /// What is wrong with its value.
    #[source]
    pub reason: BoxError,
}

impl CorruptColumn {
    /// A corrupt `column`, for the decoding errors a store meets before it has a
    /// [`SessionRow`] (a driver that cannot read a column as its type).
    pub fn new(column: &'static str, reason: impl Into<BoxError>) -> Self {
        Self {
            column,
            reason: reason.into(),
        }
    }
}

impl SessionRow<'_> {
    /// Checks every column and builds the session; `store` names the store in the error.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] with a [`CorruptColumn`] source for the first column that does
    /// not hold a valid value: an id or CSRF secret that is not 32 bytes, a user id, handle,
    /// auth method, address or data that does not parse, or a negative version.
    pub fn decode(self, store: &'static str) -> Result<Session, StoreError> {
        self.try_decode().map_err(|e| StoreError::Corrupt {
            store,
            source: Box::new(e),
        })
    }

    fn try_decode(self) -> Result<Session, CorruptColumn> {
        Ok(Session {
            id: SessionId::from_bytes(
                self.id
                    .try_into()
                    .map_err(|_| CorruptColumn::new("id", "not 32 bytes"))?,
            ),
            user_id: UserId::new(self.user_id).map_err(|e| CorruptColumn::new("user_id", e))?,
            handle: SessionHandle::parse(self.handle)
                .map_err(|e| CorruptColumn::new("handle", e))?,
            created_at: Timestamp::from_unix_millis(self.created_at),
            last_seen_at: Timestamp::from_unix_millis(self.last_seen_at),
            idle_expires_at: Timestamp::from_unix_millis(self.idle_expires_at),
            absolute_expires_at: Timestamp::from_unix_millis(self.absolute_expires_at),
            auth_time: Timestamp::from_unix_millis(self.auth_time),
            auth_method: AuthMethod::new(self.auth_method)
                .map_err(|e| CorruptColumn::new("auth_method", e))?,
            remember: self.remember,
            user_agent: self.user_agent,
            ip: match self.ip {
                None => None,
                Some(IpColumn::Addr(ip)) => Some(ip),
                Some(IpColumn::Text(text)) => Some(
                    text.parse::<IpAddr>()
                        .map_err(|e| CorruptColumn::new("ip", e))?,
                ),
            },
            csrf_secret: CsrfSecret::from_bytes(
                self.csrf_secret
                    .try_into()
                    .map_err(|_| CorruptColumn::new("csrf_secret", "not 32 bytes"))?,
            ),
            data: SessionData::from_json(self.data).map_err(|e| CorruptColumn::new("data", e))?,
            version: u64::try_from(self.version).map_err(|e| CorruptColumn::new("version", e))?,
        })
    }
}

/// A session's version as a signed 64-bit column holds it.
///
/// A version above `i64::MAX` is refused, not saturated. The version is the compare-and-set
/// token of [`SessionStore::save`](crate::SessionStore::save): saturating would give every
/// version from `i64::MAX` up the same stored value, so a save holding a stale version could
/// match the row and overwrite a newer write — the lost update the version exists to stop.
/// Versions start at 1 and grow by one per save, so only a corrupt or forged [`Session`] can
/// get there; reading such a row back is refused as corrupt just the same.
///
/// # Errors
/// [`StoreError::Backend`] naming `store`, with the conversion error as its source.
pub fn version_column(version: u64, store: &'static str) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|e| StoreError::Backend {
        store,
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 32] = [7; 32];
    const CSRF: [u8; 32] = [9; 32];

    fn handle() -> SessionHandle {
        SessionHandle::generate()
    }

    fn row<'a>(handle: &'a SessionHandle) -> SessionRow<'a> {
        SessionRow {
            id: &ID,
            user_id: "alice".into(),
            handle: handle.as_str(),
            created_at: 1_700_000_000_000,
            last_seen_at: 1_700_000_001_000,
            idle_expires_at: 1_700_001_800_000,
            absolute_expires_at: 1_700_043_200_000,
            auth_time: 1_700_000_000_000,
            auth_method: "password".into(),
            remember: true,
            user_agent: Some("it-tests/1.0".into()),
            ip: Some(IpColumn::Text("192.0.2.1")),
            csrf_secret: &CSRF,
            data: r#"{"theme":"dark"}"#,
            version: 3,
        }
    }

    /// The column a corrupt row is refused for, or `None` if it decoded.
    fn refused_column(row: SessionRow<'_>) -> Option<&'static str> {
        match row.decode("test") {
            Ok(_) => None,
            Err(StoreError::Corrupt { store, source }) => {
                assert_eq!(store, "test");
                let corrupt = source
                    .downcast_ref::<CorruptColumn>()
                    .unwrap_or_else(|| panic!("not a CorruptColumn: {source}"));
                Some(corrupt.column)
            }
            Err(other) => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_row_decodes_to_every_value() {
        let h = handle();
        let s = row(&h).decode("test").expect("valid row");
        assert_eq!(s.id, SessionId::from_bytes(ID));
        assert_eq!(s.user_id.as_str(), "alice");
        assert_eq!(s.handle, h);
        assert_eq!(s.created_at.as_unix_millis(), 1_700_000_000_000);
        assert_eq!(s.last_seen_at.as_unix_millis(), 1_700_000_001_000);
        assert_eq!(s.idle_expires_at.as_unix_millis(), 1_700_001_800_000);
        assert_eq!(s.absolute_expires_at.as_unix_millis(), 1_700_043_200_000);
        assert_eq!(s.auth_method.as_str(), "password");
        assert!(s.remember);
        assert_eq!(s.user_agent.as_deref(), Some("it-tests/1.0"));
        assert_eq!(s.ip, Some("192.0.2.1".parse().expect("address")));
        assert_eq!(s.csrf_secret.expose_bytes(), &CSRF);
        assert_eq!(
            s.data.get::<String>("theme").expect("string").as_deref(),
            Some("dark")
        );
        assert_eq!(s.version, 3);
    }

    #[test]
    fn an_address_the_driver_parsed_and_no_address_both_decode() {
        let h = handle();
        let ip: IpAddr = "2001:db8::1".parse().expect("address");
        let parsed = SessionRow {
            ip: Some(IpColumn::Addr(ip)),
            ..row(&h)
        };
        assert_eq!(parsed.decode("test").expect("valid").ip, Some(ip));
        let none = SessionRow {
            ip: None,
            ..row(&h)
        };
        assert_eq!(none.decode("test").expect("valid").ip, None);
    }

    #[test]
    fn versions_out_of_the_column_range_are_refused_both_ways() {
        let h = handle();
        assert_eq!(
            refused_column(SessionRow {
                version: -1,
                ..row(&h)
            }),
            Some("version")
        );
        assert_eq!(
            refused_column(SessionRow {
                version: i64::MIN,
                ..row(&h)
            }),
            Some("version")
        );
        let max = SessionRow {
            version: i64::MAX,
            ..row(&h)
        };
        assert_eq!(max.decode("test").expect("valid").version, i64::MAX as u64);

        assert_eq!(version_column(0, "test").expect("in range"), 0);
        assert_eq!(
            version_column(i64::MAX as u64, "test").expect("in range"),
            i64::MAX
        );
        // Regression: SQLite saturated this to i64::MAX, so a stale save at any version from
        // there up could match the stored row.
        for too_big in [i64::MAX as u64 + 1, u64::MAX] {
            let err = version_column(too_big, "test").expect_err("out of range");
            assert!(
                matches!(err, StoreError::Backend { store: "test", .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn every_malformed_column_is_named() {
        let h = handle();
        let short = [1_u8; 31];
        let long = [1_u8; 33];
        let cases: Vec<(SessionRow<'_>, &str)> = vec![
            (
                SessionRow {
                    id: &short,
                    ..row(&h)
                },
                "id",
            ),
            (
                SessionRow {
                    id: &long,
                    ..row(&h)
                },
                "id",
            ),
            (SessionRow { id: &[], ..row(&h) }, "id"),
            (
                SessionRow {
                    user_id: String::new(),
                    ..row(&h)
                },
                "user_id",
            ),
            (
                SessionRow {
                    user_id: "a\nb".into(),
                    ..row(&h)
                },
                "user_id",
            ),
            (
                SessionRow {
                    handle: "",
                    ..row(&h)
                },
                "handle",
            ),
            (
                SessionRow {
                    handle: "not a handle!",
                    ..row(&h)
                },
                "handle",
            ),
            (
                SessionRow {
                    auth_method: String::new(),
                    ..row(&h)
                },
                "auth_method",
            ),
            (
                SessionRow {
                    ip: Some(IpColumn::Text("")),
                    ..row(&h)
                },
                "ip",
            ),
            (
                SessionRow {
                    ip: Some(IpColumn::Text("192.0.2.256")),
                    ..row(&h)
                },
                "ip",
            ),
            (
                SessionRow {
                    ip: Some(IpColumn::Text("192.0.2.1/32")),
                    ..row(&h)
                },
                "ip",
            ),
            (
                SessionRow {
                    csrf_secret: &short,
                    ..row(&h)
                },
                "csrf_secret",
            ),
            (
                SessionRow {
                    data: "",
                    ..row(&h)
                },
                "data",
            ),
            (
                SessionRow {
                    data: "[1, 2]",
                    ..row(&h)
                },
                "data",
            ),
            (
                SessionRow {
                    data: "{",
                    ..row(&h)
                },
                "data",
            ),
        ];
        for (bad_row, column) in cases {
            let shown = format!("{bad_row:?}");
            assert_eq!(refused_column(bad_row), Some(column), "{shown}");
        }
    }

    #[test]
    fn the_error_names_the_store_and_the_column() {
        let h = handle();
        let err = SessionRow {
            version: -5,
            ..row(&h)
        }
        .decode("sqlite")
        .expect_err("negative version");
        assert_eq!(err.store(), "sqlite");
        let source = std::error::Error::source(&err).expect("source");
        assert!(
            source.to_string().starts_with("column version: "),
            "{source}"
        );
    }
}
