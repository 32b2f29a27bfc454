//! The decisions of redelivery, without IO: which listed deliveries failed, and for each one
//! the audit log lacks, whether to ask GitHub now, wait, or give up.
//!
//! GitHub lists every attempt of a delivery under its GUID, each with its own id (ids grow).
//! A GUID none of whose attempts succeeded has failed. An ask is answered by a new attempt: one
//! above the attempt id noted at the ask. So a GUID is asked again only once GitHub's answer
//! to the previous ask failed too (or never came, after [`ASK_LOST_AFTER`]), never merely
//! because the redelivery has not arrived yet.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::github::HookDelivery;
use crate::store::RedeliveryAsk;

/// GitHub redelivers deliveries of the last 3 days; a little less, so that an ask never
/// races the deadline.
pub const WINDOW: TimeDelta = TimeDelta::minutes(3 * 24 * 60 - 10);
/// A delivery is asked at most this many times.
pub const MAX_ASKS: i64 = 5;
/// An ask with no new attempt listed after this long is taken as lost.
pub const ASK_LOST_AFTER: TimeDelta = TimeDelta::minutes(30);
/// Longest wait between two asks of one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A delivery whose every listed attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    /// The newest attempt: the one to redeliver, and the mark an answer must pass.
    pub latest_attempt_id: i64,
    /// The oldest attempt listed (the original delivery, when the listing reaches it).
    pub first_delivered_at: DateTime<Utc>,
}

/// The failed deliveries among `attempts`, oldest first.
pub fn failed_deliveries(attempts: &[HookDelivery]) -> Vec<Failed> {
    let mut by_guid: BTreeMap<&str, (bool, &HookDelivery, &HookDelivery)> = BTreeMap::new();
    for attempt in attempts {
        let entry = by_guid
            .entry(attempt.guid.as_str())
            .or_insert((false, attempt, attempt));
        entry.0 |= attempt.succeeded();
        if attempt.id > entry.1.id {
            entry.1 = attempt;
        }
        if attempt.delivered_at < entry.2.delivered_at {
            entry.2 = attempt;
        }
    }
    let mut failed: Vec<Failed> = by_guid
        .into_values()
        .filter(|(succeeded, ..)| !succeeded)
        .map(|(_, latest, first)| Failed {
            guid: latest.guid.clone(),
            event: latest.event.clone(),
            action: latest.action.clone(),
            latest_attempt_id: latest.id,
            first_delivered_at: first.delivered_at,
        })
        .collect();
    failed.sort_by_key(|f| (f.first_delivered_at, f.latest_attempt_id));
    failed
}

/// What to do about one failed delivery the audit log lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ask now; this is ask number `n`.
    Ask { n: i64 },
    /// Nothing now (asked and not answered yet, in backoff, done, or too old to ask).
    Wait,
    /// Stop asking, and why.
    GiveUp(&'static str),
}

/// Decides for `failed`, given its recorded ask (if any).
pub fn decide(failed: &Failed, ask: Option<&RedeliveryAsk>, now: DateTime<Utc>) -> Decision {
    let Some(ask) = ask else {
        return if now - failed.first_delivered_at > WINDOW {
            Decision::Wait // past GitHub's window before it was ever asked: nothing to do
        } else {
            Decision::Ask { n: 1 }
        };
    };
    let Some(next_ask_at) = ask.next_ask_at else {
        return Decision::Wait; // recovered or given up
    };
    let answered = failed.latest_attempt_id > ask.attempt_id;
    if !answered && now - ask.last_asked_at < ASK_LOST_AFTER {
        return Decision::Wait;
    }
    let first = failed.first_delivered_at.min(ask.first_asked_at);
    if now - first > WINDOW {
        return Decision::GiveUp("past GitHub's 3 days");
    }
    if ask.asks >= MAX_ASKS {
        return Decision::GiveUp("asked 5 times");
    }
    if now < next_ask_at {
        return Decision::Wait;
    }
    Decision::Ask { n: ask.asks + 1 }
}

