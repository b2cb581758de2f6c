//! Fuzzes the BLE-MIDI decoder: any bytes, split into packets, must decode or fail without
//! panicking, and whatever decodes must be well-formed MIDI with a 13-bit timestamp.
//! The checks are `organ::fuzzing::ble_packets`, which the stable replay test runs too.
//!
//! Run: `cargo +nightly fuzz run ble_decode` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    organ::fuzzing::ble_packets(data);
});
