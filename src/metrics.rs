//! The catalog of Prometheus metrics: every name runnerhub records, its help text, and the
//! process-wide recorder behind `GET /metrics`.
//!
//! Names carry their unit (`_seconds`, `_total`). Every label value is bounded: pools come from
//! the configuration, bands/states/reasons/calls/endpoints are fixed sets in code, events and
//! conclusions are mapped onto known values ([`event_label`], [`conclusion_label`]), and
//! `repository` comes only from deliveries whose signature verified (so only GitHub, for the
//! repositories that send us webhooks, can add series). Nothing a caller types into a URL or a
//! header ever becomes a label value.
//!
//! The dashboard (`config/grafana-dashboard.json`) and the alert rules
//! (`config/prometheus-alerts.yml`, unit-tested by `config/prometheus-alerts.test.yml`) use these names; a test checks that every name they use is
//! scraped from a running daemon.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Config;
use crate::domain::JobOutcome;

// --- The original RunnerHub's names (kept for existing dashboards) -----------------------------

/// Counter `{event,status}`: deliveries processed, by event and outcome (processed|ignored|failed).
pub const WEBHOOK_EVENTS_TOTAL: &str = "webhook_events_total";
/// Histogram `{event}`: time to apply one delivery to job/run state.
pub const WEBHOOK_PROCESSING_DURATION_SECONDS: &str = "webhook_processing_duration_seconds";
/// Counter `{repository}`: jobs first seen queued.
pub const GITHUB_JOBS_QUEUED_TOTAL: &str = "github_jobs_queued_total";
/// Counter `{repository,conclusion}`: jobs completed.
pub const GITHUB_JOBS_COMPLETED_TOTAL: &str = "github_jobs_completed_total";
/// Histogram `{repository}`: job duration, start to completion.
pub const GITHUB_JOB_DURATION_SECONDS: &str = "github_job_duration_seconds";

// --- Webhook intake --------------------------------------------------------------------------

/// Counter: deliveries refused because no configured secret verified their signature.
pub const WEBHOOK_SIGNATURE_FAILURES_TOTAL: &str = "webhook_signature_failures_total";
/// Counter `{code}`: deliveries refused, by error code (BAD_HEADER, INVALID_SIGNATURE, …).
pub const WEBHOOK_REJECTIONS_TOTAL: &str = "webhook_rejections_total";
/// Histogram: seconds from taking a batch for the durable log to its commit being on disk.
pub const WEBHOOK_INGEST_COMMIT_SECONDS: &str = "webhook_ingest_commit_seconds";
/// Histogram: deliveries per group commit.
pub const WEBHOOK_INGEST_BATCH_SIZE: &str = "webhook_ingest_batch_size";
/// Gauge: 1 while the ingest writer's last batch failed to be stored (disk full, read-only
/// database, the database file gone) and none succeeded since; `/readyz` fails meanwhile.
pub const WEBHOOK_INGEST_WRITES_FAILING: &str = "runnerhub_ingest_writes_failing";
/// Gauge: Unix time of the last delivery whose signature verified (process start until then),
/// so "no webhook for an hour" is `time() - this > 3600`.
pub const WEBHOOK_LAST_RECEIVED_TIMESTAMP_SECONDS: &str = "webhook_last_received_timestamp_seconds";

// --- Scheduler (recorded by src/scheduler) ---------------------------------------------------

