//! The mail templates: built in with askama, replaceable by the operator's files.
//!
//! Each message kind has a text template (its first line `Subject: …`, a blank line, then the
//! body) and an HTML template, in `templates/mail/`. The built-ins are askama templates, so a
//! variable that does not exist is a compile error and HTML is escaped by construction.
//!
//! An operator who sets `mail_templates_dir` may put `<kind>.txt` (and `<kind>.html`) there;
//! a file present replaces the built-in. Askama compiles templates into the binary, so
//! overrides use a deliberately small format of their own: literal text and `{{ name }}`
//! placeholders, nothing else — no conditions, loops, includes or filters. That is all a mail
//! needs, every mistake can be caught when the server starts (not when the first reset mail
//! is due), and there is no template language to sandbox. The built-in files are written in
//! that same subset, so any of them is a working starting point (a test holds them to it).
//!
//! Checked at start-up, each naming the file and line: a file name that is no kind (a typo
//! would otherwise be ignored), a placeholder the kind does not offer, a `{%` or unclosed
//! `{{`, a text template without its `Subject:` line, a reset or verification mail whose text
//! lacks `{{ link }}`, and an `.html` without its `.txt` (the text part is never optional). A
//! `.txt` without an `.html` sends text only: a built-in HTML part could contradict the
//! operator's text. Values are HTML-escaped in `.html` files, as askama does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use askama::Template as _;

/// The messages the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    PasswordReset,
    VerifyEmail,
    EmailChanged,
    PasswordChanged,
    IdentityConnected,
    FactorChanged,
    Test,
}

impl Kind {
    const ALL: [Self; 7] = [
        Self::PasswordReset,
        Self::VerifyEmail,
        Self::EmailChanged,
        Self::PasswordChanged,
        Self::IdentityConnected,
        Self::FactorChanged,
        Self::Test,
    ];

    /// The name of its template files and of its outbox rows.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::VerifyEmail => "verify_email",
            Self::EmailChanged => "email_changed",
            Self::PasswordChanged => "password_changed",
            Self::IdentityConnected => "identity_connected",
            Self::FactorChanged => "factor_changed",
            Self::Test => "test",
        }
    }

    /// The placeholders its templates may use.
    fn variables(self) -> &'static [&'static str] {
        const ACCOUNT: &[&str] = &["product", "public_url", "to", "username"];
        match self {
            Self::PasswordReset | Self::VerifyEmail => &[
                "product",
                "public_url",
                "to",
                "username",
                "link",
                "expires_in",
            ],
            Self::EmailChanged => &["product", "public_url", "to", "username", "new_address"],
            Self::PasswordChanged => ACCOUNT,
            Self::IdentityConnected => &["product", "public_url", "to", "username", "provider"],
            Self::FactorChanged => &["product", "public_url", "to", "username", "change"],
            Self::Test => &["product", "public_url", "to"],
        }
    }

    /// The placeholders its text body must use: a reset mail without its link is no use.
    fn required(self) -> &'static [&'static str] {
        match self {
            Self::PasswordReset | Self::VerifyEmail => &["link"],
            _ => &[],
        }
    }
}

/// The values a message is rendered with (empty where the kind has none).
#[derive(Debug, Default)]
pub(crate) struct Vars<'a> {
    pub(crate) product: &'a str,
    pub(crate) public_url: &'a str,
    pub(crate) to: &'a str,
    pub(crate) username: &'a str,
    pub(crate) link: &'a str,
    pub(crate) expires_in: &'a str,
    pub(crate) new_address: &'a str,
    pub(crate) provider: &'a str,
    pub(crate) change: &'a str,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> &str {
        match name {
            "product" => self.product,
            "public_url" => self.public_url,
            "to" => self.to,
            "username" => self.username,
            "link" => self.link,
            "expires_in" => self.expires_in,
            "new_address" => self.new_address,
            "provider" => self.provider,
            "change" => self.change,
            _ => "",
        }
    }
}

