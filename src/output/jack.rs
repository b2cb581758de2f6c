//! JACK MIDI output (`--to jack`, `--to jack:PORT`; feature `jack`).
//!
//! libjack is loaded at run time (the `jack` crate's `dynamic_loading`), so the binary starts
//! where JACK is not installed and only says so when asked to use it.
//!
//! Threads and timing:
//! - [`open`] runs on the control thread: it creates the client `organ` with the MIDI output port
//!   `out`, activates it and connects it.
//! - [`Output::send`] runs on the engine thread: it stamps the message with JACK's clock (the
//!   engine's own lateness, `now − due`, is subtracted, so the message keeps its planned time)
//!   and pushes a fixed-size [`Record`] into a lock-free SPSC ring (ringbuf). No allocation, no
//!   lock, bounded time.
//! - The JACK process callback drains the ring and writes each message at its exact frame: the
//!   frame its time falls on, one period later (a fixed lookahead of one period, so the latency
//!   is constant instead of jittering by up to a period). Time is mapped to frames by a
//!   [`FrameClock`]: a line fitted over the last half minute through the earliest callbacks,
//!   so a cycle that wakes late does not move the messages around it. A message whose frame has already gone by is written
//!   at frame 0 of the cycle and counted as late, with its lateness in frames. A cycle whose
//!   port buffer is full leaves the rest to the next cycle (late, in order, not lost). Counters
//!   leave through atomics ([`JackStats`]).
//! - JACK's xrun notification (its notification thread; atomics only) counts the xrun and has
//!   the process callback restart its frame clock: after a stall the server's frames start
//!   from a new point in time. The messages due meanwhile are written in the first cycle after
//!   it, late. What JACK itself does at that moment is beyond our reach: in jack2's
//!   asynchronous mode a client that misses the cycle can miss our port buffer of that cycle, or
//!   read it twice; [`Output::report`] tells the user.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jack::{
    AsyncClient, Client, ClientOptions, ClientStatus, Control, MidiOut, Port, PortFlags, ProcessScope, RawMidi,
};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use std::fmt;

use super::frame_clock::FrameClock;
use super::{FinishError, Link, Output, OutputError, OutputErrorKind, Stamp};

/// The longest message one record carries (SysEx included).
pub const MAX_MESSAGE: usize = 64;
/// Ring capacity in records: several seconds of the densest organ music.
pub const RING_RECORDS: usize = 8192;
/// The JACK client name (the port is `organ:out`, or `organ-01:out` if the name is taken).
pub const CLIENT_NAME: &str = "organ";

/// Why the output failed when its server shut down.
const SERVER_GONE: OutputError =
    OutputError { kind: OutputErrorKind::Disconnected, detail: "the JACK server shut down" };

/// One message on its way to the process callback: fixed size, `Copy`, no heap.
#[derive(Clone, Copy)]
pub struct Record {
    /// When it is due, in JACK microseconds (`jack_get_time`).
    pub at: u64,
    pub len: u8,
    pub bytes: [u8; MAX_MESSAGE],
}

/// Counters shared with the process callback (atomics only).
#[derive(Debug, Default)]
pub struct JackCounters {
    written: AtomicU64,
    late: AtomicU64,
    late_frames_sum: AtomicU64,
    late_frames_max: AtomicU32,
    dropped: AtomicU64,
    cycles: AtomicU64,
    xruns: AtomicU64,
    /// Set by the xrun notification, taken by the process callback (which then restarts its
    /// frame clock).
    xrun_pending: AtomicBool,
    /// JACK µs time at which the last written message was due (to know when a drain is done).
    last_due: AtomicU64,
}

