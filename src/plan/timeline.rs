//! The [`Timeline`]: the finished plan, an immutable array of timed messages sorted by send time,
//! with provenance for display. The real-time engine walks `events` in order and needs nothing
//! else; the rest is for the status line, reports and the release sequences.

use crate::midi::{Channel, Message, Micros, ShortMsg};
use crate::organ::{ControlId, ControlKind};
use crate::score::{BarBeat, MeterMap};

/// What a planned message does. `as_str` is the `kind` of `organ plan --format jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    NoteOn,
    NoteOff,
    StopOn,
    StopOff,
    CouplerOn,
    CouplerOff,
    TremulantOn,
    TremulantOff,
    /// Part of the General Cancel (or one control's off sent as part of a cancel).
    Cancel,
    /// CC 123 on a division channel.
    AllNotesOff,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::NoteOn,
        Kind::NoteOff,
        Kind::StopOn,
        Kind::StopOff,
        Kind::CouplerOn,
        Kind::CouplerOff,
        Kind::TremulantOn,
        Kind::TremulantOff,
        Kind::Cancel,
        Kind::AllNotesOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NoteOn => "note_on",
            Kind::NoteOff => "note_off",
            Kind::StopOn => "stop_on",
            Kind::StopOff => "stop_off",
            Kind::CouplerOn => "coupler_on",
            Kind::CouplerOff => "coupler_off",
            Kind::TremulantOn => "tremulant_on",
            Kind::TremulantOff => "tremulant_off",
            Kind::Cancel => "cancel",
            Kind::AllNotesOff => "all_notes_off",
        }
    }

    /// The kind of drawing (`on`) or putting in a control of this kind.
    pub fn for_control(kind: ControlKind, on: bool) -> Kind {
        match (kind, on) {
            (ControlKind::Stop, true) => Kind::StopOn,
            (ControlKind::Stop, false) => Kind::StopOff,
            (ControlKind::Coupler { .. }, true) => Kind::CouplerOn,
            (ControlKind::Coupler { .. }, false) => Kind::CouplerOff,
            (ControlKind::Tremulant, true) => Kind::TremulantOn,
            (ControlKind::Tremulant, false) => Kind::TremulantOff,
        }
    }

    /// True for messages that change the registration (stop/coupler/tremulant on/off, cancel).
    pub fn is_registration(self) -> bool {
        !matches!(self, Kind::NoteOn | Kind::NoteOff | Kind::AllNotesOff)
    }
}

/// A message's bytes: inline, or an index into [`Timeline::long`] (SysEx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    Short(ShortMsg),
    Long(u32),
}

/// "No division / control / part" markers for [`Event`]'s compact fields.
pub const NONE_U8: u8 = u8::MAX;
pub const NONE_U16: u16 = u16::MAX;

/// One planned message. 32 bytes, `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// When to send it, from the start of the performance.
    pub t: Micros,
    pub msg: Msg,
    pub kind: Kind,
    /// Index into [`Timeline::divisions`], or [`NONE_U8`].
    pub division: u8,
    /// Index into [`Timeline::controls`], or [`NONE_U16`].
    pub control: u16,
    /// 1-based part number for notes; 0 for everything else.
    pub part: u16,
    /// Position in the score, in ticks (for bar:beat).
    pub tick: u64,
    /// Index into [`Timeline::sections`]: which play-over, verse or amen (or the whole piece)
    /// the message belongs to.
    pub section: u16,
}

impl Event {
    pub fn division(&self) -> Option<usize> {
        (self.division != NONE_U8).then_some(usize::from(self.division))
    }
    pub fn control(&self) -> Option<ControlId> {
        (self.control != NONE_U16).then_some(usize::from(self.control))
    }
    pub fn part(&self) -> Option<usize> {
        (self.part != 0).then_some(usize::from(self.part))
    }
}

/// What a stretch of the performance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// A score played once, as written (not a hymn).
    Piece,
    /// A hymn's play-over (the tune given out before verse 1).
    PlayOver,
    Verse,
    Amen,
}

impl SectionKind {
    /// The `section` of `organ plan --format jsonl` (`None` for a piece that is not a hymn).
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            SectionKind::Piece => None,
            SectionKind::PlayOver => Some("play-over"),
            SectionKind::Verse => Some("verse"),
            SectionKind::Amen => Some("amen"),
        }
    }
}

/// One stretch of the performance: the whole piece, or a hymn's play-over, one verse, the amen.
/// Sections follow each other in time; between hymn sections lies the gap.
#[derive(Debug, Clone)]
pub struct Section {
    pub kind: SectionKind,
    /// 1-based verse number (verses only; 0 otherwise).
    pub verse: u16,
    /// How many verses the hymn has (0 for a piece).
    pub verses: u16,
    /// Plan time of the section's first note (its music starts here).
    pub start: Micros,
    /// Plan time of the section's last note-off (with any fermata holds).
    pub end: Micros,
    /// The score bars it plays.
    pub first_bar: u32,
    pub last_bar: u32,
    /// The file it comes from.
    pub score_name: String,
    /// Bars and beats of that file, when it is not the timeline's main score (an amen file).
    pub meter: Option<MeterMap>,
}

impl Section {
    /// For people: "play-over", "verse 3 of 4", "amen", or the score's name.
    pub fn label(&self) -> String {
        match self.kind {
            SectionKind::Piece => self.score_name.clone(),
            SectionKind::PlayOver => "play-over".into(),
            SectionKind::Verse => format!("verse {} of {}", self.verse, self.verses),
            SectionKind::Amen => "amen".into(),
        }
    }
}

