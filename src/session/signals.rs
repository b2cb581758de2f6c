//! Signals and panics: every way the process can be told to stop ends with the keys released.
//!
//! - SIGINT, SIGTERM and SIGHUP: a thread of its own (`organ-signals`) sets the global stop flag
//!   ([`engine::STOP_ALL`], which every engine obeys: release, CC 123, cancel) and wakes the
//!   running engine; the frontends then see it end, and [`signal_received`] gives the exit
//!   status.
//! - A panic anywhere (the hook): the same stop, then a bounded wait for the engine to report
//!   its release, the terminal restored, and one line on stderr instead of a backtrace.
//!
//! The session registers each engine it starts ([`register_engine`]), so both know which one to
//! wake. Never on the real-time thread (the hook may run there: it only sets the flag).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::engine::{self, Shared};

/// The signal that stopped playback (0 = none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The running engine's thread and telemetry, for the signal thread and the panic hook.
static ENGINE: Mutex<Option<(Option<Thread>, Arc<Shared>)>> = Mutex::new(None);

/// Makes `handle`'s engine the one that signals and panics stop and wait for.
pub(crate) fn register_engine(handle: &engine::EngineHandle) {
    if let Ok(mut e) = ENGINE.lock() {
        *e = Some((handle.thread(), handle.shared.clone()));
    }
}

/// The signal that stopped playback, if any (0 = none).
pub fn signal_received() -> i32 {
    SIGNAL.load(Ordering::SeqCst)
}

fn wake_engine() {
    // try_lock: never block in a signal thread or a panic hook.
    if let Ok(e) = ENGINE.try_lock()
        && let Some((Some(t), _)) = &*e
    {
        t.unpark();
    }
}

/// Starts a thread that turns SIGINT, SIGTERM and SIGHUP into a stop: sets the global stop flag
/// and wakes the engine. Idempotent.
pub fn install_signal_handling() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
        let _ = std::thread::Builder::new().name("organ-signals".into()).spawn(move || {
            for sig in signals.forever() {
                SIGNAL.store(sig, Ordering::SeqCst);
                engine::request_stop_all();
                wake_engine();
            }
        });
    });
}

/// A panic anywhere stops the engine, waits (bounded) for it to release every key, restores the
/// terminal and prints one line. Idempotent.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            engine::request_stop_all();
            wake_engine();
            let on_engine = std::thread::current().name() == Some("organ-engine");
            let shared = ENGINE.try_lock().ok().and_then(|e| e.as_ref().map(|(_, s)| s.clone()));
            if !on_engine && let Some(shared) = shared {
                let start = Instant::now();
                while !shared.released.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(3) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let _ = crossterm::terminal::disable_raw_mode();
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            eprintln!(
                "organ: internal error: {}{at} (please report it); the keys were released",
                crate::text::shown(&msg)
            );
        }));
    });
}
