//! Recording outputs: `file:PATH.mid` (what was actually sent, with the real send times, as a
//! Standard MIDI File written while it plays: see [`file`]), an in-memory recorder for tests, and
//! `null`.
//!
//! The in-memory recorder's buffers are allocated in `prepare` (sized from the plan, with room
//! for the release sequences, pauses and resumes), so `send` on the engine thread only copies
//! bytes; past that room it refuses (and counts) rather than grow on the engine thread.

pub mod file;

use std::sync::{Arc, Mutex};

pub use file::{FILE_PPQ, FILE_TICK_US, FILE_US_PER_QUARTER, FileError, FileOutput};

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

/// For tests: an output whose peer goes away for good when the test says (a JACK server shut
/// down): its link is then [`Link::Gone`](super::Link::Gone), and its sends fail.
#[cfg(test)]
pub(crate) struct ServerGone(pub std::sync::Arc<std::sync::atomic::AtomicBool>);

#[cfg(test)]
impl ServerGone {
    const GONE: OutputError = OutputError { kind: OutputErrorKind::Disconnected, detail: "server gone" };
    fn gone(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
impl Output for ServerGone {
    fn name(&self) -> &str {
        "jack:test"
    }
    fn send(&mut self, _bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
        if self.gone() { Err(Self::GONE) } else { Ok(()) }
    }
    fn link(&self) -> super::Link {
        if self.gone() { super::Link::Gone(Self::GONE) } else { super::Link::Up }
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
}
