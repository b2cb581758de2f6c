//! [`PlanWarning`]: something about a plan worth telling the organist before it is played,
//! positioned where it applies: the time in the performance, the section (play-over, verse,
//! amen) and bar:beat in its score, and the division. `organ check` lists them, `organ play`
//! prints them before it starts, and a picture of the plan can place them.
//!
//! The planner's stages and the checks in [`super::check`] make them; nothing here is built from
//! strings after the fact. Pure; used on the control thread only.

use std::fmt;

use crate::midi::Micros;
use crate::score::BarBeat;

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// Notes on a division where no stop sounds (nothing drawn there, no coupler bringing any).
    Silent,
    /// A registration change on a division while its keys are held.
    ChangeUnderHeldKeys,
    /// A registration change at or after the end of the music: it has no effect.
    ChangeAfterTheEnd,
    /// An entry that changes nothing (a change to what is already drawn, a fermata given twice).
    NoEffect,
    /// A registration change the stop pace makes later than `stop_lead_ms` asks.
    LateChange,
    /// A breath between sections too short for the next section's registration change.
    ShortBreath,
    /// A note outside its division's compass, played an octave (or more) away.
    Folded,
    /// A part played octaves away as a whole (it lies mostly outside the compass, as a 16'
    /// pedal line written an octave low does). A note, not a warning.
    MovedPart,
    /// Notes struck while the same key was down, merged (one pipe per key, as an organist plays
    /// two voices that meet). A note, not a warning.
    Merged,
    /// Notes on and off at the same tick, left out.
    ZeroLength,
    /// A setting that is not used (a verse the hymn does not have, options `--from` ignores).
    Ignored,
    /// Sections of a hymn that `--from`/`--until` leave out, as asked. A note.
    LeftOut,
    /// A verse's own registration for a verse (or play-over) that is not played, as when an
    /// order of service plays fewer verses than the registration file has. A note.
    NotPlayed,
}

/// A remark about the plan and where it applies.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanWarning {
    pub kind: WarningKind,
    /// When in the performance (µs from its start), when it concerns one moment.
    pub t: Option<Micros>,
    /// Index into [`super::Timeline::sections`] of the section it is in.
    pub section: Option<u16>,
    /// Bar and beat in that section's score.
    pub position: Option<BarBeat>,
    /// The place for people: `bar 12:3`, `verse 2, bar 12:3`, `amen, bar 17`.
    pub place: Option<String>,
    /// Index into [`super::Timeline::divisions`], and the division's name.
    pub division: Option<usize>,
    pub division_name: Option<String>,
    /// What is wrong, and what to do about it, without the place and division.
    pub text: String,
}

impl WarningKind {
    /// True for remarks that say what `organ` does with the score as an organist would, where
    /// nothing is wrong: printed as `note:`, not counted by `check --deny-warnings`.
    pub fn is_note(self) -> bool {
        matches!(self, WarningKind::MovedPart | WarningKind::Merged | WarningKind::LeftOut | WarningKind::NotPlayed)
    }

    /// `note` or `warning`, for the line printed.
    pub fn label(self) -> &'static str {
        if self.is_note() { "note" } else { "warning" }
    }
}

impl PlanWarning {
    /// A warning not tied to a moment or a division.
    pub fn new(kind: WarningKind, text: impl Into<String>) -> PlanWarning {
        PlanWarning {
            kind,
            t: None,
            section: None,
            position: None,
            place: None,
            division: None,
            division_name: None,
            text: text.into(),
        }
    }

    /// Placed at time `t` of section `section`, at `position` in its score, described as `place`.
    pub fn at(mut self, t: Micros, section: usize, position: BarBeat, place: String) -> PlanWarning {
        self.t = Some(t);
        self.section = Some(section as u16);
        self.position = Some(position);
        self.place = Some(place);
        self
    }

    /// Concerning division `d`, whose name the text already says.
    pub fn in_division(mut self, d: usize) -> PlanWarning {
        self.division = Some(d);
        self
    }

    /// Concerning division `d`, called `name` (which the text does not say).
    pub fn on(mut self, d: usize, name: &str) -> PlanWarning {
        self.division = Some(d);
        self.division_name = Some(name.to_string());
        self
    }
}

impl fmt::Display for PlanWarning {
    /// `verse 2, bar 12:3: great: <text>`, leaving out what is not known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.place {
            write!(f, "{p}: ")?;
        }
        if let Some(d) = &self.division_name {
            write!(f, "{d}: ")?;
        }
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_place_division_text() {
        let w = PlanWarning::new(WarningKind::Silent, "14 notes sound no stop");
        assert_eq!(w.to_string(), "14 notes sound no stop");
        let pos = BarBeat { bar: 12, beat: 3, tick_in_beat: 0, beat_ticks: 480 };
        let w = w.at(Micros(5_000_000), 2, pos, "verse 2, bar 12:3".into()).on(1, "great");
        assert_eq!(w.to_string(), "verse 2, bar 12:3: great: 14 notes sound no stop");
        assert_eq!((w.t, w.section, w.division), (Some(Micros(5_000_000)), Some(2), Some(1)));
    }
}
