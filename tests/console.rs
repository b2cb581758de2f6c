//! The console talks back: `organ learn`, `organ monitor` and `organ learn --verify` through the
//! real binary against a scripted organ console — a JACK client on a JACK server with the dummy
//! backend that answers learn's prompts as an organist at the console would (note on/off stops,
//! program-change toggles, CC pairs, NRPN, Johannus and Viscount SysEx, a push-button
//! tremulant, a piston that sends a burst of state, and a Rodgers-style console whose stop state
//! is a Roland data-set bitmap with checksums).
//!
//! Needs the Debian package `jackd2` (and `libjack-jackd2-dev pkg-config` to build). Where it is
//! missing the test prints `SKIPPED: <reason>`; with `ORGAN_REQUIRE_GRANDORGUE=1` (CI) it fails.

mod support;

#[cfg(not(feature = "jack"))]
#[test]
fn console_end_to_end() {
    use std::io::Write;
    assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "built without the jack feature");
    let _ = writeln!(std::io::stderr(), "SKIPPED: console_end_to_end: built without the `jack` feature");
}

#[cfg(feature = "jack")]
mod e2e {
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use organ::midi::parse_hex;
    use organ::organ::Organ;
    use organ::organ::decode::{BitmapStop, Decoder, RolandDataSet, bitmap_stop};

    use super::support::Scratch;
    use super::support::console::{Console, HeardAt};
    use super::support::procs::{self, Unavailable, say};

    fn skip(reason: &str) {
        assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "ORGAN_REQUIRE_GRANDORGUE is set, but {reason}");
        say(&format!("SKIPPED: console_end_to_end: {reason}"));
    }

    /// Messages written in hex, one message per `|`.
    fn hex(s: &str) -> Vec<Vec<u8>> {
        if s.is_empty() {
            return Vec::new();
        }
        s.split('|').map(|m| parse_hex(m).unwrap()).collect()
    }

    /// Note-offs in one form (8n k 00): 9n k 00 and 8n k vv mean the same.
    fn normal(msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        msgs.iter()
            .map(|b| match b.as_slice() {
                [s, k, _] if s & 0xF0 == 0x80 => vec![*s, *k, 0],
                [s, k, 0] if s & 0xF0 == 0x90 => vec![0x80 | (s & 0x0F), *k, 0],
                _ => b.clone(),
            })
            .collect()
    }

    const MIXED: &str = r#"# A scripted console with every kind of stop message but the Rodgers bitmap.
name = "Scripted Console"   # a comment on the name

[division.great]   # the lower manual
code = "G"

[division.swell]
code = "S"

# Note on/off stops
[[stop]]
name = "Gt Principal 8"
division = "great"

[[stop]]
name = "Gt Octave 4"       # its off is a note-on with velocity 0
division = "great"

[[stop]]
name = "Sw Gedackt 8"      # a program change toggles it (Johannus style)
division = "swell"

[[stop]]
name = "Sw Salicional 8"   # a CC with value 127 / 0
division = "swell"

[[stop]]
name = "Sw Oboe 8"         # one CC draws it, another puts it in
division = "swell"

[[stop]]
name = "Gt Mixture"        # NRPN
division = "great"

[[stop]]
name = "Gt Trumpet 8"      # Johannus SysEx, toggles
division = "great"

[[stop]]
name = "Sw Vox 8"          # Viscount SysEx, on and off values
division = "swell"

[[coupler]]
name = "Sw to Gt"          # at first this button sends the console's whole state
from = "swell"
to = "great"

