//! Clocks for the engine: the system's monotonic clock for playback, and a manual clock for
//! deterministic tests that never sleep.
//!
//! Times are [`Micros`] since the clock's own epoch (its creation). The engine computes absolute
//! deadlines on this clock and never sums relative sleeps, so no drift accumulates.
//!
//! # Waiting: park, nap, then spin the last stretch
//! A sleeping thread wakes late: 5-60 µs on bare metal, and now and then several milliseconds
//! after a long sleep, when the CPU has gone into a deep idle state (a laptop's C-states) or a
//! virtual CPU has halted and must first be scheduled again by the host. Short sleeps keep the
//! CPU in shallow idle states and wake far more predictably. So the system clock ([`Waiter`]):
//!
//! 1. **parks** until an *approach margin* before the deadline (long sleeps);
//! 2. **naps** in sleeps of at most [`NAP`] until a *spin margin* before it;
//! 3. **spins** the rest.
//!
//! Both margins are learned ([`WakeMargin`]): every park and every nap records how late it woke
//! in a small preallocated ring, and each margin covers all but the worst 0.1 % of its recent
//! wake-ups, with headroom. An idle virtual machine that wakes late widens them; a machine that
//! wakes on time narrows them, so the CPU spent spinning stays small where it is not needed.
//! Where naps wake no better than parks, the spin margin grows to the approach margin and the
//! clock simply parks, then spins.
//!
//! While it plays, the engine also asks the kernel to keep the CPU out of deep idle states
//! ([`super::awake`]), which takes most late wake-ups away at the source.
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

    /// How the clock waited so far (the system clock's learned margins); `None` for clocks that
    /// do not really wait.
    fn wake_stats(&self) -> Option<WakeStats> {
        None
    }
}

/// How many recent overshoots each margin is learned from.
pub const WINDOW: usize = 1024;
/// The share of those wake-ups a margin covers, in per mille.
pub const COVERED: usize = 999;
/// Added to a margin beyond the covered overshoot and its quarter.
pub const HEADROOM: Micros = Micros(30);
/// The longest nap.
pub const NAP: Micros = Micros(200);

/// The bounds of one learned margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Before anything is learned (kept until [`LEARN_AFTER`] wake-ups are recorded).
    pub start: Micros,
    pub min: Micros,
    /// Wake-ups later than this are stalls no margin can sensibly cover: they are counted, not
    /// learned from (so a few of them do not leave the margin, and the CPU spent spinning, at
    /// its widest for the rest of the piece).
    pub max: Micros,
}

/// Where parks end: at least 1 ms before a deadline (never later than the spin begins), wider
/// when parks wake later than that; at most 4 ms.
pub const APPROACH: Limits = Limits { start: Micros(1_000), min: Micros(1_000), max: Micros(4_000) };
/// Where naps end and spinning begins: at least 1 ms before a deadline, as the engine did
/// before it learned its margins; at most 2 ms (a nap that wakes later than that was stalled,
/// the CPU taken from the engine). The floor is measured, not guessed: on the development VM
/// with a busy host, narrower learned spins (down to 50 µs, naps in between) were late at p99
/// by 381-650 µs where the 1 ms spin kept 7-32 µs: every nap's wake-up is a moment the host
/// can keep the virtual CPU, and a spin gives it no such moment. The price is about 1 ms of
/// CPU a deadline (0.5 s a minute for a piece with 9 deadlines a second).
pub const SPIN: Limits = Limits { start: Micros(1_000), min: Micros(1_000), max: Micros(2_000) };
/// How many overshoots must be recorded before a margin may narrow below its start.
pub const LEARN_AFTER: usize = 64;
/// A deadline reached later than this is counted as missed in [`DeadlineStats`] (the
/// lateness target of the benchmarks).
pub const MISSED: Micros = Micros(20);
/// A park or nap shorter than this is not worth a system call: go on to the next stage.
const MIN_SLEEP: Micros = Micros(20);
/// The longest single park: commands are also signalled by unpark, so this only bounds how
/// long a lost wake-up could delay them.
const MAX_PARK: Micros = Micros(50_000);
/// A margin is recomputed after this many wake-ups within it (at once after one beyond it).
const REFRESH_EVERY: u32 = 32;

/// What the wait before a deadline does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The deadline has come.
    Due,
    /// A long sleep of this length (then look again).
    Park(Micros),
    /// A short sleep of this length.
    Nap(Micros),
    /// Spin to the deadline.
    Spin,
}

