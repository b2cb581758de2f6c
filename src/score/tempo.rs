//! The global tempo map: ticks → exact time.
//!
//! Exactness: a time is kept as a rational number of microseconds (`num / den`, integers) and
//! rounded to whole microseconds only when asked, so there is no accumulated error however long
//! the piece or however many tempo changes it has. For a metrical file the numerator is
//! Σ ticks × µs-per-quarter over the segments and the denominator is the PPQ; for a timecode file
//! the time is ticks × 10⁶ / (frames per second × subframes), with 29.97 fps as 30000/1001.

use crate::midi::Micros;

/// The SMF header's division.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Ticks per quarter note.
    Metrical { ppq: u16 },
    /// SMPTE timecode: frames per second (24, 25, 29 meaning 29.97 drop-frame, 30) and ticks per
    /// frame.
    Timecode { fps: u8, subframes: u8 },
}

impl Timing {
    /// Ticks per quarter note for bar and beat arithmetic. For timecode files, where tempo has no
    /// meaning, one "quarter" is one second (rounded to whole ticks for 29.97 fps).
    pub fn quarter_ticks(&self) -> u64 {
        match *self {
            Timing::Metrical { ppq } => u64::from(ppq.max(1)),
            Timing::Timecode { fps, subframes } => {
                let fps = if fps == 29 { 30 } else { u64::from(fps) };
                (fps * u64::from(subframes)).max(1)
            }
        }
    }
}

/// An exact time of `num / den` microseconds.
#[derive(Debug, Clone, Copy)]
pub struct ExactTime {
    pub num: u128,
    pub den: u128,
}

impl ExactTime {
    /// Rounded to the nearest whole microsecond (halves round up).
    pub fn round(self) -> Micros {
        let q = (self.num * 2 + self.den) / (self.den * 2);
        Micros(u64::try_from(q).unwrap_or(u64::MAX))
    }

    /// The same time played at `percent` % speed (200 = twice as fast): `t × 100 / percent`.
    pub fn at_speed(self, percent: u128) -> ExactTime {
        ExactTime { num: self.num * 100, den: self.den * percent.max(1) }
    }

    /// Scales by a rational `mul / div` (e.g. a tempo ratio).
    pub fn scaled(self, mul: u128, div: u128) -> ExactTime {
        ExactTime { num: self.num * mul, den: self.den * div.max(1) }
    }

    pub fn as_secs_f64(self) -> f64 {
        self.num as f64 / self.den as f64 / 1e6
    }
}

/// One tempo change: from `tick` on, a quarter note lasts `us_per_quarter` µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempoChange {
    pub tick: u64,
    pub us_per_quarter: u32,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    tick: u64,
    us_per_quarter: u32,
    /// Σ ticks × µs-per-quarter of all earlier segments (µs × PPQ).
    acc: u128,
}

/// Tick → exact time, global across all tracks.
#[derive(Debug, Clone)]
pub struct TempoMap {
    timing: Timing,
    segments: Vec<Segment>,
}

/// The MIDI default tempo, 120 bpm.
pub const DEFAULT_US_PER_QUARTER: u32 = 500_000;