/// Gauge `{pool,band}`: queued jobs waiting for a runner; band is one of [`BANDS`].
pub const QUEUE_DEPTH: &str = "runnerhub_queue_depth";
/// Gauge `{pool,reason}`: queued jobs by why they wait; reason is one of [`WAIT_REASONS`].
pub const JOBS_WAITING: &str = "runnerhub_jobs_waiting";
/// Gauge `{pool,reason}`: of those, jobs queued longer than `scheduling.wait_alert_after`.
pub const JOBS_WAITING_TOO_LONG: &str = "runnerhub_jobs_waiting_too_long";
/// Gauge `{pool,state}`: runners by state; state is one of [`RUNNER_STATES`].
pub const RUNNERS: &str = "runnerhub_runners";
/// Histogram `{pool}`: from a job queued to a runner for it reporting idle.
pub const QUEUED_TO_RUNNER_IDLE_SECONDS: &str = "runnerhub_queued_to_runner_idle_seconds";
/// Histogram `{pool}`: from a job queued to the job starting (`in_progress`).
pub const JOB_WAIT_SECONDS: &str = "runnerhub_job_wait_seconds";
/// Counter `{pool,reason}`: runner launches that failed; reason is one of [`LAUNCH_FAILURE_REASONS`].
pub const RUNNER_LAUNCH_FAILURES_TOTAL: &str = "runnerhub_runner_launch_failures_total";
/// Gauge `{pool}`: 1 while the pool is stalled: queued jobs it cannot launch for (launches
/// failing, a refused registration scope) for `scheduling.stall_after` (5 minutes) or more; a
/// full pool is not stalled. `GET /api/webhooks/health` says `degraded` with the cause
/// meanwhile.
pub const POOL_STALLED: &str = "runnerhub_pool_stalled";
/// Counter `{pool, outcome}`: queued jobs that left the queue for good, refused with an
/// outcome (`unusable_repository`, `unknown_scope`).
pub const JOBS_REFUSED_TOTAL: &str = "runnerhub_jobs_refused_total";
/// Gauge: connected WebSocket clients.
pub const WEBSOCKET_CLIENTS: &str = "runnerhub_websocket_clients";
/// Gauge: open connections on the listeners (main and metrics; WebSockets included).
pub const HTTP_CONNECTIONS: &str = "runnerhub_http_connections";
/// Counter: idle connections closed to make room at `server.max_connections`.
pub const HTTP_CONNECTIONS_SHED_TOTAL: &str = "runnerhub_http_connections_shed_total";
/// Counter: connections refused at the limit, with nothing idle to shed.
pub const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "runnerhub_http_connections_refused_total";

// --- GitHub API and Docker -------------------------------------------------------------------

/// Counter `{endpoint,status}`: GitHub REST calls; endpoint is a fixed name, status the HTTP code
/// or a transport failure class.
pub const GITHUB_API_REQUESTS_TOTAL: &str = "github_api_requests_total";
/// Gauge: `x-ratelimit-remaining` of the last GitHub answer (NaN until the first call).
pub const GITHUB_RATE_LIMIT_REMAINING: &str = "github_rate_limit_remaining";
/// Histogram `{call}`: latency of Docker engine calls, by fixed call name.
pub const DOCKER_CALL_DURATION_SECONDS: &str = "docker_call_duration_seconds";

/// Counter `{result}`: catch-up passes (`github.catch_up_interval`), result `success` or
/// `failure`.
pub const CATCH_UP_PASSES_TOTAL: &str = "runnerhub_catch_up_passes_total";
/// Counter: `workflow_job` changes recorded by catch-up because their delivery never arrived.
pub const CATCH_UP_DELIVERIES_TOTAL: &str = "runnerhub_catch_up_deliveries_total";
/// Counter `{result}`: redelivery passes (`github.redeliver_interval`), `success` or `failure`.
pub const REDELIVERY_PASSES_TOTAL: &str = "runnerhub_redelivery_passes_total";
/// Counter `{event}`: failed deliveries runnerhub asked GitHub to redeliver (each ask).
pub const REDELIVERY_REQUESTS_TOTAL: &str = "runnerhub_redelivery_requests_total";
/// Counter `{event}`: asked-for deliveries that arrived in the audit log afterwards.
pub const REDELIVERY_RECOVERED_TOTAL: &str = "runnerhub_redelivery_recovered_total";
/// Counter `{event}`: failed deliveries given up (asked 5 times, or past GitHub's 3 days).
pub const REDELIVERY_GIVEN_UP_TOTAL: &str = "runnerhub_redelivery_given_up_total";

