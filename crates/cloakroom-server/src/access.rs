//! Access rules for forward auth: which requests to an app pass anonymously, which need a
//! signed-in user (and which user), and which are refused — Authelia's `access_control`
//! model, first match wins.
//!
//! Operators write rules in TOML, in order:
//!
//! ```toml
//! default_policy = "deny"                   # "allow" | "deny", when no rule matches
//!
//! [[access_rules]]
//! domain = ["*.example.com"]
//! resources = ["^/healthz$"]
//! policy = "bypass"                         # health checks pass without a session
//!
//! [[access_rules]]
//! domain = ["grafana.example.com"]          # exact host, or "*.example.com"
//! resources = ["^/api/admin/.*$"]           # optional regexes on the path
//! methods = ["GET", "POST"]                 # optional
//! subject = ["group:admins", "user:alice"]  # optional; any of them
//! policy = "allow"                          # "bypass" | "allow" | "deny"
//! ```
//!
//! A key design decision is that everything an operator can get wrong is refused when the
//! rules are compiled ([`AccessRules::compile`]), with the rule's number and the field named
//! ([`RuleError`]), rather than discovered as a rule that silently never matches: a typo in
//! an access rule is a hole or an outage, and start-up is the cheapest moment to hear of it.
//! Unknown keys are refused for the same reason (`method = [...]` for `methods` would
//! otherwise widen the rule to every method).
//!
//! # Matching
//!
//! A rule matches a request when *all* of its given conditions hold, and *any* entry of a
//! condition's list satisfies it:
//!
//! * `domain`: the request's host equals an entry, or, for `*.example.com`, ends in
//!   `.example.com` with at least one label before it, at any depth (`a.b.example.com`
//!   matches, `example.com`, `evilexample.com` and `example.com.evil.net` do not). Host names
//!   compare without regard to ASCII case and one trailing dot.
//! * `resources`: a regex finds a match in the normalised path ([`normalize_path`]). Matching
//!   is *unanchored*, as `Regex::is_match` is: `/admin` also matches `/public/admin-guide`.
//!   Anchor patterns with `^…$`. Paths are case-sensitive (so are most apps); for an app that
//!   is not, write the pattern with `(?i)`, or `/ADMIN` walks past a deny rule for `/admin`.
//! * `methods`: the request's method is listed (compared without regard to ASCII case, so a
//!   deny rule for `DELETE` cannot be dodged with `delete` on a server that accepts it).
//! * `subject`: the signed-in user is named (`user:alice`, ASCII case ignored, as Cloakroom
//!   stores user names lower-cased) or is a member of a named group (`group:admins`, compared
//!   exactly as the account's groups are stored).
//!
//! # Anonymous requests
//!
//! The server decides a request without a session first ([`AccessRules::decide`] with
//! `who = None`). The first rule whose domain, resources and methods match settles it:
//! a rule with a subject asks for sign-in (signing in might make it match); otherwise
//! `bypass` lets the request through, `allow` asks for sign-in and `deny` refuses. When no
//! rule matches, a default of `allow` asks for sign-in and `deny` refuses.
//!
//! A request that is [`Outcome::Bypass`] anonymously is `Bypass` for every signed-in user
//! too (the deciding rule has no subject, and no rule before it matches the request), so the
//! server can skip the session lookup for it altogether.
//!
//! # Regexes and denial of service
//!
//! Patterns are compiled by the `regex` crate, which matches in time linear in the input (a
//! finite automaton, no backtracking): a pattern that is "catastrophic" for backtracking
//! engines, such as `^(a+)+$` against `aaaa…b`, costs no more than any other. What *can* blow
//! up is compilation — `(a{1000}){1000}` expands to a million states — so each pattern's
//! compiled size is bounded ([`REGEX_SIZE_LIMIT`]) and a larger one is refused at start-up.
//!
//! # What this module does not do
//!
//! It does not parse `default_policy` (the configuration loader hands over a
//! [`DefaultPolicy`]) and does not know about sessions, HTTP or proxies: the caller passes
//! the host, the normalised path and the method, and who is signed in. Paths are normalised
//! against the tricks that make an app read a different path from the one matched
//! (see [`normalize_path`]), but not against app-specific path syntax such as Tomcat's
//! `;param` segments (`/api;x=1/admin`) or apps that decode `%2F` into `/`: rules protecting
//! such apps should be written for them (or the proxy should refuse such paths).

use std::fmt;

use cloakroom_core::accounts::GroupName;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// The largest compiled size, in bytes, of one `resources` pattern (and of the lazy DFA's
/// cache for it). Ordinary path patterns need a few kilobytes; the bound exists to refuse
/// patterns whose counted repetitions multiply into millions of states.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One `[[access_rules]]` entry as the operator wrote it; [`AccessRules::compile`] checks it.
///
/// The key names and values are a fixed interface shared with operators' configuration
/// files: renaming one breaks every deployment that uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleConfig {
    /// Host names (`grafana.example.com`) or wildcards (`*.example.com`); at least one.
    pub domain: Vec<String>,
    /// Regexes on the normalised path; any may match. Empty: every path.
    #[serde(default)]
    pub resources: Vec<String>,
    /// HTTP methods; any may match. Empty: every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// `group:<name>` or `user:<name>` entries; any may match. Empty: anyone, signed in or
    /// not.
    #[serde(default)]
    pub subject: Vec<String>,
    /// What happens to a request this rule matches.
    pub policy: RulePolicy,
}

/// What a matching rule does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RulePolicy {
    /// Let the request through without a session (health checks, public assets).
    Bypass,
    /// Let a signed-in user through; an anonymous request is sent to sign in.
    Allow,
    /// Refuse the request, signed in or not.
    Deny,
    /// Let a signed-in user through once a second factor was given in the session (`aal2`);
    /// a session with one factor is sent to step up, an anonymous request to sign in.
    #[serde(rename = "two_factor")]
    TwoFactor,
}

/// What happens to a request that no rule matches.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// Any signed-in user may pass; an anonymous request is sent to sign in. The default, so
    /// that a deployment with no rules behaves as plain forward auth always has.
    #[default]
    Allow,
    /// Refuse: only what a rule allows gets through.
    Deny,
}

/// A rule list that failed to compile: which rule, and what is wrong with it.
///
/// Its message names the rule by number (from 1, in file order) and by its first domain,
/// then the field: `access rule #3 (domain "grafana.example.com"): resources[0] "^(" is not a
/// valid regex`. Like Cloakroom's other errors it does not repeat its source: the regex
/// library's own explanation is [`source`](std::error::Error::source), which the error-chain
/// printer appends after `": "`.
#[derive(Debug)]
pub struct RuleError {
    rule: usize,
    domain: Option<String>,
    kind: RuleErrorKind,
}

impl RuleError {
    /// The rule's number, counted from 1 in file order.
    pub fn rule(&self) -> usize {
        self.rule
    }

