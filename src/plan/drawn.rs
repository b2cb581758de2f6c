//! A stage of the planner (listed in `plan`), the registration state: which controls are drawn at every point of
//! the performance, before any message is timed.
//!
//! [`Drawn`] is one state (the set of drawn stops, couplers and tremulants); [`DrawnSchedule`]
//! is the sequence of states the performance goes through, each from a (segment, tick) on: the
//! state at the start of each segment (chased from the registration file's changes up to its
//! first tick, or carried on from the segment before, then `--stops` and a verse's own
//! registration), and after each group of changes inside it. The stop scheduler turns the
//! differences between consecutive states into messages; other stages can ask what is drawn on a
//! division at any point. Pure; runs on the control thread while planning.

use super::{PlanError, Segment};
use crate::organ::{ControlId, Organ};
use crate::registration::{At, Change};

/// The controls drawn at one moment, by [`ControlId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drawn {
    drawn: Vec<bool>,
}

impl Drawn {
    /// Nothing drawn (after a cancel), on an organ of `controls` controls.
    pub fn none(controls: usize) -> Drawn {
        Drawn { drawn: vec![false; controls] }
    }

    /// `preset` replaces everything, then `off` are put in, then `on` drawn. True when that
    /// changed anything.
    pub fn apply(&mut self, organ: &Organ, preset: Option<usize>, off: &[ControlId], on: &[ControlId]) -> bool {
        let touched: Vec<(ControlId, bool)> = match preset {
            Some(p) => {
                let mut after = vec![false; self.drawn.len()];
                for &id in &organ.presets[p].controls {
                    after[id] = true;
                }
                for &id in off {
                    after[id] = false;
                }
                for &id in on {
                    after[id] = true;
                }
                after.into_iter().enumerate().collect()
            }
            None => off.iter().map(|&id| (id, false)).chain(on.iter().map(|&id| (id, true))).collect(),
        };
        let before = touched.iter().map(|&(id, _)| (id, self.drawn[id])).collect::<Vec<_>>();
        for &(id, state) in &touched {
            self.drawn[id] = state;
        }
        before.iter().any(|&(id, was)| self.drawn[id] != was)
    }

    /// A registration file's change; true when it changed anything.
    pub fn apply_change(&mut self, organ: &Organ, c: &Change) -> bool {
        self.apply(organ, c.preset, &c.off, &c.on)
    }

    /// Whether control `id` is drawn.
    pub fn is_drawn(&self, id: ControlId) -> bool {
        self.drawn[id]
    }

    /// The drawn controls, in organ order.
    pub fn controls(&self) -> Vec<ControlId> {
        (0..self.drawn.len()).filter(|&i| self.drawn[i]).collect()
    }

    /// The drawn controls that belong to division `d`: its stops and tremulants, and the
    /// couplers into it.
    pub fn on_division<'a>(&'a self, organ: &'a Organ, d: usize) -> impl Iterator<Item = ControlId> + 'a {
        (0..self.drawn.len()).filter(move |&i| self.drawn[i] && organ.controls[i].division == Some(d))
    }

    /// The preset this state is exactly, if any (the first in the organ's order).
    pub fn preset_name(&self, organ: &Organ) -> Option<String> {
        let count = self.drawn.iter().filter(|&&s| s).count();
        organ
            .presets
            .iter()
            .find(|p| p.controls.len() == count && p.controls.iter().all(|&c| self.drawn[c]))
            .map(|p| p.name.clone())
    }

    /// What changes from this state to `after`: (put in, drawn), each in organ order.
    pub fn changes_to(&self, after: &Drawn) -> (Vec<ControlId>, Vec<ControlId>) {
        let n = self.drawn.len();
        let offs = (0..n).filter(|&c| self.drawn[c] && !after.drawn[c]).collect();
        let ons = (0..n).filter(|&c| !self.drawn[c] && after.drawn[c]).collect();
        (offs, ons)
    }
}

/// A registration state and where in the performance it begins.
#[derive(Debug, Clone)]
pub(crate) struct DrawnPoint {
    /// Index of the segment.
    pub segment: usize,
    /// Tick of that segment's score: its first tick for the state it starts with, else the tick
    /// of the changes.
    pub tick: u64,
    pub drawn: Drawn,
}

/// The registration states of the whole performance, in order.
#[derive(Debug, Clone)]
pub(crate) struct DrawnSchedule<'a> {
    points: Vec<DrawnPoint>,
    /// The registration file's changes that changed nothing wherever they applied (the
    /// registration was already so), in file order.
    pub no_effect: Vec<&'a Change>,
}

