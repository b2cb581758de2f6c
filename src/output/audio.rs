//! `--to audio`: the built-in organ voice ([`crate::voice`]) played in real time on the sound
//! device, through cpal (ALSA on Linux, CoreAudio, WASAPI; `audio:jack` through a running JACK
//! server when built with the `jack` feature).
//!
//! Threads: [`open`] finds the device on the control thread (so a machine without one fails
//! before playback with one line); [`Output::prepare`] builds the synth for the plan and starts
//! the stream on its own thread (`organ-audio`), which keeps cpal's stream object. The engine
//! thread's [`Output::send`] only reduces the message to a fixed-size key and pushes it into a
//! lock-free ring; the audio callback drains the ring, decodes the messages and renders. A
//! message takes effect at the start of the next audio buffer, so the sound is up to one buffer
//! (a few milliseconds) late and quantised to buffers.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Producer, Split};

use super::{Output, OutputError, OutputErrorKind, Stamp};
use crate::plan::Timeline;
use crate::voice::{Decoder, MsgKey, OrganSound, Synth};

/// Messages in flight between the engine and the audio callback.
const RING: usize = 8192;
/// How long the sound may ring after the last message before the stream closes.
const TAIL: Duration = Duration::from_millis(700);

type Prod = <HeapRb<MsgKey> as Split>::Prod;

/// The built-in voice on the sound device.
pub struct AudioOutput {
    name: String,
    device: cpal::Device,
    config: cpal::SupportedStreamConfig,
    ring: Option<Prod>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Why `--to audio` cannot play here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioError {
    /// `--to audio:SOMETHING` that is not a known host.
    UnknownHost { spec: String },
    /// The host (JACK) is not available.
    HostUnavailable { spec: String, host: &'static str, why: String },
    /// No output device, or it cannot be opened.
    NoDevice { spec: String, host: &'static str, why: String },
    /// The device wants samples in a format the voice does not write.
    UnsupportedFormat { spec: String, format: String },
}

impl std::fmt::Display for AudioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioError::UnknownHost { spec } => {
                write!(f, "--to {spec}: write --to audio (the default sound device){}", jack_hint())
            }
            AudioError::HostUnavailable { spec, host, why } => {
                write!(f, "--to {spec}: {host} is not available ({why}); is a {host} server running?")
            }
            AudioError::NoDevice { spec, host, why } => write!(
                f,
                "--to {spec}: no sound device here ({host}: {why}); render to a file instead with --to wav:FILE"
            ),
            AudioError::UnsupportedFormat { spec, format } => {
                write!(f, "--to {spec}: the sound device wants {format} samples; organ writes f32 or i16")
            }
        }
    }
}

impl std::error::Error for AudioError {}

fn host(which: &str, spec: &str) -> Result<cpal::Host, AudioError> {
    match which {
        "" => Ok(cpal::default_host()),
        #[cfg(all(feature = "jack", target_os = "linux"))]
        "jack" => cpal::host_from_id(cpal::HostId::Jack).map_err(|e| AudioError::HostUnavailable {
            spec: spec.to_string(),
            host: "JACK",
            why: e.to_string(),
        }),
        _ => Err(AudioError::UnknownHost { spec: spec.to_string() }),
    }
}

fn jack_hint() -> &'static str {
    if cfg!(all(feature = "jack", target_os = "linux")) { " or --to audio:jack" } else { "" }
}

/// Finds the sound device for `--to audio[:jack]`.
///
/// # Errors
/// No sound device (one line that says so and suggests `--to wav:FILE`), or an unsupported one.
pub fn open(which: &str) -> Result<AudioOutput, AudioError> {
    let which = which.trim().to_ascii_lowercase();
    let name = if which.is_empty() { "audio".to_string() } else { format!("audio:{which}") };
    let host = host(&which, &name)?;
    let alsa_lines = AlsaErrors::catch();
    let no_device = |why: String| AudioError::NoDevice {
        spec: name.clone(),
        host: host.id().name(),
        // alsa-lib's own last word says more than cpal's ("Unknown PCM default").
        why: alsa_lines.last_line().map(|l| l.rsplit(": ").next().unwrap_or(&l).to_string()).unwrap_or(why),
    };
    let device = host.default_output_device().ok_or_else(|| no_device("no output device".into()))?;
    let config = device.default_output_config().map_err(|e| no_device(e.to_string()))?;
    match config.sample_format() {
        cpal::SampleFormat::F32 | cpal::SampleFormat::I16 => {}
        other => return Err(AudioError::UnsupportedFormat { spec: name, format: other.to_string() }),
    }
    Ok(AudioOutput { name, device, config, ring: None, stop: None, thread: None })
}

