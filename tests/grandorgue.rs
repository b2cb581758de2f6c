//! GrandOrgue: `organ grandorgue config` on a generated organ, and the end-to-end path
//! JACK output → a real GrandOrgue (headless, JACK dummy backend, Xvfb) → recorded audio.
//!
//! The end-to-end test needs the Debian packages `grandorgue jackd2 xvfb x11-utils` (and
//! `libjack-jackd2-dev pkg-config` to build). Where they are missing it prints `SKIPPED: <reason>`
//! on stderr; with `ORGAN_REQUIRE_GRANDORGUE=1` (CI) a missing package fails the test instead.

mod support;

use std::process::Command;

use support::Scratch;
use support::test_organ;

fn organ_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_organ"))
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

#[cfg(not(feature = "jack"))]
#[test]
fn grandorgue_end_to_end() {
    use std::io::Write;
    assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "built without the jack feature");
    let _ = writeln!(std::io::stderr(), "SKIPPED: grandorgue_end_to_end: built without the `jack` feature");
}

#[cfg(feature = "jack")]
mod e2e {
    use std::time::{Duration, Instant};

    use organ::midi::Micros;
    use organ::output::jack::JackOutput;
    use organ::output::{Output, Stamp};

    use super::support::analysis::{db, onset, rms, tone_amplitude};
    use super::support::procs::{self, GrandOrgue, Jackd, PERIOD, RATE, RunLock, Unavailable, Xvfb, say, wait_for};
    use super::support::recorder::{Recorder, Recording};
    use super::support::test_organ::{self, CHURCH, pipe_hz};
    use super::{Scratch, organ_bin};