/// The next step of a wait from `now` to `deadline`: park until `approach` before it, nap
/// until `spin` before it, spin the rest.
pub fn step(now: Micros, deadline: Micros, approach: Micros, spin: Micros) -> Step {
    if deadline <= now {
        return Step::Due;
    }
    let remaining = deadline.0 - now.0;
    // Naps wake no better than parks when the spin margin is the wider: then park, then spin.
    let approach = approach.max(spin);
    if remaining >= approach.0 + MIN_SLEEP.0 {
        Step::Park(Micros((remaining - approach.0).min(MAX_PARK.0)))
    } else if remaining >= spin.0 + MIN_SLEEP.0 {
        Step::Nap(Micros((remaining - spin.0).min(NAP.0)))
    } else {
        Step::Spin
    }
}

/// Learns how late sleeping wakes on this machine and sets a margin from it: the overshoot that
/// [`COVERED`] of the last [`WINDOW`] sleeps stayed within (the worst few are one-off stalls,
/// not chased), plus a quarter and [`HEADROOM`], within its [`Limits`]. Wake-ups later than
/// the maximum are stalls: counted, never learned from.
///
/// Why that quantile: lateness is judged by its 99th percentile over messages, and a deadline
/// is missed when the park before it, or the last nap, woke later than its margin (or the CPU
/// was taken away while spinning, which no margin helps): the misses of both margins together
/// must stay well under 1 % of deadlines. Covering 99.9 % of each (all but the worst one of a
/// full window), with headroom, leaves room for the estimate's own noise; on the development VM
/// covering 99.7 % missed 1 % of deadlines in one round of five. A wide approach margin costs
/// little (naps, not spinning).
///
/// Fixed size, no allocation: recording is O(1); the margin is recomputed (a selection over a
/// stack copy of the window, a few µs) only when asked for before a sleep, and only every
/// [`REFRESH_EVERY`] wake-ups unless one woke beyond it.
#[derive(Debug, Clone, Copy)]
pub struct WakeMargin {
    limits: Limits,
    /// Overshoots in µs (saturating at u16::MAX), a ring.
    record: [u16; WINDOW],
    len: usize,
    next: usize,
    /// The covered overshoot and the margin made from it.
    covered: Micros,
    margin: Micros,
    pending: u32,
    dirty: bool,
    stats: MarginStats,
}

/// One margin's record, for the reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarginStats {
    /// Sleeps that ran to their timeout (early wake-ups by a command are not counted).
    pub sleeps: u64,
    /// Of those, how many woke later than the margin allowed.
    pub late: u64,
    pub worst_overshoot: Micros,
    /// Of the late ones, how many woke later than the margin's maximum: stalls, not learned
    /// from.
    pub stalls: u64,
    /// The margin now, and its narrowest and widest during the run.
    pub margin: Micros,
    pub min: Micros,
    pub max: Micros,
}

/// How the system clock waited, for `--stats` and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WakeStats {
    /// The parks and the approach margin they end at.
    pub approach: MarginStats,
    /// The naps and the spin margin they end at.
    pub spin: MarginStats,
    /// Time spent spinning before deadlines.
    pub spun: Micros,
    /// The deadlines reached, and why the missed ones were missed.
    pub deadlines: DeadlineStats,
}

/// The deadlines the clock waited for and how late it reached them: a deadline is reached at
/// the end of its spin, or by a park or nap that woke past it. (Deadlines already past when
/// the engine looked, after a stall, were not waited for and are not counted here; the
/// lateness histogram counts every message.) One reached more than
/// [`MISSED`] late was missed for one of two reasons, told apart here so a report can say
/// whether the waiting was at fault:
/// - **taken**: the spin was running but the CPU was taken from the engine at the deadline (an
///   interrupt such as the kernel's timer tick, a higher-priority thread, or a virtual
///   machine's host), so no margin could have helped (a spin's own loop checks the clock every
///   few hundred nanoseconds);
/// - **overslept**: a park or nap woke past the deadline itself: its margin was too narrow
///   for that wake-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadlineStats {
    pub reached: u64,
    pub taken: u64,
    pub taken_worst: Micros,
    pub overslept: u64,
    pub overslept_worst: Micros,
}

impl DeadlineStats {
    /// The missed ones (more than [`MISSED`] late).
    pub fn missed(&self) -> u64 {
        self.taken + self.overslept
    }
}

/// How a deadline was reached, for [`Waiter::reached`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// At the end of the spin before it.
    Spinning,
    /// By a park or nap that woke past it.
    Sleeping,
}

