//! The simulator's model of GitHub: runners, workflow runs, jobs, the delivery log, and the rules
//! that move a job from queued to completed. Pure data under one mutex; every mutation returns the
//! webhook deliveries it causes, built while the lock is held so payloads show the state of that
//! instant.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::spec::JobSpec;
use super::templates;

/// First ids handed out, in the ranges GitHub uses, so that code which stores ids as `i32` breaks here too.
const FIRST_JOB_ID: u64 = 29_679_449_001;
const FIRST_RUN_ID: u64 = 8_888_800_001;
const FIRST_REPO_ID: u64 = 186_853_002;
/// Runner group of GitHub-hosted runners in `workflow_job` payloads.
pub const HOSTED_RUNNER_GROUP_ID: u64 = 0;
pub const HOSTED_RUNNER_GROUP_NAME: &str = "GitHub Actions";
pub const DEFAULT_RUNNER_GROUP_NAME: &str = "Default";

/// Where a runner is registered: a repository or an organization.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", content = "name", rename_all = "lowercase")]
pub enum Scope {
    Repo(String),
    Org(String),
}

impl Scope {
    /// Whether a runner in this scope may run jobs of `repository` (`owner/repo`); also
    /// whether a hook of this scope gets the repository's deliveries.
    pub fn serves(&self, repository: &str) -> bool {
        match self {
            Scope::Repo(full) => full.eq_ignore_ascii_case(repository),
            Scope::Org(org) => repository
                .split_once('/')
                .is_some_and(|(owner, _)| owner.eq_ignore_ascii_case(org)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerStatus {
    /// Registered through generate-jitconfig, the runner process has not connected yet.
    Registered,
    /// Connected and waiting for a job.
    Idle,
    /// Running a job.
    Busy,
}

/// A registered self-hosted runner (JIT, hence ephemeral).
#[derive(Debug, Clone, Serialize)]
pub struct Runner {
    pub id: u64,
    pub name: String,
    pub scope: Scope,
    pub labels: Vec<String>,
    pub runner_group_id: u64,
    pub status: RunnerStatus,
    pub os: String,
    /// The job assigned to this runner, if any.
    pub job_id: Option<u64>,
    #[serde(skip)]
    pub credential: String,
    pub created_at: DateTime<Utc>,
    /// When the runner process first reached the simulator (`POST /_sim/runner/connect`): the
    /// instant a launch is done, as the burst bench and the replay fidelity test time it.
    pub connected_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    InProgress,
    Completed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::InProgress => "in_progress",
            JobStatus::Completed => "completed",
        }
    }
}

/// The runner that took a job, as named in `workflow_job` payloads.
#[derive(Debug, Clone, Serialize)]
pub struct JobRunner {
    pub id: u64,
    pub name: String,
    pub group_id: u64,
    pub group_name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: u64,
    pub run_id: u64,
    pub spec: JobSpec,
    pub status: JobStatus,
    pub conclusion: Option<String>,
    pub runner: Option<JobRunner>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub head_sha: String,
    pub head_branch: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: u64,
    pub run_number: u64,
    pub repository: String,
    pub workflow_name: String,
    pub head_branch: String,
    pub head_sha: String,
    pub status: JobStatus,
    pub conclusion: Option<String>,
    pub job_ids: Vec<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
}

/// One attempt to deliver a webhook, as GitHub's delivery log shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub id: u64,
    pub guid: String,
    /// The hook it went to (`X-GitHub-Hook-ID`).
    pub hook_id: u64,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub repository_id: Option<u64>,
    pub delivered_at: DateTime<Utc>,
    pub redelivery: bool,
    /// Seconds the receiver took to answer.
    pub duration: f64,
    /// "OK", "dropped (simulated fault)", an HTTP reason or a connection error.
    pub status: String,
    /// 0 when nothing was sent or no response came back.
    pub status_code: u16,
    /// False when a fault dropped it or no webhook URL is configured.
    pub sent: bool,
    pub request_headers: BTreeMap<String, String>,
    pub response_body: String,
    /// The raw body that was (or would have been) sent.
    pub body: String,
}

/// A webhook to send, produced by a state change.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub event: &'static str,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub repository_id: Option<u64>,
    pub payload: Value,
}

/// Why a runner API call was refused; mapped to GitHub's status codes by the REST layer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StateError {
    #[error("Not Found")]
    NotFound,
    #[error("Already exists - A runner with the name {0} already exists.")]
    NameTaken(String),
    #[error("Bad request - Runner \"{0}\" is still running a job\"")]
    RunnerBusy(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug)]