/// What the JACK output did, read on the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JackStats {
    /// Messages written to the JACK port.
    pub written: u64,
    /// Messages written after their frame had gone by (at frame 0 of a later cycle).
    pub late: u64,
    /// Worst lateness of a message, in frames.
    pub late_frames_max: u32,
    /// Sum of lateness in frames (mean = sum / late).
    pub late_frames_sum: u64,
    /// Messages lost: the ring full, or too long. (A cycle whose JACK buffer is full leaves the
    /// rest for the next cycle: written late, not lost.)
    pub dropped: u64,
    /// Process cycles run.
    pub cycles: u64,
    /// Xruns JACK reported: cycles the server skipped or that overran their period (the machine
    /// stalled, a client took too long). Messages due meanwhile are written in the first cycle
    /// after, late (and counted in `late`), in order; none is lost.
    pub xruns: u64,
    pub sample_rate: u32,
    /// Frames per period (also the fixed latency added to every message).
    pub period: u32,
}

impl JackStats {
    /// Frames as microseconds at this output's sample rate.
    pub fn frames_to_us(&self, frames: u64) -> f64 {
        if self.sample_rate == 0 { 0.0 } else { frames as f64 * 1e6 / f64::from(self.sample_rate) }
    }
}

/// What the user should know after playing through JACK when the server skipped cycles
/// (`None` when it did not): how often, how late the messages due meanwhile were written, that
/// JACK may have lost or doubled those in flight then, and the fix.
pub fn xrun_report(name: &str, s: &JackStats) -> Option<String> {
    if s.xruns == 0 {
        return None;
    }
    Some(format!(
        "{name}: JACK skipped cycles ({} xrun{}); {} message(s) were written late (worst {:.1} ms), and JACK may \
         have lost or doubled those in flight at that moment (`organ panic` releases any key left down); run the \
         JACK server at real-time priority (jackd -R) with a larger period (-p), and close other programs",
        s.xruns,
        if s.xruns == 1 { "" } else { "s" },
        s.late,
        s.frames_to_us(u64::from(s.late_frames_max)) / 1000.0,
    ))
}

/// The `organ play --stats` line of a JACK output: what it wrote, how much late and how late,
/// what it dropped, the xruns, and its period (the fixed latency it adds). `name` is the output's.
pub fn stats_line(name: &str, s: &JackStats) -> String {
    let ms = |frames: u64| s.frames_to_us(frames) / 1000.0;
    let mean = if s.late == 0 { 0.0 } else { ms(s.late_frames_sum) / s.late as f64 };
    format!(
        "{name}: JACK: {} messages written, {} late (mean {:.2} ms, worst {:.2} ms), {} dropped; {} xrun{} in {} \
         cycles; period {} frames at {} Hz ({:.1} ms of latency)",
        s.written,
        s.late,
        mean,
        ms(u64::from(s.late_frames_max)),
        s.dropped,
        s.xruns,
        if s.xruns == 1 { "" } else { "s" },
        s.cycles,
        s.period,
        s.sample_rate,
        ms(u64::from(s.period)),
    )
}

/// A JACK output's counters, kept by whoever handed the output on (see
/// [`JackOutput::stats_handle`]).
#[derive(Debug, Clone)]
pub struct JackStatsHandle {
    counters: Arc<JackCounters>,
    sample_rate: u32,
    period: u32,
}

impl JackStatsHandle {
    pub fn stats(&self) -> JackStats {
        let c = &self.counters;
        JackStats {
            written: c.written.load(Ordering::Relaxed),
            late: c.late.load(Ordering::Relaxed),
            late_frames_max: c.late_frames_max.load(Ordering::Relaxed),
            late_frames_sum: c.late_frames_sum.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            cycles: c.cycles.load(Ordering::Relaxed),
            xruns: c.xruns.load(Ordering::Relaxed),
            sample_rate: self.sample_rate,
            period: self.period,
        }
    }
}

struct Process {
    port: Port<MidiOut>,
    rx: HeapCons<Record>,
    counters: Arc<JackCounters>,
    /// System time → frames, from the earliest cycle starts (see [`FrameClock`]).
    clock: FrameClock,
}