/// How long after ask `n` the next may be made: `base`, doubling, at most an hour.
pub fn backoff(base: Duration, n: i64) -> Duration {
    let doublings = u32::try_from(n.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    base.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: i64, guid: &str, code: u16, at: DateTime<Utc>) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            delivered_at: at,
            redelivery: id > 1,
            status: if code == 200 {
                "OK".into()
            } else {
                "failed to connect".into()
            },
            status_code: code,
            event: "push".into(),
            action: None,
            installation_id: None,
            repository_id: None,
        }
    }

    fn asked(
        failed: &Failed,
        asks: i64,
        at: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> RedeliveryAsk {
        RedeliveryAsk {
            delivery_guid: failed.guid.clone(),
            kind: "repository".into(),
            owner: "acme/api".into(),
            hook_id: 1,
            event: failed.event.clone(),
            action: None,
            asks,
            attempt_id: failed.latest_attempt_id,
            first_asked_at: at,
            last_asked_at: at,
            next_ask_at: next,
            recovered_at: None,
        }
    }

    #[test]
    fn a_guid_with_any_success_is_not_failed() {
        let t = Utc::now();
        let attempts = [
            attempt(1, "a", 0, t),
            attempt(2, "b", 0, t),
            attempt(3, "a", 200, t + TimeDelta::seconds(5)),
            attempt(4, "b", 502, t + TimeDelta::seconds(6)),
        ];
        let failed = failed_deliveries(&attempts);
        assert_eq!(failed.len(), 1);
        assert_eq!(
            (failed[0].guid.as_str(), failed[0].latest_attempt_id),
            ("b", 4)
        );
        assert_eq!(failed[0].first_delivered_at, t);
    }

    #[test]
    fn asked_again_only_after_a_failed_answer_and_the_backoff() {
        let t = Utc::now();
        let failed = failed_deliveries(&[attempt(1, "a", 0, t)]).remove(0);
        assert_eq!(decide(&failed, None, t), Decision::Ask { n: 1 });
        let ask = asked(&failed, 1, t, Some(t + TimeDelta::seconds(60)));
        // No answer yet: wait, even after the backoff.
        assert_eq!(
            decide(&failed, Some(&ask), t + TimeDelta::seconds(120)),
            Decision::Wait
        );
        // The answer failed: ask again once the backoff passed.
        let answered = failed_deliveries(&[attempt(1, "a", 0, t), attempt(2, "a", 0, t)]).remove(0);
        assert_eq!(
            decide(&answered, Some(&ask), t + TimeDelta::seconds(30)),
            Decision::Wait
        );
        assert_eq!(
            decide(&answered, Some(&ask), t + TimeDelta::seconds(61)),
            Decision::Ask { n: 2 }
        );
        // A lost ask is repeated after a while.
        assert_eq!(
            decide(
                &failed,
                Some(&ask),
                t + ASK_LOST_AFTER + TimeDelta::seconds(1)
            ),
            Decision::Ask { n: 2 }
        );
        let fifth = asked(&failed, 5, t, Some(t));
        assert_eq!(
            decide(&answered, Some(&fifth), t + TimeDelta::seconds(1)),
            Decision::GiveUp("asked 5 times")
        );
        let done = asked(&failed, 1, t, None);
        assert_eq!(
            decide(&answered, Some(&done), t + TimeDelta::days(1)),
            Decision::Wait
        );
    }

    #[test]
    fn nothing_is_asked_past_the_window() {
        let t = Utc::now();
        let old = failed_deliveries(&[attempt(1, "a", 0, t - TimeDelta::days(3))]).remove(0);
        assert_eq!(decide(&old, None, t), Decision::Wait);
        let answered = failed_deliveries(&[
            attempt(1, "a", 0, t - TimeDelta::days(3)),
            attempt(2, "a", 0, t),
        ])
        .remove(0);
        let ask = asked(&old, 1, t - TimeDelta::days(3), Some(t));
        assert_eq!(
            decide(&answered, Some(&ask), t),
            Decision::GiveUp("past GitHub's 3 days")
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let base = Duration::from_secs(300);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 3), base * 4);
        assert_eq!(backoff(base, 10), MAX_BACKOFF);
    }
}
