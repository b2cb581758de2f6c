//! A picture of a plan (`organ plan --format svg` and `--format html`): the piece as a piano
//! roll with one lane per division (notes coloured by division), bar numbers and a time axis, a
//! band above with one row per stop, coupler and tremulant showing when it is drawn, and markers
//! for the play-over, verses and amen, fermatas, wait points and warnings.
//!
//! The picture is built from the [`Timeline`] plus a list of positioned [`Marker`]s, so that
//! whatever knows a time (and perhaps a division) for a remark can put it on the picture:
//! [`markers_for`] makes the ones known today (fermatas from the hymn options, score warnings
//! that carry a position); `organ check`'s positioned warnings plug in the same way.
//!
//! Every name that comes from a file (score, organ, stops, divisions, warnings) is escaped, so a
//! name can never become markup or script. Pure; runs on the control thread.

mod svg;

use crate::midi::Micros;
use crate::plan::{Kind, SectionKind, Timeline, WaitKind};
use crate::registration::HymnOptions;
use crate::score::Score;

pub use svg::{write_html, write_svg};

/// What a marker marks (its colour and symbol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// The start of a play-over, verse or amen.
    Section,
    /// A fermata held longer.
    Fermata,
    /// A point where playing waits for the operator (a fermata with `wait`, or a verse end
    /// where the operator may ask to pause).
    Wait,
    Warning,
}

impl MarkerKind {
    pub fn class(self) -> &'static str {
        match self {
            MarkerKind::Section => "section",
            MarkerKind::Fermata => "fermata",
            MarkerKind::Wait => "wait",
            MarkerKind::Warning => "warning",
        }
    }
}

/// A remark at a point of the performance.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub t: Micros,
    /// The division it concerns (index into [`Timeline::divisions`]), or `None` for all.
    pub division: Option<usize>,
    pub kind: MarkerKind,
    pub text: String,
}

/// Performance times of score positions, per section: interpolated between the notes around a
/// tick (built once; each look-up is a binary search).
pub struct TickClock {
    /// Per section: (tick, time) of its notes, sorted.
    sections: Vec<Vec<(u64, u64)>>,
}

impl TickClock {
    pub fn new(t: &Timeline) -> TickClock {
        let mut sections: Vec<Vec<(u64, u64)>> = vec![Vec::new(); t.sections.len()];
        for e in t.events.iter().filter(|e| matches!(e.kind, Kind::NoteOn | Kind::NoteOff)) {
            if let Some(s) = sections.get_mut(usize::from(e.section)) {
                s.push((e.tick, e.t.0));
            }
        }
        for s in &mut sections {
            s.sort_unstable();
        }
        TickClock { sections }
    }

    /// The time of `tick` in section `section`; `None` when the section plays no note.
    pub fn time(&self, section: usize, tick: u64) -> Option<Micros> {
        let s = self.sections.get(section)?;
        let i = s.partition_point(|x| x.0 < tick);
        let after = s.get(i).copied();
        // The last note event at or before `tick` (the latest time of an equal tick).
        let j = s.partition_point(|x| x.0 <= tick);
        let before = j.checked_sub(1).map(|j| s[j]);
        Some(Micros(match (before, after) {
            (Some(b), Some(a)) if a.0 > b.0 => {
                b.1 + (a.1.saturating_sub(b.1) as u128 * u128::from(tick - b.0) / u128::from(a.0 - b.0)) as u64
            }
            (Some(b), Some(a)) => a.1.min(b.1),
            (Some(b), None) => b.1,
            (None, Some(a)) => a.1,
            (None, None) => return None,
        }))
    }
}

/// The sections that play the main score (not an amen file).
fn main_sections(t: &Timeline) -> impl Iterator<Item = (usize, &crate::plan::Section)> {
    t.sections.iter().enumerate().filter(|(_, s)| s.meter.is_none())
}

/// The markers a plan shows by itself: sections of a hymn and wait points.
pub fn plan_markers(t: &Timeline) -> Vec<Marker> {
    let mut m = Vec::new();
    if t.is_hymn() {
        for s in &t.sections {
            m.push(Marker { t: s.start, division: None, kind: MarkerKind::Section, text: s.label() });
        }
    }
    for w in &t.waits {
        let text = match w.kind {
            WaitKind::Fermata => "fermata: waits for Enter",
            WaitKind::SectionEnd => continue,
        };
        m.push(Marker { t: w.t, division: None, kind: MarkerKind::Wait, text: text.into() });
    }
    m
}

/// The warnings that have no place on the picture: the plan's without a time (and its notes),
/// and the score's without a position.
pub fn unplaced_warnings(t: &Timeline, score: &Score) -> Vec<String> {
    let mut w: Vec<String> = score
        .warnings
        .iter()
        .filter(|w| w.tick.is_none())
        .map(|w| format!("{}{}", w.part.map(|p| format!("part {p}: ")).unwrap_or_default(), w.message))
        .collect();
    w.extend(t.warnings.iter().filter(|w| w.t.is_none()).map(|w| format!("{}: {w}", w.kind.label())));
    w
}