/// Counter `{kind}`: rows deleted by retention (`database.retention`, the cleanup endpoint);
/// kind is one of [`RETENTION_KINDS`].
pub const RETENTION_ROWS_PRUNED_TOTAL: &str = "runnerhub_retention_rows_pruned_total";
/// Counter `{result}`: periodic retention passes, result `success` or `failure`.
pub const RETENTION_PASSES_TOTAL: &str = "runnerhub_retention_passes_total";
/// Counter: bytes of the SQLite file given back to the filesystem after pruning.
pub const RETENTION_RECLAIMED_BYTES_TOTAL: &str = "runnerhub_retention_reclaimed_bytes_total";

// --- The daemon itself -----------------------------------------------------------------------

/// Counter `{result}`: configuration reloads (SIGHUP), result `success` or `failure`.
pub const CONFIG_RELOADS_TOTAL: &str = "runnerhub_config_reloads_total";
/// Gauge: 1 when the last reload succeeded (or none happened), 0 when it was refused.
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "runnerhub_config_last_reload_successful";
/// Gauge `{version}`: always 1; carries the running version.
pub const BUILD_INFO: &str = "runnerhub_build_info";

/// Reasons of [`JOBS_WAITING`] (DESIGN §13).
pub const WAIT_REASONS: [&str; 7] = [
    "waiting_approval",
    "launch_backoff",
    "quota",
    "pool_full",
    "host_full",
    "fair_share",
    "runner_starting",
];
// --- A fleet (`database.fleet`) --------------------------------------------------------------

/// Gauge: 1 while this instance leads its fleet (a daemon alone always does).
pub const FLEET_LEADER: &str = "runnerhub_fleet_leader";
/// Gauge: 1 while this instance reaches the database (heartbeats within half the instance
/// timeout); at 0 it launches nothing and `/readyz` fails.
pub const FLEET_CONNECTED: &str = "runnerhub_fleet_connected";
/// Gauge `{state}` (`alive`, `dead`): the fleet's instances, as the leader counts them.
pub const FLEET_INSTANCES: &str = "runnerhub_fleet_instances";
/// Gauge `{state}` (`alive`, `dead`): live runners of the fleet's instances by the state of
/// their instance, as of each one's last heartbeat (the leader's; 0 on the others).
pub const FLEET_RUNNERS: &str = "runnerhub_fleet_runners";
/// Gauge: the alive instances' `limits.max_runners`, summed (the leader's; 0 on the others).
pub const FLEET_CAPACITY: &str = "runnerhub_fleet_capacity";

/// Priority bands of [`QUEUE_DEPTH`].
pub const BANDS: &[&str] = &["high", "normal", "low"];
/// Runner states of [`RUNNERS`].
pub const RUNNER_STATES: &[&str] = &[
    "requested",
    "creating",
    "idle",
    "busy",
    "finished",
    "failed",
];
/// Reasons of [`RUNNER_LAUNCH_FAILURES_TOTAL`].
pub const LAUNCH_FAILURE_REASONS: &[&str] = &[
    "docker_unavailable",
    "image_missing",
    "github_error",
    "bootstrap_timeout",
    "crashed",
    "other",
];
/// Kinds of [`RETENTION_ROWS_PRUNED_TOTAL`].
pub const RETENTION_KINDS: [&str; 7] = [
    "deliveries",
    "forged_deliveries",
    "jobs",
    "runs",
    "runners",
    "redeliveries",
    "pool_samples",
];
/// Job conclusions GitHub documents; anything else is counted as `other`.
const CONCLUSIONS: &[&str] = &[
    "success",
    "failure",
    "cancelled",
    "skipped",
    "timed_out",
    "neutral",
    "action_required",
    "stale",
];
/// Rejection codes of [`WEBHOOK_REJECTIONS_TOTAL`] (see `webhook::intake::Rejection::code`).
const REJECTION_CODES: &[&str] = &[
    "BAD_HEADER",
    "UNSUPPORTED_MEDIA_TYPE",
    "PAYLOAD_TOO_LARGE",
    "INVALID_SIGNATURE",
    "MALFORMED_PAYLOAD",
    "UNAVAILABLE",
    "REQUEST_TIMEOUT",
    "BAD_BODY",
];
/// Outcomes of [`WEBHOOK_EVENTS_TOTAL`] (see `store::DeliveryOutcome::label`).
const OUTCOMES: &[&str] = &["processed", "ignored", "failed"];

