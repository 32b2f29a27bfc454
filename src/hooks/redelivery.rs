//! Redelivery of failed deliveries (DESIGN §12): GitHub never retries a delivery that failed
//! (the daemon was down, a proxy answered 502, the answer took more than 10 s), but it keeps
//! them for 3 days and redelivers one on request. Every `github.redeliver_interval` this lists
//! the recent deliveries of every known hook, and asks GitHub to redeliver each failed one the
//! audit log lacks, whatever its event. The redelivery arrives at the webhook endpoint like
//! any delivery, with the same GUID, and is processed as usual.
//!
//! The asks are stored (one row per GUID), so a restart does not ask again what was asked; a
//! delivery is asked again only when GitHub's redelivery failed too, with backoff, at most
//! [`MAX_ASKS`] times (see [`super::redelivery_plan`]). Each pass stops early when GitHub's
//! rate limit runs low, leaving the budget to runner registration.
//!
//! API cost: the first pass after start lists up to 3 days of each hook's deliveries (100 per
//! call); later passes list back to the previous pass only, one call per hook when fewer than
//! 100 deliveries arrived in between; plus one call per ask.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::redelivery_plan::{self as plan, Decision, MAX_ASKS};
use super::sightings::HookSightings;
use crate::config::Config;
use crate::github::{GithubClient, HookOwner};
use crate::store::{RedeliveryAsk, Store};

/// The first pass after start: soon, once the daemon serves (so redeliveries are accepted).
const FIRST_PASS_AFTER: Duration = Duration::from_secs(5);
/// A later pass lists back to the previous one's start, less this (clock skew, slow hooks).
const OVERLAP: TimeDelta = TimeDelta::minutes(10);
/// Pages of 100 listed per hook: the first pass (3 days) and later ones.
const FULL_SCAN_PAGES: u32 = 30;
const INCREMENTAL_PAGES: u32 = 10;
/// Asks per pass at most; the rest wait for the next pass.
const MAX_ASKS_PER_PASS: usize = 100;
/// A pass stops when fewer requests than this are left in GitHub's budget (or a tenth of it).
const RATE_LIMIT_RESERVE: u64 = 100;

/// What one pass did, for the log line and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassSummary {
    /// Asks made, by event.
    pub asked: BTreeMap<String, u64>,
    /// Asked-for deliveries found in the audit log, by event.
    pub recovered: BTreeMap<String, u64>,
    /// Deliveries given up, by event.
    pub given_up: BTreeMap<String, u64>,
    /// Why the pass ended early, if it did.
    pub stopped: Option<String>,
}

/// The deliveries each hook was listed back to, so that a pass lists only what is new.
type Scanned = HashMap<(String, String, i64), DateTime<Utc>>;

/// Runs passes until `shutdown`. Idle while the interval is `0s` or no credentials are set.
pub async fn run(
    store: Arc<dyn Store>,
    sightings: Arc<HookSightings>,
    mut config: watch::Receiver<Arc<Config>>,
    fleet: crate::fleet::Fleet,
    shutdown: CancellationToken,
) {
    let mut client = client_for(&config.borrow());
    let mut scanned = Scanned::new();
    let first = config
        .borrow()
        .github
        .redeliver_interval
        .min(FIRST_PASS_AFTER);
    let mut next = tokio::time::Instant::now() + first;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            Ok(()) = config.changed() => {
                client = client_for(&config.borrow_and_update());
                continue;
            }
        }
        let interval = config.borrow().github.redeliver_interval;
        next = tokio::time::Instant::now() + interval.max(Duration::from_secs(1));
        let Some(client) = client.as_ref().filter(|_| !interval.is_zero()) else {
            // Off, or no credentials: the sightings still go to the database.
            let _ = store_sightings(store.as_ref(), &sightings).await;
            next = tokio::time::Instant::now() + Duration::from_secs(60);
            continue;
        };
        if !fleet.is_leader() {
            // In a fleet the leader asks for all, from the hooks every instance recorded.
            let _ = store_sightings(store.as_ref(), &sightings).await;
            next = tokio::time::Instant::now() + Duration::from_secs(5);
            continue;
        }
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = pass(store.as_ref(), client, &sightings, &mut scanned, interval) => result,
        };
        let outcome = if result.is_ok() { "success" } else { "failure" };
        metrics::counter!(crate::metrics::REDELIVERY_PASSES_TOTAL, "result" => outcome)
            .increment(1);
        match result {
            Ok(summary) => log_summary(&summary),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "redelivery pass failed"),
        }
    }
}