/// Markers from the inputs: fermatas (each section that plays the bar), the plan's warnings at
/// their time and division ([`crate::plan::PlanWarning`]), and the score's warnings that carry a
/// position (at each place the main score is played).
pub fn markers_for(t: &Timeline, score: &Score, hymn: &HymnOptions) -> Vec<Marker> {
    let mut m = plan_markers(t);
    let clock = TickClock::new(t);
    let waits = hymn.fermata.is_some_and(|f| f.wait);
    for &(bar, beat) in hymn.fermatas.as_deref().unwrap_or(&[]) {
        let Some(tick) = score.meter.tick_of(bar, beat) else { continue };
        for (i, s) in main_sections(t) {
            if s.kind == SectionKind::Amen || !(s.first_bar..=s.last_bar).contains(&bar) {
                continue;
            }
            // Where the fermata waits, its wait point (from the plan) marks it.
            if waits && t.waits.iter().any(|w| w.kind == WaitKind::Fermata && usize::from(w.section) == i) {
                continue;
            }
            if let Some(at) = clock.time(i, tick) {
                let text = format!("fermata {bar}:{beat}");
                m.push(Marker { t: at, division: None, kind: MarkerKind::Fermata, text });
            }
        }
    }
    // The plan's warnings (and notes) that have a time: at it, on their division's lane.
    for w in &t.warnings {
        if let Some(at) = w.t {
            let text = if w.kind.is_note() { format!("note: {w}") } else { w.to_string() };
            m.push(Marker { t: at, division: w.division, kind: MarkerKind::Warning, text });
        }
    }
    for w in &score.warnings {
        let Some(tick) = w.tick else { continue };
        let Some((i, _)) = main_sections(t).next() else { continue };
        if let Some(at) = clock.time(i, tick) {
            let part = w.part.map(|p| format!("part {p}: ")).unwrap_or_default();
            m.push(Marker { t: at, division: None, kind: MarkerKind::Warning, text: format!("{part}{}", w.message) });
        }
    }
    m.sort_by_key(|x| x.t);
    m
}

/// One note in a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteBar {
    pub key: u8,
    pub start: Micros,
    pub end: Micros,
}

/// The notes of each division, paired from the plan's note-ons and note-offs.
pub fn notes_by_division(t: &Timeline) -> Vec<Vec<NoteBar>> {
    let mut lanes: Vec<Vec<NoteBar>> = vec![Vec::new(); t.divisions.len()];
    let mut down: Vec<[Option<Micros>; 128]> = vec![[None; 128]; t.divisions.len()];
    for e in &t.events {
        let Some(d) = e.division() else { continue };
        let bytes = t.bytes(&e.msg);
        let key = usize::from(bytes.get(1).copied().unwrap_or(0) & 0x7F);
        match e.kind {
            Kind::NoteOn => down[d][key] = Some(e.t),
            Kind::NoteOff => {
                if let Some(start) = down[d][key].take() {
                    lanes[d].push(NoteBar { key: key as u8, start, end: e.t });
                }
            }
            Kind::AllNotesOff => {
                for (k, s) in down[d].iter_mut().enumerate() {
                    if let Some(start) = s.take() {
                        lanes[d].push(NoteBar { key: k as u8, start, end: e.t });
                    }
                }
            }
            _ => {}
        }
    }
    lanes
}

/// When each control is drawn: (control, from, until), from the plan's registration states.
pub fn drawn_spans(t: &Timeline) -> Vec<(usize, Micros, Micros)> {
    let mut spans = Vec::new();
    let mut open: Vec<Option<Micros>> = vec![None; t.controls.len()];
    for r in &t.registrations {
        for (c, o) in open.iter_mut().enumerate() {
            let drawn = r.drawn.contains(&c);
            match (*o, drawn) {
                (None, true) => *o = Some(r.t),
                (Some(from), false) => {
                    spans.push((c, from, r.t));
                    *o = None;
                }
                _ => {}
            }
        }
    }
    for (c, o) in open.iter().enumerate() {
        if let Some(from) = o {
            spans.push((c, *from, t.duration));
        }
    }
    spans.sort_by_key(|s| (s.0, s.1));
    spans
}

/// Bar starts of the main score: (bar, time), in each section that plays it.
pub fn bar_lines(t: &Timeline) -> Vec<(u32, Micros)> {
    let clock = TickClock::new(t);
    let mut lines = Vec::new();
    for (i, s) in main_sections(t) {
        for bar in s.first_bar..=s.last_bar {
            if let Some(tick) = t.meter.bar_start(bar)
                && let Some(at) = clock.time(i, tick)
            {
                lines.push((bar, at));
            }
        }
    }
    lines
}
