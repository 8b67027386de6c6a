//! OpenID providers as configured: `[[oidc]]` tables in the configuration file.
//!
//! A list of tables does not fit the `settings!` macro, whose every setting is also one
//! `CLOAKROOM_*` variable and one flag: a provider is several values that only mean something
//! together, and there may be any number of them. So providers are read from the file only,
//! beside the macro (the `lists` section of `settings!` adds the field to `RawConfig`), and the
//! one value that should not sit in a file, the client secret, may instead come from
//! `CLOAKROOM_OIDC_<ID>_CLIENT_SECRET` (`<ID>` upper-cased, `-` as `_`) or from a file named by
//! `client_secret_file` (a systemd credential, a Kubernetes secret).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The scopes asked for when `scopes` is not given.
pub(crate) const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// One `[[oidc]]` table as the file spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Names the provider in URLs (`/oidc/{id}/login`): `[a-z0-9-]+`.
    pub id: String,
    /// A known provider, which fills in `issuer` and `display_name`: `google`, `gitlab`, or
    /// `microsoft` (with `tenant`). `github` is refused: GitHub is OAuth 2.0, not OpenID
    /// Connect, and has no ID token to verify.
    #[serde(default)]
    pub preset: Option<String>,
    /// The Microsoft Entra tenant id (a GUID), for `preset = "microsoft"`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The issuer URL; discovery is fetched from `<issuer>/.well-known/openid-configuration`.
    /// Required unless a preset gives it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The client id the provider gave this server.
    pub client_id: String,
    /// A file holding the client secret (else `CLOAKROOM_OIDC_<ID>_CLIENT_SECRET`; with
    /// neither, the client is public and relies on PKCE alone).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes to ask for; must include `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The name the login page's button and the devices page show (default: the id).
    #[serde(default)]
    pub display_name: Option<String>,
}

fn default_scopes() -> Vec<String> {
    DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()
}

/// A client secret: never printed, compared by no one (it is only sent to the provider).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret, to hand to the token request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// A checked provider.
#[derive(Debug, Clone)]
pub struct OidcProvider {
    /// `[a-z0-9-]+`, at most 32 characters.
    pub id: String,
    /// The issuer, exactly as configured (ID tokens' `iss` must equal it).
    pub issuer: url::Url,
    /// The client id.
    pub client_id: String,
    /// The client secret, if the client is confidential.
    pub client_secret: Option<ClientSecret>,
    /// Scopes asked for (`openid` among them).
    pub scopes: Vec<String>,
    /// What the pages call it.
    pub display_name: String,
}

/// Why a `[[oidc]]` table was refused; the caller adds the table's place.
pub(crate) type Problem = String;

/// The environment variable that may hold `id`'s client secret.
pub(crate) fn secret_variable(id: &str) -> String {
    format!(
        "CLOAKROOM_OIDC_{}_CLIENT_SECRET",
        id.to_ascii_uppercase().replace('-', "_")
    )
}