fn client_for(config: &Config) -> Option<Arc<GithubClient>> {
    match GithubClient::from_config(&config.github) {
        Ok(client) => Some(Arc::new(client)),
        Err(_) => {
            tracing::info!(
                "redelivery of failed webhook deliveries is off: no GitHub credentials \
                 (github.token or the App keys)"
            );
            None
        }
    }
}

fn log_summary(summary: &PassSummary) {
    let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    let (asked, recovered, given_up) = (
        total(&summary.asked),
        total(&summary.recovered),
        total(&summary.given_up),
    );
    if asked + recovered + given_up == 0 && summary.stopped.is_none() {
        tracing::debug!("redelivery: no failed delivery missing from the audit log");
        return;
    }
    tracing::info!(
        asked,
        recovered,
        given_up,
        stopped = summary.stopped.as_deref().unwrap_or(""),
        "redelivery: asked GitHub to redeliver {asked} failed deliveries ({}); {recovered} \
         recovered into the audit log ({}); {given_up} given up ({})",
        by_event(&summary.asked),
        by_event(&summary.recovered),
        by_event(&summary.given_up),
    );
}

fn by_event(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = counts.iter().map(|(e, n)| format!("{e} {n}")).collect();
    parts.join(", ")
}

async fn store_sightings(store: &dyn Store, sightings: &HookSightings) -> anyhow::Result<()> {
    for hook in sightings.drain() {
        store.record_hook(&hook).await?;
    }
    Ok(())
}

/// One pass over every known hook.
pub async fn pass(
    store: &dyn Store,
    client: &GithubClient,
    sightings: &HookSightings,
    scanned: &mut Scanned,
    interval: Duration,
) -> anyhow::Result<PassSummary> {
    let started = Utc::now();
    store_sightings(store, sightings).await?;
    let mut summary = PassSummary::default();
    let open = note_recovered(store, started, &mut summary).await?;
    for hook in store.known_hooks().await? {
        let Some(owner) = HookOwner::from_parts(&hook.kind, &hook.owner) else {
            continue;
        };
        if let Some(reason) = budget_low(client) {
            summary.stopped = Some(reason);
            break;
        }
        let key = (hook.kind.clone(), hook.owner.clone(), hook.hook_id);
        // Back to the previous pass, and to the open asks of this hook (their answers are
        // newer than the ask), within GitHub's window.
        let open_since = open
            .iter()
            .filter(|a| (&a.kind, &a.owner, a.hook_id) == (&key.0, &key.1, key.2))
            .map(|a| a.last_asked_at - OVERLAP)
            .min();
        let window_start = started - plan::WINDOW;
        let (since, pages) = match scanned.get(&key) {
            Some(at) => (
                (*at - OVERLAP)
                    .min(open_since.unwrap_or(*at))
                    .max(window_start),
                INCREMENTAL_PAGES,
            ),
            None => (window_start, FULL_SCAN_PAGES),
        };
        let attempts = match client
            .hook_deliveries(&owner, hook.hook_id, since, pages)
            .await
        {
            Ok(attempts) => attempts,
            Err(error) if error.is_transient() => {
                return Err(anyhow::Error::new(error).context("listing hook deliveries"));
            }
            Err(error) => {
                tracing::warn!(hook.id = hook.hook_id, %owner, %error, "redelivery: cannot list this hook's deliveries");
                continue;
            }
        };
        scanned.insert(key, started);
        ask_for_missing(
            store,
            client,
            &owner,
            hook.hook_id,
            &attempts,
            interval,
            &mut summary,
        )
        .await?;
        if summary.stopped.is_some() {
            break;
        }
    }
    Ok(summary)
}

/// Marks the open asks whose delivery reached the audit log; returns those still open.
async fn note_recovered(
    store: &dyn Store,
    now: DateTime<Utc>,
    summary: &mut PassSummary,
) -> anyhow::Result<Vec<RedeliveryAsk>> {
    let open = store
        .unrecovered_redelivery_asks(now - plan::WINDOW - TimeDelta::days(1))
        .await?;
    let guids: Vec<String> = open.iter().map(|a| a.delivery_guid.clone()).collect();
    let stored = store.stored_delivery_guids(&guids).await?;
    let mut still_open = Vec::new();
    for mut ask in open {
        if !stored.contains(&ask.delivery_guid) {
            if ask.next_ask_at.is_some() {
                still_open.push(ask);
            }
            continue;
        }
        ask.recovered_at = Some(now);
        ask.next_ask_at = None;
        store.save_redelivery_ask(&ask).await?;
        metrics::counter!(crate::metrics::REDELIVERY_RECOVERED_TOTAL, "event" => ask.event.clone())
            .increment(1);
        *summary.recovered.entry(ask.event).or_default() += 1;
    }
    Ok(still_open)
}

