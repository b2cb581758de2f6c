//! A stage of the planner (listed in `plan`), the keys: every note of every played part becomes a key of its
//! division, transposed and brought into the keyboard's compass, and the keys of each division
//! are merged so that the organ gets one note-on and one note-off per pipe.
//!
//! Compass: a part written in another octave than the keyboard's, as a 16' pedal line written
//! an octave low is, moves as a whole (decided once per score and part), so that its line is
//! kept. That is a part with at least [`MOVE_WHOLE_SHARE`] (a tenth) of its notes outside the
//! compass: BWV 643's pedal, written D1-A2, has 38 % below C2 (and still 10-82 % transposed by
//! -6 to +5 semitones, so transposing does not break its line). With fewer, the notes outside
//! are strays (a hymn's bass going once below C2): the part stays where it is written and only
//! they are folded by octaves into the compass, each with a warning that says where (at most
//! [`FOLD_WARNINGS`] per part, then how many more). One pipe per key: when parts of one division
//! hold the same key, the key goes down with the first and up with the last. Pure; runs on the
//! control thread while planning.

use super::messages::{Messages, Order};
use super::time::TimeMap;
use super::{Event, Kind, Msg, NONE_U16, PlanWarning, Segment, WarningKind, key_name};
use crate::midi::{Micros, ShortMsg};
use crate::organ::Organ;
use crate::score::{Part, Score};

/// One key event of a division before merging.
#[derive(Clone, Copy)]
pub(crate) struct KeyEvent {
    /// The segment it belongs to (segments follow each other in time).
    pub seg: u16,
    pub tick: u64,
    pub on: bool,
    pub key: u8,
    pub velocity: u8,
    pub part: u16,
}

/// The key events of every division, before merging.
pub(crate) struct Keys {
    per_division: Vec<Vec<KeyEvent>>,
    /// Notes folded into the compass, where first played (a hymn repeats them in every verse).
    folded: Vec<Fold>,
    /// Notes on and off at the same tick, left out.
    zero_length: usize,
}

/// A note folded into its division's compass.
struct Fold {
    seg: u16,
    tick: u64,
    division: usize,
    part: usize,
    /// The key as written (transposed), and the key played.
    written: i32,
    played: u8,
}

/// How many folded notes of one part get a warning each; the rest are counted in one more.
pub const FOLD_WARNINGS: usize = 10;

/// The share of a part's notes outside the compass (numerator, denominator) from which the part
/// is taken to be written in another octave and moves as a whole.
pub const MOVE_WHOLE_SHARE: (usize, usize) = (1, 10);

/// How many semitones a part moves: none unless at least [`MOVE_WHOLE_SHARE`] of its notes lie
/// outside the compass `lo..=hi` after `transpose`; then the octaves that bring the most notes
/// in (the fewest octaves away, on a tie).
fn octave_shift(part: &Part, (lo, hi): (u8, u8), transpose: i32) -> i32 {
    let outside = |shift: i32| {
        part.notes
            .iter()
            .filter(|n| !(i32::from(lo)..=i32::from(hi)).contains(&(i32::from(n.key) + transpose + shift)))
            .count()
    };
    let (num, den) = MOVE_WHOLE_SHARE;
    if outside(0) * den < part.notes.len() * num {
        return 0;
    }
    [0, 12, -12, 24, -24, 36, -36].into_iter().min_by_key(|&s| (outside(s), s.abs())).unwrap_or(0)
}

/// `key` folded by octaves into `lo..=hi`.
fn fold(mut key: i32, (lo, hi): (u8, u8)) -> i32 {
    while key < i32::from(lo) {
        key += 12;
    }
    while key > i32::from(hi) {
        key -= 12;
    }
    key
}

