//! The fuzz targets on stable Rust: a bounded **corpus-and-mutation replay**, run by every
//! `cargo test` (and so by CI, which has no nightly toolchain for cargo-fuzz).
//!
//! Each test feeds one target's checks ([`organ::fuzzing`], the very functions the cargo-fuzz
//! targets in `fuzz/` call) with seed files from the repository and proptest mutations of them:
//! byte edits for MIDI, and for TOML also extreme numbers, hostile strings and hostile lines put
//! where they are parsed. Not coverage-guided (that is what the nightly cargo-fuzz run adds), but
//! the same assertions on tens of thousands of inputs a run. The budget is a fixed number of
//! cases per target ([`cases`]); `ORGAN_FUZZ_CASES=N` runs N per target instead (README gives the
//! figures of a long run). Each test also checks that inputs were both accepted and refused, so
//! it cannot pass by stopping at the first check.

use proptest::prelude::*;

use crate::props::{SMALL_FILES, mutate, mutation, run_counted};
use crate::support::{data_dir, repo_dir};

/// Cases per target: `ORGAN_FUZZ_CASES`, else the CI budget given.
fn cases(default: u32) -> u32 {
    std::env::var("ORGAN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn report(target: &str, cases: u32, accepted: usize) {
    eprintln!("fuzz replay {target}: {cases} cases, {accepted} accepted, {} refused", cases as usize - accepted);
}

#[test]
fn score_loader() {
    let n = cases(1_500);
    let seeds: Vec<Vec<u8>> = SMALL_FILES.iter().map(|f| std::fs::read(data_dir().join(f)).unwrap()).collect();
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..6));
    let accepted =
        run_counted(n, strategy, |(i, muts)| Ok(organ::fuzzing::score_bytes(&mutate(seeds[i].clone(), &muts))));
    report("score_loader", n, accepted);
    assert!(accepted > 0 && accepted < n as usize, "{accepted} of {n} loaded");
}

#[test]
fn ble_decoder() {
    let n = cases(3_000);
    // Packets as a peer sends them: a header byte (bit 7 set), then timestamp bytes and MIDI,
    // with random bytes in between.
    let byte = prop_oneof![
        3 => any::<u8>(),
        2 => prop::sample::select(vec![0x80u8, 0x81, 0xBF, 0xFF, 0x90, 0xF0, 0xF7, 0x00, 0x7F, 0x3C]),
    ];
    let strategy = prop::collection::vec(byte, 0..600);
    let accepted = run_counted(n, strategy, |data| Ok(organ::fuzzing::ble_packets(&data)));
    report("ble_decoder", n, accepted);
    assert!(accepted > 0 && accepted < n as usize, "{accepted} of {n} decoded something");
}

/// A change to a TOML file.
#[derive(Debug, Clone)]
enum TomlMutation {
    /// A byte-level edit, as for MIDI files.
    Bytes(crate::props::Mutation),
    /// The n-th number in the file becomes this.
    Number(usize, &'static str),
    /// The contents of the n-th quoted string become this.
    Str(usize, &'static str),
    /// This line is inserted before line n.
    Line(usize, &'static str),
}

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "16",
    "17",
    "127",
    "128",
    "16383",
    "16384",
    "65536",
    "4294967296",
    "-9223372036854775808",
    "9223372036854775807",
    "1e308",
    "-0.0",
    "nan",
    "inf",
    "10000",
    "10001",
];

const STRINGS: &[&str] = &[
    "",
    " ",
    "\\u001b[2J\\u001b[1;1Horgan: played",
    "\\u009b31m",
    "file:/etc/passwd",
    "FILE:x.mid",
    "F0 F7",
    "F0 00 F7",
    "90 3C 7F",
    "80 3C 00",
    "9F 24 7F 90 40 01",
    "1e300s",
    "99999999999999999999",
    "-1",
    "0",
    "4294967295",
    "4294967295:4294967295",
    "1:99999999999",
    "0:0",
    "1.5s",
    "60.000001s",
    "nan beats",
    "32 beats",
    "33 beats",
    "all",
    "none",
    "amen.mid",
    "/dev/zero",
    "13-12",
    "1-4294967296",
    "2 beats",
    "S",
    "SSGGP",
    "-----",
    "1=swell,2=none,99=pedal",
    "mf",
    "Sw to Ped",
    "sw  TO ped",
];

const LINES: &[&str] = &[
    "[hymn]",
    "verses = 99",
    "verses = 100",
    "gap = \"60s\"",
    "[[verse]]\nnumber = 0\npreset = \"p\"",
    "[[verse]]\nnumber = 4\non = [\"Sw to Ped\"]",
    "[[change]]\nat = \"1e9s\"",
    "[[change]]\nat = 0",
    "[[change]]\nat = \"9999\"\npreset = \"f\"",
    "on = { raw = \"90 3C 7F\" }",
    "off = { note = 60, channel = 1 }",
    "[cancel]\nmessage = { note = 60, channel = 1 }",
    "output = \"file:x.mid\"",
    "[timing]\nstop_pace_ms = 10000\nstop_lead_ms = 10000",
    "[[stop]]\nname = \"X\"\ndivision = \"swell\"\non = { nrpn = 16383, value = 16383, channel = 16 }",
    "[[stop]]\nname = \"Y\"\ndivision = \"great\"\non = { sysex = \"F0 7F F7\" }\noff = { raw = \"F8\" }",
    "[division.extra]\ncode = \"X\"\nchannel = 16\ncompass = [0, 127]",
    "fermatas = [\"1:1\", \"999:9\"]",
    "fermata = { wait = true }",
    "fermata = { hold = \"1e9 beats\" }",
    "amen = \"1-2\"",
    "play_over = \"all\"",
    "layout = \"-\"",
    "map = \"1=swell\"",
];

fn toml_mutation() -> impl Strategy<Value = TomlMutation> {
    prop_oneof![
        1 => mutation().prop_map(TomlMutation::Bytes),
        3 => (any::<usize>(), prop::sample::select(NUMBERS)).prop_map(|(i, v)| TomlMutation::Number(i, v)),
        3 => (any::<usize>(), prop::sample::select(STRINGS)).prop_map(|(i, v)| TomlMutation::Str(i, v)),
        2 => (any::<usize>(), prop::sample::select(LINES)).prop_map(|(i, v)| TomlMutation::Line(i, v)),
    ]
}

/// Byte ranges of the numbers in `s` (runs of digits with an optional leading minus), outside
/// comments.
fn numbers(s: &str) -> Vec<std::ops::Range<usize>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let start = if i > 0 && b[i - 1] == b'-' { i - 1 } else { i };
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            out.push(start..i);
        } else {
            i += 1;
        }
    }
    out
}

