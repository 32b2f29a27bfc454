//! A second daemon on a database another one serves from refuses to start, and says who holds
//! it: both would launch a runner for every job. Once the first is gone, the database is free.

mod common;

#[path = "common/store_backends.rs"]
mod store_backends;

use std::time::Duration;

use common::*;
use runnerhub::config::Config;
use runnerhub::webhook::intake::NewDelivery;
use runnerhub::webhook::payload_codec::Payload;
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

/// The lock is on the file, not on the name: a second daemon given a symlink to the database
/// (or to its directory) is refused just the same, and told who holds it.
#[tokio::test]
async fn sqlite_a_second_daemon_through_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config_without_pools(dir.path());
    let first = spawn_app_with(config.clone()).await;
    let linked = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(dir.path(), linked.path().join("dir")).unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("runnerhub.db"),
        linked.path().join("file.db"),
    )
    .unwrap();
    for path in ["dir/runnerhub.db", "file.db"] {
        let mut second = config.clone();
        second.database.url = format!("sqlite://{}", linked.path().join(path).display());
        second.server.instance_id = "second".into();
        let error = second_daemon_error(second).await;
        assert!(
            error.contains("another runnerhub serves from it")
                && error.contains(&config.server.instance_id),
            "through {path}: {error}"
        );
    }
    first.stop().await;
}

/// The database's directory removed while the daemon runs: SQLite would go on committing into
/// the unlinked files, and every acknowledgement would be lost at the next start. Within two
/// seconds, deliveries are refused (503) and the daemon is not ready.
#[tokio::test]
async fn sqlite_a_removed_database_stops_acknowledgements_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_app_with(test_config_without_pools(dir.path())).await;
    let body = job_payload(8101, "queued", &["self-hosted", "linux"]);
    let acked = first.deliver("workflow_job", "gone-0", &body).await;
    assert!(acked.status().is_success(), "{}", acked.status());

    std::fs::remove_dir_all(dir.path()).unwrap();
    let removed = tokio::time::Instant::now();
    let deadline = removed + Duration::from_secs(2);
    let mut n = 0;
    loop {
        n += 1;
        let body = job_payload(8101 + n, "queued", &["self-hosted", "linux"]);
        let delivery = first
            .deliver("workflow_job", &format!("gone-{n}"), &body)
            .await;
        let ready = first.client.get(first.url("/readyz")).send().await.unwrap();
        if delivery.status() == 503 && ready.status() == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {} / ready {} {:?} after the database was removed",
            delivery.status(),
            ready.status(),
            removed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And it stays that way: nothing more is acknowledged into the unlinked file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = job_payload(8199, "queued", &["self-hosted", "linux"]);
    let refused = first.deliver("workflow_job", "gone-last", &body).await;
    assert_eq!(refused.status(), 503);
    first.shutdown.cancel();
    let _ = first.task.await;
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

/// A standby waits while the first daemon serves (answering nothing), then takes over when it
/// stops and processes what was stored meanwhile.
async fn a_standby_takes_over_when_the_first_stops(config: Config) {
    let first = spawn_app_with(config.clone()).await;
    let mut standby_config = config.clone();
    standby_config.database.standby = true;
    standby_config.server.instance_id = format!("{}-standby", config.server.instance_id);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let standby_addr = listener.local_addr().unwrap();
    let stop_standby = CancellationToken::new();
    let standby = tokio::spawn(runnerhub::app::run(
        standby_config,
        listener,
        stop_standby.clone(),
    ));

    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let readyz = format!("http://{standby_addr}/readyz");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !standby.is_finished(),
        "the standby gave up instead of waiting"
    );
    assert!(
        client.get(&readyz).send().await.is_err(),
        "a standby must not answer while the first daemon serves"
    );

    let body = job_payload(8001, "queued", &["self-hosted", "linux"]);
    let acked = first.deliver("workflow_job", "standby-1", &body).await;
    assert!(acked.status().is_success(), "{}", acked.status());
    first.stop().await;
    // What GitHub delivered to another instance meanwhile, or a crash left unprocessed.
    let store = runnerhub::app::open_store(&config.database.url)
        .await
        .unwrap();
    let body = job_payload(8002, "queued", &["self-hosted", "linux"]);
    store
        .insert_deliveries(&[NewDelivery {
            delivery_id: "standby-2".into(),
            event: "workflow_job".into(),
            action: Some("queued".into()),
            repository: Some("Codertocat/Hello-World".into()),
            payload: Payload::compress(std::str::from_utf8(&body).unwrap()),
            signature_valid: true,
            received_at: chrono::Utc::now(),
            settled: None,
        }])
        .await
        .unwrap();
    drop(store);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(&readyz).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby did not take over within 20 s of the first daemon stopping"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in [8001, 8002] {
        let url = format!("http://{standby_addr}/api/jobs/{id}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} not known to the daemon that took over"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop_standby.cancel();
    standby.await.unwrap().unwrap();
}

#[tokio::test]
async fn sqlite_a_standby_takes_over_when_the_first_stops() {
    let dir = tempfile::tempdir().unwrap();
    a_standby_takes_over_when_the_first_stops(test_config_without_pools(dir.path())).await;
}

#[tokio::test]
async fn postgresql_a_standby_takes_over_when_the_first_stops() {
    let db = store_backends::TestDatabase::create().await;
    a_standby_takes_over_when_the_first_stops(test_config_on_database(&db.url)).await;
    db.drop_now().await;
}
