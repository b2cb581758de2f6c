//! Keeping the CPU out of deep idle states while the engine plays (Linux PM QoS).
//!
//! A sleeping thread wakes as late as its CPU takes to leave the idle state it went into: a few
//! µs from a shallow one, hundreds of µs to milliseconds from the deep C-states of a laptop CPU,
//! or from a virtual CPU that halted and must be scheduled again by the host. Writing 0 to
//! `/dev/cpu_dma_latency` and keeping the file open asks the kernel to use only idle states that
//! wake at once, for as long as it stays open (closing it, or the process ending for any reason,
//! withdraws the request). Real-time audio setups do the same.
//!
//! On the development VM this took the worst wake-up of a 20 ms sleep from 2-3 ms to 0.25 ms
//! (README, "The idle-state request"). The price is power: the CPU idles in a busy loop while a piece plays.
//!
//! The file is root's by default; where it cannot be opened the engine plays as before and the
//! reports say so (README: how to allow it with a udev rule). Opened before playback starts,
//! never on the hot path.

use std::fs::File;
use std::io::Write;

/// The PM QoS file.
pub const PATH: &str = "/dev/cpu_dma_latency";

/// Whether the engine held the CPU awake, for the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Awake {
    /// Not known (the engine ran without [`super::spawn`]).
    #[default]
    Unknown,
    /// Not asked for ([`super::Config::keep_awake`] off).
    NotAsked,
    /// `/dev/cpu_dma_latency` held at 0 while the engine ran.
    Held,
    /// The file could not be opened or written (not allowed, or not there).
    Refused,
}

impl Awake {
    pub(crate) fn from_u8(v: u8) -> Awake {
        match v {
            1 => Awake::Held,
            2 => Awake::Refused,
            3 => Awake::NotAsked,
            _ => Awake::Unknown,
        }
    }
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Awake::Unknown => 0,
            Awake::Held => 1,
            Awake::Refused => 2,
            Awake::NotAsked => 3,
        }
    }
}

/// Asks for idle states with no exit latency; the request holds while the file is open.
pub fn hold() -> Option<File> {
    let mut f = std::fs::OpenOptions::new().write(true).open(PATH).ok()?;
    // The kernel takes a binary s32 (or a hex string): 0 µs of exit latency allowed.
    f.write_all(&0i32.to_ne_bytes()).ok()?;
    Some(f)
}

/// The latency the kernel currently allows (the strictest request held by any process), in µs.
pub fn current() -> Option<i32> {
    let b = std::fs::read(PATH).ok()?;
    Some(i32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}
