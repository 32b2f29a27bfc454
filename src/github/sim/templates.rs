//! Payloads built from templates copied from `fixtures/github` (see `templates/README.md`): parse,
//! rename the repository, fill ids, names and timestamps. Keys stay exactly GitHub's.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::state::{Job, JobStatus, Run};

const WORKFLOW_JOB: &str = include_str!("templates/workflow_job.json");
const WORKFLOW_RUN: &str = include_str!("templates/workflow_run.json");
const PUSH: &str = include_str!("templates/push.json");
const REST_RUN: &str = include_str!("templates/rest_run.json");
const REST_JOB: &str = include_str!("templates/rest_job.json");
const ACCESS_TOKEN: &str = include_str!("templates/access_token.json");
const PULL_REQUEST: &str = include_str!("templates/pull_request.json");
const APP: &str = include_str!("templates/app.json");
const INSTALLATION: &str = include_str!("templates/installation.json");

/// Repository names used in the templates, replaced by the simulated repository.
const TEMPLATE_REPOS: [&str; 3] = [
    "Codertocat/Hello-World",
    "octo-org/octo-repo",
    "octocat/Hello-World",
];

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(ts(t))).unwrap_or(Value::Null)
}

/// Parses `template` with every template repository renamed to `full_name`.
fn load(template: &str, full_name: &str) -> Value {
    let mut text = template.to_string();
    for from in TEMPLATE_REPOS {
        text = text.replace(from, full_name);
    }
    serde_json::from_str(&text).expect("simulator templates are valid JSON")
}

/// Sets `pointer` if the template has it (tests check the templates' keys against the fixtures).
fn set(v: &mut Value, pointer: &str, new: Value) {
    if let Some(slot) = v.pointer_mut(pointer) {
        *slot = new;
    }
}

/// Fills a repository object (`repository`, `head_repository`) with our names and id.
fn fill_repository(v: &mut Value, pointer: &str, full_name: &str, repo_id: u64) {
    let (owner, name) = full_name.split_once('/').unwrap_or((full_name, full_name));
    set(v, &format!("{pointer}/id"), json!(repo_id));
    set(v, &format!("{pointer}/name"), json!(name));
    set(v, &format!("{pointer}/full_name"), json!(full_name));
    set(v, &format!("{pointer}/owner/login"), json!(owner));
    set(
        v,
        &format!("{pointer}/owner/html_url"),
        json!(format!("https://github.com/{owner}")),
    );
    set(
        v,
        &format!("{pointer}/owner/url"),
        json!(format!("https://api.github.com/users/{owner}")),
    );
}

fn steps(job: &Job) -> Value {
    let started = opt_ts(job.started_at);
    match job.status {
        JobStatus::Queued => json!([]),
        _ if job.started_at.is_none() => json!([]),
        JobStatus::InProgress => json!([{
            "name": "Set up job", "status": "in_progress", "conclusion": null, "number": 1,
            "started_at": started, "completed_at": null
        }]),
        JobStatus::Completed => {
            let done = opt_ts(job.completed_at);
            json!([
                {"name": "Set up job", "status": "completed", "conclusion": "success", "number": 1,
                 "started_at": started, "completed_at": started},
                {"name": format!("Run {}", job.spec.job_name), "status": "completed",
                 "conclusion": job.conclusion, "number": 2, "started_at": started, "completed_at": done},
                {"name": "Complete job", "status": "completed", "conclusion": "success", "number": 3,
                 "started_at": done, "completed_at": done}
            ])
        }
    }
}

