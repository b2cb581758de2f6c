//! `organ service FILE`: playing for a service from one full-screen terminal view.
//!
//! The person at the laptop is often not an organist. The view shows the order of service with
//! the current item highlighted, what is playing (verse, bar, tempo, registration), what comes
//! next, and one help line; Enter starts the selected item or goes on from a wait, s stops now.
//!
//! A frontend over the [`session`]: this module reads keys, keeps the operator's choices per
//! item (tempo, transposition, registration), plans an item when it is started (pure planning,
//! allocation allowed), hands it to the session as a [`Performance`] and draws the session's
//! [`Progress`]. One session — one set of outputs, one clock, so a file record is one
//! continuous take — serves the whole service; the outputs, the engine of each item, signals,
//! the panic hook and releasing the keys on every way out are the session's. Control thread.
//!
//! Every way out leaves no key down: s/Esc and quitting stop the engine (exact release, CC 123,
//! cancel); Ctrl-C, SIGTERM and SIGHUP set the global stop flag, which the engine obeys; a
//! panic in the view is caught here and the session is finished (stopped and its outputs
//! written), and the terminal is restored by a guard that also runs while unwinding.

pub mod order;
pub mod view;

use std::io::{IsTerminal, Stdout, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::app::{Error, Status};
use crate::engine::{self, End};
use crate::plan::{SectionKind, WaitKind};
use crate::score::tempo::bpm;
use crate::session::{self, Command, Event, Performance, PlayState, Progress, Session, StartError};
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

/// The item being played, and the operator's choices for this performance of it.
struct Playing {
    item: usize,
    transpose: i32,
    preset: Option<usize>,
    /// Presets chosen with r for verses of this performance.
    verse_presets: Vec<(u16, usize)>,
    /// A re-planned timeline offered to the session: its tag, the verse and preset it is for.
    offered: Option<(u64, u16, Option<usize>)>,
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
    session: Session,
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
/// The order of service or its scores cannot be loaded; no terminal; no output; the terminal
/// fails.
pub fn cmd_service(a: &ServiceArgs) -> Result<Status, Error> {
    session::install_panic_hook();
    session::install_signal_handling();
    let order = order::load(&a.file, a.organ.as_deref())?;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(Error::Usage(
            "organ service draws a full-screen view: run it in a terminal (to play one score without one, use organ play)"
                .into(),
        ));
    }
    let first_organ = &order.items[0].organ;
    let default = order.output.as_deref().or(first_organ.output.as_deref());
    let specs = session::output_specs(&a.to, default, &order.source)?;
    let session = Session::new(specs, first_organ.on_disconnect);
    let mut app = App::new(order, session);
    app.open_missing_outputs();

    let terminal_error = |e: std::io::Error| Error::Io(format!("cannot use the terminal: {e}"));
    crossterm::terminal::enable_raw_mode().map_err(terminal_error)?;
    let guard = TerminalGuard;
    crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen, crossterm::cursor::Hide)
        .map_err(terminal_error)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(terminal_error)?;

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.run(&mut terminal)));
    // Whatever happened, nothing may keep sounding: stop and join the engine, then write files.
    app.stop_and_join();
    let finished = app.session.finish();
    drop(terminal);
    drop(guard);
    let sig = session::signal_received();
    let played = app.done.iter().filter(|d| **d).count();
    let specs: Vec<String> = app.session.specs().iter().map(|s| s.to_string()).collect();
    // The terminal may be gone (SIGHUP): never panic over a message.
    let _ = writeln!(
        std::io::stderr(),
        "organ: service ended ({played} of {} item(s) played); every key released → {}",
        app.order.items.len(),
        specs.join(", ")
    );
    match result {
        Err(_) => Err(Error::Other("the service view stopped on an internal error; the keys were released".into())),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => match finished.errors.into_iter().next() {
            Some(e) => Err(Error::Finish(e)),
            None => Ok(if sig != 0 { 128 + sig } else { 0 }),
        },
    }
}

