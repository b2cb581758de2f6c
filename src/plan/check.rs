//! Checks of what the congregation would hear, made while planning, each a positioned
//! [`PlanWarning`]:
//!
//! - notes on a division where no stop sounds ([`silent_notes`]): nothing drawn there, and no
//!   coupler bringing another division's stops to it (a unison-off silences the division's own
//!   stops except through its octave couplers);
//! - a registration change on a division while its keys are held ([`held_across_changes`]),
//!   naming the keys and the nearest moment where they are all up;
//! - registration changes at or after the end of the music, and changes that change nothing
//!   ([`changes_without_effect`]).
//!
//! Every check is linear in the number of notes and changes (with a binary search per note), so
//! an absurd registration file still plans in about a second. Pure; runs on the control thread
//! while planning.

use std::collections::{HashMap, HashSet};

use super::drawn::{Drawn, DrawnSchedule};
use super::keys::{KeyEvent, Keys};
use super::time::TimeMap;
use super::{Event, Kind, PlanWarning, Segment, WarningKind, key_name};
use crate::organ::{ControlKind, CouplerAction, Organ};
use crate::registration::Change;
use crate::score::Score;

/// Whether a stop is drawn on division `d` itself.
fn own_stops(organ: &Organ, drawn: &Drawn, d: usize) -> bool {
    drawn.on_division(organ, d).any(|c| organ.controls[c].kind == ControlKind::Stop)
}

/// The drawn couplers that play on division `d` (`to` = `d`): (from, action, name).
fn couplers_into<'a>(
    organ: &'a Organ,
    drawn: &'a Drawn,
    d: usize,
) -> impl Iterator<Item = (usize, CouplerAction, &'a str)> + 'a {
    drawn.on_division(organ, d).filter_map(move |c| {
        let control = &organ.controls[c];
        match control.kind {
            ControlKind::Coupler { from, .. } => {
                Some((from, control.action.unwrap_or(CouplerAction::Unison), control.name.as_str()))
            }
            _ => None,
        }
    })
}

/// Which divisions sound when their keys are played with registration `drawn`: their own stops
/// (unless a unison-off is drawn and no octave coupler of their own), or a coupler from another
/// division that has a stop drawn.
pub(crate) fn sounding(organ: &Organ, drawn: &Drawn) -> Vec<bool> {
    (0..organ.divisions.len())
        .map(|d| {
            let own = own_stops(organ, drawn, d);
            let mut unison_off = false;
            let mut own_octave = false;
            let mut coupled = false;
            for (from, action, _) in couplers_into(organ, drawn, d) {
                match action {
                    CouplerAction::UnisonOff => unison_off = true,
                    _ if from == d => own_octave = true,
                    _ => coupled |= own_stops(organ, drawn, from),
                }
            }
            (own && (!unison_off || own_octave)) || coupled
        })
        .collect()
}

/// Why division `d` is silent with `drawn`, for the warning.
fn why_silent(organ: &Organ, drawn: &Drawn, d: usize) -> String {
    let name = &organ.divisions[d].name;
    let couplers: Vec<(usize, CouplerAction, &str)> = couplers_into(organ, drawn, d).collect();
    if own_stops(organ, drawn, d)
        && let Some((_, _, off)) = couplers.iter().find(|c| c.1 == CouplerAction::UnisonOff)
    {
        return format!("{off} silences its own stops and no other coupler brings any");
    }
    let from_others: Vec<String> = couplers
        .iter()
        .filter(|c| c.0 != d && c.1 != CouplerAction::UnisonOff)
        .map(|c| format!("{} brings nothing (no {} stop is drawn)", c.2, organ.divisions[c.0].name))
        .collect();
    if from_others.is_empty() {
        format!("no {name} stop is drawn and no coupler brings another division's stops to it")
    } else {
        format!("no {name} stop is drawn, and {}", crate::text::join_and(&from_others))
    }
}

/// A run of notes on one division that sound no stop.
struct SilentRun {
    first: usize,
    last: usize,
    notes: usize,
}

/// One warning per run of notes (consecutive on a division, within one section) that sound no
/// stop, at its first note: how many, to where, and why.
pub(crate) fn silent_notes(
    organ: &Organ,
    schedule: &DrawnSchedule,
    segments: &[Segment],
    events: &[Event],
    warnings: &mut Vec<PlanWarning>,
) {
    let masks: Vec<Vec<bool>> = schedule.points().iter().map(|p| sounding(organ, &p.drawn)).collect();
    let mut runs: Vec<Option<SilentRun>> = (0..organ.divisions.len()).map(|_| None).collect();
    let mut found: Vec<SilentRun> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let (Kind::NoteOn, Some(d)) = (e.kind, e.division()) else { continue };
        let point = schedule.index_at(usize::from(e.section), e.tick);
        if masks[point][d] {
            found.extend(runs[d].take());
            continue;
        }
        match &mut runs[d] {
            Some(r) if events[r.last].section == e.section => {
                r.last = i;
                r.notes += 1;
            }
            run => found.extend(run.replace(SilentRun { first: i, last: i, notes: 1 })),
        }
    }
    found.extend(runs.into_iter().flatten());
    found.sort_by_key(|r| r.first);
    for r in found {
        let (first, last) = (&events[r.first], &events[r.last]);
        let (s, d) = (usize::from(first.section), first.division().unwrap_or(0));
        let seg = &segments[s];
        let drawn = schedule.at(s, first.tick);
        let until =
            if r.notes > 1 { format!(" (to bar {})", seg.score.meter.position(last.tick)) } else { String::new() };
        let text = format!(
            "{} note{}{until} sound{} no stop: {}",
            r.notes,
            if r.notes == 1 { "" } else { "s" },
            if r.notes == 1 { "s" } else { "" },
            why_silent(organ, drawn, d)
        );
        let w = seg.locate(PlanWarning::new(WarningKind::Silent, text), s, first.t.0, first.tick);
        warnings.push(w.on(d, &organ.divisions[d].name));
    }
}

