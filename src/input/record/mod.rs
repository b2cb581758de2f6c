//! Recording from the console: `organ record`, and the recorder behind `organ play --record`.
//!
//! A [`Recorder`] opens an input, appends every message to a journal on its own thread
//! ([`journal`]), and when finished turns the journal into takes ([`take`]) and writes each as a
//! MIDI file with one track per division and a registration file naming the stops ([`write`]).
//! The journal is the recording: if the program dies, the next start finds it ([`recover`]) and
//! makes the takes from it. It is self-contained (input, thread, files), so any frontend can
//! hold one while it does something else.
//!
//! Never touches the playback engine or its hot path. The journal thread and the input's own
//! threads run beside the control thread, which only reads the status and finishes.

pub mod journal;
pub mod status;
pub mod take;
pub mod write;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Input, InputError, printable, short_hex};
use crate::midi::Micros;
use crate::organ::{BUILTIN_ORGANS, ConfigError, Organ};
use journal::Header;
use status::{Live, LiveStatus};
use take::Take;
pub use write::Timebase;

/// Why recording, or making the takes, failed.
#[derive(Debug)]
pub enum RecordError {
    Input(InputError),
    /// The organ definition is not valid.
    Config(ConfigError),
    /// A file or folder could not be read or written.
    Io {
        path: String,
        error: String,
    },
    /// A bad option.
    Usage(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Input(e) => e.fmt(f),
            RecordError::Config(e) => e.fmt(f),
            RecordError::Io { path, error } => write!(f, "{path}: {error}"),
            RecordError::Usage(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for RecordError {}

impl From<InputError> for RecordError {
    fn from(e: InputError) -> Self {
        RecordError::Input(e)
    }
}

impl From<ConfigError> for RecordError {
    fn from(e: ConfigError) -> Self {
        RecordError::Config(e)
    }
}

fn io_err(path: &Path, e: impl fmt::Display) -> RecordError {
    RecordError::Io { path: path.display().to_string(), error: e.to_string() }
}

/// Creates the folder for the takes (`flag` is the option that named it). Something there
/// that is not a folder is said to be so, rather than "File exists".
///
/// # Errors
/// Not a folder, or the folder cannot be created.
fn make_folder(out: &Path, flag: &str) -> Result<(), RecordError> {
    match std::fs::metadata(out) {
        Ok(m) if !m.is_dir() => Err(io_err(
            out,
            format!(
                "is {}, not a folder: {flag} names the folder for the takes (created if needed)",
                crate::files::file_type_name(&m.file_type())
            ),
        )),
        _ => std::fs::create_dir_all(out).map_err(|e| io_err(out, e)),
    }
}

/// What to record and how its takes are made.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    /// The console's MIDI source (`port:NAME`, `jack:PORT`).
    pub from: String,
    /// How the takes' registration files name the organ: the name given, or the file's full
    /// path.
    pub organ_ref: String,
    /// The folder of the takes (and of the journal while recording).
    pub out: PathBuf,
    /// Cut at every silence (all keys up) of at least this long.
    pub split: Option<Micros>,
    pub timebase: Timebase,
    /// The takes' names begin with this (`take` → `take-2025-01-02-103045.mid`).
    pub prefix: String,
}

impl RecordSettings {
    /// Settings for recording on `organ_arg` (a name, or a path made absolute) into `out`.
    pub fn new(from: &str, organ_arg: &str, out: &Path) -> RecordSettings {
        RecordSettings {
            from: from.to_string(),
            organ_ref: organ_ref(organ_arg),
            out: out.to_path_buf(),
            split: None,
            timebase: Timebase::default(),
            prefix: "take".into(),
        }
    }
}

/// How a take names its organ: a name as given (found again by `--organ NAME`), a path made
/// absolute (so the take plays from any folder).
pub fn organ_ref(organ_arg: &str) -> String {
    let is_path = organ_arg.contains('/') || organ_arg.contains('\\') || organ_arg.ends_with(".toml");
    if is_path {
        std::fs::canonicalize(organ_arg).map_or_else(|_| organ_arg.to_string(), |p| p.display().to_string())
    } else {
        organ_arg.to_string()
    }
}

/// The text of an organ definition as loaded (the journal keeps it).
///
/// # Errors
/// Its file cannot be read again.
fn organ_text(organ: &Organ) -> Result<String, RecordError> {
    if let Some(name) = organ.source.strip_prefix("(built-in) organs/").and_then(|n| n.strip_suffix(".toml"))
        && let Some((_, text)) = BUILTIN_ORGANS.iter().find(|(n, _)| *n == name)
    {
        return Ok(text.to_string());
    }
    crate::files::read_user_text(Path::new(&organ.source), crate::files::FileKind::Organ)
        .map_err(|e| io_err(Path::new(&organ.source), e.problem))
}

fn unix_now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A recording in progress. Dropping it without [`Recorder::finish`] stops it and leaves the
/// journal, which the next start recovers.
pub struct Recorder {
    input: Option<Input>,
    writer: Option<JoinHandle<std::io::Result<u64>>>,
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<LiveStatus>>,
    journal: PathBuf,
    /// A second handle on the journal: its lock lasts until the takes are written.
    lock: Option<File>,
    input_name: String,
    split: Option<Duration>,
}

impl Recorder {
    /// Opens the input and starts the journal in `settings.out` (created if needed).
    ///
    /// # Errors
    /// The input cannot be opened; the folder or the journal cannot be written.
    pub fn start(settings: &RecordSettings, organ: &Organ) -> Result<Recorder, RecordError> {
        let input = super::open(&settings.from)?;
        Recorder::with_input(settings, organ, input)
    }

    /// As [`Recorder::start`], with an input already open.
    ///
    /// # Errors
    /// The folder or the journal cannot be written.
    pub fn with_input(settings: &RecordSettings, organ: &Organ, input: Input) -> Result<Recorder, RecordError> {
        std::fs::create_dir_all(&settings.out).map_err(|e| io_err(&settings.out, e))?;
        let opened_unix_us = unix_now_us().saturating_sub(input.opened().elapsed().as_micros() as u64);
        let header = Header {
            opened_unix_us,
            source: input.name().to_string(),
            organ_ref: settings.organ_ref.clone(),
            organ_source: organ.source.clone(),
            organ_text: organ_text(organ)?,
            split_us: settings.split.map(|s| s.0),
            timebase: settings.timebase,
            prefix: write::safe_name(&settings.prefix),
        };
        let name = format!("{}-{}", write::stem("", opened_unix_us).trim_start_matches('-'), std::process::id());
        let (path, file) = journal::create(&settings.out, &name, &header).map_err(|e| io_err(&settings.out, e))?;
        let lock = file.try_clone().map_err(|e| io_err(&path, e))?;
        let split = settings.split.map(|s| Duration::from_micros(s.0));
        let mut live = Live::new(organ, split);
        let status = Arc::clone(&live.status);
        let stop = Arc::new(AtomicBool::new(false));
        let (rx, stop2, status2) = (input.messages().clone(), Arc::clone(&stop), Arc::clone(&status));
        let writer = std::thread::Builder::new()
            .name("organ-journal".into())
            .spawn(move || {
                let r = journal::write_loop(file, &rx, &stop2, &mut |m| live.seen(m));
                if let (Err(e), Ok(mut s)) = (&r, status2.lock()) {
                    s.error = Some(e.to_string());
                }
                r
            })
            .map_err(|e| io_err(&path, format!("cannot start the journal thread: {e}")))?;
        Ok(Recorder {
            input_name: input.name().to_string(),
            input: Some(input),
            writer: Some(writer),
            stop,
            live: status,
            journal: path,
            lock: Some(lock),
            split,
        })
    }

    /// The recording so far.
    pub fn status(&self) -> LiveStatus {
        self.live.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The status line.
    pub fn status_line(&self) -> String {
        self.status().line(Instant::now(), self.split)
    }

    /// The source, as opened.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The journal being written.
    pub fn journal(&self) -> &Path {
        &self.journal
    }

    /// Stops listening and writes everything received to the journal; returns how many
    /// messages the input lost on the way in.
    fn stop(&mut self) -> Result<u64, RecordError> {
        // Closing the input first flushes what its threads still hold into the channel.
        let dropped = self.input.as_ref().map_or(0, Input::dropped);
        self.input.take();
        self.stop.store(true, Ordering::Release);
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => Err(io_err(&self.journal, e)),
            Some(Err(_)) => Err(io_err(&self.journal, "the journal thread failed")),
            _ => Ok(dropped),
        }
    }

    /// Stops recording and writes the takes.
    ///
    /// # Errors
    /// The journal or the takes cannot be written; the journal then stays, to be recovered.
    pub fn finish(mut self) -> Result<Finished, RecordError> {
        let dropped = self.stop()?;
        let mut lock = self.lock.take().ok_or_else(|| io_err(&self.journal, "already finished"))?;
        let mut done = finish_journal(&self.journal, &mut lock)?;
        done.dropped = dropped;
        Ok(done)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// One take written.
#[derive(Debug, Clone)]
pub struct Written {
    pub mid: PathBuf,
    pub toml: PathBuf,
    pub length: Micros,
    pub notes: usize,
    /// The divisions played.
    pub divisions: Vec<String>,
    pub changes: usize,
    pub held_at_end: usize,
}

/// What a finished (or recovered) recording gave.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    pub journal: PathBuf,
    /// When the recording began (µs since the Unix epoch).
    pub started_unix_us: u64,
    pub written: Vec<Written>,
    pub messages: usize,
    pub unrecognised: BTreeMap<Vec<u8>, usize>,
    /// Messages the input lost (its queue was full).
    pub dropped: u64,
    /// Note-ons for keys already down, note-offs for keys not down.
    pub odd_keys: usize,
    /// A journal line that could not be read (what came before it was used).
    pub damaged: Option<String>,
    pub organ_name: String,
}

impl Finished {
    /// What to tell the user, one line each.
    pub fn report(&self) -> Vec<String> {
        let mut out = Vec::new();
        for w in &self.written {
            let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let held = if w.held_at_end > 0 {
                format!("; {} key(s) were still down at the end and were released at the last message", w.held_at_end)
            } else {
                String::new()
            };
            out.push(format!(
                "wrote {} and {}: {}, {} notes on {}, {} registration change(s){held}",
                printable(&w.mid.display().to_string()),
                printable(&name(&w.toml)),
                w.length,
                w.notes,
                w.divisions.join(", "),
                w.changes
            ));
        }
        if self.written.is_empty() {
            out.push(format!("no key was played ({} message(s) received): no take written", self.messages));
        }
        if !self.unrecognised.is_empty() {
            let n: usize = self.unrecognised.values().sum();
            let mut v: Vec<(&Vec<u8>, &usize)> = self.unrecognised.iter().collect();
            v.sort_by_key(|x| std::cmp::Reverse(*x.1));
            let list: Vec<String> = v.iter().take(8).map(|(b, c)| format!("{} ×{c}", short_hex(b))).collect();
            out.push(format!(
                "{n} message(s) that {} does not know ({} different) were kept as text in the take's track \"{}\", not played back: {}{}",
                printable(&self.organ_name),
                v.len(),
                write::UNRECOGNISED_TRACK,
                list.join(", "),
                if v.len() > 8 { ", …" } else { "" }
            ));
        }
        if self.odd_keys > 0 {
            out.push(format!("{} note message(s) for keys already down (or not down) were ignored", self.odd_keys));
        }
        if self.dropped > 0 {
            out.push(format!("{} message(s) were lost on the way in (the input queue was full)", self.dropped));
        }
        if let Some(d) = &self.damaged {
            out.push(format!("the journal was damaged ({d}); what came before was used"));
        }
        out
    }
}

/// Makes the takes of a journal, writes them beside it, then removes it. `file` is the
/// journal, open and locked.
///
/// # Errors
/// The journal cannot be read or the takes cannot be written; the journal then stays.
pub fn finish_journal(path: &Path, file: &mut File) -> Result<Finished, RecordError> {
    let j = journal::read(path).map_err(|e| io_err(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let organ = Organ::from_toml(&j.header.organ_text, &j.header.organ_source)?;
    let mut done = Finished {
        journal: path.to_path_buf(),
        started_unix_us: j.header.opened_unix_us,
        damaged: j.damaged.clone(),
        organ_name: organ.name.clone(),
        ..Finished::default()
    };
    if j.finished {
        journal::finish(path, file).map_err(|e| io_err(path, e))?;
        return Ok(done);
    }
    let takes = take::takes(&organ, &j.messages, j.header.split_us.map(Micros));
    for t in &takes.takes {
        done.written.push(write_take(dir, t, &organ, &j.header)?);
    }
    done.messages = takes.messages;
    done.unrecognised = takes.unrecognised;
    done.odd_keys = takes.odd_keys;
    journal::finish(path, file).map_err(|e| io_err(path, e))?;
    Ok(done)
}

/// Writes one take's MIDI and registration files.
fn write_take(dir: &Path, t: &Take, organ: &Organ, h: &Header) -> Result<Written, RecordError> {
    let when = h.opened_unix_us + t.zero.0;
    let tb = &h.timebase;
    let divisions: Vec<String> = organ
        .divisions
        .iter()
        .enumerate()
        .filter(|(d, _)| !t.notes[*d].is_empty())
        .map(|(_, d)| d.name.clone())
        .collect();
    let title = format!("{} {} (organ record, {})", h.prefix, write::date_time(when), organ.name);
    let mid = write::smf_bytes(t, organ, tb, &title).map_err(|e| io_err(dir, format!("cannot encode a take: {e}")))?;
    let mut comments = vec![
        format!("Recorded by organ record from {} on {}, {}.", h.source, organ.name, write::date_time(when)),
        format!(
            "{} long, {} notes on {}, {} registration change(s).",
            t.length,
            t.note_count(),
            divisions.join(", "),
            t.changes.len()
        ),
    ];
    comments.push(if tb.bars {
        format!(
            "Positions are bars at {:.2} quarter notes a minute in {}/{}, from the first note.",
            60e6 / f64::from(tb.us_per_quarter),
            tb.numerator,
            tb.denominator
        )
    } else {
        "Positions are seconds from the first note (the MIDI file's 120 bpm only holds the times).".into()
    });
    if !t.unrecognised.is_empty() {
        comments.push(format!(
            "{} message(s) the organ definition does not know are kept as text in the MIDI file's last track.",
            t.unrecognised.len()
        ));
    }
    let toml = write::registration_text(t, organ, tb, &h.organ_ref, &comments);
    let files = write::write_new_files(dir, &write::stem(&h.prefix, when), &[("mid", &mid), ("toml", toml.as_bytes())])
        .map_err(|e| io_err(dir, e))?;
    Ok(Written {
        mid: files[0].clone(),
        toml: files[1].clone(),
        length: t.length,
        notes: t.note_count(),
        divisions,
        changes: t.changes.len(),
        held_at_end: t.held_at_end,
    })
}

/// Makes the takes of every unfinished recording in `dir` (journals left by a recorder that
/// died) and says what it did, one line each. Journals held by a running recorder are left
/// alone.
pub fn recover(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (path, mut file) in journal::unfinished(dir) {
        let shown = printable(&path.display().to_string());
        match finish_journal(&path, &mut file) {
            Ok(done) if done.written.is_empty() && done.messages == 0 => {
                out.push(format!("removed {shown}: a recording of nothing"));
            }
            Ok(done) => {
                out.push(format!(
                    "recovered an unfinished recording of {} from {shown}:",
                    write::date_time(done.started_unix_us)
                ));
                out.extend(done.report().into_iter().map(|l| format!("  {l}")));
            }
            Err(e) => out.push(format!("could not recover {shown}: {e}; it is left as it is")),
        }
    }
    out
}

/// `organ play --record SOURCE`: recovers what an earlier recording left in `out`, then starts
/// recording the console beside the playback of `score_name`, as takes named after the score.
/// Returns the recorder and the recovery lines to show. `organ_arg` is `--organ` if given;
/// otherwise the organ is named by its file (or built-in name).
///
/// # Errors
/// As [`Recorder::start`].
pub fn start_for_play(
    source: &str,
    out: Option<&Path>,
    organ: &Organ,
    organ_arg: Option<&str>,
    score_name: &str,
) -> Result<(Recorder, Vec<String>), RecordError> {
    let out = out.unwrap_or(Path::new("."));
    let builtin = organ.source.strip_prefix("(built-in) organs/").and_then(|n| n.strip_suffix(".toml"));
    let arg = organ_arg.or(builtin).unwrap_or(&organ.source);
    let mut settings = RecordSettings::new(source, arg, out);
    let stem = Path::new(score_name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    settings.prefix = write::safe_name(&format!("{stem}-console"));
    make_folder(out, "--record-out")?;
    let recovered = recover(out);
    Ok((Recorder::start(&settings, organ)?, recovered))
}

/// What `organ record` was asked to do (plain values; the CLI builds it).
#[derive(Debug, Clone)]
pub struct RecordArgs {
    pub from: String,
    pub organ: String,
    pub out: PathBuf,
    /// Split at silences of this length.
    pub split: Option<Duration>,
    /// A tempo (and time signature) for positions in bars.
    pub bpm: Option<f64>,
    pub meter: Option<String>,
    pub quiet: bool,
}

/// `organ record`: records until Ctrl-C (or SIGTERM, SIGHUP), then writes the takes.
///
/// # Errors
/// The organ, the input or the folder cannot be used; the journal cannot be written.
pub fn run(a: &RecordArgs) -> Result<i32, RecordError> {
    crate::session::install_signal_handling();
    let organ = Organ::find(&a.organ)?;
    let mut settings = RecordSettings::new(&a.from, &a.organ, &a.out);
    settings.split = a.split.map(|d| Micros(d.as_micros() as u64));
    settings.timebase = match a.bpm {
        Some(bpm) => Timebase::bars(bpm, a.meter.as_deref())?,
        None if a.meter.is_some() => return Err(RecordError::Usage("--meter goes with --bpm".into())),
        None => Timebase::default(),
    };
    make_folder(&a.out, "--out")?;
    for line in recover(&a.out) {
        err!("organ: {line}");
    }
    let rec = Recorder::start(&settings, &organ)?;
    let split = a.split.map(|s| format!(", a new take after {:.1} s of silence", s.as_secs_f64())).unwrap_or_default();
    err!(
        "organ: recording from {} on {} into {}{split} (Ctrl-C ends and writes the take)",
        printable(rec.input_name()),
        printable(&organ.name),
        printable(&a.out.display().to_string())
    );
    let interactive = !a.quiet && std::io::stderr().is_terminal();
    let mut last_len = 0usize;
    let mut failed = None;
    while crate::session::signal_received() == 0 {
        let s = rec.status();
        if let Some(e) = s.error {
            failed = Some(e);
            break;
        }
        if interactive {
            // One terminal line, so that \r redraws it in place.
            let width = crossterm::terminal::size().map_or(100, |(w, _)| usize::from(w)).saturating_sub(1).max(20);
            let line: String = rec.status_line().chars().take(width).collect();
            let pad = last_len.saturating_sub(line.chars().count());
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r{line}{:pad$}", "").and_then(|()| e.flush());
            last_len = line.chars().count();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if last_len > 0 {
        err!();
    }
    let journal = rec.journal().to_path_buf();
    let done = rec.finish()?;
    if !a.quiet || failed.is_some() {
        for line in done.report() {
            err!("organ: {line}");
        }
    }
    match failed {
        Some(e) => {
            Err(io_err(&journal, format!("the journal could not be written ({e}); the takes above hold what it had")))
        }
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Received;

    #[test]
    fn a_recording_becomes_takes_and_the_journal_goes() {
        let dir = std::env::temp_dir().join(format!("organ-record-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let organ = Organ::find("st-marys").unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let input = Input::from_channel("test", rx);
        let mut settings = RecordSettings::new("test", "st-marys", &dir);
        settings.split = Some(Micros(1_000_000));
        let rec = Recorder::with_input(&settings, &organ, input).unwrap();
        let send = |at: u64, b: &[u8]| tx.send(Received { at: Micros(at), bytes: b.into() }).unwrap();
        send(0, &[0x9F, 48, 127]);
        send(100_000, &[0x91, 60, 80]);
        send(600_000, &[0x81, 60, 0]);
        send(900_000, &[0xCF, 3]);
        send(5_000_000, &[0x90, 62, 80]);
        send(5_500_000, &[0x80, 62, 0]);
        // Once the journal thread has the messages, the status shows them.
        let t0 = Instant::now();
        while rec.status().messages < 6 && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = rec.status();
        assert_eq!((s.messages, s.takes, s.drawn, s.unrecognised), (6, 2, 1, 1));
        assert!(rec.journal().exists());
        let journal = rec.journal().to_path_buf();
        let done = rec.finish().unwrap();
        assert!(!journal.exists(), "removed once the takes are written");
        assert_eq!(done.written.len(), 2);
        let w = &done.written[0];
        assert_eq!((w.notes, w.length, w.divisions.clone()), (1, Micros(500_000), vec!["great".to_string()]));
        let reg = std::fs::read_to_string(&w.toml).unwrap();
        assert!(reg.contains("organ = \"st-marys\"\nlayout = \"G\"\n"), "{reg}");
        assert!(reg.contains("on = [\"Gt Open Diapason 8\"]"), "{reg}");
        let report = done.report().join("\n");
        assert!(report.contains("1 message(s) that St Mary's Church, Fishponds does not know"), "{report}");
        assert!(report.contains("CF 03 ×1"), "{report}");
        // A journal left by a recorder that died is recovered; the folder is then clean.
        let (path, mut file) = journal::create(
            &dir,
            "dead",
            &Header {
                opened_unix_us: 1_700_000_000_000_000,
                source: "test".into(),
                organ_ref: "st-marys".into(),
                organ_source: organ.source.clone(),
                organ_text: organ_text(&organ).unwrap(),
                split_us: None,
                timebase: Timebase::default(),
                prefix: "take".into(),
            },
        )
        .unwrap();
        file.write_all(b"10 90 3C 50\n20 80 3C 00\n30 90").unwrap();
        drop(file); // the recorder "dies": its lock goes with it
        let lines = recover(&dir);
        assert!(lines[0].starts_with("recovered an unfinished recording of 2023-11-1"), "{lines:?}");
        assert!(lines[1].contains("1 notes on swell"), "{lines:?}");
        assert!(!path.exists());
        assert!(recover(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
