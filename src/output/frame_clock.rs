//! Where a moment of the system clock falls in JACK's frames, for the JACK output's process
//! callback: the map that puts each message at its own frame.
//!
//! Each cycle is observed when its callback runs: the cycle's first frame against the system
//! time then, which is never earlier than the cycle began and on a virtual machine now and then
//! milliseconds later. (JACK's own estimate of when each cycle began, `jack_get_cycle_times`, is
//! a delay-locked loop over its driver's wake-ups: each late wake-up pulls it later for a
//! second or so, and against the dummy backend on the development VM it wandered by 2-3 frames
//! over seconds.)
//!
//! What a listener hears is the spacing of messages in frames, so the map is a straight line at
//! the sample rate as the system clock sees it, fitted over a long stretch: the observations are
//! taken in blocks of about half a second, each block keeps only its *earliest* one (the least
//! delayed), and the line is the least-squares fit through the best points of the last half
//! minute. Its slope follows a sound card's drift against the system clock (tens
//! of ppm, steady); a block far off the line (JACK restarted its cycle, an xrun) starts the
//! history again, and the JACK output restarts it at once ([`FrameClock::restart`]) when JACK
//! reports an xrun (a block whose best point came before the stall would hide it for a second). Until three blocks are in, the line has the nominal slope through the best
//! estimate so far; the loop has run since the server started, so that is good from the first
//! cycle.
//!
//! Runs on JACK's process thread: fixed size, no allocation, no lock; a few floating-point
//! operations per cycle and per message.

/// Best points of this many complete blocks are kept, for the line (about 32 s).
const BLOCKS: usize = 64;
/// A block spans about this long (µs), whatever the period.
const BLOCK_US: f64 = 500_000.0;
/// The line is fitted from this many blocks on (before, the nominal slope through the best
/// point so far).
const FIT_FROM: usize = 3;
/// The slope is trusted within this share of the nominal rate (sound cards are within 100 ppm
/// of theirs); beyond it the nominal rate is used.
const MAX_DRIFT: f64 = 5e-4;
/// A block whose best point is this many frames off the line of the previous ones is a
/// discontinuity (JACK restarted its cycle, an xrun): the history is dropped. The best points
/// of a steady server stay within 3 frames of the line; 12 frames is 250 µs at 48 kHz.
const JUMP_FRAMES: f64 = 12.0;

/// A cycle's first frame (unwrapped, relative to the first cycle seen) and when it began
/// (µs, relative to the first cycle seen).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    frames: f64,
    us: f64,
}

/// The map from system time (`jack_get_time` µs) to frames. See the module documentation.
#[derive(Debug, Clone)]
pub struct FrameClock {
    sample_rate: u32,
    period: u32,
    /// Nominal frames per µs.
    nominal: f64,
    cycles_per_block: u32,
    origin: Option<(u32, u64)>,
    /// Frames since the origin (u32 frame counts wrap after a day).
    last_raw: u32,
    unwrapped: u64,
    blocks: [Point; BLOCKS],
    nblocks: usize,
    /// The current block's best point and how many cycles it has seen.
    current: Option<Point>,
    in_block: u32,
    /// Frames per µs, as measured (the nominal rate until there are enough blocks).
    slope: f64,
    /// A point on the fitted line (the blocks' centroid), once [`FIT_FROM`] blocks are in.
    fit: Option<Point>,
}

impl FrameClock {
    /// A map for a server running `sample_rate` Hz with `period` frames per cycle.
    pub fn new(sample_rate: u32, period: u32) -> FrameClock {
        let nominal = f64::from(sample_rate.max(1)) / 1e6;
        let period_us = f64::from(period.max(1)) / nominal;
        FrameClock {
            sample_rate,
            period,
            nominal,
            cycles_per_block: (BLOCK_US / period_us).ceil().max(8.0) as u32,
            origin: None,
            last_raw: 0,
            unwrapped: 0,
            blocks: [Point { frames: 0.0, us: 0.0 }; BLOCKS],
            nblocks: 0,
            current: None,
            in_block: 0,
            slope: nominal,
            fit: None,
        }
    }

    /// Forgets every cycle seen: after an xrun JACK's frames restart from a new point in time
    /// (jack2's timed drivers, the dummy among them, start counting their cycles afresh from
    /// when they woke), so the old line would put every message as late as the server stalled.
    /// The next cycle observed is the new origin.
    pub fn restart(&mut self) {
        *self = FrameClock::new(self.sample_rate, self.period);
    }

