use clap::Parser;

#[derive(Parser)]
#[command(name = "runnerhub", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// GitHub simulator: `sim serve`, `sim enqueue`, `sim push`.
    Sim(runnerhub::github::sim::cli::SimArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Some(Command::Sim(args)) => runnerhub::github::sim::cli::run_cli(args).await,
        None => {
            println!("runnerhub");
            Ok(())
        }
    }
}