pub struct SimState {
    pub installation_id: u64,
    next_runner_id: u64,
    next_job_id: u64,
    next_run_id: u64,
    next_run_number: u64,
    next_delivery_id: u64,
    pub runners: BTreeMap<u64, Runner>,
    pub jobs: BTreeMap<u64, Job>,
    pub runs: BTreeMap<u64, Run>,
    pub deliveries: Vec<DeliveryRecord>,
    labels: HashMap<String, u64>,
    repos: HashMap<String, u64>,
    /// Installation tokens issued, with their expiry.
    pub installation_tokens: HashMap<String, DateTime<Utc>>,
    /// The App's installations: id and account login (empty: every account, the one
    /// installation of a simulator that knows no owners).
    pub installations: Vec<(u64, String)>,
    /// The installation each issued installation token belongs to.
    pub token_installations: HashMap<String, u64>,
    /// Installed webhooks and the App's hook.
    pub hooks: super::hooks::HookRegistry,
    next_pull_number: u64,
}

impl SimState {
    pub fn new(installation_id: u64) -> Self {
        Self {
            installation_id,
            installations: vec![(installation_id, String::new())],
            token_installations: HashMap::new(),
            next_runner_id: 1,
            next_job_id: FIRST_JOB_ID,
            next_run_id: FIRST_RUN_ID,
            next_run_number: 1,
            next_delivery_id: 1,
            runners: BTreeMap::new(),
            jobs: BTreeMap::new(),
            runs: BTreeMap::new(),
            deliveries: Vec::new(),
            labels: HashMap::new(),
            repos: HashMap::new(),
            installation_tokens: HashMap::new(),
            hooks: Default::default(),
            next_pull_number: 1,
        }
    }

    /// A state whose App is installed on each of `owners` (ids from `installation_id` on), or
    /// once for every account when there are none.
    pub fn with_owners(installation_id: u64, owners: &[String]) -> Self {
        let mut state = Self::new(installation_id);
        if !owners.is_empty() {
            state.installations = owners
                .iter()
                .enumerate()
                .map(|(i, owner)| (installation_id + i as u64, owner.clone()))
                .collect();
        }
        state
    }

    /// Stable id of a label name (case-insensitive), as in `labels[].id`.
    pub fn label_id(&mut self, name: &str) -> u64 {
        let next = self.labels.len() as u64 + 1;
        *self.labels.entry(name.to_ascii_lowercase()).or_insert(next)
    }

    /// Stable id of a repository (`owner/repo`).
    pub fn repo_id(&mut self, full_name: &str) -> u64 {
        let next = FIRST_REPO_ID + self.repos.len() as u64;
        *self
            .repos
            .entry(full_name.to_ascii_lowercase())
            .or_insert(next)
    }

    /// The installation on `repository`'s owner (what a delivery's `installation.id` says).
    pub fn installation_of(&self, repository: &str) -> u64 {
        let owner = repository.split('/').next().unwrap_or_default();
        self.installations
            .iter()
            .find(|(_, account)| account.eq_ignore_ascii_case(owner))
            .map_or(self.installation_id, |(id, _)| *id)
    }

    pub fn next_delivery_id(&mut self) -> u64 {
        let id = self.next_delivery_id;
        self.next_delivery_id += 1;
        id
    }

    /// `generate-jitconfig`: registers an offline runner. Validation mirrors GitHub's 409/422.
    pub fn register_runner(
        &mut self,
        scope: Scope,
        name: &str,
        labels: &[String],
        runner_group_id: u64,
        credential: String,
    ) -> Result<Runner, StateError> {
        if name.trim().is_empty() {
            return Err(StateError::Invalid(
                "Invalid request.\n\n\"name\" wasn't supplied.".into(),
            ));
        }
        if labels.is_empty() || labels.len() > 100 {
            return Err(StateError::Invalid(
                "Invalid request.\n\nlabels must have between 1 and 100 items.".into(),
            ));
        }
        if labels.iter().any(|l| l.trim().is_empty() || l.len() > 256) {
            return Err(StateError::Invalid(
                "Invalid request.\n\nlabels contains an empty label.".into(),
            ));
        }
        if self
            .runners
            .values()
            .any(|r| r.scope == scope && r.name.eq_ignore_ascii_case(name))
        {
            return Err(StateError::NameTaken(name.into()));
        }
        let runner = Runner {
            id: self.next_runner_id,
            name: name.into(),
            scope,
            labels: labels.to_vec(),
            runner_group_id,
            status: RunnerStatus::Registered,
            os: "unknown".into(),
            job_id: None,
            credential,
            created_at: Utc::now(),
            connected_at: None,
        };
        self.next_runner_id += 1;
        for label in labels {
            self.label_id(label);
        }
        self.runners.insert(runner.id, runner.clone());
        Ok(runner)
    }

