//! An error and its causes as one line, each said once: `outer: cause: root cause`.
//!
//! Cloakroom's error types never repeat their source in their own message (the source is
//! printed after it); this is where they are printed — by the command line before it exits,
//! and in log lines about failures that are not a request's (those go through `web/error.rs`).
//! Some libraries' errors do repeat their source (rusqlite prints SQLite's message, then its
//! source says it again after an error code): a cause whose text contains the previous one's,
//! or is contained in it, is skipped, so an operator reads every fact once.

use std::error::Error;

/// `causes`, outermost first, joined with `": "`, each once.
pub(crate) fn join<'a>(causes: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in causes {
        let text = cause.to_string();
        if text.is_empty()
            || previous.contains(&text)
            || text.contains(&previous) && !previous.is_empty()
        {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        previous = text;
    }
    line
}

/// `error` and its sources, as [`join`] writes them.
pub(crate) fn chain(error: &(dyn Error + 'static)) -> String {
    join(std::iter::successors(Some(error), |&e| e.source()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("database /data/cloakroom.db")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("file is not a database")]
    struct Middle(#[source] Root);

    /// A library error that says its source's message again.
    #[derive(Debug, thiserror::Error)]
    #[error("Error code 26: file is not a database")]
    struct Root;

    #[test]
    fn each_cause_is_printed_once() {
        assert_eq!(
            chain(&Outer(Middle(Root))),
            "database /data/cloakroom.db: file is not a database"
        );
    }
}
