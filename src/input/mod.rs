//! MIDI input: what the console sends back (`--from port:NAME|N`, `--from jack[:PORT]`).
//!
//! [`open`] connects to a source and returns an [`Input`]: every message is stamped on arrival
//! with the source's own clock ([`Received::at`], microseconds since the input was opened) and
//! handed, whole (a SysEx as one message, from F0 to F7), to a crossbeam channel that any
//! ordinary thread reads ([`Input::messages`]). `organ monitor`, `organ learn`, the recorder
//! ([`record`]) and the console remote of `organ service --from` ([`crate::service::console`]) all
//! read it the same way.
//!
//! Threads: the backend delivers on its own thread — midir's input thread for ports, JACK's
//! real-time process callback for JACK (which only copies into a preallocated lock-free ring; a
//! reader thread of ours turns the ring into channel messages). Nothing here touches the
//! playback engine or its hot path, and nothing blocks a backend's thread: the channel is
//! unbounded, and a full JACK ring drops (and counts) rather than waits.
//!
//! Opening and listing run on the control thread.

#[cfg(feature = "jack")]
pub mod jack;
pub mod learn;
pub mod monitor;
pub mod port;
pub mod ports;
pub mod record;

use std::fmt;
use std::time::Instant;

use crate::midi::{HexBytes, Micros, expected_data_len};

/// One message from the console, stamped when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Arrival time, microseconds since the input was opened, on the source's clock (JACK's
    /// frame clock for JACK, the monotonic clock for ports).
    pub at: Micros,
    /// One complete message: a channel or system message, or a SysEx from F0 to F7.
    pub bytes: Box<[u8]>,
}

impl Received {
    /// System real-time messages (clock, active sensing, …): traffic a console may send all the
    /// time, never a control's message.
    pub fn is_realtime(&self) -> bool {
        self.bytes.first().is_some_and(|&b| b >= 0xF8)
    }
}

/// Why an input could not be opened or listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// The `--from` text is not a source form.
    BadSpec { spec: String },
    /// This build or this machine has no such backend (no ALSA sequencer, no libjack, built
    /// without the feature …); `why` says what to do.
    Unavailable { spec: String, why: String },
    /// No port matches, or several do; `ports` lists what exists.
    NoSuchPort { spec: String, why: String },
    /// The backend refused (connecting, activating a JACK client …).
    Backend { spec: String, why: String },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::BadSpec { spec } => write!(f, "--from {spec}: not a MIDI source; use {SOURCE_FORMS}"),
            InputError::Unavailable { spec, why }
            | InputError::NoSuchPort { spec, why }
            | InputError::Backend { spec, why } => write!(f, "--from {spec}: {why}"),
        }
    }
}

impl InputError {
    /// The message with `flag` in place of `--from`, for a source given by another flag
    /// (`organ play --record`).
    pub fn for_flag(&self, flag: &str) -> String {
        let s = self.to_string();
        s.strip_prefix("--from ").map_or(s.clone(), |rest| format!("{flag} {rest}"))
    }
}

impl std::error::Error for InputError {}

