//! `file:PATH.mid`: what was actually sent, with the real send times, as a Standard MIDI File
//! that is readable at every moment of the performance.
//!
//! # A record that survives a crash
//! The file is written while it plays, not at the end, so that SIGKILL, an abort or a power cut
//! leaves a readable file with what was sent up to about the last second:
//!
//! - `send` (engine thread) copies the message into two preallocated lock-free rings (headers
//!   and bytes): no allocation, no lock, no system call.
//! - The writer thread (`organ-record`, an ordinary thread) drains the rings every
//!   [`POLL`] and appends the encoded events to the file every [`COMMIT_EVERY`]; every
//!   [`SYNC_EVERY`] it forces the file to disk (`fdatasync`).
//! - The file always holds one complete track that ends with an End of Track, and the track
//!   length in the header always covers exactly that. A commit (1) writes the new events and a
//!   new End of Track *after* the committed track, where no reader looks; (2) turns the old End
//!   of Track into an empty text event by changing its one type byte (`FF 2F 00` → `FF 01 00`);
//!   (3) writes the new track length (four bytes in the header). A crash between two steps
//!   leaves the previous commit readable: after (1) there are stray bytes after the last chunk
//!   (readers ignore them), after (2) the track lacks its End of Track (readers accept that).
//!   Each commit therefore leaves one empty text event (`FF 01 00`) in the track: harmless.
//! - System common and real-time messages (an organ's `raw` may hold one), which an SMF track
//!   cannot carry as events, are kept as sequencer-specific meta events (`FF 7F`, manufacturer
//!   `7D`) with the message's bytes.
//!
//! # Never writing over the wrong file
//! The file is created new (`O_CREAT | O_EXCL | O_NOFOLLOW`) under a temporary name in the same
//! folder, given its header, and renamed into place before the first message is sent; from then
//! on it is written only through that open descriptor, so a symbolic link or another file put at
//! `PATH` during the performance is never written through. `PATH` may not be a symbolic link,
//! nor anything but a regular file, nor a file this process has read as an input (the score, the
//! registration, the organ, the amen; see [`crate::files::check_replaceable`]). When the performance
//! ends, a record that is no longer at `PATH` (moved or replaced meanwhile) is reported.
//!
//! # Nothing lost silently
//! If the disk fails (full, or the file too large), the writer stops and `send` reports the
//! failure on the next message, so playback stops and the other outputs are released as for any
//! failed output; `finish` names the error. If the rings fill (the disk stalls for seconds while
//! messages keep coming), the messages that do not fit are counted, reported at the end, and the
//! record closes with a note-off for every key it still holds, so it never ends with a key down.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::files::{self, FileProblem, io_text};
use crate::midi::{Channel, Micros, ShortMsg};
use crate::output::{FinishError, Output, OutputError, OutputErrorKind, Stamp};
use crate::plan::Timeline;

/// Ticks per quarter note and tempo of the written file: 5000 ticks per quarter at 120 bpm is
/// one tick per 100 µs, so real send times are kept to 0.1 ms.
pub const FILE_PPQ: u16 = 5000;
pub const FILE_US_PER_QUARTER: u32 = 500_000;
pub const FILE_TICK_US: u64 = FILE_US_PER_QUARTER as u64 / FILE_PPQ as u64;

/// Messages and bytes the rings from the engine to the writer hold: at the writer's pace
/// ([`POLL`]) that is seconds of the densest music.
const QUEUE_MESSAGES: usize = 1 << 16;
const QUEUE_BYTES: usize = 1 << 20;
/// How often the writer thread empties the rings.
pub const POLL: Duration = Duration::from_millis(20);
/// How often new messages are appended to the file (a crash loses at most about this much).
pub const COMMIT_EVERY: Duration = Duration::from_millis(250);
/// How often the file is forced to disk (a power cut loses at most about this much).
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// `MThd` chunk (14 bytes) + `MTrk` + length: where the track's events start.
const TRACK_START: u64 = 22;
/// Offset of the track length in the file.
const TRACK_LEN_AT: u64 = 18;
const END_OF_TRACK: [u8; 4] = [0x00, 0xFF, 0x2F, 0x00];
/// The largest delta time an SMF event can carry (28 bits).
const MAX_DELTA: u64 = 0x0FFF_FFFF;
const TITLE: &[u8] = b"organ: what was sent";

