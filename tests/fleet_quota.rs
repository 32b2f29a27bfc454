//! A quota holds across a fleet (DESIGN §13, #17 item 3): two instances on one real PostgreSQL
//! database, each with room for 2 runners, under `[[quotas]] acme/* max_runners = 2`, launch
//! runner containers on the real Docker engine for a burst of `acme/*` jobs from the GitHub
//! simulator. Each instance alone would start 2 (4 at once); the fleet must never have more
//! than 2 live, neither in the database (sampled every 20 ms) nor at GitHub (the jobs' run
//! times, exactly), and every job must still be served. Under it, the claim itself: eight
//! instances claiming at once the last two slots of a quota get two.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::fleet::*;
use common::until;
use runnerhub::github::sim::SimHandle;
use store_backends::TestDatabase;

#[path = "common/store_backends.rs"]
mod store_backends;
#[path = "common/store_fixtures.rs"]
mod store_fixtures;

use runnerhub::domain::{JobStatus, RunnerState};
use runnerhub::store::fleet::{Claim, FleetStore, QuotaGate};
use runnerhub::store::postgres::PostgresStore;
use runnerhub::store::{ProcessingBatch, Store};

const QUOTA: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quota_over_two_instances_never_has_more_runners_live_than_its_limit() {
    let database = TestDatabase::create().await;
    let quota = format!(
        r#"
        [[quotas]]
        repositories = ["acme/*"]
        max_runners = {QUOTA}
        "#
    );
    // The quota goes after each instance's pool, at the end of its configuration.
    let shape = Shape {
        pools: Some(vec![format!("{}{quota}", pool("linux", LINUX)); 2]),
        ..Shape::default()
    };
    let databases = vec![database.url.clone(); 2];
    let (fleet, sim) = Fleet::launch_shaped("quota", databases, &["a", "b"], shape).await;

    let sampler = LiveRunners::sample(&database.url).await;
    let jobs = enqueue(&sim, 6, Duration::from_secs(2));
    // Meanwhile each instance says why the jobs it cannot launch for wait: the quota, full
    // with its own runners and the other's.
    let mut quota_details: BTreeMap<usize, String> = BTreeMap::new();
    until(60, "every job completed at GitHub", async || {
        for (index, daemon) in fleet.daemons.iter().enumerate() {
            for id in &jobs {
                let url = daemon.as_ref().unwrap().url(&format!("/api/jobs/{id}"));
                let Some(job) = get_data(&url).await else {
                    continue;
                };
                if job["wait_reason"] == "quota" {
                    let detail = job["wait_detail"].as_str().unwrap_or_default();
                    quota_details.insert(index, detail.to_owned());
                }
            }
        }
        all_completed(&sim, &jobs).then_some(())
    })
    .await;
    let (most_live, samples, by_instance) = sampler.stop().await;
    let most_running = most_running_at_once(&sim, &jobs);
    eprintln!(
        "quota {QUOTA}: at most {most_live} runners live in {samples} samples, \
         {most_running} jobs running at once at GitHub; runners by instance {by_instance:?}; \
         waiting for the quota by instance: {quota_details:?}"
    );
    assert!(samples > 50, "the sampler ran ({samples} samples)");
    assert!(
        most_live <= QUOTA,
        "{most_live} runners live at once over a quota of {QUOTA}"
    );
    assert!(
        most_running <= QUOTA,
        "{most_running} jobs ran at once over a quota of {QUOTA}"
    );
    assert!(
        quota_details.len() == 2
            && quota_details
                .values()
                .all(|d| d.starts_with("quota acme/* ")),
        "both instances gave the wait reason quota: {quota_details:?}"
    );
    checked_runners(&fleet).await;
    fleet.stop(sim).await;
    database.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_claiming_the_last_slots_of_a_quota_at_once_get_only_those() {
    let database = TestDatabase::create().await;
    let first = PostgresStore::connect(&database.url).await.unwrap();
    first.migrate().await.unwrap();
    // acme/* 3: one slot held by a live runner, eight queued jobs wanted by eight instances.
    let mut held = store_fixtures::runner("held", "linux", RunnerState::Busy, 0);
    held.scope = "repos/acme/app".to_owned();
    held.instance = "elsewhere".to_owned();
    held.launched_for = Some(100);
    let mut jobs = vec![store_fixtures::job(
        100,
        "acme/app",
        JobStatus::InProgress,
        0,
        0,
    )];
    jobs.extend((1..=8).map(|id| store_fixtures::job(id, "acme/app", JobStatus::Queued, 0, 0)));
    let batch = ProcessingBatch {
        deliveries: Vec::new(),
        jobs,
        runs: Vec::new(),
    };
    first.commit_processing(&batch).await.unwrap();
    first.save_runner(&held).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut claims = Vec::new();
    for id in 1..=8i64 {
        let store = PostgresStore::connect(&database.url).await.unwrap();
        let barrier = barrier.clone();
        claims.push(tokio::spawn(async move {
            let gate = QuotaGate {
                quotas: vec!["acme/*".to_owned()],
                refusal: Box::new(|fleet| {
                    let used: usize = fleet
                        .iter()
                        .filter(|(repo, _)| repo.starts_with("acme/"))
                        .map(|(_, n)| n)
                        .sum();
                    (used >= 3).then(|| format!("quota acme/* {used}/3"))
                }),
            };
            barrier.wait().await;
            store
                .claim_job(id, &format!("instance-{id}"), Some(&gate))
                .await
                .unwrap()
        }));
    }
    let mut answers = Vec::new();
    for claim in claims {
        answers.push(claim.await.unwrap());
    }
    let claimed = answers.iter().filter(|a| **a == Claim::Claimed).count();
    eprintln!("eight claims at once for the last 2 slots: {answers:?}");
    assert_eq!(claimed, 2, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| *a == Claim::Claimed || *a == Claim::OverQuota("quota acme/* 3/3".into())),
        "{answers:?}"
    );
    // What the others' fleet syncs read: the runner and the two claims.
    let held = first.slots_held_elsewhere("nobody").await.unwrap();
    assert_eq!(held.iter().map(|h| h.runners).sum::<usize>(), 3, "{held:?}");
    database.drop_now().await;
}

