//! Pure types and rules: jobs, workflow runs, label matching, priority. No IO here.

pub mod job;
pub mod labels;
pub mod priority;
pub mod workflow_run;

pub use job::{Job, JobAction, JobId, JobObservation, JobStatus, Transition};
pub use labels::{LabelSet, select_pool};
pub use priority::{PriorityRules, queue_rank};
pub use workflow_run::{RunObservation, WorkflowRun};
