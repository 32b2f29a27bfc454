//! The GitHub REST subset: self-hosted runners (repo and org scope), workflow runs and jobs, hook
//! deliveries, App installation tokens. A middleware checks credentials, applies REST faults and
//! the primary rate limit, and adds the `x-ratelimit-*` headers to every answer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use super::faults::RestFault;
use super::state::{DeliveryRecord, Runner, RunnerStatus, Scope, StateError};
use super::{Shared, hooks, jit, templates, webhook};

const DOCS_URL: &str = "https://docs.github.com/rest";
const RUNNER_VERSION: &str = "2.323.0";
/// Labels GitHub marks `read-only` (set by the runner itself); the rest are `custom`.
const READ_ONLY_LABELS: [&str; 8] = [
    "self-hosted",
    "linux",
    "windows",
    "macos",
    "x64",
    "arm64",
    "arm",
    "x86",
];

type S = State<Arc<Shared>>;
type Params = Path<HashMap<String, String>>;

/// A GitHub error answer: `{"message", "documentation_url"}`.
#[derive(Debug)]
pub struct GhError(pub(super) StatusCode, pub(super) String);

impl GhError {
    pub(super) fn not_found() -> Self {
        Self(StatusCode::NOT_FOUND, "Not Found".into())
    }
}

impl IntoResponse for GhError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"message": self.1, "documentation_url": DOCS_URL})),
        )
            .into_response()
    }
}

impl From<StateError> for GhError {
    fn from(e: StateError) -> Self {
        let status = match e {
            StateError::NotFound => StatusCode::NOT_FOUND,
            StateError::NameTaken(_) => StatusCode::CONFLICT,
            StateError::RunnerBusy(_) | StateError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self(status, e.to_string())
    }
}

pub(super) type GhResult<T> = Result<T, GhError>;

pub fn router(shared: Arc<Shared>) -> Router {
    let runners = |prefix: &str| {
        Router::new()
            .route(&format!("{prefix}/actions/runners"), get(list_runners))
            .route(
                &format!("{prefix}/actions/runners/generate-jitconfig"),
                post(generate_jitconfig),
            )
            .route(
                &format!("{prefix}/actions/runners/registration-token"),
                post(registration_token),
            )
            .route(
                &format!("{prefix}/actions/runners/remove-token"),
                post(registration_token),
            )
            .route(
                &format!("{prefix}/actions/runners/{{runner_id}}"),
                get(get_runner).delete(delete_runner),
            )
            .route(
                &format!("{prefix}/hooks/{{hook_id}}/deliveries"),
                get(list_deliveries),
            )
            .route(
                &format!("{prefix}/hooks/{{hook_id}}/deliveries/{{delivery_id}}"),
                get(get_delivery),
            )
            .route(
                &format!("{prefix}/hooks/{{hook_id}}/deliveries/{{delivery_id}}/attempts"),
                post(redeliver),
            )
    };
    Router::new()
        .merge(runners("/repos/{owner}/{repo}"))
        .merge(runners("/orgs/{org}"))
        .route("/repos/{owner}/{repo}/actions/runs", get(list_runs))
        .route("/repos/{owner}/{repo}/actions/runs/{run_id}", get(get_run))
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
            get(list_run_jobs),
        )
        .route("/repos/{owner}/{repo}/actions/jobs/{job_id}", get(get_job))
        .route("/app/hook/deliveries", get(list_deliveries))
        .route("/app/hook/deliveries/{delivery_id}", get(get_delivery))
        .route(
            "/app/hook/deliveries/{delivery_id}/attempts",
            post(redeliver),
        )
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(access_token),
        )
        .merge(super::hooks::routes())
        .fallback(|| async { GhError::not_found() })
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), gate))
        .with_state(shared)
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim())
}

