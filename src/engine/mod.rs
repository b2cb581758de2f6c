//! The real-time engine: one thread that walks the prebuilt [`Timeline`] against absolute
//! deadlines and hands each message to every output.
//!
//! # Real-time rules
//! On the hot path ([`Engine::run`] after start) the engine never allocates, frees, locks, logs,
//! prints or touches files. Commands arrive through a lock-free SPSC ring ([`ringbuf`]) and
//! [`std::thread::Thread::unpark`]; telemetry leaves through atomics in [`Shared`]; the lateness
//! histogram is preallocated and handed back in the [`Report`] when the engine ends.
//! A test in `tests/` runs a whole piece under a counting allocator to prove it.
//!
//! # Time
//! Deadlines are absolute on a monotonic [`Clock`]: the wall time of a plan time is
//! `base_wall + (plan − base_plan) × 1000 / speed‰`. Pausing, resuming and tempo changes move the
//! base; nothing is summed, so nothing drifts.
//!
//! # Waits (hymns)
//! A plan may carry wait points ([`Timeline::waits`]): a fermata that waits for the operator, or
//! the end of a verse (only when asked with [`Command::PauseAtSectionEnd`]). There the clock
//! stands ([`State::Waiting`]) with every key that is down left down — unlike a pause, which
//! releases and re-strikes — until [`Command::Continue`]; the rest of the plan then shifts by
//! the time waited.
//!
//! # Swapping the plan
//! [`EngineHandle::swap_timeline`] offers a re-planned timeline (say, the next verse on another
//! registration) through a second SPSC ring. The engine takes it only if it has not yet reached
//! the first event where the two differ, so what was sent stays a prefix of the new plan; the
//! replaced (or refused) plan goes back through a third ring, so the engine never frees one.
//!
//! # Keys
//! The engine tracks every key it has sent down ([`HeldKeys`]). Stop, pause, seek, an output
//! failure, a panic, and the global stop flag (signals) all release exactly those keys, then send
//! CC 123 on every division channel, then (when the organ asks for it) the cancel.
//!
//! # Suspension and held-up time
//! While [`SUSPEND_ALL`] is set (the process suspends itself: Ctrl-Z, SIGTSTP) the engine
//! releases the keys that are down, sends CC 123 and the cancel as a stop does, reports when every
//! output has delivered that ([`Shared::suspended`]), and stands still; when it is cleared it
//! draws again exactly the controls it had drawn, strikes the held keys again and goes on from
//! where it stood, as after a pause. And whatever held the thread up (SIGSTOP, which cannot be
//! caught, or a starved machine): a message found more than [`HELD_UP`] late is not sent in a
//! burst with everything else that fell due; the clock moves on by the gap instead, so the music
//! goes on from where it stood at its own pace ([`Shared::held_up_us`] counts the time).

pub mod awake;
pub mod clock;
pub mod keys;
pub mod stats;
#[cfg(test)]
mod tests;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread::{JoinHandle, Thread};

use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Producer, Split};

pub use awake::Awake;
pub use clock::{Clock, DeadlineStats, ManualClock, SystemClock, WakeStats};
pub use keys::HeldKeys;
pub use stats::LatenessStats;

use crate::midi::{Micros, ShortMsg};
use crate::organ::DisconnectPolicy;
use crate::output::{Link, Output, OutputError, OutputErrorKind, Stamp};
use crate::plan::{Timeline, WaitKind};

/// Set by signal handlers and the panic hook: every engine stops, releases and ends.
pub static STOP_ALL: AtomicBool = AtomicBool::new(false);

/// Asks every running engine to stop (async-signal-safe: one atomic store).
pub fn request_stop_all() {
    STOP_ALL.store(true, Ordering::SeqCst);
}

/// Set while the process suspends itself (job control): every engine releases, cancels and
/// stands still until it is cleared (see the module documentation).
pub static SUSPEND_ALL: AtomicBool = AtomicBool::new(false);

/// Set by a second request to stop (a second Ctrl-C while stopping): a release under way sends
/// the rest of its cancel at once instead of paced.
pub static HURRY_ALL: AtomicBool = AtomicBool::new(false);

/// A message found this late means the engine thread did not run (the process was stopped, or
/// the machine starved it): the clock moves on by the gap instead of sending a burst.
pub const HELD_UP: Micros = Micros(1_000_000);

/// How long a suspending engine waits for its outputs to deliver the release before it reports
/// the suspension anyway.
pub const DELIVERY_WAIT: Micros = Micros(1_000_000);

/// A command for the engine, sent through [`EngineHandle::send`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    Pause,
    Resume,
    TogglePause,
    /// Stop now: release every key, CC 123, cancel.
    Stop,
    /// Play at this speed, in ‰ of the plan's speed (1000 = as planned).
    Speed(u32),
    /// Jump to this plan time: keys released, the registration there re-sent from a cancel.
    Seek(Micros),
    /// Go on from a wait point (a fermata with `wait`, or the end of a verse after
    /// [`Command::PauseAtSectionEnd`]). Nothing happens when the engine is not waiting.
    Continue,
    /// Wait at the end of the current play-over or verse (true), or not (false). Once used by a
    /// wait, it is cleared.
    PauseAtSectionEnd(bool),
}

