//! Times as a person reads them: "today at 09:12 UTC", "tomorrow at 10:30 UTC", "on 3 December
//! at 10:30 UTC" — never an ISO timestamp on a page (a `<time datetime>` attribute keeps that,
//! for machines).
//!
//! The pages run no script for this (the one they load is for passkeys), so the browser's time
//! zone is unknown to the server: every time is given in UTC and says so, and "today" and
//! "tomorrow" are UTC days. What the reader's `Accept-Language` does tell is the conventions
//! they expect — a 12- or 24-hour clock, the day before the month or after it — so those
//! follow it, while the words stay English like the rest of the pages. No locale database:
//! a short list of regions covers the conventions that differ from the default.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use cloakroom_core::Timestamp;
use time::{Month, OffsetDateTime};

/// How the reader writes times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    /// "9:12 AM" rather than "09:12".
    twelve_hour: bool,
    /// "December 3" rather than "3 December".
    month_first: bool,
}

impl Style {
    /// 24-hour clock, day before month: what most of the world reads without a second
    /// thought, and the choice when the browser says nothing.
    pub(crate) const INTERNATIONAL: Self = Self {
        twelve_hour: false,
        month_first: false,
    };

    /// The conventions of the reader's preferred language (the `Accept-Language` entry with
    /// the highest weight; the first of equals).
    pub(crate) fn from_accept_language(header: Option<&str>) -> Self {
        let Some(tag) = header.and_then(preferred_tag) else {
            return Self::INTERNATIONAL;
        };
        let mut subtags = tag.split(['-', '_']);
        let language = subtags.next().unwrap_or_default().to_ascii_lowercase();
        // The region is the first two-letter (or three-digit) subtag after the language; a
        // four-letter script (`zh-Hant-TW`) comes before it.
        let region = subtags
            .find(|s| s.len() == 2 || (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit())))
            .map(str::to_ascii_uppercase);
        let english = language == "en";
        match region.as_deref() {
            // English with no region: most likely American English.
            None => Self {
                twelve_hour: english,
                month_first: english,
            },
            Some(region) => Self {
                twelve_hour: TWELVE_HOUR_REGIONS.contains(&region) || (english && region == "CA"),
                month_first: MONTH_FIRST_REGIONS.contains(&region) || (english && region == "CA"),
            },
        }
    }
}

/// Regions where a 12-hour clock is the everyday way of writing a time.
const TWELVE_HOUR_REGIONS: [&str; 11] = [
    "US", "AU", "NZ", "IN", "PH", "PK", "BD", "EG", "SA", "MY", "KR",
];

/// Regions that put the month before the day.
const MONTH_FIRST_REGIONS: [&str; 5] = ["US", "PH", "FM", "MH", "PW"];

/// The language tag with the highest `q` in an `Accept-Language` value.
fn preferred_tag(header: &str) -> Option<&str> {
    let mut best: Option<(&str, u16)> = None;
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        if tag.is_empty() || tag == "*" || tag.len() > 35 {
            continue;
        }
        let weight = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(1000, quality);
        if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
            best = Some((tag, weight));
        }
    }
    best.map(|(tag, _)| tag)
}

/// A `q` value in thousandths (RFC 9110 §12.4.2); anything malformed counts as 0.
fn quality(text: &str) -> u16 {
    let mut parts = text.trim().splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next().unwrap_or_default();
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().unwrap_or(0);
    match whole {
        "1" if thousandths == 0 => 1000,
        "0" => thousandths,
        _ => 0,
    }
}

/// The reader's [`Style`], from the request's `Accept-Language`.
impl<S: Send + Sync> FromRequestParts<S> for Style {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        Ok(Self::from_accept_language(header))
    }
}

/// `t` as a person says it, seen from `now`: "today at 09:12 UTC", "yesterday at …",
/// "tomorrow at …", "on 3 December at …" in the same year, "on 3 December 2027 at …"
/// otherwise — in `style`.
pub(crate) fn at(t: Timestamp, now: Timestamp, style: Style) -> String {
    let (Some(t), Some(now)) = (utc(t), utc(now)) else {
        return "at an unknown time".to_owned();
    };
    let clock = clock_time(t, style);
    let days = (t.date() - now.date()).whole_days();
    match days {
        0 => format!("today at {clock} UTC"),
        1 => format!("tomorrow at {clock} UTC"),
        -1 => format!("yesterday at {clock} UTC"),
        _ => {
            let month = month_name(t.month());
            let day = t.day();
            let date = match (style.month_first, t.year() == now.year()) {
                (true, true) => format!("{month} {day}"),
                (true, false) => format!("{month} {day}, {}", t.year()),
                (false, true) => format!("{day} {month}"),
                (false, false) => format!("{day} {month} {}", t.year()),
            };
            format!("on {date} at {clock} UTC")
        }
    }
}

fn utc(t: Timestamp) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.as_unix_secs()).ok()
}

