//! `organ play` to JACK, through the real binary, on a JACK server with the dummy backend:
//! - `--stats` prints the JACK output's own counters (messages written, late, dropped, xruns,
//!   its period), and they agree with the engine's count of messages sent;
//! - the JACK server going away mid-piece (SIGKILL) is an output that really fails (also under
//!   `on_disconnect = "pause"`, which is for wireless links that come back): `organ play`
//!   says `KEYS MAY STILL SOUND on jack` with what to do, and that every other output (a `file:`
//!   record beside it, which is checked to end with the release) took the release — never
//!   "every key released".
//!
//! A process of its own (not `tests/integration`): the JACK server is named through the
//! environment. Needs the Debian package `jackd2`; without it each test prints `SKIPPED:
//! <reason>`, and with `ORGAN_REQUIRE_GRANDORGUE=1` (CI) it fails. About 10 s.

mod support;

#[cfg(not(feature = "jack"))]
#[test]
fn play_to_jack() {
    use std::io::Write;
    assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "built without the jack feature");
    let _ = writeln!(std::io::stderr(), "SKIPPED: play_to_jack: built without the `jack` feature");
}

#[cfg(feature = "jack")]
mod play_jack {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::Stdio;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};

    use midly::{Smf, TrackEventKind};

    use super::support::procs::{self, PERIOD, RATE, Unavailable, say};
    use super::support::{Scratch, organ_command, text};

    fn skip(test: &str, reason: &str) {
        assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "ORGAN_REQUIRE_GRANDORGUE is set, but {reason}");
        say(&format!("SKIPPED: {test}: {reason}"));
    }

    /// The number after `before` in `line` (commas allowed), e.g. `written` in "… 412 messages written".
    fn number_before(line: &str, after: &str) -> u64 {
        let head = &line[..line.find(after).unwrap_or_else(|| panic!("no {after:?} in {line:?}"))];
        let digits: String = head.trim_end().rsplit(' ').next().unwrap().chars().filter(char::is_ascii_digit).collect();
        digits.parse().unwrap_or_else(|_| panic!("no number before {after:?} in {line:?}"))
    }

    #[test]
    fn stats_give_the_jack_outputs_counters() {
        let dir = Scratch::new("play-jack-stats");
        let _jack = match procs::start_jack(&dir.path) {
            Ok(s) => s,
            Err(Unavailable::Skip(r)) => return skip("stats_give_the_jack_outputs_counters", &r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        let o =
            organ_command(&["play", "scores/bwv643.mid", "--until", "3", "--tempo", "200%", "--to", "jack", "--stats"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert!(o.status.success(), "{err}");
        say(&format!("play --stats to JACK:\n{out}"));
        let timing = out.lines().find(|l| l.starts_with("timing: ")).unwrap_or_else(|| panic!("{out}"));
        let sent = number_before(timing, "messages;");
        let line = out.lines().find(|l| l.starts_with("jack: JACK: ")).unwrap_or_else(|| panic!("{out}"));
        // Every message the engine sent was written to the port (the output drains at the end),
        // none lost; the period is the server's.
        assert!(sent > 100, "{timing}");
        assert_eq!(number_before(line, "messages written"), sent, "{out}");
        assert_eq!(number_before(line, "dropped"), 0, "{line}");
        let xruns = number_before(line, "xrun");
        let cycles = number_before(line, "cycles;");
        assert!(cycles > 50, "the process callback ran: {line}");
        assert!(xruns < cycles, "{line}");
        assert!(
            line.ends_with(&format!(
                "period {PERIOD} frames at {RATE} Hz ({:.1} ms of latency)",
                f64::from(PERIOD) * 1000.0 / f64::from(RATE)
            )),
            "{line}"
        );
        // Without --stats, no such line.
        let o = organ_command(&["play", "scores/bwv643.mid", "--until", "1", "--to", "jack"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(!text(&o.stdout).contains("JACK:"), "{}", text(&o.stdout));
    }

    /// A JACK client that, when asked, takes 150 ms over one cycle (as a client does on a
    /// loaded machine): until it finishes, the server runs the graph it had and holds back any
    /// change to it.
    struct Staller {
        arm: Arc<AtomicBool>,
        stalling: Arc<AtomicBool>,
    }

    impl jack::ProcessHandler for Staller {
        fn process(&mut self, _: &jack::Client, _: &jack::ProcessScope) -> jack::Control {
            if self.arm.swap(false, Ordering::AcqRel) {
                self.stalling.store(true, Ordering::Release);
                std::thread::sleep(Duration::from_millis(150));
                self.stalling.store(false, Ordering::Release);
            }
            jack::Control::Continue
        }
    }

    /// A burst sent the moment the output is open reaches the port it was connected to, whole,
    /// also when another client holds the server's cycle up while organ connects: `open`
    /// returns only once the server routes the connection. (jack2 takes a new connection into
    /// the graph it runs at the start of the first cycle after every client finished the last
    /// one; whatever was written to the port before then went nowhere. In CI, with a server
    /// busy with 40 clients, the first 4 and the first 13 messages of a performance, the cancel
    /// that sets the registration, were lost so.)
    #[test]
    fn a_burst_at_once_after_open_reaches_the_port_whole() {
        use organ::midi::Micros;
        use organ::output::{Output, Stamp};

        use super::support::console::Console;

        let dir = Scratch::new("play-jack-routed");
        let _jack = match procs::start_jack(&dir.path) {
            Ok(s) => s,
            Err(Unavailable::Skip(r)) => return skip("a_burst_at_once_after_open_reaches_the_port_whole", &r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        let (arm, stalling) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (staller, _) = jack::Client::new("staller", jack::ClientOptions::NO_START_SERVER).unwrap();
        let staller =
            staller.activate_async((), Staller { arm: Arc::clone(&arm), stalling: Arc::clone(&stalling) }).unwrap();
        for round in 0..4u8 {
            let mut console = Console::open(&format!("routed-{round}")).unwrap();
            // Rounds 2 and 3: organ connects while the staller holds the cycle up.
            if round >= 2 {
                arm.store(true, Ordering::Release);
                let t = Instant::now();
                while !stalling.load(Ordering::Acquire) {
                    assert!(t.elapsed() < Duration::from_secs(2), "the staller did not run");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let mut out = organ::output::jack::open(Some(&console.in_port())).unwrap();
            // The running graph, as another client sees it, already carries the connection.
            let ours = console.client().port_by_name(out.port_name()).unwrap();
            assert!(
                ours.is_connected_to(&console.in_port()).unwrap(),
                "round {round}: open returned before the server routes {} to {}",
                out.port_name(),
                console.in_port()
            );
            let burst: Vec<Vec<u8>> = (0..16u8).map(|k| vec![0x90, 36 + k, 64 + round]).collect();
            for b in &burst {
                out.send(b, Stamp { plan: Micros(0), due: Micros(0), now: Micros(0) }).unwrap();
            }
            assert!(out.drain(Duration::from_secs(2)), "round {round}: the output did not drain");
            std::thread::sleep(Duration::from_millis(100));
            let heard: Vec<Vec<u8>> = console.take_heard().into_iter().map(|(_, b)| b).collect();
            assert_eq!(heard, burst, "round {round}: the console heard the burst whole, in order");
            out.finish().unwrap();
        }
        drop(staller);
    }

    /// The messages of a `file:` record, in order.
    fn read_record(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let smf = Smf::parse(&bytes).unwrap_or_else(|e| panic!("{} is not a Standard MIDI File: {e}", path.display()));
        let mut out = Vec::new();
        for ev in &smf.tracks[0] {
            if let TrackEventKind::Midi { channel, message } = ev.kind {
                let mut b = Vec::new();
                midly::live::LiveEvent::Midi { channel, message }.write_std(&mut b).unwrap();
                out.push(b);
            }
        }
        out
    }

    /// `organ play` of BWV 643 to JACK with a record beside it (`organ`, an organ file); 1.5 s
    /// into the piece the JACK server is killed. Returns the exit
    /// status, what was said on stderr, and the record's path.
    fn play_and_kill_the_server(
        jack: &procs::JackSession,
        dir: &Path,
        organ: &Path,
    ) -> (std::process::ExitStatus, String, std::path::PathBuf) {
        let record = dir.join("beside.mid");
        let file = format!("file:{}", record.display());
        let mut child =
            organ_command(&["play", "scores/bwv643.mid", "--tempo", "200%", "--organ", organ.to_str().unwrap()])
                .args(["--to", "jack", "--to", &file])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push(line);
            }
            all
        });
        let started = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.starts_with("organ: playing") => break,
                Ok(_) => {}
                Err(_) => panic!("organ play did not start playing"),
            }
        }
        // Well into the piece, chords held: the server goes away at once.
        std::thread::sleep(Duration::from_millis(1500));
        jack.jackd.proc.signal(libc::SIGKILL);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "organ play did not end after the server went away");
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, reader.join().unwrap().join("\n"), record)
    }

    /// Checks that the record took the release: every key it struck let go, then CC 123 on each
    /// division; and that it stopped mid-piece.
    fn assert_record_released(record: &Path) {
        let sent = read_record(record);
        let mut down = std::collections::HashSet::new();
        for b in &sent {
            match (b[0] & 0xF0, b.get(2)) {
                (0x90, Some(&v)) if v > 0 => {
                    down.insert((b[0] & 0x0F, b[1]));
                }
                (0x80 | 0x90, _) => {
                    down.remove(&(b[0] & 0x0F, b[1]));
                }
                _ => {}
            }
        }
        let notes = sent.iter().filter(|b| b[0] & 0xF0 == 0x90 && b[2] > 0).count();
        assert!(notes > 10, "stopped mid-piece after {notes} notes");
        assert!(down.is_empty(), "keys left down in the record: {down:?}");
        for ch in 0..3u8 {
            assert!(sent.iter().any(|b| b == &[0xB0 | ch, 123, 0]), "CC 123 on channel {}", ch + 1);
        }
    }

    #[test]
    fn the_jack_server_gone_mid_piece_leaves_keys_that_may_sound_and_says_so() {
        let dir = Scratch::new("play-jack-gone");
        let jack = match procs::start_jack(&dir.path) {
            Ok(s) => s,
            Err(Unavailable::Skip(r)) => {
                return skip("the_jack_server_gone_mid_piece_leaves_keys_that_may_sound_and_says_so", &r);
            }
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        // St Mary's as shipped: on_disconnect = "pause", which is for wireless links that come
        // back; a JACK server gone is a failed output all the same (the piece does not wait).
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let organ = root.join("organs/st-marys.toml");
        assert!(std::fs::read_to_string(&organ).unwrap().contains("on_disconnect = \"pause\""));
        let (status, lines, record) = play_and_kill_the_server(&jack, &dir.path, &organ);
        say(&format!("the JACK server killed mid-piece:\n{lines}"));
        assert_eq!(status.code(), Some(2), "{lines}");
        // Nothing reconnects a JACK output whose server is gone: no link lost, nothing waits.
        assert!(!lines.contains("link lost") && !lines.contains("reconnecting"), "{lines}");
        assert!(
            lines.contains("organ: stopped by an output failure; KEYS MAY STILL SOUND on jack; every other output took the release: "),
            "{lines}"
        );
        assert!(
            lines.contains(
                "so the release did not reach it: press the organ's General Cancel or switch the organ off and on (or, once it is back, run organ panic --to jack)"
            ),
            "{lines}"
        );
        let last = lines.lines().last().unwrap();
        assert!(
            last.starts_with("organ: error: jack: ")
                && last
                    .ends_with("; playback stopped; KEYS MAY STILL SOUND on jack; every other output took the release"),
            "{lines}"
        );
        assert!(!lines.contains("every key released") && !lines.contains("were released"), "{lines}");
        // The record beside it did take the release.
        assert_record_released(&record);
    }
}
