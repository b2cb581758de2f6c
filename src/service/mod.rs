//! `organ service FILE`: playing for a service from one full-screen terminal view.
//!
//! The person at the laptop is often not an organist. The view shows the order of service with
//! the current item highlighted, what is playing (verse, bar, tempo, registration), what comes
//! next, and one help line; Enter starts the selected item or goes on from a wait, s stops now.
//!
//! Threads: this module runs on the control thread — it reads keys, plans items as they are
//! started (pure planning, allocation allowed), and draws. Each item is played by its own
//! engine thread ([`crate::engine`]); the outputs are handed to it and come back in its report,
//! so one set of outputs (and one clock, so a file record is one continuous take) serves the
//! whole service.
//!
//! Every way out leaves no key down: s/Esc and quitting stop the engine (exact release, CC 123,
//! cancel); Ctrl-C, SIGTERM and SIGHUP set the global stop flag, which the engine obeys; a
//! panic in the view is caught here, the engine is stopped and joined, and the terminal is
//! restored by a guard that also runs while unwinding.

pub mod order;
pub mod view;

use std::io::{IsTerminal, Stdout, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::app::{Error, Status};
use crate::engine::{self, Command, End, EngineHandle, State, SystemClock};
use crate::midi::Micros;
use crate::output::{self, Output};
use crate::plan::{SectionKind, Timeline, WaitKind};
use crate::score::tempo::bpm;
use order::Order;
use view::{Row, Screen, Tone};

/// What `organ service` was asked.
#[derive(Debug, Clone)]
pub struct ServiceArgs {
    pub file: PathBuf,
    pub to: Vec<String>,
    pub organ: Option<String>,
}

/// The help line.
pub const HELP: &str = "Enter start/continue · s stop · p pause after verse · ↑↓ choose · +/- tempo · [ ] transpose next · r registration · q quit";

/// The item being played.
struct Playing {
    item: usize,
    handle: EngineHandle,
    timeline: Arc<Timeline>,
    transpose: i32,
    preset: Option<usize>,
    /// Presets chosen with r for verses of this performance.
    verse_presets: Vec<(u16, usize)>,
    /// A re-planned timeline offered to the engine, with the verse and preset it is for.
    offered: Option<(Arc<Timeline>, u16, Option<usize>)>,
}

/// The control loop's state.
struct App {
    order: Order,
    selected: usize,
    /// Per item: transposition, preset for every verse (r while idle), speed in ‰.
    transpose: Vec<i32>,
    preset: Vec<Option<usize>>,
    speed: Vec<u32>,
    done: Vec<bool>,
    specs: Vec<String>,
    /// The outputs while no engine holds them; `None` where one was lost (reopened on retry).
    outputs: Vec<Option<Box<dyn Output>>>,
    output_error: Option<String>,
    clock: SystemClock,
    playing: Option<Playing>,
    message: String,
    confirm_quit: bool,
    quit: bool,
}

/// Restores the terminal when dropped (also while unwinding from a panic).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
        let _ =
            crossterm::execute!(std::io::stdout(), crossterm::terminal::LeaveAlternateScreen, crossterm::cursor::Show);
    }
}

/// `organ service`.
///
/// # Errors
/// The order of service or its scores cannot be loaded; no terminal; the terminal fails.
pub fn cmd_service(a: &ServiceArgs) -> Result<Status, Error> {
    crate::play::install_panic_hook();
    crate::play::install_signal_handling();
    let order = order::load(&a.file, a.organ.as_deref())?;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(Error::Usage(
            "organ service draws a full-screen view: run it in a terminal (to play one score without one, use organ play)"
                .into(),
        ));
    }
    let first_organ = &order.items[0].organ;
    let specs: Vec<String> = if !a.to.is_empty() {
        a.to.clone()
    } else if let Some(o) = order.output.clone().or_else(|| first_organ.output.clone()) {
        vec![o]
    } else {
        return Err(Error::Usage(format!(
            "no output: add --to {} (or output = \"…\" in {})",
            output::SPEC_FORMS,
            order.source
        )));
    };
    let mut app = App::new(order, specs);
    app.open_missing_outputs();

    crossterm::terminal::enable_raw_mode().map_err(|e| Error::Io(format!("cannot use the terminal: {e}")))?;
    let guard = TerminalGuard;
    crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen, crossterm::cursor::Hide)
        .map_err(|e| Error::Io(format!("cannot use the terminal: {e}")))?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))
        .map_err(|e| Error::Io(format!("cannot use the terminal: {e}")))?;

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.run(&mut terminal)));
    // Whatever happened, nothing may keep sounding: stop and join the engine, then write files.
    app.stop_and_join();
    let finish = app.finish_outputs();
    drop(terminal);
    drop(guard);
    let sig = crate::play::signal_received();
    let played = app.done.iter().filter(|d| **d).count();
    // The terminal may be gone (SIGHUP): never panic over a message.
    let _ = writeln!(
        std::io::stderr(),
        "organ: service ended ({played} of {} item(s) played); every key released → {}",
        app.order.items.len(),
        app.specs.join(", ")
    );
    match result {
        Err(_) => Err(Error::Other("the service view stopped on an internal error; the keys were released".into())),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => {
            finish?;
            Ok(if sig != 0 { 128 + sig } else { 0 })
        }
    }
}

