//! The one task that owns job and runner state. Webhook deliveries reach it through the
//! durable log; everything else sends it messages.

pub mod processor;

pub use processor::Processor;
