//! The one configuration type, loaded as defaults < TOML file < environment.
//!
//! Every key of the file can be overridden from the environment as
//! `RUNNERHUB__<SECTION>__<KEY>` (double underscores separate levels; array
//! elements are addressed by index: `RUNNERHUB__POOLS__0__MAX_RUNNERS=4`). A value
//! is read as a TOML literal when it parses as one (`4`, `true`, `["a","b"]`)
//! and as a plain string otherwise. On top of that, the conventional
//! `GITHUB_WEBHOOK_SECRET` adds a webhook secret and `GITHUB_TOKEN` sets the
//! token, so secrets never need to be written into the file.
//!
//! Errors name the key (`pools[0].memory: …`), and unknown keys are refused,
//! because a misspelt key silently ignored is a production incident later.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

mod redact;
mod secret;
mod validate;

pub use secret::Secret;

/// Prefix of the environment variables that override file keys.
pub const ENV_PREFIX: &str = "RUNNERHUB__";
/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "config/runnerhub.toml";

/// Why a configuration could not be loaded. Each variant names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole runnerhub configuration (see `config/runnerhub.toml` for a documented example).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener, API tokens and the daemon's identity.
    pub server: ServerConfig,
    /// Where state lives: SQLite by default, PostgreSQL for several instances.
    pub database: DatabaseConfig,
    /// GitHub API access and webhook verification.
    pub github: GithubConfig,
    /// The Docker engine that runs runner containers.
    pub docker: DockerConfig,
    /// Host-wide capacity.
    pub limits: LimitsConfig,
    /// Runner pools: which labels each serves and how its containers look.
    pub pools: Vec<PoolConfig>,
    /// Priority rules (by labels, repository, workflow) and aging.
    pub priority: PriorityConfig,
    /// Fair share between repositories and when a waiting job deserves an alert (DESIGN §13).
    pub scheduling: SchedulingConfig,
    /// Runners at once for the jobs of matching repositories, all pools together (DESIGN §13).
    pub quotas: Vec<QuotaConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the webhook endpoint, REST API, WebSocket and dashboard. Default `127.0.0.1:3000`.
    pub listen: SocketAddr,
    /// Bearer tokens accepted on `/api/*` (not the webhook) and `/ws`. Empty (default) = open.
    pub api_tokens: Vec<Secret>,
    /// Optional separate listener for `/metrics`. Default: served on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// This daemon's identity, written on its containers (`runnerhub.instance`). Default: host name.
    pub instance_id: String,
    /// On SIGTERM, how long the listener keeps answering (webhooks with 503, `/readyz` with 503)
    /// before it closes, so load balancers and kept-alive clients see the refusal instead of a
    /// reset. Default `2s`; `0s` in tests.
    #[serde(with = "duration_str")]
    pub shutdown_grace: Duration,
    /// The URL GitHub and browsers reach the daemon at, e.g. `https://ci.example.com` (behind a
    /// proxy): the webhook URL `runnerhub hooks` installs, and a `Host` and `Origin` that the open
    /// mode (no API token) answers besides the listen address and localhost. Default none.
    pub public_url: Option<String>,
    /// Other origins (`scheme://host[:port]`) whose pages may use the API and `/ws` in the open
    /// mode, e.g. a dashboard served elsewhere. Default none.
    pub allowed_origins: Vec<String>,
    /// A connection must send a whole request head within this, when it opens and between
    /// requests (so it is also the idle timeout of a kept-alive connection). Default `10s`.
    /// Read at start.
    #[serde(with = "duration_str")]
    pub header_timeout: Duration,
    /// A request body must arrive whole within this, from when its head was read: past it the
    /// answer is 408 and the connection is closed. Default `10s` (GitHub gives up after 10 s).
    #[serde(with = "duration_str")]
    pub body_timeout: Duration,
    /// Bytes of request bodies held in memory at once, all connections together (`64m`).
    /// A request that would pass it is answered 503 (GitHub can redeliver it). Read at start.
    pub body_budget: String,
    /// Connections open at once (WebSockets included). Default `0`: the open-file limit less
    /// a reserve for the database, Docker and GitHub (see docs/security.md, "Hostile traffic"); a larger
    /// value is lowered to that. At the limit the longest-idle connection is closed to make
    /// room, or the new one is refused when none is idle. Read at start.
    pub max_connections: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            api_tokens: Vec::new(),
            metrics_listen: None,
            instance_id: default_instance_id(),
            shutdown_grace: Duration::from_secs(2),
            public_url: None,
            allowed_origins: Vec::new(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            body_budget: "64m".to_owned(),
            max_connections: 0,
        }
    }
}

