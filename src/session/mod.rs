//! The session: one control layer between every frontend and the engine.
//!
//! ```text
//!  organ play (status line) ┐                      ┌─► engine thread ─► outputs
//!  organ service (view)     ├─ Command ─► Session ─┤
//!  (a web or console remote)┘  ◄─ Progress ────────┘   signals · panic hook · key release
//! ```
//!
//! A [`Session`] owns what every frontend needs and none should copy: the outputs (opened once,
//! prepared for each performance, lent to the engine and taken back, reopened when lost,
//! finished at the end), the engine's lifecycle (spawn, register for signals and panics, plan
//! swaps, join), key release on every way out (stop, end, signal, panic, drop), and one
//! [`Progress`] snapshot of where the performance is.
//!
//! A frontend maps its own input to [`Command`]s and draws [`Progress`]:
//! - the thread that created the session drives it: it calls [`Session::poll`] every few tens of
//!   milliseconds (that applies queued commands, follows the engine and publishes `Progress`)
//!   and gets the [`Event`]s (link lost, performance ended, …) back;
//! - any number of other frontends, on any thread, hold a cloneable [`SessionHandle`]: they send
//!   commands (applied at the next poll) and read the latest `Progress`.
//!
//! What to play is planned by the frontend (pure, [`crate::inputs`]) and handed over as a
//! [`Performance`]. The session never prints: frontends say things their own way.
//!
//! Threads: control thread only (the driver, plus any thread holding a handle). The engine runs
//! on its own real-time thread ([`crate::engine`]); nothing here touches its hot path.

mod link;
mod outputs;
mod progress;
mod release;
mod signals;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::{self, End, EngineHandle, LatenessStats, SystemClock};
use crate::midi::Micros;
use crate::organ::DisconnectPolicy;
use crate::output::{FinishError, OpenError, Output, OutputError, OutputSpec};
use crate::plan::Timeline;

pub use link::LinkWatch;
pub use outputs::specs as output_specs;
pub use progress::{PlayState, Progress, SectionInfo, registration_name, short_time};
pub use release::{Release, Unreleased, advice as release_advice, note as note_unreleased, verdict as release_verdict};
pub use signals::{
    HURRY_EXIT, STOPPING, SUSPEND_WAIT, SuspendGate, install_panic_hook, install_signal_handling, interrupt,
    signal_received, suspend_key, terminal_lost,
};

/// A tempo step (+/-): 5 % of the planned speed, in ‰.
pub const SPEED_STEP: u32 = 50;
/// The slowest and fastest speeds, in ‰ of the planned speed.
pub const SPEED_RANGE: (u32, u32) = (100, 4000);

/// `speed` (‰) moved by `steps` tempo steps, within [`SPEED_RANGE`].
pub fn nudge_speed(speed: u32, steps: i32) -> u32 {
    (i64::from(speed) + i64::from(steps) * i64::from(SPEED_STEP)).clamp(SPEED_RANGE.0.into(), SPEED_RANGE.1.into())
        as u32
}

/// What to play.
#[derive(Debug, Clone)]
pub struct Performance {
    pub timeline: Arc<Timeline>,
    /// What the frontends show it as.
    pub title: String,
    /// Speed at the start, ‰ of the planned speed (1000 = as planned).
    pub speed: u32,
    /// What the engine does while a wireless link is down (the organ's `on_disconnect`).
    pub on_disconnect: DisconnectPolicy,
}

impl Performance {
    /// A performance of `timeline` as planned, titled with its score's name.
    pub fn new(timeline: Arc<Timeline>, on_disconnect: DisconnectPolicy) -> Performance {
        Performance { title: timeline.score_name.clone(), timeline, speed: 1000, on_disconnect }
    }
}

