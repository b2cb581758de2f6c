//! `organ selftest --to OUTPUT`: before a service, measures what can be measured on the real
//! output path and says in plain words whether it is fit, and what to change when it is not.
//!
//! What it measures:
//! - **the engine** on this machine: a short silent run of the real engine (real clock,
//!   real-time priority when allowed) on a dense generated piece, sent to `null` only;
//! - **the burst** the organ gets at the start of a piece (the cancel, the fullest preset, then
//!   a full chord, as the planner lays it out with the organ's `stop_lead_ms` and
//!   `stop_pace_ms`), computed for a 5-pin MIDI cable at 320 µs a byte: how long it spends on
//!   the wire and whether a note waits behind stop messages;
//! - **the output itself**: for a MIDI port, how long each send call takes under that burst;
//!   for JACK, where each message lands (frames) and the period latency; for Bluetooth LE MIDI,
//!   the packet size, the write times of a timestamped burst, and the connection interval
//!   where Linux tells it.
//!
//! What it sends: never a note-on, never a stop message. The only messages that reach an
//! output are note-offs (`8n kk 00`) on the organ's keyboard channels for keys that are not
//! down, which strike nothing: one for each message of the burst (and for JACK a steady stream
//! of them); a file output is not opened at all. See [`PROBE`].
//!
//! Runs on the control thread; the engine run and the probes use their own threads as playing
//! does.

#[cfg(feature = "ble")]
mod ble;
#[cfg(feature = "jack")]
pub mod jack;
mod probe;

use crate::text::shown;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::app::{Error, Status};
use crate::engine::{self, Config, End, SystemClock};
use crate::midi::Micros;
use crate::organ::{ConfigError, Organ};
use crate::output::Output;
use crate::output::record::NullOutput;
use crate::output::{OpenError, OutputSpec};

pub use probe::{Burst, Probe, Wire, din_wire, probe_timeline};

/// What `organ selftest` sends, for `--help`, the README and the report.
pub const PROBE: &str = "only note-offs (8n kk 00) on the organ's keyboard channels, for keys that are not down: \
                         they strike nothing; never a note-on or a stop message";

/// Timing variation above about 1-1.5 ms is heard: the engine's p99 lateness, a send call, a
/// note waiting behind stop messages and a JACK placement error must stay below this.
pub const HEARD: Micros = Micros(1_000);
/// A 5-pin MIDI cable carries one byte every 320 µs (31,250 baud, 10 bits a byte).
pub const DIN_BYTE: Micros = Micros(320);
/// A chord whose notes reach the organ spread over more than this starts to sound rolled.
pub const CHORD_SPREAD: Micros = Micros(20_000);
/// The slowest Bluetooth LE MIDI connection interval in common use; a write slower than this
/// holds up the messages behind it.
pub const BLE_INTERVAL: Micros = Micros(15_000);

/// The plain arguments of `organ selftest` (the command line's, or anyone's).
#[derive(Debug, Clone)]
pub struct SelftestArgs {
    /// Outputs, as `--to` takes them; empty: the organ file's `output`.
    pub to: Vec<String>,
    /// The organ (name or file); `None`: the built-in St Mary's.
    pub organ: Option<String>,
    /// How long the engine's silent run lasts.
    pub seconds: f64,
}

/// Why the self-test could not run (as opposed to a path found unfit, which is its result).
#[derive(Debug)]
pub enum SelftestError {
    Organ(ConfigError),
    /// The generated probe piece could not be read or planned on this organ.
    Probe(String),
    /// No output, a form that is not one, or one that cannot be opened (the message names it).
    Open(OpenError),
    /// An output failed while it was probed.
    Output {
        spec: String,
        detail: String,
    },
    /// A thread could not be started.
    Thread(std::io::Error),
}

impl fmt::Display for SelftestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelftestError::Organ(e) => e.fmt(f),
            SelftestError::Probe(e) => write!(f, "selftest: the probe piece cannot be planned on this organ: {e}"),
            SelftestError::Open(e) => e.fmt(f),
            SelftestError::Output { spec, detail } => write!(f, "{spec}: {detail}"),
            SelftestError::Thread(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for SelftestError {}

impl<E: Into<OpenError>> From<E> for SelftestError {
    fn from(e: E) -> Self {
        SelftestError::Open(e.into())
    }
}

impl From<SelftestError> for Error {
    fn from(e: SelftestError) -> Self {
        match e {
            SelftestError::Organ(c) => Error::Config(c),
            SelftestError::Open(o) => Error::Open(Box::new(o)),
            other => Error::Other(other.to_string()),
        }
    }
}

/// One measured line of the report and whether it is within its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// `engine`, `wire`, `send`, `jack`, `ble`, …
    pub what: &'static str,
    pub text: String,
    pub ok: bool,
    /// What to change when it is not.
    pub advice: Option<String>,
    /// What the verdict line quotes from it when all is well (`engine p99 6 µs`).
    pub summary: Option<String>,
}

