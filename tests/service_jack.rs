//! `organ service` to JACK, through the real binary in its terminal view (tmux), on a JACK
//! server with the dummy backend: the server killed while a hymn plays under the shipped organ's
//! `on_disconnect = "pause"` is a lost output like any other — the item ends, the view says
//! `OUTPUT LOST (jack:…)` and how to get it back — and once a server of the same name runs again,
//! **o** opens the output on it afresh (connected to the same port), and the next hymn plays to
//! the new server with every key it strikes released.
//!
//! A process of its own (not `tests/integration`): the JACK server is named through the
//! environment. Needs the Debian packages `jackd2` and `tmux`; without them the test prints
//! `SKIPPED: <reason>`, and with `ORGAN_REQUIRE_GRANDORGUE=1` (CI) it fails. About 25 s.

mod support;

#[cfg(not(feature = "jack"))]
#[test]
fn service_to_jack() {
    use std::io::Write;
    assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "built without the jack feature");
    let _ = writeln!(std::io::stderr(), "SKIPPED: service_to_jack: built without the `jack` feature");
}

#[cfg(feature = "jack")]
mod service_jack {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::support::console::undouble;
    use super::support::procs::{self, Jackd, Unavailable, say};
    use super::support::tmux::Tmux;
    use super::support::{Scratch, repo_dir};

    const TEST: &str = "a_jack_server_gone_while_a_hymn_plays_is_reopened_with_o_once_it_is_back";

    fn skip(reason: &str) {
        assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "ORGAN_REQUIRE_GRANDORGUE is set, but {reason}");
        say(&format!("SKIPPED: {TEST}: {reason}"));
    }

    /// The instrument on the JACK server: a JACK client `console` with a MIDI input `in`, in a
    /// process of its own (python3-jack-client), so that each server gets a fresh client (a
    /// process's libjack does not open clients on a server started again under the same name).
    /// It prints each message it receives as hex, one a line.
    const LISTENER: &str = r#"
import queue, sys, threading, jack
client = jack.Client("console", no_start_server=True)
port = client.midi_inports.register("in")
heard = queue.Queue()
@client.set_process_callback
def process(frames):
    for _, data in port.incoming_midi_events():
        heard.put(bytes(data))
def say():
    while True:
        sys.stdout.write(heard.get().hex() + "\n")
        sys.stdout.flush()
