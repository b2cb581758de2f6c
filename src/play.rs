//! `organ play` and `organ panic`: a terminal frontend over the [`session`].
//!
//! `organ play` plans the score, opens the outputs through a [`Session`], starts the
//! performance, maps keys to session commands (space, q/Esc, +/-, Enter) and draws the
//! session's [`Progress`] as a status line; it prints what the session reports (link lost and
//! back, real-time priority refused, how it ended). Everything else — output lifecycle, engine,
//! signals, the panic hook, releasing the keys on every way out — is the session's.
//!
//! Control thread only.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyModifiers};

use crate::app::{Error, Status};
use crate::engine::{self, End, LatenessStats};
use crate::inputs::PlanArgs;
use crate::midi::{Channel, Micros, ShortMsg};
use crate::organ::{DisconnectPolicy, Organ};
use crate::output::OutputSpec;
use crate::plan::{Timeline, WaitKind};
use crate::session::{self, Command, Ending, Event, Performance, PlayState, Progress, Session, short_time};
use crate::term::{self, RawMode};
use crate::text::shown;

/// What `organ play` was asked.
#[derive(Debug, Clone, Default)]
pub struct PlayArgs {
    pub plan: PlanArgs,
    /// `--to` as given (default: the organ's output).
    pub to: Vec<String>,
    /// Print the timing report at the end.
    pub stats: bool,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Also record what the console sends meanwhile, from this source (`--record`).
    pub record: Option<String>,
    /// The folder for that take (default: the current folder).
    pub record_out: Option<std::path::PathBuf>,
}

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    TogglePause,
    Stop,
    Interrupt,
    /// Ctrl-Z: suspend (keys released, stops drawn off), as the terminal does out of raw mode.
    Suspend,
    Faster,
    Slower,
    /// Enter: go on from a fermata wait.
    Continue,
}

fn key((code, mods): term::Key) -> Option<Key> {
    match code {
        KeyCode::Char('c') | KeyCode::Char('C') if mods.contains(KeyModifiers::CONTROL) => Some(Key::Interrupt),
        KeyCode::Char('z') | KeyCode::Char('Z') if mods.contains(KeyModifiers::CONTROL) => Some(Key::Suspend),
        _ if !term::plain(mods) => None,
        KeyCode::Char(' ') => Some(Key::TogglePause),
        KeyCode::Char('q') | KeyCode::Esc => Some(Key::Stop),
        KeyCode::Char('+') | KeyCode::Char('=') => Some(Key::Faster),
        KeyCode::Char('-') | KeyCode::Char('_') => Some(Key::Slower),
        KeyCode::Enter => Some(Key::Continue),
        _ => None,
    }
}

/// The status line: where we are, how long is left, tempo, registration, worst lateness.
pub fn status_line(p: &Progress) -> String {
    let state = match p.state {
        PlayState::Paused => "paused ",
        PlayState::WaitingForLink if p.link_not_answering => "LINK NOT ANSWERING, waiting ",
        PlayState::WaitingForLink => "LINK DOWN, waiting ",
        PlayState::Waiting(_) => "FERMATA, Enter continues ",
        _ => "",
    };
    let link = match (p.link_down, p.link_not_answering) {
        (false, _) => "",
        (true, false) => "  link down",
        (true, true) => "  link not answering",
    };
    // A hymn: which play-over, verse or amen.
    let section = match &p.section {
        Some(s) if p.hymn => format!("{}, ", s.label),
        _ => String::new(),
    };
    let mut line = format!(
        "{state}{section}bar {}:{} of {}  {} played, {} left  tempo {:.0}%  {}  worst late {} µs{link}",
        p.bar,
        p.beat,
        p.last_bar,
        short_time(p.played),
        short_time(p.remaining),
        p.tempo_percent,
        p.registration,
        p.worst_late_us,
    );
    if let Some(d) = p.link_down_for {
        line.push_str(&format!(" for {:.1} s", d.as_secs_f64()));
    }
    line
}

