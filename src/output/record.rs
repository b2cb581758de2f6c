//! Recording outputs: `file:PATH.mid` (what was actually sent, with the real send times, as a
//! Standard MIDI File), an in-memory recorder for tests, and `null`.
//!
//! The recorder's buffers are allocated in `prepare` (sized from the plan, with room for the
//! release sequences, pauses and resumes), so `send` on the engine thread only copies bytes.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use midly::num::{u15, u24, u28};
use midly::{Format, Header, MetaMessage, Smf, Timing, TrackEvent, TrackEventKind};

use super::{FinishError, Output, OutputError, OutputErrorKind, Stamp};
use crate::midi::Micros;
use crate::plan::Timeline;

/// Room for messages beyond the plan's: releases, pause/resume re-strikes, seeks.
const SPARE_MESSAGES: usize = 65_536;
const SPARE_BYTES: usize = 1 << 20;

/// One recorded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub stamp: Stamp,
    start: u32,
    len: u32,
}

/// Preallocated storage of sent messages.
#[derive(Debug, Default)]
pub struct Recorder {
    records: Vec<Record>,
    bytes: Vec<u8>,
    /// Messages that did not fit.
    pub overflowed: u64,
}

impl Recorder {
    /// Reserves room for `messages` messages of `bytes` bytes in total (plus spare room).
    pub fn reserve(&mut self, messages: usize, bytes: usize) {
        self.records.reserve(messages + SPARE_MESSAGES);
        self.bytes.reserve(bytes + SPARE_BYTES);
    }

    /// Reserves room for playing `t`.
    pub fn reserve_for(&mut self, t: &Timeline) {
        let bytes: usize = t.events.iter().map(|e| t.bytes(&e.msg).len()).sum();
        self.reserve(t.events.len(), bytes);
    }

    /// Copies a message in. Allocation-free while the reserved room lasts; past it the message
    /// is refused (counted in `overflowed`) rather than growing the buffers on the engine thread.
    ///
    /// # Errors
    /// [`OutputErrorKind::Overflow`] when the reserved room is used up.
    pub fn push(&mut self, bytes: &[u8], stamp: Stamp) -> Result<(), OutputError> {
        if self.records.len() == self.records.capacity() || self.bytes.len() + bytes.len() > self.bytes.capacity() {
            self.overflowed += 1;
            return Err(OutputError { kind: OutputErrorKind::Overflow, detail: "recorder full" });
        }
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(bytes);
        self.records.push(Record { stamp, start, len: bytes.len() as u32 });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The recorded messages with their bytes.
    pub fn iter(&self) -> impl Iterator<Item = (Stamp, &[u8])> {
        self.records.iter().map(|r| (r.stamp, &self.bytes[r.start as usize..(r.start + r.len) as usize]))
    }

    /// Copies the records out (for tests).
    pub fn to_vec(&self) -> Vec<(Stamp, Vec<u8>)> {
        self.iter().map(|(s, b)| (s, b.to_vec())).collect()
    }

    /// The engine-clock time of plan time zero, from the first message: times in a recording are
    /// reported relative to it, so an on-time message sits at its plan time.
    pub fn origin(&self) -> Micros {
        self.records.first().map_or(Micros::ZERO, |r| r.stamp.due.saturating_sub(r.stamp.plan))
    }
}

/// `null`: sends nowhere.
#[derive(Debug)]
pub struct NullOutput;

impl Output for NullOutput {
    fn name(&self) -> &str {
        "null"
    }
    fn send(&mut self, _bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
        Ok(())
    }
}

/// Where a [`MemoryOutput`] puts what it recorded, once finished.
pub type Recording = Arc<Mutex<Vec<(Stamp, Vec<u8>)>>>;

/// In-memory recording for tests: what was sent, shared with the test through a handle that is
/// filled in `finish` (on the control thread, never on the engine thread).
#[derive(Debug, Default)]
pub struct MemoryOutput {
    recorder: Recorder,
    shared: Recording,
}

impl MemoryOutput {
    /// The output and the handle where its messages appear after `finish`.
    pub fn new() -> (MemoryOutput, Recording) {
        let m = MemoryOutput::default();
        let h = m.shared.clone();
        (m, h)
    }