/// A rendered message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub(crate) subject: String,
    pub(crate) text: String,
    pub(crate) html: Option<String>,
}

/// A template file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("mail template {}: {problem}", path.display())]
pub struct TemplateError {
    path: PathBuf,
    problem: String,
}

/// Why a built-in template did not render (askama reports only what a template's own code
/// fails at; ours call nothing that can).
#[derive(Debug, thiserror::Error)]
#[error("rendering a built-in mail template failed")]
pub struct RenderError(#[source] askama::Error);

/// One parsed override file: literal text and placeholders.
#[derive(Debug)]
enum Piece {
    Text(String),
    Var(&'static str),
}

#[derive(Debug)]
struct Override {
    subject: Vec<Piece>,
    text: Vec<Piece>,
    html: Option<Vec<Piece>>,
}

/// Every template, built-in or overridden.
#[derive(Debug, Default)]
pub(crate) struct Templates {
    overrides: HashMap<Kind, Override>,
}

impl Templates {
    /// Only the built-in templates.
    pub(crate) fn builtin() -> Self {
        Self::default()
    }

    /// The built-ins, with whatever `dir` replaces; every file in it is checked now.
    pub(crate) fn load(dir: &Path) -> Result<Self, TemplateError> {
        let problem = |path: &Path, problem: String| TemplateError {
            path: path.to_owned(),
            problem,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| problem(dir, e.to_string()))?;
        let mut files: HashMap<String, PathBuf> = HashMap::new();
        for entry in entries {
            let path = entry.map_err(|e| problem(dir, e.to_string()))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') || path.is_dir() {
                continue;
            }
            let known = Kind::ALL.iter().any(|k| {
                name == format!("{}.txt", k.name()) || name == format!("{}.html", k.name())
            });
            if !known {
                let expected: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                return Err(problem(
                    &path,
                    format!(
                        "not a template name; expected <kind>.txt or <kind>.html, kind one of {}",
                        expected.join(", ")
                    ),
                ));
            }
            files.insert(name.to_owned(), path);
        }
        let mut overrides = HashMap::new();
        for kind in Kind::ALL {
            let txt = files.get(&format!("{}.txt", kind.name()));
            let html = files.get(&format!("{}.html", kind.name()));
            let Some(txt) = txt else {
                if let Some(html) = html {
                    return Err(problem(
                        html,
                        format!(
                            "has no {}.txt beside it; the text part is required",
                            kind.name()
                        ),
                    ));
                }
                continue;
            };
            // Like askama, which drops a template file's final line break.
            let read = |path: &Path| {
                std::fs::read_to_string(path)
                    .map(|t| {
                        let t = t.strip_suffix('\n').unwrap_or(&t);
                        t.strip_suffix('\r').unwrap_or(t).to_owned()
                    })
                    .map_err(|e| problem(path, e.to_string()))
            };
            let (subject, text) = parse_text(kind, &read(txt)?).map_err(|p| problem(txt, p))?;
            let html = html
                .map(|path| parse(kind, &read(path)?, 1).map_err(|p| problem(path, p)))
                .transpose()?;
            overrides.insert(
                kind,
                Override {
                    subject,
                    text,
                    html,
                },
            );
        }
        Ok(Self { overrides })
    }

    /// Renders `kind` with `vars`.
    pub(crate) fn render(&self, kind: Kind, vars: &Vars<'_>) -> Result<Rendered, RenderError> {
        if let Some(o) = self.overrides.get(&kind) {
            return Ok(Rendered {
                subject: fill(&o.subject, vars, false),
                text: fill(&o.text, vars, false),
                html: o.html.as_ref().map(|h| fill(h, vars, true)),
            });
        }
        let (text, html) = builtin(kind, vars).map_err(RenderError)?;
        // The built-ins are held to the override format by a test, so this split holds.
        let (subject, text) = split_subject(&text).unwrap_or_default();
        Ok(Rendered {
            subject: subject.to_owned(),
            text: text.to_owned(),
            html: Some(html),
        })
    }

    /// Which kinds are overridden, for the start-up log.
    pub(crate) fn overridden(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.overrides.keys().map(|k| k.name()).collect();
        names.sort_unstable();
        names
    }
}

/// `Subject: …`, a blank line, the body.
fn split_subject(text: &str) -> Option<(&str, &str)> {
    let (first, rest) = text.split_once('\n')?;
    let subject = first.strip_prefix("Subject:")?.trim();
    let body = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))?;
    Some((subject, body))
}

