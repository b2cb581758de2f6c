//! The GrandOrgue demo sample set (Debian package `grandorgue-demo`, a real organ nobody here
//! wrote, whose stops, couplers and tremulant GrandOrgue draws through switches) played by the
//! real `organ play --to grandorgue` with the shipped organ definition
//! `organs/grandorgue-demo.toml`, asserted from GrandOrgue's recorded audio:
//!
//! - keys held before any stop is drawn: silence; a stop drawn: its pitch sounds;
//! - the registration changes (Montre 8' off, Bourdon 16' and the pedal's Sousbasse 16' on):
//!   a different spectrum (an octave and two octaves below appear, the Montre's pitch goes);
//! - SIGINT while two keys and two stops are down: exit status 130, every key's note-off,
//!   all-notes-off and every control's off on the wire; then silence, keys pressed afterwards
//!   stay silent (the stops were cancelled), and stops drawn afterwards stay silent (no key was
//!   left down), until the test presses keys of its own, which it hears;
//! - the swell's expression controller (CC 11) closes the Récit's swell box: its Bourdon falls.
//!
//! The settings file is written by `organ grandorgue config` from the package itself; GrandOrgue
//! loads the package's organ definition and samples unpacked beside it (it reads a package's
//! settings only through its Import Settings dialog). The demo's effects (blower and drawstop
//! noises) are switched off with its own "All Sounds On/Off" switch so that silence is silence.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use organ::grandorgue::package::Package;
use organ::midi::Micros;
use organ::output::jack::JackOutput;
use organ::output::{Output, Stamp};

use super::e2e::{
    Checks, RELEASE, SETTLE, Stage, Verdict, View, fail, hex, keys_not_released, retrying, show, skip, use_test_server,
    verdict,
};
use super::support::analysis::{db, tone_amplitude};
use super::support::procs::{self, Jackd, Proc, RATE, RunLock, Unavailable, say, wait_for};
use super::support::recorder::{Recorder, Recording};
use super::{Scratch, demo_package, organ_bin};

const TEST: &str = "grandorgue_demo_end_to_end";
const CHURCH: &str = "GrandOrgue demo V1";
/// Seconds per beat of the test piece (120 bpm).
const BEAT: f64 = 0.5;

/// The piece's registration: nothing drawn while the keys go down, then the Montre, then the
/// Bourdon 16' and the pedal's Sousbasse instead.
const REGISTRATION: &str = r#"# The GrandOrgue demo test piece (tests/grandorgue/demo.rs). 120 bpm: beat = 0.5 s.
layout = "GP"

[[change]]
at = "1:2"
on = ["Gt Montre 8'"]

[[change]]
at = "1:4"
off = ["Gt Montre 8'"]
on = ["Gt Bourdon 16'", "Ped Sousbasse 16'"]
"#;

/// G4 on the great and G2 on the pedal, held from the start for two bars (SIGINT comes first).
fn write_piece(dir: &Path) -> std::io::Result<PathBuf> {
    use midly::num::{u4, u7, u15, u24, u28};
    use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
    let ppq = 480u16;
    let meta = |delta: u32, m| TrackEvent { delta: u28::new(delta), kind: TrackEventKind::Meta(m) };
    let mut smf = Smf::new(Header::new(Format::Parallel, Timing::Metrical(u15::new(ppq))));
    smf.tracks.push(vec![
        meta(0, MetaMessage::Tempo(u24::new((BEAT * 1e6) as u32))),
        meta(0, MetaMessage::TimeSignature(4, 2, 24, 8)),
        meta(0, MetaMessage::EndOfTrack),
    ]);
    for (ch, key) in [(1u8, 67u8), (2, 43)] {
        let ev = |delta: u32, on: bool| TrackEvent {
            delta: u28::new(delta),
            kind: TrackEventKind::Midi {
                channel: u4::new(ch),
                message: if on {
                    MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(80) }
                } else {
                    MidiMessage::NoteOff { key: u7::new(key), vel: u7::new(0) }
                },
            },
        };
        smf.tracks.push(vec![ev(0, true), ev(8 * u32::from(ppq), false), meta(0, MetaMessage::EndOfTrack)]);
    }
    let path = dir.join("demo-piece.mid");
    smf.save(&path)?;
    std::fs::write(dir.join("demo-piece.toml"), REGISTRATION)?;
    Ok(path)
}