/// Where the engine is, for the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Starting = 0,
    Playing = 1,
    Paused = 2,
    /// An output's link is down and the organ's policy is to pause.
    WaitingForLink = 3,
    Finished = 4,
    Stopped = 5,
    Failed = 6,
    /// At a wait point of the plan (fermata or end of verse): the clock stands, the keys that
    /// are down stay down, until [`Command::Continue`].
    Waiting = 7,
    /// Suspended ([`SUSPEND_ALL`]): keys released, stops cancelled, the clock stands.
    Suspended = 8,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Playing,
            2 => State::Paused,
            3 => State::WaitingForLink,
            4 => State::Finished,
            5 => State::Stopped,
            6 => State::Failed,
            7 => State::Waiting,
            8 => State::Suspended,
            _ => State::Starting,
        }
    }
}

/// Telemetry the engine publishes with atomics; read by the control thread at any time.
#[derive(Debug, Default)]
pub struct Shared {
    /// Index of the next event to send.
    pub next: AtomicUsize,
    /// The plan time the engine has reached (µs).
    pub plan_time: AtomicU64,
    pub sent: AtomicU64,
    /// Messages sent more than [`LATE`] after their deadline.
    pub late: AtomicU64,
    /// Worst lateness so far (µs).
    pub worst_late: AtomicU64,
    /// Messages an output dropped (full queue), in all.
    pub dropped: AtomicU64,
    /// The same, per output (in the engine's order), so that a drop on one output puts only
    /// that one in doubt.
    pub dropped_by: PerOutput,
    state: AtomicU8,
    /// Current speed in ‰.
    pub speed: AtomicU32,
    /// Some output reports its link down (lost, or not answering).
    pub link_down: AtomicBool,
    /// The links down are only not answering ([`Link::NotAnswering`]): none is lost.
    pub link_not_answering: AtomicBool,
    /// The release after a stop (or the end of the plan) has been sent.
    pub released: AtomicBool,
    /// Bit i set: output i failed (it got nothing more from then on, so not the release either).
    pub failed: AtomicU64,
    /// The engine stopped on an internal error and the release it then sent did not run to its
    /// end (it panicked too): whatever was down may still be.
    pub release_cut: AtomicBool,
    /// Real-time priority: 0 unknown, 1 granted, 2 refused.
    pub realtime: AtomicU8,
    /// The CPU held out of deep idle states ([`Awake`] as a number).
    pub awake: AtomicU8,
    /// Engine-clock time (µs) of the first message sent, for the start-up time report.
    pub first_sent: AtomicU64,
    /// The wait point the engine stands at: index into [`Timeline::waits`] + 1 (0 = none).
    pub wait: AtomicUsize,
    /// The engine will wait at the end of the current section ([`Command::PauseAtSectionEnd`]).
    pub pause_at_section_end: AtomicBool,
    /// Timelines swapped in with [`EngineHandle::swap_timeline`] and accepted.
    pub swaps: AtomicU64,
    /// [`Command::Stop`] was sent: a flag beside the command ring, so that a full ring can never
    /// lose a stop.
    stop: AtomicBool,
    /// Suspension ([`SUSPEND_ALL`]): 0 not suspended, 1 released and cancelled, 2 and every
    /// output reports that it has delivered that (or [`DELIVERY_WAIT`] passed).
    pub suspended: AtomicU8,
    /// Time (µs) the clock was moved on because the engine thread was held up (see [`HELD_UP`]).
    pub held_up_us: AtomicU64,
}

/// A counter per output (index = the output's place in the engine's order).
#[derive(Debug)]
pub struct PerOutput([AtomicU64; MAX_OUTPUTS]);

impl Default for PerOutput {
    fn default() -> PerOutput {
        PerOutput(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl PerOutput {
    /// Output `i`'s count (0 beyond [`MAX_OUTPUTS`]).
    pub fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn add(&self, i: usize) {
        if let Some(c) = self.0.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bit i set: output i's count is not zero.
    pub fn mask(&self) -> u64 {
        (0..MAX_OUTPUTS).filter(|&i| self.get(i) > 0).fold(0, |m, i| m | 1 << i)
    }
}

impl Shared {
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }
    fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }
}

/// The most outputs one engine drives.
pub const MAX_OUTPUTS: usize = 64;

/// Messages later than this count as late in telemetry.
pub const LATE: Micros = Micros(1_000);

/// The longest the cancel of a stop may take in all (its messages spaced by `stop_pace_ms`, or
/// closer when that would take longer): stopping never takes more than about this.
pub const RELEASE_PACING: Micros = Micros(2_000_000);

/// How playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The plan played to its end.
    Finished,
    /// Stopped by a command, a signal or the stop flag.
    Stopped,
    /// An output failed; the others were released.
    OutputFailed { output: usize, error: OutputError },
    /// Something panicked on the engine thread; keys were released.
    Panicked,
}

/// What the engine hands back when it ends.
pub struct Report {
    pub end: End,
    pub stats: LatenessStats,
    /// The outputs, for `finish()` on the control thread.
    pub outputs: Vec<Box<dyn Output>>,
    pub sent: u64,
    pub dropped: u64,
    /// Whether the engine thread ran with real-time priority.
    pub realtime: bool,
    /// Whether the CPU was held out of deep idle states while it ran ([`awake`]).
    pub awake: Awake,
    /// Engine-clock time of the first message sent, if any.
    pub first_sent: Option<Micros>,
    /// What playing cost: the engine thread's CPU time and the wall time it ran.
    pub cost: Cost,
    /// How the clock waited (the system clock's learned wake margin).
    pub wake: Option<WakeStats>,
}

/// The engine thread's CPU time over the wall time it played, for `--stats` and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// CPU time of the engine thread while it ran (`None` where the OS does not say).
    pub cpu: Option<Micros>,
    /// Engine-clock time from the start to the end of the run (pauses and waits included).
    pub wall: Micros,
}