/// What a frontend asks of the session.
#[derive(Debug, Clone)]
pub enum Command {
    /// Play this (refused while something plays: see [`Event::Refused`]).
    Start(Performance),
    /// Stop now: every key released, CC 123, the stops cancelled.
    Stop,
    Pause,
    Resume,
    TogglePause,
    /// Go on from a wait (a fermata that waits, or the end of a verse).
    Continue,
    /// Wait at the end of the current play-over or verse (true), or not.
    PauseAtSectionEnd(bool),
    /// Play at this speed, ‰ of the planned speed (kept within [`SPEED_RANGE`]).
    SetSpeed(u32),
    /// Faster (positive) or slower by this many [`SPEED_STEP`]s; quick presses add up.
    NudgeSpeed(i32),
    /// Offer a re-planned timeline for the rest of the performance (say, the next verse on
    /// another registration): taken if the engine has not yet reached the first event where
    /// it differs. [`Event::Swapped`] says which, with this `tag`.
    Offer {
        timeline: Arc<Timeline>,
        tag: u64,
    },
    /// Open again the outputs that are not open (lost, or failed to open).
    ReopenOutputs,
}

/// What happened, for the frontend that drives the session.
#[derive(Debug)]
pub enum Event {
    /// The engine thread runs without real-time priority (said once per session).
    RealtimeRefused,
    /// A wireless link dropped; the line says where and what happens now.
    LinkLost(String),
    /// It came back; the line says what was done.
    LinkBack(String),
    /// A [`Command::Offer`] was taken (the engine plays it) or not (too late, or nothing plays).
    Swapped { tag: u64, taken: bool },
    /// The performance ended.
    Ended(Box<Ending>),
    /// A command could not be carried out (a start while playing, or failing).
    Refused(String),
}

/// How a performance ended.
#[derive(Debug)]
pub struct Ending {
    pub end: End,
    pub title: String,
    /// The outputs it played to, by name.
    pub outputs: Vec<String>,
    /// The output that failed, by name, when `end` is [`End::OutputFailed`].
    pub failed_output: Option<String>,
    /// Every output that failed while it played (the first is `failed_output`; others may have
    /// failed taking the release): none of them got the release.
    pub failed_outputs: Vec<String>,
    /// Those of `outputs` that are `file:` records.
    pub records: Vec<String>,
    /// The engine stopped on an internal error, and the release it sent then was cut short
    /// (or it is not known whether it was sent).
    pub release_cut: bool,
    pub sent: u64,
    /// Messages the outputs dropped (their queue full), in all.
    pub dropped: u64,
    /// The same per output, in the order of `outputs`: a drop puts only that output in doubt.
    pub dropped_by: Vec<u64>,
    pub stats: LatenessStats,
    /// When the first message was sent.
    pub first_sent: Option<Instant>,
    /// A link was down when the engine sent its release (it may not have arrived).
    pub link_down_at_end: bool,
    /// How long the engine thread was held up (the process stopped with SIGSTOP, or starved),
    /// the music going on from where it stood afterwards ([`engine::HELD_UP`]).
    pub held_up: Duration,
    /// The engine thread's CPU time and wall time, and how its clock waited.
    pub cost: crate::engine::Cost,
    pub wake: Option<crate::engine::WakeStats>,
    /// Whether the CPU was held out of deep idle states while it played.
    pub awake: crate::engine::Awake,
}

