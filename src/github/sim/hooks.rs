//! Webhooks in the simulator: repository and organization hooks (`…/hooks` CRUD), the App's
//! hook (`/app/hook/config`), `GET /app` and `GET /app/installations`, and where each delivery
//! goes. Answers follow GitHub's REST reference (`tests/fixtures/hand-written/rest/` for the
//! calls the shared fixtures lack).
//!
//! Every installed, active hook whose scope covers the delivery's repository and whose events
//! include its event gets its own delivery (its own GUID), signed with its own secret, as on
//! GitHub. The App's hook gets those of the App's events once its URL is set. The hook of
//! [`super::SimConfig::webhook_url`] (id [`super::SimConfig::hook_id`]) stays for the tests and
//! demos that configure the simulator instead of installing a hook: it gets every delivery while
//! it has a URL, or while no other hook would get it (then the delivery is only logged).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::rest::{GhError, GhResult, bearer, id_param, paginate, scope_of};
use super::state::Scope;
use super::{Shared, templates};

/// First id of an installed hook: GitHub's hook ids are nine digits by now.
const FIRST_HOOK_ID: u64 = 400_000_001;
/// The App's hook id (`X-GitHub-Hook-ID` of App deliveries).
pub const APP_HOOK_ID: u64 = 300_000_001;
const API: &str = "https://api.github.com";

/// One repository or organization hook.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimHook {
    pub id: u64,
    pub scope: Scope,
    pub url: String,
    #[serde(skip)]
    pub secret: Option<String>,
    pub content_type: String,
    pub events: Vec<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SimHook {
    fn receives(&self, event: &str, repository: Option<&str>) -> bool {
        self.active
            && self.events.iter().any(|e| e == event || e == "*")
            && repository.is_some_and(|r| self.scope.serves(r))
    }
}

/// The App's hook configuration and subscribed events.
#[derive(Debug, Clone)]
pub struct AppHook {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub content_type: String,
    pub insecure_ssl: String,
    /// Set in the App's settings on GitHub; here by [`super::SimHandle::set_app_events`].
    pub events: Vec<String>,
}

/// The hooks of the simulated GitHub.
#[derive(Debug, Clone)]
pub struct HookRegistry {
    next_id: u64,
    pub hooks: BTreeMap<u64, SimHook>,
    pub app: AppHook,
}

impl Default for HookRegistry {
    fn default() -> Self {
        HookRegistry {
            next_id: FIRST_HOOK_ID,
            hooks: BTreeMap::new(),
            app: AppHook {
                url: None,
                secret: None,
                content_type: "json".into(),
                insecure_ssl: "0".into(),
                events: crate::github::HOOK_EVENTS.map(String::from).to_vec(),
            },
        }
    }
}

/// Where one delivery goes and how it is signed.
#[derive(Debug, Clone)]
pub struct Target {
    pub hook_id: u64,
    /// `None`: nowhere to send; the delivery is only logged.
    pub url: Option<String>,
    pub secret: String,
    /// `X-GitHub-Hook-Installation-Target-Type`.
    pub target_type: &'static str,
}

/// The hooks that get a delivery of `event` for `repository`.
pub fn targets(shared: &Shared, event: &str, repository: Option<&str>) -> Vec<Target> {
    let registry = shared.state().hooks.clone();
    let mut out: Vec<Target> = registry
        .hooks
        .values()
        .filter(|h| h.receives(event, repository))
        .map(|h| Target {
            hook_id: h.id,
            url: Some(h.url.clone()),
            secret: h.secret.clone().unwrap_or_default(),
            target_type: match h.scope {
                Scope::Repo(_) => "repository",
                Scope::Org(_) => "organization",
            },
        })
        .collect();
    if let Some(app) = app_target(&registry.app)
        && registry.app.events.iter().any(|e| e == event)
    {
        out.push(app);
    }
    if shared.config.webhook_url.is_some() || out.is_empty() {
        out.push(configured_target(shared));
    }
    out
}

