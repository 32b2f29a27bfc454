//! What the page draws, reduced from a [`SimOutcome`] to a size that does not grow with the
//! replay: a month of 100,000 jobs has hundreds of thousands of timeline entries, the page
//! needs a few hundred points per chart.
//!
//! Over time: the replay window is cut into at most [`BUCKETS`] equal buckets and each keeps,
//! per pool, two values of every series: its time-weighted *mean* over the bucket (what was
//! typical: over a month, a queue that is 1 for seconds at every arrival is ~0, not 1) and its
//! *maximum* (including the state carried in from the bucket before), so a short spike is never
//! smoothed away. A replay with few changes is drawn exactly. The runner series are stacked sums
//! (busy, busy + starting, busy + starting + idle), each reduced on its own, so the top edge is
//! the runners that existed.
//!
//! Waits: the empirical CDF at most [`CDF_POINTS`] points (nearest-rank quantiles of the
//! sorted waits; every wait when there are fewer).

use super::super::sim::{PoolSample, SimOutcome};

/// Buckets over the replay window; 600 is about one per pixel of a chart.
pub const BUCKETS: usize = 600;
/// Points of a wait CDF.
pub const CDF_POINTS: usize = 400;

/// One pool's (or all pools') series over time, bucketed: the maximum and the mean of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub start_ms: i64,
    /// Width of a bucket; bucket `i` covers `start_ms + i * bucket_ms ..` one bucket on.
    pub bucket_ms: f64,
    pub max: Series<u32>,
    pub mean: Series<f64>,
}

/// The four series of one reduction, one value per bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series<T> {
    pub queued: Vec<T>,
    pub busy: Vec<T>,
    /// Busy + starting (launched, not yet online).
    pub busy_starting: Vec<T>,
    /// Busy + starting + idle: every runner that exists.
    pub runners: Vec<T>,
}

impl<T: Clone + Default> Series<T> {
    fn zeros(count: usize) -> Self {
        Series {
            queued: vec![T::default(); count],
            busy: vec![T::default(); count],
            busy_starting: vec![T::default(); count],
            runners: vec![T::default(); count],
        }
    }
}

/// The stacked values of a sample, in [`Series`] order.
fn stacked(s: PoolSample) -> [u32; 4] {
    let busy_starting = s.busy + s.starting;
    [s.queued, s.busy, busy_starting, busy_starting + s.idle]
}

impl Buckets {
    pub fn len(&self) -> usize {
        self.max.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.max.queued.is_empty()
    }

    pub fn end_ms(&self) -> f64 {
        self.start_ms as f64 + self.bucket_ms * self.len() as f64
    }
}

/// A pool's charts for one configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolSeries {
    pub name: String,
    pub over_time: Buckets,
    /// `(wait seconds, fraction of served jobs waiting at most that)`, ascending.
    pub wait_cdf: Vec<(f64, f64)>,
}

/// Everything one configuration contributes to the page; small, so the simulation's outcome
/// can be dropped as soon as this is taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSeries {
    pub start_ms: i64,
    pub end_ms: i64,
    /// All pools together.
    pub overall: PoolSeries,
    /// In configuration order.
    pub pools: Vec<PoolSeries>,
}

impl RunSeries {
    /// `pool_names` in configuration order, as the timeline's samples are.
    pub fn from_outcome(outcome: &SimOutcome, pool_names: &[String]) -> RunSeries {
        let (start, end) = (outcome.start_ms, outcome.end_ms.max(outcome.start_ms));
        let all = |samples: &[PoolSample]| {
            samples
                .iter()
                .fold(PoolSample::default(), |a, s| PoolSample {
                    queued: a.queued + s.queued,
                    starting: a.starting + s.starting,
                    idle: a.idle + s.idle,
                    busy: a.busy + s.busy,
                })
        };
        let overall = PoolSeries {
            name: String::new(),
            over_time: bucket(&outcome.timeline, start, end, all),
            wait_cdf: wait_cdf(outcome.jobs.iter().filter_map(|j| j.wait_ms)),
        };
        let pools = pool_names
            .iter()
            .enumerate()
            .map(|(index, name)| PoolSeries {
                name: name.clone(),
                over_time: bucket(&outcome.timeline, start, end, |samples| {
                    samples.get(index).copied().unwrap_or_default()
                }),
                wait_cdf: wait_cdf(
                    outcome
                        .jobs
                        .iter()
                        .filter(|j| &j.pool == name)
                        .filter_map(|j| j.wait_ms),
                ),
            })
            .collect();
        RunSeries {
            start_ms: start,
            end_ms: end,
            overall,
            pools,
        }
    }