impl ServerConfig {
    /// `body_budget` in bytes (validated at load).
    pub fn body_budget_bytes(&self) -> usize {
        parse_memory(&self.body_budget)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(64 << 20)
    }
}

/// The longest `github.runner_name_prefix`: with a 32-character pool name and the 8 characters
/// of the id, a runner name stays within GitHub's 64.
pub const MAX_RUNNER_NAME_PREFIX: usize = 22;

impl Config {
    /// `github.runner_name_prefix`, or its default from `server.instance_id`.
    pub fn runner_name_prefix(&self) -> String {
        if let Some(prefix) = &self.github.runner_name_prefix {
            return prefix.clone();
        }
        let instance: String = self
            .server
            .instance_id
            .chars()
            .map(|c| if is_runner_name_char(c) { c } else { '-' })
            .collect();
        let prefix = format!("runnerhub-{instance}");
        if prefix.len() <= MAX_RUNNER_NAME_PREFIX {
            return prefix;
        }
        // Too long: its start and a hash of the whole id, so that ids differing only at the
        // end (`ci-eu-west-1`, `ci-eu-west-2`) still get different prefixes.
        let hash = self
            .server
            .instance_id
            .bytes()
            .fold(0x811c_9dc5_u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
        let keep = MAX_RUNNER_NAME_PREFIX - "runnerhub-".len() - 5;
        format!("runnerhub-{}-{:04x}", &instance[..keep], hash & 0xffff)
    }
}

/// Characters a runner name may hold (GitHub's, and Docker's for container names).
pub fn is_runner_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn default_instance_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "runnerhub".to_owned())
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (default `sqlite://runnerhub.db`, created on first start) or `postgres://…`.
    pub url: String,
    /// When another daemon serves from the database: wait (checking every few seconds) and
    /// take over when it stops or dies, instead of refusing to start. Default false.
    pub standby: bool,
    /// Processed deliveries (with their payloads), completed jobs and runs, and removed runners
    /// older than this are deleted, in small batches, by the serving daemon. Default `30d`; at
    /// least `3d` (GitHub redelivers for 3 days, and catch-up looks back as far); `0s` keeps
    /// everything.
    #[serde(with = "duration_str")]
    pub retention: Duration,
    /// Deliveries whose signature failed (kept as evidence) are deleted once older than this, or
    /// than `retention` if that is shorter. Default `7d`; `0s` leaves them to `retention`.
    #[serde(with = "duration_str")]
    pub forged_retention: Duration,
    /// Several instances (one per build host) serve from this one PostgreSQL database at once,
    /// sharing the work (DESIGN §9). PostgreSQL only; not with `standby`. Default false.
    pub fleet: bool,
    /// In a fleet: an instance whose heartbeat is older than this is dead (its queued jobs go
    /// back to the fleet, its idle runners are deregistered). Default `30s`.
    #[serde(with = "duration_str")]
    pub instance_timeout: Duration,
}

/// `database.instance_timeout`'s default.
pub const DEFAULT_INSTANCE_TIMEOUT: Duration = Duration::from_secs(30);

