//! Outputs: where planned messages go. One trait for all of them.
//!
//! Threads: outputs are opened (port discovery, connecting) and finished (flushing, closing) on
//! the control thread; [`Output::send`] runs on the real-time engine thread and must return in
//! bounded time without blocking on anything of unbounded duration. Slow or asynchronous
//! transports (BLE, JACK) hand messages to their own worker through a lock-free ring.

pub mod ble;
#[cfg_attr(not(feature = "jack"), allow(dead_code))]
pub mod frame_clock;
#[cfg(feature = "jack")]
pub mod jack;
pub mod port;
pub mod record;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::midi::Micros;
use crate::plan::Timeline;

/// When a message is sent: its plan time, and engine-clock times (µs since playback started on
/// the engine's monotonic clock) of its deadline and of the actual send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    /// The message's time in the plan.
    pub plan: Micros,
    /// When it was due on the engine clock (moves with pauses and live tempo changes).
    pub due: Micros,
    /// When it was actually handed over, on the engine clock.
    pub now: Micros,
}

/// Whether an output can deliver messages right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    /// The link dropped; the output is trying to get it back.
    Down,
}

/// Why a send (or open/finish) failed. `Copy` with static text, so the engine thread can report
/// it without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputError {
    pub kind: OutputErrorKind,
    pub detail: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputErrorKind {
    /// The device went away (USB cable pulled, BLE link lost).
    Disconnected,
    /// The output's queue is full; the message was dropped.
    Overflow,
    /// Anything else the backend reported.
    Backend,
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            OutputErrorKind::Disconnected => "disconnected",
            OutputErrorKind::Overflow => "queue full, message dropped",
            OutputErrorKind::Backend => "send failed",
        };
        write!(f, "{what}: {}", self.detail)
    }
}

impl std::error::Error for OutputError {}

/// A destination for MIDI messages.
pub trait Output: Send {
    /// How the user named it, e.g. `port:WIDI Bud Pro` or `file:out.mid`.
    fn name(&self) -> &str;

    /// Called once on the control thread before playback starts, with the plan to be played
    /// (outputs that must restore a registration after a reconnect keep it).
    ///
    /// # Errors
    /// The output cannot play this plan.
    fn prepare(&mut self, _timeline: &Arc<Timeline>) -> Result<(), OutputError> {
        Ok(())
    }

    /// Sends one complete MIDI message.
    ///
    /// # Real-time safety
    /// Runs on the engine thread: bounded time, no allocation on the common path, no locks that
    /// a non-real-time thread can hold for long, no logging.
    ///
    /// # Errors
    /// Disconnection, a full queue, or a backend failure.
    fn send(&mut self, bytes: &[u8], at: Stamp) -> Result<(), OutputError>;

    /// Whether the link is up (an atomic load for outputs that can lose their link).
    ///
    /// An output that reports [`Link::Down`] keeps trying to get the link back and, before it
    /// reports [`Link::Up`] again, brings the instrument back to a known state: every key it
    /// had sounding released, the registration at the current plan position re-sent. The
    /// control thread tells the user so when the link comes back.
    fn link(&self) -> Link {
        Link::Up
    }

    /// Called on the control thread after playback: flush and close. The file output writes its
    /// file here.
    ///
    /// # Errors
    /// Anything that prevents the output from completing (e.g. the file cannot be written).
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// What the user should know about this output once playback is over, beyond the messages
    /// sent: link losses and reconnects, messages dropped, keys that may still sound because the
    /// release could not be delivered. `None` when there is nothing to tell. Called on the
    /// control thread after [`Output::finish`]; printed as `organ: <report>`, so it starts with
    /// the output's name.
    fn report(&self) -> Option<String> {
        None
    }
}

/// The forms `--to` accepts, for help and error messages.
pub const SPEC_FORMS: &str = "port:NAME (a MIDI port, see `organ ports`), ble:NAME (Bluetooth LE MIDI, see `organ ble scan`), \
     grandorgue, jack[:PORT], file:PATH.mid, null";

fn open_virtual_port(name: &str) -> Result<Box<dyn Output>, String> {
    Ok(Box::new(port::PortOutput::create_virtual(name)?))
}

fn open_named_port(name: &str) -> Result<Box<dyn Output>, String> {
    Ok(Box::new(port::PortOutput::open(name)?))
}

/// How long connecting to a Bluetooth LE MIDI device may take before `--to ble:` gives up.
pub const BLE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Opens an output from its `--to` form. Runs on the control thread. `notes` receives lines to
/// tell the user (e.g. that GrandOrgue must be restarted to see a new port).
///
/// # Errors
/// An unknown form, or the output cannot be opened (the message says why and what exists).
pub fn open(
    spec: &str,
    policy: crate::organ::DisconnectPolicy,
    notes: &mut Vec<String>,
) -> Result<Box<dyn Output>, String> {
    let spec = spec.trim();
    let (kind, arg) = spec.split_once(':').map_or((spec, ""), |(k, a)| (k, a));
    match kind.to_ascii_lowercase().as_str() {
        "null" => Ok(Box::new(record::NullOutput)),
        "file" if !arg.is_empty() => Ok(Box::new(record::FileOutput::create(PathBuf::from(arg))?)),
        "port" if !arg.is_empty() => Ok(Box::new(port::PortOutput::open(arg)?)),
        #[cfg(feature = "ble")]
        "ble" if !arg.is_empty() => Ok(Box::new(ble::open(arg, policy, BLE_CONNECT_TIMEOUT)?)),
        #[cfg(not(feature = "ble"))]
        "ble" => {
            Err(format!("--to {spec}: this build of organ has no Bluetooth support (built without the ble feature)"))
        }
        "grandorgue" => {
            use crate::grandorgue::loopback::{Backends, LoopbackOptions, open_grandorgue};
            let mut opts = LoopbackOptions::default();
            if !arg.is_empty() {
                // The virtual port's name; on Windows, the loopback port (loopMIDI) to use.
                opts.virtual_name = arg.to_string();
                opts.loopback_port = Some(arg.to_string());
            }
            let backends = Backends { virtual_port: Some(open_virtual_port), named_port: Some(open_named_port) };
            let lb = open_grandorgue(&opts, &backends).map_err(|e| format!("--to {spec}: {e}"))?;
            notes.push(lb.message);
            Ok(lb.output)
        }
        #[cfg(feature = "jack")]
        "jack" => Ok(Box::new(jack::open(spec)?)),
        #[cfg(not(feature = "jack"))]
        "jack" => Err(format!("--to {spec}: this build of organ has no JACK support (built without the jack feature)")),
        _ => {
            let _ = policy;
            Err(format!("--to {spec}: not an output; use {SPEC_FORMS}"))
        }
    }
}
