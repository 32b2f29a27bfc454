//! runnerhub-test-runner: a stand-in for the GitHub Actions runner, for tests and demos.
//!
//! Reads `ACTIONS_RUNNER_INPUT_JITCONFIG` like the real runner, decodes the simulator's JIT config
//! (base64 JSON whose `.runner` / `.credentials` entries are base64 JSON), connects to the
//! simulator named in it, waits for one job, sleeps for the job's simulated duration, reports the
//! job's conclusion and exits 0. The protocol is documented in runnerhub's `src/github/sim/jit.rs`.
//!
//! Environment:
//! - `ACTIONS_RUNNER_INPUT_JITCONFIG` (required): the `encoded_jit_config` from generate-jitconfig.
//! - `RUNNER_JOB_WAIT_TIMEOUT_SECS` (optional): give up when no job arrives in time (default: wait
//!   forever, like the real runner).
//!
//! Exit codes: 0 job done; 2 config missing/invalid; 3 simulator unreachable; 4 no job in time;
//! 1 anything else (runner removed, protocol error).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// Seconds the simulator holds a job poll open.
const POLL_WAIT_SECS: u64 = 20;
/// Connection attempts before the simulator counts as unreachable (one per second).
const CONNECT_ATTEMPTS: u32 = 10;

/// A failure, with the exit code it maps to.
struct Failure(u8, String);

fn fail<T>(code: u8, msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(code, msg.into()))
}

struct Config {
    runner_name: String,
    host: String,
    port: u16,
    token: String,
}

fn b64_json(s: &str) -> Option<Value> {
    serde_json::from_slice(&STANDARD.decode(s.trim()).ok()?).ok()
}

fn parse_config(encoded: &str) -> Result<Config, Failure> {
    let invalid =
        |what: &str| Failure(2, format!("invalid ACTIONS_RUNNER_INPUT_JITCONFIG: {what}"));
    let outer = b64_json(encoded).ok_or_else(|| invalid("not base64-encoded JSON"))?;
    let part = |k: &str| {
        outer
            .get(k)
            .and_then(Value::as_str)
            .and_then(b64_json)
            .ok_or_else(|| invalid(k))
    };
    let runner = part(".runner")?;
    let credentials = part(".credentials")?;
    let server = runner
        .get("ServerUrl")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no .runner ServerUrl"))?;
    let rest = server
        .strip_prefix("http://")
        .ok_or_else(|| invalid("ServerUrl must be http://host:port"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse().map_err(|_| invalid("ServerUrl port"))?,
        ),
        None => (authority.to_string(), 80),
    };
    Ok(Config {
        runner_name: runner
            .get("AgentName")
            .and_then(Value::as_str)
            .unwrap_or("runner")
            .into(),
        host,
        port,
        token: credentials
            .pointer("/Data/token")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("no .credentials Data.token"))?
            .into(),
    })
}

/// One HTTP/1.1 exchange with `Connection: close`; returns status and body.
fn http(
    config: &Config,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), Failure> {
    let addr: SocketAddr = match (config.host.as_str(), config.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => a,
        None => return fail(3, format!("cannot resolve simulator host {}", config.host)),
    };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| Failure(3, format!("simulator at {addr} unreachable: {e}")))?;
    let io = |e: std::io::Error| Failure(3, format!("talking to simulator at {addr}: {e}"));
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {}\r\nUser-Agent: runnerhub-test-runner\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        config.host,
        config.port,
        config.token,
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure(1, format!("bad HTTP status line {line:?}")))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(io)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).map_err(io)?;
            out.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        reader.read_exact(&mut out).map_err(io)?;
    } else {
        reader.read_to_end(&mut out).map_err(io)?;
    }
    Ok((status, out))
}

fn run() -> Result<(), Failure> {
    let encoded = match std::env::var("ACTIONS_RUNNER_INPUT_JITCONFIG") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => return fail(2, "ACTIONS_RUNNER_INPUT_JITCONFIG is not set"),
    };
    let job_wait = match std::env::var("RUNNER_JOB_WAIT_TIMEOUT_SECS") {
        Ok(v) => Some(Duration::from_secs(v.parse().map_err(|_| {
            Failure(
                2,
                format!("RUNNER_JOB_WAIT_TIMEOUT_SECS={v:?} is not a number of seconds"),
            )
        })?)),
        Err(_) => None,
    };
    let config = parse_config(&encoded)?;
    let name = config.runner_name.clone();
    let short = Duration::from_secs(10);

    let mut attempt = 0;
    let connected = loop {
        attempt += 1;
        match http(&config, "POST", "/_sim/runner/connect", None, short) {
            Err(Failure(3, msg)) if attempt < CONNECT_ATTEMPTS => {
                eprintln!("runner {name}: {msg}; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            other => break other?,
        }
    };
    if connected.0 != 200 {
        return fail(
            1,
            format!(
                "runner {name}: connect answered HTTP {}: {}",
                connected.0,
                String::from_utf8_lossy(&connected.1)
            ),
        );
    }
    println!(
        "runner {name}: connected to {}:{}, waiting for a job",
        config.host, config.port
    );

    let started = Instant::now();
    let job: Value = loop {
        let wait = match job_wait {
            Some(limit) => match limit.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => left.as_secs().clamp(1, POLL_WAIT_SECS),
                _ => {
                    return fail(
                        4,
                        format!("runner {name}: no job within {}s", limit.as_secs()),
                    );
                }
            },
            None => POLL_WAIT_SECS,
        };
        let path = format!("/_sim/runner/job?wait_secs={wait}");
        let (status, body) = http(&config, "GET", &path, None, Duration::from_secs(wait + 10))?;
        match status {
            200 => {
                break serde_json::from_slice(&body)
                    .map_err(|e| Failure(1, format!("bad job JSON: {e}")))?;
            }
            204 => continue,
            404 => {
                return fail(
                    1,
                    format!("runner {name}: removed from the simulator before a job arrived"),
                );
            }
            s => {
                return fail(
                    1,
                    format!(
                        "runner {name}: job poll answered HTTP {s}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                );
            }
        }
    };
    let job_id = job
        .get("job_id")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    let duration_ms = job
        .get("duration_ms")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    let conclusion = job
        .get("conclusion")
        .and_then(Value::as_str)
        .unwrap_or("success")
        .to_string();
    println!("runner {name}: running job {job_id} for {duration_ms} ms");
    std::thread::sleep(Duration::from_millis(duration_ms));

    let path = format!("/_sim/runner/job/{job_id}/complete");
    let (status, body) = http(
        &config,
        "POST",
        &path,
        Some(&json!({"conclusion": conclusion})),
        short,
    )?;
    if status != 200 {
        return fail(
            1,
            format!(
                "runner {name}: completing job {job_id} answered HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        );
    }
    println!("runner {name}: job {job_id} completed ({conclusion})");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("runnerhub-test-runner: {msg}");
            ExitCode::from(code)
        }
    }
}
