//! Fuzzes organ definitions (TOML): any text must give an organ or a one-line error, never a
//! panic; an organ that loads sends no message that plays a key and names no file output.
//! The checks are `organ::fuzzing::organ_toml`, which the stable replay test runs too.
//!
//! Run: `cargo +nightly fuzz run organ_toml fuzz/corpus/organ_toml ../organs`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    organ::fuzzing::organ_toml(data);
});