/// Credentials, REST faults, primary rate limit, `x-ratelimit-*` headers.
async fn gate(State(shared): S, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let is_app = path == "/app" || path.starts_with("/app/");
    let token = bearer(req.headers()).map(str::to_owned);
    let now = Utc::now();
    let authorized = match (&token, is_app) {
        (None, _) => Err(GhError(StatusCode::UNAUTHORIZED, "Bad credentials".into())),
        (Some(jwt), true) => match &shared.jwt {
            None => Err(GhError(
                StatusCode::UNAUTHORIZED,
                "A JSON web token could not be decoded".into(),
            )),
            Some(v) => v
                .verify(jwt, now.timestamp())
                .map_err(|e| GhError(StatusCode::UNAUTHORIZED, e.to_string())),
        },
        (Some(t), false) => {
            let known = shared.config.tokens.iter().any(|k| k == t)
                || shared.config.read_only_tokens.iter().any(|k| k == t)
                || shared
                    .state()
                    .installation_tokens
                    .get(t)
                    .is_some_and(|exp| *exp > now);
            if !known {
                Err(GhError(StatusCode::UNAUTHORIZED, "Bad credentials".into()))
            } else if !installation_covers(&shared, t, path_owner(req.uri().path())) {
                // An installation's token is good for its own account's repositories only.
                Err(GhError(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by integration".into(),
                ))
            } else {
                Ok(())
            }
        }
    };
    let (limit, used, reset) = {
        let mut rate = shared.rate.lock().unwrap_or_else(|e| e.into_inner());
        if rate.reset_at <= now.timestamp() {
            rate.used = 0;
            rate.reset_at = now.timestamp() + 3600;
        }
        (rate.limit, rate.used, rate.reset_at)
    };
    let mut response = if let Err(e) = authorized {
        e.into_response()
    } else {
        let fault = shared.faults().for_rest();
        match fault {
            RestFault::ServerError(code) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
                GhError(status, "Server Error".into()).into_response()
            }
            RestFault::SecondaryLimit { retry_after_secs } => {
                let mut r = GhError(
                    StatusCode::TOO_MANY_REQUESTS,
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.".into(),
                )
                .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            RestFault::None if used >= limit => GhError(
                StatusCode::FORBIDDEN,
                format!(
                    "API rate limit exceeded for installation ID {}.",
                    shared.state().installation_id
                ),
            )
            .into_response(),
            RestFault::None => {
                shared.rate.lock().unwrap_or_else(|e| e.into_inner()).used += 1;
                next.run(req).await
            }
        }
    };
    let used_now = shared.rate.lock().unwrap_or_else(|e| e.into_inner()).used;
    let h = response.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(limit.saturating_sub(used_now)),
    );
    h.insert("x-ratelimit-used", HeaderValue::from(used_now));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    response
}

/// The owner of a `/repos/{owner}/…` or `/orgs/{owner}/…` path.
fn path_owner(path: &str) -> Option<String> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("repos" | "orgs"), Some(owner)) => Some(owner.to_owned()),
        _ => None,
    }
}

/// Whether `token` may act on `owner`: PATs anywhere; an installation token on its account.
fn installation_covers(shared: &Shared, token: &str, owner: Option<String>) -> bool {
    let state = shared.state();
    let Some(id) = state.token_installations.get(token) else {
        return true;
    };
    let account = state
        .installations
        .iter()
        .find(|(i, _)| i == id)
        .map(|(_, a)| a.clone())
        .unwrap_or_default();
    account.is_empty() || owner.is_none_or(|o| o.eq_ignore_ascii_case(&account))
}

/// The scope of a `/repos/{owner}/{repo}` or `/orgs/{org}` path; 404 for owners we do not know.
pub(super) fn scope_of(shared: &Shared, p: &HashMap<String, String>) -> GhResult<Scope> {
    let (owner, scope) = match (p.get("owner"), p.get("repo"), p.get("org")) {
        (Some(o), Some(r), _) => (o.as_str(), Scope::Repo(format!("{o}/{r}"))),
        (_, _, Some(org)) => (org.as_str(), Scope::Org(org.clone())),
        _ => return Err(GhError::not_found()),
    };
    let owners = &shared.config.owners;
    if !owners.is_empty() && !owners.iter().any(|o| o.eq_ignore_ascii_case(owner)) {
        return Err(GhError::not_found());
    }
    Ok(scope)
}

pub(super) fn id_param(p: &HashMap<String, String>, key: &str) -> GhResult<u64> {
    p.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(GhError::not_found)
}

fn labels_json(shared: &Shared, labels: &[String]) -> Value {
    let mut state = shared.state();
    labels
        .iter()
        .map(|l| {
            let kind = if READ_ONLY_LABELS.iter().any(|r| r.eq_ignore_ascii_case(l)) {
                "read-only"
            } else {
                "custom"
            };
            json!({"id": state.label_id(l), "name": l, "type": kind})
        })
        .collect()
}

