//! Performances for the recording tests: a score's plan turned into what a console sends
//! (optionally with a piston's burst in place of one registration change), and the check that a
//! recorded take's own plan reproduces every message of it.

use std::collections::BTreeMap;

use organ::organ::Organ;

/// The registration the test performances of bwv643 are planned with: presets, single stops, a
/// tremulant and couplers; bar 3 is the change a piston makes.
pub const REGISTRATION: &str = r#"
layout = "SSGGP"
[[change]]
at = "1"
preset = "mf"
on = ["Sw to Ped"]
[[change]]
at = "2"
on = ["Sw Tremulant", "Sw Voix Celeste 8"]
[[change]]
at = "3"
preset = "f"
[[change]]
at = "4:3"
off = ["Sw to Gt"]
on = ["Gt Trumpet 8"]
[[change]]
at = "5"
preset = "p"
"#;

/// The tick of bar 3 in bwv643 (480 ticks a quarter, 4/4): where the piston is pressed.
pub const BAR_3: u64 = 2 * 4 * 480;

/// One timed message, as planned or as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub t: u64,
    pub bytes: Vec<u8>,
    /// The plan's `kind` (`note_on`, `stop_off` …); `piston` and `state` for what a piston adds.
    pub kind: String,
    pub tick: u64,
}

/// `organ plan --format jsonl` → messages.
pub fn parse_plan(jsonl: &str) -> Vec<Msg> {
    jsonl
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            Msg {
                t: v["t_us"].as_u64().expect("t_us"),
                bytes: organ::midi::parse_hex(v["bytes"].as_str().expect("bytes")).expect("hex"),
                kind: v["kind"].as_str().expect("kind").to_string(),
                tick: v["tick"].as_u64().expect("tick"),
            }
        })
        .collect()
}

fn is_registration(kind: &str) -> bool {
    ["stop_", "coupler_", "tremulant_"].iter().any(|k| kind.starts_with(k))
}

/// The plan as a console playing it with a piston at the registration change of `tick`: the
/// piston's own message (`piston`, unknown to the organ) 1 ms before the change, the change's
/// messages as planned, then the console's report of every other control's state (each off
/// control's off message), `stop_pace` apart. The plan's messages keep their times.
pub fn with_piston(plan: &[Msg], organ: &Organ, tick: u64, piston: &[u8]) -> Vec<Msg> {
    let group: Vec<&Msg> = plan.iter().filter(|m| m.tick == tick && is_registration(&m.kind)).collect();
    assert!(group.len() >= 2, "no registration change at tick {tick}");
    let (first, last) = (group[0].t, group[group.len() - 1].t);
    // What is drawn after the change: replay the plan's registration messages up to it.
    let mut drawn = vec![false; organ.controls.len()];
    for m in plan.iter().filter(|m| m.t <= last && (is_registration(&m.kind) || m.kind == "cancel")) {
        for (i, c) in organ.controls.iter().enumerate() {
            if c.on.iter().any(|x| x.as_bytes() == m.bytes.as_slice()) {
                drawn[i] = true;
            } else if c.off.iter().any(|x| x.as_bytes() == m.bytes.as_slice()) {
                drawn[i] = false;
            }
        }
    }
    let in_group = |c: &organ::organ::Control| {
        group.iter().any(|m| c.on.iter().chain(&c.off).any(|x| x.as_bytes() == m.bytes.as_slice()))
    };
    let mut out = plan.to_vec();
    out.push(Msg { t: first - 1000, bytes: piston.to_vec(), kind: "piston".into(), tick });
    let pace = organ.stop_pace.0;
    let mut t = last;
    for (i, c) in organ.controls.iter().enumerate() {
        if !drawn[i] && !in_group(c) {
            t += pace;
            out.push(Msg { t, bytes: c.off[0].as_bytes().to_vec(), kind: "state".into(), tick });
        }
    }
    out.sort_by_key(|m| m.t); // stable: the plan's order at equal times
    out
}

/// How well a take's plan reproduced the expected messages.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub messages: usize,
    /// The largest time difference, µs.
    pub worst: u64,
}

/// The time of the first note-on of each, to align them on.
fn first_notes(expected: &[Msg], got: &[Msg]) -> Result<(i64, i64), String> {
    let first_on = |v: &[Msg]| v.iter().find(|m| m.kind == "note_on").map(|m| m.t as i64);
    first_on(expected).zip(first_on(got)).ok_or_else(|| "no note-on to align on".to_string())
}

fn outcome(messages: usize, worst: u64, mut problems: Vec<String>) -> Result<Comparison, String> {
    if problems.is_empty() {
        return Ok(Comparison { messages, worst });
    }
    let n = problems.len();
    problems.truncate(12);
    Err(format!("{n} difference(s):\n  {}", problems.join("\n  ")))
}

/// Checks that every message of `expected` is in `got` (a take's plan) within `tolerance` µs,
/// aligned on the first note-on, with the same bytes paired in time order; `got` may have more
/// after them (what a recovered take has from after the cut, and its closing release).
pub fn compare_prefix(expected: &[Msg], got: &[Msg], tolerance: u64) -> Result<Comparison, String> {
    let (e0, g0) = first_notes(expected, got)?;
    let mut worst = 0u64;
    let mut problems = Vec::new();
    let mut g: BTreeMap<&[u8], Vec<i64>> = BTreeMap::new();
    for x in got {
        g.entry(&x.bytes).or_default().push(x.t as i64 - g0);
    }
    let mut used: BTreeMap<&[u8], usize> = BTreeMap::new();
    for m in expected {
        let i = used.entry(&m.bytes).or_default();
        let want = m.t as i64 - e0;
        let hex = organ::midi::HexBytes(&m.bytes);
        match g.get(m.bytes.as_slice()).and_then(|v| v.get(*i)) {
            Some(&t) => {
                worst = worst.max(want.abs_diff(t));
                if want.abs_diff(t) > tolerance {
                    problems.push(format!("{hex} at {want} µs: the take has it at {t} µs"));
                }
            }
            None => problems.push(format!("{hex} at {want} µs: missing from the take")),
        }
        *i += 1;
    }
    outcome(expected.len(), worst, problems)
}

/// Checks that `got` (a take's plan) holds exactly the messages of `expected`, each within
/// `tolerance` µs, once both are aligned on their first note-on. Messages with the same bytes are
/// paired in time order.
pub fn compare(expected: &[Msg], got: &[Msg], tolerance: u64) -> Result<Comparison, String> {
    let extra: Vec<String> = {
        let mut count: BTreeMap<&[u8], i64> = BTreeMap::new();
        for m in got {
            *count.entry(&m.bytes).or_default() += 1;
        }
        for m in expected {
            *count.entry(&m.bytes).or_default() -= 1;
        }
        count
            .into_iter()
            .filter(|c| c.1 > 0)
            .map(|(b, n)| format!("{}: {n} more in the take's plan than expected", organ::midi::HexBytes(b)))
            .collect()
    };
    match (compare_prefix(expected, got, tolerance), extra.is_empty()) {
        (Ok(c), true) => Ok(c),
        (Ok(c), false) => outcome(c.messages, c.worst, extra),
        (Err(e), true) => Err(e),
        (Err(e), false) => Err(format!("{e}\n  {}", extra.join("\n  "))),
    }
}
