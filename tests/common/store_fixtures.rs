//! Records for the store contract test: deliveries, jobs, runs, runners and live events at
//! fixed times (whole microseconds, which both backends keep exactly).
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use runnerhub::domain::{Job, JobStatus, Runner, RunnerState, WorkflowRun};
use runnerhub::store::{DeliveryOutcome, InsertOutcome, LiveEventRow, ProcessedDelivery};
use runnerhub::webhook::intake::{NewDelivery, Settled};
use runnerhub::webhook::payload_codec::Payload;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + Duration::microseconds(250_125)
}

pub fn at(ms: i64) -> DateTime<Utc> {
    t0() + Duration::milliseconds(ms)
}

pub fn delivery(guid: &str, valid: bool, ms: i64, repo: &str, event: &str) -> NewDelivery {
    let body = if valid {
        format!(r#"{{"delivery":"{guid}","at":{ms},"repository":{{"full_name":"{repo}"}}}}"#)
    } else {
        format!("forged body {guid} at {ms}")
    };
    NewDelivery {
        delivery_id: guid.to_owned(),
        event: event.to_owned(),
        action: Some("queued".to_owned()),
        repository: Some(repo.to_owned()),
        payload: Payload::compress(&body),
        signature_valid: valid,
        received_at: at(ms),
        settled: (!valid).then(|| Settled::Rejected("signature does not match".to_owned())),
    }
}

pub fn genuine(guid: &str, ms: i64) -> NewDelivery {
    delivery(guid, true, ms, "octo/app", "workflow_job")
}

pub fn stored_id(outcome: &InsertOutcome) -> i64 {
    match outcome {
        InsertOutcome::Stored { id } => *id,
        InsertOutcome::Duplicate => panic!("expected a stored delivery, got a duplicate"),
    }
}

pub fn job(id: i64, repo: &str, status: JobStatus, priority: i64, ms: i64) -> Job {
    Job {
        id,
        run_id: id / 10,
        run_attempt: 1,
        repository: repo.to_owned(),
        workflow_name: Some("CI".to_owned()),
        name: format!("build {id}"),
        labels: vec![
            "self-hosted".to_owned(),
            "Linux".to_owned(),
            "x64".to_owned(),
        ],
        priority,
        pool: Some("linux".to_owned()),
        status,
        conclusion: None,
        runner_id: None,
        runner_name: None,
        runner_group_name: None,
        created_at: Some(at(ms)),
        started_at: None,
        completed_at: None,
        first_seen_at: at(ms + 1),
        updated_at: at(ms + 2),
        outcome: None,
        outcome_detail: None,
    }
}

pub fn run(id: i64, repo: &str, status: &str) -> WorkflowRun {
    WorkflowRun {
        id,
        repository: repo.to_owned(),
        workflow_name: Some("CI".to_owned()),
        head_branch: Some("main".to_owned()),
        head_sha: Some("abc123".to_owned()),
        event: Some("push".to_owned()),
        status: Some(status.to_owned()),
        conclusion: None,
        run_attempt: 1,
        created_at: Some(at(0)),
        updated_at: Some(at(1)),
    }
}

pub fn processed(id: i64, outcome: DeliveryOutcome, attempts: i64, ms: i64) -> ProcessedDelivery {
    ProcessedDelivery {
        id,
        outcome,
        attempts,
        at: at(ms),
    }
}

pub fn ids<T>(items: &[T], id: impl Fn(&T) -> i64) -> Vec<i64> {
    items.iter().map(id).collect()
}

pub fn runner(id: &str, pool: &str, state: RunnerState, ms: i64) -> Runner {
    Runner {
        id: id.to_owned(),
        pool: pool.to_owned(),
        state,
        failure_reason: None,
        labels: vec!["self-hosted".to_owned(), "linux".to_owned()],
        scope: "repos/octo/app".to_owned(),
        name: Runner::name_for("runnerhub", pool, id),
        github_runner_id: None,
        container_id: None,
        instance: "instance-1".to_owned(),
        launched_for: Some(201),
        job_id: None,
        draining: false,
        created_at: at(ms),
        idle_at: None,
        busy_at: None,
        finished_at: None,
        removed_at: None,
        updated_at: at(ms),
    }
}

pub fn live(seq: i64, ms: i64) -> LiveEventRow {
    LiveEventRow {
        seq,
        kind: if seq % 2 == 0 { "job" } else { "runner" }.to_owned(),
        repository: (seq % 3 != 0).then(|| "octo/app".to_owned()),
        time: at(ms),
        message: format!(r#"{{"seq":{seq},"type":"job","data":{{"name":"ünïcode ✓"}}}}"#),
    }
}
