//! The time-signature map: ticks ↔ bar:beat.
//!
//! Bars are numbered from 1 at tick 0; beats from 1, in units of the time signature's
//! denominator (a half note in 4/2, an eighth in 6/8). A time signature that falls inside a bar
//! starts a new bar there (that is how MuseScore writes a pickup: a short bar of its own). Before
//! the first time signature the meter is 4/4.

use std::fmt;

/// A time signature as written: `numerator / 2^denominator_pow2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterChange {
    pub tick: u64,
    pub numerator: u8,
    pub denominator_pow2: u8,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    tick: u64,
    /// Bar number (1-based) of the bar that starts at `tick`.
    bar: u32,
    numerator: u8,
    denominator_pow2: u8,
    beat_ticks: u64,
}

impl Segment {
    fn bar_ticks(&self) -> u64 {
        (self.beat_ticks * u64::from(self.numerator)).max(1)
    }
}

/// Tick ↔ bar:beat.
#[derive(Debug, Clone)]
pub struct MeterMap {
    quarter_ticks: u64,
    segments: Vec<Segment>,
}

/// A position in bars and beats: bar `bar`, beat `beat` (both from 1) plus `tick_in_beat` of
/// `beat_ticks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarBeat {
    pub bar: u32,
    pub beat: u32,
    pub tick_in_beat: u64,
    pub beat_ticks: u64,
}

impl BarBeat {
    /// The beat as a number from 1 with its fraction (3.5 = halfway through beat 3).
    pub fn beat_f64(&self) -> f64 {
        f64::from(self.beat) + self.tick_in_beat as f64 / self.beat_ticks.max(1) as f64
    }
}

impl fmt::Display for BarBeat {
    /// `17:3` on a beat, `17:3.50` between beats.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tick_in_beat == 0 {
            write!(f, "{}:{}", self.bar, self.beat)
        } else {
            write!(f, "{}:{:.2}", self.bar, self.beat_f64())
        }
    }
}

fn beat_ticks(quarter_ticks: u64, denominator_pow2: u8) -> u64 {
    // beat = whole note / 2^d = 4 quarters / 2^d
    let whole = quarter_ticks * 4;
    (whole >> denominator_pow2.min(20)).max(1)
}

impl MeterMap {
    /// Builds the map from time signatures in merged order (at equal ticks the later wins).
    /// `quarter_ticks` comes from [`super::Timing::quarter_ticks`].
    pub fn new(quarter_ticks: u64, changes: &[MeterChange]) -> MeterMap {
        let quarter_ticks = quarter_ticks.max(1);
        let mut segments =
            vec![Segment { tick: 0, bar: 1, numerator: 4, denominator_pow2: 2, beat_ticks: quarter_ticks }];
        let mut sorted = changes.to_vec();
        sorted.sort_by_key(|c| c.tick);
        for c in sorted {
            let numerator = c.numerator.max(1);
            let seg = Segment {
                tick: c.tick,
                bar: 0,
                numerator,
                denominator_pow2: c.denominator_pow2,
                beat_ticks: beat_ticks(quarter_ticks, c.denominator_pow2),
            };
            let last = *segments.last().expect("never empty");
            if c.tick == last.tick {
                *segments.last_mut().expect("never empty") = Segment { bar: last.bar, ..seg };
                continue;
            }
            let into = c.tick - last.tick;
            let whole_bars = into / last.bar_ticks();
            let partial = into % last.bar_ticks() != 0;
            // Saturating: only a damaged file has 2^32 bars, and it must not overflow.
            let bar = last
                .bar
                .saturating_add(u32::try_from(whole_bars).unwrap_or(u32::MAX))
                .saturating_add(u32::from(partial));
            segments.push(Segment { bar, ..seg });
        }
        MeterMap { quarter_ticks, segments }
    }

    pub fn quarter_ticks(&self) -> u64 {
        self.quarter_ticks
    }