/// `database.retention`'s default: a month of history for the API, the dashboard and replay.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// `database.forged_retention`'s default: a week to look into a flood of forged requests.
pub const DEFAULT_FORGED_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// The shortest `database.retention`: GitHub redelivers for 3 days, catch-up looks back 3 days,
/// and a job pruned sooner would be queued again by a late redelivery of its `queued` event.
pub const MIN_RETENTION: Duration = Duration::from_secs(3 * 86_400);

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://runnerhub.db".to_owned(),
            standby: false,
            retention: DEFAULT_RETENTION,
            forged_retention: DEFAULT_FORGED_RETENTION,
            fleet: false,
            instance_timeout: DEFAULT_INSTANCE_TIMEOUT,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A PostgreSQL URL may carry a password.
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url_password(&self.url))
            .field("standby", &self.standby)
            .field("retention", &self.retention)
            .field("forged_retention", &self.forged_retention)
            .field("fleet", &self.fleet)
            .field("instance_timeout", &self.instance_timeout)
            .finish()
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// How runners are registered at GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// `POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig`, per job repository.
    #[default]
    Repository,
    /// `POST /orgs/{org}/actions/runners/generate-jitconfig`; needs `github.organization`.
    Organization,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// REST API base. Default `https://api.github.com`; GHES or the simulator otherwise.
    pub api_url: String,
    /// Webhook secrets; any one verifies a delivery (rotation). `GITHUB_WEBHOOK_SECRET` adds one.
    pub webhook_secrets: Vec<Secret>,
    /// Accept unsigned deliveries when no secret is configured. Default false: start-up refuses.
    pub allow_unsigned: bool,
    /// Personal access token (`GITHUB_TOKEN`). Alternative to the App keys below.
    pub token: Option<Secret>,
    /// GitHub App id (or client id), the JWT issuer.
    pub app_id: Option<String>,
    /// GitHub App installation whose token is used for every call. Optional: without it each
    /// call uses the App's installation on the repository's or organization's owner (the one
    /// its deliveries name), found with `GET /app/installations`, so one App serves several
    /// organizations.
    pub installation_id: Option<u64>,
    /// PEM file of the GitHub App's private key.
    pub private_key_path: Option<PathBuf>,
    /// `repository` (default) or `organization`.
    pub registration: Registration,
    /// Organization login, required when `registration = "organization"`.
    pub organization: Option<String>,
    /// Runner group of registered runners. Default 1 (Default group).
    pub runner_group_id: u64,
    /// What every runner name starts with (`<prefix>-<pool>-<8 characters of its id>`): the
    /// reconciliation deletes leftover registrations only under it, so two deployments on one
    /// organization never delete each other's runners. 1-22 characters of A-Z a-z 0-9 . _ -.
    /// Default `runnerhub-` and `server.instance_id` (a longer id: its first 7 characters and
    /// 4 hex digits of its hash).
    pub runner_name_prefix: Option<String>,
    /// How often to ask GitHub for the jobs of known repositories, to catch up on deliveries
    /// that never arrived (GitHub does not retry one that failed, e.g. while the daemon was
    /// down). Also once shortly after start. Default `5m`; `0s` turns it off. Only with pools.
    #[serde(with = "duration_str")]
    pub catch_up_interval: Duration,
    /// How often to list the webhook's recent deliveries at GitHub and ask it to redeliver the
    /// failed ones the audit log lacks (GitHub keeps them 3 days). Default `5m`; `0s` turns
    /// it off. Needs credentials that may read the hook (see `runnerhub hooks`).
    #[serde(with = "duration_str")]
    pub redeliver_interval: Duration,
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_url: "https://api.github.com".to_owned(),
            webhook_secrets: Vec::new(),
            allow_unsigned: false,
            token: None,
            app_id: None,
            installation_id: None,
            private_key_path: None,
            registration: Registration::Repository,
            organization: None,
            runner_group_id: 1,
            runner_name_prefix: None,
            catch_up_interval: Duration::from_secs(300),
            redeliver_interval: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Engine address: `unix:///var/run/docker.sock` (default), `tcp://…`, or `http://…`.
    pub host: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            host: "unix:///var/run/docker.sock".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Runner containers this host runs at once, all pools together. Default 20.
    pub max_runners: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { max_runners: 20 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Pool name: unique, `[a-z0-9-]`, used in container names and metrics.
    pub name: String,
    /// Labels the pool's runners carry; a job is served when all its labels are here.
    pub labels: Vec<String>,
    /// Runner image. Default `ghcr.io/actions/actions-runner:latest`.
    pub image: String,
    /// Container command. Default `["/home/runner/run.sh"]`.
    pub command: Vec<String>,
    /// Extra environment of the container.
    pub env: BTreeMap<String, String>,
    /// CPU limit in cores (0 = none). Default 2.0.
    pub cpus: f64,
    /// Memory limit such as `4g`, `512m` (empty = none). Default `4g`.
    pub memory: String,
    /// Docker network mode: `bridge` (default), `host`, or a network name.
    pub network: String,
    /// Extra bind mounts `SRC:DST[:ro]`.
    pub mounts: Vec<String>,
    /// Run containers privileged. Default false; only for pools that need it (e.g. docker-in-docker).
    pub privileged: bool,
    /// Runners of this pool at once. Default 10.
    pub max_runners: u32,
    /// Warm runners kept idle. Default 0.
    pub min_idle: u32,
    /// An idle runner older than this is removed. Default `10m`.
    #[serde(with = "duration_str")]
    pub idle_timeout: Duration,
    /// A runner not idle within this fails and is replaced. Default `5m`.
    #[serde(with = "duration_str")]
    pub bootstrap_timeout: Duration,
    /// Events (`push`, `pull_request`) that pre-warm one runner in this pool. Default none.
    pub prewarm_on: Vec<String>,
    /// Repository (`owner/name`) that warm runners register with when `registration = "repository"`.
    pub repository: Option<String>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            name: String::new(),
            labels: Vec::new(),
            image: "ghcr.io/actions/actions-runner:latest".to_owned(),
            command: vec!["/home/runner/run.sh".to_owned()],
            env: BTreeMap::new(),
            cpus: 2.0,
            memory: "4g".to_owned(),
            network: "bridge".to_owned(),
            mounts: Vec::new(),
            privileged: false,
            max_runners: 10,
            min_idle: 0,
            idle_timeout: Duration::from_secs(600),
            bootstrap_timeout: Duration::from_secs(300),
            prewarm_on: Vec::new(),
            repository: None,
        }
    }
}

