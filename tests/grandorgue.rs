//! GrandOrgue: `organ grandorgue config` on a generated organ, and the end-to-end path
//! `organ play --to grandorgue` (the real binary) → JACK → a real GrandOrgue (headless, JACK
//! dummy backend, Xvfb) → recorded audio.
//!
//! The end-to-end test needs the Debian packages `grandorgue jackd2 xvfb x11-utils` (and
//! `libjack-jackd2-dev pkg-config` to build). Where they are missing it prints `SKIPPED: <reason>`
//! on stderr; with `ORGAN_REQUIRE_GRANDORGUE=1` (CI) a missing package fails the test instead.

mod support;

use std::process::Command;

use support::Scratch;
use support::test_organ;

fn organ_bin() -> Command {
    support::organ_command(&[])
}

/// The installed GrandOrgue demo sample set (Debian package `grandorgue-demo`), if any.
fn demo_package() -> Option<std::path::PathBuf> {
    std::fs::read_dir("/usr/share/GrandOrgue/packages").ok()?.flatten().map(|e| e.path()).find(|p| {
        p.extension().is_some_and(|x| x == "orgue")
            && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("demo-"))
    })
}

/// The demo package, or `None` after saying why the test is skipped (failing where the
/// GrandOrgue packages are required).
fn demo_or_skip(test: &str) -> Option<std::path::PathBuf> {
    let p = demo_package();
    if p.is_none() {
        assert!(
            std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(),
            "ORGAN_REQUIRE_GRANDORGUE is set, but the demo sample set is not installed (grandorgue-demo)"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: the demo sample set is not installed (Debian package grandorgue-demo)"
        );
    }
    p
}

fn shipped_demo_organ() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("organs/grandorgue-demo.toml")
}

/// `organ grandorgue config` with the shipped demo organ definition on the real demo package:
/// every speaking stop, coupler and tremulant bound, each through the switch GrandOrgue draws it
/// with (the demo computes all of them: `Function=And` of a switch).
#[test]
fn config_binds_every_control_of_the_demo_organ() {
    let Some(pkg) = demo_or_skip("config_binds_every_control_of_the_demo_organ") else { return };
    let dir = Scratch::new("go-demo-config");
    let out = dir.path.join("demo.cmb");
    let mut run = organ_bin();
    run.args(["grandorgue", "config", "--organ"]).arg(shipped_demo_organ()).arg("--odf").arg(&pkg);
    let run = run.arg("--out").arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(!stdout.contains("not matched") && !stdout.contains("not driven"), "{stdout}");
    let via_switch = stdout.lines().filter(|l| l.contains(" → Switch") && l.contains("(for ")).count();
    assert_eq!(via_switch, 26, "{stdout}");
    assert!(stdout.contains("speaking stops, couplers and tremulants: 26 of 26 driven"), "{stdout}");
    for line in [
        "Gt Montre 8'             → Switch007 \"Montre 8'\" (for Stop101 \"Montre 8'\"; by name;",
        "Ped Sousbasse 16'        → Switch001 \"Sousbasse 16'\" (for Stop002 \"Sous- basse 16'\"; by name;",
        "Sw Trompette 8'          → Switch020 \"Trumpette 8'\" (for Stop206 \"Trompette 8'\"; by name;",
        "II/P                     → Switch024 \"II/P\" (for Coupler002 \"II/P\"; by name;",
        "Tremblant                → Switch027 \"Tremblant\" (for Tremulant001 \"Tremblant\"; by name;",
        "swell expression         → Enclosure001 \"Recit\"",
        "great expression         → Enclosure002 \"Grandorgue\"",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    assert!(stdout.contains("File > Import Settings"), "{stdout}");
    let cmb = std::fs::read_to_string(&out).unwrap();
    // computed elements get no MIDI settings (GrandOrgue would warn about them)
    assert!(!cmb.contains("[Stop101]") && !cmb.contains("[Coupler002]") && cmb.contains("[Switch007]"));
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "config_binds_every_control_of_the_demo_organ: {via_switch} of 26 controls bound through their switches\n"
        )
        .as_bytes(),
    );
}

/// `organ grandorgue organ` then `organ grandorgue config`: every speaking stop, coupler and
/// tremulant of the organ bound, on the generated test organ and on the demo sample set.
#[test]
fn organ_from_odf_round_trips() {
    let dir = Scratch::new("go-round-trip");
    let mut odfs = vec![("test organ", test_organ::generate(&dir.path).unwrap(), 8)];
    if let Some(pkg) = demo_or_skip("organ_from_odf_round_trips (demo part)") {
        odfs.push(("demo", pkg, 26));
    }
    for (what, odf, n) in odfs {
        let toml = dir.path.join(format!("{}.toml", what.replace(' ', "-")));
        let out =
            organ_bin().args(["grandorgue", "organ", "--odf"]).arg(&odf).arg("--out").arg(&toml).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {err}");
        assert!(err.contains(&format!("{n} stops, couplers and tremulants")), "{what}: {err}");
        // the next command on a line of its own, not after a written-out "\n"
        assert!(!err.contains("\\n"), "{what}: {err}");
        assert!(err.lines().any(|l| l.starts_with("next: organ grandorgue config --organ ")), "{what}: {err}");
        let mut cfg = organ_bin();
        cfg.args(["grandorgue", "config", "--organ"]).arg(&toml).arg("--odf").arg(&odf);
        let cfg = cfg.arg("--out").arg(dir.path.join("rt.cmb")).output().unwrap();
        let stdout = String::from_utf8_lossy(&cfg.stdout);
        assert!(cfg.status.success(), "{what}: {stdout}");
        assert!(!stdout.contains("not matched") && !stdout.contains("not driven"), "{what}: {stdout}");
        assert!(
            stdout.contains(&format!("speaking stops, couplers and tremulants: {n} of {n} driven")),
            "{what}: {stdout}"
        );
        // without --out the definition goes to standard output, and an existing file stays
        let again = organ_bin().args(["grandorgue", "organ", "--odf"]).arg(&odf).output().unwrap();
        assert_eq!(again.stdout, std::fs::read(&toml).unwrap(), "{what}");
        let refused =
            organ_bin().args(["grandorgue", "organ", "--odf"]).arg(&odf).arg("--out").arg(&toml).output().unwrap();
        assert_eq!(refused.status.code(), Some(2), "{what}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"), "{what}");
    }
}

