//! `--to`, parsed once: the forms an output is named by (on the command line, in an organ
//! definition's `output = "…"`, in an order of service) and opening one. Control thread.

use std::fmt;
use std::path::PathBuf;

use super::{Output, record};
use crate::organ::DisconnectPolicy;

/// The forms `--to` accepts, for help and error messages.
pub const SPEC_FORMS: &str = "port:NAME (a MIDI port, see `organ ports`), ble:NAME (Bluetooth LE MIDI, see `organ ble scan`), \
     grandorgue, jack[:PORT], file:PATH.mid, wav:PATH.wav (the built-in organ voice, rendered offline), \
     audio (the built-in organ voice on the sound device), null";

/// How long connecting to a Bluetooth LE MIDI device may take before `--to ble:` gives up.
pub const BLE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Where to play, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// `null`: sends nowhere.
    Null,
    /// `file:PATH.mid`: what was sent, with the real send times, as a MIDI file.
    File(PathBuf),
    /// `port:NAME`: a MIDI port by (part of) its name or its number.
    Port(String),
    /// `ble:NAME`: a Bluetooth LE MIDI device by (part of) its name or its address.
    Ble(String),
    /// `jack` (a port organ:out) or `jack:PORT` (also connected to that MIDI input).
    Jack(Option<String>),
    /// `grandorgue` or `grandorgue:NAME`: the loopback to GrandOrgue that this machine allows
    /// (see [`super::grandorgue`]); NAME names the virtual port, or on Windows the loopback port.
    GrandOrgue(Option<String>),
    /// `wav:PATH.wav`: the built-in organ voice rendered offline into a WAV file. Only `organ
    /// play`'s command line renders it (before any real-time output opens); opened anywhere
    /// else (an organ's `output`, an order of service) it is refused.
    Wav(PathBuf),
    /// `audio` (the default sound device) or `audio:HOST` (`audio:jack`): the built-in organ
    /// voice played in real time.
    Audio(Option<String>),
}

/// A `--to` value that is not an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// None of the forms.
    NotAnOutput(String),
    /// `jack` written some other way.
    Jack(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NotAnOutput(s) => write!(f, "--to {s}: not an output; use {SPEC_FORMS}"),
            SpecError::Jack(s) => write!(f, "--to {s}: write `jack` or `jack:PORT`"),
        }
    }
}

impl std::error::Error for SpecError {}

impl OutputSpec {
    /// Parses a `--to` value (the output kind is case-insensitive).
    ///
    /// # Errors
    /// Not one of the forms in [`SPEC_FORMS`].
    pub fn parse(spec: &str) -> Result<OutputSpec, SpecError> {
        let spec = spec.trim();
        let (kind, arg) = spec.split_once(':').map_or((spec, None), |(k, a)| (k, Some(a)));
        let arg_text = arg.unwrap_or("");
        let named = |f: fn(String) -> OutputSpec| {
            if arg_text.is_empty() {
                Err(SpecError::NotAnOutput(spec.to_string()))
            } else {
                Ok(f(arg_text.to_string()))
            }
        };
        match kind.to_ascii_lowercase().as_str() {
            "null" => Ok(OutputSpec::Null),
            "file" => named(|a| OutputSpec::File(PathBuf::from(a))),
            "port" => named(OutputSpec::Port),
            "ble" => named(OutputSpec::Ble),
            "grandorgue" => Ok(OutputSpec::GrandOrgue(Some(arg_text.to_string()).filter(|a| !a.is_empty()))),
            "wav" => named(|a| OutputSpec::Wav(PathBuf::from(a))),
            "audio" => Ok(OutputSpec::Audio(Some(arg_text.trim().to_string()).filter(|a| !a.is_empty()))),
            "jack" => match arg {
                None if kind == "jack" => Ok(OutputSpec::Jack(None)),
                Some(t) if kind == "jack" && !t.trim().is_empty() => Ok(OutputSpec::Jack(Some(t.trim().to_string()))),
                _ => Err(SpecError::Jack(spec.to_string())),
            },
            _ => Err(SpecError::NotAnOutput(spec.to_string())),
        }
    }