    /// What is wrong with the rule.
    pub fn kind(&self) -> &RuleErrorKind {
        &self.kind
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "access rule #{} ", self.rule)?;
        match &self.domain {
            Some(domain) => write!(f, "(domain {domain:?})")?,
            None => f.write_str("(no domain)")?,
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for RuleError {
    // The kind is part of this error's own message, so its source is ours: printing the kind
    // again as a cause would say the same thing twice.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

/// What is wrong with one access rule. Indexes count from 0, as in the file's lists.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleErrorKind {
    /// `domain` is empty: a rule must say which apps it is about.
    #[error("domain is empty: list at least one host name, such as \"grafana.example.com\"")]
    NoDomain,
    /// A `domain` entry is not a host name or a wildcard; `hint` says what is expected.
    #[error("domain[{index}] {value:?} {hint}")]
    Domain {
        /// Position in `domain`.
        index: usize,
        /// The entry as written.
        value: String,
        /// What the entry should look like.
        hint: &'static str,
    },
    /// A `resources` entry does not parse as a regex.
    #[error("resources[{index}] {pattern:?} is not a valid regex")]
    Regex {
        /// Position in `resources`.
        index: usize,
        /// The pattern as written.
        pattern: String,
        /// The regex library's explanation.
        #[source]
        source: regex::Error,
    },
    /// A `resources` entry compiles to more than [`REGEX_SIZE_LIMIT`] bytes.
    #[error(
        "resources[{index}] {pattern:?} is too large to compile; avoid large counted repetitions"
    )]
    RegexTooBig {
        /// Position in `resources`.
        index: usize,
        /// The pattern as written.
        pattern: String,
        /// The regex library's explanation, with the limit.
        #[source]
        source: regex::Error,
    },
    /// A `methods` entry is not an HTTP method name.
    #[error(
        "methods[{index}] {value:?} is not an HTTP method: 1 to 16 ASCII letters, such as \"GET\""
    )]
    Method {
        /// Position in `methods`.
        index: usize,
        /// The entry as written.
        value: String,
    },
    /// A `subject` entry is not `group:<name>` or `user:<name>` with a valid name; `hint`
    /// says which part is wrong.
    #[error("subject[{index}] {value:?} is not valid: {hint}")]
    Subject {
        /// Position in `subject`.
        index: usize,
        /// The entry as written.
        value: String,
        /// What the entry should look like.
        hint: &'static str,
    },
    /// `policy = "bypass"` together with a `subject`.
    #[error(
        "policy \"bypass\" cannot have a subject: bypass lets anonymous requests through, so it \
         cannot depend on who is signed in"
    )]
    BypassWithSubject,
}

const HOST_HINT: &str =
    "must be a host name, without scheme or port, such as \"grafana.example.com\"";
const HOST_CHARS_HINT: &str =
    "is not a host name: letters, digits, '-' and '.', with no empty label";
const HOST_ASCII_HINT: &str =
    "is not a host name in ASCII: write its punycode (\"xn--\") form, which is what proxies send";
const WILDCARD_HINT: &str = "is not a valid wildcard: \"*.\" followed by a domain of at least two \
                             labels, such as \"*.example.com\"";
const SUBJECT_HINT: &str = "subject entries are `group:<name>` or `user:<name>`";
const GROUP_HINT: &str = "a group name is 1 to 64 ASCII letters, digits, '-', '_' or '.', \
                          starting with a letter or digit";
const USER_HINT: &str =
    "a user name is 1 to 64 characters, with no whitespace, control characters or commas";

/// A compiled, checked rule list, ready to [`decide`](Self::decide) requests.
#[derive(Debug, Clone)]
pub struct AccessRules {
    rules: Vec<Rule>,
    default: DefaultPolicy,
}

#[derive(Debug, Clone)]
struct Rule {
    domains: Vec<DomainPattern>,
    resources: Vec<Regex>,
    methods: Vec<String>,
    subjects: Vec<Subject>,
    policy: RulePolicy,
}

#[derive(Debug, Clone)]
enum DomainPattern {
    /// A lower-case host name without trailing dot.
    Exact(String),
    /// The lower-case suffix of a wildcard, *with* its leading dot (`.example.com` for
    /// `*.example.com`), so that a suffix match is always at a label boundary.
    Wildcard(String),
}

#[derive(Debug, Clone)]
enum Subject {
    User(String),
    Group(String),
}

/// The request a proxy asks about.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The host, without port; any ASCII case, one trailing dot tolerated.
    pub host: &'a str,
    /// The path as [`normalize_path`] returns it. A path that is not normalised can slip past
    /// a rule written for the path the app will read.
    pub path: &'a str,
    /// The method, upper case.
    pub method: &'a str,
}

/// The signed-in user a request carries.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The user name (Cloakroom stores them lower-cased; compared ignoring ASCII case).
    pub username: &'a str,
    /// The groups the user is a member of, compared exactly.
    pub groups: &'a [GroupName],
}

/// The answer for one request, and which rule gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The deciding rule's number, from 1 in file order; `None` when the default policy
    /// decided.
    pub rule: Option<usize>,
    /// What to do with the request.
    pub outcome: Outcome,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Let it through without looking at any session.
    Bypass,
    /// Let it through as the signed-in user.
    Allow,
    /// Refuse it.
    Deny,
    /// The request is anonymous and a signed-in user might be let through: send it to sign in.
    SignIn,
    /// Let it through as the signed-in user if the session gave a second factor (`aal2`);
    /// otherwise send it to step up.
    TwoFactor,
}

