//! `organ check` through the binary as an organist meets it: the shipped scores and order of
//! service pass `--deny-warnings`; a registration that leaves a playing manual silent fails it,
//! naming the division; `organ play` prints the same warnings before it starts; and a console
//! whose stops toggle, simulated from the messages `organ plan` sends, holds exactly the
//! registration at the first note and nothing at the end (or is refused, with both remedies).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::support::*;

#[test]
fn every_shipped_score_and_the_order_of_service_pass_deny_warnings() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_dir().join("scores"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "mid"))
        .collect();
    files.sort();
    files.push(repo_dir().join("scores/services/sunday.toml"));
    assert!(files.len() >= 7);
    for f in &files {
        let out = organ_bin(&["check", "--deny-warnings", &f.to_string_lossy()]);
        let o = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}:\n{o}{}", f.display(), text(&out.stderr));
        assert!(o.ends_with("ok: no problems found\n"), "{}:\n{o}", f.display());
    }
    // The order of service is checked item by item, as it is played.
    let o = text(&organ_bin(&["check", "scores/services/sunday.toml"]).stdout);
    assert!(o.starts_with("Sunday Eucharist (scores/services/sunday.toml): 4 item(s)\n"), "{o}");
    assert!(o.contains("\n2. Gradual hymn: Tallis' Ordinal: hymn-tallis-ordinal.mid on St Mary's Church, Fishponds (2 verses, play-over 5-8)"), "{o}");
}

#[test]
fn a_silent_manual_fails_deny_warnings_with_the_division_named() {
    // The play-over on pp alone: the melody is on the Great, and pp draws no Great stop nor a
    // coupler to it.
    let args = ["check", "scores/hymn-tallis-ordinal.mid", "--verse-preset", "0=pp", "--deny-warnings"];
    let out = organ_bin(&args);
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(
        o.contains("warning: play-over, bar 5:1: great: 14 notes (to bar 8:2) sound no stop: no great stop is drawn and no coupler brings another division's stops to it\n"),
        "{o}"
    );
    assert!(o.ends_with("ok with 1 warning(s)\n"), "{o}");
    // Without --deny-warnings it can still be played: status 0.
    assert_eq!(organ_bin(&args[..4]).status.code(), Some(0));
    // --no-registration and no --stops: every manual silent.
    let o = text(&organ_bin(&["check", "scores/bwv643.mid", "--no-registration", "--organ", "st-marys"]).stdout);
    for division in ["swell", "great", "pedal"] {
        assert!(o.contains(&format!(": {division}: ")) && o.contains("sound no stop"), "{division}: {o}");
    }
}

