//! `runnerhub hooks install|list|status|remove`: the webhook through GitHub's REST API
//! (DESIGN §12), instead of clicking through the repository's settings.
//!
//! ```text
//! runnerhub hooks install --config /etc/runnerhub/runnerhub.toml --repo acme/api
//! runnerhub hooks status  --config /etc/runnerhub/runnerhub.toml --repo acme/api
//! runnerhub hooks install --config FILE --org acme --url https://ci.example.com
//! runnerhub hooks install --config FILE --app
//! ```
//!
//! Install is idempotent: a hook of the owner that already points at the URL is updated
//! (events, content type, secret, active), not duplicated. The hook ids are written into the
//! database, where the daemon's redelivery finds them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Args, Subcommand};

use super::target::{self, explain, same_url};
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::github::{GithubClient, HOOK_EVENTS, HookDelivery, HookOwner, HookSettings};
use crate::store::{KnownHook, Store};

/// How far back `status` looks: GitHub keeps deliveries 3 days.
const STATUS_LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::days(3);

#[derive(Debug, Args)]
pub struct HooksArgs {
    #[command(subcommand)]
    pub command: HooksCommand,
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Create the webhook, or update the one that already points at the URL.
    Install(TargetArgs),
    /// The owner's webhooks (`*` marks those pointing at the URL).
    List(TargetArgs),
    /// The webhook's recent deliveries with their response codes.
    Status(StatusArgs),
    /// Delete the webhooks that point at the URL (not for `--app`).
    Remove(TargetArgs),
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// TOML configuration file (credentials, secret, `server.public_url`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A repository's webhook (repeatable). Default: from `github.registration`.
    #[arg(long = "repo", value_name = "OWNER/NAME", conflicts_with_all = ["org", "app"])]
    pub repos: Vec<String>,
    /// An organization's webhook.
    #[arg(long, value_name = "NAME", conflicts_with = "app")]
    pub org: Option<String>,
    /// The GitHub App's own webhook (`/app/hook/config`).
    #[arg(long)]
    pub app: bool,
    /// Payload URL. Default: `server.public_url` + `/api/webhooks/github`.
    #[arg(long)]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Deliveries shown per hook, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// Runs a `hooks` command, printing what it did.
pub async fn run(args: HooksArgs) -> anyhow::Result<()> {
    match args.command {
        HooksCommand::Install(t) => install(&Session::new(&t)?, &t).await,
        HooksCommand::List(t) => list(&Session::new(&t)?, &t).await,
        HooksCommand::Status(s) => status(&Session::new(&s.target)?, &s.target, s.limit).await,
        HooksCommand::Remove(t) => remove(&Session::new(&t)?, &t).await,
    }
}

/// What every command needs: the config, the owners, a client.
struct Session {
    config: Config,
    owners: Vec<HookOwner>,
    client: GithubClient,
}

impl Session {
    fn new(t: &TargetArgs) -> anyhow::Result<Self> {
        let explicit = t.config.is_some();
        let path = t
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let config = Config::load(&path, explicit)?;
        let owners = target::owners(&config, &t.repos, t.org.as_deref(), t.app)?;
        let client = GithubClient::from_config(&config.github)
            .context("runnerhub hooks needs GitHub credentials")?;
        Ok(Session {
            config,
            owners,
            client,
        })
    }

