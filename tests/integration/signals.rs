//! Losing the terminal or its pipes, through the real binary: the terminal closed under tmux
//! during `organ play` and `organ service` (SIGHUP; or only EIO, when the shell keeps the SIGHUP
//! to itself), Ctrl-Z, `fg` and Ctrl-C as keys in raw mode under a job-control shell, and closed
//! or full standard output and error. Each is a stop, or nothing at all, and never an abort: every
//! key released in the record, the documented exit status. (Every signal on the wire, with a JACK
//! client as the organ: tests/signals.rs; SIGKILL and the record: [`crate::hostile`].)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::service::{Tmux, assert_released, process_with_arg, read_sent, tmux_available};
use crate::support::{organ_command, parse_jsonl, repo_dir, scratch, text};

const ORGAN: &str = env!("CARGO_BIN_EXE_organ");

fn skip_without_tmux(test: &str) -> bool {
    match tmux_available() {
        Some(why) => {
            println!("SKIPPED: {test}: needs tmux: {why}");
            true
        }
        None => false,
    }
}

/// Waits for a file `organ` left with `echo EXIT=$? > FILE`.
fn exit_status(tmux: &Tmux, file: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(file) {
            return s.trim().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never came; the screen was:\n{}",
            file.display(),
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Closing the terminal: a stop with every key released, never an abort (it once aborted with
/// status 134 and an empty record). When the shell keeps SIGHUP to itself (here `trap : HUP`)
/// organ only sees the terminal fail (EIO) and stops all the same, with status 129. And Ctrl-C
/// in the service view: status 130 (it was 0).
#[test]
fn the_terminal_closed_or_ctrl_c_stops_play_and_service() {
    if skip_without_tmux("the_terminal_closed_or_ctrl_c_stops_play_and_service") {
        return;
    }
    let dir = scratch("terminal-closed");
    let score = repo_dir().join("scores/bwv643.mid");
    let order = repo_dir().join("scores/services/sunday.toml");
    let play_eio = |d: &Path| {
        let (out, exit) = (d.join("play-eio.mid"), d.join("play-eio.exit"));
        let tmux = Tmux::start(
            "play-eio",
            &format!(
                "trap : HUP; {ORGAN} play {} --tempo 200% --to file:{}; echo EXIT=$? > {}",
                score.display(),
                out.display(),
                exit.display()
            ),
        );
        tmux.wait_for("the status line", Duration::from_secs(10), |s| s.contains("bar 2:"));
        let _ = tmux.run(&["kill-server"]);
        assert_eq!(exit_status(&tmux, &exit), "EXIT=129");
        out
    };
    let service_eio = |d: &Path| {
        let (out, exit) = (d.join("service-eio.mid"), d.join("service-eio.exit"));
        let tmux = Tmux::start(
            "service-eio",
            &format!(
                "trap : HUP; {ORGAN} service {} --to file:{}; echo EXIT=$? > {}",
                order.display(),
                out.display(),
                exit.display()
            ),
        );
        tmux.wait_for("the view", Duration::from_secs(10), |s| s.contains("READY"));
        tmux.keys("Enter");
        tmux.wait_for("the music", Duration::from_secs(10), |s| s.contains("play-over, bar 14"));
        let _ = tmux.run(&["kill-server"]);
        assert_eq!(exit_status(&tmux, &exit), "EXIT=129");
        out
    };
    // organ alone in the pane: the shell runs it in its place, so it is the one that gets
    // SIGHUP (its exit status, 129, is checked on the wire in tests/signals.rs).
    let play_hup = |d: &Path| {
        let out = d.join("play-hup.mid");
        let tmux = Tmux::start(
            "play-hup",
            &format!("{ORGAN} play {} --tempo 200% --to file:{}", score.display(), out.display()),
        );
        tmux.wait_for("the status line", Duration::from_secs(10), |s| s.contains("bar 2:"));
        let _ = tmux.run(&["kill-server"]);
        let start = Instant::now();
        while let Some(pid) = process_with_arg(&out.display().to_string()) {
            assert!(start.elapsed() < Duration::from_secs(10), "organ play (pid {pid}) still runs after SIGHUP");
            std::thread::sleep(Duration::from_millis(50));
        }
        out
    };
    let service_ctrl_c = |d: &Path| {
        let (out, exit) = (d.join("service-ctrl-c.mid"), d.join("service-ctrl-c.exit"));
        let tmux = Tmux::service("service-ctrl-c", &order, &out, &exit);
        tmux.wait_for("the view", Duration::from_secs(10), |s| s.contains("READY"));
        tmux.keys("Enter");
        tmux.wait_for("the music", Duration::from_secs(10), |s| s.contains("play-over, bar 14"));
        tmux.keys("C-c");
        assert_eq!(tmux.exit_status(&exit, Duration::from_secs(10)), "EXIT=130");
        out
    };
    let records = std::thread::scope(|s| {
        let runs = [
            s.spawn(|| play_eio(&dir)),
            s.spawn(|| service_eio(&dir)),
            s.spawn(|| play_hup(&dir)),
            s.spawn(|| service_ctrl_c(&dir)),
        ];
        runs.map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    for out in records {
        let sent = read_sent(&out);
        let (_, ons) = assert_released(&sent);
        assert!(ons > 10, "{}: it was playing ({ons} notes)", out.display());
    }
}

/// Ctrl-Z, `fg` and Ctrl-C as keys (raw mode: the terminal sends no signal) under a shell with
/// job control: suspended with the keys released and the record holding it, going on after
/// `fg`, interrupted with status 130; and q, status 0.
#[test]
fn ctrl_z_fg_and_ctrl_c_under_a_job_control_shell() {
    if skip_without_tmux("ctrl_z_fg_and_ctrl_c_under_a_job_control_shell") {
        return;
    }
    let dir = scratch("job-control");
    let out = dir.join("played.mid");
    let tmux = Tmux::start("jobs", "env -i PATH=/usr/bin:/bin TERM=screen bash --norc --noprofile -i");
    tmux.wait_for("the prompt", Duration::from_secs(10), |s| s.contains('$') || s.contains('#'));
    tmux.keys(&format!(
        "{ORGAN} play {}/scores/bwv643.mid --tempo 200% --to file:{}",
        repo_dir().display(),
        out.display()
    ));
    tmux.keys("Enter");
    let t = Duration::from_secs(10);
    tmux.wait_for("the status line", t, |s| s.contains("bar 2:"));
    tmux.keys("C-z");
    tmux.wait_for("the job stopped", t, |s| s.contains("Stopped"));
    // Stopped, and the record already ends with the release: every key up, CC 123, the cancel.
    let (_, ons) = assert_released(&read_sent(&out));
    assert!(ons > 10, "it was playing");
    tmux.keys("fg");
    tmux.keys("Enter");
    let before = read_sent(&out).len();
    let start = Instant::now();
    while read_sent(&out).len() < before + 20 {
        assert!(start.elapsed() < t, "it did not go on after fg; the screen was:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux.keys("C-c");
    tmux.wait_for("the end", t, |s| s.contains("organ: interrupted; every key released"));
    tmux.keys("echo EXIT=$?");
    tmux.keys("Enter");
    tmux.wait_for("the exit status", t, |s| s.contains("EXIT=130"));
    let sent = read_sent(&out);
    let (_, after) = assert_released(&sent);
    assert!(after > ons, "keys struck again after fg ({ons} notes, then {after})");

    // q stops too: every key released, status 0.
    let out = dir.join("q.mid");
    tmux.keys("clear");
    tmux.keys("Enter");
    tmux.keys(&format!(
        "{ORGAN} play {}/scores/bwv643.mid --tempo 200% --to file:{}",
        repo_dir().display(),
        out.display()
    ));
    tmux.keys("Enter");
    tmux.wait_for("the status line", t, |s| s.contains("bar 2:"));
    tmux.keys("q");
    tmux.wait_for("the end", t, |s| s.contains("organ: stopped; every key released"));
    tmux.keys("echo EXIT=$?");
    tmux.keys("Enter");
    tmux.wait_for("the exit status", t, |s| s.contains("EXIT=0"));
    let (_, ons) = assert_released(&read_sent(&out));
    assert!(ons > 10, "it was playing");
}

/// `bash -c SCRIPT`: (status, stdout, stderr).
fn bash(script: &str) -> (Option<i32>, String, String) {
    let o = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(repo_dir())
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// A closed pipe is the reader's choice: `organ plan … | head` ends quietly with status 0. A full
/// disk loses the output: one line and status 2. A performance never stops for either (its
/// messages are not its product; the record is), and never aborts.
#[test]
fn closed_and_full_pipes_never_abort() {
    let dir = scratch("pipes");
    let (status, out, err) =
        bash(&format!("{ORGAN} plan scores/bwv643.mid 2>&1 | head -2; echo status=${{PIPESTATUS[0]}}"));
    assert_eq!(status, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("# bwv643.mid on St Mary's Church"), "{out}");
    assert_eq!(lines[2], "status=0", "{out}");
    let (_, out, _) = bash(&format!(
        "{ORGAN} plan scores/bwv643.mid --format jsonl 2>/dev/full | head -c 10; echo; echo status=${{PIPESTATUS[0]}}"
    ));
    assert!(out.ends_with("status=0\n"), "{out}");
    let (status, out, err) = bash(&format!("{ORGAN} plan scores/bwv643.mid >/dev/full"));
    assert_eq!(status, Some(2), "{out}{err}");
    assert_eq!(err, "organ: error: cannot write the output: No space left on device (os error 28)\n");

    // Playing with both pipes closed after the first line, or both on a full disk: it plays to
    // the end, and the record holds the whole plan.
    let args = "scores/bwv643.mid --until 3 --tempo 400%";
    let planned = organ_command(&["plan", "scores/bwv643.mid", "--until", "3", "--tempo", "400%", "--format", "jsonl"])
        .output()
        .unwrap();
    let planned = parse_jsonl(&text(&planned.stdout)).unwrap();
    for (name, redirect) in [("closed", "2>&1 | head -1"), ("full", ">/dev/full 2>/dev/full")] {
        let record = dir.join(format!("{name}.mid"));
        let (status, out, err) = bash(&format!(
            "{ORGAN} play {args} --stats --to file:{} {redirect}; echo status=${{PIPESTATUS[0]}}",
            record.display()
        ));
        assert_eq!(status, Some(0), "{out}{err}");
        assert!(out.ends_with("status=0\n"), "{name}: {out}{err}");
        assert!(!err.contains("panicked"), "{err}");
        let sent = read_sent(&record);
        assert_eq!(sent.len(), planned.len(), "{name}: the whole plan was played");
    }
    // organ panic, whose only words are on stderr.
    let record = dir.join("panic.mid");
    let (status, _, _) = bash(&format!("{ORGAN} panic --organ st-marys --to file:{} 2>/dev/full", record.display()));
    assert_eq!(status, Some(0));
    assert!(read_sent(&record).len() > 3 * 128);
}