impl Cost {
    /// CPU seconds per minute of playing, if known.
    pub fn cpu_per_minute(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.wall.0 > 0).then(|| cpu.0 as f64 / 1e6 * 60e6 / self.wall.0 as f64)
    }
}

/// CPU time the calling thread has used.
pub fn thread_cpu_time() -> Option<Micros> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a plain call with a valid out-pointer.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
        ok.then(|| Micros(ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Engine settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub on_disconnect: DisconnectPolicy,
    /// Speed at start, ‰.
    pub speed: u32,
    /// Deadline of the first event after `run` starts (time for outputs to settle).
    pub start_delay: Micros,
    /// The flag that stops this engine from outside (signals, panics): [`STOP_ALL`] by default.
    pub stop_flag: &'static AtomicBool,
    /// The flag that suspends it (job control): [`SUSPEND_ALL`] by default.
    pub suspend_flag: &'static AtomicBool,
    /// The flag that hurries its release (a second stop request): [`HURRY_ALL`] by default.
    pub hurry_flag: &'static AtomicBool,
    /// Hold the CPU out of deep idle states while playing ([`awake`]), where the OS allows it.
    pub keep_awake: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            on_disconnect: DisconnectPolicy::Pause,
            speed: 1000,
            start_delay: Micros::ZERO,
            stop_flag: &STOP_ALL,
            suspend_flag: &SUSPEND_ALL,
            hurry_flag: &HURRY_ALL,
            keep_awake: true,
        }
    }
}

/// The sending side of the engine: outputs, key state and counters. Separate from the plan so
/// the plan's bytes can be borrowed while sending.
struct Sink {
    outputs: Vec<Box<dyn Output>>,
    /// Bit i set: output i failed and gets nothing more.
    dead: u64,
    /// Keys down on the division channels (stops sent as notes on other channels are not keys).
    held: HeldKeys,
    /// Bit c set: channel c (0-15) is a division's.
    key_channels: u16,
    stats: LatenessStats,
    shared: Arc<Shared>,
    failure: Option<(usize, OutputError)>,
}

impl Sink {
    /// Sends one message to every live output, tracking keys and lateness.
    fn emit(&mut self, bytes: &[u8], stamp: Stamp) {
        if let Some(&status) = bytes.first()
            && status < 0xF0
            && self.key_channels & (1 << (status & 0x0F)) != 0
        {
            self.held.track(bytes);
        }
        for i in 0..self.outputs.len() {
            if self.dead & (1 << i) != 0 {
                continue;
            }
            let o = &mut self.outputs[i];
            // A panicking output must not take the others down with it: it is treated as failed.
            let sent = catch_unwind(AssertUnwindSafe(|| o.send(bytes, stamp)))
                .unwrap_or(Err(OutputError { kind: OutputErrorKind::Backend, detail: "the output panicked" }));
            match sent {
                Ok(()) => {}
                Err(e) if e.kind == OutputErrorKind::Overflow => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    self.shared.dropped_by.add(i);
                }
                Err(e) => self.fail(i, e),
            }
        }
        let late = stamp.now.0.saturating_sub(stamp.due.0);
        self.stats.record(late);
        if self.shared.sent.fetch_add(1, Ordering::Relaxed) == 0 {
            self.shared.first_sent.store(stamp.now.0, Ordering::Relaxed);
        }
        if late > LATE.0 {
            self.shared.late.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.worst_late.fetch_max(late, Ordering::Relaxed);
    }

    /// Whether the link of some live output is down (reconnecting), and whether some down link is
    /// lost rather than only not answering; an output whose link is
    /// gone for good ([`Link::Gone`]) is marked failed, as if a send to it had failed.
    fn links(&mut self) -> (bool, bool) {
        let (mut down, mut lost) = (false, false);
        for i in 0..self.outputs.len() {
            if self.dead & (1 << i) != 0 {
                continue;
            }
            match self.outputs[i].link() {
                Link::Up => {}
                Link::NotAnswering => down = true,
                Link::Down => (down, lost) = (true, true),
                Link::Gone(e) => self.fail(i, e),
            }
        }
        (down, lost)
    }

    /// Output `i` failed: it gets nothing more (so not the release either).
    fn fail(&mut self, i: usize, e: OutputError) {
        self.dead |= 1 << i;
        self.shared.failed.fetch_or(1 << i, Ordering::Relaxed);
        if self.failure.is_none() {
            self.failure = Some((i, e));
        }
    }

    /// Whether every live output has delivered what it was sent ([`Output::delivered`]).
    fn delivered(&self) -> bool {
        self.outputs.iter().enumerate().all(|(i, o)| self.dead & (1 << i) != 0 || o.delivered())
    }

    /// Note-offs for exactly the keys that are down.
    fn release_keys(&mut self, plan: Micros, now: Micros) {
        let held = self.held.clone(); // a stack copy: no allocation
        for (ch, key, _) in held.iter() {
            self.emit(ShortMsg::note_off(ch, key).as_bytes(), Stamp { plan, due: now, now });
        }
    }
}