    /// Reserves room without a plan (for tests that drive the engine by hand).
    pub fn with_capacity(messages: usize) -> (MemoryOutput, Recording) {
        let (mut m, h) = MemoryOutput::new();
        m.recorder.reserve(messages, messages * 3);
        (m, h)
    }
}

impl Output for MemoryOutput {
    fn name(&self) -> &str {
        "memory"
    }
    fn prepare(&mut self, t: &Arc<Timeline>) -> Result<(), OutputError> {
        self.recorder.reserve_for(t);
        Ok(())
    }
    fn send(&mut self, bytes: &[u8], at: Stamp) -> Result<(), OutputError> {
        self.recorder.push(bytes, at)
    }
    fn finish(&mut self) -> Result<(), FinishError> {
        let mut v = self.shared.lock().map_err(|_| FinishError::Poisoned { output: "memory".into() })?;
        *v = self.recorder.to_vec();
        Ok(())
    }
}

/// Why the file output could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub error: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file:{}: cannot create the file: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for FileError {}

/// `file:PATH.mid`: records what was sent and writes it as a Standard MIDI File in `finish`.
#[derive(Debug)]
pub struct FileOutput {
    name: String,
    path: PathBuf,
    recorder: Recorder,
}

/// Ticks per quarter note and tempo of the written file: 5000 ticks per quarter at 120 bpm is
/// one tick per 100 µs, so real send times are kept to 0.1 ms.
pub const FILE_PPQ: u16 = 5000;
pub const FILE_US_PER_QUARTER: u32 = 500_000;
pub const FILE_TICK_US: u64 = FILE_US_PER_QUARTER as u64 / FILE_PPQ as u64;

impl FileOutput {
    /// Checks that the file can be created (so a typo fails before playback, not after).
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: PathBuf) -> Result<FileOutput, FileError> {
        if let Err(e) = std::fs::File::create(&path) {
            return Err(FileError { path, error: e.to_string() });
        }
        let mut recorder = Recorder::default();
        recorder.reserve(0, 0); // room for what is sent without a plan (organ panic)
        Ok(FileOutput { name: format!("file:{}", path.display()), path, recorder })
    }

    /// The SMF bytes of what was recorded.
    ///
    /// # Errors
    /// A message midly cannot encode.
    pub fn smf_bytes(recorder: &Recorder, title: &str) -> io::Result<Vec<u8>> {
        let origin = recorder.origin();
        let arena = midly::Arena::new();
        let mut track: Vec<TrackEvent> = Vec::with_capacity(recorder.len() + 3);
        let title = arena.add(title.as_bytes());
        track.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::TrackName(title)) });
        track.push(TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(FILE_US_PER_QUARTER))),
        });
        let mut last_tick = 0u64;
        for (stamp, bytes) in recorder.iter() {
            let t = stamp.now.saturating_sub(origin).0;
            let tick = ((t + FILE_TICK_US / 2) / FILE_TICK_US).max(last_tick);
            let kind = if bytes.first() == Some(&0xF0) {
                TrackEventKind::SysEx(arena.add(&bytes[1..]))
            } else {
                match midly::live::LiveEvent::parse(bytes) {
                    Ok(ev) => ev.as_track_event(&arena),
                    Err(_) => TrackEventKind::Escape(arena.add(bytes)),
                }
            };
            let delta = u32::try_from(tick - last_tick).unwrap_or(u32::MAX).min(0x0FFF_FFFF);
            track.push(TrackEvent { delta: u28::new(delta), kind });
            last_tick = tick;
        }
        track.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
        let smf = Smf {
            header: Header { format: Format::SingleTrack, timing: Timing::Metrical(u15::new(FILE_PPQ)) },
            tracks: vec![track],
        };
        let mut out = Vec::new();
        smf.write_std(&mut out)?;
        Ok(out)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Output for FileOutput {
    fn name(&self) -> &str {
        &self.name
    }
    fn prepare(&mut self, t: &Arc<Timeline>) -> Result<(), OutputError> {
        self.recorder.reserve_for(t);
        Ok(())
    }
    fn send(&mut self, bytes: &[u8], at: Stamp) -> Result<(), OutputError> {
        self.recorder.push(bytes, at)
    }
    fn finish(&mut self) -> Result<(), FinishError> {
        let bytes = FileOutput::smf_bytes(&self.recorder, "organ: what was sent")
            .map_err(|e| FinishError::Encode { output: self.name.clone(), error: e.to_string() })?;
        std::fs::write(&self.path, bytes)
            .map_err(|e| FinishError::Write { output: self.name.clone(), error: e.to_string() })
    }
}

