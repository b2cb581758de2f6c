//! Loading Standard MIDI Files (midly) into a [`Score`]: parts with paired notes, the global
//! tempo map and the time-signature (bar:beat) map.
//!
//! Pure: bytes in, `Score` out, no I/O besides [`load_file`] reading the file. Runs on the
//! control thread at load time and may allocate freely.
//!
//! What a score keeps: only notes. Program changes, controllers, pitch bend, aftertouch and SysEx
//! in score tracks are counted in [`Stripped`] and dropped: on many organs a program change fires
//! a piston, so nothing from the score but notes may ever reach the organ.

mod load;
pub mod meter;
pub mod tempo;

use std::fmt;
use std::path::Path;

use crate::midi::Channel;
pub use load::load_bytes;
pub use meter::{BarBeat, MeterMap};
pub use tempo::{ExactTime, TempoMap, Timing};

/// A loaded score: notes grouped into parts, plus the maps that turn ticks into time and bars.
#[derive(Debug, Clone)]
pub struct Score {
    /// File name as given, for messages.
    pub name: String,
    /// SMF format: 0 (one track) or 1 (parallel tracks). Format 2 is refused at load.
    pub format: u8,
    pub timing: Timing,
    /// Number of track chunks in the file.
    pub tracks: usize,
    pub tempo: TempoMap,
    pub meter: MeterMap,
    /// Parts in order (format 1: tracks holding notes, in file order; format 0: the single track
    /// split by channel, ordered by channel). Part numbers are 1-based, as `organ info` prints.
    pub parts: Vec<Part>,
    /// Tick of the last event of any track (end-of-track included).
    pub end_tick: u64,
    /// What was dropped from the score tracks (never sent to the organ).
    pub stripped: Stripped,
    pub warnings: Vec<ScoreWarning>,
}

/// One part: a track with notes (or, in a format-0 file, one channel of the single track).
#[derive(Debug, Clone)]
pub struct Part {
    /// 1-based part number.
    pub number: usize,
    /// 0-based index of the track chunk the notes came from.
    pub track: usize,
    /// Track name meta event, if any, with trailing NULs and whitespace trimmed.
    pub name: Option<String>,
    /// Distinct channels of the notes, in first-seen order.
    pub channels: Vec<Channel>,
    /// Paired notes sorted by (start, key, end).
    pub notes: Vec<Note>,
}

/// A note with its start and end in ticks (end ≥ start).
///
/// Pairing rule: note-on velocity 0 is a note-off; a note-off ends the earliest still-open note
/// of the same key and channel in the same track (first in, first out); a note-off with no open
/// note is ignored (counted in warnings); a note never released ends at its track's end-of-track
/// (warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    pub start: u64,
    pub end: u64,
    pub key: u8,
    pub velocity: u8,
    pub channel: Channel,
}

/// Counts of score messages that were dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stripped {
    pub program_changes: u32,
    pub controllers: u32,
    pub pitch_bends: u32,
    pub aftertouch: u32,
    pub sysex: u32,
}

impl Stripped {
    pub fn total(&self) -> u32 {
        self.program_changes + self.controllers + self.pitch_bends + self.aftertouch + self.sysex
    }
}

/// Something in the score worth telling the user, though the score still loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreWarning {
    /// 1-based part number, when the warning concerns one part.
    pub part: Option<usize>,
    /// Where in the score (ticks), when known.
    pub tick: Option<u64>,
    pub kind: WarningKind,
    /// A complete sentence for the user (without the file name).
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// A note never released; ended at the end of its track.
    HangingNote,
    /// A note-off for a key that was not down; ignored.
    StrayNoteOff,
    /// Two tempo or time-signature events disagree at the same tick; the later one wins.
    Conflict,
    /// Anything else the loader tolerated.
    Other,
}

/// Why a file could not be loaded. `Display` is one line without the file name;
/// [`ScoreFileError`] adds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScoreError {
    Io(String),
    /// Not a regular file, or larger than a score can be ([`crate::files`]).
    File(crate::files::FileProblem),
    Empty,
    /// Not a Standard MIDI File (no `MThd` header), with a hint of what it looks like.
    NotMidi(String),
    /// The file ends before a chunk does.
    Truncated {
        offset: usize,
        detail: String,
    },
    /// A structurally invalid file (bad header, absurd chunk length, bad event).
    Malformed {
        offset: Option<usize>,
        detail: String,
    },
    /// SMF format 2 (independent sequences) is not a single piece.
    Format2,
    /// No track holds any note.
    NoNotes,
}

impl fmt::Display for ScoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScoreError::Io(e) => write!(f, "cannot read the file: {e}"),
            ScoreError::File(p) => p.fmt(f),
            ScoreError::Empty => f.write_str("the file is empty (0 bytes); export the MIDI file again"),
            ScoreError::NotMidi(what) => write!(f, "not a Standard MIDI File ({what}); export the score as .mid"),
            ScoreError::Truncated { offset, detail } => {
                write!(f, "the file is truncated at byte {offset} ({detail}); export or copy it again")
            }
            ScoreError::Malformed { offset: Some(o), detail } => write!(f, "damaged MIDI data at byte {o}: {detail}"),
            ScoreError::Malformed { offset: None, detail } => write!(f, "damaged MIDI data: {detail}"),
            ScoreError::Format2 => f.write_str(
                "SMF format 2 (independent sequences) is not supported; save it as format 1 (one track per staff)",
            ),
            ScoreError::NoNotes => f.write_str("the file holds no notes"),
        }
    }
}

/// A [`ScoreError`] with the file it came from: `bwv553.mid: the file is truncated at byte …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreFileError {
    pub file: String,
    pub error: ScoreError,
}

impl fmt::Display for ScoreFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.error)
    }
}

impl std::error::Error for ScoreFileError {}

/// Reads and loads a MIDI file (a regular file of at most [`crate::files::FileKind::limit`]
/// bytes).
///
/// # Errors
/// Unreadable, special, oversize, empty, non-MIDI, truncated, malformed or format-2 files, and
/// files with no notes.
pub fn load_file(path: &Path) -> Result<Score, ScoreFileError> {
    let file = path.display().to_string();
    let bytes = crate::files::read_user_file(path, crate::files::FileKind::Score)
        .map_err(|e| ScoreFileError { file: file.clone(), error: ScoreError::File(e.problem) })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| file.clone());
    load_bytes(&bytes, &name).map_err(|error| ScoreFileError { file, error })
}

impl Score {
    /// The number of notes in all parts.
    pub fn note_count(&self) -> usize {
        self.parts.iter().map(|p| p.notes.len()).sum()
    }

    /// Where the music ends: the latest note end of any part.
    pub fn last_note_end(&self) -> u64 {
        self.parts.iter().flat_map(|p| p.notes.iter().map(|n| n.end)).max().unwrap_or(0)
    }
}
