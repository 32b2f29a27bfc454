use http::{HeaderMap, HeaderValue};

use super::*;
use crate::webhook::signature::sign;

fn headers(event: &str, sig: Option<&str>, content_type: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("X-GitHub-Event", HeaderValue::from_str(event).unwrap());
    h.insert("X-GitHub-Delivery", HeaderValue::from_static("d-1"));
    h.insert("Content-Type", HeaderValue::from_str(content_type).unwrap());
    if let Some(sig) = sig {
        h.insert("X-Hub-Signature-256", HeaderValue::from_str(sig).unwrap());
    }
    h
}

fn secrets() -> Vec<Secret> {
    vec![Secret::new("topsecret")]
}

#[test]
fn accepts_signed_json_and_extracts_envelope() {
    let body = br#"{"action":"queued","repository":{"full_name":"o/r"}}"#;
    let h = headers(
        "workflow_job",
        Some(&sign("topsecret", body)),
        "application/json; charset=utf-8",
    );
    let d = check(&h, body, &secrets(), false, Utc::now()).unwrap();
    assert_eq!(d.action.as_deref(), Some("queued"));
    assert_eq!(d.repository.as_deref(), Some("o/r"));
    assert!(d.signature_valid && d.settled.is_none());
}

#[test]
fn form_body_is_signed_raw_and_carries_json_in_payload() {
    let json = r#"{"action":"queued","repository":{"full_name":"o/r"}}"#;
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", json)
        .finish();
    let h = headers(
        "workflow_job",
        Some(&sign("topsecret", body.as_bytes())),
        "application/x-www-form-urlencoded",
    );
    let d = check(&h, body.as_bytes(), &secrets(), false, Utc::now()).unwrap();
    assert_eq!(d.payload.text().unwrap(), json);
}

#[test]
fn bad_signature_is_refused_but_recorded_truncated() {
    let body = vec![b'x'; UNVERIFIED_BODY_KEEP_BYTES * 2];
    let h = headers("push", Some(&sign("wrong", &body)), "application/json");
    let (why, attempt) = check(&h, &body, &secrets(), false, Utc::now()).unwrap_err();
    assert_eq!(why, Rejection::Signature(SignatureError::Mismatch));
    let attempt = attempt.unwrap();
    assert!(!attempt.signature_valid);
    assert_eq!(
        attempt.payload.text().unwrap().len(),
        UNVERIFIED_BODY_KEEP_BYTES
    );
}

#[test]
fn missing_headers_and_bad_content_type_name_the_problem() {
    let body = b"{}";
    let mut h = headers("push", Some(&sign("topsecret", body)), "application/json");
    h.remove("X-GitHub-Delivery");
    let (why, _) = check(&h, body, &secrets(), false, Utc::now()).unwrap_err();
    assert_eq!(why.to_string(), "missing X-GitHub-Delivery header");
    let h = headers("push", Some(&sign("topsecret", body)), "text/plain");
    let (why, _) = check(&h, body, &secrets(), false, Utc::now()).unwrap_err();
    assert_eq!(why.code(), "UNSUPPORTED_MEDIA_TYPE");
}

#[test]
fn malformed_json_and_unknown_events() {
    let body = b"{not json";
    let h = headers("push", Some(&sign("topsecret", body)), "application/json");
    let (why, attempt) = check(&h, body, &secrets(), false, Utc::now()).unwrap_err();
    assert_eq!(why.code(), "MALFORMED_PAYLOAD");
    assert!(attempt.is_none());
    let body = b"{}";
    let h = headers("issues", Some(&sign("topsecret", body)), "application/json");
    let d = check(&h, body, &secrets(), false, Utc::now()).unwrap();
    assert!(matches!(d.settled, Some(Settled::Ignored(_))));
}

#[test]
fn unsigned_only_when_allowed_and_no_secret() {
    let body = b"{}";
    let h = headers("ping", None, "application/json");
    assert!(check(&h, body, &[], true, Utc::now()).is_ok());
    assert!(check(&h, body, &[], false, Utc::now()).is_err());
    assert!(check(&h, body, &secrets(), true, Utc::now()).is_err());
}

#[test]
fn a_job_with_too_many_or_too_long_labels_is_recorded_but_refused_for_scheduling() {
    let job = |labels: Vec<String>| {
        serde_json::json!({
            "action": "queued", "repository": {"full_name": "o/r"},
            "workflow_job": {"id": 1, "labels": labels},
        })
        .to_string()
    };
    let many: Vec<String> = (0..101).map(|i| format!("l{i}")).collect();
    for (body, needle) in [
        (job(many), "101 labels"),
        (job(vec!["x".repeat(300)]), "300 bytes"),
    ] {
        let h = headers(
            "workflow_job",
            Some(&sign("topsecret", body.as_bytes())),
            "application/json",
        );
        let d = check(&h, body.as_bytes(), &secrets(), false, Utc::now()).unwrap();
        match d.settled {
            Some(Settled::Ignored(why)) => {
                assert!(why.starts_with("refused for scheduling"), "{why}");
                assert!(why.contains(needle), "{why}");
            }
            other => panic!("not refused: {other:?}"),
        }
    }
    let fine = job(vec!["self-hosted".into(), "linux".into()]);
    let h = headers(
        "workflow_job",
        Some(&sign("topsecret", fine.as_bytes())),
        "application/json",
    );
    assert!(
        check(&h, fine.as_bytes(), &secrets(), false, Utc::now())
            .unwrap()
            .settled
            .is_none()
    );
}

proptest::proptest! {
    /// The fuzz target's property (fuzz/fuzz_targets/webhook_intake.rs) on every test run:
    /// whatever headers and body arrive, the intake accepts or refuses with a 4xx.
    #[test]
    fn any_request_is_accepted_or_refused_with_a_4xx(
        event in "[a-z_]{0,20}|workflow_job|ping|\\PC{0,10}",
        delivery in "[a-f0-9-]{0,40}|\\PC{0,10}",
        content_type in "application/json|application/x-www-form-urlencoded|\\PC{0,20}",
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        json_body in "\\{\"action\":\"(queued|completed)\",\"workflow_job\":\\{\"labels\":\\[(\"[a-z]{0,300}\",?){0,3}\\]\\}\\}",
        signed in proptest::bool::ANY,
        use_json in proptest::bool::ANY,
    ) {
        let body = if use_json { json_body.into_bytes() } else { body };
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("Content-Type", content_type),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                h.insert(name, value);
            }
        }
        if signed {
            h.insert("X-Hub-Signature-256", HeaderValue::from_str(&sign("topsecret", &body)).unwrap());
        }
        match check_head(&h, &secrets(), false, Utc::now()) {
            Err((rejection, _)) => proptest::prop_assert!(rejection.status().is_client_error()),
            Ok(()) => {
                if let Err((rejection, _)) = check(&h, &body, &secrets(), false, Utc::now()) {
                    proptest::prop_assert!(rejection.status().is_client_error());
                }
            }
        }
    }
}