/// `organ grandorgue config` on the generated organ: everything matches, the right receiver
/// types are written, the report says so.
#[test]
fn config_binds_every_stop_of_the_test_organ() {
    let dir = Scratch::new("go-config");
    let odf = test_organ::generate(&dir.path).unwrap();
    let toml = dir.path.join("organ-e2e.toml");
    let out = organ_bin().args(["grandorgue", "config", "--organ"]).arg(&toml).arg("--odf").arg(&odf).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("not matched"), "{stdout}");
    assert!(!stdout.contains("not driven"), "{stdout}");
    for line in [
        "Sw Gedackt 8             → Stop001 \"Gedackt 8'\"",
        "Sw Nazard 2 2/3          → Stop003",
        "Gt Principal 8           → Stop004",
        "Ped Subbass 16           → Stop006",
        "Sw to Ped                → Coupler001 \"Swell to Pedal\"",
        "great                    channel  2 → Manual001 \"Hauptwerk\"",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    let cmb = std::fs::read(odf.with_extension("cmb")).unwrap();
    assert!(cmb.starts_with(&[0xEF, 0xBB, 0xBF]), "a UTF-8 BOM, or GrandOrgue reads ISO-8859-1");
    let text = String::from_utf8(cmb[3..].to_vec()).unwrap();
    for want in [
        "[Organ]\nChurchName=OrganE2E\n",
        "[Manual002]\nNumberOfMIDIEvents=1\nMIDIDevice001=\nMIDIEventType001=Note\nMIDIChannel001=1\n",
        "[Stop002]\nNumberOfMIDIEvents=1\nMIDIDevice001=\nMIDIEventType001=ControlChangeFixed\nMIDIChannel001=16\nMIDIKey001=20\nMIDILowerLimit001=0\nMIDIUpperLimit001=127\n",
        "MIDIEventType001=NRPN\nMIDIChannel001=16\nMIDIKey001=300\n",
        "MIDIEventType001=ProgramRange\nMIDIChannel001=15\nMIDILowerLimit001=7\nMIDIUpperLimit001=6\n",
        "[SetterGC]\nNumberOfMIDIEvents=1\nMIDIDevice001=\nMIDIEventType001=SysExJohannus\nMIDIKey001=127\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("ODFHash"));

    // A second run replaces its own file; a foreign .cmb is left alone without --force.
    let again =
        organ_bin().args(["grandorgue", "config", "--organ"]).arg(&toml).arg("--odf").arg(&odf).output().unwrap();
    assert!(again.status.success());
    std::fs::write(odf.with_extension("cmb"), "[Organ]\nChurchName=hand made\n").unwrap();
    let refused =
        organ_bin().args(["grandorgue", "config", "--organ"]).arg(&toml).arg("--odf").arg(&odf).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(odf.with_extension("cmb")).unwrap(), "[Organ]\nChurchName=hand made\n");
}

