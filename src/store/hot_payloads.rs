//! Payloads of deliveries just appended and not processed yet, kept in memory.
//!
//! The processor takes a delivery moments after ingest stored it; reading the compressed blob
//! back and decompressing it cost about a tenth of the daemon's CPU at full load. The database
//! stays the queue (what is due is still read from it, so restarts and retries are unchanged);
//! this only supplies the text when it is at hand. Bounded by bytes: when the processor falls
//! behind, the oldest entries go and are read from the database as before.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Text kept at most (the processor handles a few hundred deliveries at a time, ~7 KB each).
const BUDGET_BYTES: usize = 32 << 20;

#[derive(Default)]
pub(super) struct HotPayloads {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: BTreeMap<i64, Arc<str>>,
    bytes: usize,
}

impl HotPayloads {
    pub fn insert(&self, entries: impl IntoIterator<Item = (i64, Arc<str>)>) {
        let mut inner = self.inner.lock().expect("hot payloads lock");
        for (id, text) in entries {
            inner.bytes += text.len();
            if let Some(old) = inner.by_id.insert(id, text) {
                inner.bytes -= old.len();
            }
        }
        while inner.bytes > BUDGET_BYTES {
            let Some((_, text)) = inner.by_id.pop_first() else {
                break;
            };
            inner.bytes -= text.len();
        }
    }

    pub fn get(&self, id: i64) -> Option<Arc<str>> {
        self.inner
            .lock()
            .expect("hot payloads lock")
            .by_id
            .get(&id)
            .cloned()
    }

    pub fn remove(&self, ids: impl IntoIterator<Item = i64>) {
        let mut inner = self.inner.lock().expect("hot payloads lock");
        for id in ids {
            if let Some(text) = inner.by_id.remove(&id) {
                inner.bytes -= text.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_fits_and_drops_the_oldest_first() {
        let hot = HotPayloads::default();
        let big: Arc<str> = Arc::from("x".repeat(BUDGET_BYTES / 2));
        hot.insert([(1, big.clone()), (2, big.clone())]);
        assert!(hot.get(1).is_some() && hot.get(2).is_some());
        hot.insert([(3, Arc::from("small"))]);
        assert!(hot.get(1).is_none(), "the oldest went to make room");
        assert_eq!(hot.get(3).as_deref(), Some("small"));
        hot.remove([2, 3]);
        assert!(hot.get(2).is_none() && hot.get(3).is_none());
        hot.insert([(4, big)]);
        assert!(hot.get(4).is_some(), "removal gave the bytes back");
    }
}
