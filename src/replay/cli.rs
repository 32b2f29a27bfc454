//! `runnerhub events export` and `runnerhub replay` (DESIGN §11).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::config::Config;

use super::export::{ReadOnlyDatabase, Window};
use super::html::{self, series::RunSeries};
use super::sim::{SimSettings, simulate};
use super::stats::{Report, summarise};
use super::workload::{self, Workload};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// TOML configuration file (its `database.url` is read).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Only deliveries received at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Only deliveries received before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The configuration to replay under (pools, limits, priority rules, timeouts).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Recorded deliveries, as `runnerhub events export` writes them.
    #[arg(long)]
    pub events: PathBuf,
    /// Launch → online of a runner. Default: the median in the configured database, else 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub boot_time: Option<Duration>,
    /// Print the summary as JSON (keys fixed by DESIGN §11).
    #[arg(long)]
    pub json: bool,
    /// A second configuration to compare with, on the same recorded traffic.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Also write a self-contained HTML report with charts here (stdout is unchanged).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Replay and export never receive webhooks, so a configuration without a webhook secret (a
/// copy of production's, with secrets in another file) is fine here.
fn load_offline(path: &Path) -> anyhow::Result<Config> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.push(("RUNNERHUB__GITHUB__ALLOW_UNSIGNED".into(), "true".into()));
    Config::load_with_env(path, true, &env).with_context(|| format!("config {}", path.display()))
}

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let config = load_offline(&args.config)?;
    let mut database = ReadOnlyDatabase::open(&config.database.url).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let window = Window {
        since: args.since,
        until: args.until,
    };
    let written = database.export(window, &mut out).await?;
    eprintln!("exported {written} deliveries");
    Ok(())
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let base = load_offline(&args.config)?;
    let other = args.compare.as_deref().map(load_offline).transpose()?;
    let boot = match args.boot_time {
        Some(boot) => boot,
        None => recorded_boot_time(&base).await.unwrap_or(DEFAULT_BOOT_TIME),
    };
    let base_run = Replayed::run(&base, &args.events, boot, args.html.is_some())?;
    let other_run = other
        .as_ref()
        .map(|c| Replayed::run(c, &args.events, boot, args.html.is_some()))
        .transpose()?;
    if let Some(path) = &args.html {
        write_html(&args, boot, path, &base_run, other_run.as_ref())?;
    }
    let base_run = (base_run.workload, base_run.report);
    let other_run = other_run.map(|r| (r.workload, r.report));
    if args.json {
        let value = match &other_run {
            Some((_, other)) => serde_json::json!({ "base": base_run.1, "other": other }),
            None => serde_json::to_value(&base_run.1)?,
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "replay of {} with runners online {} after launch",
            args.events.display(),
            humantime::format_duration(boot)
        );
        let label = args
            .compare
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let other = other_run.as_ref().map(|(_, r)| (label.as_str(), r));
        print!(
            "{}",
            super::report::render(&base_run.0.counts, &base_run.1, other)
        );
    }
    Ok(())
}

const DEFAULT_BOOT_TIME: Duration = Duration::from_secs(10);

async fn recorded_boot_time(config: &Config) -> Option<Duration> {
    let mut database = ReadOnlyDatabase::open(&config.database.url).await.ok()?;
    database.median_boot_time().await.ok().flatten()
}

/// Reads the events under `config` (pools and rules decide which jobs are simulated) and
/// simulates them.
pub fn replay_under(
    config: &Config,
    events: &Path,
    boot: Duration,
) -> anyhow::Result<(Workload, Report)> {
    let run = Replayed::run(config, events, boot, false)?;
    Ok((run.workload, run.report))
}

/// One configuration's replay, with what the HTML report draws when it is asked for.
struct Replayed {
    workload: Workload,
    report: Report,
    /// Taken from the simulation's outcome, which is dropped (its timeline is the bulk).
    series: Option<RunSeries>,
}

impl Replayed {
    fn run(config: &Config, events: &Path, boot: Duration, charts: bool) -> anyhow::Result<Self> {
        let file = std::fs::File::open(events)
            .with_context(|| format!("cannot open the events file {}", events.display()))?;
        let workload = workload::load(config, BufReader::new(file))
            .with_context(|| format!("events file {}", events.display()))?;
        let settings = SimSettings::from_config(config, boot)?;
        let outcome = simulate(&settings, &workload.jobs);
        let names: Vec<String> = config.pools.iter().map(|p| p.name.clone()).collect();
        let report = summarise(&workload, &outcome, &names);
        let series = charts.then(|| RunSeries::from_outcome(&outcome, &names));
        Ok(Replayed {
            workload,
            report,
            series,
        })
    }
}

fn write_html(
    args: &ReplayArgs,
    boot: Duration,
    path: &Path,
    base: &Replayed,
    other: Option<&Replayed>,
) -> anyhow::Result<()> {
    fn run(r: &Replayed) -> Option<html::Run<'_>> {
        r.series.as_ref().map(|series| html::Run {
            report: &r.report,
            series,
        })
    }
    let (Some(base_run), other_run) = (run(base), other.and_then(run)) else {
        anyhow::bail!("internal: the replay kept no series for the HTML report");
    };
    let source = html::Source {
        events: &args.events,
        boot,
        base_config: &args.config,
        other_config: args.compare.as_deref(),
    };
    let page = html::render(&source, &base.workload.counts, base_run, other_run);
    std::fs::write(path, &page)
        .with_context(|| format!("cannot write the HTML report {}", path.display()))?;
    eprintln!(
        "HTML report written to {} ({} KB)",
        path.display(),
        page.len().div_ceil(1024)
    );
    Ok(())
}