/// Why `organ monitor`, `organ learn` or `organ ports` failed.
#[derive(Debug)]
pub enum ConsoleError {
    Input(InputError),
    /// The organ definition is not valid (with file, line and column).
    Config(crate::organ::ConfigError),
    Io {
        file: String,
        error: String,
    },
    /// The organ file is not TOML (`file` carries line and column).
    Toml {
        file: String,
        error: String,
    },
    /// A bad combination of options.
    Usage(String),
    /// An output for `--verify` could not be opened or failed.
    Output(crate::app::Error),
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::Input(e) => e.fmt(f),
            ConsoleError::Config(e) => e.fmt(f),
            ConsoleError::Io { file, error } => write!(f, "{file}: {error}"),
            ConsoleError::Toml { file, error } => write!(f, "{file}: {error}"),
            ConsoleError::Usage(s) => f.write_str(s),
            ConsoleError::Output(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConsoleError {}

impl From<InputError> for ConsoleError {
    fn from(e: InputError) -> Self {
        ConsoleError::Input(e)
    }
}

impl From<crate::organ::ConfigError> for ConsoleError {
    fn from(e: crate::organ::ConfigError) -> Self {
        ConsoleError::Config(e)
    }
}

/// The forms `--from` accepts, for help and error messages.
pub const SOURCE_FORMS: &str =
    "port:NAME or port:N (a MIDI input port, see `organ ports`), jack (a JACK MIDI input organ-in:in), jack:PORT";

/// An open MIDI input. Dropping it disconnects (and stops its threads).
pub struct Input {
    name: String,
    opened: Instant,
    rx: crossbeam_channel::Receiver<Received>,
    backend: Backend,
}

/// What keeps the connection open (dropped with the `Input`).
enum Backend {
    #[cfg(feature = "midi-ports")]
    #[allow(dead_code)] // held for its Drop: it disconnects the port
    Port(port::PortInput),
    #[cfg(feature = "jack")]
    Jack(jack::JackInput),
    /// Fed by the test helper [`Input::from_channel`].
    Channel,
}

impl Input {
    /// How the user named it, e.g. `port:Console MIDI 1` or `jack:console:out`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The received messages, in arrival order.
    pub fn messages(&self) -> &crossbeam_channel::Receiver<Received> {
        &self.rx
    }

    /// When it was opened (the zero of [`Received::at`]).
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Messages lost before they reached the channel (a JACK ring overflow, an over-long SysEx).
    pub fn dropped(&self) -> u64 {
        match &self.backend {
            #[cfg(feature = "jack")]
            Backend::Jack(j) => j.dropped(),
            _ => 0,
        }
    }

    /// An input fed by hand (tests, and consumers that replay a capture).
    pub fn from_channel(name: &str, rx: crossbeam_channel::Receiver<Received>) -> Input {
        Input { name: name.to_string(), opened: Instant::now(), rx, backend: Backend::Channel }
    }

    /// The JACK port name of a `jack` input (e.g. `organ-in:in`), for connecting sources to it.
    pub fn jack_port(&self) -> Option<&str> {
        match &self.backend {
            #[cfg(feature = "jack")]
            Backend::Jack(j) => Some(j.port_name()),
            _ => None,
        }
    }
}

/// Opens a source from its `--from` form: `port:NAME` / `port:N` (midir), `jack` or `jack:PORT`
/// (a JACK MIDI input port `organ-in:in`, connected to the JACK MIDI output named).
///
/// # Errors
/// An unknown form, a backend missing in this build or on this machine, no such port.
pub fn open(spec: &str) -> Result<Input, InputError> {
    let spec = spec.trim();
    let (kind, arg) = spec.split_once(':').map_or((spec, ""), |(k, a)| (k, a.trim()));
    match kind.to_ascii_lowercase().as_str() {
        "port" if !arg.is_empty() => open_port(spec, arg),
        "jack" => open_jack(spec, (!arg.is_empty()).then_some(arg)),
        _ => Err(InputError::BadSpec { spec: spec.to_string() }),
    }
}

#[cfg(feature = "midi-ports")]
fn open_port(spec: &str, wanted: &str) -> Result<Input, InputError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let opened = Instant::now();
    let p = port::PortInput::open(spec, wanted, tx, opened)?;
    Ok(Input { name: format!("port:{}", p.port_name()), opened, rx, backend: Backend::Port(p) })
}

#[cfg(not(feature = "midi-ports"))]
fn open_port(spec: &str, _wanted: &str) -> Result<Input, InputError> {
    Err(InputError::Unavailable {
        spec: spec.to_string(),
        why: "this build of organ has no MIDI port support (built without the midi-ports feature)".into(),
    })
}

#[cfg(feature = "jack")]
fn open_jack(spec: &str, source: Option<&str>) -> Result<Input, InputError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let j = jack::JackInput::open(spec, source, tx)?;
    let name = match j.connected() {
        Some(src) => format!("jack:{src}"),
        None => format!("jack ({})", j.port_name()),
    };
    Ok(Input { name, opened: j.opened(), rx, backend: Backend::Jack(j) })
}

#[cfg(not(feature = "jack"))]
fn open_jack(spec: &str, _source: Option<&str>) -> Result<Input, InputError> {
    Err(InputError::Unavailable {
        spec: spec.to_string(),
        why: "this build of organ has no JACK support (built without the jack feature)".into(),
    })
}

