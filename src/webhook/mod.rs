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

/// A delivery GUID shaped like GitHub's: a time-based (version 1) UUID, e.g.
/// `0b989ba4-242f-11e5-81e1-c7b6966d2516` in the fixtures. Its text starts with the low bits
/// of the time, so deliveries close in time have close GUIDs — which is why the unique index
/// on them takes inserts near one point rather than all over (the ingest bench relies on the
/// same shape).
pub fn new_delivery_guid() -> String {
    // A fixed node id: runnerhub's own deliveries (simulator, test endpoint) come from one "server".
    const NODE: [u8; 6] = [0x52, 0x75, 0x6e, 0x48, 0x75, 0x62];
    uuid::Uuid::now_v1(&NODE).to_string()
}
