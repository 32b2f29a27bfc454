//! `/readyz` tells the truth when deliveries cannot be stored although the database answers
//! (a read-only database, a full disk): not ready while writes fail, ready again at once when
//! they succeed.

mod common;

#[path = "common/store_backends.rs"]
mod store_backends;

use std::time::Duration;

use common::*;
use sqlx::Connection;

/// Ends the daemon's pooled sessions (not the serving lock's), so that they reconnect with the
/// database's current defaults.
async fn reconnect_pool(admin: &mut sqlx::PgConnection, database: &str) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid() \
           AND application_name NOT LIKE 'runnerhub %'",
    )
    .bind(database)
    .execute(&mut *admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn postgresql_a_read_only_database_makes_the_daemon_unready_until_writes_succeed() {
    let db = store_backends::TestDatabase::create().await;
    let app = spawn_app_with(test_config_on_database(&db.url)).await;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let readyz = async |app: &TestApp| {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(readyz(&app).await.0, 200);

    let read_only = format!(
        "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
        db.name
    );
    sqlx::query(&read_only).execute(&mut admin).await.unwrap();
    reconnect_pool(&mut admin, &db.name).await;
    let body = job_payload(8301, "queued", &["self-hosted", "linux"]);
    let mut refused = None;
    for n in 0..20 {
        let r = app.deliver("workflow_job", &format!("ro-{n}"), &body).await;
        if r.status() == 503 {
            refused = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused.is_some(), "a read-only database still acknowledged");
    let (status, text) = readyz(&app).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("writes_failing"), "{text}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("runnerhub_ingest_writes_failing 1"),
        "{metrics}"
    );

    let writable = format!(
        "ALTER DATABASE \"{}\" RESET default_transaction_read_only",
        db.name
    );
    sqlx::query(&writable).execute(&mut admin).await.unwrap();
    reconnect_pool(&mut admin, &db.name).await;
    let mut stored = false;
    for n in 0..20 {
        let r = app.deliver("workflow_job", &format!("rw-{n}"), &body).await;
        if r.status().is_success() {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "writes did not recover");
    let (status, text) = readyz(&app).await;
    assert_eq!(status, 200, "ready again once a write succeeded: {text}");
    app.stop().await;
    admin.close().await.unwrap();
    db.drop_now().await;
}
