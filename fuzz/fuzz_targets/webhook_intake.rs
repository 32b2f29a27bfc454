//! The webhook intake, headers and body as anyone on the internet may send them: each request
//! is accepted or refused with a 4xx, never a panic. A signed share of the inputs reaches the
//! JSON checks and the payload decoding the processor does after.
//!
//! Input: header lines (`Name: value`, one per `\n`), a blank line, the body. The first byte
//! chooses how the request is signed: correctly over the body, not at all, or as written.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use runnerhub::config::Secret;
use runnerhub::webhook::intake::{self, Settled};
use runnerhub::webhook::{payload, signature};

const SECRET: &str = "fuzz-secret";

fn headers(text: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in text.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let split = rest.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, &[][..]),
    };
    let mut headers = headers(head);
    match mode % 3 {
        0 => {
            let signed = signature::sign(SECRET, body);
            headers.insert(
                "x-hub-signature-256",
                HeaderValue::from_str(&signed).unwrap(),
            );
        }
        1 => {
            headers.remove("x-hub-signature-256");
        }
        _ => {}
    }
    let secrets = [Secret::new(SECRET)];
    let allow_unsigned = mode & 0x80 != 0;
    let secrets: &[Secret] = if allow_unsigned { &[] } else { &secrets };
    let now = chrono::Utc::now();
    if let Err((rejection, _)) = intake::check_head(&headers, secrets, allow_unsigned, now) {
        assert!(rejection.status().is_client_error(), "{rejection:?}");
        return;
    }
    match intake::check(&headers, body, secrets, allow_unsigned, now) {
        Ok(delivery) => {
            let json = delivery
                .payload
                .text()
                .expect("a stored payload reads back");
            // What the processor does next with an accepted delivery: errors, never panics.
            if delivery.settled.is_none() {
                match delivery.event.as_str() {
                    "workflow_job" => drop(payload::workflow_job(&json)),
                    "workflow_run" => drop(payload::workflow_run(&json)),
                    _ => {}
                }
            } else if let Some(Settled::Rejected(why)) = &delivery.settled {
                panic!("accepted yet rejected: {why}");
            }
        }
        Err((rejection, attempt)) => {
            assert!(rejection.status().is_client_error(), "{rejection:?}");
            if let Some(attempt) = attempt {
                assert!(!attempt.signature_valid);
                assert!(attempt.payload.text().is_ok());
            }
        }
    }
});