impl AccessRules {
    /// Checks and compiles `rules` (in order; the first that matches a request decides it),
    /// with `default` for requests no rule matches.
    ///
    /// The first problem found is returned, naming the rule (see [`RuleError`]).
    pub fn compile(rules: &[AccessRuleConfig], default: DefaultPolicy) -> Result<Self, RuleError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, config)| {
                compile_rule(config).map_err(|kind| RuleError {
                    rule: index + 1,
                    domain: config.domain.first().cloned(),
                    kind,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules, default })
    }

    /// Whether there are no rules (every request gets the default policy).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The policy for requests that no rule matches.
    pub fn default_policy(&self) -> DefaultPolicy {
        self.default
    }

    /// Decides a request whose path an app may read as any of the target's paths (see
    /// [`rule_paths`]): the strictest decision over them wins — deny over sign-in over allow
    /// over bypass — so a path spelled to slip past a deny rule in one reading is refused by it
    /// in another.
    pub fn decide_strictest(
        &self,
        target: &RuleTarget,
        method: &str,
        who: Option<&Who<'_>>,
    ) -> Decision {
        let rank = |o: Outcome| match o {
            Outcome::Bypass => 0,
            Outcome::Allow => 1,
            Outcome::TwoFactor => 2,
            Outcome::SignIn => 3,
            Outcome::Deny => 4,
        };
        let host = &target.host;
        let decide = |path: &str| self.decide(&AccessRequest { host, path, method }, who);
        // Reversed, so that of equally strict decisions the first reading's (the normalised
        // path's) is the one reported: `max_by_key` keeps the last of equal keys.
        target
            .paths
            .iter()
            .rev()
            .map(|p| decide(p))
            .max_by_key(|d| rank(d.outcome))
            .unwrap_or_else(|| decide("/"))
    }

    /// Decides `req` for `who` (`None`: no session). See the module documentation for the
    /// rules of the walk; [`Decision::rule`] says which rule decided, for logs and the CLI.
    pub fn decide(&self, req: &AccessRequest<'_>, who: Option<&Who<'_>>) -> Decision {
        // A fully qualified name (`grafana.example.com.`) is the same host to DNS and to the
        // app; one trailing dot only, since `host..` is no host at all.
        let host = req.host.strip_suffix('.').unwrap_or(req.host);
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matches_request(host, req.path, req.method) {
                continue;
            }
            let rule_number = Some(index + 1);
            match who {
                Some(who) => {
                    if rule.subjects.is_empty() || rule.subjects.iter().any(|s| s.matches(who)) {
                        let outcome = match rule.policy {
                            RulePolicy::Bypass => Outcome::Bypass,
                            RulePolicy::Allow => Outcome::Allow,
                            RulePolicy::Deny => Outcome::Deny,
                            RulePolicy::TwoFactor => Outcome::TwoFactor,
                        };
                        return Decision {
                            rule: rule_number,
                            outcome,
                        };
                    }
                }
                None => {
                    // Stopping at a subject rule, rather than walking past it as a signed-in
                    // non-member would, is what keeps "anonymous Bypass implies Bypass for
                    // everyone" true: a later bypass rule is never reached anonymously while
                    // an earlier rule could still claim the request for a signed-in user.
                    let outcome = if !rule.subjects.is_empty() {
                        Outcome::SignIn
                    } else {
                        match rule.policy {
                            RulePolicy::Bypass => Outcome::Bypass,
                            RulePolicy::Allow | RulePolicy::TwoFactor => Outcome::SignIn,
                            RulePolicy::Deny => Outcome::Deny,
                        }
                    };
                    return Decision {
                        rule: rule_number,
                        outcome,
                    };
                }
            }
        }
        let outcome = match (self.default, who) {
            (DefaultPolicy::Allow, Some(_)) => Outcome::Allow,
            (DefaultPolicy::Allow, None) => Outcome::SignIn,
            (DefaultPolicy::Deny, _) => Outcome::Deny,
        };
        Decision {
            rule: None,
            outcome,
        }
    }

    /// A one-line description of rule `rule` (numbered from 1) for the command line, such as
    /// `#2 domain=grafana.example.com resources=^/api/admin/.*$ methods=GET,POST
    /// subject=group:admins,user:alice policy=allow`. Empty fields are left out; domains and
    /// methods are shown as compiled (lower-case hosts, upper-case methods); an entry that
    /// contains a comma, a space or a quote is quoted so the list stays readable. A number
    /// with no rule gives `#n (no such rule)`.
    pub fn describe(&self, rule: usize) -> String {
        let Some(compiled) = rule.checked_sub(1).and_then(|index| self.rules.get(index)) else {
            return format!("#{rule} (no such rule)");
        };
        let mut line = format!("#{rule}");
        let domains: Vec<String> = compiled
            .domains
            .iter()
            .map(|domain| match domain {
                DomainPattern::Exact(host) => host.clone(),
                DomainPattern::Wildcard(suffix) => format!("*{suffix}"),
            })
            .collect();
        push_field(&mut line, "domain", domains.iter().map(String::as_str));
        push_field(
            &mut line,
            "resources",
            compiled.resources.iter().map(Regex::as_str),
        );
        push_field(
            &mut line,
            "methods",
            compiled.methods.iter().map(String::as_str),
        );
        let subjects: Vec<String> = compiled
            .subjects
            .iter()
            .map(|subject| match subject {
                Subject::User(name) => format!("user:{name}"),
                Subject::Group(name) => format!("group:{name}"),
            })
            .collect();
        push_field(&mut line, "subject", subjects.iter().map(String::as_str));
        let policy = match compiled.policy {
            RulePolicy::Bypass => "bypass",
            RulePolicy::Allow => "allow",
            RulePolicy::Deny => "deny",
            RulePolicy::TwoFactor => "two_factor",
        };
        line.push_str(" policy=");
        line.push_str(policy);
        line
    }
}

fn push_field<'a>(line: &mut String, name: &str, values: impl Iterator<Item = &'a str>) {
    let mut first = true;
    for value in values {
        if first {
            line.push(' ');
            line.push_str(name);
            line.push('=');
            first = false;
        } else {
            line.push(',');
        }
        if value.contains([',', ' ', '"']) || value.is_empty() {
            line.push_str(&format!("{value:?}"));
        } else {
            line.push_str(value);
        }
    }
}

impl Rule {
    fn matches_request(&self, host: &str, path: &str, method: &str) -> bool {
        self.domains.iter().any(|domain| domain.matches(host))
            && (self.resources.is_empty() || self.resources.iter().any(|re| re.is_match(path)))
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

impl DomainPattern {
    /// `host` has its trailing dot stripped already; its case is whatever the client sent.
    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host.eq_ignore_ascii_case(name),
            // Compared as bytes: a host with non-ASCII bytes must not make a `str` slice
            // panic, and it can never equal an ASCII suffix anyway. The suffix keeps its
            // leading dot, so the apex and `evilexample.com` never end in it; the strict `>`
            // refuses the host that is the suffix alone (`.example.com`), which has no label
            // before it.
            Self::Wildcard(suffix) => {
                let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

impl Subject {
    fn matches(&self, who: &Who<'_>) -> bool {
        match self {
            Self::User(name) => who.username.eq_ignore_ascii_case(name),
            Self::Group(name) => who.groups.iter().any(|group| group.as_str() == name),
        }
    }
}

fn compile_rule(config: &AccessRuleConfig) -> Result<Rule, RuleErrorKind> {
    if config.domain.is_empty() {
        return Err(RuleErrorKind::NoDomain);
    }
    let domains = config
        .domain
        .iter()
        .enumerate()
        .map(|(index, value)| {
            compile_domain(value).map_err(|hint| RuleErrorKind::Domain {
                index,
                value: value.clone(),
                hint,
            })
        })
        .collect::<Result<_, _>>()?;
    let resources = config
        .resources
        .iter()
        .enumerate()
        .map(|(index, pattern)| compile_resource(index, pattern))
        .collect::<Result<_, _>>()?;
    let methods = config
        .methods
        .iter()
        .enumerate()
        .map(|(index, value)| {
            if (1..=16).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphabetic()) {
                Ok(value.to_ascii_uppercase())
            } else {
                Err(RuleErrorKind::Method {
                    index,
                    value: value.clone(),
                })
            }
        })
        .collect::<Result<_, _>>()?;
    let subjects: Vec<Subject> = config
        .subject
        .iter()
        .enumerate()
        .map(|(index, value)| {
            compile_subject(value).map_err(|hint| RuleErrorKind::Subject {
                index,
                value: value.clone(),
                hint,
            })
        })
        .collect::<Result<_, _>>()?;
    if config.policy == RulePolicy::Bypass && !subjects.is_empty() {
        return Err(RuleErrorKind::BypassWithSubject);
    }
    Ok(Rule {
        domains,
        resources,
        methods,
        subjects,
        policy: config.policy,
    })
}

fn compile_domain(value: &str) -> Result<DomainPattern, &'static str> {
    // The commonest mistake is pasting a URL or a `host:port` from the proxy's
    // configuration; say so rather than "bad character".
    if value.contains("://") || value.contains([':', '/', '@', '?', '#', '[', ']']) {
        return Err(HOST_HINT);
    }
    if !value.is_ascii() {
        return Err(HOST_ASCII_HINT);
    }
    let lower = value.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(base) = name.strip_prefix("*.") {
        // `*.com` would cover a whole public suffix: almost certainly a mistake, and one that
        // hands the rule to every site under it.
        if is_host_name(base) && base.contains('.') {
            return Ok(DomainPattern::Wildcard(format!(".{base}")));
        }
        return Err(WILDCARD_HINT);
    }
    if name.contains('*') {
        return Err(WILDCARD_HINT);
    }
    if is_host_name(name) {
        Ok(DomainPattern::Exact(name.to_owned()))
    } else {
        Err(HOST_CHARS_HINT)
    }
}

/// Letters, digits and `-` in non-empty labels of at most 63 bytes, at most 253 bytes in all
/// (RFC 1035's limits), already lower-case.
/// A DNS host name (no port, no scheme): labels of letters, digits and `-`, at most 63 each
/// and 253 in all. Shared by the rules, `cookie_domain` and `redirect_hosts`.
pub(crate) fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn compile_resource(index: usize, pattern: &str) -> Result<Regex, RuleErrorKind> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|source| match source {
            regex::Error::CompiledTooBig(_) => RuleErrorKind::RegexTooBig {
                index,
                pattern: pattern.to_owned(),
                source,
            },
            _ => RuleErrorKind::Regex {
                index,
                pattern: pattern.to_owned(),
                source,
            },
        })
}