    /// How far a point lies above the line of slope `s` through the origin, in frames: larger
    /// means an earlier (better) wake-up.
    fn score(p: Point, s: f64) -> f64 {
        p.frames - s * p.us
    }

    /// Records a cycle: its first frame and when it began (JACK's estimate, or when its
    /// callback ran: anything that is never early).
    pub fn observe(&mut self, frames: u32, now_us: u64) {
        let Some((_, t0)) = self.origin else {
            self.origin = Some((frames, now_us));
            self.last_raw = frames;
            self.current = Some(Point { frames: 0.0, us: 0.0 });
            self.in_block = 1;
            return;
        };
        let step = frames.wrapping_sub(self.last_raw);
        if step > u32::MAX / 2 || now_us < t0 {
            // Frames went backwards (a new server?) or time did: start again.
            *self = FrameClock::new(self.sample_rate, self.period);
            self.observe(frames, now_us);
            return;
        }
        self.last_raw = frames;
        self.unwrapped += u64::from(step);
        let p = Point { frames: self.unwrapped as f64, us: (now_us - t0) as f64 };
        let best = match self.current {
            Some(c) if Self::score(c, self.slope) >= Self::score(p, self.slope) => c,
            _ => p,
        };
        self.current = Some(best);
        self.in_block += 1;
        if self.in_block >= self.cycles_per_block {
            self.close_block(best);
        }
    }

    fn close_block(&mut self, best: Point) {
        let off = match self.fit {
            Some(f) => (best.frames - (f.frames + (best.us - f.us) * self.slope)).abs(),
            None if self.nblocks > 0 => {
                (Self::score(best, self.slope) - Self::score(self.blocks[self.nblocks - 1], self.slope)).abs()
            }
            None => 0.0,
        };
        if off > JUMP_FRAMES {
            self.nblocks = 0;
            self.slope = self.nominal;
            self.fit = None;
        }
        if self.nblocks == BLOCKS {
            self.blocks.copy_within(1.., 0);
            self.nblocks -= 1;
        }
        self.blocks[self.nblocks] = best;
        self.nblocks += 1;
        self.current = None;
        self.in_block = 0;
        self.fit_line();
    }

    /// The least-squares line through the blocks' best points, from [`FIT_FROM`] blocks on
    /// (its slope kept within [`MAX_DRIFT`] of the nominal rate).
    fn fit_line(&mut self) {
        let n = self.nblocks;
        if n < FIT_FROM {
            self.slope = self.nominal;
            self.fit = None;
            return;
        }
        let pts = &self.blocks[..n];
        let k = n as f64;
        let mean = Point {
            frames: pts.iter().map(|p| p.frames).sum::<f64>() / k,
            us: pts.iter().map(|p| p.us).sum::<f64>() / k,
        };
        // The deviation from the nominal rate, fitted on centred values (for precision).
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for p in pts {
            let x = p.us - mean.us;
            let y = p.frames - mean.frames - self.nominal * x;
            sxy += x * y;
            sxx += x * x;
        }
        let s = self.nominal + if sxx > 0.0 { sxy / sxx } else { 0.0 };
        self.slope = if s.is_finite() && (s / self.nominal - 1.0).abs() <= MAX_DRIFT { s } else { self.nominal };
        self.fit = Some(mean);
    }

    /// The frame (unwrapped, relative to the first cycle seen) that is current at `us`, or
    /// `None` before the first cycle.
    pub fn frame_at(&self, us: u64) -> Option<f64> {
        let (_, t0) = self.origin?;
        let t = us as f64 - t0 as f64;
        if let Some(f) = self.fit {
            return Some(f.frames + (t - f.us) * self.slope);
        }
        // Too early for a line: the best wake-up so far, at the nominal rate.
        let best = self.blocks[..self.nblocks]
            .iter()
            .chain(self.current.as_ref())
            .copied()
            .max_by(|a, b| Self::score(*a, self.slope).total_cmp(&Self::score(*b, self.slope)))?;
        Some(best.frames + (t - best.us) * self.slope)
    }