/// Asks for the failed deliveries among `attempts` that the audit log lacks.
async fn ask_for_missing(
    store: &dyn Store,
    client: &GithubClient,
    owner: &HookOwner,
    hook_id: i64,
    attempts: &[crate::github::HookDelivery],
    interval: Duration,
    summary: &mut PassSummary,
) -> anyhow::Result<()> {
    let failed = plan::failed_deliveries(attempts);
    let guids: Vec<String> = failed.iter().map(|f| f.guid.clone()).collect();
    let stored = store.stored_delivery_guids(&guids).await?;
    let asks: HashMap<String, RedeliveryAsk> = store
        .redelivery_asks(&guids)
        .await?
        .into_iter()
        .map(|a| (a.delivery_guid.clone(), a))
        .collect();
    for failed in failed.iter().filter(|f| !stored.contains(&f.guid)) {
        let now = Utc::now();
        let previous = asks.get(&failed.guid);
        match plan::decide(failed, previous, now) {
            Decision::Wait => {}
            Decision::GiveUp(reason) => {
                let mut ask = previous
                    .cloned()
                    .expect("only asked deliveries are given up");
                ask.next_ask_at = None;
                store.save_redelivery_ask(&ask).await?;
                give_up(&ask, reason, summary);
            }
            Decision::Ask { n } => {
                let asked: usize = summary.asked.values().sum::<u64>() as usize;
                if asked >= MAX_ASKS_PER_PASS {
                    summary.stopped = Some(format!("{MAX_ASKS_PER_PASS} asks in one pass"));
                    return Ok(());
                }
                if let Some(reason) = budget_low(client) {
                    summary.stopped = Some(reason);
                    return Ok(());
                }
                let ask = RedeliveryAsk {
                    delivery_guid: failed.guid.clone(),
                    kind: owner.kind().into(),
                    owner: owner.name().into(),
                    hook_id,
                    event: failed.event.clone(),
                    action: failed.action.clone(),
                    asks: n,
                    attempt_id: failed.latest_attempt_id,
                    first_asked_at: previous.map_or(now, |p| p.first_asked_at),
                    last_asked_at: now,
                    next_ask_at: Some(now + plan::backoff(interval, n)),
                    recovered_at: None,
                };
                // Stored before asking: a crash in between costs an ask, never a repeat.
                store.save_redelivery_ask(&ask).await?;
                match client
                    .redeliver(owner, hook_id, failed.latest_attempt_id)
                    .await
                {
                    Ok(()) => {
                        tracing::debug!(delivery = %failed.guid, event = %failed.event, ask = n, %owner, "asked GitHub to redeliver");
                        metrics::counter!(crate::metrics::REDELIVERY_REQUESTS_TOTAL, "event" => failed.event.clone())
                            .increment(1);
                        *summary.asked.entry(failed.event.clone()).or_default() += 1;
                    }
                    Err(error) if error.is_transient() => {
                        return Err(anyhow::Error::new(error).context("asking for a redelivery"));
                    }
                    // 404/422: GitHub will not redeliver it (too old, hook gone).
                    Err(error) => {
                        let mut ask = ask;
                        ask.next_ask_at = None;
                        store.save_redelivery_ask(&ask).await?;
                        tracing::warn!(delivery = %failed.guid, %owner, %error, "GitHub refused to redeliver");
                        give_up(&ask, "GitHub refused to redeliver", summary);
                    }
                }
            }
        }
    }
    Ok(())
}

fn give_up(ask: &RedeliveryAsk, reason: &str, summary: &mut PassSummary) {
    tracing::warn!(
        delivery = %ask.delivery_guid,
        event = %ask.event,
        asks = ask.asks,
        "redelivery: giving up on a failed delivery ({reason}; at most {MAX_ASKS} asks)"
    );
    metrics::counter!(crate::metrics::REDELIVERY_GIVEN_UP_TOTAL, "event" => ask.event.clone())
        .increment(1);
    *summary.given_up.entry(ask.event.clone()).or_default() += 1;
}

/// Why the pass should stop for the rate limit, if it should.
fn budget_low(client: &GithubClient) -> Option<String> {
    let snapshot = client.rate_limit()?;
    let reserve = snapshot
        .limit
        .map_or(RATE_LIMIT_RESERVE, |l| (l / 10).max(RATE_LIMIT_RESERVE));
    (snapshot.remaining < reserve).then(|| {
        format!(
            "GitHub rate limit low ({} requests left); the rest waits for the next pass",
            snapshot.remaining
        )
    })
}