/// The offset in this cycle of a message due at `at` (JACK µs): the frame its time falls on,
/// one period later, relative to the cycle's first frame `cycle`. Negative: that frame has gone
/// by; `>= n`: a later cycle's. `None` before the clock has seen a cycle.
fn placement(clock: &FrameClock, at: u64, cycle: u32, n: u32) -> Option<i64> {
    let f = clock.frame_at(at)?;
    let start = clock.unwrap(cycle)?;
    Some((f - start).floor() as i64 + i64::from(n))
}

impl jack::ProcessHandler for Process {
    fn process(&mut self, c: &Client, ps: &ProcessScope) -> Control {
        let n = ps.n_frames();
        let cycle = ps.last_frame_time();
        // After an xrun the server's frames no longer keep to the old line (the dummy and
        // other timed drivers start their cycles afresh from the time they woke): the history
        // is dropped at once rather than when the next block shows the jump.
        if self.counters.xrun_pending.swap(false, Ordering::AcqRel) {
            self.clock.restart();
        }
        // This cycle's first frame against the time now (never earlier than the cycle began):
        // the frame clock fits its line through the earliest of these, so a cycle that woke
        // late does not move the map.
        self.clock.observe(cycle, c.time());
        let c = &self.counters;
        c.cycles.fetch_add(1, Ordering::Relaxed);
        let mut w = self.port.writer(ps);
        let mut last_offset = 0u32;
        let mut written = 0u32;
        while let Some(r) = self.rx.try_peek() {
            let rel = placement(&self.clock, r.at, cycle, n).unwrap_or(0);
            if rel >= i64::from(n) {
                break; // due in a later cycle
            }
            let late = if rel < 0 { rel.unsigned_abs() } else { 0 };
            let offset = (rel.max(0) as u32).max(last_offset);
            let len = usize::from(r.len).min(MAX_MESSAGE);
            match w.write(&RawMidi { time: offset, bytes: &r.bytes[..len] }) {
                Ok(()) => {
                    last_offset = offset;
                    written += 1;
                    c.written.fetch_add(1, Ordering::Relaxed);
                    if late > 0 {
                        c.late.fetch_add(1, Ordering::Relaxed);
                        c.late_frames_sum.fetch_add(late, Ordering::Relaxed);
                        c.late_frames_max.fetch_max(late.min(u64::from(u32::MAX)) as u32, Ordering::Relaxed);
                    }
                }
                // This cycle's buffer is full (after a stall, the messages of many cycles fall
                // due at once): the rest waits for the next cycle, late but in order.
                Err(_) if written > 0 => break,
                // Not even an empty buffer takes it: it never will.
                Err(_) => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            c.last_due.store(r.at, Ordering::Release);
            self.rx.try_pop();
        }
        Control::Continue
    }
}

struct Notifications {
    down: Arc<AtomicBool>,
    counters: Arc<JackCounters>,
}

impl jack::NotificationHandler for Notifications {
    unsafe fn shutdown(&mut self, _status: ClientStatus, _reason: &str) {
        self.down.store(true, Ordering::Release);
    }

    /// On JACK's notification thread: atomics only.
    fn xrun(&mut self, _: &Client) -> Control {
        self.counters.xruns.fetch_add(1, Ordering::Relaxed);
        self.counters.xrun_pending.store(true, Ordering::Release);
        Control::Continue
    }
}

/// A JACK MIDI output port fed by the engine through a lock-free ring.
pub struct JackOutput {
    spec: String,
    client: Option<AsyncClient<Notifications, Process>>,
    tx: HeapProd<Record>,
    counters: Arc<JackCounters>,
    down: Arc<AtomicBool>,
    port_name: String,
    connected: Vec<String>,
    sample_rate: u32,
    period: u32,
}

/// Why the JACK output cannot be opened or connected, phrased for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JackError {
    /// libjack could not be loaded.
    NotInstalled(String),
    /// No JACK server runs (`server`: the name from `JACK_DEFAULT_SERVER`).
    NoServer {
        server: Option<String>,
    },
    /// The MIDI port could not be created.
    CreatePort(String),
    /// The port's name could not be read.
    PortName(String),
    Activate(String),
    /// No MIDI port of this direction (`input`, `output`) matches (the ports there are).
    NoPort {
        wanted: String,
        what: &'static str,
        ports: Vec<String>,
    },
    /// Several match.
    AmbiguousPort {
        wanted: String,
        what: &'static str,
        matches: Vec<String>,
    },
    Connect {
        port: String,
        dest: String,
        error: String,
    },
    /// The server took the connection but did not start routing through it within
    /// [`CONNECT_WAIT`].
    NotRouted {
        port: String,
        dest: String,
    },
}

