//! The hymn flags of `organ plan` and `organ play` through the real binary: the jsonl keys added
//! for hymns (`section`, `verse`), overriding the registration file's [hymn], refusals, and a
//! fermata that waits played without a terminal.

use std::path::Path;

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use crate::support::{organ_bin, scratch};

fn organ(args: &[&str]) -> (i32, String, String) {
    let out = organ_bin(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn jsonl(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Two bars of 4/4 at 120 bpm (PPQ 480): a manual part in half notes and a pedal part in whole
/// notes.
fn two_bar_score(path: &Path) {
    let ev = |delta: u32, kind| TrackEvent { delta: u28::new(delta), kind };
    let note = |ch: u8, key: u8, on: bool| TrackEventKind::Midi {
        channel: u4::new(ch),
        message: if on {
            MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(80) }
        } else {
            MidiMessage::NoteOff { key: u7::new(key), vel: u7::new(0) }
        },
    };
    let eot = || TrackEventKind::Meta(MetaMessage::EndOfTrack);
    let conductor = vec![ev(0, TrackEventKind::Meta(MetaMessage::Tempo(u24::new(500_000)))), ev(0, eot())];
    let mut manual = Vec::new();
    for _ in 0..2 {
        manual.extend([
            ev(0, note(0, 60, true)),
            ev(960, note(0, 60, false)),
            ev(0, note(0, 64, true)),
            ev(960, note(0, 64, false)),
        ]);
    }
    manual.push(ev(0, eot()));
    let pedal = vec![
        ev(0, note(1, 48, true)),
        ev(1920, note(1, 48, false)),
        ev(0, note(1, 43, true)),
        ev(1920, note(1, 43, false)),
        ev(0, eot()),
    ];
    let smf = Smf {
        header: Header { format: Format::Parallel, timing: Timing::Metrical(u15::new(480)) },
        tracks: vec![conductor, manual, pedal],
    };
    smf.save(path).unwrap();
}

#[test]
fn plan_flags_unroll_a_hymn_with_section_and_verse_keys() {
    let (code, out, err) = organ(&[
        "plan",
        "scores/hymn-tallis-ordinal.mid",
        "--verses",
        "2",
        "--play-over",
        "7-8",
        "--gap",
        "1.5s",
        "--verse-preset",
        "2=f",
        "--format",
        "jsonl",
    ]);
    assert_eq!(code, 0, "{err}");
    let events = jsonl(&out);
    // The keys every line has had since the start, plus the two added for hymns.
    for e in &events {
        for k in ["t_us", "bytes", "kind", "division", "name", "part", "bar", "beat", "tick", "section", "verse"] {
            assert!(e.get(k).is_some(), "{k} missing in {e}");
        }
    }
    let ons: Vec<&serde_json::Value> = events.iter().filter(|e| e["kind"] == "note_on").collect();
    assert_eq!(ons[0]["section"], "play-over");
    assert_eq!(ons[0]["verse"], serde_json::Value::Null);
    assert_eq!(ons[0]["bar"], 7);
    let sections: Vec<(String, Option<u64>)> = {
        let mut v: Vec<(String, Option<u64>)> = Vec::new();
        for e in &ons {
            let s = (e["section"].as_str().unwrap().to_string(), e["verse"].as_u64());
            if v.last() != Some(&s) {
                v.push(s);
            }
        }
        v
    };
    assert_eq!(sections, vec![("play-over".into(), None), ("verse".into(), Some(1)), ("verse".into(), Some(2))]);
    // The gap is clock time: 1.5 s from the play-over's last note-off to verse 1's first note.
    let first_v1 = ons.iter().find(|e| e["verse"] == 1).unwrap()["t_us"].as_u64().unwrap();
    let last_off = events
        .iter()
        .filter(|e| e["kind"] == "note_off" && e["section"] == "play-over")
        .map(|e| e["t_us"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(first_v1 - last_off, 1_500_000);
    // Verse 2 on preset f: its Great Twelfth (in f, not in the file's mp) is drawn before it.
    assert!(events.iter().any(|e| e["verse"] == 2 && e["kind"] == "stop_on" && e["name"] == "Gt Twelfth 2 2/3"));
    // --no-hymn: the score once, as written, with null section and verse.
    let (code, out, err) = organ(&["plan", "scores/hymn-tallis-ordinal.mid", "--no-hymn", "--format", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    let once = jsonl(&out);
    assert!(once.iter().all(|e| e["section"].is_null() && e["verse"].is_null()));
    assert_eq!(once.iter().filter(|e| e["kind"] == "note_on").count(), 56);
}

#[test]
fn bad_hymn_flags_are_refused_with_reasons() {
    let cases: [(&[&str], &str); 5] = [
        (&["--gap", "2 bars"], "--gap"),
        (&["--play-over", "7-9"], "play-over 7-9"),
        (&["--verses", "0"], "--verses 0"),
        (&["--verse-preset", "2=loud"], "no preset \"loud\""),
        (&["--fermatas", "3:9"], "bar 3 has 4 beats"),
    ];
    for (flags, expect) in cases {
        let mut args = vec!["plan", "scores/hymn-tallis-ordinal.mid"];
        args.extend_from_slice(flags);
        let (code, _, err) = organ(&args);
        assert_eq!(code, 2, "{flags:?}: {err}");
        assert!(err.contains(expect), "{flags:?}: {err}");
    }
    let (code, _, err) = organ(&["plan", "scores/hymn-tallis-ordinal.mid", "--verses", "2", "--from", "3"]);
    assert_eq!(code, 2);
    assert!(err.contains("--from"), "{err}");
    // --from alone rehearses bars of a hymn once, and says so.
    let (code, out, err) = organ(&["plan", "scores/hymn-tallis-ordinal.mid", "--from", "3", "--format", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("[hymn] section (4 verses, play-over 5-8, gap, fermatas 4:2, verse 0's registration) is not used with --from/--until at a bar")
            && err.contains("write --from verse:N or verse:N:BAR"),
        "{err}"
    );
    assert!(jsonl(&out).iter().all(|e| e["section"].is_null()));
}

#[test]
fn from_and_until_inside_a_hymn_keep_its_verses() {
    let base = ["plan", "scores/hymn-tallis-ordinal.mid", "--format", "jsonl"];
    let (code, out, err) = organ(&base);
    assert_eq!(code, 0, "{err}");
    let whole = jsonl(&out);
    let (code, out, err) = organ(&[&base[..], &["--from", "verse:3:5", "--until", "verse:4:4"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("note: hymn-tallis-ordinal.mid: the play-over, verse 1 and verse 2 left out"), "{err}");
    let part = jsonl(&out);
    let notes = |v: &[serde_json::Value], from: (u64, u64)| -> Vec<(u64, u64, String)> {
        v.iter()
            .filter(|e| e["kind"] == "note_on")
            .map(|e| {
                (e["verse"].as_u64().unwrap_or(0), e["bar"].as_u64().unwrap(), e["bytes"].as_str().unwrap().to_string())
            })
            .filter(|n| (n.0, n.1) >= from && (n.0, n.1) <= (4, 4))
            .collect()
    };
    // Verse 3 from bar 5 to verse 4's bar 4, note for note as in the whole hymn.
    let got = notes(&part, (3, 5));
    assert_eq!(got, notes(&whole, (3, 5)));
    assert_eq!((got[0].0, got[0].1), (3, 5));
    assert_eq!(got.last().map(|n| (n.0, n.1)), Some((4, 4)));
    assert!(part.iter().filter(|e| e["kind"] == "note_on").all(|e| e["section"] == "verse"));
    let (code, _, err) = organ(&[&base[..], &["--from", "verse:5"]].concat());
    assert_eq!(code, 2);
    assert!(err.contains("--from verse:5: the hymn has a play-over, 4 verse(s)"), "{err}");
}

#[test]
fn play_without_a_terminal_passes_fermata_waits() {
    let dir = scratch("hymn-play");
    let score = dir.join("two-bars.mid");
    two_bar_score(&score);
    let sent = dir.join("sent.mid");
    let to = format!("file:{}", sent.display());
    let start = std::time::Instant::now();
    let (code, _, err) = organ(&[
        "play",
        score.to_str().unwrap(),
        "--organ",
        "st-marys",
        "--layout",
        "GP",
        "--verses",
        "2",
        "--fermatas",
        "1:3",
        "--fermata",
        "wait",
        "--gap",
        "1beat",
        "--tempo",
        "400%",
        "--to",
        &to,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert!(err.contains("played"), "{err}");
    // Both verses were played: 2 × (4 manual + 2 pedal) note-ons.
    let bytes = std::fs::read(&sent).unwrap();
    let smf = Smf::parse(&bytes).unwrap();
    let ons = smf.tracks[0]
        .iter()
        .filter(|e| {
            matches!(e.kind, TrackEventKind::Midi { channel, message: MidiMessage::NoteOn { vel, .. } }
                if vel.as_int() > 0 && channel.as_int() < 3)
        })
        .count();
    assert_eq!(ons, 12);
    let _ = std::fs::remove_dir_all(&dir);
}
