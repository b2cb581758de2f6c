//! Clocks for the engine: the system's monotonic clock for playback, and a manual clock for
//! deterministic tests that never sleep.
//!
//! Times are [`Micros`] since the clock's own epoch (its creation). The engine computes absolute
//! deadlines on this clock and never sums relative sleeps, so no drift accumulates.
//!
//! # Waiting: park, then spin the last stretch
//! A parked thread wakes late: 5-60 µs on bare metal, and on a virtual machine now and then
//! several milliseconds (a halted virtual CPU must first be scheduled again by the host). So the
//! system clock parks until a *wake margin* before the deadline and spins the rest. The margin
//! is learned ([`WakeMargin`]): every park records how late it woke in a small preallocated ring
//! of the last [`WINDOW`] overshoots, and the margin follows the worst of them (one outlier
//! ignored) with some headroom, between [`MIN_MARGIN`] and [`MAX_MARGIN`]. An idle virtual
//! machine that wakes late widens the spin; a machine that wakes on time narrows it, so the CPU
//! spent spinning stays small where it is not needed.
//!
//! Runs on the engine thread. Nothing here allocates, locks or logs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::midi::Micros;

/// A monotonic clock the engine can wait on.
pub trait Clock: Send {
    /// Now, in µs since the clock's epoch.
    fn now(&self) -> Micros;

    /// Waits until `deadline` or until woken early by [`std::thread::Thread::unpark`]
    /// (commands arrive that way). May return early; the caller re-checks.
    ///
    /// # Real-time safety
    /// No allocation, no locks.
    fn wait_until(&mut self, deadline: Micros);

    /// How the clock waited so far (the system clock's learned wake margin); `None` for clocks
    /// that do not really wait.
    fn wake_stats(&self) -> Option<WakeStats> {
        None
    }
}

/// How many recent park overshoots the wake margin is learned from (about ten seconds of dense
/// music; minutes of a hymn).
pub const WINDOW: usize = 1024;
/// The share of those wake-ups the margin covers, in per mille.
pub const COVERED: usize = 997;
/// The narrowest spin before a deadline.
pub const MIN_MARGIN: Micros = Micros(100);
/// The widest spin before a deadline: wake-ups later than this are hypervisor stalls no margin
/// can sensibly cover (spinning through them would cost more CPU than it saves).
pub const MAX_MARGIN: Micros = Micros(4_000);
/// The margin before anything is learned: 1 ms covers most late wake-ups of an idle virtual
/// machine (measured with `cargo bench --bench lateness`).
pub const START_MARGIN: Micros = Micros(1_000);
/// How many overshoots must be recorded before the margin may narrow below [`START_MARGIN`].
pub const LEARN_AFTER: usize = 64;
/// A park shorter than this is not worth a system call: spin instead.
const MIN_PARK: Micros = Micros(50);
/// The longest single park: commands are also signalled by unpark, so this only bounds how
/// long a lost wake-up could delay them.
const MAX_PARK: Micros = Micros(50_000);

/// What the wait before a deadline does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The deadline has come.
    Due,
    /// Park this long (then look again).
    Park(Micros),
    /// Spin to the deadline.
    Spin,
}

/// The next step of a wait from `now` to `deadline`, spinning the last `margin`.
pub fn step(now: Micros, deadline: Micros, margin: Micros) -> Step {
    if deadline <= now {
        return Step::Due;
    }
    let remaining = deadline.0 - now.0;
    if remaining > margin.0 + MIN_PARK.0 {
        Step::Park(Micros((remaining - margin.0).min(MAX_PARK.0)))
    } else {
        Step::Spin
    }
}

