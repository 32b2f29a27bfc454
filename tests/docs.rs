//! The docs cannot drift from the program (issue #19): the commands in the shell blocks of
//! README.md and docs/*.md run as written, and every configuration key they name exists in the
//! configuration type.
//!
//! Each document's commands run in order, through `sh`, in a fresh directory laid out as the
//! docs assume (`config/runnerhub.toml`, a `runnerhub.toml` whose database holds recorded
//! deliveries, the replay configurations the docs name), with `runnerhub` (and
//! `./target/release/runnerhub`) being the binary under test; `export` lines carry over to the
//! commands after them. Commands that cannot run in a test are in [`NOT_RUN_HERE`] with the
//! reason; a command in neither that list nor runnable fails the test. Commands that run until
//! stopped are started, checked healthy and stopped ([`LONG_RUNNING`]).

mod common;
#[path = "docs/keys.rs"]
mod keys;
#[path = "docs/markdown.rs"]
mod markdown;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{job_payload, spawn_app_with, test_config_without_pools};

/// Commands the test does not run, by prefix, each with the reason.
const NOT_RUN_HERE: &[(&str, &str)] = &[
    (
        ".ci/run",
        "CI itself: installs packages and runs the whole suite",
    ),
    (
        "cargo bench",
        "a benchmark: minutes of release build and load",
    ),
    (
        "cargo build --release",
        "a release build takes minutes; the test runs the binary it was built with",
    ),
    (
        "cargo deb",
        "builds the Debian package (tests/packaging.rs checks what it ships)",
    ),
    ("apt install", "installs a package on the host"),
    (
        "install -D",
        "installs files into /usr and /etc of the host",
    ),
    ("systemctl", "starts and stops the host's services"),
    (
        "runnerhub config check --config /etc/",
        "the installed package's path; the same command runs on config/runnerhub.toml",
    ),
    ("runnerhub hooks", "talks to github.com"),
    ("./target/release/runnerhub hooks", "talks to github.com"),
];

/// Commands that run until stopped: each is started with extra arguments (loopback ports of
/// its own, so it can run beside other tests) and environment, must answer `/healthz` and the
/// given API path, and must exit 0 on the signal an operator sends (Ctrl-C, `systemctl stop`).
struct LongRunning {
    prefix: &'static str,
    /// Arguments appended; `{listen}` and `{sim}` become free loopback addresses.
    extra_args: &'static str,
    /// Environment set; `{listen}` as above, `{closed}` a loopback port nothing listens on.
    extra_env: &'static [(&'static str, &'static str)],
    check: &'static str,
    stop_signal: &'static str,
}

