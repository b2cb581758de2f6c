//! Fuzzes registration files (TOML, with their [hymn] options) against the built-in organ: any
//! text must give a registration or a one-line error; one that loads is planned (as a hymn when
//! it has hymn options) without a panic. The checks are `organ::fuzzing::registration_toml`,
//! which the stable replay test runs too.
//!
//! Run: `cargo +nightly fuzz run registration_toml fuzz/corpus/registration_toml ../scores`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    organ::fuzzing::registration_toml(data);
});
