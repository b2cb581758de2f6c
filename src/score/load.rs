//! Bytes → [`Score`]. A chunk walk of our own comes first so that a truncated file or an absurd
//! chunk length is refused with the byte offset (midly, built without its `strict` feature,
//! would quietly read what is there); midly then parses the events of each track.

use std::collections::VecDeque;

use midly::{MetaMessage, MidiMessage, TrackEventKind};

use super::meter::{MeterChange, MeterMap};
use super::tempo::{TempoChange, TempoMap, Timing};
use super::{Note, Part, Score, ScoreError, ScoreWarning, Stripped, WarningKind};
use crate::midi::Channel;

/// A track chunk located by the chunk walk.
struct TrackChunk<'a> {
    /// Offset of the chunk's data in the file.
    offset: usize,
    data: &'a [u8],
}

/// Walks the chunks: checks the header and every chunk length against the file size.
fn walk_chunks(bytes: &[u8]) -> Result<(u16, u16, midly::Timing, Vec<TrackChunk<'_>>), ScoreError> {
    if bytes.is_empty() {
        return Err(ScoreError::Empty);
    }
    if bytes.len() < 4 && b"MThd".starts_with(bytes) {
        // The first bytes of a header: a file cut short, not some other kind of file.
        return Err(ScoreError::Truncated { offset: bytes.len(), detail: "the header chunk is incomplete".into() });
    }
    if bytes.len() < 4 || &bytes[..4] != b"MThd" {
        return Err(ScoreError::NotMidi(describe_non_midi(bytes)));
    }
    if bytes.len() < 14 {
        return Err(ScoreError::Truncated { offset: bytes.len(), detail: "the header chunk is incomplete".into() });
    }
    let header_len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if header_len < 6 {
        return Err(ScoreError::Malformed {
            offset: Some(4),
            detail: format!("header chunk length {header_len} is shorter than 6"),
        });
    }
    if header_len > bytes.len() - 8 {
        return Err(ScoreError::Malformed {
            offset: Some(4),
            detail: format!("header chunk length {header_len} runs past the end of the file"),
        });
    }
    let format = u16::from_be_bytes([bytes[8], bytes[9]]);
    let ntrks = u16::from_be_bytes([bytes[10], bytes[11]]);
    let division = u16::from_be_bytes([bytes[12], bytes[13]]);
    let timing = if division & 0x8000 == 0 {
        if division == 0 {
            return Err(ScoreError::Malformed {
                offset: Some(12),
                detail: "division of 0 ticks per quarter note".into(),
            });
        }
        midly::Timing::Metrical(midly::num::u15::new(division))
    } else {
        // The high byte is minus the frame rate in two's complement (0xE7 = -25); 0x80 (-128)
        // has no positive i8, so negate as u8.
        let fps = ((division >> 8) as u8).wrapping_neg();
        let fps = match fps {
            24 => midly::Fps::Fps24,
            25 => midly::Fps::Fps25,
            29 => midly::Fps::Fps29,
            30 => midly::Fps::Fps30,
            other => {
                return Err(ScoreError::Malformed {
                    offset: Some(12),
                    detail: format!("SMPTE division with {other} frames per second (expected 24, 25, 29 or 30)"),
                });
            }
        };
        let sub = (division & 0xFF) as u8;
        if sub == 0 {
            return Err(ScoreError::Malformed {
                offset: Some(13),
                detail: "SMPTE division with 0 ticks per frame".into(),
            });
        }
        midly::Timing::Timecode(fps, sub)
    };
    if format > 2 {
        return Err(ScoreError::Malformed { offset: Some(8), detail: format!("unknown SMF format {format}") });
    }
    let mut pos = 8 + header_len;
    let mut tracks = Vec::new();
    while pos < bytes.len() {
        if bytes.len() - pos < 8 {
            return Err(ScoreError::Truncated {
                offset: bytes.len(),
                detail: format!("{} stray byte(s) where a chunk header should be", bytes.len() - pos),
            });
        }
        let id = &bytes[pos..pos + 4];
        let len = u32::from_be_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]) as usize;
        let data_start = pos + 8;
        let remaining = bytes.len() - data_start;
        if len > remaining {
            let what = if id == b"MTrk" { format!("track {}", tracks.len() + 1) } else { "a chunk".to_string() };
            return Err(ScoreError::Truncated {
                offset: bytes.len(),
                detail: format!("{what} at byte {pos} declares {len} bytes but only {remaining} follow"),
            });
        }
        if id == b"MTrk" {
            tracks.push(TrackChunk { offset: data_start, data: &bytes[data_start..data_start + len] });
        } else if !id.iter().all(|b| b.is_ascii_graphic()) {
            return Err(ScoreError::Malformed {
                offset: Some(pos),
                detail: "garbage where a chunk should start (expected \"MTrk\")".into(),
            });
        }
        // Unknown but well-formed chunks are skipped, as the SMF specification asks.
        pos = data_start + len;
    }
    if tracks.is_empty() {
        return Err(ScoreError::Truncated { offset: bytes.len(), detail: "the file has no track chunks".into() });
    }
    if tracks.len() < usize::from(ntrks) {
        // Cut between two chunks: what is left parses, but parts are missing.
        return Err(ScoreError::Truncated {
            offset: bytes.len(),
            detail: format!("the header announces {ntrks} tracks but only {} follow", tracks.len()),
        });
    }
    Ok((format, ntrks, timing, tracks))
}

