//! Human descriptions of sessions: "Firefox on Android", "5 minutes ago".
//!
//! The device label is a convenience for "Your devices", never a security decision (a user
//! agent is whatever the client says), so a small ordered set of rules is enough.

use cloakroom_core::Timestamp;

/// "Browser on OS" from a user agent, or "Unknown device".
/// A session's device as "Your devices" names it: a native app's own name for it ("Pixel 8,
/// app"), else what its user agent says.
pub(crate) fn session_label(s: &cloakroom_core::Session) -> String {
    match s
        .data
        .get::<String>(crate::accounts::session_keys::DEVICE_NAME)
    {
        Ok(Some(name)) if s.is_bearer() => format!("{name} (app)"),
        _ => label(s.user_agent.as_deref()),
    }
}

pub(crate) fn label(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|ua| !ua.trim().is_empty()) else {
        return "Unknown device".to_owned();
    };
    // Order matters: most browsers claim to be several others ("Chrome … Safari", "Edg …
    // Chrome"), so the most specific token wins.
    let browser = [
        ("Edg/", "Edge"),
        ("EdgA/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(token, _)| ua.contains(token))
    .map(|(_, name)| *name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("CrOS", "ChromeOS"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(token, _)| ua.contains(token))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => format!("Browser on {o}"),
        (None, None) => "Unknown device".to_owned(),
    }
}

/// "just now", "5 minutes ago", "3 hours ago", "2 days ago".
pub(crate) fn relative(then: Timestamp, now: Timestamp) -> String {
    let d = now.duration_since(then);
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match d.as_secs() {
        0..60 => "just now".to_owned(),
        s @ 60..3600 => plural(s / 60, "minute"),
        s @ 3600..86_400 => plural(s / 3600, "hour"),
        s => plural(s / 86_400, "day"),
    }
}

/// RFC 3339 UTC, to the second: `2026-11-26T22:30:00Z`.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(t.as_unix_secs())
        .ok()
        .and_then(|dt| dt.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn labels() {
        let cases = [
            (
                "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0",
                "Firefox on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
                "Safari on macOS",
            ),
            ("curl/8.5.0", "curl"),
            ("", "Unknown device"),
            ("something odd", "Unknown device"),
        ];
        for (ua, want) in cases {
            assert_eq!(label(Some(ua)), want, "{ua}");
        }
        assert_eq!(label(None), "Unknown device");
    }

    #[test]
    fn relative_times() {
        let now = Timestamp::from_unix_millis(10_000_000_000);
        let ago = |s: u64| relative(now.saturating_sub(Duration::from_secs(s)), now);
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(5 * 60 + 30), "5 minutes ago");
        assert_eq!(ago(3 * 3600), "3 hours ago");
        assert_eq!(ago(2 * 86_400), "2 days ago");
        assert_eq!(
            relative(now.saturating_add(Duration::from_secs(9)), now),
            "just now"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(1_700_000_000_999)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(crate::accounts::ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(crate::accounts::ceil_secs(Duration::from_secs(3)), 3);
    }
}