/// Why a record could not be started: `file:PATH: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub problem: FileProblem,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file:{}: {}", self.file, self.problem)
    }
}

impl std::error::Error for FileError {}

/// One message in the ring: its times and how many bytes follow in the byte ring.
#[derive(Clone, Copy)]
struct Head {
    stamp: Stamp,
    len: u32,
}

/// Shared between the output (engine and control threads) and its writer thread.
#[derive(Default)]
struct State {
    stop: AtomicBool,
    /// 0 = writing; else the failure ([`FAILURES`] index + 1).
    failed: AtomicU8,
    /// Messages the rings had no room for.
    lost: AtomicU64,
    /// Division channels (bit per channel), for the record's own release after a loss.
    key_channels: AtomicU16,
    /// Messages queued for the writer, and how many of them it has appended to the file: equal
    /// when the file holds everything sent (see [`Output::delivered`]).
    queued: AtomicU64,
    written: AtomicU64,
}

/// The engine-side detail of a write failure, by kind.
const FAILURES: [&str; 3] = [
    "the disk is full: the record cannot be written",
    "the record file grew too large",
    "the record cannot be written",
];

fn failure_index(e: &io::Error) -> u8 {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => 0,
        io::ErrorKind::FileTooLarge => 1,
        _ => 2,
    }
}

/// What the writer thread hands back.
struct Summary {
    /// Note-offs the record added because messages were lost.
    released: usize,
}

/// `file:PATH.mid`. See the module documentation.
pub struct FileOutput {
    name: String,
    path: PathBuf,
    heads: HeapProd<Head>,
    bytes: HeapProd<u8>,
    state: Arc<State>,
    writer: Option<JoinHandle<io::Result<Summary>>>,
    /// (device, inode) of the file written.
    identity: (u64, u64),
    /// Filled in by `finish`.
    summary: Option<Summary>,
}

impl std::fmt::Debug for FileOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOutput").field("path", &self.path).finish_non_exhaustive()
    }
}