    /// The time signatures, with the bar each starts (for `organ info`).
    pub fn changes(&self) -> impl Iterator<Item = (MeterChange, u32)> + '_ {
        self.segments.iter().map(|s| {
            (MeterChange { tick: s.tick, numerator: s.numerator, denominator_pow2: s.denominator_pow2 }, s.bar)
        })
    }

    /// The bar and beat of `tick`.
    pub fn position(&self, tick: u64) -> BarBeat {
        let i = self.segments.partition_point(|s| s.tick <= tick);
        let s = &self.segments[i.saturating_sub(1)];
        let into = tick - s.tick;
        let bar = s.bar.saturating_add(u32::try_from(into / s.bar_ticks()).unwrap_or(u32::MAX));
        let in_bar = into % s.bar_ticks();
        BarBeat {
            bar,
            beat: u32::try_from(in_bar / s.beat_ticks).unwrap_or(0) + 1,
            tick_in_beat: in_bar % s.beat_ticks,
            beat_ticks: s.beat_ticks,
        }
    }

    /// The tick where bar `bar` (from 1) starts.
    pub fn bar_start(&self, bar: u32) -> Option<u64> {
        self.tick_of(bar, 1.0)
    }

    /// The tick of bar `bar`, beat `beat` (both from 1; the beat may have a fraction).
    /// `None` when the bar is 0 or the beat is outside the bar.
    pub fn tick_of(&self, bar: u32, beat: f64) -> Option<u64> {
        if bar == 0 || beat.is_nan() || beat < 1.0 {
            return None;
        }
        let i = self.segments.partition_point(|s| s.bar <= bar);
        let s = &self.segments[i.checked_sub(1)?];
        // A bar cut short by the next time signature (a pickup) is shorter than bar_ticks.
        let start = s.tick + u64::from(bar - s.bar) * s.bar_ticks();
        let end = self.segments.get(i).map_or(u64::MAX, |n| n.tick).min(start.saturating_add(s.bar_ticks()));
        let offset = ((beat - 1.0) * s.beat_ticks as f64).round() as u64;
        let tick = start + offset;
        (tick < end || (offset == 0 && start < end)).then_some(tick)
    }

    /// The time signature in force at `tick` as (numerator, denominator).
    pub fn signature_at(&self, tick: u64) -> (u8, u32) {
        let i = self.segments.partition_point(|s| s.tick <= tick);
        let s = &self.segments[i.saturating_sub(1)];
        (s.numerator, 1u32 << s.denominator_pow2.min(31))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(tick: u64, n: u8, d: u8) -> MeterChange {
        MeterChange { tick, numerator: n, denominator_pow2: d }
    }

    #[test]
    fn four_four_by_default() {
        let m = MeterMap::new(480, &[]);
        assert_eq!(m.position(0).to_string(), "1:1");
        assert_eq!(m.position(480 * 4 + 960).to_string(), "2:3");
        assert_eq!(m.position(240).to_string(), "1:1.50");
        assert_eq!(m.tick_of(2, 3.0), Some(480 * 6));
    }

    #[test]
    fn musescore_pickup_is_a_short_bar() {
        // 2/2 pickup (one half-note bar of 2 beats = 1920 ticks) then 4/2.
        let m = MeterMap::new(480, &[ts(0, 2, 1), ts(1920, 4, 1)]);
        assert_eq!(m.position(0).bar, 1);
        assert_eq!(m.position(1920).to_string(), "2:1");
        assert_eq!(m.position(1920 + 960 * 3).to_string(), "2:4");
        assert_eq!(m.position(1920 + 3840).to_string(), "3:1");
        assert_eq!(m.bar_start(3), Some(1920 + 3840));
        assert_eq!(m.tick_of(1, 3.0), None); // the pickup bar has only 2 beats
    }

    #[test]
    fn signature_inside_a_bar_starts_a_new_bar() {
        // 4/4, then a 3/4 at beat 3 of bar 2: bar 3 begins there.
        let m = MeterMap::new(100, &[ts(600, 3, 2)]);
        assert_eq!(m.position(599).bar, 2);
        assert_eq!(m.position(600).to_string(), "3:1");
        assert_eq!(m.position(900).to_string(), "4:1");
    }

    #[test]
    fn later_signature_at_same_tick_wins() {
        let m = MeterMap::new(384, &[ts(0, 9, 2), ts(0, 4, 2)]);
        assert_eq!(m.signature_at(0), (4, 4));
    }

    #[test]
    fn bar_numbers_saturate() {
        // One tick per bar (1/16 at one tick per quarter), bar 2 from tick 1, then 2^32 bars.
        let far = (1u64 << 32) + 10;
        let m = MeterMap::new(1, &[ts(0, 1, 4), ts(1, 1, 4), ts(far, 1, 4), ts(far + 5, 3, 2)]);
        assert_eq!(m.position(far).bar, u32::MAX);
        assert_eq!(m.position(far + 100).bar, u32::MAX);
        assert_eq!(m.position(1 << 31).bar, (1 << 31) + 1);
    }

    #[test]
    fn six_eight_beats_are_eighths() {
        let m = MeterMap::new(480, &[ts(0, 6, 3)]);
        assert_eq!(m.position(240 * 5).to_string(), "1:6");
        assert_eq!(m.position(240 * 6).to_string(), "2:1");
    }
}
