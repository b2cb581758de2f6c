//! From what the console sent to takes: keys per division, the registration by name, and what
//! the organ definition does not know. Pure: the same messages always give the same takes, so a
//! take finished at the end of a recording and one recovered from its journal after a crash are
//! the same.
//!
//! What a take is, so that `organ play` of it sends the same messages at the same times:
//! - its zero is its first key down (leading silence is not kept); it ends at its last key up;
//! - the registration before the first note is its starting registration (`organ play` draws it
//!   from a cancelled organ, as it always does), and so is a change made for the first note
//!   itself (within [`GROUP_SLACK`] of it);
//! - stop messages arriving together (at most `stop_pace_ms` + [`GROUP_SLACK`] apart: a piston's
//!   burst, a registration change sent by `organ`) are one change, written at the musical time
//!   the planner will send them back from: `organ` sends a change's messages `stop_pace_ms`
//!   apart, the last one `stop_lead_ms` before the change's time;
//! - with a split, a silence (every key up for at least the given time) ends a take; stop
//!   changes made in the silence belong to the next take.
//!
//! Runs on whichever ordinary thread finishes the recording; never on a real-time path.

use std::collections::BTreeMap;

use crate::input::Received;
use crate::midi::Micros;
use crate::organ::decode::{Decoder, Meaning};
use crate::organ::{ControlId, Organ};

/// How much farther apart than `stop_pace_ms` two stop messages may be and still be one change
/// (the jitter of a MIDI interface or of JACK's frames).
pub const GROUP_SLACK: Micros = Micros(2_000);

/// One note of a take, times from the take's zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note {
    pub start: Micros,
    pub end: Micros,
    pub key: u8,
    pub velocity: u8,
}

/// A registration change of a take: at `at` (the time its music needs it, from the take's zero)
/// these are put in, then these drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeChange {
    pub at: Micros,
    pub off: Vec<ControlId>,
    pub on: Vec<ControlId>,
}

/// A message the organ definition does not know, kept with its time from the take's zero
/// (negative before the first note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecognised {
    pub at: i64,
    pub bytes: Box<[u8]>,
}

/// One take: a piece, or the whole recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    /// The source's time of the first key down (the take's zero).
    pub zero: Micros,
    /// From the first key down to the last key up.
    pub length: Micros,
    /// Notes per division (index into the organ's divisions), by start time.
    pub notes: Vec<Vec<Note>>,
    /// What is drawn when the first note sounds.
    pub initial: Vec<ControlId>,
    pub changes: Vec<TakeChange>,
    pub unrecognised: Vec<Unrecognised>,
    /// Keys still down when the recording ended, released at its last message.
    pub held_at_end: usize,
}

impl Take {
    pub fn note_count(&self) -> usize {
        self.notes.iter().map(Vec::len).sum()
    }
}

/// Everything a recording turned into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Takes {
    pub takes: Vec<Take>,
    /// Messages seen, clock and active sensing not counted.
    pub messages: usize,
    /// Clock, active sensing and other real-time messages (ignored).
    pub realtime: usize,
    /// The messages the organ definition does not know, by bytes, with counts.
    pub unrecognised: BTreeMap<Vec<u8>, usize>,
    /// Stop changes that no take sounds with (after the last note, or with no note at all).
    pub changes_left_out: usize,
    /// Note-ons for keys already down and note-offs for keys not down (ignored).
    pub odd_keys: usize,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Key {
        division: usize,
        key: u8,
        velocity: u8,
        down: bool,
    },
    /// All notes off (CC 123) or all sound off (CC 120) on a division's channel.
    AllOff {
        division: usize,
    },
    /// Controls moved: `Some(drawn)`, or `None` for a toggle.
    Controls(Vec<(ControlId, Option<bool>)>),
    Cancel,
    Unknown(Box<[u8]>),
}