impl FileOutput {
    /// Creates the file (see the module documentation: new, renamed into place, never through a
    /// link, never an input) and starts its writer thread.
    ///
    /// # Errors
    /// The path is an input, a link, not a regular file, or cannot be created.
    pub fn create(path: PathBuf) -> Result<FileOutput, FileError> {
        let file_text = path.display().to_string();
        let (file, identity) = create_in_place(&path)?;
        let (heads, heads_rx) = HeapRb::<Head>::new(QUEUE_MESSAGES).split();
        let (bytes, bytes_rx) = HeapRb::<u8>::new(QUEUE_BYTES).split();
        let state = Arc::new(State::default());
        let writer_state = state.clone();
        let writer = std::thread::Builder::new()
            .name("organ-record".into())
            .spawn(move || write_loop(file, heads_rx, bytes_rx, &writer_state))
            .map_err(|e| FileError { file: file_text.clone(), problem: FileProblem::Create(e.to_string()) })?;
        Ok(FileOutput {
            name: format!("file:{file_text}"),
            path,
            heads,
            bytes,
            state,
            writer: Some(writer),
            identity,
            summary: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Messages that could not be recorded (the rings were full).
    pub fn lost(&self) -> u64 {
        self.state.lost.load(Ordering::Relaxed)
    }

    /// Stops the writer after it has written everything sent; its result.
    fn stop_writer(&mut self) -> Option<io::Result<Summary>> {
        let writer = self.writer.take()?;
        self.state.stop.store(true, Ordering::Release);
        writer.thread().unpark();
        Some(writer.join().unwrap_or_else(|_| Err(io::Error::other("the record's writer thread panicked"))))
    }
}

/// Refuses paths that must not be written, creates the file under a temporary name beside
/// `path` (never following a link), writes the header, and renames it into place.
fn create_in_place(path: &Path) -> Result<(File, (u64, u64)), FileError> {
    use std::os::unix::fs::MetadataExt;
    let err = |problem| FileError { file: path.display().to_string(), problem };
    files::check_replaceable(path).map_err(err)?;
    let (f, tmp) = files::create_beside(path).map_err(err)?;
    if let Err(e) = write_header(&f) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(FileProblem::Create(io_text(&e))));
    }
    files::rename_into_place(&tmp, path).map_err(err)?;
    files::remember_record(&f);
    let meta = f.metadata().map_err(|e| err(FileProblem::Create(io_text(&e))))?;
    Ok((f, (meta.dev(), meta.ino())))
}

/// The header chunk and a track holding its name, the tempo and an End of Track.
fn write_header(f: &File) -> io::Result<()> {
    let mut track = vec![0x00, 0xFF, 0x03, TITLE.len() as u8];
    track.extend_from_slice(TITLE);
    let tempo = FILE_US_PER_QUARTER.to_be_bytes();
    track.extend_from_slice(&[0x00, 0xFF, 0x51, 0x03, tempo[1], tempo[2], tempo[3]]);
    track.extend_from_slice(&END_OF_TRACK);
    let mut out = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01".to_vec();
    out.extend_from_slice(&FILE_PPQ.to_be_bytes());
    out.extend_from_slice(b"MTrk");
    out.extend_from_slice(&(track.len() as u32).to_be_bytes());
    out.extend_from_slice(&track);
    f.write_all_at(&out, 0)?;
    f.sync_data()
}

/// The file being written, on the writer thread: the committed track and the events not yet
/// appended.
struct SmfWriter {
    file: File,
    /// Bytes of track data committed (they end with an End of Track).
    track_len: u64,
    /// Events encoded since the last commit.
    pending: Vec<u8>,
    /// Engine-clock time of plan time zero, from the first message.
    origin: Option<Micros>,
    last_tick: u64,
    /// Keys down in what was recorded, on every channel.
    held: Held,
    last_commit: Instant,
    last_sync: Instant,
}

impl SmfWriter {
    /// Continues a file whose header [`write_header`] wrote.
    fn new(file: File) -> io::Result<SmfWriter> {
        let len = file.metadata()?.len();
        let now = Instant::now();
        Ok(SmfWriter {
            file,
            track_len: len.saturating_sub(TRACK_START),
            pending: Vec::with_capacity(64 * 1024),
            origin: None,
            last_tick: 0,
            held: Held::default(),
            last_commit: now,
            last_sync: now,
        })
    }

    /// Encodes one sent message (not yet written).
    fn push(&mut self, stamp: Stamp, bytes: &[u8]) {
        // A message starts with its status byte; anything else would be read as running status.
        let Some(&status) = bytes.first().filter(|&&s| s >= 0x80) else { return };
        let origin = *self.origin.get_or_insert(stamp.due.saturating_sub(stamp.plan));
        let t = stamp.now.saturating_sub(origin).0;
        let tick = ((t + FILE_TICK_US / 2) / FILE_TICK_US).max(self.last_tick);
        let mut delta = tick - self.last_tick;
        self.last_tick = tick;
        while delta > MAX_DELTA {
            // A pause of more than 7 hours: carried by empty text events.
            push_vlq(&mut self.pending, MAX_DELTA);
            self.pending.extend_from_slice(&[0xFF, 0x01, 0x00]);
            delta -= MAX_DELTA;
        }
        push_vlq(&mut self.pending, delta);
        if status == 0xF0 {
            self.pending.push(0xF0);
            push_vlq(&mut self.pending, bytes.len() as u64 - 1);
            self.pending.extend_from_slice(&bytes[1..]);
        } else if status >= 0xF0 {
            // Sequencer-specific meta event, manufacturer 7D (non-commercial), the bytes as sent.
            self.pending.extend_from_slice(&[0xFF, 0x7F]);
            push_vlq(&mut self.pending, bytes.len() as u64 + 1);
            self.pending.push(0x7D);
            self.pending.extend_from_slice(bytes);
        } else {
            self.pending.extend_from_slice(bytes);
            self.held.track(bytes);
        }
    }

