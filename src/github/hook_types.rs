//! The webhook side of the REST API as runnerhub sees it: where a hook lives, what it is set
//! to, and its deliveries (DESIGN §12). The calls are in `client/hooks.rs`.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::Secret;

/// The events runnerhub's webhook subscribes to: the ones it acts on (DESIGN §12).
pub const HOOK_EVENTS: [&str; 4] = ["workflow_job", "workflow_run", "push", "pull_request"];

/// Where a webhook is configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookOwner {
    /// `/repos/{owner}/{name}/hooks`, given as `owner/name`.
    Repository(String),
    /// `/orgs/{org}/hooks`.
    Organization(String),
    /// The GitHub App's own hook (`/app/hook/config`), one per App.
    App,
}

impl HookOwner {
    /// A repository given as `owner/name`; `None` unless it is exactly that (so that no
    /// path can escape the repository).
    pub fn repository(full_name: &str) -> Option<Self> {
        super::RunnerScope::repository(full_name).map(|_| HookOwner::Repository(full_name.into()))
    }

    /// An organization login; `None` when it could not be one.
    pub fn organization(login: &str) -> Option<Self> {
        let valid = !login.is_empty() && !login.contains(['/', '?', '#', ' ']) && login != "..";
        valid.then(|| HookOwner::Organization(login.into()))
    }

    /// The kind, as stored and as GitHub's `X-GitHub-Hook-Installation-Target-Type` says it.
    pub fn kind(&self) -> &'static str {
        match self {
            HookOwner::Repository(_) => "repository",
            HookOwner::Organization(_) => "organization",
            HookOwner::App => "integration",
        }
    }

    /// The repository or organization name; empty for the App.
    pub fn name(&self) -> &str {
        match self {
            HookOwner::Repository(name) | HookOwner::Organization(name) => name,
            HookOwner::App => "",
        }
    }

    /// The inverse of [`HookOwner::kind`] and [`HookOwner::name`].
    pub fn from_parts(kind: &str, name: &str) -> Option<Self> {
        match kind {
            "repository" => Self::repository(name),
            "organization" => Self::organization(name),
            "integration" | "app" => Some(HookOwner::App),
            _ => None,
        }
    }

    /// `repos/o/r/hooks` or `orgs/o/hooks`; `None` for the App (it has one hook, no list).
    pub(crate) fn hooks_path(&self) -> Option<String> {
        match self {
            HookOwner::Repository(full) => Some(format!("repos/{full}/hooks")),
            HookOwner::Organization(org) => Some(format!("orgs/{org}/hooks")),
            HookOwner::App => None,
        }
    }

    /// The deliveries of one hook: `…/hooks/{id}/deliveries`, or `app/hook/deliveries`.
    pub(crate) fn deliveries_path(&self, hook_id: i64) -> String {
        match self.hooks_path() {
            Some(hooks) => format!("{hooks}/{hook_id}/deliveries"),
            None => "app/hook/deliveries".to_owned(),
        }
    }
}

impl std::fmt::Display for HookOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookOwner::Repository(full) => write!(f, "repository {full}"),
            HookOwner::Organization(org) => write!(f, "organization {org}"),
            HookOwner::App => write!(f, "the GitHub App's hook"),
        }
    }
}

/// What runnerhub sets on a hook.
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// The payload URL (`…/api/webhooks/github`).
    pub url: String,
    /// The webhook secret (first of `github.webhook_secrets`).
    pub secret: Secret,
    /// Subscribed events.
    pub events: Vec<String>,
}

/// A repository or organization hook as GitHub lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub id: i64,
    pub active: bool,
    pub events: Vec<String>,
    /// `config.url`; empty when GitHub hides it.
    pub url: String,
    /// `config.content_type` (`json` or `form`).
    pub content_type: String,
    /// Whether GitHub reports a secret set (`config.secret` is `********` then).
    pub has_secret: bool,
    /// `last_response.code`, when GitHub has delivered anything lately.
    pub last_response_code: Option<u16>,
    /// `last_response.status` (`active`, `unused`, …).
    pub last_response_status: Option<String>,
}

/// The App's hook configuration (`GET /app/hook/config`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AppHookConfig {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub insecure_ssl: Option<String>,
    /// `********` when set.
    #[serde(default)]
    pub secret: Option<String>,
}

/// What `GET /app` says about the App that matters here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AppInfo {
    #[serde(default)]
    pub slug: Option<String>,
    /// The events the App subscribes to (set in its settings, not through the API).
    #[serde(default)]
    pub events: Vec<String>,
}

/// One delivery attempt as `…/deliveries` lists it (each attempt has its own `id`; a
/// redelivery keeps the `guid`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HookDelivery {
    pub id: i64,
    pub guid: String,
    pub delivered_at: DateTime<Utc>,
    #[serde(default)]
    pub redelivery: bool,
    /// `OK`, an HTTP reason, or GitHub's description of a failure (`failed to connect`, …).
    #[serde(default)]
    pub status: String,
    /// The receiver's HTTP status; 0 when there was no answer.
    #[serde(default)]
    pub status_code: u16,
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub installation_id: Option<i64>,
    #[serde(default)]
    pub repository_id: Option<i64>,
}

impl HookDelivery {
    /// GitHub counts 2xx as delivered; anything else (no answer included) failed.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// `config` of a hook in GitHub's answers.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireHookConfig {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WireLastResponse {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub status: Option<String>,
}

/// A hook in GitHub's answers.
#[derive(Debug, Deserialize)]
pub(crate) struct WireHook {
    pub id: i64,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub config: WireHookConfig,
    #[serde(default)]
    pub last_response: Option<WireLastResponse>,
}

impl From<WireHook> for Hook {
    fn from(w: WireHook) -> Self {
        let last = w.last_response.unwrap_or_default();
        Hook {
            id: w.id,
            active: w.active,
            events: w.events,
            url: w.config.url.unwrap_or_default(),
            content_type: w.config.content_type.unwrap_or_default(),
            has_secret: w.config.secret.is_some_and(|s| !s.is_empty()),
            last_response_code: last.code,
            last_response_status: last.status,
        }
    }
}

/// The `cursor` of the `rel="next"` link of a `Link` header, if there is one.
pub(crate) fn next_cursor(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") {
            return None;
        }
        let url = target.trim().trim_start_matches('<').trim_end_matches('>');
        let query = url.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "cursor")
            .map(|(_, v)| v.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_cursor_reads_the_next_link_only() {
        let link = "<https://api.github.com/repos/o/r/hooks/1/deliveries?per_page=100&cursor=v1_9>; rel=\"next\", \
                    <https://api.github.com/repos/o/r/hooks/1/deliveries?per_page=100>; rel=\"first\"";
        assert_eq!(next_cursor(link).as_deref(), Some("v1_9"));
        assert_eq!(next_cursor("<https://x/y?cursor=a>; rel=\"prev\""), None);
    }

    #[test]
    fn owners_round_trip_and_refuse_paths() {
        for owner in [
            HookOwner::repository("acme/api").unwrap(),
            HookOwner::organization("acme").unwrap(),
            HookOwner::App,
        ] {
            assert_eq!(
                HookOwner::from_parts(owner.kind(), owner.name()),
                Some(owner.clone())
            );
        }
        assert_eq!(HookOwner::repository("acme/../x"), None);
        assert_eq!(HookOwner::organization("a/b"), None);
        assert_eq!(
            HookOwner::repository("acme/api")
                .unwrap()
                .deliveries_path(7),
            "repos/acme/api/hooks/7/deliveries"
        );
        assert_eq!(HookOwner::App.deliveries_path(7), "app/hook/deliveries");
    }
}