/// Reads every message through the organ definition.
fn decode_all(organ: &Organ, msgs: &[Received], out: &mut Takes) -> Vec<(Micros, Ev)> {
    let mut decoder = Decoder::new(organ);
    let mut evs = Vec::with_capacity(msgs.len());
    for r in msgs {
        if r.is_realtime() {
            out.realtime += 1;
            continue;
        }
        out.messages += 1;
        let ev = match decoder.decode(&r.bytes) {
            Meaning::Key { division, key, down } => {
                let Some(d) = organ.divisions.iter().position(|x| x.name == division) else { continue };
                let velocity = if down { r.bytes.get(2).copied().unwrap_or(64) } else { 0 };
                Ev::Key { division: d, key, velocity, down }
            }
            Meaning::Controls(v) => {
                Ev::Controls(v.iter().filter_map(|(name, s)| organ.control(name).map(|id| (id, *s))).collect())
            }
            Meaning::Cancel => Ev::Cancel,
            // A remote piston drives the service; it is not part of the take.
            Meaning::Part | Meaning::NoChange | Meaning::Remote { .. } => continue,
            Meaning::Unknown => match all_off_division(organ, &r.bytes) {
                Some(division) => Ev::AllOff { division },
                None => {
                    *out.unrecognised.entry(r.bytes.to_vec()).or_default() += 1;
                    Ev::Unknown(r.bytes.clone())
                }
            },
        };
        evs.push((r.at, ev));
    }
    evs
}

/// CC 123 (all notes off) or CC 120 (all sound off) on a division's channel.
fn all_off_division(organ: &Organ, b: &[u8]) -> Option<usize> {
    match *b {
        [s, 120 | 123, 0] if s & 0xF0 == 0xB0 => organ.divisions.iter().position(|d| d.channel.wire() == s & 0x0F),
        _ => None,
    }
}

/// A take while its keys are read: its zero, its last key up and its notes (absolute times).
struct Piece {
    zero: Micros,
    end: Micros,
    notes: Vec<Vec<Note>>,
    held_at_end: usize,
}

/// Cuts the key events into pieces (one, or one per silence of at least `split`).
fn pieces(divisions: usize, evs: &[(Micros, Ev)], split: Option<Micros>, odd: &mut usize) -> Vec<Piece> {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut down: Vec<[Option<(Micros, u8)>; 128]> = vec![[None; 128]; divisions];
    let mut n_down = 0usize;
    let mut open = false;
    let release = |p: &mut Piece, d: usize, key: u8, since: (Micros, u8), t: Micros| {
        p.notes[d].push(Note { start: since.0, end: t, key, velocity: since.1 });
        p.end = p.end.max(t);
    };
    for (t, ev) in evs {
        let t = *t;
        match *ev {
            Ev::Key { division, key, velocity, down: true } => {
                let slot = &mut down[division][usize::from(key & 0x7F)];
                if slot.is_some() {
                    *odd += 1;
                    continue;
                }
                let silence_over = n_down == 0
                    && open
                    && split.is_some_and(|s| t.saturating_sub(pieces.last().map_or(t, |p| p.end)) >= s);
                if !open || silence_over {
                    pieces.push(Piece { zero: t, end: t, notes: vec![Vec::new(); divisions], held_at_end: 0 });
                    open = true;
                }
                *slot = Some((t, velocity.max(1)));
                n_down += 1;
            }
            Ev::Key { division, key, down: false, .. } => match down[division][usize::from(key & 0x7F)].take() {
                Some(since) => {
                    release(pieces.last_mut().expect("a key is down, so a piece is open"), division, key, since, t);
                    n_down -= 1;
                }
                None => *odd += 1,
            },
            Ev::AllOff { division } => {
                for key in 0..128u8 {
                    if let Some(since) = down[division][usize::from(key)].take() {
                        release(pieces.last_mut().expect("a key is down"), division, key, since, t);
                        n_down -= 1;
                    }
                }
            }
            _ => {}
        }
    }
    // Keys still down at the end are released at the last message.
    if n_down > 0 {
        let t = evs.last().map_or(Micros::ZERO, |e| e.0);
        let p = pieces.last_mut().expect("a key is down");
        for (d, keys) in down.iter_mut().enumerate() {
            for key in 0..128u8 {
                if let Some(since) = keys[usize::from(key)].take() {
                    release(p, d, key, since, t);
                    p.held_at_end += 1;
                }
            }
        }
    }
    for p in &mut pieces {
        for notes in &mut p.notes {
            notes.sort_by_key(|n| (n.start, n.key));
        }
    }
    pieces
}

/// Stop messages that arrived together, and what they changed.
struct Group {
    /// When the first message that changed something arrived.
    first: Micros,
    before: Vec<bool>,
    after: Vec<bool>,
}

