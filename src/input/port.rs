//! `--from port:NAME|N`: a MIDI input port through midir (ALSA sequencer on Linux, CoreMIDI on
//! macOS, WinMM on Windows).
//!
//! midir calls our callback on its own input thread with each complete message (it reassembles
//! SysEx split by ALSA into 256-byte chunks). The callback stamps the message with the monotonic
//! clock and sends it into an unbounded crossbeam channel: it never blocks midir's thread.

use super::InputError;

/// The input ports, in midir's order (index, name).
///
/// # Errors
/// No MIDI system (no ALSA sequencer …), or built without the `midi-ports` feature.
pub fn list() -> Result<Vec<(usize, String)>, InputError> {
    if let Some(why) = crate::output::port::unavailable_reason() {
        return Err(InputError::Unavailable { spec: "port".into(), why: why.to_string() });
    }
    imp::list()
}

#[cfg(feature = "midi-ports")]
pub use imp::PortInput;

#[cfg(feature = "midi-ports")]
mod imp {
    use std::time::Instant;

    use midir::{Ignore, MidiInput, MidiInputConnection};

    use super::super::{InputError, Received, split_messages};
    use crate::midi::Micros;

    fn client(spec: &str) -> Result<MidiInput, InputError> {
        MidiInput::new("organ-in").map_err(|e| InputError::Unavailable {
            spec: spec.into(),
            why: format!("cannot open the MIDI system: {e}"),
        })
    }

    pub fn list() -> Result<Vec<(usize, String)>, InputError> {
        let inp = client("port")?;
        Ok(inp.ports().iter().enumerate().map(|(i, p)| (i, inp.port_name(p).unwrap_or_else(|_| "?".into()))).collect())
    }

    /// A connected input port.
    pub struct PortInput {
        name: String,
        _conn: MidiInputConnection<()>,
    }

    impl PortInput {
        pub fn port_name(&self) -> &str {
            &self.name
        }

        /// Connects to the input port whose name contains `wanted` (case-insensitive), or whose
        /// number is `wanted`.
        pub fn open(
            spec: &str,
            wanted: &str,
            tx: crossbeam_channel::Sender<Received>,
            opened: Instant,
        ) -> Result<PortInput, InputError> {
            if let Some(why) = crate::output::port::unavailable_reason() {
                return Err(InputError::Unavailable { spec: spec.into(), why: why.to_string() });
            }
            let mut inp = client(spec)?;
            // Everything, SysEx included (midir ignores SysEx by default); real-time messages are
            // passed on too and left to the reader to ignore.
            inp.ignore(Ignore::None);
            let ports = inp.ports();
            let names: Vec<String> = ports.iter().map(|p| inp.port_name(p).unwrap_or_else(|_| "?".into())).collect();
            let idx = pick(spec, wanted, &names)?;
            let conn = inp
                .connect(
                    &ports[idx],
                    "organ-in",
                    move |_, bytes, _| {
                        let at = Micros(opened.elapsed().as_micros() as u64);
                        for m in split_messages(bytes) {
                            let _ = tx.send(Received { at, bytes: m });
                        }
                    },
                    (),
                )
                .map_err(|e| InputError::Backend {
                    spec: spec.into(),
                    why: format!("cannot connect to \"{}\": {e}", names[idx]),
                })?;
            Ok(PortInput { name: names[idx].clone(), _conn: conn })
        }
    }

    pub(super) fn pick(spec: &str, wanted: &str, names: &[String]) -> Result<usize, InputError> {
        let listing = || {
            if names.is_empty() {
                "there are no MIDI input ports (is the console's MIDI interface plugged in?)".to_string()
            } else {
                format!(
                    "the input ports are: {}",
                    names.iter().enumerate().map(|(i, n)| format!("{i}: {n}")).collect::<Vec<_>>().join(", ")
                )
            }
        };
        let err = |why: String| InputError::NoSuchPort { spec: spec.into(), why };
        if let Ok(i) = wanted.trim().parse::<usize>() {
            return if i < names.len() { Ok(i) } else { Err(err(format!("no input port number {i}; {}", listing()))) };
        }
        let w = wanted.to_lowercase();
        let hits: Vec<usize> = (0..names.len()).filter(|&i| names[i].to_lowercase().contains(&w)).collect();
        match hits.as_slice() {
            [i] => Ok(*i),
            [] => Err(err(format!("no MIDI input port matches \"{wanted}\"; {}", listing()))),
            _ => Err(err(format!(
                "several input ports match ({}); use more of the name or the port number",
                hits.iter().map(|&i| format!("{i}: {}", names[i])).collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

#[cfg(not(feature = "midi-ports"))]
mod imp {
    use super::super::InputError;
    pub fn list() -> Result<Vec<(usize, String)>, InputError> {
        Err(InputError::Unavailable {
            spec: "port".into(),
            why: "this build of organ has no MIDI port support (built without the midi-ports feature)".into(),
        })
    }
}

#[cfg(all(test, feature = "midi-ports"))]
mod tests {
    use super::imp::pick;

    #[test]
    fn picks_ports_by_number_or_part_of_the_name() {
        let names = vec!["Midi Through Port-0".to_string(), "Rodgers Console MIDI 1".to_string()];
        assert_eq!(pick("port:1", "1", &names).unwrap(), 1);
        assert_eq!(pick("port:rodgers", "rodgers", &names).unwrap(), 1);
        let e = pick("port:x", "Allen", &names).unwrap_err().to_string();
        assert!(e.contains("0: Midi Through Port-0") && e.contains("1: Rodgers Console MIDI 1"), "{e}");
        assert!(pick("port:i", "i", &names).unwrap_err().to_string().contains("several"));
        assert!(pick("port:5", "5", &names).unwrap_err().to_string().contains("no input port number 5"));
    }
}