/// The divisions whose sound changing control `c` alters, with `before` and `after` the states
/// around the change: a stop's division and those it is coupled to (before or after), a
/// coupler's or tremulant's division.
fn affected_by(organ: &Organ, (before, after): (&Drawn, &Drawn), c: usize) -> Vec<bool> {
    let mut hit = vec![false; organ.divisions.len()];
    let control = &organ.controls[c];
    match (control.kind, control.division) {
        (ControlKind::Stop, Some(d)) => {
            hit[d] = true;
            for state in [before, after] {
                for (to, h) in hit.iter_mut().enumerate() {
                    if couplers_into(organ, state, to).any(|k| k.0 == d && k.1 != CouplerAction::UnisonOff) {
                        *h = true;
                    }
                }
            }
        }
        (_, Some(d)) => hit[d] = true,
        (_, None) => {}
    }
    hit
}

/// For each division, what a change from `before` to `after` does to its sound: "Gt Trumpet 8
/// drawn, Gt Flute 4 put in" (at most three, then how many more), or `None` when nothing.
fn changes_per_division(organ: &Organ, before: &Drawn, after: &Drawn) -> Vec<Option<String>> {
    let mut items: Vec<Vec<String>> = vec![Vec::new(); organ.divisions.len()];
    let (offs, ons) = before.changes_to(after);
    let changed = ons.iter().map(|&c| (c, "drawn")).chain(offs.iter().map(|&c| (c, "put in")));
    for (c, what) in changed {
        for (d, hit) in affected_by(organ, (before, after), c).into_iter().enumerate() {
            if hit {
                items[d].push(format!("{} {what}", organ.controls[c].name));
            }
        }
    }
    items
        .into_iter()
        .map(|mut v| {
            let more = v.len().saturating_sub(3);
            v.truncate(3);
            if more > 0 {
                v.push(format!("{more} more"));
            }
            (!v.is_empty()).then(|| v.join(", "))
        })
        .collect()
}

