//! Fuzzes the BLE-MIDI decoder: any bytes, split into packets, must decode or fail without
//! panicking, and whatever decodes must be well-formed MIDI with a 13-bit timestamp.
//!
//! Run: `cargo +nightly fuzz run ble_decode` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use organ::output::ble::codec::{Decoder, MAX_SYSEX};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the packet length, so one input exercises SysEx continuations.
    let Some((&n, rest)) = data.split_first() else { return };
    let len = usize::from(n % 32) + 1;
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for packet in rest.chunks(len) {
        let _ = decoder.decode(packet, &mut out);
    }
    for m in &out {
        assert!(m.timestamp < 8192);
        assert!(m.bytes[0] >= 0x80, "message without status: {:02X?}", m.bytes);
        assert!(m.bytes.len() <= MAX_SYSEX);
        if m.bytes[0] == 0xF0 {
            assert_eq!(m.bytes.last(), Some(&0xF7));
            assert!(m.bytes[1..m.bytes.len() - 1].iter().all(|&b| b < 0x80));
        } else {
            assert!(m.bytes.len() <= 3);
            assert!(m.bytes[1..].iter().all(|&b| b < 0x80));
        }
    }
});
