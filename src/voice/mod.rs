//! The built-in organ voice: hear a plan without an organ.
//!
//! [`Synth`] is a small additive organ that listens to the same MIDI messages the plan sends to
//! the real console ([`console::Decoder`] decodes them against the organ definition) and sounds
//! what they draw ([`stops`] voices each stop from its name or its `voice = { … }`).
//! [`render`] and [`render_wav`] play a [`Timeline`] through it offline, as fast as the machine
//! allows (`organ play --to wav:FILE`); `--to audio` (crate::output::audio) plays it in real time.
//!
//! Pure computation on the calling thread; no clocks, ports or threads here.

pub mod console;
pub mod stops;
mod synth;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::midi::Channel;
use crate::organ::voice::VoiceSpec;
use crate::organ::{ControlKind, Organ};
use crate::plan::Timeline;
pub use console::{ConsoleEvent, Decoder, MsgKey};
pub use synth::{BLOCK, Synth};

/// The sample rate of rendered files.
pub const SAMPLE_RATE: u32 = 48_000;

/// How long the sound is let ring after the last message.
pub const TAIL_SECONDS: f64 = 1.0;

/// Why a WAV file could not be written.
#[derive(Debug)]
pub struct WavError {
    pub path: PathBuf,
    pub error: hound::Error,
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: cannot write the WAV file: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for WavError {}

/// What the voice needs to know of an organ: the channel of each division, and each control's
/// messages and voice. Built from an organ definition, or from a plan (which carries them).
#[derive(Debug, Clone)]
pub struct OrganSound {
    pub channels: Vec<Channel>,
    pub controls: Vec<ControlSound>,
    /// The General Cancel, when the organ has one.
    pub cancel: Option<Vec<Vec<u8>>>,
}

/// One stop, coupler or tremulant as the voice needs it.
#[derive(Debug, Clone)]
pub struct ControlSound {
    pub name: String,
    pub kind: ControlKind,
    pub division: Option<usize>,
    pub on: Vec<Vec<u8>>,
    pub off: Vec<Vec<u8>>,
    pub voice: Option<VoiceSpec>,
}

impl OrganSound {
    pub fn of_organ(organ: &Organ) -> OrganSound {
        let bytes = |m: &[crate::midi::Message]| m.iter().map(|m| m.as_bytes().to_vec()).collect::<Vec<_>>();
        OrganSound {
            channels: organ.divisions.iter().map(|d| d.channel).collect(),
            controls: organ
                .controls
                .iter()
                .map(|c| ControlSound {
                    name: c.name.clone(),
                    kind: c.kind,
                    division: c.division,
                    on: bytes(&c.on),
                    off: bytes(&c.off),
                    voice: c.voice.clone(),
                })
                .collect(),
            cancel: organ.cancel.as_deref().map(bytes),
        }
    }

