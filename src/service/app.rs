//! The service's state and everything that can be done to it, as [`Action`]s: the same for the
//! terminal's keys, the phone remote and a console piston, so that they cannot disagree.
//!
//! [`Service`] keeps the operator's choices per item (tempo, transposition, registration), which
//! items were played, the chosen item and the last message; it plans an item when it is started
//! (pure planning, allocation allowed), hands it to the [`Session`] as a [`Performance`] and
//! follows the session's events. It never draws, reads keys or listens: frontends do
//! ([`super::keys`], [`super::remote`]). Control thread.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::End;
use crate::plan::SectionKind;
use crate::play::{PanicMessages, panic_messages};
use crate::session::{self, Command, Ending, Event, Finished, Performance, PlayState, Session, StartError};

use super::order::Order;

/// What the operator (at the keyboard, on a phone, at the console) asks of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Enter: go on from a wait or a pause of the item playing; start the chosen item when
    /// nothing plays. While another item plays, the answer is [`Answer::AskStartOther`].
    Go,
    /// Start this item now, from the beginning or at a verse; refused while something plays.
    Start { item: usize, verse: Option<u16> },
    /// Choose an item (what Enter starts next).
    Select(usize),
    /// Choose the item this many places on (negative: back).
    SelectBy(i32),
    /// Go on from a wait (a fermata, the end of a verse) or a pause.
    Continue,
    /// Pause at the end of this verse (`Some(on)`), or toggle it (`None`).
    PauseAfterVerse(Option<bool>),
    /// Faster (positive) or slower by tempo steps: the item playing, live, else the chosen one.
    Tempo(i32),
    /// Transpose the next item by semitones.
    Transpose(i32),
    /// The next preset for the next verse (playing) or for every verse of the chosen item.
    CycleRegistration,
    /// Stop now (already confirmed): every key released, CC 123, the stops cancelled.
    Stop,
    /// Stop now and release everything: a note-off for every key of every division, CC 123,
    /// the cancel — also when nothing is playing.
    Panic,
    /// Open again the outputs that were lost or failed to open.
    ReopenOutputs,
}

/// What an action needs from the frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Done,
    /// Something else plays: ask whether to stop it and start this item
    /// ([`Service::stop_then_start`]).
    AskStartOther(usize),
}

/// The item being played, and the operator's choices for this performance of it.
pub(super) struct Playing {
    pub item: usize,
    pub transpose: i32,
    pub preset: Option<usize>,
    /// Presets chosen with r for verses of this performance.
    pub verse_presets: Vec<(u16, usize)>,
    /// A re-planned timeline offered to the session: its tag, the verse and preset it is for.
    pub offered: Option<(u64, u16, Option<usize>)>,
    /// The verse it was started at (resumed), if not from the beginning.
    pub from_verse: Option<u16>,
}

/// How an item was played.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Played {
    #[default]
    Not,
    /// To the end.
    Finished,
    /// Stopped part-way: where ("verse 2 of 3, bar 5").
    Stopped(String),
}

/// The service: the order, the operator's choices, the session (see the module documentation).
pub struct Service {
    pub(super) order: Order,
    pub(super) selected: usize,
    /// Per item: transposition, preset for every verse (r while idle), speed in ‰, played.
    pub(super) transpose: Vec<i32>,
    pub(super) preset: Vec<Option<usize>>,
    pub(super) speed: Vec<u32>,
    pub(super) played: Vec<Played>,
    pub(super) session: Session,
    pub(super) playing: Option<Playing>,
    pub(super) message: String,
    /// An item to start as soon as the one playing has ended (after "stop it and start …").
    pending_start: Option<(usize, Option<u16>)>,
    /// A panic was pressed while playing: the rest of it goes out once the engine has ended.
    panic_after_end: bool,
    /// Outputs the release may not have reached, by name, with why: lost while playing, or
    /// messages to them dropped. A later release that reaches one (the end of an item played
    /// on it again: CC 123 on every division; the panic key) takes it off.
    unsure: Vec<session::Unreleased>,
    /// What goes on from a wait or a pause, for the messages: "Enter", "the go piston or
    /// Enter" (the console's pistons drive the service too), "the go piston" (no terminal).
    pub(super) goes_on: String,
}