    pub fn runner_in_scope(&self, scope: &Scope, id: u64) -> Result<&Runner, StateError> {
        self.runners
            .get(&id)
            .filter(|r| &r.scope == scope)
            .ok_or(StateError::NotFound)
    }

    /// `DELETE .../runners/{id}`: 422 while the runner runs a job.
    pub fn delete_runner(&mut self, scope: &Scope, id: u64) -> Result<(), StateError> {
        let runner = self.runner_in_scope(scope, id)?;
        if runner.status == RunnerStatus::Busy {
            return Err(StateError::RunnerBusy(runner.name.clone()));
        }
        self.runners.remove(&id);
        Ok(())
    }

    /// The runner process connected: the runner is online and idle, and may get a job at once.
    pub fn connect_runner(&mut self, id: u64) -> Result<Vec<PendingDelivery>, StateError> {
        let runner = self.runners.get_mut(&id).ok_or(StateError::NotFound)?;
        if runner.status == RunnerStatus::Registered {
            runner.status = RunnerStatus::Idle;
            runner.connected_at = Some(Utc::now());
            runner.os = "linux".into();
        }
        Ok(self.assign_jobs())
    }

    /// Creates a run with one queued job: `workflow_run.requested` and `workflow_job.queued`.
    pub fn enqueue_job(
        &mut self,
        spec: JobSpec,
    ) -> Result<(u64, u64, Vec<PendingDelivery>), StateError> {
        let Some((_, repo)) = spec.repository.split_once('/') else {
            return Err(StateError::Invalid(format!(
                "repository {:?} is not owner/repo",
                spec.repository
            )));
        };
        if repo.is_empty() || spec.labels.is_empty() {
            return Err(StateError::Invalid(
                "a job needs a repository and at least one label".into(),
            ));
        }
        let now = Utc::now();
        let (run_id, job_id) = (self.next_run_id, self.next_job_id);
        self.next_run_id += 1;
        self.next_job_id += 1;
        let head_sha = format!("{:040x}", rand::random::<u128>());
        self.runs.insert(
            run_id,
            Run {
                id: run_id,
                run_number: self.next_run_number,
                repository: spec.repository.clone(),
                workflow_name: spec.workflow_name.clone(),
                head_branch: "main".into(),
                head_sha: head_sha.clone(),
                status: JobStatus::Queued,
                conclusion: None,
                job_ids: vec![job_id],
                created_at: now,
                updated_at: now,
                started_at: None,
            },
        );
        self.next_run_number += 1;
        self.jobs.insert(
            job_id,
            Job {
                id: job_id,
                run_id,
                spec,
                status: JobStatus::Queued,
                conclusion: None,
                runner: None,
                created_at: now,
                started_at: None,
                completed_at: None,
                head_sha,
                head_branch: "main".into(),
            },
        );
        let mut out = vec![
            self.workflow_run_delivery(run_id, "requested"),
            self.workflow_job_delivery(job_id, "queued"),
        ];
        out.extend(self.assign_jobs());
        Ok((run_id, job_id, out))
    }

