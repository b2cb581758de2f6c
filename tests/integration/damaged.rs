//! Damaged and unusual files: refused with the right error (never a panic), or loaded with the
//! documented tolerance (hanging notes, stray note-offs, stripped controllers, unknown chunks).

use organ::score::{self, ScoreError, WarningKind};

use crate::support::*;

fn good() -> Vec<u8> {
    std::fs::read(data_dir().join("ssggp/bwv643.mid")).unwrap()
}

fn load(bytes: &[u8]) -> Result<score::Score, ScoreError> {
    score::load_bytes(bytes, "fixture.mid")
}

/// Byte offset of the n-th (0-based) MTrk chunk header.
fn mtrk(bytes: &[u8], n: usize) -> usize {
    let mut pos = 8 + u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
    for _ in 0..n {
        pos += 8 + u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
    }
    assert_eq!(&bytes[pos..pos + 4], b"MTrk");
    pos
}

#[test]
fn truncated_anywhere_is_refused_as_truncated() {
    let g = good();
    let t1 = mtrk(&g, 1);
    let last = mtrk(&g, 4);
    let cuts =
        [2, 4, 7, 8, 13, 14, 15, 21, 22, 23, 40, t1 - 1, t1, t1 + 3, t1 + 9, last + 20, g.len() / 2, g.len() - 1];
    for cut in cuts {
        let e = load(&g[..cut]).err().unwrap_or_else(|| panic!("a file cut at {cut} loaded"));
        match &e {
            ScoreError::Truncated { offset, .. } => assert_eq!(*offset, cut, "cut at {cut}: {e}"),
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(&format!("truncated at byte {cut}")), "{msg}");
        assert!(!msg.contains('\n'));
    }
    // The whole file is fine, and so is a format-0 file cut nowhere.
    assert!(load(&g).is_ok());
}

#[test]
fn empty_and_non_midi_files() {
    assert_eq!(load(&[]).unwrap_err(), ScoreError::Empty);
    assert!(load(&[]).unwrap_err().to_string().contains("empty"));
    for (bytes, hint) in [
        (&b"Hello, this is a text file\n"[..], "starts with text"),
        (&b"RIFF\x00\x00\x00\x00RMIDdata"[..], "RIFF"),
        (&b"PK\x03\x04zipzipzip"[..], "ZIP"),
        (&b"<?xml version=\"1.0\"?><score-partwise>"[..], "XML"),
        (&b"%PDF-1.7 ...."[..], "PDF"),
        (&b"\x00\x01\x02\x03\xff\xfe"[..], "MThd"),
    ] {
        match load(bytes) {
            Err(e @ ScoreError::NotMidi(_)) => assert!(e.to_string().contains(hint), "{e}"),
            other => panic!("{hint}: {other:?}"),
        }
    }
}

#[test]
fn absurd_chunk_lengths() {
    let g = good();
    // A track chunk that declares 2 GiB.
    let mut b = g.clone();
    let t = mtrk(&b, 2);
    b[t + 4..t + 8].copy_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    let e = load(&b).unwrap_err();
    assert!(matches!(e, ScoreError::Truncated { .. }), "{e:?}");
    assert!(e.to_string().contains("track 3") && e.to_string().contains("2147483647"), "{e}");
    // A header chunk that declares 4 GiB, or less than 6 bytes.
    let mut b = g.clone();
    b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(load(&b).unwrap_err(), ScoreError::Malformed { offset: Some(4), .. }));
    let mut b = g.clone();
    b[4..8].copy_from_slice(&5u32.to_be_bytes());
    assert!(matches!(load(&b).unwrap_err(), ScoreError::Malformed { offset: Some(4), .. }));
}

#[test]
fn header_fields() {
    let g = good();
    let with = |at: usize, v: &[u8]| {
        let mut b = g.clone();
        b[at..at + v.len()].copy_from_slice(v);
        load(&b)
    };
    assert_eq!(with(8, &[0, 2]).unwrap_err(), ScoreError::Format2);
    assert!(with(8, &[0, 2]).unwrap_err().to_string().contains("format 2"));
    assert!(matches!(with(8, &[0, 3]).unwrap_err(), ScoreError::Malformed { offset: Some(8), .. }));
    let e = with(12, &[0, 0]).unwrap_err();
    assert!(matches!(e, ScoreError::Malformed { offset: Some(12), .. }), "{e:?}");
    assert!(e.to_string().contains("division of 0"), "{e}");
    // SMPTE: -23 fps does not exist; 0 ticks per frame cannot be.
    assert!(matches!(with(12, &[0xE9, 40]).unwrap_err(), ScoreError::Malformed { offset: Some(12), .. }));
    assert!(matches!(with(12, &[0x80, 40]).unwrap_err(), ScoreError::Malformed { offset: Some(12), .. }));
    assert!(matches!(with(12, &[0xE7, 0]).unwrap_err(), ScoreError::Malformed { offset: Some(13), .. }));
    // A valid SMPTE division turns the same file into timecode: 25 fps × 40 = 1 ms per tick.
    let s = with(12, &[0xE7, 40]).unwrap();
    assert_eq!(s.timing, score::Timing::Timecode { fps: 25, subframes: 40 });
    assert_eq!(s.tempo.micros(480).0, 480_000);
}