[[tremulant]]
name = "Sw Tremulant"      # a push button: note-on and note-off at each press
division = "swell"
"#;

    /// The whole state a piston or the coupler sends on this console (every stop's off).
    const STATE: &str = "8F 24 00|9F 25 00|BF 14 00|BF 16 7F|BF 63 02|BF 62 2C|BF 06 00";

    /// What the organist's action sends on the mixed console, per prompt.
    fn mixed(prompt: &str) -> Vec<Vec<u8>> {
        let s = match prompt {
            "press lowest key: great" => "91 24 40|81 24 00",
            "press highest key: great" => "91 60 40|81 60 00",
            "press lowest key: swell" => "92 24 40|82 24 00",
            "press highest key: swell" => "92 60 40|82 60 00",
            "draw: Gt Principal 8" => "9F 24 7F",
            "put in: Gt Principal 8" => "8F 24 00",
            "draw: Gt Octave 4" => "9F 25 7F",
            "put in: Gt Octave 4" => "9F 25 00",
            "draw: Sw Gedackt 8" | "put in: Sw Gedackt 8" => "CB 05",
            "draw: Sw Salicional 8" => "BF 14 7F",
            "put in: Sw Salicional 8" => "BF 14 00",
            "draw: Sw Oboe 8" => "BF 15 7F",
            "put in: Sw Oboe 8" => "BF 16 7F",
            "draw: Gt Mixture" => "BF 63 02|BF 62 2C|BF 06 01",
            "put in: Gt Mixture" => "BF 63 02|BF 62 2C|BF 06 00",
            "draw: Gt Trumpet 8" | "put in: Gt Trumpet 8" => "F0 00 4A 4F 48 41 53 12 F7",
            "draw: Sw Vox 8" => "F0 31 00 01 05 F7",
            "put in: Sw Vox 8" => "F0 31 00 01 06 F7",
            "draw: Sw to Gt" | "put in: Sw to Gt" => return [hex("CE 01"), hex(STATE)].concat(),
            "draw: Sw Tremulant" | "put in: Sw Tremulant" => "9F 30 7F|8F 30 00",
            "press: General Cancel" => return [hex("CE 00"), hex(STATE)].concat(),
            _ => "",
        };
        hex(s)
    }

    /// The coupler once the console is set to send its own message for it.
    fn coupler_fixed(prompt: &str) -> Vec<Vec<u8>> {
        match prompt {
            "draw: Sw to Gt" => hex("BF 1E 7F"),
            "put in: Sw to Gt" => hex("BF 1E 00"),
            _ => Vec::new(),
        }
    }

    struct Run {
        status: ExitStatus,
        lines: Vec<String>,
        stderr: String,
    }

    fn organ(args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_organ"));
        c.args(args).env("JACK_DEFAULT_SERVER", procs::SERVER);
        super::support::ctrl_c_as_from_a_terminal(&mut c);
        c
    }

    fn spawn(mut cmd: Command) -> (Child, mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let e = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        (child, rx, e)
    }

    fn wait(child: &mut Child, timeout: Duration) -> ExitStatus {
        procs::wait_for(timeout, || child.try_wait().ok().flatten()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("organ did not finish within {timeout:?}")
        })
    }

    /// Runs `organ` with a console answering its prompts (`script`) and lines typed for it
    /// (`typed`: a reply to a line, if any).
    fn converse(
        cmd: Command,
        console: &mut Console,
        script: &dyn Fn(&str) -> Vec<Vec<u8>>,
        typed: &dyn Fn(&str) -> Option<&'static str>,
    ) -> Run {
        let (mut child, rx, err) = spawn(cmd);
        let mut stdin = child.stdin.take();
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => {
                    let msgs = script(&l);
                    if !msgs.is_empty() {
                        console.send(&msgs);
                    }
                    if let (Some(t), Some(s)) = (typed(&l), stdin.as_mut()) {
                        let _ = writeln!(s, "{t}");
                        let _ = s.flush();
                    }
                    lines.push(l);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("organ said nothing for 30 s; so far:\n{}", lines.join("\n"));
                }
            }
        }
        drop(stdin);
        let status = wait(&mut child, Duration::from_secs(10));
        Run { status, lines, stderr: err.join().unwrap() }
    }

    fn learn(file: &Path, console: &Console, extra: &[&str]) -> Command {
        let from = format!("jack:{}", console.out_port());
        let mut c =
            organ(&["learn", "--organ", file.to_str().unwrap(), "--from", &from, "--quiet", "300ms", "--wait", "15s"]);
        c.args(extra);
        c
    }

    /// The end-to-end test. One JACK server serves every step.
    #[test]
    fn console_end_to_end() {
        let dir = Scratch::new("console");
        let _jack = match procs::start_jack(&dir.path) {
            Ok(j) => j,
            Err(Unavailable::Skip(r)) => return skip(&r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        let started = Instant::now();
        let mut console = Console::open("console").unwrap();
        let file = dir.path.join("scripted.toml");
        std::fs::write(&file, MIXED).unwrap();

        ports_lists_the_console(&console);
        learn_every_kind_of_message(&file, &mut console);
        monitor_names_what_the_console_sends(&file, &mut console);
        verify_sends_controls_and_the_cancel_only(&file, &mut console);
        verify_interrupted_leaves_the_console_cancelled(&file, &mut console);
        verify_suspended_draws_off_and_goes_on(&file, &mut console);
        learn_a_rodgers_bitmap_console(&dir.path, &mut console);
        say(&format!("console_end_to_end: passed in {:.1} s", started.elapsed().as_secs_f64()));
    }

    /// `organ ports` shows the console's JACK ports, outputs to listen to and inputs to play to.
    fn ports_lists_the_console(console: &Console) {
        let o = organ(&["ports"]).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
        let outs = format!("JACK MIDI outputs of other programs (--from jack:PORT):\n  0: {}\n", console.out_port());
        let ins = format!("JACK MIDI inputs of other programs (--to jack:PORT):\n  0: {}\n", console.in_port());
        assert!(out.contains(&outs) && out.contains(&ins), "{out}");
        if !Path::new("/dev/snd/seq").exists() {
            assert!(out.contains("(no MIDI ports: this machine has no ALSA sequencer"), "{out}");
        }
    }

    fn learn_every_kind_of_message(file: &Path, console: &mut Console) {
        let no_typing = |_: &str| None;
        let r = converse(learn(file, console, &[]), console, &mixed, &no_typing);
        let out = r.lines.join("\n");
        assert!(r.status.success(), "{out}\n{}", r.stderr);
        // The prompts, one line each, starting with the action and the name.
        for p in [
            "press lowest key: great",
            "press highest key: swell",
            "draw: Gt Principal 8",
            "put in: Sw Vox 8",
            "press: General Cancel",
        ] {
            assert!(r.lines.iter().any(|l| l == p), "no prompt {p:?} in\n{out}");
        }
        for want in [
            "learned: great = channel 2, keys 36-96 (C2-C7)",
            "learned: Gt Principal 8 = note 36 on channel 16 (note on/off)",
            "learned: Sw Gedackt 8 = program 5 on channel 12 (program change toggle)",
            "learned: Sw Oboe 8 = CC 21 = 127 on channel 16, off CC 22 = 127 on channel 16 (control change, one controller on and another off)",
            "learned: Gt Mixture = NRPN 300 = 1 on channel 16 (NRPN, value on/off)",
            "learned: Gt Trumpet 8 = SysEx F0 00 4A 4F 48 41 53 12 F7 (Johannus SysEx toggle)",
            "learned: Sw Vox 8 = SysEx F0 31 00 01 05 F7, off SysEx F0 31 00 01 06 F7 (Viscount SysEx)",
            "burst: Sw to Gt: 8 messages at once",
            "learned: General Cancel = program 0 on channel 15; followed by a burst of 7 stop messages",
            "summary: learned 12 of 13; not learned: Sw to Gt",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        assert!(out.contains("not complete yet:"), "the coupler is still missing: {out}");
        // The coupler, once the console sends its own message for it.
        let r = converse(learn(file, console, &["--only", "Sw to Gt"]), console, &coupler_fixed, &|_| None);
        let out = r.lines.join("\n");
        assert!(r.status.success(), "{out}\n{}", r.stderr);
        assert!(out.contains("is a complete organ definition (2 divisions, 10 controls)"), "{out}");

        let text = std::fs::read_to_string(file).unwrap();
        for comment in MIXED.lines().filter_map(|l| l.find('#').map(|i| &l[i..])) {
            assert!(text.contains(comment), "comment {comment:?} lost:\n{text}");
        }
        let organ = Organ::load(file).unwrap();
        let script = |p: &str| if p.contains("Sw to Gt") { coupler_fixed(p) } else { mixed(p) };
        for c in &organ.controls {
            let on: Vec<Vec<u8>> = c.on.iter().map(|m| m.as_bytes().to_vec()).collect();
            let off: Vec<Vec<u8>> = c.off.iter().map(|m| m.as_bytes().to_vec()).collect();
            assert_eq!(normal(&on), normal(&script(&format!("draw: {}", c.name))), "{}'s on", c.name);
            assert_eq!(normal(&off), normal(&script(&format!("put in: {}", c.name))), "{}'s off", c.name);
        }
        assert_eq!(
            organ.divisions.iter().map(|d| (d.channel.user(), d.compass)).collect::<Vec<_>>(),
            [(2, (36, 96)), (3, (36, 96))]
        );
        assert_eq!(organ.cancel.as_ref().unwrap()[0].as_bytes(), &[0xCE, 0x00]);
    }

    fn monitor_names_what_the_console_sends(file: &Path, console: &mut Console) {
        let from = format!("jack:{}", console.out_port());
        let (mut child, rx, err) = spawn(organ(&["monitor", "--from", &from, "--organ", file.to_str().unwrap()]));
        // It is listening once its JACK port is connected to the console's output.
        let connected = procs::wait_for(Duration::from_secs(10), || {
            let p = console.client().port_by_name(&console.out_port())?;
            (!p.get_connections().is_empty()).then_some(())
        });
        assert!(connected.is_some(), "monitor did not connect to the console");
        let played = "91 3C 40|81 3C 00|9F 24 7F|BF 63 02|BF 62 2C|BF 06 01|F0 31 00 01 05 F7|CB 05|FE|F0 41 10 42 12 40 00 7F 00 41 F7|CE 00";
        for m in hex(played) {
            console.send(&[m]);
            std::thread::sleep(Duration::from_millis(30));
        }
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let status = wait(&mut child, Duration::from_secs(10));
        // Every line it printed: the reader thread may still be passing them on when the process
        // has already exited (on a busy machine it often is), so read until it ends.
        let mut lines: Vec<String> = Vec::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_secs(10)) {
            lines.push(l);
        }
        let out = lines.join("\n");
        assert!(status.success(), "{out}\n{}", err.join().unwrap());
        for (bytes, meaning) in [
            ("91 3C 40", "great C4 down"),
            ("81 3C 00", "great C4 up"),
            ("9F 24 7F", "Gt Principal 8 drawn"),
            ("BF 63 02", "(part of a control's message)"),
            ("BF 06 01", "Gt Mixture drawn"),
            ("F0 31 00 01 05 F7", "Sw Vox 8 drawn"),
            ("CB 05", "Sw Gedackt 8 toggled"),
            ("F0 41 10 42 12 40 00 7F 00 41 F7", "unknown: F0 41 10 42 12 40 00 7F 00 41 F7"),
            ("CE 00", "General Cancel"),
        ] {
            assert!(
                lines.iter().any(|l| l.contains(&format!("  {bytes} ")) && l.ends_with(meaning)),
                "no line with {bytes} meaning {meaning:?} in\n{out}"
            );
        }
        assert_eq!(lines.len(), 11, "ten messages (active sensing hidden) and the summary:\n{out}");
        let summary = lines.last().unwrap();
        assert!(summary.contains("10 message(s) (and 1 clock/active-sensing messages, not shown)"), "{summary}");
        assert!(summary.contains("1 unknown (1 different): F0 41 10 42 12 40 00 7F 00 41 F7 ×1"), "{summary}");
    }

    /// What the console heard, split into changes (messages a few ms apart are one change), each
    /// with its first message (whose clocks time the change).
    fn changes(heard: &[HeardAt], rate: u64) -> Vec<(HeardAt, Vec<Vec<u8>>)> {
        let mut out: Vec<(HeardAt, Vec<Vec<u8>>)> = Vec::new();
        for h in heard {
            match out.last_mut() {
                Some((first, msgs)) if h.frame.saturating_sub(first.frame) * 1_000_000 / rate < 100_000 => {
                    msgs.push(h.bytes.clone())
                }
                _ => out.push((h.clone(), vec![h.bytes.clone()])),
            }
        }
        out
    }

    /// The time between two changes the console heard, in µs on the server's sample clock, or
    /// `Err` with the figures where the server stalled between them (its frames then fell behind
    /// the time that passed by more than a period, so they cannot time the gap).
    fn gap(a: &HeardAt, b: &HeardAt, rate: u64) -> Result<u64, String> {
        let frames_us = b.frame.saturating_sub(a.frame) * 1_000_000 / rate;
        let passed = b.now.saturating_sub(a.now);
        let period_us = u64::from(procs::PERIOD) * 1_000_000 / rate;
        if passed > frames_us + period_us {
            Err(format!("{:.1} ms of frames while {:.1} ms passed", frames_us as f64 / 1e3, passed as f64 / 1e3))
        } else {
            Ok(frames_us)
        }
    }

    fn verify_sends_controls_and_the_cancel_only(file: &Path, console: &mut Console) {
        console.take_heard();
        let to = format!("jack:{}", console.in_port());
        let answer = |l: &str| match l {
            "drawn: Sw Oboe 8 — did it move on the console? (y/n)" => Some("n"),
            l if l.starts_with("drawn: ") => Some("y"),
            _ => None,
        };
        let r = converse(
            organ(&["learn", "--verify", "--organ", file.to_str().unwrap(), "--to", &to]),
            console,
            &|_| Vec::new(),
            &answer,
        );
        let out = r.lines.join("\n");
        assert_eq!(r.status.code(), Some(1), "a rejection is status 1:\n{out}\n{}", r.stderr);
        assert!(out.contains("summary: 9 confirmed, 1 rejected (Sw Oboe 8; marked in"), "{out}");
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains("# organ learn --verify: REJECTED: the organist saw no change; relearn with --only \"Sw Oboe 8\"\n[[stop]]\nname = \"Sw Oboe 8\""), "{text}");
        assert!(Organ::load(file).is_ok(), "the marked file still loads");

        std::thread::sleep(Duration::from_millis(300));
        let heard = console.take_heard_at();
        let rate = console.sample_rate();
        let organ = Organ::load(file).unwrap();
        let bytes = |ms: &[organ::midi::Message]| ms.iter().map(|m| m.as_bytes().to_vec()).collect::<Vec<_>>();
        let cancel = bytes(organ.cancel.as_ref().unwrap());
        let mut expected = vec![cancel.clone()];
        for c in &organ.controls {
            expected.push(bytes(&c.on));
            expected.push(bytes(&c.off));
        }
        expected.push(cancel);
        let got = changes(&heard, rate);
        let got_msgs: Vec<Vec<Vec<u8>>> = got.iter().map(|c| c.1.clone()).collect();
        assert_eq!(
            got_msgs, expected,
            "verify sends the cancel, each control's on and off, and the cancel; nothing else"
        );
        // 250 ms between changes, measured on the server's sample clock (to the frame, 21 µs):
        // the time a sound card would play them out at. Not on JACK's µs estimate of each cycle's
        // start (`jack_get_cycle_times`, what `HeardAt::usecs` holds), which with the dummy
        // backend on a busy machine wanders by tens of ms between cycles: it once put these
        // changes 210 ms apart where the frames had them about 290 ms apart.
        let gaps: Vec<Result<u64, String>> = got.windows(2).map(|w| gap(&w[0].0, &w[1].0, rate)).collect();
        let stalled: Vec<&String> = gaps.iter().filter_map(|g| g.as_ref().err()).collect();
        // A stall leaves the gap across it unmeasured; a pace too short would show in the others.
        assert!(
            stalled.len() * 2 < gaps.len(),
            "the JACK server stalled between {} of {} changes, too many to measure the pace: {stalled:?}",
            stalled.len(),
            gaps.len()
        );
        let (i, min_gap) =
            gaps.iter().enumerate().filter_map(|(i, g)| Some((i, *g.as_ref().ok()?))).min_by_key(|g| g.1).unwrap();
        let (a, b) = (&got[i].0, &got[i + 1].0);
        let est = b.usecs.saturating_sub(a.usecs);
        assert!(
            min_gap >= 249_900,
            "changes {min_gap} µs apart on the sample clock ({est} µs by JACK's cycle-time estimate), less than the safe 250 ms"
        );
        say(&format!(
            "console_end_to_end: --verify sent {} changes, closest {:.1} ms apart on the sample clock \
             ({:.1} ms by JACK's cycle-time estimate, which put the closest {:.1} ms apart){}",
            got.len(),
            min_gap as f64 / 1000.0,
            est as f64 / 1000.0,
            got.windows(2).map(|w| w[1].0.usecs.saturating_sub(w[0].0.usecs)).min().unwrap() as f64 / 1000.0,
            if stalled.is_empty() {
                String::new()
            } else {
                format!("; {} gap(s) across a server stall not measured: {stalled:?}", stalled.len())
            }
        ));
    }

    /// Starts `organ learn --verify` of Gt Principal 8 and Gt Octave 4 on the console, and waits
    /// for its first question (Gt Principal 8 drawn).
    fn start_verify_of_two(
        file: &Path,
        console: &mut Console,
    ) -> (Child, mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
        console.take_heard();
        let to = format!("jack:{}", console.in_port());
        let cmd = organ(&[
            "learn",
            "--verify",
            "--organ",
            file.to_str().unwrap(),
            "--to",
            &to,
            "--only",
            "Gt Principal 8,Gt Octave 4",
        ]);
        let (child, rx, err) = spawn(cmd);
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("a prompt");
        assert_eq!(line, "drawn: Gt Principal 8 — did it move on the console? (y/n)");
        (child, rx, err)
    }

    fn verify_interrupted_leaves_the_console_cancelled(file: &Path, console: &mut Console) {
        let (mut child, _rx, err) = start_verify_of_two(file, console);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let status = wait(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(130), "{}", err.join().unwrap());
        std::thread::sleep(Duration::from_millis(300));
        let got: Vec<Vec<Vec<u8>>> =
            changes(&console.take_heard_at(), console.sample_rate()).into_iter().map(|c| c.1).collect();
        assert_eq!(got, vec![hex("CE 00"), hex("9F 24 7F"), hex("8F 24 00"), hex("CE 00")], "put in, then cancelled");
    }

    /// The process state letter (`T` stopped) from /proc.
    fn state(pid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit(')').next().and_then(|r| r.trim_start().chars().next()).unwrap_or('?')
    }

    /// Ctrl-Z (SIGTSTP) while a stop is drawn: it is put in again before the process stops;
    /// `fg` (SIGCONT) draws it again and asks again, and the verify goes on to its end.
    fn verify_suspended_draws_off_and_goes_on(file: &Path, console: &mut Console) {
        let (mut child, rx, err) = start_verify_of_two(file, console);
        let mut stdin = child.stdin.take().unwrap();
        let pid = child.id();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTSTP) };
        let asked = Instant::now();
        while state(pid) != 'T' {
            assert!(asked.elapsed() < Duration::from_secs(5), "not stopped ({})", state(pid));
            std::thread::sleep(Duration::from_millis(5));
        }
        let stopped_after = asked.elapsed();
        // Stopped: nothing more can come from it (its JACK callback stands still too).
        std::thread::sleep(Duration::from_millis(500));
        let before_stop: Vec<Vec<Vec<u8>>> =
            changes(&console.take_heard_at(), console.sample_rate()).into_iter().map(|c| c.1).collect();
        assert_eq!(
            before_stop,
            vec![hex("CE 00"), hex("9F 24 7F"), hex("8F 24 00")],
            "the stop drawn was put in again before the process stopped"
        );
        assert_eq!(state(pid), 'T', "still stopped");
        // SAFETY: as above.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
        let mut lines = Vec::new();
        loop {
            let l = rx.recv_timeout(Duration::from_secs(20)).expect("verify goes on after SIGCONT");
            if l.starts_with("drawn") {
                let _ = writeln!(stdin, "y");
            }
            let done = l.starts_with("summary: ");
            lines.push(l);
            if done {
                break;
            }
        }
        drop(stdin);
        let status = wait(&mut child, Duration::from_secs(10));
        let out = lines.join("\n");
        assert_eq!(status.code(), Some(0), "{out}\n{}", err.join().unwrap());
        assert_eq!(
            lines[..2],
            [
                "drawn again: Gt Principal 8 — did it move on the console? (y/n)".to_string(),
                "drawn: Gt Octave 4 — did it move on the console? (y/n)".to_string()
            ],
            "{out}"
        );
        assert!(out.contains("summary: 2 confirmed, 0 rejected; the console was cancelled"), "{out}");
        std::thread::sleep(Duration::from_millis(300));
        let after: Vec<Vec<Vec<u8>>> =
            changes(&console.take_heard_at(), console.sample_rate()).into_iter().map(|c| c.1).collect();
        let organ = Organ::load(file).unwrap();
        let control = |n: &str| organ.controls.iter().find(|c| c.name == n).unwrap();
        let bytes = |ms: &[organ::midi::Message]| ms.iter().map(|m| m.as_bytes().to_vec()).collect::<Vec<_>>();
        let (p8, o4) = (control("Gt Principal 8"), control("Gt Octave 4"));
        assert_eq!(
            after,
            vec![bytes(&p8.on), bytes(&p8.off), bytes(&o4.on), bytes(&o4.off), hex("CE 00")],
            "drawn again after SIGCONT, then the rest of the verify and the cancel"
        );
        say(&format!(
            "console_end_to_end: --verify suspended {:.0} ms after SIGTSTP with the stop put in",
            stopped_after.as_secs_f64() * 1000.0
        ));
    }

    const RODGERS: &str = r#"# A Rodgers-style console: its stop state as a Roland data-set bitmap.
