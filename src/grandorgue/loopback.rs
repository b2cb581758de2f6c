//! `--to grandorgue`: the right loopback to GrandOrgue for this machine, and what it did.
//!
//! 1. A JACK server is running → a JACK MIDI port `organ:out`, connected to GrandOrgue's JACK
//!    MIDI input when GrandOrgue is running with one.
//! 2. Otherwise, on Linux and macOS → a virtual MIDI port (midir), which GrandOrgue can select.
//! 3. On Windows → the loopback port named in the configuration (loopMIDI), or an error that
//!    explains how to get one: neither GrandOrgue nor midir can create ports there.
//!
//! GrandOrgue scans MIDI sources only at start-up, so the message says when it must be
//! (re)started. The midir ports come from the caller ([`Backends`]): this module does not depend
//! on midir. Runs on the control thread.

use crate::output::Output;

/// Opens a MIDI output port by name (a virtual port to create, or an existing port to open).
pub type PortOpener = fn(&str) -> Result<Box<dyn Output>, String>;

/// Where `--to grandorgue` may go besides JACK, and how to open it.
#[derive(Clone, Debug, Default)]
pub struct Backends {
    /// Creates a virtual output port (midir `create_virtual`; Linux ALSA, macOS CoreMIDI).
    pub virtual_port: Option<PortOpener>,
    /// Opens an existing output port by name (midir; Windows loopMIDI).
    pub named_port: Option<PortOpener>,
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

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// Explains loopMIDI when no loopback port is configured on Windows.
pub const LOOPMIDI_HELP: &str = "on Windows neither GrandOrgue nor organ can create a MIDI port: install a loopback driver \
such as loopMIDI (tobias-erichsen.de/software/loopmidi.html), create a port in it (e.g. \"loopMIDI Port\"), \
select that port in GrandOrgue's MIDI settings, and name it in organ's configuration (loopback port) \
or play with --to \"port:loopMIDI Port\"";

/// Opens the loopback to GrandOrgue (see the module documentation for the order).
///
/// # Errors
/// No way to reach GrandOrgue here, with what to do about it.
pub fn open_grandorgue(opts: &LoopbackOptions, backends: &Backends) -> Result<Loopback, String> {
    let why_not_jack = match try_jack(opts.use_jack) {
        Ok(opened) => return opened,
        Err(why) => why,
    };
    open_without_jack(opts, backends, Platform::current(), &why_not_jack)
}

/// `Ok(result of opening)` when a JACK server runs, else `Err(why JACK is not used)`.
#[cfg(feature = "jack")]
fn try_jack(use_jack: bool) -> Result<Result<Loopback, String>, String> {
    if !use_jack {
        return Err(String::new());
    }
    match crate::output::jack::server_running() {
        Ok(true) => Ok(open_jack()),
        Ok(false) => Err("no JACK server is running".into()),
        Err(_) => Err("JACK is not installed".into()),
    }
}

#[cfg(not(feature = "jack"))]
fn try_jack(_use_jack: bool) -> Result<Result<Loopback, String>, String> {
    Err("this build has no JACK support".into())
}

/// The non-JACK branches.
///
/// # Errors
/// As [`open_grandorgue`].
pub fn open_without_jack(
    opts: &LoopbackOptions,
    backends: &Backends,
    platform: Platform,
    why_not_jack: &str,
) -> Result<Loopback, String> {
    let because = if why_not_jack.is_empty() { String::new() } else { format!("{why_not_jack}; ") };
    match platform {
        Platform::VirtualPorts => {
            let Some(open) = backends.virtual_port else {
                return Err(format!(
                    "--to grandorgue: {because}a virtual MIDI port needs the MIDI port output, which this build does not have; \
                     start a JACK server (GrandOrgue can use JACK MIDI) or use --to port:NAME with a loopback port"
                ));
            };
            let output = open(&opts.virtual_name)?;
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
                return Err(format!("--to grandorgue: {LOOPMIDI_HELP}"));
            };
            let Some(open) = backends.named_port else {
                return Err(format!(
                    "--to grandorgue: the loopback port \"{name}\" needs the MIDI port output, which this build does not have"
                ));
            };
            let output =
                open(name).map_err(|e| format!("--to grandorgue: loopback port \"{name}\": {e}; {LOOPMIDI_HELP}"))?;
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
fn open_jack() -> Result<Loopback, String> {
    let mut out = crate::output::jack::open_port("grandorgue")?;
    let targets: Vec<String> =
        out.midi_inputs().into_iter().filter(|p| p.to_lowercase().contains("grandorgue")).collect();
    let mut connected = Vec::new();
    for t in &targets {
        connected.push(out.connect(t)?);
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
    fn fake(name: &str) -> Result<Box<dyn Output>, String> {
        Ok(Box::new(Fake(format!("port:{name}"))))
    }
    fn missing(name: &str) -> Result<Box<dyn Output>, String> {
        Err(format!("no port named {name}"))
    }

    #[test]
    fn virtual_port_where_possible() {
        let b = Backends { virtual_port: Some(fake), named_port: None };
        let l = open_without_jack(&LoopbackOptions::default(), &b, Platform::VirtualPorts, "no JACK server is running")
            .unwrap();
        assert_eq!(l.output.name(), "port:organ");
        assert!(l.message.contains("(re)start GrandOrgue"), "{}", l.message);
        let e = open_without_jack(&LoopbackOptions::default(), &Backends::default(), Platform::VirtualPorts, "")
            .unwrap_err();
        assert!(e.contains("JACK"), "{e}");
    }

    #[test]
    fn windows_needs_a_configured_loopback() {
        let b = Backends { virtual_port: Some(fake), named_port: Some(fake) };
        let e = open_without_jack(&LoopbackOptions::default(), &b, Platform::Windows, "").unwrap_err();
        assert!(e.contains("loopMIDI"), "{e}");
        let opts = LoopbackOptions { loopback_port: Some("loopMIDI Port".into()), ..LoopbackOptions::default() };
        let l = open_without_jack(&opts, &b, Platform::Windows, "").unwrap();
        assert_eq!(l.output.name(), "port:loopMIDI Port");
        let b = Backends { virtual_port: None, named_port: Some(missing) };
        let e = open_without_jack(&opts, &b, Platform::Windows, "").unwrap_err();
        assert!(e.contains("no port named loopMIDI Port") && e.contains("loopMIDI"), "{e}");
    }
}
