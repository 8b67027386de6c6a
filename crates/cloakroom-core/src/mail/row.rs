//! [`MailRow`]: the one decoder the SQL outboxes share, so SQLite and PostgreSQL refuse the same
//! corrupt rows the same way (as [`SessionRow`](crate::store::SessionRow) does for sessions).

use crate::clock::Timestamp;
use crate::store::StoreError;

use super::{ClaimedMail, EmailAddress, MailId, MailRecord, MailState, OutgoingMail};

/// An outbox row's columns as a SQL driver reads them. [`decode_record`](Self::decode_record)
/// needs every column but the bodies; [`decode_claim`](Self::decode_claim) needs the bodies
/// and no state, timing or error columns (pass their defaults).
#[derive(Debug, Default)]
pub struct MailRow {
    /// `id`.
    pub id: i64,
    /// `kind`.
    pub kind: String,
    /// `recipient`.
    pub recipient: String,
    /// `subject`.
    pub subject: String,
    /// `state`.
    pub state: String,
    /// `attempts`.
    pub attempts: i64,
    /// `created_at`, milliseconds.
    pub created_at: i64,
    /// `next_attempt_at`, milliseconds.
    pub next_attempt_at: i64,
    /// `finished_at`, milliseconds.
    pub finished_at: Option<i64>,
    /// `last_error`.
    pub last_error: Option<String>,
    /// `text_body`.
    pub text: Option<String>,
    /// `html_body`.
    pub html: Option<String>,
}

impl MailRow {
    /// The inspection view of the row.
    pub fn decode_record(self, store: &'static str) -> Result<MailRecord, StoreError> {
        let corrupt = |what: &str| corrupt(store, self.id, what);
        let state = MailState::from_name(&self.state).ok_or_else(|| corrupt("state"))?;
        Ok(MailRecord {
            id: MailId::new(self.id),
            to: EmailAddress::parse(&self.recipient).map_err(|_| corrupt("recipient"))?,
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt("attempts"))?,
            created_at: Timestamp::from_unix_millis(self.created_at),
            next_attempt_at: (state == MailState::Pending)
                .then(|| Timestamp::from_unix_millis(self.next_attempt_at)),
            finished_at: self.finished_at.map(Timestamp::from_unix_millis),
            state,
            kind: self.kind,
            subject: self.subject,
            last_error: self.last_error,
        })
    }

    /// The row as a claimed message: `attempts` is the attempt just begun.
    pub fn decode_claim(self, store: &'static str) -> Result<ClaimedMail, StoreError> {
        let corrupt = |what: &str| corrupt(store, self.id, what);
        let to = EmailAddress::parse(&self.recipient).map_err(|_| corrupt("recipient"))?;
        let text = self.text.ok_or_else(|| corrupt("text_body"))?;
        let mail = OutgoingMail::new(&self.kind, to, &self.subject, text, self.html)
            .map_err(|e| corrupt(&e.to_string()))?;
        Ok(ClaimedMail {
            id: MailId::new(self.id),
            attempt: u32::try_from(self.attempts).map_err(|_| corrupt("attempts"))?,
            created_at: Timestamp::from_unix_millis(self.created_at),
            mail,
        })
    }
}

fn corrupt(store: &'static str, id: i64, what: &str) -> StoreError {
    StoreError::Corrupt {
        store,
        source: format!("mail_outbox row {id}: {what}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> MailRow {
        MailRow {
            id: 7,
            kind: "test".into(),
            recipient: "a@example.com".into(),
            subject: "Hello".into(),
            state: "pending".into(),
            attempts: 1,
            created_at: 1_000,
            next_attempt_at: 2_000,
            text: Some("body".into()),
            ..MailRow::default()
        }
    }

    #[test]
    fn rows_decode_and_corrupt_ones_are_named() {
        let r = row().decode_record("t").unwrap();
        assert_eq!(
            (r.state, r.next_attempt_at),
            (MailState::Pending, Some(Timestamp::from_unix_millis(2_000)))
        );
        assert_eq!(row().decode_claim("t").unwrap().attempt, 1);
        for (broken, column) in [
            (
                MailRow {
                    state: "queued".into(),
                    ..row()
                },
                "state",
            ),
            (
                MailRow {
                    recipient: "nobody".into(),
                    ..row()
                },
                "recipient",
            ),
            (
                MailRow {
                    attempts: -1,
                    ..row()
                },
                "attempts",
            ),
        ] {
            let e = broken.decode_record("t").unwrap_err();
            assert!(
                std::error::Error::source(&e)
                    .unwrap()
                    .to_string()
                    .contains(column),
                "{column}"
            );
        }
        let e = MailRow {
            text: None,
            ..row()
        }
        .decode_claim("t")
        .unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { store: "t", .. }));
    }
}