impl TempoMap {
    /// Builds the map from tempo changes in merged order (by tick; at equal ticks, the later one
    /// wins, as in every sequencer's merge). Before the first change the tempo is 120 bpm.
    /// Changes with `us_per_quarter == 0` must be rejected by the caller.
    pub fn new(timing: Timing, changes: &[TempoChange]) -> TempoMap {
        let mut segments = vec![Segment { tick: 0, us_per_quarter: DEFAULT_US_PER_QUARTER, acc: 0 }];
        let mut sorted: Vec<TempoChange> = changes.to_vec();
        sorted.sort_by_key(|c| c.tick); // stable: equal ticks keep merged order
        for c in sorted {
            let last = *segments.last().expect("never empty");
            if c.tick == last.tick {
                segments.last_mut().expect("never empty").us_per_quarter = c.us_per_quarter;
            } else {
                let acc = last.acc + u128::from(c.tick - last.tick) * u128::from(last.us_per_quarter);
                segments.push(Segment { tick: c.tick, us_per_quarter: c.us_per_quarter, acc });
            }
        }
        TempoMap { timing, segments }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    fn segment(&self, tick: u64) -> &Segment {
        let i = self.segments.partition_point(|s| s.tick <= tick);
        &self.segments[i.saturating_sub(1)]
    }

    /// The exact time of `tick` from the start of the file.
    pub fn exact(&self, tick: u64) -> ExactTime {
        match self.timing {
            Timing::Metrical { ppq } => {
                let s = self.segment(tick);
                let num = s.acc + u128::from(tick - s.tick) * u128::from(s.us_per_quarter);
                ExactTime { num, den: u128::from(ppq.max(1)) }
            }
            Timing::Timecode { fps, subframes } => {
                let (fps_num, fps_den): (u128, u128) = if fps == 29 { (30_000, 1001) } else { (u128::from(fps), 1) };
                ExactTime { num: u128::from(tick) * 1_000_000 * fps_den, den: (fps_num * u128::from(subframes)).max(1) }
            }
        }
    }

    /// `exact(tick)` rounded to whole microseconds.
    pub fn micros(&self, tick: u64) -> Micros {
        self.exact(tick).round()
    }

    /// The last tick whose time is ≤ `t` (for positions given in seconds).
    pub fn tick_at(&self, t: Micros) -> u64 {
        let t = u128::from(t.0);
        match self.timing {
            Timing::Metrical { ppq } => {
                let target = t * u128::from(ppq.max(1));
                let i = self.segments.partition_point(|s| s.acc <= target);
                let s = &self.segments[i.saturating_sub(1)];
                let extra = (target - s.acc) / u128::from(s.us_per_quarter.max(1));
                s.tick.saturating_add(u64::try_from(extra).unwrap_or(u64::MAX))
            }
            Timing::Timecode { .. } => {
                let one = self.exact(1);
                // tick = floor(t × den / num) for a one-tick time of num/den.
                u64::try_from(t * one.den / one.num.max(1)).unwrap_or(u64::MAX)
            }
        }
    }

    /// The tempo in force at `tick` (µs per quarter note).
    pub fn us_per_quarter_at(&self, tick: u64) -> u32 {
        self.segment(tick).us_per_quarter
    }

    /// The tempo changes, merged, first at tick 0 (the default when the file sets none there).
    pub fn changes(&self) -> impl Iterator<Item = TempoChange> + '_ {
        self.segments.iter().map(|s| TempoChange { tick: s.tick, us_per_quarter: s.us_per_quarter })
    }
}

/// Beats per minute of a quarter-note tempo, for display.
pub fn bpm(us_per_quarter: u32) -> f64 {
    60_000_000.0 / f64::from(us_per_quarter.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(ppq: u16, changes: &[(u64, u32)]) -> TempoMap {
        let c: Vec<TempoChange> =
            changes.iter().map(|&(tick, us_per_quarter)| TempoChange { tick, us_per_quarter }).collect();
        TempoMap::new(Timing::Metrical { ppq }, &c)
    }

    #[test]
    fn default_tempo_is_120_bpm() {
        let m = map(480, &[]);
        assert_eq!(m.micros(480), Micros(500_000));
    }

    #[test]
    fn later_change_at_same_tick_wins() {
        let m = map(480, &[(0, 500_000), (0, 545_454)]);
        assert_eq!(m.micros(480), Micros(545_454));
    }

    #[test]
    fn segments_accumulate_exactly() {
        // 1 quarter at 120 bpm, then 1 quarter at 60 bpm, PPQ 3 (non-dividing).
        let m = map(3, &[(3, 1_000_000)]);
        assert_eq!(m.micros(3), Micros(500_000));
        assert_eq!(m.micros(6), Micros(1_500_000));
        assert_eq!(m.micros(1), Micros(166_667)); // 166 666.67 rounds up
        assert_eq!(m.tick_at(Micros(1_500_000)), 6);
        assert_eq!(m.tick_at(Micros(1_499_999)), 5);
    }

    #[test]
    fn two_hours_of_odd_tempi_stay_exact() {
        // A tempo change every quarter alternating 333_333 and 777_777 µs at PPQ 96: the
        // exact end is known in closed form.
        let quarters = 2 * 3600 * 1_000_000 / ((333_333 + 777_777) / 2);
        let changes: Vec<(u64, u32)> =
            (0..quarters).map(|q| (q * 96, if q % 2 == 0 { 333_333 } else { 777_777 })).collect();
        let m = map(96, &changes);
        let expected: u64 = (0..quarters).map(|q| if q % 2 == 0 { 333_333u64 } else { 777_777 }).sum();
        assert_eq!(m.micros(quarters * 96), Micros(expected));
        assert!(expected > 7_100_000_000);
    }

    #[test]
    fn timecode_29_97() {
        let m = TempoMap::new(Timing::Timecode { fps: 29, subframes: 80 }, &[]);
        // 30 frames of 80 ticks at 30000/1001 fps = 1.001 s.
        assert_eq!(m.micros(30 * 80), Micros(1_001_000));
        let m25 = TempoMap::new(Timing::Timecode { fps: 25, subframes: 40 }, &[]);
        assert_eq!(m25.micros(1000), Micros(1_000_000));
        assert_eq!(m25.tick_at(Micros(1_000_000)), 1000);
    }

    #[test]
    fn speed_scaling() {
        let m = map(480, &[]);
        assert_eq!(m.exact(480).at_speed(80).round(), Micros(625_000));
    }
}