/// The `workflow_job` object shared by the webhook and `GET .../actions/jobs/{id}`.
fn fill_job(v: &mut Value, p: &str, job: &Job) {
    let repo = &job.spec.repository;
    set(v, &format!("{p}/id"), json!(job.id));
    set(v, &format!("{p}/run_id"), json!(job.run_id));
    set(
        v,
        &format!("{p}/workflow_name"),
        json!(job.spec.workflow_name),
    );
    set(v, &format!("{p}/head_branch"), json!(job.head_branch));
    set(v, &format!("{p}/head_sha"), json!(job.head_sha));
    set(
        v,
        &format!("{p}/run_url"),
        json!(format!(
            "https://api.github.com/repos/{repo}/actions/runs/{}",
            job.run_id
        )),
    );
    set(v, &format!("{p}/run_attempt"), json!(1));
    set(
        v,
        &format!("{p}/node_id"),
        json!(format!("CR_sim{}", job.id)),
    );
    set(
        v,
        &format!("{p}/url"),
        json!(format!(
            "https://api.github.com/repos/{repo}/actions/jobs/{}",
            job.id
        )),
    );
    set(
        v,
        &format!("{p}/html_url"),
        json!(format!(
            "https://github.com/{repo}/actions/runs/{}/job/{}",
            job.run_id, job.id
        )),
    );
    set(
        v,
        &format!("{p}/check_run_url"),
        json!(format!(
            "https://api.github.com/repos/{repo}/check-runs/{}",
            job.id
        )),
    );
    set(v, &format!("{p}/status"), json!(job.status.as_str()));
    set(v, &format!("{p}/conclusion"), json!(job.conclusion));
    set(v, &format!("{p}/created_at"), json!(ts(job.created_at)));
    set(
        v,
        &format!("{p}/started_at"),
        json!(ts(job.started_at.unwrap_or(job.created_at))),
    );
    set(v, &format!("{p}/completed_at"), opt_ts(job.completed_at));
    set(v, &format!("{p}/name"), json!(job.spec.job_name));
    set(v, &format!("{p}/steps"), steps(job));
    set(v, &format!("{p}/labels"), json!(job.spec.labels));
    let r = job.runner.as_ref();
    set(v, &format!("{p}/runner_id"), json!(r.map(|r| r.id)));
    set(v, &format!("{p}/runner_name"), json!(r.map(|r| &r.name)));
    set(
        v,
        &format!("{p}/runner_group_id"),
        json!(r.map(|r| r.group_id)),
    );
    set(
        v,
        &format!("{p}/runner_group_name"),
        json!(r.map(|r| &r.group_name)),
    );
}

/// `workflow_job` webhook body for `action`.
pub fn workflow_job(job: &Job, action: &str, repo_id: u64, installation_id: u64) -> Value {
    let mut v = load(WORKFLOW_JOB, &job.spec.repository);
    set(&mut v, "/action", json!(action));
    fill_job(&mut v, "/workflow_job", job);
    fill_repository(&mut v, "/repository", &job.spec.repository, repo_id);
    set(&mut v, "/installation/id", json!(installation_id));
    v
}

/// The run object shared by the `workflow_run` webhook and `GET .../actions/runs/{id}`.
fn fill_run(v: &mut Value, p: &str, run: &Run, repo_id: u64) {
    let repo = &run.repository;
    set(v, &format!("{p}/id"), json!(run.id));
    set(v, &format!("{p}/name"), json!(run.workflow_name));
    set(
        v,
        &format!("{p}/node_id"),
        json!(format!("WFR_sim{}", run.id)),
    );
    set(v, &format!("{p}/head_branch"), json!(run.head_branch));
    set(v, &format!("{p}/head_sha"), json!(run.head_sha));
    set(v, &format!("{p}/head_commit/id"), json!(run.head_sha));
    set(v, &format!("{p}/run_number"), json!(run.run_number));
    set(v, &format!("{p}/run_attempt"), json!(1));
    set(v, &format!("{p}/event"), json!("push"));
    set(v, &format!("{p}/pull_requests"), json!([]));
    set(v, &format!("{p}/referenced_workflows"), json!([]));
    set(v, &format!("{p}/previous_attempt_url"), Value::Null);
    set(
        v,
        &format!("{p}/display_title"),
        json!(format!("{} #{}", run.workflow_name, run.run_number)),
    );
    set(v, &format!("{p}/status"), json!(run.status.as_str()));
    set(v, &format!("{p}/conclusion"), json!(run.conclusion));
    set(v, &format!("{p}/created_at"), json!(ts(run.created_at)));
    set(v, &format!("{p}/updated_at"), json!(ts(run.updated_at)));
    set(
        v,
        &format!("{p}/run_started_at"),
        json!(ts(run.started_at.unwrap_or(run.created_at))),
    );
    let api = format!(
        "https://api.github.com/repos/{repo}/actions/runs/{}",
        run.id
    );
    set(v, &format!("{p}/url"), json!(api));
    set(
        v,
        &format!("{p}/html_url"),
        json!(format!("https://github.com/{repo}/actions/runs/{}", run.id)),
    );
    for (key, suffix) in [
        ("jobs_url", "jobs"),
        ("logs_url", "logs"),
        ("artifacts_url", "artifacts"),
        ("cancel_url", "cancel"),
        ("rerun_url", "rerun"),
    ] {
        set(v, &format!("{p}/{key}"), json!(format!("{api}/{suffix}")));
    }
    fill_repository(v, &format!("{p}/repository"), repo, repo_id);
    fill_repository(v, &format!("{p}/head_repository"), repo, repo_id);
}

/// `workflow_run` webhook body for `action`.
pub fn workflow_run(run: &Run, action: &str, repo_id: u64, _installation_id: u64) -> Value {
    let mut v = load(WORKFLOW_RUN, &run.repository);
    set(&mut v, "/action", json!(action));
    fill_run(&mut v, "/workflow_run", run, repo_id);
    set(&mut v, "/workflow/name", json!(run.workflow_name));
    fill_repository(&mut v, "/repository", &run.repository, repo_id);
    let owner = run.repository.split('/').next().unwrap_or_default();
    set(&mut v, "/organization/login", json!(owner));
    v
}

