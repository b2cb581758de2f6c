//! Signals and panics: every way the process can be told to stop ends with the keys released.
//!
//! A thread of its own (`organ-signals`) takes the signals, so nothing here runs in a signal
//! handler:
//! - **Signals that end a process** and can be caught ([`STOPPING`]: SIGINT, SIGTERM, SIGHUP,
//!   SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU, SIGIO, SIGPWR, SIGSTKFLT and
//!   the real-time signals): the first sets the global stop flag ([`engine::STOP_ALL`], which
//!   every engine obeys: exactly the keys down released, CC 123, the cancel) and wakes the
//!   running engine; the frontends then see it end, finish the outputs, and exit with
//!   128 + [`signal_received`]. A second one while stopping (or a second Ctrl-C key,
//!   [`interrupt`]) hurries: the cancel's pacing ends ([`engine::HURRY_ALL`]), and should the
//!   process still not have ended [`HURRY_EXIT`] later, it ends then (the record is a valid file
//!   at every moment).
//! - **Job control** (SIGTSTP, SIGTTIN, SIGTTOU): every engine suspends ([`engine::SUSPEND_ALL`]:
//!   keys released, CC 123, the cancel, delivered), the terminal goes back to the shell, and the
//!   process stops; at SIGCONT the terminal is taken back and the engine goes on as from a pause
//!   (what was drawn drawn again, the keys struck again, the clock where it stood). A frontend
//!   that sends to the outputs itself, with no engine (`organ learn --verify`), holds a
//!   [`SuspendGate`]: the process stops only once it has put the console back (or after
//!   [`SUSPEND_WAIT`]), and it goes on after SIGCONT.
//! - **SIGCONT** alone (after SIGSTOP, which cannot be caught): the terminal is taken back and
//!   redrawn; the engine never sends what fell due meanwhile in a burst ([`engine::HELD_UP`]).
//! - **Left alone**: SIGPIPE and SIGXFSZ are ignored (a closed pipe, or a write past the file-size
//!   limit, is an error where it is written: ignored on the terminal, a failed output for a
//!   record); SIGKILL and SIGSTOP cannot be caught; faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
//!   SIGABRT, SIGTRAP, SIGSYS) end the process as they would. A signal that was ignored or
//!   handled when `organ` started (`nohup`, `&` in a script, a profiler) is left as it was.
//! - **A panic** anywhere (the hook): the same stop, then a bounded wait for the engine to report
//!   its release, the terminal restored, and one line on stderr instead of a backtrace, ending
//!   `every key released` only when the engine says so of every output
//!   ([`super::release::keys_verdict`]). The
//!   hook itself never panics (stderr may be gone).
//!
//! The session registers each engine it starts ([`register_engine`]), so that both know which
//! one to wake and wait for. Never on the real-time thread (the hook may run there: it only sets
//! the flag).

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::engine::{self, Shared, State};
use crate::term;

/// The signal that stopped playback (0 = none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The running engine: its thread and telemetry, for the signal thread and the panic hook, and
/// the names of its outputs (in its order), with whether each is a `file:` record.
static ENGINE: Mutex<Option<Registered>> = Mutex::new(None);

struct Registered {
    thread: Option<Thread>,
    shared: Arc<Shared>,
    outputs: Vec<(String, bool)>,
}

/// Signals whose default action ends the process and that `organ` turns into a stop.
pub const STOPPING: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGXCPU,
    libc::SIGIO,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    libc::SIGPWR,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    libc::SIGSTKFLT,
];

