//! Outgoing mail: the address type, the durable outbox's store contract, and the retry policy.
//!
//! Cloakroom sends little mail, but what it sends matters: a password-reset link is the way back
//! into an account. So a message is never sent from inside the request that asked for it. The
//! request *enqueues* it in the [`MailOutbox`] — a table in the same store as the accounts, so
//! "reset requested" and "mail queued" are durable together — and a sender task delivers it,
//! retrying with exponential backoff ([`RetryPolicy`]) and recording failures. A crash between
//! the two loses nothing: the message is still in the table when the process comes back.
//!
//! Delivery is *at least once*. A sender that crashes after the SMTP server accepted a message
//! but before recording it will send it again once its lease runs out; nothing can close that
//! window, because SMTP has no two-phase commit. Every other path (two senders, two instances,
//! a sender whose lease ran out while it was still talking) delivers once: claims are
//! exclusive, and a stale sender's report is refused ([`MailOutbox::mark_sent`]).
//!
//! Core does no SMTP and renders no templates; the server does both.

mod address;
mod outbox;
mod row;

pub use address::{EmailAddress, InvalidEmailAddress, MAX_EMAIL_LEN};
pub use outbox::{
    ClaimedMail, InvalidMail, MAX_BODY_LEN, MAX_SUBJECT_LEN, MailId, MailOutbox, MailRecord,
    MailState, OutgoingMail, RetryPolicy,
};
pub use row::MailRow;
