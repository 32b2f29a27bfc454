//! Hostile input against the real binary (issue #15). Each test asserts the bound, the answer,
//! and that nothing acknowledged is lost. Beside this file: `memory` (item 1: stalled uploads,
//! body budget and deadline), `connections` (item 2: timeouts, the connection bound under a
//! 1,024 file limit, the watchdog), `browser` (item 5: Host, cross-site writes, `/ws` Origin),
//! `small` (item 7). The forged-delivery bound (item 3) and secrets in errors (item 6) are here.
//!
//! Secrets in errors: a secret written in the wrong shape (a string where a list belongs), or on
//! a line with a TOML syntax error, is named by key and position, never printed — at start from
//! the file or the environment, and on SIGHUP.

#[path = "hostile/browser.rs"]
mod browser;
mod common;
#[path = "hostile/connections.rs"]
mod connections;
#[path = "hostile/memory.rs"]
mod memory;
#[path = "hostile/raw.rs"]
mod raw;
#[path = "hostile/small.rs"]
mod small;

use std::process::Command;
use std::time::Duration;

use common::daemon::Daemon;

const TOKEN: &str = "tok-hostile-6b1f0c9e2a";
const SECRET: &str = "whsec-hostile-93d0a7c4";
const DB_PASSWORD: &str = "pw-hostile-5e8c21";
/// The webhook secret of the tests that send genuine deliveries.
const SECRET_REAL: &str = "real-secret";

fn base(server_extra: &str, github_extra: &str) -> String {
    format!(
        r#"
[server]
shutdown_grace = "0s"
{server_extra}
[database]
url = "sqlite://{{dir}}/runnerhub.db"
[github]
api_url = "http://127.0.0.1:9"
{github_extra}
"#
    )
}

