//! Planning: score + organ + registration + options → [`Timeline`].
//!
//! Pure and deterministic; runs on the control thread before playback, never on the real-time
//! thread, and does no I/O. Everything the engine will do is decided here: the time of every
//! message (exact rational arithmetic from ticks, rounded once to microseconds), which parts go
//! to which division, transposition and compass folding, one pipe per key (keys merged across
//! parts of a division), the registration at every point (chased when starting mid-piece), stop
//! lead and pacing, and the closing release and cancel.
//!
//! A performance is a list of `Segment`s played one after another: one for a piece played
//! once ([`plan`]), or a hymn's play-over, verses and amen ([`hymn::plan_hymn`]).
//! `plan_segments` runs the stages, each in its own module and readable on its own:
//!
//! 1. `controls`: the organ's control and cancel messages, interned; `--stops` resolved;
//! 2. `drawn`, the registration state: which controls are drawn from each point on;
//! 3. `stops`, stop scheduling: the setup from time 0 (cancel, then the first registration),
//!    which sets when the music can start;
//! 4. `time`, the time map: the start and end of every segment, the time of every tick;
//! 5. `stops` again: every later registration change, ahead of its notes by the lead, paced;
//! 6. `keys`: notes → keys of a division, transposed, in the compass, one pipe per key;
//! 7. `closing`: all-notes-off on every division and the cancel after the last note;
//! 8. `sections`: the timeline's sections and the points where the engine may wait.
//!
//! Each stage adds its messages to `messages::Messages`; the order rule at equal times is
//! note-offs, then registration messages, then note-ons, then the closing sequence.
//!
//! Around the stages: [`layout`] gives each part its division, [`hymn`] unrolls a hymn into
//! segments, `timeline` is the result the engine walks, [`report`] writes it as text or JSON
//! lines, and `error` says why a plan cannot be made.

mod check;
mod closing;
#[cfg(test)]
pub(crate) mod console_sim;
mod controls;
mod drawn;
mod error;
pub mod hymn;
mod keys;
pub mod layout;
mod messages;
pub mod range;
pub mod report;
mod sections;
mod stops;
mod suggest;
mod time;
mod timeline;
mod warning;

use crate::midi::{Channel, Micros};
use crate::organ::{ControlId, Organ};
use crate::registration::{At, Registration};
use crate::score::{ExactTime, Score};

pub use error::{PlanError, TempoError};
pub use time::MAX_LENGTH;
pub(crate) use time::{EXACT_ZERO, exact_add};
pub use timeline::{
    ControlInfo, DivisionInfo, Event, Kind, Msg, NONE_U8, NONE_U16, RegistrationState, Section, SectionKind, Timeline,
    WaitKind, WaitPoint,
};
pub use warning::{PlanWarning, WarningKind};

/// The layout used when neither `--layout` nor the registration file gives one.
pub const DEFAULT_LAYOUT: &str = "SSGGP";

/// How fast to play.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Speed {
    #[default]
    AsWritten,
    /// Percent of the written tempo (80 = slower).
    Percent(f64),
    /// The opening tempo becomes this many quarter notes a minute; later tempo changes keep their
    /// proportion.
    Bpm(f64),
}

impl Speed {
    /// Parses `80%`, `80`, `1.2x` for `--tempo`.
    ///
    /// # Errors
    /// Not a percentage, or one outside 10 %-400 %.
    pub fn parse_tempo(s: &str) -> Result<Speed, TempoError> {
        let t = s.trim();
        let bad = || TempoError::NotAPercentage { given: s.to_string() };
        let v: f64 = if let Some(x) = t.strip_suffix('x') {
            x.trim().parse::<f64>().map_err(|_| bad())? * 100.0
        } else {
            t.trim_end_matches('%').trim().parse().map_err(|_| bad())?
        };
        if !(10.0..=400.0).contains(&v) {
            return Err(TempoError::OutOfRange { given: s.to_string() });
        }
        Ok(Speed::Percent(v))
    }
}

