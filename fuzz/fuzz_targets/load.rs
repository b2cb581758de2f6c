//! Fuzzes the score loader: any bytes must give a `Score` or an error, never a panic. What
//! loads is then asked for its times and bar positions and planned on a bare organ, so that
//! absurd values the loader accepts (huge deltas, odd meters, tempo extremes) cannot panic later.
#![no_main]

use libfuzzer_sys::fuzz_target;
use organ::organ::Organ;
use organ::plan::{self, PlanOptions};

const ORGAN: &str = "name = \"Fuzz\"\n[division.great]\ncode = \"G\"\nchannel = 1\n";

fuzz_target!(|data: &[u8]| {
    let Ok(score) = organ::score::load_bytes(data, "fuzz.mid") else { return };
    assert!(!score.parts.is_empty());
    let end = score.end_tick;
    let _ = score.tempo.micros(end);
    let _ = score.tempo.tick_at(score.tempo.micros(end));
    let _ = score.meter.position(end).to_string();
    for p in &score.parts {
        for n in &p.notes {
            assert!(n.start <= n.end && n.key < 128);
        }
    }
    let organ = Organ::from_toml(ORGAN, "fuzz.toml").expect("the fuzz organ is valid");
    let opts = PlanOptions { layout: Some("G".repeat(score.parts.len())), ..PlanOptions::default() };
    if let Ok(t) = plan::plan(&score, &organ, None, &opts) {
        assert!(t.events.windows(2).all(|w| w[0].t <= w[1].t));
    }
});
