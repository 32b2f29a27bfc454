//! [`GithubClient`]: the REST calls runnerhub makes, with retries, rate limits and metrics.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::auth::{AppAuth, Auth, InstallationToken};
use super::rate_limit::{RateLimitSnapshot, rate_limit_wait};
use super::types::*;
use crate::config::{GithubConfig, Secret};

/// Runners asked for per page; GitHub's maximum.
const RUNNERS_PER_PAGE: usize = 100;
/// Stop paging after this many pages (10 000 runners), in case a server ignores `page`.
const MAX_RUNNER_PAGES: u32 = 100;

/// Webhooks and their deliveries (DESIGN §12): a child module, so it shares the retry loop.
mod hooks;
/// Which App installation serves a call (DESIGN §12: an App on several organizations).
mod installations;

/// The REST operations the scheduler and reconciler need. A trait so tests can use a fake.
#[async_trait::async_trait]
pub trait GithubApi: Send + Sync + 'static {
    /// Registers a just-in-time runner (`POST {scope}/actions/runners/generate-jitconfig`).
    /// Idempotent across retries: a 409 for the name (an earlier attempt registered it but its
    /// answer was lost) deletes that registration, unless busy, and registers again.
    async fn generate_jit_config(&self, req: &JitRequest) -> Result<JitConfig, GithubError>;
    /// Deletes a runner registration (`DELETE {scope}/actions/runners/{id}`).
    async fn delete_runner(
        &self,
        scope: &RunnerScope,
        runner_id: i64,
    ) -> Result<DeleteOutcome, GithubError>;
    /// Every runner registered in the scope (all pages).
    async fn list_runners(&self, scope: &RunnerScope)
    -> Result<Vec<RegisteredRunner>, GithubError>;
    /// The jobs of the repository's runs that are queued, waiting or in progress, as GitHub's
    /// REST job objects (the same shape as a `workflow_job` delivery's `workflow_job`).
    async fn active_jobs(&self, repository: &RunnerScope) -> Result<Vec<Value>, GithubError>;
    /// One job as a REST job object; `None` when GitHub does not know it (any more).
    async fn job(
        &self,
        repository: &RunnerScope,
        job_id: i64,
    ) -> Result<Option<Value>, GithubError>;
}

/// How hard the client tries before giving up. The defaults keep one call under 30 s: at most
/// 4 attempts, no attempt starts after `total_budget`, and attempt timeouts are capped by what is
/// left of it.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (5xx, transport errors, short rate limits).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, with jitter.
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
    /// Longest rate-limit wait slept through; longer ones return `RateLimited`.
    pub max_rate_limit_wait: Duration,
    /// No new attempt starts after this much time spent on the call.
    pub total_budget: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(4),
            max_rate_limit_wait: Duration::from_secs(10),
            total_budget: Duration::from_secs(25),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// GitHub REST client authenticated with a token or as a GitHub App installation.
pub struct GithubClient {
    /// Shared connection pool; default headers (Accept, API version, User-Agent) set once.
    http: reqwest::Client,
    /// API base without trailing slash (`https://api.github.com`, `https://ghes/api/v3`).
    api_url: String,
    /// Token or App credentials.
    auth: Auth,
    /// Retry and timeout bounds.
    policy: RetryPolicy,
    /// Last reported rate-limit budget; std mutex because it is never held across an await.
    rate: std::sync::Mutex<Option<RateLimitSnapshot>>,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names the kind of credentials only, never their value.
        let auth = match &self.auth {
            Auth::Token(_) => "token",
            Auth::App(_) => "github-app",
        };
        f.debug_struct("GithubClient")
            .field("api_url", &self.api_url)
            .field("auth", &auth)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A response read to the end.
struct RawResponse {
    status: u16,
    body: Bytes,
    /// The `Link` header, for the endpoints that page by cursor (hook deliveries).
    link: Option<String>,
}

impl GithubClient {
    /// Builds the client from `[github]`: a token (PAT) or `app_id` + (optional) `installation_id` +
    /// `private_key_path` (read now, so a bad key fails at start).
    pub fn from_config(cfg: &GithubConfig) -> anyhow::Result<Self> {
        let api_url = cfg.api_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&api_url)
            .map_err(|e| anyhow::anyhow!("github.api_url: `{api_url}` is not a URL: {e}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("runnerhub/", env!("CARGO_PKG_VERSION"))),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(GithubClient {
            http,
            api_url,
            auth: Auth::from_config(cfg)?,
            policy: RetryPolicy::default(),
            rate: std::sync::Mutex::new(None),
        })
    }