threading.Thread(target=say, daemon=True).start()
client.activate()
print("ready", flush=True)
sys.stdin.read()
"#;

    /// A listener on the server running now, and what it heard, a message at a time.
    struct Listener {
        child: Child,
        rx: mpsc::Receiver<String>,
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Listener {
        fn start() -> Result<Listener, String> {
            let mut child = Command::new("/usr/bin/python3")
                .args(["-c", LISTENER])
                .env("JACK_DEFAULT_SERVER", procs::SERVER)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start /usr/bin/python3: {e}"))?;
            let out = child.stdout.take().expect("piped");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        return;
                    }
                }
            });
            let mut l = Listener { child, rx };
            match l.rx.recv_timeout(Duration::from_secs(10)) {
                Ok(r) if r == "ready" => Ok(l),
                other => Err(format!("the listener did not start ({other:?}; exit {:?})", l.child.try_wait())),
            }
        }

        /// What it heard since the last call.
        fn take(&self) -> Vec<Vec<u8>> {
            let mut v = Vec::new();
            while let Ok(l) = self.rx.try_recv() {
                let b = (0..l.len() / 2).map(|i| u8::from_str_radix(&l[2 * i..2 * i + 2], 16).unwrap()).collect();
                v.push(b);
            }
            v
        }
    }

    /// A note or controller message as the console reads it (a note-on at velocity 0 and a
    /// note-off are the same); `None` for anything else.
    fn channel_message(b: &[u8]) -> Option<Vec<u8>> {
        match *b {
            [s, k, 0] if s & 0xF0 == 0x90 => Some(vec![0x80 | (s & 0x0F), k, 0]),
            [s, k, _] if s & 0xF0 == 0x80 => Some(vec![s, k, 0]),
            [s, _, _] if matches!(s & 0xF0, 0x90 | 0xB0) => Some(b.to_vec()),
            _ => None,
        }
    }

    /// The note and controller messages of a `file:` record, in order.
    fn read_record(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let smf = midly::Smf::parse(&bytes).unwrap();
        let mut out = Vec::new();
        for ev in &smf.tracks[0] {
            if let midly::TrackEventKind::Midi { channel, message } = ev.kind {
                let mut b = Vec::new();
                midly::live::LiveEvent::Midi { channel, message }.write_std(&mut b).unwrap();
                out.extend(channel_message(&b));
            }
        }
        out
    }

    fn order_file(dir: &Path) -> String {
        let order = dir.join("service.toml");
        std::fs::write(
            &order,
            format!(
                r#"title = "JACK lost"
organ = "st-marys"
[[item]]
title = "Cwm Rhondda"
score = "{root}/scores/hymn-cwm-rhondda.mid"
verses = 3
tempo = "200%"
[[item]]
title = "Tallis"
score = "{root}/scores/hymn-tallis-ordinal.mid"
verses = 1
play_over = "7-8"
tempo = "400%"
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

    /// Every key struck (channels 1-3, St Mary's divisions) is released, each once; the number
    /// of note-ons.
    fn assert_every_key_released(what: &str, heard: &[Vec<u8>]) -> usize {
        let mut down = std::collections::BTreeSet::new();
        let mut ons = 0;
        for b in heard.iter().filter(|b| is_key(b)) {
            if b[0] & 0xF0 == 0x90 && b[2] > 0 {
                ons += 1;
                assert!(down.insert((b[0] & 0x0F, b[1])), "{what}: key {b:02X?} struck twice");
            } else {
                assert!(down.remove(&(b[0] & 0x0F, b[1])), "{what}: a release of a key not down: {b:02X?}");
            }
        }
        assert!(down.is_empty(), "{what}: keys left down: {down:?}");
        ons
    }

    #[test]
    fn a_jack_server_gone_while_a_hymn_plays_is_reopened_with_o_once_it_is_back() {
        if !Tmux::installed() {
            return skip("tmux is not installed (Debian package tmux)");
        }
        let dir = Scratch::new("service-jack-gone");
        let mut jack = match procs::start_jack(&dir.path) {
            Ok(j) => j,
            Err(Unavailable::Skip(r)) => return skip(&r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        let organ_file = repo_dir().join("organs/st-marys.toml");
        assert!(std::fs::read_to_string(organ_file).unwrap().contains("on_disconnect = \"pause\""));
        let first = match Listener::start() {
            Ok(l) => l,
            Err(e) if !Path::new("/usr/lib/python3/dist-packages/jack.py").exists() => {
                return skip(&format!("{e}: install python3-jack-client"));
            }
            Err(e) => panic!("{e}"),
        };
        let to = "jack:console:in".to_string();
        // A record beside it: what organ sent, to compare with what the new server delivered.
        let record = dir.path.join("sent.mid");
        let exit = dir.path.join("exit");
        // The pane stays after organ ends (sleep), so that its closing lines can be read.
        let command = format!(
            "cd {} && JACK_DEFAULT_SERVER={} {} service {} --to {to} --to file:{}; echo EXIT=$? > {}; sleep 600",
            repo_dir().display(),
            procs::SERVER,
            env!("CARGO_BIN_EXE_organ"),
            order_file(&dir.path),
            record.display(),
            exit.display()
        );
        let tmux = Tmux::start(format!("organ-service-jack-{}", std::process::id()), 100, 30, &command);
        tmux.wait_for("the view", |s| s.contains("READY"));
        tmux.keys("Enter");
        tmux.wait_for("the first hymn", |s| s.contains("PLAYING") && s.contains("play-over, bar"));
        std::thread::sleep(Duration::from_millis(1500));
        assert!(first.take().iter().any(|b| is_key(b) && b[0] & 0xF0 == 0x90), "the first hymn reached the listener");

        // The server dies with keys down, under on_disconnect = "pause": the item ends at once,
        // lost there, and the view says how to get it back (not to restart organ service).
        jack.jackd.proc.signal(libc::SIGKILL);
        let s = tmux.wait_for("the lost output", |s| s.contains("OUTPUT LOST") && s.contains("nothing is playing"));
        say(&format!("the JACK server killed while a hymn played:\n{s}"));
        // The view wraps its notes: read them as one line.
        let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains(&format!(
                "OUTPUT LOST ({to}): keys may still sound there (General Cancel); the others were released; once it \
                 is back (a server started again), o reopens it"
            )),
            "{flat}"
        );
        assert!(flat.contains("OUTPUT NOT AVAILABLE") && flat.contains("the JACK server shut down — o retries"), "{s}");
        assert!(s.contains("◐ 1. Cwm Rhondda") && s.contains("[stopped at"), "{s}");
        assert!(!s.contains("LINK") && !s.contains("organ service again"), "{s}");
        // o while the server is still down: still not available, said so.
        tmux.keys("o");
        std::thread::sleep(Duration::from_millis(500));
        assert!(tmux.screen().contains("OUTPUT NOT AVAILABLE"), "{}", tmux.screen());

        // The same server name started again, and the listener on it; o opens the output on the
        // new server, connected to the listener's input again.
        drop(first);
        jack.jackd.stop();
        let again = dir.path.join("again");
        std::fs::create_dir_all(&again).unwrap();
        let restarted = match Jackd::start(&again) {
            Ok(j) => j,
            Err(Unavailable::Skip(r) | Unavailable::Fail(r)) => panic!("the server did not start again: {r}"),
        };
        // The old one is stopped already; dropping it would clean the shared memory of its name,
        // which is now the new server's.
        std::mem::forget(std::mem::replace(&mut jack.jackd, restarted));
        let listener = Listener::start().unwrap();
        tmux.keys("o");
        tmux.wait_for("the output reopened", |s| s.contains("outputs open") && s.contains("READY"));

        // The next hymn plays to the new server, to its end, every key released.
        tmux.keys("Down");
        tmux.wait_for("the second hymn chosen", |s| s.contains("Enter starts 2. Tallis"));
        tmux.keys("Enter");
        tmux.wait_for("the second hymn", |s| s.contains("PLAYING"));
        let s = tmux.wait_for("the second hymn played", |s| s.contains("finished Tallis"));
        assert!(s.contains("✓ 2. Tallis"), "{s}");
        std::thread::sleep(Duration::from_millis(300));
        let heard: Vec<Vec<u8>> = listener.take().into_iter().filter_map(|b| channel_message(&b)).collect();

        // q: the release of the second hymn reached the output the first one lost.
        tmux.keys("q");
        let status = procs::wait_for(Duration::from_secs(10), || std::fs::read_to_string(&exit).ok())
            .unwrap_or_else(|| panic!("organ service did not quit; the screen was:\n{}", tmux.screen()));
        let s = tmux.screen();
        let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(status.trim(), "EXIT=0", "{s}");
        let closing = format!("organ: service ended (1 of 2 item(s) played); every key released → {to}");
        assert!(flat.contains(&closing), "{s}");

        // The new server delivered what organ sent in the second hymn (the record's end), each
        // message once — or, where organ says JACK skipped cycles, jack2's doubling of a stalled
        // cycle taken out (support::console::undouble); every key it struck released.
        let sent = read_record(&record);
        let (sent, heard): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = (sent.iter().collect(), heard.iter().collect());
        let skipped = flat.contains("JACK skipped cycles");
        let tail = (0..sent.len()).rev().filter(|&p| sent.len() - p <= heard.len()).find(|&p| {
            let (undoubled, _) = if skipped { undouble(&sent[p..], &heard) } else { (heard.clone(), 0) };
            undoubled == sent[p..]
        });
        let tail = tail.unwrap_or_else(|| {
            panic!("the new server did not deliver what organ sent ({} heard, {} sent):\n{s}", heard.len(), sent.len())
        });
        let played: Vec<Vec<u8>> = sent[tail..].iter().map(|b| b.to_vec()).collect();
        let ons = assert_every_key_released("the second hymn on the new server", &played);
        assert!(ons > 20, "the second hymn reached the new server ({ons} keys struck)");
        for ch in 0..3u8 {
            assert!(played.iter().any(|b| b == &[0xB0 | ch, 123, 0]), "CC 123 on channel {}", ch + 1);
        }
        say(&format!(
            "  reopened with o on the server started again; the next hymn struck {ons} keys there, each released"
        ));
    }
}
