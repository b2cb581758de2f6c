//! Bluetooth LE MIDI output (`--to ble:NAME`): the packet [`codec`] (always built; pure) and,
//! with the `ble` cargo feature, the btleplug link.

pub mod codec;

#[cfg(feature = "ble")]
mod link;

#[cfg(feature = "ble")]
pub use link::{BleDevice, MIDI_CHARACTERISTIC, MIDI_SERVICE, Target, scan};