async fn get_data(url: &str) -> Option<serde_json::Value> {
    let answer = reqwest::get(url).await.ok()?;
    answer.status().is_success().then_some(())?;
    answer
        .json::<serde_json::Value>()
        .await
        .ok()
        .map(|v| v["data"].clone())
}

/// The most jobs of `jobs` that GitHub ran at the same time, from their start and end times.
fn most_running_at_once(sim: &SimHandle, jobs: &[u64]) -> usize {
    let mut edges: Vec<(chrono::DateTime<chrono::Utc>, i32)> = Vec::new();
    for id in jobs {
        let job = sim.job(*id).expect("a job of the simulator");
        if let (Some(start), Some(end)) = (job.started_at, job.completed_at) {
            edges.push((start, 1));
            edges.push((end, -1));
        }
    }
    // An end before a start at the same instant: a slot handed on is not two at once.
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

/// Counts the fleet's live runner records (every job here is under the quota) every 20 ms.
struct LiveRunners {
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, usize, BTreeMap<String, usize>)>,
}

impl LiveRunners {
    async fn sample(url: &str) -> LiveRunners {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let most = Arc::new(AtomicUsize::new(0));
        let stop = done.clone();
        let task = tokio::spawn(async move {
            let mut samples = 0;
            while !stop.load(Ordering::Relaxed) {
                let live: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM runners \
                     WHERE state IN ('requested', 'creating', 'idle', 'busy')",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                most.fetch_max(live as usize, Ordering::Relaxed);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let by_instance: Vec<(String, i64)> =
                sqlx::query_as("SELECT instance, count(*) FROM runners GROUP BY instance")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            pool.close().await;
            let by_instance = by_instance
                .into_iter()
                .map(|(instance, n)| (instance, n as usize))
                .collect();
            (most.load(Ordering::Relaxed), samples, by_instance)
        });
        LiveRunners { done, task }
    }

    async fn stop(self) -> (usize, usize, BTreeMap<String, usize>) {
        self.done.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}