impl fmt::Display for JackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JackError::NotInstalled(e) => write!(
                f,
                "JACK is not installed here (libjack could not be loaded: {e}); install JACK (Debian/Ubuntu: apt install jackd2; \
                 macOS: brew install jack; Windows: the JACK2 installer from jackaudio.org) or choose another --to"
            ),
            JackError::NoServer { server } => write!(
                f,
                "no JACK server is running{}; start one (e.g. `jackd -d alsa`, or with QjackCtl) or choose another --to",
                server
                    .as_ref()
                    .map(|s| format!(" (looked for server \"{s}\" from JACK_DEFAULT_SERVER)"))
                    .unwrap_or_default()
            ),
            JackError::CreatePort(e) => write!(f, "JACK: cannot create a MIDI port: {e}"),
            JackError::PortName(e) => write!(f, "JACK: {e}"),
            JackError::Activate(e) => write!(f, "JACK: cannot activate the client: {e}"),
            JackError::NoPort { wanted, what, ports } => write!(
                f,
                "no JACK MIDI {what} port matches \"{wanted}\" (MIDI {what}s: {})",
                if ports.is_empty() { "none".to_string() } else { ports.join(", ") }
            ),
            JackError::AmbiguousPort { wanted, what, matches } => write!(
                f,
                "\"{wanted}\" matches several JACK MIDI {what}s ({}); give more of the name",
                matches.join(", ")
            ),
            JackError::Connect { port, dest, error } => write!(f, "JACK: cannot connect {port} to {dest}: {error}"),
            JackError::NotRouted { port, dest } => write!(
                f,
                "JACK: connected {port} to {dest}, but the server did not start passing messages between them within \
                 {} s (it is overloaded or stuck); close other JACK programs or restart the JACK server, and try again",
                CONNECT_WAIT.as_secs()
            ),
        }
    }
}

impl std::error::Error for JackError {}

fn server_missing() -> JackError {
    JackError::NoServer { server: std::env::var("JACK_DEFAULT_SERVER").ok().filter(|s| !s.is_empty()) }
}

/// Loads libjack and silences its console messages (`organ` reports errors itself).
///
/// # Errors
/// libjack is not installed.
fn load_library() -> Result<(), JackError> {
    jack::jack_sys::library().map_err(|e| JackError::NotInstalled(e.to_string()))?;
    jack::set_logger(jack::LoggerType::None);
    Ok(())
}

/// Whether a JACK server is running (for `--to grandorgue`). Opens and closes a client.
///
/// # Errors
/// libjack is not installed (the caller then chooses another loopback).
pub fn server_running() -> Result<bool, JackError> {
    load_library()?;
    Ok(Client::new("organ-probe", ClientOptions::NO_START_SERVER).is_ok())
}

/// MIDI input ports of other clients, by full name.
fn midi_inputs(client: &Client) -> Vec<String> {
    client.ports(None, Some("midi"), PortFlags::IS_INPUT)
}

/// The MIDI input port `wanted` names: its full name, else the only one containing it
/// (case-insensitive).
///
/// # Errors
/// None or several match; the message lists the MIDI inputs that exist.
pub fn find_input(inputs: &[String], wanted: &str) -> Result<String, JackError> {
    find_port(inputs, wanted, "input")
}