    /// `frames` (a cycle's first frame, as JACK counts) on the same unwrapped scale as
    /// [`FrameClock::frame_at`].
    pub fn unwrap(&self, frames: u32) -> Option<f64> {
        self.origin?;
        let ahead = frames.wrapping_sub(self.last_raw);
        let d = if ahead > u32::MAX / 2 { -f64::from(self.last_raw.wrapping_sub(frames)) } else { f64::from(ahead) };
        Some(self.unwrapped as f64 + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const PERIOD: u32 = 1024;
    /// 1024 frames at 48 kHz, in µs.
    const PERIOD_US: f64 = 21_333.333_333;

    /// Feeds `cycles` cycles that begin at `start_us` and run `ppm` fast, each woken `late(i)` µs
    /// after its true start; returns the clock and the true start of every cycle.
    fn run(c: &mut FrameClock, cycles: u32, start_us: f64, ppm: f64, late: impl Fn(u32) -> f64) -> Vec<f64> {
        let period = PERIOD_US / (1.0 + ppm * 1e-6);
        (0..cycles)
            .map(|i| {
                let t = start_us + f64::from(i) * period;
                c.observe(i.wrapping_mul(PERIOD).wrapping_add(7), (t + late(i)).round() as u64);
                t
            })
            .collect()
    }

    /// Frames between where the clock puts `us` and where it truly is.
    fn error(c: &FrameClock, truth: &[f64], us: f64, ppm: f64) -> f64 {
        let true_frame = (us - truth[0]) * f64::from(RATE) / 1e6 * (1.0 + ppm * 1e-6);
        c.frame_at(us.round() as u64).unwrap() - true_frame
    }

    #[test]
    fn late_wake_ups_do_not_move_the_map() {
        let mut c = FrameClock::new(RATE, PERIOD);
        assert_eq!(c.frame_at(1_000), None);
        // Woken 20-60 µs late, and every 50th cycle 3-8 ms late (an idle virtual machine).
        let late = |i: u32| if i % 50 == 17 { 3_000.0 + f64::from(i % 7) * 800.0 } else { 20.0 + f64::from(i % 41) };
        let truth = run(&mut c, 600, 1e9, 0.0, late);
        for probe in [598.0, 598.5, 599.9] {
            let e = error(&c, &truth, truth[0] + probe * PERIOD_US, 0.0);
            // The earliest wake-ups were 20 µs late: the map is 20 µs (about one frame) behind.
            assert!((-1.5..=0.0).contains(&e), "{e} frames off at cycle {probe}");
        }
    }

    #[test]
    fn the_rate_is_measured_when_the_card_drifts() {
        let mut c = FrameClock::new(RATE, PERIOD);
        let late = |i: u32| 15.0 + f64::from(i * 7 % 30);
        let truth = run(&mut c, 400, 5e8, 80.0, late);
        let e = error(&c, &truth, truth[399] + 0.9 * PERIOD_US, 80.0);
        assert!((-1.5..=0.0).contains(&e), "{e} frames off with a card 80 ppm fast");
        assert!(
            ((c.slope / c.nominal - 1.0) * 1e6 - 80.0).abs() < 5.0,
            "slope {} ppm",
            (c.slope / c.nominal - 1.0) * 1e6
        );
    }

    #[test]
    fn a_discontinuity_is_followed_within_two_blocks() {
        let mut c = FrameClock::new(RATE, PERIOD);
        let truth = run(&mut c, 200, 1e6, 0.0, |_| 20.0);
        // JACK restarts its cycle 5 ms later: the same frames now come 5 ms later.
        let mut c2 = c.clone();
        let shifted: Vec<f64> = (200..400u32)
            .map(|i| {
                let t = truth[0] + f64::from(i) * PERIOD_US + 5_000.0;
                c2.observe(i * PERIOD + 7, (t + 20.0) as u64);
                t
            })
            .collect();
        let probe = shifted[199] + 0.5 * PERIOD_US;
        let true_frame = (probe - shifted[0]) * f64::from(RATE) / 1e6 + 200.0 * f64::from(PERIOD);
        let e = c2.frame_at(probe as u64).unwrap() - true_frame;
        assert!((-1.5..=0.0).contains(&e), "{e} frames off after the jump");
        assert_eq!(c2.slope, c2.nominal);
    }

    #[test]
    fn after_an_xrun_the_map_restarts_from_the_next_cycle() {
        let mut c = FrameClock::new(RATE, PERIOD);
        let truth = run(&mut c, 200, 1e6, 0.0, |_| 20.0);
        // The server stalls for 150 ms: its next cycle carries the next frames, 150 ms later
        // than the old line puts them (jack2's timed drivers restart their cycle count).
        let resumed = truth[199] + PERIOD_US + 150_000.0;
        let frame = |i: u32| 7 + i * PERIOD;
        let mut stale = c.clone();
        stale.observe(frame(200), (resumed + 20.0) as u64);
        c.restart();
        assert_eq!(c.frame_at(1), None, "nothing is known right after a restart");
        c.observe(frame(200), (resumed + 20.0) as u64);
        for (k, i) in [(0.5, 200u32), (1.5, 201)] {
            let probe = resumed + k * PERIOD_US;
            if i == 201 {
                c.observe(frame(201), (resumed + PERIOD_US + 20.0) as u64);
                stale.observe(frame(201), (resumed + PERIOD_US + 20.0) as u64);
            }
            let true_frame = k * f64::from(PERIOD);
            let at = |c: &FrameClock| c.frame_at(probe as u64).unwrap() - c.unwrap(frame(200)).unwrap();
            let e = at(&c) - true_frame;
            assert!((-1.5..=0.0).contains(&e), "{e} frames off {k} periods after the restart");
            // Without the restart the map is as far off as the server stalled (until a block
            // shows the jump, up to a second later).
            assert!(at(&stale) - true_frame > 7_000.0, "{}", at(&stale) - true_frame);
        }
    }

    #[test]
    fn a_small_shift_is_followed_within_two_seconds() {
        let mut c = FrameClock::new(RATE, PERIOD);
        let truth = run(&mut c, 200, 1e6, 0.0, |_| 20.0);
        // The clock moves 0.5 ms later (24 frames: less than a jump), and stays there.
        for i in 200..320u32 {
            let t = truth[0] + f64::from(i) * PERIOD_US + 500.0;
            c.observe(i * PERIOD + 7, (t + 20.0) as u64);
        }
        let probe = truth[0] + 319.5 * PERIOD_US + 500.0;
        let true_frame = (probe - truth[0] - 500.0) * f64::from(RATE) / 1e6;
        let e = c.frame_at(probe as u64).unwrap() - true_frame;
        assert!((-1.5..=0.0).contains(&e), "{e} frames off 2.6 s after the shift");
    }

    #[test]
    fn the_map_holds_steady_under_jittery_wake_ups() {
        // A minute of cycles on a card that runs exactly at its rate, each callback running
        // 20-130 µs after its cycle began, how late at best changing from one half second to
        // the next, and one in fifty 1-5 ms late (what the dummy backend's callbacks did on
        // the development VM): wherever the map is probed it stays near one constant offset,
        // instead of wandering with the noise: within 2.5 frames from the fourth second on
        // (the history is short), within 1.5 from the sixteenth. (The map as it was before, the
        // best point of the last three blocks at the slope of the last four seconds, wandered
        // over 4.8 frames here.)
        let mut c = FrameClock::new(RATE, PERIOD);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let start = 2e6;
        let mut errors = Vec::new();
        let mut floor = 20.0;
        for i in 0..2_800u32 {
            let t = start + f64::from(i) * PERIOD_US;
            if i % 24 == 0 {
                floor = 20.0 + (next() >> 8) as f64 % 80.0;
            }
            let r = next();
            let late = if r % 50 == 0 { 1_000.0 + (r >> 8) as f64 % 4_000.0 } else { floor + (r >> 8) as f64 % 30.0 };
            c.observe(i.wrapping_mul(PERIOD), (t + late).round() as u64);
            if i >= 190 {
                let probe = t + 0.5 * PERIOD_US;
                let truth = (probe - start) * f64::from(RATE) / 1e6;
                errors.push((i, c.frame_at(probe.round() as u64).unwrap() - truth));
            }
        }
        for (from, within) in [(190, 2.5), (750, 1.5)] {
            let e = errors.iter().filter(|(i, _)| *i >= from).map(|(_, e)| *e);
            let lo = e.clone().fold(f64::INFINITY, f64::min);
            let hi = e.fold(f64::NEG_INFINITY, f64::max);
            assert!(
                hi - lo < within,
                "from cycle {from} the map wandered over {:.2} frames ({lo:.2} to {hi:.2})",
                hi - lo
            );
            assert!((-5.0..=0.0).contains(&lo), "{lo:.2} frames: the map is off by more than the wake-ups were late");
        }
    }

    #[test]
    fn frame_counts_wrap() {
        let mut c = FrameClock::new(RATE, PERIOD);
        let start = u32::MAX - 3 * PERIOD;
        for i in 0..10u32 {
            c.observe(start.wrapping_add(i * PERIOD), 1_000 + (f64::from(i) * PERIOD_US) as u64);
        }
        assert_eq!(c.unwrap(start.wrapping_add(9 * PERIOD)), Some(9.0 * f64::from(PERIOD)));
        assert_eq!(c.unwrap(start.wrapping_add(10 * PERIOD)), Some(10.0 * f64::from(PERIOD)));
        let f = c.frame_at(1_000 + (9.5 * PERIOD_US) as u64).unwrap();
        assert!((f - 9.5 * f64::from(PERIOD)).abs() < 1.0, "{f}");
    }
}
