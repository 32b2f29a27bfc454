//! Bounded log volume for messages that repeat in a fault.
//!
//! A full disk made every refused delivery log an ERROR and the store's housekeeping a WARN ten
//! times a second: the log grew fastest exactly when the disk had no room. A call site keeps a
//! [`Repeats`] (usually a `static`) and logs only when [`Repeats::admit`] says so: the first
//! occurrence at once, then at most one per window, carrying how many were held back
//! ("… (repeated 57 times in the last 10 s)"), so the count is never lost, only the copies.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default window: one line per message per 10 s in a sustained fault.
pub const WINDOW: Duration = Duration::from_secs(10);

pub struct Repeats {
    window: Duration,
    state: Mutex<State>,
}

struct State {
    logged_at: Option<Instant>,
    held_back: u64,
}

impl Repeats {
    pub const fn new(window: Duration) -> Self {
        Repeats {
            window,
            state: Mutex::new(State {
                logged_at: None,
                held_back: 0,
            }),
        }
    }

    /// `Some` when this occurrence is to be logged, with what to append to the message;
    /// `None` when it is counted instead.
    pub fn admit(&self) -> Option<Held> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<Held> {
        // A poisoned lock only means a panic elsewhere while counting: keep counting.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = state.logged_at
            && now.saturating_duration_since(at) < self.window
        {
            state.held_back += 1;
            return None;
        }
        let held = Held {
            count: std::mem::take(&mut state.held_back),
            window: self.window,
        };
        state.logged_at = Some(now);
        Some(held)
    }
}

/// How many copies of a message were held back before this one; displays as nothing when none
/// were, else as " (repeated N times in the last W s)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub count: u64,
    window: Duration,
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            0 => Ok(()),
            1 => write!(
                f,
                " (repeated once in the last {} s)",
                self.window.as_secs()
            ),
            n => write!(
                f,
                " (repeated {n} times in the last {} s)",
                self.window.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_per_window_with_the_count() {
        let repeats = Repeats::new(WINDOW);
        let start = Instant::now();
        // A WARN every 100 ms for 30 s, as the store's housekeeping did on a full disk.
        let logged: Vec<String> = (0..300u64)
            .filter_map(|i| repeats.admit_at(start + Duration::from_millis(100 * i)))
            .map(|held| format!("database maintenance failed{held}"))
            .collect();
        assert_eq!(
            logged,
            [
                "database maintenance failed",
                "database maintenance failed (repeated 99 times in the last 10 s)",
                "database maintenance failed (repeated 99 times in the last 10 s)",
            ]
        );
    }

    #[test]
    fn a_message_after_a_quiet_window_is_logged_at_once() {
        let repeats = Repeats::new(WINDOW);
        let start = Instant::now();
        assert!(repeats.admit_at(start).is_some());
        assert!(repeats.admit_at(start + Duration::from_secs(1)).is_none());
        let held = repeats.admit_at(start + Duration::from_secs(60)).unwrap();
        assert_eq!(held.count, 1);
        assert_eq!(held.to_string(), " (repeated once in the last 10 s)");
    }
}
