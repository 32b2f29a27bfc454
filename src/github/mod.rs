//! GitHub REST client: JIT runner registration, runner deletion and listing, with PAT or
//! GitHub App authentication, retries and rate-limit handling.

pub mod auth;
pub mod client;
pub mod hook_types;
pub mod rate_limit;
pub mod shared;
pub mod sim;
pub mod types;

pub use auth::TOKEN_REFRESH_MARGIN;
pub use client::{GithubApi, GithubClient, RetryPolicy};
pub use hook_types::{
    AppHookConfig, AppInfo, HOOK_EVENTS, Hook, HookDelivery, HookOwner, HookSettings,
};
pub use rate_limit::RateLimitSnapshot;
pub use shared::SharedGithub;
pub use types::{
    DeleteOutcome, GithubError, JitConfig, JitRequest, NoCredentials, RegisteredRunner, RunnerScope,
};
