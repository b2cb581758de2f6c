//! A stage of the planner (listed in `plan`), the time map: where every (segment, tick) falls in the performance.
//!
//! Times are exact rationals of microseconds from the score's tempo map, with fermata holds
//! added, scaled by the speed, placed after the previous segment and its gap, and rounded once,
//! at the end, to whole microseconds. Pure; runs on the control thread while planning.

use super::{PlanError, SectionKind, Segment, Speed};
use crate::midi::Micros;
use crate::score::ExactTime;

/// The longest performance planned: 30 days.
pub const MAX_LENGTH: Micros = Micros(30 * 86_400 * 1_000_000);

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `a + b`, exactly, in lowest terms.
pub(crate) fn exact_add(a: ExactTime, b: ExactTime) -> ExactTime {
    let g = gcd(a.den, b.den).max(1);
    let den = a.den / g * b.den;
    let num = a.num * (den / a.den) + b.num * (den / b.den);
    let r = gcd(num, den).max(1);
    ExactTime { num: num / r, den: den / r }
}

pub(crate) const EXACT_ZERO: ExactTime = ExactTime { num: 0, den: 1 };

impl Speed {
    /// As a rational factor on times: (mul, div) so that new time = old × mul / div.
    pub(crate) fn time_factor(self, first_us_per_quarter: u32) -> (u128, u128) {
        match self {
            Speed::AsWritten => (1, 1),
            Speed::Percent(p) => (100_000, (p * 1000.0).round().max(1.0) as u128),
            // new = old × (written bpm / wanted bpm) = old × 60e6 / (us_per_quarter × bpm)
            Speed::Bpm(b) => (60_000_000_000, u128::from(first_us_per_quarter) * (b * 1000.0).round().max(1.0) as u128),
        }
    }
}

/// Where each segment of the performance starts and ends, and the time of any tick in it.
pub(crate) struct TimeMap<'a> {
    segments: &'a [Segment<'a>],
    /// The speed as a factor on score times: × `mul` / `div`.
    mul: u128,
    div: u128,
    /// Exact start (first note) and end (last note-off) of each segment.
    starts: Vec<ExactTime>,
    ends: Vec<ExactTime>,
}

impl<'a> TimeMap<'a> {
    /// Lays the segments out one after another from `origin` µs (the end of the setup), each
    /// after the previous one's end and its own gap. `--bpm` sets the opening tempo: of the
    /// performed range, or of a hymn's verse.
    ///
    /// # Errors
    /// A performance longer than [`MAX_LENGTH`] (only damaged delta times come near it); every
    /// later time is at most that plus the closing cancel, so µs arithmetic cannot overflow.
    pub fn new(segments: &'a [Segment<'a>], speed: Speed, origin: u64) -> Result<TimeMap<'a>, PlanError> {
        let first = segments.first().ok_or(PlanError::NothingToPlay)?;
        let basis = if first.kind == SectionKind::Piece { first.from } else { 0 };
        let (mul, div) = speed.time_factor(first.score.tempo.us_per_quarter_at(basis));
        let mut map = TimeMap {
            segments,
            mul,
            div,
            starts: Vec::with_capacity(segments.len()),
            ends: Vec::with_capacity(segments.len()),
        };
        for (s, seg) in segments.iter().enumerate() {
            let start = match map.ends.last() {
                None => ExactTime { num: u128::from(origin), den: 1 },
                Some(&previous_end) => {
                    let gap = exact_add(
                        map.scaled(seg.gap_before.scaled),
                        ExactTime { num: u128::from(seg.gap_before.fixed.0), den: 1 },
                    );
                    exact_add(previous_end, gap)
                }
            };
            map.starts.push(start);
            map.ends.push(exact_add(start, map.scaled(map.score_time(s, seg.until))));
        }
        let length = map.ends.last().map_or(Micros::ZERO, |e| e.round());
        if length > MAX_LENGTH {
            return Err(PlanError::TooLong { score: first.score.name.clone(), length });
        }
        Ok(map)
    }

    /// Score time of `tick` in segment `s` since the segment's start, holds included, exact (µs
    /// at the written tempo).
    fn score_time(&self, s: usize, tick: u64) -> ExactTime {
        let seg = &self.segments[s];
        let a = seg.score.tempo.exact(tick);
        let f = seg.score.tempo.exact(seg.from);
        let mut r = ExactTime { num: a.num - f.num, den: a.den };
        for &(_, d) in seg.holds.iter().take_while(|h| h.0 <= tick) {
            r = exact_add(r, d);
        }
        r
    }

    /// A score time at the plan's speed, in lowest terms.
    fn scaled(&self, e: ExactTime) -> ExactTime {
        exact_add(EXACT_ZERO, e.scaled(self.mul, self.div))
    }

    /// The plan time (µs) of `tick` in segment `s`, rounded once.
    pub fn time(&self, s: usize, tick: u64) -> u64 {
        exact_add(self.starts[s], self.scaled(self.score_time(s, tick))).round().0
    }

    /// When segment `s`'s music starts.
    pub fn start(&self, s: usize) -> Micros {
        self.starts[s].round()
    }

    /// When segment `s`'s last note-off is due.
    pub fn end(&self, s: usize) -> Micros {
        self.ends[s].round()
    }

    /// The speed as a percentage of the written tempo, for display.
    pub fn speed_percent(&self) -> f64 {
        let factor = self.mul as f64 / self.div as f64;
        if factor > 0.0 { 100.0 / factor } else { 100.0 }
    }
}
