//! The webhook calls of [`GithubClient`]: repository and organization hooks (with the
//! token), the App's hook and its deliveries (with the App's JWT), redelivery.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::json;

use super::{Auth, GithubClient, RawResponse, decode, error_for};
use crate::config::Secret;
use crate::github::GithubError;
use crate::github::hook_types::*;

/// Hooks per page; GitHub's maximum.
const HOOKS_PER_PAGE: usize = 100;
/// A repository or organization has at most 20 hooks per event; a few pages is plenty.
const MAX_HOOK_PAGES: u32 = 5;
/// Deliveries per page; GitHub's maximum.
const DELIVERIES_PER_PAGE: usize = 100;

impl GithubClient {
    /// Whether the client holds GitHub App credentials (needed for the App's hook).
    pub fn has_app_credentials(&self) -> bool {
        matches!(self.auth, Auth::App(_))
    }

    /// A call authenticated as the App itself (JWT), as `/app/*` requires.
    async fn app_request(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, GithubError> {
        let Auth::App(app) = &self.auth else {
            return Err(GithubError::Unauthorized(
                "the App's hook needs GitHub App credentials (github.app_id, \
                 github.installation_id, github.private_key_path); a token cannot manage it"
                    .into(),
            ));
        };
        let jwt = app.jwt(Utc::now())?;
        let bearer = Secret::new(format!("Bearer {}", jwt.expose()));
        self.call_with(endpoint, method, path, query, body, &bearer)
            .await
    }

    /// The call for `owner`: the App's hook as the App, the others with the regular credentials.
    async fn hook_request(
        &self,
        owner: &HookOwner,
        endpoint: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, GithubError> {
        match owner {
            HookOwner::App => self.app_request(endpoint, method, path, query, body).await,
            _ => self.request(endpoint, method, path, query, body).await,
        }
    }

    /// Every hook of a repository or organization.
    pub async fn list_hooks(&self, owner: &HookOwner) -> Result<Vec<Hook>, GithubError> {
        let path = hooks_path(owner)?;
        let mut hooks = Vec::new();
        for page in 1..=MAX_HOOK_PAGES {
            let query = [
                ("per_page", HOOKS_PER_PAGE.to_string()),
                ("page", page.to_string()),
            ];
            let resp = self
                .request("list_hooks", Method::GET, &path, &query, None)
                .await?;
            if resp.status != 200 {
                return Err(error_for(&resp));
            }
            let wire: Vec<WireHook> = decode(&resp)?;
            let got = wire.len();
            hooks.extend(wire.into_iter().map(Hook::from));
            if got < HOOKS_PER_PAGE {
                break;
            }
        }
        Ok(hooks)
    }

    /// `POST …/hooks`: a new active `web` hook.
    pub async fn create_hook(
        &self,
        owner: &HookOwner,
        settings: &HookSettings,
    ) -> Result<Hook, GithubError> {
        let path = hooks_path(owner)?;
        let mut body = hook_body(settings);
        body["name"] = json!("web");
        let resp = self
            .request("create_hook", Method::POST, &path, &[], Some(&body))
            .await?;
        if resp.status != 201 && resp.status != 200 {
            return Err(error_for(&resp));
        }
        Ok(decode::<WireHook>(&resp)?.into())
    }

    /// `PATCH …/hooks/{id}`: events, secret, content type and URL set again; active.
    pub async fn update_hook(
        &self,
        owner: &HookOwner,
        hook_id: i64,
        settings: &HookSettings,
    ) -> Result<Hook, GithubError> {
        let path = format!("{}/{hook_id}", hooks_path(owner)?);
        let body = hook_body(settings);
        let resp = self
            .request("update_hook", Method::PATCH, &path, &[], Some(&body))
            .await?;
        if resp.status != 200 {
            return Err(error_for(&resp));
        }
        Ok(decode::<WireHook>(&resp)?.into())
    }

    /// `DELETE …/hooks/{id}`; `false` when it was already gone.
    pub async fn delete_hook(&self, owner: &HookOwner, hook_id: i64) -> Result<bool, GithubError> {
        let path = format!("{}/{hook_id}", hooks_path(owner)?);
        let resp = self
            .request("delete_hook", Method::DELETE, &path, &[], None)
            .await?;
        match resp.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(error_for(&resp)),
        }
    }

    /// `GET /app/hook/config`.
    pub async fn app_hook_config(&self) -> Result<AppHookConfig, GithubError> {
        let resp = self
            .app_request(
                "get_app_hook_config",
                Method::GET,
                "app/hook/config",
                &[],
                None,
            )
            .await?;
        if resp.status != 200 {
            return Err(error_for(&resp));
        }
        decode(&resp)
    }

    /// `PATCH /app/hook/config`: URL, secret, content type (the events are the App's own
    /// settings, see [`GithubClient::app_info`]).
    pub async fn update_app_hook_config(
        &self,
        settings: &HookSettings,
    ) -> Result<AppHookConfig, GithubError> {
        let body = json!({
            "url": settings.url,
            "content_type": "json",
            "secret": settings.secret.expose(),
            "insecure_ssl": "0",
        });
        let resp = self
            .app_request(
                "update_app_hook_config",
                Method::PATCH,
                "app/hook/config",
                &[],
                Some(&body),
            )
            .await?;
        if resp.status != 200 {
            return Err(error_for(&resp));
        }
        decode(&resp)
    }

    /// `GET /app`: the App's slug and subscribed events.
    pub async fn app_info(&self) -> Result<AppInfo, GithubError> {
        let resp = self
            .app_request("get_app", Method::GET, "app", &[], None)
            .await?;
        if resp.status != 200 {
            return Err(error_for(&resp));
        }
        decode(&resp)
    }

    /// The hook's delivery attempts, newest first, back to `since` (or `max_pages` pages of
    /// 100). GitHub pages these by cursor (`Link: <…&cursor=…>; rel="next"`).
    pub async fn hook_deliveries(
        &self,
        owner: &HookOwner,
        hook_id: i64,
        since: DateTime<Utc>,
        max_pages: u32,
    ) -> Result<Vec<HookDelivery>, GithubError> {
        let path = owner.deliveries_path(hook_id);
        let mut deliveries = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..max_pages {
            let mut query = vec![("per_page", DELIVERIES_PER_PAGE.to_string())];
            if let Some(cursor) = cursor.take() {
                query.push(("cursor", cursor));
            }
            let resp = self
                .hook_request(
                    owner,
                    "list_hook_deliveries",
                    Method::GET,
                    &path,
                    &query,
                    None,
                )
                .await?;
            if resp.status != 200 {
                return Err(error_for(&resp));
            }
            let page: Vec<HookDelivery> = decode(&resp)?;
            let reached_since = page.iter().any(|d| d.delivered_at < since);
            deliveries.extend(page.into_iter().filter(|d| d.delivered_at >= since));
            cursor = resp.link.as_deref().and_then(next_cursor);
            if reached_since || cursor.is_none() {
                break;
            }
        }
        Ok(deliveries)
    }

    /// `POST …/deliveries/{id}/attempts`: GitHub sends that delivery again (same GUID).
    pub async fn redeliver(
        &self,
        owner: &HookOwner,
        hook_id: i64,
        delivery_id: i64,
    ) -> Result<(), GithubError> {
        let path = format!("{}/{delivery_id}/attempts", owner.deliveries_path(hook_id));
        let resp = self
            .hook_request(owner, "redeliver", Method::POST, &path, &[], None)
            .await?;
        match resp.status {
            200..=299 => Ok(()),
            _ => Err(error_for(&resp)),
        }
    }
}

fn hooks_path(owner: &HookOwner) -> Result<String, GithubError> {
    owner.hooks_path().ok_or_else(|| {
        GithubError::Validation("the App has one hook, configured through /app/hook/config".into())
    })
}

/// The body of a create or update: active, events, and the whole config (GitHub replaces it).
fn hook_body(settings: &HookSettings) -> serde_json::Value {
    json!({
        "active": true,
        "events": settings.events,
        "config": {
            "url": settings.url,
            "content_type": "json",
            "secret": settings.secret.expose(),
            "insecure_ssl": "0",
        },
    })
}
