//! `port:NAME`: a MIDI output port through midir (ALSA sequencer on Linux, CoreMIDI on macOS,
//! WinMM on Windows). Covers USB-MIDI interfaces, the WIDI Bud Pro, loopMIDI and IAC.
//!
//! Opening runs on the control thread. `send` is midir's send: on ALSA a bounded OS call into
//! alsa-lib (which may allocate inside) — the one documented exception to the engine's
//! no-allocation rule, measured by the lateness benchmark.

use std::fmt;

use super::{Output, OutputError, OutputErrorKind, Stamp};

/// Why there are no MIDI ports at all on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Linux without `/dev/snd/seq`.
    NoSequencer,
    /// Built without the `midi-ports` feature.
    NotBuilt,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoSequencer => f.write_str(
                "this machine has no ALSA sequencer (/dev/snd/seq is missing), so there are no MIDI ports: \
                 plug in the USB-MIDI interface, or load the driver with `sudo modprobe snd-seq`; \
                 to play without hardware use --to file:out.mid or --to null",
            ),
            Unavailable::NotBuilt => {
                f.write_str("this build of organ has no MIDI port support (built without the midi-ports feature)")
            }
        }
    }
}

/// Why a MIDI port could not be listed, opened or created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortError {
    /// No MIDI ports on this machine; `wanted` is the port asked for (`port:NAME`), if any.
    Unavailable {
        wanted: Option<String>,
        why: Unavailable,
    },
    /// The MIDI system could not be opened.
    System(String),
    /// `port:N` beyond the ports there are.
    NoSuchNumber {
        wanted: String,
        number: usize,
        ports: Vec<String>,
    },
    /// No port's name contains the text asked for.
    NoMatch {
        wanted: String,
        ports: Vec<String>,
    },
    /// Several ports match: (number, name).
    Ambiguous {
        wanted: String,
        matches: Vec<(usize, String)>,
    },
    Connect {
        wanted: String,
        port: String,
        error: String,
    },
    CreateVirtual {
        name: String,
        error: String,
    },
    /// Virtual ports do not exist on this platform (Windows).
    VirtualUnsupported {
        name: String,
    },
}

impl PortError {
    /// Why there are no ports at all, when that is the problem.
    pub fn unavailable(&self) -> Option<Unavailable> {
        match self {
            PortError::Unavailable { why, .. } => Some(*why),
            _ => None,
        }
    }
}

fn listing(ports: &[String]) -> String {
    if ports.is_empty() {
        "there are no MIDI output ports (is the interface plugged in?)".to_string()
    } else {
        format!(
            "the ports are: {}",
            ports.iter().enumerate().map(|(i, n)| format!("{i}: {n}")).collect::<Vec<_>>().join(", ")
        )
    }
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortError::Unavailable { wanted: Some(w), why } => write!(f, "port:{w}: {why}"),
            PortError::Unavailable { wanted: None, why } => why.fmt(f),
            PortError::System(e) => write!(f, "cannot open the MIDI system: {e}"),
            PortError::NoSuchNumber { wanted, number, ports } => {
                write!(f, "port:{wanted}: no port number {number}; {}", listing(ports))
            }
            PortError::NoMatch { wanted, ports } => {
                write!(f, "port:{wanted}: no MIDI output port matches \"{wanted}\"; {}", listing(ports))
            }
            PortError::Ambiguous { wanted, matches } => write!(
                f,
                "port:{wanted}: several ports match ({}); use more of the name or the port number",
                matches.iter().map(|(i, n)| format!("{i}: {n}")).collect::<Vec<_>>().join(", ")
            ),
            PortError::Connect { wanted, port, error } => {
                write!(f, "port:{wanted}: cannot connect to \"{port}\": {error}")
            }
            PortError::CreateVirtual { name, error } => {
                write!(f, "cannot create the virtual MIDI port \"{name}\": {error}")
            }
            PortError::VirtualUnsupported { name } => write!(
                f,
                "virtual MIDI ports cannot be created on this system; install a loopback driver such as loopMIDI, \
                 create a port named \"{name}\", and play to it with --to port:{name}"
            ),
        }
    }
}

impl std::error::Error for PortError {}

/// Why MIDI ports are unavailable on this machine, checked before midir is touched (midir's
/// ALSA backend fails with a generic error and alsa-lib prints noise to stderr otherwise).
pub fn unavailable_reason() -> Option<Unavailable> {
    #[cfg(target_os = "linux")]
    {
        if !std::path::Path::new("/dev/snd/seq").exists() {
            return Some(Unavailable::NoSequencer);
        }
    }
    if !cfg!(feature = "midi-ports") {
        return Some(Unavailable::NotBuilt);
    }
    None
}

/// The output ports, in midir's order (index, name).
///
/// # Errors
/// No MIDI system on this machine.
pub fn list() -> Result<Vec<(usize, String)>, PortError> {
    if let Some(why) = unavailable_reason() {
        return Err(PortError::Unavailable { wanted: None, why });
    }
    imp::list()
}