fn describe_non_midi(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    if head.starts_with(b"RIFF") {
        "a RIFF file; if it is an RMID file, extract the .mid inside it".into()
    } else if head.starts_with(b"PK") {
        "a ZIP archive, perhaps a compressed MuseScore .mscz".into()
    } else if head.starts_with(b"<?xml") || head.starts_with(b"<score") {
        "an XML file, perhaps MusicXML".into()
    } else if head.starts_with(b"%PDF") {
        "a PDF document".into()
    } else if head.iter().all(|b| b.is_ascii() && (b.is_ascii_graphic() || b.is_ascii_whitespace())) {
        "it starts with text, not \"MThd\"".into()
    } else {
        "it does not start with \"MThd\"".into()
    }
}

/// (tick, channel, key, velocity; 0 = off)
type RawNote = (u64, u8, u8, u8);

/// One note event collected from a track, with its absolute tick.
struct RawTrack {
    name: Option<String>,
    /// (tick, channel, key, velocity; 0 = off)
    notes: Vec<RawNote>,
    end_tick: u64,
}

/// What reading the tracks collects besides their notes.
#[derive(Default)]
struct Collected {
    warnings: Vec<ScoreWarning>,
    stripped: Stripped,
    tempo_changes: Vec<TempoChange>,
    meter_changes: Vec<MeterChange>,
}

/// Parses a Standard MIDI File. `name` is only used in warnings.
///
/// # Errors
/// See [`ScoreError`].
pub fn load_bytes(bytes: &[u8], name: &str) -> Result<Score, ScoreError> {
    let (format, _ntrks, timing, chunks) = walk_chunks(bytes)?;
    if format == 2 {
        return Err(ScoreError::Format2);
    }
    let timing = match timing {
        midly::Timing::Metrical(ppq) => Timing::Metrical { ppq: ppq.as_int() },
        midly::Timing::Timecode(fps, sub) => Timing::Timecode { fps: fps.as_int(), subframes: sub },
    };
    let mut c = Collected::default();
    let mut raw_tracks = Vec::with_capacity(chunks.len());
    for (ti, chunk) in chunks.iter().enumerate() {
        raw_tracks.push(read_track(ti, chunk, &mut c)?);
    }
    let end_tick = raw_tracks.iter().map(|t| t.end_tick).max().unwrap_or(0);

    // Later same-tick tempo / time signatures win; say so when they disagree.
    let mut warnings = c.warnings;
    note_conflicts(&mut warnings, c.tempo_changes.iter().map(|c| (c.tick, u64::from(c.us_per_quarter))), "tempo");
    note_conflicts(
        &mut warnings,
        c.meter_changes.iter().map(|c| (c.tick, u64::from(c.numerator) << 8 | u64::from(c.denominator_pow2))),
        "time signature",
    );

    let tempo = TempoMap::new(timing, &c.tempo_changes);
    let meter = MeterMap::new(timing.quarter_ticks(), &c.meter_changes);
    let parts = parts_of(&raw_tracks, &mut warnings);
    if parts.is_empty() {
        return Err(ScoreError::NoNotes);
    }
    Ok(Score {
        name: name.to_string(),
        format: u8::from(format != 0),
        timing,
        tracks: raw_tracks.len(),
        tempo,
        meter,
        parts,
        end_tick,
        stripped: c.stripped,
        warnings,
    })
}

