//! The real binary: the JSON-lines contract, `check` and `info`, flags wired through, and bad
//! input → exit 2 with exactly one `organ: error:` line naming the file and the problem.

use std::path::{Path, PathBuf};

use crate::support::*;

fn jsonl(args: &[&str]) -> Vec<PlanEvent> {
    let out = organ_bin(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    parse_jsonl(&text(&out.stdout)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn the_shipped_score_as_json_lines() {
    let events = jsonl(&["plan", "scores/bwv643.mid", "--organ", "st-marys", "--format", "jsonl"]);
    let s = check_plan(&events, &OrganFacts::of(&st_marys())).unwrap();
    assert_eq!(s.note_ons, s.note_offs);

    // scores/bwv643.toml: mf + Sw to Ped at bar 1 (10 controls); at bar 5 Sw to Ped off and
    // Gt to Ped on. The setup sends the 29 controls' offs, then the 10 ons, 4 ms apart; the music
    // starts 40 ms (stop_lead_ms) after the last: (29 + 10 − 1) × 4 ms + 40 ms = 192 ms.
    let origin = 192_000;
    let setup: Vec<&PlanEvent> = events.iter().take_while(|e| e.t_us < origin).collect();
    assert_eq!(setup.len(), 39);
    for (i, e) in setup.iter().enumerate() {
        assert_eq!(e.t_us, i as u64 * 4_000, "{e:?}");
        assert_eq!(
            e.kind,
            if i < 29 {
                "cancel"
            } else if i < 38 {
                "stop_on"
            } else {
                "coupler_on"
            }
        );
    }
    let drawn: Vec<&str> = setup[29..].iter().map(|e| e.name.as_deref().unwrap()).collect();
    assert_eq!(
        drawn,
        [
            "Sw Open Diapason 8",
            "Sw Stopped Diapason 8",
            "Sw Principal 4",
            "Sw Oboe 8",
            "Gt Open Diapason 8",
            "Gt Stopped Diapason 8",
            "Gt Principal 4",
            "Ped Bourdon 16",
            "Ped Principal 8",
            "Sw to Ped"
        ]
    );

    // Note times: the start of the music plus the independent tempo-map time of the tick.
    let r = Reference::load(&data_dir().join("ssggp/bwv643.mid"));
    let tempo: Vec<(u64, u32)> = r.tempo_map.iter().map(|t| (t.0, t.2)).collect();
    let indep = IndepTempo::new(r.ticks_per_beat, &tempo);
    for e in events.iter().filter(|e| e.kind.starts_with("note_")) {
        assert_eq!(i128::from(e.t_us), origin as i128 + indep.micros(e.tick), "{e:?}");
        let want = match e.part.unwrap() {
            1 | 2 => "swell",
            3 | 4 => "great",
            5 => "pedal",
            other => panic!("part {other}"),
        };
        assert_eq!(e.division.as_deref(), Some(want));
    }

    // Bar 5: the two coupler messages go 44 and 40 ms before the music of bar 5 (pace 4 ms,
    // lead 40 ms), both marked bar 5.
    let mid: Vec<&PlanEvent> = events.iter().skip(39).filter(|e| e.kind.starts_with("coupler")).collect();
    assert_eq!(mid.len(), 2, "{mid:?}");
    let tick = mid[0].tick;
    let music_t = origin + indep.micros(tick) as u64;
    assert_eq!(
        (mid[0].kind.as_str(), mid[0].name.as_deref(), mid[0].t_us),
        ("coupler_off", Some("Sw to Ped"), music_t - 44_000)
    );
    assert_eq!(
        (mid[1].kind.as_str(), mid[1].name.as_deref(), mid[1].t_us),
        ("coupler_on", Some("Gt to Ped"), music_t - 40_000)
    );
    // Bar 5 is where the Great takes over: the first Great note is at that tick.
    let first_great = events.iter().find(|e| e.kind == "note_on" && e.division.as_deref() == Some("great")).unwrap();
    assert_eq!(first_great.tick, tick);
    assert!(
        events.iter().filter(|e| e.kind == "note_on" && e.tick < tick).all(|e| e.division.as_deref() != Some("great"))
    );

    // The raw lines: bar and beat as numbers, the registration events marked bar 5 beat 1.
    let out = organ_bin(&["plan", "scores/bwv643.mid", "--organ", "st-marys", "--format", "jsonl"]);
    let lines: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sw_off = lines.iter().find(|v| v["kind"] == "coupler_off").unwrap();
    assert_eq!((sw_off["bar"].as_u64(), sw_off["beat"].as_f64()), (Some(5), Some(1.0)));
    assert_eq!(sw_off["bytes"], "8F 49 00");
    assert_eq!(sw_off["division"], "pedal");
    assert!(sw_off["part"].is_null());
    assert_eq!(lines[0]["bar"].as_u64(), Some(1));
}

/// The binary plans every corpus file with the same invariants as the library (no registration).
#[test]
fn every_corpus_file_through_the_binary() {
    let facts = OrganFacts::of(&st_marys());
    for path in corpus_files() {
        let layout = crate::corpus::LAYOUTS.iter().find(|l| l.0 == stem(&path)).unwrap().1;
        let events =
            jsonl(&["plan", p(&path), "--organ", "st-marys", "--no-registration", "--layout", layout, "-f", "jsonl"]);
        let s = check_plan(&events, &facts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(s.note_ons > 0);
        // Only notes, the organ's cancel (every control's off, start and end) and CC 123.
        assert_eq!(s.registration, 58, "{}", path.display());
    }
}

#[test]
fn flags_reach_the_plan() {
    let base = ["plan", "scores/bwv643.mid", "--organ", "st-marys", "-f", "jsonl"];
    let with = |extra: &[&str]| jsonl(&[&base[..], extra].concat());
    let normal = with(&[]);
    let notes =
        |v: &[PlanEvent]| -> Vec<PlanEvent> { v.iter().filter(|e| e.kind.starts_with("note")).cloned().collect() };
    let origin = 192_000u64;

    // --tempo 50%: every musical time doubles (each is rounded once: ±1 µs).
    let slow = with(&["--tempo", "50%"]);
    check_plan(&slow, &OrganFacts::of(&st_marys())).unwrap();
    for (a, b) in notes(&normal).iter().zip(notes(&slow).iter()) {
        assert_eq!((a.tick, &a.bytes), (b.tick, &b.bytes));
        let (x, y) = (a.t_us - origin, b.t_us - origin);
        assert!(y.abs_diff(2 * x) <= 1, "{x} {y}");
    }
    assert_eq!(notes(&normal).len(), notes(&slow).len());

    // --transpose 2: every key two semitones up, in the same order.
    let up = with(&["--transpose", "2"]);
    let (n, u) = (notes(&normal), notes(&up));
    assert_eq!(n.len(), u.len());
    for (a, b) in n.iter().zip(&u) {
        assert_eq!((a.t_us, a.bytes[0], a.bytes[1] + 2), (b.t_us, b.bytes[0], b.bytes[1]));
    }

    // --from 5: the registration in force at bar 5 is drawn (Gt to Ped, not Sw to Ped); the
    // first note is bar 5's.
    let from5 = with(&["--from", "5"]);
    check_plan(&from5, &OrganFacts::of(&st_marys())).unwrap();
    let drawn: Vec<&str> = from5
        .iter()
        .filter(|e| e.kind.ends_with("_on") && e.part.is_none())
        .filter_map(|e| e.name.as_deref())
        .collect();
    assert!(drawn.contains(&"Gt to Ped") && !drawn.contains(&"Sw to Ped"), "{drawn:?}");
    let first = from5.iter().find(|e| e.kind == "note_on").unwrap();
    let bar5 = normal.iter().find(|e| e.kind == "coupler_off").unwrap().tick;
    assert_eq!(first.tick, bar5);

    // --until 4: nothing after bar 4 (the last release is at the start of bar 5).
    let until4 = with(&["--until", "4"]);
    check_plan(&until4, &OrganFacts::of(&st_marys())).unwrap();
    assert!(until4.iter().filter(|e| e.kind.starts_with("note")).all(|e| e.tick <= bar5));
    assert!(until4.iter().all(|e| e.kind != "coupler_off"), "the bar-5 change is not played");
}

#[test]
fn check_and_info() {
    let out = organ_bin(&["check", "scores/bwv643.mid", "--organ", "st-marys"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.starts_with("bwv643.mid: 5 part(s) on St Mary's Church, Fishponds"), "{o}");
    assert!(o.contains("1→swell 2→swell 3→great 4→great 5→pedal"), "{o}");
    assert!(o.contains("not sent to the organ"), "{o}");
    // The registration file names the organ, so --organ may be left out.
    assert_eq!(organ_bin(&["check", "scores/bwv643.mid"]).status.code(), Some(0));

    let out = organ_bin(&["info", "scores/bwv643.mid"]);
    assert_eq!(out.status.code(), Some(0));
    let o = text(&out.stdout);
    assert!(o.contains("SMF format 1, 480 ticks per quarter note, 5 track(s), 5 part(s), 556 notes"), "{o}");
    for (n, name) in [(1, "Swell"), (2, "Swell"), (3, "Great"), (4, "Great"), (5, "Pedal")] {
        assert!(o.contains(&format!("\n  {n} \"{name}\" (channel")), "part {n}: {o}");
    }
    assert!(o.contains("suggested layout for St Mary's Church, Fishponds: --layout SSGGP"), "{o}");

    let f0 = data_dir().join("real/mido-type0-ppq120-old100.mid");
    let out = organ_bin(&["info", p(&f0)]);
    let o = text(&out.stdout);
    assert!(o.contains("SMF format 0, 120 ticks per quarter note, 1 track(s), 2 part(s), 130 notes"), "{o}");
    // The lower channel holds tenor and bass together: not a line for the feet (corpus.rs has
    // the suggestion for every file).
    assert!(o.contains("--layout GG"), "{o}");
}

/// Writes the bad-input fixtures and returns their paths.
struct Bad {
    dir: PathBuf,
}

impl Bad {
    fn new() -> Bad {
        let dir = scratch("bad-inputs");
        let good = std::fs::read(data_dir().join("ssggp/bwv643.mid")).unwrap();
        let organ = std::fs::read_to_string(st_marys_path()).unwrap();
        let w = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
        w("trunc.mid", &good[..1000]);
        // Cut exactly after the first track chunk.
        let first_end = 14 + 8 + u32::from_be_bytes(good[18..22].try_into().unwrap()) as usize;
        w("cut-at-chunk.mid", &good[..first_end]);
        w("empty.mid", b"");
        w("notmidi.mid", b"This is not a MIDI file, it is a text file.\n");
        let mut absurd = good.clone();
        absurd[18..22].copy_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
        w("absurd.mid", &absurd);
        let mut f2 = good.clone();
        f2[9] = 2;
        w("format2.mid", &f2);
        let mut zero = good.clone();
        zero[12..14].copy_from_slice(&[0, 0]);
        w("zerodiv.mid", &zero);
        let stop = "\non = { note = 36, channel = 16 }";
        assert!(organ.contains(stop));
        w("broken.toml", organ.replacen("[division.great]", "[division.great", 1).as_bytes());
        w(
            "ch0.toml",
            organ
                .replacen(
                    "code = \"S\"            # the letter used in layouts such as SSGGP\nchannel = 1",
                    "code = \"S\"\nchannel = 0",
                    1,
                )
                .as_bytes(),
        );
        w("ch17.toml", organ.replacen(stop, "\non = { note = 36, channel = 17 }", 1).as_bytes());
        w("byte128.toml", organ.replacen(stop, "\non = { note = 128, channel = 16 }", 1).as_bytes());
        w(
            "sysex80.toml",
            organ.replacen(stop, "\non = { sysex = \"F0 00 80 F7\" }\noff = { sysex = \"F0 00 00 F7\" }", 1).as_bytes(),
        );
        w("badreg.toml", b"layout = \"SSGGP\"\n[[change]]\nat = \"1\"\non = [\"Sw Open Diapson 8\"]\n");
        Bad { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }
}

fn expect_error(args: &[&str], needles: &[&str]) {
    let out = organ_bin(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout {}", text(&out.stdout));
    assert_eq!(err.lines().count(), 1, "{args:?}: exactly one line on stderr: {err}");
    assert!(err.ends_with('\n'));
    assert!(err.starts_with("organ: error: "), "{err}");
    let lower = err.to_lowercase();
    assert!(!lower.contains("panicked") && !lower.contains("backtrace"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
    }
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let b = Bad::new();
    let score_cases: &[(&str, &[&str])] = &[
        ("trunc.mid", &["trunc.mid: ", "truncated at byte 1000"]),
        ("cut-at-chunk.mid", &["cut-at-chunk.mid: ", "truncated", "announces 5 tracks but only 1"]),
        ("empty.mid", &["empty.mid: ", "empty"]),
        ("notmidi.mid", &["notmidi.mid: ", "not a Standard MIDI File"]),
        ("absurd.mid", &["absurd.mid: ", "declares 2147483647 bytes"]),
        ("format2.mid", &["format2.mid: ", "format 2"]),
        ("zerodiv.mid", &["zerodiv.mid: ", "division of 0"]),
        ("missing.mid", &["missing.mid: ", "cannot read"]),
    ];
    for (file, needles) in score_cases {
        let f = b.path(file);
        expect_error(&["plan", &f, "--organ", "st-marys"], needles);
        expect_error(&["check", &f, "--organ", "st-marys"], needles);
        expect_error(&["info", &f], needles);
    }
    let organ_cases: &[(&str, &[&str])] = &[
        ("broken.toml", &["broken.toml:", "expected `]`"]),
        ("ch0.toml", &["ch0.toml:", "channel = 0 is out of range"]),
        ("ch17.toml", &["ch17.toml:", "channel = 17 is out of range"]),
        ("byte128.toml", &["byte128.toml:", "note = 128 is out of range (0-127)"]),
        ("sysex80.toml", &["sysex80.toml:", "above 7F"]),
    ];
    for (file, needles) in organ_cases {
        let o = b.path(file);
        expect_error(&["plan", "scores/bwv643.mid", "--organ", &o], needles);
        expect_error(&["check", "scores/bwv643.mid", "--organ", &o], needles);
    }
    // Every organ error carries file:line:column.
    let out = organ_bin(&["check", "scores/bwv643.mid", "--organ", &b.path("ch17.toml")]);
    let err = text(&out.stderr);
    let after = err.split("ch17.toml:").nth(1).unwrap();
    let mut lc = after.split(':');
    assert!(lc.next().unwrap().parse::<u32>().is_ok() && lc.next().unwrap().parse::<u32>().is_ok(), "{err}");

    let reg = b.path("badreg.toml");
    expect_error(
        &["plan", "scores/bwv643.mid", "--organ", "st-marys", "--registration", &reg],
        &["badreg.toml:4:7:", "\"Sw Open Diapson 8\"", "did you mean \"Sw Open Diapason 8\""],
    );
    expect_error(
        &["plan", "scores/bwv643.mid", "--organ", "st-marys", "--layout", "SSGGX"],
        &["bwv643.mid: ", "organs/st-marys.toml", "no division with code X"],
    );
    expect_error(
        &["plan", "scores/bwv643.mid", "--organ", "st-marys", "--layout", "SSGG"],
        &["bwv643.mid has 5 part(s)", "names 4", "try --layout SSGGP"],
    );
    expect_error(&["check", "scores/bwv643.mid", "--organ", "no-such-organ"], &["\"no-such-organ\""]);
    // A --record source that cannot be opened: named as the flag the user typed, before
    // anything is said to play.
    expect_error(
        &["play", "scores/bwv643.mid", "--to", "null", "--record", "port:no-such-port-xyz"],
        &["--record port:no-such-port-xyz: "],
    );
    // --out / --record-out naming something that is not a folder: what it is and what the flag
    // wants, not "File exists (os error 17)".
    expect_error(
        &["record", "--from", "jack", "--organ", "st-marys", "--out", "/dev/null"],
        &["/dev/null: is a character device, not a folder", "--out names the folder for the takes"],
    );
    expect_error(
        &["record", "--from", "jack", "--organ", "st-marys", "--out", "scores/bwv643.mid"],
        &["scores/bwv643.mid: is a file, not a folder", "--out names the folder for the takes"],
    );
    expect_error(
        &["play", "scores/bwv643.mid", "--to", "null", "--record", "jack", "--record-out", "scores/bwv643.mid"],
        &["scores/bwv643.mid: is a file, not a folder", "--record-out names the folder for the takes"],
    );
    // Lengths of time out of range are refused before anything opens (monitor panicked on an
    // infinite one; selftest ran NaN as no time and clamped the rest without a word).
    for v in ["inf", "1e308", "nan", "0", "-1"] {
        expect_error(
            &["monitor", "--from", "jack", &format!("--seconds={v}")],
            &["--seconds", "use 0.1 to 86400 seconds"],
        );
        expect_error(&["selftest", "--to", "null", &format!("--seconds={v}")], &["--seconds", "use 0.5 to 60 seconds"]);
    }
    expect_error(&["selftest", "--to", "null", "--seconds", "100000"], &["--seconds 100000: use 0.5 to 60 seconds"]);
    // `organ check` given a registration or an organ file (it takes ORDER.toml): say what the
    // file is and how to check it, not that it has keys an order of service does not.
    expect_error(
        &["check", "scores/bwv643-grandorgue-demo.toml"],
        &[
            "scores/bwv643-grandorgue-demo.toml is a registration file",
            "--registration scores/bwv643-grandorgue-demo.toml",
        ],
    );
    expect_error(
        &["check", "organs/st-marys.toml"],
        &["organs/st-marys.toml is an organ definition", "--organ organs/st-marys.toml"],
    );
    // A name written as a file, a path without its .toml: the error says what was meant.
    expect_error(
        &["check", "scores/bwv643.mid", "--organ", "st-marys.toml"],
        &["st-marys.toml: ", "no such file", "did you mean \"st-marys\""],
    );
    expect_error(
        &["check", "scores/bwv643.mid", "--organ", "organs/grandorgue-demo"],
        &["organs/grandorgue-demo: ", "no such file", "did you mean \"organs/grandorgue-demo.toml\""],
    );
    expect_error(&["plan", "scores/bwv643.mid", "--stops", "Gt Trumpet 4"], &["Gt Trumpet 4", "did you mean"]);
    expect_error(&["plan", "scores/bwv643.mid", "--from", "99"], &["--from", "bwv643.mid has 16 bars"]);

    // A registration beside the score that names its organ but does not parse: the error is the
    // file's, at its line, not "no organ given" (which would send the user looking for the
    // `organ = …` line that is there).
    let dir = scratch("cli-broken-beside");
    std::fs::create_dir_all(&dir).unwrap();
    let score = dir.join("piece.mid");
    std::fs::copy(repo_dir().join("scores/bwv643.mid"), &score).unwrap();
    for (toml, needles) in [
        ("organ = \"st-marys\"\nlayout = SSGGP\n", &["piece.toml:2:", "string values must be quoted"][..]),
        ("organ = \"st-marys\"\norgan = \"other\"\n", &["piece.toml:2:", "duplicate key `organ`"][..]),
    ] {
        std::fs::write(dir.join("piece.toml"), toml).unwrap();
        expect_error(&["check", p(&score)], needles);
        expect_error(&["plan", p(&score)], needles);
    }
}