impl PoolConfig {
    /// The memory limit in bytes, if any (validated at load).
    pub fn memory_bytes(&self) -> Option<i64> {
        parse_memory(&self.memory).ok().flatten()
    }
}

/// `4g`, `512m`, `1024k`, `1073741824` → bytes; empty → none.
pub fn parse_memory(text: &str) -> Result<Option<i64>, String> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() {
        return Ok(None);
    }
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text.as_str(), ""),
    };
    let factor: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("`{text}` is not a size like 512m or 4g")),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 512m or 4g"))?;
    n.checked_mul(factor)
        .map(Some)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// One priority rule: a job it applies to gets `score` added. A rule applies when each of its
/// lists that is set matches: any of `labels`, any glob of `repositories`, any of `workflows`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRule {
    /// Any of these labels (case-insensitive) triggers the rule. Default none: any labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Globs over `owner/name` (`*` and `?` within a part, case-insensitive). Default: any
    /// repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<String>>,
    /// Workflow names (globs, case-insensitive). Default: any workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflows: Option<Vec<String>>,
    /// Added to the job's priority; may be negative.
    pub score: i64,
}

/// `[scheduling]`: fair share, the wait alert, and when launch failures stop being retried
/// quietly.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulingConfig {
    /// `"repository"`: among waiting jobs of equal rule score, the repository with the fewest
    /// runners of the pool goes first. `"none"` (default): priority, aging, then oldest.
    pub fair_share: FairShare,
    /// A job waiting longer than this is counted in `runnerhub_jobs_waiting_too_long{pool,
    /// reason}`; `config/prometheus-alerts.yml` alerts on it for reasons other than capacity.
    /// Default `15m`.
    #[serde(with = "duration_str")]
    pub wait_alert_after: Duration,
    /// A pool with queued jobs it cannot launch for (for a cause other than capacity) this
    /// long is stalled: `GET /api/webhooks/health` says `degraded`. A job whose registration
    /// scope GitHub has answered 404 for this long is refused (`unknown_scope`). Default `5m`.
    #[serde(with = "duration_str")]
    pub stall_after: Duration,
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        SchedulingConfig {
            fair_share: FairShare::None,
            wait_alert_after: Duration::from_secs(15 * 60),
            stall_after: Duration::from_secs(5 * 60),
        }
    }
}

