//! Environment overrides and the checks serde cannot express.

use std::collections::HashSet;

use super::{Config, ConfigError, ENV_PREFIX, Registration, parse_memory};
use crate::domain::Glob;

/// Applies `RUNNERHUB__A__B=value` variables onto the parsed TOML tree.
pub(super) fn apply_env_overrides(
    root: &mut toml::Table,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut overrides: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    // Deterministic order, so `POOLS__0__NAME` creates the element before deeper keys use it.
    overrides.sort();
    for (var, raw) in overrides {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(env_error(var, "empty key segment (use __ between levels)"));
        }
        set_path(root, &path, parse_env_value(raw)).map_err(|m| env_error(var, &m))?;
    }
    Ok(())
}

fn env_error(var: &str, message: &str) -> ConfigError {
    ConfigError::Env {
        var: var.to_owned(),
        message: message.to_owned(),
    }
}

/// A TOML literal when the text is one (`4`, `true`, `["a"]`), else the text as a string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (head, rest) = path.split_first().expect("non-empty path");
    if rest.is_empty() {
        table.insert(head.clone(), value);
        return Ok(());
    }
    // A numeric next segment means the missing key is a list (`POOLS__0__NAME`).
    let next_is_index = rest[0].bytes().all(|b| b.is_ascii_digit());
    let child = table.entry(head.clone()).or_insert_with(|| {
        if next_is_index {
            toml::Value::Array(Vec::new())
        } else {
            toml::Value::Table(toml::Table::new())
        }
    });
    set_value_path(child, rest, value, head)
}

fn set_value_path(
    node: &mut toml::Value,
    path: &[String],
    value: toml::Value,
    at: &str,
) -> Result<(), String> {
    match node {
        toml::Value::Table(t) => set_path(t, path, value),
        toml::Value::Array(items) => {
            let (index, rest) = path.split_first().expect("non-empty path");
            let index: usize = index
                .parse()
                .map_err(|_| format!("`{at}` is a list: expected an index, got `{index}`"))?;
            if index > items.len() {
                return Err(format!(
                    "`{at}` has {} element(s); index {index} would leave a gap",
                    items.len()
                ));
            }
            if index == items.len() {
                items.push(toml::Value::Table(toml::Table::new()));
            }
            if rest.is_empty() {
                items[index] = value;
                Ok(())
            } else {
                set_value_path(&mut items[index], rest, value, at)
            }
        }
        _ => Err(format!("`{at}` is a single value, it has no sub-keys")),
    }
}

/// Cross-field rules, each error naming its key.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    validate_server(&config.server)?;
    let github = &config.github;
    if github.webhook_secrets.is_empty() && !github.allow_unsigned {
        return Err(ConfigError::invalid(
            "github.webhook_secrets",
            "no webhook secret configured: set github.webhook_secrets or GITHUB_WEBHOOK_SECRET \
             (or github.allow_unsigned = true to accept unsigned deliveries, for local testing only)",
        ));
    }
    if github.webhook_secrets.iter().any(|s| s.expose().is_empty()) {
        return Err(ConfigError::invalid(
            "github.webhook_secrets",
            "a secret is empty",
        ));
    }
    if !(github.api_url.starts_with("http://") || github.api_url.starts_with("https://")) {
        return Err(ConfigError::invalid(
            "github.api_url",
            format!("`{}` is not an http(s) URL", github.api_url),
        ));
    }
    // Runners for jobs register with the job's owner; only warm runners (min_idle, prewarm_on)
    // have no job to take an owner from.
    if github.registration == Registration::Organization
        && github.organization.is_none()
        && let Some(pool) = config
            .pools
            .iter()
            .find(|p| p.min_idle > 0 || !p.prewarm_on.is_empty())
    {
        return Err(ConfigError::invalid(
            "github.organization",
            format!(
                "required when github.registration = \"organization\" and a pool keeps warm \
                 runners (pool `{}` has min_idle or prewarm_on): a job's runner registers \
                 with the job's owner, a warm runner with this organization",
                pool.name
            ),
        ));
    }
    // The installation is optional: without it each call uses the installation on the
    // repository's owner (`GET /app/installations`), so one App serves several organizations.
    if github.app_id.is_some() != github.private_key_path.is_some()
        || (github.installation_id.is_some() && github.app_id.is_none())
    {
        return Err(ConfigError::invalid(
            "github.app_id",
            "GitHub App auth needs app_id and private_key_path together (installation_id is \
             optional: by default the installation on each repository's owner is used)",
        ));
    }
    let url = &config.database.url;
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres:")
        || url.starts_with("postgresql:"))
    {
        return Err(ConfigError::invalid(
            "database.url",
            "expected sqlite://PATH or postgres://…",
        ));
    }
    validate_retention(&config.database)?;
    validate_fleet(&config.database)?;
    if config.limits.max_runners == 0 {
        return Err(ConfigError::invalid(
            "limits.max_runners",
            "must be at least 1",
        ));
    }
    if config.server.instance_id.is_empty() {
        return Err(ConfigError::invalid(
            "server.instance_id",
            "must not be empty",
        ));
    }
    validate_pools(config)?;
    validate_policy(config)?;
    if let Some(prefix) = &config.github.runner_name_prefix {
        let max = crate::config::MAX_RUNNER_NAME_PREFIX;
        if prefix.is_empty()
            || prefix.len() > max
            || !prefix.chars().all(crate::config::is_runner_name_char)
        {
            return Err(ConfigError::invalid(
                "github.runner_name_prefix",
                format!(
                    "`{prefix}` must be 1-{max} characters of A-Z, a-z, 0-9, `.`, `_`, `-` \
                     (runner names are `<prefix>-<pool>-<8 characters>`, at most 64)"
                ),
            ));
        }
    }
    if !config.priority.aging_per_minute.is_finite() || config.priority.aging_per_minute < 0.0 {
        return Err(ConfigError::invalid(
            "priority.aging_per_minute",
            "must be a non-negative number",
        ));
    }
    Ok(())
}

