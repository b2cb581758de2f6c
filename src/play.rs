//! `organ play`, `organ ports` and `organ panic`: outputs opened, the engine started on its own
//! thread, and the control thread drawing the status line, reading keys and handling signals.
//!
//! Every way out releases the keys: the end of the plan (its own tail), q/Esc (Stop command),
//! Ctrl-C/SIGTERM/SIGHUP (the signal thread sets [`engine::STOP_ALL`] and wakes the engine), an
//! output error (the engine releases the other outputs), a panic on the engine thread (caught
//! there) or elsewhere (the panic hook stops the engine and waits for its release).

mod link_watch;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::app::{Error, Status, make_plan};
use crate::cli::{PanicCmd, PlayCmd};
use crate::engine::{self, Command, End, Shared, State, SystemClock};
use crate::midi::{Channel, Micros, ShortMsg};
use crate::organ::Organ;
use crate::output::{self, Output, Stamp};
use crate::plan::Timeline;
use link_watch::LinkWatch;

/// The signal that stopped playback (0 = none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The running engine's thread and telemetry, for the signal thread and the panic hook (the
/// service view starts one engine per item, so this is replaced as they come and go).
static ENGINE: Mutex<Option<(Option<Thread>, Arc<Shared>)>> = Mutex::new(None);

/// Makes `handle`'s engine the one that signals and panics stop and wait for.
pub fn register_engine(handle: &engine::EngineHandle) {
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
            eprintln!("organ: internal error: {msg}{at} (please report it); the keys were released");
        }));
    });
}

/// Raw terminal mode for single-key commands; restored on drop (and by the panic hook).
struct RawMode;

impl RawMode {
    fn enable() -> Option<RawMode> {
        crossterm::terminal::enable_raw_mode().ok().map(|()| RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Owns the running engine. Dropping it — an early return, or a panic unwinding through the
/// control thread — stops the engine, waits for its release and finishes the outputs, so every
/// key is released and a file output is still written.
struct Running {
    handle: Option<engine::EngineHandle>,
}

impl Running {
    fn join(mut self) -> engine::Report {
        self.handle.take().expect("joined once").join()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut h) = self.handle.take() {
            h.send(Command::Stop);
            let mut report = h.join();
            for o in &mut report.outputs {
                let _ = o.finish();
            }
        }
    }
}

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    TogglePause,
    Stop,
    Interrupt,
    Faster,
    Slower,
    /// Enter: go on from a fermata wait.
    Continue,
}

fn key_reader() -> crossbeam_channel::Receiver<Key> {
    use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};
    let (tx, rx) = crossbeam_channel::unbounded();
    let _ = std::thread::Builder::new().name("organ-keys".into()).spawn(move || {
        loop {
            match crossterm::event::poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let Ok(Event::Key(k)) = crossterm::event::read() else { continue };
            if k.kind == KeyEventKind::Release {
                continue;
            }
            // Plain keys only: a NUL byte from a terminal reads as Ctrl+Space and must not pause.
            let plain = !k.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SUPER);
            let key = match k.code {
                KeyCode::Char('c') | KeyCode::Char('C') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    Key::Interrupt
                }
                _ if !plain => continue,
                KeyCode::Char(' ') => Key::TogglePause,
                KeyCode::Char('q') | KeyCode::Esc => Key::Stop,
                KeyCode::Char('+') | KeyCode::Char('=') => Key::Faster,
                KeyCode::Char('-') | KeyCode::Char('_') => Key::Slower,
                KeyCode::Enter => Key::Continue,
                _ => continue,
            };
            if tx.send(key).is_err() {
                return;
            }
        }
    });
    rx
}

