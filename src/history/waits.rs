//! Queue waits per hour, without IO: the p50 and p95 of the waits (queued → started, as
//! `Job::wait_seconds` measures them) of the jobs that started in each hour, over all pools
//! and per pool. Nearest-rank percentiles, like `runnerhub replay`.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::replay::stats::nearest_rank;
use crate::store::JobWait;

/// The waits of the jobs that started in one hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourWaits {
    /// The start of the hour.
    pub hour: DateTime<Utc>,
    /// All pools together.
    #[serde(flatten)]
    pub all: WaitStats,
    /// Per pool, for the pools that started jobs in the hour.
    pub pools: BTreeMap<String, WaitStats>,
}

/// How many jobs started, and their waits' percentiles (`null` without jobs).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WaitStats {
    pub jobs: u64,
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

impl WaitStats {
    fn of(mut waits: Vec<f64>) -> WaitStats {
        waits.sort_by(f64::total_cmp);
        let present = !waits.is_empty();
        WaitStats {
            jobs: waits.len() as u64,
            p50_seconds: present.then(|| nearest_rank(&waits, 50.0)),
            p95_seconds: present.then(|| nearest_rank(&waits, 95.0)),
        }
    }
}

/// One entry per hour of the `hours` from `since` (an hour's start), in order; each job counts
/// in the hour it started. A job whose start precedes its queued time (clocks apart) says
/// nothing about waiting and is left out.
pub fn per_hour(jobs: &[JobWait], since: DateTime<Utc>, hours: u32) -> Vec<HourWaits> {
    let slots = hours as usize;
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); slots];
    let mut pools: Vec<BTreeMap<String, Vec<f64>>> = vec![BTreeMap::new(); slots];
    for job in jobs {
        let Ok(slot) = usize::try_from((job.started_at - since).num_hours()) else {
            continue; // before the window
        };
        if job.started_at < since || slot >= slots {
            continue;
        }
        let millis = (job.started_at - job.queued_at).num_milliseconds();
        if millis < 0 {
            continue;
        }
        let seconds = millis as f64 / 1000.0;
        all[slot].push(seconds);
        if let Some(pool) = &job.pool {
            pools[slot].entry(pool.clone()).or_default().push(seconds);
        }
    }
    all.into_iter()
        .zip(pools)
        .enumerate()
        .map(|(slot, (all, pools))| HourWaits {
            hour: since + TimeDelta::hours(slot as i64),
            all: WaitStats::of(all),
            pools: pools
                .into_iter()
                .map(|(pool, waits)| (pool, WaitStats::of(waits)))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn since() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 4, 0, 0).unwrap()
    }

    fn job(pool: &str, started_min: i64, waited_secs: i64) -> JobWait {
        let started_at = since() + TimeDelta::minutes(started_min);
        JobWait {
            pool: Some(pool.into()),
            queued_at: started_at - TimeDelta::seconds(waited_secs),
            started_at,
        }
    }

    #[test]
    fn each_hour_has_the_percentiles_of_the_jobs_that_started_in_it() {
        // Hour 0: linux waits 1..=20 s; hour 2: one gpu job of 300 s; hour 1: nothing.
        let mut jobs: Vec<JobWait> = (1..=20).map(|s| job("linux", 59, s)).collect();
        jobs.push(job("gpu", 125, 300));
        let hours = per_hour(&jobs, since(), 3);
        assert_eq!(hours.len(), 3);
        assert_eq!(hours[0].hour, since());
        assert_eq!(hours[2].hour, since() + TimeDelta::hours(2));
        let linux = WaitStats {
            jobs: 20,
            p50_seconds: Some(10.0),
            p95_seconds: Some(19.0),
        };
        assert_eq!(hours[0].all, linux);
        assert_eq!(hours[0].pools["linux"], linux);
        assert_eq!(hours[1].all, WaitStats::default(), "an hour without jobs");
        assert!(hours[1].pools.is_empty());
        assert_eq!(hours[2].all.p95_seconds, Some(300.0));
        assert_eq!(hours[2].pools.keys().collect::<Vec<_>>(), ["gpu"]);
    }

    #[test]
    fn jobs_outside_the_window_or_with_clocks_apart_are_left_out() {
        let jobs = [
            job("linux", -1, 5),     // before the window
            job("linux", 3 * 60, 5), // after its last hour
            job("linux", 10, -30),   // started before it was queued
            job("linux", 10, 0),     // no wait at all: counts
        ];
        let hours = per_hour(&jobs, since(), 3);
        let counted: Vec<u64> = hours.iter().map(|h| h.all.jobs).collect();
        assert_eq!(counted, [1, 0, 0]);
        assert_eq!(hours[0].all.p95_seconds, Some(0.0));
    }

    #[test]
    fn the_json_has_the_overall_figures_beside_the_pools() {
        let hours = per_hour(&[job("linux", 0, 4)], since(), 1);
        let value = serde_json::to_value(&hours[0]).unwrap();
        assert_eq!(value["jobs"], 1);
        assert_eq!(value["p50_seconds"], 4.0);
        assert_eq!(value["pools"]["linux"]["p95_seconds"], 4.0);
        assert_eq!(value["hour"], "2026-12-07T04:00:00Z");
    }
}
