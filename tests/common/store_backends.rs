//! Both store backends for the contract test: a fresh SQLite file, and a fresh PostgreSQL
//! database created on the server `RUNNERHUB_TEST_POSTGRES_URL` names, dropped afterwards. One
//! database per test, so that tests run in parallel.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use runnerhub::store::{InsertOutcome, Store};

pub const POSTGRES_URL_VAR: &str = "RUNNERHUB_TEST_POSTGRES_URL";

/// The server's URL. Unset is a failure, never a skip: a contract test that silently passes
/// without PostgreSQL would claim what it did not check.
pub fn postgres_server_url() -> String {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{POSTGRES_URL_VAR} is not set: the PostgreSQL half of the store contract cannot run. \
             Run `.ci/postgres start` and export the URL it prints, e.g. \
             `export {POSTGRES_URL_VAR}=$(.ci/postgres start)`"
        ),
    }
}

/// `url` with its database (the path) replaced by `database`; the query string stays.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = base
        .split_once("://")
        .unwrap_or_else(|| panic!("{POSTGRES_URL_VAR} is not a URL: {url}"));
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A database of its own on the test server; [`TestDatabase::drop_now`] removes it.
pub struct TestDatabase {
    server: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let server = postgres_server_url();
        let name = format!("rh_test_{}", uuid::Uuid::new_v4().simple());
        admin(&server, &format!("CREATE DATABASE {name}")).await;
        let url = with_database(&server, &name);
        TestDatabase { server, name, url }
    }

    pub async fn drop_now(self) {
        // FORCE: the store's pool may still hold connections (or a panicking scenario left
        // them); they go with the database.
        admin(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

async fn admin(server: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to the PostgreSQL test server {} ({POSTGRES_URL_VAR}): {e}; \
                 is `.ci/postgres start` running?",
                runnerhub::config::redact_url_password(server)
            )
        });
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
}

/// What a scenario saw, labelled, to compare the backends entry by entry.
///
/// Event ids are the one thing allowed to differ: both backends hand them out in arrival order,
/// but SQLite spends one on a duplicate inside a batch and PostgreSQL does not (and a
/// PostgreSQL sequence may skip after a rollback). Ids named by [`Observed::event_ids`] are
/// shown as their rank (`#0`, `#1`, …) wherever a value prints an `id` field.
#[derive(Default)]
pub struct Observed {
    entries: Vec<(String, String)>,
    ranks: HashMap<i64, usize>,
}

impl Observed {
    pub fn note(&mut self, label: &str, value: &impl Debug) {
        let text = format!("{value:#?}")
            .lines()
            .map(|line| self.ranked(line))
            .collect::<Vec<_>>()
            .join("\n");
        self.entries.push((label.to_owned(), text));
    }

    /// Names the event ids these outcomes stored, in order, before they are noted.
    pub fn event_ids(&mut self, outcomes: &[InsertOutcome]) {
        for outcome in outcomes {
            if let InsertOutcome::Stored { id } = outcome {
                let rank = self.ranks.len();
                self.ranks.entry(*id).or_insert(rank);
            }
        }
    }

    /// `id: 7,` → `id: #2,` for a named event id; anything else unchanged.
    fn ranked(&self, line: &str) -> String {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let id = trimmed
            .strip_prefix("id: ")
            .and_then(|rest| rest.strip_suffix(','))
            .and_then(|n| n.parse::<i64>().ok());
        match id.and_then(|id| self.ranks.get(&id)) {
            Some(rank) => format!("{indent}id: #{rank},"),
            None => line.to_owned(),
        }
    }
}

/// Runs `scenario` on a fresh SQLite store, then on a fresh PostgreSQL store, and fails
/// unless both saw the same. Each store is opened through `runnerhub::app::open_store`, the
/// daemon's own path (scheme dispatch and migrations). The scenario's own assertions run on
/// both; a panic in either fails the test, and the PostgreSQL database is dropped regardless.
pub async fn on_both_backends<F, Fut>(scenario: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = Observed> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("store.db").display());
    let sqlite = runnerhub::app::open_store(&sqlite_url).await.unwrap();
    let on_sqlite = unwind(tokio::spawn(scenario(sqlite)).await);

    let database = TestDatabase::create().await;
    let result = match runnerhub::app::open_store(&database.url).await {
        Ok(postgres) => tokio::spawn(scenario(postgres)).await,
        Err(error) => {
            database.drop_now().await;
            panic!("cannot open the PostgreSQL store: {error:#}");
        }
    };
    database.drop_now().await;
    let on_postgres = unwind(result);
    assert_same(&on_sqlite, &on_postgres);
}

fn unwind<T>(result: Result<T, tokio::task::JoinError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("scenario task: {error}"),
    }
}

fn assert_same(sqlite: &Observed, postgres: &Observed) {
    for (i, (lite, pg)) in sqlite.entries.iter().zip(&postgres.entries).enumerate() {
        assert_eq!(lite.0, pg.0, "observation {i}: the scenarios diverged");
        assert!(
            lite.1 == pg.1,
            "`{}` differs between the backends\n--- sqlite:\n{}\n--- postgres:\n{}",
            lite.0,
            lite.1,
            pg.1
        );
    }
    assert_eq!(
        sqlite.entries.len(),
        postgres.entries.len(),
        "the backends made a different number of observations"
    );
}
