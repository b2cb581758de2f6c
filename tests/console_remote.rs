//! The console as a remote for `organ service --from`: the real binary, without a terminal,
//! plays an order of service to a scripted JACK console (`--to jack:console:in`, and a `file:`
//! record) while the console's spare pistons, mapped in the organ file's `[remote]`, drive it:
//! go (start), a stray single press of stop (nothing stops), pause at the end of the verse, go
//! (continue), stop pressed twice (stops, every key released). The console echoes everything
//! it hears back to organ, as a console with MIDI thru does, and the organist plays a key and
//! draws a stop at it: none of that may drive the service.
//!
//! Needs the Debian package `jackd2`. Where it is missing the test prints `SKIPPED: <reason>`;
//! with `ORGAN_REQUIRE_GRANDORGUE=1` (CI) it fails.

mod support;

use std::path::Path;

/// Mistakes are one line each, before anything opens: `--from` with an organ that maps no
/// piston, and a `[remote]` message that is a key, positioned in the organ file.
#[test]
fn from_without_a_remote_table_or_with_a_bad_one_is_one_clear_line() {
    use support::{organ_command, repo_dir, text};
    let order = repo_dir().join("scores/services/sunday.toml");
    let order = order.to_str().unwrap();
    let out = organ_command(&["service", order, "--from", "jack", "--to", "null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--from: the organ \"St Mary's Church, Fishponds\"") && err.contains("has no [remote] table"),
        "{err}"
    );

    let dir = support::Scratch::new("console-remote-bad");
    let st_marys = std::fs::read_to_string(repo_dir().join("organs/st-marys.toml")).unwrap();
    let lines = st_marys.lines().count();
    let bad = dir.path.join("bad.toml");
    std::fs::write(&bad, format!("{st_marys}[remote]\ngo = {{ note = 60, channel = 2 }}\n")).unwrap();
    let out = organ_command(&["service", order, "--organ", bad.to_str().unwrap(), "--from", "jack", "--to", "null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let at = format!("{}:{}:6: [remote] go: 91 3C 7F is key 60 of the great division", bad.display(), lines + 2);
    assert!(err.contains(&at), "{err}\nwanted {at}");

    // Items on two organ definitions (each score's registration file names its own): one
    // console, so one set of pistons. Two that disagree are refused; one without a table plays on
    // with the other's.
    let organ_file = |name: &str, remote: &str| {
        let path = dir.path.join(format!("{name}.toml"));
        std::fs::write(&path, format!("{st_marys}{remote}")).unwrap();
        path
    };
    let go_100 = organ_file("go-100", "[remote]\ngo = { note = 100, channel = 16 }\n");
    let go_101 = organ_file("go-101", "[remote]\ngo = { note = 101, channel = 16 }\n");
    let order_on = |name: &str, first: &Path, second: &Path| {
        let mut items = String::from("title = \"Two organs\"\n");
        for (i, (organ, score)) in [(first, "hymn-tallis-ordinal"), (second, "hymn-old100")].into_iter().enumerate() {
            let text = std::fs::read_to_string(repo_dir().join(format!("scores/{score}.toml"))).unwrap();
            let reg = dir.path.join(format!("{name}-{i}.toml"));
            std::fs::write(
                &reg,
                text.replace("organ = \"st-marys\"", &format!("organ = {:?}", organ.display().to_string())),
            )
            .unwrap();
            items.push_str(&format!(
                "[[item]]\ntitle = \"{score}\"\nscore = {:?}\nregistration = {:?}\n",
                repo_dir().join(format!("scores/{score}.mid")).display().to_string(),
                reg.display().to_string()
            ));
        }
        let order = dir.path.join(format!("{name}.toml"));
        std::fs::write(&order, items).unwrap();
        order
    };
    let run = |order: &Path| {
        organ_command(&["service", order.to_str().unwrap(), "--from", "port:no-such-console", "--to", "null"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&order_on("disagree", &go_100, &go_101));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "--from: the organs of this order map different console pistons ([remote] go of \"St Mary's Church, \
             Fishponds\" ({}) and of \"St Mary's Church, Fishponds\" ({}) differ), but there is one console",
            go_100.display(),
            go_101.display()
        )),
        "{err}"
    );
    // With the second organ's table left out, the first's pistons are the console's: the service
    // gets as far as opening the console (which is not there).
    let out = run(&order_on("one-table", &without_remote(&st_marys, &dir.path), &go_100));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-console") && !err.contains("[remote]"), "{err}");
}

/// St Mary's as shipped, without a `[remote]` table, in a file of its own.
fn without_remote(st_marys: &str, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("no-remote.toml");
    std::fs::write(&path, st_marys).unwrap();
    path
}

#[cfg(not(feature = "jack"))]
#[test]
fn console_pistons_drive_a_service() {
    use std::io::Write;
    assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "built without the jack feature");
    let _ = writeln!(std::io::stderr(), "SKIPPED: console_pistons_drive_a_service: built without the `jack` feature");
}