#[test]
fn play_prints_the_same_warnings_before_it_starts() {
    // One bar of the play-over (bar 8), on pp alone.
    let args = [
        "play",
        "scores/hymn-tallis-ordinal.mid",
        "--verse-preset",
        "0=pp",
        "--from",
        "play-over:8",
        "--until",
        "play-over",
        "--to",
        "null",
    ];
    let out = organ_bin(&args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warning = "organ: warning: play-over, bar 8:1: great: 2 notes (to bar 8:2) sound no stop: no great stop is drawn and no coupler brings another division's stops to it";
    let at = err.find(warning).unwrap_or_else(|| panic!("{err}"));
    assert!(at < err.find("organ: playing").unwrap(), "before it starts: {err}");
    // check says the same.
    let check: Vec<&str> = args.iter().copied().filter(|a| !["play", "--to", "null"].contains(a)).collect();
    let o = text(&organ_bin(&[&["check"][..], &check].concat()).stdout);
    assert!(o.contains(&warning["organ: ".len()..]), "{o}");
}

/// A console with Johannus-style program-change toggles on channel 12 (the same message draws
/// and puts in a stop), one state stop and a toggling coupler; `cancel` is the `[cancel]` body.
fn toggle_organ(dir: &std::path::Path, cancel: &str) -> PathBuf {
    let p = dir.join(format!("toggles-{}.toml", cancel.len()));
    let toggle = |name: &str, division: &str, program: u8| {
        format!(
            "[[stop]]\nname = \"{name}\"\ndivision = \"{division}\"\non = {{ program = {program}, channel = 12 }}\noff = {{ program = {program}, channel = 12 }}\n"
        )
    };
    let text = format!(
        "name = \"Toggle console\"\n[division.great]\ncode = \"G\"\nchannel = 2\n[division.pedal]\ncode = \"P\"\nchannel = 3\ncompass = [36, 67]\n\
         {}{}{}{}\
         [[stop]]\nname = \"Ped Octave 8\"\ndivision = \"pedal\"\non = {{ note = 40, channel = 16 }}\n\
         [[coupler]]\nname = \"Gt to Ped\"\nfrom = \"great\"\nto = \"pedal\"\non = {{ program = 4, channel = 12 }}\noff = {{ program = 4, channel = 12 }}\n\
         [preset]\nmf = [\"Gt Principal 8\", \"Gt Flute 4\", \"Ped Subbass 16\", \"Ped Octave 8\", \"Gt to Ped\"]\n\
         [cancel]\n{cancel}\n[timing]\nstop_lead_ms = 40\nstop_pace_ms = 4\n",
        toggle("Gt Principal 8", "great", 0),
        toggle("Gt Flute 4", "great", 1),
        toggle("Gt Trumpet 8", "great", 2),
        toggle("Ped Subbass 16", "pedal", 3),
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// The console, simulated from the bytes it receives: (on, off, toggle) per control name.
struct Console {
    controls: Vec<(String, Vec<u8>, Vec<u8>, bool)>,
    drawn: HashMap<String, bool>,
}

impl Console {
    fn receive(&mut self, bytes: &[u8]) {
        if bytes.first() == Some(&0xF0) {
            self.drawn.values_mut().for_each(|d| *d = false);
            return;
        }
        for (name, on, off, toggle) in &self.controls {
            let d = self.drawn.entry(name.clone()).or_default();
            if bytes == on.as_slice() {
                *d = if *toggle { !*d } else { true };
            } else if bytes == off.as_slice() {
                *d = false;
            }
        }
    }

    fn drawn(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.drawn.iter().filter(|d| *d.1).map(|d| d.0.as_str()).collect();
        v.sort();
        v
    }
}

fn console(drawn: &[&str]) -> Console {
    let toggle = |name: &str, program: u8| (name.to_string(), vec![0xCB, program], vec![0xCB, program], true);
    Console {
        controls: vec![
            toggle("Gt Principal 8", 0),
            toggle("Gt Flute 4", 1),
            toggle("Gt Trumpet 8", 2),
            toggle("Ped Subbass 16", 3),
            ("Ped Octave 8".into(), vec![0x9F, 40, 127], vec![0x8F, 40, 0], false),
            toggle("Gt to Ped", 4),
        ],
        drawn: drawn.iter().map(|n| (n.to_string(), true)).collect(),
    }
}

/// Plays the plan into the console: what it holds at the first note-on and at the end.
fn play_into(events: &[PlanEvent], mut c: Console) -> (Vec<String>, Vec<String>) {
    let mut first = None;
    for e in events {
        if e.kind == "note_on" && first.is_none() {
            first = Some(c.drawn().iter().map(|s| s.to_string()).collect());
        }
        c.receive(&e.bytes);
    }
    (first.unwrap(), c.drawn().iter().map(|s| s.to_string()).collect())
}

#[test]
fn a_toggle_console_gets_exactly_the_registration_with_and_without_a_general_cancel() {
    let dir = scratch("toggle-console");
    let reg = dir.join("tallis.toml");
    std::fs::write(
        &reg,
        "layout = \"GP\"\n[[change]]\nat = \"1\"\npreset = \"mf\"\n[[change]]\nat = \"5\"\non = [\"Gt Trumpet 8\"]\noff = [\"Gt Flute 4\", \"Gt to Ped\"]\n",
    )
    .unwrap();
    let plan = |organ: &PathBuf, extra: &[&str]| {
        let base = ["plan", "scores/hymn-tallis-ordinal.mid", "--no-hymn", "--format", "jsonl", "--registration"];
        let mut args: Vec<&str> = base.to_vec();
        args.extend([reg.to_str().unwrap(), "--organ", organ.to_str().unwrap()]);
        args.extend_from_slice(extra);
        organ_bin(&args)
    };
    let mf = ["Gt Flute 4", "Gt Principal 8", "Gt to Ped", "Ped Octave 8", "Ped Subbass 16"];

    // No General Cancel and nothing said about the console's state: refused by plan, check and
    // play alike, with both remedies.
    let blind = toggle_organ(&dir, "");
    let out = plan(&blind, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("5 controls toggle") && err.contains("[cancel] message = { … }"), "{err}");
    assert!(err.contains("[cancel] everything_in_at_start = true"), "{err}");
    for cmd in [&["check"][..], &["play", "--to", "null"]] {
        let mut args = cmd.to_vec();
        args.extend(["scores/hymn-tallis-ordinal.mid", "--registration", reg.to_str().unwrap()]);
        args.extend(["--organ", blind.to_str().unwrap()]);
        let out = organ_bin(&args);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("everything_in_at_start"), "{cmd:?}");
    }

    // Known to start with everything in: no toggle before its first change; at the first note
    // exactly mf; at the end everything in (the drawn toggles sent once more, nothing else).
    let vouched = toggle_organ(&dir, "everything_in_at_start = true");
    let out = plan(&vouched, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events = parse_jsonl(&text(&out.stdout)).unwrap();
    let (first, end) = play_into(&events, console(&[]));
    assert_eq!(first, mf);
    assert!(end.is_empty(), "{end:?}");
    // With the stops kept: bar 5's registration stays.
    let events = parse_jsonl(&text(&plan(&vouched, &["--keep-stops"]).stdout)).unwrap();
    assert_eq!(
        play_into(&events, console(&[])).1,
        ["Gt Principal 8", "Gt Trumpet 8", "Ped Octave 8", "Ped Subbass 16"]
    );

    // With a General Cancel, whatever the last organist left drawn.
    let cancel = toggle_organ(&dir, "message = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }");
    let events = parse_jsonl(&text(&plan(&cancel, &[]).stdout)).unwrap();
    let (first, end) = play_into(&events, console(&["Gt Trumpet 8", "Ped Subbass 16", "Ped Octave 8"]));
    assert_eq!(first, mf);
    assert!(end.is_empty(), "{end:?}");
}