impl WakeMargin {
    pub const fn new(limits: Limits) -> WakeMargin {
        WakeMargin {
            limits,
            record: [0; WINDOW],
            len: 0,
            next: 0,
            covered: Micros::ZERO,
            margin: limits.start,
            pending: 0,
            dirty: false,
            stats: MarginStats {
                sleeps: 0,
                late: 0,
                worst_overshoot: Micros::ZERO,
                stalls: 0,
                margin: limits.start,
                min: limits.start,
                max: limits.start,
            },
        }
    }

    /// The margin as last computed (no work: for the decision right after a wake-up).
    pub fn current(&self) -> Micros {
        self.margin
    }

    /// The margin, recomputed from the record when due.
    pub fn margin(&mut self) -> Micros {
        if self.dirty {
            self.dirty = false;
            self.pending = 0;
            self.covered = self.covered_overshoot();
            let mut m = self.covered.0 + self.covered.0 / 4 + HEADROOM.0;
            if self.len < LEARN_AFTER {
                m = m.max(self.limits.start.0);
            }
            self.margin = Micros(m.clamp(self.limits.min.0, self.limits.max.0));
            self.stats.margin = self.margin;
            self.stats.min = self.stats.min.min(self.margin);
            self.stats.max = self.stats.max.max(self.margin);
        }
        self.margin
    }

    /// Records how late a sleep woke (`woke − target`; a sleep woken early by a command is not
    /// a sample: pass nothing for it).
    pub fn record(&mut self, overshoot: Micros) {
        self.stats.sleeps += 1;
        if overshoot > self.margin {
            self.stats.late += 1;
        }
        self.stats.worst_overshoot = self.stats.worst_overshoot.max(overshoot);
        if overshoot > self.limits.max {
            self.stats.stalls += 1;
            return;
        }
        self.record[self.next] = overshoot.0.min(u64::from(u16::MAX)) as u16;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        self.pending += 1;
        if overshoot > self.covered || self.pending >= REFRESH_EVERY || self.len <= LEARN_AFTER {
            self.dirty = true;
        }
    }

    pub fn stats(&self) -> MarginStats {
        self.stats
    }

    /// The overshoot [`COVERED`] of the record stayed within (all of a short record).
    fn covered_overshoot(&self) -> Micros {
        let mut w = self.record; // a stack copy: the ring keeps its order
        let w = &mut w[..self.len];
        match w.len() {
            0 => Micros::ZERO,
            n => {
                let skip = n * (1000 - COVERED) / 1000;
                let (_, v, _) = w.select_nth_unstable(n - 1 - skip);
                Micros(u64::from(*v))
            }
        }
    }
}

/// The waiting policy of the system clock, apart from the clock itself (so it is tested with
/// made-up times): which step to take, and what each wake-up teaches.
#[derive(Debug, Clone, Copy)]
pub struct Waiter {
    approach: WakeMargin,
    spin: WakeMargin,
    spun: Micros,
    deadlines: DeadlineStats,
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter::new()
    }
}

impl Waiter {
    pub const fn new() -> Waiter {
        Waiter::with_limits(APPROACH, SPIN)
    }

    /// A waiter whose margins keep within other limits (`start == min == max` fixes one).
    pub const fn with_limits(approach: Limits, spin: Limits) -> Waiter {
        Waiter {
            approach: WakeMargin::new(approach),
            spin: WakeMargin::new(spin),
            spun: Micros::ZERO,
            deadlines: DeadlineStats {
                reached: 0,
                taken: 0,
                taken_worst: Micros::ZERO,
                overslept: 0,
                overslept_worst: Micros::ZERO,
            },
        }
    }

    /// The next step from `now` to `deadline`. Margins are recomputed only when about to
    /// sleep: right after a wake-up, close to the deadline, the cached ones decide at once.
    pub fn next(&mut self, now: Micros, deadline: Micros) -> Step {
        match step(now, deadline, self.approach.current(), self.spin.current()) {
            Step::Park(_) | Step::Nap(_) => step(now, deadline, self.approach.margin(), self.spin.margin()),
            s => s,
        }
    }

    /// A park or nap of `step` woke `overshoot` after its target.
    pub fn woke(&mut self, step: Step, overshoot: Micros) {
        match step {
            Step::Park(_) => self.approach.record(overshoot),
            Step::Nap(_) => self.spin.record(overshoot),
            Step::Due | Step::Spin => {}
        }
    }

    /// Adds time spent spinning.
    pub fn spun(&mut self, d: Micros) {
        self.spun = Micros(self.spun.0 + d.0);
    }