    /// Replaces the retry policy (tests use short delays).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The rate-limit budget GitHub last reported, if it reports one.
    pub fn rate_limit(&self) -> Option<RateLimitSnapshot> {
        self.rate.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The `Authorization` value for a regular call on `path`: the PAT, or the (cached) token
    /// of the App's installation on the path's owner (see `client/installations.rs`).
    async fn authorization(&self, path: &str) -> Result<(Secret, Option<u64>), GithubError> {
        let app = match &self.auth {
            Auth::Token(token) => {
                return Ok((Secret::new(format!("Bearer {}", token.expose())), None));
            }
            Auth::App(app) => app,
        };
        let installation = self.installation_for(app, path).await?;
        // Held across the exchange on purpose: concurrent callers share one refresh.
        let mut cached = app.cache.lock().await;
        if let Some(token) = cached.get(&installation).filter(|t| t.is_fresh(Utc::now())) {
            let value = Secret::new(format!("Bearer {}", token.token.expose()));
            return Ok((value, Some(installation)));
        }
        let token = self.exchange_installation_token(app, installation).await?;
        let value = Secret::new(format!("Bearer {}", token.token.expose()));
        cached.insert(installation, token);
        Ok((value, Some(installation)))
    }

    /// `POST /app/installations/{id}/access_tokens` with a fresh JWT.
    async fn exchange_installation_token(
        &self,
        app: &AppAuth,
        installation_id: u64,
    ) -> Result<InstallationToken, GithubError> {
        let jwt = app.jwt(Utc::now())?;
        let bearer = Secret::new(format!("Bearer {}", jwt.expose()));
        let path = format!("app/installations/{installation_id}/access_tokens");
        let resp = self
            .call_with(
                "create_installation_token",
                Method::POST,
                &path,
                &[],
                None,
                &bearer,
            )
            .await?;
        if resp.status != 201 && resp.status != 200 {
            return Err(error_for(&resp));
        }
        let wire: WireInstallationToken = decode(&resp)?;
        tracing::info!(
            installation_id,
            expires_at = %wire.expires_at,
            "obtained a GitHub App installation token"
        );
        Ok(InstallationToken {
            token: Secret::new(wire.token),
            expires_at: wire.expires_at,
        })
    }

    /// One API call with the regular credentials. A 401 with App credentials drops the cached
    /// token and tries once more with a new one (the token may have been revoked early).
    async fn request(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, GithubError> {
        let (authorization, installation) = self.authorization(path).await?;
        let resp = self
            .call_with(endpoint, method.clone(), path, query, body, &authorization)
            .await?;
        let (Auth::App(app), Some(installation)) = (&self.auth, installation) else {
            return Ok(resp);
        };
        if resp.status != 401 {
            return Ok(resp);
        }
        tracing::warn!(
            endpoint,
            installation_id = installation,
            "GitHub refused the installation token; fetching a new one"
        );
        app.cache.lock().await.remove(&installation);
        let (authorization, _) = self.authorization(path).await?;
        self.call_with(endpoint, method, path, query, body, &authorization)
            .await
    }

    /// The retry loop. Returns any response that is not retried (2xx, 4xx) for the caller to
    /// interpret; errors only for exhausted retries and long rate limits.
    async fn call_with(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        authorization: &Secret,
    ) -> Result<RawResponse, GithubError> {
        let url = format!("{}/{}", self.api_url, path);
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last_attempt = attempt >= self.policy.max_attempts;
            // Do not spend a request we know GitHub will refuse.
            let exhausted = self.rate_limit().and_then(|s| s.exhausted_for(Utc::now()));
            if let Some(wait) = exhausted.filter(|w| !w.is_zero()) {
                self.wait_for_rate_limit(endpoint, wait, started, last_attempt)
                    .await?;
                continue;
            }

            let mut auth_value = HeaderValue::from_str(authorization.expose())
                .map_err(|_| GithubError::Transport("credential is not a valid header".into()))?;
            auth_value.set_sensitive(true);
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(AUTHORIZATION, auth_value)
                // The last attempt only gets what is left of the budget, so that a call never
                // takes much longer than `total_budget` even when every attempt times out.
                .timeout(self.attempt_timeout(started));
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(body) = body {
                req = req.json(body);
            }

            let failure = match send(req).await {
                Ok((status, headers, body)) => {
                    count_request(endpoint, status.as_str());
                    self.record_rate_limit(&headers);
                    let status = status.as_u16();
                    if let Some(wait) = rate_limit_wait(status, &headers, Utc::now()) {
                        tracing::warn!(endpoint, status, ?wait, "GitHub rate limit");
                        self.wait_for_rate_limit(endpoint, wait, started, last_attempt)
                            .await?;
                        continue;
                    }
                    if status < 500 {
                        let link = headers
                            .get(reqwest::header::LINK)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        return Ok(RawResponse { status, body, link });
                    }
                    GithubError::Server { status }
                }
                Err(e) => {
                    count_request(endpoint, "transport_error");
                    e
                }
            };
            let delay = self.backoff(attempt);
            if last_attempt || started.elapsed() + delay > self.policy.total_budget {
                tracing::warn!(endpoint, attempt, error = %failure, "GitHub call failed; giving up");
                return Err(failure);
            }
            tracing::warn!(endpoint, attempt, error = %failure, ?delay, "GitHub call failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One `generate-jitconfig` call (with the usual retries).
    async fn register_jit(&self, req: &JitRequest) -> Result<JitConfig, GithubError> {
        let path = format!(
            "{}/actions/runners/generate-jitconfig",
            req.scope.api_path()
        );
        let body = serde_json::json!({
            "name": req.name,
            "runner_group_id": req.runner_group_id,
            "labels": req.labels,
        });
        let resp = self
            .request("generate_jitconfig", Method::POST, &path, &[], Some(&body))
            .await?;
        if resp.status != 201 && resp.status != 200 {
            return Err(error_for(&resp));
        }
        let wire: WireJitConfig = decode(&resp)?;
        tracing::info!(scope = %req.scope, runner.name = %wire.runner.name, runner.id = wire.runner.id, "registered JIT runner");
        Ok(JitConfig {
            runner_id: wire.runner.id,
            runner_name: wire.runner.name,
            encoded_jit_config: Secret::new(wire.encoded_jit_config),
        })
    }

    /// After a 409 for `req.name`: deletes the registration of that name, if there is one that
    /// is not busy, and says whether it did.
    ///
    /// GitHub hands out a JIT config only when it generates it, so a registration whose answer
    /// was lost (an attempt timed out on our side after GitHub had registered it; the retry got
    /// 409) can only be replaced: kept, it stays registered for nothing. Runner names are
    /// runnerhub's and unique per launch, so the runner of that name is that registration; a
    /// busy one is running a job and is never deleted.
    async fn delete_leaked_registration(&self, req: &JitRequest) -> Result<bool, GithubError> {
        let registered = self.list_runners(&req.scope).await?;
        let Some(leaked) = registered.into_iter().find(|r| r.name == req.name) else {
            return Ok(false);
        };
        if leaked.busy {
            return Ok(false);
        }
        let outcome = self.delete_runner(&req.scope, leaked.id).await?;
        tracing::warn!(
            scope = %req.scope,
            runner.name = %req.name,
            runner.id = leaked.id,
            ?outcome,
            "a registration of this name already existed (an earlier attempt's answer was lost); \
             deleted it to register again"
        );
        Ok(outcome != DeleteOutcome::Busy)
    }

    /// The timeout of the next attempt: the request timeout, capped by the remaining budget
    /// (at least one second, so an attempt is never doomed from the start).
    fn attempt_timeout(&self, started: Instant) -> Duration {
        let left = self.policy.total_budget.saturating_sub(started.elapsed());
        self.policy
            .request_timeout
            .min(left.max(Duration::from_secs(1)))
    }

    /// Sleeps through a short rate-limit wait, or returns `RateLimited` for a long one.
    async fn wait_for_rate_limit(
        &self,
        endpoint: &'static str,
        wait: Duration,
        started: Instant,
        last_attempt: bool,
    ) -> Result<(), GithubError> {
        if last_attempt
            || wait > self.policy.max_rate_limit_wait
            || started.elapsed() + wait > self.policy.total_budget
        {
            tracing::warn!(
                endpoint,
                ?wait,
                "GitHub rate limit: not waiting that long here"
            );
            return Err(GithubError::RateLimited { retry_after: wait });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Exponential backoff with "equal jitter": half fixed, half random, so that several
    /// clients failing together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.policy.max_delay);
        let half = exp / 2;
        let jitter_ms = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    fn record_rate_limit(&self, headers: &HeaderMap) {
        if let Some(snapshot) = RateLimitSnapshot::from_headers(headers, Utc::now()) {
            metrics::gauge!(crate::metrics::GITHUB_RATE_LIMIT_REMAINING)
                .set(snapshot.remaining as f64);
            *self.rate.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
        }
    }
}

#[async_trait::async_trait]
impl GithubApi for GithubClient {
    async fn generate_jit_config(&self, req: &JitRequest) -> Result<JitConfig, GithubError> {
        match self.register_jit(req).await {
            Err(GithubError::NameConflict(message)) => {
                if !self.delete_leaked_registration(req).await? {
                    return Err(GithubError::NameConflict(message));
                }
                self.register_jit(req).await
            }
            other => other,
        }
    }

    async fn delete_runner(
        &self,
        scope: &RunnerScope,
        runner_id: i64,
    ) -> Result<DeleteOutcome, GithubError> {
        let path = format!("{}/actions/runners/{runner_id}", scope.api_path());
        let resp = self
            .request("delete_runner", Method::DELETE, &path, &[], None)
            .await?;
        match resp.status {
            200..=299 => Ok(DeleteOutcome::Deleted),
            404 => Ok(DeleteOutcome::NotFound),
            422 => Ok(DeleteOutcome::Busy),
            _ => Err(error_for(&resp)),
        }
    }

    async fn list_runners(
        &self,
        scope: &RunnerScope,
    ) -> Result<Vec<RegisteredRunner>, GithubError> {
        let path = format!("{}/actions/runners", scope.api_path());
        let mut runners = Vec::new();
        for page in 1..=MAX_RUNNER_PAGES {
            let query = [
                ("per_page", RUNNERS_PER_PAGE.to_string()),
                ("page", page.to_string()),
            ];
            let resp = self
                .request("list_runners", Method::GET, &path, &query, None)
                .await?;
            if resp.status != 200 {
                return Err(error_for(&resp));
            }
            let wire: WireRunnerList = decode(&resp)?;
            let got = wire.runners.len();
            runners.extend(wire.runners.into_iter().map(RegisteredRunner::from));
            // `total_count` ends the walk even for a server that ignores `per_page`.
            if got < RUNNERS_PER_PAGE || runners.len() as u64 >= wire.total_count {
                break;
            }
        }
        Ok(runners)
    }

    async fn active_jobs(&self, repository: &RunnerScope) -> Result<Vec<Value>, GithubError> {
        let prefix = repository.api_path();
        let mut jobs = Vec::new();
        for status in ACTIVE_RUN_STATUSES {
            let query = [
                ("status", status.to_string()),
                ("per_page", PER_PAGE.to_string()),
            ];
            let runs: WireRunList = self
                .get_json("list_runs", &format!("{prefix}/actions/runs"), &query)
                .await?;
            for run in runs.workflow_runs {
                let query = [("per_page", PER_PAGE.to_string())];
                let path = format!("{prefix}/actions/runs/{}/jobs", run.id);
                let list: WireJobList = self.get_json("list_run_jobs", &path, &query).await?;
                jobs.extend(list.jobs);
            }
        }
        Ok(jobs)
    }

    async fn job(
        &self,
        repository: &RunnerScope,
        job_id: i64,
    ) -> Result<Option<Value>, GithubError> {
        let path = format!("{}/actions/jobs/{job_id}", repository.api_path());
        match self.get_json("get_job", &path, &[]).await {
            Ok(job) => Ok(Some(job)),
            Err(GithubError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Run statuses whose jobs may still change. One page of each (100 runs) per call: catching
/// up is periodic, and a backlog beyond that is caught on the next pass as runs finish.
const ACTIVE_RUN_STATUSES: [&str; 3] = ["queued", "waiting", "in_progress"];
const PER_PAGE: usize = 100;

impl GithubClient {
    /// A GET whose 200 body is decoded as `T`; any other status is an error.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, GithubError> {
        let resp = self
            .request(endpoint, Method::GET, path, query, None)
            .await?;
        if resp.status != 200 {
            return Err(error_for(&resp));
        }
        decode(&resp)
    }
}

/// Sends a request and reads the whole body; transport failures become `Transport`.
async fn send(req: reqwest::RequestBuilder) -> Result<(StatusCode, HeaderMap, Bytes), GithubError> {
    let resp = req.send().await.map_err(transport_error)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(transport_error)?;
    Ok((status, headers, body))
}

fn transport_error(e: reqwest::Error) -> GithubError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The endpoint is already in the log fields; keeping URLs out of error text means no
    // query string can ever leak into logs.
    GithubError::Transport(format!("{kind}: {}", e.without_url()))
}

fn count_request(endpoint: &'static str, status: &str) {
    metrics::counter!(crate::metrics::GITHUB_API_REQUESTS_TOTAL, "endpoint" => endpoint, "status" => status.to_owned())
        .increment(1);
}

fn decode<T: serde::de::DeserializeOwned>(resp: &RawResponse) -> Result<T, GithubError> {
    // serde_json errors give a position, not the content, so nothing secret is echoed.
    serde_json::from_slice(&resp.body).map_err(|e| GithubError::Decode(e.to_string()))
}

/// GitHub's `message`, or the status when the body has none.
fn message_of(resp: &RawResponse) -> String {
    serde_json::from_slice::<ErrorBody>(&resp.body)
        .ok()
        .and_then(|b| b.message)
        .map(|m| m.chars().take(500).collect())
        .unwrap_or_else(|| format!("HTTP {}", resp.status))
}

/// The error for an unexpected status that was not retried.
fn error_for(resp: &RawResponse) -> GithubError {
    match resp.status {
        401 | 403 => GithubError::Unauthorized(message_of(resp)),
        404 => GithubError::NotFound(message_of(resp)),
        409 => GithubError::NameConflict(message_of(resp)),
        422 => GithubError::Validation(message_of(resp)),
        status => GithubError::Server { status },
    }
}