impl Keys {
    /// The keys of every segment's played parts, transposed by `transpose` semitones. A part
    /// moved by octaves adds a note (naming the file when it is not `main`), a folded note a
    /// warning at its place (`time` gives its time).
    pub fn collect(
        organ: &Organ,
        (segments, time): (&[Segment], &TimeMap),
        transpose: i32,
        main: &Score,
        warnings: &mut Vec<PlanWarning>,
    ) -> Keys {
        let mut keys =
            Keys { per_division: vec![Vec::new(); organ.divisions.len()], folded: Vec::new(), zero_length: 0 };
        // Octave shifts are decided once per score and part.
        let mut seen_scores: Vec<*const Score> = Vec::new();
        let mut shifts: Vec<(*const Score, usize, i32)> = Vec::new();
        for (s, seg) in segments.iter().enumerate() {
            let score = seg.score;
            let first_time = !seen_scores.contains(&(score as *const Score));
            if first_time {
                seen_scores.push(score as *const Score);
            }
            for (p, part) in score.parts.iter().enumerate() {
                if first_time {
                    keys.zero_length += part.notes.iter().filter(|n| n.start == n.end).count()
                        * usize::from(seg.assignment[p].is_some());
                }
                let Some(d) = seg.assignment[p] else { continue };
                let compass = organ.divisions[d].compass;
                let shift = match shifts.iter().find(|x| std::ptr::eq(x.0, score) && x.1 == p) {
                    Some(x) => x.2,
                    None => {
                        let shift = octave_shift(part, compass, transpose);
                        if shift != 0 {
                            let text = moved_part_warning(score, main, part, &organ.divisions[d].name, shift);
                            let w = PlanWarning::new(WarningKind::MovedPart, text);
                            warnings.push(w.in_division(d));
                        }
                        shifts.push((score as *const Score, p, shift));
                        shift
                    }
                };
                keys.add_part(s, seg, (part, d), compass, (transpose + shift, first_time));
            }
        }
        for evs in &mut keys.per_division {
            evs.sort_unstable_by_key(|e| (e.seg, e.tick, e.on, e.key, e.part));
        }
        keys.fold_warnings(organ, (segments, time), warnings);
        keys
    }

    /// A warning for each folded note, at its place; past [`FOLD_WARNINGS`] for a part, one
    /// more that counts the rest.
    fn fold_warnings(
        &mut self,
        organ: &Organ,
        (segments, time): (&[Segment], &TimeMap),
        warnings: &mut Vec<PlanWarning>,
    ) {
        self.folded.sort_by_key(|f| (f.division, f.part, f.seg, f.tick, f.written));
        for group in self.folded.chunk_by(|a, b| (a.division, a.part) == (b.division, b.part)) {
            let first = &group[0];
            let division = &organ.divisions[first.division];
            let (lo, hi) = division.compass;
            let compass = format!("{}-{}", key_name(lo), key_name(hi));
            for (i, f) in group.iter().enumerate() {
                let (s, seg) = (usize::from(f.seg), &segments[usize::from(f.seg)]);
                let text = if i < FOLD_WARNINGS {
                    let octaves = (f.written - i32::from(f.played)).abs() / 12;
                    format!(
                        "part {}: {} lies {} the compass {compass}; it is played {octaves} octave{} {} ({})",
                        f.part,
                        note_name(f.written),
                        if f.written < i32::from(lo) { "below" } else { "above" },
                        if octaves == 1 { "" } else { "s" },
                        if f.written < i32::from(lo) { "higher" } else { "lower" },
                        key_name(f.played)
                    )
                } else {
                    let last = &group[group.len() - 1];
                    let to = segments[usize::from(last.seg)].score.meter.position(last.tick);
                    format!(
                        "part {}: {} more note(s) outside the compass {compass} (to bar {to}) are folded by octaves into it",
                        f.part,
                        group.len() - FOLD_WARNINGS
                    )
                };
                let w = seg.locate(PlanWarning::new(WarningKind::Folded, text), s, time.time(s, f.tick), f.tick);
                warnings.push(w.on(f.division, &division.name));
                if i == FOLD_WARNINGS {
                    break;
                }
            }
        }
    }

    /// The key events of division `d`, in performance order (at one tick, releases first).
    pub fn of_division(&self, d: usize) -> &[KeyEvent] {
        &self.per_division[d]
    }