/// The status line: where we are, how long is left, tempo, registration, worst lateness.
pub fn status_line(t: &Timeline, shared: &Shared) -> String {
    let next = shared.next.load(Ordering::Relaxed).min(t.events.len());
    let plan_time = Micros(shared.plan_time.load(Ordering::Relaxed)).min(t.duration);
    let pos = if next == 0 {
        t.meter.position(t.events.first().map_or(0, |e| e.tick))
    } else {
        t.position(&t.events[next - 1])
    };
    let speed = f64::from(shared.speed.load(Ordering::Relaxed)) / 1000.0;
    let remaining = Micros(((t.duration.0.saturating_sub(plan_time.0)) as f64 / speed) as u64);
    let state = match shared.state() {
        State::Paused => "paused ",
        State::WaitingForLink => "LINK DOWN, waiting ",
        State::Waiting => "FERMATA, Enter continues ",
        State::Finished | State::Stopped | State::Failed => "",
        _ => "",
    };
    let reg = t.registration_at(plan_time).map(|r| registration_name(t, &r.drawn)).unwrap_or_default();
    let link = if shared.link_down.load(Ordering::Relaxed) { "  link down" } else { "" };
    // A hymn: which play-over, verse or amen.
    let section = match t.events.get(next.saturating_sub(1)).and_then(|e| t.section_of(e)) {
        Some(s) if t.is_hymn() => format!("{}, ", s.label()),
        _ => String::new(),
    };
    format!(
        "{state}{section}bar {}:{} of {}  {} played, {} left  tempo {:.0}%  {reg}  worst late {} µs{link}",
        pos.bar,
        pos.beat,
        t.last_bar,
        short_time(plan_time),
        short_time(remaining),
        t.speed_percent * speed,
        shared.worst_late.load(Ordering::Relaxed),
    )
}

/// `m:ss.s`.
fn short_time(t: Micros) -> String {
    let ds = t.0 / 100_000;
    format!("{}:{:02}.{}", ds / 600, (ds / 10) % 60, ds % 10)
}

/// A registration for people: the preset it equals or nearly equals, with the differences
/// ("mf +Sw to Ped"), else the names when few, else a count.
pub fn registration_name(t: &Timeline, drawn: &[usize]) -> String {
    if drawn.is_empty() {
        return "no stops".into();
    }
    let best = t
        .presets
        .iter()
        .map(|(name, ids)| {
            let plus: Vec<usize> = drawn.iter().copied().filter(|d| !ids.contains(d)).collect();
            let minus: Vec<usize> = ids.iter().copied().filter(|i| !drawn.contains(i)).collect();
            (plus.len() + minus.len(), name, plus, minus)
        })
        .min_by_key(|x| x.0);
    match best {
        Some((d, name, plus, minus)) if d <= 3 => {
            let mut s = name.clone();
            for p in plus {
                s.push_str(&format!(" +{}", t.controls[p].name));
            }
            for m in minus {
                s.push_str(&format!(" -{}", t.controls[m].name));
            }
            s
        }
        _ if drawn.len() <= 3 => drawn.iter().map(|&c| t.controls[c].name.as_str()).collect::<Vec<_>>().join(", "),
        _ => format!("{} stops", drawn.len()),
    }
}

/// The `--stats` report: lateness, then what the engine thread cost and how it waited.
pub fn stats_report(r: &engine::Report) -> String {
    let s = &r.stats;
    let mut out = format!(
        "timing: {} messages; lateness p50 {} µs, p99 {} µs, max {} µs, mean {:.1} µs; {} later than 1 ms; {} dropped",
        s.count(),
        s.percentile(50.0),
        s.percentile(99.0),
        s.max(),
        s.mean(),
        s.count_above(engine::LATE.0),
        r.dropped
    );
    if let Some(line) = cost_line(&r.cost, r.wake.as_ref()) {
        out.push('\n');
        out.push_str(&line);
    }
    out
}

/// `engine: 2.10 s CPU per minute of music (3.5 %), 1.90 s of it spinning; parks end 1.20 ms
/// before a deadline (0.60-1.90 ms), naps 0.08 ms (0.05-0.30 ms); late: 2 of 412 parks, 0 of
/// 3,904 naps`, or `None` when the OS gives no CPU time.
pub fn cost_line(cost: &engine::Cost, wake: Option<&engine::WakeStats>) -> Option<String> {
    let per_min = cost.cpu_per_minute()?;
    let ms = |m: Micros| format!("{:.2}", m.0 as f64 / 1000.0);
    let mut line = format!("engine: {per_min:.2} s CPU per minute of music ({:.1} %)", per_min / 60.0 * 100.0);
    if let Some(w) = wake.filter(|_| cost.wall.0 > 0) {
        let spin_per_min = w.spun.0 as f64 / 1e6 * 60e6 / cost.wall.0 as f64;
        let (a, s) = (&w.approach, &w.spin);
        line.push_str(&format!(
            ", {spin_per_min:.2} s of it spinning; parks end {} ms before a deadline ({}-{} ms), naps {} ms \
             ({}-{} ms); late: {} of {} parks, {} of {} naps",
            ms(a.margin),
            ms(a.min),
            ms(a.max),
            ms(s.margin),
            ms(s.min),
            ms(s.max),
            a.late,
            a.sleeps,
            s.late,
            s.sleeps
        ));
    }
    Some(line)
}