/// Every metric name, for tests and for checking dashboards against.
pub const ALL: &[&str] = &[
    WEBHOOK_EVENTS_TOTAL,
    WEBHOOK_PROCESSING_DURATION_SECONDS,
    GITHUB_JOBS_QUEUED_TOTAL,
    GITHUB_JOBS_COMPLETED_TOTAL,
    GITHUB_JOB_DURATION_SECONDS,
    WEBHOOK_SIGNATURE_FAILURES_TOTAL,
    WEBHOOK_REJECTIONS_TOTAL,
    WEBHOOK_INGEST_COMMIT_SECONDS,
    WEBHOOK_INGEST_BATCH_SIZE,
    WEBHOOK_LAST_RECEIVED_TIMESTAMP_SECONDS,
    WEBHOOK_INGEST_WRITES_FAILING,
    QUEUE_DEPTH,
    JOBS_WAITING,
    JOBS_WAITING_TOO_LONG,
    RUNNERS,
    QUEUED_TO_RUNNER_IDLE_SECONDS,
    JOB_WAIT_SECONDS,
    RUNNER_LAUNCH_FAILURES_TOTAL,
    POOL_STALLED,
    JOBS_REFUSED_TOTAL,
    WEBSOCKET_CLIENTS,
    HTTP_CONNECTIONS,
    HTTP_CONNECTIONS_SHED_TOTAL,
    HTTP_CONNECTIONS_REFUSED_TOTAL,
    GITHUB_API_REQUESTS_TOTAL,
    GITHUB_RATE_LIMIT_REMAINING,
    DOCKER_CALL_DURATION_SECONDS,
    CATCH_UP_PASSES_TOTAL,
    CATCH_UP_DELIVERIES_TOTAL,
    RETENTION_ROWS_PRUNED_TOTAL,
    RETENTION_PASSES_TOTAL,
    RETENTION_RECLAIMED_BYTES_TOTAL,
    REDELIVERY_PASSES_TOTAL,
    REDELIVERY_REQUESTS_TOTAL,
    REDELIVERY_RECOVERED_TOTAL,
    REDELIVERY_GIVEN_UP_TOTAL,
    FLEET_LEADER,
    FLEET_CONNECTED,
    FLEET_INSTANCES,
    FLEET_RUNNERS,
    FLEET_CAPACITY,
    CONFIG_RELOADS_TOTAL,
    CONFIG_LAST_RELOAD_SUCCESSFUL,
    BUILD_INFO,
];

/// Buckets for fast things (HTTP, database, Docker, GitHub calls), in seconds.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets for waits and job durations: seconds to hours.
const WAIT_BUCKETS_SECONDS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 21600.0,
];
/// Buckets for batch sizes (deliveries per commit).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process-wide Prometheus recorder, installed on first use. Tests start several apps in one
/// process; they share it, which is why this is a `OnceLock` and not part of `App`.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS_SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(WEBHOOK_INGEST_BATCH_SIZE.into()),
                        BATCH_BUCKETS,
                    )
                })
                .and_then(|b| {
                    [
                        GITHUB_JOB_DURATION_SECONDS,
                        QUEUED_TO_RUNNER_IDLE_SECONDS,
                        JOB_WAIT_SECONDS,
                    ]
                    .into_iter()
                    .try_fold(b, |b, name| {
                        b.set_buckets_for_metric(Matcher::Full(name.into()), WAIT_BUCKETS_SECONDS)
                    })
                })
                .expect("bucket lists are non-empty constants");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when an embedding program installed its own recorder first; `/metrics`
            // then answers with what this (unused) one holds rather than panicking.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder is already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Registers HELP text for every metric and makes the series whose label values are known in
