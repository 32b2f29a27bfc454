use std::path::Path;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml_with_env(text, Path::new("test.toml"), &env(vars))
}

const SIGNED: &[(&str, &str)] = &[("GITHUB_WEBHOOK_SECRET", "s")];

#[test]
fn the_shipped_example_is_valid_and_matches_the_defaults() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/runnerhub.toml"
    ))
    .unwrap();
    let config = load(&text, SIGNED).unwrap();
    let defaults = Config::default();
    assert_eq!(config.server.listen, defaults.server.listen);
    assert_eq!(config.database.url, defaults.database.url);
    assert_eq!(config.database.retention, defaults.database.retention);
    assert_eq!(
        config.database.forged_retention,
        defaults.database.forged_retention
    );
    assert_eq!(config.limits.max_runners, defaults.limits.max_runners);
    assert_eq!(config.priority.rules, defaults.priority.rules);
    let pool = &config.pools[0];
    let default_pool = PoolConfig::default();
    assert_eq!(pool.image, default_pool.image);
    assert_eq!(pool.idle_timeout, default_pool.idle_timeout);
    assert_eq!(pool.bootstrap_timeout, default_pool.bootstrap_timeout);
    assert_eq!(pool.memory_bytes(), Some(4 << 30));
}

#[test]
fn refuses_to_start_without_a_secret_unless_allowed() {
    let err = load("", &[]).unwrap_err();
    assert!(err.to_string().contains("github.webhook_secrets"), "{err}");
    assert!(load("[github]\nallow_unsigned = true", &[]).is_ok());
}

#[test]
fn unknown_keys_are_named() {
    let err = load("[server]\nlisten_addr = \"x\"", SIGNED).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("listen_addr"), "{text}");
    let err = load(
        "[[pools]]\nname = \"a\"\nlabels = [\"x\"]\nmemroy = \"1g\"",
        SIGNED,
    )
    .unwrap_err();
    assert!(err.to_string().contains("memroy"), "{err}");
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        ("[server]\nlisten = \"nope\"", "server.listen"),
        ("[limits]\nmax_runners = -1", "limits.max_runners"),
        (
            "[[pools]]\nname = \"a\"\nlabels = [\"x\"]\nmemory = \"4q\"",
            "pools[0].memory",
        ),
        (
            "[[pools]]\nname = \"a\"\nlabels = [\"x\"]\nidle_timeout = \"soon\"",
            "pools[0].idle_timeout",
        ),
        (
            "[[pools]]\nname = \"A B\"\nlabels = [\"x\"]",
            "pools[0].name",
        ),
        ("[[pools]]\nname = \"a\"\nlabels = []", "pools[0].labels"),
        (
            "[[pools]]\nname = \"a\"\nlabels = [\"x\"]\nmin_idle = 20",
            "pools[0].min_idle",
        ),
        (
            "[[pools]]\nname = \"a\"\nlabels = [\"x\"]\n[[pools]]\nname = \"a\"\nlabels = [\"y\"]",
            "pools[1].name",
        ),
        (
            "[github]\nregistration = \"organization\"\n[[pools]]\nname = \"a\"\nlabels = [\"x\"]\nmin_idle = 1",
            "github.organization",
        ),
        (
            "[github]\nregistration = \"enterprise\"",
            "github.registration",
        ),
        ("[database]\nurl = \"mysql://x\"", "database.url"),
        ("[database]\nfleet = true", "database.fleet"),
        (
            "[database]\nurl = \"postgres://h/db\"\nfleet = true\nstandby = true",
            "database.standby",
        ),
        (
            "[database]\nurl = \"postgres://h/db\"\nfleet = true\ninstance_timeout = \"1s\"",
            "database.instance_timeout",
        ),
        ("[database]\nretention = \"2d\"", "database.retention"),
        ("[database]\nretention = \"a month\"", "database.retention"),
        (
            "[database]\nforged_retention = \"5s\"",
            "database.forged_retention",
        ),
        (
            "[[pools]]\nname = \"a\"\nlabels = [\"x\"]\nmin_idle = 1",
            "pools[0].repository",
        ),
        (
            "[[pools]]\nname = \"a\"\nlabels = [\"x\"]\nprewarm_on = [\"push\"]",
            "pools[0].repository",
        ),
    ];
    for (text, key) in cases {
        let err = load(text, SIGNED).unwrap_err().to_string();
        assert!(err.contains(key), "expected `{key}` in: {err}");
    }
}