/// A runner as listed by `GET .../actions/runners[/{id}]`.
fn runner_json(shared: &Shared, r: &Runner) -> Value {
    let online = r.status != RunnerStatus::Registered;
    json!({
        "id": r.id, "name": r.name, "os": r.os,
        "status": if online { "online" } else { "offline" },
        "busy": r.status == RunnerStatus::Busy,
        "ephemeral": true, "version": RUNNER_VERSION,
        "labels": labels_json(shared, &r.labels),
    })
}

pub(super) fn paginate<T: Clone>(items: &[T], q: &HashMap<String, String>) -> Vec<T> {
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    items
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect()
}

fn unprocessable(msg: &str) -> GhError {
    GhError(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("Invalid request.\n\n{msg}"),
    )
}

async fn generate_jitconfig(
    State(shared): S,
    Path(p): Params,
    body: Bytes,
) -> GhResult<impl IntoResponse> {
    let scope = scope_of(&shared, &p)?;
    let (Scope::Repo(scope_name) | Scope::Org(scope_name)) = &scope;
    if let Some(status) = shared.faults().registration_refusal(scope_name) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let message = if status == StatusCode::NOT_FOUND {
            "Not Found"
        } else {
            "Resource not accessible by integration"
        };
        return Err(GhError(status, message.into()));
    }
    let body: Value = serde_json::from_slice(&body)
        .map_err(|_| GhError(StatusCode::BAD_REQUEST, "Problems parsing JSON".into()))?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| unprocessable("\"name\" wasn't supplied."))?;
    let group = body
        .get("runner_group_id")
        .and_then(Value::as_u64)
        .ok_or_else(|| unprocessable("\"runner_group_id\" wasn't supplied."))?;
    let labels: Vec<String> = body
        .get("labels")
        .and_then(Value::as_array)
        .ok_or_else(|| unprocessable("\"labels\" wasn't supplied."))?
        .iter()
        .map(|l| {
            l.as_str()
                .map(str::to_owned)
                .ok_or_else(|| unprocessable("labels must be strings."))
        })
        .collect::<GhResult<_>>()?;
    let credential = format!("simrunner_{}", uuid::Uuid::new_v4().simple());
    let runner =
        shared
            .state()
            .register_runner(scope.clone(), name, &labels, group, credential.clone())?;
    let runner_url = shared
        .config
        .runner_url
        .clone()
        .unwrap_or_else(|| shared.base_url.clone());
    let encoded = jit::JitConfig {
        runner_id: runner.id,
        runner_name: runner.name.clone(),
        runner_group_id: group,
        labels: labels.clone(),
        server_url: runner_url,
        github_url: match &scope {
            Scope::Repo(full) | Scope::Org(full) => format!("https://github.com/{full}"),
        },
        work_folder: body
            .get("work_folder")
            .and_then(Value::as_str)
            .unwrap_or("_work")
            .into(),
        credential,
    }
    .encode();
    tracing::info!(runner.id = runner.id, runner.name = %runner.name, "simulator registered a JIT runner");
    let late = shared.faults().jit_answer_delay_ms();
    if let Some(ms) = late {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let runner_json = json!({
        "id": runner.id, "name": runner.name, "os": runner.os, "status": "offline", "busy": false,
        "labels": labels_json(&shared, &labels),
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({"runner": runner_json, "encoded_jit_config": encoded})),
    ))
}

async fn registration_token(State(shared): S, Path(p): Params) -> GhResult<impl IntoResponse> {
    scope_of(&shared, &p)?;
    let token: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_uppercase()
        .chars()
        .take(29)
        .collect();
    let expires_at = templates::ts(Utc::now() + chrono::Duration::hours(1));
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": expires_at})),
    ))
}

async fn list_runners(
    State(shared): S,
    Path(p): Params,
    Query(q): Query<HashMap<String, String>>,
) -> GhResult<Json<Value>> {
    let scope = scope_of(&shared, &p)?;
    let all: Vec<Runner> = shared
        .state()
        .runners
        .values()
        .filter(|r| r.scope == scope)
        .cloned()
        .collect();
    let page: Vec<Value> = paginate(&all, &q)
        .iter()
        .map(|r| runner_json(&shared, r))
        .collect();
    Ok(Json(json!({"total_count": all.len(), "runners": page})))
}