/// The port `wanted` names among `ports` (JACK MIDI ports of one direction, `what` = `input` or
/// `output`): its full name, else the only one containing it (case-insensitive).
///
/// # Errors
/// None or several match; the message lists the ports that exist.
pub fn find_port(ports: &[String], wanted: &str, what: &'static str) -> Result<String, JackError> {
    if let Some(p) = ports.iter().find(|p| p.as_str() == wanted) {
        return Ok(p.clone());
    }
    let w = wanted.to_lowercase();
    let hits: Vec<&String> = ports.iter().filter(|p| p.to_lowercase().contains(&w)).collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(JackError::NoPort { wanted: wanted.to_string(), what, ports: ports.to_vec() }),
        _ => Err(JackError::AmbiguousPort {
            wanted: wanted.to_string(),
            what,
            matches: hits.iter().map(|s| s.to_string()).collect(),
        }),
    }
}

/// Opens the JACK output (`--to jack`): creates the port `organ:out`; with a `target` (`--to
/// jack:PORT`) also connects it to the MIDI input port named (full name, or a unique
/// case-insensitive part of it). The output is named `jack` or `jack:PORT`.
///
/// # Errors
/// libjack missing, no server, the port not found (listing those that exist), or a JACK failure.
pub fn open(target: Option<&str>) -> Result<JackOutput, JackError> {
    let name = target.map_or_else(|| "jack".to_string(), |t| format!("jack:{t}"));
    let mut out = open_port(&name)?;
    if let Some(t) = target {
        out.connect(t)?;
    }
    Ok(out)
}

/// Creates and activates the client and its port, unconnected; the output is called `name`.
///
/// # Errors
/// As [`open`].
pub fn open_port(name: &str) -> Result<JackOutput, JackError> {
    load_library()?;
    let (client, _) = Client::new(CLIENT_NAME, ClientOptions::NO_START_SERVER).map_err(|e| match e {
        jack::Error::LibraryError(e) => JackError::NotInstalled(e),
        _ => server_missing(),
    })?;
    let port = client.register_port("out", MidiOut::default()).map_err(|e| JackError::CreatePort(e.to_string()))?;
    let port_name = port.name().map_err(|e| JackError::PortName(e.to_string()))?;
    let (sample_rate, period) = (client.sample_rate(), client.buffer_size());
    let (tx, rx) = HeapRb::<Record>::new(RING_RECORDS).split();
    let counters = Arc::new(JackCounters::default());
    let down = Arc::new(AtomicBool::new(false));
    let clock = FrameClock::new(sample_rate, period);
    let process = Process { port, rx, counters: Arc::clone(&counters), clock };
    let active = client
        .activate_async(Notifications { down: Arc::clone(&down), counters: Arc::clone(&counters) }, process)
        .map_err(|e| JackError::Activate(e.to_string()))?;
    Ok(JackOutput {
        spec: name.to_string(),
        client: Some(active),
        tx,
        counters,
        down,
        port_name,
        connected: Vec::new(),
        sample_rate,
        period,
    })
}

impl JackOutput {
    /// The client. `finish` closes it; after that only `stats` and the names are meaningful.
    fn client(&self) -> &Client {
        self.client.as_ref().expect("the JACK output is used after finish()").as_client()
    }

    /// Our port's full name, e.g. `organ:out`.
    pub fn port_name(&self) -> &str {
        &self.port_name
    }

    /// The input ports this output was connected to.
    pub fn connected(&self) -> &[String] {
        &self.connected
    }

    /// MIDI input ports that exist on the server now.
    pub fn midi_inputs(&self) -> Vec<String> {
        midi_inputs(self.client())
    }

