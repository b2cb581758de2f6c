//! A stage of the planner (listed in `plan`), stop scheduling: the registration messages, timed.
//!
//! Solenoids need time, so stop messages are never sent together with the notes: the setup
//! (cancel, then the starting registration) goes one message every `stop_pace_ms` from time 0
//! and the music starts `stop_lead_ms` after its last message; a change during the piece goes
//! its offs then its ons, paced, ending `stop_lead_ms` before the notes that need it, but never
//! closer than the pace to the change before (then it is late, and a warning says so). A
//! section's own registration (a hymn verse's) goes in the breath before it: never before the
//! previous section's last release, so nothing changes under its last chord; when the breath is
//! shorter than the lead asks, it is late, and a warning says so. Pure; runs on the control
//! thread while planning.

use super::controls::OrganMessages;
use super::drawn::{Drawn, DrawnSchedule};
use super::messages::{Messages, Order};
use super::time::TimeMap;
use super::{Event, Kind, NONE_U8, NONE_U16, PlanWarning, RegistrationState, Segment, WarningKind};
use crate::midi::Micros;
use crate::organ::{ControlId, Organ};

/// Times registration messages with the organ's lead and pace, remembering the last one sent.
pub(crate) struct StopScheduler<'a> {
    organ: &'a Organ,
    messages: &'a OrganMessages,
    /// `stop_lead_ms` and `stop_pace_ms`, in µs.
    lead: u64,
    pace: u64,
    /// When the latest registration message goes.
    last_stop_t: Option<u64>,
}

/// Where a message goes: its time, and the score tick and section it belongs to.
#[derive(Clone, Copy)]
struct Stamp {
    t: u64,
    tick: u64,
    section: u16,
}

/// What a message does to a control.
#[derive(Clone, Copy)]
enum Action {
    Draw,
    PutIn,
    /// Its off, sent as part of a cancel.
    Cancel,
}

/// A registration change as scheduled.
pub(crate) struct ScheduledChange {
    /// When its first message goes (from then on the organ is being given the new state).
    pub first_t: u64,
    /// How many control changes it sends.
    pub controls: u64,
    /// How much later than `stop_lead_ms` before its notes the last message goes (0: in time).
    pub late_us: u64,
}