/// The `--stats` report's first line: lateness.
pub fn stats_report(s: &LatenessStats, dropped: u64) -> String {
    format!(
        "timing: {} messages; lateness p50 {} µs, p99 {} µs, max {} µs, mean {:.1} µs; {} later than 1 ms; {} dropped",
        s.count(),
        s.percentile(50.0),
        s.percentile(99.0),
        s.max(),
        s.mean(),
        s.count_above(engine::LATE.0),
        dropped
    )
}

/// `engine: 2.10 s CPU per minute of music (3.5 %), 1.90 s of it spinning; parks end 1.20 ms
/// before a deadline (0.60-1.90 ms), naps 0.08 ms (0.05-0.30 ms); late: 2 of 412 parks, 0 of
/// 3,904 naps (0 stalls beyond any margin)`, or `None` when the OS gives no CPU time.
pub fn cost_line(cost: &engine::Cost, wake: Option<&engine::WakeStats>) -> Option<String> {
    let per_min = cost.cpu_per_minute()?;
    let ms = |m: Micros| format!("{:.2}", m.0 as f64 / 1000.0);
    let mut line = format!("engine: {per_min:.2} s CPU per minute of music ({:.1} %)", per_min / 60.0 * 100.0);
    if let Some(w) = wake.filter(|_| cost.wall.0 > 0) {
        let spin_per_min = w.spun.0 as f64 / 1e6 * 60e6 / cost.wall.0 as f64;
        let (a, s) = (&w.approach, &w.spin);
        line.push_str(&format!(
            ", {spin_per_min:.2} s of it spinning; parks end {} ms before a deadline ({}-{} ms), naps {} ms \
             ({}-{} ms); late: {} of {} parks, {} of {} naps ({} stalls beyond any margin)",
            ms(a.margin),
            ms(a.min),
            ms(a.max),
            ms(s.margin),
            ms(s.min),
            ms(s.max),
            a.late,
            a.sleeps,
            s.late,
            s.sleeps,
            a.stalls + s.stalls
        ));
    }
    Some(line)
}

/// The deadlines the engine waited for and why any were missed (`--stats`, the lateness
/// benchmark): the CPU taken from a running spin is the machine's doing, a sleep that woke past
/// its deadline the waiting's.
pub fn deadlines_line(wake: &engine::WakeStats) -> String {
    let d = &wake.deadlines;
    let limit = engine::clock::MISSED.0;
    if d.missed() == 0 {
        return format!("deadlines: {} waited for, none reached more than {limit} µs late", d.reached);
    }
    let mut why = Vec::new();
    if d.taken > 0 {
        why.push(format!(
            "{} with the CPU taken from the engine while it spun (worst {}: an interrupt such as the kernel's \
             tick, another program, or a virtual machine's host)",
            d.taken,
            crate::text::short(d.taken_worst)
        ));
    }
    if d.overslept > 0 {
        why.push(format!(
            "{} by a sleep that woke past it (worst {})",
            d.overslept,
            crate::text::short(d.overslept_worst)
        ));
    }
    format!("deadlines: {} waited for, {} reached more than {limit} µs late: {}", d.reached, d.missed(), why.join("; "))
}

/// Whether the engine kept the CPU out of deep idle states (`--stats`, selftest).
pub fn awake_line(awake: engine::Awake) -> &'static str {
    match awake {
        engine::Awake::Held => {
            "idle states: the CPU was kept out of deep idle states while playing (/dev/cpu_dma_latency held at 0)"
        }
        engine::Awake::Refused => {
            "idle states: deep idle states allowed (/dev/cpu_dma_latency is not writable; README, \"The idle-state request\", says how to allow it): wake-ups may be later"
        }
        engine::Awake::Unknown | engine::Awake::NotAsked => "idle states: not asked",
    }
}

/// Lines on stderr above the status line (raw mode needs `\r\n` and a cleared line).
struct StatusArea {
    raw: Option<RawMode>,
    last_len: usize,
}

impl StatusArea {
    fn say(&self, msg: &str) {
        let msg = shown(msg);
        if self.raw.is_some() {
            let _ = write!(std::io::stderr(), "\r{msg:<width$}\r\n", width = self.last_len);
        } else {
            err!("{msg}");
        }
    }

