//! Credentials: a token (PAT), or a GitHub App whose JWT is exchanged for installation tokens.
//!
//! The HTTP exchange itself lives in the client (it shares the retry loop); this module holds
//! the key, signs JWTs and caches the installation token.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::GithubError;
use crate::config::{GithubConfig, Secret};

/// GitHub's clocks and ours differ; GitHub recommends back-dating `iat` by 60 s.
const JWT_BACKDATE_SECS: i64 = 60;
/// JWT lifetime; GitHub refuses more than 10 minutes.
const JWT_LIFETIME_SECS: i64 = 9 * 60;
/// An installation token is replaced this long before it expires, so that a request never
/// leaves with a token that expires in flight.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How the client authenticates.
pub(crate) enum Auth {
    /// `Authorization: Bearer <token>` with a personal access token (or any fixed token).
    Token(Secret),
    /// GitHub App: JWT → installation token, cached.
    App(Box<AppAuth>),
}

impl Auth {
    /// Chooses the credentials from the configuration: a token wins over App keys.
    pub(crate) fn from_config(cfg: &GithubConfig) -> anyhow::Result<Self> {
        if let Some(token) = cfg.token.as_ref().filter(|t| !t.expose().is_empty()) {
            return Ok(Auth::Token(token.clone()));
        }
        match (&cfg.app_id, cfg.installation_id, &cfg.private_key_path) {
            (Some(app_id), installation_id, Some(path)) => Ok(Auth::App(Box::new(
                AppAuth::from_pem_file(app_id, installation_id, path)?,
            ))),
            _ => anyhow::bail!(
                "github: set `token` (GITHUB_TOKEN) or `app_id` and `private_key_path` \
                 (and optionally `installation_id`)"
            ),
        }
    }
}

/// A GitHub App installation's credentials and its cached token.
pub(crate) struct AppAuth {
    /// The JWT issuer: app id or client id.
    app_id: String,
    /// The configured installation, used for every call. `None`: the installation on each
    /// call's owner (`client/installations.rs`).
    pub(crate) installation_id: Option<u64>,
    /// The parsed private key (never printed).
    key: EncodingKey,
    /// The current token of each installation. A tokio mutex on purpose: it is held across
    /// the token exchange so that concurrent callers wait for one refresh instead of each
    /// starting one.
    pub(crate) cache: tokio::sync::Mutex<HashMap<u64, InstallationToken>>,
    /// The App's installations by account login (lowercase), and when they were listed.
    pub(crate) installations: tokio::sync::Mutex<Option<InstallationIndex>>,
}

/// Which installation serves which account, from `GET /app/installations`.
pub(crate) struct InstallationIndex {
    pub(crate) by_account: HashMap<String, u64>,
    pub(crate) listed_at: std::time::Instant,
}

impl AppAuth {
    /// Reads the PEM private key at `path` (PKCS#1 as GitHub issues it, or PKCS#8).
    pub(crate) fn from_pem_file(
        app_id: &str,
        installation_id: Option<u64>,
        path: &Path,
    ) -> anyhow::Result<Self> {
        // Key contents pasted where the path belongs would be printed by the error below.
        let shown = path.to_string_lossy();
        if shown.contains("-----BEGIN") || shown.contains('\n') || shown.len() > 4096 {
            anyhow::bail!(
                "github.private_key_path: this looks like the key itself, not a path to its file (not shown)"
            );
        }
        let pem = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "github.private_key_path: cannot read {}: {e}",
                path.display()
            )
        })?;
        let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "github.private_key_path: {} is not an RSA private key in PEM format: {e}",
                path.display()
            )
        })?;
        Ok(AppAuth {
            app_id: app_id.to_owned(),
            installation_id,
            key,
            cache: tokio::sync::Mutex::new(HashMap::new()),
            installations: tokio::sync::Mutex::new(None),
        })
    }

    /// A fresh RS256 JWT for the App, valid from a minute ago for nine minutes.
    pub(crate) fn jwt(&self, now: DateTime<Utc>) -> Result<Secret, GithubError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iat: i64,
            exp: i64,
            iss: &'a str,
        }
        let claims = Claims {
            iat: now.timestamp() - JWT_BACKDATE_SECS,
            exp: now.timestamp() + JWT_LIFETIME_SECS,
            iss: &self.app_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(Secret::new)
            // The error names the signing problem only; it never contains the key.
            .map_err(|e| GithubError::Transport(format!("cannot sign the GitHub App JWT: {e}")))
    }
}

/// An installation token and when it stops working.
#[derive(Clone)]
pub(crate) struct InstallationToken {
    pub(crate) token: Secret,
    pub(crate) expires_at: DateTime<Utc>,
}

impl InstallationToken {
    /// Usable for a request that starts now (outside the refresh margin).
    pub(crate) fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        let margin = chrono::Duration::from_std(TOKEN_REFRESH_MARGIN).unwrap_or_default();
        now + margin < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_refreshed_inside_the_margin() {
        let now = Utc::now();
        let token = |mins| InstallationToken {
            token: Secret::new("t"),
            expires_at: now + chrono::Duration::minutes(mins),
        };
        assert!(token(60).is_fresh(now));
        assert!(!token(4).is_fresh(now));
        assert!(!token(-1).is_fresh(now));
    }

    #[test]
    fn config_without_credentials_is_refused() {
        let err = Auth::from_config(&GithubConfig::default()).err().unwrap();
        assert!(err.to_string().contains("app_id"), "{err}");
    }
}
