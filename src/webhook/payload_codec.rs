//! Payloads as stored: LZ4-compressed JSON (size-prefixed blocks).
//!
//! A `workflow_job` body is ~7 KB of JSON. Every stored byte goes to the WAL and again to the
//! database file, so bodies are compressed once, in the request handler where the work spreads
//! over all cores. LZ4 rather than zstd: zstd level 1 packs tighter (~1.7 KB against ~2.4 KB)
//! but took ~17 µs a body, the largest single item of the daemon's CPU at full ingest load,
//! where LZ4 takes a few. Payloads written as zstd frames by earlier versions are still read.

use std::sync::Arc;

/// How a zstd frame starts (payloads stored by runnerhub before it switched to LZ4). An LZ4
/// payload starts with its size as 4 little-endian bytes, which never reads as this magic
/// number within the 25 MB cap.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

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
    // A zstd context is ~1 MiB of tables to allocate and clear; reuse one per thread.
    static ZSTD: std::cell::RefCell<zstd::bulk::Decompressor<'static>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().expect("zstd context"));
}

impl Payload {
    pub fn compress(text: &str) -> Payload {
        Payload {
            stored: lz4_flex::compress_prepend_size(text.as_bytes()),
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
        let bytes = if self.stored.starts_with(&ZSTD_MAGIC) {
            self.zstd_bytes()?
        } else {
            self.lz4_bytes()?
        };
        String::from_utf8(bytes).map_err(|e| PayloadCorrupt(e.to_string()))
    }

    fn lz4_bytes(&self) -> Result<Vec<u8>, PayloadCorrupt> {
        // GitHub caps payloads at 25 MB; the bound protects against a corrupt size prefix.
        let size = self
            .stored
            .first_chunk::<4>()
            .map(|b| u32::from_le_bytes(*b) as usize)
            .ok_or_else(|| PayloadCorrupt("shorter than its size prefix".into()))?;
        if size > super::MAX_BODY_BYTES {
            return Err(PayloadCorrupt(format!("size prefix claims {size} bytes")));
        }
        lz4_flex::decompress_size_prepended(&self.stored).map_err(|e| PayloadCorrupt(e.to_string()))
    }

    fn zstd_bytes(&self) -> Result<Vec<u8>, PayloadCorrupt> {
        // The frame header says how big the text is; the cap protects against a corrupt one.
        let size = zstd::zstd_safe::get_frame_content_size(&self.stored)
            .map_err(|_| PayloadCorrupt("not a zstd frame".into()))?
            .ok_or_else(|| PayloadCorrupt("frame without a content size".into()))?;
        if size > super::MAX_BODY_BYTES as u64 {
            return Err(PayloadCorrupt(format!("frame claims {size} bytes")));
        }
        ZSTD.with_borrow_mut(|d| d.decompress(&self.stored, size as usize))
            .map_err(|e| PayloadCorrupt(e.to_string()))
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
        assert!(p.as_bytes().len() * 3 < json.len());
        assert_eq!(p.text().unwrap(), json);
        // Read back from storage it decompresses to the same text.
        let stored = Payload::from_stored(p.as_bytes().to_vec());
        assert_eq!(&*stored.shared_text().unwrap(), json);
        assert_eq!(stored, p);
        assert!(Payload::from_stored(b"not zstd".to_vec()).text().is_err());
        assert!(
            Payload::from_stored(vec![0xff; 16]).text().is_err(),
            "huge size prefix"
        );
        assert!(
            Payload::from_stored(vec![1]).text().is_err(),
            "no size prefix"
        );
    }

    #[test]
    fn reads_payloads_stored_as_zstd_by_earlier_versions() {
        let json = r#"{"zen": "Keep it logically awesome."}"#;
        let old = zstd::bulk::compress(json.as_bytes(), 1).unwrap();
        assert_eq!(Payload::from_stored(old).text().unwrap(), json);
    }
}