/// Splits one delivered buffer into complete messages. Backends deliver one message per event
/// as a rule; this also copes with several messages in one buffer and drops stray data bytes
/// (a message torn by a cable pulled mid-way). An unterminated SysEx is dropped.
pub fn split_messages(bytes: &[u8]) -> Vec<Box<[u8]>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let status = bytes[i];
        if status < 0x80 {
            i += 1; // a data byte without a status: nothing can be made of it
            continue;
        }
        if status == 0xF0 {
            // Real-time bytes may be interleaved in a SysEx: they are messages of their own.
            let mut body = vec![0xF0];
            let mut j = i + 1;
            let mut closed = false;
            while j < bytes.len() {
                let b = bytes[j];
                if b >= 0xF8 {
                    out.push(vec![b].into_boxed_slice());
                } else if b == 0xF7 {
                    body.push(b);
                    closed = true;
                    j += 1;
                    break;
                } else if b >= 0x80 {
                    break; // a new status ends a broken SysEx
                } else {
                    body.push(b);
                }
                j += 1;
            }
            if closed {
                out.push(body.into_boxed_slice());
            }
            i = j;
            continue;
        }
        let Some(n) = expected_data_len(status) else {
            i += 1;
            continue;
        };
        let end = i + 1 + n;
        if end <= bytes.len() && bytes[i + 1..end].iter().all(|&b| b < 0x80) {
            out.push(bytes[i..end].into());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Text safe to print on a terminal: control characters (ESC and the like, from a file someone
/// else wrote) and the Unicode direction overrides are shown as `?` (the characters
/// [`crate::text::shown`] escapes).
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if crate::text::is_unsafe(c) { '?' } else { c }).collect()
}

/// `F0 41 10 … 4C F7`: long messages shortened for a meaning column (the raw column shows all).
pub fn short_hex(bytes: &[u8]) -> String {
    if bytes.len() <= 12 {
        HexBytes(bytes).to_string()
    } else {
        format!("{} … {}", HexBytes(&bytes[..4]), HexBytes(&bytes[bytes.len() - 2..]))
    }
}

/// The MIDI input ports (index, name), for `organ ports` and `--from port:N`.
///
/// # Errors
/// No MIDI system on this machine, or built without port support.
pub fn list_ports() -> Result<Vec<(usize, String)>, InputError> {
    port::list()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_buffers_into_messages() {
        let m = split_messages(&[0x90, 60, 100, 0xF0, 0x41, 0xF8, 0x10, 0xF7, 0xC0, 5]);
        let m: Vec<&[u8]> = m.iter().map(|b| &b[..]).collect();
        assert_eq!(m, vec![&[0x90, 60, 100][..], &[0xF8], &[0xF0, 0x41, 0x10, 0xF7], &[0xC0, 5]]);
        // A torn message and an unterminated SysEx are dropped; what follows survives.
        let m = split_messages(&[0x90, 60, 0xB0, 7, 100, 0xF0, 0x41, 0x10]);
        assert_eq!(m.len(), 1);
        assert_eq!(&m[0][..], &[0xB0, 7, 100]);
        assert!(split_messages(&[0x12, 0x34]).is_empty());
    }

    #[test]
    fn spec_forms() {
        assert!(matches!(open("usb:x"), Err(InputError::BadSpec { .. })));
        assert!(matches!(open("port:"), Err(InputError::BadSpec { .. })));
        let e = open("nonsense").err().unwrap().to_string();
        assert!(e.contains("port:NAME") && e.contains("jack:PORT"), "{e}");
    }

    #[test]
    fn printable_hides_control_characters() {
        assert_eq!(printable("Gt \u{1b}[2JPrincipal"), "Gt ?[2JPrincipal");
        // the one-byte CSI, and the direction overrides that make a name read backwards
        assert_eq!(printable("Gt \u{9b}31m\u{202e}8 lapicnirP\u{2066}x"), "Gt ?31m?8 lapicnirP?x");
        assert_eq!(short_hex(&[0xF0, 0x41, 0x10, 0x30, 0x12, 1, 0, 0, 0, 0, 0, 0, 0x6F, 0xF7]), "F0 41 10 30 … 6F F7");
    }
}