/// Opens the outputs named by `--to`, or the organ's default output.
///
/// # Errors
/// No output given and none in the organ file; an output that cannot be opened.
pub fn open_outputs(to: &[String], organ: &Organ, notes: &mut Vec<String>) -> Result<Vec<Box<dyn Output>>, Error> {
    let specs: Vec<String> = if to.is_empty() {
        match &organ.output {
            Some(o) => vec![o.clone()],
            None => {
                return Err(Error::Usage(format!(
                    "no output: add --to {} (or set output = \"…\" in {})",
                    output::SPEC_FORMS,
                    organ.source
                )));
            }
        }
    } else {
        to.to_vec()
    };
    if specs.len() > engine::MAX_OUTPUTS {
        return Err(Error::Usage(format!("at most {} outputs at once", engine::MAX_OUTPUTS)));
    }
    specs.iter().map(|s| output::open(s, organ.on_disconnect, notes).map_err(Error::Other)).collect()
}

/// `organ play`.
///
/// # Errors
/// Inputs, outputs, or an output failing during playback.
pub fn cmd_play(c: &PlayCmd) -> Result<Status, Error> {
    install_panic_hook();
    install_signal_handling();
    let (inputs, timeline) = make_plan(&c.plan)?;
    let timeline = Arc::new(timeline);
    let mut notes = Vec::new();
    let mut outputs = open_outputs(&c.to, &inputs.organ, &mut notes)?;
    for o in &mut outputs {
        o.prepare(&timeline).map_err(|e| Error::Other(format!("{}: {e}", o.name())))?;
    }
    let names: Vec<String> = outputs.iter().map(|o| o.name().to_string()).collect();
    let interactive = !c.quiet && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !c.quiet {
        for n in &notes {
            eprintln!("organ: {n}");
        }
        for w in crate::app::all_warnings(&inputs.score, &timeline) {
            eprintln!("organ: warning: {w}");
        }
        eprintln!(
            "organ: playing {} on {} → {} ({}, {} bars{})",
            timeline.score_name,
            timeline.organ_name,
            names.join(", "),
            timeline.duration,
            timeline.last_bar,
            if interactive {
                if timeline.waits.iter().any(|w| w.kind == crate::plan::WaitKind::Fermata) {
                    "; space pause, q stop, +/- tempo, Enter goes on from a fermata"
                } else {
                    "; space pause, q stop, +/- tempo"
                }
            } else {
                ""
            }
        );
    }
    let config = engine::Config { on_disconnect: inputs.organ.on_disconnect, ..engine::Config::default() };
    let clock = SystemClock::new();
    let clock_epoch = Instant::now();
    let (eng, handle) = engine::new(timeline.clone(), outputs, clock, config);
    let handle =
        engine::spawn(eng, handle).map_err(|e| Error::Other(format!("cannot start the engine thread: {e}")))?;
    register_engine(&handle);
    if engine::STOP_ALL.load(Ordering::SeqCst) {
        handle.wake();
    }
    let mut running = Running { handle: Some(handle) };
    let handle = running.handle.as_mut().expect("just set");
    // A test hook: make the control thread panic mid-piece, to prove that path releases too.
    let test_panic_after = std::env::var("ORGAN_TEST_PANIC_AFTER_MS").ok().and_then(|v| v.parse::<u64>().ok());
    let started = Instant::now();

    let raw = if interactive { RawMode::enable() } else { None };
    let keys = if raw.is_some() { Some(key_reader()) } else { None };
    let mut interrupted = false;
    let mut rt_reported = false;
    let mut speed = handle.shared.speed.load(Ordering::Relaxed);
    let mut last_len = 0usize;
    let mut links = LinkWatch::new(inputs.organ.on_disconnect);
    while !handle.is_finished() {
        if let Some(rx) = &keys {
            while let Ok(k) = rx.try_recv() {
                match k {
                    Key::TogglePause => {
                        handle.send(Command::TogglePause);
                    }
                    Key::Stop => {
                        handle.send(Command::Stop);
                    }
                    Key::Interrupt => {
                        interrupted = true;
                        handle.send(Command::Stop);
                    }
                    Key::Continue => {
                        handle.send(Command::Continue);
                    }
                    Key::Faster | Key::Slower => {
                        // 5 % steps of the planned speed, counted here so that quick presses add up.
                        speed = if k == Key::Faster { speed + 50 } else { speed.saturating_sub(50) }.clamp(100, 4000);
                        handle.send(Command::Speed(speed));
                    }
                }
            }
        }
        // Without a terminal nobody can press Enter: fermata waits are passed at once.
        if keys.is_none() && handle.shared.state() == State::Waiting {
            handle.send(Command::Continue);
        }
        if !rt_reported && handle.shared.realtime.load(Ordering::Relaxed) == 2 {
            rt_reported = true;
            if !c.quiet {
                let msg = "organ: note: real-time scheduling was refused (allow it with `ulimit -r` / limits.conf rtprio, or run as root); playing at normal priority";
                if raw.is_some() {
                    eprint!("\r{msg:<last_len$}\r\n");
                } else {
                    eprintln!("{msg}");
                }
            }
        }
        if let Some(msg) = links.poll(&timeline, &handle.shared)
            && !c.quiet
        {
            if raw.is_some() {
                eprint!("\r{:<last_len$}\r\n", format!("organ: {msg}"));
            } else {
                eprintln!("organ: {msg}");
            }
        }
        if raw.is_some() {
            let mut line = status_line(&timeline, &handle.shared);
            if let Some(d) = links.down_for() {
                line.push_str(&format!(" for {:.1} s", d.as_secs_f64()));
            }
            let width = crossterm::terminal::size().map_or(100, |(w, _)| usize::from(w)).saturating_sub(1);
            let width = if width < 20 { 100 } else { width };
            let line: String = line.chars().take(width).collect();
            let pad = last_len.saturating_sub(line.chars().count());
            eprint!("\r{line}{:pad$}", "");
            last_len = line.chars().count();
            let _ = std::io::stderr().flush();
        }
        if test_panic_after.is_some_and(|ms| started.elapsed() > Duration::from_millis(ms)) {
            panic!("test panic on the control thread (ORGAN_TEST_PANIC_AFTER_MS)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Final once the engine has ended: whether a link was down when it sent its release.
    let link_down_at_end = handle.shared.link_down.load(Ordering::SeqCst);
    let report = running.join();
    drop(raw);
    if last_len > 0 {
        eprintln!();
    }
    let mut report = report;
    let mut outputs = std::mem::take(&mut report.outputs);
    let mut finish_errors = Vec::new();
    for o in &mut outputs {
        if let Err(e) = o.finish() {
            finish_errors.push(e);
        }
    }
    let sig = SIGNAL.load(Ordering::SeqCst);
    let released =
        if link_down_at_end { "a link was down, so the release may not have arrived" } else { "every key released" };
    if !c.quiet {
        let how = match report.end {
            End::Finished if link_down_at_end => format!("played; {released}"),
            End::Finished => "played".to_string(),
            End::Stopped if sig != 0 || interrupted => format!("interrupted; {released}"),
            End::Stopped => format!("stopped; {released}"),
            End::OutputFailed { .. } => "stopped by an output failure; the other outputs were released".to_string(),
            End::Panicked => "stopped by an internal error; the keys were released".to_string(),
        };
        eprintln!("organ: {how}: {} messages sent to {}", report.sent, names.join(", "));
    }
    // Link losses, drops, keys that may still sound: shown even with --quiet when the link was
    // down at the end.
    if !c.quiet || link_down_at_end {
        for r in outputs.iter().filter_map(|o| o.report()) {
            eprintln!("organ: {r}");
        }
    }
    if c.stats {
        println!("{}", stats_report(&report));
        let first = handle_first_sent(&report, clock_epoch);
        if let Some(d) = first {
            println!("start-up: the first message was sent {:.1} ms after organ started", d.as_secs_f64() * 1000.0);
        }
    }
    if let Some(e) = finish_errors.into_iter().next() {
        return Err(Error::Other(e));
    }
    match report.end {
        End::OutputFailed { output, error } => Err(Error::Other(format!(
            "{}: {error}; playback stopped and the other outputs were released",
            names[output]
        ))),
        End::Panicked => Err(Error::Other("the engine stopped on an internal error; the keys were released".into())),
        End::Stopped if sig != 0 => Ok(128 + sig),
        End::Stopped if interrupted => Ok(130),
        End::Stopped => Ok(0),
        End::Finished => Ok(0),
    }
}

/// When the first message was sent, from the start of the process.
fn handle_first_sent(report: &engine::Report, clock_epoch: Instant) -> Option<Duration> {
    let first = report.first_sent?;
    let at = clock_epoch + Duration::from_micros(first.0);
    Some(at.saturating_duration_since(*crate::PROCESS_START.get()?))
}

/// `organ ports`.
///
/// # Errors
/// No MIDI system.
pub fn cmd_ports() -> Result<Status, Error> {
    let ports = output::port::list().map_err(Error::Other)?;
    if ports.is_empty() {
        println!("no MIDI output ports (is the interface plugged in and switched on?)");
    }
    for (i, name) in ports {
        println!("{i}: {name}");
    }
    Ok(0)
}

/// `organ panic`: every key of every division channel off, CC 123, then the cancel.
///
/// # Errors
/// No output, or an output that cannot be opened.
pub fn cmd_panic(c: &PanicCmd) -> Result<Status, Error> {
    let organ = c.organ.as_deref().map(Organ::find).transpose()?;
    let mut notes = Vec::new();
    let mut outputs = match &organ {
        Some(o) => open_outputs(&c.to, o, &mut notes)?,
        None if c.to.is_empty() => {
            return Err(Error::Usage("organ panic needs --to OUTPUT (or --organ NAME with a default output)".into()));
        }
        None => {
            c.to.iter()
                .map(|s| output::open(s, crate::organ::DisconnectPolicy::Pause, &mut notes).map_err(Error::Other))
                .collect::<Result<_, _>>()?
        }
    };
    let channels: Vec<Channel> = match &organ {
        Some(o) => o.divisions.iter().map(|d| d.channel).collect(),
        None => (0..16).filter_map(Channel::new).collect(),
    };
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    for &ch in &channels {
        for key in 0..128u8 {
            msgs.push(ShortMsg::note_off(ch, key).as_bytes().to_vec());
        }
    }
    for &ch in &channels {
        msgs.push(ShortMsg::all_notes_off(ch).as_bytes().to_vec());
    }
    let pace = organ.as_ref().map_or(Micros::ZERO, |o| o.stop_pace);
    let cancel: Vec<Vec<u8>> =
        organ.as_ref().map(|o| o.cancel_messages().iter().map(|m| m.as_bytes().to_vec()).collect()).unwrap_or_default();
    let clock = SystemClock::new();
    let mut failures = Vec::new();
    for o in &mut outputs {
        let mut send = |b: &[u8]| {
            let now = crate::engine::Clock::now(&clock);
            o.send(b, Stamp { plan: now, due: now, now })
        };
        let mut err = None;
        for m in &msgs {
            if let Err(e) = send(m) {
                err = Some(e);
                break;
            }
        }
        for m in &cancel {
            if err.is_some() {
                break;
            }
            if let Err(e) = send(m) {
                err = Some(e);
            }
            std::thread::sleep(Duration::from_micros(pace.0));
        }
        if let Some(e) = err {
            failures.push(format!("{}: {e}", o.name()));
        }
        if let Err(e) = o.finish() {
            failures.push(e);
        }
    }
    if let Some(f) = failures.into_iter().next() {
        return Err(Error::Other(f));
    }
    eprintln!(
        "organ: panic sent: note-off for every key on channel(s) {}, all-notes-off{}",
        channels.iter().map(|c| c.user().to_string()).collect::<Vec<_>>().join(", "),
        if cancel.is_empty() { String::new() } else { ", cancel".into() }
    );
    Ok(0)
}
