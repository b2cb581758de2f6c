//! A JACK client that records two audio inputs and one MIDI input with JACK frame timestamps.
//!
//! The process callback only copies into preallocated lock-free rings; a collector thread moves
//! the data into growing vectors. Each MIDI event is also placed in the recorded stream itself
//! (its sample index), which stays exact when JACK's frame clock jumps (a dummy backend that falls
//! behind on a busy machine skips or repeats frame times). Such jumps (breaks) and lost data (an
//! overflowing ring) are detected and reported, never papered over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use jack::{AudioIn, Client, ClientOptions, Control, MidiIn, Port, ProcessScope};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// A MIDI event as seen on the recorder's input: absolute frame, index in the recorded stream,
/// and bytes (≤ 16 kept).
#[derive(Clone, Copy, Debug)]
pub struct MidiEvent {
    pub frame: u32,
    /// The index in [`Recording::mono`] of the sample it arrived with.
    pub pos: usize,
    pub len: u8,
    pub bytes: [u8; 16],
}

impl MidiEvent {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(16)]
    }
}

/// Audio with the frame of its first sample, and the MIDI events.
#[derive(Default)]
pub struct Recording {
    pub first_frame: Option<u32>,
    /// (L + R) / 2 per frame, contiguous from `first_frame`.
    pub mono: Vec<f32>,
    pub midi: Vec<MidiEvent>,
    /// Problems: breaks in JACK's frame clock, lost samples or events.
    pub gaps: Vec<String>,
    /// Indices in `mono` where JACK's frame clock jumped (a cycle's frame is not the previous
    /// cycle's end): the stream is contiguous, but time may have been skipped or a client may
    /// have missed the cycle there.
    pub breaks: Vec<usize>,
    /// How many samples of `mono` precede the first loss (a full ring, a cycle's samples that
    /// never came): up to there samples and event positions are exact.
    pub clean_len: usize,
}

impl Recording {
    /// Writes the recording for a post-mortem: `<stem>.wav` (mono, 32-bit float) and
    /// `<stem>.txt` (the MIDI events with their stream index and frame, and the gaps).
    pub fn save(&self, dir: &std::path::Path, stem: &str, rate: u32) -> std::io::Result<()> {
        let n = u32::try_from(self.mono.len() * 4).unwrap_or(u32::MAX);
        let mut w = Vec::with_capacity(58 + self.mono.len() * 4);
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(n.saturating_add(50)).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&18u32.to_le_bytes());
        w.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&rate.to_le_bytes());
        w.extend_from_slice(&(rate * 4).to_le_bytes());
        w.extend_from_slice(&4u16.to_le_bytes());
        w.extend_from_slice(&32u16.to_le_bytes());
        w.extend_from_slice(&0u16.to_le_bytes());
        w.extend_from_slice(b"fact");
        w.extend_from_slice(&4u32.to_le_bytes());
        w.extend_from_slice(&u32::try_from(self.mono.len()).unwrap_or(u32::MAX).to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&n.to_le_bytes());
        for v in &self.mono {
            w.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(dir.join(format!("{stem}.wav")), w)?;
        let mut t = format!(
            "first frame {:?}, {} samples, clean {}, breaks at {:?}\n",
            self.first_frame,
            self.mono.len(),
            self.clean_len,
            self.breaks
        );
        for g in &self.gaps {
            t.push_str(&format!("gap: {g}\n"));
        }
        for m in &self.midi {
            t.push_str(&format!("{:>9} {:>12} {:02X?}\n", m.pos, m.frame, m.bytes()));
        }
        std::fs::write(dir.join(format!("{stem}.txt")), t)
    }

    /// Index into `mono` of an absolute frame.
    pub fn index(&self, frame: u32) -> Option<usize> {
        let i = frame.wrapping_sub(self.first_frame?) as usize;
        (i < self.mono.len()).then_some(i)
    }
}

struct Cycle {
    frame: u32,
    n: u32,
}

struct Proc {
    l: Port<AudioIn>,
    r: Port<AudioIn>,
    midi: Port<MidiIn>,
    cycles: HeapProd<Cycle>,
    samples: HeapProd<f32>,
    events: HeapProd<MidiEvent>,
    overflow: Arc<AtomicU64>,
    recording: Arc<AtomicBool>,
    midi_count: Arc<AtomicUsize>,
    /// Samples recorded so far (the next cycle's first index in the stream).
    pos: usize,
}