impl<'a> StopScheduler<'a> {
    pub fn new(organ: &'a Organ, messages: &'a OrganMessages) -> StopScheduler<'a> {
        StopScheduler { organ, messages, lead: organ.stop_lead.0, pace: organ.stop_pace.0, last_stop_t: None }
    }

    /// The messages that do `action` to control `id` at `at`.
    fn send(&self, out: &mut Messages, order: Order, at: Stamp, id: ControlId, action: Action) {
        let control = &self.messages.controls[id];
        let (kind, msgs) = match action {
            Action::Draw => (Kind::for_control(control.kind, true), &control.on),
            Action::PutIn => (Kind::for_control(control.kind, false), &control.off),
            Action::Cancel => (Kind::Cancel, &control.off),
        };
        let division = control.division.map_or(NONE_U8, |d| d as u8);
        for &msg in msgs {
            let Stamp { t, tick, section } = at;
            out.push(order, Event { t: Micros(t), msg, kind, division, control: id as u16, part: 0, tick, section });
        }
    }

    /// The General Cancel's messages at `at`.
    fn send_cancel(&self, out: &mut Messages, order: Order, at: Stamp) {
        let Stamp { t, tick, section } = at;
        for &msg in &self.messages.cancel {
            let event = Event {
                t: Micros(t),
                msg,
                kind: Kind::Cancel,
                division: NONE_U8,
                control: NONE_U16,
                part: 0,
                tick,
                section,
            };
            out.push(order, event);
        }
    }

    /// The setup from time 0: cancel (the General Cancel, or every control's off, one every
    /// pace; never a toggle's message, which would flip it from an unknown state: without a
    /// General Cancel the toggles are known to be in, [`Organ::start_is_known`]), then the
    /// controls of `start`, one every pace. `tick` is where the music starts. Returns the time
    /// the music may start: `stop_lead_ms` after the last message.
    pub fn setup(&mut self, out: &mut Messages, start: &Drawn, tick: u64) -> u64 {
        let pace = self.pace;
        let mut slot = 0u64;
        match &self.organ.cancel {
            Some(_) => {
                self.send_cancel(out, Order::Registration, Stamp { t: 0, tick, section: 0 });
                self.last_stop_t = Some(0);
                slot = 1;
            }
            None => {
                for id in (0..self.messages.controls.len()).filter(|&id| !self.messages.controls[id].toggle) {
                    let t = slot * pace;
                    self.send(out, Order::Registration, Stamp { t, tick, section: 0 }, id, Action::Cancel);
                    self.last_stop_t = Some(t);
                    slot += 1;
                }
            }
        }
        for id in start.controls() {
            let t = slot * pace;
            self.send(out, Order::Registration, Stamp { t, tick, section: 0 }, id, Action::Draw);
            self.last_stop_t = Some(t);
            slot += 1;
        }
        if slot > 0 { (slot - 1) * pace + self.lead } else { 0 }
    }

    /// A change from `before` to `after` for notes at `music_t`: the offs, then the ons, paced
    /// backwards from `stop_lead_ms` before `music_t`, and never sooner than the pace after the
    /// previous registration message, nor than `not_before`. `None` when nothing changes.
    pub fn change(
        &mut self,
        out: &mut Messages,
        (before, after): (&Drawn, &Drawn),
        (music_t, not_before): (u64, u64),
        tick: u64,
        section: u16,
    ) -> Option<ScheduledChange> {
        let (offs, ons) = before.changes_to(after);
        let k = (offs.len() + ons.len()) as u64;
        if k == 0 {
            return None;
        }
        let (lead, pace) = (self.lead, self.pace);
        let mut t = music_t.saturating_sub(lead + (k - 1) * pace).max(not_before);
        if let Some(prev) = self.last_stop_t {
            t = t.max(prev + pace);
        }
        let first_t = t;
        for (j, &id) in offs.iter().chain(ons.iter()).enumerate() {
            let action = if j < offs.len() { Action::PutIn } else { Action::Draw };
            self.send(out, Order::Registration, Stamp { t, tick, section }, id, action);
            self.last_stop_t = Some(t);
            if (j as u64) + 1 < k {
                t += pace;
            }
        }
        Some(ScheduledChange { first_t, controls: k, late_us: (t + lead).saturating_sub(music_t) })
    }

    /// The closing cancel, at `end_t` or the pace after the last registration message: the
    /// General Cancel, or every control's off one every pace, where a toggle's message is sent
    /// only when `drawn` (the state at the end) has it drawn. Returns when it begins.
    pub fn cancel_at_end(&mut self, out: &mut Messages, end_t: u64, (tick, section): (u64, u16), drawn: &Drawn) -> u64 {
        let mut t = end_t;
        if let Some(prev) = self.last_stop_t {
            t = t.max(prev + self.pace);
        }
        let cancel_start = t;
        match &self.organ.cancel {
            Some(_) => self.send_cancel(out, Order::Tail, Stamp { t, tick, section }),
            None => {
                let controls = &self.messages.controls;
                for id in (0..controls.len()).filter(|&id| !controls[id].toggle || drawn.is_drawn(id)) {
                    self.send(out, Order::Tail, Stamp { t, tick, section }, id, Action::Cancel);
                    t += self.pace;
                }
            }
        }
        cancel_start
    }
}

