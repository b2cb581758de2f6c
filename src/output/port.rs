//! `port:NAME`: a MIDI output port through midir (ALSA sequencer on Linux, CoreMIDI on macOS,
//! WinMM on Windows). Covers USB-MIDI interfaces, the WIDI Bud Pro, loopMIDI and IAC.
//!
//! Opening runs on the control thread. `send` is midir's send: on ALSA a bounded OS call into
//! alsa-lib (which may allocate inside) — the one documented exception to the engine's
//! no-allocation rule, measured by the lateness benchmark.

use super::{Output, OutputError, OutputErrorKind, Stamp};

/// Why MIDI ports are unavailable on this machine, checked before midir is touched (midir's
/// ALSA backend fails with a generic error and alsa-lib prints noise to stderr otherwise).
pub fn unavailable_reason() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        if !std::path::Path::new("/dev/snd/seq").exists() {
            return Some(
                "this machine has no ALSA sequencer (/dev/snd/seq is missing), so there are no MIDI ports: \
                 plug in the USB-MIDI interface, or load the driver with `sudo modprobe snd-seq`; \
                 to play without hardware use --to file:out.mid or --to null"
                    .into(),
            );
        }
    }
    if !cfg!(feature = "midi-ports") {
        return Some("this build of organ has no MIDI port support (built without the midi-ports feature)".into());
    }
    None
}

/// The output ports, in midir's order (index, name).
///
/// # Errors
/// No MIDI system on this machine.
pub fn list() -> Result<Vec<(usize, String)>, String> {
    if let Some(r) = unavailable_reason() {
        return Err(r);
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
    pub fn open(wanted: &str) -> Result<PortOutput, String> {
        if let Some(r) = unavailable_reason() {
            return Err(format!("port:{wanted}: {r}"));
        }
        imp::open(wanted)
    }

    /// Creates a virtual output port other programs (GrandOrgue) can connect to (Linux, macOS).
    ///
    /// # Errors
    /// No MIDI system, or virtual ports are impossible on this platform.
    pub fn create_virtual(name: &str) -> Result<PortOutput, String> {
        if let Some(r) = unavailable_reason() {
            return Err(r);
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
    use super::PortOutput;
    use midir::MidiOutput;

    fn client() -> Result<MidiOutput, String> {
        MidiOutput::new("organ").map_err(|e| format!("cannot open the MIDI system: {e}"))
    }

    pub fn list() -> Result<Vec<(usize, String)>, String> {
        let out = client()?;
        Ok(out.ports().iter().enumerate().map(|(i, p)| (i, out.port_name(p).unwrap_or_else(|_| "?".into()))).collect())
    }

    pub fn open(wanted: &str) -> Result<PortOutput, String> {
        let out = client()?;
        let ports = out.ports();
        let names: Vec<String> = ports.iter().map(|p| out.port_name(p).unwrap_or_else(|_| "?".into())).collect();
        let listing = || {
            if names.is_empty() {
                "there are no MIDI output ports (is the interface plugged in?)".to_string()
            } else {
                format!(
                    "the ports are: {}",
                    names.iter().enumerate().map(|(i, n)| format!("{i}: {n}")).collect::<Vec<_>>().join(", ")
                )
            }
        };
        let idx = if let Ok(i) = wanted.trim().parse::<usize>() {
            if i >= names.len() {
                return Err(format!("port:{wanted}: no port number {i}; {}", listing()));
            }
            i
        } else {
            let w = wanted.to_lowercase();
            let matches: Vec<usize> = (0..names.len()).filter(|&i| names[i].to_lowercase().contains(&w)).collect();
            match matches.as_slice() {
                [i] => *i,
                [] => return Err(format!("port:{wanted}: no MIDI output port matches \"{wanted}\"; {}", listing())),
                _ => {
                    return Err(format!(
                        "port:{wanted}: several ports match ({}); use more of the name or the port number",
                        matches.iter().map(|&i| format!("{i}: {}", names[i])).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        };
        let conn = out
            .connect(&ports[idx], "organ")
            .map_err(|e| format!("port:{wanted}: cannot connect to \"{}\": {e}", names[idx]))?;
        Ok(PortOutput { name: format!("port:{}", names[idx]), conn })
    }

    #[cfg(unix)]
    pub fn create_virtual(name: &str) -> Result<PortOutput, String> {
        use midir::os::unix::VirtualOutput;
        let out = client()?;
        let conn =
            out.create_virtual(name).map_err(|e| format!("cannot create the virtual MIDI port \"{name}\": {e}"))?;
        Ok(PortOutput { name: format!("virtual port \"{name}\""), conn })
    }

    #[cfg(not(unix))]
    pub fn create_virtual(name: &str) -> Result<PortOutput, String> {
        Err(format!(
            "virtual MIDI ports cannot be created on this system; install a loopback driver such as loopMIDI, \
             create a port named \"{name}\", and play to it with --to port:{name}"
        ))
    }
}

#[cfg(not(feature = "midi-ports"))]
mod imp {
    use super::PortOutput;
    pub fn list() -> Result<Vec<(usize, String)>, String> {
        Err("built without MIDI port support".into())
    }
    pub fn open(_: &str) -> Result<PortOutput, String> {
        Err("built without MIDI port support".into())
    }
    pub fn create_virtual(_: &str) -> Result<PortOutput, String> {
        Err("built without MIDI port support".into())
    }
}
