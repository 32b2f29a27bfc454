//! The `RecoveryStore` contract (DESIGN §12) on SQLite and PostgreSQL: known hooks, redelivery
//! asks, which GUIDs the audit log holds, the dead-letter filter and its retry. Needs
//! `RUNNERHUB_TEST_POSTGRES_URL` like `tests/store_contract.rs`.

#[path = "common/store_backends.rs"]
mod backends;
#[path = "common/store_fixtures.rs"]
mod fixtures;

use backends::{Observed, on_both_backends};
use fixtures::*;
use runnerhub::store::*;

fn hook(kind: &str, owner: &str, id: i64, source: &str, ms: i64) -> KnownHook {
    KnownHook {
        kind: kind.into(),
        owner: owner.into(),
        hook_id: id,
        source: source.into(),
        first_seen_at: at(ms),
    }
}

#[tokio::test]
async fn hooks_are_known_once_and_installed_wins() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        store
            .record_hook(&hook("repository", "octo/app", 7, "received", 0))
            .await
            .unwrap();
        store
            .record_hook(&hook("repository", "octo/app", 7, "installed", 5))
            .await
            .unwrap();
        store
            .record_hook(&hook("repository", "octo/app", 7, "received", 9))
            .await
            .unwrap();
        store
            .record_hook(&hook("integration", "", 0, "installed", 3))
            .await
            .unwrap();
        let known = store.known_hooks().await.unwrap();
        assert_eq!(
            known,
            vec![
                hook("repository", "octo/app", 7, "installed", 0),
                hook("integration", "", 0, "installed", 3),
            ]
        );
        seen.note("known", &known);
        store
            .forget_hook("repository", "octo/app", 7)
            .await
            .unwrap();
        assert_eq!(store.known_hooks().await.unwrap().len(), 1);
        seen
    })
    .await;
}

#[tokio::test]
async fn asks_are_kept_per_guid_and_only_genuine_deliveries_count() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let outcomes = store
            .insert_deliveries(&[
                genuine("g-1", 0),
                delivery("g-2", false, 1, "octo/app", "push"),
            ])
            .await
            .unwrap();
        seen.event_ids(&outcomes);
        let guids = ["g-1", "g-2", "g-3"].map(String::from).to_vec();
        let stored = store.stored_delivery_guids(&guids).await.unwrap();
        // g-2 was refused (401): still missing, so it is redelivered.
        assert_eq!(stored, ["g-1".to_owned()].into_iter().collect());

        let ask = RedeliveryAsk {
            delivery_guid: "g-2".into(),
            kind: "repository".into(),
            owner: "octo/app".into(),
            hook_id: 7,
            event: "push".into(),
            action: None,
            asks: 1,
            attempt_id: 41,
            first_asked_at: at(10),
            last_asked_at: at(10),
            next_ask_at: Some(at(20)),
            recovered_at: None,
        };
        store.save_redelivery_ask(&ask).await.unwrap();
        let again = RedeliveryAsk {
            asks: 2,
            attempt_id: 43,
            last_asked_at: at(30),
            next_ask_at: Some(at(50)),
            ..ask.clone()
        };
        store.save_redelivery_ask(&again).await.unwrap();
        assert_eq!(
            store.redelivery_asks(&guids).await.unwrap(),
            vec![again.clone()]
        );
        assert_eq!(
            store.unrecovered_redelivery_asks(at(0)).await.unwrap(),
            vec![again.clone()]
        );
        assert!(
            store
                .unrecovered_redelivery_asks(at(31))
                .await
                .unwrap()
                .is_empty()
        );
        let recovered = RedeliveryAsk {
            recovered_at: Some(at(60)),
            next_ask_at: None,
            ..again
        };
        store.save_redelivery_ask(&recovered).await.unwrap();
        assert!(
            store
                .unrecovered_redelivery_asks(at(0))
                .await
                .unwrap()
                .is_empty()
        );
        seen.note("asks", &store.redelivery_asks(&guids).await.unwrap());
        seen
    })
    .await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_retried() {
    on_both_backends(|store| async move {
        let mut seen = Observed::default();
        let outcomes = store
            .insert_deliveries(&[
                genuine("dead", 0),
                genuine("retrying", 1),
                genuine("fine", 2),
            ])
            .await
            .unwrap();
        seen.event_ids(&outcomes);
        let [dead, retrying, fine] = [0, 1, 2].map(|i| stored_id(&outcomes[i]));
        let failed = |retry_at| DeliveryOutcome::Failed {
            error: "database unavailable".into(),
            retry_at,
        };
        store
            .commit_processing(&ProcessingBatch {
                deliveries: vec![
                    processed(dead, failed(None), 5, 10),
                    processed(retrying, failed(Some(at(100_000))), 2, 10),
                    processed(fine, DeliveryOutcome::Processed("ok".into()), 1, 10),
                ],
                ..Default::default()
            })
            .await
            .unwrap();
        let list = |outcome: &str| EventFilter {
            outcome: Some(outcome.into()),
            ..Default::default()
        };
        let ids_of = |page: Page<EventRecord>| ids(&page.items, |e| e.id);
        assert_eq!(
            ids_of(store.list_events(&list("failed")).await.unwrap()),
            vec![dead]
        );
        assert_eq!(
            ids_of(store.list_events(&list("pending")).await.unwrap()),
            vec![retrying]
        );
        assert_eq!(
            ids_of(store.list_events(&list("processed")).await.unwrap()),
            vec![fine]
        );

        assert_eq!(
            store.retry_dead_letter(dead).await.unwrap(),
            DeadLetterRetry::Queued
        );
        assert!(
            store
                .list_events(&list("failed"))
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let due = store.due_deliveries(chrono::Utc::now(), 10).await.unwrap();
        let due_dead = due.iter().find(|d| d.id == dead).expect("queued again");
        assert_eq!(due_dead.attempts, 0, "a fresh round of attempts");
        assert_eq!(
            store.retry_dead_letter(fine).await.unwrap(),
            DeadLetterRetry::NotFailed("processed".into())
        );
        assert_eq!(
            store.retry_dead_letter(retrying).await.unwrap(),
            DeadLetterRetry::NotFailed("pending".into())
        );
        assert_eq!(
            store.retry_dead_letter(999_999).await.unwrap(),
            DeadLetterRetry::NotFound
        );
        seen
    })
    .await;
}