fn compile_subject(value: &str) -> Result<Subject, &'static str> {
    if let Some(name) = value.strip_prefix("group:") {
        // The accounts' own rule: a name no account can be in would be a rule that never
        // matches.
        GroupName::parse(name)
            .map(|g| Subject::Group(g.as_str().to_owned()))
            .map_err(|_| GROUP_HINT)
    } else if let Some(name) = value.strip_prefix("user:") {
        // Commas are refused because user names travel in comma-separated lists (headers,
        // the CLI); whitespace and control characters because they hide in a config file.
        let valid = !name.is_empty()
            && name.chars().count() <= 64
            && !name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',');
        if valid {
            Ok(Subject::User(name.to_owned()))
        } else {
            Err(USER_HINT)
        }
    } else {
        Err(SUBJECT_HINT)
    }
}

/// The path access rules match against, for the path of a URL parsed by the `url` crate.
///
/// `url` has already resolved dot segments (including `%2e` forms) but decodes nothing. This
/// makes the path canonical, so that paths an app reads as the same one match the same rules
/// and a deny rule cannot be dodged by spelling its path differently:
///
/// * escapes of RFC 3986 *unreserved* characters (letters, digits, `-` `.` `_` `~`) are
///   decoded, as RFC 3986 §6.2.2.2 says they are equivalent (`/api/%61dmin` → `/api/admin`);
///   other escapes are kept, with upper-case hex (`%2f` → `%2F`), because decoding them would
///   change the path's structure (`%2F` is not a separator to most apps);
/// * a `%` that starts no valid escape becomes `%25`, the literal percent lenient decoders
///   read it as; without this, `%6%61` would become `%6a` and decode again on a second pass;
/// * runs of `/` become one (`//api///admin` → `/api/admin`), since nginx merges slashes and
///   many apps and routers ignore empty segments;
/// * `.` and `..` segments — which decoding can produce (`/%2e%2e/`) — are resolved, never
///   going above `/`.
///
/// Case is kept: paths are case-sensitive (see the module documentation for `(?i)`). The
/// result always starts with `/`, keeps a trailing `/`, and is a fixed point:
/// `normalize_path(&normalize_path(p)) == normalize_path(p)`.
pub fn normalize_path(url_path: &str) -> String {
    remove_dot_segments(&canonical_escapes(url_path))
}