/// Learns how late parking wakes on this machine and sets the spin margin from it: the
/// overshoot that [`COVERED`] of the last [`WINDOW`] parks stayed within (the worst few are
/// one-off stalls, not chased), plus an eighth and 50 µs of headroom, within
/// [`MIN_MARGIN`]..[`MAX_MARGIN`]. Until [`LEARN_AFTER`] parks have been seen it never goes
/// below [`START_MARGIN`].
///
/// Why that quantile: lateness is judged by its 99th percentile over messages, and a deadline
/// is missed only when its last park woke later than the margin, so the margin must cover a
/// little more than 99 % of wake-ups; 99.7 % leaves room for the estimate's own noise.
///
/// Fixed size, no allocation: recording is O(1); the margin is recomputed (a selection over a
/// stack copy of the window, a few µs) only when it is asked for before a park, far from any
/// deadline.
#[derive(Debug, Clone, Copy)]
pub struct WakeMargin {
    /// Overshoots in µs (saturating at u16::MAX), a ring.
    record: [u16; WINDOW],
    len: usize,
    next: usize,
    margin: Micros,
    dirty: bool,
    stats: WakeStats,
}

/// How the system clock waited, for `--stats` and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WakeStats {
    /// Parks that ran to their timeout (early wake-ups by a command are not counted).
    pub parks: u64,
    /// Of those, how many woke later than the margin allowed (the deadline was then missed
    /// by the difference, unless another park followed).
    pub late_wakes: u64,
    /// The worst overshoot seen.
    pub worst_overshoot: Micros,
    /// The margin now, and its narrowest and widest during the run.
    pub margin: Micros,
    pub margin_min: Micros,
    pub margin_max: Micros,
    /// Time spent spinning before deadlines.
    pub spun: Micros,
}

impl Default for WakeMargin {
    fn default() -> Self {
        WakeMargin::new()
    }
}

impl WakeMargin {
    pub const fn new() -> WakeMargin {
        WakeMargin {
            record: [0; WINDOW],
            len: 0,
            next: 0,
            margin: START_MARGIN,
            dirty: false,
            stats: WakeStats {
                parks: 0,
                late_wakes: 0,
                worst_overshoot: Micros::ZERO,
                margin: START_MARGIN,
                margin_min: START_MARGIN,
                margin_max: START_MARGIN,
                spun: Micros::ZERO,
            },
        }
    }

    /// The margin as last computed (no work: for the decision right after a wake-up).
    pub fn current(&self) -> Micros {
        self.margin
    }

    /// The margin to spin before a deadline, recomputed from the record when it changed.
    pub fn margin(&mut self) -> Micros {
        if self.dirty {
            self.dirty = false;
            self.margin = self.compute();
            self.stats.margin = self.margin;
            self.stats.margin_min = self.stats.margin_min.min(self.margin);
            self.stats.margin_max = self.stats.margin_max.max(self.margin);
        }
        self.margin
    }

    /// Records how late a park woke (`woke − target`; a park woken early by a command is not a
    /// sample: pass nothing for it).
    pub fn record(&mut self, overshoot: Micros) {
        self.record[self.next] = overshoot.0.min(u64::from(u16::MAX)) as u16;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        self.dirty = true;
        self.stats.parks += 1;
        if overshoot > self.margin {
            self.stats.late_wakes += 1;
        }
        self.stats.worst_overshoot = self.stats.worst_overshoot.max(overshoot);
    }

    /// Adds time spent spinning.
    pub fn spun(&mut self, d: Micros) {
        self.stats.spun = Micros(self.stats.spun.0 + d.0);
    }

    pub fn stats(&self) -> WakeStats {
        self.stats
    }

    fn compute(&self) -> Micros {
        let mut w = self.record; // a stack copy: the ring keeps its order
        let w = &mut w[..self.len];
        // Leave out the worst (1000 − COVERED) ‰, rounded down: none of a short record.
        let covered = match w.len() {
            0 => 0,
            n => {
                let skip = n * (1000 - COVERED) / 1000;
                let (_, v, _) = w.select_nth_unstable(n - 1 - skip);
                u64::from(*v)
            }
        };
        let mut m = covered + covered / 8 + 50;
        if self.len < LEARN_AFTER {
            m = m.max(START_MARGIN.0);
        }
        Micros(m.clamp(MIN_MARGIN.0, MAX_MARGIN.0))
    }
}

