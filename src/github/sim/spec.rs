//! [`JobSpec`]: a job to simulate, as tests, the CLI and the control API describe it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A job to simulate: what a workflow's `runs-on` asks for and how the job ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// `owner/repo`.
    pub repository: String,
    /// The job's `runs-on` labels. A job without `self-hosted` is run by a simulated GitHub-hosted runner.
    pub labels: Vec<String>,
    /// How long the runner spends on the job. JSON: milliseconds or a humantime string ("5s").
    #[serde(default = "default_duration", with = "duration_serde")]
    pub duration: Duration,
    /// Conclusion reported when the job ends: success, failure, cancelled, skipped, timed_out, neutral.
    #[serde(default = "default_conclusion")]
    pub conclusion: String,
    /// `workflow_run.name` / `workflow_job.workflow_name`.
    #[serde(default = "default_workflow_name")]
    pub workflow_name: String,
    /// `workflow_job.name`.
    #[serde(default = "default_job_name")]
    pub job_name: String,
}

fn default_duration() -> Duration {
    Duration::from_secs(5)
}
fn default_conclusion() -> String {
    "success".into()
}
fn default_workflow_name() -> String {
    "CI".into()
}
fn default_job_name() -> String {
    "build".into()
}

impl JobSpec {
    /// A 5 s successful `CI / build` job.
    pub fn new(repository: &str, labels: &[&str]) -> Self {
        Self {
            repository: repository.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            duration: default_duration(),
            conclusion: default_conclusion(),
            workflow_name: default_workflow_name(),
            job_name: default_job_name(),
        }
    }

    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    pub fn with_conclusion(mut self, conclusion: &str) -> Self {
        self.conclusion = conclusion.into();
        self
    }

    /// Runs on a self-hosted runner (has the `self-hosted` label), as opposed to a GitHub-hosted one.
    pub fn is_self_hosted(&self) -> bool {
        self.labels
            .iter()
            .any(|l| l.eq_ignore_ascii_case("self-hosted"))
    }
}

/// Durations in JSON: integer milliseconds out, milliseconds or humantime ("1500ms", "5s") in.
pub mod duration_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n.as_u64().map(Duration::from_millis).ok_or_else(|| {
                serde::de::Error::custom("duration must be a non-negative integer of milliseconds")
            }),
            Value::String(s) => humantime::parse_duration(&s).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "invalid duration {other}"
            ))),
        }
    }
}
