//! Workflow runs, from `workflow_run` deliveries.
//!
//! A run is re-run under the same id with a higher `run_attempt`; within an attempt the
//! status only moves forward (requested → in_progress → completed).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What one `workflow_run` delivery says.
#[derive(Debug, Clone, PartialEq)]
pub struct RunObservation {
    pub action: String,
    pub id: i64,
    pub repository: String,
    pub workflow_name: Option<String>,
    pub head_branch: Option<String>,
    pub head_sha: Option<String>,
    pub event: Option<String>,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    pub run_attempt: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRun {
    pub id: i64,
    pub repository: String,
    pub workflow_name: Option<String>,
    pub head_branch: Option<String>,
    pub head_sha: Option<String>,
    pub event: Option<String>,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    pub run_attempt: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

fn status_rank(status: Option<&str>) -> u8 {
    match status {
        Some("completed") => 3,
        Some("in_progress") => 2,
        Some("queued" | "waiting" | "pending" | "requested") => 1,
        _ => 0,
    }
}

impl WorkflowRun {
    pub fn from_observation(obs: &RunObservation) -> Self {
        WorkflowRun {
            id: obs.id,
            repository: obs.repository.clone(),
            workflow_name: obs.workflow_name.clone(),
            head_branch: obs.head_branch.clone(),
            head_sha: obs.head_sha.clone(),
            event: obs.event.clone(),
            status: obs.status.clone(),
            conclusion: obs.conclusion.clone(),
            run_attempt: obs.run_attempt,
            created_at: obs.created_at,
            updated_at: obs.updated_at,
        }
    }

    /// Applies a delivery if it is newer: a later attempt, or further along in the same one.
    /// Returns whether the record changed.
    pub fn apply(&mut self, obs: &RunObservation) -> bool {
        let newer = (obs.run_attempt, status_rank(obs.status.as_deref()))
            > (self.run_attempt, status_rank(self.status.as_deref()));
        if !newer {
            return false;
        }
        let first_seen = self.created_at;
        *self = WorkflowRun::from_observation(obs);
        self.created_at = first_seen.or(obs.created_at);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(status: &str, attempt: i64) -> RunObservation {
        RunObservation {
            action: status.into(),
            id: 1,
            repository: "o/r".into(),
            workflow_name: Some("CI".into()),
            head_branch: Some("main".into()),
            head_sha: None,
            event: Some("push".into()),
            status: Some(status.into()),
            conclusion: (status == "completed").then(|| "success".into()),
            run_attempt: attempt,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn moves_forward_only_and_rerun_resets() {
        let mut run = WorkflowRun::from_observation(&obs("in_progress", 1));
        assert!(!run.apply(&obs("requested", 1)));
        assert!(run.apply(&obs("completed", 1)));
        assert_eq!(run.conclusion.as_deref(), Some("success"));
        assert!(
            run.apply(&obs("requested", 2)),
            "a re-run is a newer attempt"
        );
        assert_eq!(run.conclusion, None);
        assert!(!run.apply(&obs("completed", 1)), "old attempt is stale");
    }
}
