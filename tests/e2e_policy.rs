//! Scheduling policy (DESIGN §13) with the real Docker engine and the GitHub simulator: fair
//! share between repositories, a quota, and a priority rule by repository. Pools of one or a
//! few slots make the order observable; jobs last a second or two.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::e2e::{self, E2e, pool};
use runnerhub::github::sim::{EnqueuedJob, JobSpec};

const LINUX: &[&str] = &["self-hosted", "linux", "x64"];

fn enqueue(e: &E2e, repository: &str, millis: u64) -> EnqueuedJob {
    let spec = JobSpec::new(repository, LINUX).with_duration(Duration::from_millis(millis));
    e.sim.enqueue_job(spec).unwrap()
}

async fn all_completed(e: &E2e, jobs: &[&EnqueuedJob]) {
    e.until(180, "all jobs completed", async |e| {
        for job in jobs {
            if e.job_status(job.job_id).await? != "completed" {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// When the simulator started and completed the job (its own clock, sub-second).
fn ran(e: &E2e, job: &EnqueuedJob) -> (DateTime<Utc>, DateTime<Utc>) {
    let at_sim = e.sim.job(job.job_id).unwrap();
    (at_sim.started_at.unwrap(), at_sim.completed_at.unwrap())
}

/// Waits until the API gives the job this wait reason, and returns its wait detail.
async fn wait_reason(e: &E2e, job: &EnqueuedJob, reason: &str) -> String {
    let what = format!("job {} waiting for {reason}", job.job_id);
    e.until(60, &what, async |e| {
        let record = e.job(job.job_id).await?;
        (record["wait_reason"] == reason).then(|| record["wait_detail"].to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_share_starts_a_lone_repository_before_a_long_queue() {
    let e = e2e::start(
        &pool("linux", LINUX, "max_runners = 2"),
        "[scheduling]\nfair_share = \"repository\"",
    )
    .await;
    // The long queue's repository holds both slots; the second blocker outlasts the first.
    let blockers = [
        enqueue(&e, "big/monorepo", 3000),
        enqueue(&e, "big/monorepo", 8000),
    ];
    e.until(60, "blockers running", async |e| {
        for job in &blockers {
            if e.job_status(job.job_id).await? != "in_progress" {
                return None;
            }
        }
        Some(())
    })
    .await;
    let big: Vec<EnqueuedJob> = (0..3).map(|_| enqueue(&e, "big/monorepo", 500)).collect();
    let lone = enqueue(&e, "small/tool", 500);
    let detail = wait_reason(&e, &big[2], "fair_share").await;
    assert!(
        detail.contains("big/monorepo has 2 runners of pool linux, small/tool 0"),
        "{detail}"
    );
    let mut jobs: Vec<&EnqueuedJob> = big.iter().collect();
    jobs.push(&lone);
    all_completed(&e, &jobs).await;
    // The first free slot goes to the repository with no runner, ahead of the long queue
    // (without fair share it would go to the oldest job, and the lone job would start last).
    let lone_started = ran(&e, &lone).0;
    let before = big.iter().filter(|j| ran(&e, j).0 < lone_started).count();
    assert_eq!(
        before, 0,
        "the lone job waited for no job of the long queue"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_bounds_a_repository_and_leaves_the_pool_to_others() {
    let e = e2e::start(
        &pool("linux", LINUX, "max_runners = 3"),
        "[[quotas]]\nrepositories = [\"acme/*\"]\nmax_runners = 1",
    )
    .await;
    let acme: Vec<EnqueuedJob> = (0..3).map(|_| enqueue(&e, "acme/api", 1500)).collect();
    let other = enqueue(&e, "other/web", 1500);
    let detail = wait_reason(&e, &acme[2], "quota").await;
    assert_eq!(detail, "\"quota acme/* 1/1\"");
    let mut jobs: Vec<&EnqueuedJob> = acme.iter().collect();
    jobs.push(&other);
    all_completed(&e, &jobs).await;
    // Never two acme jobs at once; the other repository did not wait for them.
    let mut spans: Vec<_> = acme.iter().map(|j| ran(&e, j)).collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "acme jobs overlapped: {pair:?}");
    }
    assert!(
        ran(&e, &other).0 < spans[1].0,
        "other/web started while acme's quota was full"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_by_repository_puts_its_jobs_first() {
    let e = e2e::start(
        &pool("linux", LINUX, "max_runners = 1"),
        "[[priority.rules]]\nrepositories = [\"acme/prod-*\"]\nscore = 100",
    )
    .await;
    let blocker = enqueue(&e, "acme/lib", 3000);
    e.until(60, "blocker running", async |e| {
        (e.job_status(blocker.job_id).await? == "in_progress").then_some(())
    })
    .await;
    let older = enqueue(&e, "acme/lib", 500);
    let prod = enqueue(&e, "acme/prod-api", 500);
    all_completed(&e, &[&older, &prod]).await;
    assert_eq!(e.job(prod.job_id).await.unwrap()["priority"], 100);
    assert_eq!(e.job(older.job_id).await.unwrap()["priority"], 0);
    assert!(
        ran(&e, &prod).0 < ran(&e, &older).0,
        "the newer job of acme/prod-* started first"
    );
    e.stop().await;
}
