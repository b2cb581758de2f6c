//! A suggested layout for a score on an organ (`organ info`, and the hint in layout errors),
//! made by reading the parts as an organist would:
//!
//! 1. a part is left out (`-`) when it has nothing to play: no note in any keyboard's compass,
//!    only General MIDI percussion (channel 10), or only chord symbols — block chords of three or
//!    more notes struck and released together at every onset, as LilyPond writes a ChordNames
//!    track (also when a MuseScore import split them over two staves of one instrument, which
//!    share a channel);
//! 2. a staff or track name that names a division is used: its name or plural (`Swell`,
//!    `Pedals`), a short abbreviation (`Sw.`, `Gt.`, `Ped.`, `Ch`, `Pos`), `Pedal`/`Pédale`, or
//!    `Manual I`-`IV` (manual I is the Great when there is one, then the other manuals in the
//!    organ file's order);
//! 3. five unnamed parts on an organ with S, G and P divisions are MuseScore's SSGGP;
//! 4. otherwise the lowest part goes to the pedal when the organ has one and that part is a line
//!    a foot can play (four out of five of its onsets a single note); parts that double it
//!    note for note at another octave are left out (the pedal's 16' and 4' stops do that); the
//!    other parts go to the Great (code G), else the first manual.
//!
//! Pure; runs on the control thread.

use std::collections::HashMap;

use crate::organ::Organ;
use crate::score::{Note, Part, Score};

/// The pedal division: code P or a name starting "ped", else the division with the shortest
/// compass when it is shorter than a manual's (under five octaves).
fn pedal_division(organ: &Organ) -> Option<usize> {
    let by_name = organ.divisions.iter().position(|d| d.code == 'P' || d.name.to_lowercase().starts_with("ped"));
    by_name.or_else(|| {
        organ
            .divisions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.compass.1 - d.compass.0 < 60)
            .min_by_key(|(_, d)| d.compass.1 - d.compass.0)
            .map(|(i, _)| i)
    })
}

/// The manuals in the order `Manual I`, `II`, … name them: the Great first, then the others.
fn manuals(organ: &Organ, pedal: Option<usize>) -> Vec<usize> {
    let great = organ.divisions.iter().position(|d| d.code == 'G');
    great.into_iter().chain((0..organ.divisions.len()).filter(|&i| Some(i) != great && Some(i) != pedal)).collect()
}

/// A manual number written as `I`-`IV` or `1`-`4`.
fn manual_number(word: &str) -> Option<usize> {
    match word {
        "i" | "1" => Some(1),
        "ii" | "2" => Some(2),
        "iii" | "3" => Some(3),
        "iv" | "4" => Some(4),
        _ => None,
    }
}

