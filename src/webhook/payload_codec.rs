//! Payloads as stored: zstd-compressed JSON.
//!
//! A `workflow_job` body is ~7 KB of JSON that compresses about 4×, and the disk, not the CPU,
//! bounds durable ingest (every byte goes to the WAL and again to the database file). So bodies
//! are compressed once, in the request handler where the work spreads over all cores, and the
//! single writer only moves a quarter of the bytes.

use std::sync::Arc;

/// zstd level: 1 is the fast end; higher levels cost more CPU than the bytes they save here.
const ZSTD_LEVEL: i32 = 1;

/// A compressed payload; one made in this process also keeps the text it was made from, so
/// that the processor, which gets it moments later, need not decompress it again.
#[derive(Clone)]
pub struct Payload {
    stored: Vec<u8>,
    text: Option<Arc<str>>,
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.stored == other.stored
    }
}

impl Eq for Payload {}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} compressed bytes)", self.stored.len())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stored payload cannot be decompressed: {0}")]
pub struct PayloadCorrupt(String);

thread_local! {
    // A zstd context is ~1 MiB of tables to allocate and clear; one per thread, reused, makes
    // a 7 KB body cost microseconds instead of a fresh context each time.
    static COMPRESSOR: std::cell::RefCell<zstd::bulk::Compressor<'static>> =
        std::cell::RefCell::new(
            zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd level 1 is valid"),
        );
    static DECOMPRESSOR: std::cell::RefCell<zstd::bulk::Decompressor<'static>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().expect("zstd context"));
}

impl Payload {
    pub fn compress(text: &str) -> Payload {
        let compressed = COMPRESSOR.with_borrow_mut(|c| c.compress(text.as_bytes()));
        Payload {
            stored: compressed.expect("compressing into memory cannot fail"),
            text: Some(Arc::from(text)),
        }
    }

    /// The stored bytes (what goes in the database).
    pub fn as_bytes(&self) -> &[u8] {
        &self.stored
    }

    /// Wraps bytes read back from the database.
    pub fn from_stored(bytes: Vec<u8>) -> Payload {
        Payload {
            stored: bytes,
            text: None,
        }
    }

    /// The text kept from compression, if this payload was made in this process.
    pub fn kept_text(&self) -> Option<&Arc<str>> {
        self.text.as_ref()
    }

    /// The text, shared: the one kept from compression, or decompressed.
    pub fn shared_text(&self) -> Result<Arc<str>, PayloadCorrupt> {
        match &self.text {
            Some(text) => Ok(text.clone()),
            None => self.text().map(Arc::from),
        }
    }

    pub fn text(&self) -> Result<String, PayloadCorrupt> {
        if let Some(text) = &self.text {
            return Ok(text.to_string());
        }
        // The frame header says how big the text is (compress writes it); GitHub caps payloads
        // at 25 MB, and the bound protects against a corrupt header.
        let size = zstd::zstd_safe::get_frame_content_size(&self.stored)
            .map_err(|_| PayloadCorrupt("not a zstd frame".into()))?
            .ok_or_else(|| PayloadCorrupt("frame without a content size".into()))?;
        if size > super::MAX_BODY_BYTES as u64 {
            return Err(PayloadCorrupt(format!("frame claims {size} bytes")));
        }
        let bytes = DECOMPRESSOR
            .with_borrow_mut(|d| d.decompress(&self.stored, size as usize))
            .map_err(|e| PayloadCorrupt(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| PayloadCorrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_shrinks_json() {
        let json = format!(
            "{{\"items\": [{}]}}",
            (0..500)
                .map(|i| format!("{{\"id\": {i}, \"name\": \"runner\"}}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let p = Payload::compress(&json);
        assert!(p.as_bytes().len() * 4 < json.len());
        assert_eq!(p.text().unwrap(), json);
        // Read back from storage it decompresses to the same text.
        let stored = Payload::from_stored(p.as_bytes().to_vec());
        assert_eq!(&*stored.shared_text().unwrap(), json);
        assert_eq!(stored, p);
        assert!(Payload::from_stored(b"not zstd".to_vec()).text().is_err());
    }
}
