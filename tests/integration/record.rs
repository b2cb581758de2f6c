//! The recorder without a console: a corpus score's plan fed to a [`Recorder`] as if the console
//! had sent it (with a piston's burst in place of one registration change), through the journal
//! and into take files; the plan of each take must give back every message of the performance.
//! The same with positions in bars, and split into three pieces. (tests/record.rs does this
//! through the real binary and JACK.)

use organ::input::record::{Finished, RecordSettings, Recorder, Timebase};
use organ::input::{Input, Received};
use organ::midi::Micros;

use super::support::performance::{self, Msg, REGISTRATION, compare};
use super::support::{data_dir, organ_bin, parse_jsonl, scratch, st_marys, st_marys_path, text};

/// `organ plan` through the binary (the CLI's own parsing and loading), read back from its
/// JSON lines.
fn plan(args: &[&str]) -> Vec<Msg> {
    let out = organ_bin(&[&["plan"], args, &["--format", "jsonl"]].concat());
    assert!(out.status.success(), "organ plan {args:?}: {}", text(&out.stderr));
    let events = parse_jsonl(&text(&out.stdout)).unwrap_or_else(|e| panic!("organ plan {args:?}: {e}"));
    events.into_iter().map(|e| Msg { t: e.t_us, bytes: e.bytes, kind: e.kind, tick: e.tick }).collect()
}

fn score_plan(registration: &std::path::Path, extra: &[&str]) -> Vec<Msg> {
    let score = data_dir().join("ssggp/bwv643.mid");
    let mut args =
        vec![score.to_str().unwrap(), "--organ", "st-marys", "--registration", registration.to_str().unwrap()];
    args.extend(extra);
    plan(&args)
}

/// Feeds `msgs` to a recorder (times shifted by 1 s) and finishes it.
fn record(dir: &std::path::Path, msgs: &[Msg], split: Option<Micros>, timebase: Timebase) -> Finished {
    let _ = std::fs::remove_dir_all(dir);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut s = RecordSettings::new("test", st_marys_path().to_str().unwrap(), dir);
    s.split = split;
    s.timebase = timebase;
    let rec = Recorder::with_input(&s, &st_marys(), Input::from_channel("test", rx)).expect("recorder");
    for m in msgs {
        tx.send(Received { at: Micros(1_000_000 + m.t), bytes: m.bytes.clone().into() }).unwrap();
    }
    drop(tx);
    rec.finish().expect("takes written")
}

fn take_plan(mid: &std::path::Path) -> Vec<Msg> {
    // The registration file beside it and its `organ = "…"` are found by themselves.
    plan(&[mid.to_str().unwrap()])
}

#[test]
fn a_take_plays_back_its_performance() {
    let dir = scratch("record-roundtrip");
    let reg = dir.join("bwv643-registration.toml");
    std::fs::write(&reg, REGISTRATION).unwrap();
    let planned = score_plan(&reg, &["--until", "5", "--bpm", "160"]);
    let organ = st_marys();
    let performance = performance::with_piston(&planned, &organ, performance::BAR_3, &[0xCF, 0x05]);
    assert!(performance.len() > planned.len() + 5, "the piston adds its message and the console's state");
    for (tag, tb) in [("seconds", Timebase::default()), ("bars", Timebase::bars(160.0, None).unwrap())] {
        let done = record(&dir.join(tag), &performance, None, tb);
        assert_eq!(done.written.len(), 1, "{tag}: {:?}", done.report());
        assert_eq!(done.unrecognised.get(&vec![0xCF, 0x05]), Some(&1), "the piston's message is kept and reported");
        let w = &done.written[0];
        let text = std::fs::read_to_string(&w.toml).unwrap();
        assert!(text.contains("layout = \"SGP\""), "{text}");
        assert!(text.contains("\"Gt Trumpet 8\""), "stops by name: {text}");
        if tb.bars {
            assert!(text.contains("at = \"4:2.") || text.contains("at = \"4:3\""), "{text}");
        }
        let got = take_plan(&w.mid);
        let c = compare(&planned, &got, 100).unwrap_or_else(|e| panic!("{tag}: {e}\n{text}"));
        assert!(c.messages > 400 && c.worst <= 50, "half a 100 µs tick at most: {c:?}");
    }
}

#[test]
fn split_into_three_pieces() {
    let dir = scratch("record-split");
    let reg = dir.join("bwv643-registration.toml");
    std::fs::write(&reg, REGISTRATION).unwrap();
    // Three one-bar pieces, each planned on its own (cancel, its registration, its notes, the
    // closing cancel), 3 s of silence between them.
    let mut pieces = Vec::new();
    let mut performance = Vec::new();
    let mut offset = 0;
    for bar in ["1", "3", "5"] {
        let p = score_plan(&reg, &["--from", bar, "--until", bar, "--bpm", "160"]);
        performance.extend(p.iter().map(|m| Msg { t: m.t + offset, ..m.clone() }));
        offset += p.last().unwrap().t + 3_000_000;
        pieces.push(p);
    }
    let done = record(&dir.join("takes"), &performance, Some(Micros(2_000_000)), Timebase::default());
    assert_eq!(done.written.len(), 3, "{:?}", done.report());
    for (w, p) in done.written.iter().zip(&pieces) {
        compare(p, &take_plan(&w.mid), 100).unwrap_or_else(|e| panic!("{}: {e}", w.mid.display()));
    }
    let names: std::collections::BTreeSet<_> = done.written.iter().map(|w| w.mid.clone()).collect();
    assert_eq!(names.len(), 3, "each piece has its own file");
}
