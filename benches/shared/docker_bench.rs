//! What the benches that drive real Docker share: reading `--name N` from the command line, and
//! removing an instance's containers when a run ends, even after a panic.

use std::process::Command;

/// The value after `name` on the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map_or(default, |v| {
            v.parse().unwrap_or_else(|_| panic!("{name} N"))
        })
}

/// The ids of every container labelled `runnerhub.instance=<instance>`, running or not.
pub fn containers_of(instance: &str) -> Vec<String> {
    let filter = format!("label={}={instance}", runnerhub::docker::LABEL_INSTANCE);
    let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter", &filter])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Removes every container of the instance when dropped, so that a panic leaves nothing
/// behind (the normal path removes them first).
pub struct InstanceCleanup(pub String);

impl Drop for InstanceCleanup {
    fn drop(&mut self) {
        let ids = containers_of(&self.0);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}