/// advance appear at 0, so `rate()` and alerts work from the first scrape instead of from the
/// first event. Called at every start and reload (it never lowers a value already counted).
pub fn describe(config: &Config) {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        WEBHOOK_EVENTS_TOTAL,
        "Webhook deliveries processed, by event and outcome"
    );
    describe_histogram!(
        WEBHOOK_PROCESSING_DURATION_SECONDS,
        "Time to apply one delivery to job and run state"
    );
    describe_counter!(GITHUB_JOBS_QUEUED_TOTAL, "Workflow jobs first seen queued");
    describe_counter!(
        GITHUB_JOBS_COMPLETED_TOTAL,
        "Workflow jobs completed, by conclusion"
    );
    describe_histogram!(
        GITHUB_JOB_DURATION_SECONDS,
        "Workflow job duration, start to completion"
    );
    describe_counter!(
        WEBHOOK_SIGNATURE_FAILURES_TOTAL,
        "Deliveries refused because no configured secret verified the signature"
    );
    describe_counter!(
        WEBHOOK_REJECTIONS_TOTAL,
        "Deliveries refused, by error code"
    );
    describe_histogram!(
        WEBHOOK_INGEST_COMMIT_SECONDS,
        "Latency of one group commit of the delivery log"
    );
    describe_histogram!(WEBHOOK_INGEST_BATCH_SIZE, "Deliveries per group commit");
    describe_gauge!(
        WEBHOOK_LAST_RECEIVED_TIMESTAMP_SECONDS,
        "Unix time of the last verified delivery (process start until the first)"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Queued jobs waiting for a runner, by pool and priority band"
    );
    describe_gauge!(JOBS_WAITING, "Queued jobs by pool and the reason they wait");
    describe_gauge!(
        JOBS_WAITING_TOO_LONG,
        "Queued jobs waiting longer than scheduling.wait_alert_after, by pool and reason"
    );
    describe_gauge!(RUNNERS, "Runners by pool and state");
    describe_gauge!(
        POOL_STALLED,
        "1 while the pool has queued jobs it cannot launch for (not merely full) past scheduling.stall_after"
    );
    describe_counter!(
        JOBS_REFUSED_TOTAL,
        "Queued jobs refused for good (they can never get a runner), by pool and outcome"
    );
    describe_histogram!(
        QUEUED_TO_RUNNER_IDLE_SECONDS,
        "Time from a job queued to a runner for it being idle"
    );
    describe_histogram!(
        JOB_WAIT_SECONDS,
        "Time from a job queued to the job starting"
    );
    describe_counter!(
        RUNNER_LAUNCH_FAILURES_TOTAL,
        "Runner launches that failed, by pool and reason"
    );
    describe_gauge!(WEBSOCKET_CLIENTS, "Connected WebSocket clients");
    describe_gauge!(
        HTTP_CONNECTIONS,
        "Open connections on the listeners (main and metrics), WebSockets included"
    );
    describe_counter!(
        HTTP_CONNECTIONS_SHED_TOTAL,
        "Idle connections closed to make room at server.max_connections"
    );
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED_TOTAL,
        "Connections refused at server.max_connections with none idle to close"
    );
    describe_counter!(
        GITHUB_API_REQUESTS_TOTAL,
        "GitHub REST calls, by endpoint and status"
    );
    describe_gauge!(
        GITHUB_RATE_LIMIT_REMAINING,
        "GitHub API requests left in the current rate-limit window (NaN until known)"
    );
    describe_histogram!(
        DOCKER_CALL_DURATION_SECONDS,
        "Latency of Docker engine calls, by call"
    );
    describe_counter!(
        CATCH_UP_PASSES_TOTAL,
        "Passes comparing runnerhub's jobs with GitHub's, by result"
    );
    describe_counter!(
        CATCH_UP_DELIVERIES_TOTAL,
        "Job changes recorded by catch-up because their webhook delivery never arrived"
    );
    describe_counter!(
        RETENTION_ROWS_PRUNED_TOTAL,
        "Rows deleted by retention, by kind"
    );
    describe_counter!(RETENTION_PASSES_TOTAL, "Retention passes, by result");
    describe_counter!(
        RETENTION_RECLAIMED_BYTES_TOTAL,
        "Bytes of the SQLite database given back to the filesystem after pruning"
    );
    describe_gauge!(
        FLEET_LEADER,
        "1 while this instance leads its fleet (always, without database.fleet)"
    );
    describe_gauge!(
        FLEET_CONNECTED,
        "1 while this instance's heartbeats reach the database"
    );
    describe_gauge!(
        FLEET_INSTANCES,
        "Instances of the fleet by state (alive, dead), as the leader sees them (0 elsewhere)"
    );
    describe_gauge!(
        FLEET_RUNNERS,
        "Live runners of the fleet by the state of their instance (alive, dead), from the leader (0 elsewhere)"
    );
    describe_gauge!(
        FLEET_CAPACITY,
        "limits.max_runners of the fleet's alive instances, summed, from the leader (0 elsewhere)"
    );
    describe_counter!(
        REDELIVERY_PASSES_TOTAL,
        "Passes over the webhooks' recent deliveries at GitHub, by result"
    );
    describe_counter!(
        REDELIVERY_REQUESTS_TOTAL,
        "Failed deliveries runnerhub asked GitHub to redeliver, by event"
    );
    describe_counter!(
        REDELIVERY_RECOVERED_TOTAL,
        "Redeliveries asked for that arrived in the audit log, by event"
    );
    describe_counter!(
        REDELIVERY_GIVEN_UP_TOTAL,
        "Failed deliveries no longer asked for (5 asks, or past GitHub's 3 days), by event"
    );
    describe_counter!(CONFIG_RELOADS_TOTAL, "Configuration reloads, by result");
    describe_gauge!(
        CONFIG_LAST_RELOAD_SUCCESSFUL,
        "1 when the last configuration reload succeeded or none happened, 0 when refused"
    );
    describe_gauge!(
        WEBHOOK_INGEST_WRITES_FAILING,
        "1 while the last batch of deliveries could not be stored and none has been since"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the label carries the version");

    // `increment(0)` registers a series without changing a value an earlier app in the same
    // process (tests) or an earlier reload already counted.
    metrics::counter!(WEBHOOK_SIGNATURE_FAILURES_TOTAL).increment(0);
    for code in REJECTION_CODES {
        metrics::counter!(WEBHOOK_REJECTIONS_TOTAL, "code" => *code).increment(0);
    }
    for event in crate::webhook::HANDLED_EVENTS {
        for status in OUTCOMES {
            metrics::counter!(WEBHOOK_EVENTS_TOTAL, "event" => *event, "status" => *status)
                .increment(0);
        }
    }
    for result in ["success", "failure"] {
        metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => result).increment(0);
        metrics::counter!(CATCH_UP_PASSES_TOTAL, "result" => result).increment(0);
        metrics::counter!(RETENTION_PASSES_TOTAL, "result" => result).increment(0);
        metrics::counter!(REDELIVERY_PASSES_TOTAL, "result" => result).increment(0);
    }
    for kind in RETENTION_KINDS {
        metrics::counter!(RETENTION_ROWS_PRUNED_TOTAL, "kind" => kind).increment(0);
    }
    metrics::counter!(RETENTION_RECLAIMED_BYTES_TOTAL).increment(0);
    metrics::counter!(CATCH_UP_DELIVERIES_TOTAL).increment(0);
    // Redelivery is for every event; the subscribed ones are there from the start.
    for event in crate::github::HOOK_EVENTS {
        for name in [
            REDELIVERY_REQUESTS_TOTAL,
            REDELIVERY_RECOVERED_TOTAL,
            REDELIVERY_GIVEN_UP_TOTAL,
        ] {
            metrics::counter!(name, "event" => event).increment(0);
        }
    }
    metrics::gauge!(WEBSOCKET_CLIENTS).increment(0.0);
    metrics::gauge!(HTTP_CONNECTIONS).increment(0.0);
    metrics::counter!(HTTP_CONNECTIONS_SHED_TOTAL).increment(0);
    metrics::counter!(HTTP_CONNECTIONS_REFUSED_TOTAL).increment(0);
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // A daemon alone leads, is connected and is its one live instance; in a fleet the
    // heartbeat task sets these from the first heartbeat on.
    metrics::gauge!(FLEET_LEADER).set(1.0);
    metrics::gauge!(FLEET_CONNECTED).set(1.0);
    metrics::gauge!(FLEET_INSTANCES, "state" => "alive").set(1.0);
    metrics::gauge!(FLEET_INSTANCES, "state" => "dead").set(0.0);
    metrics::gauge!(FLEET_RUNNERS, "state" => "alive").increment(0.0);
    metrics::gauge!(FLEET_RUNNERS, "state" => "dead").set(0.0);
    metrics::gauge!(FLEET_CAPACITY).set(f64::from(config.limits.max_runners));
    // Histograms appear (with zero counts) once registered.
    let _ = metrics::histogram!(WEBHOOK_INGEST_COMMIT_SECONDS);
    let _ = metrics::histogram!(WEBHOOK_INGEST_BATCH_SIZE);
    for pool in &config.pools {
        let pool = pool.name.clone();
        for band in BANDS {
            metrics::gauge!(QUEUE_DEPTH, "pool" => pool.clone(), "band" => *band).increment(0.0);
        }
        for reason in WAIT_REASONS {
            for name in [JOBS_WAITING, JOBS_WAITING_TOO_LONG] {
                metrics::gauge!(name, "pool" => pool.clone(), "reason" => reason).increment(0.0);
            }
        }
        for state in RUNNER_STATES {
            metrics::gauge!(RUNNERS, "pool" => pool.clone(), "state" => *state).increment(0.0);
        }
        metrics::gauge!(POOL_STALLED, "pool" => pool.clone()).increment(0.0);
        for outcome in [JobOutcome::UnusableRepository, JobOutcome::UnknownScope] {
            metrics::counter!(JOBS_REFUSED_TOTAL, "pool" => pool.clone(), "outcome" => outcome.as_str())
                .increment(0);
        }
        for reason in LAUNCH_FAILURE_REASONS {
            metrics::counter!(RUNNER_LAUNCH_FAILURES_TOTAL, "pool" => pool.clone(), "reason" => *reason)
                .increment(0);
        }
        let _ = metrics::histogram!(QUEUED_TO_RUNNER_IDLE_SECONDS, "pool" => pool.clone());
        let _ = metrics::histogram!(JOB_WAIT_SECONDS, "pool" => pool.clone());
    }
}

