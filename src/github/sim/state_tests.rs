//! Unit tests of the job-assignment and registration rules.

use super::*;

fn labels(ls: &[&str]) -> Vec<String> {
    ls.iter().map(|s| s.to_string()).collect()
}

#[test]
fn oldest_matching_job_goes_to_idle_runner_and_runner_leaves_after_one_job() {
    let mut s = SimState::new(1);
    let scope = Scope::Repo("o/r".into());
    let (_, gpu_job, _) = s
        .enqueue_job(JobSpec::new("o/r", &["self-hosted", "gpu"]))
        .unwrap();
    let (_, first, _) = s
        .enqueue_job(JobSpec::new("o/r", &["self-hosted", "Linux"]))
        .unwrap();
    let (_, second, _) = s
        .enqueue_job(JobSpec::new("o/r", &["self-hosted", "linux"]))
        .unwrap();
    let r = s
        .register_runner(
            scope.clone(),
            "r1",
            &labels(&["self-hosted", "linux", "x64"]),
            1,
            "c".into(),
        )
        .unwrap();
    let out = s.connect_runner(r.id).unwrap();
    assert_eq!(s.runners[&r.id].job_id, Some(first));
    assert!(
        out.iter()
            .any(|d| d.event == "workflow_job" && d.action.as_deref() == Some("in_progress"))
    );
    assert_eq!(s.jobs[&second].status, JobStatus::Queued);
    assert_eq!(s.jobs[&gpu_job].status, JobStatus::Queued);
    assert_eq!(
        s.delete_runner(&scope, r.id),
        Err(StateError::RunnerBusy("r1".into()))
    );
    let out = s.complete_job(first, "success").unwrap();
    assert_eq!(out.len(), 2, "job completed + run completed");
    assert!(
        !s.runners.contains_key(&r.id),
        "JIT runner is removed after its job"
    );
}

#[test]
fn registration_rules() {
    let mut s = SimState::new(1);
    let scope = Scope::Org("o".into());
    s.register_runner(scope.clone(), "a", &labels(&["x"]), 1, "c".into())
        .unwrap();
    assert!(matches!(
        s.register_runner(scope.clone(), "A", &labels(&["x"]), 1, "c".into()),
        Err(StateError::NameTaken(_))
    ));
    assert!(
        s.register_runner(
            Scope::Repo("o/r".into()),
            "a",
            &labels(&["x"]),
            1,
            "c".into()
        )
        .is_ok()
    );
    assert!(matches!(
        s.register_runner(scope.clone(), "b", &[], 1, "c".into()),
        Err(StateError::Invalid(_))
    ));
    assert!(matches!(
        s.register_runner(scope.clone(), "b", &labels(&[""]), 1, "c".into()),
        Err(StateError::Invalid(_))
    ));
    assert!(matches!(
        s.register_runner(scope, "", &labels(&["x"]), 1, "c".into()),
        Err(StateError::Invalid(_))
    ));
}

#[test]
fn org_runner_serves_org_repos_only() {
    assert!(Scope::Org("Octo".into()).serves("octo/a"));
    assert!(!Scope::Org("octo".into()).serves("other/a"));
    assert!(!Scope::Repo("o/r".into()).serves("o/r2"));
}
