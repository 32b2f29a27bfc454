//! The `runnerhub` binary: CLI, telemetry, config, run until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use runnerhub::config::{Config, DEFAULT_CONFIG_PATH};
use runnerhub::lifecycle::ConfigSource;
use runnerhub::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: under webhook load the daemon allocates and frees
/// request bodies and JSON on every core, and glibc's arenas cost about a tenth of its CPU
/// in profiles (benches/ingest.rs uses the same allocator, so it measures this).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Self-hosted GitHub Actions runner orchestrator: receives signed GitHub webhooks, keeps a
/// durable audit log, and runs an ephemeral Docker runner for each job it can serve.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: webhook endpoint, API, processor (applies migrations first).
    Serve {
        /// TOML configuration file. A missing default file is fine (defaults + environment).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override `server.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Demo without a GitHub account: daemon + GitHub simulator + runner containers on the
    /// local Docker engine, with a stream of jobs. Dashboard on http://127.0.0.1:3000/.
    Demo(runnerhub::demo::DemoArgs),
    /// The GitHub simulator, for tests and demos: `sim serve`, `sim enqueue`, `sim push`.
    Sim(runnerhub::github::sim::cli::SimArgs),
    /// The audit log: `events export` writes its deliveries as NDJSON (for `replay`).
    #[command(subcommand)]
    Events(EventsCommand),
    /// The GitHub webhook through the REST API: `hooks install|list|status|remove`.
    Hooks(runnerhub::hooks::cli::HooksArgs),
    /// Capacity planning: recorded deliveries through the scheduler's decisions in virtual
    /// time, under this configuration (and `--compare` another).
    Replay(runnerhub::replay::cli::ReplayArgs),
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Signature-valid deliveries, oldest first, one JSON object per line, to stdout. Opens the
    /// database read-only.
    Export(runnerhub::replay::cli::ExportArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration and print the effective one, secrets redacted.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// An explicitly named file must exist; the default path may be absent.
fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    Ok(Config::load(&path, explicit)?)
}

/// Test hooks: `RUNNERHUB_TEST_PANIC_SCHEDULER_AFTER=N` makes the scheduler task panic after
/// N processed deliveries (tests/supervision.rs); `RUNNERHUB_TEST_WEDGE_SCHEDULER_AFTER=N` makes
/// it hang there instead (tests/health_stalls.rs). Debug builds only: a release binary cannot be
/// made to fail on purpose by its environment.
fn injected_faults() -> runnerhub::supervisor::InjectedFaults {
    let mut faults = runnerhub::supervisor::InjectedFaults::default();
    if cfg!(debug_assertions) {
        faults.panic_scheduler_after_deliveries =
            std::env::var("RUNNERHUB_TEST_PANIC_SCHEDULER_AFTER")
                .ok()
                .and_then(|n| n.parse().ok());
        faults.wedge_scheduler_after_deliveries =
            std::env::var("RUNNERHUB_TEST_WEDGE_SCHEDULER_AFTER")
                .ok()
                .and_then(|n| n.parse().ok());
    }
    faults
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runnerhub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("runnerhub: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config, listen } => {
            let source = ConfigSource {
                path: config,
                listen,
            };
            let config = source.load()?;
            runnerhub::app::fd_limit::raise_open_file_limit();
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| {
                    format!("cannot listen on {} (server.listen)", config.server.listen)
                })?;
            let shutdown = CancellationToken::new();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let supervisor = tokio::spawn(runnerhub::lifecycle::supervise(
                source,
                shutdown.clone(),
                ready_rx,
            ));
            let options = runnerhub::app::RunOptions {
                metrics_listener: None,
                on_ready: Some(Box::new(move |state| {
                    let _ = ready_tx.send(state);
                })),
                faults: injected_faults(),
                ..Default::default()
            };
            let result =
                runnerhub::app::run_with(config, listener, shutdown.clone(), options).await;
            // The supervisor ends with the shutdown it started, or here when start-up failed.
            shutdown.cancel();
            supervisor.await.context("signal handler task")??;
            result
        }
        Command::Migrate { config } => {
            let config = load_config(config)?;
            runnerhub::app::open_store(&config.database.url).await?;
            println!(
                "migrations applied to {}",
                runnerhub::config::redact_url_password(&config.database.url)
            );
            Ok(())
        }
        Command::Events(EventsCommand::Export(args)) => runnerhub::replay::cli::export(args).await,
        Command::Replay(args) => runnerhub::replay::cli::replay(args).await,
        Command::Hooks(args) => runnerhub::hooks::cli::run(args).await,
        Command::Sim(args) => runnerhub::github::sim::cli::run_cli(args).await,
        Command::Demo(args) => runnerhub::demo::run(args).await,
        Command::Config(ConfigCommand::Check { config }) => {
            let config = load_config(config)?;
            println!("# configuration is valid; effective values (secrets redacted):\n");
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
    }
}
