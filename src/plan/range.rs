//! `--from` and `--until` inside a hymn: a position that names a section of the unrolled hymn
//! (`verse:3`, `verse:3:5` for verse 3 from bar 5, `verse:3:5:2` from its beat 2, `play-over`,
//! `play-over:14`, `amen`, `amen:17`), so that rehearsing or resuming keeps the hymn's
//! structure: the verses after it, their registrations, fermatas and breaths, the amen. Bars are
//! the score's own numbers (as the play-over's and amen's bars are written); an amen file's bars
//! are that file's.
//!
//! [`trim`] cuts the unrolled hymn's segments to the range and starts the first one with
//! exactly the registration it has there in the whole hymn. Pure; runs on the control thread
//! while planning.

use std::fmt;

use super::drawn::{DrawnSchedule, changes_by_segment};
use super::{PlanError, PlanWarning, SectionKind, Segment, StartOverride, WarningKind};
use crate::organ::registration::At;
use crate::organ::{ControlId, Organ};

/// A section of an unrolled hymn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HymnSection {
    PlayOver,
    /// Verse number, from 1.
    Verse(u16),
    Amen,
}

/// A position in an unrolled hymn: a section, and a bar (and beat) of its score, or its start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HymnAt {
    pub section: HymnSection,
    /// `At::Bar` only; `None` = the section's start (`--from`) or end (`--until`).
    pub at: Option<At>,
}

impl fmt::Display for HymnAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.section {
            HymnSection::PlayOver => f.write_str("play-over")?,
            HymnSection::Verse(n) => write!(f, "verse:{n}")?,
            HymnSection::Amen => f.write_str("amen")?,
        }
        match self.at {
            Some(At::Bar { bar, beat: 1.0 }) => write!(f, ":{bar}"),
            Some(At::Bar { bar, beat }) => write!(f, ":{bar}:{beat}"),
            _ => Ok(()),
        }
    }
}

impl HymnAt {
    /// Parses `verse:3`, `verse:3:5`, `verse:3:5:2.5`, `play-over[:BAR[:BEAT]]`,
    /// `amen[:BAR[:BEAT]]`. `Ok(None)` when `s` does not name a section (a plain position).
    ///
    /// # Errors
    /// A section name with a bad verse number or bar.
    pub fn parse(s: &str) -> Result<Option<HymnAt>, String> {
        let t = s.trim().to_ascii_lowercase();
        let mut parts = t.split(':');
        let head = parts.next().unwrap_or("");
        let bad = || {
            format!(
                "\"{s}\": write verse:N (verse N from its start), verse:N:BAR or verse:N:BAR:BEAT (bars as in the \
                 score), play-over[:BAR] or amen[:BAR]"
            )
        };
        let section = match head {
            "verse" | "v" => {
                let n: u16 = parts.next().and_then(|n| n.trim().parse().ok()).filter(|&n| n >= 1).ok_or_else(bad)?;
                HymnSection::Verse(n)
            }
            "play-over" | "playover" => HymnSection::PlayOver,
            "amen" => HymnSection::Amen,
            _ => return Ok(None),
        };
        let rest: Vec<&str> = parts.collect();
        let at = match rest.as_slice() {
            [] => None,
            [bar] | [bar, _] => {
                let text = rest.join(":");
                match At::parse(&text) {
                    Ok(a @ At::Bar { .. }) => Some(a),
                    _ => return Err(format!("{}; not \"{bar}\"", bad())),
                }
            }
            _ => return Err(bad()),
        };
        Ok(Some(HymnAt { section, at }))
    }
}

/// The index of the segment playing `section`.
fn find(segments: &[Segment], at: &HymnAt, what: &'static str) -> Result<usize, PlanError> {
    let found = segments.iter().position(|s| match at.section {
        HymnSection::PlayOver => s.kind == SectionKind::PlayOver,
        HymnSection::Verse(n) => s.kind == SectionKind::Verse && s.verse == n,
        HymnSection::Amen => s.kind == SectionKind::Amen,
    });
    found.ok_or_else(|| {
        let verses = segments.iter().filter(|s| s.kind == SectionKind::Verse).count();
        let has = |k| segments.iter().any(|s| s.kind == k);
        PlanError::NoSuchSection {
            what,
            position: at.to_string(),
            sections: format!(
                "{}{verses} verse(s){}",
                if has(SectionKind::PlayOver) { "a play-over, " } else { "" },
                if has(SectionKind::Amen) { " and an amen" } else { "" }
            ),
        }
    })
}