/// Job-control signals: suspend, then stop the process.
const JOB_CONTROL: &[libc::c_int] = &[libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// After a second stop request, the longest the process may take to end by itself.
pub const HURRY_EXIT: Duration = Duration::from_secs(2);

/// The longest a suspension waits for the engine to release and its outputs to deliver.
pub const SUSPEND_WAIT: Duration = Duration::from_secs(4);

/// Frontends holding a [`SuspendGate`].
static GATES: AtomicUsize = AtomicUsize::new(0);
/// Suspensions begun, and the last one the gate's frontend has put the console back for.
static SUSPENSIONS: AtomicU64 = AtomicU64::new(0);
static PUT_BACK: AtomicU64 = AtomicU64::new(0);

/// Held by a frontend that sends to the outputs itself, with no engine (`organ learn --verify`
/// draws stops from the control thread): while it lives, job control (Ctrl-Z) waits, at most
/// [`SUSPEND_WAIT`], until the frontend has put the console back ([`SuspendGate::asked`],
/// [`SuspendGate::put_back`]) before the process stops. One frontend at a time.
pub struct SuspendGate(());

impl SuspendGate {
    #[allow(clippy::new_without_default)]
    pub fn new() -> SuspendGate {
        GATES.fetch_add(1, Ordering::SeqCst);
        SuspendGate(())
    }

    /// A suspension waits for this frontend: its number, until [`SuspendGate::put_back`].
    pub fn asked(&self) -> Option<u64> {
        if !engine::SUSPEND_ALL.load(Ordering::SeqCst) {
            return None;
        }
        let n = SUSPENSIONS.load(Ordering::SeqCst);
        (PUT_BACK.load(Ordering::SeqCst) < n).then_some(n)
    }

    /// The console is back as it was and what was sent has been delivered: the process may
    /// stop. Then waits until it goes on (SIGCONT) or is told to stop (a signal meanwhile).
    pub fn put_back(&self, n: u64) {
        PUT_BACK.store(n, Ordering::SeqCst);
        while engine::SUSPEND_ALL.load(Ordering::SeqCst) && signal_received() == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for SuspendGate {
    fn drop(&mut self) {
        GATES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Makes `handle`'s engine the one that signals and panics stop and wait for. `outputs`: the
/// names of its outputs, in its order; `records`: those that are `file:` records.
pub(crate) fn register_engine(handle: &engine::EngineHandle, outputs: &[String], records: &[String]) {
    let outputs = outputs.iter().map(|n| (n.clone(), records.contains(n))).collect();
    if let Ok(mut e) = ENGINE.lock() {
        *e = Some(Registered { thread: handle.thread(), shared: handle.shared.clone(), outputs });
    }
}

/// The signal that stopped playback, if any (0 = none). A Ctrl-C key counts as SIGINT.
pub fn signal_received() -> i32 {
    SIGNAL.load(Ordering::SeqCst)
}

fn wake_engine() {
    // try_lock: never block in a signal thread or a panic hook.
    if let Ok(e) = ENGINE.try_lock()
        && let Some(Registered { thread: Some(t), .. }) = &*e
    {
        t.unpark();
    }
}

fn engine_shared() -> Option<Arc<Shared>> {
    ENGINE.try_lock().ok().and_then(|e| e.as_ref().map(|r| r.shared.clone()))
}

/// The registered engine's outputs (see [`register_engine`]).
fn engine_outputs() -> Vec<(String, bool)> {
    ENGINE.try_lock().ok().and_then(|e| e.as_ref().map(|r| r.outputs.clone())).unwrap_or_default()
}

/// The signals `organ` handles: those of [`STOPPING`] and job control, the real-time signals,
/// and SIGCONT.
fn handled() -> Vec<libc::c_int> {
    let mut v: Vec<libc::c_int> = STOPPING.iter().chain(JOB_CONTROL).copied().collect();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    v.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    v.push(libc::SIGCONT);
    v
}

/// Whether `sig` still has its default action (not ignored, nor handled by someone else).
fn has_default_action(sig: libc::c_int) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_DFL
    }
}

/// Starts the signal thread (see the module documentation). Idempotent.
pub fn install_signal_handling() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: setting a signal to be ignored has no memory-safety preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let ours: Vec<libc::c_int> = handled().into_iter().filter(|&s| has_default_action(s)).collect();
        let Ok(mut signals) = signal_hook::iterator::Signals::new(&ours) else { return };
        let _ = std::thread::Builder::new().name("organ-signals".into()).spawn(move || {
            loop {
                let batch: Vec<libc::c_int> = signals.wait().collect();
                for sig in batch {
                    match sig {
                        libc::SIGCONT => term::take_back(),
                        // Sent while in the background; stale once in the foreground again.
                        libc::SIGTTIN | libc::SIGTTOU if term::in_foreground() => {}
                        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => suspend(sig, &mut signals),
                        _ => stop(sig),
                    }
                }
            }
        });
    });
}

/// A Ctrl-C read as a key (the terminal in raw mode sends no SIGINT): the same as SIGINT.
pub fn interrupt() {
    stop(libc::SIGINT);
}

/// The terminal cannot be drawn on or read any more: the same as SIGHUP (which usually comes
/// with it, and may come after).
pub fn terminal_lost() {
    stop(libc::SIGHUP);
}