impl Service {
    /// The state before anything is played; the outputs are not open yet.
    pub fn new(order: Order, session: Session) -> Service {
        let n = order.items.len();
        Service {
            selected: 0,
            transpose: order.items.iter().map(|i| i.transpose).collect(),
            preset: vec![None; n],
            speed: vec![1000; n],
            played: vec![Played::Not; n],
            session,
            playing: None,
            message: String::new(),
            pending_start: None,
            panic_after_end: false,
            unsure: Vec::new(),
            goes_on: "Enter".into(),
            order,
        }
    }

    pub fn order(&self) -> &Order {
        &self.order
    }

    /// The session (to insert an output, read `Progress`).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The item playing, if any.
    pub fn playing_item(&self) -> Option<usize> {
        self.playing.as_ref().map(|p| p.item)
    }

    /// The chosen item.
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// How each item was played.
    pub fn played(&self) -> &[Played] {
        &self.played
    }

    /// Says what goes on from a wait or a pause ("the go piston or Enter"), in the messages and
    /// the state line; "Enter" unless told.
    pub fn set_goes_on(&mut self, what: impl Into<String>) {
        self.goes_on = what.into();
    }

    /// The last message (a change made, an error).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Carries out an action.
    pub fn act(&mut self, a: Action) -> Answer {
        match a {
            Action::Go => return self.go(),
            Action::Start { item, verse } => self.start_checked(item, verse),
            Action::Select(i) => self.selected = i.min(self.order.items.len() - 1),
            Action::SelectBy(d) => {
                let last = self.order.items.len() as i64 - 1;
                self.selected = (self.selected as i64 + i64::from(d)).clamp(0, last) as usize;
            }
            Action::Continue => self.continue_(),
            Action::PauseAfterVerse(on) => self.pause_after_verse(on),
            Action::Tempo(steps) => self.tempo(steps),
            Action::Transpose(step) => self.transpose(step),
            Action::CycleRegistration => self.cycle_registration(),
            Action::Stop => self.stop(),
            Action::Panic => self.panic(),
            Action::ReopenOutputs => {
                self.open_missing_outputs();
                if self.session.output_error().is_none() {
                    self.message = "outputs open".into();
                }
            }
        }
        Answer::Done
    }

    /// Go: continue the item playing (when it is the chosen one), or start the chosen one.
    fn go(&mut self) -> Answer {
        match &self.playing {
            Some(p) if p.item != self.selected => Answer::AskStartOther(self.selected),
            Some(_) => {
                if matches!(self.session.progress().state, PlayState::Waiting(_) | PlayState::Paused) {
                    self.continue_();
                } else {
                    self.message = "already playing: s stops it".into();
                }
                Answer::Done
            }
            None => {
                self.start(self.selected, None);
                Answer::Done
            }
        }
    }

    fn continue_(&mut self) {
        match self.session.progress().state {
            PlayState::Waiting(_) => {
                self.session.send(Command::Continue);
                self.message = "continuing".into();
            }
            PlayState::Paused => self.session.send(Command::Resume),
            _ if self.playing.is_none() => self.message = "nothing is playing".into(),
            _ => {}
        }
    }

    /// Stops what plays and starts `item` (at `verse`) once every key of it is released.
    pub fn stop_then_start(&mut self, item: usize, verse: Option<u16>) {
        if self.playing.is_none() {
            self.start(item, verse);
            return;
        }
        self.pending_start = Some((item, verse));
        self.session.send(Command::Stop);
        self.message = format!("stopping, then starting {}. {}", item + 1, self.order.items[item].title);
    }

    fn start_checked(&mut self, item: usize, verse: Option<u16>) {
        if item >= self.order.items.len() {
            return;
        }
        if self.playing.is_some() {
            self.message = "something is playing: stop it first".into();
            return;
        }
        self.selected = item;
        self.start(item, verse);
    }