/// For tests: a port whose cable is pulled after a number of messages (`Disconnected`).
#[cfg(test)]
pub(crate) struct PulledCable {
    n: usize,
    seen: usize,
}

#[cfg(test)]
impl PulledCable {
    /// Fails the `n`th message and every one after it.
    pub(crate) fn after(n: usize) -> PulledCable {
        PulledCable { n, seen: 0 }
    }
}

#[cfg(test)]
impl Output for PulledCable {
    fn name(&self) -> &str {
        "port:test"
    }
    fn send(&mut self, _bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
        self.seen += 1;
        if self.seen >= self.n {
            return Err(OutputError { kind: OutputErrorKind::Disconnected, detail: "cable pulled" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_refuses_instead_of_growing() {
        let mut r = Recorder::default();
        assert!(r.push(&[0x90, 60, 1], Stamp::default()).is_err());
        r.reserve(0, 0);
        let room = r.records.capacity();
        assert!(room >= SPARE_MESSAGES);
        for i in 0..room {
            r.push(&[0x90, (i % 128) as u8, 1], Stamp::default()).unwrap();
        }
        assert_eq!(r.push(&[0x90, 60, 1], Stamp::default()).unwrap_err().kind, OutputErrorKind::Overflow);
        assert_eq!(r.overflowed, 2);
        assert_eq!(r.records.capacity(), room, "never grows");
    }

    #[test]
    fn smf_round_trip_keeps_times_to_a_tenth_of_a_millisecond() {
        let mut r = Recorder::default();
        r.reserve(4, 16);
        let s = |plan: u64, late: u64| Stamp {
            plan: Micros(plan),
            due: Micros(1_000 + plan),
            now: Micros(1_000 + plan + late),
        };
        r.push(&[0x9F, 36, 127], s(0, 0)).unwrap();
        r.push(&[0xF0, 0x00, 0x4A, 0x7F, 0xF7], s(250, 0)).unwrap();
        r.push(&[0x90, 60, 80], s(1_000_000, 140)).unwrap();
        r.push(&[0x80, 60, 0], s(1_500_000, 0)).unwrap();
        let bytes = FileOutput::smf_bytes(&r, "t").unwrap();
        let smf = Smf::parse(&bytes).unwrap();
        assert_eq!(smf.header.timing, Timing::Metrical(u15::new(FILE_PPQ)));
        let mut tick = 0u64;
        let mut got = Vec::new();
        for ev in &smf.tracks[0] {
            tick += u64::from(ev.delta.as_int());
            match ev.kind {
                TrackEventKind::Midi { .. } | TrackEventKind::SysEx(_) => got.push(tick * FILE_TICK_US),
                _ => {}
            }
        }
        assert_eq!(got, vec![0, 300, 1_000_100, 1_500_000]);
    }
}