/// Priority rules, `[scheduling]` and `[[quotas]]` (DESIGN §13).
fn validate_policy(config: &Config) -> Result<(), ConfigError> {
    for (i, rule) in config.priority.rules.iter().enumerate() {
        let key = |field: &str| format!("priority.rules[{i}].{field}");
        if rule.labels.is_empty() && rule.repositories.is_none() && rule.workflows.is_none() {
            return Err(ConfigError::invalid(
                key("labels"),
                "a rule needs labels, repositories or workflows (or it would apply to every job)",
            ));
        }
        if rule.labels.iter().any(|l| l.trim().is_empty()) {
            return Err(ConfigError::invalid(key("labels"), "a label is empty"));
        }
        check_globs(
            &key("repositories"),
            rule.repositories.as_deref(),
            Glob::repository,
        )?;
        check_globs(&key("workflows"), rule.workflows.as_deref(), Glob::workflow)?;
    }
    if config.scheduling.wait_alert_after.is_zero() {
        return Err(ConfigError::invalid(
            "scheduling.wait_alert_after",
            "must be more than 0s",
        ));
    }
    // Shorter than a launch that fails once and succeeds on its retry would call every such
    // hiccup a stall, and refuse a job at the first 404.
    if config.scheduling.stall_after < std::time::Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "scheduling.stall_after",
            "must be at least 1s",
        ));
    }
    for (i, quota) in config.quotas.iter().enumerate() {
        let key = |field: &str| format!("quotas[{i}].{field}");
        check_globs(
            &key("repositories"),
            Some(&quota.repositories),
            Glob::repository,
        )?;
        if quota.max_runners == 0 {
            return Err(ConfigError::invalid(
                key("max_runners"),
                "must be at least 1 (a quota of 0 would never run the matching jobs; remove \
                 their pool's labels instead)",
            ));
        }
    }
    Ok(())
}

/// A list of globs that is set must hold at least one, and each must parse.
fn check_globs(
    key: &str,
    globs: Option<&[String]>,
    parse: fn(&str) -> Result<Glob, String>,
) -> Result<(), ConfigError> {
    let Some(globs) = globs else {
        return Ok(());
    };
    if globs.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "is empty: it would match nothing (leave the key out to match everything)",
        ));
    }
    for (j, glob) in globs.iter().enumerate() {
        parse(glob).map_err(|message| ConfigError::invalid(format!("{key}[{j}]"), message))?;
    }
    Ok(())
}

fn validate_retention(database: &super::DatabaseConfig) -> Result<(), ConfigError> {
    let retention = database.retention;
    if !retention.is_zero() && retention < super::MIN_RETENTION {
        return Err(ConfigError::invalid(
            "database.retention",
            format!(
                "`{}` is shorter than 3d: GitHub redelivers deliveries for 3 days, and a job \
                 pruned sooner would be queued again by a late redelivery (`0s` keeps everything)",
                humantime::format_duration(retention)
            ),
        ));
    }
    if !database.forged_retention.is_zero() && database.forged_retention.as_secs() < 60 {
        return Err(ConfigError::invalid(
            "database.forged_retention",
            "must be at least 1m (`0s` leaves forged deliveries to database.retention)",
        ));
    }
    Ok(())
}

