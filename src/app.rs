//! The commands that read, plan and print (`organ plan`, `check`, `info`, `ble scan`,
//! `grandorgue config|port`): each is a function from plain arguments (no clap: the binary maps
//! its flags) to an exit status; every failure is an [`Error`] with a one-line `Display`, the
//! error type of every command (the playing ones, in [`crate::play`] and [`crate::service`],
//! too). Control thread; prints to stdout and stderr.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::files::{FileKind, read_user_text};
use crate::inputs::{self, InputError, Inputs, PlanArgs, registration_beside};
use crate::organ::{ConfigError, Organ};
use crate::output::grandorgue::LoopbackError;
use crate::output::port::PortError;
use crate::output::{FinishError, OpenError};
use crate::plan::{self, PlanError, Timeline, layout};
use crate::registration::organ_hint;
use crate::score::{self, Score, ScoreFileError, tempo::bpm};
use crate::session::StartError;
use crate::text::{push_line, shown, shown_lines};

/// Any failure of a command, printed as `organ: <message>`.
#[derive(Debug)]
pub enum Error {
    Score(ScoreFileError),
    Config(ConfigError),
    Plan(PlanError),
    Input(Box<InputError>),
    /// An output could not be opened.
    Open(Box<OpenError>),
    /// An output could not complete (a file not written, messages not delivered).
    Finish(FinishError),
    /// A performance could not start.
    Start(Box<StartError>),
    /// No loopback to GrandOrgue (`organ grandorgue port`).
    Loopback(Box<LoopbackError>),
    /// No MIDI ports (`organ ports`).
    Port(Box<PortError>),
    /// A `--to wav:FILE` that could not be written.
    Wav(crate::voice::WavError),
    /// A bad command-line value.
    Usage(String),
    Io(String),
    /// Something else, already phrased for the user.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Score(e) => e.fmt(f),
            Error::Config(e) => e.fmt(f),
            Error::Plan(e) => e.fmt(f),
            Error::Input(e) => e.fmt(f),
            Error::Open(e) => e.fmt(f),
            Error::Finish(e) => e.fmt(f),
            Error::Loopback(e) => e.fmt(f),
            Error::Start(e) => e.fmt(f),
            Error::Port(e) => e.fmt(f),
            Error::Wav(e) => e.fmt(f),
            Error::Usage(s) | Error::Io(s) | Error::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<ScoreFileError> for Error {
    fn from(e: ScoreFileError) -> Self {
        Error::Score(e)
    }
}
impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
impl From<PlanError> for Error {
    fn from(e: PlanError) -> Self {
        Error::Plan(e)
    }
}
impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        Error::Open(Box::new(e))
    }
}
impl From<FinishError> for Error {
    fn from(e: FinishError) -> Self {
        Error::Finish(e)
    }
}
impl From<StartError> for Error {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Outputs(e) => Error::Open(Box::new(e)),
            e => Error::Start(Box::new(e)),
        }
    }
}
impl From<crate::voice::WavError> for Error {
    fn from(e: crate::voice::WavError) -> Self {
        Error::Wav(e)
    }
}
impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::Input(Box::new(e))
    }
}

/// Exit status of a command that did its job (warnings may still make `check` fail).
pub type Status = i32;

/// What `organ plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// An aligned table for reading.
    Text,
    /// One JSON object per message (the documented jsonl contract).
    Jsonl,
    /// A picture ([`crate::picture`]): a piano roll per division under a band of the stops.
    Svg,
    /// The same picture in one self-contained HTML page.
    Html,
}

/// Writes to stdout; a closed pipe (`organ plan … | head`) is not an error.
pub(crate) fn write_out(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), Error> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match f(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // `organ plan … | head` closes the pipe: that is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Io(format!("cannot write the output: {e}"))),
    }
}

/// `organ plan`.
///
/// # Errors
/// As [`inputs::load_and_plan`], and write errors.
pub fn cmd_plan(a: &PlanArgs, format: PlanFormat) -> Result<Status, Error> {
    let (inputs, timeline) = inputs::load_and_plan(a)?;
    write_out(|out| {
        let mut out = out;
        match format {
            PlanFormat::Text => timeline.write_text(&mut out),
            PlanFormat::Jsonl => timeline.write_jsonl(&mut out),
            PlanFormat::Svg | PlanFormat::Html => {
                let markers = crate::picture::markers_for(&timeline, &inputs.score, &inputs.hymn);
                let unplaced = crate::picture::unplaced_warnings(&timeline, &inputs.score);
                if format == PlanFormat::Svg {
                    crate::picture::write_svg(&timeline, &markers, &unplaced, out)
                } else {
                    crate::picture::write_html(&timeline, &markers, &unplaced, out)
                }
            }
        }
    })?;
    for w in &timeline.warnings {
        err!("organ: {}", shown(&format!("{}: {}: {w}", w.kind.label(), timeline.score_name)));
    }
    Ok(0)
}