/// Unpacks the package's files under `to`; returns the organ definition's path.
fn unpack(pkg: &Path, to: &Path) -> Result<PathBuf, String> {
    let mut p = Package::open(pkg).map_err(|e| e.to_string())?;
    let names: Vec<String> = p.entries.iter().map(|e| e.name.clone()).filter(|n| !n.ends_with('/')).collect();
    for name in names {
        if name.starts_with('/') || name.split('/').any(|c| c == "..") {
            return Err(format!("{}: unsafe entry name {name:?}", pkg.display()));
        }
        let bytes = p.read(&name).map_err(|e| e.to_string())?;
        let path = to.join(&name);
        std::fs::create_dir_all(path.parent().expect("under `to`")).map_err(|e| e.to_string())?;
        std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    }
    let organs = p.organs().map_err(|e| e.to_string())?;
    Ok(to.join(organs[0].odf.replace('\\', "/")))
}

#[test]
fn grandorgue_demo_end_to_end() {
    if let Err(r) = procs::check_tools() {
        return skip(TEST, &r);
    }
    let Some(pkg) = demo_package() else {
        return skip(TEST, "the demo sample set is not installed (Debian package grandorgue-demo)");
    };
    if let Err(e) = jack::jack_sys::library() {
        return skip(TEST, &format!("libjack cannot be loaded ({e}); install jackd2"));
    }
    let _lock = RunLock::acquire(Duration::from_secs(300)).unwrap();
    use_test_server();
    let t0 = Instant::now();
    let dir = Scratch::new("go-demo");
    match run(&dir.path, &pkg) {
        Ok(()) => say(&format!("{TEST}: passed in {:.1} s", t0.elapsed().as_secs_f64())),
        Err(Unavailable::Skip(r)) => skip(TEST, &r),
        Err(Unavailable::Fail(f)) => panic!("{f}"),
    }
}

/// One message of the plan: seconds from the start, bytes, kind.
type PlanMsg = (f64, Vec<u8>, String);