/// The division a staff or track name names, if any.
fn named_division(name: &str, organ: &Organ, pedal: Option<usize>) -> Option<usize> {
    let lower = name.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    for (i, &w) in words.iter().enumerate() {
        if matches!(w, "pedal" | "pedals" | "ped" | "pedale" | "pédale" | "pedalboard" | "pédalier") && pedal.is_some()
        {
            return pedal;
        }
        if matches!(w, "manual" | "man" | "manuale")
            && let Some(n) = words.get(i + 1).and_then(|n| manual_number(n))
        {
            return manuals(organ, pedal).get(n - 1).copied();
        }
        let found = organ.divisions.iter().position(|d| {
            let dn = d.name.to_lowercase();
            w == dn
                || w.strip_suffix('s') == Some(dn.as_str())
                || (w.chars().count() <= 4 && crate::grandorgue::names::abbreviates(w, &dn, None))
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// True when every onset of `notes` (at least four) is a block chord of three or more notes
/// released together.
fn chord_symbols<'a>(notes: impl Iterator<Item = &'a Note>) -> bool {
    let mut onsets: HashMap<u64, (usize, u64, bool)> = HashMap::new();
    for n in notes {
        let e = onsets.entry(n.start).or_insert((0, n.end, true));
        e.0 += 1;
        e.2 &= e.1 == n.end;
    }
    onsets.len() >= 4 && onsets.values().all(|&(count, _, together)| count >= 3 && together)
}

/// True when `part` has nothing for a keyboard of `organ` to play (see the module doc).
fn nothing_to_play(part: &Part, organ: &Organ) -> bool {
    let in_a_compass =
        part.notes.iter().any(|n| organ.divisions.iter().any(|d| (d.compass.0..=d.compass.1).contains(&n.key)));
    let percussion = part.channels.iter().all(|c| c.user() == 10);
    !in_a_compass || percussion || chord_symbols(part.notes.iter())
}

/// The mean key, for "lowest".
fn mean_key(p: &Part) -> f64 {
    p.notes.iter().map(|n| f64::from(n.key)).sum::<f64>() / p.notes.len().max(1) as f64
}

/// True when at least four out of five onsets of `p` are a single note.
fn is_line(p: &Part) -> bool {
    let mut per_onset: HashMap<u64, usize> = HashMap::new();
    for n in &p.notes {
        *per_onset.entry(n.start).or_default() += 1;
    }
    let single = per_onset.values().filter(|&&c| c == 1).count();
    !per_onset.is_empty() && single * 5 >= per_onset.len() * 4
}

/// True when `b` plays `a`'s notes at another octave: nine out of ten of its notes match a note
/// of `a` in start and end with a key a multiple of 12 away, and their counts are within a tenth.
fn doubles(a: &Part, b: &Part) -> bool {
    if b.notes.is_empty() || a.notes.len().abs_diff(b.notes.len()) * 10 > a.notes.len().max(b.notes.len()) {
        return false;
    }
    let mut by_time: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for n in &a.notes {
        by_time.entry((n.start, n.end)).or_default().push(n.key);
    }
    let matched = b
        .notes
        .iter()
        .filter(|n| {
            by_time
                .get(&(n.start, n.end))
                .is_some_and(|keys| keys.iter().any(|&k| k != n.key && k.abs_diff(n.key) % 12 == 0))
        })
        .count();
    matched * 10 >= b.notes.len() * 9
}

/// A plausible layout for `score` on `organ` (see the module doc).
pub fn suggest_layout(score: &Score, organ: &Organ) -> String {
    let pedal = pedal_division(organ);
    let manual = organ
        .divisions
        .iter()
        .position(|d| d.code == 'G')
        .or_else(|| (0..organ.divisions.len()).find(|&i| Some(i) != pedal))
        .unwrap_or(0);
    let parts = &score.parts;
    let mut out: Vec<bool> = parts.iter().map(|p| nothing_to_play(p, organ)).collect();
    // Chord symbols split over the staves of one instrument (one channel).
    let mut by_channels: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for (i, p) in parts.iter().enumerate() {
        by_channels.entry(p.channels.iter().map(|c| c.user()).collect()).or_default().push(i);
    }
    for group in by_channels.values().filter(|g| g.len() > 1) {
        if chord_symbols(group.iter().flat_map(|&i| parts[i].notes.iter())) {
            group.iter().for_each(|&i| out[i] = true);
        }
    }
    if out.iter().all(|&o| o) {
        // Something must be played: the chord symbols, then, as written.
        out.iter_mut().for_each(|o| *o = false);
    }
    let mut layout: Vec<Option<usize>> = out.iter().map(|&o| if o { None } else { Some(manual) }).collect();
    let named: Vec<Option<usize>> = parts
        .iter()
        .zip(&out)
        .map(|(p, &o)| if o { None } else { p.name.as_deref().and_then(|n| named_division(n, organ, pedal)) })
        .collect();
    let codes: String = organ.divisions.iter().map(|d| d.code).collect();
    if parts.len() == 5
        && parts.iter().all(|p| p.name.is_none())
        && !out.contains(&true)
        && ['S', 'G', 'P'].iter().all(|c| codes.contains(*c))
    {
        return "SSGGP".to_string();
    }
    for (l, n) in layout.iter_mut().zip(&named) {
        if n.is_some() {
            *l = *n;
        }
    }
    let kept: Vec<usize> = (0..parts.len()).filter(|&i| !out[i]).collect();
    if let Some(pedal) = pedal
        && kept.len() > 1
        && !named.contains(&Some(pedal))
    {
        let lowest = kept.iter().copied().min_by(|&a, &b| mean_key(&parts[a]).total_cmp(&mean_key(&parts[b])));
        if let Some(low) = lowest.filter(|&i| named[i].is_none() && is_line(&parts[i])) {
            layout[low] = Some(pedal);
            for &i in &kept {
                if i != low && named[i].is_none() && doubles(&parts[low], &parts[i]) {
                    layout[i] = None;
                }
            }
        }
    }
    layout.iter().map(|d| d.map_or('-', |d| organ.divisions[d].code)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organ::BUILTIN_ORGANS;

    #[test]
    fn names_that_name_a_division() {
        let organ = Organ::from_toml(BUILTIN_ORGANS[0].1, "st-marys.toml").unwrap();
        let pedal = pedal_division(&organ);
        let named = |n: &str| named_division(n, &organ, pedal).map(|d| organ.divisions[d].name.as_str());
        for (name, division) in [
            ("Pedal", Some("pedal")),
            ("Ped.", Some("pedal")),
            ("pedal:pedal", Some("pedal")),
            ("Pédale", Some("pedal")),
            ("Swell\0", Some("swell")),
            ("Sw.", Some("swell")),
            ("Gt.", Some("great")),
            ("Great Organ", Some("great")),
            ("Manual I", Some("great")),
            ("Man. II", Some("swell")),
            ("right:right", None),
            ("up:sop", None),
            ("TrebStaff:SVoice", None),
            ("Pipe Organ", None),
            ("O Come, All Ye Faithful", None),
            ("Lift High The Cross", None),
        ] {
            assert_eq!(named(name), division, "{name}");
        }
    }

    #[test]
    fn chord_symbols_are_block_chords_at_every_onset() {
        let ch = crate::midi::Channel::from_user(1).unwrap();
        let note = |start, end, key| Note { start, end, key, velocity: 80, channel: ch };
        let chords: Vec<Note> = (0..4)
            .flat_map(|i| {
                [note(i * 480, i * 480 + 480, 55), note(i * 480, i * 480 + 480, 59), note(i * 480, i * 480 + 480, 62)]
            })
            .collect();
        assert!(chord_symbols(chords.iter()));
        let mut hymn = chords.clone();
        hymn.push(note(1920, 2400, 60));
        assert!(!chord_symbols(hymn.iter()), "a single note somewhere: not chord symbols");
        let mut ragged = chords;
        ragged[0].end = 240;
        assert!(!chord_symbols(ragged.iter()), "a voice released early: not chord symbols");
    }
}