    /// The audit-log database, when it can be opened (the hooks are recorded there for the
    /// daemon; without it the daemon learns a hook's id from its first delivery).
    async fn store(&self) -> Option<Arc<dyn Store>> {
        match crate::app::open_store(&self.config.database.url).await {
            Ok(store) => Some(store),
            Err(error) => {
                eprintln!(
                    "note: cannot open the database ({error:#}); the daemon learns the hook \
                     from its first delivery instead"
                );
                None
            }
        }
    }
}

async fn install(cx: &Session, t: &TargetArgs) -> anyhow::Result<()> {
    let settings = HookSettings {
        url: target::payload_url(t.url.as_deref(), &cx.config)?,
        secret: target::secret(&cx.config)?,
        events: HOOK_EVENTS.map(String::from).to_vec(),
    };
    let store = cx.store().await;
    for owner in &cx.owners {
        let hook_id = match owner {
            HookOwner::App => install_app(cx, &settings).await?,
            _ => install_hook(cx, owner, &settings).await?,
        };
        if let Some(store) = &store {
            let known = KnownHook {
                kind: owner.kind().into(),
                owner: owner.name().into(),
                hook_id,
                source: "installed".into(),
                first_seen_at: Utc::now(),
            };
            store
                .record_hook(&known)
                .await
                .context("cannot record the hook in the database")?;
        }
    }
    Ok(())
}

async fn install_hook(
    cx: &Session,
    owner: &HookOwner,
    settings: &HookSettings,
) -> anyhow::Result<i64> {
    let hooks = cx
        .client
        .list_hooks(owner)
        .await
        .map_err(|e| explain(owner, e))?;
    let ours: Vec<_> = hooks
        .iter()
        .filter(|h| same_url(&h.url, &settings.url))
        .collect();
    let (hook, verb) = match ours.first() {
        Some(existing) => (
            cx.client
                .update_hook(owner, existing.id, settings)
                .await
                .map_err(|e| explain(owner, e))?,
            "updated",
        ),
        None => (
            cx.client
                .create_hook(owner, settings)
                .await
                .map_err(|e| explain(owner, e))?,
            "created",
        ),
    };
    println!(
        "{verb} hook {} on {owner}: {} (events {}, content type json, secret set)",
        hook.id,
        settings.url,
        hook.events.join(", ")
    );
    if ours.len() > 1 {
        let others: Vec<String> = ours[1..].iter().map(|h| h.id.to_string()).collect();
        println!(
            "note: hooks {} of {owner} point at the same URL too; `runnerhub hooks remove` \
             deletes them all",
            others.join(", ")
        );
    }
    Ok(hook.id)
}

/// The App's hook: URL, secret and content type; its events are the App's settings, checked.
async fn install_app(cx: &Session, settings: &HookSettings) -> anyhow::Result<i64> {
    let owner = HookOwner::App;
    let config = cx
        .client
        .update_app_hook_config(settings)
        .await
        .map_err(|e| explain(&owner, e))?;
    println!(
        "set the GitHub App's hook: {} (content type {}, secret set)",
        config.url.as_deref().unwrap_or(&settings.url),
        config.content_type.as_deref().unwrap_or("json")
    );
    let app = cx.client.app_info().await.map_err(|e| explain(&owner, e))?;
    let subscribed: HashSet<&str> = app.events.iter().map(String::as_str).collect();
    let missing: Vec<&str> = HOOK_EVENTS
        .into_iter()
        .filter(|e| !subscribed.contains(e))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the hook is set, but the App does not subscribe to {}: GitHub sends its hook only \
             the events it subscribes to. Add them in the App's settings (Permissions & events \
             → Subscribe to events; workflow_job and workflow_run need the Actions permission)",
            missing.join(", ")
        );
    }
    println!("the App subscribes to {}", HOOK_EVENTS.join(", "));
    // The App's hook has no id in the API; deliveries name it, and its path needs none.
    Ok(0)
}

async fn list(cx: &Session, t: &TargetArgs) -> anyhow::Result<()> {
    let url = target::payload_url(t.url.as_deref(), &cx.config).ok();
    for owner in &cx.owners {
        if *owner == HookOwner::App {
            let config = cx
                .client
                .app_hook_config()
                .await
                .map_err(|e| explain(owner, e))?;
            let app = cx.client.app_info().await.map_err(|e| explain(owner, e))?;
            println!(
                "{owner}: url {}, content type {}, secret {}, events {}",
                config.url.as_deref().unwrap_or("(none)"),
                config.content_type.as_deref().unwrap_or("(none)"),
                if config.secret.is_some() {
                    "set"
                } else {
                    "not set"
                },
                app.events.join(", ")
            );
            continue;
        }
        let hooks = cx
            .client
            .list_hooks(owner)
            .await
            .map_err(|e| explain(owner, e))?;
        println!("{owner}: {} hook(s)", hooks.len());
        for hook in hooks {
            let mark = match &url {
                Some(url) if same_url(&hook.url, url) => "*",
                _ => " ",
            };
            let last = match (hook.last_response_code, &hook.last_response_status) {
                (Some(code), _) => code.to_string(),
                (None, Some(status)) => status.clone(),
                (None, None) => "-".into(),
            };
            println!(
                "{mark} {:>10}  {:<8} last {:<6} {}  [{}]",
                hook.id,
                if hook.active { "active" } else { "inactive" },
                last,
                hook.url,
                hook.events.join(", ")
            );
        }
    }
    Ok(())
}