/// Every registration change after the setup, in performance order: each state of `schedule`
/// that differs from the one before is sent ahead of the notes at its point (a section's
/// starting state in the breath after the previous section's last release). `registrations`
/// gets the state each change sets up, from its first message on; a change the pace or a short
/// breath makes late adds a warning.
pub(crate) fn schedule_changes(
    stops: &mut StopScheduler,
    schedule: &DrawnSchedule,
    (segments, time): (&[Segment], &TimeMap),
    out: &mut Messages,
    registrations: &mut Vec<RegistrationState>,
    warnings: &mut Vec<PlanWarning>,
) {
    for pair in schedule.points().windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let (s, tick) = (after.segment, after.tick);
        let music_t = time.time(s, tick);
        // A section's start: not before the previous section's last release.
        let breath = (after.segment != before.segment).then(|| time.end(before.segment).0);
        let timing = (music_t, breath.unwrap_or(0));
        let Some(change) = stops.change(out, (&before.drawn, &after.drawn), timing, tick, s as u16) else {
            continue;
        };
        if change.late_us > 0 {
            let late = change.late_us as f64 / 1000.0;
            let (kind, text) = match breath {
                Some(end) => (
                    WarningKind::ShortBreath,
                    format!(
                        "the breath before it ({:.0} ms) is too short for its registration change ({} stop message(s)) and stop_lead_ms: it finishes {late:.1} ms later than stop_lead_ms asks; lengthen the gap",
                        music_t.saturating_sub(end) as f64 / 1000.0,
                        change.controls
                    ),
                ),
                None => (
                    WarningKind::LateChange,
                    format!(
                        "the registration change ({} stop message(s)) finishes {late:.1} ms later than stop_lead_ms asks; earlier changes or stop_pace_ms crowd it",
                        change.controls
                    ),
                ),
            };
            warnings.push(segments[s].locate(PlanWarning::new(kind, text), s, change.first_t, tick));
        }
        registrations.push(RegistrationState {
            t: Micros(change.first_t),
            drawn: after.drawn.controls(),
            preset: after.drawn.preset_name(stops.organ),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::console_sim::{Console, TOGGLE_REGISTRATION, toggle_organ};
    use crate::plan::hymn::fixture;
    use crate::plan::{Kind, PlanError, PlanOptions, Timeline, plan};

    fn plan_on(organ: &crate::organ::Organ, opts: &PlanOptions) -> Result<Timeline, PlanError> {
        let reg = fixture::registration(organ, TOGGLE_REGISTRATION);
        plan(&fixture::score(), organ, Some(&reg), opts)
    }

    /// Plays `t` into `console`: its state at the first note-on, and at the end.
    fn play<'a>(t: &Timeline, organ: &'a crate::organ::Organ, console: &mut Console) -> (Vec<&'a str>, Vec<&'a str>) {
        let mut at_first_note = None;
        for e in &t.events {
            if e.kind == Kind::NoteOn && at_first_note.is_none() {
                at_first_note = Some(console.names(organ));
            }
            console.receive(t.bytes(&e.msg));
        }
        (at_first_note.unwrap(), console.names(organ))
    }

    #[test]
    fn toggles_without_a_general_cancel_are_refused_with_both_remedies() {
        let organ = toggle_organ("");
        let e = plan_on(&organ, &PlanOptions::default()).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "toggle-organ.toml: 5 controls toggle (the same message draws and puts in, e.g. \"Gt Principal 8\")"
            ),
            "{e}"
        );
        assert!(e.contains("[cancel] message = { … }") && e.contains("[cancel] everything_in_at_start = true"), "{e}");
    }

    #[test]
    fn a_console_known_to_start_all_in_gets_exactly_the_registration_and_is_put_in_at_the_end() {
        let organ = toggle_organ("everything_in_at_start = true");
        let t = plan_on(&organ, &PlanOptions::default()).unwrap();
        let mut console = Console::new(&organ, vec![false; organ.controls.len()]);
        let (first, end) = play(&t, &organ, &mut console);
        assert_eq!(first, ["Gt Principal 8", "Gt Flute 4", "Ped Subbass 16", "Ped Octave 8", "Gt to Ped"]);
        assert!(end.is_empty(), "everything in at the end: {end:?}");
        // No toggle is sent before its first change: the setup sends only the state stop's off.
        let setup: Vec<&str> = t
            .events
            .iter()
            .take_while(|e| e.kind == Kind::Cancel)
            .map(|e| t.controls[e.control().unwrap()].name.as_str())
            .collect();
        assert_eq!(setup, ["Ped Octave 8"]);
        // With the stops kept, the console ends with the last registration, p.
        let keep = plan_on(&organ, &PlanOptions { keep_stops: true, ..PlanOptions::default() }).unwrap();
        let mut console = Console::new(&organ, vec![false; organ.controls.len()]);
        assert_eq!(play(&keep, &organ, &mut console).1, ["Gt Principal 8", "Ped Subbass 16"]);
    }

    #[test]
    fn a_general_cancel_brings_any_console_state_to_the_registration() {
        let organ = toggle_organ("message = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }");
        let t = plan_on(&organ, &PlanOptions::default()).unwrap();
        // Left by the last organist: the Trumpet, the Subbass and the state stop drawn.
        let start = organ
            .controls
            .iter()
            .map(|c| ["Gt Trumpet 8", "Ped Subbass 16", "Ped Octave 8"].contains(&c.name.as_str()))
            .collect();
        let mut console = Console::new(&organ, start);
        let (first, end) = play(&t, &organ, &mut console);
        assert_eq!(first, ["Gt Principal 8", "Gt Flute 4", "Ped Subbass 16", "Ped Octave 8", "Gt to Ped"]);
        assert!(end.is_empty(), "{end:?}");
    }

    #[test]
    fn from_a_bar_the_chased_registration_is_drawn() {
        let organ = toggle_organ("everything_in_at_start = true");
        let from = crate::registration::At::Bar { bar: 3, beat: 1.0 };
        let t = plan_on(&organ, &PlanOptions { from: Some(from), ..PlanOptions::default() }).unwrap();
        let mut console = Console::new(&organ, vec![false; organ.controls.len()]);
        let (first, end) = play(&t, &organ, &mut console);
        assert_eq!(first, ["Gt Principal 8", "Gt Trumpet 8", "Ped Subbass 16", "Ped Octave 8", "Gt to Ped"]);
        assert!(end.is_empty());
    }
}