fn parse_text(kind: Kind, source: &str) -> Result<(Vec<Piece>, Vec<Piece>), String> {
    let (subject, body) = split_subject(source)
        .ok_or("must start with a `Subject: …` line and a blank line, then the body".to_owned())?;
    if subject.is_empty() {
        return Err("the subject line is empty".into());
    }
    // The body starts on the file's third line.
    let body = parse(kind, body, 3)?;
    for required in kind.required() {
        if !body
            .iter()
            .any(|p| matches!(p, Piece::Var(v) if v == required))
        {
            return Err(format!("the body must contain {{{{ {required} }}}}"));
        }
    }
    Ok((parse(kind, subject, 1)?, body))
}

/// Literal text and `{{ name }}` placeholders; anything else is an error naming the line
/// (`source` starts on line `first_line` of its file).
fn parse(kind: Kind, source: &str, first_line: usize) -> Result<Vec<Piece>, String> {
    let line = |at: usize| source[..at].matches('\n').count() + first_line;
    let mut pieces = Vec::new();
    let mut rest = source;
    let mut offset = 0;
    loop {
        let open = rest.find("{{");
        let block = rest.find("{%").or_else(|| rest.find("{#"));
        if let Some(b) = block
            && open.is_none_or(|o| b < o)
        {
            return Err(format!(
                "line {}: only {{{{ name }}}} placeholders are supported, not {{% … %}} or {{# … #}}",
                line(offset + b)
            ));
        }
        let Some(open) = open else {
            if let Some(stray) = rest.find("}}") {
                return Err(format!(
                    "line {}: `}}}}` without `{{{{`",
                    line(offset + stray)
                ));
            }
            pieces.push(Piece::Text(rest.to_owned()));
            return Ok(pieces);
        };
        let (text, after) = rest.split_at(open);
        if let Some(stray) = text.find("}}") {
            return Err(format!(
                "line {}: `}}}}` without `{{{{`",
                line(offset + stray)
            ));
        }
        pieces.push(Piece::Text(text.to_owned()));
        let close = after
            .find("}}")
            .ok_or_else(|| format!("line {}: `{{{{` is never closed", line(offset + open)))?;
        let name = after[2..close].trim();
        let var = kind
            .variables()
            .iter()
            .find(|v| **v == name)
            .ok_or_else(|| {
                format!(
                    "line {}: {{{{ {name} }}}} is not available in {} mail (available: {})",
                    line(offset + open),
                    kind.name(),
                    kind.variables().join(", ")
                )
            })?;
        pieces.push(Piece::Var(var));
        offset += open + close + 2;
        rest = &after[close + 2..];
    }
}

fn fill(pieces: &[Piece], vars: &Vars<'_>, html: bool) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) if html => escape_html(vars.get(v), &mut out),
            Piece::Var(v) => out.push_str(vars.get(v)),
        }
    }
    out
}

