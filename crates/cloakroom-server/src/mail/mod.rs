//! Mail: what the server sends, and how it gets there without a request ever waiting for SMTP.
//!
//! A flow (password reset, email verification, a change-of-address notice) calls
//! [`Mailer::enqueue`] with a [`Mail`]. That renders the templates and writes the message to
//! the durable outbox in the account store (`cloakroom_core::mail::MailOutbox`), and returns:
//! the HTTP request is done. The sender task (`sender.rs`, started by [`Server`](crate::Server))
//! delivers from the outbox — one message at a time under a lease, retrying transient failures
//! with exponential backoff, recording permanent ones — and stops cleanly on shutdown. A crash
//! between "reset requested" and "mail sent" loses nothing: the message is still in the table
//! when a server comes back, on this instance or another.
//!
//! With no `smtp_url`, the sender's transport is the log: every message, links included, is
//! written at WARN, and start-up says so loudly. That is how a developer on the embedded
//! default resets a password; it is never right in production.
//!
//! * `smtp.rs` — the `smtp_url` setting ([`SmtpUrl`]) and the transports.
//! * `templates.rs` — built-in askama templates and the operator's overrides.
//! * `sender.rs` — the delivery loop.

mod sender;
mod smtp;
mod templates;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::mail::{
    EmailAddress, InvalidMail, MailId, MailOutbox, OutgoingMail, RetryPolicy,
};
use cloakroom_core::origin::Origin;
use cloakroom_core::{Clock, StoreError};
use tokio::sync::{Notify, watch};

pub use smtp::{SmtpSecurity, SmtpUrl};
pub use templates::{RenderError, TemplateError};

pub(crate) use sender::{POLL, Sender};
use smtp::Transport;
use templates::{Kind, Templates, Vars};

/// The name mail calls the product by.
const PRODUCT: &str = "Cloakroom";

/// Checked mail settings.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Where mail goes; `None`: the log.
    pub smtp: Option<SmtpUrl>,
    /// The `From` of every message.
    pub from: lettre::message::Mailbox,
    /// How long each SMTP command may take.
    pub timeout: Duration,
    /// When failed deliveries are tried again, and how often.
    pub retry: RetryPolicy,
    /// The operator's templates, if any.
    pub templates_dir: Option<PathBuf>,
}

/// A message the server sends. Each variant is one pair of templates (`templates/mail/`).
#[derive(Clone)]
#[non_exhaustive]
pub enum Mail {
    /// "Reset your password", with the link (`<public_url>/password-reset?token=…`).
    PasswordReset {
        /// A verified address of the account.
        to: EmailAddress,
        /// The account's username.
        username: String,
        /// The reset link. A bearer secret: [`Mail`]'s `Debug` never shows it.
        link: String,
        /// How long the link works.
        expires_in: Duration,
    },
    /// "Confirm your address", with the link (`<public_url>/verify-email?token=…`), to the
    /// address being verified.
    VerifyEmail {
        /// The address to verify.
        to: EmailAddress,
        /// The account's username.
        username: String,
        /// The verification link (a bearer secret).
        link: String,
        /// How long the link works.
        expires_in: Duration,
    },
    /// "Your address is changing", to the old address.
    EmailChanged {
        /// The old address.
        to: EmailAddress,
        /// The account's username.
        username: String,
        /// The address it changes to.
        new_address: EmailAddress,
    },
    /// "Your password was changed".
    PasswordChanged {
        /// The account's verified address.
        to: EmailAddress,
        /// The account's username.
        username: String,
    },
    /// "A sign-in method was connected to your account", to its verified address.
    IdentityConnected {
        /// The account's verified address.
        to: EmailAddress,
        /// The account's username.
        username: String,
        /// What the pages call the provider.
        provider: String,
    },
    /// "The second factors of your account changed", to its verified address: a factor was
    /// added or removed, or new recovery codes were made.
    FactorChanged {
        /// The account's verified address.
        to: EmailAddress,
        /// The account's username.
        username: String,
        /// What changed, as a sentence ("A passkey was added.").
        change: String,
    },
    /// `cloakroom mail test ADDRESS`.
    Test {
        /// Where to send it.
        to: EmailAddress,
    },
}