/// Splits the control events into groups and works out what each one changed.
fn groups(organ: &Organ, evs: &[(Micros, Ev)]) -> Vec<Group> {
    let n = organ.controls.len();
    let gap = organ.stop_pace + GROUP_SLACK;
    let mut state = vec![false; n];
    let mut out: Vec<Group> = Vec::new();
    // Per control, when it was first touched in the current group.
    let mut touched: Vec<Option<Micros>> = vec![None; n];
    let mut current: Option<(Vec<bool>, Micros)> = None; // (state before the group, last message)
    let close = |out: &mut Vec<Group>, before: Vec<bool>, after: &[bool], touched: &mut Vec<Option<Micros>>| {
        let first = (0..n).filter(|&c| before[c] != after[c]).filter_map(|c| touched[c]).min();
        touched.iter_mut().for_each(|t| *t = None);
        if let Some(first) = first {
            out.push(Group { first, before, after: after.to_vec() });
        }
    };
    for (t, ev) in evs {
        let t = *t;
        let changes: Vec<(ControlId, Option<bool>)> = match ev {
            Ev::Controls(v) => v.clone(),
            Ev::Cancel => (0..n).map(|c| (c, Some(false))).collect(),
            _ => continue,
        };
        match current.take() {
            Some((before, last)) if t.saturating_sub(last) > gap => {
                close(&mut out, before, &state, &mut touched);
                current = Some((state.clone(), t));
            }
            Some((before, _)) => current = Some((before, t)),
            None => current = Some((state.clone(), t)),
        }
        for (c, s) in changes {
            let now = s.unwrap_or(!state[c]);
            if now != state[c] {
                touched[c].get_or_insert(t);
            }
            state[c] = now;
        }
    }
    if let Some((before, _)) = current {
        close(&mut out, before, &state, &mut touched);
    }
    out
}

fn drawn(state: &[bool]) -> Vec<ControlId> {
    (0..state.len()).filter(|&c| state[c]).collect()
}

/// Reads a recording into takes: `split` cuts it at every silence of at least that long.
pub fn takes(organ: &Organ, msgs: &[Received], split: Option<Micros>) -> Takes {
    let mut out = Takes::default();
    let evs = decode_all(organ, msgs, &mut out);
    let pieces = pieces(organ.divisions.len(), &evs, split, &mut out.odd_keys);
    // Which piece a time belongs to: the first whose end is not before it (a silence belongs to
    // the piece after it).
    let piece_of = |t: Micros| pieces.iter().position(|p| t <= p.end);
    let mut takes: Vec<Take> = pieces
        .iter()
        .map(|p| Take {
            zero: p.zero,
            length: p.end.saturating_sub(p.zero),
            notes: p.notes.iter().map(|ns| ns.iter().map(|n| relative(n, p.zero)).collect()).collect(),
            initial: Vec::new(),
            changes: Vec::new(),
            unrecognised: Vec::new(),
            held_at_end: p.held_at_end,
        })
        .collect();

    // The registration: each take starts with what is drawn when its window opens, and groups
    // whose music time falls before its first note still belong to that starting registration.
    let (lead, pace) = (organ.stop_lead.0, organ.stop_pace.0);
    let mut entered = 0usize; // takes whose starting registration is set
    let mut has_changes = vec![false; takes.len()];
    let mut state_now = vec![false; organ.controls.len()];
    for g in groups(organ, &evs) {
        let Some(i) = piece_of(g.first) else {
            out.changes_left_out += 1;
            state_now = g.after;
            continue;
        };
        while entered <= i {
            takes[entered].initial = drawn(&state_now);
            entered += 1;
        }
        let k = g.before.iter().zip(&g.after).filter(|(a, b)| a != b).count() as u64;
        let music = g.first.0 + lead + (k - 1) * pace;
        let p = &pieces[i];
        // A change for the first note itself is the starting registration (organ sends that
        // one the same way: its last stop `stop_lead_ms` before the music), also when the
        // clock's jitter puts it a little after.
        if !has_changes[i] && music <= p.zero.0 + GROUP_SLACK.0 {
            takes[i].initial = drawn(&g.after);
        } else if music < p.end.0 {
            let c = organ.controls.len();
            // In time order, after the first note (a dense burst can put a later group's music
            // time before an earlier one's: then they share a time, and apply in order).
            let after = takes[i].changes.last().map_or(Micros(1), |x| x.at);
            takes[i].changes.push(TakeChange {
                at: Micros(music.saturating_sub(p.zero.0)).max(after),
                off: (0..c).filter(|&x| g.before[x] && !g.after[x]).collect(),
                on: (0..c).filter(|&x| !g.before[x] && g.after[x]).collect(),
            });
            has_changes[i] = true;
        } else if i + 1 == pieces.len() {
            // Too late for the last take (its music has ended): the closing cancel, say.
            out.changes_left_out += 1;
        }
        state_now = g.after;
    }
    while entered < takes.len() {
        takes[entered].initial = drawn(&state_now);
        entered += 1;
    }

    for (t, ev) in &evs {
        if let Ev::Unknown(bytes) = ev
            && let Some(i) = piece_of(*t).or(takes.len().checked_sub(1))
        {
            let at = t.0 as i64 - takes[i].zero.0 as i64;
            takes[i].unrecognised.push(Unrecognised { at, bytes: bytes.clone() });
        }
    }
    out.takes = takes;
    out
}