    /// Gives the oldest queued job to an idle runner whose labels contain all of the job's labels
    /// (case-insensitive) and whose scope covers the repository, repeatedly.
    pub fn assign_jobs(&mut self) -> Vec<PendingDelivery> {
        let mut out = Vec::new();
        let queued: Vec<u64> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Queued && j.spec.is_self_hosted())
            .map(|j| j.id)
            .collect();
        for job_id in queued {
            let job = &self.jobs[&job_id];
            let Some(runner) = self.runners.values().find(|r| {
                r.status == RunnerStatus::Idle
                    && r.scope.serves(&job.spec.repository)
                    && labels_match(&r.labels, &job.spec.labels)
            }) else {
                continue;
            };
            let job_runner = JobRunner {
                id: runner.id,
                name: runner.name.clone(),
                group_id: runner.runner_group_id,
                group_name: DEFAULT_RUNNER_GROUP_NAME.into(),
            };
            let runner_id = runner.id;
            let runner = self
                .runners
                .get_mut(&runner_id)
                .expect("runner found above");
            runner.status = RunnerStatus::Busy;
            runner.job_id = Some(job_id);
            out.extend(self.start_job(job_id, job_runner));
        }
        out
    }

    /// queued → in_progress on `runner`, with `workflow_run.in_progress` for the run's first job.
    pub fn start_job(&mut self, job_id: u64, runner: JobRunner) -> Vec<PendingDelivery> {
        let now = Utc::now();
        let Some(job) = self
            .jobs
            .get_mut(&job_id)
            .filter(|j| j.status == JobStatus::Queued)
        else {
            return Vec::new();
        };
        job.status = JobStatus::InProgress;
        job.started_at = Some(now);
        job.runner = Some(runner);
        let run_id = job.run_id;
        let mut out = Vec::new();
        let run = self.runs.get_mut(&run_id).expect("every job has a run");
        if run.status == JobStatus::Queued {
            run.status = JobStatus::InProgress;
            run.started_at = Some(now);
            run.updated_at = now;
            out.push(self.workflow_run_delivery(run_id, "in_progress"));
        }
        out.push(self.workflow_job_delivery(job_id, "in_progress"));
        out
    }

    /// Ends a job (reported by its runner, by the hosted-runner simulation or by a cancel): the
    /// runner, ephemeral, leaves the list; the run completes with its last job.
    pub fn complete_job(
        &mut self,
        job_id: u64,
        conclusion: &str,
    ) -> Result<Vec<PendingDelivery>, StateError> {
        let now = Utc::now();
        let job = self.jobs.get_mut(&job_id).ok_or(StateError::NotFound)?;
        if job.status == JobStatus::Completed {
            return Ok(Vec::new());
        }
        job.status = JobStatus::Completed;
        job.conclusion = Some(conclusion.into());
        job.completed_at = Some(now);
        if let Some(runner) = &job.runner {
            self.runners.remove(&runner.id);
        }
        let run_id = job.run_id;
        let mut out = vec![self.workflow_job_delivery(job_id, "completed")];
        let run = &self.runs[&run_id];
        let conclusions: Option<Vec<String>> = run
            .job_ids
            .iter()
            .map(|id| self.jobs[id].conclusion.clone())
            .collect();
        if let Some(conclusions) = conclusions {
            let overall = ["failure", "cancelled", "timed_out"]
                .into_iter()
                .find(|c| conclusions.iter().any(|x| x == c))
                .unwrap_or("success");
            let run = self.runs.get_mut(&run_id).expect("run exists");
            run.status = JobStatus::Completed;
            run.conclusion = Some(overall.into());
            run.updated_at = now;
            out.push(self.workflow_run_delivery(run_id, "completed"));
        }
        Ok(out)
    }

    /// Cancels a queued or running job; its runner (if any) is released and removed.
    pub fn cancel_job(&mut self, job_id: u64) -> Result<Vec<PendingDelivery>, StateError> {
        self.complete_job(job_id, "cancelled")
    }

    /// `push` to a new branch of `repository`.
    pub fn push_delivery(&mut self, repository: &str, branch: &str) -> PendingDelivery {
        let repo_id = self.repo_id(repository);
        PendingDelivery {
            event: "push",
            action: None,
            repository: Some(repository.into()),
            repository_id: Some(repo_id),
            payload: templates::push(
                repository,
                repo_id,
                branch,
                self.installation_of(repository),
            ),
        }
    }

    /// `pull_request.opened` of a new pull request from `branch` of `repository`.
    pub fn pull_request_delivery(&mut self, repository: &str, branch: &str) -> PendingDelivery {
        let repo_id = self.repo_id(repository);
        let number = self.next_pull_number;
        self.next_pull_number += 1;
        PendingDelivery {
            event: "pull_request",
            action: Some("opened".into()),
            repository: Some(repository.into()),
            repository_id: Some(repo_id),
            payload: templates::pull_request(
                repository,
                repo_id,
                number,
                branch,
                self.installation_of(repository),
            ),
        }
    }

    fn workflow_job_delivery(&mut self, job_id: u64, action: &str) -> PendingDelivery {
        let job = self.jobs[&job_id].clone();
        let repo_id = self.repo_id(&job.spec.repository);
        PendingDelivery {
            event: "workflow_job",
            action: Some(action.into()),
            repository: Some(job.spec.repository.clone()),
            repository_id: Some(repo_id),
            payload: templates::workflow_job(
                &job,
                action,
                repo_id,
                self.installation_of(&job.spec.repository),
            ),
        }
    }

    fn workflow_run_delivery(&mut self, run_id: u64, action: &str) -> PendingDelivery {
        let run = self.runs[&run_id].clone();
        let repo_id = self.repo_id(&run.repository);
        PendingDelivery {
            event: "workflow_run",
            action: Some(action.into()),
            repository: Some(run.repository.clone()),
            repository_id: Some(repo_id),
            payload: templates::workflow_run(
                &run,
                action,
                repo_id,
                self.installation_of(&run.repository),
            ),
        }
    }
}

/// A runner can take a job when its labels contain every job label, ignoring case.
pub fn labels_match(runner_labels: &[String], job_labels: &[String]) -> bool {
    job_labels
        .iter()
        .all(|j| runner_labels.iter().any(|r| r.eq_ignore_ascii_case(j)))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