#[cfg(feature = "jack")]
mod e2e {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use midly::{MidiMessage, Smf, TrackEventKind};

    use super::support::console::{Console, Heard, undouble};
    use super::support::procs::{self, Unavailable, say};
    use super::support::tmux::Tmux;
    use super::support::{Scratch, organ_command, repo_dir};

    const GO: [u8; 3] = [0x9F, 100, 90];
    const GO_UP: [u8; 3] = [0x8F, 100, 0];
    const PAUSE: [u8; 3] = [0x9F, 101, 127];
    const PAUSE_UP: [u8; 3] = [0x9F, 101, 0];
    const STOP: [u8; 3] = [0xBE, 80, 127];
    const STOP_UP: [u8; 3] = [0xBE, 80, 0];

    fn skip(reason: &str) {
        assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "ORGAN_REQUIRE_GRANDORGUE is set, but {reason}");
        say(&format!("SKIPPED: console_pistons_drive_a_service: {reason}"));
    }

    /// The service, its console and what each said.
    struct Run {
        child: Child,
        lines: Vec<String>,
        rx: mpsc::Receiver<String>,
        console: Console,
        /// Everything organ sent to the console (JACK µs), echoed back as it came.
        heard: Vec<Heard>,
    }

    impl Run {
        /// Reads what the console heard and echoes it back (MIDI thru); reads organ's lines.
        fn pump(&mut self) {
            let h = self.console.take_heard();
            if !h.is_empty() {
                self.console.send(&h.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>());
            }
            self.heard.extend(h);
            while let Ok(l) = self.rx.try_recv() {
                say(&format!("  service: {l}"));
                self.lines.push(l);
            }
        }

        fn sleep(&mut self, d: Duration) {
            let end = Instant::now() + d;
            while Instant::now() < end {
                self.pump();
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        /// Waits for a line of organ's containing `want` (after line `from`); its index.
        fn wait_line(&mut self, from: usize, want: &str, timeout: Duration) -> usize {
            let end = Instant::now() + timeout;
            loop {
                self.pump();
                if let Some(i) = self.lines.iter().skip(from).position(|l| l.contains(want)) {
                    return from + i;
                }
                if Instant::now() > end {
                    let _ = self.child.kill();
                    panic!("no line with {want:?} within {timeout:?}; organ said:\n{}", self.lines.join("\n"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        /// Presses and lets go of a piston; the JACK time of the press.
        fn press(&mut self, down: [u8; 3], up: [u8; 3]) -> u64 {
            let at = self.console.now();
            self.console.send(&[down.to_vec()]);
            self.sleep(Duration::from_millis(120));
            self.console.send(&[up.to_vec()]);
            self.pump();
            at
        }
    }

    fn organ_file(dir: &Path) -> String {
        let st_marys = std::fs::read_to_string(repo_dir().join("organs/st-marys.toml")).unwrap();
        let file = dir.join("st-marys-remote.toml");
        std::fs::write(
            &file,
            format!(
                "{st_marys}\n# Spare pistons of the console, and a foot switch for stop.\n[remote]\n\
                 go = {{ note = 100, channel = 16 }}\npause = {{ note = 101, channel = 16 }}\n\
                 stop = {{ cc = 80, value = 127, channel = 15 }}\nnext = {{ note = 102, channel = 16 }}\n"
            ),
        )
        .unwrap();
        file.display().to_string()
    }

    fn order_file(dir: &Path) -> String {
        let order = dir.join("service.toml");
        std::fs::write(
            &order,
            format!(
                r#"title = "Console remote test"
organ = "st-marys"
[[item]]
title = "Cwm Rhondda"
score = "{root}/scores/hymn-cwm-rhondda.mid"
verses = 2
play_over = "13-14"
tempo = "200%"
[[item]]
title = "Tallis"
score = "{root}/scores/hymn-tallis-ordinal.mid"
verses = 1
"#,
                root = repo_dir().display()
            ),
        )
        .unwrap();
        order.display().to_string()
    }

    fn is_key(b: &[u8]) -> bool {
        b.len() == 3 && (b[0] & 0x0F) < 3 && matches!(b[0] & 0xF0, 0x80 | 0x90)
    }

    fn is_key_on(b: &[u8]) -> bool {
        is_key(b) && b[0] & 0xF0 == 0x90 && b[2] > 0
    }

    /// Every key struck is released, each once (channels 1-3, st-marys' divisions); note-ons.
    fn assert_every_key_released(what: &str, msgs: &[&[u8]]) -> usize {
        let mut down = std::collections::BTreeSet::new();
        let mut ons = 0;
        for b in msgs.iter().filter(|b| is_key(b)) {
            if is_key_on(b) {
                ons += 1;
                assert!(down.insert((b[0] & 0x0F, b[1])), "{what}: key {:?} struck twice", b);
            } else {
                assert!(down.remove(&(b[0] & 0x0F, b[1])), "{what}: a release of a key not down: {b:02X?}");
            }
        }
        assert!(down.is_empty(), "{what}: keys left down: {down:?}");
        ons
    }

    fn read_record(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).unwrap();
        let smf = Smf::parse(&bytes).unwrap();
        let mut out = Vec::new();
        for ev in &smf.tracks[0] {
            if let TrackEventKind::Midi { channel, message } = ev.kind {
                let ch = channel.as_int();
                out.push(match message {
                    MidiMessage::NoteOn { key, vel } => vec![0x90 | ch, key.as_int(), vel.as_int()],
                    MidiMessage::NoteOff { key, vel } => vec![0x80 | ch, key.as_int(), vel.as_int()],
                    MidiMessage::Controller { controller, value } => {
                        vec![0xB0 | ch, controller.as_int(), value.as_int()]
                    }
                    _ => continue,
                });
            }
        }
        out
    }

    fn press(console: &mut Console, down: [u8; 3], up: [u8; 3]) {
        console.send(&[down.to_vec()]);
        std::thread::sleep(Duration::from_millis(120));
        console.send(&[up.to_vec()]);
    }

    /// The same pistons with the terminal view open (in tmux): the view says which pistons are
    /// mapped (also in the `?` help), shows what they did (the pause says that the go piston or
    /// Enter goes on), and the laptop's keys still work.
    fn in_the_terminal_view(dir: &Path, console: &mut Console, order: &str, organ: &str) {
        if !Tmux::installed() {
            assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "tmux is not installed");
            return say("SKIPPED: console_pistons_drive_a_service, in the terminal view: tmux is not installed");
        }
        let record = dir.join("tmux.mid");
        let exit = dir.join("tmux.exit");
        let command = format!(
            "JACK_DEFAULT_SERVER={} {} service {order} --organ {organ} --from jack:{} --to file:{}; echo EXIT=$? > {}",
            procs::SERVER,
            env!("CARGO_BIN_EXE_organ"),
            console.out_port(),
            record.display(),
            exit.display()
        );
        let tmux = Tmux::start(format!("organ-console-remote-{}", std::process::id()), 100, 30, &command);
        tmux.wait_for("the pistons on the screen", |s| s.contains("console pistons: go, pause, stop, next"));
        let connected = procs::wait_for(Duration::from_secs(10), || {
            let p = console.client().port_by_name(&console.out_port())?;
            (!p.get_connections().is_empty()).then_some(())
        });
        assert!(connected.is_some(), "organ service did not connect to the console's output");
        // ? lists the pistons beside the keys, stop's two presses said; any key closes it.
        let _ = tmux.run(&["send-keys", "-t", "svc", "?"]);
        let s = tmux.wait_for("the help with the pistons", |s| s.contains("Console pistons (--from):"));
        for line in [
            "go               start the chosen item; go on from a wait or a pause",
            "pause            pause at the end of this verse (again: don't)",
            "stop             stop — only when pressed twice within 2 s",
            "next             choose the item after",
            "any key closes this help",
        ] {
            assert!(s.contains(line), "{line:?} in the help:\n{s}");
        }
        let _ = tmux.run(&["send-keys", "-t", "svc", "n"]);
        tmux.wait_for("the help closed", |s| !s.contains("Console pistons (--from):"));
        press(console, GO, GO_UP);
        tmux.wait_for("the hymn to play", |s| s.contains("PLAYING"));
        // The pause piston: the message says what goes on from here; pressed again, no pause.
        press(console, PAUSE, PAUSE_UP);
        tmux.wait_for("the pause", |s| {
            s.contains("will pause at the end of this verse (the go piston or Enter goes on)")
        });
        press(console, PAUSE, PAUSE_UP);
        tmux.wait_for("no pause", |s| s.contains("will not pause at the end of this verse"));
        // A moment of music (the play-over) before the pistons stop it.
        std::thread::sleep(Duration::from_millis(1000));
        press(console, STOP, STOP_UP);
        let s = tmux.wait_for("the stop piston's question", |s| s.contains("press it again within 2 s to stop"));
        assert!(s.contains("PLAYING"), "one press does not stop:\n{s}");
        std::thread::sleep(Duration::from_millis(300));
        press(console, STOP, STOP_UP);
        tmux.wait_for("the stop", |s| s.contains("stopped: every key released") && !s.contains("PLAYING"));
        // Next: the second item is chosen; q quits (nothing plays).
        press(console, [0x9F, 102, 127], [0x8F, 102, 0]);
        tmux.wait_for("the second item chosen", |s| s.lines().any(|l| l.contains("> ") && l.contains("2. Tallis")));
        let _ = tmux.run(&["send-keys", "-t", "svc", "q"]);
        let status = procs::wait_for(Duration::from_secs(15), || std::fs::read_to_string(&exit).ok())
            .unwrap_or_else(|| panic!("organ service did not quit; the screen was:\n{}", tmux.screen()));
        assert_eq!(status.trim(), "EXIT=0");
        let recorded = read_record(&record);
        let recorded: Vec<&[u8]> = recorded.iter().map(|b| &b[..]).collect();
        let ons = assert_every_key_released("the terminal view's record", &recorded);
        assert!(ons > 0, "it played ({ons} keys struck)");
        say(&format!(
            "  in the terminal view: ? help, started, pause on and off, a single stop ignored, stopped, next chosen, q \
             ({ons} keys struck)"
        ));
    }

    #[test]
    fn console_pistons_drive_a_service() {
        let dir = Scratch::new("console-remote");
        let _jack = match procs::start_jack(&dir.path) {
            Ok(j) => j,
            Err(Unavailable::Skip(r)) => return skip(&r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        let started = Instant::now();
        let console = Console::open("console").unwrap();
        let (organ, order) = (organ_file(&dir.path), order_file(&dir.path));
        let record = dir.path.join("sent.mid");
        let mut child = organ_command(&[
            "service",
            &order,
            "--organ",
            &organ,
            "--from",
            &format!("jack:{}", console.out_port()),
            "--to",
            &format!("jack:{}", console.in_port()),
            "--to",
            &format!("file:{}", record.display()),
        ])
        .env("JACK_DEFAULT_SERVER", procs::SERVER)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        let mut r = Run { child, lines: Vec::new(), rx, console, heard: Vec::new() };
        let t = Duration::from_secs(30);

        let i = r.wait_line(0, "the console's pistons (go, pause, stop, next) drive", t);
        assert!(r.lines[i].contains("stop: press it twice within 2 s"), "{}", r.lines[i]);
        let connected = procs::wait_for(Duration::from_secs(10), || {
            let p = r.console.client().port_by_name(&r.console.out_port())?;
            (!p.get_connections().is_empty()).then_some(())
        });
        assert!(connected.is_some(), "organ service did not connect to the console's output");
        r.wait_line(0, "idle, chosen: 1. Cwm Rhondda", t);
        // Keys and a stop drawn at the console before anything plays: nothing starts.
        r.console.send(&[vec![0x91, 60, 100], vec![0x9F, 36, 127], vec![0x81, 60, 0], vec![0x9F, 36, 0]]);
        r.sleep(Duration::from_millis(800));
        assert!(!r.heard.iter().any(|(_, b)| is_key_on(b)), "a key or a stop at the console started nothing");

        // Go: the first hymn starts (the play-over, then verse 1).
        let go = r.press(GO, GO_UP);
        let n = r.wait_line(0, "console: go on", t);
        r.wait_line(n, "1. Cwm Rhondda: playing, verse 1 of 2", t);
        // A stray press of stop: nothing stops; a second one too late: still nothing.
        r.press(STOP, STOP_UP);
        let n = r.wait_line(n, "console: stop piston: press it again within 2 s to stop", t);
        r.sleep(Duration::from_millis(2300));
        r.press(STOP, STOP_UP);
        r.wait_line(n + 1, "console: stop piston: press it again within 2 s to stop", t);
        // Pause at the end of the verse (which also disarms the stop piston).
        r.press(PAUSE, PAUSE_UP);
        // Said as it goes on here: no terminal, so the go piston (not Enter).
        let n = r.wait_line(
            n,
            "console: pause at the end of the verse (will pause at the end of this verse (the go piston goes on))",
            t,
        );
        let waiting = r.wait_line(n, "1. Cwm Rhondda: verse-end, verse 1 of 2", t);
        let waited_from = r.console.now();
        r.sleep(Duration::from_millis(2500));
        assert_eq!(r.lines.len(), waiting + 1, "still waiting at the verse end: {:?}", &r.lines[waiting..]);
        // Go on: verse 2.
        let go_on = r.press(GO, GO_UP);
        let n = r.wait_line(waiting, "1. Cwm Rhondda: playing, verse 2 of 2", t);
        r.sleep(Duration::from_millis(2000));
        // Stop, pressed twice within 2 s: stopped, every key released.
        r.press(STOP, STOP_UP);
        r.sleep(Duration::from_millis(300));
        let stop = r.press(STOP, STOP_UP);
        let n = r.wait_line(n, "console: stop (stopped: every key released)", t);
        r.wait_line(n, "idle, chosen:", t);
        r.sleep(Duration::from_millis(1000));

        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(r.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = procs::wait_for(Duration::from_secs(10), || r.child.try_wait().ok().flatten())
            .expect("organ service ended on SIGTERM");
        r.pump();
        let stderr = stderr.join().unwrap();
        assert_eq!(status.code(), Some(128 + 15), "{stderr}");
        let all = r.lines.join("\n");
        assert_eq!(all.matches("console: stop (").count(), 1, "one stop, from the double press:\n{all}");
        assert_eq!(all.matches("console: go on").count(), 2, "{all}");

        // What the console heard: nothing before the first go; no key struck while waiting at
        // the verse end; keys again at once after the second go; none after the stop.
        let ons: Vec<u64> = r.heard.iter().filter(|(_, b)| is_key_on(b)).map(|(t, _)| *t).collect();
        assert!(ons.first().is_some_and(|&t| t > go), "the first key after the first go");
        let before_go_on = ons.iter().filter(|&&t| t < go_on).max().copied().unwrap();
        assert!(before_go_on < waited_from, "no key struck while waiting at the verse end");
        let after_go_on = ons.iter().find(|&&t| t > go_on).copied().expect("verse 2 played");
        assert!(after_go_on - go_on < 1_000_000, "verse 2 began {} ms after go", (after_go_on - go_on) / 1000);
        assert!(go_on - before_go_on > 2_500_000, "the wait shows as a gap of {} ms", (go_on - before_go_on) / 1000);
        let last_on = *ons.last().unwrap();
        assert!(last_on < stop + 500_000, "a key struck {} ms after the stop", (last_on - stop) / 1000);
        let after_stop: Vec<&[u8]> = r.heard.iter().filter(|(t, _)| *t >= stop).map(|(_, b)| &b[..]).collect();
        for ch in 0..3u8 {
            assert!(after_stop.contains(&&[0xB0 | ch, 123, 0][..]), "CC 123 on channel {} after the stop", ch + 1);
        }
        let recorded = read_record(&record);
        // Where JACK skipped cycles (organ says so), jack2 may hand a stalled cycle's messages
        // to the console twice; only then is a block repeated at once taken as that doubling.
        let mut heard: Vec<&Vec<u8>> = r.heard.iter().map(|(_, b)| b).collect();
        if stderr.contains("JACK skipped cycles") {
            let (undoubled, doubled) = undouble(&recorded.iter().collect::<Vec<_>>(), &heard);
            if doubled > 0 {
                say(&format!("JACK skipped cycles and the console heard {doubled} message(s) twice"));
                heard = undoubled;
            }
        }
        let heard: Vec<&[u8]> = heard.iter().map(|b| &b[..]).collect();
        let heard_ons = assert_every_key_released("the console", &heard);
        // The file record says the same.
        let recorded: Vec<&[u8]> = recorded.iter().map(|b| &b[..]).collect();
        let recorded_ons = assert_every_key_released("the file record", &recorded);
        assert_eq!(recorded_ons, heard_ons, "the record and the console agree");
        assert!(heard_ons > 50, "it played ({heard_ons} keys struck)");
        in_the_terminal_view(&dir.path, &mut r.console, &order, &organ);
        say(&format!(
            "console_pistons_drive_a_service: passed in {:.1} s ({heard_ons} keys struck, waited {:.1} s at the verse end)",
            started.elapsed().as_secs_f64(),
            (go_on - before_go_on) as f64 / 1e6
        ));
    }
}
