//! GitHub webhook deliveries: request checks, signature, payload decoding, durable ingest.

pub mod ingest;
pub mod intake;
pub mod payload;
pub mod payload_codec;
pub mod signature;

/// GitHub's cap on payload size; larger requests are refused before reading them whole.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Events runnerhub acts on. Anything else is recorded and answered `ignored`.
pub const HANDLED_EVENTS: &[&str] = &[
    "workflow_job",
    "workflow_run",
    "push",
    "pull_request",
    "ping",
];