impl Check {
    fn new(what: &'static str, ok: bool, text: String) -> Check {
        Check { what, text, ok, advice: None, summary: None }
    }
    fn advice(mut self, a: impl Into<String>) -> Check {
        self.advice = Some(a.into());
        self
    }
    fn summary(mut self, s: impl Into<String>) -> Check {
        self.summary = Some(s.into());
        self
    }
}

pub use crate::text::short;

/// Plays `t` to `outputs` on the real engine (its own thread, real-time priority when allowed,
/// the system clock), starting 20 ms from now; the outputs come back unfinished in the report.
///
/// # Errors
/// The engine thread cannot start.
pub fn play(outputs: Vec<Box<dyn Output>>, t: crate::plan::Timeline) -> Result<engine::Report, SelftestError> {
    let config = Config { start_delay: Micros(20_000), ..Config::default() };
    let (eng, handle) = engine::new(Arc::new(t), outputs, SystemClock::new(), config);
    Ok(engine::spawn(eng, handle).map_err(SelftestError::Thread)?.join())
}

/// The engine's lateness on this machine: the real engine, silent (to `null` only).
///
/// # Errors
/// The probe piece cannot be planned; the engine thread cannot start.
pub fn engine_check(organ: &Organ, seconds: f64) -> Result<Check, SelftestError> {
    let chords = (seconds.clamp(0.5, 60.0) * 1e6 / probe::DENSE_STEP_US) as usize;
    let report = play(vec![Box::new(NullOutput)], probe::dense_plan(organ, chords.max(4))?)?;
    let s = &report.stats;
    let (p99, max) = (Micros(s.percentile(99.0)), Micros(s.max()));
    let ok = report.end == End::Finished && p99 <= HEARD;
    let cpu = report.cost.cpu_per_minute().map(|c| format!("; {c:.1} s CPU per minute of music")).unwrap_or_default();
    // Misses the waiting could not help: the machine took the CPU from a running spin.
    let taken = report
        .wake
        .map(|w| w.deadlines)
        .filter(|d| d.taken > 0)
        .map(|d| {
            format!(
                "; the CPU was taken from the engine at {} of {} deadlines (worst {})",
                d.taken,
                d.reached,
                short(d.taken_worst)
            )
        })
        .unwrap_or_default();
    let text = format!(
        "p99 {}, max {} over {} messages in {:.1} s (silent run; {}{}{cpu}{taken})",
        short(p99),
        short(max),
        s.count(),
        report.cost.wall.0 as f64 / 1e6,
        if report.realtime { "real-time priority" } else { "normal priority: real-time refused" },
        match report.awake {
            crate::engine::Awake::Held => "; CPU kept out of deep idle states",
            _ => "; deep idle states allowed",
        },
    );
    let mut c = Check::new("engine", ok, text).summary(format!("engine p99 {}", short(p99)));
    if !ok {
        c = c.advice(if report.realtime && report.awake != crate::engine::Awake::Held {
            "let organ keep the CPU out of deep idle states (make /dev/cpu_dma_latency writable: README, \"The idle-state request\") and close other programs"
        } else if report.realtime {
            "close other programs (a busy or virtual machine delays the engine)"
        } else {
            "allow real-time priority (`ulimit -r 40`, or rtprio in /etc/security/limits.conf) and close other programs"
        });
    }
    Ok(c)
}

/// What the burst spends on a 5-pin MIDI cable.
pub fn wire_check(b: &Burst, organ: &Organ) -> Check {
    let w = din_wire(b);
    let waits = w.chord_wait > HEARD;
    let spread = w.chord_spread > CHORD_SPREAD;
    let text = format!(
        "{} messages, {} bytes: {} on a 5-pin MIDI cable at 320 µs a byte, {} of it back to back; the chord's \
         first note waits {} behind stop messages, its last arrives {} after its time",
        b.events.len(),
        w.bytes,
        short(w.on_wire),
        short(w.busiest),
        short(w.chord_wait),
        short(w.chord_spread),
    );
    let mut c =
        Check::new("wire", !waits && !spread, text).summary(format!("worst burst {} on the wire", short(w.busiest)));
    if waits {
        c = c.advice(format!(
            "stop messages are still on the wire when the chord is due: raise stop_lead_ms in {} (to {} ms or more) or \
             draw fewer stops per change",
            organ.source,
            (organ.stop_lead.0 + w.chord_wait.0).div_ceil(1000) + 5
        ));
    } else if spread {
        c = c.advice("a full chord takes too long on one cable: split the divisions over two MIDI ports/cables");
    }
    c
}

