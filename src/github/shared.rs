//! The daemon's one GitHub client, shared by everything that calls GitHub (scheduler,
//! catch-up) and swapped atomically when a reload brings new credentials: every caller takes
//! the current client for each piece of work, so no task keeps stale credentials, and no two
//! tasks disagree about which are in force.

use std::sync::{Arc, RwLock};

use super::{GithubApi, GithubClient};
use crate::config::Config;

pub struct SharedGithub {
    current: RwLock<Arc<dyn GithubApi>>,
    /// Given by the embedding code (a test's fake, the demo's simulator client): a reload
    /// never replaces it.
    injected: bool,
}

impl SharedGithub {
    /// A client built from the configuration; reloads rebuild it.
    pub fn from_config(client: Arc<dyn GithubApi>) -> Arc<Self> {
        Arc::new(SharedGithub {
            current: RwLock::new(client),
            injected: false,
        })
    }

    /// A client given from outside, kept across reloads.
    pub fn injected(client: Arc<dyn GithubApi>) -> Arc<Self> {
        Arc::new(SharedGithub {
            current: RwLock::new(client),
            injected: true,
        })
    }

    /// The client in force now (cheap: an `Arc` clone under a read lock held for no longer).
    pub fn current(&self) -> Arc<dyn GithubApi> {
        self.current
            .read()
            .expect("GitHub client lock poisoned")
            .clone()
    }

    /// Takes the credentials of a reloaded configuration; unusable ones are logged and the
    /// previous client stays.
    pub fn reload(&self, config: &Config) {
        if self.injected || config.pools.is_empty() {
            return;
        }
        match GithubClient::from_config(&config.github) {
            Ok(client) => {
                *self.current.write().expect("GitHub client lock poisoned") = Arc::new(client)
            }
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "reloaded GitHub credentials are unusable; keeping the previous ones"
            ),
        }
    }
}