    /// Step 1 of a commit: the pending events and a new End of Track after the committed track.
    fn append(&mut self) -> io::Result<u64> {
        self.pending.extend_from_slice(&END_OF_TRACK);
        let new_len = self.track_len + self.pending.len() as u64;
        if new_len > u64::from(u32::MAX) {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "a MIDI track holds at most 4 GiB"));
        }
        self.file.write_all_at(&self.pending, TRACK_START + self.track_len)?;
        Ok(new_len)
    }

    /// Step 2: the committed End of Track becomes an empty text event.
    fn retire_end_of_track(&self) -> io::Result<()> {
        self.file.write_all_at(&[0x01], TRACK_START + self.track_len - 2)
    }

    /// Step 3: the header's track length covers the new events.
    fn set_length(&mut self, new_len: u64) -> io::Result<()> {
        self.file.write_all_at(&(new_len as u32).to_be_bytes(), TRACK_LEN_AT)?;
        self.track_len = new_len;
        self.pending.clear();
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Appends what is pending (see the module documentation for why in these three steps),
    /// and forces the file to disk when [`SYNC_EVERY`] has passed (or `sync`).
    fn commit(&mut self, sync: bool) -> io::Result<()> {
        if !self.pending.is_empty() {
            let new_len = self.append()?;
            self.retire_end_of_track()?;
            self.set_length(new_len)?;
        }
        if sync || self.last_sync.elapsed() >= SYNC_EVERY {
            self.file.sync_data()?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// After a loss: a note-off for every key the record holds on the division channels, at
    /// the last time recorded. Returns how many.
    fn release_held(&mut self, key_channels: u16) -> usize {
        let mut n = 0;
        for ch in (0u8..16).filter(|c| key_channels & (1 << c) != 0).filter_map(Channel::new) {
            for key in (0u8..128).filter(|&k| self.held.is_down(ch, k)) {
                push_vlq(&mut self.pending, 0);
                self.pending.extend_from_slice(ShortMsg::note_off(ch, key).as_bytes());
                n += 1;
            }
            self.held.0[usize::from(ch.wire())] = 0;
        }
        n
    }
}

/// Keys down in the record, per channel (a bit per key): the writer's own count, so that the
/// output module does not depend on the engine's.
#[derive(Default)]
struct Held([u128; 16]);

impl Held {
    /// Follows a channel message: note-on, note-off (or note-on at velocity 0), CC 123.
    fn track(&mut self, bytes: &[u8]) {
        let Some(m) = ShortMsg::from_bytes(bytes) else { return };
        let Some(ch) = m.channel() else { return };
        let c = usize::from(ch.wire());
        if let Some((_, key)) = m.as_note_on() {
            self.0[c] |= 1 << key;
        } else if let Some((_, key)) = m.as_note_off() {
            self.0[c] &= !(1 << key);
        } else if m.status() & 0xF0 == 0xB0 && bytes[1] == 123 {
            self.0[c] = 0;
        }
    }

    fn is_down(&self, ch: Channel, key: u8) -> bool {
        self.0[usize::from(ch.wire())] & (1 << (key & 0x7F)) != 0
    }
}

fn push_vlq(out: &mut Vec<u8>, v: u64) {
    let v = v.min(MAX_DELTA) as u32;
    let mut started = false;
    for shift in [21u32, 14, 7] {
        let b = ((v >> shift) & 0x7F) as u8;
        if b != 0 || started {
            out.push(b | 0x80);
            started = true;
        }
    }
    out.push((v & 0x7F) as u8);
}

/// The writer thread: drains the rings, commits, and at the end writes everything and syncs.
fn write_loop(file: File, mut heads: HeapCons<Head>, mut bytes: HeapCons<u8>, state: &State) -> io::Result<Summary> {
    let result = (|| {
        let mut w = SmfWriter::new(file)?;
        let mut message = vec![0u8; QUEUE_BYTES];
        let mut taken = 0u64;
        loop {
            let stopping = state.stop.load(Ordering::Acquire);
            while let Some(h) = heads.try_pop() {
                let n = (h.len as usize).min(message.len());
                let got = bytes.pop_slice(&mut message[..n]);
                w.push(h.stamp, &message[..got]);
                taken += 1;
            }
            if stopping {
                break;
            }
            if w.last_commit.elapsed() >= COMMIT_EVERY || w.pending.len() >= 256 * 1024 {
                w.commit(false)?;
                state.written.store(taken, Ordering::Release);
            }
            std::thread::park_timeout(POLL);
        }
        let released = if state.lost.load(Ordering::Relaxed) > 0 {
            w.release_held(state.key_channels.load(Ordering::Relaxed))
        } else {
            0
        };
        w.commit(true)?;
        Ok(Summary { released })
    })();
    if let Err(e) = &result {
        state.failed.store(failure_index(e) + 1, Ordering::Release);
    }
    result
}

impl Output for FileOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self, t: &Arc<Timeline>) -> Result<(), OutputError> {
        let channels = t.divisions.iter().fold(0u16, |m, d| m | 1 << d.channel.wire());
        self.state.key_channels.fetch_or(channels, Ordering::Relaxed);
        Ok(())
    }

    /// # Real-time safety
    /// Two atomic loads and two pushes into preallocated lock-free rings.
    fn send(&mut self, bytes: &[u8], at: Stamp) -> Result<(), OutputError> {
        let failed = self.state.failed.load(Ordering::Acquire);
        if failed != 0 || self.writer.is_none() {
            let detail = match failed {
                0 => "the record is closed",
                n => FAILURES.get(usize::from(n) - 1).copied().unwrap_or(FAILURES[2]),
            };
            return Err(OutputError { kind: OutputErrorKind::Backend, detail });
        }
        if self.heads.vacant_len() == 0 || self.bytes.vacant_len() < bytes.len() {
            self.state.lost.fetch_add(1, Ordering::Relaxed);
            return Err(OutputError {
                kind: OutputErrorKind::Overflow,
                detail: "the record's queue is full (the disk is not keeping up)",
            });
        }
        self.bytes.push_slice(bytes);
        let _ = self.heads.try_push(Head { stamp: at, len: bytes.len() as u32 });
        self.state.queued.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The file holds everything sent so far (appended at the next commit, within
    /// [`COMMIT_EVERY`]): a process stopped now (Ctrl-Z), then killed, leaves a record that ends
    /// with the release.
    fn delivered(&self) -> bool {
        self.state.failed.load(Ordering::Acquire) != 0
            || self.state.written.load(Ordering::Acquire) >= self.state.queued.load(Ordering::Acquire)
    }

    /// Writes what is still queued, forces the file to disk and closes it.
    fn finish(&mut self) -> Result<(), FinishError> {
        let Some(result) = self.stop_writer() else { return Ok(()) };
        let summary = result.map_err(|e| FinishError::Write {
            output: self.name.clone(),
            error: format!("{}; the record holds what was sent until then", io_text(&e)),
        })?;
        self.summary = Some(summary);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let here = std::fs::symlink_metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
            if here != Some(self.identity) {
                return Err(FinishError::Replaced { output: self.name.clone(), path: self.path.display().to_string() });
            }
        }
        Ok(())
    }

    fn report(&self) -> Option<String> {
        let lost = self.lost();
        (lost > 0).then(|| {
            let released = self.summary.as_ref().map_or(0, |s| s.released);
            format!(
                "{}: {lost} message(s) could not be recorded (the disk did not keep up), so the record is incomplete{}",
                self.name,
                if released > 0 {
                    format!("; it ends with a note-off for the {released} key(s) it still held")
                } else {
                    String::new()
                }
            )
        })
    }
}

impl Drop for FileOutput {
    /// An output dropped without `finish` (an early return) still writes what it was sent.
    fn drop(&mut self) {
        let _ = self.stop_writer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midly::{MetaMessage, Smf, TrackEventKind};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("organ-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn ch(n: u8) -> Channel {
        Channel::new(n).expect("< 16")
    }

    fn stamp(t: u64) -> Stamp {
        Stamp { plan: Micros(t), due: Micros(1_000 + t), now: Micros(1_000 + t) }
    }

    /// (time in µs, bytes) of every message in the file, read with midly.
    fn read(path: &Path) -> Vec<(u64, Vec<u8>)> {
        let data = std::fs::read(path).unwrap();
        let smf = Smf::parse(&data).unwrap();
        assert_eq!(smf.tracks.len(), 1);
        let mut tick = 0u64;
        let mut out = Vec::new();
        for ev in &smf.tracks[0] {
            tick += u64::from(ev.delta.as_int());
            let mut b = Vec::new();
            match ev.kind {
                TrackEventKind::Midi { channel, message } => {
                    midly::live::LiveEvent::Midi { channel, message }.write_std(&mut b).unwrap();
                }
                TrackEventKind::SysEx(d) => {
                    b.push(0xF0);
                    b.extend_from_slice(d);
                }
                TrackEventKind::Meta(MetaMessage::SequencerSpecific(d)) => b.extend_from_slice(&d[1..]),
                _ => continue,
            }
            out.push((tick * FILE_TICK_US, b));
        }
        out
    }

    #[test]
    fn times_bytes_and_every_kind_of_message_round_trip() {
        let p = scratch("round-trip").join("r.mid");
        let mut o = FileOutput::create(p.clone()).unwrap();
        let late = |t: u64, l: u64| Stamp { now: Micros(1_000 + t + l), ..stamp(t) };
        o.send(&[0x9F, 36, 127], late(0, 0)).unwrap();
        o.send(&[0xF0, 0x00, 0x4A, 0x7F, 0xF7], late(250, 0)).unwrap();
        o.send(&[0xFF], late(300, 0)).unwrap();
        o.send(&[0x90, 60, 80], late(1_000_000, 140)).unwrap();
        o.send(&[0x80, 60, 0], late(1_500_000, 0)).unwrap();
        o.finish().unwrap();
        assert_eq!(
            read(&p),
            vec![
                (0, vec![0x9F, 36, 127]),
                (300, vec![0xF0, 0x00, 0x4A, 0x7F, 0xF7]),
                (300, vec![0xFF]),
                (1_000_100, vec![0x90, 60, 80]),
                (1_500_000, vec![0x80, 60, 0]),
            ]
        );
        assert_eq!(o.report(), None);
    }

    /// The file is a complete SMF after every step of every commit, so a crash at any point
    /// leaves what was committed before.
    #[test]
    fn the_file_is_readable_between_every_step_of_a_commit() {
        let p = scratch("steps").join("s.mid");
        let (file, _) = create_in_place(&p).unwrap();
        let mut w = SmfWriter::new(file).unwrap();
        assert_eq!(read(&p), vec![]);
        let mut committed = Vec::new();
        for round in 0..5u64 {
            let mut sent = Vec::new();
            for k in 0..(round * 7 + 1) {
                let t = round * 1_000_000 + k * 1_000;
                let m = vec![0x90, (k % 128) as u8, 1 + (round as u8)];
                w.push(stamp(t), &m);
                sent.push((t, m));
            }
            let new_len = w.append().unwrap();
            assert_eq!(read(&p), committed, "after step 1 of round {round}");
            w.retire_end_of_track().unwrap();
            assert_eq!(read(&p), committed, "after step 2 of round {round}");
            w.set_length(new_len).unwrap();
            committed.extend(sent);
            assert_eq!(read(&p), committed, "after step 3 of round {round}");
            let data = std::fs::read(&p).unwrap();
            assert!(data.ends_with(&END_OF_TRACK) && data.len() as u64 == TRACK_START + w.track_len);
        }
    }

    #[test]
    fn more_than_any_old_cap_is_recorded_whole() {
        // The first version kept the record in memory and refused past 131,072 messages.
        let p = scratch("many").join("m.mid");
        let mut o = FileOutput::create(p.clone()).unwrap();
        let n = 200_000u64;
        let mut sent = 0;
        for i in 0..n {
            let m = if i % 2 == 0 { [0x90, (i / 2 % 128) as u8, 64] } else { [0x80, (i / 2 % 128) as u8, 0] };
            // The writer drains every 20 ms; a tight loop can outrun it, so wait for room as the
            // engine's real pace would give it.
            while o.send(&m, stamp(i * 100)).is_err() {
                std::thread::sleep(POLL);
            }
            sent += 1;
        }
        o.finish().unwrap();
        let got = read(&p);
        assert_eq!(got.len(), sent);
        assert_eq!(got.last().unwrap(), &((n - 1) * 100, vec![0x80, ((n - 1) / 2 % 128) as u8, 0]));
        // Refused sends (retried above) are counted and reported, never silently dropped.
        assert_eq!(o.report().is_some(), o.lost() > 0);
    }

    #[test]
    fn a_loss_is_reported_and_the_record_releases_its_keys() {
        let p = scratch("loss").join("l.mid");
        let (file, _) = create_in_place(&p).unwrap();
        let mut w = SmfWriter::new(file).unwrap();
        w.push(stamp(0), &[0x90, 60, 100]);
        w.push(stamp(0), &[0x91, 62, 100]);
        w.push(stamp(0), &[0x9F, 36, 127]); // a stop on channel 16: not a key
        assert_eq!(w.release_held(1 << ch(0).wire() | 1 << ch(1).wire()), 2);
        w.commit(true).unwrap();
        let got: Vec<Vec<u8>> = read(&p).into_iter().map(|(_, b)| b).collect();
        assert_eq!(&got[3..], &[vec![0x80, 60, 0], vec![0x81, 62, 0]]);
    }

    #[test]
    fn a_symlink_a_directory_and_an_input_are_refused_and_left_alone() {
        let d = scratch("refuse");
        let target = d.join("precious.txt");
        std::fs::write(&target, "keep me").unwrap();
        let link = d.join("link.mid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = FileOutput::create(link.clone()).unwrap_err();
        assert_eq!(e.problem, FileProblem::Link);
        assert!(e.to_string().contains("is a symbolic link; organ does not write through links"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        let e = FileOutput::create(d.clone()).unwrap_err();
        assert!(e.to_string().ends_with("is a directory; organ writes only to a regular file: name another file"));
        crate::files::read_user_file(&target, crate::files::FileKind::Score).unwrap(); // read as an input
        let e = FileOutput::create(target.clone()).unwrap_err();
        assert!(e.to_string().contains("this is a MIDI score this performance reads"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        let leftovers: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary file left behind: {leftovers:?}");
    }

    #[test]
    fn a_record_is_never_replaced_by_another_in_the_same_run() {
        let p = scratch("twice").join("r.mid");
        let mut o = FileOutput::create(p.clone()).unwrap();
        o.send(&[0x90, 60, 1], stamp(0)).unwrap();
        let e = FileOutput::create(p.clone()).unwrap_err();
        assert_eq!(e.problem, FileProblem::OwnRecord);
        o.finish().unwrap();
        assert_eq!(read(&p).len(), 1);
    }

    #[test]
    fn a_replaced_record_is_reported_and_never_written_through() {
        let d = scratch("swap");
        let p = d.join("r.mid");
        let mut o = FileOutput::create(p.clone()).unwrap();
        o.send(&[0x90, 60, 1], stamp(0)).unwrap();
        // Someone puts a link to another file where the record was.
        let target = d.join("precious.txt");
        std::fs::write(&target, "keep me").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        o.send(&[0x80, 60, 0], stamp(10)).unwrap();
        let e = o.finish().unwrap_err().to_string();
        assert!(e.contains("the record was moved, deleted or replaced while it was written"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }

    #[test]
    fn a_full_disk_fails_the_output_on_the_next_message() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let file = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let (heads, heads_rx) = HeapRb::<Head>::new(16).split();
        let (bytes, bytes_rx) = HeapRb::<u8>::new(256).split();
        let state = Arc::new(State::default());
        let s = state.clone();
        let writer = std::thread::spawn(move || write_loop(file, heads_rx, bytes_rx, &s));
        let mut o = FileOutput {
            name: "file:full".into(),
            path: PathBuf::from("/dev/full"),
            heads,
            bytes,
            state,
            writer: Some(writer),
            identity: (0, 0),
            summary: None,
        };
        o.send(&[0x90, 60, 1], stamp(0)).unwrap();
        let start = Instant::now();
        let e = loop {
            match o.send(&[0x80, 60, 0], stamp(0)) {
                Err(e) => break e,
                Ok(()) => std::thread::sleep(POLL),
            }
            assert!(start.elapsed() < Duration::from_secs(5), "the failure was not seen");
        };
        assert_eq!(e, OutputError { kind: OutputErrorKind::Backend, detail: FAILURES[0] });
        let e = o.finish().unwrap_err().to_string();
        assert!(e.starts_with("file:full: cannot write: No space left on device"), "{e}");
    }
}
