//! Writing Standard MIDI File fixtures with midly: events at absolute ticks, a track per part.

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

// --- writing SMF fixtures with midly ------------------------------------------------------------

/// One event of a fixture track at an absolute tick.
#[derive(Debug, Clone, Copy)]
pub enum Ev {
    On(u8, u8, u8),
    Off(u8, u8),
    /// Note-on with velocity 0.
    On0(u8, u8),
    Tempo(u32),
    TimeSig(u8, u8),
    Name(&'static str),
    Program(u8, u8),
    Cc(u8, u8, u8),
    PitchBend(u8),
    Sysex(&'static [u8]),
}

impl Ev {
    fn kind(self) -> TrackEventKind<'static> {
        let midi = |ch: u8, message| TrackEventKind::Midi { channel: u4::new(ch), message };
        match self {
            Ev::On(ch, key, vel) => midi(ch, MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(vel) }),
            Ev::Off(ch, key) => midi(ch, MidiMessage::NoteOff { key: u7::new(key), vel: u7::new(64) }),
            Ev::On0(ch, key) => midi(ch, MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(0) }),
            Ev::Tempo(us) => TrackEventKind::Meta(MetaMessage::Tempo(u24::new(us))),
            Ev::TimeSig(n, d) => TrackEventKind::Meta(MetaMessage::TimeSignature(n, d, 24, 8)),
            Ev::Name(s) => TrackEventKind::Meta(MetaMessage::TrackName(s.as_bytes())),
            Ev::Program(ch, p) => midi(ch, MidiMessage::ProgramChange { program: u7::new(p) }),
            Ev::Cc(ch, c, v) => midi(ch, MidiMessage::Controller { controller: u7::new(c), value: u7::new(v) }),
            Ev::PitchBend(ch) => midi(ch, MidiMessage::PitchBend { bend: midly::PitchBend::from_int(0) }),
            Ev::Sysex(b) => TrackEventKind::SysEx(b),
        }
    }
}

/// Writes an SMF with midly: events at absolute ticks (stably sorted per track), an end-of-track
/// after the last event of each track. One track → format 0, else format 1.
pub fn smf(timing: Timing, tracks: &[Vec<(u64, Ev)>]) -> Vec<u8> {
    let format = if tracks.len() == 1 { Format::SingleTrack } else { Format::Parallel };
    let mut out = Smf::new(Header::new(format, timing));
    for t in tracks {
        let mut evs = t.clone();
        evs.sort_by_key(|e| e.0);
        let mut now = 0u64;
        let mut track = Vec::with_capacity(evs.len() + 1);
        for (tick, ev) in evs {
            // A delta time holds at most 28 bits: longer gaps get empty text events.
            const MAX: u64 = 0x0FFF_FFFF;
            while tick - now > MAX {
                track.push(TrackEvent {
                    delta: u28::new(MAX as u32),
                    kind: TrackEventKind::Meta(MetaMessage::Text(b"")),
                });
                now += MAX;
            }
            track.push(TrackEvent { delta: u28::new((tick - now) as u32), kind: ev.kind() });
            now = tick;
        }
        track.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
        out.tracks.push(track);
    }
    let mut bytes = Vec::new();
    out.write_std(&mut bytes).expect("midly writes to a Vec");
    bytes
}

pub fn ppq(n: u16) -> Timing {
    Timing::Metrical(u15::new(n))
}

/// A part (track) of notes: (start, end, key) on `channel`, velocity 80, note-off as 0x80.
pub fn notes_track(channel: u8, notes: &[(u64, u64, u8)]) -> Vec<(u64, Ev)> {
    let mut v = Vec::new();
    for &(s, e, k) in notes {
        v.push((s, Ev::On(channel, k, 80)));
        v.push((e, Ev::Off(channel, k)));
    }
    // Offs before ons at the same tick, as a sequencer writes them.
    v.sort_by_key(|(t, e)| (*t, matches!(e, Ev::On(..))));
    v
}