fn validate_pools(config: &Config) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (i, pool) in config.pools.iter().enumerate() {
        let key = |field: &str| format!("pools[{i}].{field}");
        let valid_name = !pool.name.is_empty()
            && pool.name.len() <= 32
            && pool
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_name {
            return Err(ConfigError::invalid(
                key("name"),
                format!("`{}` must be 1-32 characters of a-z, 0-9, -", pool.name),
            ));
        }
        if !names.insert(pool.name.as_str()) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("pool `{}` is defined twice", pool.name),
            ));
        }
        if pool.labels.is_empty() || pool.labels.len() > 100 {
            return Err(ConfigError::invalid(key("labels"), "needs 1 to 100 labels"));
        }
        if pool.labels.iter().any(|l| l.trim().is_empty()) {
            return Err(ConfigError::invalid(key("labels"), "a label is empty"));
        }
        if pool.image.is_empty() {
            return Err(ConfigError::invalid(key("image"), "must not be empty"));
        }
        if let Err(message) = parse_memory(&pool.memory) {
            return Err(ConfigError::invalid(key("memory"), message));
        }
        if !pool.cpus.is_finite() || pool.cpus < 0.0 {
            return Err(ConfigError::invalid(
                key("cpus"),
                "must be a non-negative number",
            ));
        }
        if pool.max_runners == 0 {
            return Err(ConfigError::invalid(
                key("max_runners"),
                "must be at least 1",
            ));
        }
        if pool.min_idle > pool.max_runners {
            return Err(ConfigError::invalid(
                key("min_idle"),
                format!("{} exceeds max_runners {}", pool.min_idle, pool.max_runners),
            ));
        }
        for mount in &pool.mounts {
            let parts: Vec<&str> = mount.split(':').collect();
            let ok = matches!(parts.len(), 2 | 3)
                && parts[..2].iter().all(|p| p.starts_with('/'))
                && parts.get(2).is_none_or(|m| matches!(*m, "ro" | "rw"));
            if !ok {
                return Err(ConfigError::invalid(
                    key("mounts"),
                    format!("`{mount}` is not SRC:DST[:ro|rw] with absolute paths"),
                ));
            }
        }
        for event in &pool.prewarm_on {
            if !matches!(event.as_str(), "push" | "pull_request") {
                return Err(ConfigError::invalid(
                    key("prewarm_on"),
                    format!("`{event}`: only push and pull_request can pre-warm"),
                ));
            }
        }
        let warms = pool.min_idle > 0 || !pool.prewarm_on.is_empty();
        if warms
            && config.github.registration == Registration::Repository
            && pool.repository.is_none()
        {
            return Err(ConfigError::invalid(
                key("repository"),
                "warm runners (min_idle, prewarm_on) need a repository to register with when \
                 github.registration = \"repository\"",
            ));
        }
        if let Some(repo) = &pool.repository
            && repo.split('/').filter(|p| !p.is_empty()).count() != 2
        {
            return Err(ConfigError::invalid(
                key("repository"),
                format!("`{repo}` is not owner/name"),
            ));
        }
    }
    Ok(())
}

/// The hardening keys of `[server]`: URLs, origins, timeouts and the body budget.
fn validate_server(server: &super::ServerConfig) -> Result<(), ConfigError> {
    if let Some(url) = &server.public_url {
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if parsed.is_none() {
            return Err(ConfigError::invalid(
                "server.public_url",
                format!("`{url}` is not an http(s) URL like https://ci.example.com"),
            ));
        }
    }
    for (i, origin) in server.allowed_origins.iter().enumerate() {
        let trimmed = origin.trim_end_matches('/');
        let ok = reqwest::Url::parse(trimmed).ok().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.origin()
                    .ascii_serialization()
                    .eq_ignore_ascii_case(trimmed)
        });
        if !ok {
            return Err(ConfigError::invalid(
                format!("server.allowed_origins[{i}]"),
                format!("`{origin}` is not an origin like https://dash.example.com (no path)"),
            ));
        }
    }
    for (key, value) in [
        ("server.header_timeout", server.header_timeout),
        ("server.body_timeout", server.body_timeout),
    ] {
        if value.is_zero() {
            return Err(ConfigError::invalid(key, "must be more than 0s"));
        }
    }
    match parse_memory(&server.body_budget) {
        Ok(Some(n)) if n >= 1 << 20 => Ok(()),
        Ok(_) => Err(ConfigError::invalid(
            "server.body_budget",
            "must be at least 1m (one request body needs room)",
        )),
        Err(message) => Err(ConfigError::invalid("server.body_budget", message)),
    }
}

/// `database.fleet` needs a database several hosts reach, and excludes `standby` (in a fleet
/// every instance serves; a standby only waits).
fn validate_fleet(database: &super::DatabaseConfig) -> Result<(), ConfigError> {
    if database.fleet && database.url.starts_with("sqlite:") {
        return Err(ConfigError::invalid(
            "database.fleet",
            "a fleet shares one PostgreSQL database (database.url = \"postgres://…\"); \
             SQLite serves one instance",
        ));
    }
    if database.fleet && database.standby {
        return Err(ConfigError::invalid(
            "database.standby",
            "not with database.fleet = true: every instance of a fleet serves",
        ));
    }
    let timeout = database.instance_timeout;
    if timeout < std::time::Duration::from_secs(3) || timeout > std::time::Duration::from_secs(600)
    {
        return Err(ConfigError::invalid(
            "database.instance_timeout",
            format!("{timeout:?} is out of range: from 3s to 10m"),
        ));
    }
    Ok(())
}