/// Where a division's keys are: walked forward through its key events.
struct Held<'a> {
    events: &'a [KeyEvent],
    next: usize,
    depth: [u32; 128],
    since: [u64; 128],
    count: usize,
    /// (segment, tick) where every key of the division is up, in order.
    free: Vec<(u16, u64)>,
}

impl<'a> Held<'a> {
    fn new(events: &'a [KeyEvent]) -> Held<'a> {
        // Free moments: after the releases at a tick, before its new notes, nothing is down.
        let mut free = Vec::new();
        let mut depth = [0u32; 128];
        let mut count = 0usize;
        let mut i = 0;
        while i < events.len() {
            let (seg, tick) = (events[i].seg, events[i].tick);
            while i < events.len() && (events[i].seg, events[i].tick) == (seg, tick) && !events[i].on {
                let k = usize::from(events[i].key);
                depth[k] -= 1;
                count -= usize::from(depth[k] == 0);
                i += 1;
            }
            if count == 0 {
                free.push((seg, tick));
            }
            while i < events.len() && (events[i].seg, events[i].tick) == (seg, tick) {
                let k = usize::from(events[i].key);
                count += usize::from(depth[k] == 0);
                depth[k] += 1;
                i += 1;
            }
        }
        Held { events, next: 0, depth: [0; 128], since: [0; 128], count: 0, free }
    }

    /// Moves to just before the notes struck at (`seg`, `tick`): the releases there are done.
    fn advance_to(&mut self, seg: u16, tick: u64) {
        while let Some(e) = self.events.get(self.next) {
            if (e.seg, e.tick) > (seg, tick) || ((e.seg, e.tick) == (seg, tick) && e.on) {
                break;
            }
            let k = usize::from(e.key);
            if e.on {
                if self.depth[k] == 0 {
                    self.count += 1;
                    self.since[k] = e.tick;
                }
                self.depth[k] += 1;
            } else {
                self.depth[k] -= 1;
                self.count -= usize::from(self.depth[k] == 0);
            }
            self.next += 1;
        }
    }

    /// The keys down now, and the tick since when the earliest of them is held.
    fn down(&self) -> (Vec<u8>, u64) {
        let keys: Vec<u8> = (0..128u8).filter(|&k| self.depth[usize::from(k)] > 0).collect();
        let since = keys.iter().map(|&k| self.since[usize::from(k)]).min().unwrap_or(0);
        (keys, since)
    }

    /// The free moment of segment `seg` nearest to `tick` (before or after it). A release a
    /// moment before a beat (MuseScore ends notes a tick early) reads as that beat when the
    /// beat is free too.
    fn nearest_free(&self, seg: u16, tick: u64, score: &Score) -> Option<u64> {
        let i = self.free.partition_point(|&f| f < (seg, tick));
        let after = self.free.get(i).filter(|f| f.0 == seg).map(|f| f.1);
        let before = i.checked_sub(1).map(|j| self.free[j]).filter(|f| f.0 == seg).map(|f| f.1);
        let nearest = match (before, after) {
            (Some(b), Some(a)) => {
                if tick - b <= a - tick {
                    b
                } else {
                    a
                }
            }
            (b, a) => b.or(a)?,
        };
        let slack = (score.meter.quarter_ticks() / 32).max(1);
        let j = self.free.partition_point(|&f| f <= (seg, nearest));
        Some(match self.free.get(j) {
            Some(&(s, f)) if s == seg && f - nearest <= slack && score.meter.position(f).tick_in_beat == 0 => f,
            _ => nearest,
        })
    }
}

/// One warning per registration change inside a section and division whose sound it changes
/// while keys of that division are held across it (struck before, released after): which keys,
/// since when, and the nearest moment where all the division's keys are up.
pub(crate) fn held_across_changes(
    organ: &Organ,
    schedule: &DrawnSchedule,
    (segments, time): (&[Segment], &TimeMap),
    keys: &Keys,
    warnings: &mut Vec<PlanWarning>,
) {
    let mut held: Vec<Held> = (0..organ.divisions.len()).map(|d| Held::new(keys.of_division(d))).collect();
    for pair in schedule.points().windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if after.segment != before.segment || after.drawn == before.drawn {
            continue;
        }
        let (s, tick) = (after.segment, after.tick);
        let seg = &segments[s];
        held.iter_mut().for_each(|h| h.advance_to(s as u16, tick));
        if held.iter().all(|h| h.count == 0) {
            continue;
        }
        let changes = changes_per_division(organ, &before.drawn, &after.drawn);
        for (d, h) in held.iter_mut().enumerate() {
            let Some(change) = &changes[d] else { continue };
            if h.count == 0 {
                continue;
            }
            let (down, since) = h.down();
            let names: Vec<String> = down.iter().take(6).map(|&k| key_name(k)).collect();
            let nearest = match h.nearest_free(s as u16, tick, seg.score) {
                Some(f) => format!("; the nearest moment with all its keys up is bar {}", seg.score.meter.position(f)),
                None => String::new(),
            };
            let text = format!(
                "the registration change ({change}) comes while {}{} {} held (struck at {}){nearest}",
                names.join(" "),
                if down.len() > names.len() { " …" } else { "" },
                if down.len() == 1 { "is" } else { "are" },
                seg.score.meter.position(since),
            );
            let w = PlanWarning::new(WarningKind::ChangeUnderHeldKeys, text);
            let w = seg.locate(w, s, time.time(s, tick), tick);
            warnings.push(w.on(d, &organ.divisions[d].name));
        }
    }
}

