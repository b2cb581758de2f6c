//! Reference data for the corpus: what mido (an independent MIDI library) read from each file
//! (tests/data/reference/, written by make_reference.py), the corpus file list, and a tempo map
//! computed here without the crate's tempo module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::data_dir;

/// Every MIDI file of the corpus (tests/data/real and tests/data/ssggp), sorted.
pub fn corpus_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for sub in ["real", "ssggp"] {
        for e in std::fs::read_dir(data_dir().join(sub)).expect("corpus dir") {
            let p = e.expect("dir entry").path();
            if p.extension().is_some_and(|x| x == "mid") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

pub fn stem(p: &Path) -> String {
    p.file_stem().expect("file name").to_string_lossy().into_owned()
}

// --- reference data (mido) ----------------------------------------------------------------------

/// `tests/data/reference/<stem>.json`, written by make_reference.py with mido (see SOURCES.md).
#[derive(Debug, Deserialize)]
pub struct Reference {
    pub file: String,
    pub format_type: u8,
    pub ticks_per_beat: u16,
    pub num_tracks: usize,
    pub note_on_count: usize,
    pub note_off_count: usize,
    /// (tick, time_s, us_per_quarter) of every set_tempo in merged order.
    pub tempo_map: Vec<(u64, f64, u32)>,
    /// (time_s, track, channel, note, velocity, type, tick)
    pub events: Vec<(f64, usize, u8, u8, u8, String, u64)>,
}

impl Reference {
    pub fn load(midi: &Path) -> Reference {
        let p = data_dir().join("reference").join(format!("{}.json", stem(midi)));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

/// A note as paired from the reference rows by the documented rule (FIFO per track, channel and
/// key; stray note-offs ignored; hanging notes have no end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefNote {
    pub track: usize,
    pub channel: u8,
    pub key: u8,
    pub velocity: u8,
    pub start_tick: u64,
    pub start_s: f64,
    /// `None` for a note never released in the file.
    pub end: Option<(u64, f64)>,
}

/// Pairs the reference rows; also returns the number of stray note-offs.
pub fn pair_reference(r: &Reference) -> (Vec<RefNote>, usize) {
    let mut open: BTreeMap<(usize, u8, u8), std::collections::VecDeque<usize>> = BTreeMap::new();
    let mut notes: Vec<RefNote> = Vec::new();
    let mut stray = 0;
    for &(time_s, track, channel, key, velocity, ref ty, tick) in &r.events {
        let on = ty == "note_on" && velocity > 0;
        let q = open.entry((track, channel, key)).or_default();
        if on {
            notes.push(RefNote { track, channel, key, velocity, start_tick: tick, start_s: time_s, end: None });
            q.push_back(notes.len() - 1);
        } else if let Some(i) = q.pop_front() {
            notes[i].end = Some((tick, time_s));
        } else {
            stray += 1;
        }
    }
    (notes, stray)
}

// --- an independent tempo map -------------------------------------------------------------------

/// Tick → time from a list of tempo changes in merged order, computed here without the crate's
/// tempo module: a linear walk over the segments in i128, with the 120 bpm default before the
/// first change and the later of two changes at one tick winning.
pub struct IndepTempo {
    ppq: i128,
    /// (tick, µs per quarter), ticks strictly increasing, first at 0.
    segs: Vec<(u64, i128)>,
}

impl IndepTempo {
    pub fn new(ppq: u16, changes: &[(u64, u32)]) -> IndepTempo {
        let mut segs: Vec<(u64, i128)> = vec![(0, 500_000)];
        let mut sorted = changes.to_vec();
        sorted.sort_by_key(|c| c.0); // stable
        for (tick, us) in sorted {
            match segs.last_mut() {
                Some(last) if last.0 == tick => last.1 = i128::from(us),
                _ => segs.push((tick, i128::from(us))),
            }
        }
        IndepTempo { ppq: i128::from(ppq), segs }
    }

    /// Exact time in µs × PPQ (the numerator over `ppq`).
    pub fn scaled(&self, tick: u64) -> i128 {
        let mut acc: i128 = 0;
        for (i, &(start, us)) in self.segs.iter().enumerate() {
            if start > tick {
                break;
            }
            let end = self.segs.get(i + 1).map_or(tick, |n| n.0.min(tick));
            acc += i128::from(end - start) * us;
        }
        acc
    }

    pub fn ppq(&self) -> i128 {
        self.ppq
    }

    /// Rounded to whole µs, halves up.
    pub fn micros(&self, tick: u64) -> i128 {
        (2 * self.scaled(tick) + self.ppq) / (2 * self.ppq)
    }
}