/// The hook a logged delivery went to, as it is configured now (for redelivery).
pub fn current_target(shared: &Shared, hook_id: u64) -> Option<Target> {
    if hook_id == shared.config.hook_id {
        return Some(configured_target(shared));
    }
    let state = shared.state();
    if hook_id == APP_HOOK_ID {
        return app_target(&state.hooks.app);
    }
    let hook = state.hooks.hooks.get(&hook_id)?;
    Some(Target {
        hook_id,
        url: Some(hook.url.clone()),
        secret: hook.secret.clone().unwrap_or_default(),
        target_type: match hook.scope {
            Scope::Repo(_) => "repository",
            Scope::Org(_) => "organization",
        },
    })
}

/// Whether `hook_id` is a hook of `scope` (the configured one belongs to every scope).
pub fn hook_in_scope(shared: &Shared, scope: &Scope, hook_id: u64) -> bool {
    hook_id == shared.config.hook_id
        || shared
            .state()
            .hooks
            .hooks
            .get(&hook_id)
            .is_some_and(|h| &h.scope == scope)
}

/// Whether the App's hook has a URL (then `/app/hook/deliveries` lists its own deliveries).
pub fn app_hook_configured(shared: &Shared) -> bool {
    shared.state().hooks.app.url.is_some()
}

fn configured_target(shared: &Shared) -> Target {
    Target {
        hook_id: shared.config.hook_id,
        url: shared.config.webhook_url.clone(),
        secret: shared.config.webhook_secret.clone(),
        target_type: "repository",
    }
}

fn app_target(app: &AppHook) -> Option<Target> {
    Some(Target {
        hook_id: APP_HOOK_ID,
        url: Some(app.url.clone()?),
        secret: app.secret.clone().unwrap_or_default(),
        target_type: "integration",
    })
}

type S = State<Arc<Shared>>;
type Params = Path<HashMap<String, String>>;

pub fn routes() -> Router<Arc<Shared>> {
    let scoped = |prefix: &str| {
        Router::new()
            .route(&format!("{prefix}/hooks"), get(list).post(create))
            .route(
                &format!("{prefix}/hooks/{{hook_id}}"),
                get(show).patch(update).delete(remove),
            )
    };
    Router::new()
        .merge(scoped("/repos/{owner}/{repo}"))
        .merge(scoped("/orgs/{org}"))
        .route("/app/hook/config", get(app_config).patch(update_app_config))
        .route("/app", get(app))
        .route("/app/installations", get(installations))
}

/// The scope of the path, for a caller allowed to administer its hooks: a token without
/// admin rights gets 403, as a fine-grained token without "Webhooks" permission does.
fn admin_scope(shared: &Shared, p: &HashMap<String, String>, h: &HeaderMap) -> GhResult<Scope> {
    let scope = scope_of(shared, p)?;
    let token = bearer(h).unwrap_or_default();
    if shared.config.read_only_tokens.iter().any(|t| t == token) {
        return Err(GhError(
            StatusCode::FORBIDDEN,
            "Resource not accessible by personal access token".into(),
        ));
    }
    Ok(scope)
}

fn validation_failed(message: &str) -> GhError {
    GhError(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("Validation Failed: {message}"),
    )
}

