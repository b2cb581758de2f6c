//! A stage of the planner (listed in `plan`), sections and waits: the play-over, verses and amen of a hymn (or the
//! one piece) with their times and bars, and the points where the engine may stop the clock for
//! the operator: a fermata that waits, and the end of every section but the last. Pure; runs on
//! the control thread while planning.

use super::closing::End;
use super::time::TimeMap;
use super::{Event, Kind, Section, Segment, WaitKind, WaitPoint};
use crate::score::Score;

/// One [`Section`] per segment; only a section from another file than `main` (an amen file)
/// carries its own meter.
pub(crate) fn sections(segments: &[Segment], time: &TimeMap, main: &Score) -> Vec<Section> {
    segments
        .iter()
        .enumerate()
        .map(|(s, seg)| Section {
            kind: seg.kind,
            verse: seg.verse,
            verses: seg.verses,
            start: time.start(s),
            end: time.end(s),
            first_bar: seg.score.meter.position(seg.from).bar,
            last_bar: seg.score.meter.position(seg.until.saturating_sub(1).max(seg.from)).bar,
            score_name: seg.score.name.clone(),
            meter: (!std::ptr::eq(seg.score, main)).then(|| seg.score.meter.clone()),
        })
        .collect()
}

/// The wait points of a hymn, by index into the sorted `events`: a fermata's wait before the
/// first message at or after its tick (the closing sequence excluded), and a section's end
/// after its last message. Sorted by index; at one index a fermata wins.
pub(crate) fn waits(segments: &[Segment], events: &[Event], end: &End) -> Vec<WaitPoint> {
    let last = segments.len() - 1;
    let tail = |e: &Event| {
        matches!(e.kind, Kind::AllNotesOff) || (e.kind == Kind::Cancel && e.tick == end.tick && e.t.0 >= end.t)
    };
    let mut waits: Vec<WaitPoint> = Vec::new();
    for (s, seg) in segments.iter().enumerate() {
        for &w in &seg.waits {
            if let Some(index) = events.iter().position(|e| usize::from(e.section) == s && e.tick >= w && !tail(e)) {
                waits.push(WaitPoint { index, t: events[index].t, kind: WaitKind::Fermata, section: s as u16 });
            }
        }
        if s < last
            && let Some(i) = events.iter().rposition(|e| usize::from(e.section) == s)
        {
            waits.push(WaitPoint { index: i + 1, t: events[i].t, kind: WaitKind::SectionEnd, section: s as u16 });
        }
    }
    waits.sort_by_key(|w| (w.index, w.kind == WaitKind::SectionEnd));
    waits.dedup_by_key(|w| w.index);
    waits
}

/// The last bar of the performed range: of the piece, or the highest bar of `main` that a hymn
/// plays.
pub(crate) fn last_bar(segments: &[Segment], main: &Score, hymn: bool, until_tick: u64) -> u32 {
    if hymn {
        segments
            .iter()
            .filter(|s| std::ptr::eq(s.score, main))
            .map(|s| s.score.meter.position(s.until.saturating_sub(1)).bar)
            .max()
            .unwrap_or(1)
    } else {
        main.meter.position(until_tick.saturating_sub(1)).bar
    }
}