/// The tick of `at`'s bar (and beat) in segment `seg`, which must lie in it: from its start
/// (`--from`), or to the end of the bar (`--until` at a bar; exactly there with a beat).
fn tick_in(seg: &Segment, at: &HymnAt, what: &'static str, until: bool) -> Result<u64, PlanError> {
    let Some(At::Bar { bar, beat }) = at.at else {
        return Ok(if until { seg.until } else { seg.from });
    };
    let meter = &seg.score.meter;
    let outside = || PlanError::NotInSection {
        what,
        position: at.to_string(),
        first: meter.position(seg.from).bar,
        last: meter.position(seg.until.saturating_sub(1).max(seg.from)).bar,
    };
    let tick = if until && beat == 1.0 {
        meter.bar_start(bar.saturating_add(1)).unwrap_or(seg.until).min(seg.until)
    } else {
        meter.tick_of(bar, beat).ok_or_else(outside)?
    };
    let inside = if until { tick > seg.from && tick <= seg.until } else { tick >= seg.from && tick < seg.until };
    if !inside {
        return Err(outside());
    }
    Ok(tick)
}

/// Cuts an unrolled hymn to `from`..`until`: the sections before and after go, the first and
/// last are cut at the positions, and the first starts with exactly the registration it has
/// there when the whole hymn is played (`extra`: `--stops`). Returns a note of what is left out.
///
/// # Errors
/// A section the hymn does not have, a bar outside the section, an empty range.
pub(crate) fn trim<'a>(
    organ: &Organ,
    segments: Vec<Segment<'a>>,
    (from, until): (Option<&HymnAt>, Option<&HymnAt>),
    extra: &[ControlId],
) -> Result<(Vec<Segment<'a>>, Vec<PlanWarning>), PlanError> {
    let (first, from_tick) = match from {
        Some(at) => {
            let i = find(&segments, at, "--from")?;
            (i, tick_in(&segments[i], at, "--from", false)?)
        }
        None => (0, segments[0].from),
    };
    let last_index = segments.len() - 1;
    let (last, until_tick) = match until {
        Some(at) => {
            let i = find(&segments, at, "--until")?;
            (i, tick_in(&segments[i], at, "--until", true)?)
        }
        None => (last_index, segments[last_index].until),
    };
    if (last, until_tick) <= (first, from_tick) {
        return Err(PlanError::EmptyRange);
    }
    // The registration there, as the whole hymn has it.
    let changes = changes_by_segment(&segments)?;
    let whole = DrawnSchedule::new(organ, &segments, &changes, extra);
    let state = whole.at(first, from_tick);
    let (on, off): (Vec<ControlId>, Vec<ControlId>) = (0..organ.controls.len()).partition(|&c| state.is_drawn(c));
    let mut notes = Vec::new();
    let left_out: Vec<String> =
        segments[..first].iter().chain(&segments[last + 1..]).map(|s| section_label(s)).collect();
    if !left_out.is_empty() {
        let text = format!("{} left out (--from/--until)", crate::text::join_and(&left_out));
        notes.push(PlanWarning::new(WarningKind::LeftOut, text));
    }
    let mut kept: Vec<Segment<'a>> = segments.into_iter().take(last + 1).skip(first).collect();
    let start = &mut kept[0];
    start.from = from_tick;
    start.start_override = Some(StartOverride { preset: None, on, off });
    start.holds.retain(|h| h.0 > from_tick);
    start.waits.retain(|&w| w > from_tick);
    let end = kept.last_mut().expect("at least one segment");
    end.until = until_tick;
    end.holds.retain(|h| h.0 <= until_tick);
    end.waits.retain(|&w| w <= until_tick);
    Ok((kept, notes))
}

/// "the play-over", "verse 2", "the amen".
fn section_label(s: &Segment) -> String {
    match s.kind {
        SectionKind::PlayOver => "the play-over".into(),
        SectionKind::Verse => format!("verse {}", s.verse),
        SectionKind::Amen => "the amen".into(),
        SectionKind::Piece => "the piece".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_in_a_hymn() {
        let p = |s: &str| HymnAt::parse(s).unwrap().unwrap();
        assert_eq!(p("verse:3"), HymnAt { section: HymnSection::Verse(3), at: None });
        assert_eq!(p("Verse:3:5"), HymnAt { section: HymnSection::Verse(3), at: Some(At::Bar { bar: 5, beat: 1.0 }) });
        assert_eq!(p("verse:3:5:2.5").at, Some(At::Bar { bar: 5, beat: 2.5 }));
        assert_eq!(p("play-over").section, HymnSection::PlayOver);
        assert_eq!(p("amen:17").at, Some(At::Bar { bar: 17, beat: 1.0 }));
        assert_eq!(p("verse:3:5").to_string(), "verse:3:5");
        assert_eq!(HymnAt::parse("5").unwrap(), None);
        assert_eq!(HymnAt::parse("3:5").unwrap(), None, "bar:beat stays a plain position");
        assert!(HymnAt::parse("verse").is_err());
        assert!(HymnAt::parse("verse:0").is_err());
        assert!(HymnAt::parse("verse:2:x").is_err());
        assert!(HymnAt::parse("verse:2:1:2:3").is_err());
        assert!(HymnAt::parse("verse:2:12.5s").is_err());
    }
}