    /// A deadline was reached `late` after it, `how`.
    pub fn reached(&mut self, how: Reached, late: Micros) {
        let d = &mut self.deadlines;
        d.reached += 1;
        if late > MISSED {
            let (n, worst) = match how {
                Reached::Spinning => (&mut d.taken, &mut d.taken_worst),
                Reached::Sleeping => (&mut d.overslept, &mut d.overslept_worst),
            };
            *n += 1;
            *worst = (*worst).max(late);
        }
    }

    pub fn stats(&self) -> WakeStats {
        WakeStats {
            approach: self.approach.stats(),
            spin: self.spin.stats(),
            spun: self.spun,
            deadlines: self.deadlines,
        }
    }
}

/// The system's monotonic clock (`Instant`), waiting as [`Waiter`] says. Copies share the
/// epoch; each copy learns its own margins.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    epoch: Instant,
    waiter: Waiter,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { epoch: Instant::now(), waiter: Waiter::new() }
    }

    /// A clock whose margins keep within other limits: the lateness benchmark compares the
    /// engine as it was, parking until a fixed 1 ms before each deadline and spinning the rest
    /// (both margins fixed at 1 ms).
    pub fn with_limits(approach: Limits, spin: Limits) -> SystemClock {
        SystemClock { epoch: Instant::now(), waiter: Waiter::with_limits(approach, spin) }
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
        match self.waiter.next(now, deadline) {
            Step::Due => {}
            s @ (Step::Park(d) | Step::Nap(d)) => {
                std::thread::park_timeout(Duration::from_micros(d.0));
                let woke = self.now();
                let target = now.0 + d.0;
                // An earlier return is a command's unpark (or spurious): not a sample.
                if woke.0 >= target {
                    self.waiter.woke(s, Micros(woke.0 - target));
                }
                if woke >= deadline {
                    self.waiter.reached(Reached::Sleeping, Micros(woke.0 - deadline.0));
                }
                // The caller loops: commands first, then waits again.
            }
            Step::Spin => {
                let mut t = now;
                while t < deadline {
                    std::hint::spin_loop();
                    t = self.now();
                }
                self.waiter.spun(Micros(t.0 - now.0));
                self.waiter.reached(Reached::Spinning, Micros(t.0 - deadline.0));
            }
        }
    }

    fn wake_stats(&self) -> Option<WakeStats> {
        Some(self.waiter.stats())
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
        let d = c.wake_stats().expect("the system clock reports how it waited").deadlines;
        assert_eq!(d.reached, 1, "one deadline, reached once: {d:?}");
    }

    #[test]
    fn missed_deadlines_are_told_apart_by_how_they_were_reached() {
        let mut w = Waiter::new();
        w.reached(Reached::Spinning, Micros(0));
        w.reached(Reached::Spinning, MISSED);
        w.reached(Reached::Spinning, Micros(56));
        w.reached(Reached::Spinning, Micros(21));
        w.reached(Reached::Sleeping, Micros(3));
        w.reached(Reached::Sleeping, Micros(2_100));
        let d = w.stats().deadlines;
        assert_eq!(d.reached, 6);
        assert_eq!((d.taken, d.taken_worst), (2, Micros(56)), "a spin that ends late had the CPU taken from it");
        assert_eq!((d.overslept, d.overslept_worst), (1, Micros(2_100)), "a sleep that woke past the deadline");
        assert_eq!(d.missed(), 3, "20 µs late is not missed; 21 µs is");
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
    fn a_wait_parks_to_the_approach_naps_to_the_spin_margin_then_spins() {
        let (a, sp) = (Micros(1_000), Micros(100));
        assert_eq!(step(Micros(10_000), Micros(10_000), a, sp), Step::Due);
        assert_eq!(step(Micros(10_001), Micros(10_000), a, sp), Step::Due);
        assert_eq!(step(Micros(0), Micros(10_000), a, sp), Step::Park(Micros(9_000)));
        assert_eq!(step(Micros(8_980), Micros(10_000), a, sp), Step::Park(Micros(20)));
        // Within the approach: naps of at most 200 µs, the last one ending at the spin margin.
        assert_eq!(step(Micros(8_990), Micros(10_000), a, sp), Step::Nap(NAP));
        assert_eq!(step(Micros(9_750), Micros(10_000), a, sp), Step::Nap(Micros(150)));
        assert_eq!(step(Micros(9_880), Micros(10_000), a, sp), Step::Nap(Micros(20)));
        assert_eq!(step(Micros(9_881), Micros(10_000), a, sp), Step::Spin);
        // Far deadlines are approached in bounded parks (commands may also wake the engine).
        assert_eq!(step(Micros(0), Micros(10_000_000), a, sp), Step::Park(MAX_PARK));
        // When naps wake no better than parks (spin margin ≥ approach): park, then spin.
        assert_eq!(step(Micros(0), Micros(10_000), a, a), Step::Park(Micros(9_000)));
        assert_eq!(step(Micros(9_000), Micros(10_000), a, a), Step::Spin);
    }

    /// Limits for testing the learning itself, below the shipped floors.
    const LEARN: Limits = Limits { start: Micros(1_000), min: Micros(100), max: Micros(4_000) };
    const LEARN_SPIN: Limits = Limits { start: Micros(300), min: Micros(50), max: Micros(2_000) };

    fn learned(overshoots: impl IntoIterator<Item = u64>) -> WakeMargin {
        let mut w = WakeMargin::new(LEARN);
        for o in overshoots {
            w.record(Micros(o));
        }
        w
    }

    #[test]
    fn a_margin_starts_at_its_start_and_keeps_it_until_it_has_learned() {
        let mut w = WakeMargin::new(LEARN);
        assert_eq!(w.margin(), LEARN.start);
        let mut w = learned([10; LEARN_AFTER - 1]);
        assert_eq!(w.margin(), LEARN.start, "a few punctual wake-ups prove little");
        w.record(Micros(10));
        // 10 µs + a quarter + 30 µs, raised to the minimum.
        assert_eq!(w.margin(), LEARN.min);
        assert_eq!(WakeMargin::new(SPIN).margin(), SPIN.start);
    }

    #[test]
    fn a_margin_covers_all_but_the_worst_one_in_a_thousand_wake_ups() {
        // A machine that wakes 40-80 µs late, with a few late wake-ups and one worse.
        let mut overshoots: Vec<u64> = (0..WINDOW as u64).map(|i| 40 + i % 41).collect();
        overshoots[100] = 3_000;
        overshoots[300] = 2_000;
        overshoots[700] = 800;
        overshoots[900] = 640;
        let mut w = learned(overshoots);
        // The worst (1 of 1024) is left out; the 2 ms wake-up is covered with headroom.
        assert_eq!(w.margin(), Micros(2_000 + 500 + 30));
        let s = w.stats();
        assert_eq!((s.sleeps, s.worst_overshoot, s.stalls), (WINDOW as u64, Micros(3_000), 0));
        assert_eq!(s.late, 2, "two woke later than the starting 1 ms margin");
    }

    #[test]
    fn a_short_record_is_covered_entirely() {
        let mut short: Vec<u64> = vec![70; 900];
        short[10] = 1_600;
        let mut w = learned(short);
        assert_eq!(w.margin(), Micros(1_600 + 400 + 30), "1 in 900 is more than 1 in 1000: covered");
    }

    #[test]
    fn a_margin_widens_at_once_and_narrows_when_wake_ups_recover() {
        let mut w = learned([200; WINDOW]);
        let quiet = w.margin();
        assert_eq!(quiet, Micros(200 + 50 + 30));
        // An idle virtual machine: now and then a wake-up 1.2-1.6 ms late.
        for i in 0..WINDOW as u64 {
            w.record(Micros(if i % 100 == 0 { 1_200 + i / 100 * 40 } else { 200 }));
            if i == 0 {
                assert_eq!(w.margin(), quiet, "one late wake-up in a full window is the worst 0.1 %: left out");
            }
            if i == 100 {
                // The second one: the first is no longer the worst, and is covered at once.
                assert_eq!(w.margin(), Micros(1_200 + 300 + 30));
            }
        }
        // 11 late ones in the window, 1.2-1.6 ms: all but the worst are covered.
        assert_eq!(w.margin(), Micros(1_560 + 390 + 30));
        // Punctual again: once all but one of the late ones have left the window, the margin
        // narrows at the next refresh.
        for _ in 0..880 {
            w.record(Micros(200));
        }
        assert_eq!(w.margin(), Micros(1_980), "two late ones are still in the window");
        for _ in 0..REFRESH_EVERY {
            w.record(Micros(200));
        }
        assert_eq!(w.margin(), quiet);
        let s = w.stats();
        assert_eq!((s.min, s.max, s.margin), (quiet, Micros(1_980), quiet));
    }

    #[test]
    fn a_margin_stays_within_its_bounds() {
        let mut w = learned([3_900; 10]);
        assert_eq!(w.margin(), LEARN.max, "3.9 ms + headroom is capped");
        let mut w = learned([0; WINDOW]);
        assert_eq!(w.margin(), LEARN.min);
    }

    #[test]
    fn stalls_beyond_the_maximum_are_counted_not_learned() {
        // A punctual machine whose host now and then takes the CPU away for 5-100 ms.
        let mut w = learned((0..WINDOW as u64).map(|i| if i % 20 == 0 { 5_000 + i * 100 } else { 60 }));
        assert_eq!(w.margin(), Micros(60 + 15 + 30), "60 µs + a quarter + 30 µs: the stalls are not chased");
        let s = w.stats();
        assert_eq!((s.sleeps, s.stalls, s.late), (WINDOW as u64, 52, 52));
        assert_eq!(s.worst_overshoot, Micros(5_000 + 1_020 * 100), "beyond u16 µs: reported as it was");
        // Stalls alone teach nothing: the margin keeps its start.
        let mut w = learned([20_000; 10]);
        assert_eq!(w.margin(), LEARN.start);
        assert_eq!(w.stats().stalls, 10);
    }

    #[test]
    fn the_engine_spins_at_least_1_ms_before_a_deadline_however_punctual_the_machine() {
        let mut w = Waiter::new();
        for _ in 0..WINDOW {
            w.woke(Step::Park(Micros(10_000)), Micros(5));
            w.woke(Step::Nap(NAP), Micros(5));
        }
        assert_eq!(w.next(Micros(0), Micros(10_000)), Step::Park(Micros(9_000)));
        assert_eq!(w.next(Micros(9_000), Micros(10_000)), Step::Spin, "parks, then spins 1 ms, as the fixed spin did");
        // Parks that wake late widen the approach: naps then bridge to the 1 ms spin.
        for i in 0..WINDOW as u64 {
            w.woke(Step::Park(Micros(10_000)), Micros(if i % 100 == 0 { 2_000 } else { 5 }));
        }
        assert_eq!(w.next(Micros(0), Micros(10_000)), Step::Park(Micros(10_000 - 2_530)));
        assert_eq!(w.next(Micros(7_500), Micros(10_000)), Step::Nap(NAP));
        assert_eq!(w.next(Micros(8_900), Micros(10_000)), Step::Nap(Micros(100)));
        assert_eq!(w.next(Micros(9_000), Micros(10_000)), Step::Spin);
    }

    #[test]
    fn fixed_limits_keep_a_margin_whatever_is_learned() {
        let fixed = Limits { start: Micros(1_000), min: Micros(1_000), max: Micros(1_000) };
        let mut w = Waiter::with_limits(fixed, fixed);
        for _ in 0..WINDOW {
            w.woke(Step::Park(Micros(10_000)), Micros(5));
        }
        assert_eq!(w.next(Micros(0), Micros(10_000)), Step::Park(Micros(9_000)));
        assert_eq!(w.next(Micros(9_000), Micros(10_000)), Step::Spin, "no naps: park, then spin 1 ms");
    }

    #[test]
    fn parks_teach_the_approach_and_naps_the_spin_margin() {
        let mut w = Waiter::with_limits(LEARN, LEARN_SPIN);
        // Parks wake up to 2 ms late; naps within 50 µs.
        for i in 0..WINDOW as u64 {
            w.woke(Step::Park(Micros(10_000)), Micros(if i % 50 == 0 { 2_000 } else { 80 }));
            w.woke(Step::Nap(NAP), Micros(20 + i % 31));
        }
        w.woke(Step::Spin, Micros(9_999));
        // The approach margin: 2 ms + a quarter + 30 µs.
        assert_eq!(w.next(Micros(0), Micros(40_000)), Step::Park(Micros(40_000 - 2_530)));
        assert_eq!(w.next(Micros(37_800), Micros(40_000)), Step::Nap(NAP));
        // The spin margin: 50 µs + 12 + 30.
        assert_eq!(w.next(Micros(39_850), Micros(40_000)), Step::Nap(Micros(150 - 92)));
        assert_eq!(w.next(Micros(39_900), Micros(40_000)), Step::Spin);
        w.spun(Micros(70));
        let s = w.stats();
        assert_eq!((s.approach.sleeps, s.spin.sleeps, s.spun), (WINDOW as u64, WINDOW as u64, Micros(70)));
        assert_eq!((s.approach.margin, s.spin.margin), (Micros(2_530), Micros(92)));
    }
}
