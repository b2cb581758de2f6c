//! Lateness statistics (actual send time − deadline), kept in a preallocated histogram so the
//! engine can record every message without allocating.

/// Exact 1 µs buckets up to this bound, then 100 µs buckets up to [`COARSE_LIMIT`].
const FINE_LIMIT: u64 = 2_000;
const COARSE_STEP: u64 = 100;
const COARSE_LIMIT: u64 = 200_000;
const BUCKETS: usize = FINE_LIMIT as usize + ((COARSE_LIMIT - FINE_LIMIT) / COARSE_STEP) as usize + 1;

/// A histogram of lateness in µs: exact below 2 ms, 100 µs resolution to 200 ms, then one
/// overflow bucket; the exact maximum is kept separately.
#[derive(Clone)]
pub struct LatenessStats {
    buckets: Box<[u32]>,
    count: u64,
    sum: u64,
    max: u64,
}

/// An empty histogram that records nothing (no allocation); use [`LatenessStats::new`] to record.
impl Default for LatenessStats {
    fn default() -> Self {
        LatenessStats { buckets: Box::new([]), count: 0, sum: 0, max: 0 }
    }
}

impl std::fmt::Debug for LatenessStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LatenessStats {{ count: {}, p50: {}, p99: {}, max: {} }}",
            self.count,
            self.percentile(50.0),
            self.percentile(99.0),
            self.max
        )
    }
}

impl LatenessStats {
    /// Allocates the histogram (once, before playback).
    pub fn new() -> LatenessStats {
        LatenessStats { buckets: vec![0u32; BUCKETS].into_boxed_slice(), count: 0, sum: 0, max: 0 }
    }

    /// Records one lateness in µs. Allocation-free.
    pub fn record(&mut self, late_us: u64) {
        let i = if late_us < FINE_LIMIT {
            late_us as usize
        } else if late_us < COARSE_LIMIT {
            FINE_LIMIT as usize + ((late_us - FINE_LIMIT) / COARSE_STEP) as usize
        } else {
            BUCKETS - 1
        };
        if let Some(b) = self.buckets.get_mut(i) {
            *b = b.saturating_add(1);
        }
        self.count += 1;
        self.sum += late_us;
        self.max = self.max.max(late_us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum as f64 / self.count as f64 }
    }

    /// The lateness (µs) below which `p` % of messages fall: exact below 2 ms, the bucket's upper
    /// bound above, and never more than the maximum.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                let v = if (i as u64) < FINE_LIMIT {
                    i as u64
                } else if i < BUCKETS - 1 {
                    FINE_LIMIT + (i as u64 - FINE_LIMIT + 1) * COARSE_STEP - 1
                } else {
                    self.max
                };
                return v.min(self.max);
            }
        }
        self.max
    }

    /// How many recorded values exceed `threshold_us` (exact for thresholds below 2 ms).
    pub fn count_above(&self, threshold_us: u64) -> u64 {
        let upto = if threshold_us < FINE_LIMIT {
            threshold_us as usize + 1
        } else {
            (FINE_LIMIT as usize + ((threshold_us.min(COARSE_LIMIT) - FINE_LIMIT) / COARSE_STEP) as usize + 1)
                .min(BUCKETS)
        };
        let at_or_below: u64 = self.buckets[..upto].iter().map(|&n| u64::from(n)).sum();
        self.count - at_or_below
    }

    /// Adds another histogram's counts (benchmarks merge runs).
    pub fn merge(&mut self, other: &LatenessStats) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut s = LatenessStats::new();
        for v in 1..=100 {
            s.record(v);
        }
        assert_eq!(s.percentile(50.0), 50);
        assert_eq!(s.percentile(99.0), 99);
        assert_eq!(s.percentile(100.0), 100);
        assert_eq!(s.max(), 100);
        s.record(5_050);
        assert_eq!(s.percentile(100.0), 5_050);
        s.record(10_000_000);
        assert_eq!(s.max(), 10_000_000);
        assert_eq!(s.percentile(100.0), 10_000_000);
        assert_eq!(LatenessStats::new().percentile(99.0), 0);
        assert_eq!(s.count_above(1_000), 2);
        assert_eq!(s.count_above(99), 3);
    }
}