/// Why a performance could not start.
#[derive(Debug)]
pub enum StartError {
    /// Something is playing already.
    Busy,
    /// An output cannot be opened (the message names it).
    Outputs(OpenError),
    /// An output cannot play this plan.
    Prepare { output: String, error: OutputError },
    /// The engine thread could not be started.
    Thread(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Busy => f.write_str("already playing"),
            StartError::Outputs(e) => e.fmt(f),
            StartError::Prepare { output, error } => write!(f, "{output}: {error}"),
            StartError::Thread(e) => write!(f, "cannot start the engine thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// What finishing the outputs gave: errors (a file not written, messages not delivered) and
/// what each output has to tell (link losses…), in order.
#[derive(Debug, Default)]
pub struct Finished {
    pub errors: Vec<FinishError>,
    pub reports: Vec<String>,
    /// Outputs on which keys may still sound: their release could not be delivered (a
    /// wireless link still down at the end; [`Output::keys_may_sound`]).
    pub may_sound: Vec<String>,
    /// The engine had not ended when the session finished (it did not stop in time): its
    /// outputs were not finished and may not have had the release.
    pub engine_running: Option<Vec<String>>,
    /// Which of the session's outputs are `file:` records, by name.
    pub records: Vec<String>,
    /// A line for `--stats` from each output that keeps counters of its own (JACK's: messages
    /// written late, xruns; [`Output::stats`]).
    pub stats: Vec<String>,
}

/// A frontend's way in from any thread: send commands, read [`Progress`]. Cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    tx: crossbeam_channel::Sender<Command>,
    progress: Arc<Mutex<Progress>>,
}

impl SessionHandle {
    /// Queues a command; the session applies it at its next poll. False when the session is gone.
    pub fn send(&self, c: Command) -> bool {
        self.tx.send(c).is_ok()
    }

    /// The latest snapshot.
    pub fn progress(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// A performance under way.
struct Running {
    handle: EngineHandle,
    timeline: Arc<Timeline>,
    /// Slot numbers of the outputs lent to the engine, in its order.
    lent: Vec<usize>,
    names: Vec<String>,
    title: String,
    speed: u32,
    offered: Option<(Arc<Timeline>, u64)>,
    link: LinkWatch,
}

/// The control layer (see the module documentation). Dropping it stops the engine, waits for
/// the release and finishes the outputs.
pub struct Session {
    outputs: outputs::Outputs,
    clock: SystemClock,
    /// The clock's epoch, to turn engine-clock times into instants.
    epoch: Instant,
    running: Option<Running>,
    progress: Arc<Mutex<Progress>>,
    /// The driver's copy of the snapshot (published at each poll).
    current: Progress,
    tx: crossbeam_channel::Sender<Command>,
    rx: crossbeam_channel::Receiver<Command>,
    events: Vec<Event>,
    realtime_reported: bool,
    finished: bool,
}

impl Session {
    /// A session that will play to `specs` (opened with [`Session::open_outputs`], or when the
    /// first performance starts). `policy` is the organ's `on_disconnect`, for wireless outputs.
    pub fn new(specs: Vec<OutputSpec>, policy: DisconnectPolicy) -> Session {
        let clock = SystemClock::new();
        let epoch = Instant::now();
        let (tx, rx) = crossbeam_channel::unbounded();
        Session {
            outputs: outputs::Outputs::new(specs, policy),
            clock,
            epoch,
            running: None,
            progress: Arc::new(Mutex::new(Progress::default())),
            current: Progress::default(),
            tx,
            rx,
            events: Vec::new(),
            realtime_reported: false,
            finished: false,
        }
    }

    /// A handle for another frontend.
    pub fn handle(&self) -> SessionHandle {
        SessionHandle { tx: self.tx.clone(), progress: self.progress.clone() }
    }

    // --- outputs ----------------------------------------------------------------------------------

    /// Opens the outputs that are not open, in order; returns lines for the user (e.g. "restart
    /// GrandOrgue now"). `keep_going`: try every output even after one fails.
    ///
    /// # Errors
    /// The first output that cannot be opened.
    pub fn open_outputs(&mut self, keep_going: bool) -> Result<Vec<String>, OpenError> {
        let mut notes = Vec::new();
        let r = self.outputs.open_missing(keep_going, &mut notes);
        self.publish();
        r.map(|()| notes)
    }

    /// Puts an output already open into slot `i` (a test's, or one a frontend opened itself).
    pub fn insert_output(&mut self, i: usize, output: Box<dyn Output>) {
        self.outputs.slots[i] = Some(output);
        self.outputs.errors[i] = None;
        self.publish();
    }

    /// The outputs, as named with `--to`.
    pub fn specs(&self) -> &[OutputSpec] {
        &self.outputs.specs
    }

    /// Whether slot `i` holds an open output (false while lent to the engine).
    pub fn is_output_open(&self, i: usize) -> bool {
        self.outputs.slots[i].is_some()
    }

    /// Names of the open outputs, in order (not while they are lent to the engine).
    pub fn output_names(&self) -> Vec<String> {
        self.outputs.names()
    }

    /// Why some outputs are not open (failed to open, or lost), joined; `None` when all are.
    pub fn output_error(&self) -> Option<String> {
        self.outputs.error()
    }

    // --- performances ---------------------------------------------------------------------------

    /// Starts a performance: opens what is not open, prepares every output, spawns the engine.
    ///
    /// # Errors
    /// Something plays already; an output cannot be opened or prepared; no engine thread.
    pub fn start(&mut self, p: Performance) -> Result<(), StartError> {
        if self.running.is_some() {
            return Err(StartError::Busy);
        }
        let mut notes = Vec::new();
        let opened = self.outputs.open_missing(true, &mut notes);
        self.publish();
        opened.map_err(StartError::Outputs)?;
        let (lent, index) =
            self.outputs.lend(&p.timeline).map_err(|(output, error)| StartError::Prepare { output, error })?;
        let names: Vec<String> = lent.iter().map(|o| o.name().to_string()).collect();
        let config = engine::Config {
            on_disconnect: p.on_disconnect,
            speed: p.speed,
            start_delay: Micros::ZERO,
            stop_flag: &engine::STOP_ALL,
            suspend_flag: &engine::SUSPEND_ALL,
            hurry_flag: &engine::HURRY_ALL,
            keep_awake: true,
        };
        let (eng, handle) = engine::new(p.timeline.clone(), lent, self.clock, config);
        let handle = match engine::spawn(eng, handle) {
            Ok(h) => h,
            Err(e) => {
                // The outputs went down with the engine that could not start: open them again.
                for &i in &index {
                    self.outputs.errors[i] = Some("the engine thread could not start".into());
                }
                self.publish();
                return Err(StartError::Thread(e.to_string()));
            }
        };
        signals::register_engine(&handle, &names, &self.records(&index, &names));
        if engine::STOP_ALL.load(Ordering::SeqCst) {
            handle.wake();
        }
        self.current.performance += 1;
        self.current.title = p.title.clone();
        self.running = Some(Running {
            handle,
            timeline: p.timeline,
            lent: index,
            names,
            title: p.title,
            speed: p.speed,
            offered: None,
            link: LinkWatch::new(p.on_disconnect),
        });
        self.publish();
        Ok(())
    }

    /// True while a performance is under way (until [`Event::Ended`]).
    pub fn is_playing(&self) -> bool {
        self.running.is_some()
    }

    /// The plan being played (the swapped-in one after a taken offer).
    pub fn timeline(&self) -> Option<&Arc<Timeline>> {
        self.running.as_ref().map(|r| &r.timeline)
    }

    /// Carries out a command now (the driver's way; other threads use a [`SessionHandle`]).
    /// What it leads to comes out of the next [`Session::poll`].
    pub fn send(&mut self, c: Command) {
        self.apply(c);
    }

    /// Offers a re-planned timeline ([`Command::Offer`]); returns its tag, or `None` when an
    /// offer is still pending or nothing plays.
    pub fn offer(&mut self, timeline: Arc<Timeline>) -> Option<u64> {
        static TAGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let r = self.running.as_ref()?;
        if r.offered.is_some() {
            return None;
        }
        let tag = TAGS.fetch_add(1, Ordering::Relaxed);
        self.apply(Command::Offer { timeline, tag });
        Some(tag)
    }

    fn apply(&mut self, c: Command) {
        let engine_command = match c {
            Command::Start(p) => {
                if let Err(e) = self.start(p) {
                    self.events.push(Event::Refused(e.to_string()));
                }
                return;
            }
            Command::ReopenOutputs => {
                let _ = self.open_outputs(true);
                return;
            }
            Command::Offer { timeline, tag } => {
                self.offer_now(timeline, tag);
                return;
            }
            Command::Stop => engine::Command::Stop,
            Command::Pause => engine::Command::Pause,
            Command::Resume => engine::Command::Resume,
            Command::TogglePause => engine::Command::TogglePause,
            Command::Continue => engine::Command::Continue,
            Command::PauseAtSectionEnd(on) => engine::Command::PauseAtSectionEnd(on),
            Command::SetSpeed(s) => {
                let Some(r) = &mut self.running else { return };
                r.speed = s.clamp(SPEED_RANGE.0, SPEED_RANGE.1);
                engine::Command::Speed(r.speed)
            }
            Command::NudgeSpeed(steps) => {
                let Some(r) = &mut self.running else { return };
                r.speed = nudge_speed(r.speed, steps);
                engine::Command::Speed(r.speed)
            }
        };
        if let Some(r) = &mut self.running {
            r.handle.send(engine_command);
        }
    }

    fn offer_now(&mut self, timeline: Arc<Timeline>, tag: u64) {
        let Some(r) = &mut self.running else {
            self.events.push(Event::Swapped { tag, taken: false });
            return;
        };
        if r.offered.is_some() {
            self.events.push(Event::Swapped { tag, taken: false });
            return;
        }
        let t = &r.timeline;
        let first_diff = t
            .events
            .iter()
            .zip(&timeline.events)
            .position(|(a, b)| a != b)
            .unwrap_or(t.events.len().min(timeline.events.len()));
        if r.handle.swap_timeline(timeline.clone(), first_diff) {
            r.offered = Some((timeline, tag));
        } else {
            self.events.push(Event::Swapped { tag, taken: false });
        }
    }

    /// Applies the commands queued by handles, follows the engine (plans handed back, link,
    /// the end), publishes [`Progress`], and returns what happened since the last poll. Call it
    /// every few tens of milliseconds from the thread that owns the session.
    pub fn poll(&mut self) -> Vec<Event> {
        while let Ok(c) = self.rx.try_recv() {
            self.apply(c);
        }
        if let Some(r) = &mut self.running {
            while let Some(back) = r.handle.returned() {
                if let Some((offered, tag)) = r.offered.take() {
                    let taken = Arc::ptr_eq(&back, &r.timeline);
                    if taken {
                        r.timeline = offered;
                    }
                    self.events.push(Event::Swapped { tag, taken });
                }
            }
            self.current.read(&r.timeline, &r.handle.shared);
            if let Some(line) = r.link.poll(&self.current) {
                self.events.push(if self.current.link_down { Event::LinkLost(line) } else { Event::LinkBack(line) });
            }
            self.current.link_down_for = r.link.down_for();
            if !self.realtime_reported && r.handle.shared.realtime.load(Ordering::Relaxed) == 2 {
                self.realtime_reported = true;
                self.events.push(Event::RealtimeRefused);
            }
            if r.handle.is_finished() {
                self.end();
            }
        }
        self.publish();
        std::mem::take(&mut self.events)
    }

    /// The engine has ended: take the outputs back and say how it went.
    fn end(&mut self) {
        let Some(r) = self.running.take() else { return };
        // Final once the engine has ended: whether a link was down when it sent its release.
        let link_down_at_end = r.handle.shared.link_down.load(Ordering::SeqCst);
        let held_up = Duration::from_micros(r.handle.shared.held_up_us.load(Ordering::SeqCst));
        let shared = r.handle.shared.clone();
        let mut report = r.handle.join();
        let outputs = std::mem::take(&mut report.outputs);
        let failed = match report.end {
            End::OutputFailed { output, error } => Some((output, error)),
            _ => None,
        };
        let failed_output = failed.and_then(|(k, _)| r.names.get(k).cloned());
        let failed_mask = shared.failed.load(Ordering::SeqCst);
        let failed_outputs: Vec<String> =
            r.names.iter().enumerate().filter(|(k, _)| failed_mask & (1 << k) != 0).map(|(_, n)| n.clone()).collect();
        let dropped_by: Vec<u64> = (0..r.names.len()).map(|k| shared.dropped_by.get(k)).collect();
        let records = self.records(&r.lent, &r.names);
        // The engine thread died with its outputs (a panic it did not catch): whether it
        // released is not known.
        let release_cut = shared.release_cut.load(Ordering::SeqCst) || (outputs.is_empty() && !r.lent.is_empty());
        if outputs.is_empty() && !r.lent.is_empty() {
            // The engine thread panicked with the outputs: open them again.
            for &i in &r.lent {
                self.outputs.errors[i] = Some("the engine stopped on an internal error".into());
            }
        } else {
            self.outputs.take_back(outputs, &r.lent, failed);
        }
        self.current.state = PlayState::Idle;
        self.current.link_down_for = None;
        let first_sent = report.first_sent.map(|t| self.epoch + Duration::from_micros(t.0));
        self.events.push(Event::Ended(Box::new(Ending {
            end: report.end,
            title: r.title,
            outputs: r.names,
            failed_output,
            failed_outputs,
            records,
            release_cut,
            sent: report.sent,
            dropped: report.dropped,
            dropped_by,
            stats: report.stats,
            first_sent,
            link_down_at_end,
            held_up,
            cost: report.cost,
            wake: report.wake,
            awake: report.awake,
        })));
    }

    /// Which of `names` (the outputs in slots `slots`) are `file:` records.
    fn records(&self, slots: &[usize], names: &[String]) -> Vec<String> {
        slots
            .iter()
            .zip(names)
            .filter(|(i, _)| matches!(self.outputs.specs[**i], OutputSpec::File(_)))
            .map(|(_, n)| n.clone())
            .collect()
    }

    fn publish(&mut self) {
        self.current.outputs = self.outputs.names();
        if let Some(r) = &self.running {
            // Lent to the engine: the names it plays to.
            self.current.outputs = r.names.clone();
        }
        self.current.output_error = self.outputs.error();
        if let Ok(mut p) = self.progress.lock() {
            *p = self.current.clone();
        }
    }

    /// The latest snapshot (as of the last poll).
    pub fn progress(&self) -> &Progress {
        &self.current
    }

    /// Stops the performance, if any, and waits (at most `limit`) for the engine to release
    /// every key and end; returns the events that came (with [`Event::Ended`]).
    pub fn stop_and_wait(&mut self, limit: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(r) = &mut self.running {
            r.handle.send(engine::Command::Stop);
            let start = Instant::now();
            while !r.handle.is_finished() && start.elapsed() < limit {
                r.handle.wake();
                std::thread::sleep(Duration::from_millis(5));
            }
            events = self.poll();
        }
        events
    }

    /// Sends messages straight to every open output, now, from this thread — for silencing
    /// the organ (`organ panic`) while nothing plays; `paced` go `pace` apart after the others.
    /// Returns the outputs that failed (an output stops at its first failure). Does nothing
    /// while a performance is under way (the engine owns the outputs then; stop it instead).
    pub fn send_now(&mut self, msgs: &[Vec<u8>], paced: &[Vec<u8>], pace: Micros) -> Vec<(String, OutputError)> {
        use crate::engine::Clock;
        let mut failed = Vec::new();
        if self.running.is_some() {
            return failed;
        }
        let clock = self.clock;
        for o in self.outputs.slots.iter_mut().flatten() {
            let mut send = |b: &[u8]| {
                let now = clock.now();
                o.send(b, crate::output::Stamp { plan: now, due: now, now })
            };
            let mut err = msgs.iter().find_map(|m| send(m).err());
            for m in paced {
                if err.is_some() {
                    break;
                }
                err = send(m).err();
                std::thread::sleep(Duration::from_micros(pace.0));
            }
            if let Some(e) = err {
                failed.push((o.name().to_string(), e));
            }
        }
        failed
    }

    /// Whether everything [`Session::send_now`] sent has left this process (every open output's
    /// [`Output::delivered`]), so that stopping the process now cannot hold it back.
    pub fn delivered(&self) -> bool {
        self.outputs.slots.iter().flatten().all(|o| o.delivered())
    }

    /// Ends the session: stops what plays (every key released) and finishes every output (a
    /// file output writes its file). Idempotent; dropping the session does it too.
    pub fn finish(&mut self) -> Finished {
        if self.finished {
            return Finished::default();
        }
        self.stop_and_wait(Duration::from_secs(5));
        self.finished = true;
        let (errors, reports, may_sound, stats) = self.outputs.finish();
        let engine_running = self.running.as_ref().map(|r| r.names.clone());
        let mut records = self.outputs.record_names();
        if let Some(r) = &self.running {
            records.extend(self.records(&r.lent, &r.names));
        }
        Finished { errors, reports, may_sound, engine_running, records, stats }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // An early return, or a panic unwinding through the frontend: nothing may keep sounding,
        // and a file output is still written.
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::record::{MemoryOutput, PulledCable};

    fn hymn() -> Arc<Timeline> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let args = crate::inputs::PlanArgs {
            score: root.join("scores/hymn-tallis-ordinal.mid"),
            tempo: Some("400%".into()),
            ..Default::default()
        };
        Arc::new(crate::inputs::load_and_plan(&args).unwrap().1)
    }

    fn wait_for_end(s: &mut Session) -> Box<Ending> {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(20), "the performance did not end");
            for e in s.poll() {
                if let Event::Ended(e) = e {
                    return e;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn commands_from_another_thread_reach_the_engine_and_progress_comes_back() {
        let mut s = Session::new(vec![OutputSpec::Null], DisconnectPolicy::Pause);
        s.open_outputs(false).unwrap();
        let remote = s.handle();
        let t = hymn();
        s.start(Performance::new(t.clone(), DisconnectPolicy::Pause)).unwrap();
        assert!(matches!(s.start(Performance::new(t.clone(), DisconnectPolicy::Pause)), Err(StartError::Busy)));
        let seen = std::thread::spawn(move || {
            remote.send(Command::NudgeSpeed(2));
            remote.send(Command::NudgeSpeed(2));
            let start = Instant::now();
            loop {
                let p = remote.progress();
                if p.speed == 1200 && p.bar >= 2 {
                    remote.send(Command::Stop);
                    return p;
                }
                assert!(start.elapsed() < Duration::from_secs(10), "{p:?}");
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let ending = wait_for_end(&mut s);
        let p = seen.join().unwrap();
        assert_eq!(p.title, "hymn-tallis-ordinal.mid");
        assert_eq!(p.outputs, vec!["null".to_string()]);
        assert!(p.section.as_ref().is_some_and(|x| !x.label.is_empty()));
        assert_eq!(ending.end, End::Stopped);
        assert_eq!(s.progress().state, PlayState::Idle);
        assert!(s.is_output_open(0), "the output came back from the engine");
        assert!(s.finish().errors.is_empty());
    }

    #[test]
    fn a_lost_output_is_closed_and_the_others_kept_and_released() {
        let mut s = Session::new(vec![OutputSpec::Port("test".into()), OutputSpec::Null], DisconnectPolicy::Pause);
        s.insert_output(0, Box::new(PulledCable::after(30)));
        let (memory, recording) = MemoryOutput::new();
        s.insert_output(1, Box::new(memory));
        s.start(Performance::new(hymn(), DisconnectPolicy::Pause)).unwrap();
        let ending = wait_for_end(&mut s);
        assert!(matches!(ending.end, End::OutputFailed { output: 0, .. }), "{:?}", ending.end);
        assert_eq!(ending.failed_output.as_deref(), Some("port:test"));
        assert_eq!(ending.failed_outputs, vec!["port:test".to_string()]);
        assert!(ending.records.is_empty() && !ending.release_cut);
        assert_eq!(
            release_verdict(&ending.unreleased(), ending.outputs.len()),
            "KEYS MAY STILL SOUND on port:test; every other output took the release"
        );
        assert!(!s.is_output_open(0) && s.is_output_open(1));
        assert!(s.output_error().unwrap().contains("cable pulled"), "{:?}", s.output_error());
        assert!(s.finish().errors.is_empty());
        // The memory output got the release: every note-on has its note-off.
        let sent = recording.lock().unwrap().clone();
        let mut down = std::collections::HashSet::new();
        for (_, b) in &sent {
            match b[0] & 0xF0 {
                0x90 if b[2] > 0 => assert!(down.insert((b[0] & 0x0F, b[1]))),
                0x80 | 0x90 => {
                    down.remove(&(b[0] & 0x0F, b[1]));
                }
                _ => {}
            }
        }
        assert!(down.is_empty(), "keys left down: {down:?}");
    }

    #[test]
    fn dropping_the_session_releases_and_writes_the_file() {
        let dir = std::env::temp_dir().join(format!("organ-unit-session-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("drop.mid");
        {
            let mut s = Session::new(vec![OutputSpec::File(path.clone())], DisconnectPolicy::Pause);
            s.start(Performance::new(hymn(), DisconnectPolicy::Pause)).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
        let smf_bytes = std::fs::read(&path).unwrap();
        let smf = midly::Smf::parse(&smf_bytes).unwrap();
        let cc123 = smf.tracks[0]
            .iter()
            .filter(|e| {
                matches!(e.kind, midly::TrackEventKind::Midi { message: midly::MidiMessage::Controller { controller, .. }, .. } if controller == 123)
            })
            .count();
        assert!(cc123 >= 2, "all-notes-off on the divisions after the drop ({cc123})");
    }

    #[test]
    fn a_record_is_known_as_one_and_a_clean_stop_leaves_nothing_in_doubt() {
        let dir = std::env::temp_dir().join(format!("organ-unit-session-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.mid");
        let mut s = Session::new(vec![OutputSpec::Null, OutputSpec::File(path.clone())], DisconnectPolicy::Pause);
        s.start(Performance::new(hymn(), DisconnectPolicy::Pause)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        s.send(Command::Stop);
        let ending = wait_for_end(&mut s);
        let file = format!("file:{}", path.display());
        assert_eq!(ending.records, vec![file.clone()]);
        assert!(ending.failed_outputs.is_empty() && !ending.release_cut);
        assert!(ending.releases().iter().all(|(_, r)| *r == Release::Took));
        let finished = s.finish();
        assert_eq!(finished.records, vec![file]);
        assert!(finished.unreleased().is_empty() && finished.stats.is_empty(), "{:?}", finished.stats);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn handles_go_to_any_thread_and_the_session_to_another_driver() {
        fn shared_across_threads<T: Clone + Send + Sync + 'static>() {}
        fn movable<T: Send + 'static>() {}
        shared_across_threads::<SessionHandle>();
        shared_across_threads::<Progress>();
        movable::<Session>();
        movable::<Command>();
    }

    #[test]
    fn speed_steps_add_up_and_stay_in_range() {
        assert_eq!(nudge_speed(1000, 1), 1050);
        assert_eq!(nudge_speed(1000, -3), 850);
        assert_eq!(nudge_speed(120, -1), 100);
        assert_eq!(nudge_speed(3990, 1), 4000);
    }
}
