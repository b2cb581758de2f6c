//! `organ selftest` through the real binary: against `null` and `file:` (nothing to start), and
//! against a JACK server with the dummy backend, where a client of the test's own, connected to
//! `organ:out`, records everything the self-test sends.
//!
//! The verdict depends on how busy the machine is (the engine's lateness, JACK's placement), so
//! these tests check what is measured and sent, and that the exit status agrees with the
//! verdict line; the figures themselves are the benchmarks' business.
//!
//! The JACK test needs `jackd` (Debian package jackd2); without it it prints `SKIPPED: <reason>`,
//! and with `ORGAN_REQUIRE_GRANDORGUE=1` (as in CI, which installs it) it fails instead.

mod support;

use std::process::{Command, Output};

fn organ_bin() -> Command {
    support::organ_command(&[])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The report's line for `what` (`engine`, `send`, …).
fn line<'a>(stdout: &'a str, what: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{what} ")))
        .unwrap_or_else(|| panic!("no {what} line in\n{stdout}"))
}

/// The header, the engine line, and a verdict that agrees with the lines and the exit status.
fn check_report(out: &Output, to: &str) -> String {
    let stdout = text(&out.stdout);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(format!("organ selftest on St Mary's Church, Fishponds → {to}").as_str()));
    assert_eq!(
        lines.next(),
        Some(
            "sends only note-offs (8n kk 00) on the organ's keyboard channels, for keys that are not down: they \
             strike nothing; never a note-on or a stop message"
        )
    );
    assert!(stdout.contains(
        "burst: the cancel and preset \"full\" (54 stop messages, 4.00 ms apart), then a full chord (12 notes) 40.00 ms after the last stop"
    ));
    let engine = line(&stdout, "engine");
    assert!(engine.contains("p99 ") && engine.contains("(silent run; "), "{engine}");
    let verdict = stdout.lines().last().unwrap();
    let any_bad = stdout.lines().any(|l| l.ends_with("  NOT OK"));
    if any_bad {
        assert!(verdict.starts_with("not fit for a service ("), "{stdout}");
        assert_eq!(out.status.code(), Some(1), "{stdout}");
    } else {
        assert!(verdict.starts_with("fit for a service: engine p99 "), "{stdout}");
        assert_eq!(out.status.code(), Some(0), "{stdout}");
    }
    stdout
}

#[test]
fn selftest_to_null_measures_the_engine_and_the_send_call() {
    let out = organ_bin().args(["selftest", "--to", "null", "--seconds", "0.5"]).output().unwrap();
    let stdout = check_report(&out, "null");
    let send = line(&stdout, "send");
    assert!(send.starts_with("  send    66 note-offs sent at once to null: each call p50 "), "{send}");
    assert!(!stdout.contains("wire "), "a null output has no cable: {stdout}");
}

#[test]
fn selftest_to_a_file_leaves_the_file_alone() {
    let dir = support::Scratch::new("selftest-file");
    let existing = dir.path.join("record.mid");
    std::fs::write(&existing, b"keep me").unwrap();
    let missing = dir.path.join("new.mid");
    for path in [&existing, &missing] {
        let to = format!("file:{}", path.display());
        let out = organ_bin().args(["selftest", "--to", &to, "--seconds", "0.5"]).output().unwrap();
        let stdout = check_report(&out, &to);
        assert!(
            line(&stdout, "file").contains("a file records the engine's send times; not opened, nothing written"),
            "{stdout}"
        );
    }
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    assert!(!missing.exists(), "the self-test created {}", missing.display());
}

#[test]
fn selftest_without_an_output_says_how_to_give_one() {
    let out = organ_bin().args(["selftest", "--seconds", "0.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with("organ: error: no output: add --to port:NAME"), "{err}");
    assert!(err.contains("(or set output = \"…\" in organs/st-marys.toml)"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn selftest_of_an_output_that_cannot_be_opened_fails_before_measuring() {
    let out = organ_bin().args(["selftest", "--to", "null", "--to", "bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing measured: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.starts_with("organ: error: --to bogus: not an output; use port:NAME"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[cfg(feature = "jack")]
mod jack_server {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::support::Scratch;
    use super::support::procs::{self, Jackd, RunLock, Unavailable, say};
    use super::{check_report, line, organ_bin};

    fn skip(reason: &str) {
        assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "ORGAN_REQUIRE_GRANDORGUE is set, but {reason}");
        say(&format!("SKIPPED: selftest_to_jack_places_every_probe_and_sends_only_note_offs: {reason}"));
    }

    /// `organ selftest --to jack:selftest-probe:in`: the self-test's own capture measures the
    /// placement of 566 note-offs (a steady stream, then the burst) and the period latency;
    /// the test's client sees exactly those note-offs and nothing else.
    ///
    /// On a busy machine JACK's dummy backend now and then skips a cycle, and the messages of
    /// that cycle are lost for every client (the self-test then says so and is not fit). Such a
    /// run cannot show the count, so it is repeated, up to three runs; that nothing but
    /// note-offs is sent is checked in every run.
    #[test]
    fn selftest_to_jack_places_every_probe_and_sends_only_note_offs() {
        if procs::which("jackd").is_none() {
            return skip("jackd not installed (Debian package jackd2)");
        }
        if let Err(e) = jack::jack_sys::library() {
            return skip(&format!("libjack cannot be loaded ({e}); install jackd2"));
        }
        let _lock = RunLock::acquire(Duration::from_secs(300)).unwrap();
        let dir = Scratch::new("selftest-jack");
        // This test binary's JACK clients and the child use the test server.
        procs::use_server();
        let _jackd = match Jackd::start(&dir.path) {
            Ok(j) => j,
            Err(Unavailable::Skip(r)) => return skip(&r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        for attempt in 1..=3 {
            if run_once() {
                return;
            }
            say(&format!("selftest_to_jack: run {attempt}: JACK lost a cycle's messages; running again"));
        }
        panic!("JACK lost messages in three runs of the self-test");
    }

    /// One run: false when JACK lost messages (undecided), else the checks pass or panic.
    fn run_once() -> bool {
        let (client, _) = jack::Client::new("selftest-probe", jack::ClientOptions::NO_START_SERVER).unwrap();
        let port = client.register_port("in", jack::MidiIn::default()).unwrap();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let handler = jack::contrib::ClosureProcessHandler::new(move |_: &jack::Client, ps: &jack::ProcessScope| {
            for ev in port.iter(ps) {
                let _ = tx.send(ev.bytes.to_vec());
            }
            jack::Control::Continue
        });
        let active = client.activate_async((), handler).unwrap();
        let to = "jack:selftest-probe:in";
        let out = organ_bin().args(["selftest", "--to", to, "--seconds", "0.5"]).output().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(active);
        let stdout = check_report(&out, to);
        let got: Vec<Vec<u8>> = rx.try_iter().collect();
        assert!(got.iter().all(|b| b.len() == 3 && b[0] & 0xF0 == 0x80 && b[2] == 0), "{got:?}");
        let jack = line(&stdout, "jack");
        if jack.contains(" of 566 note-offs reached the port") {
            return false;
        }
        assert!(jack.starts_with("  jack    566 note-offs placed: p50 "), "{jack}");
        assert!(jack.contains("latency one period: 1024 frames at 48000 Hz = 21.33 ms"), "{jack}");
        assert!(line(&stdout, "wire").contains("66 messages, 198 bytes: 63.36 ms on a 5-pin MIDI cable"), "{stdout}");
        assert_eq!(got.len(), 566, "{stdout}");
        println!("{stdout}");
        true
    }
}