/// The characters askama escapes, escaped as askama does.
fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&#38;"),
            '<' => out.push_str("&#60;"),
            '>' => out.push_str("&#62;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// One askama struct per built-in file. Each gets every variable, as an override does; the
/// test that parses the built-ins as overrides keeps each to its kind's list.
macro_rules! builtins {
    ($($ty:ident = $path:literal;)*) => {$(
        #[derive(askama::Template)]
        #[template(path = $path)]
        #[allow(dead_code)] // see above: not every template uses every variable
        struct $ty<'a> {
            product: &'a str,
            public_url: &'a str,
            to: &'a str,
            username: &'a str,
            link: &'a str,
            expires_in: &'a str,
            new_address: &'a str,
            provider: &'a str,
            change: &'a str,
        }

        impl<'a> From<&'a Vars<'a>> for $ty<'a> {
            fn from(v: &'a Vars<'a>) -> Self {
                Self {
                    product: v.product,
                    public_url: v.public_url,
                    to: v.to,
                    username: v.username,
                    link: v.link,
                    expires_in: v.expires_in,
                    new_address: v.new_address,
                    provider: v.provider,
                    change: v.change,
                }
            }
        }
    )*};
}

builtins! {
    PasswordResetText = "mail/password_reset.txt";
    PasswordResetHtml = "mail/password_reset.html";
    VerifyEmailText = "mail/verify_email.txt";
    VerifyEmailHtml = "mail/verify_email.html";
    EmailChangedText = "mail/email_changed.txt";
    EmailChangedHtml = "mail/email_changed.html";
    PasswordChangedText = "mail/password_changed.txt";
    PasswordChangedHtml = "mail/password_changed.html";
    IdentityConnectedText = "mail/identity_connected.txt";
    IdentityConnectedHtml = "mail/identity_connected.html";
    FactorChangedText = "mail/factor_changed.txt";
    FactorChangedHtml = "mail/factor_changed.html";
    TestText = "mail/test.txt";
    TestHtml = "mail/test.html";
}