/// Whether `rest` (a `CLOAKROOM_` variable's name without the prefix) is a provider's client
/// secret variable, so the unknown-variable warning leaves it alone.
pub(crate) fn is_secret_variable(rest: &str) -> bool {
    rest.strip_prefix("OIDC_")
        .and_then(|r| r.strip_suffix("_CLIENT_SECRET"))
        .is_some_and(|id| {
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// A preset's issuer and display name.
fn preset(id: &str, name: &str, tenant: Option<&str>) -> Result<(String, &'static str), Problem> {
    match name {
        "google" => Ok(("https://accounts.google.com".into(), "Google")),
        "gitlab" => Ok(("https://gitlab.com".into(), "GitLab")),
        "microsoft" => {
            let tenant = tenant.ok_or_else(|| {
                format!("{id}: preset \"microsoft\" needs tenant (the directory's tenant id)")
            })?;
            // The multi-tenant endpoints issue ID tokens whose `iss` names each user's own
            // tenant, which no fixed issuer matches: one tenant per provider table.
            if matches!(tenant, "common" | "organizations" | "consumers")
                || tenant.is_empty()
                || !tenant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(format!(
                    "{id}: tenant {tenant:?} must be one directory's tenant id (not \
                     \"common\", \"organizations\" or \"consumers\": their ID tokens name \
                     each user's own tenant as issuer)"
                ));
            }
            Ok((
                format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                "Microsoft",
            ))
        }
        "github" => Err(format!(
            "{id}: GitHub signs in with OAuth 2.0, not OpenID Connect: there is no ID token to \
             verify, so it is not supported (see the README)"
        )),
        other => Err(format!(
            "{id}: unknown preset {other:?} (known: google, gitlab, microsoft)"
        )),
    }
}

impl OidcProviderConfig {
    /// Checks one provider; `env` looks a variable up (the process environment, or a test's).
    pub(crate) fn checked(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<OidcProvider, Problem> {
        let id = &self.id;
        if id.is_empty()
            || id.len() > 32
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "id {id:?} must be 1 to 32 of a-z, 0-9 and '-' (it appears in URLs)"
            ));
        }
        let (issuer_text, preset_name) = match (self.preset.as_deref(), self.issuer.as_deref()) {
            (Some(p), given) => {
                let (issuer, name) = preset(id, p, self.tenant.as_deref())?;
                if given.is_some_and(|g| g.trim_end_matches('/') != issuer) {
                    return Err(format!(
                        "{id}: issuer differs from preset {p:?}'s ({issuer}); keep one of them"
                    ));
                }
                (issuer, Some(name))
            }
            (None, Some(issuer)) => (issuer.to_owned(), None),
            (None, None) => {
                return Err(format!(
                    "{id}: issuer is missing (or name a preset: google, gitlab, microsoft)"
                ));
            }
        };
        if self.tenant.is_some() && self.preset.as_deref() != Some("microsoft") {
            return Err(format!("{id}: tenant is only for preset = \"microsoft\""));
        }
        let issuer = url::Url::parse(&issuer_text)
            .map_err(|e| format!("{id}: issuer {issuer_text:?}: {e}"))?;
        let loopback = issuer
            .host()
            .is_some_and(|h| crate::config::is_loopback_host(&h));
        // An issuer over plain http would let anyone on the path swap the provider's keys
        // and sign in as anyone; loopback is allowed for tests and development.
        if !(issuer.scheme() == "https" || issuer.scheme() == "http" && loopback)
            || issuer.host().is_none()
            || !issuer.username().is_empty()
            || issuer.password().is_some()
            || issuer.query().is_some()
            || issuer.fragment().is_some()
        {
            return Err(format!(
                "{id}: issuer {:?} must be an https:// URL (http:// only on loopback) with no \
                 credentials, query or fragment",
                issuer_text
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(format!("{id}: client_id is empty"));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(format!("{id}: scopes must include \"openid\""));
        }
        if let Some(bad) = self
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.bytes().any(|b| b <= b' ' || b == b'"' || b == b'\\'))
        {
            return Err(format!("{id}: scope {bad:?} is not a scope token"));
        }
        let variable = secret_variable(id);
        let from_env = env(&variable).filter(|s| !s.is_empty());
        let client_secret = match (&self.client_secret_file, from_env) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{id}: both client_secret_file and {variable} are set; keep one"
                ));
            }
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{id}: client_secret_file {}: {e}", path.display()))?;
                // A trailing newline is how editors and `echo` write files, never part of a
                // secret.
                let secret = text.trim_end_matches(['\r', '\n']);
                if secret.is_empty() {
                    return Err(format!(
                        "{id}: client_secret_file {} is empty",
                        path.display()
                    ));
                }
                Some(ClientSecret(secret.to_owned()))
            }
            (None, Some(secret)) => Some(ClientSecret(secret)),
            (None, None) => None,
        };
        let display_name = self
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .or(preset_name)
            .unwrap_or(id)
            .to_owned();
        if display_name.chars().count() > 64 || display_name.chars().any(char::is_control) {
            return Err(format!(
                "{id}: display_name must be at most 64 characters, none of them control \
                 characters"
            ));
        }
        Ok(OidcProvider {
            id: id.clone(),
            issuer,
            client_id: self.client_id.clone(),
            client_secret,
            scopes: self.scopes.clone(),
            display_name,
        })
    }
}