    /// Redraws the status line; false when the terminal cannot be written (it went away).
    fn draw(&mut self, line: &str) -> bool {
        let width = crossterm::terminal::size().map_or(100, |(w, _)| usize::from(w)).saturating_sub(1);
        let width = if width < 20 { 100 } else { width };
        let line: String = shown(line).chars().take(width).collect();
        let pad = self.last_len.saturating_sub(line.chars().count());
        let mut e = std::io::stderr().lock();
        let written = write!(e, "\r{line}{:pad$}", "").and_then(|()| e.flush());
        self.last_len = line.chars().count();
        written.is_ok()
    }

    /// Leaves raw mode, ending the status line.
    fn close(mut self) {
        self.raw.take();
        if self.last_len > 0 {
            err!();
        }
    }
}

/// `organ play`.
///
/// # Errors
/// Inputs, outputs, or an output failing during playback.
pub fn cmd_play(c: &PlayArgs) -> Result<Status, Error> {
    session::install_panic_hook();
    session::install_signal_handling();
    let (inputs, timeline) = crate::inputs::load_and_plan(&c.plan)?;
    let organ = &inputs.organ;
    let specs = session::output_specs(&c.to, organ.output.as_deref(), &organ.source)?;
    // `--to wav:FILE` on the command line is rendered offline by the built-in voice, before any
    // real-time output opens; with no other `--to`, that is all. (An organ's `output = "wav:…"`
    // is not rendered: the session refuses to open it.)
    let (wavs, specs): (Vec<OutputSpec>, Vec<OutputSpec>) = match c.to.is_empty() {
        true => (Vec::new(), specs),
        false => specs.into_iter().partition(|s| matches!(s, OutputSpec::Wav(_))),
    };
    if !wavs.is_empty() {
        if let Some(status) = render_wavs(&wavs, specs.is_empty(), &inputs.score, &timeline, c.quiet)? {
            return Ok(status);
        }
        if specs.is_empty() {
            return Ok(0);
        }
    }
    let mut session = Session::new(specs, organ.on_disconnect);
    let notes = session.open_outputs(false)?;
    let names = session.output_names();
    let interactive = !c.quiet && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    // --record: what the console sends meanwhile, as a take of its own (self-contained: its own
    // input, journal thread and files; finished after the engine). Opened before anything is
    // said to play, so that a source that cannot be opened is the only line.
    let recorder = match &c.record {
        Some(src) => {
            let (r, recovered) = crate::input::record::start_for_play(
                src,
                c.record_out.as_deref(),
                organ,
                c.plan.organ.as_deref(),
                &timeline.score_name,
            )
            .map_err(|e| match e {
                // Named as the flag that gave it (the input's own message says --from).
                crate::input::record::RecordError::Input(i) => Error::Other(i.for_flag("--record")),
                e => Error::Other(e.to_string()),
            })?;
            for line in recovered {
                err!("organ: record: {}", shown(&line));
            }
            Some(r)
        }
        None => None,
    };
    if !c.quiet {
        for n in &notes {
            err!("organ: {}", shown(n));
        }
        for w in crate::app::all_warnings(&inputs.score, &timeline) {
            err!("organ: warning: {}", shown(&w));
        }
        let keys = match interactive {
            false => "",
            true if timeline.waits.iter().any(|w| w.kind == WaitKind::Fermata) => {
                "; space pause, q stop, +/- tempo, Enter goes on from a fermata"
            }
            true => "; space pause, q stop, +/- tempo",
        };
        err!(
            "organ: playing {} on {} → {} ({}, {} bars{keys})",
            shown(&timeline.score_name),
            shown(&timeline.organ_name),
            shown(&names.join(", ")),
            timeline.duration,
            timeline.last_bar,
        );
    }
    session.start(Performance::new(Arc::new(timeline), organ.on_disconnect))?;
    let (ending, interrupted) = follow(&mut session, c.quiet, interactive);
    if let Some(r) = recorder {
        match r.finish() {
            Ok(done) if !c.quiet => done.report().iter().for_each(|l| err!("organ: record: {}", shown(l))),
            Ok(_) => {}
            Err(e) => err!("organ: record: {e}; the journal stays and is made into a take at the next start"),
        }
    }
    let finished = session.finish();
    report(c, &ending, interrupted, finished)
}

