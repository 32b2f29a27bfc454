//! The real `runnerhub` binary as a child process: for signals, systemd notifications, exit
//! codes and log output, which an in-process app cannot show.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running daemon; killed when dropped.
pub struct Daemon {
    child: Child,
    /// The main listener (`--listen 127.0.0.1:0`, read back from the log).
    pub addr: SocketAddr,
    /// The dedicated metrics listener, when the config has `server.metrics_listen`.
    pub metrics_addr: Option<SocketAddr>,
    /// Every line the daemon wrote to stdout and stderr, in order of arrival.
    lines: Arc<Mutex<Vec<String>>>,
    /// The config file, rewritable for SIGHUP tests.
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
}

/// The listening addresses in a log line, text (`address=1.2.3.4:5`) or JSON (`"address":"…"`).
fn address_in(line: &str) -> Option<SocketAddr> {
    let start = line.find("address")? + "address".len();
    let rest = line[start..].trim_start_matches(['=', '"', ':']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Daemon {
    /// Starts `runnerhub [args] serve --config <dir>/runnerhub.toml --listen 127.0.0.1:0` with
    /// only `env` (plus `PATH`) in its environment, and waits until it listens. `config` may use
    /// `{dir}` for the temp directory. `WATCHDOG_PID=self` becomes the daemon's own PID, as
    /// systemd sets it.
    pub fn start(config: &str, env: &[(&str, &str)], args: &[&str]) -> Daemon {
        Self::start_with_open_files(config, env, args, None)
    }

    /// [`Daemon::start`] under an open-file limit of `nofile` = (soft, hard), as a unit
    /// without `LimitNOFILE=` would run it.
    pub fn start_with_open_files(
        config: &str,
        env: &[(&str, &str)],
        args: &[&str],
        nofile: Option<(u64, u64)>,
    ) -> Daemon {
        Self::spawn(config, env, args, nofile, "127.0.0.1:0")
    }

    /// [`Daemon::start`] on a given address (when something must know it first, such as the
    /// GitHub simulator that sends the webhooks).
    pub fn start_on(config: &str, env: &[(&str, &str)], listen: SocketAddr) -> Daemon {
        Self::spawn(config, env, &[], None, &listen.to_string())
    }

    fn spawn(
        config: &str,
        env: &[(&str, &str)],
        args: &[&str],
        nofile: Option<(u64, u64)>,
        listen: &str,
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("runnerhub.toml");
        std::fs::write(
            &config_path,
            config.replace("{dir}", &dir.path().display().to_string()),
        )
        .unwrap();
        let binary = env!("CARGO_BIN_EXE_runnerhub");
        let watchdog = env.contains(&("WATCHDOG_PID", "self"));
        let mut command = if watchdog || nofile.is_some() {
            // `exec` keeps the shell's PID, which is therefore known before the daemon runs.
            let limit = nofile.map_or(String::new(), |(soft, hard)| {
                format!("ulimit -Sn {soft} && ulimit -Hn {hard} && ")
            });
            let pid = if watchdog { "WATCHDOG_PID=$$ " } else { "" };
            let mut c = Command::new("sh");
            c.args(["-c", &format!("{limit}{pid}exec \"$0\" \"$@\""), binary]);
            c
        } else {
            Command::new(binary)
        };
        command
            .args(args)
            .args(["serve", "--config"])
            .arg(&config_path)
            .args(["--listen", listen])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env.iter().filter(|(k, _)| *k != "WATCHDOG_PID") {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start runnerhub");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut daemon = Daemon {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            metrics_addr: None,
            lines,
            config_path,
            dir,
        };
        let wants_metrics = config.contains("metrics_listen");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logs = daemon.lines.lock().unwrap().clone();
            for line in &logs {
                if line.contains("runnerhub listening") {
                    daemon.addr = address_in(line).expect("address in the log line");
                } else if line.contains("metrics listening") {
                    daemon.metrics_addr = address_in(line);
                }
            }
            if daemon.addr.port() != 0 && (!wants_metrics || daemon.metrics_addr.is_some()) {
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "runnerhub exited ({status}) before listening:\n{}",
                    logs.join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "runnerhub did not listen:\n{}",
                logs.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits for the process to exit; `None` if it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`; returns that line.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with `{needle}` within {within:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many log lines contain `needle`.
    pub fn count_logs(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