/// The engine: owns the plan, the outputs and the clock while it runs.
pub struct Engine<C: Clock> {
    timeline: Arc<Timeline>,
    sink: Sink,
    clock: C,
    commands: ringbuf::HeapCons<Command>,
    shared: Arc<Shared>,
    config: Config,
    /// Index of the next event to send.
    next: usize,
    base_wall: Micros,
    base_plan: Micros,
    /// ‰ of the plan's speed.
    speed: u32,
    /// Paused by the user.
    paused: bool,
    /// Paused because an output's link is down (policy `pause`).
    link_paused: bool,
    /// Plan time where the pause began.
    pause_plan: Micros,
    /// Keys to strike again on resume.
    resume_keys: HeldKeys,
    /// Index into the timeline's wait points of the next one to consider.
    next_wait: usize,
    /// Standing at a wait point (clock stopped at `wait_plan`, keys down).
    waiting: bool,
    wait_plan: Micros,
    /// Event index of the last wait point used, so that going on from it does not wait again.
    wait_done_at: usize,
    /// Wait at the next section end.
    stop_at_section_end: bool,
    /// New timelines from the control thread (with the first event index where they differ
    /// from the current one), and the timelines handed back (replaced or refused): the engine
    /// never frees one.
    swaps: ringbuf::HeapCons<(Arc<Timeline>, usize)>,
    returns: ringbuf::HeapProd<Arc<Timeline>>,
    /// What the console has been told, per control: drawn or in, from the registration messages
    /// sent so far. A toggle is only ever sent to change this, so stop and seek put in exactly
    /// the toggles that were drawn.
    drawn: ControlSet,
    /// Suspended ([`Config::suspend_flag`]), since when, and what was drawn before the cancel.
    suspended: bool,
    suspended_at: Micros,
    drawn_before_suspend: ControlSet,
}

/// One bit per control (a plan numbers fewer than 65,535), inline so that the engine thread
/// never allocates or frees it.
#[derive(Clone)]
struct ControlSet([u64; 1024]);

impl ControlSet {
    fn get(&self, c: usize) -> bool {
        self.0.get(c / 64).is_some_and(|w| w & (1 << (c % 64)) != 0)
    }
    fn set(&mut self, c: usize, on: bool) {
        if let Some(w) = self.0.get_mut(c / 64) {
            if on {
                *w |= 1 << (c % 64);
            } else {
                *w &= !(1 << (c % 64));
            }
        }
    }
    fn clear(&mut self) {
        self.0.fill(0);
    }
}

/// The control thread's side of an engine: commands in, telemetry out.
pub struct EngineHandle {
    commands: ringbuf::HeapProd<Command>,
    swaps: ringbuf::HeapProd<(Arc<Timeline>, usize)>,
    returns: ringbuf::HeapCons<Arc<Timeline>>,
    thread: Option<Thread>,
    join: Option<JoinHandle<Report>>,
    pub shared: Arc<Shared>,
}

impl EngineHandle {
    /// Sends a command and wakes the engine. Returns false if the queue is full (then the
    /// command is lost), except for [`Command::Stop`], which is a flag and always arrives.
    pub fn send(&mut self, c: Command) -> bool {
        let ok = if c == Command::Stop {
            self.shared.stop.store(true, Ordering::SeqCst);
            true
        } else {
            self.commands.try_push(c).is_ok()
        };
        self.wake();
        ok
    }

    /// Offers the engine a new plan for the rest of the performance (a verse's registration
    /// changed, say). `first_diff` is the first event index where it differs from the plan being
    /// played: the engine takes it only if it has not reached that index yet, and carries on at
    /// the same place. Returns false if the queue is full. Whatever the engine gives back —
    /// the old plan, or this one when it came too late — arrives at [`EngineHandle::returned`].
    pub fn swap_timeline(&mut self, timeline: Arc<Timeline>, first_diff: usize) -> bool {
        let ok = self.swaps.try_push((timeline, first_diff)).is_ok();
        self.wake();
        ok
    }

    /// A timeline the engine handed back after [`EngineHandle::swap_timeline`]: the one it
    /// replaced (the swap was taken) or the one offered (too late). Dropped here, on the control
    /// thread.
    pub fn returned(&mut self) -> Option<Arc<Timeline>> {
        self.returns.try_pop()
    }

    /// Wakes the engine (after setting [`STOP_ALL`], say).
    pub fn wake(&self) {
        if let Some(t) = &self.thread {
            t.unpark();
        }
    }

    /// The engine thread, to wake it from elsewhere (signal or panic handling).
    pub fn thread(&self) -> Option<Thread> {
        self.thread.clone()
    }

    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(|j| j.is_finished())
    }

    /// Waits for the engine to end. A panic on the engine thread is caught there and reported
    /// as [`End::Panicked`].
    pub fn join(mut self) -> Report {
        let j = self.join.take().expect("spawned engines are joined once");
        match j.join() {
            Ok(r) => r,
            Err(_) => Report {
                end: End::Panicked,
                stats: LatenessStats::new(),
                outputs: Vec::new(),
                sent: self.shared.sent.load(Ordering::Relaxed),
                dropped: self.shared.dropped.load(Ordering::Relaxed),
                realtime: self.shared.realtime.load(Ordering::Relaxed) == 1,
                awake: Awake::from_u8(self.shared.awake.load(Ordering::Relaxed)),
                first_sent: None,
                cost: Cost::default(),
                wake: None,
            },
        }
    }
}