/// The events of track `ti` (from 0): its notes and name, with tempo and time signatures,
/// stripped events and warnings going to `c`.
///
/// # Errors
/// An unreadable event or a tempo of 0, with its byte offset.
fn read_track(ti: usize, chunk: &TrackChunk, c: &mut Collected) -> Result<RawTrack, ScoreError> {
    let mut iter = midly::EventIter::new(chunk.data);
    let mut tick = 0u64;
    let mut track = RawTrack { name: None, notes: Vec::new(), end_tick: 0 };
    let mut saw_end = false;
    loop {
        let unread_before = iter.unread().len();
        let offset = chunk.offset + chunk.data.len() - unread_before;
        let Some(ev) = iter.next() else {
            if unread_before != 0 {
                return Err(ScoreError::Malformed {
                    offset: Some(offset),
                    detail: format!("unreadable event in track {}", ti + 1),
                });
            }
            break;
        };
        let ev =
            ev.map_err(|e| ScoreError::Malformed { offset: Some(offset), detail: format!("track {}: {e}", ti + 1) })?;
        if saw_end {
            // Events after end-of-track: ignore them but say so once.
            c.warnings.push(ScoreWarning {
                part: None,
                tick: Some(tick),
                kind: WarningKind::Other,
                message: format!("track {} has events after its end-of-track; they were ignored", ti + 1),
            });
            break;
        }
        tick += u64::from(ev.delta.as_int());
        match ev.kind {
            TrackEventKind::Midi { channel, message } => {
                let ch = channel.as_int();
                match message {
                    MidiMessage::NoteOn { key, vel } => track.notes.push((tick, ch, key.as_int(), vel.as_int())),
                    MidiMessage::NoteOff { key, .. } => track.notes.push((tick, ch, key.as_int(), 0)),
                    MidiMessage::ProgramChange { .. } => c.stripped.program_changes += 1,
                    MidiMessage::Controller { .. } => c.stripped.controllers += 1,
                    MidiMessage::PitchBend { .. } => c.stripped.pitch_bends += 1,
                    MidiMessage::Aftertouch { .. } | MidiMessage::ChannelAftertouch { .. } => {
                        c.stripped.aftertouch += 1
                    }
                }
            }
            TrackEventKind::SysEx(_) | TrackEventKind::Escape(_) => c.stripped.sysex += 1,
            TrackEventKind::Meta(meta) => match meta {
                MetaMessage::Tempo(t) => {
                    let us = t.as_int();
                    if us == 0 {
                        return Err(ScoreError::Malformed {
                            offset: Some(offset),
                            detail: format!("track {}: a tempo of 0 µs per quarter note", ti + 1),
                        });
                    }
                    c.tempo_changes.push(TempoChange { tick, us_per_quarter: us });
                }
                MetaMessage::TimeSignature(n, d, _, _) => {
                    c.meter_changes.push(MeterChange { tick, numerator: n, denominator_pow2: d })
                }
                MetaMessage::TrackName(n) if track.name.is_none() => {
                    let s = String::from_utf8_lossy(n);
                    let s = s.trim_end_matches('\0').trim();
                    if !s.is_empty() {
                        track.name = Some(s.to_string());
                    }
                }
                MetaMessage::EndOfTrack => saw_end = true,
                _ => {}
            },
        }
    }
    track.end_tick = tick;
    Ok(track)
}

/// The parts: the notes of each track that has any, in file order, except that the one track of
/// a format-0 file is split by channel (ordered by channel). Numbered from 1.
fn parts_of(raw_tracks: &[RawTrack], warnings: &mut Vec<ScoreWarning>) -> Vec<Part> {
    let single = raw_tracks.len() == 1;
    let mut parts = Vec::new();
    for (ti, track) in raw_tracks.iter().enumerate() {
        if track.notes.is_empty() {
            continue;
        }
        let groups: Vec<Vec<RawNote>> = if single {
            (0u8..16)
                .map(|ch| track.notes.iter().copied().filter(|n| n.1 == ch).collect::<Vec<_>>())
                .filter(|v| !v.is_empty())
                .collect()
        } else {
            vec![track.notes.clone()]
        };
        for events in groups {
            let number = parts.len() + 1;
            let notes = pair_notes(&events, track.end_tick, number, warnings);
            if notes.is_empty() {
                continue;
            }
            let mut channels: Vec<Channel> = Vec::new();
            for &(_, ch, _, _) in &events {
                let ch = Channel::new(ch).expect("midly gives u4 channels");
                if !channels.contains(&ch) {
                    channels.push(ch);
                }
            }
            parts.push(Part { number, track: ti, name: track.name.clone(), channels, notes });
        }
    }
    parts
}

fn note_conflicts(warnings: &mut Vec<ScoreWarning>, items: impl Iterator<Item = (u64, u64)>, what: &str) {
    let mut sorted: Vec<(u64, u64)> = items.collect();
    sorted.sort_by_key(|x| x.0);
    for w in sorted.windows(2) {
        if w[0].0 == w[1].0 && w[0].1 != w[1].1 {
            warnings.push(ScoreWarning {
                part: None,
                tick: Some(w[0].0),
                kind: WarningKind::Conflict,
                message: format!("two different {what} events at the same moment; the later one is used"),
            });
        }
    }
}