/// The built-in text (with its subject line) and HTML of `kind`.
fn builtin(kind: Kind, v: &Vars<'_>) -> askama::Result<(String, String)> {
    Ok(match kind {
        Kind::PasswordReset => (
            PasswordResetText::from(v).render()?,
            PasswordResetHtml::from(v).render()?,
        ),
        Kind::VerifyEmail => (
            VerifyEmailText::from(v).render()?,
            VerifyEmailHtml::from(v).render()?,
        ),
        Kind::EmailChanged => (
            EmailChangedText::from(v).render()?,
            EmailChangedHtml::from(v).render()?,
        ),
        Kind::PasswordChanged => (
            PasswordChangedText::from(v).render()?,
            PasswordChangedHtml::from(v).render()?,
        ),
        Kind::IdentityConnected => (
            IdentityConnectedText::from(v).render()?,
            IdentityConnectedHtml::from(v).render()?,
        ),
        Kind::FactorChanged => (
            FactorChangedText::from(v).render()?,
            FactorChangedHtml::from(v).render()?,
        ),
        Kind::Test => (TestText::from(v).render()?, TestHtml::from(v).render()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in files, as an operator would copy them.
    fn builtin_sources(kind: Kind) -> (&'static str, &'static str) {
        macro_rules! files {
            ($name:literal) => {
                (
                    include_str!(concat!("../../templates/mail/", $name, ".txt")),
                    include_str!(concat!("../../templates/mail/", $name, ".html")),
                )
            };
        }
        match kind {
            Kind::PasswordReset => files!("password_reset"),
            Kind::VerifyEmail => files!("verify_email"),
            Kind::EmailChanged => files!("email_changed"),
            Kind::PasswordChanged => files!("password_changed"),
            Kind::IdentityConnected => files!("identity_connected"),
            Kind::FactorChanged => files!("factor_changed"),
            Kind::Test => files!("test"),
        }
    }

    fn vars() -> Vars<'static> {
        Vars {
            product: "Cloakroom",
            public_url: "https://login.example.com",
            to: "o'brien@example.com",
            username: "<b>alice</b> & co",
            link: "https://login.example.com/password-reset?token=a.b.c&x=\"1\"",
            expires_in: "30 minutes",
            new_address: "new@example.com",
            provider: "Google <Workspace>",
            change: "A passkey was <added>.",
        }
    }

    /// Every built-in file is a valid override for its kind, and renders exactly as askama
    /// renders it — escaping included — so operators can start from a copy.
    #[test]
    fn the_built_ins_are_valid_overrides_and_render_the_same_either_way() {
        let dir = tempfile::tempdir().unwrap();
        for kind in Kind::ALL {
            let (txt, html) = builtin_sources(kind);
            std::fs::write(dir.path().join(format!("{}.txt", kind.name())), txt).unwrap();
            std::fs::write(dir.path().join(format!("{}.html", kind.name())), html).unwrap();
        }
        let copied = Templates::load(dir.path()).unwrap();
        assert_eq!(copied.overridden().len(), Kind::ALL.len());
        for kind in Kind::ALL {
            let built_in = Templates::builtin().render(kind, &vars()).unwrap();
            assert!(!built_in.subject.is_empty(), "{kind:?}");
            assert!(!built_in.text.starts_with('\n'), "{kind:?}");
            assert_eq!(copied.render(kind, &vars()).unwrap(), built_in, "{kind:?}");
        }
        let reset = Templates::builtin()
            .render(Kind::PasswordReset, &vars())
            .unwrap();
        assert_eq!(reset.subject, "Reset your Cloakroom password");
        assert!(
            reset.text.contains("token=a.b.c&x=\"1\""),
            "text is not escaped"
        );
        let html = reset.html.unwrap();
        assert!(html.contains("token=a.b.c&#38;x=&#34;1&#34;"), "{html}");
        assert!(
            html.contains("&#60;b&#62;alice&#60;/b&#62; &#38; co"),
            "{html}"
        );
    }

    #[test]
    fn overrides_replace_only_what_they_name_and_a_lone_text_sends_text_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("test.txt"),
            "Subject: Mail check for {{to}}\n\nIt works, {{ to }}.\n",
        )
        .unwrap();
        let t = Templates::load(dir.path()).unwrap();
        assert_eq!(t.overridden(), ["test"]);
        let r = t.render(Kind::Test, &vars()).unwrap();
        assert_eq!(r.subject, "Mail check for o'brien@example.com");
        assert_eq!(r.text, "It works, o'brien@example.com.");
        assert_eq!(r.html, None);
        assert_eq!(
            t.render(Kind::PasswordReset, &vars()).unwrap(),
            Templates::builtin()
                .render(Kind::PasswordReset, &vars())
                .unwrap()
        );
    }

    #[test]
    fn bad_overrides_are_refused_at_start_naming_the_file_and_line() {
        for (file, content, expected) in [
            (
                "pasword_reset.txt",
                "Subject: x\n\n{{ link }}",
                "not a template name",
            ),
            (
                "password_reset.txt",
                "Hello\n\n{{ link }}",
                "must start with a `Subject:",
            ),
            (
                "password_reset.txt",
                "Subject: x\n\nno link here",
                "must contain {{ link }}",
            ),
            (
                "password_reset.txt",
                "Subject: x\n\n{{ link }}\n{{ password }}",
                "line 4: {{ password }} is not available",
            ),
            (
                "test.txt",
                "Subject: x\n\n{{ link }}",
                "{{ link }} is not available in test mail",
            ),
            (
                "test.txt",
                "Subject: x\n\n{% if to %}x{% endif %}",
                "only {{ name }} placeholders",
            ),
            (
                "test.txt",
                "Subject: x\n\nhi {{ to",
                "line 3: `{{` is never closed",
            ),
            (
                "test.txt",
                "Subject: x\n\nhi\nto }}",
                "line 4: `}}` without `{{`",
            ),
            ("test.html", "<p>{{ to }}</p>", "has no test.txt beside it"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(file), content).unwrap();
            let err = Templates::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(file), "{err}");
            assert!(err.contains(expected), "{file}: {err}");
        }
        let missing = Templates::load(Path::new("/nonexistent/cloakroom-mail")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/cloakroom-mail"));
    }
}