/// Every path an app behind the proxy might take a request for to be, to match the rules
/// against — the rules decide by the *strictest* answer over all of them
/// ([`AccessRules::decide_strictest`]), so no reading of the path that a deny rule covers
/// gets through:
///
/// * [`normalize_path`] of `url_path` (the `url` crate's parse: dot segments resolved), as a
///   server that normalises reads it;
/// * `raw`, the path exactly as the client sent it (the proxy passes it on untouched), with
///   unreserved escapes decoded and slashes merged but dot segments *kept*: an app that
///   routes on the raw path by prefix takes `/admin/x/../../public` for `/admin/…`;
/// * `raw` fully decoded — every escape (`%2F` becomes `/`), `\` read as `/`, path
///   parameters (`;jsessionid=…`, `..;`) dropped from each segment — then normalised: how Go,
///   Tomcat and Spring route.
pub fn rule_paths(url_path: &str, raw: Option<&str>) -> Vec<String> {
    let mut paths = vec![normalize_path(url_path)];
    if let Some(raw) = raw.map(|r| r.split(['?', '#']).next().unwrap_or_default()) {
        let mut kept = String::with_capacity(raw.len());
        for c in canonical_escapes(raw).chars() {
            if !(c == '/' && kept.ends_with('/')) {
                kept.push(c);
            }
        }
        if !kept.starts_with('/') {
            kept.insert(0, '/');
        }
        let decoded: String = percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .replace('\\', "/")
            .split('/')
            .map(|segment| segment.split(';').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("/");
        for p in [kept, normalize_path(&decoded)] {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    paths
}

/// A request as the rules see it — its host and every reading of its path ([`rule_paths`]) —
/// worked out once however many decisions it takes.
#[derive(Debug, Clone)]
pub struct RuleTarget {
    host: String,
    paths: Vec<String>,
}

impl RuleTarget {
    /// `host` (no port), the path as the `url` crate parsed it, and `raw`, the path and query
    /// as the client sent them, when known.
    pub fn new(host: String, url_path: &str, raw: Option<&str>) -> Self {
        Self {
            host,
            paths: rule_paths(url_path, raw),
        }
    }

    /// Every reading of the path, the normalised one first.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }
}

fn canonical_escapes(path: &str) -> String {
    const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut start = 0;
    // Slicing is at char boundaries: `%` and hex digits are ASCII, so every index used is
    // just before or just after an ASCII byte.
    while let Some(offset) = path[start..].find('%') {
        let at = start + offset;
        out.push_str(&path[start..at]);
        let escaped = match (bytes.get(at + 1), bytes.get(at + 2)) {
            (Some(&high), Some(&low)) => hex_value(high).zip(hex_value(low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                let byte = high << 4 | low;
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(byte));
                } else {
                    out.push('%');
                    out.push(char::from(HEX_UPPER[usize::from(high)]));
                    out.push(char::from(HEX_UPPER[usize::from(low)]));
                }
                start = at + 3;
            }
            None => {
                out.push_str("%25");
                start = at + 1;
            }
        }
    }
    out.push_str(&path[start..]);
    out
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// RFC 3986 §5.2.4's dot-segment removal, with empty segments dropped as well.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            segment => kept.push(segment),
        }
    }
    // `/a/` and `/a/b/..` name a directory, `/a` a file: apps route them differently, so the
    // trailing slash is kept (but `/` stays `/`, not `//`).
    let directory = matches!(path.rsplit('/').next(), Some("" | "." | ".."));
    let mut out = String::with_capacity(path.len() + 1);
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if directory || kept.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// Issue 15's review: the readings of one path an app behind the proxy may route by.
    #[test]
    fn rule_paths_cover_every_reading_an_app_may_route_by() {
        let url = |raw: &str| {
            url::Url::parse(&format!("https://a.example.com{raw}"))
                .unwrap()
                .path()
                .to_owned()
        };
        for (raw, expected) in [
            ("/api/admin%2Fusers", "/api/admin/users"),
            ("/public/..;/admin", "/admin"),
            ("/admin;jsessionid=x/users", "/admin/users"),
            ("/admin/x/../../public", "/admin/x/../../public"),
            ("/api%5Cadmin", "/api/admin"),
        ] {
            let paths = rule_paths(&url(raw), Some(raw));
            assert!(paths.iter().any(|p| p == expected), "{raw}: {paths:?}");
        }
        assert_eq!(rule_paths("/a", Some("/a?x=%2F")), vec!["/a".to_owned()]);
    }

    #[test]
    fn the_strictest_reading_decides() {
        let rules = AccessRules::compile(
            &[
                rule_with(&["a.example.com"], &["^/admin"], RulePolicy::Deny),
                rule_with(&["a.example.com"], &[], RulePolicy::Bypass),
            ],
            DefaultPolicy::Allow,
        )
        .unwrap();
        for raw in [
            "/api/..%2F..%2Fadmin",
            "/public/..;/admin",
            "/admin/x/../../public",
            "/%61dmin",
            "//admin",
        ] {
            let parsed = url::Url::parse(&format!("https://a.example.com{raw}")).unwrap();
            let target = RuleTarget::new("a.example.com".into(), parsed.path(), Some(raw));
            let d = rules.decide_strictest(&target, "GET", None);
            assert_eq!(d.outcome, Outcome::Deny, "{raw}: {:?}", target.paths());
        }
    }

    fn rule_with(domain: &[&str], resources: &[&str], policy: RulePolicy) -> AccessRuleConfig {
        AccessRuleConfig {
            domain: domain.iter().map(|d| (*d).to_owned()).collect(),
            resources: resources.iter().map(|d| (*d).to_owned()).collect(),
            methods: Vec::new(),
            subject: Vec::new(),
            policy,
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapper {
        access_rules: Vec<AccessRuleConfig>,
    }

    /// TOML read the way the configuration is (figment's TOML provider).
    fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Box<figment::Error>> {
        use figment::providers::Format as _;
        figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .map_err(Box::new)
    }

    fn parse(toml_text: &str) -> Vec<AccessRuleConfig> {
        from_toml::<Wrapper>(toml_text).unwrap().access_rules
    }

    fn rule(domain: &[&str], policy: RulePolicy) -> AccessRuleConfig {
        AccessRuleConfig {
            domain: domain.iter().map(|d| (*d).to_owned()).collect(),
            resources: Vec::new(),
            methods: Vec::new(),
            subject: Vec::new(),
            policy,
        }
    }

    fn compile_one(config: AccessRuleConfig) -> Result<AccessRules, RuleError> {
        AccessRules::compile(&[config], DefaultPolicy::Deny)
    }

    /// The message and every cause, as Cloakroom's error-chain printer joins them.
    fn chain(error: &(dyn std::error::Error + 'static)) -> String {
        std::iter::successors(Some(error), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ")
    }

    const RULES: &str = r#"
        # 1: health checks of every app pass without a session.
        [[access_rules]]
        domain = ["*.example.com"]
        resources = ["^/healthz$"]
        methods = ["GET", "head"]
        policy = "bypass"

        # 2: a deny before the allow below: first match wins.
        [[access_rules]]
        domain = ["grafana.example.com"]
        resources = ["^/api/admin/.*$"]
        subject = ["user:mallory"]
        policy = "deny"

        # 3
        [[access_rules]]
        domain = ["grafana.example.com"]
        resources = ["^/api/admin/.*$"]
        methods = ["GET", "POST"]
        subject = ["group:admins", "user:alice"]
        policy = "allow"

        # 4: everyone else is kept out of the admin API.
        [[access_rules]]
        domain = ["grafana.example.com"]
        resources = ["^/api/admin/.*$"]
        policy = "deny"

        # 5
        [[access_rules]]
        domain = ["*.apps.example.com"]
        subject = ["group:dev"]
        policy = "allow"

        # 6: written in mixed case with a trailing dot; compiled to `docs.example.com`.
        [[access_rules]]
        domain = ["public.example.com", "Docs.Example.COM."]
        policy = "bypass"

        # 7
        [[access_rules]]
        domain = ["grafana.example.com"]
        policy = "allow"

        # 8
        [[access_rules]]
        domain = ["secret.example.com"]
        policy = "deny"
    "#;

    fn rules(default: DefaultPolicy) -> AccessRules {
        AccessRules::compile(&parse(RULES), default).unwrap()
    }

    #[derive(Clone, Copy)]
    enum As {
        Anonymous,
        User(&'static str, &'static [&'static str]),
    }

    use As::{Anonymous, User};
    use Outcome::{Allow, Bypass, Deny, SignIn};

    const ANY: Option<DefaultPolicy> = None;
    const DENY: Option<DefaultPolicy> = Some(DefaultPolicy::Deny);
    const ALLOW: Option<DefaultPolicy> = Some(DefaultPolicy::Allow);

    /// Why, the default policy the row runs under (`ANY`: both), host, path, method, who,
    /// then the expected outcome and rule.
    type Row = (
        &'static str,
        Option<DefaultPolicy>,
        &'static str,
        &'static str,
        &'static str,
        As,
        Outcome,
        Option<usize>,
    );

    #[rustfmt::skip]
    const TABLE: &[Row] = &[
        ("health check bypasses anonymously", ANY, "grafana.example.com", "/healthz", "GET", Anonymous, Bypass, Some(1)),
        ("health check bypasses signed in", ANY, "grafana.example.com", "/healthz", "GET", User("bob", &[]), Bypass, Some(1)),
        ("methods listed in lower case match", ANY, "grafana.example.com", "/healthz", "HEAD", Anonymous, Bypass, Some(1)),
        ("wildcard matches at any depth", ANY, "a.b.example.com", "/healthz", "GET", Anonymous, Bypass, Some(1)),
        ("an unlisted method skips the rule", ANY, "grafana.example.com", "/healthz", "POST", Anonymous, SignIn, Some(7)),
        ("resources are anchored by the operator", ANY, "grafana.example.com", "/healthz/x", "GET", Anonymous, SignIn, Some(7)),
        ("methods compare ignoring ASCII case", ANY, "grafana.example.com", "/healthz", "get", Anonymous, Bypass, Some(1)),
        ("wildcard needs a label before the suffix", DENY, ".example.com", "/healthz", "GET", Anonymous, Deny, None),
        ("wildcard does not match the apex (deny)", DENY, "example.com", "/healthz", "GET", Anonymous, Deny, None),
        ("wildcard does not match the apex (allow)", ALLOW, "example.com", "/healthz", "GET", Anonymous, SignIn, None),
        ("wildcard needs a label boundary", DENY, "evilexample.com", "/healthz", "GET", Anonymous, Deny, None),
        ("wildcard is a suffix, not a prefix", DENY, "example.com.evil.net", "/healthz", "GET", Anonymous, Deny, None),
        ("allowed by user name", ANY, "grafana.example.com", "/api/admin/users", "GET", User("alice", &[]), Allow, Some(3)),
        ("user names ignore ASCII case", ANY, "grafana.example.com", "/api/admin/users", "GET", User("Alice", &[]), Allow, Some(3)),
        ("allowed by group", ANY, "grafana.example.com", "/api/admin/users", "POST", User("bob", &["staff", "admins"]), Allow, Some(3)),
        ("groups compare exactly", ANY, "grafana.example.com", "/api/admin/users", "GET", User("bob", &["Admins"]), Deny, Some(4)),
        ("a non-member falls through to the deny", ANY, "grafana.example.com", "/api/admin/users", "GET", User("bob", &[]), Deny, Some(4)),
        ("an admin with an unlisted method is denied", ANY, "grafana.example.com", "/api/admin/users", "DELETE", User("bob", &["admins"]), Deny, Some(4)),
        ("first match wins: deny before allow", ANY, "grafana.example.com", "/api/admin/users", "GET", User("mallory", &["admins"]), Deny, Some(2)),
        ("anonymous at a subject rule signs in", ANY, "grafana.example.com", "/api/admin/users", "GET", Anonymous, SignIn, Some(2)),
        ("paths are case-sensitive", ANY, "grafana.example.com", "/API/admin/users", "GET", User("bob", &[]), Allow, Some(7)),
        ("hosts ignore case and a trailing dot", ANY, "GRAFANA.example.com.", "/api/admin/users", "GET", User("bob", &[]), Deny, Some(4)),
        ("plain allow signed in", ANY, "grafana.example.com", "/d/home", "GET", User("bob", &[]), Allow, Some(7)),
        ("plain allow anonymous signs in", ANY, "grafana.example.com", "/d/home", "GET", Anonymous, SignIn, Some(7)),
        ("group rule on a deep wildcard", ANY, "ci.apps.example.com", "/", "GET", User("carol", &["dev"]), Allow, Some(5)),
        ("group rule, anonymous", ANY, "ci.apps.example.com", "/", "GET", Anonymous, SignIn, Some(5)),
        ("group rule, non-member, default deny", DENY, "ci.apps.example.com", "/", "GET", User("carol", &["ops"]), Deny, None),
        ("group rule, non-member, default allow", ALLOW, "ci.apps.example.com", "/", "GET", User("carol", &["ops"]), Allow, None),
        ("bypass on a second domain, compiled lower-case", ANY, "docs.example.com", "/guide", "GET", Anonymous, Bypass, Some(6)),
        ("bypass host in another case", ANY, "DOCS.Example.com.", "/guide", "GET", User("bob", &[]), Bypass, Some(6)),
        ("deny anonymous", ANY, "secret.example.com", "/", "GET", Anonymous, Deny, Some(8)),
        ("deny signed in", ANY, "secret.example.com", "/", "GET", User("alice", &["admins"]), Deny, Some(8)),
        ("no rule, default allow, signed in", ALLOW, "other.test", "/", "GET", User("bob", &[]), Allow, None),
        ("no rule, default allow, anonymous", ALLOW, "other.test", "/", "GET", Anonymous, SignIn, None),
        ("no rule, default deny, signed in", DENY, "other.test", "/", "GET", User("bob", &[]), Deny, None),
        ("no rule, default deny, anonymous", DENY, "other.test", "/", "GET", Anonymous, Deny, None),
    ];

    #[test]
    fn the_rule_table_decides_as_documented() {
        for &(why, default, host, path, method, who, outcome, rule) in TABLE {
            let defaults = match default {
                Some(default) => vec![default],
                None => vec![DefaultPolicy::Allow, DefaultPolicy::Deny],
            };
            for default in defaults {
                let rules = rules(default);
                let req = AccessRequest { host, path, method };
                let decision = match who {
                    Anonymous => rules.decide(&req, None),
                    User(username, names) => {
                        let groups: Vec<GroupName> =
                            names.iter().map(|g| GroupName::parse(g).unwrap()).collect();
                        rules.decide(
                            &req,
                            Some(&Who {
                                username,
                                groups: &groups,
                            }),
                        )
                    }
                };
                assert_eq!(
                    decision,
                    Decision { rule, outcome },
                    "{why}: {method} {host}{path} with default {default:?}"
                );
            }
        }
    }

    #[test]
    fn no_rules_is_the_default_policy() {
        let rules = AccessRules::compile(&[], DefaultPolicy::default()).unwrap();
        assert!(rules.is_empty());
        let req = AccessRequest {
            host: "app.example.com",
            path: "/",
            method: "GET",
        };
        let who = Who {
            username: "bob",
            groups: &[],
        };
        assert_eq!(
            rules.decide(&req, None),
            Decision {
                rule: None,
                outcome: SignIn
            }
        );
        assert_eq!(
            rules.decide(&req, Some(&who)),
            Decision {
                rule: None,
                outcome: Allow
            }
        );
    }

    #[test]
    fn an_unknown_key_is_refused() {
        // `method` for `methods` would otherwise silently widen the rule to every method.
        let error = from_toml::<Wrapper>(
            r#"
            [[access_rules]]
            domain = ["grafana.example.com"]
            method = ["GET"]
            policy = "allow"
            "#,
        )
        .unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains("unknown field") && error.contains("`method`"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_policy_is_refused_with_the_choices() {
        let error = from_toml::<Wrapper>(
            r#"
            [[access_rules]]
            domain = ["grafana.example.com"]
            policy = "one_factor"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("one_factor") && error.contains("two_factor"),
            "{error}"
        );
        assert!(
            error.contains("bypass") && error.contains("allow"),
            "{error}"
        );
    }

    #[test]
    fn default_policy_parses_lowercase() {
        #[derive(Deserialize)]
        struct Top {
            default_policy: DefaultPolicy,
        }
        let top: Top = from_toml(r#"default_policy = "deny""#).unwrap();
        assert_eq!(top.default_policy, DefaultPolicy::Deny);
        assert_eq!(DefaultPolicy::default(), DefaultPolicy::Allow);
    }

    #[test]
    fn config_round_trips_through_serde() {
        let configs = parse(RULES);
        let json = serde_json::to_value(&configs).unwrap();
        let back: Vec<AccessRuleConfig> = serde_json::from_value(json).unwrap();
        assert_eq!(back, configs);
    }

    #[test]
    fn a_bad_regex_names_the_rule_and_the_pattern() {
        let mut configs = parse(RULES);
        configs.truncate(2);
        let mut bad = rule(&["grafana.example.com"], RulePolicy::Allow);
        bad.resources = vec!["^(".to_owned()];
        configs.push(bad);
        let error = AccessRules::compile(&configs, DefaultPolicy::Deny).unwrap_err();
        assert_eq!(error.rule(), 3);
        assert!(matches!(
            error.kind(),
            RuleErrorKind::Regex { index: 0, .. }
        ));
        assert_eq!(
            error.to_string(),
            r#"access rule #3 (domain "grafana.example.com"): resources[0] "^(" is not a valid regex"#
        );
        // The pattern goes through a variable: clippy rightly refuses an invalid literal one.
        let pattern = configs[2].resources[0].as_str();
        let regex_message = Regex::new(pattern).unwrap_err().to_string();
        assert_eq!(chain(&error), format!("{error}: {regex_message}"));
    }

    #[test]
    fn a_huge_counted_repetition_is_refused_by_the_size_limit() {
        let mut config = rule(&["grafana.example.com"], RulePolicy::Deny);
        config.resources = vec!["^/ok$".to_owned(), "(a{1000}){1000}".to_owned()];
        let error = compile_one(config).unwrap_err();
        assert!(
            matches!(error.kind(), RuleErrorKind::RegexTooBig { index: 1, .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains(r#"resources[1] "(a{1000}){1000}" is too large"#)
        );
        assert!(chain(&error).contains("size limit"), "{}", chain(&error));
    }

    /// Would take longer than the universe's age in a backtracking engine; the regex crate's
    /// automata make it one linear scan. No timing assertion: a hang is the failure.
    #[test]
    fn a_catastrophic_backtracking_pattern_is_harmless() {
        let mut config = rule(&["grafana.example.com"], RulePolicy::Deny);
        config.resources = vec!["^(a+)+$".to_owned()];
        let rules = compile_one(config).unwrap();
        let path = format!("{}b", "a".repeat(100_000));
        let req = AccessRequest {
            host: "grafana.example.com",
            path: &path,
            method: "GET",
        };
        assert_eq!(
            rules.decide(&req, None),
            Decision {
                rule: None,
                outcome: Deny
            }
        );
        let path = "a".repeat(100_000);
        let req = AccessRequest { path: &path, ..req };
        assert_eq!(
            rules.decide(&req, None),
            Decision {
                rule: Some(1),
                outcome: Deny
            }
        );
    }

    #[test]
    fn bypass_with_a_subject_is_refused() {
        let mut config = rule(&["grafana.example.com"], RulePolicy::Bypass);
        config.subject = vec!["group:admins".to_owned()];
        let error = compile_one(config).unwrap_err();
        assert!(matches!(error.kind(), RuleErrorKind::BypassWithSubject));
        assert!(
            error
                .to_string()
                .contains("bypass lets anonymous requests through"),
            "{error}"
        );
    }

    #[test]
    fn domains_are_checked() {
        let refused: &[(&str, &str)] = &[
            ("*.com", "two labels"),
            ("*", "wildcard"),
            ("*.", "wildcard"),
            ("a.*.com", "wildcard"),
            ("*example.com", "wildcard"),
            ("**.example.com", "wildcard"),
            ("*.*.example.com", "wildcard"),
            ("https://x.com", "a host name, without scheme or port"),
            ("x.com:8443", "a host name, without scheme or port"),
            ("x.com/app", "a host name, without scheme or port"),
            ("[::1]", "a host name, without scheme or port"),
            ("", "not a host name"),
            (".", "not a host name"),
            ("a..b", "not a host name"),
            (".example.com", "not a host name"),
            ("x.com..", "not a host name"),
            ("my_app.example.com", "not a host name"),
            (" x.com", "not a host name"),
            ("bücher.example", "punycode"),
        ];
        for &(domain, hint) in refused {
            let error =
                compile_one(rule(&["ok.example.com", domain], RulePolicy::Allow)).unwrap_err();
            assert!(
                matches!(error.kind(), RuleErrorKind::Domain { index: 1, .. }),
                "{domain:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(message.starts_with(r#"access rule #1 (domain "ok.example.com"): domain[1] "#));
            assert!(message.contains(hint), "{domain:?}: {message}");
        }
        let error = compile_one(rule(&[], RulePolicy::Allow)).unwrap_err();
        assert!(matches!(error.kind(), RuleErrorKind::NoDomain));
        assert!(
            error
                .to_string()
                .starts_with("access rule #1 (no domain): domain is empty")
        );

        let accepted = [
            "x.com",
            "localhost",
            "xn--bcher-kva.example",
            "127.0.0.1",
            "*.a.b",
            "A-1.Example.COM.",
        ];
        for domain in accepted {
            assert!(
                compile_one(rule(&[domain], RulePolicy::Allow)).is_ok(),
                "{domain}"
            );
        }
    }

    #[test]
    fn methods_are_checked_and_upper_cased() {
        for bad in ["", "G3T", "GET ", "M-SEARCH", "ABCDEFGHIJKLMNOPQ"] {
            let mut config = rule(&["x.example.com"], RulePolicy::Allow);
            config.methods = vec!["GET".to_owned(), bad.to_owned()];
            let error = compile_one(config).unwrap_err();
            assert!(
                matches!(error.kind(), RuleErrorKind::Method { index: 1, .. }),
                "{bad:?}"
            );
        }
        let mut config = rule(&["x.example.com"], RulePolicy::Allow);
        config.methods = vec!["propfind".to_owned(), "ABCDEFGHIJKLMNOP".to_owned()];
        let rules = compile_one(config).unwrap();
        assert_eq!(
            rules.describe(1),
            "#1 domain=x.example.com methods=PROPFIND,ABCDEFGHIJKLMNOP policy=allow"
        );
    }

    #[test]
    fn subjects_are_checked() {
        let refused: &[(&str, &str)] = &[
            (
                "admins",
                "subject entries are `group:<name>` or `user:<name>`",
            ),
            ("Group:admins", "subject entries are"),
            ("role:admins", "subject entries are"),
            ("group:", "a group name"),
            ("group:-admins", "a group name"),
            ("group:ad mins", "a group name"),
            ("group:adm/ins", "a group name"),
            ("group:ädmins", "a group name"),
            ("user:", "a user name"),
            ("user:al ice", "a user name"),
            ("user:alice,bob", "a user name"),
            ("user:alice\n", "a user name"),
        ];
        for &(subject, hint) in refused {
            let mut config = rule(&["x.example.com"], RulePolicy::Allow);
            config.subject = vec![subject.to_owned()];
            let error = compile_one(config).unwrap_err();
            assert!(
                matches!(error.kind(), RuleErrorKind::Subject { index: 0, .. }),
                "{subject:?}: {error:?}"
            );
            assert!(error.to_string().contains(hint), "{subject:?}: {error}");
        }
        let long_group = format!("group:{}", "g".repeat(65));
        let long_user = format!("user:{}", "ü".repeat(65));
        for subject in [long_group.as_str(), long_user.as_str()] {
            let mut config = rule(&["x.example.com"], RulePolicy::Allow);
            config.subject = vec![subject.to_owned()];
            assert!(compile_one(config).is_err(), "{subject}");
        }
        let fine_group = format!("group:{}", "g".repeat(64));
        let fine_user = format!("user:{}", "ü".repeat(64));
        for subject in [
            "group:a",
            "group:9_dev-ops.eu",
            "user:alice@example.com",
            "user:Zoë",
            &fine_group,
            &fine_user,
        ] {
            let mut config = rule(&["x.example.com"], RulePolicy::Allow);
            config.subject = vec![subject.to_owned()];
            assert!(compile_one(config).is_ok(), "{subject}");
        }
    }

    #[test]
    fn describe_shows_a_rule_on_one_line() {
        let rules = rules(DefaultPolicy::Deny);
        assert_eq!(rules.len(), 8);
        assert_eq!(
            rules.describe(3),
            "#3 domain=grafana.example.com resources=^/api/admin/.*$ methods=GET,POST \
             subject=group:admins,user:alice policy=allow"
        );
        assert_eq!(
            rules.describe(1),
            "#1 domain=*.example.com resources=^/healthz$ methods=GET,HEAD policy=bypass"
        );
        assert_eq!(
            rules.describe(6),
            "#6 domain=public.example.com,docs.example.com policy=bypass"
        );
        assert_eq!(rules.describe(0), "#0 (no such rule)");
        assert_eq!(rules.describe(9), "#9 (no such rule)");

        let mut config = rule(&["x.example.com"], RulePolicy::Deny);
        config.resources = vec!["^/a{1,3}$".to_owned(), "^/b c$".to_owned()];
        assert_eq!(
            compile_one(config).unwrap().describe(1),
            r#"#1 domain=x.example.com resources="^/a{1,3}$","^/b c$" policy=deny"#
        );
    }

    /// The path the server matches: parsed by `url` as the server does, then normalised.
    fn server_path(raw: &str) -> String {
        let url = url::Url::parse(&format!("https://h.example.com{raw}")).unwrap();
        normalize_path(url.path())
    }

    #[test]
    fn path_tricks_normalise_to_the_path_the_app_reads() {
        let table = [
            ("/api/admin/x", "/api/admin/x"),
            ("/api/%61dmin/x", "/api/admin/x"),
            ("/api/%61%64%6D%69%6e/x", "/api/admin/x"),
            ("/api//admin/x", "/api/admin/x"),
            ("//api/admin/x", "/api/admin/x"),
            ("/api///admin//x", "/api/admin/x"),
            ("/API/admin", "/API/admin"),
            ("/api/admin/../admin/x", "/api/admin/x"),
            ("/api/./admin/x", "/api/admin/x"),
            ("/api/%2e%2e/api/admin/x", "/api/admin/x"),
            ("/x/%2E%2E/api/admin/x", "/api/admin/x"),
            ("/x/.%2e/api/admin/x", "/api/admin/x"),
            ("/api/%252e%252e/x", "/api/%252e%252e/x"),
            ("/api%2fadmin/x", "/api%2Fadmin/x"),
            ("/api/admin%3bx", "/api/admin%3Bx"),
            ("/a%7e/%5f%2D", "/a~/_-"),
            ("/100%/x", "/100%25/x"),
            ("/%6%61", "/%256a"),
            ("/api/admin/", "/api/admin/"),
            ("/api/admin/.", "/api/admin/"),
            ("/api/admin/..", "/api/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/%2e%2e/%2e%2e/etc", "/etc"),
            ("/", "/"),
            ("", "/"),
            ("/caf%C3%A9/ü", "/caf%C3%A9/%C3%BC"),
        ];
        for (raw, expected) in table {
            let got = server_path(raw);
            assert_eq!(got, expected, "{raw:?}");
            assert_eq!(normalize_path(&got), got, "idempotent for {raw:?}");
        }
        // Decoding can make dot segments the `url` parser never saw; they are resolved too.
        assert_eq!(normalize_path("/a/%2E%2E/b"), "/b");
        assert_eq!(normalize_path("/a/%2e/b/"), "/a/b/");
        assert_eq!(normalize_path("a/b"), "/a/b");
    }

    #[test]
    fn a_deny_rule_cannot_be_dodged_by_spelling_the_path_differently() {
        let rules = rules(DefaultPolicy::Allow);
        let who = Who {
            username: "bob",
            groups: &[],
        };
        for raw in [
            "/api/admin/x",
            "/api/%61dmin/x",
            "/api//admin/x",
            "//api/admin/x",
            "/api/admin/../admin/x",
            "/api/./admin/x",
            "/api/%2e%2e/api/admin/x",
            "/healthz/../api/admin/x",
        ] {
            let path = server_path(raw);
            let req = AccessRequest {
                host: "grafana.example.com",
                path: &path,
                method: "GET",
            };
            assert_eq!(
                rules.decide(&req, Some(&who)),
                Decision {
                    rule: Some(4),
                    outcome: Deny
                },
                "{raw:?} → {path:?}"
            );
        }
    }

    // Inputs over a small alphabet so the interesting collisions (escapes, dots, slashes)
    // are common rather than needles in a haystack.
    fn raw_path() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "/", "/", ".", "..", "%", "%2e", "%2E", "%2f", "%25", "%6", "%61", "1", "a", "A",
                "e", "~", "ü", "%c3%bc", "?", "#", "\\",
            ]),
            0..16,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn normalised_paths_are_canonical(raw in raw_path()) {
            let url = url::Url::parse(&format!("https://h.example.com/{raw}")).unwrap();
            let path = normalize_path(url.path());
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.contains("//"), "{path}");
            prop_assert!(
                path.split('/').all(|segment| segment != "." && segment != ".."),
                "{path}"
            );
            prop_assert_eq!(normalize_path(&path), path.clone());
            prop_assert_eq!(normalize_path(&raw), normalize_path(&normalize_path(&raw)));
        }

        /// The server skips the session lookup when the anonymous answer is Bypass; that is
        /// only sound if no signed-in user could get anything else.
        #[test]
        fn anonymous_bypass_is_bypass_for_everyone(
            configs in prop::collection::vec(rule_config(), 0..6),
            default in prop::sample::select(vec![DefaultPolicy::Allow, DefaultPolicy::Deny]),
            host in prop::sample::select(vec!["a.example.com", "b.a.example.com", "example.com", "other.test"]),
            path in prop::sample::select(vec!["/", "/healthz", "/api/admin/x", "/public/a"]),
            method in prop::sample::select(vec!["GET", "POST", "DELETE"]),
            username in prop::sample::select(vec!["alice", "bob", "carol"]),
            groups in prop::sample::subsequence(vec!["admins".to_owned(), "dev".to_owned()], 0..=2),
        ) {
            let rules = AccessRules::compile(&configs, default).unwrap();
            let req = AccessRequest { host, path, method };
            let anonymous = rules.decide(&req, None);
            if anonymous.outcome == Bypass {
                let groups: Vec<GroupName> =
                    groups.iter().map(|g| GroupName::parse(g).unwrap()).collect();
                let who = Who { username, groups: &groups };
                prop_assert_eq!(rules.decide(&req, Some(&who)), anonymous);
            }
        }
    }

    fn rule_config() -> impl Strategy<Value = AccessRuleConfig> {
        let strings = |values: &[&str]| {
            prop::sample::subsequence(
                values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>(),
                0..=values.len(),
            )
        };
        (
            prop::sample::subsequence(
                vec![
                    "a.example.com".to_owned(),
                    "*.example.com".to_owned(),
                    "other.test".to_owned(),
                ],
                1..=3,
            ),
            strings(&["^/healthz$", "^/api/", "admin", "^/public/.*$"]),
            strings(&["GET", "POST"]),
            strings(&["user:alice", "group:admins", "group:dev"]),
            prop::sample::select(vec![
                RulePolicy::Bypass,
                RulePolicy::Allow,
                RulePolicy::Deny,
            ]),
        )
            .prop_map(|(domain, resources, methods, subject, policy)| {
                // Bypass with a subject does not compile; keep the rule, drop its subject.
                let subject = if policy == RulePolicy::Bypass {
                    Vec::new()
                } else {
                    subject
                };
                AccessRuleConfig {
                    domain,
                    resources,
                    methods,
                    subject,
                    policy,
                }
            })
    }
}