const LONG_RUNNING: &[LongRunning] = &[
    LongRunning {
        prefix: "cargo run --release -- demo",
        extra_args: "--listen {listen} --sim-listen {sim}",
        extra_env: &[],
        check: "/api/jobs",
        stop_signal: "INT",
    },
    LongRunning {
        prefix: "./target/release/runnerhub serve",
        // GitHub is a closed loopback port (nothing leaves the machine), and the instance id
        // its own, so its reconciliation leaves other daemons' containers alone.
        extra_args: "",
        extra_env: &[
            ("RUNNERHUB__SERVER__LISTEN", "{listen}"),
            ("RUNNERHUB__GITHUB__API_URL", "http://{closed}"),
            ("RUNNERHUB__SERVER__INSTANCE_ID", "docs-test"),
        ],
        check: "/api/runners/pool/status",
        stop_signal: "TERM",
    },
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md, with their text.
fn documents() -> Vec<(String, String)> {
    let mut paths = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(root()).unwrap().display().to_string();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[test]
fn every_configuration_key_the_docs_name_exists() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (name, text) in documents() {
        let extracted = markdown::extract(&text);
        for key in &extracted.key_refs {
            checked += 1;
            if let Err(error) = keys::exists(key) {
                wrong.push(format!("{name}: {error}"));
            }
        }
        for block in &extracted.toml_blocks {
            checked += 1;
            if let Err(error) = toml::from_str::<runnerhub::config::Config>(block) {
                wrong.push(format!(
                    "{name}: a TOML block is not a configuration: {error}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The docs name well over a hundred keys: finding few means the extraction broke.
    assert!(checked > 100, "only {checked} key references found");
}

#[test]
fn the_configuration_reference_documents_every_key_of_the_example() {
    let example = std::fs::read_to_string(root().join("config/runnerhub.toml")).unwrap();
    let reference = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let documented = markdown::key_refs(&reference);
    let example_keys = keys::example_keys(&example);
    assert!(example_keys.len() > 40, "{example_keys:?}");
    let missing: Vec<&String> = example_keys
        .iter()
        .filter(|key| !documented.contains(key))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document {missing:?}"
    );
}

#[test]
fn every_link_between_the_docs_resolves() {
    let mut broken = Vec::new();
    for (name, text) in documents() {
        let dir = root().join(&name).parent().unwrap().to_path_buf();
        for link in markdown::relative_links(&text) {
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                root().join(&name)
            } else {
                dir.join(file)
            };
            if !target.exists() {
                broken.push(format!("{name}: {link}: no such file"));
            } else if !anchor.is_empty() {
                let headings = std::fs::read_to_string(&target).unwrap_or_default();
                if !markdown::heading_anchors(&headings)
                    .iter()
                    .any(|a| a == anchor)
                {
                    broken.push(format!("{name}: {link}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// The directory the docs' commands assume: the example configuration, and a deployment
/// (`runnerhub.toml`) whose database recorded jobs, with the replay configurations beside it.
async fn scenario() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::copy(
        root().join("config/runnerhub.toml"),
        dir.path().join("config/runnerhub.toml"),
    )
    .unwrap();
    let history = dir.path().join("history");
    std::fs::create_dir_all(&history).unwrap();
    let app = spawn_app_with(test_config_without_pools(&history)).await;
    for id in 1..=6 {
        let labels = ["self-hosted", "linux", "x64"];
        app.deliver(
            "workflow_job",
            &format!("q-{id}"),
            &job_payload(id, "queued", &labels),
        )
        .await;
        app.deliver(
            "workflow_job",
            &format!("c-{id}"),
            &job_payload(id, "completed", &labels),
        )
        .await;
    }
    app.settle().await;
    app.stop().await;
    let pool = |max: u32| {
        format!(
            "[[pools]]\nname = \"linux\"\nlabels = [\"self-hosted\", \"linux\", \"x64\"]\nmax_runners = {max}\n"
        )
    };
    let files = [
        (
            "runnerhub.toml",
            format!(
                "[database]\nurl = \"sqlite://history/runnerhub.db\"\n{}",
                pool(10)
            ),
        ),
        ("six-runners.toml", pool(6)),
        ("base.toml", pool(8)),
        ("more-runners.toml", pool(10)),
        (
            "fair.toml",
            format!("{}[scheduling]\nfair_share = \"repository\"\n", pool(8)),
        ),
        (
            "quota.toml",
            format!(
                "{}[[quotas]]\nrepositories = [\"acme/monorepo\"]\nmax_runners = 3\n",
                pool(8)
            ),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let release = dir.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_runnerhub"), release.join("runnerhub")).unwrap();
    dir
}

fn free_loopback_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `sh -c command` in `dir`, with `runnerhub` on the PATH, the given environment and none of
/// the caller's runnerhub or GitHub variables (the docs' commands must work without them).
fn shell(dir: &Path, command: &str, env: &[(String, String)]) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_runnerhub")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", path);
    for (var, _) in std::env::vars() {
        if var.starts_with("RUNNERHUB__") || var.starts_with("GITHUB_") {
            shell.env_remove(var);
        }
    }
    shell.envs(env.iter().map(|(k, v)| (k, v)));
    shell
}

/// `cargo run --release -- X` and `./target/release/runnerhub X` are the binary under test.
fn as_run_here(command: &str) -> String {
    command.replacen("cargo run --release -- ", "runnerhub ", 1)
}

#[tokio::test]
async fn the_commands_in_the_docs_run_as_written() {
    let mut ran = Vec::new();
    let mut skipped = Vec::new();
    for (name, text) in documents() {
        let commands = markdown::extract(&text).commands;
        if commands.is_empty() {
            continue;
        }
        let dir = scenario().await;
        let mut env: Vec<(String, String)> = Vec::new();
        for command in commands {
            if let Some(assignments) = command.strip_prefix("export ") {
                for assignment in assignments.split_whitespace() {
                    let (var, value) = assignment.split_once('=').expect("export VAR=value");
                    env.push((var.to_owned(), value.to_owned()));
                }
                continue;
            }
            if let Some((_, reason)) = NOT_RUN_HERE.iter().find(|(p, _)| command.starts_with(p)) {
                skipped.push(format!("{name}: `{command}`: {reason}"));
                continue;
            }
            match LONG_RUNNING.iter().find(|l| command.starts_with(l.prefix)) {
                Some(long) => run_until_stopped(dir.path(), &command, long, &env, &name).await,
                None => run_to_completion(dir.path(), &command, &env, &name),
            }
            ran.push(format!("{name}: `{command}`"));
        }
    }
    eprintln!("ran:\n  {}", ran.join("\n  "));
    eprintln!("not run here:\n  {}", skipped.join("\n  "));
    let unused: Vec<&str> = NOT_RUN_HERE
        .iter()
        .map(|(prefix, _)| *prefix)
        .filter(|prefix| !skipped.iter().any(|s| s.contains(&format!("`{prefix}"))))
        .collect();
    assert!(
        unused.is_empty(),
        "NOT_RUN_HERE entries no doc needs: {unused:?}"
    );
    assert!(ran.len() >= 8, "only {} commands ran", ran.len());
}

fn run_to_completion(dir: &Path, command: &str, env: &[(String, String)], doc: &str) {
    let mut child = shell(dir, &as_run_here(command), env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{doc}: `{command}` did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{doc}: `{command}` failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn run_until_stopped(
    dir: &Path,
    command: &str,
    long: &LongRunning,
    env: &[(String, String)],
    doc: &str,
) {
    let listen = free_loopback_address();
    let fill = |text: &str| {
        text.replace("{listen}", &listen)
            .replace("{sim}", &free_loopback_address())
            .replace("{closed}", &free_loopback_address())
    };
    let mut env = env.to_vec();
    env.extend(long.extra_env.iter().map(|(k, v)| (k.to_string(), fill(v))));
    let line = format!("exec {} {}", as_run_here(command), fill(long.extra_args));
    let log = dir.join("long-running.log");
    let child = shell(dir, &line, &env)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("long-running.err")).unwrap())
        .spawn()
        .unwrap();
    let mut child = Stopper(child);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut healthy = false;
    while started.elapsed() < Duration::from_secs(60) && !healthy {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("{doc}: `{command}` exited early ({status}):\n{}", logs(dir));
        }
        let answers = |path: &str| client.get(format!("http://{listen}{path}")).send();
        healthy = match (answers("/healthz").await, answers(long.check).await) {
            (Ok(health), Ok(check)) => health.status().is_success() && check.status().is_success(),
            _ => false,
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        healthy,
        "{doc}: `{command}` never answered on {listen}:\n{}",
        logs(dir)
    );
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-s", long.stop_signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(45),
            "{doc}: `{command}` did not stop on SIG{}:\n{}",
            long.stop_signal,
            logs(dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "{doc}: `{command}` stopped with {status}:\n{}",
        logs(dir)
    );
}

fn logs(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    format!("{}{}", read("long-running.log"), read("long-running.err"))
}

/// Kills the process if the test fails before stopping it, so no daemon outlives the test.
struct Stopper(Child);

impl Drop for Stopper {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