/// Warnings for the registration file's changes that cannot act: at or after the end of the
/// music of the score they belong to, and those that changed nothing wherever they applied.
pub(crate) fn changes_without_effect(
    segments: &[Segment],
    changes: &[Vec<(u64, &Change)>],
    schedule: &DrawnSchedule,
    warnings: &mut Vec<PlanWarning>,
) {
    let mut seen: HashSet<*const Change> = HashSet::new();
    // Where each change first applies: (segment, tick).
    let mut first: HashMap<*const Change, (usize, u64)> = HashMap::new();
    for (s, cs) in changes.iter().enumerate() {
        for &(tick, c) in cs {
            first.entry(c as *const Change).or_insert((s, tick));
        }
    }
    for (seg, changes) in segments.iter().zip(changes) {
        let score: &Score = seg.score;
        let end = score.last_note_end();
        let last = score.meter.position(end.saturating_sub(1)).bar;
        for &(tick, c) in changes.iter().filter(|c| c.0 >= end) {
            if seen.insert(c as *const Change) {
                let text = format!(
                    "the change at {} comes after the end of the music (its last note ends in bar {last}): it has no effect",
                    c.at
                );
                warnings.push(file_warning(WarningKind::ChangeAfterTheEnd, c, score, tick, text));
            }
        }
    }
    for c in &schedule.no_effect {
        let Some(&(s, tick)) = first.get(&(*c as *const Change)) else { continue };
        let text = format!("the change at {} changes nothing: the registration is already so there", c.at);
        warnings.push(file_warning(WarningKind::NoEffect, c, segments[s].score, tick, text));
    }
}

