//! A fleet's dashboard in a real headless Chromium, with two real daemons on a real PostgreSQL
//! server, the real Docker engine and the GitHub simulator: instance B's dashboard shows A's
//! runner (A named) and A's pool, a pool B does not serve; after A is killed (`kill -9`, so it
//! stops heartbeating) B's dashboard marks A down, its runner as on a down host and its pool
//! as not counted, without a reload. The fleet-wide gauges come from the leader alone.
//! Needs Debian's `chromium` and `chromium-driver`; fails (does not skip) without them.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::fleet::{Fleet, Shape, pool};
use common::until;
use runnerhub::github::sim::JobSpec;
use serde_json::json;
use store_backends::TestDatabase;

#[path = "common/store_backends.rs"]
mod store_backends;

const GPU: &[&str] = &["self-hosted", "gpu"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_instances_runner_and_pool_show_and_a_dead_instance_is_marked_down() {
    let database = TestDatabase::create().await;
    let shape = Shape {
        instance_timeout: "3s",
        pools: Some(vec![pool("gpu", GPU), pool("linux", common::fleet::LINUX)]),
    };
    let databases = vec![database.url.clone(); 2];
    let (mut fleet, sim) = Fleet::launch_shaped("view", databases, &["a", "b"], shape).await;
    let (a, b) = (fleet.ids[0].clone(), fleet.ids[1].clone());

    // The leader alone counts the fleet; the other reports 0, so `max` over both is right.
    let alive = r#"runnerhub_fleet_instances{state="alive"}"#;
    until(10, "the leader's gauges, and 0 on the other", async || {
        let mut counts = Vec::new();
        for daemon in fleet.daemons.iter().flatten() {
            counts.push(common::scraped(&daemon.url("/metrics"), alive).await?);
        }
        counts.sort_by(f64::total_cmp);
        (counts == [0.0, 2.0]).then_some(())
    })
    .await;

    // A job only A's pool serves: A's runner takes it and stays busy past A's death.
    let job = sim
        .enqueue_job(JobSpec::new("acme/train", GPU).with_duration(Duration::from_secs(60)))
        .unwrap()
        .job_id;
    until(40, "A's runner busy with the job", async || {
        let runners = fleet.api("/api/runners").await?;
        runners["runners"]
            .as_array()?
            .iter()
            .any(|r| r["instance"] == a.as_str() && r["job_id"] == job)
            .then_some(())
    })
    .await;

    let browser = Browser::start().await;
    let session = browser.session().await;
    let on_b = fleet.daemons[1].as_ref().unwrap();
    let b_metrics = on_b.url("/metrics");
    browser.open(&session, &on_b.url("/")).await;
    browser.wait_for(&session, "#status.live").await;
    let row = format!("#runners tr[data-instance=\"{a}\"]");
    let text = browser.wait_for(&session, &row).await;
    assert!(
        text.contains(&a) && text.contains("gpu") && text.contains("busy"),
        "A's runner, A named: {text}"
    );
    let shown = browser
        .script(
            &session,
            "return !document.getElementById('runner-instance').hidden",
            json!([]),
        )
        .await;
    assert_eq!(shown, true, "the runners table has an instance column");
    let gpu = format!("#pools [data-pool=\"gpu\"] [data-pool-instance=\"{a}\"]");
    let line = browser.wait_for(&session, &gpu).await;
    assert!(line.contains("1 busy") && line.contains("of 2"), "{line}");
    browser
        .wait_for(
            &session,
            &format!("#pools [data-pool=\"linux\"] [data-pool-instance=\"{b}\"]"),
        )
        .await;
    let head = browser
        .wait_for(&session, "#pools [data-pool=\"gpu\"] .pool-head")
        .await;
    assert!(head.contains("1 / 2 runners"), "{head}");

    // A stops heartbeating: B's page marks it down from the leader's `instance` event.
    fleet.kill(0);
    let killed = std::time::Instant::now();
    let down = format!("#instances .down[data-instance=\"{a}\"]");
    let text = browser.wait_for(&session, &down).await;
    assert!(text.contains("(down)"), "{text}");
    let marked = browser
        .wait_for(&session, &format!("{row}.on-down-host"))
        .await;
    assert!(marked.contains(&format!("{a} (down)")), "{marked}");
    let line = browser.wait_for(&session, &format!("{gpu}.down")).await;
    assert!(line.contains("on a down host"), "{line}");
    let head = browser
        .wait_for(&session, "#pools [data-pool=\"gpu\"] .pool-head")
        .await;
    assert!(
        head.contains("0 / 0 runners"),
        "A's capacity is gone: {head}"
    );
    let after = killed.elapsed();
    eprintln!(
        "A shown down {:.1} s after kill -9 (instance_timeout 3 s)",
        after.as_secs_f64()
    );
    // By the leader's event, not the page's snapshot every 30 s.
    assert!(
        after < Duration::from_secs(12),
        "shown down after {after:?}"
    );
    let path = browser
        .screenshot_at(&session, "pools-title", "fleet-dashboard.png")
        .await;
    eprintln!("screenshot: {}", path.display());

    // B leads now and counts A dead; the alert rule reads this gauge.
    until(
        10,
        "B's gauges: one dead, one alive, B leading",
        async || {
            let dead =
                common::scraped(&b_metrics, r#"runnerhub_fleet_instances{state="dead"}"#).await?;
            let alive = common::scraped(&b_metrics, alive).await?;
            let leads = common::scraped(&b_metrics, "runnerhub_fleet_leader").await?;
            let capacity = common::scraped(&b_metrics, "runnerhub_fleet_capacity").await?;
            (dead == 1.0 && alive == 1.0 && leads == 1.0 && capacity == 2.0).then_some(())
        },
    )
    .await;
    browser.end(&session).await;
    fleet.stop(sim).await;
}