async fn status(cx: &Session, t: &TargetArgs, limit: usize) -> anyhow::Result<()> {
    let url = target::payload_url(t.url.as_deref(), &cx.config).ok();
    let store = cx.store().await;
    let since = Utc::now() - STATUS_LOOKBACK;
    let pages = (limit / 100 + 1) as u32;
    for owner in &cx.owners {
        let hook_ids: Vec<i64> = match owner {
            HookOwner::App => vec![0],
            _ => cx
                .client
                .list_hooks(owner)
                .await
                .map_err(|e| explain(owner, e))?
                .into_iter()
                .filter(|h| url.as_deref().is_none_or(|u| same_url(&h.url, u)))
                .map(|h| h.id)
                .collect(),
        };
        if hook_ids.is_empty() {
            println!(
                "{owner}: no hook points at {}; `runnerhub hooks install` creates it",
                url.as_deref().unwrap_or("the URL")
            );
        }
        for hook_id in hook_ids {
            let mut deliveries = cx
                .client
                .hook_deliveries(owner, hook_id, since, pages)
                .await
                .map_err(|e| explain(owner, e))?;
            deliveries.truncate(limit);
            let in_log = match &store {
                Some(store) => {
                    let guids: Vec<String> = deliveries.iter().map(|d| d.guid.clone()).collect();
                    Some(store.stored_delivery_guids(&guids).await?)
                }
                None => None,
            };
            print_deliveries(owner, hook_id, &deliveries, in_log.as_ref());
        }
    }
    Ok(())
}

fn print_deliveries(
    owner: &HookOwner,
    hook_id: i64,
    deliveries: &[HookDelivery],
    in_log: Option<&HashSet<String>>,
) {
    let failed = deliveries.iter().filter(|d| !d.succeeded()).count();
    let name = match owner {
        HookOwner::App => owner.to_string(),
        _ => format!("hook {hook_id} on {owner}"),
    };
    println!(
        "{name}: {} recent deliveries, {failed} failed",
        deliveries.len()
    );
    for d in deliveries {
        let event = match &d.action {
            Some(action) => format!("{}.{action}", d.event),
            None => d.event.clone(),
        };
        let logged = match in_log {
            Some(set) if set.contains(&d.guid) => "in log",
            Some(_) => "missing",
            None => "",
        };
        println!(
            "  {}  {:>3}  {:<24} {:<28} {}  {}{}",
            d.delivered_at.format("%Y-%m-%d %H:%M:%S"),
            d.status_code,
            truncate(&d.status, 24),
            event,
            d.guid,
            logged,
            if d.redelivery { " (redelivery)" } else { "" }
        );
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

async fn remove(cx: &Session, t: &TargetArgs) -> anyhow::Result<()> {
    if cx.owners.contains(&HookOwner::App) {
        bail!(
            "the App's hook cannot be removed through the API: deactivate it in the App's \
             settings on GitHub (`hooks install --app --url …` points it elsewhere)"
        );
    }
    let url = target::payload_url(t.url.as_deref(), &cx.config)
        .context("remove deletes the hooks that point at the URL")?;
    let store = cx.store().await;
    for owner in &cx.owners {
        let hooks = cx
            .client
            .list_hooks(owner)
            .await
            .map_err(|e| explain(owner, e))?;
        let ours: Vec<_> = hooks.iter().filter(|h| same_url(&h.url, &url)).collect();
        if ours.is_empty() {
            println!("{owner}: no hook points at {url}; nothing to remove");
        }
        for hook in ours {
            cx.client
                .delete_hook(owner, hook.id)
                .await
                .map_err(|e| explain(owner, e))?;
            if let Some(store) = &store {
                store
                    .forget_hook(owner.kind(), owner.name(), hook.id)
                    .await?;
            }
            println!("removed hook {} from {owner} ({url})", hook.id);
        }
    }
    Ok(())
}
