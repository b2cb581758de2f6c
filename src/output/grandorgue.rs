//! `--to grandorgue` and `organ grandorgue port`: the right loopback to GrandOrgue for this
//! machine, and what it did.
//!
//! 1. A JACK server is running → a JACK MIDI port `organ:out`, connected to GrandOrgue's JACK
//!    MIDI input when GrandOrgue is running with one.
//! 2. Otherwise, on Linux and macOS → a virtual MIDI port (midir), which GrandOrgue can select.
//! 3. On Windows → the loopback port named in the configuration (loopMIDI), or an error that
//!    explains how to get one: neither GrandOrgue nor midir can create ports there.
//!
//! GrandOrgue scans MIDI sources only at start-up, so the message says when it must be
//! (re)started. The port openers are [`Backends`], the real ones by default, so that every
//! branch can be tested on any machine. Runs on the control thread.

use std::fmt;

use super::Output;
use super::port::{PortError, PortOutput, Unavailable};

/// Opens a MIDI output port by name (a virtual port to create, or an existing port to open).
pub type PortOpener = fn(&str) -> Result<Box<dyn Output>, PortError>;

/// How the loopback opens MIDI ports besides JACK.
#[derive(Clone, Debug)]
pub struct Backends {
    /// Creates a virtual output port (midir `create_virtual`; Linux ALSA, macOS CoreMIDI).
    pub virtual_port: PortOpener,
    /// Opens an existing output port by name (midir; Windows loopMIDI).
    pub named_port: PortOpener,
}

fn create_virtual(name: &str) -> Result<Box<dyn Output>, PortError> {
    Ok(Box::new(PortOutput::create_virtual(name)?))
}

fn open_named(name: &str) -> Result<Box<dyn Output>, PortError> {
    Ok(Box::new(PortOutput::open(name)?))
}

impl Default for Backends {
    /// The real MIDI ports (which say themselves when this machine or build has none).
    fn default() -> Self {
        Backends { virtual_port: create_virtual, named_port: open_named }
    }
}

/// Options of `--to grandorgue` (from the user's configuration).
#[derive(Clone, Debug)]
pub struct LoopbackOptions {
    /// The virtual port's name (default `organ`).
    pub virtual_name: String,
    /// The loopback port to use where virtual ports are impossible (Windows), e.g.
    /// `loopMIDI Port`.
    pub loopback_port: Option<String>,
    /// Whether to try JACK first (default true).
    pub use_jack: bool,
}

impl Default for LoopbackOptions {
    fn default() -> Self {
        LoopbackOptions { virtual_name: "organ".into(), loopback_port: None, use_jack: true }
    }
}

/// An open loopback and a sentence for the user about what was done.
pub struct Loopback {
    pub output: Box<dyn Output>,
    pub message: String,
}

impl fmt::Debug for Loopback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loopback").field("output", &self.output.name()).field("message", &self.message).finish()
    }
}

/// Which platform rules apply (a parameter so that every branch can be tested anywhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// Linux, macOS and other systems where virtual MIDI ports exist.
    VirtualPorts,
    Windows,
}

impl Platform {
    pub fn current() -> Platform {
        if cfg!(windows) { Platform::Windows } else { Platform::VirtualPorts }
    }
}

/// Why JACK was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoJack {
    /// The options said not to try it.
    NotWanted,
    /// Built without the `jack` feature.
    NotBuilt,
    /// libjack is not installed.
    NotInstalled,
    NoServer,
}

impl fmt::Display for NoJack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoJack::NotWanted => "",
            NoJack::NotBuilt => "this build has no JACK support",
            NoJack::NotInstalled => "JACK is not installed",
            NoJack::NoServer => "no JACK server is running",
        })
    }
}

/// Explains loopMIDI when no loopback port is configured on Windows.
pub const LOOPMIDI_HELP: &str = "on Windows neither GrandOrgue nor organ can create a MIDI port: install a loopback driver \
such as loopMIDI (tobias-erichsen.de/software/loopmidi.html), create a port in it (e.g. \"loopMIDI Port\"), \
select that port in GrandOrgue's MIDI settings, and name it in organ's configuration (loopback port) \
or play with --to \"port:loopMIDI Port\"";

