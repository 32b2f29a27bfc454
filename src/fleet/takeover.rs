//! The leader's sweep: instances silent for `database.instance_timeout` are declared dead,
//! the jobs they claimed and had not started go back to the queue (in the same statement), and
//! their runners that run no job are deregistered at GitHub and recorded as removed. Their
//! containers are on their own hosts, out of reach: an instance that comes back finds them
//! without a live record and removes them, and adopts the ones still running a job.

use crate::events::EventBus;
use crate::github::{GithubApi, RunnerScope, SharedGithub};
use crate::scheduler::core::outcomes::parse_scope;
use crate::scheduler::runner_event;

use super::Member;

pub(super) async fn sweep(
    member: &Member,
    github: &SharedGithub,
    bus: &EventBus,
    announced: &mut super::roll_call::Announced,
) {
    match member
        .store
        .declare_dead(&member.instance, member.timeout)
        .await
    {
        Ok(dead) => {
            for id in dead {
                tracing::warn!(
                    instance = %id,
                    timeout = ?member.timeout,
                    "fleet instance silent past database.instance_timeout: declared dead; its \
                     queued jobs go back to the fleet and its idle runners are deregistered"
                );
            }
        }
        Err(error) => {
            tracing::warn!(%error, "fleet: cannot look for dead instances");
            return;
        }
    }
    if let Ok(instances) = member.store.instances(member.timeout).await {
        super::roll_call::report(&instances, announced, bus);
    }
    let runners = match member.store.runners_of_dead_instances().await {
        Ok(runners) => runners,
        Err(error) => {
            tracing::warn!(%error, "fleet: cannot list the runners of dead instances");
            return;
        }
    };
    let github = github.current();
    for runner in runners {
        let Some(scope) = parse_scope(&runner.scope) else {
            continue;
        };
        match deregister(
            github.as_ref(),
            &scope,
            runner.github_runner_id,
            &runner.name,
        )
        .await
        {
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(runner = %runner.name, %error, "fleet: cannot deregister a dead instance's runner yet");
                continue;
            }
        }
        let reason = format!(
            "instance {} died: deregistered by the leader",
            runner.instance
        );
        match member
            .store
            .remove_runner_of_dead_instance(&runner.id, &reason)
            .await
        {
            Ok(true) => {
                tracing::info!(runner = %runner.name, instance = %runner.instance, "fleet: removed a dead instance's runner");
                let mut removed = runner.clone();
                removed.state = crate::domain::RunnerState::Removed;
                removed.failure_reason.get_or_insert(reason);
                bus.publish(runner_event(&removed));
            }
            Ok(false) => {} // its instance came back meanwhile: it is its own again
            Err(error) => {
                tracing::warn!(runner = %runner.name, %error, "fleet: cannot record a dead instance's runner as removed")
            }
        }
    }
}

/// Deletes the registration (found by name when the launch never reported its id); a busy
/// one is left alone, gone already is fine.
async fn deregister(
    github: &dyn GithubApi,
    scope: &RunnerScope,
    id: Option<i64>,
    name: &str,
) -> Result<(), String> {
    let id = match id {
        Some(id) => Some(id),
        None => github
            .list_runners(scope)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.id),
    };
    let Some(id) = id else {
        return Ok(()); // never registered
    };
    match github.delete_runner(scope, id).await {
        Ok(crate::github::DeleteOutcome::Busy) => Err("GitHub says it is running a job".into()),
        Ok(_) | Err(crate::github::GithubError::NotFound(_)) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}