/// Sets the one-time series that start at "now" or "unknown": called once per process start.
pub fn init_process_gauges() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        metrics::gauge!(WEBHOOK_LAST_RECEIVED_TIMESTAMP_SECONDS).set(unix_now());
        // NaN, not 0: "remaining = 0" would fire the rate-limit alert before the first call.
        metrics::gauge!(GITHUB_RATE_LIMIT_REMAINING).set(f64::NAN);
        metrics::gauge!(CONFIG_LAST_RELOAD_SUCCESSFUL).set(1.0);
        metrics::gauge!(WEBHOOK_INGEST_WRITES_FAILING).set(0.0);
    });
}

/// Records that a delivery with a valid signature arrived (feeds the webhook-silence alert).
pub fn webhook_received() {
    metrics::gauge!(WEBHOOK_LAST_RECEIVED_TIMESTAMP_SECONDS).set(unix_now());
}

/// Seconds since the Unix epoch, as Prometheus timestamps are.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Event names as label values: only handled ones, so the label cannot grow without bound.
pub fn event_label(event: &str) -> &'static str {
    crate::webhook::HANDLED_EVENTS
        .iter()
        .find(|e| **e == event)
        .copied()
        .unwrap_or("other")
}

/// Job conclusions as label values: GitHub's documented set, else `other`.
pub fn conclusion_label(conclusion: Option<&str>) -> &'static str {
    match conclusion {
        None => "unknown",
        Some(c) => CONCLUSIONS
            .iter()
            .find(|k| **k == c)
            .copied()
            .unwrap_or("other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_mappers_are_bounded() {
        assert_eq!(event_label("workflow_job"), "workflow_job");
        assert_eq!(event_label("x".repeat(100).as_str()), "other");
        assert_eq!(conclusion_label(Some("success")), "success");
        assert_eq!(conclusion_label(Some("made-up")), "other");
        assert_eq!(conclusion_label(None), "unknown");
    }

    #[test]
    fn names_are_unique_and_prometheus_valid() {
        let mut seen = std::collections::HashSet::new();
        for name in ALL {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
    }
}
