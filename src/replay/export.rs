//! `runnerhub events export`: the audit log's signature-valid deliveries as `events.ndjson`
//! (DESIGN §11), oldest first, streamed row by row. The database is opened read-only and its
//! schema is not touched (no migration), so exporting from a live daemon's database is safe.

use std::io::Write;
use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{Connection, Row};

use crate::webhook::payload_codec::Payload;

/// One line of `events.ndjson` ([`super::input::RecordedDelivery`] as written).
#[derive(serde::Serialize)]
struct ExportedDelivery {
    received_at: DateTime<Utc>,
    event: String,
    delivery: String,
    payload: serde_json::Value,
}

/// The time window of an export; both ends optional, `until` exclusive.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

const SQLITE_QUERY: &str = "SELECT e.delivery_id, e.event, e.received_at, p.payload \
     FROM webhook_events e JOIN webhook_payloads p ON p.event_id = e.id \
     WHERE e.signature_valid = 1 AND e.received_at >= ? AND e.received_at < ? ORDER BY e.id";
const POSTGRES_QUERY: &str = "SELECT e.delivery_id, e.event, e.received_at, p.payload \
     FROM webhook_events e JOIN webhook_payloads p ON p.event_id = e.id \
     WHERE e.signature_valid AND e.received_at >= $1 AND e.received_at < $2 ORDER BY e.id";

/// A connection that cannot write: SQLite opened read-only, PostgreSQL in read-only sessions.
pub enum ReadOnlyDatabase {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl ReadOnlyDatabase {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let shown = crate::config::redact_url_password(url);
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .with_context(|| format!("database.url {shown}"))?
                .read_only(true)
                .create_if_missing(false);
            let conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .with_context(|| format!("cannot open database {shown} read-only"))?;
            Ok(ReadOnlyDatabase::Sqlite(conn))
        } else {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .with_context(|| format!("cannot connect to database {shown}"))?;
            sqlx::query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                .execute(&mut conn)
                .await?;
            Ok(ReadOnlyDatabase::Postgres(conn))
        }
    }

    /// Writes every delivery in `window` to `out`; returns how many.
    pub async fn export(&mut self, window: Window, out: &mut impl Write) -> anyhow::Result<u64> {
        // Four-digit years: SQLite compares the stored times as text, and chrono's MIN/MAX
        // would be written with a sign and six digits.
        let since = window.since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let until = window
            .until
            .unwrap_or_else(|| "9999-12-31T23:59:59Z".parse().expect("a valid time"));
        let mut written = 0u64;
        match self {
            ReadOnlyDatabase::Sqlite(conn) => {
                let mut rows = sqlx::query(SQLITE_QUERY)
                    .bind(since)
                    .bind(until)
                    .fetch(conn);
                while let Some(row) = rows.try_next().await.context("reading the audit log")? {
                    write_row(&row, out)?;
                    written += 1;
                }
            }
            ReadOnlyDatabase::Postgres(conn) => {
                let mut rows = sqlx::query(POSTGRES_QUERY)
                    .bind(since)
                    .bind(until)
                    .fetch(conn);
                while let Some(row) = rows.try_next().await.context("reading the audit log")? {
                    write_row(&row, out)?;
                    written += 1;
                }
            }
        }
        out.flush()?;
        Ok(written)
    }

    /// The median launch → online of the most recent runners that came online, if any did.
    /// Online is when the daemon saw the runner idle, or busy for one that took a job at once:
    /// a runner launched for a waiting job is handed it as it connects, and is never seen idle.
    pub async fn median_boot_time(&mut self) -> anyhow::Result<Option<std::time::Duration>> {
        let pairs: Vec<(DateTime<Utc>, DateTime<Utc>)> = match self {
            ReadOnlyDatabase::Sqlite(conn) => sqlx::query_as(BOOT_QUERY).fetch_all(conn).await?,
            ReadOnlyDatabase::Postgres(conn) => sqlx::query_as(BOOT_QUERY).fetch_all(conn).await?,
        };
        let mut ms: Vec<i64> = pairs
            .iter()
            .map(|(launched, online)| (*online - *launched).num_milliseconds().max(0))
            .collect();
        ms.sort_unstable();
        Ok(ms
            .get(ms.len() / 2)
            .map(|m| std::time::Duration::from_millis(*m as u64)))
    }
}

const BOOT_QUERY: &str = "SELECT created_at, COALESCE(idle_at, busy_at) FROM runners \
     WHERE COALESCE(idle_at, busy_at) IS NOT NULL ORDER BY created_at DESC LIMIT 10000";

fn write_row<R: Row>(row: &R, out: &mut impl Write) -> anyhow::Result<()>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let delivery: String = row.try_get("delivery_id")?;
    let stored: Vec<u8> = row.try_get("payload")?;
    let text = Payload::from_stored(stored)
        .text()
        .with_context(|| format!("delivery {delivery}: stored payload unreadable"))?;
    // Parsed and written again: the stored body is GitHub's raw text, which may span lines.
    let payload: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("delivery {delivery}: stored payload is not JSON"))?;
    let record = ExportedDelivery {
        received_at: row.try_get("received_at")?,
        event: row.try_get("event")?,
        delivery,
        payload,
    };
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n")?;
    Ok(())
}