    /// Connects our port to a MIDI input (see [`find_input`]); returns its full name.
    ///
    /// # Errors
    /// Not found, or JACK refuses.
    pub fn connect(&mut self, wanted: &str) -> Result<String, JackError> {
        let inputs: Vec<String> = self.midi_inputs().into_iter().filter(|p| *p != self.port_name).collect();
        let dest = find_input(&inputs, wanted)?;
        match self.client().connect_ports_by_name(&self.port_name, &dest) {
            Ok(()) | Err(jack::Error::PortAlreadyConnected(..)) => {}
            Err(e) => {
                return Err(JackError::Connect { port: self.port_name.clone(), dest, error: e.to_string() });
            }
        }
        if !wait_routed(self.client(), &self.port_name, &dest, CONNECT_WAIT) {
            return Err(JackError::NotRouted { port: self.port_name.clone(), dest });
        }
        self.connected.push(dest.clone());
        Ok(dest)
    }

    /// Counters so far (atomics; cheap).
    pub fn stats(&self) -> JackStats {
        self.stats_handle().stats()
    }

    /// The counters, readable after the output has been handed to the engine (and finished).
    pub fn stats_handle(&self) -> JackStatsHandle {
        JackStatsHandle { counters: Arc::clone(&self.counters), sample_rate: self.sample_rate, period: self.period }
    }

    /// JACK's clock now, in microseconds.
    pub fn jack_time(&self) -> u64 {
        self.client().time()
    }