/// The system's monotonic clock (`Instant`): parks until the learned [`WakeMargin`] before a
/// deadline, then spins. Copies share the epoch; each copy learns its own margin.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    epoch: Instant,
    margin: WakeMargin,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { epoch: Instant::now(), margin: WakeMargin::new() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        Micros(self.epoch.elapsed().as_micros() as u64)
    }

    fn wait_until(&mut self, deadline: Micros) {
        let now = self.now();
        // Recompute the margin only when about to park: right after a wake-up, close to the
        // deadline, the cached one decides without delay.
        let next = match step(now, deadline, self.margin.current()) {
            Step::Park(_) => step(now, deadline, self.margin.margin()),
            s => s,
        };
        match next {
            Step::Due => {}
            Step::Park(d) => {
                std::thread::park_timeout(Duration::from_micros(d.0));
                let woke = self.now();
                let target = now.0 + d.0;
                // An earlier return is a command's unpark (or spurious): not a sample.
                if woke.0 >= target {
                    self.margin.record(Micros(woke.0 - target));
                }
                // The caller loops: commands first, then waits again (or spins).
            }
            Step::Spin => {
                let mut t = now;
                while t < deadline {
                    std::hint::spin_loop();
                    t = self.now();
                }
                self.margin.spun(Micros(t.0 - now.0));
            }
        }
    }

    fn wake_stats(&self) -> Option<WakeStats> {
        Some(self.margin.stats())
    }
}