/// How long each send call takes for a burst sent at once (a MIDI port, a GrandOrgue loopback).
pub fn send_check(out: &mut dyn Output, probes: &[Probe]) -> Check {
    let mut times: Vec<u64> = Vec::with_capacity(probes.len());
    let mut failed = None;
    let clock = SystemClock::new();
    for p in probes {
        let began = Instant::now();
        let now = crate::engine::Clock::now(&clock);
        let r = out.send(&p.bytes, crate::output::Stamp { plan: p.at, due: now, now });
        times.push(began.elapsed().as_micros() as u64);
        if let Err(e) = r {
            failed = Some(e);
            break;
        }
    }
    times.sort_unstable();
    let pct = |q: f64| Micros(times.get(((times.len().max(1) - 1) as f64 * q) as usize).copied().unwrap_or(0));
    if let Some(e) = failed {
        return Check::new("send", false, format!("{}: the send failed: {e}", out.name()))
            .advice("check the cable and the interface, then run the self-test again");
    }
    let ok = pct(0.99) <= HEARD;
    let text = format!(
        "{} note-offs sent at once to {}: each call p50 {}, p99 {}, max {}",
        probes.len(),
        out.name(),
        short(pct(0.5)),
        short(pct(0.99)),
        short(pct(1.0))
    );
    let c = Check::new("send", ok, text);
    if ok { c } else { c.advice("the port blocks the sender: use another USB port or interface") }
}

/// The outputs to test: `--to`, else the organ's default.
fn specs(args: &SelftestArgs, organ: &Organ) -> Result<Vec<OutputSpec>, SelftestError> {
    Ok(crate::session::output_specs(&args.to, organ.output.as_deref(), &organ.source)?)
}

/// An output opened for the self-test (a file deliberately not).
enum Target {
    File(String),
    #[cfg(feature = "jack")]
    Jack(crate::output::jack::JackOutput),
    #[cfg(feature = "ble")]
    Ble(crate::output::ble::BleOutput),
    /// A MIDI port, GrandOrgue's loopback, `null`: opened as `organ play` opens them.
    Other {
        null: bool,
        outputs: Vec<Box<dyn Output>>,
    },
}

/// Opens the output `spec` names, before anything is measured (so a typo fails at once).
fn open_target(spec: &OutputSpec, organ: &Organ) -> Result<Target, SelftestError> {
    match spec {
        OutputSpec::File(_) => Ok(Target::File(spec.to_string())),
        #[cfg(feature = "jack")]
        OutputSpec::Jack(target) => Ok(Target::Jack(crate::output::jack::open(target.as_deref())?)),
        #[cfg(feature = "ble")]
        OutputSpec::Ble(name) => {
            Ok(Target::Ble(crate::output::ble::open(name, organ.on_disconnect, crate::output::BLE_CONNECT_TIMEOUT)?))
        }
        _ => {
            let mut notes = Vec::new();
            let output = spec.open(organ.on_disconnect, &mut notes)?;
            Ok(Target::Other { null: *spec == OutputSpec::Null, outputs: vec![output] })
        }
    }
}

/// The checks of one opened output (beyond the engine).
fn target_checks(target: Target, organ: &Organ, burst: &Burst) -> Result<Vec<Check>, SelftestError> {
    let probes = probe::probes(burst);
    let mut checks = Vec::new();
    match target {
        Target::File(spec) => checks.push(Check::new(
            "file",
            true,
            format!("{spec}: a file records the engine's send times; not opened, nothing written"),
        )),
        #[cfg(feature = "jack")]
        Target::Jack(out) => {
            checks.push(wire_check(burst, organ));
            checks.extend(jack::checks(out, organ, &probes)?);
        }
        #[cfg(feature = "ble")]
        Target::Ble(out) => {
            checks.push(wire_check(burst, organ));
            checks.extend(ble::checks(out, organ, &probes)?);
        }
        Target::Other { null, mut outputs } => {
            if !null {
                checks.push(wire_check(burst, organ));
            }
            for o in &mut outputs {
                checks.push(send_check(o.as_mut(), &probes));
                if let Err(e) = o.finish() {
                    checks.push(Check::new("send", false, format!("closing {}: {e}", o.name())));
                }
            }
        }
    }
    Ok(checks)
}