    /// Opens the output. Runs on the control thread; may take a while (`ble:` connects, up to
    /// [`BLE_CONNECT_TIMEOUT`]). `notes` receives lines to tell the user (e.g. that GrandOrgue
    /// must be restarted to see a new port).
    ///
    /// # Errors
    /// The output cannot be opened here; the message says why and what exists.
    pub fn open(&self, policy: DisconnectPolicy, notes: &mut Vec<String>) -> Result<Box<dyn Output>, OpenError> {
        let _ = policy;
        match self {
            OutputSpec::Null => Ok(Box::new(record::NullOutput)),
            OutputSpec::File(p) => Ok(Box::new(record::FileOutput::create(p.clone())?)),
            OutputSpec::Port(name) => Ok(Box::new(super::port::PortOutput::open(name)?)),
            #[cfg(feature = "ble")]
            OutputSpec::Ble(name) => Ok(Box::new(super::ble::open(name, policy, BLE_CONNECT_TIMEOUT)?)),
            #[cfg(not(feature = "ble"))]
            OutputSpec::Ble(_) => {
                Err(OpenError::NotBuilt { spec: self.to_string(), what: "Bluetooth", feature: "ble" })
            }
            OutputSpec::GrandOrgue(name) => {
                let mut opts = super::grandorgue::LoopbackOptions::default();
                if let Some(n) = name {
                    opts.virtual_name = n.clone();
                    opts.loopback_port = Some(n.clone());
                }
                let lb = super::grandorgue::open(&opts, &super::grandorgue::Backends::default())
                    .map_err(|error| OpenError::GrandOrgue { spec: self.to_string(), error })?;
                notes.push(lb.message);
                Ok(lb.output)
            }
            #[cfg(feature = "jack")]
            OutputSpec::Jack(target) => Ok(Box::new(super::jack::open(target.as_deref())?)),
            #[cfg(not(feature = "jack"))]
            OutputSpec::Jack(_) => Err(OpenError::NotBuilt { spec: self.to_string(), what: "JACK", feature: "jack" }),
            OutputSpec::Wav(_) => Err(OpenError::OfflineOnly { spec: self.to_string() }),
            #[cfg(feature = "audio")]
            OutputSpec::Audio(host) => Ok(Box::new(super::audio::open(host.as_deref().unwrap_or(""))?)),
            #[cfg(not(feature = "audio"))]
            OutputSpec::Audio(_) => {
                Err(OpenError::NotBuilt { spec: self.to_string(), what: "sound output", feature: "audio" })
            }
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputSpec::Null => f.write_str("null"),
            OutputSpec::File(p) => write!(f, "file:{}", p.display()),
            OutputSpec::Port(n) => write!(f, "port:{n}"),
            OutputSpec::Ble(n) => write!(f, "ble:{n}"),
            OutputSpec::Jack(None) => f.write_str("jack"),
            OutputSpec::Jack(Some(t)) => write!(f, "jack:{t}"),
            OutputSpec::GrandOrgue(None) => f.write_str("grandorgue"),
            OutputSpec::GrandOrgue(Some(n)) => write!(f, "grandorgue:{n}"),
            OutputSpec::Wav(p) => write!(f, "wav:{}", p.display()),
            OutputSpec::Audio(None) => f.write_str("audio"),
            OutputSpec::Audio(Some(h)) => write!(f, "audio:{h}"),
        }
    }
}

impl std::str::FromStr for OutputSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutputSpec::parse(s)
    }
}