/// The plan's messages, from `organ plan --format jsonl`.
fn plan(score: &Path, organ: &Path) -> Result<Vec<PlanMsg>, String> {
    let out = organ_bin().arg("plan").arg(score).arg("--organ").arg(organ).args(["--format", "jsonl"]).output();
    let out = out.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("organ plan failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| format!("{e}: {l}"))?;
            Ok((
                v["t_us"].as_u64().unwrap_or_default() as f64 / 1e6,
                hex(v["bytes"].as_str().unwrap_or_default()),
                v["kind"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

fn run(dir: &Path, pkg: &Path) -> Result<(), Unavailable> {
    let t0 = Instant::now();
    let odf = unpack(pkg, &dir.join("demo")).map_err(fail)?;
    let organ = Path::new(env!("CARGO_MANIFEST_DIR")).join("organs/grandorgue-demo.toml");
    // The settings from the package itself, beside the unpacked organ definition.
    let cmb = odf.with_extension("cmb");
    let mut cfg = organ_bin();
    cfg.args(["grandorgue", "config", "--organ"]).arg(&organ).arg("--odf").arg(pkg);
    let cfg = cfg.arg("--out").arg(&cmb).output().map_err(|e| fail(e.to_string()))?;
    let report = String::from_utf8_lossy(&cfg.stdout);
    if !cfg.status.success() || !report.contains("speaking stops, couplers and tremulants: 26 of 26 driven") {
        return Err(fail(format!("organ grandorgue config: {report}{}", String::from_utf8_lossy(&cfg.stderr))));
    }
    let text = std::fs::read_to_string(&cmb).map_err(|e| fail(e.to_string()))?;
    let quiet = text.replacen("[Switch028]\n", "[Switch028]\nDefaultToEngaged=N\n", 1);
    if quiet == text {
        return Err(fail("the settings have no [Switch028] (the demo's All Sounds On/Off)"));
    }
    std::fs::write(&cmb, quiet).map_err(|e| fail(e.to_string()))?;
    let score = write_piece(dir).map_err(|e| fail(e.to_string()))?;
    let plan = plan(&score, &organ).map_err(fail)?;
    say(&format!("{TEST}: unpacked and configured in {:.1} s", t0.elapsed().as_secs_f64()));

    let mut jackd = Jackd::start(dir)?;
    let mut checks: Vec<(String, Checks)> = Vec::new();
    let mut titles_after = Vec::new();
    let outcome = (|| -> Result<(), Unavailable> {
        let stage = Stage::start(dir, &odf, CHURCH, TEST, t0)?;
        let mut probe = organ::output::jack::open(Some(stage.go_input.as_str())).map_err(|e| fail(e.to_string()))?;
        let v = retrying("SIGINT after a registration change", t0, |attempt| {
            let run = play_once(dir, &score, &organ, &plan, &mut probe, attempt)?;
            Ok((run.rec.gaps.clone(), check(&run, &plan)))
        })?;
        checks.push(("SIGINT after a registration change".to_string(), v));
        titles_after = stage.xvfb.window_titles();
        let _ = probe.finish();
        stage.stop();
        Ok(())
    })();
    jackd.stop();
    outcome?;
    verdict(TEST, &titles_after, &checks)
}

struct Run {
    rec: Recording,
    status: ExitStatus,
    stderr: String,
    sigint_to_exit: Duration,
    /// The probe's steps as sent: (what, messages), in order.
    probe: Vec<(&'static str, Vec<Vec<u8>>)>,
}

/// After SIGINT, time for the release tails of the real (reverberant) pipes to die away: they
/// fall below −60 dBFS after about 1.5 s, to nothing by 1.8 s.
const TAIL: f64 = 2.3;

/// The probe's steps after `organ play` exits: what, messages, how long to hold. Channels:
/// swell 1, great 2, pedal 3; the stops' own messages on channel 16 (organs/grandorgue-demo.toml).
const PROBE: &[(&str, &[&str], f64)] = &[
    ("keys on every manual, no stop drawn", &["90 3C 50", "91 3C 50", "92 24 50"], 0.7),
    ("keys up", &["80 3C 00", "81 3C 00", "82 24 00"], 0.2),
    (
        "a stop on every manual drawn (Sw Bourdon 8', Gt Montre 8', Ped Bourdon 8'), no key",
        &["9F 00 7F", "9F 0A 7F", "9F 16 7F"],
        0.7,
    ),
    ("the great's G4 and the swell's C4", &["91 43 50", "90 3C 50"], 0.7),
    ("the swell's expression to 0 (CC 11): its box closes", &["B0 0B 00"], 0.7),
    ("all off, the box open again", &["81 43 00", "80 3C 00", "8F 00 00", "8F 0A 00", "8F 16 00", "B0 0B 7F"], 0.2),
];

fn play_once(
    dir: &Path,
    score: &Path,
    organ: &Path,
    plan: &[PlanMsg],
    probe: &mut JackOutput,
    attempt: u32,
) -> Result<Run, Unavailable> {
    let r = Recorder::open().map_err(fail)?;
    for (src, dst) in [("GrandOrgueAudio:out_0", "in_l"), ("GrandOrgueAudio:out_1", "in_r")] {
        r.client().connect_ports_by_name(src, &r.port(dst)).map_err(|e| fail(format!("{src}: {e}")))?;
    }
    let rec_midi = r.port("midi_in");
    probe.connect(&rec_midi).map_err(|e| fail(e.to_string()))?;
    std::thread::sleep(Duration::from_millis(500));
    r.start();
    std::thread::sleep(Duration::from_millis(300));
    let err_path = dir.join(format!("demo-play-{attempt}.err"));
    let mut play = Proc::spawn(
        "organ play",
        organ_bin()
            .arg("play")
            .arg(score)
            .arg("--organ")
            .arg(organ)
            .args(["--to", "grandorgue", "--to", &format!("jack:{rec_midi}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).map_err(|e| fail(e.to_string()))?),
    )
    .map_err(fail)?;
    let read = || std::fs::read_to_string(&err_path).unwrap_or_default();
    // SIGINT one second after the second registration change.
    let last_stop = plan.iter().rposition(|p| p.2 == "stop_on").expect("the piece draws stops");
    if wait_for(Duration::from_secs(20), || (r.midi_received() > last_stop).then_some(())).is_none() {
        play.stop(Duration::from_secs(3));
        return Err(fail(format!("organ play sent {} messages in 20 s; stderr:\n{}", r.midi_received(), read())));
    }
    std::thread::sleep(Duration::from_secs_f64(2.0 * BEAT));
    play.signal(libc::SIGINT);
    let t = Instant::now();
    let status = play.wait_timeout(Duration::from_secs(10));
    let sigint_to_exit = t.elapsed();
    let Some(status) = status else {
        play.stop(Duration::from_secs(3));
        return Err(fail(format!("organ play did not exit within 10 s of SIGINT; stderr:\n{}", read())));
    };
    std::thread::sleep(Duration::from_secs_f64(TAIL));
    let mut steps = Vec::new();
    for (what, msgs, hold) in PROBE {
        let bytes: Vec<Vec<u8>> = msgs.iter().map(|m| hex(m)).collect();
        for b in &bytes {
            let now = Stamp { plan: Micros::ZERO, due: Micros::ZERO, now: Micros::ZERO };
            probe.send(b, now).map_err(|e| fail(format!("probe: {e}")))?;
        }
        steps.push((*what, bytes));
        std::thread::sleep(Duration::from_secs_f64(*hold));
    }
    let rec = r.finish();
    let _ = rec.save(dir, &format!("demo-rec-{attempt}"), RATE);
    Ok(Run { rec, status, stderr: read(), sigint_to_exit, probe: steps })
}

/// Level (dBFS) of each pitch in a stretch: the strongest component within ±2.5 % of it (real
/// pipes are not tuned to the hertz), or why it cannot be measured.
fn levels(view: &View, a: Option<usize>, b: Option<usize>, hz: &[f64]) -> Option<Result<Vec<f64>, String>> {
    let x = match view.stretch(a, b)? {
        Ok(x) => x,
        Err(e) => return Some(Err(e)),
    };
    let peak = |f: f64| {
        (-25..=25)
            .map(|k| db(tone_amplitude(x, f * (1.0 + f64::from(k) * 0.001), f64::from(RATE))))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    Some(Ok(hz.iter().map(|&f| peak(f)).collect()))
}

/// G4 (the great's key) at 8', 16' (an octave down) and the pedal's G2 at 16'.
const G4: f64 = 392.0;
const G3: f64 = 196.0;
const G1: f64 = 49.0;
/// The swell's C4 at 8'.
const C4: f64 = 261.6;

fn check(run: &Run, plan: &[PlanMsg]) -> Checks {
    let mut out: Checks = Vec::new();
    let took = run.sigint_to_exit;
    out.push((
        "exit status 130 soon after SIGINT".into(),
        Some(if run.status.code() != Some(130) {
            Err(format!("exit status {:?}; stderr:\n{}", run.status, run.stderr))
        } else if took > Duration::from_secs(5) {
            Err(format!("exited {:.1} s after SIGINT", took.as_secs_f64()))
        } else {
            Ok(format!("exited {:.0} ms after SIGINT", took.as_secs_f64() * 1e3))
        }),
    ));
    let view = View::new(&run.rec);
    let all: Vec<&[u8]> = view.midi.iter().map(|m| m.bytes()).collect();
    let n_probe: usize = run.probe.iter().map(|(_, m)| m.len()).sum();
    let sent = &all[..all.len().saturating_sub(n_probe)];
    // The plan's messages as sent, on time: the release after SIGINT repeats the plan's own
    // ending (note-offs, all-notes-off, cancel), only earlier.
    let rate = f64::from(RATE);
    let on_time = |i: usize| {
        let (Some(a), Some(b)) = (view.midi.first(), view.midi.get(i)) else { return false };
        ((b.pos - a.pos) as f64 / rate - (plan[i].0 - plan[0].0)).abs() < 0.1
    };
    let m = (0..sent.len().min(plan.len())).take_while(|&i| sent[i] == plan[i].1.as_slice() && on_time(i)).count();
    let release = &sent[m..];
    let wire = release_on_the_wire(plan, m, release, &all[sent.len()..], run);
    let wire = match wire {
        Err(_) if view.gapped => None, // a message lost in a missed cycle looks like any of these
        w => Some(w),
    };
    let valid = matches!(wire, Some(Ok(_)));
    out.push(("the release on the wire: note-offs, CC 123, every control's off".into(), wire));
    let gate = |v: Verdict| if valid { v } else { None };

    let stop_on: Vec<usize> = plan.iter().enumerate().filter(|(_, p)| p.2 == "stop_on").map(|(i, _)| i).collect();
    let (montre, bourdon) = (stop_on[0], stop_on[1]);
    // The first change is one message; the second puts the Montre in and draws two stops.
    let second = plan.iter().position(|p| p.2 == "stop_off").expect("the Montre goes off");
    out.push((
        "silence: keys down, no stop drawn yet".into(),
        gate(view.silence(view.from(montre - 1, 0.05), view.after(montre, -0.03))),
    ));
    let a = levels(&view, view.from(montre, 2.0 * SETTLE), view.after(second, -0.03), &[G4, G3, G1]);
    let b = levels(&view, view.from(bourdon, 2.0 * SETTLE), view.after(m, -0.03), &[G4, G3, G1]);
    out.push(("Gt Montre 8' drawn: G4 sounds".into(), gate(a.clone().map(|r| r.and_then(|l| montre_sounds(&l))))));
    out.push((
        "Montre off, Bourdon 16' and Ped Sousbasse 16' on: another spectrum".into(),
        gate(match (a, b) {
            (Some(Ok(a)), Some(Ok(b))) => Some(spectrum_changed(&a, &b)),
            (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e)),
            _ => None,
        }),
    ));
    // The probe's steps, each from its last message (+ settle) to the next step.
    let probe0 = sent.len();
    let mut starts = Vec::new();
    let mut k = probe0;
    for (_, msgs) in &run.probe {
        k += msgs.len();
        starts.push(k - 1);
    }
    out.push((
        "silence after SIGINT (release tails over)".into(),
        gate(view.silence(view.from(sent.len() - 1, TAIL - 0.3), view.after(probe0, -0.03))),
    ));
    out.push((
        "silence with keys pressed after SIGINT (the stops were cancelled)".into(),
        gate(view.silence(view.from(starts[0], 0.1), view.after(starts[0] + 1, -0.03))),
    ));
    out.push((
        "silence with stops drawn after SIGINT (no key was left down)".into(),
        gate(view.silence(view.from(starts[2], RELEASE), view.after(starts[2] + 1, -0.03))),
    ));
    let keys = levels(&view, view.from(starts[3], SETTLE), view.after(starts[3] + 1, -0.03), &[G4, C4]);
    // Just before and just after the box closes.
    let open = levels(&view, view.from(starts[4], -0.3), view.after(starts[4], -0.03), &[C4]);
    let closed = levels(&view, view.from(starts[4], SETTLE), view.after(starts[4], 0.55), &[C4]);
    out.push((
        "the probe heard: the great's G4 (Montre 8') and the swell's C4 (Bourdon 8')".into(),
        gate(keys.map(|r| {
            r.and_then(|l| {
                let detail = format!("G4 {:.0}, C4 {:.0} dBFS", l[0], l[1]);
                if l[0] > -60.0 && l[1] > -60.0 { Ok(detail) } else { Err(detail) }
            })
        })),
    ));
    out.push((
        "the swell's expression (CC 11 = 0) closes the Recit box: its Bourdon 8' falls".into(),
        gate(match (open, closed) {
            (Some(Ok(open)), Some(Ok(shut))) => {
                let detail = format!("swell C4 {:.0} → {:.0} dBFS", open[0], shut[0]);
                // GrandOrgue attenuates the Recit to 20 % (AmpMinimumLevel) when it is shut.
                Some(if shut[0] < open[0] - 5.0 { Ok(detail) } else { Err(detail) })
            }
            (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e)),
            _ => None,
        }),
    ));
    out
}

fn montre_sounds(l: &[f64]) -> Result<String, String> {
    let detail = format!("G4 {:.0}, G3 {:.0}, G1 {:.0} dBFS", l[0], l[1], l[2]);
    if l[0] > -60.0 && l[1] < l[0] - 20.0 && l[2] < l[0] - 20.0 { Ok(detail) } else { Err(detail) }
}

fn spectrum_changed(a: &[f64], b: &[f64]) -> Result<String, String> {
    let detail =
        format!("G3 {:.0} → {:.0}, G1 {:.0} → {:.0}, G4 {:.0} → {:.0} dBFS", a[1], b[1], a[2], b[2], a[0], b[0]);
    // The Bourdon 16' brings G3, the Sousbasse G1; both were absent with the Montre alone.
    if b[1] > -60.0 && b[1] > a[1] + 20.0 && b[2] > a[2] + 20.0 { Ok(detail) } else { Err(detail) }
}

/// The release after SIGINT: a note-off for each key down, CC 123 on the three divisions, and
/// the cancel (every control's off: no General Cancel in the demo organ's definition); then the
/// probe's messages.
fn release_on_the_wire(
    plan: &[PlanMsg],
    m: usize,
    release: &[&[u8]],
    probe_seen: &[&[u8]],
    run: &Run,
) -> Result<String, String> {
    let mut problems = Vec::new();
    let probe: Vec<&[u8]> = run.probe.iter().flat_map(|(_, m)| m.iter().map(Vec::as_slice)).collect();
    if probe_seen != probe.as_slice() {
        problems.push(format!("the probe's messages are not last: {}", show(probe_seen)));
    }
    let last_stop = plan.iter().rposition(|p| p.2 == "stop_on").unwrap_or(0);
    if m <= last_stop || m >= plan.len() {
        problems
            .push(format!("not interrupted after the registration change: {m} of {} plan messages sent", plan.len()));
    }
    let mut held: Vec<(u8, u8)> = Vec::new();
    for (_, b, kind) in &plan[..m] {
        let key = (b[0] & 0x0F, b[1]);
        match kind.as_str() {
            "note_on" => held.push(key),
            "note_off" => held.retain(|h| *h != key),
            _ => {}
        }
    }
    if held.len() != 2 {
        problems.push(format!("expected the two keys down, found {held:?}"));
    }
    problems.extend(keys_not_released(&held, release));
    let offs = release.iter().filter(|b| b.len() == 3 && b[0] == 0x8F).count();
    if offs != 26 {
        problems.push(format!("{offs} control offs (note-off on channel 16) instead of 26"));
    }
    if problems.is_empty() {
        Ok(format!(
            "cut after {m} of {} plan messages, keys down {held:?}; {} release messages",
            plan.len(),
            release.len()
        ))
    } else {
        Err(format!("{}; release: {}", problems.join("; "), show(release)))
    }
}