/// Builds an engine and the handle to control it. Allocates everything the engine will need;
/// nothing is started. Run it on the calling thread with [`Engine::run`] or on its own thread
/// with [`spawn`].
pub fn new<C: Clock>(
    timeline: Arc<Timeline>,
    outputs: Vec<Box<dyn Output>>,
    clock: C,
    config: Config,
) -> (Engine<C>, EngineHandle) {
    let (prod, cons) = HeapRb::<Command>::new(64).split();
    let (swap_prod, swap_cons) = HeapRb::<(Arc<Timeline>, usize)>::new(4).split();
    let (ret_prod, ret_cons) = HeapRb::<Arc<Timeline>>::new(16).split();
    let shared = Arc::new(Shared::default());
    shared.speed.store(config.speed, Ordering::Relaxed);
    assert!(outputs.len() <= MAX_OUTPUTS, "at most {MAX_OUTPUTS} outputs");
    let engine = Engine {
        sink: Sink {
            outputs,
            dead: 0,
            held: HeldKeys::new(),
            key_channels: timeline.divisions.iter().fold(0u16, |m, d| m | 1 << d.channel.wire()),
            stats: LatenessStats::new(),
            shared: shared.clone(),
            failure: None,
        },
        clock,
        timeline,
        commands: cons,
        shared: shared.clone(),
        config,
        next: 0,
        base_wall: Micros::ZERO,
        base_plan: Micros::ZERO,
        speed: config.speed.max(1),
        paused: false,
        link_paused: false,
        pause_plan: Micros::ZERO,
        resume_keys: HeldKeys::new(),
        next_wait: 0,
        waiting: false,
        wait_plan: Micros::ZERO,
        wait_done_at: usize::MAX,
        stop_at_section_end: false,
        swaps: swap_cons,
        returns: ret_prod,
        drawn: ControlSet([0; 1024]),
        suspended: false,
        suspended_at: Micros::ZERO,
        drawn_before_suspend: ControlSet([0; 1024]),
    };
    let handle = EngineHandle { commands: prod, swaps: swap_prod, returns: ret_cons, thread: None, join: None, shared };
    (engine, handle)
}

/// Starts the engine on its own thread (asking for real-time priority there; see
/// [`Shared::realtime`]).
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn<C: Clock + 'static>(engine: Engine<C>, mut handle: EngineHandle) -> std::io::Result<EngineHandle> {
    let shared = handle.shared.clone();
    let join = std::thread::Builder::new().name("organ-engine".into()).spawn(move || {
        let rt = realtime_priority();
        precise_timers();
        shared.realtime.store(if rt { 1 } else { 2 }, Ordering::Relaxed);
        // Held until the engine has released everything and returned; dropped on every way out.
        let awake = if engine.config.keep_awake { awake::hold() } else { None };
        let asked = if awake.is_some() { Awake::Held } else { Awake::Refused };
        shared.awake.store(if engine.config.keep_awake { asked } else { Awake::NotAsked }.to_u8(), Ordering::Relaxed);
        let report = engine.run();
        drop(awake);
        report
    })?;
    handle.thread = Some(join.thread().clone());
    handle.join = Some(join);
    Ok(handle)
}

/// Asks the kernel not to defer the calling thread's timer wake-ups (Linux's default timer
/// slack lets a normal thread's sleep end up to 50 µs late, to batch wake-ups; real-time
/// threads get none anyway).
fn precise_timers() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain call; PR_SET_TIMERSLACK takes the slack in ns (1 = the least).
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
}