/// Follows the performance to its end: keys to commands, events to lines, the status line.
/// Returns how it ended and whether Ctrl-C was pressed.
fn follow(session: &mut Session, quiet: bool, interactive: bool) -> (Box<Ending>, bool) {
    let mut area = StatusArea { raw: if interactive { RawMode::enable() } else { None }, last_len: 0 };
    let keys = area.raw.as_ref().map(|_| term::key_reader());
    // A test hook: make the control thread panic mid-piece, to prove that path releases too.
    let test_panic_after = std::env::var("ORGAN_TEST_PANIC_AFTER_MS").ok().and_then(|v| v.parse::<u64>().ok());
    let started = Instant::now();
    let mut interrupted = false;
    loop {
        while let Some(k) = keys.as_ref().and_then(|rx| rx.try_recv().ok()) {
            let command = match key(k) {
                None => continue,
                Some(Key::TogglePause) => Command::TogglePause,
                Some(Key::Stop) => Command::Stop,
                Some(Key::Interrupt) => {
                    // As SIGINT: the first stops, a second hurries the stop.
                    interrupted = true;
                    session::interrupt();
                    continue;
                }
                Some(Key::Suspend) => {
                    session::suspend_key();
                    continue;
                }
                Some(Key::Continue) => Command::Continue,
                Some(Key::Faster) => Command::NudgeSpeed(1),
                Some(Key::Slower) => Command::NudgeSpeed(-1),
            };
            session.send(command);
        }
        let mut ended = None;
        for e in session.poll() {
            match e {
                Event::RealtimeRefused if !quiet => area.say(
                    "organ: note: real-time scheduling was refused (allow it with `ulimit -r` / limits.conf rtprio, or run as root); playing at normal priority",
                ),
                Event::LinkLost(line) | Event::LinkBack(line) if !quiet => area.say(&format!("organ: {line}")),
                Event::Ended(e) => ended = Some(e),
                _ => {}
            }
        }
        if let Some(e) = ended {
            area.close();
            return (e, interrupted);
        }
        // Without a terminal nobody can press Enter: fermata waits are passed at once.
        if keys.is_none() && matches!(session.progress().state, PlayState::Waiting(_)) {
            session.send(Command::Continue);
        }
        // The terminal went away (EIO; the keys cannot reach us any more): as when it is
        // closed (SIGHUP, which may come too, or not), a stop.
        if area.raw.is_some() && !term::suspended() && (!area.draw(&status_line(session.progress())) || term::is_lost())
        {
            session::terminal_lost();
        }
        if test_panic_after.is_some_and(|ms| started.elapsed() > Duration::from_millis(ms)) {
            panic!("test panic on the control thread (ORGAN_TEST_PANIC_AFTER_MS)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The summary, the outputs' reports, the timing report, and the exit status.
///
/// "every key released" only when every output took the release (what the engine saw as it
/// ended, then what finishing the outputs found: [`Ending::unreleased`],
/// [`session::Finished::unreleased`]); otherwise `KEYS MAY STILL SOUND on …` and, for each such
/// output, why and what to do — shown even with `--quiet`. A `file:` record the release did not
/// reach is said to be incomplete: nothing sounds from a file.
fn report(c: &PlayArgs, ending: &Ending, interrupted: bool, finished: session::Finished) -> Result<Status, Error> {
    let sig = session::signal_received();
    let names = ending.outputs.join(", ");
    let mut unsure = ending.unreleased();
    for u in finished.unreleased() {
        session::note_unreleased(&mut unsure, u);
    }
    let verdict = session::release_verdict(&unsure, ending.outputs.len());
    let may_sound = unsure.iter().any(|u| !u.record);
    if !c.quiet || may_sound {
        let how = match ending.end {
            End::Finished if unsure.is_empty() => "played".to_string(),
            End::Finished => format!("played; {verdict}"),
            End::Stopped if sig != 0 || interrupted => format!("interrupted; {verdict}"),
            End::Stopped => format!("stopped; {verdict}"),
            End::OutputFailed { .. } => format!("stopped by an output failure; {verdict}"),
            End::Panicked => format!("stopped by an internal error; {verdict}"),
        };
        err!("organ: {how}: {} messages sent to {}", ending.sent, shown(&names));
    }
    if !c.quiet && !ending.held_up.is_zero() {
        err!(
            "organ: the music stood still for {:.1} s while organ was held up (stopped with SIGSTOP, or starved of CPU), and went on from where it stood",
            ending.held_up.as_secs_f64()
        );
    }
    // Link losses, drops, keys that may still sound: shown even with --quiet when the link was
    // down at the end.
    if !c.quiet || ending.link_down_at_end {
        for r in &finished.reports {
            err!("organ: {}", shown(r));
        }
    }
    // Where the release may not have arrived: why, and what to do.
    if !c.quiet || may_sound {
        for u in unsure.iter().filter(|u| !c.quiet || !u.record) {
            err!("{}", session::release_advice(u));
        }
    }
    if c.stats {
        out!("{}", stats_report(&ending.stats, ending.dropped));
        if let Some(line) = cost_line(&ending.cost, ending.wake.as_ref()) {
            out!("{line}");
        }
        if let Some(w) = &ending.wake {
            out!("{}", deadlines_line(w));
        }
        out!("{}", awake_line(ending.awake));
        let first = ending.first_sent.zip(crate::PROCESS_START.get()).map(|(at, p)| at.saturating_duration_since(*p));
        if let Some(d) = first {
            out!("start-up: the first message was sent {:.1} ms after organ started", d.as_secs_f64() * 1000.0);
        }
        for line in &finished.stats {
            out!("{}", shown(line));
        }
    }
    if let Some(e) = finished.errors.into_iter().next() {
        return Err(Error::Finish(e));
    }
    match ending.end {
        End::OutputFailed { error, .. } => Err(Error::Other(format!(
            "{}: {error}; playback stopped; {verdict}",
            ending.failed_output.as_deref().unwrap_or("an output")
        ))),
        End::Panicked => Err(Error::Other(format!("the engine stopped on an internal error; {verdict}"))),
        End::Stopped if sig != 0 => Ok(128 + sig),
        End::Stopped if interrupted => Ok(130),
        End::Stopped => Ok(0),
        End::Finished => Ok(0),
    }
}

/// Renders each `--to wav:FILE` with the built-in organ voice, offline. `alone`: no real-time
/// output follows (so the plan's warnings are told here). Ctrl-C stops it, leaving a valid file
/// of what was rendered; then it returns the exit status.
///
/// # Errors
/// A WAV file that cannot be written.
fn render_wavs(
    wavs: &[OutputSpec],
    alone: bool,
    score: &crate::score::Score,
    timeline: &Timeline,
    quiet: bool,
) -> Result<Option<Status>, Error> {
    if !quiet && alone {
        for w in crate::app::all_warnings(score, timeline) {
            err!("organ: warning: {}", crate::text::shown(&w.to_string()));
        }
    }
    for spec in wavs {
        let OutputSpec::Wav(path) = spec else { continue };
        let started = Instant::now();
        let r = crate::voice::render_wav(timeline, path, || session::signal_received() != 0)?;
        if !r.complete {
            if !quiet {
                err!(
                    "organ: interrupted: {} holds the first {:.1} s of {}",
                    crate::text::shown(&path.display().to_string()),
                    r.seconds(),
                    timeline.duration
                );
            }
            return Ok(Some(128 + session::signal_received()));
        }
        if !quiet {
            let took = started.elapsed().as_secs_f64();
            err!(
                "organ: rendered {} on {} with the built-in organ voice → {} ({:.1} s of audio in {:.2} s, {:.0}× real time)",
                crate::text::shown(&timeline.score_name),
                crate::text::shown(&timeline.organ_name),
                crate::text::shown(&path.display().to_string()),
                r.seconds(),
                took,
                r.seconds() / took.max(1e-6)
            );
        }
    }
    Ok(None)
}

/// `organ panic`: every key of every division channel off, CC 123, then the cancel.
///
/// # Errors
/// No output, or an output that cannot be opened.
pub fn cmd_panic(to: &[String], organ: Option<&str>) -> Result<Status, Error> {
    let organ = organ.map(Organ::find).transpose()?;
    if organ.is_none() && to.is_empty() {
        return Err(Error::Usage("organ panic needs --to OUTPUT (or --organ NAME with a default output)".into()));
    }
    let (default, source, policy) = match &organ {
        Some(o) => (o.output.as_deref(), o.source.as_str(), o.on_disconnect),
        None => (None, "", DisconnectPolicy::Pause),
    };
    let mut session = Session::new(session::output_specs(to, default, source)?, policy);
    session.open_outputs(false)?;
    let PanicMessages { keys_off, cancel, pace, channels } = panic_messages(organ.as_ref());
    let failed = session.send_now(&keys_off, &cancel, pace);
    let finished = session.finish();
    if let Some((name, e)) = failed.into_iter().next() {
        return Err(Error::Other(format!("{name}: {e}")));
    }
    if let Some(e) = finished.errors.into_iter().next() {
        return Err(Error::Finish(e));
    }
    err!(
        "organ: panic sent: note-off for every key on channel(s) {}, all-notes-off{}",
        channels.iter().map(|c| c.user().to_string()).collect::<Vec<_>>().join(", "),
        if cancel.is_empty() { String::new() } else { ", cancel".into() }
    );
    Ok(0)
}

/// What a panic sends ([`cmd_panic`], and the panic button of `organ service`): a note-off for
/// every key and all-notes-off on each division channel (every channel without an organ), then
/// the organ's cancel, paced as its stops are.
#[derive(Debug, Clone)]
pub struct PanicMessages {
    pub keys_off: Vec<Vec<u8>>,
    pub cancel: Vec<Vec<u8>>,
    pub pace: Micros,
    pub channels: Vec<Channel>,
}

/// The panic messages for `organ` (or for any organ: all 16 channels, no cancel).
pub fn panic_messages(organ: Option<&Organ>) -> PanicMessages {
    let channels: Vec<Channel> = match organ {
        Some(o) => o.divisions.iter().map(|d| d.channel).collect(),
        None => (0..16).filter_map(Channel::new).collect(),
    };
    let mut keys_off: Vec<Vec<u8>> = Vec::new();
    for &ch in &channels {
        for key in 0..128u8 {
            keys_off.push(ShortMsg::note_off(ch, key).as_bytes().to_vec());
        }
    }
    for &ch in &channels {
        keys_off.push(ShortMsg::all_notes_off(ch).as_bytes().to_vec());
    }
    let pace = organ.map_or(Micros::ZERO, |o| o.stop_pace);
    let cancel = organ.map(|o| o.cancel_messages().iter().map(|m| m.as_bytes().to_vec()).collect()).unwrap_or_default();
    PanicMessages { keys_off, cancel, pace, channels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_says_whether_the_link_is_lost_or_not_answering() {
        let mut p = Progress { state: PlayState::WaitingForLink, link_down: true, ..Progress::default() };
        p.link_down_for = Some(Duration::from_millis(1500));
        let lost = status_line(&p);
        assert!(lost.starts_with("LINK DOWN, waiting bar ") && lost.ends_with("  link down for 1.5 s"), "{lost}");
        p.link_not_answering = true;
        let doubt = status_line(&p);
        assert!(doubt.starts_with("LINK NOT ANSWERING, waiting bar "), "{doubt}");
        assert!(doubt.ends_with("  link not answering for 1.5 s"), "{doubt}");
        p.state = PlayState::Playing;
        assert!(status_line(&p).starts_with("bar "), "continue: playing on");
        p.link_down = false;
        p.link_down_for = None;
        assert!(!status_line(&p).contains("link"));
    }
}