#[test]
fn garbage_and_unknown_chunks() {
    let g = good();
    // An unknown chunk between tracks is skipped, as the SMF specification asks.
    let t = mtrk(&g, 1);
    let mut b = g[..t].to_vec();
    b.extend_from_slice(b"XFIH\x00\x00\x00\x04abcd");
    b.extend_from_slice(&g[t..]);
    let s = load(&b).unwrap();
    assert_eq!(s.note_count(), load(&g).unwrap().note_count());
    // Binary garbage where a chunk should start is refused.
    let mut b = g[..t].to_vec();
    b.extend_from_slice(b"\x00\x01\xfe\xff\x00\x00\x00\x04abcd");
    b.extend_from_slice(&g[t..]);
    assert!(matches!(load(&b).unwrap_err(), ScoreError::Malformed { offset: Some(o), .. } if o == t));
}

/// A one-track file whose track data is `data` (chunk length correct).
fn raw_track(data: &[u8]) -> Vec<u8> {
    let mut b = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk".to_vec();
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn bad_events_inside_a_track() {
    // A data byte where a status byte must be (no running status yet).
    let e = load(&raw_track(&[0x00, 0x3C, 0x40, 0x00, 0xFF, 0x2F, 0x00])).unwrap_err();
    assert!(matches!(e, ScoreError::Malformed { offset: Some(22), .. }), "{e:?}");
    // A track chunk that ends inside an event (its length is consistent with the file): the
    // offset is that of the unfinished event.
    for data in [&[0x00u8, 0x90, 0x3C, 0x40, 0x10, 0x90, 0x3C][..], &[0x00, 0x90, 0x3C, 0x40, 0x10]] {
        let e = load(&raw_track(data)).unwrap_err();
        assert!(matches!(e, ScoreError::Malformed { offset: Some(26), .. }), "{e:?}");
    }
    // An undefined status byte.
    let e = load(&raw_track(&[0x00, 0x90, 0x3C, 0x40, 0x00, 0xF4, 0x00, 0x00])).unwrap_err();
    assert!(matches!(e, ScoreError::Malformed { offset: Some(26), .. }), "{e:?}");
    // A tempo of 0 µs per quarter.
    let e = load(&raw_track(&[0x00, 0xFF, 0x51, 0x03, 0, 0, 0, 0x00, 0x90, 0x3C, 0x40, 0x00, 0xFF, 0x2F, 0x00]))
        .unwrap_err();
    assert!(e.to_string().contains("tempo of 0"), "{e}");
    // A file with only a conductor track has no notes.
    let e = load(&smf(ppq(480), &[vec![(0, Ev::Tempo(500_000))], vec![(0, Ev::Name("empty"))]])).unwrap_err();
    assert_eq!(e, ScoreError::NoNotes);
}

#[test]
fn hanging_notes_end_at_their_track_end_and_stray_offs_are_ignored() {
    // Part 1: key 60 never released, track ends at 1000 (a program change there); key 62 has a
    // second note-off (stray). Part 2: running status note-ons with velocity 0 as offs, one
    // note-off for a key never struck.
    let t0 = vec![
        (0, Ev::On(0, 60, 90)),
        (100, Ev::On(0, 62, 80)),
        (200, Ev::Off(0, 62)),
        (300, Ev::Off(0, 62)),
        (1000, Ev::Program(0, 19)),
    ];
    let t1 = vec![(0, Ev::Off(1, 50)), (10, Ev::On(1, 48, 70)), (20, Ev::On0(1, 48)), (30, Ev::On(1, 48, 71))];
    let mut t1 = t1;
    t1.push((40, Ev::On0(1, 48)));
    let s = load(&smf(ppq(480), &[t0, t1])).unwrap();
    let p1: Vec<(u64, u64, u8, u8)> = s.parts[0].notes.iter().map(|n| (n.start, n.end, n.key, n.velocity)).collect();
    assert_eq!(p1, [(0, 1000, 60, 90), (100, 200, 62, 80)]);
    let p2: Vec<(u64, u64, u8)> = s.parts[1].notes.iter().map(|n| (n.start, n.end, n.key)).collect();
    assert_eq!(p2, [(10, 20, 48), (30, 40, 48)]);
    let kinds: Vec<(Option<usize>, WarningKind)> = s.warnings.iter().map(|w| (w.part, w.kind)).collect();
    assert!(kinds.contains(&(Some(1), WarningKind::HangingNote)), "{kinds:?}");
    assert!(kinds.contains(&(Some(1), WarningKind::StrayNoteOff)), "{kinds:?}");
    assert!(kinds.contains(&(Some(2), WarningKind::StrayNoteOff)), "{kinds:?}");
    assert_eq!(s.stripped.program_changes, 1);

    // Overlapping notes of one key in one track pair first-in, first-out (music21 writes them).
    let t = vec![(0, Ev::On(0, 60, 1)), (10, Ev::On(0, 60, 2)), (20, Ev::Off(0, 60)), (30, Ev::Off(0, 60))];
    let s = load(&smf(ppq(480), &[t.clone(), t])).unwrap();
    let n: Vec<(u64, u64, u8)> = s.parts[0].notes.iter().map(|n| (n.start, n.end, n.velocity)).collect();
    assert_eq!(n, [(0, 20, 1), (10, 30, 2)]);
}

#[test]
fn everything_but_notes_is_stripped_and_counted() {
    let t = vec![
        (0, Ev::Name("Swell\0")),
        (0, Ev::Program(0, 19)),
        (0, Ev::Program(0, 19)),
        (0, Ev::Cc(0, 7, 100)),
        (0, Ev::Cc(0, 10, 64)),
        (0, Ev::Cc(0, 91, 0)),
        (0, Ev::PitchBend(0)),
        (0, Ev::Sysex(&[0x7E, 0x7F, 0x09, 0x01, 0xF7])),
        (0, Ev::On(0, 60, 80)),
        (480, Ev::Off(0, 60)),
    ];
    let s = load(&smf(ppq(480), &[t])).unwrap();
    assert_eq!(s.stripped.program_changes, 2);
    assert_eq!(s.stripped.controllers, 3);
    assert_eq!(s.stripped.pitch_bends, 1);
    assert_eq!(s.stripped.sysex, 1);
    assert_eq!(s.parts.len(), 1);
    assert_eq!(s.parts[0].name.as_deref(), Some("Swell"));
    assert_eq!(s.note_count(), 1);
}

#[test]
fn format_0_is_split_by_channel_in_channel_order() {
    let t = vec![
        (0, Ev::On(5, 40, 80)),
        (0, Ev::On(0, 70, 80)),
        (0, Ev::On(2, 55, 80)),
        (480, Ev::Off(5, 40)),
        (480, Ev::Off(0, 70)),
        (480, Ev::Off(2, 55)),
    ];
    let s = load(&smf(ppq(480), &[t])).unwrap();
    assert_eq!(s.format, 0);
    let keys: Vec<(usize, u8, u8)> =
        s.parts.iter().map(|p| (p.number, p.notes[0].channel.wire(), p.notes[0].key)).collect();
    assert_eq!(keys, [(1, 0, 70), (2, 2, 55), (3, 5, 40)]);
}

/// Delta times add up to 2^32 bars or 2^41 ticks only in damaged or hostile files: the loader
/// and the planner must still answer without a panic (or an arithmetic overflow, which panics in
/// debug builds and wraps into a wrong plan in release builds).
#[test]
fn absurd_lengths_do_not_overflow() {
    // PPQ 1 and a 1/16 meter make one tick a bar; a signature at tick 1 starts bar 2; then 2^32
    // more bars.
    let far = (1u64 << 32) + 10;
    let t = vec![
        (0u64, Ev::TimeSig(1, 4)),
        (1, Ev::TimeSig(1, 4)),
        (far, Ev::TimeSig(1, 4)),
        (far + 10, Ev::On(0, 60, 80)),
        (far + 20, Ev::Off(0, 60)),
    ];
    let s = load(&smf(ppq(1), &[t])).unwrap();
    assert_eq!(s.meter.position(s.end_tick).bar, u32::MAX, "bar numbers saturate");

    // 16.7 s per quarter at PPQ 1 and a note 2^41 ticks in: 10^12 years. Refused by the planner.
    let t = vec![(0, Ev::Tempo(0xFF_FFFF)), (1u64 << 41, Ev::On(0, 60, 80)), ((1u64 << 41) + 1, Ev::Off(0, 60))];
    let s = load(&smf(ppq(1), &[t])).unwrap();
    let opts = organ::plan::PlanOptions { layout: Some("G".into()), ..Default::default() };
    let e = organ::plan::plan(&s, &st_marys(), None, &opts).unwrap_err().to_string();
    assert!(e.starts_with("fixture.mid: the music would last ") && e.contains("damaged"), "{e}");
}