/// A warning about a change as written in its file (placed at `file:line:column`).
fn file_warning(kind: WarningKind, c: &Change, score: &Score, tick: u64, text: String) -> PlanWarning {
    let mut w = PlanWarning::new(kind, text);
    w.place = Some(c.location.to_string());
    w.position = Some(score.meter.position(tick));
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organ::BUILTIN_ORGANS;
    use crate::plan::hymn::fixture;
    use crate::plan::{PlanOptions, Timeline, plan};

    fn st_marys() -> Organ {
        Organ::from_toml(BUILTIN_ORGANS[0].1, "st-marys.toml").unwrap()
    }

    fn drawn(organ: &Organ, names: &[&str]) -> Drawn {
        let mut d = Drawn::none(organ.controls.len());
        let ids: Vec<usize> = names.iter().map(|n| organ.control(n).unwrap()).collect();
        d.apply(organ, None, &[], &ids);
        d
    }

    /// The fixture score (Great half notes, Pedal whole notes, bars 1-6) laid out GP on St
    /// Mary's, with `changes` as the registration file's body.
    fn plan_gp(changes: &str) -> Timeline {
        let organ = st_marys();
        let reg =
            crate::registration::Registration::from_toml(&format!("layout = \"GP\"\n{changes}"), "x.toml", &organ)
                .unwrap();
        plan(&fixture::score(), &organ, Some(&reg), &PlanOptions::default()).unwrap()
    }

    fn of_kind(t: &Timeline, kind: WarningKind) -> Vec<String> {
        t.warnings.iter().filter(|w| w.kind == kind).map(ToString::to_string).collect()
    }

    #[test]
    fn couplers_make_a_division_sound_as_their_names_say() {
        let organ = st_marys();
        let (sw, ped) = (0, 2);
        let d = drawn(&organ, &["Sw Open Diapason 8", "Sw to Gt"]);
        assert_eq!(sounding(&organ, &d), [true, true, false], "Sw to Gt with a Swell stop: the Great sounds");
        let d = drawn(&organ, &["Sw to Gt", "Sw to Ped", "Gt Open Diapason 8"]);
        assert_eq!(sounding(&organ, &d), [false, true, false]);
        assert_eq!(
            why_silent(&organ, &d, ped),
            "no pedal stop is drawn, and Sw to Ped brings nothing (no swell stop is drawn)"
        );
        assert_eq!(
            why_silent(&organ, &d, sw),
            "no swell stop is drawn and no coupler brings another division's stops to it"
        );
        // A unison off (added to the organ here) silences the Swell's own stops; its octave
        // coupler brings them back an octave up.
        let text = BUILTIN_ORGANS[0].1.replace(
            "[[tremulant]]",
            "[[coupler]]\nname = \"Sw Unison Off\"\nfrom = \"swell\"\nto = \"swell\"\non = { note = 76, channel = 16 }\n\n[[tremulant]]",
        );
        let organ = Organ::from_toml(&text, "st-marys.toml").unwrap();
        let d = drawn(&organ, &["Sw Open Diapason 8", "Sw Unison Off", "Sw to Gt"]);
        assert_eq!(sounding(&organ, &d), [false, true, false], "the Great still gets the Swell through Sw to Gt");
        assert_eq!(why_silent(&organ, &d, sw), "Sw Unison Off silences its own stops and no other coupler brings any");
        let d = drawn(&organ, &["Sw Open Diapason 8", "Sw Unison Off", "Sw Octave"]);
        assert!(sounding(&organ, &d)[sw]);
    }

    #[test]
    fn a_coupled_registration_is_not_called_silent() {
        let t = plan_gp("[[change]]\nat = \"1\"\non = [\"Sw Open Diapason 8\", \"Sw to Gt\", \"Ped Bourdon 16\"]\n");
        assert!(of_kind(&t, WarningKind::Silent).is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn a_silent_division_is_named_with_where_and_why() {
        // The Great is coupled to nothing that sounds until bar 3, where its Principal is drawn.
        let t = plan_gp(
            "[[change]]\nat = \"1\"\non = [\"Sw to Gt\", \"Ped Bourdon 16\"]\n[[change]]\nat = \"3\"\non = [\"Gt Principal 4\"]\n",
        );
        let silent = t.warnings.iter().find(|w| w.kind == WarningKind::Silent).unwrap();
        assert_eq!(
            silent.to_string(),
            "bar 1:1: great: 4 notes (to bar 2:3) sound no stop: no great stop is drawn, and Sw to Gt brings nothing (no swell stop is drawn)"
        );
        assert_eq!((silent.division, silent.section), (Some(1), Some(0)));
        let first_note = t.events.iter().find(|e| e.kind == Kind::NoteOn && e.division == 1).unwrap();
        assert_eq!(silent.t, Some(first_note.t));
        assert_eq!(of_kind(&t, WarningKind::Silent).len(), 1);
    }

    #[test]
    fn a_change_under_held_keys_names_them_and_the_nearest_moment_they_are_up() {
        // C4 sounds over 1:1-1:3, E4 over 1:3-2:1; the pedal C3 over the whole bar.
        let base = "[[change]]\nat = \"1\"\npreset = \"mf\"\n";
        let t = plan_gp(&format!("{base}[[change]]\nat = \"1:2.5\"\non = [\"Gt Trumpet 8\"]\n"));
        let held = of_kind(&t, WarningKind::ChangeUnderHeldKeys);
        assert_eq!(
            held,
            [
                "bar 1:2.50: great: the registration change (Gt Trumpet 8 drawn) comes while C4 is held (struck at 1:1); the nearest moment with all its keys up is bar 1:3"
            ]
        );
        // The Great coupled to the pedal: the pedal's C3 is under the change too.
        let t = plan_gp(&format!("{base}[[change]]\nat = \"1:2\"\non = [\"Gt Trumpet 8\", \"Gt to Ped\"]\n"));
        let held = of_kind(&t, WarningKind::ChangeUnderHeldKeys);
        assert_eq!(held.len(), 2, "{held:?}");
        assert!(held[1].starts_with("bar 1:2: pedal: the registration change (Gt Trumpet 8 drawn, Gt to Ped drawn) comes while C3 is held (struck at 1:1); the nearest moment with all its keys up is bar 1:1"), "{held:?}");
        // At a bar line nothing is held across: no warning.
        let t = plan_gp(&format!("{base}[[change]]\nat = \"2\"\non = [\"Gt Trumpet 8\", \"Gt to Ped\"]\n"));
        assert!(of_kind(&t, WarningKind::ChangeUnderHeldKeys).is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn changes_after_the_end_and_changes_that_change_nothing() {
        let t = plan_gp(
            "[[change]]\nat = \"1\"\npreset = \"mf\"\n[[change]]\nat = \"3\"\npreset = \"mf\"\n[[change]]\nat = \"9\"\npreset = \"f\"\n[[change]]\nat = \"40s\"\noff = [\"Gt Principal 4\"]\n",
        );
        assert_eq!(
            of_kind(&t, WarningKind::ChangeAfterTheEnd),
            [
                "x.toml:9:6: the change at bar 9 comes after the end of the music (its last note ends in bar 6): it has no effect",
                "x.toml:12:6: the change at 40s comes after the end of the music (its last note ends in bar 6): it has no effect",
            ]
        );
        assert_eq!(
            of_kind(&t, WarningKind::NoEffect),
            ["x.toml:6:6: the change at bar 3 changes nothing: the registration is already so there"]
        );
        // With --until a change after the range is simply not played.
        let organ = st_marys();
        let reg = crate::registration::Registration::from_toml(
            "layout = \"GP\"\n[[change]]\nat = \"1\"\npreset = \"mf\"\n[[change]]\nat = \"5\"\npreset = \"f\"\n",
            "x.toml",
            &organ,
        )
        .unwrap();
        let until =
            PlanOptions { until: Some(crate::registration::At::Bar { bar: 3, beat: 1.0 }), ..PlanOptions::default() };
        let t = plan(&fixture::score(), &organ, Some(&reg), &until).unwrap();
        assert!(t.warnings.iter().all(|w| !matches!(w.kind, WarningKind::ChangeAfterTheEnd | WarningKind::NoEffect)));
    }
}
