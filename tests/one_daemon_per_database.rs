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