/// Pairs note-ons with note-offs (FIFO per channel and key).
fn pair_notes(
    events: &[(u64, u8, u8, u8)],
    track_end: u64,
    part: usize,
    warnings: &mut Vec<ScoreWarning>,
) -> Vec<Note> {
    let mut open: Vec<VecDeque<(u64, u8)>> = vec![VecDeque::new(); 16 * 128];
    let mut notes = Vec::with_capacity(events.len() / 2);
    let mut stray = 0usize;
    let mut first_stray = None;
    for &(tick, ch, key, vel) in events {
        let slot = &mut open[usize::from(ch) * 128 + usize::from(key)];
        if vel > 0 {
            slot.push_back((tick, vel));
        } else if let Some((start, velocity)) = slot.pop_front() {
            notes.push(Note { start, end: tick, key, velocity, channel: Channel::new(ch).expect("u4") });
        } else {
            stray += 1;
            first_stray.get_or_insert(tick);
        }
    }
    let mut hanging = 0usize;
    let mut first_hanging = None;
    for (i, slot) in open.iter().enumerate() {
        for &(start, velocity) in slot {
            hanging += 1;
            first_hanging = Some(first_hanging.map_or(start, |f: u64| f.min(start)));
            notes.push(Note {
                start,
                end: track_end.max(start),
                key: (i % 128) as u8,
                velocity,
                channel: Channel::new((i / 128) as u8).expect("< 16"),
            });
        }
    }
    if hanging > 0 {
        warnings.push(ScoreWarning {
            part: Some(part),
            tick: first_hanging,
            kind: WarningKind::HangingNote,
            message: format!("{hanging} note(s) never released; ended at the end of the track"),
        });
    }
    if stray > 0 {
        warnings.push(ScoreWarning {
            part: Some(part),
            tick: first_stray,
            kind: WarningKind::StrayNoteOff,
            message: format!("{stray} note-off(s) for keys that were not down; ignored"),
        });
    }
    notes.sort_unstable_by_key(|n| (n.start, n.key, n.end, n.channel));
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Format 1, two tracks announced, PPQ 480; each track one note and an end-of-track.
    fn two_tracks() -> Vec<u8> {
        let track: &[u8] = &[0x00, 0x90, 0x3C, 0x40, 0x83, 0x60, 0x80, 0x3C, 0x00, 0x00, 0xFF, 0x2F, 0x00];
        let mut b = b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0".to_vec();
        for _ in 0..2 {
            b.extend_from_slice(b"MTrk");
            b.extend_from_slice(&(track.len() as u32).to_be_bytes());
            b.extend_from_slice(track);
        }
        b
    }

    /// `organ info` says the format the file's header says: a format 1 file of one track was
    /// called format 0.
    #[test]
    fn the_format_is_the_headers() {
        let mut one = two_tracks();
        one[11] = 1; // one track announced
        let cut = one.len() - (one.len() - 14) / 2;
        one.truncate(cut);
        assert_eq!(load_bytes(&one, "x.mid").unwrap().format, 1);
        one[9] = 0;
        assert_eq!(load_bytes(&one, "x.mid").unwrap().format, 0);
    }

    #[test]
    fn loads_both_tracks() {
        let s = load_bytes(&two_tracks(), "x.mid").unwrap();
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.tempo.micros(s.last_note_end()).0, 500_000);
    }

    #[test]
    fn cut_between_two_chunks_is_truncated() {
        // The first track is complete: without a count of the announced tracks the cut file
        // would load with a part missing.
        let b = two_tracks();
        let cut = 14 + 8 + 13;
        match load_bytes(&b[..cut], "x.mid") {
            Err(ScoreError::Truncated { offset, detail }) => {
                assert_eq!(offset, cut);
                assert!(detail.contains("announces 2 tracks but only 1"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn smpte_frame_rates() {
        let with_division = |hi: u8, lo: u8| {
            let mut b = two_tracks();
            b[12] = hi;
            b[13] = lo;
            load_bytes(&b, "x.mid")
        };
        assert_eq!(with_division(0xE7, 40).unwrap().timing, Timing::Timecode { fps: 25, subframes: 40 });
        assert_eq!(with_division(0xE3, 80).unwrap().timing, Timing::Timecode { fps: 29, subframes: 80 });
        // -128 (found by the fuzzer: negating it as an i8 overflowed) and -1 are no frame rates.
        for hi in [0x80, 0xFF, 0xE6] {
            assert!(matches!(with_division(hi, 40), Err(ScoreError::Malformed { offset: Some(12), .. })), "{hi:02X}");
        }
    }

    #[test]
    fn the_first_bytes_of_a_header_are_a_truncated_file() {
        for cut in 1..4 {
            assert!(matches!(load_bytes(&b"MThd"[..cut], "x.mid"), Err(ScoreError::Truncated { .. })), "{cut}");
        }
        assert!(matches!(load_bytes(b"MX", "x.mid"), Err(ScoreError::NotMidi(_))));
    }
}
