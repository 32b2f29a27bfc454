//! The time arithmetic of pool history, without IO: sample minutes, the window, merging
//! minutes into points, and what one instance records.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;

use super::MAX_POINTS;
use crate::scheduler::PoolStatus;
use crate::store::{PoolMinute, PoolSample};

/// One point of a pool's series: the peak of each counter over the point's step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    /// The start of the step.
    pub at: DateTime<Utc>,
    pub queued: u64,
    pub busy: u64,
    pub idle: u64,
    pub starting: u64,
}

/// A pool's points, oldest first; a step without samples (the daemon was down) has no point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolSeries {
    pub name: String,
    pub points: Vec<Point>,
}

/// `at` truncated to its minute: the key a sample is recorded under.
pub fn minute_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// When the next sample is due after `now`: the start of the next minute, so that every
/// instance's samples of a minute share its key and none falls between two minutes.
pub fn next_sample_at(now: DateTime<Utc>) -> DateTime<Utc> {
    minute_start(now) + TimeDelta::minutes(1)
}

/// The start of a window of `hours` whole hours ending with the current one.
pub fn window_start(now: DateTime<Utc>, hours: u32) -> DateTime<Utc> {
    let hour = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
    hour - TimeDelta::hours(i64::from(hours.max(1)) - 1)
}

/// Minutes per point so that a window of `hours` has at most [`MAX_POINTS`] per series.
pub fn step_minutes(hours: u32) -> u32 {
    (hours.max(1) * 60).div_ceil(MAX_POINTS)
}

/// One pool's minutes (oldest first) merged into points of `step` minutes counted from
/// `since`, each counter at its peak over the step.
pub fn downsample(minutes: &[PoolMinute], since: DateTime<Utc>, step: u32) -> Vec<Point> {
    let step = i64::from(step.max(1));
    let mut points: Vec<Point> = Vec::new();
    for minute in minutes.iter().filter(|m| m.minute >= since) {
        let at = since + TimeDelta::minutes((minute.minute - since).num_minutes() / step * step);
        match points.last_mut() {
            Some(last) if last.at == at => {
                last.queued = last.queued.max(minute.queued);
                last.busy = last.busy.max(minute.busy);
                last.idle = last.idle.max(minute.idle);
                last.starting = last.starting.max(minute.starting);
            }
            _ => points.push(Point {
                at,
                queued: minute.queued,
                busy: minute.busy,
                idle: minute.idle,
                starting: minute.starting,
            }),
        }
    }
    points
}

/// What this instance records: each of its pools with its own runners, and each pool that has
/// jobs waiting (`queued`, the whole queue's per pool) even if this instance does not run it,
/// so that a pool's queue is charted whichever instances sample.
pub fn samples_of(pools: &[PoolStatus], queued: &[(String, u64)]) -> Vec<PoolSample> {
    let mut samples: BTreeMap<&str, PoolSample> = BTreeMap::new();
    for pool in pools {
        samples.insert(
            &pool.name,
            PoolSample {
                pool: pool.name.clone(),
                queued: 0,
                busy: pool.busy as u64,
                idle: pool.idle as u64,
                starting: pool.starting as u64,
            },
        );
    }
    for (pool, jobs) in queued {
        samples
            .entry(pool)
            .or_insert_with(|| PoolSample {
                pool: pool.clone(),
                ..PoolSample::default()
            })
            .queued = *jobs;
    }
    samples.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, s).unwrap()
    }

    fn minute(at: DateTime<Utc>, queued: u64, busy: u64, idle: u64) -> PoolMinute {
        PoolMinute {
            minute: at,
            pool: "linux".into(),
            queued,
            busy,
            idle,
            starting: 0,
        }
    }

    #[test]
    fn samples_are_keyed_by_their_minute_and_due_at_the_next() {
        let now = at(6, 5, 59) + TimeDelta::milliseconds(999);
        assert_eq!(minute_start(now), at(6, 5, 0));
        assert_eq!(next_sample_at(now), at(6, 6, 0));
        assert_eq!(
            next_sample_at(at(6, 6, 0)),
            at(6, 7, 0),
            "on the minute: the next one"
        );
    }

    #[test]
    fn the_window_is_whole_hours_ending_with_the_current_one() {
        assert_eq!(
            window_start(at(6, 30, 0), 24),
            at(6, 0, 0) - TimeDelta::hours(23)
        );
        assert_eq!(window_start(at(6, 30, 0), 1), at(6, 0, 0));
        assert_eq!(window_start(at(6, 0, 0), 2), at(5, 0, 0));
    }

    #[test]
    fn a_day_is_one_point_per_minute_and_a_week_merges_minutes() {
        assert_eq!(step_minutes(1), 1);
        assert_eq!(step_minutes(24), 1);
        assert_eq!(step_minutes(25), 2);
        assert_eq!(step_minutes(168), 7);
        for hours in 1..=168 {
            assert!(hours * 60 / step_minutes(hours) <= MAX_POINTS, "{hours} h");
        }
    }

    #[test]
    fn merged_minutes_keep_each_counter_at_its_peak_and_gaps_stay_gaps() {
        let since = at(5, 0, 0);
        let minutes = [
            minute(at(5, 0, 0), 3, 1, 4),
            minute(at(5, 1, 0), 9, 2, 0),
            minute(at(5, 2, 0), 1, 5, 1),
            // 05:03-05:05 missing: the daemon was down.
            minute(at(5, 6, 0), 0, 0, 2),
        ];
        let points = downsample(&minutes, since, 3);
        let summary: Vec<_> = points
            .iter()
            .map(|p| (p.at, p.queued, p.busy, p.idle))
            .collect();
        assert_eq!(
            summary,
            [(at(5, 0, 0), 9, 5, 4), (at(5, 6, 0), 0, 0, 2)],
            "no point for the step nobody sampled"
        );
        assert_eq!(downsample(&minutes, since, 1).len(), 4);
        assert_eq!(
            downsample(&minutes, at(5, 2, 0), 1).len(),
            2,
            "before the window: left out"
        );
    }

    fn status(name: &str, busy: usize, idle: usize, starting: usize) -> PoolStatus {
        PoolStatus {
            name: name.into(),
            labels: vec![],
            max_runners: 10,
            min_idle: 0,
            starting,
            idle,
            busy,
            queued: 99,
            consecutive_failures: 0,
            stalled: None,
        }
    }

    #[test]
    fn an_instance_records_its_runners_and_the_whole_queue_of_every_pool() {
        let pools = [status("linux", 2, 1, 1), status("arm", 0, 0, 0)];
        let queued = [("gpu".to_owned(), 4), ("linux".to_owned(), 7)];
        let samples = samples_of(&pools, &queued);
        let summary: Vec<_> = samples
            .iter()
            .map(|s| (s.pool.as_str(), s.queued, s.busy, s.idle, s.starting))
            .collect();
        assert_eq!(
            summary,
            [
                ("arm", 0, 0, 0, 0),
                ("gpu", 4, 0, 0, 0),
                ("linux", 7, 2, 1, 1),
            ],
            "the queue from the database, not the scheduler's own view (99)"
        );
    }
}
