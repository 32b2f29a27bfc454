//! What a `runnerhub hooks` command is about: the hooks' owners, the payload URL and the
//! secret, from the flags and the configuration, with errors that say what is missing.

use anyhow::{Context, bail};

use super::WEBHOOK_PATH;
use crate::config::{Config, Registration, Secret};
use crate::github::{GithubError, HookOwner};

/// Where the hooks are: `--repo` (repeatable), `--org`, `--app`, or by default from
/// `github.registration` (the organization, or the pools' repositories).
pub fn owners(
    config: &Config,
    repos: &[String],
    org: Option<&str>,
    app: bool,
) -> anyhow::Result<Vec<HookOwner>> {
    if app {
        return Ok(vec![HookOwner::App]);
    }
    if let Some(org) = org {
        let owner = HookOwner::organization(org)
            .with_context(|| format!("--org `{org}` is not an organization login"))?;
        return Ok(vec![owner]);
    }
    let mut names: Vec<String> = repos.to_vec();
    if names.is_empty() {
        match config.github.registration {
            Registration::Organization => {
                let org = config.github.organization.as_deref().unwrap_or_default();
                let owner = HookOwner::organization(org).with_context(|| {
                    format!("github.organization `{org}` is not an organization login")
                })?;
                return Ok(vec![owner]);
            }
            Registration::Repository => {
                names = config
                    .pools
                    .iter()
                    .filter_map(|p| p.repository.clone())
                    .collect();
                names.sort();
                names.dedup();
            }
        }
    }
    if names.is_empty() {
        bail!(
            "which repository? pass --repo OWNER/NAME (repeatable), --org NAME or --app \
             (github.registration is \"repository\" and no pool names a repository)"
        );
    }
    names
        .iter()
        .map(|name| {
            HookOwner::repository(name)
                .with_context(|| format!("--repo `{name}` is not OWNER/NAME"))
        })
        .collect()
}

/// The payload URL: `--url`, else `server.public_url`; a URL without a path gets the webhook
/// endpoint's (`https://ci.example.com` → `https://ci.example.com/api/webhooks/github`).
pub fn payload_url(explicit: Option<&str>, config: &Config) -> anyhow::Result<String> {
    let (raw, origin) = match (explicit, config.server.public_url.as_deref()) {
        (Some(url), _) => (url, "--url"),
        (None, Some(url)) => (url, "server.public_url"),
        (None, None) => bail!(
            "no webhook URL known: pass --url https://HOST{WEBHOOK_PATH} or set \
             server.public_url (the address GitHub reaches this daemon at)"
        ),
    };
    let mut url =
        reqwest::Url::parse(raw).with_context(|| format!("{origin} `{raw}` is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        bail!("{origin} `{raw}` must be an http:// or https:// URL with a host");
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path(WEBHOOK_PATH);
    }
    Ok(url.to_string())
}

/// The secret GitHub signs with: the first of `github.webhook_secrets`.
pub fn secret(config: &Config) -> anyhow::Result<Secret> {
    config.github.webhook_secrets.first().cloned().context(
        "no webhook secret: set GITHUB_WEBHOOK_SECRET (or github.webhook_secrets), so that \
         GitHub signs its deliveries and runnerhub can verify them",
    )
}

/// Whether a hook's URL is `ours` (GitHub keeps the URL as given; a trailing slash aside).
pub fn same_url(theirs: &str, ours: &str) -> bool {
    theirs.trim_end_matches('/') == ours.trim_end_matches('/')
}

/// A GitHub error of a hook call, said in terms of what to do about it.
pub fn explain(owner: &HookOwner, error: GithubError) -> anyhow::Error {
    let rights = match owner {
        HookOwner::Repository(_) => {
            "admin rights on the repository (classic token scope admin:repo_hook, or the \
             fine-grained permission \"Webhooks: read and write\")"
        }
        HookOwner::Organization(_) => {
            "owner rights on the organization (classic token scope admin:org_hook, or the \
             fine-grained organization permission \"Webhooks: read and write\")"
        }
        HookOwner::App => "the App's own credentials (github.app_id, github.private_key_path)",
    };
    match error {
        GithubError::NotFound(_) => match owner {
            HookOwner::App => anyhow::anyhow!("GitHub does not know this App (404)"),
            _ => anyhow::anyhow!(
                "{owner} was not found at GitHub, or the credentials may not manage its \
                 webhooks: GitHub answers 404 for both. Check the name, and that the token has \
                 {rights}"
            ),
        },
        GithubError::Unauthorized(message) => anyhow::anyhow!(
            "GitHub refused to let these credentials manage the webhooks of {owner} \
             ({message}): they need {rights}"
        ),
        GithubError::Validation(message) => {
            anyhow::anyhow!("GitHub refused the webhook settings for {owner}: {message}")
        }
        other => anyhow::Error::new(other).context(format!("{owner}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let env = [("GITHUB_WEBHOOK_SECRET".to_owned(), "s".to_owned())];
        Config::from_toml_with_env(text, std::path::Path::new("t.toml"), &env).unwrap()
    }

    #[test]
    fn url_from_flag_or_public_url_with_the_webhook_path() {
        let none = config("");
        let err = payload_url(None, &none).unwrap_err().to_string();
        assert!(err.contains("no webhook URL known"), "{err}");
        assert_eq!(
            payload_url(Some("https://ci.example.com"), &none).unwrap(),
            "https://ci.example.com/api/webhooks/github"
        );
        assert_eq!(
            payload_url(Some("https://ci.example.com/hooks/x"), &none).unwrap(),
            "https://ci.example.com/hooks/x"
        );
        let public = config("[server]\npublic_url = \"http://127.0.0.1:3000/\"");
        assert_eq!(
            payload_url(None, &public).unwrap(),
            "http://127.0.0.1:3000/api/webhooks/github"
        );
        assert!(payload_url(Some("ftp://x"), &none).is_err());
    }

    #[test]
    fn owners_default_from_registration() {
        let org = config("[github]\nregistration = \"organization\"\norganization = \"acme\"");
        assert_eq!(
            owners(&org, &[], None, false).unwrap(),
            vec![HookOwner::Organization("acme".into())]
        );
        let repo = config("");
        let err = owners(&repo, &[], None, false).unwrap_err().to_string();
        assert!(err.contains("--repo OWNER/NAME"), "{err}");
        assert_eq!(
            owners(&repo, &["a/b".into(), "a/c".into()], None, false)
                .unwrap()
                .len(),
            2
        );
        assert!(owners(&repo, &["nope".into()], None, false).is_err());
        assert_eq!(
            owners(&repo, &[], None, true).unwrap(),
            vec![HookOwner::App]
        );
    }
}