/// Checks every provider, and that no two share an id.
pub(crate) fn check_all(
    providers: &[OidcProviderConfig],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<OidcProvider>, Problem> {
    let mut checked: Vec<OidcProvider> = Vec::with_capacity(providers.len());
    for p in providers {
        let p = p.checked(env)?;
        if checked.iter().any(|c| c.id == p.id) {
            return Err(format!("two providers have the id {:?}", p.id));
        }
        checked.push(p);
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(issuer: &str) -> OidcProviderConfig {
        OidcProviderConfig {
            id: "google".into(),
            preset: None,
            tenant: None,
            issuer: Some(issuer.into()),
            client_id: "client".into(),
            client_secret_file: None,
            scopes: default_scopes(),
            display_name: Some("Google".into()),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn presets_fill_in_the_issuer_and_name() {
        let with = |preset: &str, tenant: Option<&str>| OidcProviderConfig {
            preset: Some(preset.into()),
            tenant: tenant.map(Into::into),
            issuer: None,
            display_name: None,
            ..provider("https://unused.example")
        };
        let g = with("google", None).checked(&no_env).unwrap();
        assert_eq!(g.issuer.as_str(), "https://accounts.google.com/");
        assert_eq!(g.display_name, "Google");
        let m = with("microsoft", Some("9188040d-6c67-4c5b-b112-36a304b66dad"))
            .checked(&no_env)
            .unwrap();
        assert_eq!(
            m.issuer.as_str(),
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
        );
        assert_eq!(
            with("gitlab", None).checked(&no_env).unwrap().display_name,
            "GitLab"
        );
        for (bad, says) in [
            (with("github", None), "OAuth 2.0, not OpenID Connect"),
            (with("microsoft", None), "needs tenant"),
            (with("microsoft", Some("common")), "not \"common\""),
            (with("yahoo", None), "unknown preset"),
            (with("google", Some("x")), "tenant is only for"),
        ] {
            let e = bad.checked(&no_env).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        let mut clash = with("google", None);
        clash.issuer = Some("https://evil.example".into());
        assert!(
            clash
                .checked(&no_env)
                .unwrap_err()
                .contains("differs from preset")
        );
        let mut none = with("google", None);
        none.preset = None;
        assert!(
            none.checked(&no_env)
                .unwrap_err()
                .contains("issuer is missing")
        );
    }

    #[test]
    fn issuers_are_https_except_on_loopback() {
        for ok in [
            "https://accounts.google.com",
            "http://127.0.0.1:4000",
            "http://localhost:4000/tenant",
            "http://[::1]:4000",
        ] {
            provider(ok).checked(&no_env).unwrap();
        }
        for bad in [
            "http://accounts.example.com",
            "http://10.0.0.1",
            "https://user:pw@accounts.example.com",
            "https://accounts.example.com/?tenant=1",
            "ftp://accounts.example.com",
            "accounts.example.com",
        ] {
            assert!(provider(bad).checked(&no_env).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_url_safe_and_unique() {
        for bad in ["", "Google", "goo gle", "g/o", "g_o", &"a".repeat(33)] {
            let mut p = provider("https://accounts.google.com");
            p.id = bad.to_owned();
            assert!(p.checked(&no_env).is_err(), "{bad:?}");
        }
        let p = provider("https://accounts.google.com");
        let e = check_all(&[p.clone(), p], &no_env).unwrap_err();
        assert!(e.contains("two providers"), "{e}");
    }

    #[test]
    fn the_secret_comes_from_a_file_or_the_environment_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut p = provider("https://accounts.google.com");
        p.id = "my-idp".into();
        p.client_secret_file = Some(file);
        let checked = p.checked(&no_env).unwrap();
        assert_eq!(checked.client_secret.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(
            format!("{:?}", checked.client_secret),
            "Some(ClientSecret([redacted]))"
        );
        let env = |name: &str| (name == "CLOAKROOM_OIDC_MY_IDP_CLIENT_SECRET").then(|| "e".into());
        assert!(p.checked(&env).unwrap_err().contains("keep one"));
        p.client_secret_file = None;
        assert_eq!(
            p.checked(&env).unwrap().client_secret.unwrap().expose(),
            "e"
        );
        assert!(is_secret_variable("OIDC_MY_IDP_CLIENT_SECRET"));
        assert!(!is_secret_variable("OIDC__CLIENT"));
    }

    #[test]
    fn scopes_must_include_openid() {
        let mut p = provider("https://accounts.google.com");
        p.scopes = vec!["email".into()];
        assert!(p.checked(&no_env).unwrap_err().contains("openid"));
    }
}