/// Why no loopback to GrandOrgue could be opened, with what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum LoopbackError {
    /// JACK was not used, and no virtual port could be created.
    NoVirtualPort { no_jack: NoJack, error: PortError },
    /// Windows, and no loopback port is configured.
    NoLoopbackPort,
    /// Windows: the configured loopback port cannot be opened.
    LoopbackPort { name: String, error: PortError },
    /// A JACK server runs but the port could not be made or connected.
    #[cfg(feature = "jack")]
    Jack(super::jack::JackError),
}

impl fmt::Display for LoopbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopbackError::NoVirtualPort { no_jack, error } => {
                if *no_jack != NoJack::NotWanted {
                    write!(f, "{no_jack}, and ")?;
                }
                match error.unavailable() {
                    Some(Unavailable::NoSequencer) => write!(
                        f,
                        "no virtual MIDI port can be created: this machine has no ALSA sequencer (/dev/snd/seq is missing); \
                         start a JACK server (GrandOrgue can use JACK MIDI), or load the sequencer driver with \
                         `sudo modprobe snd-seq`"
                    ),
                    Some(Unavailable::NotBuilt) => write!(
                        f,
                        "no virtual MIDI port can be created: this build of organ has no MIDI port support (built \
                         without the midi-ports feature); start a JACK server (GrandOrgue can use JACK MIDI)"
                    ),
                    None => write!(f, "no virtual MIDI port can be created: {error}"),
                }
            }
            LoopbackError::NoLoopbackPort => f.write_str(LOOPMIDI_HELP),
            LoopbackError::LoopbackPort { name, error } => {
                write!(f, "loopback port \"{name}\": {error}; {LOOPMIDI_HELP}")
            }
            #[cfg(feature = "jack")]
            LoopbackError::Jack(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoopbackError {}

/// Opens the loopback to GrandOrgue (see the module documentation for the order).
///
/// # Errors
/// No way to reach GrandOrgue here, with what to do about it.
pub fn open(opts: &LoopbackOptions, backends: &Backends) -> Result<Loopback, LoopbackError> {
    let no_jack = match try_jack(opts.use_jack) {
        Ok(opened) => return opened,
        Err(why) => why,
    };
    open_without_jack(opts, backends, Platform::current(), no_jack)
}

/// `Ok(result of opening)` when a JACK server runs, else `Err(why JACK is not used)`.
#[cfg(feature = "jack")]
fn try_jack(use_jack: bool) -> Result<Result<Loopback, LoopbackError>, NoJack> {
    if !use_jack {
        return Err(NoJack::NotWanted);
    }
    match super::jack::server_running() {
        Ok(true) => Ok(open_jack()),
        Ok(false) => Err(NoJack::NoServer),
        Err(_) => Err(NoJack::NotInstalled),
    }
}

#[cfg(not(feature = "jack"))]
fn try_jack(use_jack: bool) -> Result<Result<Loopback, LoopbackError>, NoJack> {
    Err(if use_jack { NoJack::NotBuilt } else { NoJack::NotWanted })
}

/// The non-JACK branches.
///
/// # Errors
/// As [`open`].
pub fn open_without_jack(
    opts: &LoopbackOptions,
    backends: &Backends,
    platform: Platform,
    no_jack: NoJack,
) -> Result<Loopback, LoopbackError> {
    let because = if no_jack == NoJack::NotWanted { String::new() } else { format!("{no_jack}; ") };
    match platform {
        Platform::VirtualPorts => {
            let output = (backends.virtual_port)(&opts.virtual_name)
                .map_err(|error| LoopbackError::NoVirtualPort { no_jack, error })?;
            Ok(Loopback {
                output,
                message: format!(
                    "{because}created the virtual MIDI port \"{}\": GrandOrgue only sees MIDI ports that exist when it starts, \
                     so (re)start GrandOrgue now and enable \"{}\" in its MIDI settings (or keep the port open with \
                     `organ grandorgue port` and start GrandOrgue once)",
                    opts.virtual_name, opts.virtual_name
                ),
            })
        }
        Platform::Windows => {
            let Some(name) = &opts.loopback_port else {
                return Err(LoopbackError::NoLoopbackPort);
            };
            let output = (backends.named_port)(name)
                .map_err(|error| LoopbackError::LoopbackPort { name: name.clone(), error })?;
            Ok(Loopback {
                output,
                message: format!(
                    "playing to the loopback port \"{name}\"; GrandOrgue must have it enabled in its MIDI settings \
                     (loopMIDI must be running before GrandOrgue starts)"
                ),
            })
        }
    }
}

/// JACK: our port, connected to GrandOrgue's input(s) when GrandOrgue listens on JACK MIDI.
#[cfg(feature = "jack")]
fn open_jack() -> Result<Loopback, LoopbackError> {
    let mut out = super::jack::open_port("grandorgue").map_err(LoopbackError::Jack)?;
    let targets: Vec<String> =
        out.midi_inputs().into_iter().filter(|p| p.to_lowercase().contains("grandorgue")).collect();
    let mut connected = Vec::new();
    for t in &targets {
        connected.push(out.connect(t).map_err(LoopbackError::Jack)?);
    }
    let port = out.port_name().to_string();
    let message = if connected.is_empty() {
        format!(
            "created the JACK MIDI port {port}; GrandOrgue is not listening on JACK MIDI: start (or restart) GrandOrgue now \
             with JACK MIDI enabled (it only sees MIDI sources that exist when it starts); it connects to {port} itself"
        )
    } else {
        format!("JACK: connected {port} to {}", connected.join(", "))
    };
    Ok(Loopback { output: Box::new(out), message })
}

/// `organ grandorgue port --via jack`: a JACK MIDI port for GrandOrgue, whatever else exists.
///
/// # Errors
/// No JACK here (not installed, no server), or JACK refuses the port.
#[cfg(feature = "jack")]
pub fn open_jack_port() -> Result<Loopback, LoopbackError> {
    let out = super::jack::open_port("jack").map_err(LoopbackError::Jack)?;
    let message = format!(
        "created the JACK MIDI port {}; start GrandOrgue now (with JACK MIDI enabled): it connects to the MIDI sources it finds at start-up",
        out.port_name()
    );
    Ok(Loopback { output: Box::new(out), message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputError, Stamp};

    struct Fake(String);
    impl Output for Fake {
        fn name(&self) -> &str {
            &self.0
        }
        fn send(&mut self, _: &[u8], _: Stamp) -> Result<(), OutputError> {
            Ok(())
        }
    }
    fn fake(name: &str) -> Result<Box<dyn Output>, PortError> {
        Ok(Box::new(Fake(format!("port:{name}"))))
    }
    fn missing(name: &str) -> Result<Box<dyn Output>, PortError> {
        Err(PortError::System(format!("no port named {name}")))
    }
    fn no_sequencer(_: &str) -> Result<Box<dyn Output>, PortError> {
        Err(PortError::Unavailable { wanted: None, why: Unavailable::NoSequencer })
    }

    #[test]
    fn virtual_port_where_possible() {
        let b = Backends { virtual_port: fake, named_port: missing };
        let l = open_without_jack(&LoopbackOptions::default(), &b, Platform::VirtualPorts, NoJack::NoServer).unwrap();
        assert_eq!(l.output.name(), "port:organ");
        assert!(l.message.contains("(re)start GrandOrgue"), "{}", l.message);
        let b = Backends { virtual_port: no_sequencer, named_port: missing };
        let e = open_without_jack(&LoopbackOptions::default(), &b, Platform::VirtualPorts, NoJack::NoServer)
            .unwrap_err()
            .to_string();
        assert!(e.contains("JACK"), "{e}");
        assert!(e.starts_with("no JACK server is running, and no virtual MIDI port can be created: "), "{e}");
        assert!(e.contains("no ALSA sequencer") && e.contains("modprobe snd-seq"), "{e}");
    }

    #[test]
    fn windows_needs_a_configured_loopback() {
        let b = Backends { virtual_port: fake, named_port: fake };
        let e = open_without_jack(&LoopbackOptions::default(), &b, Platform::Windows, NoJack::NotWanted)
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopMIDI"), "{e}");
        let opts = LoopbackOptions { loopback_port: Some("loopMIDI Port".into()), ..LoopbackOptions::default() };
        let l = open_without_jack(&opts, &b, Platform::Windows, NoJack::NotWanted).unwrap();
        assert_eq!(l.output.name(), "port:loopMIDI Port");
        let b = Backends { virtual_port: fake, named_port: missing };
        let e = open_without_jack(&opts, &b, Platform::Windows, NoJack::NotWanted).unwrap_err().to_string();
        assert!(e.contains("no port named loopMIDI Port") && e.contains("loopMIDI"), "{e}");
    }
}
