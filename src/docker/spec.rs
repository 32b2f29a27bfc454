//! What a runner container looks like, derived from its pool's configuration.

use std::collections::BTreeMap;
use std::fmt;

use super::{LABEL_INSTANCE, LABEL_MANAGED, LABEL_POOL, LABEL_RUNNER_ID};
use crate::config::{PoolConfig, Secret};

/// The environment variable the official runner reads its JIT configuration from.
pub const JIT_CONFIG_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";

/// Everything needed to create one runner container. Built by [`RunnerContainerSpec::for_runner`];
/// fields are public so tests and special launchers can adjust them.
#[derive(Clone, PartialEq)]
pub struct RunnerContainerSpec {
    /// Container name, `runnerhub-<pool>-<short runner id>`.
    pub name: String,
    /// Image reference; must be present on the host.
    pub image: String,
    /// Command (replaces the image's `CMD`); empty keeps the image's.
    pub command: Vec<String>,
    /// Environment, in order. Contains the JIT config: `Debug` redacts it.
    pub env: Vec<(String, String)>,
    /// Docker labels, including the four `runnerhub.*` ones.
    pub labels: BTreeMap<String, String>,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes (swap is not added on top).
    pub memory_bytes: Option<i64>,
    /// Network mode: `host`, `bridge`, or a network name.
    pub network: String,
    /// Bind mounts `SRC:DST[:ro]`.
    pub mounts: Vec<String>,
    /// Privileged container; only when the pool asks for it.
    pub privileged: bool,
}

impl RunnerContainerSpec {
    /// The container of runner `runner_id` (runnerhub's id) in `pool`, started by instance
    /// `instance_id` with the JIT configuration GitHub returned.
    pub fn for_runner(
        pool: &PoolConfig,
        instance_id: &str,
        runner_id: &str,
        jit_config: &Secret,
    ) -> Self {
        let short_id: String = runner_id.chars().take(8).collect();
        let labels = BTreeMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_POOL.to_owned(), pool.name.clone()),
            (LABEL_RUNNER_ID.to_owned(), runner_id.to_owned()),
            (LABEL_INSTANCE.to_owned(), instance_id.to_owned()),
        ]);
        // The pool's env must not override the JIT config, so it is filtered out and appended last.
        let mut env: Vec<(String, String)> = pool
            .env
            .iter()
            .filter(|(k, _)| k.as_str() != JIT_CONFIG_ENV)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push((JIT_CONFIG_ENV.to_owned(), jit_config.expose().to_owned()));
        RunnerContainerSpec {
            name: format!("runnerhub-{}-{short_id}", pool.name),
            image: pool.image.clone(),
            command: pool.command.clone(),
            env,
            labels,
            nano_cpus: nano_cpus(pool.cpus),
            memory_bytes: pool.memory_bytes(),
            network: pool.network.clone(),
            mounts: pool.mounts.clone(),
            privileged: pool.privileged,
        }
    }

    /// `KEY=value` strings as the Docker API wants them.
    pub fn env_strings(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// Cores → nano-CPUs; 0 or less means no limit.
fn nano_cpus(cpus: f64) -> Option<i64> {
    (cpus > 0.0).then(|| (cpus * 1e9).round() as i64)
}

impl fmt::Debug for RunnerContainerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The JIT config holds the runner's credentials: never print it.
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| {
                let shown = if k == JIT_CONFIG_ENV {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("RunnerContainerSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("env", &env)
            .field("labels", &self.labels)
            .field("nano_cpus", &self.nano_cpus)
            .field("memory_bytes", &self.memory_bytes)
            .field("network", &self.network)
            .field("mounts", &self.mounts)
            .field("privileged", &self.privileged)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolConfig {
        PoolConfig {
            name: "linux".into(),
            labels: vec!["self-hosted".into()],
            env: BTreeMap::from([
                ("RUNNER_DEBUG".into(), "1".into()),
                (JIT_CONFIG_ENV.into(), "from-pool".into()),
            ]),
            cpus: 1.5,
            memory: "512m".into(),
            network: "host".into(),
            mounts: vec!["/cache:/cache:ro".into()],
            ..Default::default()
        }
    }

    #[test]
    fn spec_follows_pool_and_names_runner() {
        let jit = Secret::new("c2VjcmV0LWppdA==");
        let spec = RunnerContainerSpec::for_runner(&pool(), "host-a", "0a1b2c3d-4e5f", &jit);
        assert_eq!(spec.name, "runnerhub-linux-0a1b2c3d");
        assert_eq!(spec.image, "ghcr.io/actions/actions-runner:latest");
        assert_eq!(spec.command, vec!["/home/runner/run.sh"]);
        assert_eq!(spec.labels[LABEL_MANAGED], "true");
        assert_eq!(spec.labels[LABEL_POOL], "linux");
        assert_eq!(spec.labels[LABEL_RUNNER_ID], "0a1b2c3d-4e5f");
        assert_eq!(spec.labels[LABEL_INSTANCE], "host-a");
        assert_eq!(spec.nano_cpus, Some(1_500_000_000));
        assert_eq!(spec.memory_bytes, Some(512 << 20));
        assert_eq!(spec.network, "host");
        assert_eq!(spec.mounts, vec!["/cache:/cache:ro"]);
        assert!(!spec.privileged);
        assert_eq!(
            spec.env,
            vec![
                ("RUNNER_DEBUG".to_owned(), "1".to_owned()),
                (JIT_CONFIG_ENV.to_owned(), "c2VjcmV0LWppdA==".to_owned()),
            ]
        );
        assert!(
            spec.env_strings()
                .contains(&format!("{JIT_CONFIG_ENV}=c2VjcmV0LWppdA=="))
        );
    }

    #[test]
    fn debug_redacts_the_jit_config() {
        let jit = Secret::new("c2VjcmV0LWppdA==");
        let spec = RunnerContainerSpec::for_runner(&pool(), "host-a", "r1", &jit);
        let text = format!("{spec:?}");
        assert!(!text.contains("c2VjcmV0LWppdA=="), "{text}");
        assert!(text.contains("RUNNER_DEBUG"), "{text}");
    }

    #[test]
    fn no_limits_when_pool_sets_none() {
        let pool = PoolConfig {
            name: "big".into(),
            cpus: 0.0,
            memory: String::new(),
            ..Default::default()
        };
        let spec = RunnerContainerSpec::for_runner(&pool, "i", "r", &Secret::new("x"));
        assert_eq!(spec.nano_cpus, None);
        assert_eq!(spec.memory_bytes, None);
    }
}
