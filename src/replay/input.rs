//! `events.ndjson`: one delivery per line,
//! `{"received_at": "<RFC 3339>", "event": "workflow_job", "delivery": "<guid>", "payload": {…}}`.

use std::io::BufRead;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One recorded delivery. The payload stays raw JSON text: it is decoded by the same code the
/// daemon decodes deliveries with, and only for the events replay models.
#[derive(Debug, Deserialize, Serialize)]
pub struct RecordedDelivery {
    pub received_at: DateTime<Utc>,
    pub event: String,
    pub delivery: String,
    pub payload: Box<RawValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("cannot read the events file: {0}")]
    Read(#[from] std::io::Error),
}

/// Calls `each` for every delivery in order; blank lines are skipped. Stops at the first line
/// that is not a delivery, naming it.
pub fn read_deliveries(
    reader: impl BufRead,
    mut each: impl FnMut(usize, RecordedDelivery) -> Result<(), InputError>,
) -> Result<usize, InputError> {
    let mut count = 0;
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let delivery: RecordedDelivery =
            serde_json::from_str(&line).map_err(|e| InputError::Line {
                line: line_number,
                message: describe(&e),
            })?;
        each(line_number, delivery)?;
        count += 1;
    }
    Ok(count)
}

fn describe(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof => format!("not JSON: {error}"),
        Category::Data => {
            format!("not a delivery (expected received_at, event, delivery, payload): {error}")
        }
        Category::Io => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<usize, InputError> {
        read_deliveries(text.as_bytes(), |_, _| Ok(()))
    }

    #[test]
    fn names_the_line_that_is_not_json() {
        let good =
            r#"{"received_at":"2026-01-01T00:00:00Z","event":"ping","delivery":"d","payload":{}}"#;
        let text = format!("{good}\n\n{good}\nnot json\n");
        let error = read(&text).unwrap_err().to_string();
        assert!(error.starts_with("line 4: not JSON"), "{error}");
    }

    #[test]
    fn names_the_missing_field() {
        let error = read(r#"{"event":"ping","delivery":"d","payload":{}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 1") && error.contains("received_at"),
            "{error}"
        );
    }
}
