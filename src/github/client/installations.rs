//! Which installation of the GitHub App serves a call. An App is often installed on several
//! organizations (or users); each installation has its own token, valid for that account's
//! repositories only. A call about `repos/{owner}/…` or `orgs/{owner}/…` uses the installation
//! on `owner`, from `GET /app/installations` (listed with the App's JWT, kept for
//! [`INDEX_TTL`]); that is the installation a delivery from there names in `installation.id`.
//! `github.installation_id`, when set, serves every call instead (one installation, as before:
//! leave it unset for an App on several organizations).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::Method;
use serde::Deserialize;

use super::{GithubClient, decode, error_for};
use crate::config::Secret;
use crate::github::GithubError;
use crate::github::auth::{AppAuth, InstallationIndex};

/// How long the list of installations is trusted (an App newly installed somewhere is found
/// at the latest after this).
const INDEX_TTL: Duration = Duration::from_secs(600);
/// An owner missing from the list triggers a new listing at most this often.
const MISSING_OWNER_RELIST: Duration = Duration::from_secs(60);
/// Installations per page (GitHub's maximum) and pages read at most.
const PER_PAGE: usize = 100;
const MAX_PAGES: u32 = 20;

#[derive(Deserialize)]
struct WireInstallation {
    id: u64,
    account: Option<WireAccount>,
}

#[derive(Deserialize)]
struct WireAccount {
    login: String,
}

/// The owner a REST path is about: `repos/{owner}/…` or `orgs/{owner}/…`.
pub(crate) fn owner_of(path: &str) -> Option<&str> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("repos" | "orgs"), Some(owner)) if !owner.is_empty() => Some(owner),
        _ => None,
    }
}

impl GithubClient {
    /// The installation whose token a call on `path` needs.
    pub(super) async fn installation_for(
        &self,
        app: &AppAuth,
        path: &str,
    ) -> Result<u64, GithubError> {
        if let Some(configured) = app.installation_id {
            return Ok(configured);
        }
        let Some(owner) = owner_of(path) else {
            return Err(GithubError::Unauthorized(
                "this call is about no repository or organization, so it needs \
                 github.installation_id"
                    .into(),
            ));
        };
        let owner = owner.to_ascii_lowercase();
        // Held across the listing: concurrent callers share one.
        let mut index = app.installations.lock().await;
        let stale = index.as_ref().is_none_or(|i| {
            let age = i.listed_at.elapsed();
            age > INDEX_TTL || (!i.by_account.contains_key(&owner) && age > MISSING_OWNER_RELIST)
        });
        if stale {
            let by_account = self.list_installations(app).await?;
            *index = Some(InstallationIndex {
                by_account,
                listed_at: Instant::now(),
            });
        }
        let found = index
            .as_ref()
            .and_then(|i| i.by_account.get(&owner).copied());
        found.ok_or_else(|| {
            GithubError::Unauthorized(format!(
                "the GitHub App is not installed on `{owner}` (GET /app/installations does not \
                 list it): install it there"
            ))
        })
    }

    /// `GET /app/installations`: account login (lowercase) → installation id.
    async fn list_installations(&self, app: &AppAuth) -> Result<HashMap<String, u64>, GithubError> {
        let jwt = app.jwt(Utc::now())?;
        let bearer = Secret::new(format!("Bearer {}", jwt.expose()));
        let mut by_account = HashMap::new();
        for page in 1..=MAX_PAGES {
            let query = [
                ("per_page", PER_PAGE.to_string()),
                ("page", page.to_string()),
            ];
            let resp = self
                .call_with(
                    "list_app_installations",
                    Method::GET,
                    "app/installations",
                    &query,
                    None,
                    &bearer,
                )
                .await?;
            if resp.status != 200 {
                return Err(error_for(&resp));
            }
            let list: Vec<WireInstallation> = decode(&resp)?;
            let got = list.len();
            for installation in list {
                if let Some(account) = installation.account {
                    by_account.insert(account.login.to_ascii_lowercase(), installation.id);
                }
            }
            if got < PER_PAGE {
                break;
            }
        }
        tracing::debug!(
            installations = by_account.len(),
            "listed the GitHub App's installations"
        );
        Ok(by_account)
    }
}

#[cfg(test)]
mod tests {
    use super::owner_of;

    #[test]
    fn owner_of_repository_and_organization_paths() {
        assert_eq!(owner_of("repos/acme/api/actions/runners"), Some("acme"));
        assert_eq!(
            owner_of("orgs/beta/actions/runners/generate-jitconfig"),
            Some("beta")
        );
        assert_eq!(owner_of("app/hook/config"), None);
        assert_eq!(owner_of("repos//x"), None);
    }
}