fn clock_time(t: OffsetDateTime, style: Style) -> String {
    let (hour, minute) = (t.hour(), t.minute());
    if style.twelve_hour {
        let suffix = if hour < 12 { "AM" } else { "PM" };
        let h = match hour % 12 {
            0 => 12,
            h => h,
        };
        format!("{h}:{minute:02} {suffix}")
    } else {
        format!("{hour:02}:{minute:02}")
    }
}

fn month_name(m: Month) -> &'static str {
    match m {
        Month::January => "January",
        Month::February => "February",
        Month::March => "March",
        Month::April => "April",
        Month::May => "May",
        Month::June => "June",
        Month::July => "July",
        Month::August => "August",
        Month::September => "September",
        Month::October => "October",
        Month::November => "November",
        Month::December => "December",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01 14:05:00 UTC, a Tuesday.
    const NOW: i64 = 1_796_133_900;

    fn ts(unix: i64) -> Timestamp {
        Timestamp::from_unix_millis(unix * 1000)
    }

    fn style(accept_language: &str) -> Style {
        Style::from_accept_language(Some(accept_language))
    }

    #[test]
    fn days_near_now_are_named() {
        let now = ts(NOW);
        let gb = style("en-GB");
        // 09:12 the same (UTC) day.
        assert_eq!(
            at(ts(NOW - 4 * 3600 - 53 * 60), now, gb),
            "today at 09:12 UTC"
        );
        // 10:30 the next day: a session's end.
        assert_eq!(
            at(ts(NOW + 20 * 3600 + 25 * 60), now, gb),
            "tomorrow at 10:30 UTC"
        );
        assert_eq!(at(ts(NOW - 24 * 3600), now, gb), "yesterday at 14:05 UTC");
        // Midnight is the next day, not today.
        assert_eq!(
            at(ts(NOW + 9 * 3600 + 55 * 60), now, gb),
            "tomorrow at 00:00 UTC"
        );
    }

    #[test]
    fn further_days_are_dates_with_the_year_only_when_it_differs() {
        let now = ts(NOW);
        let two_days_on = ts(NOW + 2 * 86_400 - 3 * 3600 - 35 * 60);
        assert_eq!(
            at(two_days_on, now, style("de-DE")),
            "on 3 December at 10:30 UTC"
        );
        assert_eq!(
            at(two_days_on, now, style("en-US")),
            "on December 3 at 10:30 AM UTC"
        );
        let next_year = ts(NOW + 90 * 86_400);
        assert_eq!(
            at(next_year, now, Style::INTERNATIONAL),
            "on 1 March 2027 at 14:05 UTC"
        );
        assert_eq!(
            at(next_year, now, style("en-US")),
            "on March 1, 2027 at 2:05 PM UTC"
        );
    }

    #[test]
    fn twelve_hour_clock_edges() {
        let now = ts(NOW);
        let us = style("en-US");
        let midnight = ts(NOW + 9 * 3600 + 55 * 60);
        assert_eq!(at(midnight, now, us), "tomorrow at 12:00 AM UTC");
        let noon = ts(NOW - 2 * 3600 - 5 * 60);
        assert_eq!(at(noon, now, us), "today at 12:00 PM UTC");
    }

    #[test]
    fn conventions_follow_the_preferred_language() {
        let us = Style {
            twelve_hour: true,
            month_first: true,
        };
        let au = Style {
            twelve_hour: true,
            month_first: false,
        };
        for (header, want) in [
            ("en-US,en;q=0.9", us),
            ("en", us),
            ("en-CA", us),
            ("en-GB,en;q=0.8", Style::INTERNATIONAL),
            ("fr-CA", Style::INTERNATIONAL),
            ("en-AU", au),
            ("de-DE,de;q=0.9,en;q=0.8", Style::INTERNATIONAL),
            ("fr", Style::INTERNATIONAL),
            // The highest weight wins, wherever it is in the list.
            ("de;q=0.5, en-US;q=0.9", us),
            ("en-US;q=0.1, de;q=0.2", Style::INTERNATIONAL),
            // A script subtag before the region.
            ("zh-Hant-TW", Style::INTERNATIONAL),
            ("es-419", Style::INTERNATIONAL),
            // Garbage and "anything" fall back.
            ("*", Style::INTERNATIONAL),
            ("", Style::INTERNATIONAL),
            ("en-US;q=2", Style::INTERNATIONAL),
            (";;;,,,", Style::INTERNATIONAL),
        ] {
            assert_eq!(style(header), want, "{header:?}");
        }
        assert_eq!(Style::from_accept_language(None), Style::INTERNATIONAL);
    }

    #[test]
    fn quality_values() {
        assert_eq!(quality("1"), 1000);
        assert_eq!(quality("1.000"), 1000);
        assert_eq!(quality("0.9"), 900);
        assert_eq!(quality("0.25"), 250);
        assert_eq!(quality("0"), 0);
        for bad in ["1.5", "2", "0.1234", "x", "-1", "0.a"] {
            assert_eq!(quality(bad), 0, "{bad}");
        }
    }
}