    /// A skip that is visible (stderr, not captured) and fails where the packages are required.
    fn skip(test: &str, reason: &str) {
        assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "ORGAN_REQUIRE_GRANDORGUE is set, but {reason}");
        say(&format!("SKIPPED: {test}: {reason}"));
    }

    /// A timed message of the scenario.
    struct Ev {
        t: f64,
        bytes: Vec<u8>,
    }

    fn ev(t: f64, hex: &str) -> Ev {
        Ev { t, bytes: hex.split_whitespace().map(|h| u8::from_str_radix(h, 16).unwrap()).collect() }
    }

    /// What must sound in a stretch of the scenario.
    struct Seg {
        what: &'static str,
        /// Seconds skipped at the start: two periods of delay, the attack, and the previous
        /// segment's release.
        settle: f64,
        from: f64,
        to: f64,
        present: Vec<u32>,
        absent: Vec<u32>,
    }

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
    fn is_dialog(title: &str) -> bool {
        let t = title.to_lowercase();
        ["log messages", "warning", "error", "import", "question"].iter().any(|w| t.contains(w))
    }

    /// Points this process's JACK clients (and children) at the test server.
    fn use_test_server() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: called with the run lock held, before this test opens JACK clients; the only
        // other reader in this process is the other JACK test, which waits for the same lock.
        ONCE.call_once(|| unsafe { std::env::set_var("JACK_DEFAULT_SERVER", procs::SERVER) });
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

        let lb = organ::grandorgue::loopback::open_grandorgue(&Default::default(), &Default::default()).unwrap();
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
        drop(go);
        jackd.stop();

        let out = organ_bin().args(["grandorgue", "port", "--via", "jack"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no JACK server is running"), "{err}");
    }

    fn fail(s: impl Into<String>) -> Unavailable {
        Unavailable::Fail(s.into())
    }

    fn run(dir: &Scratch) -> Result<(), Unavailable> {
        let odf = test_organ::generate(&dir.path).map_err(|e| fail(e.to_string()))?;
        let toml = dir.path.join("organ-e2e.toml");
        let cfg =
            organ_bin().args(["grandorgue", "config", "--organ"]).arg(&toml).arg("--odf").arg(&odf).output().unwrap();
        if !cfg.status.success() {
            return Err(fail(format!("organ grandorgue config failed: {}", String::from_utf8_lossy(&cfg.stderr))));
        }

        let mut jackd = Jackd::start(&dir.path)?;
        // Our port must exist before GrandOrgue starts: it only sees MIDI sources present then.
        let mut out = organ::output::jack::open("jack").map_err(fail)?;
        let rec = Recorder::open().map_err(fail)?;
        rec.client().connect_ports_by_name(out.port_name(), &rec.port("midi_in")).map_err(|e| fail(e.to_string()))?;
        let xvfb = Xvfb::start().map_err(fail)?;
        let mut go = GrandOrgue::start(&dir.path, &xvfb.display, &odf).map_err(fail)?;

        // Ready: GrandOrgue's MIDI input listens to organ:out, its audio ports exist, and its
        // main window shows the organ.
        let port_name = out.port_name().to_string();
        let ready = wait_for(Duration::from_secs(45), || {
            if go.proc.exited().is_some() {
                return Some(false);
            }
            let c = rec.client();
            let audio =
                c.port_by_name("GrandOrgueAudio:out_0").is_some() && c.port_by_name("GrandOrgueAudio:out_1").is_some();
            let midi = c
                .port_by_name(&port_name)
                .is_some_and(|p| p.get_connections().iter().any(|x| x.to_lowercase().contains("grandorgue")));
            let titled = xvfb
                .window_titles()
                .iter()
                .any(|t| t.starts_with("GrandOrgue v") && t.ends_with(&format!("- {CHURCH}")));
            (audio && midi && titled).then_some(true)
        });
        if ready != Some(true) {
            return Err(fail(format!(
                "GrandOrgue not ready after 45 s (exited: {:?}); windows: {:?}\nGrandOrgue log:\n{}",
                go.proc.exited(),
                xvfb.window_titles(),
                go.log_tail()
            )));
        }
        let titles = xvfb.window_titles();
        if let Some(d) = titles.iter().find(|t| is_dialog(t)) {
            return Err(fail(format!("GrandOrgue shows a dialog \"{d}\" (windows: {titles:?})\n{}", go.log_tail())));
        }
        // Play the scenario and check it. A missed JACK cycle (an xrun on a busy machine) leaves
        // a gap in the recording; checks after the first gap cannot be trusted and are
        // repeated in another run (up to three). GrandOrgue ends each run as it began.
        let events = scenario();
        let mut rec = Some(rec);
        let mut verdicts: Vec<(String, Option<Result<String, String>>)> = Vec::new();
        let mut late = 0;
        for attempt in 1..=3 {
            let r = match rec.take() {
                Some(r) => r,
                None => {
                    let r = Recorder::open().map_err(fail)?;
                    r.client()
                        .connect_ports_by_name(out.port_name(), &r.port("midi_in"))
                        .map_err(|e| fail(e.to_string()))?;
                    r
                }
            };
            for (src, dst) in [("GrandOrgueAudio:out_0", "in_l"), ("GrandOrgueAudio:out_1", "in_r")] {
                r.client().connect_ports_by_name(src, &r.port(dst)).map_err(|e| fail(format!("{src}: {e}")))?;
            }
            std::thread::sleep(Duration::from_millis(500));
            r.start();
            std::thread::sleep(Duration::from_millis(300));
            let before = out.stats();
            play(&mut out, &events);
            std::thread::sleep(Duration::from_millis(800));
            late += out.stats().late - before.late;
            let recording = r.finish();
            if !recording.gaps.is_empty() {
                say(&format!(
                    "grandorgue_end_to_end: run {attempt}: missed JACK cycles ({}); checks after the first are repeated",
                    recording.gaps.join("; ")
                ));
            }
            for (name, outcome) in check(&recording, &events) {
                match verdicts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, v)) => {
                        // The first verdict stands, except that a failure in any run fails.
                        if outcome.is_some() && (v.is_none() || matches!(outcome, Some(Err(_)))) {
                            *v = outcome;
                        }
                    }
                    None => verdicts.push((name, outcome)),
                }
            }
            if verdicts.iter().all(|(_, v)| v.is_some()) {
                break;
            }
        }
        let stats = out.stats();
        let finished = out.finish();
        let titles_after = xvfb.window_titles();
        go.proc.stop(Duration::from_secs(3));
        drop(xvfb);
        jackd.stop();

        finished.map_err(fail)?;
        say(&format!(
            "grandorgue_end_to_end: JACK output wrote {} message(s), {late} late (worst {} frames), {} dropped; period {} frames at {} Hz",
            stats.written, stats.late_frames_max, stats.dropped, stats.period, stats.sample_rate
        ));
        if let Some(d) = titles_after.iter().find(|t| is_dialog(t)) {
            return Err(fail(format!("GrandOrgue showed a dialog \"{d}\" while playing")));
        }
        let mut problems = Vec::new();
        if stats.dropped > 0 {
            problems.push(format!("the JACK output dropped {} message(s)", stats.dropped));
        }
        for (name, v) in &verdicts {
            match v {
                Some(Ok(detail)) if !detail.is_empty() => say(&format!("grandorgue_end_to_end: {name}: {detail}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => problems.push(format!("{name}: {e}")),
                None => {
                    problems.push(format!("{name}: not verified: missed JACK cycles in every run (machine too busy)"))
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(fail(problems.join("\n"))) }
    }

    /// The scenario, in seconds. Swell ch 1, Great ch 2, Pedal ch 3; stops on ch 16 / 15 as in
    /// the test organ definition.
    fn scenario() -> Vec<Ev> {
        // NRPN 300 = 0x12C: CC 99 = 2, CC 98 = 44, data entry (CC 6).
        let nrpn = |t: f64, v: u8| [ev(t, "BF 63 02"), ev(t, "BF 62 2C"), ev(t, &format!("BF 06 {v:02X}"))];
        let mut v = vec![
            ev(0.0, "90 3C 64"), // swell key 60 held, no stop drawn
            ev(0.6, "9F 24 7F"), // Sw Gedackt 8 on
            ev(1.2, "BF 14 7F"), // Sw Principal 4 on (CC)
            ev(1.8, "BF 14 00"), // Sw Principal 4 off
            ev(2.4, "80 3C 00"),
            ev(2.4, "CE 05"),    // Gt Principal 8 on (program 5 on channel 15)
            ev(2.4, "91 40 64"), // great key 64
            ev(3.0, "9F 28 7F"), // Gt Octave 4 on
        ];
        v.extend(nrpn(3.0, 0x7F)); // Sw Nazard on, no swell key down
        v.extend([
            ev(3.6, "81 40 00"),
            ev(3.6, "CE 06"),    // Gt Principal 8 off (program 6)
            ev(3.6, "8F 28 00"), // Gt Octave 4 off
            ev(3.6, "BF 15 7F"), // Ped Subbass 16 on
            ev(3.6, "92 30 64"), // pedal key 48
            ev(4.2, "9F 49 7F"), // Sw to Ped on
            ev(4.8, "8F 49 00"), // Sw to Ped off
            ev(5.4, "82 30 00"),
            ev(5.4, "8F 24 00"), // Sw Gedackt off
            ev(5.4, "BF 15 00"), // Ped Subbass off
        ]);
        v.extend(nrpn(5.4, 0)); // Sw Nazard off
        v.extend([
            ev(6.4, "CE 05"),                      // Gt Principal 8 on, no key: still silent
            ev(6.9, "91 40 64"),                   // great key 64 from silence: key-to-sound delay
            ev(7.4, "F0 00 4A 4F 48 41 53 7F F7"), // the organ's General Cancel, key still held
            ev(8.0, "81 40 00"),
        ]);
        v
    }

    fn segments() -> Vec<Seg> {
        let sw = |r: f64| pipe_hz(60, r);
        let gt = |r: f64| pipe_hz(64, r);
        let ped = |r: f64| pipe_hz(48, r);
        let all = [sw(1.0), sw(2.0), sw(3.0), gt(1.0), gt(2.0), ped(0.5), ped(1.0), ped(3.0)];
        let absent = |present: &[u32]| all.iter().copied().filter(|f| !present.contains(f)).collect::<Vec<_>>();
        let seg =
            |what, from, to, present: Vec<u32>| Seg { what, settle: 0.25, from, to, absent: absent(&present), present };
        // After stops are put in, allow for the release tail.
        let released = |what, from, to| Seg { settle: 0.4, ..seg(what, from, to, vec![]) };
        vec![
            seg("swell key, no stop drawn", 0.0, 0.6, vec![]),
            seg("Sw Gedackt 8 (note)", 0.6, 1.2, vec![sw(1.0)]),
            seg("+ Sw Principal 4 (CC)", 1.2, 1.8, vec![sw(1.0), sw(2.0)]),
            seg("Sw Principal 4 off", 1.8, 2.4, vec![sw(1.0)]),
            seg("great key, Gt Principal 8 (program change)", 2.4, 3.0, vec![gt(1.0)]),
            seg("+ Gt Octave 4, Sw Nazard (NRPN) on the idle swell", 3.0, 3.6, vec![gt(1.0), gt(2.0)]),
            seg("pedal key, Ped Subbass 16", 3.6, 4.2, vec![ped(0.5)]),
            seg("+ Sw to Ped: Gedackt and Nazard on the pedal", 4.2, 4.8, vec![ped(0.5), ped(1.0), ped(3.0)]),
            seg("Sw to Ped off", 4.8, 5.4, vec![ped(0.5)]),
            released("everything off", 5.4, 6.4),
            seg("Gt Principal 8 drawn, no key", 6.4, 6.9, vec![]),
            seg("great key again", 6.9, 7.4, vec![gt(1.0)]),
            released("General Cancel (Johannus SysEx), key held", 7.4, 8.0),
            released("after the end", 8.0, 8.7),
        ]
    }

    /// Sends the scenario through the JACK output like the engine would: at absolute deadlines,
    /// each message stamped with its due and actual time.
    fn play(out: &mut JackOutput, events: &[Ev]) {
        let start = Instant::now();
        for e in events {
            let due = start + Duration::from_secs_f64(e.t);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            let us = |d: Duration| Micros(d.as_micros() as u64);
            let stamp = Stamp { plan: us(due - start), due: us(due - start), now: us(start.elapsed()) };
            out.send(&e.bytes, stamp).expect("send");
        }
    }

    /// The checks of one run: `(name, None)` when the recording cannot tell (after a gap),
    /// `Some(Ok(detail))` or `Some(Err(problem))` otherwise.
    fn check(rec: &Recording, events: &[Ev]) -> Vec<(String, Option<Result<String, String>>)> {
        let mut out: Vec<(String, Option<Result<String, String>>)> = Vec::new();
        let rate = f64::from(RATE);
        let Some(first) = rec.first_frame else {
            return vec![("recording".into(), Some(Err("no audio recorded".into())))];
        };
        let clean = |frame: u32| (frame.wrapping_sub(first) as usize) < rec.clean_len;
        // The messages up to the first gap, in order and intact.
        let seen: Vec<_> = rec.midi.iter().take_while(|m| clean(m.frame)).collect();
        let complete = seen.len() == events.len();
        let bytes_ok = events.iter().zip(&seen).all(|(e, m)| m.bytes() == e.bytes.as_slice());
        out.push((
            "messages on organ:out".into(),
            if !bytes_ok {
                Some(Err(format!(
                    "{:02X?} arrived as {:02X?}",
                    events.iter().map(|e| &e.bytes).collect::<Vec<_>>(),
                    seen.iter().map(|m| m.bytes()).collect::<Vec<_>>()
                )))
            } else if complete {
                Some(Ok(String::new()))
            } else if rec.clean_len == rec.mono.len() {
                Some(Err(format!("recorded {} of {} messages", rec.midi.len(), events.len())))
            } else {
                None
            },
        ));
        if !bytes_ok {
            return out;
        }
        // Placement: the spacing of consecutive messages in frames against their spacing in the
        // schedule. Frame-exact placement keeps the median error within a millisecond; placing
        // messages at cycle starts would spread it over a period. (Only the median is asserted:
        // on a loaded machine the dummy backend's frame clock itself stalls now and then.)
        let mut err: Vec<i64> = events
            .windows(2)
            .zip(seen.windows(2))
            .map(|(e, m)| {
                let frames = i64::from(m[1].frame.wrapping_sub(m[0].frame));
                (frames - ((e[1].t - e[0].t) * rate).round() as i64).abs()
            })
            .collect();
        err.sort_unstable();
        out.push((
            "MIDI placement vs schedule".into(),
            if !complete {
                None
            } else {
                let (median, worst) = (err[err.len() / 2], err[err.len() - 1]);
                let detail = format!(
                    "spacing of consecutive messages off by {median} frames in the median, {worst} at worst ({:.0} µs)",
                    worst as f64 * 1e6 / rate
                );
                Some(if median > 48 { Err(format!("{detail} (> 1 ms)")) } else { Ok(detail) })
            },
        ));
        let audio = &rec.mono[..rec.clean_len];
        // Scenario time → recording index, anchored at the frame where the last message at or
        // before that time was placed (GrandOrgue follows frames, not wall time). `None` when
        // that message is not in the clean part of the recording.
        let index_at = |t: f64| -> Option<usize> {
            let k = events.iter().rposition(|e| e.t <= t + 1e-9).unwrap_or(0);
            let m = seen.get(k)?;
            let i = f64::from(m.frame.wrapping_sub(first)) + (t - events[k].t) * rate;
            (i >= 0.0 && (i as usize) <= audio.len()).then_some(i as usize)
        };
        for s in segments() {
            let (Some(a), Some(b)) = (index_at(s.from + s.settle), index_at(s.to - 0.03)) else {
                out.push((s.what.into(), None));
                continue;
            };
            let x = &audio[a..b.max(a)];
            if x.len() < 4800 {
                out.push((s.what.into(), Some(Err(format!("only {} samples to analyse", x.len())))));
                continue;
            }
            let verdict = if s.present.is_empty() {
                // A stuck pipe would be near −20 dBFS; −70 dBFS leaves room for a release tail.
                let level = db(rms(x));
                if level > -70.0 { Err(format!("expected silence, RMS {level:.1} dBFS")) } else { Ok(String::new()) }
            } else {
                let level = |f: u32| db(tone_amplitude(x, f64::from(f), rate));
                let levels: Vec<String> =
                    s.present.iter().chain(&s.absent).map(|&f| format!("{f} Hz {:.0}", level(f))).collect();
                let missing: Vec<u32> = s.present.iter().copied().filter(|&f| level(f) < -40.0).collect();
                let extra: Vec<u32> = s.absent.iter().copied().filter(|&f| level(f) > -60.0).collect();
                if missing.is_empty() && extra.is_empty() {
                    Ok(String::new())
                } else {
                    Err(format!("missing {missing:?} Hz, should not sound {extra:?} Hz (dB: {})", levels.join(", ")))
                }
            };
            out.push((s.what.into(), Some(verdict)));
        }
        // MIDI-to-sound delay from silence: the first stop drawn with a key held, and a key
        // pressed with a stop drawn.
        for (what, idx) in [
            ("MIDI-to-sound delay, stop drawn (key held)", 1usize),
            ("MIDI-to-sound delay, key pressed (stop drawn)", events.len() - 3),
        ] {
            let Some(i) = seen.get(idx).map(|m| m.frame.wrapping_sub(first) as usize) else {
                out.push((what.into(), None));
                continue;
            };
            let verdict = match onset(audio, i, 1e-4) {
                Some(o) => {
                    let d = o - i;
                    let detail = format!("{d} frames ({:.1} ms; period {PERIOD})", d as f64 * 1e3 / rate);
                    // GrandOrgue renders a change at the start of the second cycle after the one
                    // that carried the message at the latest. The pipe's first sample is a zero
                    // crossing, so the detector (|x| > 1e-4) may see it one sample late.
                    Some(if d > 2 * PERIOD as usize + 1 {
                        Err(format!("{detail}: more than two periods"))
                    } else {
                        Ok(detail)
                    })
                }
                None if audio.len() < i + 2 * PERIOD as usize + 100 => None,
                None => Some(Err("no sound after the message".into())),
            };
            out.push((what.into(), verdict));
        }
        out
    }
}