/// A Ctrl-Z read as a key (raw mode): suspends the process group, as the terminal would.
pub fn suspend_key() {
    // SAFETY: kill(2) on our own process group; no memory is involved.
    unsafe { libc::kill(0, libc::SIGTSTP) };
}

/// A request to stop: the first stops every engine; the next ones hurry.
fn stop(sig: libc::c_int) {
    // SIGHUP and a failing terminal are the same loss, seen twice: not a second request.
    let seen_twice = sig == libc::SIGHUP && term::lose();
    if SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        engine::request_stop_all();
        wake_engine();
        return;
    }
    if seen_twice || engine::HURRY_ALL.swap(true, Ordering::SeqCst) {
        return;
    }
    wake_engine();
    // The last resort: should something still hold the process up (a device that does not
    // answer), it ends anyway.
    let _ = std::thread::Builder::new().name("organ-hurry".into()).spawn(|| {
        std::thread::sleep(HURRY_EXIT);
        let released = engine_shared().is_none_or(|s| s.released.load(Ordering::SeqCst));
        term::restore();
        let line = if released {
            "organ: stopped at once on the second request; every key was released"
        } else {
            "organ: stopped at once on the second request; keys may still sound: run organ panic"
        };
        err!("{line}");
        // SAFETY: _exit ends the process at once, as intended; nothing is left to unwind.
        unsafe { libc::_exit(128 + SIGNAL.load(Ordering::SeqCst)) };
    });
}

/// Job control: release and cancel (delivered), give the terminal back, stop; on SIGCONT, take
/// it back and go on.
fn suspend(sig: libc::c_int, signals: &mut signal_hook::iterator::Signals) {
    let n = SUSPENSIONS.fetch_add(1, Ordering::SeqCst) + 1;
    engine::SUSPEND_ALL.store(true, Ordering::SeqCst);
    wake_engine();
    let start = Instant::now();
    while start.elapsed() < SUSPEND_WAIT {
        let done = engine_shared().is_none_or(|s| {
            matches!(s.state(), State::Finished | State::Stopped | State::Failed)
                || s.suspended.load(Ordering::SeqCst) == 2
        });
        let put_back = GATES.load(Ordering::SeqCst) == 0 || PUT_BACK.load(Ordering::SeqCst) >= n;
        if done && put_back {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    term::give_back();
    loop {
        // Stops the process here (SIGSTOP) until SIGCONT.
        let _ = signal_hook::low_level::emulate_default_handler(sig);
        // A signal sent while stopped (a shell's `kill %1` sends SIGTERM, then SIGCONT) is
        // taken before going on, so that a stop never strikes the keys again first.
        std::thread::sleep(Duration::from_millis(20));
        let pending: Vec<libc::c_int> = signals.pending().collect();
        // Suspended again: Ctrl-Z, or still in the background and touching the terminal.
        let again = pending.iter().any(|&s| s == libc::SIGTSTP || (JOB_CONTROL.contains(&s) && !term::in_foreground()));
        for s in pending.into_iter().filter(|s| !JOB_CONTROL.contains(s) && *s != libc::SIGCONT) {
            stop(s);
        }
        if !again || signal_received() != 0 {
            break;
        }
    }
    term::take_back();
    engine::SUSPEND_ALL.store(false, Ordering::SeqCst);
    wake_engine();
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
            // What can be said of the keys: on the engine thread, nothing yet (it releases once
            // the hook returns, and the frontend says how that went); elsewhere, what the engine
            // published once it released (waited for, bounded); with no engine, nothing.
            let keys = match engine_shared() {
                Some(_) if on_engine => "; releasing every key".to_string(),
                Some(shared) => {
                    let start = Instant::now();
                    while !shared.released.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(3) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let verdict = super::release::keys_verdict(
                        &engine_outputs(),
                        shared.released.load(Ordering::SeqCst),
                        shared.failed.load(Ordering::SeqCst),
                        shared.release_cut.load(Ordering::SeqCst),
                        shared.dropped_by.mask(),
                        shared.link_down.load(Ordering::SeqCst),
                    );
                    format!("; {verdict}")
                }
                None => String::new(),
            };
            let _ = crossterm::terminal::disable_raw_mode();
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            // Never a panic in the hook (a second panic would abort): stderr may be gone.
            err!("organ: internal error: {}{at} (please report it){keys}", crate::text::shown(&msg));
        }));
    });
}