impl App {
    /// The state before anything is played; the outputs are not open yet.
    fn new(order: Order, specs: Vec<String>) -> App {
        let n = order.items.len();
        App {
            selected: 0,
            transpose: order.items.iter().map(|i| i.transpose).collect(),
            preset: vec![None; n],
            speed: vec![1000; n],
            done: vec![false; n],
            outputs: specs.iter().map(|_| None).collect(),
            output_error: None,
            specs,
            clock: SystemClock::new(),
            playing: None,
            message: String::new(),
            confirm_quit: false,
            quit: false,
            order,
        }
    }

    fn run(&mut self, terminal: &mut Terminal<CrosstermBackend<Stdout>>) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::Io(format!("terminal: {e}"));
        let keys = key_reader();
        while !self.quit {
            if engine::STOP_ALL.load(Ordering::SeqCst) {
                // A signal (the terminal closed, say): the engine stops by itself; leave.
                break;
            }
            self.poll_engine();
            let screen = self.screen();
            terminal.draw(|f| view::draw(f, &screen)).map_err(io)?;
            match keys.recv_timeout(Duration::from_millis(50)) {
                Ok((code, mods)) => self.key(code, mods),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(Error::Io("terminal: cannot read keys any more".into()));
                }
            }
        }
        Ok(())
    }

    // --- keys --------------------------------------------------------------------------------

    fn key(&mut self, code: KeyCode, mods: KeyModifiers) {
        if self.confirm_quit {
            self.confirm_quit = false;
            if matches!(code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                self.stop();
                self.quit = true;
            } else {
                self.message = "still playing".into();
            }
            return;
        }
        match code {
            KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => {
                self.stop();
                self.quit = true;
            }
            // Plain keys only: a stray NUL byte reads as Ctrl+Space and must not start a hymn.
            _ if mods.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SUPER) => {}
            KeyCode::Enter | KeyCode::Char(' ') => self.enter(),
            KeyCode::Char('s') | KeyCode::Char('S') | KeyCode::Esc => self.stop(),
            KeyCode::Char('p') | KeyCode::Char('P') => self.pause_after_verse(),
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => self.selected = (self.selected + 1).min(self.order.items.len() - 1),
            KeyCode::Char('+') | KeyCode::Char('=') => self.tempo(50),
            KeyCode::Char('-') | KeyCode::Char('_') => self.tempo(-50),
            KeyCode::Char('[') => self.transpose(-1),
            KeyCode::Char(']') => self.transpose(1),
            KeyCode::Char('r') | KeyCode::Char('R') => self.cycle_registration(),
            KeyCode::Char('o') | KeyCode::Char('O') => {
                self.open_missing_outputs();
                if self.output_error.is_none() {
                    self.message = "outputs open".into();
                }
            }
            KeyCode::Char('q') | KeyCode::Char('Q') => {
                if self.playing.is_some() {
                    self.confirm_quit = true;
                } else {
                    self.quit = true;
                }
            }
            _ => {}
        }
    }

    /// Enter: go on from a wait, or start the selected item.
    fn enter(&mut self) {
        if let Some(p) = &mut self.playing {
            match p.handle.shared.state() {
                State::Waiting => {
                    p.handle.send(Command::Continue);
                    self.message = "continuing".into();
                }
                State::Paused => {
                    p.handle.send(Command::Resume);
                }
                _ => self.message = "already playing: s stops it".into(),
            }
            return;
        }
        self.start(self.selected);
    }

    fn start(&mut self, i: usize) {
        self.open_missing_outputs();
        if let Some(e) = &self.output_error {
            self.message = format!("cannot start: {e} (o retries)");
            return;
        }
        let item = &self.order.items[i];
        let (transpose, preset) = (self.transpose[i], self.preset[i]);
        let timeline = match item.plan(transpose, preset, &[]) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                self.message = format!("cannot play {}: {e}", item.title);
                return;
            }
        };
        let mut outputs: Vec<Box<dyn Output>> = self.outputs.iter_mut().filter_map(Option::take).collect();
        for o in &mut outputs {
            if let Err(e) = o.prepare(&timeline) {
                self.message = format!("{}: {e}", o.name());
            }
        }
        let config = engine::Config {
            on_disconnect: item.organ.on_disconnect,
            speed: self.speed[i],
            start_delay: Micros::ZERO,
            stop_flag: &engine::STOP_ALL,
        };
        let (eng, handle) = engine::new(timeline.clone(), outputs, self.clock, config);
        match engine::spawn(eng, handle) {
            Ok(handle) => {
                crate::play::register_engine(&handle);
                self.playing = Some(Playing {
                    item: i,
                    handle,
                    timeline,
                    transpose,
                    preset,
                    verse_presets: Vec::new(),
                    offered: None,
                });
                self.message = format!("started {}", self.order.items[i].title);
            }
            Err(e) => {
                // The outputs went into the engine that could not start: open them again.
                self.message = format!("cannot start the engine thread: {e}");
            }
        }
    }

    /// s/Esc: silence now.
    fn stop(&mut self) {
        if let Some(p) = &mut self.playing {
            p.handle.send(Command::Stop);
            self.message = "stopped: every key released".into();
        }
    }

    fn pause_after_verse(&mut self) {
        if let Some(p) = &mut self.playing {
            let on = !p.handle.shared.pause_at_section_end.load(Ordering::Relaxed);
            p.handle.send(Command::PauseAtSectionEnd(on));
            self.message = if on {
                "will pause at the end of this verse (Enter goes on)".into()
            } else {
                "will not pause at the end of this verse".into()
            };
        } else {
            self.message = "nothing is playing".into();
        }
    }

    fn tempo(&mut self, step: i32) {
        let i = self.playing.as_ref().map_or(self.selected, |p| p.item);
        let s = (self.speed[i] as i32 + step).clamp(100, 4000) as u32;
        self.speed[i] = s;
        if let Some(p) = &mut self.playing {
            p.handle.send(Command::Speed(s));
        }
        self.message = format!("tempo {}% for {}", s / 10, self.order.items[i].title);
    }

    /// The item `[ ]` and idle `r` act on: the selected one, or the one after it when the
    /// selected one is playing.
    fn next_item(&self) -> Option<usize> {
        match &self.playing {
            Some(p) if p.item == self.selected => {
                (self.selected + 1 < self.order.items.len()).then_some(self.selected + 1)
            }
            _ => Some(self.selected),
        }
    }

    fn transpose(&mut self, step: i32) {
        let Some(i) = self.next_item() else {
            self.message = "no item after this one to transpose".into();
            return;
        };
        self.transpose[i] = (self.transpose[i] + step).clamp(-12, 12);
        self.message = format!("{}: transposed {:+}", self.order.items[i].title, self.transpose[i]);
    }

    /// r: while playing, the next verse's preset (the engine is handed a re-planned timeline);
    /// idle, the preset of every verse of the selected item. Cycles through the organ's presets
    /// and back to the registration as written.
    fn cycle_registration(&mut self) {
        let Some(p) = &mut self.playing else {
            let Some(i) = self.next_item() else { return };
            let n = self.order.items[i].organ.presets.len();
            self.preset[i] = cycle(self.preset[i], n);
            self.message = format!(
                "{}: {}",
                self.order.items[i].title,
                self.preset[i].map_or("registration as written".into(), |x| format!(
                    "every verse on preset {}",
                    self.order.items[i].organ.presets[x].name
                ))
            );
            return;
        };
        if p.offered.is_some() {
            self.message = "a registration change is on its way; try again in a moment".into();
            return;
        }
        let item = &self.order.items[p.item];
        let t = &p.timeline;
        let next = p.handle.shared.next.load(Ordering::Relaxed).min(t.events.len());
        let section = t.events.get(next.saturating_sub(1)).and_then(|e| t.section_of(e));
        let verse = match section.map(|s| (s.kind, s.verse, s.verses)) {
            Some((SectionKind::PlayOver, _, _)) => 1,
            Some((SectionKind::Verse, v, n)) if v < n => v + 1,
            _ => {
                self.message = "no verse left to change".into();
                return;
            }
        };
        let current = p.verse_presets.iter().find(|x| x.0 == verse).map(|x| x.1);
        let choice = cycle(current, item.organ.presets.len());
        let mut wanted = p.verse_presets.clone();
        wanted.retain(|x| x.0 != verse);
        if let Some(c) = choice {
            wanted.push((verse, c));
        }
        match item.plan(p.transpose, p.preset, &wanted) {
            Ok(new) => {
                let new = Arc::new(new);
                let first_diff = t
                    .events
                    .iter()
                    .zip(&new.events)
                    .position(|(a, b)| a != b)
                    .unwrap_or(t.events.len().min(new.events.len()));
                if p.handle.swap_timeline(new.clone(), first_diff) {
                    p.offered = Some((new, verse, choice));
                    p.verse_presets = wanted;
                }
            }
            Err(e) => self.message = format!("cannot change the registration: {e}"),
        }
    }

    // --- the engine ---------------------------------------------------------------------------

    /// Takes back swapped plans; when the engine has ended, takes back the outputs.
    fn poll_engine(&mut self) {
        let Some(p) = &mut self.playing else { return };
        while let Some(back) = p.handle.returned() {
            if let Some((offered, verse, choice)) = p.offered.take() {
                let name = |c: Option<usize>| {
                    c.map_or("as written".to_string(), |c| self.order.items[p.item].organ.presets[c].name.clone())
                };
                if Arc::ptr_eq(&back, &p.timeline) {
                    p.timeline = offered;
                    self.message = format!("verse {verse}: registration {}", name(choice));
                } else {
                    p.verse_presets.retain(|x| x.0 != verse);
                    self.message = format!("too late to change verse {verse}");
                }
            }
        }
        if !p.handle.is_finished() {
            return;
        }
        let p = self.playing.take().expect("checked above");
        let item = p.item;
        let mut report = p.handle.join();
        let outputs = std::mem::take(&mut report.outputs);
        let lost_all = outputs.is_empty();
        let mut outputs = outputs.into_iter();
        match report.end {
            End::OutputFailed { output, error } => {
                for (i, slot) in self.outputs.iter_mut().enumerate() {
                    let o = outputs.next();
                    if i != output {
                        *slot = o;
                    } else if let Some(mut dead) = o {
                        let _ = dead.finish();
                    }
                }
                self.output_error = Some(format!("{}: {error}", self.specs[output]));
                self.message = format!("OUTPUT LOST ({}): every key was released; o reconnects", self.specs[output]);
            }
            End::Panicked if lost_all => {
                self.output_error = Some("the engine stopped on an internal error".into());
            }
            end => {
                for slot in &mut self.outputs {
                    *slot = outputs.next();
                }
                if end == End::Finished {
                    self.done[item] = true;
                    self.message = format!("finished {}", self.order.items[item].title);
                    if self.selected == item && item + 1 < self.order.items.len() {
                        self.selected = item + 1;
                    }
                }
            }
        }
    }

    /// Stops the engine (if any) and waits for it to release every key.
    fn stop_and_join(&mut self) {
        if let Some(p) = &mut self.playing {
            p.handle.send(Command::Stop);
            let start = Instant::now();
            while !p.handle.is_finished() && start.elapsed() < Duration::from_secs(5) {
                p.handle.wake();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if self.playing.is_some() {
            self.poll_engine();
        }
    }

    fn open_missing_outputs(&mut self) {
        let policy = self.order.items[0].organ.on_disconnect;
        let mut errors = Vec::new();
        for (i, slot) in self.outputs.iter_mut().enumerate() {
            if slot.is_none() {
                let mut notes = Vec::new();
                match output::OutputSpec::parse(&self.specs[i])
                    .map_err(output::OpenError::from)
                    .and_then(|s| s.open(policy, &mut notes))
                {
                    Ok(o) => *slot = Some(o),
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        self.output_error = if errors.is_empty() { None } else { Some(errors.join("; ")) };
    }

    fn finish_outputs(&mut self) -> Result<(), Error> {
        let mut first = None;
        for o in self.outputs.iter_mut().flatten() {
            if let Err(e) = o.finish() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), |e| Err(Error::Finish(e)))
    }

    // --- what the view shows ----------------------------------------------------------------

    fn screen(&self) -> Screen {
        let order = &self.order;
        let organ = &order.items[self.playing.as_ref().map_or(self.selected, |p| p.item)].organ;
        let rows = order
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let mut changes = Vec::new();
                if self.speed[i] != 1000 {
                    changes.push(format!("tempo {}%", self.speed[i] / 10));
                }
                if self.transpose[i] != it.transpose {
                    changes.push(format!("transpose {:+}", self.transpose[i]));
                }
                if let Some(p) = self.preset[i] {
                    changes.push(format!("preset {}", it.organ.presets[p].name));
                }
                Row {
                    title: it.title.clone(),
                    summary: it.summary(),
                    changes: changes.join(", "),
                    playing: self.playing.as_ref().is_some_and(|p| p.item == i),
                    done: self.done[i],
                }
            })
            .collect();
        let mut s = Screen {
            header: format!("{} — {} → {}", order.title, organ.name, self.specs.join(", ")),
            rows,
            selected: self.selected,
            help: HELP.into(),
            message: self.message.clone(),
            ..Screen::default()
        };
        match &self.playing {
            None => {
                let it = &order.items[self.selected];
                s.now = vec!["nothing is playing".into()];
                s.state = match &self.output_error {
                    Some(e) => {
                        s.tone = Tone::Alarm;
                        format!("OUTPUT NOT AVAILABLE: {e} — o retries")
                    }
                    None => "READY".into(),
                };
                s.next = vec![format!("Enter starts {}. {} ({})", self.selected + 1, it.title, it.summary())];
                if let Some(n) = &it.note {
                    s.next.push(format!("note: {n}"));
                }
            }
            Some(p) => {
                let it = &order.items[p.item];
                let t = &p.timeline;
                let sh = &p.handle.shared;
                let next = sh.next.load(Ordering::Relaxed).min(t.events.len());
                let plan_time = Micros(sh.plan_time.load(Ordering::Relaxed)).min(t.duration);
                let last = t.events.get(next.saturating_sub(1));
                let section = last.and_then(|e| t.section_of(e));
                let pos = last.map(|e| t.position(e));
                let speed = f64::from(sh.speed.load(Ordering::Relaxed)) / 1000.0;
                let quarter =
                    bpm(it.score.tempo.us_per_quarter_at(last.map_or(0, |e| e.tick))) * t.speed_percent / 100.0 * speed;
                let reg = t
                    .registration_at(plan_time)
                    .map(|r| describe_registration(&it.organ, t, &r.drawn))
                    .unwrap_or_default();
                let where_ = match (section, pos) {
                    (Some(sec), Some(pos)) if sec.kind != SectionKind::Piece => {
                        format!("{}, bar {} of {}", sec.label(), pos.bar.min(sec.last_bar), sec.last_bar)
                    }
                    (_, Some(pos)) => format!("bar {} of {}", pos.bar.min(t.last_bar), t.last_bar),
                    _ => "starting".into(),
                };
                s.now = vec![
                    format!("{}. {}", p.item + 1, it.title),
                    format!("{where_}    {} / {}", plan_time, t.duration),
                    format!("tempo {:.0}% (♩ = {:.0})    registration: {reg}", t.speed_percent * speed, quarter),
                ];
                let waiting = sh.wait.load(Ordering::Relaxed);
                s.state = match sh.state() {
                    State::Waiting => {
                        s.tone = Tone::Attention;
                        match t.waits.get(waiting.wrapping_sub(1)).map(|w| w.kind) {
                            Some(WaitKind::Fermata) => "WAITING AT A FERMATA — Enter continues".into(),
                            _ => "PAUSED AT THE END OF THE VERSE — Enter goes on".into(),
                        }
                    }
                    State::WaitingForLink => {
                        s.tone = Tone::Alarm;
                        "LINK TO THE ORGAN LOST — waiting for it to come back (s stops)".into()
                    }
                    State::Paused => "PAUSED — Enter resumes".into(),
                    State::Finished | State::Stopped | State::Failed => "ENDING".into(),
                    _ if sh.link_down.load(Ordering::Relaxed) => {
                        s.tone = Tone::Alarm;
                        "PLAYING — link to the organ down".into()
                    }
                    _ if sh.pause_at_section_end.load(Ordering::Relaxed) => {
                        "PLAYING — will pause at the end of this verse".into()
                    }
                    _ => "PLAYING".into(),
                };
                if self.confirm_quit {
                    s.tone = Tone::Attention;
                    s.state = "Music is playing. Stop it and quit? y / n".into();
                }
                // What comes next: the next section of this item, then the next item.
                let next_section = section.and_then(|sec| {
                    let i = t.sections.iter().position(|x| std::ptr::eq(x, sec))?;
                    t.sections.get(i + 1)
                });
                let mut next_lines = Vec::new();
                if let Some(ns) = next_section {
                    let chosen = p.verse_presets.iter().find(|x| x.0 == ns.verse && ns.kind == SectionKind::Verse);
                    next_lines.push(format!(
                        "{}{}",
                        ns.label(),
                        chosen.map_or(String::new(), |c| format!(" (preset {})", it.organ.presets[c.1].name))
                    ));
                } else {
                    next_lines.push(format!("end of {}", it.title));
                }
                match self.next_item().filter(|&n| n != p.item) {
                    Some(n) => next_lines.push(format!("then: {}. {}", n + 1, order.items[n].title)),
                    None => next_lines.push("then: end of the service".into()),
                }
                if let Some(n) = &it.note {
                    next_lines.push(format!("note: {n}"));
                }
                s.next = next_lines;
            }
        }
        s
    }
}

/// A registration in a few words: "mf", "mf + Sw to Gt", "no stops", or the stops themselves.
fn describe_registration(organ: &crate::organ::Organ, t: &Timeline, drawn: &[usize]) -> String {
    if drawn.is_empty() {
        return "no stops".into();
    }
    let name = |c: usize| t.controls[c].name.as_str();
    // The preset it is closest to, with what differs.
    let best = organ
        .presets
        .iter()
        .map(|p| {
            let plus: Vec<usize> = drawn.iter().copied().filter(|c| !p.controls.contains(c)).collect();
            let minus: Vec<usize> = p.controls.iter().copied().filter(|c| !drawn.contains(c)).collect();
            (plus.len() + minus.len(), p, plus, minus)
        })
        .min_by_key(|x| x.0);
    match best {
        Some((d, p, plus, minus)) if d <= 3 => {
            let mut s = p.name.clone();
            for c in plus {
                s.push_str(&format!(" + {}", name(c)));
            }
            for c in minus {
                s.push_str(&format!(" − {}", name(c)));
            }
            s
        }
        _ if drawn.len() <= 4 => drawn.iter().map(|&c| name(c)).collect::<Vec<_>>().join(", "),
        _ => format!("{} stops", drawn.len()),
    }
}

/// Reads keys on a thread of its own. crossterm's `poll` can spin without returning once the
/// terminal is gone (SIGHUP), so the control loop never calls it: it waits on this channel with
/// a timeout and so always gets to check the stop flag.
fn key_reader() -> crossbeam_channel::Receiver<(KeyCode, KeyModifiers)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let _ = std::thread::Builder::new().name("organ-keys".into()).spawn(move || {
        while !engine::STOP_ALL.load(Ordering::SeqCst) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            match event::read() {
                Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                    if tx.send((k.code, k.modifiers)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    rx
}

/// The next choice in `None, Some(0), …, Some(n - 1), None`.
fn cycle(current: Option<usize>, n: usize) -> Option<usize> {
    match current {
        None if n > 0 => Some(0),
        Some(c) if c + 1 < n => Some(c + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputError, OutputErrorKind, Stamp};

    /// An output whose cable is pulled after `n` messages.
    struct PulledCable {
        n: usize,
        seen: usize,
    }

    impl Output for PulledCable {
        fn name(&self) -> &str {
            "port:test"
        }
        fn send(&mut self, _bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
            self.seen += 1;
            if self.seen >= self.n {
                return Err(OutputError { kind: OutputErrorKind::Disconnected, detail: "cable pulled" });
            }
            Ok(())
        }
    }

    fn test_app() -> App {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("organ-unit-service-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("order.toml");
        std::fs::write(
            &path,
            format!(
                "organ = \"st-marys\"\n[[item]]\ntitle = \"One\"\nscore = \"{0}/scores/hymn-cwm-rhondda.mid\"\n\
                 [[item]]\ntitle = \"Two\"\nscore = \"{0}/scores/hymn-tallis-ordinal.mid\"\n",
                root.display()
            ),
        )
        .unwrap();
        let order = order::load(&path, None).unwrap();
        App::new(order, vec!["null".into()])
    }

    fn wait_until_ended(app: &mut App) {
        let start = Instant::now();
        while app.playing.is_some() {
            assert!(start.elapsed() < Duration::from_secs(5), "the engine did not end");
            app.poll_engine();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_lost_output_is_shown_and_can_be_reopened() {
        let mut app = test_app();
        app.outputs = vec![Some(Box::new(PulledCable { n: 20, seen: 0 }))];
        app.start(0);
        assert!(app.playing.is_some());
        wait_until_ended(&mut app);
        assert!(app.output_error.as_deref().unwrap().contains("cable pulled"), "{:?}", app.output_error);
        assert!(app.message.contains("OUTPUT LOST"), "{}", app.message);
        let s = app.screen();
        assert_eq!(s.tone, Tone::Alarm);
        assert!(s.state.starts_with("OUTPUT NOT AVAILABLE") && s.state.contains("o retries"), "{}", s.state);
        assert!(!app.done[0], "an item cut short is not done");
        // Enter tries again at once (here the spec, null, opens); so does o.
        app.key(KeyCode::Char('o'), KeyModifiers::NONE);
        assert!(app.output_error.is_none());
        assert_eq!(app.screen().state, "READY");
        app.key(KeyCode::Enter, KeyModifiers::NONE);
        assert!(app.playing.is_some());
        app.stop_and_join();
        assert!(app.playing.is_none() && app.outputs[0].is_some());
    }

    #[test]
    fn quitting_while_playing_asks_first_and_keys_act_on_the_next_item() {
        let mut app = test_app();
        app.open_missing_outputs();
        // A NUL byte from the terminal (read as Ctrl+Space) starts nothing.
        app.key(KeyCode::Char(' '), KeyModifiers::CONTROL);
        assert!(app.playing.is_none());
        app.key(KeyCode::Enter, KeyModifiers::NONE);
        assert!(app.playing.is_some());
        // ] transposes the next item, not the one playing.
        app.key(KeyCode::Char(']'), KeyModifiers::NONE);
        assert_eq!(app.transpose, vec![0, 1]);
        assert!(app.screen().rows[1].changes.contains("transpose +1"));
        // + speeds up the one playing, live.
        app.key(KeyCode::Char('+'), KeyModifiers::NONE);
        assert_eq!(app.speed[0], 1050);
        app.key(KeyCode::Char('q'), KeyModifiers::NONE);
        assert!(app.confirm_quit && !app.quit);
        assert!(app.screen().state.contains("Stop it and quit? y / n"));
        app.key(KeyCode::Char('n'), KeyModifiers::NONE);
        assert!(!app.quit && app.playing.is_some(), "n keeps playing");
        app.key(KeyCode::Char('q'), KeyModifiers::NONE);
        app.key(KeyCode::Char('y'), KeyModifiers::NONE);
        assert!(app.quit);
        wait_until_ended(&mut app);
        assert!(!app.done[0]);
    }

    #[test]
    fn registration_choices_cycle_back_to_as_written() {
        assert_eq!(cycle(None, 2), Some(0));
        assert_eq!(cycle(Some(0), 2), Some(1));
        assert_eq!(cycle(Some(1), 2), None);
        assert_eq!(cycle(None, 0), None);
    }
}