async fn get_runner(State(shared): S, Path(p): Params) -> GhResult<Json<Value>> {
    let scope = scope_of(&shared, &p)?;
    let runner = shared
        .state()
        .runner_in_scope(&scope, id_param(&p, "runner_id")?)?
        .clone();
    Ok(Json(runner_json(&shared, &runner)))
}

async fn delete_runner(State(shared): S, Path(p): Params) -> GhResult<StatusCode> {
    let scope = scope_of(&shared, &p)?;
    shared
        .state()
        .delete_runner(&scope, id_param(&p, "runner_id")?)?;
    shared.runner_wakeup.notify_waiters();
    Ok(StatusCode::NO_CONTENT)
}

fn repo_of(p: &HashMap<String, String>) -> String {
    format!(
        "{}/{}",
        p.get("owner").map_or("", |s| s),
        p.get("repo").map_or("", |s| s)
    )
}

async fn list_runs(
    State(shared): S,
    Path(p): Params,
    Query(q): Query<HashMap<String, String>>,
) -> GhResult<Json<Value>> {
    scope_of(&shared, &p)?;
    let repo = repo_of(&p);
    let mut state = shared.state();
    let status = q.get("status");
    let runs: Vec<_> = state
        .runs
        .values()
        .rev()
        .filter(|r| r.repository.eq_ignore_ascii_case(&repo))
        .filter(|r| {
            status.is_none_or(|s| {
                r.status.as_str() == s || r.conclusion.as_deref() == Some(s.as_str())
            })
        })
        .cloned()
        .collect();
    let repo_id = state.repo_id(&repo);
    let page: Vec<Value> = paginate(&runs, &q)
        .iter()
        .map(|r| templates::rest_run_list_item(r, repo_id))
        .collect();
    Ok(Json(
        json!({"total_count": runs.len(), "workflow_runs": page}),
    ))
}

async fn get_run(State(shared): S, Path(p): Params) -> GhResult<Json<Value>> {
    scope_of(&shared, &p)?;
    let repo = repo_of(&p);
    let mut state = shared.state();
    let run = state
        .runs
        .get(&id_param(&p, "run_id")?)
        .filter(|r| r.repository.eq_ignore_ascii_case(&repo))
        .cloned();
    let run = run.ok_or_else(GhError::not_found)?;
    let repo_id = state.repo_id(&repo);
    Ok(Json(templates::rest_run(&run, repo_id)))
}

async fn list_run_jobs(
    State(shared): S,
    Path(p): Params,
    Query(q): Query<HashMap<String, String>>,
) -> GhResult<Json<Value>> {
    scope_of(&shared, &p)?;
    let repo = repo_of(&p);
    let state = shared.state();
    let run = state
        .runs
        .get(&id_param(&p, "run_id")?)
        .filter(|r| r.repository.eq_ignore_ascii_case(&repo));
    let run = run.ok_or_else(GhError::not_found)?;
    let jobs: Vec<_> = run
        .job_ids
        .iter()
        .map(|id| state.jobs[id].clone())
        .collect();
    let page: Vec<Value> = paginate(&jobs, &q)
        .iter()
        .map(templates::rest_job)
        .collect();
    Ok(Json(json!({"total_count": jobs.len(), "jobs": page})))
}

async fn get_job(State(shared): S, Path(p): Params) -> GhResult<Json<Value>> {
    scope_of(&shared, &p)?;
    let repo = repo_of(&p);
    let state = shared.state();
    let job = state
        .jobs
        .get(&id_param(&p, "job_id")?)
        .filter(|j| j.spec.repository.eq_ignore_ascii_case(&repo));
    Ok(Json(templates::rest_job(
        job.ok_or_else(GhError::not_found)?,
    )))
}