/// alsa-lib prints its own errors (eight lines when there is no sound card) on stderr; while
/// this lives, they are kept on this thread instead, and the last one can go into our message.
struct AlsaErrors {
    #[cfg(target_os = "linux")]
    output: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>,
}

impl AlsaErrors {
    fn catch() -> AlsaErrors {
        AlsaErrors {
            #[cfg(target_os = "linux")]
            output: alsa::Output::local_error_handler().ok(),
        }
    }

    fn last_line(&self) -> Option<String> {
        #[cfg(target_os = "linux")]
        {
            let text = self.output.as_ref()?.borrow().to_string();
            text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
        }
        #[cfg(not(target_os = "linux"))]
        None
    }
}

/// The audio callback's state: everything allocated before the stream starts.
struct Callback {
    ring: <HeapRb<MsgKey> as Split>::Cons,
    decoder: Decoder,
    synth: Synth,
    mono: Vec<f32>,
    channels: usize,
}

impl Callback {
    fn fill<T: cpal::SizedSample + cpal::FromSample<f32>>(&mut self, data: &mut [T]) {
        while let Some(m) = self.ring.try_pop() {
            let synth = &mut self.synth;
            self.decoder.feed(m, |e| synth.apply(e));
        }
        for frames in data.chunks_mut(self.mono.len() * self.channels) {
            let n = frames.len() / self.channels;
            self.synth.render(&mut self.mono[..n]);
            for (frame, &s) in frames.chunks_mut(self.channels).zip(&self.mono[..n]) {
                frame.fill(T::from_sample(s));
            }
        }
    }
}

fn stream_for<T: cpal::SizedSample + cpal::FromSample<f32>>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut cb: Callback,
) -> Result<cpal::Stream, cpal::Error> {
    device.build_output_stream(*config, move |data: &mut [T], _| cb.fill(data), |_e| {}, None)
}

impl Output for AudioOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self, timeline: &Arc<Timeline>) -> Result<(), OutputError> {
        let fail = |detail| OutputError { kind: OutputErrorKind::Backend, detail };
        let rate = self.config.sample_rate();
        let format = self.config.sample_format();
        let config = self.config.config();
        let (prod, cons) = HeapRb::<MsgKey>::new(RING).split();
        let cb = Callback {
            ring: cons,
            decoder: Decoder::new(&OrganSound::of_timeline(timeline)),
            synth: crate::voice::synth_for(timeline, rate),
            mono: vec![0.0; 1024],
            channels: usize::from(config.channels.max(1)),
        };
        let device = self.device.clone();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ()>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("organ-audio".into())
            .spawn(move || {
                let stream = match format {
                    cpal::SampleFormat::I16 => stream_for::<i16>(&device, &config, cb),
                    _ => stream_for::<f32>(&device, &config, cb),
                };
                let Ok(stream) = stream else {
                    let _ = ready_tx.send(Err(()));
                    return;
                };
                if stream.play().is_err() {
                    let _ = ready_tx.send(Err(()));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                let _ = stop_rx.recv();
                drop(stream);
            })
            .map_err(|_| fail("cannot start the audio thread"))?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            _ => return Err(fail("the sound device would not start a stream")),
        }
        self.ring = Some(prod);
        self.stop = Some(stop_tx);
        self.thread = Some(thread);
        Ok(())
    }

    fn send(&mut self, bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
        let Some(ring) = &mut self.ring else { return Ok(()) };
        ring.try_push(MsgKey::of(bytes)).map_err(|_| OutputError {
            kind: OutputErrorKind::Overflow,
            detail: "the audio callback is not keeping up",
        })
    }

    fn finish(&mut self) -> Result<(), super::FinishError> {
        if let Some(stop) = self.stop.take() {
            // Let the last chord and the release die away.
            std::thread::sleep(TAIL);
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(())
    }
}

impl Drop for AudioOutput {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