impl Mail {
    fn kind(&self) -> Kind {
        match self {
            Self::PasswordReset { .. } => Kind::PasswordReset,
            Self::VerifyEmail { .. } => Kind::VerifyEmail,
            Self::EmailChanged { .. } => Kind::EmailChanged,
            Self::PasswordChanged { .. } => Kind::PasswordChanged,
            Self::IdentityConnected { .. } => Kind::IdentityConnected,
            Self::FactorChanged { .. } => Kind::FactorChanged,
            Self::Test { .. } => Kind::Test,
        }
    }

    fn to(&self) -> &EmailAddress {
        match self {
            Self::PasswordReset { to, .. }
            | Self::VerifyEmail { to, .. }
            | Self::EmailChanged { to, .. }
            | Self::PasswordChanged { to, .. }
            | Self::IdentityConnected { to, .. }
            | Self::FactorChanged { to, .. }
            | Self::Test { to } => to,
        }
    }
}

impl fmt::Debug for Mail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No link: a reset link in a debug log is a reset link for whoever reads the log.
        write!(f, "Mail::{}(to {})", self.kind().name(), self.to())
    }
}

/// Why mail could not be enqueued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// A template rendered into something the outbox refuses (an empty subject, say).
    #[error("the {kind} mail template rendered an unusable message")]
    Invalid {
        /// The message kind.
        kind: &'static str,
        /// What was wrong.
        #[source]
        source: InvalidMail,
    },
    /// A built-in template failed to render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The outbox could not store the message.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why mail could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailSetupError {
    /// An override template is unusable.
    #[error(transparent)]
    Templates(#[from] TemplateError),
    /// The SMTP transport could not be built (its TLS settings).
    #[error("smtp_url: {0}")]
    Transport(#[source] lettre::transport::smtp::Error),
}

/// Enqueues mail, and makes the sender that delivers it. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    outbox: Arc<dyn MailOutbox>,
    templates: Templates,
    transport: Transport,
    retry: RetryPolicy,
    deadline: Duration,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    public_url: String,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("outbox", &self.inner.outbox)
            .field("transport", &self.inner.transport)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Loads and checks the templates and builds the transport `settings` name, over
    /// `outbox`. Fails on any unusable template file, so a mistake shows at start-up.
    pub fn open(
        settings: &MailSettings,
        outbox: Arc<dyn MailOutbox>,
        clock: Arc<dyn Clock>,
        public: &Origin,
    ) -> Result<Self, MailSetupError> {
        let templates = match &settings.templates_dir {
            Some(dir) => Templates::load(dir)?,
            None => Templates::builtin(),
        };
        let transport = match &settings.smtp {
            Some(url) => Transport::Smtp(Box::new(smtp::Smtp {
                mailer: url
                    .transport(settings.timeout)
                    .map_err(MailSetupError::Transport)?,
                from: settings.from.clone(),
                url: url.clone(),
            })),
            None => Transport::Log,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                outbox,
                templates,
                transport,
                retry: settings.retry,
                // An attempt is a handful of SMTP commands, each bounded by the timeout.
                deadline: settings.timeout * 4,
                clock,
                wake: Arc::new(Notify::new()),
                public_url: public.as_str().to_owned(),
            }),
        })
    }

    /// Renders `mail` and puts it in the outbox; the sender delivers it shortly. Returns
    /// once the message is durable — never waits for SMTP.
    pub async fn enqueue(&self, mail: Mail) -> Result<MailId, MailError> {
        let kind = mail.kind();
        let expires;
        let mut vars = Vars {
            product: PRODUCT,
            public_url: &self.inner.public_url,
            to: mail.to().as_str(),
            ..Vars::default()
        };
        match &mail {
            Mail::PasswordReset {
                username,
                link,
                expires_in,
                ..
            }
            | Mail::VerifyEmail {
                username,
                link,
                expires_in,
                ..
            } => {
                expires = human_duration(*expires_in);
                vars.username = username;
                vars.link = link;
                vars.expires_in = &expires;
            }
            Mail::EmailChanged {
                username,
                new_address,
                ..
            } => {
                vars.username = username;
                vars.new_address = new_address.as_str();
            }
            Mail::PasswordChanged { username, .. } => vars.username = username,
            Mail::IdentityConnected {
                username, provider, ..
            } => {
                vars.username = username;
                vars.provider = provider;
            }
            Mail::FactorChanged {
                username, change, ..
            } => {
                vars.username = username;
                vars.change = change;
            }
            Mail::Test { .. } => {}
        }
        let rendered = self.inner.templates.render(kind, &vars)?;
        let outgoing = OutgoingMail::new(
            kind.name(),
            mail.to().clone(),
            &rendered.subject,
            rendered.text,
            rendered.html,
        )
        .map_err(|source| MailError::Invalid {
            kind: kind.name(),
            source,
        })?;
        let id = self
            .inner
            .outbox
            .enqueue(&outgoing, self.inner.clock.now())
            .await?;
        self.wake();
        Ok(id)
    }

    /// Asks this process's sender to look at the outbox now rather than at its next poll.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The outbox, for inspection.
    pub fn outbox(&self) -> &Arc<dyn MailOutbox> {
        &self.inner.outbox
    }

    /// Where mail goes, for people: the SMTP URL without its password, or `None` for the log.
    pub fn destination(&self) -> Option<String> {
        match &self.inner.transport {
            Transport::Smtp(smtp) => Some(smtp.url.redacted()),
            Transport::Log => None,
        }
    }

    /// A sender for this mailer's outbox and transport, woken by its [`enqueue`](Self::enqueue).
    pub(crate) fn sender(&self) -> Sender {
        let i = &self.inner;
        Sender {
            outbox: i.outbox.clone(),
            transport: i.transport.clone(),
            policy: i.retry,
            clock: i.clock.clone(),
            wake: i.wake.clone(),
            deadline: i.deadline,
        }
    }

    /// Starts the sender task, announcing where mail goes — loudly when it goes nowhere.
    pub(crate) fn start(&self, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        match &self.inner.transport {
            Transport::Log => tracing::warn!(
                "MAIL IS NOT SENT: smtp_url is not set, so every message (password-reset and \
                 verification links included) is written to this log at WARN level instead. \
                 Fine for trying Cloakroom out; set smtp_url and mail_from before anyone else \
                 relies on this server."
            ),
            Transport::Smtp(smtp) => {
                if let Some(warning) = smtp.url.warning() {
                    tracing::warn!("{warning}");
                }
                let url = smtp.url.redacted();
                tracing::info!(smtp = %url, from = %smtp.from, "mail goes out through {url}");
            }
        }
        let overridden = self.inner.templates.overridden();
        if !overridden.is_empty() {
            tracing::info!(templates = ?overridden, "mail templates overridden from mail_templates_dir");
        }
        tokio::spawn(self.sender().run(stop))
    }
}

/// "30 minutes", "24 hours", "1 hour", "90 seconds".
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s.is_multiple_of(3600) && s >= 3600 {
        (s / 3600, "hour")
    } else if s.is_multiple_of(60) && s >= 60 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        for (secs, text) in [
            (1800, "30 minutes"),
            (86_400, "24 hours"),
            (3600, "1 hour"),
            (60, "1 minute"),
            (90, "90 seconds"),
            (1, "1 second"),
        ] {
            assert_eq!(human_duration(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn debug_never_shows_a_link() {
        let m = Mail::PasswordReset {
            to: EmailAddress::parse("a@example.com").unwrap(),
            username: "alice".into(),
            link: "https://x/password-reset?token=SECRET".into(),
            expires_in: Duration::from_secs(1800),
        };
        let shown = format!("{m:?}");
        assert_eq!(shown, "Mail::password_reset(to a@example.com)");
    }
}