/// Everything the user can ask of a plan besides the files.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--layout`, overriding the registration file's.
    pub layout: Option<String>,
    /// `--map 1=swell,…`.
    pub map: Option<String>,
    pub speed: Speed,
    /// Semitones.
    pub transpose: i32,
    /// Start here (registration chased).
    pub from: Option<At>,
    /// Stop at the end of this bar (or at this exact position for bar:beat and seconds).
    pub until: Option<At>,
    /// `--from verse:3` and the like: start inside a hymn, keeping its structure.
    pub hymn_from: Option<crate::registration::HymnAt>,
    /// `--until verse:3` and the like: end inside a hymn.
    pub hymn_until: Option<crate::registration::HymnAt>,
    /// `--stops`: drawn at the start, on top of the registration.
    pub stops: Vec<String>,
    /// Leave the stops drawn at the end (overrides the organ's `cancel.at_end`).
    pub keep_stops: bool,
}

/// MIDI key number as a note name (60 = C4).
pub fn key_name(key: u8) -> String {
    const N: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
    format!("{}{}", N[usize::from(key % 12)], i32::from(key / 12) - 1)
}

/// The division of every part of `score`, from `--layout`/`--map` or the registration file.
///
/// # Errors
/// As [`layout::resolve`].
pub(crate) fn assignment(
    score: &Score,
    organ: &Organ,
    registration: Option<&Registration>,
    opts: &PlanOptions,
) -> Result<Vec<Option<usize>>, PlanError> {
    let (layout, layout_from) = match (&opts.layout, registration.and_then(|r| r.layout.as_ref())) {
        (Some(l), _) => (l.clone(), "--layout".to_string()),
        (None, Some(l)) => (l.clone(), registration.map(|r| r.source.clone()).unwrap_or_default()),
        (None, None) => (DEFAULT_LAYOUT.to_string(), "the default".to_string()),
    };
    let map = opts.map.as_deref().or(registration.and_then(|r| r.map.as_deref()));
    Ok(layout::resolve(score, organ, layout::LayoutSource { layout: &layout, from: &layout_from }, map)?)
}

/// Makes the plan of a piece played once, or of the part `--from`/`--until` give.
///
/// # Errors
/// Layout problems, positions outside the score, unknown `--stops` names.
pub fn plan(
    score: &Score,
    organ: &Organ,
    registration: Option<&Registration>,
    opts: &PlanOptions,
) -> Result<Timeline, PlanError> {
    check_organ(organ)?;
    for (what, at) in [("--from", &opts.hymn_from), ("--until", &opts.hymn_until)] {
        if let Some(at) = at {
            return Err(PlanError::NotAHymn { what, position: at.to_string() });
        }
    }
    let assignment = assignment(score, organ, registration, opts)?;
    let (from, until) = performed_range(score, opts)?;
    let segment = Segment {
        score,
        assignment,
        registration,
        from,
        until,
        gap_before: Gap::default(),
        holds: Vec::new(),
        waits: Vec::new(),
        carry_registration: false,
        start_override: None,
        kind: SectionKind::Piece,
        verse: 0,
        verses: 0,
    };
    plan_segments(organ, opts, &[segment], score)
}

/// The ticks `--from` and `--until` give: from the start of the position `--from` names to the
/// end of the bar `--until` names (or exactly to a bar:beat or time), within the music.
fn performed_range(score: &Score, opts: &PlanOptions) -> Result<(u64, u64), PlanError> {
    let music_end = score.last_note_end();
    let last_bar = score.meter.position(music_end.saturating_sub(1)).bar;
    let from = opts.from.as_ref().map(|a| tick_of(score, a, "--from", last_bar)).transpose()?.unwrap_or(0);
    let until = match &opts.until {
        None => music_end,
        Some(at @ At::Bar { bar, beat }) if *beat == 1.0 => {
            if *bar > last_bar {
                return Err(past_the_end(score, "--until", at.to_string(), last_bar));
            }
            score.meter.bar_start(bar.saturating_add(1)).unwrap_or(music_end).min(music_end)
        }
        Some(at) => tick_of(score, at, "--until", last_bar)?.min(music_end),
    };
    if until <= from {
        return Err(PlanError::EmptyRange);
    }
    Ok((from, until))
}