fn apply(text: &str, muts: &[TomlMutation]) -> Vec<u8> {
    let mut s = text.to_string();
    for m in muts {
        match m {
            TomlMutation::Bytes(b) => {
                s = String::from_utf8_lossy(&mutate(s.into_bytes(), std::slice::from_ref(b))).into_owned();
            }
            TomlMutation::Number(i, v) => {
                let found = numbers(&s);
                if !found.is_empty() {
                    s.replace_range(found[i % found.len()].clone(), v);
                }
            }
            TomlMutation::Str(i, v) => {
                let quotes: Vec<usize> = s.match_indices('"').map(|(at, _)| at).collect();
                let pairs = quotes.len() / 2;
                if pairs > 0 {
                    let k = i % pairs;
                    s.replace_range(quotes[2 * k] + 1..quotes[2 * k + 1], v);
                }
            }
            TomlMutation::Line(i, v) => {
                let mut lines: Vec<&str> = s.lines().collect();
                let at = i % (lines.len() + 1);
                lines.insert(at, v);
                s = lines.join("\n");
            }
        }
    }
    s.into_bytes()
}

fn toml_seeds(dir: &str) -> Vec<String> {
    let mut seeds: Vec<String> = std::fs::read_dir(repo_dir().join(dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn organ_definitions() {
    let n = cases(1_500);
    let mut seeds = toml_seeds("organs");
    // A small organ of every message form, so that edits reach each of them quickly.
    seeds.push(
        r#"name = "Forms"
[division.swell]
code = "S"
channel = 1
[division.great]
code = "G"
channel = 2
compass = [36, 96]
[division.pedal]
code = "P"
channel = 3
compass = [36, 67]
[[stop]]
name = "Note"
division = "swell"
on = { note = 36, channel = 16, velocity = 100 }
[[stop]]
name = "Cc"
division = "great"
on = { cc = 20, value = 127, channel = 16 }
[[coupler]]
name = "Program"
from = "swell"
to = "pedal"
on = { program = 5, channel = 16 }
off = { program = 6, channel = 16 }
[[tremulant]]
name = "Nrpn"
division = "swell"
on = { nrpn = 300, value = 200, channel = 16 }
[[stop]]
name = "Raw"
division = "pedal"
on = { raw = "B0 14 7F C0 01" }
off = { note = 20, channel = 3 }
[preset]
p = ["Note", "Cc"]
[cancel]
message = { sysex = "F0 00 4A 4F 48 41 53 7F F7" }
at_end = true
[timing]
stop_lead_ms = 40
stop_pace_ms = 4
"#
        .to_string(),
    );
    let strategy = (0..seeds.len(), prop::collection::vec(toml_mutation(), 1..3));
    let accepted = run_counted(n, strategy, |(i, muts)| Ok(organ::fuzzing::organ_toml(&apply(&seeds[i], &muts))));
    report("organ_definitions", n, accepted);
    // An organ definition is checked strictly: most edits are refused (with a one-line error,
    // checked too), and those that load are checked for what an organ may send.
    assert!(accepted > n as usize / 50 && accepted < n as usize * 19 / 20, "{accepted} of {n} loaded");
}

#[test]
fn registration_files() {
    let n = cases(500);
    let seeds = toml_seeds("scores");
    let strategy = (0..seeds.len(), prop::collection::vec(toml_mutation(), 1..5));
    let accepted =
        run_counted(n, strategy, |(i, muts)| Ok(organ::fuzzing::registration_toml(&apply(&seeds[i], &muts))));
    report("registration_files", n, accepted);
    assert!(accepted > n as usize / 20 && accepted < n as usize * 19 / 20, "{accepted} of {n} loaded");
}

#[test]
fn toml_mutations_do_what_they_say() {
    let t = "a = 12 # 34\nb = \"x\"\nc = [-5, 6]\n";
    assert_eq!(numbers(t).len(), 3);
    let m = apply(t, &[TomlMutation::Number(2, "nan"), TomlMutation::Str(0, "y"), TomlMutation::Line(1, "z = 1")]);
    assert_eq!(String::from_utf8(m).unwrap(), "a = 12 # 34\nz = 1\nb = \"y\"\nc = [-5, nan]");
}
