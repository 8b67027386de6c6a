//! Where mail goes: the `smtp_url` setting, and the transports that deliver a claimed message
//! (SMTP through lettre, or the log when no SMTP server is configured).
//!
//! Three URL schemes, each meaning one thing, so that an `smtp_url` alone says whether the
//! link in a reset mail crosses the network in clear text:
//!
//! | scheme | connection | default port |
//! | --- | --- | --- |
//! | `smtps://` | TLS from the first byte (RFC 8314 implicit TLS) | 465 |
//! | `smtp+starttls://` | plain, then STARTTLS — required: a server that does not offer it is an error, never a silent downgrade | 587 |
//! | `smtp://` | no TLS at all: a relay on this machine (or a test sink) | 25 |
//!
//! Certificates are checked against Mozilla's roots (`webpki-roots`). `smtp://` to a host
//! other than loopback works but is warned about at start-up, and refused outright when the
//! URL carries a password (it would cross the network in clear text). User name and password
//! are percent-decoded; the password is never logged or shown (`Debug` and [`SmtpUrl::redacted`]
//! replace it).

use std::fmt;
use std::time::Duration;

use cloakroom_core::mail::ClaimedMail;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the start.
    Tls,
    /// `smtp+starttls://`: STARTTLS, required.
    StartTls,
    /// `smtp://`: none.
    None,
}

/// A parsed `smtp_url`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    security: SmtpSecurity,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

impl SmtpUrl {
    /// Parses `smtps://[user[:password]@]host[:port]`, `smtp+starttls://…` or `smtp://…`.
    /// Errors never repeat the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| {
            format!("is not a URL ({e}); expected smtps://, smtp+starttls:// or smtp://")
        })?;
        let (security, default_port) = match url.scheme() {
            "smtps" => (SmtpSecurity::Tls, 465),
            "smtp+starttls" => (SmtpSecurity::StartTls, 587),
            "smtp" => (SmtpSecurity::None, 25),
            other => {
                return Err(format!(
                    "has scheme {other:?}; expected smtps:// (TLS), smtp+starttls:// (STARTTLS) or smtp:// (no TLS)"
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err("has no host".into()),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(
                "must be scheme://[user:password@]host[:port], with no path or query".into(),
            );
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "has a user name or password that is not UTF-8".to_owned())
        };
        let user = (!url.username().is_empty())
            .then(|| decode(url.username()))
            .transpose()?;
        let password = url.password().map(decode).transpose()?;
        if password.is_some() && user.is_none() {
            return Err("has a password but no user name".into());
        }
        let parsed = Self {
            security,
            port: url.port().unwrap_or(default_port),
            host,
            user,
            password,
        };
        if parsed.security == SmtpSecurity::None
            && parsed.password.is_some()
            && !parsed.is_loopback()
        {
            return Err(format!(
                "would send its password to {} in clear text; use smtps:// or smtp+starttls://",
                parsed.host
            ));
        }
        Ok(parsed)
    }

    /// The URL with the password replaced, for logs.
    pub fn redacted(&self) -> String {
        let scheme = match self.security {
            SmtpSecurity::Tls => "smtps",
            SmtpSecurity::StartTls => "smtp+starttls",
            SmtpSecurity::None => "smtp",
        };
        let who = match (&self.user, &self.password) {
            (Some(u), Some(_)) => format!("{u}:[redacted]@"),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{who}{host}:{}", self.port)
    }

    /// How the connection is protected.
    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// A reason to warn at start-up, if any: mail in clear text across a network.
    pub fn warning(&self) -> Option<String> {
        (self.security == SmtpSecurity::None && !self.is_loopback()).then(|| {
            format!(
                "smtp_url sends mail to {} without TLS: reset and verification links cross the network in clear text; use smtps:// or smtp+starttls:// unless that network is private",
                self.host
            )
        })
    }

    fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The lettre transport, each SMTP command bounded by `timeout`.
    pub(crate) fn transport(
        &self,
        timeout: Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
        type T = AsyncSmtpTransport<Tokio1Executor>;
        let builder = match self.security {
            SmtpSecurity::Tls => T::relay(&self.host)?,
            SmtpSecurity::StartTls => T::starttls_relay(&self.host)?,
            SmtpSecurity::None => T::builder_dangerous(&self.host),
        };
        let mut builder = builder.port(self.port).timeout(Some(timeout));
        if let Some(user) = &self.user {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                self.password.clone().unwrap_or_default(),
            ));
        }
        Ok(builder.build())
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpUrl({})", self.redacted())
    }
}

/// Why a delivery attempt failed.
#[derive(Debug)]
pub(crate) struct DeliveryError {
    /// The SMTP server refused for good (a 5xx): trying again cannot help.
    pub(crate) permanent: bool,
    /// What happened, for the outbox and the log (never holds the message or a password).
    pub(crate) reason: String,
}