/// Why an output could not be opened. Control thread; one line with the output's name, what
/// went wrong and what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenError {
    Spec(SpecError),
    /// This build lacks the backend (a cargo feature).
    NotBuilt {
        spec: String,
        what: &'static str,
        feature: &'static str,
    },
    Port(super::port::PortError),
    File(record::FileError),
    #[cfg(feature = "ble")]
    Ble(super::ble::BleError),
    #[cfg(feature = "jack")]
    Jack(super::jack::JackError),
    GrandOrgue {
        spec: String,
        error: super::grandorgue::LoopbackError,
    },
    /// `wav:` named where nothing renders it (only `organ play --to wav:FILE` does).
    OfflineOnly {
        spec: String,
    },
    /// No sound device for `--to audio`.
    #[cfg(feature = "audio")]
    Audio(super::audio::AudioError),
    /// More outputs than one engine drives.
    TooMany(usize),
    /// No `--to`, and no default `output = "…"` in `source` (an organ definition or an order of
    /// service).
    NoOutput {
        source: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Spec(e) => e.fmt(f),
            OpenError::NotBuilt { spec, what, feature } => {
                write!(
                    f,
                    "--to {spec}: this build of organ has no {what} support (built without the {feature} feature)"
                )
            }
            OpenError::Port(e) => e.fmt(f),
            OpenError::File(e) => e.fmt(f),
            #[cfg(feature = "ble")]
            OpenError::Ble(e) => e.fmt(f),
            #[cfg(feature = "jack")]
            OpenError::Jack(e) => e.fmt(f),
            OpenError::GrandOrgue { spec, error } => write!(f, "--to {spec}: {error}"),
            OpenError::OfflineOnly { spec } => write!(
                f,
                "--to {spec}: a WAV file is rendered offline by `organ play --to wav:FILE` on the command line, not here"
            ),
            #[cfg(feature = "audio")]
            OpenError::Audio(e) => e.fmt(f),
            OpenError::TooMany(n) => write!(f, "at most {n} outputs at once"),
            OpenError::NoOutput { source } => {
                write!(f, "no output: add --to {SPEC_FORMS} (or set output = \"…\" in {source})")
            }
        }
    }
}

impl std::error::Error for OpenError {}

impl From<SpecError> for OpenError {
    fn from(e: SpecError) -> Self {
        OpenError::Spec(e)
    }
}
impl From<super::port::PortError> for OpenError {
    fn from(e: super::port::PortError) -> Self {
        OpenError::Port(e)
    }
}
impl From<record::FileError> for OpenError {
    fn from(e: record::FileError) -> Self {
        OpenError::File(e)
    }
}
#[cfg(feature = "ble")]
impl From<super::ble::BleError> for OpenError {
    fn from(e: super::ble::BleError) -> Self {
        OpenError::Ble(e)
    }
}
#[cfg(feature = "jack")]
impl From<super::jack::JackError> for OpenError {
    fn from(e: super::jack::JackError) -> Self {
        OpenError::Jack(e)
    }
}
#[cfg(feature = "audio")]
impl From<super::audio::AudioError> for OpenError {
    fn from(e: super::audio::AudioError) -> Self {
        OpenError::Audio(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for s in [
            "null",
            "file:out.mid",
            "port:WIDI Bud Pro",
            "port:1",
            "ble:WIDI Jack",
            "jack",
            "jack:GrandOrgue",
            "grandorgue",
            "grandorgue:organ",
            "wav:out.wav",
            "audio",
            "audio:jack",
        ] {
            assert_eq!(OutputSpec::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(OutputSpec::parse(" FILE:x.mid ").unwrap(), OutputSpec::File("x.mid".into()));
        assert_eq!(OutputSpec::parse("jack: GO in ").unwrap(), OutputSpec::Jack(Some("GO in".into())));
        assert_eq!(
            OutputSpec::parse("speaker").unwrap_err().to_string().split(';').next(),
            Some("--to speaker: not an output")
        );
        assert_eq!(OutputSpec::parse("WAV:x.wav").unwrap(), OutputSpec::Wav("x.wav".into()));
        assert_eq!(OutputSpec::parse("audio:").unwrap(), OutputSpec::Audio(None));
        for bad in ["port:", "file:", "ble:", "jack:", "JACK", "wav:"] {
            assert!(OutputSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(OutputSpec::parse("jack:").unwrap_err(), SpecError::Jack("jack:".into()));
    }

    #[test]
    fn wav_is_refused_where_nothing_renders_it() {
        let mut notes = Vec::new();
        let e = OutputSpec::parse("wav:x.wav").unwrap().open(DisconnectPolicy::Pause, &mut notes).err().unwrap();
        assert_eq!(e, OpenError::OfflineOnly { spec: "wav:x.wav".into() });
        assert!(e.to_string().starts_with("--to wav:x.wav: a WAV file is rendered offline by `organ play"), "{e}");
        assert!(!std::path::Path::new("x.wav").exists());
    }
}