fn relative(n: &Note, zero: Micros) -> Note {
    Note { start: n.start.saturating_sub(zero), end: n.end.saturating_sub(zero), ..*n }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn organ() -> Organ {
        Organ::find("st-marys").unwrap()
    }

    fn rx(at_ms: f64, bytes: &[u8]) -> Received {
        Received { at: Micros((at_ms * 1000.0).round() as u64), bytes: bytes.into() }
    }

    fn names(o: &Organ, ids: &[ControlId]) -> Vec<String> {
        ids.iter().map(|&i| o.controls[i].name.clone()).collect()
    }

    #[test]
    fn notes_per_division_from_the_first_key_down() {
        let o = organ();
        // Swell is channel 1, great 2, pedal 3; stops on channel 16.
        let msgs = [
            rx(1000.0, &[0x90, 60, 80]),
            rx(1200.0, &[0x91, 48, 70]),
            rx(1500.0, &[0x80, 60, 0]),
            rx(1600.0, &[0x91, 48, 0]), // note-on velocity 0 is a note-off
            rx(1700.0, &[0xFE]),        // active sensing: ignored
        ];
        let t = takes(&o, &msgs, None);
        assert_eq!(t.takes.len(), 1);
        let take = &t.takes[0];
        assert_eq!(take.zero, Micros(1_000_000));
        assert_eq!(take.length, Micros(600_000));
        assert_eq!(take.notes[0], vec![Note { start: Micros(0), end: Micros(500_000), key: 60, velocity: 80 }]);
        assert_eq!(take.notes[1], vec![Note { start: Micros(200_000), end: Micros(600_000), key: 48, velocity: 70 }]);
        assert!(take.notes[2].is_empty());
        assert_eq!((t.messages, t.realtime), (4, 1));
    }

    #[test]
    fn a_console_that_says_drawn_and_put_in_by_velocity_is_recorded_by_its_state() {
        // St Mary's with Gt Open Diapason 8 put in by the same note-on at velocity 1.
        const GT8: &str = "name = \"Gt Open Diapason 8\"\ndivision = \"great\"\non = { note = 48, channel = 16 }";
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/organs/st-marys.toml")).unwrap();
        let o =
            Organ::from_toml(&text.replace(GT8, &format!("{GT8}\noff = {{ raw = \"9F 30 01\" }}")), "v.toml").unwrap();
        let gt8 = o.control("Gt Open Diapason 8").unwrap();
        assert!(!o.controls[gt8].toggle);
        // Drawn twice (a console repeating its state: not flipped back), put in during the piece.
        let msgs = [
            rx(0.0, &[0x9F, 48, 127]),
            rx(500.0, &[0x9F, 48, 127]),
            rx(1000.0, &[0x91, 60, 80]),
            rx(2000.0, &[0x9F, 48, 1]),
            rx(3000.0, &[0x81, 60, 0]),
        ];
        let take = &takes(&o, &msgs, None).takes[0];
        assert_eq!(take.initial, vec![gt8]);
        assert_eq!(take.changes.len(), 1, "{:?}", take.changes);
        assert_eq!((take.changes[0].off.clone(), take.changes[0].on.clone()), (vec![gt8], vec![]), "put in");
    }

    #[test]
    fn stops_before_the_first_note_are_the_starting_registration() {
        let o = organ();
        let gt8 = o.control("Gt Open Diapason 8").unwrap();
        let ped = o.control("Gt to Ped").unwrap();
        // Drawn by hand a second apart, then put in again and redrawn: only the end counts.
        let msgs = [
            rx(0.0, &[0x9F, 48, 127]),
            rx(1000.0, &[0x9F, 74, 127]),
            rx(1500.0, &[0x9F, 41, 127]),
            rx(1800.0, &[0x8F, 41, 0]),
            rx(3000.0, &[0x91, 60, 80]),
            rx(4000.0, &[0x81, 60, 0]),
        ];
        let t = takes(&o, &msgs, None);
        let take = &t.takes[0];
        assert_eq!(take.initial, vec![gt8, ped]);
        assert!(take.changes.is_empty(), "{:?}", take.changes);
        // organ's own start: the last stop 40 ms before the first note. A frame of jitter that
        // puts it a few µs later does not make it a change.
        let msgs = [rx(1000.0, &[0x9F, 48, 127]), rx(1040.021, &[0x91, 60, 80]), rx(2000.0, &[0x81, 60, 0])];
        let late = [rx(1000.021, &[0x9F, 48, 127]), rx(1040.0, &[0x91, 60, 80]), rx(2000.0, &[0x81, 60, 0])];
        for m in [&msgs, &late] {
            let t = takes(&o, m, None);
            assert_eq!((t.takes[0].initial.clone(), t.takes[0].changes.len()), (vec![gt8], 0));
        }
    }

    #[test]
    fn a_change_is_written_where_organ_would_send_it_from() {
        let o = organ(); // stop_lead 40 ms, stop_pace 4 ms
        let msgs = [
            rx(0.0, &[0x91, 60, 80]),
            // A change as organ plans it for 2.000 s: two messages 4 ms apart, the last 40 ms
            // before the music.
            rx(1956.0, &[0x8F, 73, 0]),
            rx(1960.0, &[0x9F, 74, 127]),
            rx(3000.0, &[0x81, 60, 0]),
        ];
        let t = takes(&o, &msgs, None);
        let c = &t.takes[0].changes;
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].at, Micros(2_000_000));
        assert!(c[0].off.is_empty(), "Sw to Ped was never drawn: putting it in changes nothing");
        assert_eq!(names(&o, &c[0].on), vec!["Gt to Ped"]);
        // A stop drawn by hand 100 ms later is a change of its own, at its own time + lead.
        let mut m = msgs.to_vec();
        m.insert(3, rx(2060.0, &[0x9F, 48, 127]));
        let t = takes(&o, &m, None);
        let at: Vec<Micros> = t.takes[0].changes.iter().map(|c| c.at).collect();
        assert_eq!(at, vec![Micros(2_000_000), Micros(2_100_000)]);
    }

    #[test]
    fn a_piston_burst_is_the_stops_it_set_and_the_piston_is_kept_as_unknown() {
        let o = organ();
        let sw8 = o.control("Sw Open Diapason 8").unwrap();
        let gt8 = o.control("Gt Open Diapason 8").unwrap();
        let mut msgs = vec![rx(0.0, &[0x9F, 36, 127]), rx(500.0, &[0x90, 60, 80])];
        // The piston's own message (a program change nothing in st-marys uses), then the
        // console's whole state, one message a millisecond: Sw Open Diapason off, Gt on, the rest
        // off (already off).
        msgs.push(rx(1000.0, &[0xCF, 5]));
        msgs.push(rx(1001.0, &[0x8F, 36, 0]));
        msgs.push(rx(1002.0, &[0x9F, 48, 127]));
        for (i, note) in (37..45).enumerate() {
            msgs.push(rx(1003.0 + i as f64, &[0x8F, note, 0]));
        }
        msgs.push(rx(2000.0, &[0x80, 60, 0]));
        let t = takes(&o, &msgs, None);
        let take = &t.takes[0];
        assert_eq!(take.initial, vec![sw8]);
        assert_eq!(
            take.changes,
            vec![TakeChange { at: Micros(1_001_000 + 40_000 + 4_000 - 500_000), off: vec![sw8], on: vec![gt8] }]
        );
        assert_eq!(take.unrecognised, vec![Unrecognised { at: 500_000, bytes: vec![0xCF, 5].into() }]);
        assert_eq!(t.unrecognised.get(&vec![0xCF, 5]), Some(&1));
    }

    #[test]
    fn split_at_silences_with_the_registration_of_the_silence_in_the_next_take() {
        let o = organ();
        let gt8 = o.control("Gt Open Diapason 8").unwrap();
        let msgs = [
            rx(1000.0, &[0x91, 60, 80]),
            rx(2000.0, &[0x81, 60, 0]),
            rx(2500.0, &[0x91, 62, 80]), // 0.5 s of silence: the same piece
            rx(3000.0, &[0x81, 62, 0]),
            rx(5000.0, &[0x9F, 48, 127]), // drawn in the silence
            rx(6000.0, &[0xCF, 9]),       // unknown, in the silence
            rx(9000.0, &[0x91, 64, 80]),  // 6 s later: a new piece
            rx(9500.0, &[0xB1, 123, 0]),  // all notes off on the great's channel
            rx(9600.0, &[0xCF, 9]),       // unknown, after the end
        ];
        let t = takes(&o, &msgs, Some(Micros(3_000_000)));
        assert_eq!(t.takes.len(), 2);
        let (a, b) = (&t.takes[0], &t.takes[1]);
        assert_eq!((a.zero, a.length, a.note_count()), (Micros(1_000_000), Micros(2_000_000), 2));
        assert!(a.initial.is_empty() && a.changes.is_empty() && a.unrecognised.is_empty());
        assert_eq!((b.zero, b.length, b.note_count()), (Micros(9_000_000), Micros(500_000), 1));
        assert_eq!(b.initial, vec![gt8]);
        assert_eq!(b.unrecognised.iter().map(|u| u.at).collect::<Vec<_>>(), vec![-3_000_000, 600_000]);
        // Without --split it is one take, and the stop drawn in the silence is a change.
        let one = takes(&o, &msgs, None);
        assert_eq!(one.takes.len(), 1);
        assert_eq!(one.takes[0].changes.len(), 1);
        assert_eq!(one.takes[0].changes[0].at, Micros(4_040_000));
    }

    #[test]
    fn a_fast_burst_just_before_the_first_note_keeps_its_changes_in_order() {
        let o = organ(); // lead 40 ms, pace 4 ms
        // Twenty stops a millisecond apart (organ will send them 4 ms apart: their change's time
        // is 1016 ms), then one more 7 ms later (a group of its own, whose time is 966 ms), the
        // first note at 1000 ms.
        let mut msgs: Vec<Received> =
            [36u8, 37, 38, 39, 40, 41, 42, 43, 44, 48, 49, 50, 51, 52, 53, 54, 55, 56, 60, 61]
                .iter()
                .enumerate()
                .map(|(j, &n)| rx(900.0 + j as f64, &[0x9F, n, 127]))
                .collect();
        msgs.push(rx(926.0, &[0x9F, 72, 127]));
        msgs.push(rx(1000.0, &[0x91, 60, 80]));
        msgs.push(rx(2000.0, &[0x81, 60, 0]));
        let t = takes(&o, &msgs, None);
        let c = &t.takes[0].changes;
        assert_eq!(
            c.iter().map(|c| (c.at, c.on.len())).collect::<Vec<_>>(),
            vec![(Micros(16_000), 20), (Micros(16_000), 1)]
        );
        assert!(t.takes[0].initial.is_empty());
    }

    #[test]
    fn held_keys_cancel_and_odd_messages() {
        let o = organ();
        let msgs = [
            rx(0.0, &[0x9F, 48, 127]),
            rx(100.0, &[0x91, 60, 80]),
            rx(110.0, &[0x91, 60, 80]), // again: ignored
            rx(120.0, &[0x81, 61, 0]),  // not down: ignored
            rx(500.0, &[0x8F, 48, 0]),  // put in during the take
            rx(1000.0, &[0x92, 40, 80]),
        ];
        let t = takes(&o, &msgs, None);
        assert_eq!(t.odd_keys, 2);
        let take = &t.takes[0];
        assert_eq!(take.held_at_end, 2, "both keys released at the last message");
        assert_eq!(take.length, Micros(900_000));
        assert_eq!(take.initial, vec![o.control("Gt Open Diapason 8").unwrap()]);
        assert_eq!(take.changes.len(), 1);
        // Nothing played: no take, and the stop changes are left out.
        let t = takes(&o, &msgs[..1], None);
        assert!(t.takes.is_empty());
        assert_eq!(t.changes_left_out, 1);
    }
}