    /// Waits until every queued message has been written to the port (at most `timeout`).
    /// Returns whether the queue drained.
    pub fn drain(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.tx.is_empty() || self.down.load(Ordering::Acquire) {
                // The last message is written in the cycle after its time; let that cycle run.
                let period_us = self.stats().frames_to_us(u64::from(self.period));
                std::thread::sleep(Duration::from_micros((2.0 * period_us) as u64 + 1000));
                return self.tx.is_empty();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }
}

/// The longest closing a JACK client may hold up the end of a performance. `jack_deactivate`
/// waits for the server's answer, and a server that went on cycling while this process was
/// stopped (Ctrl-Z, SIGSTOP) answers only once it has caught up with what it queued for the
/// client meanwhile: 12 s after 20 s stopped, measured on a dummy server. The messages have
/// been delivered by then ([`JackOutput::drain`]); a client not closed in time is left to the end
/// of the process, when the server drops it.
pub const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Deactivates and closes `client` on a thread of its own, waiting at most `limit`. Returns
/// whether it closed in time.
pub(crate) fn close_within<N: Send + 'static, P: Send + 'static>(client: AsyncClient<N, P>, limit: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    // If the thread cannot start, the closure (and the client) is dropped here: closed inline.
    let started = std::thread::Builder::new().name("organ-jack-close".into()).spawn(move || {
        drop(client.deactivate());
        let _ = tx.send(());
    });
    started.is_ok() && rx.recv_timeout(limit).is_ok()
}

/// The longest a new connection may take to carry messages (see [`wait_routed`]).
pub const CONNECT_WAIT: Duration = Duration::from_secs(3);

/// Waits until the server passes messages from `src` to `dst` (full port names), at most
/// `limit`; returns whether it does.
///
/// `jack_connect` returns once the server has taken the connection into its next graph; the
/// graph it runs switches to that one at the start of a later cycle, and on a busy server (a
/// client that has not finished its cycle) only after several. Whatever is written to our port
/// before then goes nowhere: the first messages of a performance, the cancel that sets the
/// registration, were lost that way. A client reads the running graph, so we wait until it
/// shows the connection.
pub(crate) fn wait_routed(client: &Client, src: &str, dst: &str, limit: Duration) -> bool {
    let Some(port) = client.port_by_name(src) else { return false };
    let end = Instant::now() + limit;
    loop {
        if port.is_connected_to(dst).unwrap_or(false) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether every message `t` can send fits one JACK record ([`MAX_MESSAGE`] bytes): checked
/// before playback, so that a long SysEx in the organ definition is refused up front instead of
/// stopping the performance when it falls due.
///
/// # Errors
/// A message (necessarily a SysEx: the others are at most 3 bytes) is longer.
pub fn check_fits(t: &crate::plan::Timeline) -> Result<(), OutputError> {
    match t.long.iter().map(|m| m.len()).max() {
        Some(n) if n > MAX_MESSAGE => Err(OutputError {
            kind: OutputErrorKind::Backend,
            detail: "the organ definition has a SysEx longer than 64 bytes, the most the JACK output carries",
        }),
        _ => Ok(()),
    }
}

impl Output for JackOutput {
    fn name(&self) -> &str {
        &self.spec
    }

    fn prepare(&mut self, t: &Arc<crate::plan::Timeline>) -> Result<(), OutputError> {
        check_fits(t)
    }

    /// # Real-time safety
    /// One clock read (`jack_get_time`) and one push into a preallocated lock-free ring.
    fn send(&mut self, bytes: &[u8], at: Stamp) -> Result<(), OutputError> {
        if self.down.load(Ordering::Acquire) {
            return Err(SERVER_GONE);
        }
        if bytes.len() > MAX_MESSAGE {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(OutputError {
                kind: OutputErrorKind::Backend,
                detail: "message longer than 64 bytes for JACK",
            });
        }
        let Some(client) = &self.client else {
            return Err(OutputError { kind: OutputErrorKind::Disconnected, detail: "the JACK output is closed" });
        };
        let engine_late = at.now.0.saturating_sub(at.due.0);
        let mut r = Record {
            at: client.as_client().time().saturating_sub(engine_late),
            len: bytes.len() as u8,
            bytes: [0; MAX_MESSAGE],
        };
        r.bytes[..bytes.len()].copy_from_slice(bytes);
        self.tx.try_push(r).map_err(|_| {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            OutputError { kind: OutputErrorKind::Overflow, detail: "JACK output queue full" }
        })
    }

    /// The JACK server shut down: nothing brings this client back (a server started again is
    /// a new one, with no client of ours), so the output has failed ([`Link::Gone`]) and is
    /// opened afresh once the server is back (`o` in `organ service`).
    fn link(&self) -> Link {
        if self.down.load(Ordering::Acquire) { Link::Gone(SERVER_GONE) } else { Link::Up }
    }

    /// The ring is empty and the cycle that wrote its last message is over (the message is due
    /// one period after its time, and written in the cycle after that).
    fn delivered(&self) -> bool {
        let Some(client) = &self.client else { return true };
        if self.down.load(Ordering::Acquire) {
            return true;
        }
        let period_us = self.stats().frames_to_us(u64::from(self.period)) as u64;
        self.tx.is_empty() && client.as_client().time() > self.counters.last_due.load(Ordering::Acquire) + 2 * period_us
    }

    /// Waits for the queued messages to reach the port, then closes the client. After the
    /// server shut down there is nothing to wait for, and nothing more to say: the output failed
    /// ([`Link::Gone`]), and that failure, not what was still queued, is what the user is told
    /// (with the keys it may have left sounding).
    fn finish(&mut self) -> Result<(), FinishError> {
        let drained = self.drain(Duration::from_secs(2));
        if let Some(c) = self.client.take() {
            close_within(c, CLOSE_WAIT);
        }
        if self.down.load(Ordering::Acquire) {
            return Ok(());
        }
        let s = self.stats();
        if !drained {
            return Err(FinishError::Undelivered { output: "JACK".into(), queued: self.tx.occupied_len() });
        }
        if s.dropped > 0 {
            return Err(FinishError::Dropped { output: "JACK".into(), count: s.dropped });
        }
        Ok(())
    }

    /// The xruns, if JACK skipped cycles while playing (see [`xrun_report`]).
    fn report(&self) -> Option<String> {
        xrun_report(&self.spec, &self.stats())
    }

    /// Its counters ([`stats_line`]).
    fn stats(&self) -> Option<String> {
        Some(stats_line(&self.spec, &self.stats()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ports_by_part_of_the_name() {
        let inputs = vec!["GrandOrgue:GrandOrgue Input".to_string(), "probe:midi_in".to_string()];
        assert_eq!(find_input(&inputs, "grandorgue").unwrap(), "GrandOrgue:GrandOrgue Input");
        assert_eq!(find_input(&inputs, "probe:midi_in").unwrap(), "probe:midi_in");
        let e = find_input(&inputs, "Hauptwerk").unwrap_err().to_string();
        assert!(e.contains("GrandOrgue:GrandOrgue Input") && e.contains("probe:midi_in"), "{e}");
        assert!(find_input(&inputs, "in").unwrap_err().to_string().contains("several"));
    }

    /// The shipped organ with a General Cancel of `n` bytes, and the plan of the shipped score.
    fn plan_with_cancel_of(n: usize) -> crate::plan::Timeline {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("organs/st-marys.toml")).unwrap();
        let sysex = format!("F0 {}F7", "01 ".repeat(n - 2));
        let text = text.replace(
            "# message = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }",
            &format!("message = {{ sysex = \"{sysex}\" }}"),
        );
        let organ = crate::organ::Organ::from_toml(&text, "long.toml").unwrap();
        let score = crate::score::load_file(&root.join("scores/bwv643.mid")).unwrap();
        crate::plan::plan(&score, &organ, None, &crate::plan::PlanOptions::default()).unwrap()
    }

    #[test]
    fn a_sysex_too_long_for_jack_is_refused_before_playing() {
        assert_eq!(check_fits(&plan_with_cancel_of(MAX_MESSAGE)), Ok(()));
        let e = check_fits(&plan_with_cancel_of(MAX_MESSAGE + 1)).unwrap_err();
        assert!(e.to_string().contains("a SysEx longer than 64 bytes"), "{e}");
    }

    #[test]
    fn xruns_are_reported_with_the_fix() {
        let mut s = JackStats { written: 600, sample_rate: 48_000, period: 1024, ..JackStats::default() };
        assert_eq!(xrun_report("jack", &s), None, "no xrun, nothing to say");
        s.xruns = 3;
        s.late = 29;
        s.late_frames_max = 7_200;
        let r = xrun_report("jack:GrandOrgue", &s).unwrap();
        assert!(
            r.starts_with(
                "jack:GrandOrgue: JACK skipped cycles (3 xruns); 29 message(s) were written late (worst 150.0 ms)"
            ),
            "{r}"
        );
        assert!(r.contains("jackd -R") && r.contains("larger period") && r.contains("organ panic"), "{r}");
        s.xruns = 1;
        assert!(xrun_report("jack", &s).unwrap().contains("(1 xrun);"));
    }

    #[test]
    fn the_stats_line_gives_the_counters_in_milliseconds() {
        let s = JackStats {
            written: 600,
            late: 4,
            late_frames_sum: 4 * 480,
            late_frames_max: 960,
            dropped: 1,
            cycles: 150,
            xruns: 1,
            sample_rate: 48_000,
            period: 1024,
        };
        assert_eq!(
            stats_line("jack:GrandOrgue", &s),
            "jack:GrandOrgue: JACK: 600 messages written, 4 late (mean 10.00 ms, worst 20.00 ms), 1 dropped; 1 xrun \
             in 150 cycles; period 1024 frames at 48000 Hz (21.3 ms of latency)"
        );
        let idle = JackStats { sample_rate: 48_000, period: 256, ..JackStats::default() };
        assert!(
            stats_line("jack", &idle).contains("0 late (mean 0.00 ms, worst 0.00 ms), 0 dropped; 0 xruns in 0 cycles")
        );
    }

    #[test]
    fn bad_specs_are_rejected_before_jack_is_touched() {
        // `--to` is parsed before anything is opened (crate::output::OutputSpec).
        let open = |s: &str| crate::output::OutputSpec::parse(s).map_err(|e| e.to_string());
        assert!(open("jack:").err().unwrap().contains("write `jack` or `jack:PORT`"));
        // (jack::open took the spec itself before; "jackd" reached it only there. A kind that
        // is `jack` in other letters still reaches the jack form.)
        assert!(open("JACK").err().unwrap().contains("write `jack`"));
    }
}