/// The tick of a position given as `what` (`--from`, `--until`).
fn tick_of(score: &Score, at: &At, what: &'static str, last_bar: u32) -> Result<u64, PlanError> {
    match *at {
        At::Bar { bar, beat } => {
            if bar > last_bar {
                return Err(past_the_end(score, what, at.to_string(), last_bar));
            }
            score.meter.tick_of(bar, beat).ok_or_else(|| no_such_beat(score, what, at.to_string(), bar))
        }
        At::Time(t) => Ok(score.tempo.tick_at(t)),
    }
}

/// A position after the last bar of `score`.
pub(crate) fn past_the_end(score: &Score, what: &'static str, position: String, bars: u32) -> PlanError {
    PlanError::PastTheEnd { what, position, score: score.name.clone(), bars }
}

/// A position on a beat that `bar` of `score` does not have.
pub(crate) fn no_such_beat(score: &Score, what: &'static str, position: String, bar: u32) -> PlanError {
    let (beats, _) = score.meter.signature_at(score.meter.bar_start(bar).unwrap_or(0));
    PlanError::NoSuchBeat { what, position, bar, beats }
}

/// An organ the planner can number, and whose registration it can start from a known state.
fn check_organ(organ: &Organ) -> Result<(), PlanError> {
    if organ.divisions.len() >= usize::from(NONE_U8) || organ.controls.len() >= usize::from(NONE_U16) {
        return Err(PlanError::OrganTooLarge { organ: organ.source.clone() });
    }
    if !organ.start_is_known() {
        let toggles: Vec<&str> = organ.toggles().map(|c| c.name.as_str()).collect();
        return Err(PlanError::TogglesWithoutCancel {
            organ: organ.source.clone(),
            count: toggles.len(),
            first: toggles[0].to_string(),
        });
    }
    Ok(())
}

/// Silence between the end of one segment and the start of the next.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gap {
    /// Score time (µs at the written tempo), scaled by the speed like the music.
    pub scaled: ExactTime,
    /// Clock time, not scaled (a gap written in seconds).
    pub fixed: Micros,
}

impl Default for Gap {
    fn default() -> Self {
        Gap { scaled: EXACT_ZERO, fixed: Micros::ZERO }
    }
}

/// A registration applied on top of the chased one at the start of a segment (a verse's own
/// registration): `preset` replaces everything, then `off`, then `on`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StartOverride {
    pub preset: Option<usize>,
    pub on: Vec<ControlId>,
    pub off: Vec<ControlId>,
}

/// One stretch of a score in the performance, played from `from` to `until` (ticks of `score`).
pub(crate) struct Segment<'a> {
    pub score: &'a Score,
    pub assignment: Vec<Option<usize>>,
    /// Whose `[[change]]`s apply (positions in `score`).
    pub registration: Option<&'a Registration>,
    pub from: u64,
    pub until: u64,
    /// Silence before this segment (after the previous one's last note-off).
    pub gap_before: Gap,
    /// Fermata holds: at this tick everything from here on is delayed by this much score time
    /// (µs at the written tempo, exact). Sorted by tick.
    pub holds: Vec<(u64, ExactTime)>,
    /// Ticks where the plan waits for the operator (after any hold at the same tick).
    pub waits: Vec<u64>,
    /// Start from the registration in force at the end of the previous segment (an amen)
    /// instead of the registration file's state at `from`.
    pub carry_registration: bool,
    pub start_override: Option<StartOverride>,
    pub kind: SectionKind,
    pub verse: u16,
    pub verses: u16,
}

impl Segment<'_> {
    /// `w` placed at `tick` of this segment (segment `s`), at plan time `t`.
    pub fn locate(&self, w: PlanWarning, s: usize, t: u64, tick: u64) -> PlanWarning {
        w.at(Micros(t), s, self.score.meter.position(tick), self.place(tick))
    }

    /// A tick of this segment for people: `bar 3:2`, `verse 2, bar 3:2`, `amen, bar 17`.
    pub fn place(&self, tick: u64) -> String {
        let pos = self.score.meter.position(tick);
        match self.kind {
            SectionKind::Piece => format!("bar {pos}"),
            SectionKind::PlayOver => format!("play-over, bar {pos}"),
            SectionKind::Verse => format!("verse {}, bar {pos}", self.verse),
            SectionKind::Amen => format!("amen, bar {pos}"),
        }
    }
}