/// Why the plan waits for the operator at a [`WaitPoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// A fermata with `wait = true`: always waits; the held keys keep sounding.
    Fermata,
    /// The end of a play-over or verse: waits only when the operator asked for it (the service
    /// view's "pause at the end of this verse"); nothing is sounding there.
    SectionEnd,
}

/// A point where the engine may stop the clock and wait for [`crate::engine::Command::Continue`],
/// with every key that is down left down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPoint {
    /// Index of the first event after the wait in [`Timeline::events`].
    pub index: usize,
    /// Plan time at which the wait begins (never after `events[index].t`).
    pub t: Micros,
    pub kind: WaitKind,
    /// The section the wait ends (fermata: the section it is in).
    pub section: u16,
}

/// A division as the timeline needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DivisionInfo {
    pub name: String,
    pub code: char,
    pub channel: Channel,
}

/// A control as the timeline needs it (for re-sending a registration after a reconnect).
#[derive(Debug, Clone)]
pub struct ControlInfo {
    pub name: String,
    pub kind: ControlKind,
    pub division: Option<usize>,
    pub on: Vec<Msg>,
    pub off: Vec<Msg>,
    /// `on` and `off` are one message that flips the control: send it only to change a state
    /// known to be the other one.
    pub toggle: bool,
    /// A stop's `voice = { … }`, for the built-in organ voice.
    pub voice: Option<crate::organ::voice::VoiceSpec>,
}

/// A registration and when it takes over (for the status line, seeking, and re-sending it after
/// a reconnect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationState {
    /// The time of the first message that sets it up. Stop messages go out ahead of the notes
    /// that need them (`stop_lead_ms`), so from this time on the organ is being given this
    /// registration: re-sending it from a cancel at any later point is right, and the rest of
    /// the batch still to come only repeats it.
    pub t: Micros,
    /// The controls drawn, in organ order.
    pub drawn: Vec<ControlId>,
    /// The preset this state equals, when it equals one exactly.
    pub preset: Option<String>,
}

/// The finished plan.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub score_name: String,
    pub organ_name: String,
    /// Sorted by `t`; at equal times note-offs, then registration changes, then note-ons.
    pub events: Vec<Event>,
    /// SysEx bodies referenced by [`Msg::Long`].
    pub long: Vec<Box<[u8]>>,
    pub divisions: Vec<DivisionInfo>,
    pub controls: Vec<ControlInfo>,
    /// The organ's presets (name, controls), for naming registrations on the status line.
    pub presets: Vec<(String, Vec<ControlId>)>,
    /// The messages that cancel whatever the console's state: the General Cancel, or every
    /// control's off except the toggles' (a toggle is put in by sending its message when it is
    /// known to be drawn; see [`Timeline::general_cancel`]).
    pub cancel: Vec<Msg>,
    /// `cancel` is the console's General Cancel, which puts in every control, toggles too.
    pub general_cancel: bool,
    /// Cancel the registration when playback stops or ends.
    pub cancel_at_end: bool,
    pub stop_pace: Micros,
    /// Registration states in time order; the first is the starting registration.
    pub registrations: Vec<RegistrationState>,
    pub meter: MeterMap,
    /// Last bar of the performed range.
    pub last_bar: u32,
    /// Time of the last event.
    pub duration: Micros,
    /// The speed factor applied to the score (100 = as written), for display.
    pub speed_percent: f64,
    /// What `organ check` and `organ play` tell the organist about this plan, positioned.
    pub warnings: Vec<super::PlanWarning>,
    /// The play-over, verses and amen of a hymn, in order (one [`SectionKind::Piece`] section
    /// otherwise). Every event's `section` indexes this.
    pub sections: Vec<Section>,
    /// Where the engine may wait for the operator, by event index (empty for a piece).
    pub waits: Vec<WaitPoint>,
}

impl Timeline {
    /// The bytes of a planned message.
    pub fn bytes<'a>(&'a self, msg: &'a Msg) -> &'a [u8] {
        match msg {
            Msg::Short(m) => m.as_bytes(),
            Msg::Long(i) => &self.long[*i as usize],
        }
    }

    pub fn position(&self, e: &Event) -> BarBeat {
        match self.sections.get(usize::from(e.section)).and_then(|s| s.meter.as_ref()) {
            Some(m) => m.position(e.tick),
            None => self.meter.position(e.tick),
        }
    }

    /// The section an event belongs to.
    pub fn section_of(&self, e: &Event) -> Option<&Section> {
        self.sections.get(usize::from(e.section))
    }

    /// True when this plan is a hymn unrolled into play-over, verses and amen.
    pub fn is_hymn(&self) -> bool {
        self.sections.iter().any(|s| s.kind != SectionKind::Piece)
    }

    /// The registration in force at time `t`.
    pub fn registration_at(&self, t: Micros) -> Option<&RegistrationState> {
        let i = self.registrations.partition_point(|r| r.t <= t);
        self.registrations.get(i.checked_sub(1)?)
    }

    /// Adds a message to the SysEx pool (or inlines a short one).
    pub fn intern(long: &mut Vec<Box<[u8]>>, m: &Message) -> Msg {
        match m {
            Message::Short(s) => Msg::Short(*s),
            Message::Sysex(b) => {
                if let Some(i) = long.iter().position(|x| x == b) {
                    Msg::Long(i as u32)
                } else {
                    long.push(b.clone());
                    Msg::Long((long.len() - 1) as u32)
                }
            }
        }
    }

    /// Number of events of each kind.
    pub fn count(&self, kind: Kind) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_event_stays_32_bytes() {
        // The engine walks millions of these; the section index fits in the padding.
        assert_eq!(std::mem::size_of::<super::Event>(), 32);
    }
}