/// Deliveries of one hook, newest first: an installed hook's own; the configured hook
/// ([`super::SimConfig::hook_id`]) sees those of the path's repository or organization; the App
/// hook its own once its URL is set, else every configured-hook delivery. 404 for a hook id
/// the path does not own.
fn visible_deliveries(
    shared: &Shared,
    p: &HashMap<String, String>,
) -> GhResult<Vec<DeliveryRecord>> {
    let configured = shared.config.hook_id;
    let (hook_id, filter): (u64, Option<Scope>) =
        if p.contains_key("owner") || p.contains_key("org") {
            let scope = scope_of(shared, p)?;
            let hook_id = id_param(p, "hook_id")?;
            if !hooks::hook_in_scope(shared, &scope, hook_id) {
                return Err(GhError::not_found());
            }
            (hook_id, (hook_id == configured).then_some(scope))
        } else if hooks::app_hook_configured(shared) {
            (hooks::APP_HOOK_ID, None)
        } else {
            (configured, None)
        };
    let state = shared.state();
    Ok(state
        .deliveries
        .iter()
        .rev()
        .filter(|d| d.hook_id == hook_id)
        .filter(|d| match (&filter, &d.repository) {
            (None, _) => true,
            (Some(Scope::Repo(full)), Some(r)) => r.eq_ignore_ascii_case(full),
            (Some(Scope::Org(org)), Some(r)) => r
                .split('/')
                .next()
                .is_some_and(|o| o.eq_ignore_ascii_case(org)),
            (Some(_), None) => false,
        })
        .cloned()
        .collect())
}

fn delivery_json(shared: &Shared, d: &DeliveryRecord) -> Value {
    let installation_id = {
        let state = shared.state();
        d.repository
            .as_deref()
            .map_or(state.installation_id, |r| state.installation_of(r))
    };
    json!({
        "id": d.id, "guid": d.guid, "delivered_at": templates::ts(d.delivered_at), "redelivery": d.redelivery,
        "duration": d.duration, "status": d.status, "status_code": d.status_code, "event": d.event,
        "action": d.action, "installation_id": installation_id, "repository_id": d.repository_id,
        "throttled_at": null,
    })
}

/// GitHub pages deliveries by cursor: `Link: <…?per_page=N&cursor=…>; rel="next"`. The
/// simulator's cursor is the id of the last delivery served (`page` works too).
async fn list_deliveries(
    State(shared): S,
    Path(p): Params,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> GhResult<Response> {
    let mut all = visible_deliveries(&shared, &p)?;
    if let Some(cursor) = q.get("cursor") {
        let after: u64 = cursor
            .strip_prefix("v1_")
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| GhError(StatusCode::BAD_REQUEST, "Invalid cursor".into()))?;
        all.retain(|d| d.id < after);
    }
    let page = paginate(&all, &q);
    let body: Vec<Value> = page.iter().map(|d| delivery_json(&shared, d)).collect();
    let mut response = Json(body).into_response();
    let more = !q.contains_key("page") && page.len() < all.len();
    if let Some(last) = page.last().filter(|_| more) {
        let per_page = q.get("per_page").map_or("30", String::as_str);
        let link = format!(
            "<{}{}?per_page={per_page}&cursor=v1_{}>; rel=\"next\"",
            shared.base_url,
            uri.path(),
            last.id
        );
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

fn find_delivery(shared: &Shared, p: &HashMap<String, String>) -> GhResult<DeliveryRecord> {
    let id = id_param(p, "delivery_id")?;
    visible_deliveries(shared, p)?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(GhError::not_found)
}

async fn get_delivery(State(shared): S, Path(p): Params) -> GhResult<Json<Value>> {
    let d = find_delivery(&shared, &p)?;
    let mut v = delivery_json(&shared, &d);
    let url = hooks::current_target(&shared, d.hook_id).and_then(|t| t.url);
    v["url"] = json!(url.unwrap_or_default());
    v["request"] = json!({
        "headers": d.request_headers,
        "payload": serde_json::from_str::<Value>(&d.body).unwrap_or(Value::Null),
    });
    v["response"] = json!({"headers": {"Content-Type": "text/plain"}, "payload": d.response_body});
    Ok(Json(v))
}

async fn redeliver(State(shared): S, Path(p): Params) -> GhResult<impl IntoResponse> {
    let d = find_delivery(&shared, &p)?;
    webhook::redeliver(&shared, d.id).ok_or_else(GhError::not_found)?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

async fn access_token(State(shared): S, Path(p): Params) -> GhResult<impl IntoResponse> {
    let wanted = id_param(&p, "installation_id")?;
    let mut state = shared.state();
    if !state.installations.iter().any(|(id, _)| *id == wanted) || shared.config.app.is_none() {
        return Err(GhError::not_found());
    }
    let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
    let expires_at = Utc::now() + chrono::Duration::hours(1);
    state.installation_tokens.insert(token.clone(), expires_at);
    state.token_installations.insert(token.clone(), wanted);
    Ok((
        StatusCode::CREATED,
        Json(templates::access_token(&token, expires_at)),
    ))
}