/// The verdict: `fit for a service: …` or `not fit for a service: …; change: …`.
pub fn verdict(checks: &[Check]) -> (bool, String) {
    let bad: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    if bad.is_empty() {
        let parts: Vec<&str> = checks.iter().filter_map(|c| c.summary.as_deref()).collect();
        return (true, format!("fit for a service: {}", parts.join(", ")));
    }
    let what: Vec<&str> = bad.iter().map(|c| c.what).collect();
    let mut advice: Vec<&str> = bad.iter().filter_map(|c| c.advice.as_deref()).collect();
    advice.dedup();
    let mut line = format!("not fit for a service ({})", what.join(", "));
    if !advice.is_empty() {
        line.push_str(&format!("; change: {}", advice.join("; ")));
    }
    (false, line)
}

/// `organ selftest`: prints the report and the verdict; exit status 0 when fit, 1 when not.
///
/// # Errors
/// The organ cannot be loaded; no output; an output cannot be opened.
pub fn cmd_selftest(args: &SelftestArgs) -> Result<Status, Error> {
    crate::app::check_seconds(args.seconds, 0.5, 60.0)?;
    let organ = Organ::find(args.organ.as_deref().unwrap_or("st-marys")).map_err(SelftestError::Organ)?;
    let specs = specs(args, &organ)?;
    let burst = probe::burst(&organ)?;
    let targets = specs.iter().map(|s| open_target(s, &organ)).collect::<Result<Vec<Target>, _>>()?;
    let names: Vec<String> = specs.iter().map(OutputSpec::to_string).collect();
    // Names come from files and devices: shown escaped.
    out!("{}", shown(&format!("organ selftest on {} → {}", organ.name, names.join(", "))));
    out!("sends {PROBE}");
    out!("burst: {}", shown(&burst.describe(&organ)));
    let mut checks = vec![engine_check(&organ, args.seconds)?];
    print_check(&checks[0]);
    for t in targets {
        for c in target_checks(t, &organ, &burst)? {
            print_check(&c);
            checks.push(c);
        }
    }
    let (fit, line) = verdict(&checks);
    out!("{}", shown(&line));
    Ok(if fit { 0 } else { 1 })
}

fn print_check(c: &Check) {
    out!("  {:<7} {}  {}", c.what, shown(&c.text), if c.ok { "ok" } else { "NOT OK" });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(what: &'static str, ok: bool) -> Check {
        Check::new(what, ok, String::new())
    }

    #[test]
    fn the_verdict_quotes_the_figures_when_fit_and_the_changes_when_not() {
        let fit = [check("engine", true).summary("engine p99 6 µs"), check("wire", true).summary("worst burst 23 ms")];
        assert_eq!(verdict(&fit), (true, "fit for a service: engine p99 6 µs, worst burst 23 ms".into()));
        let unfit = [
            check("engine", true).summary("engine p99 6 µs"),
            check("wire", false).advice("raise stop_lead_ms"),
            check("send", false).advice("use another port"),
        ];
        assert_eq!(
            verdict(&unfit),
            (false, "not fit for a service (wire, send); change: raise stop_lead_ms; use another port".into())
        );
    }

    #[test]
    fn short_figures() {
        assert_eq!(short(Micros(6)), "6 µs");
        assert_eq!(short(Micros(23_040)), "23.04 ms");
    }

    #[test]
    fn a_port_probe_sends_only_note_offs_and_times_each_call() {
        let organ = Organ::find("st-marys").unwrap();
        let burst = probe::burst(&organ).unwrap();
        let probes = probe::probes(&burst);
        let (mut m, h) = crate::output::record::MemoryOutput::with_capacity(probes.len());
        let c = send_check(&mut m, &probes);
        assert!(c.ok, "{c:?}");
        assert!(c.text.starts_with(&format!("{} note-offs sent at once to memory: each call p50 ", probes.len())));
        m.finish().unwrap();
        let sent = h.lock().unwrap().clone();
        assert_eq!(sent.len(), burst.events.len());
        assert!(sent.iter().all(|(_, b)| b.len() == 3 && b[0] & 0xF0 == 0x80 && b[2] == 0), "{sent:?}");
    }

    #[test]
    fn wire_advice_names_the_lead_to_set() {
        let mut organ = Organ::find("st-marys").unwrap();
        organ.stop_pace = Micros::ZERO;
        organ.stop_lead = Micros(10_000);
        let burst = probe::burst(&organ).unwrap();
        let c = wire_check(&burst, &organ);
        assert!(!c.ok, "{c:?}");
        let a = c.advice.unwrap();
        assert!(a.contains("raise stop_lead_ms") && a.contains("st-marys"), "{a}");
    }

    #[test]
    fn no_output_is_a_usage_error() {
        let organ = Organ::find("st-marys").unwrap();
        let args = SelftestArgs { to: vec![], organ: None, seconds: 1.0 };
        let e = Error::from(specs(&args, &organ).unwrap_err());
        assert!(e.to_string().starts_with("no output: add --to"), "{e}");
    }
}
