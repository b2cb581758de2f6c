//! `organ service` for real: the binary runs in a pseudo-terminal (a tmux pane on a private tmux
//! server), keys are pressed with `send-keys`, the screen is read with `capture-pane`, and what
//! was sent is read back from the file output with midly.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use midly::{MidiMessage, Smf, TrackEventKind};

use crate::support::scratch;

/// A private tmux server, killed on drop.
pub(crate) struct Tmux {
    socket: String,
}

impl Tmux {
    /// `organ service ORDER --to file:OUT` in a 100×30 pane of a private tmux server; its exit
    /// status goes to `exit` ("EXIT=N").
    pub(crate) fn service(name: &str, order: &Path, out: &Path, exit: &Path) -> Tmux {
        let command = format!(
            "{} service {} --to file:{}; echo EXIT=$? > {}",
            env!("CARGO_BIN_EXE_organ"),
            order.display(),
            out.display(),
            exit.display()
        );
        Tmux::start(name, &command)
    }

    /// `command` (run by the default shell) in a 100×30 pane of a private tmux server.
    pub(crate) fn start(name: &str, command: &str) -> Tmux {
        let tmux = Tmux { socket: format!("organ-test-{name}-{}", std::process::id()) };
        let started = tmux.run(&["new-session", "-d", "-s", "svc", "-x", "100", "-y", "30", command]);
        assert!(started.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&started.stderr));
        tmux
    }

    /// Waits for the "EXIT=N" line `organ service` left when it quit.
    pub(crate) fn exit_status(&self, exit: &Path, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Ok(e) = std::fs::read_to_string(exit) {
                return e.trim().to_string();
            }
            assert!(start.elapsed() < timeout, "organ service did not quit; the screen was:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs")
    }

    pub(crate) fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "svc"]).stdout).into_owned()
    }

    pub(crate) fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", "svc", keys]);
        assert!(out.status.success(), "send-keys {keys}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Waits until the screen satisfies `ok`, or fails with the last screen.
    pub(crate) fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if start.elapsed() > timeout {
                panic!("timed out waiting for {what}; the screen was:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}

pub(crate) fn tmux_available() -> Option<String> {
    match Command::new("tmux").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("tmux -V failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Some(format!("tmux is not installed ({e}); .ci/setup installs it")),
    }
}

/// (time in µs, bytes) of every MIDI and SysEx message in a file written by `--to file:`.
pub(crate) fn read_sent(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let smf = Smf::parse(&bytes).unwrap();
    let tick_us = organ::output::record::FILE_TICK_US;
    let mut t = 0u64;
    let mut out = Vec::new();
    for ev in &smf.tracks[0] {
        t += u64::from(ev.delta.as_int());
        match ev.kind {
            TrackEventKind::Midi { channel, message } => {
                let ch = channel.as_int();
                let b = match message {
                    MidiMessage::NoteOn { key, vel } => vec![0x90 | ch, key.as_int(), vel.as_int()],
                    MidiMessage::NoteOff { key, vel } => vec![0x80 | ch, key.as_int(), vel.as_int()],
                    MidiMessage::Controller { controller, value } => {
                        vec![0xB0 | ch, controller.as_int(), value.as_int()]
                    }
                    MidiMessage::ProgramChange { program } => vec![0xC0 | ch, program.as_int()],
                    other => panic!("unexpected message {other:?}"),
                };
                out.push((t * tick_us, b));
            }
            TrackEventKind::SysEx(d) => {
                let mut b = vec![0xF0];
                b.extend_from_slice(d);
                out.push((t * tick_us, b));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_service_view_plays_waits_stops_and_leaves_no_key_down() {
    if let Some(why) = tmux_available() {
        println!("SKIPPED: the terminal-view test needs tmux: {why}");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("service");
    let out = dir.join("sent.mid");
    let order = dir.join("test-service.toml");
    // A fast hymn (400%: a quarter note is 125 ms) with a fermata that waits in bar 2, and a
    // second item after it.
    std::fs::write(
        &order,
        format!(
            r#"title = "Test service"
organ = "st-marys"
[[item]]
title = "Fast hymn"
score = "{root}/scores/hymn-cwm-rhondda.mid"
verses = 2
play_over = "13-14"
gap = "1 beat"
tempo = "400%"
fermatas = ["2:3"]
fermata = {{ wait = true }}
note = "Wait for the procession."
[[item]]
title = "Second hymn"
score = "{root}/scores/hymn-tallis-ordinal.mid"
verses = 1
"#,
            root = root.display()
        ),
    )
    .unwrap();
    let tmux = Tmux::service("plain", &order, &out, &dir.join("exit"));
    let t = Duration::from_secs(10);

    // The order of service, nothing playing, what Enter will do.
    let s = tmux.wait_for("the view", t, |s| s.contains("READY"));
    assert!(s.contains("Test service — St Mary's Church, Fishponds → file:"), "{s}");
    assert!(s.contains("1. Fast hymn  (2 verses, play-over 13-14, 0:"), "{s}");
    // The item sets the verses; the play-over comes from the score's own [hymn].
    assert!(s.contains("2. Second hymn  (1 verse, play-over 5-8, 1:"), "{s}");
    assert!(s.contains("Enter starts 1. Fast hymn"), "{s}");
    assert!(s.contains("note: Wait for the procession."), "{s}");
    assert!(s.contains("Enter start/continue · s stop"), "{s}");

    // Enter: the play-over, then verse 1 up to the fermata, where it waits with the chord held.
    // r during the play-over: verse 1 on the organ's first preset (pp) instead of as written.
    tmux.keys("Enter");
    tmux.wait_for("the play-over", t, |s| s.contains("play-over, bar"));
    tmux.keys("r");
    tmux.wait_for("the registration change", t, |s| s.contains("verse 1: registration pp"));
    let s = tmux.wait_for("the fermata", t, |s| s.contains("WAITING AT A FERMATA — Enter continues"));
    assert!(s.contains("▶ 1. Fast hymn"), "{s}");
    assert!(s.contains("verse 1 of 2, bar 2 of 14"), "{s}");
    assert!(s.contains("tempo 400% (♩ = 480)"), "{s}");
    assert!(s.contains("registration: pp"), "{s}");
    assert!(s.contains("verse 2 of 2"), "what comes next: {s}");
    assert!(s.contains("then: 2. Second hymn"), "{s}");
    std::thread::sleep(Duration::from_millis(1500));

    // Enter again: it goes on; s while it plays stops it.
    tmux.keys("Enter");
    let s = tmux.wait_for("playing on", t, |s| s.contains("PLAYING") && !s.contains("bar 2 of 14"));
    assert!(s.contains("verse 1 of 2"), "{s}");
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys("s");
    tmux.wait_for("the question", t, |s| s.contains("Stop now? s again stops"));
    tmux.keys("s");
    let s = tmux.wait_for("the stop", t, |s| s.contains("READY"));
    assert!(s.contains("stopped: every key released"), "{s}");
    assert!(s.contains("Enter starts 1. Fast hymn"), "stopped, not finished: the selection stays: {s}");

    // q quits at once when nothing plays.
    tmux.keys("q");
    assert_eq!(tmux.exit_status(&dir.join("exit"), t), "EXIT=0");

    // What was sent: every note-on has its note-off, nothing struck twice, and the fermata
    // chord stayed down (no release, no re-strike) through the 1.5 s wait.
    let sent = read_sent(&out);
    let (longest_held_silence, ons) = assert_released(&sent);
    assert!(
        longest_held_silence >= 1_400_000,
        "the fermata chord was held through the wait ({longest_held_silence} µs)"
    );
    // It stopped in verse 1 (before the end of the plan): fewer note-ons than the whole hymn.
    assert!(ons > 50 && ons < 500, "{ons} note-ons");
    // r during the play-over put verse 1 on preset pp: its Sw Salicional 8 was drawn.
    let salicional = [0x9F, 38, 0x7F];
    assert!(sent.iter().any(|(_, b)| b.as_slice() == salicional), "verse 1 on pp");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every note-on has its note-off, no key is struck twice, and after the last note message come
/// CC 123 on every division channel, then the organ's cancel. Returns the longest time keys
/// were held with nothing sent, and the number of note-ons.
pub(crate) fn assert_released(sent: &[(u64, Vec<u8>)]) -> (u64, usize) {
    let organ = organ::organ::Organ::find("st-marys").unwrap();
    let key_channels: Vec<u8> = organ.divisions.iter().map(|d| d.channel.wire()).collect();
    let mut down = std::collections::BTreeSet::new();
    let mut last_note = 0;
    let mut longest_held_silence = 0;
    let mut ons = 0;
    for (i, (t, b)) in sent.iter().enumerate() {
        let ch = b[0] & 0x0F;
        if b[0] < 0xF0 && key_channels.contains(&ch) && matches!(b[0] & 0xF0, 0x80 | 0x90) {
            last_note = i;
            if !down.is_empty() && i > 0 {
                longest_held_silence = longest_held_silence.max(t - sent[i - 1].0);
            }
            if b[0] & 0xF0 == 0x90 && b[2] > 0 {
                ons += 1;
                assert!(down.insert((ch, b[1])), "key {} on channel {} struck twice at message {i}", b[1], ch + 1);
            } else {
                assert!(down.remove(&(ch, b[1])), "note-off for key {} (channel {}) that was not down", b[1], ch + 1);
            }
        }
    }
    assert!(down.is_empty(), "keys left down: {down:?}");
    let tail: Vec<Vec<u8>> = sent[last_note + 1..].iter().map(|(_, b)| b.clone()).collect();
    let mut expected: Vec<Vec<u8>> = key_channels.iter().map(|&c| vec![0xB0 | c, 123, 0]).collect();
    expected.extend(organ.cancel_messages().iter().map(|m| m.as_bytes().to_vec()));
    assert_eq!(tail, expected, "the release ends with all-notes-off per division and the cancel");
    (longest_held_silence, ons)
}

#[test]
fn closing_the_terminal_while_playing_releases_every_key() {
    if let Some(why) = tmux_available() {
        println!("SKIPPED: the terminal-view test needs tmux: {why}");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("service-hup");
    let out = dir.join("sent.mid");
    let command = format!(
        "{} service {}/scores/services/sunday.toml --to file:{}",
        env!("CARGO_BIN_EXE_organ"),
        root.display(),
        out.display()
    );
    let tmux = Tmux { socket: format!("organ-test-hup-{}", std::process::id()) };
    let started = tmux.run(&["new-session", "-d", "-s", "svc", "-x", "100", "-y", "30", &command]);
    assert!(started.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&started.stderr));
    let t = Duration::from_secs(10);
    let s = tmux.wait_for("the view", t, |s| s.contains("READY"));
    assert!(s.contains("1. Entrance hymn: Guide me, O thou great Redeemer  (3 verses, play-over 13-14, 1:31)"), "{s}");
    tmux.keys("Enter");
    tmux.wait_for("the music", t, |s| s.contains("play-over, bar 14"));
    // Closing the terminal: SIGHUP to organ, in the middle of a chord.
    let _ = tmux.run(&["kill-server"]);
    // It ends (it once kept spinning in crossterm's poll on the dead terminal)…
    let start = Instant::now();
    while let Some(pid) = process_with_arg(&out.display().to_string()) {
        assert!(start.elapsed() < t, "organ service (pid {pid}) still runs after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    // …and then the record (a valid file all along: it is written as it plays) holds the
    // release.
    let sent = read_sent(&out);
    let (_, ons) = assert_released(&sent);
    assert!(ons > 0, "it was playing");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A running process whose command line contains `arg` (Linux /proc), if any.
pub(crate) fn process_with_arg(arg: &str) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(arg)
            && pid != std::process::id()
        {
            return Some(pid);
        }
    }
    None
}

/// The "m:ss.s / m:ss.s" times of the Now playing box: (played, total) in tenths of a second.
fn times_on(screen: &str) -> Option<(u64, u64)> {
    let tenths = |t: &str| {
        let (m, s) = t.split_once(':')?;
        let (s, d) = s.split_once('.')?;
        Some(m.parse::<u64>().ok()? * 600 + s.parse::<u64>().ok()? * 10 + d.parse::<u64>().ok()?)
    };
    screen.lines().find_map(|l| {
        let (a, b) = l.split_once(" / ")?;
        let played = tenths(a.split_whitespace().last()?)?;
        let total = tenths(b.split(|c: char| c.is_whitespace() || c == '│').next()?)?;
        Some((played, total))
    })
}

#[test]
fn the_service_view_does_what_a_verger_expects() {
    if let Some(why) = tmux_available() {
        println!("SKIPPED: the terminal-view test needs tmux: {why}");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("service-verger");
    let out = dir.join("sent.mid");
    let order = dir.join("verger.toml");
    std::fs::write(
        &order,
        format!(
            r#"title = "Verger test"
organ = "st-marys"
[[item]]
title = "First hymn"
score = "{root}/scores/hymn-cwm-rhondda.mid"
verses = 3
play_over = "13-14"
tempo = "200%"
note = "A note long enough to need wrapping on a phone-sized terminal: start when the procession has reached the chancel step."
[[item]]
title = "Second hymn"
score = "{root}/scores/hymn-tallis-ordinal.mid"
verses = 2
"#,
            root = root.display()
        ),
    )
    .unwrap();
    let tmux = Tmux::service("verger", &order, &out, &dir.join("exit"));
    let t = Duration::from_secs(10);
    tmux.wait_for("the view", t, |s| s.contains("READY"));

    // ? shows every key, clickers included; any key closes it and does nothing else.
    tmux.keys("?");
    let s = tmux.wait_for("the help", t, |s| s.contains("any key closes this help"));
    for key in ["PageDown, →", "PageUp, ←", "B, .", "x                panic", "v then 1-9"] {
        assert!(s.contains(key), "{key} in the help: {s}");
    }
    tmux.keys("Enter");
    let s = tmux.wait_for("the help to close", t, |s| !s.contains("any key closes") && s.contains("READY"));
    assert!(!s.contains("▶"), "the key that closed the help started nothing: {s}");

    // A clicker: PageDown starts the chosen item; B holds at the end of the verse, . lets go.
    tmux.keys("PageDown");
    tmux.wait_for("the first hymn", t, |s| s.contains("▶ 1. First hymn"));
    tmux.keys("b");
    tmux.wait_for("the hold", t, |s| s.contains("will pause at the end of this verse"));
    tmux.keys(".");
    tmux.wait_for("the hold undone", t, |s| s.contains("will not pause at the end of this verse"));

    // The total time follows the tempo.
    let (_, total) = times_on(&tmux.screen()).expect("times on the screen");
    tmux.keys("+");
    tmux.keys("+");
    let s = tmux.wait_for("the faster tempo", t, |s| s.contains("tempo 220%"));
    let (_, faster) = times_on(&s).unwrap();
    assert!(faster.abs_diff(total * 10 / 11) <= 1, "total {total} → {faster} tenths at 110 %");

    // Another item chosen: Enter asks first; n keeps playing; y stops and starts it.
    tmux.keys("Down");
    tmux.keys("Enter");
    tmux.wait_for("the question", t, |s| s.contains("Music is playing. Stop it and start 2. Second hymn? y / n"));
    tmux.keys("n");
    let s = tmux.wait_for("no", t, |s| !s.contains("Stop it and start"));
    assert!(s.contains("▶ 1. First hymn"), "{s}");
    tmux.keys("Enter");
    tmux.wait_for("the question", t, |s| s.contains("Stop it and start 2. Second hymn?"));
    tmux.keys("y");
    let s = tmux.wait_for("the second hymn", t, |s| s.contains("▶ 2. Second hymn"));
    assert!(s.contains("◐ 1. First hymn") && s.contains("stopped at "), "played in part, marked: {s}");

    // Stop asks for a second key; any other key keeps playing.
    tmux.keys("s");
    tmux.wait_for("the stop question", t, |s| s.contains("Stop now? s again stops"));
    tmux.keys("n");
    tmux.wait_for("no", t, |s| !s.contains("Stop now?") && s.contains("▶ 2. Second hymn"));
    tmux.keys("Escape");
    tmux.wait_for("the stop question", t, |s| s.contains("Stop now?"));
    tmux.keys("Escape");
    tmux.wait_for("the stop", t, |s| s.contains("READY") && s.contains("◐ 2. Second hymn"));

    // Resume the first hymn at verse 2.
    tmux.keys("Up");
    tmux.keys("v");
    tmux.wait_for("the verse question", t, |s| s.contains("Start 1. First hymn at verse: 1-3"));
    tmux.keys("2");
    // No play-over and no verse 1 when resuming: the plan is two verses of three long.
    let s = tmux.wait_for("verse 2", t, |s| s.contains("│verse 2 of 3, bar "));
    let (_, resumed) = times_on(&s).expect("times on the screen");
    assert!(resumed < faster * 3 / 4, "resumed at verse 2: {resumed} tenths of {faster}: {s}");

    // A phone-sized terminal: the compact layout, titles whole where they matter, notes wrapped.
    tmux.run(&["resize-window", "-t", "svc", "-x", "50", "-y", "20"]);
    // Wait for the whole redraw (a capture can catch it half done), then check it.
    let s = tmux.wait_for("the compact layout", t, |s| {
        s.contains(" Order of service ") && s.contains("? keys") && s.contains("chancel step.")
    });
    assert!(s.contains("? keys"), "{s}");
    assert!(s.contains("1. First hymn") && s.contains("chancel step."), "the note wraps, whole: {s}");
    assert!(s.lines().all(|l| l.chars().count() <= 50), "{s}");

    // x: panic, no question (once verse 2 is under way).
    tmux.wait_for("verse 2 playing", t, |s| s.contains("verse 2 of 3, bar 2"));
    tmux.keys("x");
    tmux.wait_for("the panic", t, |s| s.contains("PANIC") && s.contains("READY"));
    tmux.keys("q");
    assert_eq!(tmux.exit_status(&dir.join("exit"), t), "EXIT=0");

    // Three performances, each released; then the panic's note-off for every key and cancel.
    let sent = read_sent(&out);
    let organ = organ::organ::Organ::find("st-marys").unwrap();
    let (divisions, cancel) = (organ.divisions.len(), organ.cancel_messages().len());
    let panic_len = divisions * 128 + divisions + cancel;
    let (performances, panic) = sent.split_at(sent.len() - panic_len);
    let key_channels: Vec<u8> = organ.divisions.iter().map(|d| d.channel.wire()).collect();
    let mut down = std::collections::BTreeSet::new();
    let mut ons = 0;
    for (_, b) in performances.iter().filter(|(_, b)| b[0] < 0xF0 && key_channels.contains(&(b[0] & 0x0F))) {
        match b[0] & 0xF0 {
            0x90 if b[2] > 0 => {
                ons += 1;
                assert!(down.insert((b[0], b[1])), "struck twice: {b:?}");
            }
            0x80 | 0x90 => assert!(down.remove(&(b[0] & 0x0F | 0x90, b[1])), "released but not down: {b:?}"),
            _ => {}
        }
    }
    assert!(down.is_empty(), "keys left down: {down:?}");
    assert!(ons > 10, "three performances played something ({ons} note-ons)");
    let releases = performances.iter().filter(|(_, b)| b.len() == 3 && b[0] & 0xF0 == 0xB0 && b[1] == 123).count();
    assert_eq!(releases, 3 * divisions, "three performances, each stopped with CC 123");
    assert_eq!(panic[divisions * 128..divisions * 129].iter().filter(|(_, b)| b[1] == 123).count(), divisions);
    assert!(panic[..divisions * 128].iter().all(|(_, b)| b[0] & 0xF0 == 0x80), "the panic's note-offs");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `command` in a fresh tmux pane (100×30) on its own server; the pane stays after the
/// command ends (`; sleep 600`), so its last lines can still be read.
fn tmux_with(name: &str, command: &str) -> Tmux {
    let tmux = Tmux { socket: format!("organ-test-{name}-{}", std::process::id()) };
    let started = tmux.run(&["new-session", "-d", "-s", "svc", "-x", "100", "-y", "30", command]);
    assert!(started.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&started.stderr));
    tmux
}

/// A pause/resume storm in `organ play`: every pause releases the 36 keys of three held chords
/// and every resume strikes them again, far past the 131,072 messages at which the first file
/// record overflowed silently. The record holds every message, ends with every key released,
/// and the summary says so.
#[test]
fn a_pause_resume_storm_is_recorded_whole() {
    if let Some(why) = tmux_available() {
        println!("SKIPPED: the terminal-view test needs tmux: {why}");
        return;
    }
    use midly::num::{u4, u7, u15, u28};
    use midly::{Format, Header, MetaMessage, TrackEvent};
    let dir = scratch("storm");
    // Three parts, each a 12-note chord held for 400 quarter notes (200 s).
    let mut smf = Smf::new(Header::new(Format::Parallel, midly::Timing::Metrical(u15::new(480))));
    for (ch, low) in [(0u8, 60u8), (1, 48), (2, 40)] {
        let mut track = Vec::new();
        let ev = |delta: u32, key: u8, on: bool| TrackEvent {
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
        track.extend((0..12).map(|k| ev(0, low + k, true)));
        track.extend((0..12).map(|k| ev(if k == 0 { 480 * 400 } else { 0 }, low + k, false)));
        track.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
        smf.tracks.push(track);
    }
    let score = dir.join("chords.mid");
    smf.save(&score).unwrap();
    let out = dir.join("sent.mid");
    let command = format!(
        "{} play {} --organ st-marys --layout SGP --no-registration --to file:{}; echo EXIT=$? > {}; sleep 600",
        env!("CARGO_BIN_EXE_organ"),
        score.display(),
        out.display(),
        dir.join("exit").display()
    );
    let tmux = tmux_with("storm", &command);
    let t = Duration::from_secs(20);
    tmux.wait_for("the status line", t, |s| s.contains("bar 1:1 of 100"));
    // Spaces as fast as the player takes them (it forwards up to 64 commands every 50 ms),
    // until the record (written as it plays, 4-5 bytes a message) holds well over 131,072
    // messages: how long that takes depends on how busy the machine is.
    let burst = " ".repeat(64);
    let start = Instant::now();
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 700_000 {
        assert!(start.elapsed() < Duration::from_secs(60), "the storm did not get going:\n{}", tmux.screen());
        let o = tmux.run(&["send-keys", "-t", "svc", "-l", &burst]);
        assert!(o.status.success());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys("q");
    let start = Instant::now();
    let exit = loop {
        if let Ok(e) = std::fs::read_to_string(dir.join("exit")) {
            break e;
        }
        assert!(start.elapsed() < t, "organ play did not stop; the screen was:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.trim(), "EXIT=0", "{}", tmux.screen());
    let screen = tmux.screen();
    let sent = read_sent(&out);
    let summary = format!("organ: stopped; every key released: {} messages sent to file:", sent.len());
    assert!(screen.contains(&summary), "{summary:?} not in:\n{screen}");
    assert!(sent.len() > 131_072, "the storm made {} messages; it should pass the old limit", sent.len());
    let (_, ons) = assert_released(&sent);
    eprintln!("pause/resume storm: {} messages recorded, {ons} note-ons, every key released", sent.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Titles and names from an order of service are drawn escaped in the service view: an escape
/// sequence there cannot clear the screen.
#[test]
fn escape_sequences_in_an_order_of_service_are_shown_escaped() {
    if let Some(why) = tmux_available() {
        println!("SKIPPED: the terminal-view test needs tmux: {why}");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("service-escapes");
    let order = dir.join("evil.toml");
    std::fs::write(
        &order,
        format!(
            r#"title = "Evensong\u001b[2J"
organ = "st-marys"
[[item]]
title = "Hymn\u001b[1;1Horgan: done\u009b7m"
score = "{}"
note = "Psst\u001b]0;owned\u0007"
"#,
            root.join("scores/hymn-old100.mid").display()
        ),
    )
    .unwrap();
    let command = format!("{} service {} --to null; sleep 600", env!("CARGO_BIN_EXE_organ"), order.display());
    let tmux = tmux_with("escapes", &command);
    let s = tmux.wait_for("the view", Duration::from_secs(10), |s| s.contains("READY"));
    for shown in
        ["Evensong\\x1B[2J — St Mary's", "1. Hymn\\x1B[1;1Horgan: done\\u{9B}7m", "note: Psst\\x1B]0;owned\\x07"]
    {
        assert!(s.contains(shown), "{shown} not shown in:\n{s}");
    }
    tmux.keys("q");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The last line of `organ service` says every key was released only when it is so: after a
/// stop, it is; after the record failed in the middle of an item (its file-size limit stands in
/// for a full disk, as in hostile.rs), it says the record is incomplete and why (a record is no
/// instrument: nothing sounds from it, so not "keys may still sound"), and that the other output
/// took the release.
#[test]
fn the_closing_line_says_released_only_when_every_output_took_it() {
    if let Some(why) = tmux_available() {
        println!("SKIPPED: the terminal-view test needs tmux: {why}");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("service-closing");
    let order = dir.join("order.toml");
    std::fs::write(
        &order,
        format!(
            "title = \"Closing\"\norgan = \"st-marys\"\n[[item]]\ntitle = \"Fast hymn\"\nscore = \"{}/scores/hymn-cwm-rhondda.mid\"\nverses = 3\ntempo = \"400%\"\n",
            root.display()
        ),
    )
    .unwrap();
    // The pane stays after organ ends (sleep), so that its last lines can be read whole (-J).
    let run = |name: &str, limit: &str| {
        let (out, exit) = (dir.join(format!("{name}.mid")), dir.join(format!("{name}.exit")));
        let command = format!(
            "{limit}{} service {} --to file:{} --to null; echo EXIT=$? > {}; sleep 600",
            env!("CARGO_BIN_EXE_organ"),
            order.display(),
            out.display(),
            exit.display()
        );
        let tmux = tmux_with(&format!("closing-{name}"), &command);
        let t = Duration::from_secs(10);
        tmux.wait_for("the view", t, |s| s.contains("READY"));
        tmux.keys("Enter");
        (tmux, out, exit, t)
    };
    let joined = |tmux: &Tmux| {
        String::from_utf8_lossy(&tmux.run(&["capture-pane", "-p", "-J", "-t", "svc"]).stdout).into_owned()
    };
    let stopped = |_: ()| {
        let (tmux, out, exit, t) = run("stopped", "");
        tmux.wait_for("the music", t, |s| s.contains("verse 1 of 3, bar"));
        tmux.keys("s");
        tmux.keys("s");
        tmux.wait_for("the stop", t, |s| s.contains("stopped: every key released") && s.contains("READY"));
        tmux.keys("q");
        assert_eq!(tmux.exit_status(&exit, t), "EXIT=0");
        let s = joined(&tmux);
        let file = format!("file:{}", out.display());
        assert!(
            s.contains(&format!("organ: service ended (0 of 1 item(s) played); every key released → {file}, null")),
            "{s}"
        );
        assert!(!s.contains("MAY STILL SOUND"), "{s}");
        assert_released(&read_sent(&out));
    };
    let failed = |_: ()| {
        let (tmux, out, exit, t) = run("failed", "prlimit --fsize=1500 ");
        let file = format!("file:{}", out.display());
        tmux.wait_for("the lost output", t, |s| s.contains("OUTPUT LOST") && s.contains("nothing is playing"));
        tmux.keys("q");
        // 2: the record could not be written whole (an error naming it, after the closing line).
        let status = tmux.exit_status(&exit, t);
        let s = joined(&tmux);
        assert_eq!(status, "EXIT=2", "{s}");
        // A record is no instrument: it is incomplete, and nothing sounds from it.
        assert!(
            s.contains(&format!(
                "organ: service ended (0 of 1 item(s) played); the record {file} is incomplete; every other output took the release"
            )),
            "{s}"
        );
        assert!(s.contains(&format!("organ: {file}: it failed while \"Fast hymn\" played (")), "{s}");
        assert!(
            s.contains("so it ends there, without the release: the record is incomplete; nothing sounds from a file, so no key is left down by it"),
            "{s}"
        );
        assert!(!s.contains("every key released") && !s.contains("MAY STILL SOUND"), "{s}");
    };
    std::thread::scope(|sc| {
        let a = sc.spawn(|| stopped(()));
        let b = sc.spawn(|| failed(()));
        for r in [a.join(), b.join()] {
            r.unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
