//! A second daemon on a database another one serves from refuses to start, and says who holds
//! it: both would launch a runner for every job. Once the first is gone, the database is free.

mod common;

#[path = "common/store_backends.rs"]
mod store_backends;

use std::time::Duration;

use common::*;
use runnerhub::config::Config;
use tokio_util::sync::CancellationToken;

/// Runs a second daemon with `config` and returns the error it stopped with.
async fn second_daemon_error(config: Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = runnerhub::app::run(config, listener, CancellationToken::new());
    match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Err(error)) => format!("{error:#}"),
        Ok(Ok(())) => panic!("the second daemon ran and stopped without an error"),
        Err(_) => panic!("the second daemon started serving from a database in use"),
    }
}

async fn refused_while_the_first_serves_then_free(config: Config) {
    let first = spawn_app_with(config.clone()).await;
    let error = second_daemon_error(config.clone()).await;
    assert!(
        error.contains("another runnerhub serves from it"),
        "unclear refusal: {error}"
    );
    assert!(
        error.contains(&config.server.instance_id),
        "the refusal does not name the holder: {error}"
    );
    // The first one is untouched by the attempt.
    let health = first.get_json("/readyz").await;
    assert_eq!(health["status"], "ready", "{health}");
    first.stop().await;

    let second = spawn_app_with(config).await;
    second.stop().await;
}

#[tokio::test]
async fn sqlite_a_second_daemon_is_refused_until_the_first_stops() {
    let dir = tempfile::tempdir().unwrap();
    refused_while_the_first_serves_then_free(test_config_without_pools(dir.path())).await;
}

#[tokio::test]
async fn postgresql_a_second_daemon_is_refused_until_the_first_stops() {
    let db = store_backends::TestDatabase::create().await;
    refused_while_the_first_serves_then_free(test_config_on_database(&db.url)).await;
    db.drop_now().await;
}

#[tokio::test]
async fn postgresql_a_daemon_that_loses_its_database_to_another_stops() {
    use sqlx::Connection;
    let db = store_backends::TestDatabase::create().await;
    let config = test_config_on_database(&db.url);
    let first = spawn_app_with(config.clone()).await;

    // The lock's session dies (a server restart, a network cut) and someone else takes the
    // database before the first daemon can take it back.
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let holder = format!("runnerhub {}", config.server.instance_id);
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(&holder)
    .fetch_all(&mut other)
    .await
    .unwrap();
    assert_eq!(ended, vec![true], "the lock's session, found by its name");
    // Termination is a signal: the session lets go of the lock as it exits, shortly after.
    let mut taken = false;
    for _ in 0..100 {
        taken = sqlx::query_scalar("SELECT pg_try_advisory_lock(1920298600)")
            .fetch_one(&mut other)
            .await
            .unwrap();
        if taken {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(taken, "free once its session ended");

    // The first daemon notices at its next check (every 10 s) and stops by itself.
    let stopped = tokio::time::timeout(Duration::from_secs(40), first.task).await;
    let result = stopped.expect("the daemon kept serving from a database another one holds");
    result.unwrap().unwrap();
    other.close().await.unwrap();
    db.drop_now().await;
}