/// Runs `runnerhub serve` on `config` with `env` and returns its status and all output.
fn serve_output(config: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runnerhub.toml");
    std::fs::write(
        &path,
        config.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .env_clear()
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

fn assert_hidden(text: &str, secret: &str, key: &str) {
    assert!(!text.contains(secret), "`{secret}` printed:\n{text}");
    assert!(text.contains(key), "`{key}` not named:\n{text}");
}

#[test]
fn a_secret_of_the_wrong_type_in_the_file_is_named_not_printed() {
    let cases = [
        (
            base(
                &format!("api_tokens = \"{TOKEN}\""),
                &format!("webhook_secrets = [\"{SECRET}\"]"),
            ),
            TOKEN,
            "server.api_tokens",
        ),
        (
            base("", &format!("webhook_secrets = \"{SECRET}\"")),
            SECRET,
            "github.webhook_secrets",
        ),
        (
            base(
                "",
                &format!("webhook_secrets = [\"x\"]\ntoken = [\"{TOKEN}\", 1]"),
            ),
            TOKEN,
            "github.token",
        ),
    ];
    for (config, secret, key) in cases {
        let (status, text) = serve_output(&config, &[]);
        assert!(!status.success(), "{text}");
        assert_hidden(&text, secret, key);
        assert!(text.contains("expected"), "serde's clause kept:\n{text}");
    }
}

#[test]
fn a_secret_of_the_wrong_type_in_the_environment_is_named_not_printed() {
    let config = base("", "webhook_secrets = [\"x\"]");
    for (var, key) in [
        ("RUNNERHUB__SERVER__API_TOKENS", "server.api_tokens"),
        (
            "RUNNERHUB__GITHUB__WEBHOOK_SECRETS",
            "github.webhook_secrets",
        ),
    ] {
        let (status, text) = serve_output(&config, &[(var, TOKEN)]);
        assert!(!status.success(), "{text}");
        assert_hidden(&text, TOKEN, key);
    }
    // A database URL that is no string: its password is not shown either.
    let url = format!("[\"postgres://u:{DB_PASSWORD}@127.0.0.1/db\", 1]");
    let (status, text) = serve_output(&config, &[("RUNNERHUB__DATABASE__URL", &url)]);
    assert!(!status.success(), "{text}");
    assert_hidden(&text, DB_PASSWORD, "database.url");
}

#[test]
fn a_toml_syntax_error_gives_the_position_not_the_line() {
    // An unterminated string and a missing `=`: both are lines holding a secret.
    for bad in [
        format!("[server]\napi_tokens = [\"{TOKEN}\"\n"),
        format!("[github]\nwebhook_secrets = [\"x\"]\ntoken \"{TOKEN}\"\n"),
        format!("[server]\napi_tokens = [{TOKEN}]\n"),
    ] {
        let (status, text) = serve_output(&bad, &[]);
        assert!(!status.success(), "{text}");
        assert_hidden(&text, TOKEN, "line ");
        assert!(text.contains("column"), "{text}");
    }
}

#[test]
fn sighup_with_a_secret_of_the_wrong_type_refuses_without_printing_it() {
    let good = base("", "webhook_secrets = [\"x\"]");
    let d = Daemon::start(&good, &[("RUST_LOG", "debug")], &[]);
    let dir = d.dir.path().display().to_string();
    let bad = base(
        &format!("api_tokens = \"{TOKEN}\""),
        "webhook_secrets = [\"x\"]",
    );
    std::fs::write(&d.config_path, bad.replace("{dir}", &dir)).unwrap();
    d.signal("HUP");
    let refused = d.wait_for_log("reload refused", Duration::from_secs(10));
    assert!(refused.contains("server.api_tokens"), "{refused}");
    let syntax = format!("[server]\napi_tokens = [\"{TOKEN}\"\n");
    std::fs::write(&d.config_path, syntax).unwrap();
    d.signal("HUP");
    for _ in 0..200 {
        if d.count_logs("reload refused") >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(d.count_logs("reload refused"), 2, "{}", d.logs());
    let logs = d.logs();
    assert!(!logs.contains(TOKEN), "secret in the logs:\n{logs}");
    // Still serving on the old configuration.
    assert!(raw_get(d.addr, "/healthz").starts_with("HTTP/1.1 200"));
}

/// A plain HTTP/1.1 GET over loopback; returns the whole answer.
fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The database file and its WAL, in bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_deliveries_are_recorded_but_bounded() {
    let d = Daemon::start(&base("", "webhook_secrets = [\"real-secret\"]"), &[], &[]);
    let client = reqwest::Client::new();
    let url = d.url("/api/webhooks/github");
    let before = std::fs::metadata(d.dir.path().join("runnerhub.db")).map_or(0, |m| m.len());
    // Incompressible bodies, as an attacker would send to fill the disk.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let body: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b'a' + (seed % 26) as u8
        })
        .collect();
    let forgery = runnerhub::webhook::signature::sign("not-the-secret", &body);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (client, url, body, forgery) =
            (client.clone(), url.clone(), body.clone(), forgery.clone());
        tasks.spawn(async move {
            for i in 0..250 {
                let r = client
                    .post(&url)
                    .header("x-github-event", "workflow_job")
                    .header("x-github-delivery", format!("forged-{worker}-{i}"))
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", &forgery)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 401);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    // A real delivery is still acknowledged and stored beside the forgeries.
    let payload = common::job_payload(15_003, "queued", &["self-hosted", "linux"]);
    let r = client
        .post(&url)
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", "genuine-1")
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            runnerhub::webhook::signature::sign("real-secret", &payload),
        )
        .body(payload)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let events: serde_json::Value = client
        .get(d.url("/api/webhooks/events?limit=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = events.to_string();
    assert!(text.contains("genuine-1"), "{text}");
    // Measured after a clean stop, which checkpoints the WAL into the database: the WAL is a
    // reused buffer whose high-water mark varies from run to run, not what the rows keep.
    let mut d = d;
    d.signal("TERM");
    assert!(
        d.wait_exit(Duration::from_secs(30)).is_some(),
        "daemon did not stop"
    );
    // The database file is what the rows keep; the WAL is a buffer the checkpoints reuse
    // (its size is its high-water mark), bounded on its own.
    let file = |f: &str| std::fs::metadata(d.dir.path().join(f)).map_or(0, |m| m.len());
    let grown = file("runnerhub.db").saturating_sub(before);
    assert!(
        file("runnerhub.db-wal") < 20 * 1024 * 1024,
        "WAL {}",
        file("runnerhub.db-wal")
    );
    eprintln!("2,000 forged 64 KiB deliveries grew the database by {grown} bytes");
    for f in ["runnerhub.db", "runnerhub.db-wal"] {
        let len = std::fs::metadata(d.dir.path().join(f)).map(|m| m.len());
        eprintln!("{f}: {len:?}");
    }
    assert!(grown < 20 * 1024 * 1024, "grew by {grown} bytes");
}
