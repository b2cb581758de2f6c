//! Outputs: where planned messages go. One trait for all of them.
//!
//! Threads: outputs are opened (port discovery, connecting) and finished (flushing, closing) on
//! the control thread; [`Output::send`] runs on the real-time engine thread and must return in
//! bounded time without blocking on anything of unbounded duration. Slow or asynchronous
//! transports (BLE, JACK) hand messages to their own worker through a lock-free ring.
//!
//! Where things are: [`spec`] parses `--to` once into an [`OutputSpec`] and opens it; one file
//! per transport ([`port`] midir ports, [`record`] file/null/memory, [`ble`], [`jack`], `audio`
//! the built-in organ voice on the sound device, feature `audio`; `wav:` is no transport: `organ
//! play` renders it offline, [`crate::voice`]); [`grandorgue`] is the policy that picks the
//! loopback to GrandOrgue. Errors of opening and
//! finishing are typed ([`OpenError`], [`FinishError`]); the engine thread's [`OutputError`] is
//! `Copy` with static text. A new transport is a new file here: an [`Output`] impl, a variant
//! of [`OutputSpec`] and its arm in [`OutputSpec::open`].

#[cfg(feature = "audio")]
pub mod audio;
pub mod ble;
#[cfg_attr(not(feature = "jack"), allow(dead_code))]
pub mod frame_clock;
pub mod grandorgue;
#[cfg(feature = "jack")]
pub mod jack;
pub mod port;
pub mod record;
pub mod spec;

use std::fmt;
use std::sync::Arc;

use crate::midi::Micros;
use crate::plan::Timeline;

pub use spec::{BLE_CONNECT_TIMEOUT, OpenError, OutputSpec, SPEC_FORMS, SpecError};

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
    /// The link is in doubt: a write has gone unanswered for longer than the output's short
    /// bound, so what is handed over may not be arriving. A state of [`Link::Down`]: the engine
    /// applies the same `on_disconnect` policy, and the output comes back the same way (the
    /// keys released and the registration restored before it reports [`Link::Up`]), either when
    /// the answer comes after all or, once it gives up waiting, after reconnecting (it reports
    /// [`Link::Down`] meanwhile).
    NotAnswering,
    /// The link dropped and the output is getting it back by itself (Bluetooth LE): the engine
    /// pauses or plays on, as the organ's `on_disconnect` says.
    Down,
    /// The link is gone and nothing in this output brings it back (the JACK server shut down):
    /// the output has failed, like a port whose cable was pulled, whatever `on_disconnect`
    /// says. The engine stops the performance at once (the other outputs get the release), and
    /// the session closes the output, so that it can be opened again once its peer is back.
    Gone(OutputError),
}

impl Link {
    /// Whether messages handed over now can be expected to arrive on time.
    pub fn is_up(self) -> bool {
        self == Link::Up
    }
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

/// Why an output could not complete in [`Output::finish`] (control thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishError {
    /// The recording could not be encoded as a MIDI file.
    Encode { output: String, error: String },
    /// The file could not be written.
    Write { output: String, error: String },
    /// Messages were still queued when the output closed.
    Undelivered { output: String, queued: usize },
    /// Messages were dropped on the way.
    Dropped { output: String, count: u64 },
    /// The output's worker thread did not stop in time (it is left behind).
    WorkerStuck { output: String },
    /// The output's worker thread panicked.
    WorkerPanicked { output: String },
    /// A lock was poisoned (a panic elsewhere).
    Poisoned { output: String },
    /// A file the output wrote is no longer where it was named (moved, deleted or replaced
    /// while it was written).
    Replaced { output: String, path: String },
}

impl fmt::Display for FinishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FinishError::Encode { output, error } => write!(f, "{output}: cannot encode: {error}"),
            FinishError::Write { output, error } => write!(f, "{output}: cannot write: {error}"),
            FinishError::Undelivered { output, queued } => {
                write!(f, "{output}: {queued} message(s) were still queued when the output closed")
            }
            FinishError::Dropped { output, count } => write!(f, "{output}: {count} message(s) were dropped"),
            FinishError::WorkerStuck { output } => {
                write!(f, "{output}: the BLE worker did not stop in time; leaving it behind")
            }
            FinishError::WorkerPanicked { output } => write!(f, "{output}: the BLE worker panicked"),
            FinishError::Poisoned { output } => write!(f, "{output} output poisoned"),
            FinishError::Replaced { output, path } => write!(
                f,
                "{output}: the record was moved, deleted or replaced while it was written: it is not at {path}"
            ),
        }
    }
}

impl std::error::Error for FinishError {}

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
    /// An output that reports [`Link::Down`] (or [`Link::NotAnswering`]) keeps trying to get the
    /// link back and, before it reports [`Link::Up`] again, brings the instrument back to a
    /// known state: every key it had sounding released, the registration at the current plan
    /// position re-sent. The control thread tells the user so when the link comes back. One
    /// that reports [`Link::Gone`] has failed for good (its sends fail too).
    ///
    /// # Real-time safety
    /// Called on the engine thread on every pass of its loop: atomic loads, no blocking.
    fn link(&self) -> Link {
        Link::Up
    }

    /// Whether everything sent so far has left this process (reached the port, the server or the
    /// radio), so that stopping the process now (job control) cannot hold it back. Outputs that
    /// send at once need not override it; those that hand messages to their own worker or
    /// callback say whether that has caught up.
    ///
    /// # Real-time safety
    /// Called on the engine thread while it is suspended: atomic loads, no blocking.
    fn delivered(&self) -> bool {
        true
    }

    /// Called on the control thread after playback: flush and close. The file output writes what
    /// is still queued and forces the file to disk here (it writes as it plays).
    ///
    /// # Errors
    /// Anything that prevents the output from completing (e.g. the file cannot be written).
    fn finish(&mut self) -> Result<(), FinishError> {
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

    /// Whether, once finished, keys this output had sounding may still sound: its release
    /// could not be delivered (a wireless link still down at the end). Called on the control
    /// thread after [`Output::finish`]; the [`Output::report`] says more.
    fn keys_may_sound(&self) -> bool {
        false
    }

    /// One line of this output's own counters for `organ play --stats` (JACK's: messages
    /// written, late, dropped, xruns), or `None` when it keeps none beyond the engine's. Called
    /// on the control thread after [`Output::finish`]; starts with the output's name.
    fn stats(&self) -> Option<String> {
        None
    }
}
