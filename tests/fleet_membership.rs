//! A fleet's membership on a real PostgreSQL server (DESIGN §9), with real daemons and no
//! runners: who may join, one leader, a delivery posted to two instances stored and processed
//! once, and an instance cut off from the database (a TCP proxy the test puts between them and
//! cuts) that stops answering ready, is declared dead by the others, and comes back.

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use common::db_cut::Cut;
use common::until;
use serde_json::Value;
use store_backends::TestDatabase;

#[path = "common/store_backends.rs"]
mod store_backends;

fn config(database: &str, id: &str, fleet: bool) -> String {
    format!(
        r#"
        [server]
        instance_id = "{id}"
        [database]
        url = "{database}"
        fleet = {fleet}
        instance_timeout = "4s"
        "#
    )
}

fn start(database: &str, id: &str) -> Daemon {
    Daemon::start(
        &config(database, id, true),
        &[("GITHUB_WEBHOOK_SECRET", common::SECRET)],
        &[],
    )
}

/// Starts a daemon expected to refuse to start; returns what it logged.
fn refused(database: &str, id: &str, fleet: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runnerhub.toml");
    std::fs::write(&path, config(database, id, fleet)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--listen", "127.0.0.1:0"])
        .env("GITHUB_WEBHOOK_SECRET", common::SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn get(daemon: &Daemon, path: &str) -> (u16, Value) {
    let answer = reqwest::get(daemon.url(path)).await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

async fn instances(daemon: &Daemon) -> Vec<Value> {
    let (_, body) = get(daemon, "/api/instances").await;
    body["data"]["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_join_one_leads_and_a_delivery_to_two_is_stored_and_processed_once() {
    let database = TestDatabase::create().await;
    let a = start(&database.url, "alpha");
    let b = start(&database.url, "beta");

    // Refused, each naming what is wrong.
    let twin = refused(&database.url, "alpha", true);
    assert!(twin.contains("server.instance_id `alpha`"), "{twin}");
    let lone = refused(&database.url, "gamma", false);
    assert!(lone.contains("database.fleet = true"), "{lone}");

    let listed = until(20, "both listed, one leading", async || {
        let list = instances(&a).await;
        let leaders = list.iter().filter(|i| i["leader"] == true).count();
        (list.len() == 2 && leaders == 1 && list.iter().all(|i| i["alive"] == true)).then_some(list)
    })
    .await;
    assert!(
        listed
            .iter()
            .all(|i| i["version"] == env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        instances(&b).await.len(),
        2,
        "every instance shows the fleet"
    );
    // A's live feed, from before the delivery.
    let (mut feed, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", a.addr))
        .await
        .unwrap();
    let snapshot = common::ws::next(&mut feed).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(
        snapshot["data"]["instances"].as_array().map(Vec::len),
        Some(2)
    );
    let before = snapshot["seq"].as_i64().unwrap_or(0);

    // The same delivery to both: stored once, processed once (by the leader).
    let body = common::job_payload(4242, "queued", &["self-hosted"]);
    for daemon in [&a, &b] {
        let answer = common::post_delivery(
            &reqwest::Client::new(),
            &daemon.url(""),
            "workflow_job",
            "dup-guid-1",
            &body,
        )
        .await;
        assert!(answer.status().is_success(), "{}", answer.status());
    }
    let event = until(20, "the delivery processed", async || {
        let (status, body) = get(&b, "/api/webhooks/events/dup-guid-1").await;
        (status == 200 && body["data"]["processed"] == true).then_some(body)
    })
    .await;
    let (_, page) = get(&a, "/api/webhooks/events?limit=100").await;
    let copies = page["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"] == "dup-guid-1")
        .count();
    assert_eq!(copies, 1, "stored once: {page}");
    assert_eq!(event["data"]["attempts"], 1, "processed once: {event}");
    let (status, job) = get(&a, "/api/jobs/4242").await;
    assert_eq!(
        (status, job["data"]["status"].as_str()),
        (200, Some("queued"))
    );

    // One feed for the fleet: A's clients see the change whichever instance made it, with
    // strictly increasing seqs, and B replays the very same messages from the shared log.
    let seen = common::ws::read_until(&mut feed, |m| common::ws::is_job(m, 4242)).await;
    let seqs = common::ws::seqs(&seen);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(
        seen.iter().any(|m| m["type"] == "webhook"),
        "the webhook event: {seen:?}"
    );
    let (mut replay, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?since={before}", b.addr))
            .await
            .unwrap();
    let last = *seqs.last().unwrap();
    let replayed = common::ws::read_through(&mut replay, last).await;
    let job_event = |messages: &[Value]| {
        messages
            .iter()
            .find(|m| common::ws::is_job(m, 4242))
            .cloned()
    };
    assert_eq!(
        job_event(&replayed),
        job_event(&seen),
        "the same message on B"
    );

    drop((a, b));
    database.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_from_the_database_stops_being_ready_is_given_up_and_comes_back() {
    let database = TestDatabase::create().await;
    let (cut, cut_url) = Cut::start(&database.url).await;
    let a = start(&database.url, "steady");
    let b = start(&cut_url, "cut-off");
    until(20, "both alive", async || {
        let list = instances(&a).await;
        (list.len() == 2 && list.iter().all(|i| i["alive"] == true)).then_some(())
    })
    .await;
    assert_eq!(get(&b, "/readyz").await.0, 200);

    cut.cut();
    // At once the database does not answer; within half the instance timeout (2 s) and a
    // heartbeat the instance knows it is cut off from the fleet, and launches nothing.
    until(10, "the cut-off instance not ready", async || {
        let (status, body) = get(&b, "/readyz").await;
        (status == 503 && body["status"] == "fleet_disconnected").then_some(())
    })
    .await;
    until(20, "the others declare it dead and lead", async || {
        let list = instances(&a).await;
        let cut_off = list.iter().find(|i| i["id"] == "cut-off")?;
        let steady = list.iter().find(|i| i["id"] == "steady")?;
        (cut_off["alive"] == false && !cut_off["dead_since"].is_null() && steady["leader"] == true)
            .then_some(())
    })
    .await;
    assert_eq!(get(&a, "/readyz").await.0, 200, "the others stay ready");

    cut.heal();
    until(30, "back: alive and ready", async || {
        let (status, _) = get(&b, "/readyz").await;
        let list = instances(&a).await;
        let back = list.iter().find(|i| i["id"] == "cut-off")?;
        (status == 200 && back["alive"] == true && back["dead_since"].is_null()).then_some(())
    })
    .await;
    b.wait_for_log(
        "rebuilding its state from the database",
        Duration::from_secs(10),
    );
    drop((a, b));
    database.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_whose_host_left_is_forgotten_and_no_longer_counted_dead() {
    let database = TestDatabase::create().await;
    let a = start(&database.url, "stays");
    let b = start(&database.url, "leaves");
    until(20, "both alive", async || {
        let list = instances(&a).await;
        (list.len() == 2 && list.iter().all(|i| i["alive"] == true)).then_some(())
    })
    .await;
    let client = reqwest::Client::new();
    let forget = async |id: &str| {
        let answer = client
            .delete(a.url(&format!("/api/instances/{id}")))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json::<Value>().await.unwrap_or_default())
    };
    let (status, body) = forget("leaves").await;
    assert_eq!(status, 409, "an alive instance is not forgotten: {body}");

    drop(b); // kill: it stops heartbeating
    until(20, "the leaving instance listed dead", async || {
        let list = instances(&a).await;
        list.iter()
            .any(|i| i["id"] == "leaves" && i["alive"] == false)
            .then_some(())
    })
    .await;
    let metrics = a.url("/metrics");
    let dead = r#"runnerhub_fleet_instances{state="dead"}"#;
    until(10, "the leader counts it dead", async || {
        (common::scraped(&metrics, dead).await? == 1.0).then_some(())
    })
    .await;
    assert_eq!(forget("never-joined").await.0, 404);
    let (status, body) = forget("leaves").await;
    assert_eq!(status, 200, "{body}");
    let list = instances(&a).await;
    assert_eq!(list.len(), 1, "{list:?}");
    until(10, "no longer counted dead", async || {
        (common::scraped(&metrics, dead).await? == 0.0).then_some(())
    })
    .await;
    drop(a);
    database.drop_now().await;
}

/// Without a ring the leader would find a delivery stored by another instance at its next
/// sweep (every second), so each of eight would wait 0.5 s on average and all eight under
/// 0.5 s would happen once in 256 runs. With the doorbell each waits a few milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_to_an_instance_that_does_not_lead_rings_the_leader() {
    let database = TestDatabase::create().await;
    let a = start(&database.url, "one");
    let b = start(&database.url, "two");
    let leader = until(20, "both alive, one leading", async || {
        let list = instances(&a).await;
        let leader = list.iter().find(|i| i["leader"] == true)?;
        (list.len() == 2 && list.iter().all(|i| i["alive"] == true))
            .then(|| leader["id"].as_str().unwrap().to_owned())
    })
    .await;
    let other = if leader == "one" { &b } else { &a };
    let client = reqwest::Client::new();
    let mut waits = Vec::new();
    for n in 0..8i64 {
        let guid = format!("rung-{n}");
        let body = common::job_payload(7000 + n, "queued", &["self-hosted"]);
        let answer =
            common::post_delivery(&client, &other.url(""), "workflow_job", &guid, &body).await;
        assert!(answer.status().is_success(), "{}", answer.status());
        let acknowledged = std::time::Instant::now();
        until(10, "the delivery processed", async || {
            let (status, body) = get(other, &format!("/api/webhooks/events/{guid}")).await;
            (status == 200 && body["data"]["processed"] == true).then_some(())
        })
        .await;
        waits.push(acknowledged.elapsed());
        // Out of step with the leader's one-second sweep.
        tokio::time::sleep(Duration::from_millis(137)).await;
    }
    eprintln!("from acknowledgement to processed: {waits:?}");
    assert!(
        waits.iter().all(|w| *w < Duration::from_millis(500)),
        "the leader was not rung: {waits:?}"
    );
    drop((a, b));
    database.drop_now().await;
}
