//! The simulator's JIT runner configuration, the `encoded_jit_config` of generate-jitconfig.
//!
//! Like the real one it is base64 of a JSON object whose `.runner`, `.credentials` and
//! `.credentials_rsaparams` entries are themselves base64 JSON documents:
//!
//! ```text
//! .runner               {"AgentId": 7, "AgentName": "...", "PoolId": 1, "PoolName": "Default",
//!                        "ServerUrl": "http://127.0.0.1:4010", "GitHubUrl": "https://github.com/o/r",
//!                        "WorkFolder": "_work", "Ephemeral": "true", "Labels": ["self-hosted", ...]}
//! .credentials          {"Scheme": "SimRunnerToken", "Data": {"token": "simrunner_..."}}
//! .credentials_rsaparams {} (the real runner keeps an RSA key here; the simulator needs none)
//! ```
//!
//! The runner protocol, relative to `ServerUrl`, with `Authorization: Bearer <Data.token>`:
//! - `POST /_sim/runner/connect` → 200 `{"runner_id", "name"}`: the runner is online and idle.
//! - `GET /_sim/runner/job?wait_secs=N` → 200 job (`job_id`, `run_id`, `repository`, `labels`,
//!   `workflow_name`, `job_name`, `duration_ms`, `conclusion`) once one is assigned, 204 when none
//!   came within N seconds (poll again), 404 when the runner was removed (deleted or cancelled).
//! - `POST /_sim/runner/job/{job_id}/complete` `{"conclusion"}` → 200; the runner then exits.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The decoded JIT configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitConfig {
    pub runner_id: u64,
    pub runner_name: String,
    pub runner_group_id: u64,
    pub labels: Vec<String>,
    /// Base URL of the simulator the runner connects to.
    pub server_url: String,
    pub github_url: String,
    pub work_folder: String,
    /// Per-runner secret for the runner protocol.
    pub credential: String,
}

fn b64_json(v: &Value) -> String {
    STANDARD.encode(serde_json::to_vec(v).expect("JSON serializes"))
}

fn un_b64_json(s: &str) -> anyhow::Result<Value> {
    let bytes = STANDARD.decode(s.trim()).context("not base64")?;
    serde_json::from_slice(&bytes).context("not JSON")
}

impl JitConfig {
    pub fn encode(&self) -> String {
        let runner = json!({
            "AgentId": self.runner_id, "AgentName": self.runner_name, "PoolId": self.runner_group_id,
            "PoolName": "Default", "ServerUrl": self.server_url, "GitHubUrl": self.github_url,
            "WorkFolder": self.work_folder, "Ephemeral": "true", "Labels": self.labels,
        });
        let credentials = json!({"Scheme": "SimRunnerToken", "Data": {"token": self.credential}});
        b64_json(&json!({
            ".runner": b64_json(&runner),
            ".credentials": b64_json(&credentials),
            ".credentials_rsaparams": b64_json(&json!({})),
        }))
    }

    pub fn decode(encoded: &str) -> anyhow::Result<Self> {
        let outer = un_b64_json(encoded).context("encoded JIT config")?;
        let part = |key: &str| -> anyhow::Result<Value> {
            let s = outer
                .get(key)
                .and_then(Value::as_str)
                .with_context(|| format!("JIT config has no {key}"))?;
            un_b64_json(s).with_context(|| format!("JIT config entry {key}"))
        };
        let runner = part(".runner")?;
        let credentials = part(".credentials")?;
        let str_of = |v: &Value, k: &str| -> anyhow::Result<String> {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("JIT config lacks {k}"))
        };
        Ok(Self {
            runner_id: runner
                .get("AgentId")
                .and_then(Value::as_u64)
                .context("JIT config lacks AgentId")?,
            runner_name: str_of(&runner, "AgentName")?,
            runner_group_id: runner.get("PoolId").and_then(Value::as_u64).unwrap_or(1),
            labels: serde_json::from_value(runner.get("Labels").cloned().unwrap_or_default())
                .unwrap_or_default(),
            server_url: str_of(&runner, "ServerUrl")?,
            github_url: str_of(&runner, "GitHubUrl")?,
            work_folder: str_of(&runner, "WorkFolder")?,
            credential: credentials
                .pointer("/Data/token")
                .and_then(Value::as_str)
                .context("JIT config lacks credentials Data.token")?
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let c = JitConfig {
            runner_id: 7,
            runner_name: "r".into(),
            runner_group_id: 1,
            labels: vec!["self-hosted".into()],
            server_url: "http://127.0.0.1:1".into(),
            github_url: "https://github.com/o/r".into(),
            work_folder: "_work".into(),
            credential: "secret".into(),
        };
        let encoded = c.encode();
        assert_eq!(JitConfig::decode(&encoded).unwrap(), c);
        let outer = un_b64_json(&encoded).unwrap();
        for key in [".runner", ".credentials", ".credentials_rsaparams"] {
            assert!(outer.get(key).is_some(), "{key}");
        }
        assert!(JitConfig::decode("not base64!").is_err());
    }
}
