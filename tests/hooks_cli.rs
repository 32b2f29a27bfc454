//! `runnerhub hooks install|list|status|remove` (DESIGN §12) as a user runs them, against the
//! simulator: idempotent install, the App's hook, deliveries with their codes, and errors that
//! say what is wrong (no URL, unknown repository, no admin rights) without printing secrets.

mod common;

use std::path::Path;

use common::sim::{APP_ID, APP_PUBLIC_KEY, INSTALLATION_ID, SECRET, TOKEN};
use runnerhub::github::sim::{SimApp, SimConfig, SimHandle, Simulator};
use runnerhub::store::{RecoveryStore, sqlite::SqliteStore};

/// Nothing listens here: deliveries to it fail, as to a daemon that is down.
const PUBLIC_URL: &str = "http://127.0.0.1:9";

async fn sim() -> SimHandle {
    Simulator::start(SimConfig {
        webhook_secret: SECRET.into(),
        tokens: vec![TOKEN.into()],
        read_only_tokens: vec!["read-only-token".into()],
        owners: vec!["acme".into()],
        app: Some(SimApp {
            app_id: APP_ID,
            client_id: None,
            installation_id: INSTALLATION_ID,
            public_key_pem: APP_PUBLIC_KEY.into(),
        }),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn write_config(dir: &Path, sim: &SimHandle, extra_github: &str, server: &str) -> String {
    let path = dir.join("runnerhub.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\n{server}\n[database]\nurl = \"sqlite://{}/runnerhub.db\"\n\
             [github]\napi_url = \"{}\"\n{extra_github}\n",
            dir.display(),
            sim.url()
        ),
    )
    .unwrap();
    path.display().to_string()
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn hooks(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .arg("hooks")
        .args(args)
        .env_clear()
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(SECRET), "the secret was printed: {text}");
        assert!(!text.contains(TOKEN), "the token was printed: {text}");
    }
    run
}

#[tokio::test]
async fn install_is_idempotent_and_list_status_remove_see_the_hook() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &sim,
        &format!("token = \"{TOKEN}\""),
        &format!("public_url = \"{PUBLIC_URL}\""),
    );
    let install = hooks(&["install", "--config", &config, "--repo", "acme/api"], &[]).await;
    assert!(install.ok, "{}{}", install.stdout, install.stderr);
    assert!(
        install.stdout.contains("created hook"),
        "{}",
        install.stdout
    );
    let installed = sim.hooks();
    assert_eq!(installed.len(), 1);
    let hook = &installed[0];
    assert_eq!(hook.url, format!("{PUBLIC_URL}/api/webhooks/github"));
    assert_eq!(
        hook.events,
        ["workflow_job", "workflow_run", "push", "pull_request"]
    );
    assert_eq!(hook.content_type, "json");
    assert_eq!(hook.secret.as_deref(), Some(SECRET));

    // Again: the same hook updated, not a second one.
    let again = hooks(&["install", "--config", &config, "--repo", "acme/api"], &[]).await;
    assert!(again.ok, "{}", again.stderr);
    assert!(
        again.stdout.contains(&format!("updated hook {}", hook.id)),
        "{}",
        again.stdout
    );
    assert_eq!(sim.hooks().len(), 1);

    // The daemon's database knows the hook (redelivery lists its deliveries).
    let store = SqliteStore::connect(&format!("sqlite://{}/runnerhub.db", dir.path().display()))
        .await
        .unwrap();
    let known = store.known_hooks().await.unwrap();
    assert_eq!(known.len(), 1);
    assert_eq!(
        (
            known[0].kind.as_str(),
            known[0].owner.as_str(),
            known[0].hook_id
        ),
        ("repository", "acme/api", hook.id as i64)
    );
    assert_eq!(known[0].source, "installed");

    let list = hooks(&["list", "--config", &config, "--repo", "acme/api"], &[]).await;
    assert!(list.ok, "{}", list.stderr);
    assert!(list.stdout.contains("1 hook(s)"), "{}", list.stdout);
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with('*') && l.contains(&hook.id.to_string())),
        "ours is marked: {}",
        list.stdout
    );

    // A push to a URL where nothing listens fails; status shows it, with its code.
    sim.send_push("acme/api", "main");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let status = hooks(&["status", "--config", &config, "--repo", "acme/api"], &[]).await;
    assert!(status.ok, "{}", status.stderr);
    assert!(
        status.stdout.contains("1 recent deliveries, 1 failed"),
        "{}",
        status.stdout
    );
    let line = status.stdout.lines().find(|l| l.contains("push")).unwrap();
    assert!(line.contains("  0  "), "status code 0 (no answer): {line}");
    assert!(line.contains("missing"), "not in the audit log: {line}");

    let remove = hooks(&["remove", "--config", &config, "--repo", "acme/api"], &[]).await;
    assert!(remove.ok, "{}", remove.stderr);
    assert!(remove.stdout.contains("removed hook"), "{}", remove.stdout);
    assert!(sim.hooks().is_empty());
    assert!(store.known_hooks().await.unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let no_url = write_config(dir.path(), &sim, &format!("token = \"{TOKEN}\""), "");
    let run = hooks(&["install", "--config", &no_url, "--repo", "acme/api"], &[]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("no webhook URL known"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("server.public_url"), "{}", run.stderr);
    let no_repo = hooks(&["install", "--config", &no_url, "--url", PUBLIC_URL], &[]).await;
    assert!(
        no_repo.stderr.contains("--repo OWNER/NAME"),
        "{}",
        no_repo.stderr
    );

    let config = write_config(
        dir.path(),
        &sim,
        &format!("token = \"{TOKEN}\""),
        &format!("public_url = \"{PUBLIC_URL}\""),
    );
    let unknown = hooks(&["install", "--config", &config, "--repo", "other/x"], &[]).await;
    assert!(!unknown.ok);
    assert!(
        unknown
            .stderr
            .contains("repository other/x was not found at GitHub"),
        "{}",
        unknown.stderr
    );
    let read_only = hooks(
        &["install", "--config", &config, "--repo", "acme/api"],
        &[("GITHUB_TOKEN", "read-only-token")],
    )
    .await;
    assert!(!read_only.ok);
    assert!(
        read_only.stderr.contains("admin rights on the repository"),
        "{}",
        read_only.stderr
    );
    let no_secret = tokio::process::Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args([
            "hooks", "install", "--config", &config, "--repo", "acme/api",
        ])
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&no_secret.stderr).contains("no webhook secret"),
        "{}",
        String::from_utf8_lossy(&no_secret.stderr)
    );
    let remove_app = hooks(&["remove", "--config", &config, "--app"], &[]).await;
    assert!(!remove_app.ok);
    assert!(
        remove_app
            .stderr
            .contains("cannot be removed through the API"),
        "{}",
        remove_app.stderr
    );
    assert!(sim.hooks().is_empty(), "nothing was created");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_apps_hook_is_set_and_its_events_checked() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/TEST-ONLY-github-app-key.pem");
    let config = write_config(
        dir.path(),
        &sim,
        &format!(
            "app_id = \"{APP_ID}\"\ninstallation_id = {INSTALLATION_ID}\nprivate_key_path = \"{}\"",
            key.display()
        ),
        &format!("public_url = \"{PUBLIC_URL}\""),
    );
    let install = hooks(&["install", "--config", &config, "--app"], &[]).await;
    assert!(install.ok, "{}{}", install.stdout, install.stderr);
    assert_eq!(
        sim.app_hook_url().as_deref(),
        Some(&*format!("{PUBLIC_URL}/api/webhooks/github"))
    );
    assert!(
        install.stdout.contains("the App subscribes to"),
        "{}",
        install.stdout
    );
    let list = hooks(&["list", "--config", &config, "--app"], &[]).await;
    assert!(list.stdout.contains("secret set"), "{}", list.stdout);

    sim.set_app_events(&["push"]);
    let missing = hooks(&["install", "--config", &config, "--app"], &[]).await;
    assert!(!missing.ok);
    assert!(
        missing
            .stderr
            .contains("does not subscribe to workflow_job, workflow_run, pull_request"),
        "{}",
        missing.stderr
    );
    sim.shutdown().await;
}