/// Asks for SCHED_FIFO on the calling thread. False where the OS refuses (no privilege).
fn realtime_priority() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain call on the calling thread with a valid sched_param.
        unsafe {
            let param = libc::sched_param { sched_priority: 40 };
            libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

impl<C: Clock> Engine<C> {
    /// The telemetry this engine publishes.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The wall-clock deadline of a plan time.
    fn wall(&self, plan: Micros) -> Micros {
        let d = plan.0.saturating_sub(self.base_plan.0);
        Micros(self.base_wall.0 + d * 1000 / u64::from(self.speed))
    }

    /// The plan time reached at a wall time.
    fn plan_at(&self, wall: Micros) -> Micros {
        let d = wall.0.saturating_sub(self.base_wall.0);
        Micros(self.base_plan.0 + d * u64::from(self.speed) / 1000)
    }

    /// Plays the timeline to its end or until stopped, then releases. Runs on the calling
    /// thread; see the module documentation for the real-time rules.
    pub fn run(mut self) -> Report {
        let (cpu_start, wall_start) = (thread_cpu_time(), self.clock.now());
        let end = match catch_unwind(AssertUnwindSafe(|| self.play())) {
            Ok(end) => end,
            Err(_) => {
                // Whatever state the panic left, release what is down.
                if catch_unwind(AssertUnwindSafe(|| self.release(true))).is_err() {
                    self.shared.release_cut.store(true, Ordering::Relaxed);
                }
                End::Panicked
            }
        };
        self.shared.set_state(match end {
            End::Finished => State::Finished,
            End::Stopped => State::Stopped,
            _ => State::Failed,
        });
        self.shared.released.store(true, Ordering::SeqCst);
        Report {
            end,
            stats: std::mem::take(&mut self.sink.stats),
            outputs: std::mem::take(&mut self.sink.outputs),
            sent: self.shared.sent.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            realtime: self.shared.realtime.load(Ordering::Relaxed) == 1,
            awake: Awake::from_u8(self.shared.awake.load(Ordering::Relaxed)),
            first_sent: (self.shared.sent.load(Ordering::Relaxed) > 0)
                .then(|| Micros(self.shared.first_sent.load(Ordering::Relaxed))),
            cost: Cost {
                cpu: thread_cpu_time().zip(cpu_start).map(|(b, a)| Micros(b.0.saturating_sub(a.0))),
                wall: Micros(self.clock.now().0.saturating_sub(wall_start.0)),
            },
            wake: self.clock.wake_stats(),
        }
    }

    fn play(&mut self) -> End {
        self.base_wall = self.clock.now() + self.config.start_delay;
        self.base_plan = Micros::ZERO;
        self.shared.set_state(State::Playing);
        let events_len = self.timeline.events.len();
        loop {
            // 1. Commands and the global stop flag.
            while let Some(cmd) = self.commands.try_pop() {
                if self.command(cmd) {
                    self.release(true);
                    return End::Stopped;
                }
            }
            if self.config.stop_flag.load(Ordering::Relaxed) || self.shared.stop.load(Ordering::Relaxed) {
                self.release(true);
                return End::Stopped;
            }
            // 1b. Suspension (job control): nothing else happens while suspended.
            if self.config.suspend_flag.load(Ordering::Relaxed) != self.suspended {
                if self.suspended { self.leave_suspend() } else { self.enter_suspend() }
            }
            if self.suspended {
                self.follow_delivery();
                std::thread::park_timeout(std::time::Duration::from_millis(5));
                continue;
            }
            self.take_swaps();
            // 2. Links. One gone for good is a failed output (whatever `on_disconnect` says):
            // the others get the release and the performance ends, as when a send fails. A link
            // not answering is down for the policy; the control thread words it apart.
            let (down, lost) = self.sink.links();
            if let Some((output, error)) = self.sink.failure {
                self.release(true);
                return End::OutputFailed { output, error };
            }
            self.shared.link_down.store(down, Ordering::Relaxed);
            self.shared.link_not_answering.store(down && !lost, Ordering::Relaxed);
            if self.config.on_disconnect == DisconnectPolicy::Pause {
                if down && !self.link_paused {
                    if !self.paused {
                        self.enter_pause();
                    }
                    self.link_paused = true;
                    self.shared.set_state(State::WaitingForLink);
                } else if !down && self.link_paused {
                    self.link_paused = false;
                    if !self.paused {
                        self.leave_pause();
                    }
                }
            }
            if self.paused || self.link_paused || self.waiting {
                std::thread::park_timeout(std::time::Duration::from_millis(20));
                continue;
            }
            // 3. Everything that is due.
            if self.next >= events_len {
                // The plan's tail released every key; anything still down (it should not be)
                // is released here too.
                if !self.sink.held.is_empty() {
                    self.release(false);
                }
                return End::Finished;
            }
            let now = self.clock.now();
            self.shared.plan_time.store(self.plan_at(now).0, Ordering::Relaxed);
            if let Some(w) = self.armed_wait() {
                let due = self.wall(self.timeline.waits[w].t);
                if due > now {
                    self.clock.wait_until(due);
                } else {
                    self.enter_wait(w);
                }
                continue;
            }
            let due = self.wall(self.timeline.events[self.next].t);
            if due > now {
                self.clock.wait_until(due);
                continue;
            }
            while self.next < events_len {
                if self.armed_wait().is_some() {
                    break;
                }
                let e = self.timeline.events[self.next];
                let due = self.wall(e.t);
                let now = self.clock.now();
                if due > now {
                    break;
                }
                if now.0 - due.0 > HELD_UP.0 {
                    // The thread was held up (see the module documentation): go on from here.
                    self.base_wall = Micros(self.base_wall.0 + (now.0 - due.0));
                    self.shared.held_up_us.fetch_add(now.0 - due.0, Ordering::Relaxed);
                    continue;
                }
                self.next += 1;
                self.sink.emit(self.timeline.bytes(&e.msg), Stamp { plan: e.t, due, now });
                self.follow_registration(&e);
                if let Some((output, error)) = self.sink.failure {
                    self.release(true);
                    return End::OutputFailed { output, error };
                }
            }
            self.shared.next.store(self.next, Ordering::Relaxed);
        }
    }

    /// Handles a command; true = stop.
    fn command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Stop => return true,
            Command::Pause => {
                if !self.paused {
                    if !self.link_paused {
                        self.enter_pause();
                    }
                    self.paused = true;
                    self.shared.set_state(State::Paused);
                }
            }
            Command::Resume => {
                if self.paused {
                    self.paused = false;
                    if self.link_paused {
                        self.shared.set_state(State::WaitingForLink);
                    } else {
                        self.leave_pause();
                    }
                }
            }
            Command::TogglePause => {
                return self.command(if self.paused { Command::Resume } else { Command::Pause });
            }
            Command::Speed(permille) => {
                let permille = permille.clamp(100, 4000);
                if !(self.paused || self.link_paused || self.waiting) {
                    let now = self.clock.now();
                    self.base_plan = self.plan_at(now);
                    self.base_wall = now;
                }
                self.speed = permille;
                self.shared.speed.store(permille, Ordering::Relaxed);
            }
            Command::Seek(t) => self.seek(t),
            Command::Continue => {
                if self.waiting {
                    self.waiting = false;
                    self.shared.wait.store(0, Ordering::Relaxed);
                    if !(self.paused || self.link_paused) {
                        self.base_plan = self.wait_plan;
                        self.base_wall = self.clock.now();
                        self.shared.set_state(State::Playing);
                    }
                }
            }
            Command::PauseAtSectionEnd(on) => {
                self.stop_at_section_end = on;
                self.shared.pause_at_section_end.store(on, Ordering::Relaxed);
            }
        }
        false
    }

    /// The wait point at the next event, if it is armed: fermata waits always are; section
    /// ends only after [`Command::PauseAtSectionEnd`]. Returns its index in the timeline's waits.
    fn armed_wait(&mut self) -> Option<usize> {
        let waits = &self.timeline.waits;
        while let Some(w) = waits.get(self.next_wait) {
            if w.index < self.next || w.index == self.wait_done_at {
                self.next_wait += 1;
                continue;
            }
            if w.index > self.next {
                return None;
            }
            return match w.kind {
                WaitKind::Fermata => Some(self.next_wait),
                WaitKind::SectionEnd if self.stop_at_section_end => Some(self.next_wait),
                WaitKind::SectionEnd => {
                    self.next_wait += 1;
                    continue;
                }
            };
        }
        None
    }

    /// Stands at wait point `w`: the clock stops at its time; nothing is released.
    fn enter_wait(&mut self, w: usize) {
        let wp = self.timeline.waits[w];
        self.waiting = true;
        self.wait_plan = wp.t;
        self.wait_done_at = wp.index;
        if wp.kind == WaitKind::SectionEnd {
            self.stop_at_section_end = false;
            self.shared.pause_at_section_end.store(false, Ordering::Relaxed);
        }
        self.shared.plan_time.store(wp.t.0, Ordering::Relaxed);
        self.shared.next.store(self.next, Ordering::Relaxed);
        self.shared.wait.store(w + 1, Ordering::Relaxed);
        self.shared.set_state(State::Waiting);
    }

    /// Takes a timeline offered by the control thread if the engine has not yet reached the
    /// first event where it differs; hands back the one it replaces (or the one refused).
    fn take_swaps(&mut self) {
        while let Some((t, first_diff)) = self.swaps.try_pop() {
            let give_back = if self.next <= first_diff && t.events.len() >= self.next {
                self.shared.swaps.fetch_add(1, Ordering::Relaxed);
                let old = std::mem::replace(&mut self.timeline, t);
                self.next_wait = self.timeline.waits.partition_point(|w| w.index < self.next);
                old
            } else {
                t
            };
            if let Err(t) = self.returns.try_push(give_back) {
                // Never free on this thread: a full return queue (the control thread stopped
                // draining it) leaks the plan instead.
                std::mem::forget(t);
            }
        }
    }

    /// Pause: the clock stops; the keys that are down go up (and are struck again on resume).
    fn enter_pause(&mut self) {
        let now = self.clock.now();
        // At a wait point the clock already stands at the wait's time.
        self.pause_plan = if self.waiting { self.wait_plan } else { self.plan_at(now) };
        self.resume_keys = self.sink.held.clone();
        self.sink.release_keys(self.pause_plan, now);
        self.shared.plan_time.store(self.pause_plan.0, Ordering::Relaxed);
        self.shared.set_state(State::Paused);
    }

    /// Resume: strike again the keys that were down, and restart the clock where it stopped.
    fn leave_pause(&mut self) {
        let now = self.clock.now();
        let resume = self.resume_keys.clone();
        for (ch, key, velocity) in resume.iter() {
            let m = ShortMsg::note_on(ch, key, velocity.max(1));
            self.sink.emit(m.as_bytes(), Stamp { plan: self.pause_plan, due: now, now });
        }
        self.resume_keys.clear();
        self.base_plan = self.pause_plan;
        self.base_wall = self.clock.now();
        self.shared.set_state(if self.waiting { State::Waiting } else { State::Playing });
    }

    /// Keeps [`Engine::drawn`] up to date with a planned message just sent.
    fn follow_registration(&mut self, e: &crate::plan::Event) {
        use crate::plan::Kind;
        match (e.kind, e.control()) {
            (Kind::Cancel, None) => self.drawn.clear(),
            (kind, Some(c)) if kind.is_registration() => {
                self.drawn.set(c, matches!(kind, Kind::StopOn | Kind::CouplerOn | Kind::TremulantOn));
            }
            _ => {}
        }
    }

    /// Jump: release the keys, then re-send the registration of the new position from a cancel
    /// (toggles: flipped where they differ from what was sent). Notes that began before the new
    /// position are not struck again.
    fn seek(&mut self, t: Micros) {
        let now = self.clock.now();
        self.sink.release_keys(self.plan_at(now), now);
        self.resume_keys.clear();
        let tl = &self.timeline;
        let stamp = Stamp { plan: t, due: now, now };
        for m in &tl.cancel {
            self.sink.emit(tl.bytes(m), stamp);
        }
        let target = tl.registration_at(t).map_or(&[][..], |r| r.drawn.as_slice());
        for (c, control) in tl.controls.iter().enumerate() {
            if tl.general_cancel || !control.toggle {
                self.drawn.set(c, false);
            }
            let want = target.binary_search(&c).is_ok();
            if want != self.drawn.get(c) {
                for m in if want { &control.on } else { &control.off } {
                    self.sink.emit(tl.bytes(m), stamp);
                }
                self.drawn.set(c, want);
            }
        }
        self.next = tl.events.partition_point(|e| e.t < t);
        self.next_wait = tl.waits.partition_point(|w| w.index < self.next);
        self.wait_done_at = usize::MAX;
        if self.waiting {
            self.waiting = false;
            self.shared.wait.store(0, Ordering::Relaxed);
            if !(self.paused || self.link_paused) {
                self.shared.set_state(State::Playing);
            }
        }
        if self.paused || self.link_paused {
            self.pause_plan = t;
        } else {
            self.base_plan = t;
            self.base_wall = self.clock.now();
        }
        self.shared.next.store(self.next, Ordering::Relaxed);
    }

    /// The release sequence: the keys that are down, CC 123 on every division channel, then
    /// (with `cancel`, when the organ asks for it) the cancel, paced like the plan's: without a
    /// General Cancel, that is every control's off and the message of each toggle drawn.
    fn release(&mut self, cancel: bool) {
        self.release_and_cancel(cancel);
        self.shared.released.store(true, Ordering::SeqCst);
    }

    /// [`Engine::release`] without saying so (a suspension releases too, and goes on later).
    fn release_and_cancel(&mut self, cancel: bool) {
        let now = self.clock.now();
        let plan = self.plan_at(now);
        self.sink.release_keys(plan, now);
        let tl = &self.timeline;
        for d in &tl.divisions {
            self.sink.emit(ShortMsg::all_notes_off(d.channel).as_bytes(), Stamp { plan, due: now, now });
        }
        if cancel && tl.cancel_at_end {
            let drawn = &self.drawn;
            let toggles =
                || tl.controls.iter().enumerate().filter(|(i, c)| !tl.general_cancel && c.toggle && drawn.get(*i));
            let count = tl.cancel.len() + toggles().map(|(_, c)| c.off.len()).sum::<usize>();
            let messages = tl.cancel.iter().chain(toggles().flat_map(|(_, c)| c.off.iter()));
            let mut paced = Paced::new(tl.stop_pace, count, self.config.hurry_flag);
            for m in messages {
                paced.wait(&mut self.clock);
                let now = self.clock.now();
                self.sink.emit(tl.bytes(m), Stamp { plan, due: now, now });
            }
            self.drawn.clear();
        }
    }

    /// Suspension: as a pause (the keys up, to be struck again), then CC 123 and the cancel as a
    /// stop sends them; what was drawn is kept to be drawn again.
    fn enter_suspend(&mut self) {
        self.suspended = true;
        if !(self.paused || self.link_paused) {
            self.enter_pause();
        }
        self.drawn_before_suspend = self.drawn.clone();
        self.release_and_cancel(true);
        self.suspended_at = self.clock.now();
        self.shared.suspended.store(1, Ordering::SeqCst);
        self.shared.set_state(State::Suspended);
    }

    /// Says (once) when every output has delivered the suspension's release, or gave up waiting.
    fn follow_delivery(&mut self) {
        if self.shared.suspended.load(Ordering::Relaxed) == 1
            && (self.sink.delivered() || self.clock.now().0 >= self.suspended_at.0 + DELIVERY_WAIT.0)
        {
            self.shared.suspended.store(2, Ordering::SeqCst);
        }
    }

    /// The end of a suspension: the controls drawn before it drawn again (paced), then as at
    /// the end of a pause — unless the user's pause (or a link's) still holds.
    fn leave_suspend(&mut self) {
        self.suspended = false;
        let tl = &self.timeline;
        let want = &self.drawn_before_suspend;
        let messages = |c: usize| if want.get(c) { &tl.controls[c].on } else { &tl.controls[c].off };
        let count =
            (0..tl.controls.len()).filter(|&c| want.get(c) != self.drawn.get(c)).map(|c| messages(c).len()).sum();
        let mut paced = Paced::new(tl.stop_pace, count, self.config.hurry_flag);
        let mut drawn = self.drawn.clone();
        for c in (0..tl.controls.len()).filter(|&c| want.get(c) != self.drawn.get(c)) {
            for m in messages(c) {
                paced.wait(&mut self.clock);
                let now = self.clock.now();
                self.sink.emit(tl.bytes(m), Stamp { plan: self.pause_plan, due: now, now });
            }
            drawn.set(c, want.get(c));
        }
        self.drawn = drawn;
        self.shared.suspended.store(0, Ordering::SeqCst);
        if self.paused {
            self.shared.set_state(State::Paused);
        } else if self.link_paused {
            self.shared.set_state(State::WaitingForLink);
        } else {
            self.leave_pause();
        }
    }
}

/// Spaces messages `pace` apart from the first, on absolute deadlines so that waking late never
/// adds up, but never longer than [`RELEASE_PACING`] in all (however slow the organ file's
/// `stop_pace_ms` and however many messages), and not at all once `hurry` is set.
struct Paced<'a> {
    pace: Micros,
    hurry: &'a AtomicBool,
    first: Option<Micros>,
    sent: u64,
}

impl<'a> Paced<'a> {
    fn new(pace: Micros, count: usize, hurry: &'a AtomicBool) -> Paced<'a> {
        let gaps = count.saturating_sub(1).max(1) as u64;
        Paced { pace: pace.min(Micros(RELEASE_PACING.0 / gaps)), hurry, first: None, sent: 0 }
    }

    /// Waits on `clock` for the next message's turn.
    fn wait<C: Clock>(&mut self, clock: &mut C) {
        let first = *self.first.get_or_insert_with(|| clock.now());
        if self.sent > 0 && self.pace > Micros::ZERO {
            let until = first + Micros(self.pace.0 * self.sent);
            while clock.now() < until && !self.hurry.load(Ordering::Relaxed) {
                clock.wait_until(until);
            }
        }
        self.sent += 1;
    }
}
