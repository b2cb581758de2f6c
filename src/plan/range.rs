//! `--from` and `--until` inside a hymn: a position that names a section of the unrolled hymn
//! ([`HymnAt`]: `verse:3`, `verse:3:5` for verse 3 from bar 5, `verse:3:5:2` from its beat 2,
//! `play-over`, `play-over:14`, `amen`, `amen:17`), so that rehearsing or resuming keeps the
//! hymn's structure: the verses after it, their registrations, fermatas and breaths, the amen.
//! Bars are the score's own numbers (as the play-over's and amen's bars are written); an amen
//! file's bars are that file's.
//!
//! [`trim`] cuts the unrolled hymn's segments to the range and starts the first one with
//! exactly the registration it has there in the whole hymn. Pure; runs on the control thread
//! while planning.

use super::drawn::{DrawnSchedule, changes_by_segment};
use super::{PlanError, PlanWarning, SectionKind, Segment, StartOverride, WarningKind};
use crate::organ::{ControlId, Organ};
use crate::registration::{At, HymnAt, HymnSection};

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
        // The end of the bar, which must itself begin inside the section: a bar past the
        // section's last is a mistake, not its end.
        if meter.bar_start(bar).is_none_or(|start| start >= seg.until) {
            return Err(outside());
        }
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