/// `push` webhook body: a new branch with one commit.
pub fn push(repository: &str, repo_id: u64, branch: &str, installation_id: u64) -> Value {
    let mut v = load(PUSH, repository);
    let sha = format!("{:040x}", rand::random::<u128>());
    set(&mut v, "/ref", json!(format!("refs/heads/{branch}")));
    set(&mut v, "/after", json!(sha));
    set(
        &mut v,
        "/compare",
        json!(format!("https://github.com/{repository}/commit/{sha}")),
    );
    set(&mut v, "/head_commit/id", json!(sha));
    set(&mut v, "/head_commit/timestamp", json!(ts(Utc::now())));
    set(
        &mut v,
        "/head_commit/url",
        json!(format!("https://github.com/{repository}/commit/{sha}")),
    );
    if let Some(commits) = v.get("head_commit").cloned() {
        set(&mut v, "/commits", json!([commits]));
    }
    fill_repository(&mut v, "/repository", repository, repo_id);
    set(
        &mut v,
        "/repository/pushed_at",
        json!(Utc::now().timestamp()),
    );
    set(&mut v, "/installation/id", json!(installation_id));
    v
}

/// `GET /repos/{o}/{r}/actions/runs/{id}` (and each item of the runs list).
pub fn rest_run(run: &Run, repo_id: u64) -> Value {
    let mut v = load(REST_RUN, &run.repository);
    fill_run(&mut v, "", run, repo_id);
    v
}

/// An item of `GET /repos/{o}/{r}/actions/runs`: GitHub's list example lacks two keys of the single run.
pub fn rest_run_list_item(run: &Run, repo_id: u64) -> Value {
    let mut v = rest_run(run, repo_id);
    if let Some(obj) = v.as_object_mut() {
        obj.remove("previous_attempt_url");
        obj.remove("referenced_workflows");
    }
    v
}

/// `GET /repos/{o}/{r}/actions/jobs/{id}` (and each item of a run's jobs list).
pub fn rest_job(job: &Job) -> Value {
    let mut v = load(REST_JOB, &job.spec.repository);
    fill_job(&mut v, "", job);
    v
}

/// `POST /app/installations/{id}/access_tokens` (201).
pub fn access_token(token: &str, expires_at: DateTime<Utc>) -> Value {
    let mut v: Value = serde_json::from_str(ACCESS_TOKEN).expect("template is valid JSON");
    set(&mut v, "/token", json!(token));
    set(&mut v, "/expires_at", json!(ts(expires_at)));
    v
}

/// `pull_request` webhook body (`opened`): pull request `number` from `branch`.
pub fn pull_request(
    repository: &str,
    repo_id: u64,
    number: u64,
    branch: &str,
    installation_id: u64,
) -> Value {
    let mut v = load(PULL_REQUEST, repository);
    let sha = format!("{:040x}", rand::random::<u128>());
    set(&mut v, "/number", json!(number));
    set(&mut v, "/pull_request/number", json!(number));
    set(&mut v, "/pull_request/head/ref", json!(branch));
    set(&mut v, "/pull_request/head/sha", json!(sha));
    set(&mut v, "/pull_request/created_at", json!(ts(Utc::now())));
    set(&mut v, "/pull_request/updated_at", json!(ts(Utc::now())));
    fill_repository(&mut v, "/repository", repository, repo_id);
    set(&mut v, "/installation/id", json!(installation_id));
    v
}

/// `GET /app`: the App with its id and subscribed events.
pub fn app(app_id: u64, events: &[String]) -> Value {
    let mut v: Value = serde_json::from_str(APP).expect("template is valid JSON");
    set(&mut v, "/id", json!(app_id));
    set(&mut v, "/events", json!(events));
    v
}

/// An item of `GET /app/installations`: installation `id` on the organization `account`.
pub fn installation(id: u64, app_id: u64, account: &str, account_id: u64) -> Value {
    let mut v: Value = serde_json::from_str(INSTALLATION).expect("template is valid JSON");
    set(&mut v, "/id", json!(id));
    set(&mut v, "/app_id", json!(app_id));
    set(&mut v, "/target_id", json!(account_id));
    set(&mut v, "/account/login", json!(account));
    set(&mut v, "/account/id", json!(account_id));
    set(&mut v, "/account/type", json!("Organization"));
    set(
        &mut v,
        "/access_tokens_url",
        json!(format!(
            "https://api.github.com/app/installations/{id}/access_tokens"
        )),
    );
    v
}
