//! `runnerhub replay --html` as a user runs it, and the page in a real headless Chromium: a
//! generated three-hour workload on two pools, replayed under two configurations; every chart
//! is drawn for every pool, the numbers on the page are the ones `--json` prints, nothing
//! outside the file is loaded, and input in the page stays text. The screenshot of the page is
//! the one in docs/capacity-planning.md (`docs/replay-report.png`).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use chrono::{DateTime, Duration, Utc};
use common::browser::Browser;
use serde_json::{Value, json};

fn runnerhub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runnerhub"))
        .args(args)
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .output()
        .unwrap()
}

fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A small deterministic generator, so the screenshot is the same every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// A morning of CI: 160 Linux jobs over three hours with a burst at 09:00, and 20 long GPU
/// jobs; each recorded as queued, in_progress and completed deliveries.
fn write_events(path: &Path) {
    let t0: DateTime<Utc> = "2026-11-30T08:00:00Z".parse().unwrap();
    let mut rng = Lcg(7);
    let mut lines = String::new();
    for id in 1..=180u64 {
        let gpu = id > 160;
        let created = if !gpu && id % 5 < 2 {
            t0 + Duration::minutes(60) + Duration::seconds(rng.next(40 * 60) as i64)
        } else {
            t0 + Duration::seconds(rng.next(3 * 3600) as i64)
        };
        let (labels, minutes) = if gpu {
            (r#"["self-hosted","gpu"]"#, 10 + rng.next(15))
        } else {
            (r#"["self-hosted","linux","x64"]"#, 2 + rng.next(10))
        };
        let started = created + Duration::seconds(5 + rng.next(30) as i64);
        let completed = started + Duration::seconds((minutes * 60 + rng.next(60)) as i64);
        for (action, at) in [
            ("queued", created),
            ("in_progress", started),
            ("completed", completed),
        ] {
            let runner = if action == "queued" {
                "null".to_owned()
            } else {
                format!("\"r-{id}\"")
            };
            lines.push_str(&format!(
                r#"{{"received_at":"{at}","event":"workflow_job","delivery":"{id}-{action}","payload":{{"action":"{action}","repository":{{"full_name":"acme/app"}},"workflow_job":{{"id":{id},"run_id":{id},"workflow_name":"ci","name":"build","labels":{labels},"runner_name":{runner},"conclusion":"success","created_at":"{c}","started_at":"{s}","completed_at":"{e}"}}}}}}"#,
                at = at.to_rfc3339(),
                c = created.to_rfc3339(),
                s = started.to_rfc3339(),
                e = completed.to_rfc3339(),
            ));
            lines.push('\n');
        }
    }
    std::fs::write(path, lines).unwrap();
}

fn write_config(path: &Path, linux: u32, gpu: u32) {
    std::fs::write(
        path,
        format!(
            r#"
            [database]
            url = "sqlite://nowhere.db"
            [[pools]]
            name = "linux"
            labels = ["self-hosted", "linux", "x64"]
            max_runners = {linux}
            [[pools]]
            name = "gpu"
            labels = ["self-hosted", "linux", "gpu"]
            max_runners = {gpu}
            "#
        ),
    )
    .unwrap();
}

/// What the page shows, read in the browser: per section (pool, `*` for all), per chart, what
/// was drawn; and every summary cell.
const READ_PAGE: &str = r#"
const drawn = (e) => { const b = e.getBBox(); return { width: b.width, height: b.height }; };
const charts = [...document.querySelectorAll('svg.chart')].map((svg) => ({
  chart: svg.dataset.chart,
  pool: svg.dataset.pool,
  config: svg.dataset.config || null,
  width: svg.getBoundingClientRect().width,
  lines: [...svg.querySelectorAll('path.line')].map((p) =>
    ({ config: p.dataset.config, ...drawn(p), length: p.getTotalLength() })),
  bands: [...svg.querySelectorAll('path.band')].map((p) =>
    ({ class: p.getAttribute('class'), ...drawn(p) })),
  marks: svg.querySelectorAll('circle.mark').length,
}));
const cells = [...document.querySelectorAll('table.summary td')].map((td) => ({
  pool: td.closest('table').dataset.pool,
  config: td.dataset.config,
  key: td.dataset.key,
  value: Number(td.dataset.value),
  text: td.innerText,
}));
return {
  charts,
  cells,
  sections: [...document.querySelectorAll('section.pool')].map((s) => s.dataset.pool),
  resources: performance.getEntriesByType('resource').length,
  external: document.querySelectorAll('script, link, img, iframe, object, embed').length,
  header: document.querySelector('header').innerText,
  title: document.title,
};
"#;

/// Every key path of a JSON document, for "the same document" without its numbers.
fn keys(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let below = keys(v);
                if below.is_empty() {
                    vec![k.clone()]
                } else {
                    below.into_iter().map(|b| format!("{k}.{b}")).collect()
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn json_at<'a>(report: &'a Value, pool: &str, key: &str) -> &'a Value {
    let summary = if pool == "*" {
        report
    } else {
        &report["pools"][pool]
    };
    key.split('.').fold(summary, |v, k| &v[k])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_draws_every_pool_and_matches_json() {
    // The paths show in the screenshot.
    let dir = tempfile::Builder::new()
        .prefix("capacity-plan-")
        .tempdir()
        .unwrap();
    let events = dir.path().join("events.ndjson");
    write_events(&events);
    let (base, other) = (
        dir.path().join("base.toml"),
        dir.path().join("more-runners.toml"),
    );
    write_config(&base, 6, 1);
    write_config(&other, 10, 2);
    let report = dir.path().join("report.html");
    let path = |p: &Path| p.display().to_string();
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "replay".to_owned(),
            "--config".to_owned(),
            path(&base),
            "--events".to_owned(),
            path(&events),
            "--boot-time".to_owned(),
            "20s".to_owned(),
            "--compare".to_owned(),
            path(&other),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        runnerhub(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // --html leaves stdout as it is: the same JSON document (the numbers are this run's).
    let plain: Value = serde_json::from_str(&succeeded(&replay(&["--json"]))).unwrap();
    let with_html = replay(&["--json", "--html", &path(&report)]);
    let numbers: Value = serde_json::from_str(&succeeded(&with_html)).unwrap();
    assert_eq!(keys(&numbers), keys(&plain));
    let stderr = String::from_utf8_lossy(&with_html.stderr);
    assert!(stderr.contains("report.html"), "{stderr}");
    assert_eq!(numbers["base"]["served"], 180);
    let size = std::fs::metadata(&report).unwrap().len();
    assert!(size < 300_000, "{size} bytes");

    let browser = Browser::start().await;
    let session = browser.session_sized(1200, 800).await;
    browser
        .open(&session, &format!("file://{}", report.display()))
        .await;
    browser.wait_for(&session, "footer").await;
    let page = browser.script(&session, READ_PAGE, json!([])).await;

    assert_eq!(page["resources"], 0, "nothing loaded from outside the file");
    assert_eq!(page["external"], 0);
    assert_eq!(page["sections"], json!(["*", "linux", "gpu"]));
    let header = page["header"].as_str().unwrap();
    for shown in ["events.ndjson", "base.toml", "more-runners.toml", "20s"] {
        assert!(header.contains(shown), "{shown} in {header}");
    }

    let charts = page["charts"].as_array().unwrap();
    for pool in ["*", "linux", "gpu"] {
        let of = |chart: &str| -> Vec<&Value> {
            charts
                .iter()
                .filter(|c| c["chart"] == chart && c["pool"] == pool)
                .collect()
        };
        // Queue depth and waits: one line per configuration, drawn across the chart.
        for chart in ["queue", "waits"] {
            let found = of(chart);
            assert_eq!(found.len(), 1, "{chart} of {pool}");
            let lines = found[0]["lines"].as_array().unwrap();
            let configs: Vec<&Value> = lines.iter().map(|l| &l["config"]).collect();
            assert_eq!(configs, [&json!("base"), &json!("other")], "{chart} {pool}");
            for line in lines {
                assert!(
                    line["width"].as_f64().unwrap() > 10.0
                        && line["length"].as_f64().unwrap() > 100.0,
                    "{chart} of {pool} drawn: {line}"
                );
            }
            assert!(found[0]["width"].as_f64().unwrap() > 300.0, "{}", found[0]);
        }
        assert_eq!(of("waits")[0]["marks"], 6, "p50, p95, p99 of each");
        // Runners: one chart per configuration, the busy band under the others.
        let runners = of("runners");
        assert_eq!(runners.len(), 2, "runners of {pool}");
        for (chart, config) in runners.iter().zip(["base", "other"]) {
            assert_eq!(chart["config"], config);
            let bands = chart["bands"].as_array().unwrap();
            let classes: Vec<&str> = bands.iter().map(|b| b["class"].as_str().unwrap()).collect();
            assert_eq!(classes, ["band idle", "band starting", "band busy"]);
            assert!(
                bands[2]["height"].as_f64().unwrap() > 20.0,
                "busy runners drawn for {pool} {config}: {chart}"
            );
        }
    }

    // Every number on the page is the one --json printed.
    let cells = page["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3 * 2 * 9, "{cells:?}");
    for cell in cells {
        let config = cell["config"].as_str().unwrap();
        let pool = cell["pool"].as_str().unwrap();
        let key = cell["key"].as_str().unwrap();
        let expected = json_at(&numbers[config], pool, key).as_f64().unwrap();
        assert_eq!(cell["value"].as_f64().unwrap(), expected, "{cell}");
        let text: f64 = cell["text"].as_str().unwrap().parse().unwrap();
        assert!(
            (text - expected).abs() <= 0.05 + 1e-9,
            "{cell} shows {expected}"
        );
    }
    let more = |key: &str| {
        (
            json_at(&numbers["base"], "*", key).as_f64().unwrap(),
            json_at(&numbers["other"], "*", key).as_f64().unwrap(),
        )
    };
    let (p95_base, p95_other) = more("wait_seconds.p95");
    assert!(p95_other < p95_base, "more runners, shorter waits");

    browser.set_viewport(&session, 1200, 800).await;
    let shot = browser.screenshot(&session, "replay-report.png").await;
    let png = std::fs::read(&shot).unwrap();
    let dimension = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!(
        (dimension(16), dimension(20)),
        (1200, 800),
        "IHDR width, height"
    );
    // The whole page too, to look at.
    let height = browser
        .script(
            &session,
            "return document.documentElement.scrollHeight",
            json!([]),
        )
        .await;
    browser
        .set_viewport(&session, 1200, height.as_u64().unwrap() as u32)
        .await;
    let full = browser.screenshot(&session, "replay-report-full.png").await;
    eprintln!(
        "screenshots: {} ({} bytes), {}",
        shot.display(),
        png.len(),
        full.display()
    );
    browser.end(&session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_in_the_page_stays_text() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join(
        r#"events <b id="injected">x<b> <img src=x onerror="document.title='owned'">.ndjson"#,
    );
    write_events(&events);
    let config = dir.path().join("base.toml");
    write_config(&config, 6, 1);
    let report = dir.path().join("report.html");
    let out = runnerhub(&[
        "replay",
        "--config",
        &config.display().to_string(),
        "--events",
        &events.display().to_string(),
        "--boot-time",
        "20s",
        "--html",
        &report.display().to_string(),
    ]);
    let text = succeeded(&out);
    assert!(
        text.contains("wait p95"),
        "the text report as before: {text}"
    );

    let browser = Browser::start().await;
    let session = browser.session_sized(1200, 800).await;
    browser
        .open(&session, &format!("file://{}", report.display()))
        .await;
    let title = browser.wait_for(&session, "#events-file").await;
    assert!(title.contains(r#"<b id="injected">x<b>"#), "{title}");
    let injected = browser
        .script(
            &session,
            "return [document.querySelector('#injected, img') === null, document.title]",
            json!([]),
        )
        .await;
    assert_eq!(injected[0], true, "no element from the file name");
    assert_ne!(injected[1], "owned", "no script from the file name");
    // One configuration: one runners chart per section, one line per overlay.
    let runners = browser
        .script(
            &session,
            "return document.querySelectorAll('svg[data-chart=runners]').length",
            json!([]),
        )
        .await;
    assert_eq!(runners, 3);
    browser.end(&session).await;
}

#[test]
fn an_unwritable_html_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    write_events(&events);
    let config = dir.path().join("base.toml");
    write_config(&config, 6, 1);
    let target = dir.path().join("no-such-dir").join("report.html");
    let out = runnerhub(&[
        "replay",
        "--config",
        &config.display().to_string(),
        "--events",
        &events.display().to_string(),
        "--boot-time",
        "20s",
        "--html",
        &target.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&target.display().to_string()) && !stderr.contains("panicked"),
        "{stderr}"
    );
}