impl App {
    /// The state before anything is played; the outputs are not open yet.
    fn new(order: Order, session: Session) -> App {
        let n = order.items.len();
        App {
            selected: 0,
            transpose: order.items.iter().map(|i| i.transpose).collect(),
            preset: vec![None; n],
            speed: vec![1000; n],
            done: vec![false; n],
            session,
            playing: None,
            message: String::new(),
            confirm_quit: false,
            quit: false,
            order,
        }
    }

    fn run(&mut self, terminal: &mut Terminal<CrosstermBackend<Stdout>>) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::Io(format!("terminal: {e}"));
        let keys = crate::term::key_reader();
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
            _ if !crate::term::plain(mods) => {}
            KeyCode::Enter | KeyCode::Char(' ') => self.enter(),
            KeyCode::Char('s') | KeyCode::Char('S') | KeyCode::Esc => self.stop(),
            KeyCode::Char('p') | KeyCode::Char('P') => self.pause_after_verse(),
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => self.selected = (self.selected + 1).min(self.order.items.len() - 1),
            KeyCode::Char('+') | KeyCode::Char('=') => self.tempo(1),
            KeyCode::Char('-') | KeyCode::Char('_') => self.tempo(-1),
            KeyCode::Char('[') => self.transpose(-1),
            KeyCode::Char(']') => self.transpose(1),
            KeyCode::Char('r') | KeyCode::Char('R') => self.cycle_registration(),
            KeyCode::Char('o') | KeyCode::Char('O') => {
                self.open_missing_outputs();
                if self.session.output_error().is_none() {
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
        if self.playing.is_some() {
            match self.session.progress().state {
                PlayState::Waiting(_) => {
                    self.session.send(Command::Continue);
                    self.message = "continuing".into();
                }
                PlayState::Paused => self.session.send(Command::Resume),
                _ => self.message = "already playing: s stops it".into(),
            }
            return;
        }
        self.start(self.selected);
    }

    fn start(&mut self, i: usize) {
        self.open_missing_outputs();
        if let Some(e) = self.session.output_error() {
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
        let performance = Performance {
            timeline,
            title: item.title.clone(),
            speed: self.speed[i],
            on_disconnect: item.organ.on_disconnect,
        };
        match self.session.start(performance) {
            Ok(()) => {
                self.playing = Some(Playing { item: i, transpose, preset, verse_presets: Vec::new(), offered: None });
                self.message = format!("started {}", self.order.items[i].title);
            }
            Err(StartError::Outputs(e)) => self.message = format!("cannot start: {e} (o retries)"),
            Err(e) => self.message = e.to_string(),
        }
    }

    /// s/Esc: silence now.
    fn stop(&mut self) {
        if self.playing.is_some() {
            self.session.send(Command::Stop);
            self.message = "stopped: every key released".into();
        }
    }

    fn pause_after_verse(&mut self) {
        if self.playing.is_some() {
            let on = !self.session.progress().pause_at_section_end;
            self.session.send(Command::PauseAtSectionEnd(on));
            self.message = if on {
                "will pause at the end of this verse (Enter goes on)".into()
            } else {
                "will not pause at the end of this verse".into()
            };
        } else {
            self.message = "nothing is playing".into();
        }
    }

    /// +/-: a tempo step for the item playing (live), else for the selected one.
    fn tempo(&mut self, steps: i32) {
        let i = self.playing.as_ref().map_or(self.selected, |p| p.item);
        let s = session::nudge_speed(self.speed[i], steps);
        self.speed[i] = s;
        if self.playing.is_some() {
            self.session.send(Command::SetSpeed(s));
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

    /// r: while playing, the next verse's preset (the session is offered a re-planned
    /// timeline); idle, the preset of every verse of the selected item. Cycles through the
    /// organ's presets and back to the registration as written.
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
        let section = self.session.progress().section.as_ref().map(|s| (s.kind, s.verse, s.verses));
        let verse = match section {
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
                if let Some(tag) = self.session.offer(Arc::new(new)) {
                    p.offered = Some((tag, verse, choice));
                    p.verse_presets = wanted;
                }
            }
            Err(e) => self.message = format!("cannot change the registration: {e}"),
        }
    }

    // --- the session ---------------------------------------------------------------------------

    /// Follows the session: registration changes taken or too late; the end of an item.
    fn poll_engine(&mut self) {
        let events = self.session.poll();
        self.handle(events);
    }

    fn handle(&mut self, events: Vec<Event>) {
        for e in events {
            match e {
                Event::Swapped { tag, taken } => self.swapped(tag, taken),
                Event::Ended(ending) => {
                    let Some(p) = self.playing.take() else { continue };
                    match ending.end {
                        End::OutputFailed { .. } => {
                            let name = ending.failed_output.unwrap_or_default();
                            self.message = format!("OUTPUT LOST ({name}): every key was released; o reconnects");
                        }
                        End::Finished => {
                            self.done[p.item] = true;
                            self.message = format!("finished {}", self.order.items[p.item].title);
                            if self.selected == p.item && p.item + 1 < self.order.items.len() {
                                self.selected = p.item + 1;
                            }
                        }
                        End::Stopped | End::Panicked => {}
                    }
                }
                Event::Refused(why) => self.message = why,
                Event::RealtimeRefused | Event::LinkLost(_) | Event::LinkBack(_) => {}
            }
        }
    }

    fn swapped(&mut self, tag: u64, taken: bool) {
        let Some(p) = &mut self.playing else { return };
        let Some((offered, verse, choice)) = p.offered else { return };
        if offered != tag {
            return;
        }
        p.offered = None;
        let presets = &self.order.items[p.item].organ.presets;
        if taken {
            let name = choice.map_or("as written".to_string(), |c| presets[c].name.clone());
            self.message = format!("verse {verse}: registration {name}");
        } else {
            p.verse_presets.retain(|x| x.0 != verse);
            self.message = format!("too late to change verse {verse}");
        }
    }

    /// Stops the engine (if any) and waits for it to release every key.
    fn stop_and_join(&mut self) {
        let events = self.session.stop_and_wait(Duration::from_secs(5));
        self.handle(events);
    }

    fn open_missing_outputs(&mut self) {
        // Errors show in the view (the session keeps them); notes are for the command line.
        let _ = self.session.open_outputs(true);
    }

    // --- what the view shows ----------------------------------------------------------------

    fn screen(&self) -> Screen {
        let order = &self.order;
        let organ = &order.items[self.playing.as_ref().map_or(self.selected, |p| p.item)].organ;
        let specs: Vec<String> = self.session.specs().iter().map(|s| s.to_string()).collect();
        let mut s = Screen {
            header: format!("{} — {} → {}", order.title, organ.name, specs.join(", ")),
            rows: self.rows(),
            selected: self.selected,
            help: HELP.into(),
            message: self.message.clone(),
            ..Screen::default()
        };
        match &self.playing {
            None => {
                let it = &order.items[self.selected];
                s.now = vec!["nothing is playing".into()];
                s.state = match self.session.output_error() {
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
                let progress = self.session.progress();
                s.now = self.now_playing(p, progress);
                (s.tone, s.state) = state_line(progress);
                if self.confirm_quit {
                    s.tone = Tone::Attention;
                    s.state = "Music is playing. Stop it and quit? y / n".into();
                }
                s.next = self.what_next(p, progress);
            }
        }
        s
    }

    /// The order of service, with each item's changes.
    fn rows(&self) -> Vec<Row> {
        self.order
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
            .collect()
    }

    /// The "Now playing" lines: what, where, tempo, registration.
    fn now_playing(&self, p: &Playing, progress: &Progress) -> Vec<String> {
        let it = &self.order.items[p.item];
        let quarter = bpm(it.score.tempo.us_per_quarter_at(progress.tick)) * progress.tempo_percent / 100.0;
        let where_ = match &progress.section {
            Some(sec) if sec.kind != SectionKind::Piece => {
                format!("{}, bar {} of {}", sec.label, progress.bar.min(sec.last_bar), sec.last_bar)
            }
            Some(_) => format!("bar {} of {}", progress.bar.min(progress.last_bar), progress.last_bar),
            None => "starting".into(),
        };
        vec![
            format!("{}. {}", p.item + 1, it.title),
            format!("{where_}    {} / {}", progress.played, progress.duration),
            format!(
                "tempo {:.0}% (♩ = {:.0})    registration: {}",
                progress.tempo_percent, quarter, progress.registration
            ),
        ]
    }

    /// What comes next: the next section of this item, then the next item, and the note.
    fn what_next(&self, p: &Playing, progress: &Progress) -> Vec<String> {
        let it = &self.order.items[p.item];
        let mut lines = Vec::new();
        if let Some(ns) = &progress.next_section {
            let chosen = p.verse_presets.iter().find(|x| x.0 == ns.verse && ns.kind == SectionKind::Verse);
            lines.push(format!(
                "{}{}",
                ns.label,
                chosen.map_or(String::new(), |c| format!(" (preset {})", it.organ.presets[c.1].name))
            ));
        } else {
            lines.push(format!("end of {}", it.title));
        }
        match self.next_item().filter(|&n| n != p.item) {
            Some(n) => lines.push(format!("then: {}. {}", n + 1, self.order.items[n].title)),
            None => lines.push("then: end of the service".into()),
        }
        if let Some(n) = &it.note {
            lines.push(format!("note: {n}"));
        }
        lines
    }
}

/// The state line under "Now playing", and how loud it is.
fn state_line(p: &Progress) -> (Tone, String) {
    match p.state {
        PlayState::Waiting(WaitKind::Fermata) => (Tone::Attention, "WAITING AT A FERMATA — Enter continues".into()),
        PlayState::Waiting(WaitKind::SectionEnd) => {
            (Tone::Attention, "PAUSED AT THE END OF THE VERSE — Enter goes on".into())
        }
        PlayState::WaitingForLink => {
            (Tone::Alarm, "LINK TO THE ORGAN LOST — waiting for it to come back (s stops)".into())
        }
        PlayState::Paused => (Tone::Normal, "PAUSED — Enter resumes".into()),
        PlayState::Ending => (Tone::Normal, "ENDING".into()),
        _ if p.link_down => (Tone::Alarm, "PLAYING — link to the organ down".into()),
        _ if p.pause_at_section_end => (Tone::Normal, "PLAYING — will pause at the end of this verse".into()),
        _ => (Tone::Normal, "PLAYING".into()),
    }
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
    use std::time::Instant;

    use super::*;
    use crate::organ::DisconnectPolicy;
    use crate::output::OutputSpec;
    use crate::output::record::PulledCable;

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
        App::new(order, Session::new(vec![OutputSpec::Null], DisconnectPolicy::Pause))
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
        app.session.insert_output(0, Box::new(PulledCable::after(20)));
        app.start(0);
        assert!(app.playing.is_some());
        wait_until_ended(&mut app);
        let error = app.session.output_error();
        assert!(error.as_deref().unwrap().contains("cable pulled"), "{error:?}");
        assert!(app.message.contains("OUTPUT LOST"), "{}", app.message);
        let s = app.screen();
        assert_eq!(s.tone, Tone::Alarm);
        assert!(s.state.starts_with("OUTPUT NOT AVAILABLE") && s.state.contains("o retries"), "{}", s.state);
        assert!(!app.done[0], "an item cut short is not done");
        // Enter tries again at once (here the spec, null, opens); so does o.
        app.key(KeyCode::Char('o'), KeyModifiers::NONE);
        assert!(app.session.output_error().is_none());
        assert_eq!(app.screen().state, "READY");
        app.key(KeyCode::Enter, KeyModifiers::NONE);
        assert!(app.playing.is_some());
        app.stop_and_join();
        assert!(app.playing.is_none() && app.session.is_output_open(0));
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