fn hook_json(shared: &Shared, hook: &SimHook) -> Value {
    let (kind, base) = match &hook.scope {
        Scope::Repo(full) => (
            "Repository",
            format!("{API}/repos/{full}/hooks/{}", hook.id),
        ),
        Scope::Org(org) => (
            "Organization",
            format!("{API}/orgs/{org}/hooks/{}", hook.id),
        ),
    };
    let last = shared
        .state()
        .deliveries
        .iter()
        .rev()
        .find(|d| d.hook_id == hook.id && d.sent)
        .map(|d| (d.status_code, d.status.clone()));
    let last_response = match last {
        Some((code, status)) => {
            json!({"code": code, "status": if (200..300).contains(&code) { "active".to_string() } else { status }, "message": null})
        }
        None => json!({"code": null, "status": "unused", "message": null}),
    };
    let mut config = json!({
        "content_type": hook.content_type, "insecure_ssl": "0", "url": hook.url,
    });
    if hook.secret.is_some() {
        config["secret"] = json!("********");
    }
    let mut v = json!({
        "type": kind, "id": hook.id, "name": "web", "active": hook.active,
        "events": hook.events, "config": config,
        "updated_at": templates::ts(hook.updated_at), "created_at": templates::ts(hook.created_at),
        "url": base, "ping_url": format!("{base}/pings"),
        "deliveries_url": format!("{base}/deliveries"),
    });
    // GitHub's organization hooks have neither a test URL nor a last response.
    if let Scope::Repo(_) = hook.scope {
        v["test_url"] = json!(format!("{base}/test"));
        v["last_response"] = last_response;
    }
    v
}

async fn list(
    State(shared): S,
    Path(p): Params,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> GhResult<Json<Value>> {
    let scope = admin_scope(&shared, &p, &headers)?;
    let hooks: Vec<SimHook> = shared
        .state()
        .hooks
        .hooks
        .values()
        .filter(|h| h.scope == scope)
        .cloned()
        .collect();
    Ok(Json(
        paginate(&hooks, &q)
            .iter()
            .map(|h| hook_json(&shared, h))
            .collect(),
    ))
}

fn find(shared: &Shared, scope: &Scope, p: &HashMap<String, String>) -> GhResult<SimHook> {
    let id = id_param(p, "hook_id")?;
    shared
        .state()
        .hooks
        .hooks
        .get(&id)
        .filter(|h| &h.scope == scope)
        .cloned()
        .ok_or_else(GhError::not_found)
}

async fn show(State(shared): S, Path(p): Params, headers: HeaderMap) -> GhResult<Json<Value>> {
    let scope = admin_scope(&shared, &p, &headers)?;
    let hook = find(&shared, &scope, &p)?;
    Ok(Json(hook_json(&shared, &hook)))
}

/// The parts of a create or update body; `config` replaces the whole configuration.
struct HookBody {
    active: Option<bool>,
    events: Option<Vec<String>>,
    config: Option<(String, String, Option<String>)>,
}

fn parse_body(body: &[u8]) -> GhResult<HookBody> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| GhError(StatusCode::BAD_REQUEST, "Problems parsing JSON".into()))?;
    let events = match v.get("events") {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|e| e.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| validation_failed("events must be strings"))?,
        ),
        Some(_) => return Err(validation_failed("events must be an array")),
    };
    let config = match v.get("config") {
        None => None,
        Some(c) => {
            let url = c
                .get("url")
                .and_then(Value::as_str)
                .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                .ok_or_else(|| validation_failed("config.url must be an http(s) URL"))?;
            let content_type = c
                .get("content_type")
                .and_then(Value::as_str)
                .unwrap_or("form");
            if !matches!(content_type, "json" | "form") {
                return Err(validation_failed("content_type must be json or form"));
            }
            let secret = c
                .get("secret")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            Some((url.to_owned(), content_type.to_owned(), secret))
        }
    };
    Ok(HookBody {
        active: v.get("active").and_then(Value::as_bool),
        events,
        config,
    })
}