name = "Rodgers Test"

[division.great]
code = "G"
channel = 2

[[stop]]
name = "Gt Diapason 8"
division = "great"

[[stop]]
name = "Gt Flute 4"
division = "great"

[[stop]]
name = "Gt Twelfth 2 2/3"   # in the Flute's byte of the bitmap
division = "great"

[[stop]]
name = "Gt Trumpet 8"
division = "great"
"#;

    /// The console's bitmap: 5 bytes of 7 stops, device 10h; stop 3 stays drawn by hand.
    fn bitmap(bits: &[u32]) -> Vec<u8> {
        let mut data = vec![0u8; 5];
        for b in bits {
            data[(b / 7) as usize] |= 1 << (b % 7);
        }
        RolandDataSet { device: 0x10, offset: 0, data }.to_bytes()
    }

    fn rodgers(prompt: &str) -> Vec<Vec<u8>> {
        let bit = |name: &str| match name {
            "Gt Diapason 8" => 0,
            "Gt Flute 4" => 9,
            "Gt Twelfth 2 2/3" => 12,
            _ => 33,
        };
        if let Some(n) = prompt.strip_prefix("draw: ") {
            return vec![bitmap(&[3, bit(n)])];
        }
        if prompt.starts_with("put in: ") {
            return vec![bitmap(&[3])];
        }
        if prompt == "press: General Cancel" {
            return vec![vec![0xCF, 0x00], bitmap(&[])];
        }
        Vec::new()
    }

    fn learn_a_rodgers_bitmap_console(dir: &Path, console: &mut Console) {
        let file = dir.join("rodgers.toml");
        std::fs::write(&file, RODGERS).unwrap();
        let r = converse(learn(&file, console, &[]), console, &rodgers, &|_| None);
        let out = r.lines.join("\n");
        assert!(r.status.success(), "{out}\n{}", r.stderr);
        assert!(out.contains("learned: Gt Flute 4 = SysEx F0 41 10 30 12 01 01 04 7A F7, off SysEx F0 41 10 30 12 01 01 00 7E F7 (Rodgers bitmap, device 10h, stop bit 9 (byte 1, bit 2))"), "{out}");
        assert!(
            out.contains("learned: General Cancel = program 0 on channel 16; followed by a burst of 1 stop messages"),
            "{out}"
        );
        let organ = Organ::load(&file).unwrap();
        for (c, bit) in organ.controls.iter().zip([0, 9, 12, 33]) {
            let (on, off) = (c.on[0].as_bytes(), c.off[0].as_bytes());
            assert!(RolandDataSet::parse(on).is_some(), "{}: a checksum-verified data set", c.name);
            assert_eq!(bitmap_stop(on, off), Some(BitmapStop { device: 0x10, bit }), "{}", c.name);
        }
        // The console's own bitmaps read back through the learned organ.
        let mut d = Decoder::new(&organ);
        assert_eq!(d.decode(&bitmap(&[3])).to_string(), "(no change)");
        assert_eq!(d.decode(&bitmap(&[3, 9, 33])).to_string(), "Gt Flute 4 drawn, Gt Trumpet 8 drawn");
        assert_eq!(d.decode(&bitmap(&[3, 33])).to_string(), "Gt Flute 4 put in");
        // What the learned organ sends is a one-byte data set: read by the same decoder as a
        // bitmap, it sets the whole byte, as on the console (README: drawing a stop puts in the
        // others of its byte), in `organ monitor` as in the built-in voice (which has only keys).
        let (flute, twelfth) = (&organ.controls[1], &organ.controls[2]);
        let mut d = Decoder::new(&organ);
        assert_eq!(d.decode(flute.on[0].as_bytes()).to_string(), "Gt Flute 4 drawn");
        assert_eq!(d.decode(twelfth.on[0].as_bytes()).to_string(), "Gt Flute 4 put in, Gt Twelfth 2 2/3 drawn");
        assert_eq!(d.decode(flute.off[0].as_bytes()).to_string(), "Gt Twelfth 2 2/3 put in");
        let mut voice = organ::voice::Decoder::new(&organ::voice::OrganSound::of_organ(&organ));
        let mut heard = Vec::new();
        for m in [&flute.on[0], &twelfth.on[0], &twelfth.off[0]] {
            voice.feed(organ::voice::MsgKey::of(m.as_bytes()), |e| heard.push(e));
        }
        use organ::voice::ConsoleEvent::Control;
        use organ::voice::console::Action::{Off, On};
        assert_eq!(
            heard,
            [
                Control { id: 1, action: On },
                Control { id: 1, action: Off },
                Control { id: 2, action: On },
                Control { id: 2, action: Off }
            ]
        );
    }
}
