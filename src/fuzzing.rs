//! The bodies of the fuzz targets, shared by the cargo-fuzz targets in `fuzz/` (libFuzzer, needs
//! a nightly toolchain) and by the stable replay test (`tests/integration/fuzz.rs`), which runs
//! the same functions on seed files and proptest mutations of them in every `cargo test`.
//!
//! Each function takes any bytes, must never panic, and asserts what must hold of whatever the
//! code under test accepts; it returns whether the input was accepted (loaded, or decoded to at
//! least one message), so that a replay can show it reached past the first check. Not an API for anything else; runs on the calling thread.

use std::sync::OnceLock;

use crate::midi::Message;
use crate::organ::{BUILTIN_ORGANS, Organ};
use crate::plan::{self, PlanOptions};
use crate::registration::Registration;
use crate::score::{self, Score};

/// A one-line error message: what every loader promises.
fn one_line(e: &dyn std::fmt::Display) {
    let s = crate::text::shown(&e.to_string()).into_owned();
    assert!(!s.is_empty() && !s.contains('\n'), "not one line: {s:?}");
}

/// The score loader: any bytes give a score or an error, never a panic; what loads is asked
/// for its times and positions and planned on a one-division organ.
pub fn score_bytes(data: &[u8]) -> bool {
    let score = match score::load_bytes(data, "fuzz.mid") {
        Ok(s) => s,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
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
    let organ = Organ::from_toml("name = \"Fuzz\"\n[division.great]\ncode = \"G\"\nchannel = 1\n", "fuzz.toml")
        .expect("the fuzz organ is valid");
    let opts = PlanOptions { layout: Some("G".repeat(score.parts.len())), ..PlanOptions::default() };
    match plan::plan(&score, &organ, None, &opts) {
        Ok(t) => assert!(t.events.windows(2).all(|w| w[0].t <= w[1].t)),
        Err(e) => one_line(&e),
    }
    true
}

/// Whether a message is a note (on or off) on a division's channel within its compass.
fn strikes_a_key(organ: &Organ, m: &Message) -> bool {
    let Message::Short(s) = m else { return false };
    let Some((ch, key)) = s.as_note_on().or_else(|| s.as_note_off()) else { return false };
    organ.divisions.iter().any(|d| d.channel == ch && (d.compass.0..=d.compass.1).contains(&key))
}

/// Organ definitions: any text gives an organ or a one-line error with a position; an organ
/// that loads has distinct division channels and codes, sane compasses, every control with an
/// on and an off, no message that plays a key, and no `file:` default output.
pub fn organ_toml(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let organ = match Organ::from_toml(text, "fuzz.toml") {
        Ok(o) => o,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
    assert!(!organ.divisions.is_empty());
    for (i, d) in organ.divisions.iter().enumerate() {
        assert!(d.compass.0 < d.compass.1 && d.compass.1 <= 127);
        for o in &organ.divisions[i + 1..] {
            assert!(o.channel != d.channel && o.code != d.code, "two divisions share a channel or code");
        }
    }
    for c in &organ.controls {
        assert!(!c.on.is_empty() && !c.off.is_empty(), "{} lacks an on or an off", c.name);
    }
    let cancel = organ.cancel_messages();
    for m in organ.controls.iter().flat_map(|c| c.on.iter().chain(&c.off)).chain(&cancel) {
        assert!(!strikes_a_key(&organ, m), "{} would play a key", crate::midi::HexBytes(m.as_bytes()));
    }
    if let Some(o) = &organ.output {
        assert!(!o.trim().to_ascii_lowercase().starts_with("file"), "a file output from an organ file: {o}");
    }
    true
}

/// The organ and score registrations are fuzzed against: the built-in organ and a short hymn.
fn registration_fixture() -> &'static (Organ, Score) {
    static FIXTURE: OnceLock<(Organ, Score)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (name, text) = BUILTIN_ORGANS[0];
        let organ = Organ::from_toml(text, name).expect("the built-in organ loads");
        let score = score::load_bytes(include_bytes!("../scores/hymn-st-anne.mid"), "hymn-st-anne.mid")
            .expect("the shipped hymn loads");
        (organ, score)
    })
}

/// Registration files (with their `[hymn]` options): any text gives a registration or a
/// one-line error with a position; a registration that loads is planned (as a hymn when it has
/// hymn options) without a panic, and a plan that results is sorted in time.
pub fn registration_toml(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let (organ, score) = registration_fixture();
    let reg = match Registration::from_toml(text, "fuzz.toml", organ) {
        Ok(r) => r,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
    let planned = if reg.hymn.is_empty() {
        plan::plan(score, organ, Some(&reg), &PlanOptions::default())
    } else {
        let mut hymn = reg.hymn.clone();
        if matches!(hymn.amen, Some(crate::registration::hymn::Amen::File(_))) {
            hymn.amen = None; // a file the fuzzer named: not read
        }
        plan::hymn::plan_hymn(score, None, organ, Some(&reg), &PlanOptions::default(), &hymn)
    };
    match planned {
        Ok(t) => assert!(t.events.windows(2).all(|w| w[0].t <= w[1].t)),
        Err(e) => one_line(&e),
    }
    true
}

/// The BLE-MIDI decoder: any bytes, split into packets (the first byte chooses their length),
/// decode or fail without panicking, and whatever decodes is well-formed MIDI with a 13-bit
/// timestamp.
pub fn ble_packets(data: &[u8]) -> bool {
    use crate::output::ble::codec::{Decoder, MAX_SYSEX};
    let Some((&n, rest)) = data.split_first() else { return false };
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
    !out.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_files_pass_every_check() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(organ_toml(&std::fs::read(root.join("organs/st-marys.toml")).unwrap()));
        assert!(score_bytes(&std::fs::read(root.join("scores/bwv643.mid")).unwrap()));
        for h in ["hymn-st-anne", "hymn-cwm-rhondda", "hymn-old100"] {
            assert!(registration_toml(&std::fs::read(root.join(format!("scores/{h}.toml"))).unwrap()), "{h}");
        }
        assert!(ble_packets(&[20, 0x80, 0x80, 0x90, 60, 100]));
    }
}
