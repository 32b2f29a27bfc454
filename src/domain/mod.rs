//! Pure types and rules: jobs, runners, workflow runs, label matching, priority. No IO here.

pub mod glob;
pub mod job;
pub mod labels;
pub mod priority;
pub mod runner;
pub mod workflow_run;

pub use glob::Glob;
pub use job::{Job, JobAction, JobId, JobObservation, JobOutcome, JobStatus, Transition};
pub use labels::{LabelSet, MAX_JOB_LABELS, MAX_LABEL_BYTES, check_job_labels, select_pool};
pub use priority::{JobTraits, PriorityRules, queue_rank};
pub use runner::{NameOwnership, Runner, RunnerId, RunnerState};
pub use workflow_run::{RunObservation, WorkflowRun};