/// A clock that only moves when told to, or jumps to the deadline when waited on: engine tests
/// run a whole piece instantly and deterministically.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock to `t` (never backwards).
    pub fn set(&self, t: Micros) {
        self.now.fetch_max(t.0, Ordering::SeqCst);
    }

    pub fn advance(&self, d: Micros) {
        self.now.fetch_add(d.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        Micros(self.now.load(Ordering::SeqCst))
    }

    /// Jumps straight to the deadline.
    fn wait_until(&mut self, deadline: Micros) {
        self.set(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_waits_to_the_deadline() {
        let mut c = SystemClock::new();
        let deadline = Micros(c.now().0 + 2_000);
        while c.now() < deadline {
            c.wait_until(deadline);
        }
        assert!(c.now() >= deadline);
    }

    #[test]
    fn manual_clock_jumps() {
        let mut c = ManualClock::new();
        c.wait_until(Micros(500));
        assert_eq!(c.now(), Micros(500));
        c.set(Micros(100));
        assert_eq!(c.now(), Micros(500), "never backwards");
        c.advance(Micros(10));
        assert_eq!(c.now(), Micros(510));
    }

    #[test]
    fn a_wait_parks_until_the_margin_then_spins() {
        let m = Micros(1_000);
        assert_eq!(step(Micros(10_000), Micros(10_000), m), Step::Due);
        assert_eq!(step(Micros(10_001), Micros(10_000), m), Step::Due);
        assert_eq!(step(Micros(0), Micros(10_000), m), Step::Park(Micros(9_000)));
        // Within the margin, or so little beyond it that a park is not worth it: spin.
        assert_eq!(step(Micros(9_500), Micros(10_000), m), Step::Spin);
        assert_eq!(step(Micros(8_960), Micros(10_000), m), Step::Spin);
        assert_eq!(step(Micros(8_900), Micros(10_000), m), Step::Park(Micros(100)));
        // Far deadlines are approached in bounded parks (commands may also wake the engine).
        assert_eq!(step(Micros(0), Micros(10_000_000), m), Step::Park(MAX_PARK));
    }

    fn learned(overshoots: impl IntoIterator<Item = u64>) -> WakeMargin {
        let mut w = WakeMargin::new();
        for o in overshoots {
            w.record(Micros(o));
        }
        w
    }

    #[test]
    fn the_margin_starts_at_one_millisecond_and_keeps_it_until_it_has_learned() {
        let mut w = WakeMargin::new();
        assert_eq!(w.margin(), START_MARGIN);
        let mut w = learned([10; LEARN_AFTER - 1]);
        assert_eq!(w.margin(), START_MARGIN, "a few punctual wake-ups prove little");
        w.record(Micros(10));
        // 10 µs + an eighth + 50 µs, raised to the minimum.
        assert_eq!(w.margin(), MIN_MARGIN);
    }

    #[test]
    fn the_margin_covers_all_but_the_worst_three_in_a_thousand_wake_ups() {
        // A machine that wakes 40-80 µs late, with a few late wake-ups and three stalls.
        let mut overshoots: Vec<u64> = (0..WINDOW as u64).map(|i| 40 + i % 41).collect();
        overshoots[100] = 3_000;
        overshoots[300] = 5_000;
        overshoots[500] = 2_000;
        overshoots[700] = 800;
        overshoots[900] = 640;
        let mut w = learned(overshoots);
        // The three stalls (3 of 1024) are left out; the 800 µs wake-up is covered with headroom.
        assert_eq!(w.margin(), Micros(800 + 100 + 50));
        let s = w.stats();
        assert_eq!((s.parks, s.worst_overshoot), (WINDOW as u64, Micros(5_000)));
        assert_eq!(s.late_wakes, 3, "the stalls woke later than the starting 1 ms margin");
    }

    #[test]
    fn a_short_record_is_covered_entirely() {
        let mut short: Vec<u64> = vec![70; 200];
        short[10] = 1_600;
        let mut w = learned(short);
        assert_eq!(w.margin(), Micros(1_600 + 200 + 50), "1 in 200 is more than 3 in 1000: covered");
    }

    #[test]
    fn the_margin_widens_when_wake_ups_get_late_and_narrows_when_they_recover() {
        let mut w = learned([60; WINDOW]);
        let quiet = w.margin();
        assert_eq!(quiet, Micros(60 + 7 + 50));
        // An idle virtual machine: now and then a wake-up 1.2-1.6 ms late.
        for i in 0..WINDOW as u64 {
            w.record(Micros(if i % 100 == 0 { 1_200 + i / 100 * 40 } else { 60 }));
        }
        // 11 late ones in the window, 1.2-1.6 ms: all but the three worst (1.6, 1.56, 1.52 ms)
        // are covered.
        assert_eq!(w.margin(), Micros(1_480 + 185 + 50));
        // Punctual again: once all but three of the late ones have left the window (the
        // one at 1.48 ms is the fourth from the end, 700 + 324 parks ago), the margin is back.
        for _ in 0..700 {
            w.record(Micros(60));
        }
        assert_eq!(w.margin(), Micros(1_480 + 185 + 50), "four late ones are still in the window");
        w.record(Micros(60));
        assert_eq!(w.margin(), quiet);
        let s = w.stats();
        assert_eq!((s.margin_min, s.margin_max, s.margin), (quiet, Micros(1_715), quiet));
    }

    #[test]
    fn the_margin_stays_within_its_bounds() {
        let mut w = learned([20_000; 10]);
        assert_eq!(w.margin(), MAX_MARGIN, "stalls of 20 ms are not chased");
        let mut w = learned([0; WINDOW]);
        assert_eq!(w.margin(), MIN_MARGIN);
        // Overshoots beyond u16 saturate instead of wrapping.
        let mut w = learned([100_000, 100_000]);
        assert_eq!(w.margin(), MAX_MARGIN);
    }

    #[test]
    fn spinning_is_accounted() {
        let mut w = WakeMargin::new();
        w.spun(Micros(300));
        w.spun(Micros(700));
        assert_eq!(w.stats().spun, Micros(1_000));
    }
}
