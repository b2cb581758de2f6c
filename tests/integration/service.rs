//! `organ service` for real: the binary runs in a pseudo-terminal (a tmux pane on a private tmux
//! server), keys are pressed with `send-keys`, the screen is read with `capture-pane`, and what
//! was sent is read back from the file output with midly.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use midly::{MidiMessage, Smf, TrackEventKind};

use crate::support::scratch;

/// A private tmux server, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "svc"]).stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", "svc", keys]);
        assert!(out.status.success(), "send-keys {keys}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Waits until the screen satisfies `ok`, or fails with the last screen.
    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
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

fn tmux_available() -> Option<String> {
    match Command::new("tmux").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("tmux -V failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Some(format!("tmux is not installed ({e}); .ci/setup installs it")),
    }
}

/// (time in µs, bytes) of every MIDI and SysEx message in a file written by `--to file:`.
fn read_sent(path: &Path) -> Vec<(u64, Vec<u8>)> {
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
    let tmux = Tmux { socket: format!("organ-test-{}", std::process::id()) };
    let command = format!(
        "{} service {} --to file:{}; echo EXIT=$? > {}",
        env!("CARGO_BIN_EXE_organ"),
        order.display(),
        out.display(),
        dir.join("exit").display()
    );
    let started = tmux.run(&["new-session", "-d", "-s", "svc", "-x", "100", "-y", "30", &command]);
    assert!(started.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&started.stderr));
    let t = Duration::from_secs(10);

    // The order of service, nothing playing, what Enter will do.
    let s = tmux.wait_for("the view", t, |s| s.contains("READY"));
    assert!(s.contains("Test service — St Mary's Church, Fishponds → file:"), "{s}");
    assert!(s.contains("1. Fast hymn  (2 verses, play-over 13-14)"), "{s}");
    // The item sets the verses; the play-over comes from the score's own [hymn].
    assert!(s.contains("2. Second hymn  (1 verse, play-over 5-8)"), "{s}");
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
    let s = tmux.wait_for("the stop", t, |s| s.contains("READY"));
    assert!(s.contains("stopped: every key released"), "{s}");
    assert!(s.contains("Enter starts 1. Fast hymn"), "stopped, not finished: the selection stays: {s}");

    // q quits at once when nothing plays.
    tmux.keys("q");
    let start = Instant::now();
    let exit = loop {
        if let Ok(e) = std::fs::read_to_string(dir.join("exit")) {
            break e;
        }
        assert!(start.elapsed() < t, "organ service did not quit; the screen was:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.trim(), "EXIT=0");

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
fn assert_released(sent: &[(u64, Vec<u8>)]) -> (u64, usize) {
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
    assert!(s.contains("1. Entrance hymn: Guide me, O thou great Redeemer  (3 verses, play-over 13-14)"), "{s}");
    tmux.keys("Enter");
    tmux.wait_for("the music", t, |s| s.contains("play-over, bar 14"));
    // Closing the terminal: SIGHUP to organ, in the middle of a chord.
    let _ = tmux.run(&["kill-server"]);
    let start = Instant::now();
    let sent = loop {
        if let Ok(b) = std::fs::read(&out)
            && Smf::parse(&b).is_ok()
            && !b.is_empty()
        {
            break read_sent(&out);
        }
        assert!(start.elapsed() < t, "organ did not write what it sent after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, ons) = assert_released(&sent);
    assert!(ons > 0, "it was playing");
    // And it ended (it once kept spinning in crossterm's poll on the dead terminal).
    let start = Instant::now();
    while let Some(pid) = process_with_arg(&out.display().to_string()) {
        assert!(start.elapsed() < t, "organ service (pid {pid}) still runs after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A running process whose command line contains `arg` (Linux /proc), if any.
fn process_with_arg(arg: &str) -> Option<u32> {
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
