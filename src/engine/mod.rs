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
//! # Keys
//! The engine tracks every key it has sent down ([`HeldKeys`]). Stop, pause, seek, an output
//! failure, a panic, and the global stop flag (signals) all release exactly those keys, then send
//! CC 123 on every division channel, then (when the organ asks for it) the cancel.

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

pub use clock::{Clock, ManualClock, SystemClock};
pub use keys::HeldKeys;
pub use stats::LatenessStats;

use crate::midi::{Micros, ShortMsg};
use crate::organ::DisconnectPolicy;
use crate::output::{Link, Output, OutputError, OutputErrorKind, Stamp};
use crate::plan::Timeline;

/// Set by signal handlers and the panic hook: every engine stops, releases and ends.
pub static STOP_ALL: AtomicBool = AtomicBool::new(false);

/// Asks every running engine to stop (async-signal-safe: one atomic store).
pub fn request_stop_all() {
    STOP_ALL.store(true, Ordering::SeqCst);
}

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
    /// Messages an output dropped (full queue).
    pub dropped: AtomicU64,
    state: AtomicU8,
    /// Current speed in ‰.
    pub speed: AtomicU32,
    /// Some output reports its link down.
    pub link_down: AtomicBool,
    /// The release after a stop (or the end of the plan) has been sent.
    pub released: AtomicBool,
    /// Real-time priority: 0 unknown, 1 granted, 2 refused.
    pub realtime: AtomicU8,
    /// Engine-clock time (µs) of the first message sent, for the start-up time report.
    pub first_sent: AtomicU64,
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
    /// Engine-clock time of the first message sent, if any.
    pub first_sent: Option<Micros>,
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
}

impl Default for Config {
    fn default() -> Self {
        Config { on_disconnect: DisconnectPolicy::Pause, speed: 1000, start_delay: Micros::ZERO, stop_flag: &STOP_ALL }
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
        for (i, o) in self.outputs.iter_mut().enumerate() {
            if self.dead & (1 << i) != 0 {
                continue;
            }
            // A panicking output must not take the others down with it: it is treated as failed.
            let sent = catch_unwind(AssertUnwindSafe(|| o.send(bytes, stamp)))
                .unwrap_or(Err(OutputError { kind: OutputErrorKind::Backend, detail: "the output panicked" }));
            match sent {
                Ok(()) => {}
                Err(e) if e.kind == OutputErrorKind::Overflow => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.dead |= 1 << i;
                    if self.failure.is_none() {
                        self.failure = Some((i, e));
                    }
                }
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
}

/// The control thread's side of an engine: commands in, telemetry out.
pub struct EngineHandle {
    commands: ringbuf::HeapProd<Command>,
    thread: Option<Thread>,
    join: Option<JoinHandle<Report>>,
    pub shared: Arc<Shared>,
}

impl EngineHandle {
    /// Sends a command and wakes the engine. Returns false if the queue is full.
    pub fn send(&mut self, c: Command) -> bool {
        let ok = self.commands.try_push(c).is_ok();
        self.wake();
        ok
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
                first_sent: None,
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
    };
    (engine, EngineHandle { commands: prod, thread: None, join: None, shared })
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
        shared.realtime.store(if rt { 1 } else { 2 }, Ordering::Relaxed);
        engine.run()
    })?;
    handle.thread = Some(join.thread().clone());
    handle.join = Some(join);
    Ok(handle)
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
        let end = match catch_unwind(AssertUnwindSafe(|| self.play())) {
            Ok(end) => end,
            Err(_) => {
                // Whatever state the panic left, release what is down.
                let _ = catch_unwind(AssertUnwindSafe(|| self.release(true)));
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
            first_sent: (self.shared.sent.load(Ordering::Relaxed) > 0)
                .then(|| Micros(self.shared.first_sent.load(Ordering::Relaxed))),
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
            if self.config.stop_flag.load(Ordering::Relaxed) {
                self.release(true);
                return End::Stopped;
            }
            // 2. Links.
            let dead = self.sink.dead;
            let down =
                self.sink.outputs.iter().enumerate().any(|(i, o)| dead & (1 << i) == 0 && o.link() == Link::Down);
            self.shared.link_down.store(down, Ordering::Relaxed);
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
            if self.paused || self.link_paused {
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
            let due = self.wall(self.timeline.events[self.next].t);
            if due > now {
                self.clock.wait_until(due);
                continue;
            }
            while self.next < events_len {
                let e = self.timeline.events[self.next];
                let due = self.wall(e.t);
                let now = self.clock.now();
                if due > now {
                    break;
                }
                self.next += 1;
                self.sink.emit(self.timeline.bytes(&e.msg), Stamp { plan: e.t, due, now });
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
                if !(self.paused || self.link_paused) {
                    let now = self.clock.now();
                    self.base_plan = self.plan_at(now);
                    self.base_wall = now;
                }
                self.speed = permille;
                self.shared.speed.store(permille, Ordering::Relaxed);
            }
            Command::Seek(t) => self.seek(t),
        }
        false
    }

    /// Pause: the clock stops; the keys that are down go up (and are struck again on resume).
    fn enter_pause(&mut self) {
        let now = self.clock.now();
        self.pause_plan = self.plan_at(now);
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
        self.shared.set_state(State::Playing);
    }

    /// Jump: release the keys, then re-send the registration of the new position from a cancel.
    /// Notes that began before the new position are not struck again.
    fn seek(&mut self, t: Micros) {
        let now = self.clock.now();
        self.sink.release_keys(self.plan_at(now), now);
        self.resume_keys.clear();
        let tl = &self.timeline;
        let stamp = Stamp { plan: t, due: now, now };
        for m in &tl.cancel {
            self.sink.emit(tl.bytes(m), stamp);
        }
        if let Some(reg) = tl.registration_at(t) {
            for &id in &reg.drawn {
                for m in &tl.controls[id].on {
                    self.sink.emit(tl.bytes(m), stamp);
                }
            }
        }
        self.next = tl.events.partition_point(|e| e.t < t);
        if self.paused || self.link_paused {
            self.pause_plan = t;
        } else {
            self.base_plan = t;
            self.base_wall = self.clock.now();
        }
        self.shared.next.store(self.next, Ordering::Relaxed);
    }

    /// The release sequence: the keys that are down, CC 123 on every division channel, then
    /// (with `cancel`, when the organ asks for it) the cancel, paced like the plan's.
    fn release(&mut self, cancel: bool) {
        let now = self.clock.now();
        let plan = self.plan_at(now);
        self.sink.release_keys(plan, now);
        let tl = &self.timeline;
        for d in &tl.divisions {
            self.sink.emit(ShortMsg::all_notes_off(d.channel).as_bytes(), Stamp { plan, due: now, now });
        }
        if cancel && tl.cancel_at_end {
            for (i, m) in tl.cancel.iter().enumerate() {
                if i > 0 && tl.stop_pace > Micros::ZERO {
                    let until = self.clock.now() + tl.stop_pace;
                    while self.clock.now() < until {
                        self.clock.wait_until(until);
                    }
                }
                let now = self.clock.now();
                self.sink.emit(tl.bytes(m), Stamp { plan, due: now, now });
            }
        }
        self.shared.released.store(true, Ordering::SeqCst);
    }
}