async fn create(
    State(shared): S,
    Path(p): Params,
    headers: HeaderMap,
    body: Bytes,
) -> GhResult<impl IntoResponse> {
    let scope = admin_scope(&shared, &p, &headers)?;
    let body = parse_body(&body)?;
    let Some((url, content_type, secret)) = body.config else {
        return Err(validation_failed("config.url is missing"));
    };
    let events = body.events.unwrap_or_else(|| vec!["push".into()]);
    let now = Utc::now();
    let hook = {
        let mut state = shared.state();
        let registry = &mut state.hooks;
        // GitHub refuses a second hook with the same URL and an overlapping event.
        let taken = registry.hooks.values().any(|h| {
            h.scope == scope && h.url == url && h.events.iter().any(|e| events.contains(e))
        });
        if taken {
            let place = match scope {
                Scope::Repo(_) => "repository",
                Scope::Org(_) => "organization",
            };
            return Err(validation_failed(&format!(
                "Hook already exists on this {place}"
            )));
        }
        let hook = SimHook {
            id: registry.next_id,
            scope,
            url,
            secret,
            content_type,
            events,
            active: body.active.unwrap_or(true),
            created_at: now,
            updated_at: now,
        };
        registry.next_id += 1;
        registry.hooks.insert(hook.id, hook.clone());
        hook
    };
    Ok((StatusCode::CREATED, Json(hook_json(&shared, &hook))))
}

async fn update(
    State(shared): S,
    Path(p): Params,
    headers: HeaderMap,
    body: Bytes,
) -> GhResult<Json<Value>> {
    let scope = admin_scope(&shared, &p, &headers)?;
    let mut hook = find(&shared, &scope, &p)?;
    let body = parse_body(&body)?;
    if let Some(active) = body.active {
        hook.active = active;
    }
    if let Some(events) = body.events {
        hook.events = events;
    }
    if let Some((url, content_type, secret)) = body.config {
        hook.url = url;
        hook.content_type = content_type;
        hook.secret = secret;
    }
    hook.updated_at = Utc::now();
    shared.state().hooks.hooks.insert(hook.id, hook.clone());
    Ok(Json(hook_json(&shared, &hook)))
}

async fn remove(State(shared): S, Path(p): Params, headers: HeaderMap) -> GhResult<StatusCode> {
    let scope = admin_scope(&shared, &p, &headers)?;
    let hook = find(&shared, &scope, &p)?;
    shared.state().hooks.hooks.remove(&hook.id);
    Ok(StatusCode::NO_CONTENT)
}

fn app_config_json(app: &AppHook) -> Value {
    json!({
        "content_type": app.content_type,
        "insecure_ssl": app.insecure_ssl,
        "secret": if app.secret.is_some() { json!("********") } else { Value::Null },
        "url": app.url,
    })
}

async fn app_config(State(shared): S) -> Json<Value> {
    Json(app_config_json(&shared.state().hooks.app))
}

/// `PATCH /app/hook/config`: the fields given are set, the others kept.
async fn update_app_config(State(shared): S, body: Bytes) -> GhResult<Json<Value>> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| GhError(StatusCode::BAD_REQUEST, "Problems parsing JSON".into()))?;
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(url) = text("url")
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(validation_failed("url must be an http(s) URL"));
    }
    let mut state = shared.state();
    let app = &mut state.hooks.app;
    if let Some(url) = text("url") {
        app.url = Some(url);
    }
    if let Some(content_type) = text("content_type") {
        app.content_type = content_type;
    }
    if let Some(secret) = text("secret") {
        app.secret = (!secret.is_empty()).then_some(secret);
    }
    if let Some(insecure) = text("insecure_ssl") {
        app.insecure_ssl = insecure;
    }
    Ok(Json(app_config_json(app)))
}

async fn app(State(shared): S) -> Json<Value> {
    let app_id = shared.config.app.as_ref().map_or(1, |a| a.app_id);
    Json(templates::app(app_id, &shared.state().hooks.app.events))
}

/// The App's installations: one per configured owner (ids from the simulator's installation
/// id on), or one on `acme` when no owner is configured.
async fn installations(State(shared): S) -> Json<Value> {
    let app_id = shared.config.app.as_ref().map_or(1, |a| a.app_id);
    let list: Vec<Value> = shared
        .state()
        .installations
        .iter()
        .enumerate()
        .map(|(i, (id, account))| {
            let account = if account.is_empty() { "acme" } else { account };
            templates::installation(*id, app_id, account, 1_000 + i as u64)
        })
        .collect();
    Json(json!(list))
}