    /// From a plan. Its cancel is the General Cancel or every control's off; either decodes right
    /// (the offs one by one).
    pub fn of_timeline(t: &Timeline) -> OrganSound {
        let bytes = |m: &[crate::plan::Msg]| m.iter().map(|m| t.bytes(m).to_vec()).collect::<Vec<_>>();
        OrganSound {
            channels: t.divisions.iter().map(|d| d.channel).collect(),
            controls: t
                .controls
                .iter()
                .map(|c| ControlSound {
                    name: c.name.clone(),
                    kind: c.kind,
                    division: c.division,
                    on: bytes(&c.on),
                    off: bytes(&c.off),
                    voice: c.voice.clone(),
                })
                .collect(),
            cancel: Some(bytes(&t.cancel)),
        }
    }
}

/// Builds a synth for the organ of `timeline` with the timbres of every registration it plays
/// ready.
pub fn synth_for(timeline: &Timeline, sample_rate: u32) -> Synth {
    let mut synth = Synth::new(&OrganSound::of_timeline(timeline), sample_rate);
    for r in &timeline.registrations {
        synth.prepare(&r.drawn);
    }
    synth
}

/// Plays `timeline` through the built-in voice, handing each rendered block of mono samples to
/// `sink` in order; returns the number of samples. Fermata waits are not waited for (nobody can
/// press Enter in a file).
///
/// # Errors
/// Whatever `sink` returns.
pub fn render_with<E>(
    timeline: &Timeline,
    sample_rate: u32,
    mut sink: impl FnMut(&[f32]) -> Result<(), E>,
) -> Result<u64, E> {
    let mut synth = synth_for(timeline, sample_rate);
    let mut decoder = Decoder::new(&OrganSound::of_timeline(timeline));
    let mut buf = vec![0f32; 4096];
    let mut done: u64 = 0;
    let at = |t: u64| -> u64 { (u128::from(t) * u128::from(sample_rate) / 1_000_000) as u64 };
    let mut i = 0;
    while i < timeline.events.len() {
        let due = at(timeline.events[i].t.0);
        while done < due {
            let n = ((due - done) as usize).min(buf.len());
            synth.render(&mut buf[..n]);
            sink(&buf[..n])?;
            done += n as u64;
        }
        while i < timeline.events.len() && at(timeline.events[i].t.0) <= done {
            let e = &timeline.events[i];
            decoder.feed(MsgKey::of(timeline.bytes(&e.msg)), |c| synth.apply(c));
            i += 1;
        }
    }
    let end = done + (TAIL_SECONDS * f64::from(sample_rate)) as u64;
    while done < end {
        let n = ((end - done) as usize).min(buf.len());
        synth.render(&mut buf[..n]);
        sink(&buf[..n])?;
        done += n as u64;
    }
    Ok(done)
}

/// Renders `timeline` into memory: mono samples at `sample_rate`.
pub fn render(timeline: &Timeline, sample_rate: u32) -> Vec<f32> {
    let mut out = Vec::new();
    let _ = render_with::<()>(timeline, sample_rate, |b| {
        out.extend_from_slice(b);
        Ok(())
    });
    out
}

/// What [`render_wav`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Rendered {
    pub samples: u64,
    pub sample_rate: u32,
    /// False when `stop` ended the rendering early (the file holds what was rendered so far).
    pub complete: bool,
}

impl Rendered {
    pub fn seconds(&self) -> f64 {
        self.samples as f64 / f64::from(self.sample_rate)
    }
}

/// Renders `timeline` into a 16-bit mono WAV file at [`SAMPLE_RATE`], offline, as fast as the
/// machine allows. `stop` is asked between blocks (a few thousand times a second of audio);
/// when it says so, the file is closed with what was rendered so far.
///
/// The file is created new beside `path` and renamed into place before rendering starts, then
/// written through that open file only: never through a symbolic link, nor over an input of the
/// performance ([`crate::files`]).
///
/// # Errors
/// The file cannot be created or written, or `path` is a link, a special file or an input.
pub fn render_wav(timeline: &Timeline, path: &Path, stop: impl Fn() -> bool) -> Result<Rendered, WavError> {
    let err = |error| WavError { path: path.to_path_buf(), error };
    let refused = |p: crate::files::FileProblem| err(hound::Error::IoError(std::io::Error::other(p.to_string())));
    crate::files::check_replaceable(path).map_err(refused)?;
    let (file, tmp) = crate::files::create_beside(path).map_err(refused)?;
    crate::files::rename_into_place(&tmp, path).map_err(refused)?;
    render_into(timeline, std::io::BufWriter::new(file), stop).map_err(err)
}

/// [`render_wav`]'s rendering into an open writer.
fn render_into<W: std::io::Write + std::io::Seek>(
    timeline: &Timeline,
    out: W,
    stop: impl Fn() -> bool,
) -> Result<Rendered, hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(out, spec)?;
    let mut written = 0u64;
    let result = render_with(timeline, SAMPLE_RATE, |b| {
        if stop() {
            return Err(None);
        }
        let mut w16 = w.get_i16_writer(b.len() as u32);
        for &s in b {
            // Rounded half away from zero; `as` saturates (the limiter keeps |s| < 0.9 anyway).
            let v = s * 32767.0;
            w16.write_sample((v + 0.5f32.copysign(v)) as i16);
        }
        written += b.len() as u64;
        w16.flush().map_err(Some)
    });
    let complete = match result {
        Ok(_) => true,
        Err(None) => false,
        Err(Some(e)) => return Err(e),
    };
    w.finalize()?;
    Ok(Rendered { samples: written, sample_rate: SAMPLE_RATE, complete })
}