    pub(super) fn start(&mut self, i: usize, verse: Option<u16>) {
        self.open_missing_outputs();
        if let Some(e) = self.session.output_error() {
            self.message = format!("cannot start: {e} (o retries)");
            return;
        }
        let item = &self.order.items[i];
        // Only a hymn has verses to resume at.
        let verse = verse.filter(|&v| item.verses() > 0 && v > 1).map(|v| v.min(item.verses()));
        let (transpose, preset) = (self.transpose[i], self.preset[i]);
        let timeline = match item.plan_from(transpose, preset, &[], verse) {
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
                self.playing = Some(Playing {
                    item: i,
                    transpose,
                    preset,
                    verse_presets: Vec::new(),
                    offered: None,
                    from_verse: verse,
                });
                let title = &self.order.items[i].title;
                self.message = match verse {
                    Some(v) => format!("started {title} at verse {v}"),
                    None => format!("started {title}"),
                };
            }
            Err(StartError::Outputs(e)) => self.message = format!("cannot start: {e} (o retries)"),
            Err(e) => self.message = e.to_string(),
        }
    }

    /// Silence now.
    fn stop(&mut self) {
        if self.playing.is_some() {
            self.session.send(Command::Stop);
            self.message = "stopped: every key released".into();
        } else {
            self.message = "nothing is playing".into();
        }
    }

    /// Stop, and release every key of every division and cancel, whatever plays.
    fn panic(&mut self) {
        self.pending_start = None;
        if self.playing.is_some() {
            self.session.send(Command::Stop);
            self.panic_after_end = true;
        } else {
            self.send_panic();
        }
        self.message = "PANIC: every key released, stops cancelled".into();
    }

    fn send_panic(&mut self) {
        let organ = &self.order.items[self.selected].organ;
        let PanicMessages { keys_off, cancel, pace, .. } = panic_messages(Some(organ));
        let reached = self.session.output_names();
        let failed = self.session.send_now(&keys_off, &cancel, pace);
        // A note-off for every key of every division and the cancel: what reached an output
        // leaves nothing sounding there.
        self.unsure.retain(|u| !reached.contains(&u.output) || failed.iter().any(|(f, _)| *f == u.output));
        if let Some((name, e)) = failed.into_iter().next() {
            self.message = format!("panic: {name}: {e}");
        }
    }

    fn pause_after_verse(&mut self, on: Option<bool>) {
        if self.playing.is_some() {
            let on = on.unwrap_or(!self.session.progress().pause_at_section_end);
            self.session.send(Command::PauseAtSectionEnd(on));
            self.message = if on {
                format!("will pause at the end of this verse ({} goes on)", self.goes_on)
            } else {
                "will not pause at the end of this verse".into()
            };
        } else {
            self.message = "nothing is playing".into();
        }
    }

    /// A tempo step for the item playing (live), else for the chosen one.
    fn tempo(&mut self, steps: i32) {
        let i = self.playing.as_ref().map_or(self.selected, |p| p.item);
        let s = session::nudge_speed(self.speed[i], steps);
        self.speed[i] = s;
        if self.playing.is_some() {
            self.session.send(Command::SetSpeed(s));
        }
        self.message = format!("tempo {}% for {}", s / 10, self.order.items[i].title);
    }

    /// The item `[ ]` and idle `r` act on: the chosen one, or the one after it when the
    /// chosen one is playing.
    pub(super) fn next_item(&self) -> Option<usize> {
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

    /// While playing, the next verse's preset (the session is offered a re-planned timeline);
    /// idle, the preset of every verse of the chosen item. Cycles through the organ's presets
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
        match item.plan_from(p.transpose, p.preset, &wanted, p.from_verse) {
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
    pub fn poll(&mut self) {
        let events = self.session.poll();
        self.handle(events);
    }

    fn handle(&mut self, events: Vec<Event>) {
        for e in events {
            match e {
                Event::Swapped { tag, taken } => self.swapped(tag, taken),
                Event::Ended(ending) => {
                    self.follow_release(&ending);
                    if let Some(p) = self.playing.take() {
                        self.ended(p, ending.end, ending.failed_output);
                    }
                    if std::mem::take(&mut self.panic_after_end) {
                        self.send_panic();
                    }
                    if let Some((item, verse)) = self.pending_start.take() {
                        self.start(item, verse);
                    }
                }
                Event::Refused(why) => self.message = why,
                Event::RealtimeRefused | Event::LinkLost(_) | Event::LinkBack(_) => {}
            }
        }
    }

    /// Which outputs the release of a performance that ended reached ([`Service::unsure`]; the
    /// session's verdict, [`Ending::releases`]).
    fn follow_release(&mut self, e: &Ending) {
        for (name, release) in e.releases() {
            match release {
                session::Release::Missed(u) => session::note_unreleased(&mut self.unsure, u),
                // A link down when the engine released: the wireless output releases what it
                // had sounding when the link comes back, and says at the end if it never did
                // (Finished::unreleased). What else was in doubt there stays so.
                session::Release::Pending => {}
                session::Release::Took => self.unsure.retain(|u| u.output != name),
            }
        }
    }

    /// The lines `organ service` ends with, once the service is `finished`: "every key
    /// released" only when every output took the release; otherwise, for each output where
    /// keys may still sound, why and what to do (and for a record the release did not reach,
    /// that it is incomplete).
    pub fn closing_lines(&self, finished: &Finished) -> Vec<String> {
        let mut unsure = self.unsure.clone();
        for u in finished.unreleased() {
            session::note_unreleased(&mut unsure, u);
        }
        let played = self.played.iter().filter(|p| **p == Played::Finished).count();
        let head = format!("organ: service ended ({played} of {} item(s) played)", self.order.items.len());
        let specs: Vec<String> = self.session.specs().iter().map(|s| s.to_string()).collect();
        if unsure.is_empty() {
            return vec![format!("{head}; every key released → {}", crate::text::shown(&specs.join(", ")))];
        }
        let mut lines = vec![format!("{head}; {}", session::release_verdict(&unsure, specs.len()))];
        lines.extend(unsure.iter().map(session::release_advice));
        lines
    }

    /// Whether keys may still sound on some output once the service is `finished` (an
    /// incomplete record does not count: nothing sounds from a file).
    pub fn keys_may_sound(&self, finished: &Finished) -> bool {
        self.unsure.iter().chain(&finished.unreleased()).any(|u| !u.record)
    }

    fn ended(&mut self, p: Playing, end: End, failed_output: Option<String>) {
        match end {
            End::OutputFailed { .. } => {
                let name = failed_output.unwrap_or_default();
                let there = match self.unsure.iter().find(|u| u.output == name) {
                    Some(u) if u.record => "the record is incomplete (nothing sounds from a file)",
                    _ => "keys may still sound there (General Cancel)",
                };
                let elsewhere: Vec<&str> =
                    self.unsure.iter().filter(|u| u.output != name && !u.record).map(|u| u.output.as_str()).collect();
                let others = match elsewhere.is_empty() {
                    true => "the others were released".to_string(),
                    false => format!("KEYS MAY STILL SOUND on {} too", elsewhere.join(", ")),
                };
                // A JACK server that shut down is such a loss too: started again, o opens
                // the output on it afresh.
                self.message = format!(
                    "OUTPUT LOST ({name}): {there}; {others}; once it is back (a server started again), o reopens it"
                );
                self.played[p.item] = Played::Stopped(self.where_now());
            }
            End::Finished => {
                self.played[p.item] = Played::Finished;
                self.message = format!("finished {}", self.order.items[p.item].title);
                if self.selected == p.item && p.item + 1 < self.order.items.len() {
                    self.selected = p.item + 1;
                }
            }
            End::Stopped | End::Panicked => {
                if self.played[p.item] != Played::Finished {
                    self.played[p.item] = Played::Stopped(self.where_now());
                }
            }
        }
    }

    /// Where the performance is, in words: "verse 2 of 3, bar 5".
    fn where_now(&self) -> String {
        let p = self.session.progress();
        match &p.section {
            Some(s) if s.kind != SectionKind::Piece => format!("{}, bar {}", s.label, p.bar),
            _ => format!("bar {}", p.bar),
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
    pub fn stop_and_join(&mut self) {
        self.pending_start = None;
        let events = self.session.stop_and_wait(Duration::from_secs(5));
        self.handle(events);
    }

    /// Ends the service: stops what plays and finishes the outputs (a file output is written).
    pub fn finish(&mut self) -> Finished {
        self.stop_and_join();
        self.session.finish()
    }

    pub(super) fn open_missing_outputs(&mut self) {
        // Errors show in the view (the session keeps them); notes are for the command line.
        let _ = self.session.open_outputs(true);
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
pub(super) mod tests {
    use std::time::Instant;

    use super::*;
    use crate::organ::DisconnectPolicy;
    use crate::output::OutputSpec;
    use crate::output::record::{MemoryOutput, PulledCable, ServerGone};

    pub(crate) fn test_service() -> Service {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("organ-unit-service-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("order.toml");
        std::fs::write(
            &path,
            format!(
                "organ = \"st-marys\"\n[[item]]\ntitle = \"One\"\nscore = \"{0}/scores/hymn-cwm-rhondda.mid\"\n\
                 verses = 3\ntempo = \"400%\"\n[[item]]\ntitle = \"Two\"\nscore = \"{0}/scores/hymn-tallis-ordinal.mid\"\n",
                root.display()
            ),
        )
        .unwrap();
        let order = super::super::order::load(&path, None).unwrap();
        Service::new(order, Session::new(vec![OutputSpec::Null], DisconnectPolicy::Pause))
    }

    fn wait_until_ended(s: &mut Service) {
        let start = Instant::now();
        while s.playing.is_some() {
            assert!(start.elapsed() < Duration::from_secs(5), "the engine did not end");
            s.poll();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_pause_says_what_goes_on() {
        let mut s = test_service();
        s.start(0, None);
        s.act(Action::PauseAfterVerse(Some(true)));
        assert_eq!(s.message(), "will pause at the end of this verse (Enter goes on)");
        // The console's pistons drive the service too (organ service --from).
        s.set_goes_on("the go piston or Enter");
        s.act(Action::PauseAfterVerse(Some(true)));
        assert_eq!(s.message(), "will pause at the end of this verse (the go piston or Enter goes on)");
        s.stop_and_join();
    }

    #[test]
    fn a_lost_output_is_shown_and_can_be_reopened() {
        let mut s = test_service();
        s.session.insert_output(0, Box::new(PulledCable::after(20)));
        s.start(0, None);
        assert!(s.playing.is_some());
        wait_until_ended(&mut s);
        let error = s.session.output_error();
        assert!(error.as_deref().unwrap().contains("cable pulled"), "{error:?}");
        assert!(s.message.contains("OUTPUT LOST"), "{}", s.message);
        assert!(matches!(s.played[0], Played::Stopped(_)), "an item cut short is not finished");
        s.act(Action::ReopenOutputs);
        assert!(s.session.output_error().is_none());
        s.act(Action::Go);
        assert!(s.playing.is_some());
        s.stop_and_join();
        assert!(s.playing.is_none() && s.session.is_output_open(0));
    }

    #[test]
    fn a_server_gone_while_paused_is_a_lost_output_that_o_reopens() {
        let mut s = test_service();
        assert_eq!(s.order.items[0].organ.on_disconnect, DisconnectPolicy::Pause);
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        s.session.insert_output(0, Box::new(ServerGone(gone.clone())));
        s.start(0, None);
        s.session.send(Command::Pause);
        let start = Instant::now();
        while s.session.progress().state != PlayState::Paused {
            assert!(start.elapsed() < Duration::from_secs(5));
            s.poll();
            std::thread::sleep(Duration::from_millis(5));
        }
        // Nothing is sent while paused: the loss is seen all the same, and ends the item.
        gone.store(true, std::sync::atomic::Ordering::SeqCst);
        wait_until_ended(&mut s);
        assert!(s.message.starts_with("OUTPUT LOST (jack:test): keys may still sound there"), "{}", s.message);
        assert!(s.message.ends_with("once it is back (a server started again), o reopens it"), "{}", s.message);
        assert!(s.session.output_error().as_deref().unwrap().contains("server gone"));
        assert!(!s.session.is_output_open(0));
        // Back: o opens it afresh (here the slot's `--to`, null), and the next item plays.
        s.act(Action::ReopenOutputs);
        assert_eq!(s.message, "outputs open");
        s.act(Action::Go);
        assert!(s.playing.is_some(), "{}", s.message);
        s.stop_and_join();
        assert!(s.session.is_output_open(0));
    }

    #[test]
    fn go_with_another_item_chosen_asks_and_then_starts_that_one() {
        let mut s = test_service();
        s.open_missing_outputs();
        assert_eq!(s.act(Action::Go), Answer::Done);
        assert_eq!(s.playing_item(), Some(0));
        // Go on the item playing does not restart it.
        assert_eq!(s.act(Action::Go), Answer::Done);
        assert!(s.message.contains("already playing"), "{}", s.message);
        s.act(Action::SelectBy(1));
        assert_eq!(s.act(Action::Go), Answer::AskStartOther(1));
        assert_eq!(s.playing_item(), Some(0), "nothing changes before the answer");
        // Start is refused while something plays.
        s.act(Action::Start { item: 1, verse: None });
        assert!(s.message.contains("stop it first"), "{}", s.message);
        s.stop_then_start(1, None);
        let start = Instant::now();
        while s.playing_item() != Some(1) {
            assert!(start.elapsed() < Duration::from_secs(5), "{}", s.message);
            s.poll();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(&s.played[0], Played::Stopped(w) if w.contains("bar")), "{:?}", s.played[0]);
        s.stop_and_join();
    }

    #[test]
    fn a_hymn_resumed_at_a_verse_starts_there() {
        let mut s = test_service();
        s.open_missing_outputs();
        s.act(Action::Start { item: 0, verse: Some(2) });
        assert!(s.message.contains("at verse 2"), "{}", s.message);
        let start = Instant::now();
        loop {
            s.poll();
            if let Some(sec) = &s.session.progress().section {
                assert_eq!((sec.kind, sec.verse, sec.verses), (SectionKind::Verse, 2, 3));
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(5));
        }
        s.stop_and_join();
    }

    #[test]
    fn panic_while_idle_releases_every_key_and_cancels() {
        let mut s = test_service();
        let (memory, recording) = MemoryOutput::with_capacity(2000);
        s.session.insert_output(0, Box::new(memory));
        s.act(Action::Panic);
        assert!(s.message.starts_with("PANIC"), "{}", s.message);
        s.session.finish();
        let sent = recording.lock().unwrap().clone();
        let organ = &s.order.items[0].organ;
        let keys: Vec<u8> = organ.divisions.iter().map(|d| d.channel.wire()).collect();
        let offs = sent.iter().filter(|(_, b)| b[0] & 0xF0 == 0x80 && keys.contains(&(b[0] & 0x0F))).count();
        assert_eq!(offs, 128 * organ.divisions.len());
        let cancel: Vec<Vec<u8>> = organ.cancel_messages().iter().map(|m| m.as_bytes().to_vec()).collect();
        let tail: Vec<Vec<u8>> = sent[sent.len() - cancel.len()..].iter().map(|x| x.1.clone()).collect();
        assert_eq!(tail, cancel, "the cancel comes last");
    }

    /// `dropped`: messages dropped on the first output.
    fn ending(end: End, outputs: &[&str], failed: Option<&str>, dropped: u64, link_down_at_end: bool) -> Ending {
        Ending {
            end,
            title: "One".into(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            failed_output: failed.map(str::to_string),
            failed_outputs: failed.into_iter().map(str::to_string).collect(),
            records: Vec::new(),
            // An internal error whose release did not run to its end.
            release_cut: end == End::Panicked,
            sent: 10,
            dropped,
            dropped_by: (0..outputs.len()).map(|k| if k == 0 { dropped } else { 0 }).collect(),
            stats: crate::engine::LatenessStats::new(),
            first_sent: None,
            link_down_at_end,
            held_up: Duration::ZERO,
            cost: Default::default(),
            wake: None,
            awake: Default::default(),
        }
    }

    #[test]
    fn the_closing_line_says_released_only_when_every_output_took_the_release() {
        // A performance stopped cleanly: every key released.
        let mut s = test_service();
        s.open_missing_outputs();
        s.act(Action::Go);
        s.stop_and_join();
        let finished = s.finish();
        let lines = s.closing_lines(&finished);
        assert_eq!(lines, vec!["organ: service ended (0 of 2 item(s) played); every key released → null".to_string()]);
        assert!(!s.keys_may_sound(&finished));

        // An output lost while playing: not released there, and said so with what to do.
        let mut s = test_service();
        s.session.insert_output(0, Box::new(PulledCable::after(20)));
        s.start(0, None);
        wait_until_ended(&mut s);
        assert!(s.message.contains("keys may still sound there"), "{}", s.message);
        let finished = s.finish();
        let lines = s.closing_lines(&finished);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "organ: service ended (0 of 2 item(s) played); KEYS MAY STILL SOUND on port:test");
        assert!(
            lines[1].starts_with("organ: port:test: it failed while \"One\" played (")
                && lines[1].contains("cable pulled"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("so the release did not reach it: press the organ's General Cancel or switch the organ off and on (or, once it is back, run organ panic --to port:test)"), "{}", lines[1]);
        assert!(!lines.iter().any(|l| l.contains("every key released")), "{lines:?}");
        assert!(s.keys_may_sound(&finished));
    }

    #[test]
    fn a_doubt_lasts_until_a_release_reaches_that_output() {
        let mut s = test_service();
        let finished = Finished::default();
        // Messages dropped on a only: a is in doubt, b not.
        s.follow_release(&ending(End::Stopped, &["a", "b"], None, 3, false));
        let lines = s.closing_lines(&finished);
        assert!(lines[0].ends_with("KEYS MAY STILL SOUND on a"), "{lines:?}");
        assert!(lines[1].contains("3 message(s) to it could not be delivered"), "{lines:?}");
        assert_eq!(lines.len(), 2, "{lines:?}");
        // On both: both.
        let mut e = ending(End::Stopped, &["a", "b"], None, 3, false);
        e.dropped_by = vec![1, 2];
        s.follow_release(&e);
        let lines = s.closing_lines(&finished);
        assert!(lines[0].ends_with("KEYS MAY STILL SOUND on a, b"), "{lines:?}");
        assert!(lines[2].contains("2 message(s) to it could not be delivered"), "{lines:?}");
        // The next item ends cleanly on a, and with a link down on b: a is released, b not known.
        s.follow_release(&ending(End::Finished, &["a"], None, 0, false));
        s.follow_release(&ending(End::Finished, &["b"], None, 0, true));
        let lines = s.closing_lines(&finished);
        assert!(lines[0].ends_with("KEYS MAY STILL SOUND on b"), "{lines:?}");
        // A failed output, an engine that panicked, one still running, a link down at the end.
        s.follow_release(&ending(End::Stopped, &["b"], None, 0, false));
        assert_eq!(s.closing_lines(&finished).len(), 1, "released everywhere");
        s.follow_release(&ending(
            End::OutputFailed {
                output: 1,
                error: crate::output::OutputError {
                    kind: crate::output::OutputErrorKind::Disconnected,
                    detail: "gone",
                },
            },
            &["a", "b"],
            Some("b"),
            0,
            false,
        ));
        let lines = s.closing_lines(&finished);
        assert!(lines[0].ends_with("KEYS MAY STILL SOUND on b"), "the others were released: {lines:?}");
        s.follow_release(&ending(End::Panicked, &["a"], None, 0, false));
        let lines = s.closing_lines(&Finished {
            may_sound: vec!["ble:WIDI".into()],
            engine_running: Some(vec!["c".into()]),
            ..Default::default()
        });
        assert!(lines[0].ends_with("KEYS MAY STILL SOUND on b, a, c, ble:WIDI"), "{lines:?}");
        assert!(lines[2].contains("internal error"), "{lines:?}");
        assert!(lines[3].contains("the engine did not stop in time"), "{lines:?}");
        assert!(lines[4].contains("its link was still down at the end"), "{lines:?}");
    }

    #[test]
    fn registration_choices_cycle_back_to_as_written() {
        assert_eq!(cycle(None, 2), Some(0));
        assert_eq!(cycle(Some(0), 2), Some(1));
        assert_eq!(cycle(Some(1), 2), None);
        assert_eq!(cycle(None, 0), None);
    }
}