/// Plans segments played one after another into one timeline. `main` is the score whose bars
/// the timeline's `meter` describes (the first segment's).
pub(crate) fn plan_segments(
    organ: &Organ,
    opts: &PlanOptions,
    segments: &[Segment],
    main: &Score,
) -> Result<Timeline, PlanError> {
    check_organ(organ)?;
    let first = segments.first().ok_or(PlanError::NothingToPlay)?;
    if segments.len() >= usize::from(NONE_U16) {
        return Err(PlanError::TooManySections);
    }
    let hymn = first.kind != SectionKind::Piece;

    let organ_messages = controls::OrganMessages::new(organ);
    let changes = drawn::changes_by_segment(segments)?;
    let extra = controls::extra_stops(organ, &opts.stops)?;
    let schedule = drawn::DrawnSchedule::new(organ, segments, &changes, &extra);
    let mut warnings: Vec<PlanWarning> = Vec::new();
    check::changes_without_effect(segments, &changes, &schedule, &mut warnings);

    let mut out = messages::Messages::default();
    let mut stops = stops::StopScheduler::new(organ, &organ_messages);
    let start = &schedule.points()[0].drawn;
    let origin = stops.setup(&mut out, start, first.from);
    let mut registrations =
        vec![RegistrationState { t: Micros(0), drawn: start.controls(), preset: start.preset_name(organ) }];
    let time = time::TimeMap::new(segments, opts.speed, origin)?;
    stops::schedule_changes(&mut stops, &schedule, (segments, &time), &mut out, &mut registrations, &mut warnings);

    let keys = keys::Keys::collect(organ, (segments, &time), opts.transpose, main, &mut warnings);
    check::held_across_changes(organ, &schedule, (segments, &time), &keys, &mut warnings);
    let last_note_t = keys.merge(organ, &time, origin, &mut out, &mut warnings);

    let last = segments.len() - 1;
    let end = closing::End { t: last_note_t.max(out.latest()), tick: segments[last].until, section: last as u16 };
    let cancel_at_end = organ.cancel_at_end && !opts.keep_stops;
    let drawn_at_end = &schedule.points()[schedule.points().len() - 1].drawn;
    closing::close(
        &organ_messages.divisions,
        &mut stops,
        (cancel_at_end, drawn_at_end),
        &end,
        &mut out,
        &mut registrations,
    );
    let events = out.into_events();
    check::silent_notes(organ, &schedule, segments, &events, &mut warnings);
    // Warnings about the files first, then in performance order.
    warnings.sort_by_key(|w| w.t);

    let waits = if hymn { sections::waits(segments, &events, &end) } else { Vec::new() };
    let controls::OrganMessages { divisions, controls, cancel, long } = organ_messages;
    let general_cancel = organ.cancel.is_some();
    Ok(Timeline {
        score_name: main.name.clone(),
        organ_name: organ.name.clone(),
        long,
        divisions,
        controls,
        presets: organ.presets.iter().map(|p| (p.name.clone(), p.controls.clone())).collect(),
        cancel,
        general_cancel,
        cancel_at_end,
        stop_pace: organ.stop_pace,
        registrations,
        meter: main.meter.clone(),
        last_bar: sections::last_bar(segments, main, hymn, end.tick),
        duration: events.last().map_or(Micros::ZERO, |e| e.t),
        speed_percent: time.speed_percent(),
        warnings,
        sections: sections::sections(segments, &time, main),
        waits,
        events,
    })
}

/// The channels of all divisions (for all-notes-off and panic).
pub fn division_channels(t: &Timeline) -> Vec<Channel> {
    t.divisions.iter().map(|d| d.channel).collect()
}