    /// The notes of `part` inside segment `s`, on division `d`; with `record`, the notes folded
    /// into the compass are remembered for their warnings.
    fn add_part(
        &mut self,
        s: usize,
        seg: &Segment,
        (part, d): (&Part, usize),
        compass: (u8, u8),
        (transpose, record): (i32, bool),
    ) {
        let out = &mut self.per_division[d];
        for n in &part.notes {
            let start = n.start.max(seg.from);
            let end = n.end.min(seg.until);
            if n.start == n.end || start >= end {
                continue;
            }
            let written = i32::from(n.key) + transpose;
            let key = fold(written, compass) as u8;
            if record && i32::from(key) != written {
                let (tick, part) = (start, part.number);
                self.folded.push(Fold { seg: s as u16, tick, division: d, part, written, played: key });
            }
            let (seg, part) = (s as u16, part.number as u16);
            out.push(KeyEvent { seg, tick: start, on: true, key, velocity: n.velocity, part });
            out.push(KeyEvent { seg, tick: end, on: false, key, velocity: 0, part });
        }
    }

    /// The note-ons and note-offs, one per pipe, at their plan times; warnings for merged and
    /// folded notes (per division) and left-out zero-length notes. Returns the time of the last
    /// note-off (`origin` when there is none).
    pub fn merge(
        mut self,
        organ: &Organ,
        time: &TimeMap,
        origin: u64,
        out: &mut Messages,
        warnings: &mut Vec<PlanWarning>,
    ) -> u64 {
        let mut last_note_t = origin;
        for (d, evs) in self.per_division.iter_mut().enumerate() {
            let division = &organ.divisions[d];
            let ch = division.channel;
            let mut depth = [0u32; 128];
            let mut merged = 0usize;
            for e in evs.iter() {
                let k = usize::from(e.key);
                let t = time.time(usize::from(e.seg), e.tick);
                if e.on {
                    if depth[k] == 0 {
                        let msg = ShortMsg::note_on(ch, e.key, e.velocity.max(1));
                        out.push(Order::NoteOn, note_event(t, msg, Kind::NoteOn, d, e));
                    } else {
                        merged += 1;
                    }
                    depth[k] += 1;
                } else {
                    depth[k] -= 1;
                    if depth[k] == 0 {
                        out.push(Order::NoteOff, note_event(t, ShortMsg::note_off(ch, e.key), Kind::NoteOff, d, e));
                        last_note_t = last_note_t.max(t);
                    }
                }
            }
            debug_assert!(depth.iter().all(|&x| x == 0));
            if merged > 0 {
                let text = format!(
                    "{merged} note(s) struck while the same key was already down were merged (one pipe per key)"
                );
                warnings.push(PlanWarning::new(WarningKind::Merged, text).on(d, &division.name));
            }
        }
        if self.zero_length > 0 {
            let text = format!("{} zero-length note(s) (on and off at the same tick) were left out", self.zero_length);
            warnings.push(PlanWarning::new(WarningKind::ZeroLength, text));
        }
        last_note_t
    }
}

/// A key as a note name, also outside MIDI's range (a part transposed far down).
fn note_name(key: i32) -> String {
    match u8::try_from(key) {
        Ok(k) if k < 128 => key_name(k),
        _ => format!("key {key}"),
    }
}

/// "part 5 lies below the pedal compass; it is played 1 octave higher".
fn moved_part_warning(score: &Score, main: &Score, part: &Part, division: &str, shift: i32) -> String {
    let octaves = shift.abs() / 12;
    format!(
        "{}part {} lies {} the {} compass; it is played {} octave{} {}",
        if std::ptr::eq(score, main) { String::new() } else { format!("{}: ", score.name) },
        part.number,
        if shift > 0 { "below" } else { "above" },
        division,
        octaves,
        if octaves == 1 { "" } else { "s" },
        if shift > 0 { "higher" } else { "lower" }
    )
}

fn note_event(t: u64, msg: ShortMsg, kind: Kind, division: usize, e: &KeyEvent) -> Event {
    Event {
        t: Micros(t),
        msg: Msg::Short(msg),
        kind,
        division: division as u8,
        control: NONE_U16,
        part: e.part,
        tick: e.tick,
        section: e.seg,
    }
}