impl<'a> DrawnSchedule<'a> {
    /// Follows the registration through the segments. `changes` are each segment's registration
    /// changes (as [`changes_by_segment`] gives them); `extra` are drawn at the start of every
    /// segment that does not carry on the registration before it (`--stops`).
    pub fn new(
        organ: &Organ,
        segments: &[Segment],
        changes: &[Vec<(u64, &'a Change)>],
        extra: &[ControlId],
    ) -> DrawnSchedule<'a> {
        let mut points: Vec<DrawnPoint> = Vec::new();
        // Whether each change applied changed anything somewhere (by address: a hymn applies
        // the same change in every verse).
        let mut effect: std::collections::HashMap<*const Change, (bool, &'a Change)> = Default::default();
        let mut applied = |c: &'a Change, changed: bool| {
            effect.entry(c as *const Change).or_insert((false, c)).0 |= changed;
        };
        for (s, seg) in segments.iter().enumerate() {
            // The registration at the start of the segment, given the state at the end of the
            // one before.
            let mut state = match points.last() {
                Some(before) if seg.carry_registration => before.drawn.clone(),
                _ => {
                    let mut st = Drawn::none(organ.controls.len());
                    for &(_, c) in changes[s].iter().filter(|c| c.0 <= seg.from) {
                        applied(c, st.apply_change(organ, c));
                    }
                    for &id in extra {
                        st.drawn[id] = true;
                    }
                    st
                }
            };
            if let Some(o) = &seg.start_override {
                state.apply(organ, o.preset, &o.off, &o.on);
            }
            points.push(DrawnPoint { segment: s, tick: seg.from, drawn: state.clone() });
            // Then the changes inside it; changes at the same tick act as one.
            let inside: Vec<&(u64, &Change)> =
                changes[s].iter().filter(|c| c.0 > seg.from && c.0 < seg.until).collect();
            let mut i = 0;
            while i < inside.len() {
                let tick = inside[i].0;
                while i < inside.len() && inside[i].0 == tick {
                    applied(inside[i].1, state.apply_change(organ, inside[i].1));
                    i += 1;
                }
                points.push(DrawnPoint { segment: s, tick, drawn: state.clone() });
            }
        }
        let mut no_effect: Vec<&Change> = effect.into_values().filter(|e| !e.0).map(|e| e.1).collect();
        no_effect.sort_by_key(|c| (c.location.line, c.location.column));
        DrawnSchedule { points, no_effect }
    }

    /// Every state in performance order; the first is the registration the setup draws.
    pub fn points(&self) -> &[DrawnPoint] {
        &self.points
    }

    /// The state in force at `tick` of segment `segment` (the one the stops are drawn for when
    /// that tick's notes sound).
    pub fn at(&self, segment: usize, tick: u64) -> &Drawn {
        &self.points[self.index_at(segment, tick)].drawn
    }

    /// The index in [`DrawnSchedule::points`] of the state in force at `tick` of `segment`.
    pub fn index_at(&self, segment: usize, tick: u64) -> usize {
        self.points.partition_point(|p| (p.segment, p.tick) <= (segment, tick)).saturating_sub(1)
    }
}

/// Each segment's registration changes with the tick of its own score where they apply, sorted
/// by tick (changes at one tick keep the file's order).
///
/// # Errors
/// A change at a bar:beat the segment's score does not have.
pub(crate) fn changes_by_segment<'a>(segments: &[Segment<'a>]) -> Result<Vec<Vec<(u64, &'a Change)>>, PlanError> {
    let mut all = Vec::with_capacity(segments.len());
    for seg in segments {
        let mut changes: Vec<(u64, &Change)> = Vec::new();
        if let Some(reg) = seg.registration {
            for c in &reg.changes {
                let tick = match c.at {
                    At::Bar { bar, beat } => seg.score.meter.tick_of(bar, beat).ok_or_else(|| {
                        PlanError::ChangeNotInScore { location: c.location.to_string(), at: c.at.to_string() }
                    })?,
                    At::Time(t) => seg.score.tempo.tick_at(t),
                };
                changes.push((tick, c));
            }
        }
        changes.sort_by_key(|c| c.0);
        all.push(changes);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::hymn::fixture::{self, at};
    use crate::plan::{Gap, SectionKind, StartOverride};

    fn segment<'a>(
        score: &'a crate::score::Score,
        reg: &'a crate::registration::Registration,
        from: u64,
    ) -> Segment<'a> {
        Segment {
            score,
            assignment: vec![Some(0), Some(1)],
            registration: Some(reg),
            from,
            until: at(5, 1),
            gap_before: Gap::default(),
            holds: Vec::new(),
            waits: Vec::new(),
            carry_registration: false,
            start_override: None,
            kind: SectionKind::Verse,
            verse: 1,
            verses: 2,
        }
    }

    fn names(organ: &Organ, ids: impl IntoIterator<Item = ControlId>) -> Vec<&str> {
        ids.into_iter().map(|i| organ.controls[i].name.as_str()).collect()
    }

    /// The fixture's registration: mf at bar 1, the Trumpet drawn at bar 3. Two verses, the
    /// second from bar 2 with its own preset p and the Trumpet on top.
    #[test]
    fn the_state_at_any_point_and_per_division() {
        let organ = fixture::organ();
        let score = fixture::score();
        let reg = fixture::registration(&organ, fixture::REGISTRATION);
        let mut second = segment(&score, &reg, at(2, 1));
        let p = organ.presets.iter().position(|p| p.name == "p").unwrap();
        let trumpet = organ.control("Gt Trumpet 8").unwrap();
        second.start_override = Some(StartOverride { preset: Some(p), on: vec![trumpet], off: Vec::new() });
        let segments = [segment(&score, &reg, 0), second];
        let changes = changes_by_segment(&segments).unwrap();
        let schedule = DrawnSchedule::new(&organ, &segments, &changes, &[]);
        let points: Vec<(usize, u64)> = schedule.points().iter().map(|p| (p.segment, p.tick)).collect();
        // Verse 1: its start and bar 3; verse 2: its start (bar 3's change is after it, too).
        assert_eq!(points, vec![(0, 0), (0, at(3, 1)), (1, at(2, 1)), (1, at(3, 1))]);

        let mf = schedule.at(0, at(2, 4));
        assert_eq!(mf.preset_name(&organ).as_deref(), Some("mf"));
        assert_eq!(names(&organ, mf.on_division(&organ, 0)), ["Gt Open Diapason 8", "Gt Principal 4"]);
        // The coupler into the pedal belongs to the pedal.
        assert_eq!(names(&organ, mf.on_division(&organ, 1)), ["Ped Bourdon 16", "Gt to Ped"]);
        let bar3 = schedule.at(0, at(3, 1));
        assert_eq!(bar3.preset_name(&organ), None);
        assert_eq!(
            names(&organ, bar3.on_division(&organ, 0)),
            ["Gt Open Diapason 8", "Gt Principal 4", "Gt Trumpet 8"]
        );
        // Verse 2 starts from p and the Trumpet; bar 3 draws the Trumpet again: no difference.
        let v2 = schedule.at(1, at(2, 1));
        assert_eq!(names(&organ, v2.controls()), ["Gt Open Diapason 8", "Gt Trumpet 8", "Ped Bourdon 16"]);
        assert_eq!(schedule.at(1, at(4, 1)), v2);
        // From verse 1's end to verse 2's start: the Principal and the coupler in, nothing drawn.
        let (offs, ons) = bar3.changes_to(v2);
        assert_eq!(names(&organ, offs), ["Gt Principal 4", "Gt to Ped"]);
        assert!(ons.is_empty());
    }

    #[test]
    fn an_amen_carries_on_and_stops_are_drawn_on_top() {
        let organ = fixture::organ();
        let score = fixture::score();
        let reg = fixture::registration(&organ, fixture::REGISTRATION);
        let mut amen = segment(&score, &reg, at(4, 1));
        amen.carry_registration = true;
        let segments = [segment(&score, &reg, 0), amen];
        let changes = changes_by_segment(&segments).unwrap();
        let bourdon = organ.control("Ped Bourdon 16").unwrap();
        let trumpet = organ.control("Gt Trumpet 8").unwrap();
        let schedule = DrawnSchedule::new(&organ, &segments, &changes, &[trumpet, bourdon]);
        // --stops at the start of verse 1, on top of mf.
        assert!(schedule.at(0, 0).controls().contains(&trumpet));
        // The amen (from bar 4) carries on bar 3's state rather than chasing bar 4's.
        assert_eq!(schedule.at(1, at(4, 1)), schedule.at(0, at(3, 1)));
    }

    #[test]
    fn a_change_at_a_beat_the_score_lacks_names_its_line() {
        let organ = fixture::organ();
        let score = fixture::score();
        let reg = fixture::registration(&organ, "[[change]]\nat = \"2:5\"\npreset = \"p\"\n");
        let e = changes_by_segment(&[segment(&score, &reg, 0)]).unwrap_err();
        assert_eq!(e.to_string(), "test-hymn.toml:2:6: change at bar 2:5: that position is not in the score");
    }
}
