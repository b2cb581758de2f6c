//! Clocks for the engine: the system's monotonic clock for playback, and a manual clock for
//! deterministic tests that never sleep.
//!
//! Times are [`Micros`] since the clock's own epoch (its creation). The engine computes absolute
//! deadlines on this clock and never sums relative sleeps, so no drift accumulates.

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
    fn wait_until(&self, deadline: Micros);
}

/// How long before a deadline the system clock stops sleeping and spins. A parked thread can
/// wake late (50-100 µs under load on bare metal; up to a few ms on an idle virtual machine,
/// whose halted CPU the host must first schedule again); spinning the last millisecond puts
/// the send on time. Measured with `cargo bench --bench lateness`: 300 µs left idle runs with
/// 2 ms outliers on the 2-core test machine, 1 ms does not. Costs at most 1 ms of CPU per
/// distinct deadline (a few percent for dense music).
pub const SPIN: Micros = Micros(1000);

/// The longest single sleep: commands are also signalled by unpark, so this only bounds how
/// long a lost wake-up could delay them.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// `Instant`-based monotonic clock: sleep (park) until shortly before the deadline, then spin.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    epoch: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { epoch: Instant::now() }
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

    fn wait_until(&self, deadline: Micros) {
        let now = self.now();
        if deadline <= now {
            return;
        }
        let remaining = deadline.0 - now.0;
        if remaining > SPIN.0 {
            let sleep = Duration::from_micros(remaining - SPIN.0).min(MAX_SLEEP);
            std::thread::park_timeout(sleep);
            return; // the caller loops: commands first, then waits again (or spins)
        }
        while self.now() < deadline {
            std::hint::spin_loop();
        }
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
    fn wait_until(&self, deadline: Micros) {
        self.set(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_waits_to_the_deadline() {
        let c = SystemClock::new();
        let deadline = Micros(c.now().0 + 2_000);
        while c.now() < deadline {
            c.wait_until(deadline);
        }
        assert!(c.now() >= deadline);
    }

    #[test]
    fn manual_clock_jumps() {
        let c = ManualClock::new();
        c.wait_until(Micros(500));
        assert_eq!(c.now(), Micros(500));
        c.set(Micros(100));
        assert_eq!(c.now(), Micros(500), "never backwards");
        c.advance(Micros(10));
        assert_eq!(c.now(), Micros(510));
    }
}
