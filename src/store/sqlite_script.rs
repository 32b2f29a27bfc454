//! Transactions sent to SQLite as scripts: `BEGIN IMMEDIATE; …statements…; COMMIT;`.
//!
//! Every sqlx call is a round trip to the connection's worker thread, and on a busy two-core
//! machine each one can wait for a scheduler slice. The write connection is the daemon's
//! bottleneck (ingest, processing and the live log share it), and measured under load a
//! transaction spent more time in those waits than in SQLite. A script costs one round trip
//! for the whole transaction, or two when a later statement needs what an earlier one
//! returned ([`Script::continue_with`]).

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::StoreResult;

/// The one write connection. It is owned, not pooled: sqlx's pool pings a connection on every
/// release, one more round trip per transaction. `script_open` notes that a script has started
/// a transaction that nothing has ended yet; if its caller was dropped halfway, the next user
/// rolls it back before anything else.
pub(super) struct WriteConnection {
    conn: SqliteConnection,
    script_open: bool,
}

impl WriteConnection {
    pub fn new(conn: SqliteConnection) -> Self {
        WriteConnection {
            conn,
            script_open: false,
        }
    }

    /// The connection, for statements that are not scripts; ends an abandoned script first.
    pub async fn ready(&mut self) -> &mut SqliteConnection {
        if self.script_open {
            tracing::warn!("rolling back a write transaction its caller abandoned");
            rollback(&mut self.conn).await;
            self.script_open = false;
        }
        &mut self.conn
    }
}

pub(super) struct Script<'a> {
    query: QueryBuilder<'a, Sqlite>,
    /// Whether sqlx should keep the prepared statements: yes for shapes that recur (ingest
    /// batches), no for one-off shapes that would only push those out of the cache.
    cached: bool,
}

impl<'a> Script<'a> {
    /// A script that opens the transaction.
    pub fn begin(cached: bool) -> Self {
        Script {
            query: QueryBuilder::new("BEGIN IMMEDIATE;"),
            cached,
        }
    }

    /// A script that continues a transaction an earlier script opened.
    pub fn continue_with(cached: bool) -> Self {
        Script {
            query: QueryBuilder::new(""),
            cached,
        }
    }

    /// Appends one statement, written by `build` on the script's builder.
    pub fn add(&mut self, build: impl FnOnce(&mut QueryBuilder<'a, Sqlite>)) -> &mut Self {
        self.query.push(" ");
        build(&mut self.query);
        self.query.push(";");
        self
    }

    /// Runs the statements and leaves the transaction open; returns the rows they returned,
    /// in statement order. On error the transaction is rolled back.
    pub async fn run_open(self, writer: &mut WriteConnection) -> StoreResult<Vec<SqliteRow>> {
        self.run(writer, false).await
    }

    /// Runs the statements and commits; returns the rows they returned. On error the
    /// transaction is rolled back.
    pub async fn commit(mut self, writer: &mut WriteConnection) -> StoreResult<Vec<SqliteRow>> {
        self.query.push(" COMMIT;");
        self.run(writer, true).await
    }

    async fn run(
        mut self,
        writer: &mut WriteConnection,
        commits: bool,
    ) -> StoreResult<Vec<SqliteRow>> {
        let starts = self.query.sql().starts_with("BEGIN");
        if starts {
            writer.ready().await;
        }
        writer.script_open = true;
        let result = self
            .query
            .build()
            .persistent(self.cached)
            .fetch_all(&mut writer.conn)
            .await;
        match result {
            Ok(rows) => {
                writer.script_open = !commits;
                Ok(rows)
            }
            Err(error) => {
                rollback(&mut writer.conn).await;
                writer.script_open = false;
                Err(error.into())
            }
        }
    }
}

/// Ends whatever transaction a failed script left open ("no transaction" is fine too: the
/// failure may have come before BEGIN or from COMMIT itself).
pub(super) async fn rollback(conn: &mut SqliteConnection) {
    if let Err(error) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
        tracing::debug!(%error, "rollback after a failed script");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;

    async fn writer() -> (tempfile::TempDir, WriteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER UNIQUE)")
            .execute(&mut conn)
            .await
            .unwrap();
        (dir, WriteConnection::new(conn))
    }

    async fn count(writer: &mut WriteConnection) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(writer.ready().await)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_script_commits_and_returns_rows_across_two_round_trips() {
        let (_dir, mut w) = writer().await;
        let mut first = Script::begin(true);
        first.add(|q| {
            q.push("INSERT INTO t (v) VALUES (1), (2) RETURNING v");
        });
        assert_eq!(first.run_open(&mut w).await.unwrap().len(), 2);
        let mut second = Script::continue_with(true);
        second.add(|q| {
            q.push("INSERT INTO t (v) VALUES (3)");
        });
        second.commit(&mut w).await.unwrap();
        assert_eq!(count(&mut w).await, 3);
    }

    #[tokio::test]
    async fn a_failing_statement_rolls_back_the_whole_script() {
        let (_dir, mut w) = writer().await;
        let mut script = Script::begin(true);
        script
            .add(|q| {
                q.push("INSERT INTO t (v) VALUES (1)");
            })
            .add(|q| {
                q.push("INSERT INTO t (v) VALUES (1)"); // violates UNIQUE
            });
        assert!(script.commit(&mut w).await.is_err());
        assert_eq!(count(&mut w).await, 0);
        // The connection is usable for the next transaction.
        let mut next = Script::begin(true);
        next.add(|q| {
            q.push("INSERT INTO t (v) VALUES (7)");
        });
        next.commit(&mut w).await.unwrap();
        assert_eq!(count(&mut w).await, 1);
    }

    #[tokio::test]
    async fn a_transaction_left_open_by_a_dropped_caller_is_rolled_back_by_the_next_user() {
        let (_dir, mut w) = writer().await;
        let mut first = Script::begin(true);
        first.add(|q| {
            q.push("INSERT INTO t (v) VALUES (1)");
        });
        first.run_open(&mut w).await.unwrap();
        // The caller goes away without the second script: the next user must not commit it.
        let mut next = Script::begin(true);
        next.add(|q| {
            q.push("INSERT INTO t (v) VALUES (2)");
        });
        next.commit(&mut w).await.unwrap();
        let values: Vec<i64> = sqlx::query_scalar("SELECT v FROM t")
            .fetch_all(w.ready().await)
            .await
            .unwrap();
        assert_eq!(values, vec![2]);
    }
}