/// Every warning about a score and its plan, one line each, with positions (the plan's notes,
/// [`plan::WarningKind::is_note`], are not warnings).
pub fn all_warnings(score: &Score, timeline: &Timeline) -> Vec<String> {
    let mut w: Vec<String> = score
        .warnings
        .iter()
        .map(|x| {
            let at = x.tick.map(|t| format!(" (from bar {})", score.meter.position(t))).unwrap_or_default();
            let part = x.part.map(|p| format!("part {p}: ")).unwrap_or_default();
            format!("{part}{}{at}", x.message)
        })
        .collect();
    w.extend(timeline.warnings.iter().filter(|x| !x.kind.is_note()).map(ToString::to_string));
    w
}

/// What was stripped from the score, as a sentence, or `None`.
pub fn stripped_summary(score: &Score) -> Option<String> {
    let s = score.stripped;
    let items: Vec<String> = [
        (s.program_changes, "program change"),
        (s.controllers, "controller"),
        (s.pitch_bends, "pitch bend"),
        (s.aftertouch, "aftertouch"),
        (s.sysex, "SysEx"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
    .collect();
    (!items.is_empty()).then(|| {
        format!(
            "{} in the score {} not sent to the organ (only notes and the organ's own stop messages are)",
            crate::text::join_and(&items),
            if s.total() == 1 { "is" } else { "are" }
        )
    })
}

/// `organ check`.
///
/// # Errors
/// As [`inputs::load_and_plan`].
pub fn cmd_check(a: &PlanArgs, deny_warnings: bool) -> Result<Status, Error> {
    let (inputs, timeline) = inputs::load_and_plan(a)?;
    let score = &inputs.score;
    let mut out = String::new();
    let assignment = plan_assignment(&inputs)?;
    let parts: Vec<String> = score
        .parts
        .iter()
        .zip(&assignment)
        .map(|(p, d)| {
            format!("{}→{}", p.number, d.map_or("(not played)".to_string(), |d| inputs.organ.divisions[d].name.clone()))
        })
        .collect();
    push_line(
        &mut out,
        &format!(
            "{}: {} part(s) on {} ({}), {} messages, {} long, {} registration change(s){}",
            score.name,
            score.parts.len(),
            inputs.organ.name,
            parts.join(" "),
            timeline.events.len(),
            timeline.duration,
            timeline.registrations.len().saturating_sub(1 + usize::from(timeline.cancel_at_end)),
            inputs
                .registration
                .as_ref()
                .map(|r| format!(" from {}", r.source))
                .unwrap_or_else(|| " (no registration file)".into())
        ),
    );
    if let Some(s) = stripped_summary(score) {
        push_line(&mut out, &format!("note: {s}"));
    }
    for n in timeline.warnings.iter().filter(|w| w.kind.is_note()) {
        push_line(&mut out, &format!("note: {n}"));
    }
    let warnings = all_warnings(score, &timeline);
    for w in &warnings {
        push_line(&mut out, &format!("warning: {w}"));
    }
    if warnings.is_empty() {
        push_line(&mut out, "ok: no problems found");
    } else {
        push_line(&mut out, &format!("ok with {} warning(s)", warnings.len()));
    }
    write_out(|o| o.write_all(out.as_bytes()))?;
    Ok(if deny_warnings && !warnings.is_empty() { 1 } else { 0 })
}

fn plan_assignment(inputs: &Inputs) -> Result<Vec<Option<usize>>, Error> {
    let reg = inputs.registration.as_ref();
    let (l, from) = match (&inputs.options.layout, reg.and_then(|r| r.layout.clone())) {
        (Some(l), _) => (l.clone(), "--layout".to_string()),
        (None, Some(l)) => (l, reg.map(|r| r.source.clone()).unwrap_or_default()),
        _ => (plan::DEFAULT_LAYOUT.to_string(), "the default".to_string()),
    };
    let map = inputs.options.map.as_deref().or(reg.and_then(|r| r.map.as_deref()));
    Ok(layout::resolve(&inputs.score, &inputs.organ, layout::LayoutSource { layout: &l, from: &from }, map)
        .map_err(PlanError::from)?)
}

/// `organ info`.
///
/// # Errors
/// An unloadable score or organ.
pub fn cmd_info(path: &Path, organ: Option<&str>) -> Result<Status, Error> {
    let score = score::load_file(path)?;
    let reg = registration_beside(path);
    let organ_name = organ
        .map(str::to_string)
        .or_else(|| read_user_text(&reg, FileKind::Registration).ok().and_then(|t| organ_hint(&t)))
        .unwrap_or_else(|| "st-marys".to_string());
    let organ = Organ::find(&organ_name)?;
    let mut o = String::new();
    let end = score.last_note_end();
    let timing = match score.timing {
        score::Timing::Metrical { ppq } => format!("{ppq} ticks per quarter note"),
        score::Timing::Timecode { fps, subframes } => {
            format!(
                "SMPTE {} fps × {subframes} ticks per frame",
                if fps == 29 { "29.97".to_string() } else { fps.to_string() }
            )
        }
    };
    push_line(
        &mut o,
        &format!(
            "{}: SMF format {}, {timing}, {} track(s), {} part(s), {} notes",
            score.name,
            score.format,
            score.tracks,
            score.parts.len(),
            score.note_count()
        ),
    );
    push_line(
        &mut o,
        &format!(
            "length: {} to the last note ({} bars), {} to the end of the file",
            score.tempo.micros(end),
            score.meter.position(end.saturating_sub(1)).bar,
            score.tempo.micros(score.end_tick)
        ),
    );
    push_line(&mut o, "parts:");
    for p in &score.parts {
        push_line(&mut o, &format!("  {}  (track {})", layout::describe_part(p), p.track + 1));
    }
    push_line(&mut o, "tempo:");
    for c in score.tempo.changes() {
        push_line(
            &mut o,
            &format!(
                "  bar {:<8} {:>7.2} bpm ({} µs per quarter) at {}",
                score.meter.position(c.tick).to_string(),
                bpm(c.us_per_quarter),
                c.us_per_quarter,
                score.tempo.micros(c.tick)
            ),
        );
    }
    push_line(&mut o, "time signatures:");
    for (m, bar) in score.meter.changes() {
        push_line(&mut o, &format!("  bar {bar:<8} {}/{}", m.numerator, 1u32 << m.denominator_pow2.min(31)));
    }
    if let Some(s) = stripped_summary(&score) {
        push_line(&mut o, &format!("note: {s}"));
    }
    for w in &score.warnings {
        let at = w.tick.map(|t| format!(" (from bar {})", score.meter.position(t))).unwrap_or_default();
        let part = w.part.map(|p| format!("part {p}: ")).unwrap_or_default();
        push_line(&mut o, &format!("warning: {part}{}{at}", w.message));
    }
    push_line(
        &mut o,
        &format!("suggested layout for {}: --layout {}", organ.name, layout::suggest_layout(&score, &organ)),
    );
    write_out(|out| out.write_all(o.as_bytes()))?;
    Ok(0)
}

// --- organ ble ----------------------------------------------------------------------------------

/// A `--seconds N` flag within `lo..=hi` (a finite number: NaN and infinity are refused too).
///
/// # Errors
/// One line naming the flag, the value and the range.
pub fn check_seconds(seconds: f64, lo: f64, hi: f64) -> Result<(), Error> {
    if seconds.is_finite() && (lo..=hi).contains(&seconds) {
        Ok(())
    } else {
        Err(Error::Usage(format!("--seconds {seconds}: use {lo} to {hi} seconds")))
    }
}

/// `organ ble scan`.
///
/// # Errors
/// Built without the `ble` feature; no Bluetooth (no BlueZ, no adapter, adapter off).
#[cfg(feature = "ble")]
pub fn cmd_ble_scan(seconds: f64) -> Result<Status, Error> {
    check_seconds(seconds, 0.1, 600.0)?;
    let devices = crate::output::ble::scan(seconds).map_err(|e| Error::Other(format!("Bluetooth: {e}")))?;
    let mut o = String::new();
    if devices.is_empty() {
        push_line(
            &mut o,
            &format!(
                "no BLE-MIDI devices found in {seconds:.1} s (is the device on, in range, and not connected to another \
                 computer or phone?)"
            ),
        );
    } else {
        push_line(&mut o, &format!("BLE-MIDI devices found in {seconds:.1} s (strongest signal first):"));
        let width = devices.iter().map(|d| d.name.as_deref().unwrap_or("(no name)").chars().count()).max().unwrap_or(0);
        for d in &devices {
            let rssi = d.rssi.map(|r| format!("{r} dBm")).unwrap_or_else(|| "signal unknown".into());
            push_line(
                &mut o,
                &format!("  {:<width$}  {}  {rssi}", d.name.as_deref().unwrap_or("(no name)"), d.address),
            );
        }
        let example = devices[0].name.clone().unwrap_or_else(|| devices[0].address.clone());
        push_line(&mut o, &format!("play to one with --to ble:\"{example}\" (a part of the name or the address)"));
    }
    write_out(|out| out.write_all(o.as_bytes()))?;
    Ok(0)
}

/// `organ ble scan` in a build without Bluetooth.
///
/// # Errors
/// Always: the build has no Bluetooth LE MIDI.
#[cfg(not(feature = "ble"))]
pub fn cmd_ble_scan(_seconds: f64) -> Result<Status, Error> {
    Err(Error::Other("this organ was built without Bluetooth LE MIDI (cargo feature `ble`)".into()))
}

// --- organ grandorgue … -----------------------------------------------------------------------
// (kept in one block so that it merges easily with other commands)

/// What `organ grandorgue config` was asked.
#[derive(Debug, Clone)]
pub struct GrandorgueConfigArgs {
    /// The organ definition (name or path).
    pub organ: String,
    /// GrandOrgue's organ definition file (.organ), or an organ package (.orgue).
    pub odf: PathBuf,
    /// Where to write the settings (default: beside the ODF, .cmb).
    pub out: Option<PathBuf>,
    /// Overwrite a .cmb that `organ` did not write.
    pub force: bool,
}

/// What `organ grandorgue organ` was asked.
#[derive(Debug, Clone)]
pub struct GrandorgueOrganArgs {
    /// GrandOrgue's organ definition file (.organ), or an organ package (.orgue).
    pub odf: PathBuf,
    /// Where to write the organ definition (default: standard output).
    pub out: Option<PathBuf>,
    /// Replace an existing file.
    pub force: bool,
}

/// `organ grandorgue config`: match, bind, report, write the .cmb.
///
/// # Errors
/// Unreadable organ definition or ODF; an existing foreign .cmb without `--force`; write errors.
pub fn cmd_grandorgue_config(c: &GrandorgueConfigArgs) -> Result<Status, Error> {
    let organ = Organ::find(&c.organ)?;
    let done = crate::grandorgue::files::write_config(&organ, &c.odf, c.out.as_deref(), c.force)
        .map_err(|e| Error::Other(e.to_string()))?;
    write_out(|o| o.write_all(shown_lines(&done.report).as_bytes()))?;
    Ok(0)
}

/// `organ grandorgue organ`: an organ definition from a GrandOrgue organ, to a file or stdout.
///
/// # Errors
/// Unreadable ODF; an existing file without `--force`; write errors.
pub fn cmd_grandorgue_organ(c: &GrandorgueOrganArgs) -> Result<Status, Error> {
    let done = crate::grandorgue::files::write_organ(&c.odf, c.out.as_deref(), c.force)
        .map_err(|e| Error::Other(e.to_string()))?;
    if done.wrote.is_none() {
        write_out(|o| o.write_all(done.toml.as_bytes()))?;
    }
    // The summary, then (when a file was written) the next command on a line of its own.
    for (i, line) in done.summary.lines().enumerate() {
        err!("{}{}", if i == 0 { "organ: " } else { "" }, shown(line));
    }
    Ok(0)
}

/// `organ grandorgue port`: keep a loopback port open until Ctrl-C.
///
/// # Errors
/// No way to open a port here (no JACK server and no virtual-port backend), with what to do; the
/// JACK server shutting down while the port is open.
pub fn cmd_grandorgue_port(via: &str) -> Result<Status, Error> {
    use crate::output::Link;
    use crate::output::grandorgue::{self, Backends, LoopbackOptions};
    let lb = match via {
        "auto" => grandorgue::open(&LoopbackOptions::default(), &Backends::default()),
        #[cfg(feature = "jack")]
        "jack" => grandorgue::open_jack_port(),
        other => return Err(Error::Usage(format!("--via {other}: use auto or jack"))),
    }
    .map_err(|e| Error::Loopback(Box::new(e)))?;
    out!("{}", shown(&lb.message));
    out!("keeping it open; press Ctrl-C to close it");
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        if lb.output.link() != Link::Up {
            return Err(Error::Other("the MIDI port went away (the JACK server shut down?)".into()));
        }
    }
}