    pub fn pool(&self, name: &str) -> Option<&PoolSeries> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// Per-bucket maxima of `pick(samples)` over `[start, end]`; the state before the first sample
/// is empty.
fn bucket(
    timeline: &[(i64, Vec<PoolSample>)],
    start: i64,
    end: i64,
    pick: impl Fn(&[PoolSample]) -> PoolSample,
) -> Buckets {
    let span = (end - start).max(1);
    let end = start + span;
    // A replay shorter than BUCKETS milliseconds gets one bucket per millisecond.
    let count = BUCKETS.min(span as usize);
    let bucket_ms = span as f64 / count as f64;
    let index = |at: i64| {
        let offset = (at - start).clamp(0, span) as f64;
        ((offset / bucket_ms) as usize).min(count - 1)
    };
    let mut max = Series::<u32>::zeros(count);
    // Time × value per bucket, divided by the bucket's width at the end.
    let mut area = Series::<f64>::zeros(count);
    let mut keep_max = |i: usize, s: PoolSample| {
        let [q, b, bs, r] = stacked(s);
        max.queued[i] = max.queued[i].max(q);
        max.busy[i] = max.busy[i].max(b);
        max.busy_starting[i] = max.busy_starting[i].max(bs);
        max.runners[i] = max.runners[i].max(r);
    };
    // Adds `s` held over `[from, to)` to the areas of the buckets it overlaps.
    let mut hold = |from: i64, to: i64, s: PoolSample| {
        let (from, to) = (from.clamp(start, end), to.clamp(start, end));
        if to <= from {
            return;
        }
        let values = stacked(s).map(f64::from);
        for i in index(from)..=index(to - 1) {
            let bucket_start = start as f64 + i as f64 * bucket_ms;
            let overlap =
                (to as f64).min(bucket_start + bucket_ms) - (from as f64).max(bucket_start);
            if overlap > 0.0 {
                area.queued[i] += values[0] * overlap;
                area.busy[i] += values[1] * overlap;
                area.busy_starting[i] += values[2] * overlap;
                area.runners[i] += values[3] * overlap;
            }
        }
    };
    let mut current = PoolSample::default();
    let mut since = start;
    // Buckets up to `filled` have seen the state carried into them.
    let mut filled = 0;
    for (n, (at, samples)) in timeline.iter().enumerate() {
        // Two samples at one instant: the first lasted no time.
        if timeline.get(n + 1).is_some_and(|(next, _)| next == at) {
            continue;
        }
        let i = index(*at);
        while filled < i {
            filled += 1;
            // The old state lasts into bucket `i` unless the change is at its very start.
            let bucket_start = start as f64 + filled as f64 * bucket_ms;
            if filled < i || (*at as f64) > bucket_start {
                keep_max(filled, current);
            }
        }
        hold(since, *at, current);
        current = pick(samples);
        since = *at;
        keep_max(i, current);
    }
    while filled + 1 < count {
        filled += 1;
        keep_max(filled, current);
    }
    hold(since, end, current);
    let per_ms = |v: Vec<f64>| v.into_iter().map(|a| a / bucket_ms).collect();
    Buckets {
        start_ms: start,
        bucket_ms,
        max,
        mean: Series {
            queued: per_ms(area.queued),
            busy: per_ms(area.busy),
            busy_starting: per_ms(area.busy_starting),
            runners: per_ms(area.runners),
        },
    }
}

/// The empirical CDF of waits (ms in, seconds out), at most [`CDF_POINTS`] points.
fn wait_cdf(waits_ms: impl Iterator<Item = i64>) -> Vec<(f64, f64)> {
    let mut waits: Vec<i64> = waits_ms.collect();
    waits.sort_unstable();
    let n = waits.len();
    let points = n.min(CDF_POINTS);
    (1..=points)
        .map(|k| {
            // The k-th of `points` quantiles, nearest rank: rank ceil(k·n/points).
            let rank = (k * n).div_ceil(points);
            (waits[rank - 1] as f64 / 1000.0, rank as f64 / n as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(queued: u32, starting: u32, idle: u32, busy: u32) -> Vec<PoolSample> {
        vec![PoolSample {
            queued,
            starting,
            idle,
            busy,
        }]
    }

    fn first(s: &[PoolSample]) -> PoolSample {
        s[0]
    }

    #[test]
    fn a_spike_inside_one_bucket_survives_and_state_carries_over() {
        // 6,000 s in 600 buckets of 10 s; a queue of 9 that lasts 1 s in bucket 100.
        let timeline = vec![
            (0, sample(1, 0, 0, 0)),
            (1_000_000, sample(9, 1, 0, 2)),
            (1_001_000, sample(1, 0, 1, 2)),
        ];
        let b = bucket(&timeline, 0, 6_000_000, first);
        assert_eq!(b.len(), BUCKETS);
        let max = &b.max;
        assert_eq!(max.queued[99], 1);
        assert_eq!(max.queued[100], 9);
        assert_eq!(
            (max.busy[100], max.busy_starting[100], max.runners[100]),
            (2, 3, 3)
        );
        assert_eq!(max.queued[101], 1, "the state after the spike carries on");
        assert_eq!(max.runners[599], 3);
        // The mean of bucket 100: 9 for 1 s, then 1 for 9 s.
        let mean = &b.mean;
        assert!(
            (mean.queued[100] - 1.8).abs() < 1e-9,
            "{}",
            mean.queued[100]
        );
        assert!((mean.queued[99] - 1.0).abs() < 1e-9);
        assert!((mean.runners[100] - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_short_replay_is_drawn_exactly() {
        let timeline = vec![(10, sample(2, 0, 0, 0)), (12, sample(0, 0, 0, 2))];
        let b = bucket(&timeline, 10, 15, first);
        assert_eq!(b.max.queued, vec![2, 2, 0, 0, 0]);
        assert_eq!(b.max.busy, vec![0, 0, 2, 2, 2]);
        assert_eq!(b.mean.queued, vec![2.0, 2.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn a_long_timeline_stays_small() {
        let timeline: Vec<_> = (0..500_000i64)
            .map(|i| (i * 5_000, sample((i % 7) as u32, 0, 1, (i % 3) as u32)))
            .collect();
        let b = bucket(&timeline, 0, 500_000 * 5_000, first);
        assert_eq!(b.len(), BUCKETS);
        assert!(b.max.queued.iter().all(|q| *q == 6));
        // 0..6 evenly, and a bucket holds a whole number of 7-sample cycles or close to it.
        assert!(
            b.mean.queued.iter().all(|q| (q - 3.0).abs() < 0.1),
            "{:?}",
            b.mean.queued
        );
    }

    #[test]
    fn cdf_uses_nearest_ranks() {
        let cdf = wait_cdf([3000, 1000, 2000, 4000].into_iter());
        assert_eq!(cdf, vec![(1.0, 0.25), (2.0, 0.5), (3.0, 0.75), (4.0, 1.0)]);
        let many = wait_cdf((0..100_000).map(|i| i * 10));
        assert_eq!(many.len(), CDF_POINTS);
        assert_eq!(many.last(), Some(&(999.99, 1.0)));
        assert!(wait_cdf(std::iter::empty()).is_empty());
    }
}