impl jack::ProcessHandler for Proc {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        if !self.recording.load(Ordering::Acquire) {
            return Control::Continue;
        }
        let base = ps.last_frame_time();
        for ev in self.midi.iter(ps) {
            let mut e = MidiEvent {
                frame: base.wrapping_add(ev.time),
                pos: self.pos + ev.time as usize,
                len: ev.bytes.len().min(16) as u8,
                bytes: [0; 16],
            };
            e.bytes[..usize::from(e.len)].copy_from_slice(&ev.bytes[..usize::from(e.len)]);
            if self.events.try_push(e).is_err() {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
            self.midi_count.fetch_add(1, Ordering::Release);
        }
        let (l, r) = (self.l.as_slice(ps), self.r.as_slice(ps));
        self.pos += l.len();
        if self.cycles.try_push(Cycle { frame: base, n: ps.n_frames() }).is_err() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return Control::Continue;
        }
        for (a, b) in l.iter().zip(r) {
            if self.samples.try_push((a + b) * 0.5).is_err() {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
        Control::Continue
    }
}

pub struct Recorder {
    client: Option<jack::AsyncClient<(), Proc>>,
    stop: Arc<AtomicBool>,
    recording: Arc<AtomicBool>,
    midi_count: Arc<AtomicUsize>,
    collector: Option<JoinHandle<Recording>>,
    pub name: String,
}

impl Recorder {
    /// Opens the client `organ-rec` with ports `in_l`, `in_r`, `midi_in` (not yet recording).
    pub fn open() -> Result<Recorder, String> {
        let (client, _) =
            Client::new("organ-rec", ClientOptions::NO_START_SERVER).map_err(|e| format!("recorder: {e}"))?;
        let name = client.name().to_string();
        let l = client.register_port("in_l", AudioIn::default()).map_err(|e| e.to_string())?;
        let r = client.register_port("in_r", AudioIn::default()).map_err(|e| e.to_string())?;
        let midi = client.register_port("midi_in", MidiIn::default()).map_err(|e| e.to_string())?;
        let (cycles, mut cycles_rx): (HeapProd<Cycle>, HeapCons<Cycle>) = HeapRb::new(4096).split();
        let (samples, mut samples_rx): (HeapProd<f32>, HeapCons<f32>) = HeapRb::new(48_000 * 8).split();
        let (events, mut events_rx): (HeapProd<MidiEvent>, HeapCons<MidiEvent>) = HeapRb::new(4096).split();
        let overflow = Arc::new(AtomicU64::new(0));
        let recording = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let midi_count = Arc::new(AtomicUsize::new(0));
        let p = Proc {
            l,
            r,
            midi,
            cycles,
            samples,
            events,
            overflow: Arc::clone(&overflow),
            recording: Arc::clone(&recording),
            midi_count: Arc::clone(&midi_count),
            pos: 0,
        };
        let client = client.activate_async((), p).map_err(|e| format!("recorder: {e}"))?;
        let stop2 = Arc::clone(&stop);
        let collector = std::thread::spawn(move || {
            let mut rec = Recording::default();
            let mut next: Option<u32> = None;
            let mut clean: Option<usize> = None;
            loop {
                let stopping = stop2.load(Ordering::Acquire);
                while let Some(e) = events_rx.try_pop() {
                    rec.midi.push(e);
                }
                while let Some(c) = cycles_rx.try_pop() {
                    if rec.first_frame.is_none() {
                        rec.first_frame = Some(c.frame);
                    }
                    if let Some(expected) = next
                        && expected != c.frame
                    {
                        rec.gaps.push(format!("cycle at frame {} where {expected} was expected", c.frame));
                        rec.breaks.push(rec.mono.len());
                    }
                    next = Some(c.frame.wrapping_add(c.n));
                    let (mut got, mut waits) = (0, 0);
                    while got < c.n {
                        match samples_rx.try_pop() {
                            Some(s) => {
                                rec.mono.push(s);
                                got += 1;
                            }
                            None if waits < 200 => {
                                waits += 1;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            None => {
                                rec.gaps.push(format!("cycle at frame {}: {} of {} samples", c.frame, got, c.n));
                                clean.get_or_insert(rec.mono.len() - got as usize);
                                break;
                            }
                        }
                    }
                }
                if overflow.load(Ordering::Relaxed) > 0 {
                    clean.get_or_insert(rec.mono.len());
                }
                if stopping {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let lost = overflow.load(Ordering::Relaxed);
            if lost > 0 {
                rec.gaps.push(format!("{lost} sample(s)/event(s) lost to a full ring"));
            }
            rec.clean_len = clean.unwrap_or(rec.mono.len());
            rec
        });
        Ok(Recorder { client: Some(client), stop, recording, midi_count, collector: Some(collector), name })
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("open").as_client()
    }

    pub fn port(&self, short: &str) -> String {
        format!("{}:{short}", self.name)
    }

    /// MIDI events received while recording so far (live, for waiting on a point of the piece).
    pub fn midi_received(&self) -> usize {
        self.midi_count.load(Ordering::Acquire)
    }

    pub fn start(&self) {
        self.recording.store(true, Ordering::Release);
    }

    /// Stops recording and returns what was recorded.
    pub fn finish(mut self) -> Recording {
        self.recording.store(false, Ordering::Release);
        std::thread::sleep(Duration::from_millis(100));
        if let Some(c) = self.client.take() {
            let _ = c.deactivate();
        }
        self.stop.store(true, Ordering::Release);
        self.collector.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(c) = self.client.take() {
            let _ = c.deactivate();
        }
    }
}
