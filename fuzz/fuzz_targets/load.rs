//! Fuzzes the score loader: any bytes must give a `Score` or an error, never a panic. What
//! loads is then asked for its times and bar positions and planned on a bare organ, so that
//! absurd values the loader accepts (huge deltas, odd meters, tempo extremes) cannot panic later.
//! The checks are `organ::fuzzing::score_bytes`, which the stable replay test runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    organ::fuzzing::score_bytes(data);
});
