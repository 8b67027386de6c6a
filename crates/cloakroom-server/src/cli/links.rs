//! `cloakroom links create`: a download link made by an operator, on a user's behalf — the
//! same link `POST /api/links` makes, for a user who cannot ask for it themselves (a script
//! mailing a report, a support case).
//!
//! The link lets its holder in as `--user`, so it is bound to that user like any other: it
//! dies with the user's "log out everywhere", a password change, or the account being
//! disabled. That is also why the user must be named: a link with nobody's identity would be
//! a way past Cloakroom, not a share of someone's access.

use std::time::Duration;

use cloakroom_core::{SessionManager, SystemClock};

use super::admin::{AdminError, account_named, fail, open_links};
use crate::config::Settings;
use crate::state::Stores;
use crate::tokens::download;
use crate::web::device::rfc3339;

/// What `links create` was asked for.
#[derive(Debug)]
pub struct NewLink<'a> {
    /// The exact URL.
    pub url: &'a str,
    /// How long it works.
    pub ttl: Duration,
    /// Whether the first fetch uses it up.
    pub single_use: bool,
    /// The username whose identity the app sees.
    pub user: &'a str,
}

/// Makes the link and says it: the URL on the first line (for scripts: `| head -1`), then
/// when it expires.
pub async fn create(
    stores: &Stores,
    settings: &Settings,
    link: &NewLink<'_>,
) -> Result<String, AdminError> {
    let account = account_named(stores.accounts.as_ref(), link.user).await?;
    if account.disabled {
        return Err(fail(format!(
            "{} is disabled: a link would be refused at once",
            account.username
        )));
    }
    let sessions = SessionManager::from_arc(stores.sessions.clone()).with_clock(SystemClock);
    let now = sessions.now();
    // The server's own keys.
    let links = open_links(settings, stores, now)?;
    let made = download::create(
        &links,
        &sessions,
        &settings.app_origins,
        &account.id,
        link.url,
        link.ttl,
        link.single_use,
        now,
    )
    .await
    .map_err(fail)?;
    crate::metrics::download_link("created");
    let expires_at = rfc3339(made.expires_at);
    crate::events::link_created(
        account.username.as_str(),
        "admin",
        &made.id.to_string(),
        link.single_use,
        &expires_at,
    );
    let uses = if link.single_use {
        "once"
    } else {
        "any number of times"
    };
    Ok(format!(
        "{}\nopens {} as {}, {uses}, until {expires_at}\n",
        made.url, link.url, account.username
    ))
}

/// A link's lifetime as `--ttl` takes it: seconds (`600`), or a number with `s`, `m` or `h`
/// (`90s`, `10m`, `1h`); 1 second to 1 hour.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 600, 90s, 10m or 1h"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(|| format!("{text:?} is not a duration such as 600, 90s, 10m or 1h"))?;
    let ttl = Duration::from_secs(secs);
    if ttl.is_zero() || ttl > download::MAX_TTL {
        return Err(format!("{text:?}: a link lives 1 second to 1 hour"));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_as_people_write_them() {
        for (text, secs) in [("600", 600), ("90s", 90), ("10m", 600), ("1h", 3600)] {
            assert_eq!(parse_ttl(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        for bad in [
            "", "0", "0m", "61m", "2h", "10 m", "10min", "-5", "1.5h", "m",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