/// A connected output port.
pub struct PortOutput {
    name: String,
    #[cfg(feature = "midi-ports")]
    conn: midir::MidiOutputConnection,
}

impl PortOutput {
    /// Opens the port whose name contains `wanted` (case-insensitive) or whose index is `wanted`.
    ///
    /// # Errors
    /// No MIDI system, no such port (the message lists the ports that exist), or several ports
    /// match.
    pub fn open(wanted: &str) -> Result<PortOutput, PortError> {
        if let Some(why) = unavailable_reason() {
            return Err(PortError::Unavailable { wanted: Some(wanted.to_string()), why });
        }
        imp::open(wanted)
    }

    /// Creates a virtual output port other programs (GrandOrgue) can connect to (Linux, macOS).
    ///
    /// # Errors
    /// No MIDI system, or virtual ports are impossible on this platform.
    pub fn create_virtual(name: &str) -> Result<PortOutput, PortError> {
        if let Some(why) = unavailable_reason() {
            return Err(PortError::Unavailable { wanted: None, why });
        }
        imp::create_virtual(name)
    }
}

impl Output for PortOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
        #[cfg(feature = "midi-ports")]
        {
            self.conn.send(bytes).map_err(|e| match e {
                midir::SendError::InvalidData(_) => {
                    OutputError { kind: OutputErrorKind::Backend, detail: "invalid data" }
                }
                midir::SendError::Other(_) => OutputError {
                    kind: OutputErrorKind::Disconnected,
                    detail: "the MIDI port refused the message (device unplugged?)",
                },
            })
        }
        #[cfg(not(feature = "midi-ports"))]
        {
            let _ = bytes;
            Err(OutputError { kind: OutputErrorKind::Backend, detail: "no MIDI port support" })
        }
    }
}

#[cfg(feature = "midi-ports")]
mod imp {
    use super::{PortError, PortOutput};
    use midir::MidiOutput;

    fn client() -> Result<MidiOutput, PortError> {
        MidiOutput::new("organ").map_err(|e| PortError::System(e.to_string()))
    }

    pub fn list() -> Result<Vec<(usize, String)>, PortError> {
        let out = client()?;
        Ok(out.ports().iter().enumerate().map(|(i, p)| (i, out.port_name(p).unwrap_or_else(|_| "?".into()))).collect())
    }

    pub fn open(wanted: &str) -> Result<PortOutput, PortError> {
        let out = client()?;
        let ports = out.ports();
        let names: Vec<String> = ports.iter().map(|p| out.port_name(p).unwrap_or_else(|_| "?".into())).collect();
        let idx = if let Ok(i) = wanted.trim().parse::<usize>() {
            if i >= names.len() {
                return Err(PortError::NoSuchNumber { wanted: wanted.to_string(), number: i, ports: names });
            }
            i
        } else {
            let w = wanted.to_lowercase();
            let matches: Vec<usize> = (0..names.len()).filter(|&i| names[i].to_lowercase().contains(&w)).collect();
            match matches.as_slice() {
                [i] => *i,
                [] => return Err(PortError::NoMatch { wanted: wanted.to_string(), ports: names }),
                _ => {
                    return Err(PortError::Ambiguous {
                        wanted: wanted.to_string(),
                        matches: matches.iter().map(|&i| (i, names[i].clone())).collect(),
                    });
                }
            }
        };
        let conn = out.connect(&ports[idx], "organ").map_err(|e| PortError::Connect {
            wanted: wanted.to_string(),
            port: names[idx].clone(),
            error: e.to_string(),
        })?;
        Ok(PortOutput { name: format!("port:{}", names[idx]), conn })
    }

    #[cfg(unix)]
    pub fn create_virtual(name: &str) -> Result<PortOutput, PortError> {
        use midir::os::unix::VirtualOutput;
        let out = client()?;
        let conn = out
            .create_virtual(name)
            .map_err(|e| PortError::CreateVirtual { name: name.to_string(), error: e.to_string() })?;
        Ok(PortOutput { name: format!("virtual port \"{name}\""), conn })
    }

    #[cfg(not(unix))]
    pub fn create_virtual(name: &str) -> Result<PortOutput, PortError> {
        Err(PortError::VirtualUnsupported { name: name.to_string() })
    }
}

#[cfg(not(feature = "midi-ports"))]
mod imp {
    use super::{PortError, PortOutput, Unavailable};
    fn not_built<T>() -> Result<T, PortError> {
        Err(PortError::Unavailable { wanted: None, why: Unavailable::NotBuilt })
    }
    pub fn list() -> Result<Vec<(usize, String)>, PortError> {
        not_built()
    }
    pub fn open(_: &str) -> Result<PortOutput, PortError> {
        not_built()
    }
    pub fn create_virtual(_: &str) -> Result<PortOutput, PortError> {
        not_built()
    }
}