/// Where claimed messages go.
#[derive(Clone)]
pub(crate) enum Transport {
    /// An SMTP server.
    Smtp(Box<Smtp>),
    /// No SMTP server: the log, at WARN, links and all (a developer's machine).
    Log,
}

/// An SMTP server and the sender mail comes from.
#[derive(Clone)]
pub(crate) struct Smtp {
    pub(crate) mailer: AsyncSmtpTransport<Tokio1Executor>,
    pub(crate) from: Mailbox,
    pub(crate) url: SmtpUrl,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Smtp(s) => write!(f, "Transport::Smtp({:?}, from {})", s.url, s.from),
            Self::Log => f.write_str("Transport::Log"),
        }
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders and mailing lists leave
/// an automatic message alone instead of answering it.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

impl Transport {
    /// Delivers one claimed message.
    pub(crate) async fn deliver(&self, claimed: &ClaimedMail) -> Result<(), DeliveryError> {
        let mail = &claimed.mail;
        match self {
            Self::Log => {
                // The one place a link is logged, on purpose: without SMTP, this is how a
                // developer on the embedded default resets a password.
                tracing::warn!(
                    mail_id = %claimed.id,
                    kind = mail.kind(),
                    to = %mail.to(),
                    subject = mail.subject(),
                    "mail NOT sent (no smtp_url); its text follows:\n{}",
                    mail.text()
                );
                Ok(())
            }
            Self::Smtp(smtp) => {
                let message = build(claimed, &smtp.from).map_err(|reason| DeliveryError {
                    permanent: true,
                    reason,
                })?;
                smtp.mailer
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| DeliveryError {
                        permanent: e.is_permanent(),
                        reason: e.to_string(),
                    })
            }
        }
    }
}

/// The message as it goes on the wire: From the configured sender, a Message-ID that stays the
/// same across retries (so a receiver that saw an earlier attempt can tell it is one message),
/// text and HTML as `multipart/alternative`, or text alone.
fn build(claimed: &ClaimedMail, from: &Mailbox) -> Result<Message, String> {
    let mail = &claimed.mail;
    let to: lettre::Address = mail
        .to()
        .as_str()
        .parse()
        .map_err(|e| format!("recipient: {e}"))?;
    let message_id = format!(
        "<cloakroom.{}.{}@{}>",
        claimed.id,
        claimed.created_at.as_unix_millis(),
        from.email.domain()
    );
    let builder = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(mail.subject())
        .message_id(Some(message_id))
        .header(AutoSubmitted);
    match mail.html() {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            mail.text().to_owned(),
            html.to_owned(),
        )),
        None => builder
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text().to_owned()),
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_means_one_thing_and_passwords_never_show() {
        let u = SmtpUrl::parse("smtps://mailer:p%40ss%3Aword@mail.example.com").unwrap();
        assert_eq!(
            (
                u.security(),
                u.port,
                u.user.as_deref(),
                u.password.as_deref()
            ),
            (SmtpSecurity::Tls, 465, Some("mailer"), Some("p@ss:word"))
        );
        assert_eq!(
            u.redacted(),
            "smtps://mailer:[redacted]@mail.example.com:465"
        );
        assert!(!format!("{u:?}").contains("p@ss"));
        assert!(u.warning().is_none());
        let u = SmtpUrl::parse("smtp+starttls://relay.example.com:2587").unwrap();
        assert_eq!((u.security(), u.port), (SmtpSecurity::StartTls, 2587));
        let u = SmtpUrl::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((u.security(), u.port), (SmtpSecurity::None, 2525));
        assert!(u.warning().is_none(), "loopback");
        assert_eq!(u.redacted(), "smtp://127.0.0.1:2525");
        let u = SmtpUrl::parse("smtp://mailrelay.internal").unwrap();
        assert!(u.warning().unwrap().contains("clear text"));
        assert_eq!(
            SmtpUrl::parse("smtp://[::1]:25").unwrap().redacted(),
            "smtp://[::1]:25"
        );
        assert!(
            SmtpUrl::parse("smtp://u:p@localhost").is_ok(),
            "a local relay may take a password"
        );
    }

    #[test]
    fn unusable_urls_are_refused_without_echoing_them() {
        for (url, expected) in [
            ("mail.example.com", "is not a URL"),
            ("http://mail.example.com", "expected smtps://"),
            ("smtps://", "no host"),
            ("smtps://mail.example.com/x", "no path"),
            ("smtps://mail.example.com?tls=none", "no path or query"),
            ("smtps://:secret@mail.example.com", "no user name"),
            ("smtp://u:secret@mail.example.com", "clear text"),
        ] {
            let err = SmtpUrl::parse(url).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
