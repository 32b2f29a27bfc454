//! Capacity planning by replay (DESIGN §11): recorded `workflow_job` deliveries run through the
//! daemon's own decisions (its priority queue, launch planner, pool selection and priority
//! rules) in virtual time, with GitHub's assignment rule and ephemeral runners, to answer "what
//! would our queue waits have been with 6 runners instead of 10, or a second pool?"
//!
//! - [`input`]: the `events.ndjson` format, read line by line with errors that name the line.
//! - [`workload`]: deliveries folded into jobs (arrival, run time, or cancelled while queued).
//! - [`sim`]: the discrete-event simulation; no clock, no IO.
//! - [`stats`], [`report`]: the summary (`--json` keys fixed by DESIGN §11) and its text.
//! - [`html`]: `--html`, the same numbers with charts in one self-contained page.
//! - [`export`]: `runnerhub events export`, the audit log as `events.ndjson`, read-only.
//! - [`cli`]: the two commands.

pub mod cli;
pub mod export;
pub mod html;
pub mod input;
pub mod report;
pub mod sim;
pub mod stats;
pub mod workload;