#[test]
fn config_reports_a_file_that_is_not_an_odf() {
    let dir = Scratch::new("go-config-bad");
    let bad = dir.path.join("x.organ");
    std::fs::write(&bad, "[Foo]\nBar=1\n").unwrap();
    let out = organ_bin().args(["grandorgue", "config", "--organ", "st-marys", "--odf"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a GrandOrgue organ definition"), "{err}");
    assert!(!dir.path.join("x.cmb").exists());
}

/// The settings file is never written through a symbolic link (a sample set could ship
/// `MyOrgan.cmb` as a link to any file) nor over the ODF, even with --force.
#[test]
fn config_never_writes_through_a_link_or_over_the_odf() {
    let dir = Scratch::new("go-config-link");
    let odf = test_organ::generate(&dir.path).unwrap();
    let toml = dir.path.join("organ-e2e.toml");
    let precious = dir.path.join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    std::os::unix::fs::symlink(&precious, odf.with_extension("cmb")).unwrap();
    let odf_before = std::fs::read(&odf).unwrap();
    for out in [None, Some(&odf)] {
        let mut cmd = organ_bin();
        cmd.args(["grandorgue", "config", "--force", "--organ"]).arg(&toml).arg("--odf").arg(&odf);
        if let Some(o) = out {
            cmd.arg("--out").arg(o);
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        let want = if out.is_none() {
            "is a symbolic link; organ does not write through links"
        } else {
            "this is a GrandOrgue organ definition this performance reads"
        };
        assert!(err.contains(want) && err.lines().count() == 1, "{err}");
    }
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    assert_eq!(std::fs::read(&odf).unwrap(), odf_before);
}

#[cfg(not(feature = "jack"))]
#[test]
fn grandorgue_end_to_end() {
    use std::io::Write;
    assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "built without the jack feature");
    let _ = writeln!(std::io::stderr(), "SKIPPED: grandorgue_end_to_end: built without the `jack` feature");
}

#[cfg(not(feature = "jack"))]
#[test]
fn grandorgue_demo_end_to_end() {
    use std::io::Write;
    assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "built without the jack feature");
    let _ = writeln!(std::io::stderr(), "SKIPPED: grandorgue_demo_end_to_end: built without the `jack` feature");
}

#[cfg(feature = "jack")]
#[path = "grandorgue/demo.rs"]
mod demo;

#[cfg(feature = "jack")]
mod e2e {
    use std::path::{Path, PathBuf};
    use std::process::{ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    use organ::midi::Micros;
    use organ::output::jack::JackOutput;
    use organ::output::{Output, Stamp};

    use super::support::analysis::{db, onset, rms, tone_amplitude};
    use super::support::procs::{
        self, GrandOrgue, Jackd, PERIOD, Proc, RATE, RunLock, Unavailable, Xvfb, say, wait_for,
    };
    use super::support::recorder::{MidiEvent, Recorder, Recording};
    use super::support::test_organ::{self, BEAT, CHURCH, pipe_hz};
    use super::{Scratch, organ_bin};

    /// A skip that is visible (stderr, not captured) and fails where the packages are required.
    pub(crate) fn skip(test: &str, reason: &str) {
        assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "ORGAN_REQUIRE_GRANDORGUE is set, but {reason}");
        say(&format!("SKIPPED: {test}: {reason}"));
    }

    pub(crate) fn fail(s: impl Into<String>) -> Unavailable {
        Unavailable::Fail(s.into())
    }

    /// The outcome of one check in one run: `None` when the recording cannot tell (a missed JACK
    /// cycle before the stretch it needs), else passed (with a detail to print) or failed.
    pub(crate) type Verdict = Option<Result<String, String>>;
    pub(crate) type Checks = Vec<(String, Verdict)>;

    /// The end-to-end test through the real binary. One GrandOrgue serves two scenarios:
    ///
    /// 1. `organ play` plays the test piece to the end: the recorded messages are exactly the
    ///    plan, each stop sounds its pitch on its manual, the coupler brings the swell's pitches
    ///    onto the pedal, stops drawn off fall silent, silence before the first stop and after
    ///    the end (keys pressed afterwards stay silent: the stops were cancelled), MIDI-to-sound
    ///    delay within two periods.
    /// 2. The same piece, SIGINT while a pedal key and four controls are down: exit status 130
    ///    within a bounded time, the release (note-offs, CC 123, cancel) on the wire, silence,
    ///    keys pressed afterwards stay silent until the test draws a stop itself.
    #[test]
    fn grandorgue_end_to_end() {
        if let Err(r) = procs::check_tools() {
            return skip("grandorgue_end_to_end", &r);
        }
        if let Err(e) = jack::jack_sys::library() {
            return skip("grandorgue_end_to_end", &format!("libjack cannot be loaded ({e}); install jackd2"));
        }
        let _lock = RunLock::acquire(Duration::from_secs(300)).unwrap();
        use_test_server();
        let t_start = Instant::now();
        let dir = Scratch::new("go-e2e");
        match run(&dir) {
            Ok(()) => say(&format!("grandorgue_end_to_end: passed in {:.1} s", t_start.elapsed().as_secs_f64())),
            Err(Unavailable::Skip(r)) => skip("grandorgue_end_to_end", &r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        }
    }

    /// A GrandOrgue window that means it complained: its "Log messages" window (warnings such as
    /// "Unused CMB entry", a settings file made for another organ) or a message box.
    pub(crate) fn is_dialog(title: &str) -> bool {
        let t = title.to_lowercase();
        ["log messages", "warning", "error", "import", "question"].iter().any(|w| t.contains(w))
    }

    /// Points this process's JACK clients (and children) at the test server.
    pub(crate) fn use_test_server() {
        procs::use_server();
    }

    /// `--to grandorgue` with a JACK server: our port is connected to GrandOrgue's JACK input
    /// (here a stand-in client with GrandOrgue's port name); `organ grandorgue port` keeps a
    /// port open until killed; without a server both say so.
    #[test]
    fn jack_loopback_and_port_command() {
        if procs::which("jackd").is_none() {
            return skip("jack_loopback_and_port_command", "jackd not installed (Debian package jackd2)");
        }
        if let Err(e) = jack::jack_sys::library() {
            return skip("jack_loopback_and_port_command", &format!("libjack cannot be loaded ({e}); install jackd2"));
        }
        let _lock = RunLock::acquire(Duration::from_secs(300)).unwrap();
        use_test_server();
        let dir = Scratch::new("go-loopback");
        let mut jackd = match Jackd::start(&dir.path) {
            Ok(j) => j,
            Err(Unavailable::Skip(r)) => return skip("jack_loopback_and_port_command", &r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        let (go, _) = jack::Client::new("GrandOrgue", jack::ClientOptions::NO_START_SERVER).unwrap();
        let go_in = go.register_port("GrandOrgue Input", jack::MidiIn::default()).unwrap();
        let go = go.activate_async((), ()).unwrap();

        let lb = organ::output::grandorgue::open(&Default::default(), &Default::default()).unwrap();
        assert_eq!(lb.output.name(), "grandorgue");
        assert!(
            lb.message.contains("connected") && lb.message.contains("GrandOrgue:GrandOrgue Input"),
            "{}",
            lb.message
        );
        let conns = go.as_client().port_by_name("GrandOrgue:GrandOrgue Input").unwrap().get_connections();
        assert_eq!(conns.len(), 1, "{conns:?}");
        drop(lb);
        drop(go_in);

        let mut port = procs::Proc::spawn(
            "organ grandorgue port",
            organ_bin().args(["grandorgue", "port", "--via", "jack"]).stdout(std::process::Stdio::null()),
        )
        .unwrap();
        let appeared = wait_for(Duration::from_secs(10), || {
            go.as_client().ports(Some("^organ.*:out$"), None, jack::PortFlags::empty()).into_iter().next()
        });
        assert!(appeared.is_some(), "organ grandorgue port created no JACK port within 10 s");
        assert!(port.exited().is_none(), "organ grandorgue port exited early");
        port.stop(Duration::from_secs(3));
        let gone = wait_for(Duration::from_secs(5), || {
            go.as_client().ports(Some("^organ.*:out$"), None, jack::PortFlags::empty()).is_empty().then_some(())
        });
        assert!(gone.is_some(), "the port outlived its process");

        // A SysEx longer than a JACK record is refused before playing, in one line (it used to
        // stop the performance when it fell due, with only "1 message(s) were dropped").
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let organ = std::fs::read_to_string(root.join("organs/st-marys.toml")).unwrap().replace(
            "# message = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }",
            &format!("message = {{ sysex = \"F0 {}F7\" }}", "01 ".repeat(70)),
        );
        let long = dir.path.join("long-sysex.toml");
        std::fs::write(&long, organ).unwrap();
        let out = organ_bin()
            .arg("play")
            .arg(root.join("scores/bwv643.mid"))
            .arg("--organ")
            .arg(&long)
            .args(["--to", "jack", "--quiet"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("a SysEx longer than 64 bytes, the most the JACK output carries"), "{err}");
        drop(go);
        jackd.stop();

        let out = organ_bin().args(["grandorgue", "port", "--via", "jack"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no JACK server is running"), "{err}");
    }

    /// One message of the plan (`organ plan --format jsonl`).
    #[derive(Clone, Debug)]
    struct PlanMsg {
        /// Seconds from the start of the performance.
        t: f64,
        bytes: Vec<u8>,
        kind: String,
        name: Option<String>,
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|h| u8::from_str_radix(h, 16).unwrap()).collect()
    }

    fn load_plan(score: &Path, toml: &Path) -> Result<Vec<PlanMsg>, String> {
        let out =
            organ_bin().arg("plan").arg(score).arg("--organ").arg(toml).args(["--format", "jsonl"]).output().unwrap();
        if !out.status.success() {
            return Err(format!("organ plan failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).map_err(|e| format!("{e}: {l}"))?;
                Ok(PlanMsg {
                    t: v["t_us"].as_u64().ok_or("no t_us")? as f64 / 1e6,
                    bytes: hex(v["bytes"].as_str().ok_or("no bytes")?),
                    kind: v["kind"].as_str().unwrap_or_default().to_string(),
                    name: v["name"].as_str().map(str::to_string),
                })
            })
            .collect()
    }

    /// What stays the same across the runs.
    struct Rig {
        dir: PathBuf,
        score: PathBuf,
        toml: PathBuf,
        plan: Vec<PlanMsg>,
        /// GrandOrgue's JACK MIDI input (found connected to `organ grandorgue port`'s port).
        go_input: String,
        /// The test's own JACK MIDI output into GrandOrgue (and the recorder): keys pressed
        /// after `organ play` ended show whether any stop was left drawn.
        probe: JackOutput,
        start: Instant,
    }

    /// Budget for retries after missed JACK cycles: no new run starts after this.
    pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(150);

    fn run(dir: &Scratch) -> Result<(), Unavailable> {
        let start = Instant::now();
        let odf = test_organ::generate(&dir.path).map_err(|e| fail(e.to_string()))?;
        let toml = dir.path.join("organ-e2e.toml");
        let score = test_organ::write_piece(&dir.path).map_err(|e| fail(e.to_string()))?;
        let cfg =
            organ_bin().args(["grandorgue", "config", "--organ"]).arg(&toml).arg("--odf").arg(&odf).output().unwrap();
        if !cfg.status.success() {
            return Err(fail(format!("organ grandorgue config failed: {}", String::from_utf8_lossy(&cfg.stderr))));
        }
        let plan = load_plan(&score, &toml).map_err(fail)?;

        let mut jackd = Jackd::start(&dir.path)?;
        let mut checks: Vec<(String, Checks)> = Vec::new();
        let mut titles_after = Vec::new();
        let outcome = (|| -> Result<(), Unavailable> {
            let stage = Stage::start(&dir.path, &odf, CHURCH, "grandorgue_end_to_end", start)?;
            let probe = organ::output::jack::open(Some(stage.go_input.as_str())).map_err(|e| fail(e.to_string()))?;
            let go_input = stage.go_input.clone();
            let mut rig = Rig { dir: dir.path.clone(), score, toml, plan, go_input, probe, start };

            for scenario in [Scenario::ToTheEnd, Scenario::Interrupted] {
                let v = retrying(scenario.name(), rig.start, |attempt| {
                    let run = play_once(&mut rig, scenario, attempt)?;
                    Ok((
                        run.rec.gaps.clone(),
                        match scenario {
                            Scenario::ToTheEnd => check_to_the_end(&run, &rig.plan, &rig.go_input),
                            Scenario::Interrupted => check_interrupted(&run, &rig.plan),
                        },
                    ))
                })?;
                checks.push((scenario.name().to_string(), v));
            }
            titles_after = stage.xvfb.window_titles();
            if rig.probe.finish().is_err() {
                say("grandorgue_end_to_end: the probe output did not drain");
            }
            stage.stop();
            Ok(())
        })();
        jackd.stop();
        outcome?;

        verdict("grandorgue_end_to_end", &titles_after, &checks)
    }

    /// The test's verdict: no GrandOrgue dialog, every check passed in some run and failed in
    /// none. Prints each check's detail.
    pub(crate) fn verdict(test: &str, titles_after: &[String], checks: &[(String, Checks)]) -> Result<(), Unavailable> {
        if let Some(d) = titles_after.iter().find(|t| is_dialog(t)) {
            return Err(fail(format!("GrandOrgue showed a dialog \"{d}\" while playing")));
        }
        let mut problems = Vec::new();
        for (scenario, list) in checks {
            for (name, v) in list {
                match v {
                    Some(Ok(detail)) if !detail.is_empty() => say(&format!("{test}: {scenario}: {name}: {detail}")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => problems.push(format!("{scenario}: {name}: {e}")),
                    None => problems.push(format!(
                        "{scenario}: {name}: not verified: missed JACK cycles in every run (machine too busy)"
                    )),
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(fail(problems.join("\n"))) }
    }

    /// `organ grandorgue port`, Xvfb and GrandOrgue with an organ loaded, its MIDI input
    /// listening to the port: what both end-to-end tests start from.
    pub(crate) struct Stage {
        pub port: Proc,
        pub xvfb: Xvfb,
        pub go: GrandOrgue,
        /// GrandOrgue's JACK MIDI input (found connected to `organ grandorgue port`'s port).
        pub go_input: String,
    }

    impl Stage {
        /// Starts everything on the running test JACK server and waits (60 s at most) until
        /// GrandOrgue shows `church` and listens; fails if it shows a dialog.
        pub(crate) fn start(
            dir: &Path,
            odf: &Path,
            church: &str,
            test: &str,
            t0: Instant,
        ) -> Result<Stage, Unavailable> {
            // The loopback as a user starts it: `organ grandorgue port` keeps a MIDI source open
            // so that GrandOrgue, which scans for sources only at start-up, connects to it.
            let port_log = std::fs::File::create(dir.join("grandorgue-port.log")).map_err(|e| fail(e.to_string()))?;
            let mut port = Proc::spawn(
                "organ grandorgue port",
                organ_bin()
                    .args(["grandorgue", "port"])
                    .stdin(Stdio::null())
                    .stdout(port_log.try_clone().map_err(|e| fail(e.to_string()))?)
                    .stderr(port_log),
            )
            .map_err(fail)?;
            let watch = jack::Client::new("organ-e2e-watch", jack::ClientOptions::NO_START_SERVER)
                .map_err(|e| fail(format!("JACK client: {e}")))?
                .0;
            let source = wait_for(Duration::from_secs(15), || {
                watch.ports(Some("^organ.*:out$"), Some("midi"), jack::PortFlags::IS_OUTPUT).into_iter().next()
            })
            .ok_or_else(|| {
                fail(format!(
                    "organ grandorgue port created no JACK port within 15 s (exited: {:?}): {}",
                    port.exited(),
                    std::fs::read_to_string(dir.join("grandorgue-port.log")).unwrap_or_default()
                ))
            })?;
            let xvfb = Xvfb::start().map_err(fail)?;
            let mut go = GrandOrgue::start(dir, &xvfb.display, odf).map_err(fail)?;

            // Ready: GrandOrgue's MIDI input listens to the port, its audio ports exist, and its
            // main window shows the organ.
            let ready = wait_for(Duration::from_secs(60), || {
                if go.proc.exited().is_some() {
                    return Some(None);
                }
                let c = &watch;
                let audio = c.port_by_name("GrandOrgueAudio:out_0").is_some()
                    && c.port_by_name("GrandOrgueAudio:out_1").is_some();
                let input = c
                    .port_by_name(&source)
                    .and_then(|p| p.get_connections().into_iter().find(|x| x.to_lowercase().contains("grandorgue")));
                let titled = xvfb
                    .window_titles()
                    .iter()
                    .any(|t| t.starts_with("GrandOrgue v") && t.ends_with(&format!("- {church}")));
                match input {
                    Some(i) if audio && titled => Some(Some(i)),
                    _ => None,
                }
            });
            let Some(Some(go_input)) = ready else {
                return Err(fail(format!(
                    "GrandOrgue not ready after 60 s (exited: {:?}); windows: {:?}\nGrandOrgue log:\n{}",
                    go.proc.exited(),
                    xvfb.window_titles(),
                    go.log_tail()
                )));
            };
            drop(watch);
            say(&format!(
                "{test}: GrandOrgue ready after {:.1} s, its input {go_input} listening to {source}",
                t0.elapsed().as_secs_f64()
            ));
            let titles = xvfb.window_titles();
            if let Some(d) = titles.iter().find(|t| is_dialog(t)) {
                return Err(fail(format!(
                    "GrandOrgue shows a dialog \"{d}\" (windows: {titles:?})\n{}",
                    go.log_tail()
                )));
            }
            Ok(Stage { port, xvfb, go, go_input })
        }

        pub(crate) fn stop(mut self) {
            self.go.proc.stop(Duration::from_secs(3));
            self.port.stop(Duration::from_secs(3));
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Scenario {
        ToTheEnd,
        Interrupted,
    }

    impl Scenario {
        fn name(self) -> &'static str {
            match self {
                Scenario::ToTheEnd => "played to the end",
                Scenario::Interrupted => "SIGINT mid-piece",
            }
        }
    }

    /// Runs a scenario until every check has a verdict (up to three runs): a missed JACK cycle
    /// (an xrun on a busy machine) leaves a gap in the recording, and checks after the first gap
    /// are repeated in another run. A failure in any run fails. `run` plays once and returns the
    /// recording's gaps and the checks.
    pub(crate) fn retrying(
        name: &str,
        t0: Instant,
        mut run: impl FnMut(u32) -> Result<(Vec<String>, Checks), Unavailable>,
    ) -> Result<Checks, Unavailable> {
        let mut verdicts: Checks = Vec::new();
        for attempt in 1..=3 {
            let (gaps, outcome) = run(attempt)?;
            if !gaps.is_empty() {
                say(&format!(
                    "{name}: run {attempt}: JACK frame clock jumps or losses ({}); checks they leave undecided are repeated",
                    gaps.join("; ")
                ));
            }
            for (name, o) in outcome {
                match verdicts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, v)) => {
                        if o.is_some() && (v.is_none() || matches!(o, Some(Err(_)))) {
                            *v = o;
                        }
                    }
                    None => verdicts.push((name, o)),
                }
            }
            if verdicts.iter().all(|(_, v)| v.is_some()) || t0.elapsed() > RETRY_BUDGET {
                break;
            }
        }
        Ok(verdicts)
    }

    /// What one run of `organ play` did, with the recording.
    struct Run {
        rec: Recording,
        status: ExitStatus,
        stderr: String,
        stdout: String,
        /// SIGINT to exit (scenario 2).
        sigint_to_exit: Option<Duration>,
        /// Messages the probe sent after `organ play` ended.
        probe: Vec<Vec<u8>>,
    }

    /// Keys on every division, pressed by the probe after `organ play` ended.
    const PROBE_KEYS: [&str; 3] = ["90 3C 50", "91 40 50", "92 30 50"];
    const PROBE_KEYS_OFF: [&str; 3] = ["80 3C 00", "81 40 00", "82 30 00"];
    /// The probe's own stop: Gt Principal 8 (program 5 on channel 15).
    const PROBE_DRAW: &str = "CE 05";
    const CANCEL: &str = "F0 00 4A 4F 48 41 53 7F F7";
    /// After a key or stop message, how long to let it sound before the next step.
    const PROBE_HOLD: f64 = 0.7;

    fn play_once(rig: &mut Rig, scenario: Scenario, attempt: u32) -> Result<Run, Unavailable> {
        let r = Recorder::open().map_err(fail)?;
        for (src, dst) in [("GrandOrgueAudio:out_0", "in_l"), ("GrandOrgueAudio:out_1", "in_r")] {
            r.client().connect_ports_by_name(src, &r.port(dst)).map_err(|e| fail(format!("{src}: {e}")))?;
        }
        let rec_midi = r.port("midi_in");
        rig.probe.connect(&rec_midi).map_err(|e| fail(e.to_string()))?;
        std::thread::sleep(Duration::from_millis(500));
        r.start();
        std::thread::sleep(Duration::from_millis(300));

        // `--to grandorgue` finds GrandOrgue's JACK input; the second output feeds the
        // recorder, placed at the same frames (both outputs are stamped by the same send).
        let tag = format!("{}-{attempt}", if scenario == Scenario::ToTheEnd { "end" } else { "sigint" });
        let (out_path, err_path) = (rig.dir.join(format!("play-{tag}.out")), rig.dir.join(format!("play-{tag}.err")));
        let mut play = Proc::spawn(
            "organ play",
            organ_bin()
                .arg("play")
                .arg(&rig.score)
                .arg("--organ")
                .arg(&rig.toml)
                .args(["--to", "grandorgue", "--to", &format!("jack:{rec_midi}"), "--stats"])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out_path).map_err(|e| fail(e.to_string()))?)
                .stderr(std::fs::File::create(&err_path).map_err(|e| fail(e.to_string()))?),
        )
        .map_err(fail)?;
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let duration = rig.plan.last().map_or(0.0, |m| m.t);
        let mut sigint_to_exit = None;
        let status = match scenario {
            Scenario::ToTheEnd => play.wait_timeout(Duration::from_secs_f64(duration + 20.0)),
            Scenario::Interrupted => {
                // SIGINT 0.3 s after the coupler was drawn (0.3 s before the plan puts it in): the pedal key, Sw
                // Gedackt, Sw Nazard, Ped Subbass and Sw to Ped are down.
                let k = rig.plan.iter().position(|m| m.kind == "coupler_on").expect("the plan draws the coupler");
                if wait_for(Duration::from_secs(20), || (r.midi_received() > k).then_some(())).is_none() {
                    play.stop(Duration::from_secs(3));
                    return Err(fail(format!(
                        "organ play sent {} of the first {} messages within 20 s; stderr:\n{}",
                        r.midi_received(),
                        k + 1,
                        read(&err_path)
                    )));
                }
                std::thread::sleep(Duration::from_millis(300));
                play.signal(libc::SIGINT);
                let t = Instant::now();
                let s = play.wait_timeout(Duration::from_secs(10));
                sigint_to_exit = Some(t.elapsed());
                s
            }
        };
        let Some(status) = status else {
            play.stop(Duration::from_secs(3));
            return Err(fail(format!(
                "organ play ({}) did not exit in time; stderr:\n{}",
                scenario.name(),
                read(&err_path)
            )));
        };
        // Silence after the end, then keys on every division (and in scenario 2 a stop of the
        // probe's own, to show that the probe is heard).
        std::thread::sleep(Duration::from_millis(800));
        let mut probe = Vec::new();
        let mut send = |out: &mut JackOutput, msgs: &[&str], hold: f64| -> Result<(), Unavailable> {
            for m in msgs {
                let bytes = hex(m);
                out.send(&bytes, Stamp { plan: Micros::ZERO, due: Micros::ZERO, now: Micros::ZERO })
                    .map_err(|e| fail(format!("probe: {e}")))?;
                probe.push(bytes);
            }
            std::thread::sleep(Duration::from_secs_f64(hold));
            Ok(())
        };
        send(&mut rig.probe, &PROBE_KEYS, PROBE_HOLD)?;
        if scenario == Scenario::Interrupted {
            send(&mut rig.probe, &[PROBE_DRAW], PROBE_HOLD)?;
            send(&mut rig.probe, &[CANCEL], 0.0)?;
        }
        send(&mut rig.probe, &PROBE_KEYS_OFF, 0.6)?;
        let rec = r.finish();
        // Kept with the other files when the test fails (or with ORGAN_TEST_KEEP).
        let _ = rec.save(&rig.dir, &format!("rec-{tag}"), RATE);
        Ok(Run { rec, status, stderr: read(&err_path), stdout: read(&out_path), sigint_to_exit, probe })
    }

    /// The recording read by stream position (sample index), up to its first loss.
    pub(crate) struct View<'a> {
        pub(crate) audio: &'a [f32],
        /// The MIDI events within `audio`, in order.
        pub(crate) midi: Vec<&'a MidiEvent>,
        /// Where JACK's frame clock jumped (see [`Recording::breaks`]).
        pub(crate) breaks: &'a [usize],
        /// Whether anything may be missing (a break or a loss): then missing data means "cannot
        /// tell" rather than a failure.
        pub(crate) gapped: bool,
        /// The first message that arrived within two periods of a break: GrandOrgue's input may
        /// have missed that cycle (the recorder's copy came through), so what sounds from there on
        /// cannot be trusted.
        pub(crate) trusted: usize,
    }

    pub(crate) const SETTLE: f64 = 0.25;
    /// Allowance for GrandOrgue's release tails after keys or stops go off.
    pub(crate) const RELEASE: f64 = 0.4;

    impl<'a> View<'a> {
        pub(crate) fn new(rec: &'a Recording) -> View<'a> {
            let audio = &rec.mono[..rec.clean_len.min(rec.mono.len())];
            let midi: Vec<&MidiEvent> = rec.midi.iter().filter(|m| m.pos < audio.len()).collect();
            let near = 2 * PERIOD as usize;
            let trusted = midi
                .iter()
                .position(|m| rec.breaks.iter().any(|&x| m.pos.saturating_sub(near) < x && x <= m.pos + near))
                .unwrap_or(midi.len());
            View {
                audio,
                midi,
                breaks: &rec.breaks,
                gapped: !rec.gaps.is_empty() || rec.clean_len < rec.mono.len(),
                trusted,
            }
        }

        /// Like [`after`](Self::after), for the start of a stretch whose sound depends on the
        /// messages up to the `i`-th: `None` when one of them may not have reached GrandOrgue.
        pub(crate) fn from(&self, i: usize, secs: f64) -> Option<usize> {
            if i >= self.trusted {
                return None;
            }
            self.after(i, secs)
        }

        /// Sample index `secs` after the `i`-th recorded message.
        pub(crate) fn after(&self, i: usize, secs: f64) -> Option<usize> {
            let p = self.midi.get(i)?.pos as f64 + secs * f64::from(RATE);
            (p >= 0.0 && (p as usize) <= self.audio.len()).then_some(p as usize)
        }

        /// Whether the frame clock jumped within `(a, b]`.
        fn broken(&self, a: usize, b: usize) -> bool {
            self.breaks.iter().any(|&x| a < x && x <= b)
        }

        /// Silence (RMS below −70 dBFS: a stuck pipe is near −20, a release tail dies below).
        pub(crate) fn silence(&self, a: Option<usize>, b: Option<usize>) -> Verdict {
            let x = match self.stretch(a, b)? {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            let level = db(rms(x));
            Some(if level > -70.0 {
                Err(format!("expected silence, RMS {level:.1} dBFS"))
            } else {
                Ok(format!("silent ({level:.0} dBFS)"))
            })
        }

        /// The `present` pitches sound (above −40 dBFS), the `absent` ones do not (below −60).
        fn tones(&self, a: Option<usize>, b: Option<usize>, present: &[u32], absent: &[u32]) -> Verdict {
            let x = match self.stretch(a, b)? {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            let level = |f: u32| db(tone_amplitude(x, f64::from(f), f64::from(RATE)));
            let levels: Vec<String> =
                present.iter().chain(absent).map(|&f| format!("{f} Hz {:.0}", level(f))).collect();
            let missing: Vec<u32> = present.iter().copied().filter(|&f| level(f) < -40.0).collect();
            let extra: Vec<u32> = absent.iter().copied().filter(|&f| level(f) > -60.0).collect();
            Some(if missing.is_empty() && extra.is_empty() {
                let loudest_absent = absent.iter().map(|&f| level(f)).fold(f64::NEG_INFINITY, f64::max);
                Ok(format!(
                    "{} dBFS; the other pitches below {loudest_absent:.0}",
                    present.iter().map(|&f| format!("{f} Hz {:.0}", level(f))).collect::<Vec<_>>().join(", ")
                ))
            } else {
                Err(format!("missing {missing:?} Hz, should not sound {extra:?} Hz (dB: {})", levels.join(", ")))
            })
        }

        /// The audio from `a` to `b`, or its longest part without a break: where the frame clock
        /// jumped, GrandOrgue's output jumps too (a click that would smear every pitch). `None`
        /// (cannot tell) when the stretch is cut off by a loss or left too short by breaks; an
        /// error when it is too short without them.
        pub(crate) fn stretch(&self, a: Option<usize>, b: Option<usize>) -> Option<Result<&[f32], String>> {
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b.max(a)),
                _ if self.gapped => return None,
                _ => return Some(Err("the stretch is not in the recording".into())),
            };
            let mut cuts: Vec<usize> = self.breaks.iter().copied().filter(|&x| a < x && x < b).collect();
            let broken = !cuts.is_empty();
            cuts.insert(0, a);
            cuts.push(b);
            let (s, e) = cuts.windows(2).map(|w| (w[0], w[1])).max_by_key(|(s, e)| e - s).expect("two cuts");
            let x = &self.audio[s..e];
            match x.len() {
                n if n >= 4800 => Some(Ok(x)),
                _ if broken => None,
                n => Some(Err(format!("only {n} samples to analyse"))),
            }
        }

        /// MIDI-to-sound delay from the `i`-th recorded message: the audio must be silent for
        /// 0.1 s before it, and sound must start within two periods. `None` when the frame clock
        /// jumped there.
        fn delay(&self, i: usize) -> Verdict {
            let Some(ev) = self.midi.get(i) else {
                return if self.gapped { None } else { Some(Err("the message is not in the recording".into())) };
            };
            if i >= self.trusted {
                return None;
            }
            let (p, period) = (ev.pos, PERIOD as usize);
            if self.broken(p.saturating_sub(4800), p + 2 * period + 2) {
                return None;
            }
            let before = &self.audio[p.saturating_sub(4800)..p.min(self.audio.len())];
            if before.len() < 4800 || onset(before, 0, 1e-4).is_some() {
                return Some(Err("not silent in the 0.1 s before the message".into()));
            }
            match onset(self.audio, p, 1e-4) {
                Some(o) => {
                    let d = o - p;
                    let detail = format!("{d} frames ({:.1} ms; period {PERIOD})", d as f64 * 1e3 / f64::from(RATE));
                    // GrandOrgue renders a change at the start of the second cycle after the one
                    // that carried the message at the latest. The pipe's first sample is a zero
                    // crossing, so the detector (|x| > 1e-4) may see it one sample late.
                    Some(if d > 2 * period + 1 { Err(format!("{detail}: more than two periods")) } else { Ok(detail) })
                }
                None if self.audio.len() < p + 2 * period + 100 => None,
                None => Some(Err("no sound after the message".into())),
            }
        }
    }

    /// Every pitch of the test organ that the piece can sound.
    fn all_pitches() -> Vec<u32> {
        let (sw, gt, ped) = (|r| pipe_hz(60, r), |r| pipe_hz(64, r), |r| pipe_hz(48, r));
        vec![sw(1.0), sw(2.0), sw(3.0), gt(1.0), gt(2.0), ped(0.5), ped(1.0), ped(3.0)]
    }

    fn absent(present: &[u32]) -> Vec<u32> {
        all_pitches().into_iter().filter(|f| !present.contains(f)).collect()
    }

    pub(crate) fn show(v: &[&[u8]]) -> String {
        v.iter().map(|b| format!("{b:02X?}")).collect::<Vec<_>>().join(" ")
    }

    /// Whether `a` is `b` with some elements left out.
    fn subsequence(a: &[&[u8]], b: &[&[u8]]) -> bool {
        let mut it = b.iter();
        a.iter().all(|x| it.any(|y| y == x))
    }

    /// The recorded messages against the expected ones: all there and equal → passed. With a
    /// break or a loss in the recording, messages left out are "cannot tell"; anything else fails.
    fn same_messages(view: &View, expected: &[Vec<u8>]) -> Verdict {
        let seen: Vec<&[u8]> = view.midi.iter().map(|m| m.bytes()).collect();
        let exp: Vec<&[u8]> = expected.iter().map(Vec::as_slice).collect();
        if seen == exp {
            Some(Ok(format!("{} messages", seen.len())))
        } else if view.gapped && subsequence(&seen, &exp) {
            None
        } else {
            Some(Err(format!("expected {}\nrecorded {}", show(&exp), show(&seen))))
        }
    }

    fn check_to_the_end(run: &Run, plan: &[PlanMsg], go_input: &str) -> Checks {
        let mut out: Checks = Vec::new();
        out.push((
            "organ play --to grandorgue".into(),
            Some(if run.status.code() != Some(0) {
                Err(format!("exit status {:?}; stderr:\n{}", run.status, run.stderr))
            } else if !run.stderr.lines().any(|l| l.contains("JACK: connected") && l.contains(go_input)) {
                Err(format!("did not say it connected to {go_input}; stderr:\n{}", run.stderr))
            } else {
                Ok(run.stdout.lines().find(|l| l.starts_with("timing:")).unwrap_or_default().to_string())
            }),
        ));
        let view = View::new(&run.rec);
        let expected: Vec<Vec<u8>> = plan.iter().map(|m| m.bytes.clone()).chain(run.probe.iter().cloned()).collect();
        let messages = same_messages(&view, &expected);
        // Every other check reads the audio at the recorded messages: only when all arrived.
        let valid = matches!(messages, Some(Ok(_)));
        let gate = |v: Verdict| if valid { v } else { None };
        out.push(("the plan's messages, then the probe's, on the wire".into(), messages));

        // Placement: the spacing of consecutive messages in frames against their spacing in the
        // plan, where the frame clock ran smoothly. Frame-exact placement keeps the median error
        // within a millisecond; placing messages at cycle starts would spread it over a period.
        let rate = f64::from(RATE);
        let mut err: Vec<i64> = (1..plan.len().min(view.midi.len()))
            .filter(|&i| !view.broken(view.midi[i - 1].pos, view.midi[i].pos))
            .map(|i| {
                let frames = i64::from(view.midi[i].frame.wrapping_sub(view.midi[i - 1].frame));
                (frames - ((plan[i].t - plan[i - 1].t) * rate).round() as i64).abs()
            })
            .collect();
        err.sort_unstable();
        out.push((
            "MIDI placement vs plan".into(),
            gate(if err.len() < plan.len() / 2 {
                None
            } else {
                let (median, worst) = (err[err.len() / 2], err[err.len() - 1]);
                let detail = format!(
                    "spacing of consecutive messages off by {median} frames in the median, {worst} at worst ({:.0} µs), over {} pairs",
                    worst as f64 * 1e6 / rate,
                    err.len()
                );
                Some(if median > 48 { Err(format!("{detail} (> 1 ms)")) } else { Ok(detail) })
            }),
        ));

        // A stretch of the piece: from `settle` after the last message at or before `from`, to
        // just before the first message near `to` (anchored at recorded messages, so that a
        // jump of the frame clock cannot shift it).
        let start = |from: f64, settle: f64| {
            let k = plan.iter().rposition(|m| m.t <= from + 1e-9)?;
            view.from(k, from - plan[k].t + settle)
        };
        let end = |to: f64| view.after(plan.iter().position(|m| m.t > to - 0.1)?, -0.03);
        let b = |n: f64| n * BEAT;
        let (sw, gt, ped) = (|r| pipe_hz(60, r), |r| pipe_hz(64, r), |r| pipe_hz(48, r));
        let sounding: Vec<(&str, f64, f64, Vec<u32>)> = vec![
            ("Sw Gedackt 8 (note)", b(2.0), b(3.0), vec![sw(1.0)]),
            ("+ Sw Principal 4 (CC)", b(3.0), b(4.0), vec![sw(1.0), sw(2.0)]),
            ("Sw Principal 4 off", b(4.0), b(5.0), vec![sw(1.0)]),
            ("great key, Gt Principal 8 (program change)", b(5.0), b(6.0), vec![gt(1.0)]),
            ("+ Gt Octave 4 (note), Sw Nazard (NRPN) with no swell key", b(6.0), b(7.0), vec![gt(1.0), gt(2.0)]),
            ("pedal key, Ped Subbass 16 (CC), great stops off", b(7.0), b(8.0), vec![ped(0.5)]),
            (
                "+ Sw to Ped: the swell's Gedackt and Nazard on the pedal",
                b(8.0),
                b(9.0),
                vec![ped(0.5), ped(1.0), ped(3.0)],
            ),
            ("Sw to Ped off", b(9.0), b(10.0), vec![ped(0.5)]),
            ("great key with Gt Principal 8", b(11.0), b(12.0), vec![gt(1.0)]),
        ];
        out.push((
            "silence before anything is drawn or pressed".into(),
            gate(view.silence(start(0.0, 0.05), end(b(1.0)))),
        ));
        out.push((
            "silence: swell key down, no stop drawn yet".into(),
            gate(view.silence(start(b(1.0), SETTLE), end(b(2.0)))),
        ));
        for (what, from, to, present) in sounding {
            out.push((what.into(), gate(view.tones(start(from, SETTLE), end(to), &present, &absent(&present)))));
        }
        out.push((
            "silence: everything put in, Gt Principal 8 drawn, no key".into(),
            gate(view.silence(start(b(10.0), RELEASE), end(b(11.0)))),
        ));
        // After the end: silence until the probe, and while it holds a key on every division
        // (Gt Principal 8 was drawn when the piece ended: the cancel must have put it in).
        let probe0 = plan.len();
        let end_t = plan.last().map_or(0.0, |m| m.t);
        out.push((
            "silence after the end".into(),
            gate(view.silence(start(end_t, RELEASE), view.after(probe0, -0.03))),
        ));
        out.push((
            "silence with keys pressed after the end (stops cancelled)".into(),
            gate(view.silence(view.from(probe0 + PROBE_KEYS.len() - 1, 0.1), view.after(probe0, PROBE_HOLD - 0.05))),
        ));
        let first_stop = plan.iter().position(|m| m.kind == "stop_on" && m.name.as_deref() == Some("Sw Gedackt 8"));
        let last_key = plan.iter().rposition(|m| m.kind == "note_on");
        out.push((
            "MIDI-to-sound delay, first stop drawn (key down)".into(),
            gate(view.delay(first_stop.expect("Sw Gedackt 8 is drawn"))),
        ));
        out.push((
            "MIDI-to-sound delay, key pressed (stop drawn)".into(),
            gate(view.delay(last_key.expect("a key is pressed"))),
        ));
        out
    }

    /// What the release after an interruption lacks: a note-off for each key in `held`
    /// (channel, key), all-notes-off (CC 123) on channels 1-3.
    pub(crate) fn keys_not_released(held: &[(u8, u8)], release: &[&[u8]]) -> Vec<String> {
        let mut problems = Vec::new();
        for &(ch, key) in held {
            if !release.iter().any(|b| note_off(b) == Some((ch, key))) {
                problems.push(format!("no note-off for key {key} on channel {}", ch + 1));
            }
        }
        for ch in 0..3u8 {
            if !release.contains(&[0xB0 | ch, 123, 0].as_slice()) {
                problems.push(format!("no all-notes-off (CC 123) on channel {}", ch + 1));
            }
        }
        problems
    }

    /// Whether a message is a note-off (or a note-on with velocity 0).
    pub(crate) fn note_off(b: &[u8]) -> Option<(u8, u8)> {
        match b {
            [s, k, _] if s & 0xF0 == 0x80 => Some((s & 0x0F, *k)),
            [s, k, 0] if s & 0xF0 == 0x90 => Some((s & 0x0F, *k)),
            _ => None,
        }
    }

    fn check_interrupted(run: &Run, plan: &[PlanMsg]) -> Checks {
        let mut out: Checks = Vec::new();
        let took = run.sigint_to_exit.unwrap_or_default();
        out.push((
            "exit status 130 soon after SIGINT".into(),
            Some(if run.status.code() != Some(130) {
                Err(format!("exit status {:?}; stderr:\n{}", run.status, run.stderr))
            } else if took > Duration::from_secs(5) {
                Err(format!("exited {:.1} s after SIGINT", took.as_secs_f64()))
            } else if !run.stderr.contains("interrupted") {
                Err(format!("did not say it was interrupted; stderr:\n{}", run.stderr))
            } else {
                Ok(format!("exited {:.0} ms after SIGINT", took.as_secs_f64() * 1e3))
            }),
        ));
        let view = View::new(&run.rec);
        // The messages: a prefix of the plan, the release, then the probe's.
        let all: Vec<&[u8]> = view.midi.iter().map(|m| m.bytes()).collect();
        let n_probe = run.probe.len();
        let probe_ok = all.len() >= n_probe && all[all.len() - n_probe..].iter().zip(&run.probe).all(|(a, b)| a == b);
        let sent = &all[..all.len() - if probe_ok { n_probe } else { 0 }];
        let m = sent.iter().zip(plan).take_while(|(a, p)| **a == p.bytes.as_slice()).count();
        let release = &sent[m..];
        let coupler = plan.iter().position(|p| p.kind == "coupler_on").expect("the plan draws the coupler");
        // Keys down when the plan was cut.
        let mut held: Vec<(u8, u8)> = Vec::new();
        for p in &plan[..m] {
            let key = (p.bytes[0] & 0x0F, p.bytes[1]);
            match p.kind.as_str() {
                "note_on" => held.push(key),
                "note_off" => held.retain(|h| *h != key),
                _ => {}
            }
        }
        let cancel = hex(CANCEL);
        let mut problems = Vec::new();
        if !probe_ok {
            problems.push("the probe's messages are not last".to_string());
        }
        if m <= coupler || m >= plan.len() || held.is_empty() {
            problems.push(format!(
                "not interrupted while the coupler and a key were down: {m} of {} plan messages sent, keys down {held:?}",
                plan.len()
            ));
        }
        problems.extend(keys_not_released(&held, release));
        if !release.contains(&cancel.as_slice()) {
            problems.push("no cancel".into());
        }
        let other: Vec<&[u8]> = release
            .iter()
            .copied()
            .filter(|b| note_off(b).is_none() && b.get(1) != Some(&123) && *b != cancel.as_slice())
            .collect();
        if !other.is_empty() {
            problems.push(format!("other messages after the interruption: {}", show(&other)));
        }
        let release_verdict = if problems.is_empty() {
            Some(Ok(format!(
                "cut after {m} of {} plan messages, keys down {held:?}; release: {}",
                plan.len(),
                show(release)
            )))
        } else if view.gapped {
            None // a message lost in a missed cycle looks like any of these
        } else {
            Some(Err(format!("{}; recorded: {}", problems.join("; "), show(&all))))
        };
        let valid = matches!(release_verdict, Some(Ok(_)));
        let gate = |v: Verdict| if valid { v } else { None };
        out.push(("the release on the wire: note-offs, CC 123, cancel".into(), release_verdict));

        let (ped, gt) = (|r| pipe_hz(48, r), |r| pipe_hz(64, r));
        let before = vec![ped(0.5), ped(1.0), ped(3.0)];
        out.push((
            "before SIGINT: the pedal with Sw to Ped".into(),
            gate(view.tones(view.from(coupler, 0.1), view.after(coupler + 1, -0.03), &before, &absent(&before))),
        ));
        let last_release = (m + release.len()).saturating_sub(1);
        let probe0 = m + release.len();
        let draw = probe0 + PROBE_KEYS.len();
        out.push((
            "silence after SIGINT".into(),
            gate(view.silence(view.from(last_release, RELEASE), view.after(probe0, -0.03))),
        ));
        out.push((
            "silence with keys pressed after SIGINT (stops cancelled)".into(),
            gate(view.silence(view.from(probe0 + PROBE_KEYS.len() - 1, 0.1), view.after(draw, -0.03))),
        ));
        let probe_tone = vec![gt(1.0)];
        out.push((
            "the probe heard: its Gt Principal 8 with its great key".into(),
            gate(view.tones(view.from(draw, SETTLE), view.after(draw + 1, -0.03), &probe_tone, &absent(&probe_tone))),
        ));
        out
    }
}