#[test]
fn retention_defaults_to_a_month_and_zero_keeps_everything() {
    let config = load("", SIGNED).unwrap();
    assert_eq!(config.database.retention, DEFAULT_RETENTION);
    assert_eq!(config.database.forged_retention, DEFAULT_FORGED_RETENTION);
    let config = load(
        "[database]\nretention = \"0s\"\nforged_retention = \"12h\"",
        SIGNED,
    )
    .unwrap();
    assert!(config.database.retention.is_zero());
    assert_eq!(config.database.forged_retention.as_secs(), 12 * 3600);
    let config = load(
        "",
        &[
            ("GITHUB_WEBHOOK_SECRET", "s"),
            ("RUNNERHUB__DATABASE__RETENTION", "3d"),
        ],
    )
    .unwrap();
    assert_eq!(config.database.retention, MIN_RETENTION);
}

#[test]
fn toml_syntax_errors_name_the_file() {
    let err = load("[server\n", SIGNED).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert!(err.to_string().contains("test.toml"));
}

#[test]
fn environment_overrides_every_level() {
    let config = load(
        "[[pools]]\nname = \"a\"\nlabels = [\"x\"]",
        &[
            ("GITHUB_WEBHOOK_SECRET", "s1"),
            ("RUNNERHUB__GITHUB__WEBHOOK_SECRETS", "[\"s0\"]"),
            ("RUNNERHUB__SERVER__LISTEN", "0.0.0.0:8080"),
            ("RUNNERHUB__POOLS__0__MAX_RUNNERS", "3"),
            ("RUNNERHUB__POOLS__1__NAME", "gpu"),
            ("RUNNERHUB__POOLS__1__LABELS", "[\"gpu\"]"),
            ("RUNNERHUB__DATABASE__URL", "sqlite:///var/lib/runnerhub/db"),
            ("GITHUB_TOKEN", "ghp_x"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.pools[0].max_runners, 3);
    assert_eq!(config.pools[1].name, "gpu");
    assert_eq!(config.database.url, "sqlite:///var/lib/runnerhub/db");
    let secrets: Vec<_> = config
        .github
        .webhook_secrets
        .iter()
        .map(|s| s.expose())
        .collect();
    assert_eq!(secrets, ["s0", "s1"]);
    assert_eq!(
        config.github.token.as_ref().map(|t| t.expose()),
        Some("ghp_x")
    );
}

#[test]
fn bad_environment_names_the_variable() {
    let err = load(
        "",
        &[("GITHUB_WEBHOOK_SECRET", "s"), ("RUNNERHUB__NOPE__X", "1")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = load(
        "",
        &[
            ("GITHUB_WEBHOOK_SECRET", "s"),
            ("RUNNERHUB__POOLS__5__NAME", "x"),
        ],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("RUNNERHUB__POOLS__5__NAME"),
        "{err}"
    );
}

#[test]
fn secrets_never_print() {
    let config = load(
        "[server]\napi_tokens = [\"tok-123\"]\n[database]\nurl = \"postgres://u:pw@h/db\"",
        &[
            ("GITHUB_WEBHOOK_SECRET", "whsec-456"),
            ("GITHUB_TOKEN", "ghp-789"),
        ],
    )
    .unwrap();
    for text in [format!("{config:?}"), config.to_redacted_toml()] {
        for secret in ["tok-123", "whsec-456", "ghp-789", ":pw@"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
}

#[test]
fn secret_keys_of_the_wrong_type_are_named_without_the_value() {
    let err = load("[server]\napi_tokens = \"tok-unit-77\"", SIGNED)
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.api_tokens"), "{err}");
    assert!(err.contains("expected a sequence"), "{err}");
    assert!(!err.contains("tok-unit-77"), "{err}");
    let err = load("[server]\napi_tokens = [\"tok-unit-77\"\n", SIGNED)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3, column 1"), "{err}");
    assert!(!err.contains("tok-unit-77"), "{err}");
    // Non-secret keys keep their value in the message: it helps, and hides nothing.
    let text = "[[pools]]\nname = \"a\"\nlabels = [\"x\"]\nidle_timeout = \"soon\"";
    let err = load(text, SIGNED).unwrap_err().to_string();
    assert!(err.contains("`soon`"), "{err}");
}

#[test]
fn scheduling_policy_keys_load_and_bad_values_are_named() {
    let config = load(
        r#"
[scheduling]
fair_share = "repository"
wait_alert_after = "5m"
stall_after = "30s"

[[quotas]]
repositories = ["acme/*", "other/api"]
max_runners = 4

[[priority.rules]]
repositories = ["acme/prod-*"]
workflows = ["release"]
score = 100
"#,
        SIGNED,
    )
    .unwrap();
    assert_eq!(config.scheduling.fair_share, FairShare::Repository);
    assert_eq!(config.scheduling.wait_alert_after, Duration::from_secs(300));
    assert_eq!(config.scheduling.stall_after, Duration::from_secs(30));
    assert_eq!(config.quotas[0].max_runners, 4);
    assert!(config.priority.rules[0].labels.is_empty());
    let defaults = Config::default();
    assert_eq!(defaults.scheduling.fair_share, FairShare::None);
    assert_eq!(defaults.scheduling.wait_alert_after.as_secs(), 900);
    assert_eq!(defaults.scheduling.stall_after.as_secs(), 300);
    assert!(defaults.quotas.is_empty());

    let cases: &[(&str, &str)] = &[
        (
            "[scheduling]\nfair_share = \"team\"",
            "scheduling.fair_share",
        ),
        (
            "[[quotas]]\nrepositories = [\"acme\"]\nmax_runners = 2",
            "quotas[0].repositories[0]",
        ),
        (
            "[[quotas]]\nrepositories = [\"acme/*\"]\nmax_runners = 0",
            "quotas[0].max_runners",
        ),
        (
            "[[quotas]]\nrepositories = []\nmax_runners = 1",
            "quotas[0].repositories",
        ),
        ("[[priority.rules]]\nscore = 1", "priority.rules[0].labels"),
        (
            "[[priority.rules]]\nlabels = [\"x\"]\nrepositories = []\nscore = 1",
            "priority.rules[0].repositories",
        ),
        (
            "[[priority.rules]]\nworkflows = [\"a[b]\"]\nscore = 1",
            "priority.rules[0].workflows[0]",
        ),
        (
            "[scheduling]\nwait_alert_after = \"0s\"",
            "scheduling.wait_alert_after",
        ),
        (
            "[scheduling]\nstall_after = \"500ms\"",
            "scheduling.stall_after",
        ),
    ];
    for (text, key) in cases {
        let err = load(text, SIGNED).unwrap_err().to_string();
        assert!(err.contains(key), "{text}: {err}");
    }
}

#[test]
fn scheduling_policy_keys_take_environment_overrides() {
    let config = load(
        "",
        &[
            ("GITHUB_WEBHOOK_SECRET", "s"),
            ("RUNNERHUB__SCHEDULING__FAIR_SHARE", "repository"),
            ("RUNNERHUB__QUOTAS__0__REPOSITORIES", "[\"acme/*\"]"),
            ("RUNNERHUB__QUOTAS__0__MAX_RUNNERS", "3"),
        ],
    )
    .unwrap();
    assert_eq!(config.scheduling.fair_share, FairShare::Repository);
    assert_eq!(config.quotas[0].repositories, ["acme/*"]);
    assert_eq!(config.quotas[0].max_runners, 3);
}

#[test]
fn the_runner_name_prefix_defaults_from_the_instance_id_and_is_validated() {
    let prefix = |text: &str| load(text, SIGNED).unwrap().runner_name_prefix();
    assert_eq!(
        prefix("[server]\ninstance_id = \"build-host-1\""),
        "runnerhub-build-host-1"
    );
    assert_eq!(
        prefix("[server]\ninstance_id = \"ci host/é\""),
        "runnerhub-ci-host--"
    );
    // Longer ids keep their start and a hash: ids that differ at the end stay apart.
    let one = prefix("[server]\ninstance_id = \"ci-prod-eu-west-1\"");
    let two = prefix("[server]\ninstance_id = \"ci-prod-eu-west-2\"");
    assert_ne!(one, two);
    assert!(one.starts_with("runnerhub-ci-prod-"), "{one}");
    assert_eq!(one.len(), MAX_RUNNER_NAME_PREFIX);
    assert_eq!(
        prefix("[github]\nrunner_name_prefix = \"acme.ci_2\""),
        "acme.ci_2"
    );
    for bad in ["", "has space", "x/y", "a23456789012345678901234"] {
        let text = format!("[github]\nrunner_name_prefix = \"{bad}\"");
        let err = load(&text, SIGNED).unwrap_err().to_string();
        assert!(err.contains("github.runner_name_prefix"), "{bad:?}: {err}");
    }
}