/// How free runner slots are shared between repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FairShare {
    /// Priority, aging, then the oldest job.
    #[default]
    None,
    /// Repositories take turns at equal rule score (fewest runners of the pool first).
    Repository,
}

/// `[[quotas]]`: runners at once for the jobs of the matching repositories.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Globs over `owner/name` (`acme/*`); the quota counts every matching repository's jobs
    /// together.
    pub repositories: Vec<String>,
    /// Runners at once for those jobs, all pools together, counted by the job each runner runs.
    pub max_runners: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorityConfig {
    /// Rules. Default: the original RunnerHub's label rules (production/deploy +100,
    /// critical/urgent +50, ubuntu-latest/small +10, large/xl −10). Setting any rule replaces
    /// the defaults.
    pub rules: Vec<PriorityRule>,
    /// Points a waiting job gains per minute, so nothing waits forever. Default 1.0.
    pub aging_per_minute: f64,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        let rule = |labels: &[&str], score| PriorityRule {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            repositories: None,
            workflows: None,
            score,
        };
        PriorityConfig {
            rules: vec![
                rule(&["production", "deploy"], 100),
                rule(&["critical", "urgent"], 50),
                rule(&["ubuntu-latest", "small"], 10),
                rule(&["large", "xl"], -10),
            ],
            aging_per_minute: 1.0,
        }
    }
}

/// Serde helpers for durations written as `30s`, `10m`, `1h30m`.
pub mod duration_str {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration like 30s or 10m: {e}"))
        })
    }
}

impl Config {
    /// Loads `path` (if it exists, or fails if `must_exist`), applies the process
    /// environment, and validates.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, must_exist, &env)
    }

    /// As [`Config::load`], with an explicit environment (for tests).
    pub fn load_with_env(
        path: &Path,
        must_exist: bool,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::from_toml_with_env(&text, path, env)
    }

    /// Parses TOML text, applies environment overrides and validates.
    pub fn from_toml_with_env(
        text: &str,
        origin: &Path,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut root: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: redact::syntax_message(text, &e),
        })?;
        validate::apply_env_overrides(&mut root, env)?;
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(root))
            .map_err(|e| {
                let key = e.path().to_string();
                let message = e.into_inner().to_string();
                if redact::is_secret_key(&key) {
                    ConfigError::invalid(key, redact::secret_type_message(&message))
                } else {
                    ConfigError::invalid(key, message)
                }
            })?;
        for (var, value) in env {
            match var.as_str() {
                "GITHUB_WEBHOOK_SECRET" if !value.is_empty() => config
                    .github
                    .webhook_secrets
                    .push(Secret::new(value.clone())),
                "GITHUB_TOKEN" if !value.is_empty() => {
                    config.github.token = Some(Secret::new(value.clone()))
                }
                _ => {}
            }
        }
        validate::validate(&config)?;
        Ok(config)
    }

    /// The configuration as TOML with every secret replaced by `***`.
    pub fn to_redacted_toml(&self) -> String {
        let mut copy = self.clone();
        copy.database.url = redact_url_password(&copy.database.url);
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }

    /// Runs the cross-field checks again (for a configuration built or edited in code).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// The pool with this name.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests;
