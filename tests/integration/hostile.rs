//! Hostile and careless input through the real binary: special files, oversize files, organ
//! files that would strike keys or choose a file to write, a record aimed at an input or
//! through a symbolic link, escape sequences in names, absurd numbers. Each is one line on
//! stderr, exit status 2, nothing overwritten. And the record itself: SIGKILL mid-piece leaves a
//! Standard MIDI File that an independent reader (Python's mido) reads, holding all but about
//! the last second; a disk that fills up stops playback at once and says so.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::play::wait_with_timeout;
use crate::support::{Ev, notes_track, parse_jsonl, ppq, repo_dir, scratch, smf, text};

/// Runs the binary in the repository folder, killing it (and failing) after `limit`: a FIFO
/// must not hang it.
fn run(args: &[&str], limit: Duration) -> Output {
    run_cmd(Command::new(env!("CARGO_BIN_EXE_organ")).args(args), limit)
}

fn run_cmd(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .current_dir(repo_dir())
        .env_remove("RUST_BACKTRACE")
        .env("XDG_CONFIG_HOME", scratch("xdg"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start organ");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("organ ran"),
        Err(_) => {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("organ did not finish within {limit:?}");
        }
    }
}

/// One line on stderr, starting `organ: error:`, containing `needle`; exit status 2.
#[track_caller]
fn one_line_error(o: &Output, needle: &str) {
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(e.starts_with("organ: error: "), "{e}");
    assert!(e.contains(needle), "{needle:?} not in {e}");
    assert!(!e.contains("panicked") && !e.contains("internal error"), "{e}");
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", p.display());
}

fn fresh(name: &str) -> PathBuf {
    let d = scratch(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SCORE: &str = "scores/bwv643.mid";

#[test]
fn special_files_in_every_place_are_one_line_errors() {
    let d = fresh("special");
    // The same three in every place a file is read: a device (through a link, for the places
    // that want a name ending in .mid), a FIFO that no one writes (it would hang a plain open),
    // and a directory.
    let specials = [
        ("zero", "is a character device, not a regular file"),
        ("fifo", "is a FIFO (named pipe), not a regular file"),
        ("dir", "is a directory, not a regular file"),
    ];
    for ext in ["mid", "toml", "organ"] {
        std::os::unix::fs::symlink("/dev/zero", d.join(format!("zero.{ext}"))).unwrap();
        mkfifo(&d.join(format!("fifo.{ext}")));
        std::fs::create_dir(d.join(format!("dir.{ext}"))).unwrap();
    }
    for (what, needle) in specials {
        let f = |ext: &str| d.join(format!("{what}.{ext}")).to_str().unwrap().to_string();
        let cases: Vec<Vec<String>> = vec![
            vec!["plan".into(), f("mid")],
            vec!["info".into(), f("mid")],
            vec!["plan".into(), SCORE.into(), "--organ".into(), f("toml")],
            vec!["plan".into(), SCORE.into(), "--registration".into(), f("toml")],
            vec!["plan".into(), SCORE.into(), "--verses".into(), "2".into(), "--amen".into(), f("mid")],
            vec!["service".into(), f("toml")],
            vec!["grandorgue".into(), "config".into(), "--organ".into(), "st-marys".into(), "--odf".into(), f("organ")],
        ];
        for args in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = run(&args, Duration::from_secs(20));
            one_line_error(&o, needle);
        }
    }
}

#[test]
fn oversize_files_are_refused_before_they_are_read() {
    let d = fresh("oversize");
    let sparse = |name: &str, len: u64| {
        let p = d.join(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap(); // takes no room on disk
        p
    };
    let score = sparse("huge.mid", 2 << 30);
    let organ = sparse("huge.toml", 2 << 20);
    let cases = [
        (vec!["plan", s(&score)], "huge.mid: is 2.0 GiB, larger than any MIDI score (at most 32.0 MiB)"),
        (
            vec!["plan", SCORE, "--organ", s(&organ)],
            "huge.toml: is 2.0 MiB, larger than any organ definition (at most 1.0 MiB)",
        ),
        (vec!["plan", SCORE, "--registration", s(&organ)], "larger than any registration file (at most 1.0 MiB)"),
    ];
    for (args, needle) in cases {
        let started = Instant::now();
        one_line_error(&run(&args, Duration::from_secs(20)), needle);
        assert!(started.elapsed() < Duration::from_secs(10), "refused before reading ({:?})", started.elapsed());
    }
}

/// The shipped organ with one text replaced (which must occur).
fn organ_variant(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_dir().join("organs/st-marys.toml")).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} once in the shipped organ");
    let p = dir.join(name);
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    p
}

/// The 1-based number of the line of `file` that is exactly `line`.
fn line_of(file: &Path, line: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines().position(|l| l == line).unwrap_or_else(|| panic!("{line:?} not in {}", file.display())) + 1
}

#[test]
fn organ_files_that_would_strike_keys_are_refused_everywhere() {
    let d = fresh("strike");
    let first_on = "\non = { note = 36, channel = 16 }";
    let cancel = "# message = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }";
    // (replacement, the line of the offending message and its column, its bytes)
    let cases = [
        (
            first_on,
            "\non = { note = 60, channel = 1 }",
            "on = { note = 60, channel = 1 }",
            6,
            "90 3C 7F is a note-on for key 60 on channel 1",
        ),
        (
            first_on,
            "\non = { raw = \"91 3C 7F\" }\noff = { raw = \"81 3C 00\" }",
            "on = { raw = \"91 3C 7F\" }",
            6,
            "91 3C 7F is a note-on",
        ),
        (
            first_on,
            "\non = { raw = \"BF 14 7F 90 30 01\" }\noff = { raw = \"BF 14 00\" }",
            "on = { raw = \"BF 14 7F 90 30 01\" }",
            6,
            "90 30 01 is a note-on",
        ),
        (
            first_on,
            "\non = { note = 36, channel = 16 }\noff = { note = 50, channel = 3 }",
            "off = { note = 50, channel = 3 }",
            7,
            "82 32 00 is a note-off for key 50 on channel 3",
        ),
        (
            first_on,
            "\non = { note = 36, channel = 16 }\noff = { raw = \"92 32 40\" }",
            "off = { raw = \"92 32 40\" }",
            7,
            "92 32 40 is a note-on",
        ),
        (
            cancel,
            "message = { note = 60, channel = 3 }",
            "message = { note = 60, channel = 3 }",
            11,
            "92 3C 7F is a note-on for key 60 on channel 3, a key of the pedal",
        ),
        (
            cancel,
            "message = { raw = \"F0 7F F7 90 24 01\" }",
            "message = { raw = \"F0 7F F7 90 24 01\" }",
            11,
            "90 24 01 is a note-on",
        ),
    ];
    for (i, (from, to, line, col, needle)) in cases.iter().enumerate() {
        let organ = organ_variant(&d, &format!("strike-{i}.toml"), from, to);
        let o = run(&["check", SCORE, "--organ", s(&organ)], Duration::from_secs(20));
        one_line_error(&o, &format!("{}:{}:{col}: {needle}", organ.display(), line_of(&organ, line)));
        // organ panic with such an organ sends nothing at all.
        let record = d.join(format!("panic-{i}.mid"));
        let o = run(
            &["panic", "--organ", s(&organ), "--to", &format!("file:{}", record.display())],
            Duration::from_secs(20),
        );
        one_line_error(&o, needle);
        assert!(!record.exists(), "nothing was sent");
    }
    // With a good organ, organ panic sends only releases (note-offs, all-notes-off) and the
    // cancel (here every control's off): no note-on at all.
    let record = d.join("panic.mid");
    let o =
        run(&["panic", "--organ", "st-marys", "--to", &format!("file:{}", record.display())], Duration::from_secs(20));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let sent = mido_read(&record);
    assert!(sent.len() > 3 * 128);
    for (_, b) in &sent {
        let note_on = b[0] & 0xF0 == 0x90 && b[2] > 0;
        let release = b[0] & 0xF0 == 0x80 || (b[0] & 0xF0 == 0x90 && b[2] == 0) || (b[0] & 0xF0 == 0xB0 && b[1] == 123);
        assert!(!note_on && release, "organ panic sent {b:02X?}");
    }
}

#[test]
fn a_file_output_named_by_an_organ_or_an_order_is_refused() {
    let d = fresh("file-output");
    let organ =
        organ_variant(&d, "o.toml", "# output = \"port:WIDI Bud Pro\"", "output = \"file:/home/someone/.profile\"");
    let o = run(&["play", SCORE, "--organ", s(&organ)], Duration::from_secs(20));
    let line = line_of(&organ, "output = \"file:/home/someone/.profile\"");
    one_line_error(
        &o,
        &format!("{}:{line}:10: output = \"file:/home/someone/.profile\": a file record is only made", organ.display()),
    );
    let order = d.join("order.toml");
    std::fs::write(
        &order,
        format!(
            "organ = \"st-marys\"\noutput = \"file:{}\"\n[[item]]\nscore = \"{}\"\n",
            d.join("x.mid").display(),
            repo_dir().join(SCORE).display()
        ),
    )
    .unwrap();
    let o = run(&["service", s(&order)], Duration::from_secs(20));
    one_line_error(&o, &format!("{}:2:10: output = \"file:", order.display()));
    assert!(!d.join("x.mid").exists());
}

fn digest(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn a_record_never_overwrites_an_input_nor_writes_through_a_link() {
    let d = fresh("inputs");
    let score = d.join("s.mid");
    std::fs::copy(repo_dir().join(SCORE), &score).unwrap();
    let reg = d.join("s.toml");
    std::fs::copy(repo_dir().join("scores/bwv643.toml"), &reg).unwrap();
    let organ = d.join("organ.toml");
    std::fs::copy(repo_dir().join("organs/st-marys.toml"), &organ).unwrap();
    let amen = d.join("amen.mid");
    std::fs::copy(repo_dir().join(SCORE), &amen).unwrap();
    let inputs = [
        (&score, "a MIDI score"),
        (&reg, "a registration file"),
        (&organ, "an organ definition"),
        (&amen, "a MIDI score"),
    ];
    let before: Vec<Vec<u8>> = inputs.iter().map(|(p, _)| digest(p)).collect();
    let args = |to: &Path| -> Vec<String> {
        ["play", s(&score), "--organ", s(&organ), "--verses", "2", "--amen", s(&amen), "--to"]
            .iter()
            .map(|a| a.to_string())
            .chain([format!("file:{}", to.display())])
            .collect()
    };
    for (p, kind) in inputs {
        let a = args(p);
        let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), Duration::from_secs(20));
        one_line_error(&o, &format!("file:{}: this is {kind} this performance reads", p.display()));
    }
    // A WAV rendering follows the same rules.
    let o = run(
        &["play", s(&score), "--organ", s(&organ), "--quiet", "--to", &format!("wav:{}", reg.display())],
        Duration::from_secs(20),
    );
    one_line_error(&o, "this is a registration file this performance reads");
    // The same file under another name (a hard link) is the same input.
    let alias = d.join("alias.mid");
    std::fs::hard_link(&score, &alias).unwrap();
    let a = args(&alias);
    one_line_error(
        &run(&a.iter().map(String::as_str).collect::<Vec<_>>(), Duration::from_secs(20)),
        "this performance reads",
    );
    // A symbolic link to any file, and a directory, are refused.
    let precious = d.join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    let link = d.join("link.mid");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let o = run(&["play", SCORE, "--to", &format!("file:{}", link.display())], Duration::from_secs(20));
    one_line_error(&o, "is a symbolic link; organ does not write through links");
    let o = run(&["play", SCORE, "--quiet", "--to", &format!("wav:{}", link.display())], Duration::from_secs(20));
    one_line_error(&o, "is a symbolic link; organ does not write through links");
    let o = run(&["play", SCORE, "--to", &format!("file:{}", d.display())], Duration::from_secs(20));
    one_line_error(&o, "is a directory; organ writes only to a regular file");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    let after: Vec<Vec<u8>> = inputs.iter().map(|(p, _)| digest(p)).collect();
    assert!(before == after, "an input was changed");
}

#[test]
fn escape_sequences_in_names_are_shown_escaped() {
    let d = fresh("escapes");
    // A track name that clears the screen and fakes a success line; an organ, a division and a
    // stop named with escape sequences (CSI as ESC [ and as the one-byte C1 CSI).
    let fake = "Soprano\u{1b}[2J\u{1b}[Horgan: played; every key released";
    let score = d.join("evil.mid");
    let mut t1 = notes_track(0, &[(0, 480, 60), (480, 960, 62)]);
    t1.push((0, Ev::Name(fake)));
    std::fs::write(&score, smf(ppq(480), &[t1])).unwrap();
    let organ = organ_variant(
        &d,
        "evil-organ.toml",
        "name = \"St Mary's Church, Fishponds\"",
        "name = \"St Mary's\\u001b]0;owned\\u0007\"",
    );
    let text0 = std::fs::read_to_string(&organ).unwrap();
    std::fs::write(&organ, text0.replace("\"Sw Open Diapason 8\"", "\"Sw \\u009b31mOpen Diapason 8\"")).unwrap();
    let reg = d.join("evil.toml.reg");
    std::fs::write(
        &reg,
        "layout = \"G\"\n[[change]]\nat = \"1\"\non = [\"Sw \\u009b31mOpen Diapason 8\", \"Gt \\u001b[31mTrumpet\"]\n",
    )
    .unwrap();
    let outputs = [
        run(&["info", s(&score), "--organ", s(&organ)], Duration::from_secs(20)),
        run(
            &["plan", s(&score), "--organ", s(&organ), "--layout", "G", "--stops", "Sw \u{9b}31mOpen Diapason 8"],
            Duration::from_secs(20),
        ),
        run(&["check", s(&score), "--organ", s(&organ), "--layout", "G"], Duration::from_secs(20)),
        run(&["play", s(&score), "--organ", s(&organ), "--layout", "G", "--to", "null"], Duration::from_secs(20)),
        // An error that quotes a name from the file.
        run(&["check", s(&score), "--organ", s(&organ), "--registration", s(&reg)], Duration::from_secs(20)),
    ];
    let all: String = outputs.iter().map(|o| format!("{}{}", text(&o.stdout), text(&o.stderr))).collect();
    assert!(!all.contains(['\u{1b}', '\u{9b}', '\u{7}']), "a control character reached the terminal:\n{all}");
    for shown in [
        "\"Soprano\\x1B[2J\\x1B[Horgan: played; every key released\"",
        "St Mary's\\x1B]0;owned\\x07",
        "Sw \\u{9B}31mOpen Diapason 8",
        "has no stop, coupler or tremulant \"Gt \\x1B[31mTrumpet\"",
    ] {
        assert!(all.contains(shown), "{shown} not shown in:\n{all}");
    }
}

/// The places the first sweep missed: the line `play --to wav:` prints when it has rendered,
/// `organ check ORDER.toml` (the order's and items' titles, the organ's name), and a name
/// holding a line break, which must not start a line of its own (a fake `warning:` or `ok:`)
/// in `organ check` or `organ info`.
#[test]
fn names_in_every_report_are_shown_escaped_on_one_line() {
    let d = fresh("escapes-everywhere");
    let evil = "\\u001b[2J\\u001b]0;owned\\u0007\\u009b31m\\u202e";
    let organ = organ_variant(
        &d,
        "evil-organ.toml",
        "name = \"St Mary's Church, Fishponds\"",
        &format!("name = \"St Mary's{evil}\\nwarning: FAKE LINE\""),
    );
    let order = d.join("order.toml");
    std::fs::write(
        &order,
        format!(
            "title = \"Sunday{evil}\\nok: FAKE\"\norgan = \"{}\"\n[[item]]\ntitle = \"Hymn{evil}\\nwarning: FAKE ITEM\"\nscore = \"{}\"\n",
            s(&organ),
            s(&repo_dir().join("scores/hymn-old100.mid")),
        ),
    )
    .unwrap();
    let wav = d.join("out.wav");
    // A coupler named with escapes, drawn with nothing behind it: `play --to wav:` prints the
    // planner's warning, which names it.
    let shipped = std::fs::read_to_string(repo_dir().join("organs/st-marys.toml")).unwrap();
    let coupler = format!("Gt{evil}to Ped");
    let coupler_organ = d.join("coupler-organ.toml");
    std::fs::write(&coupler_organ, shipped.replace("\"Gt to Ped\"", &format!("\"{coupler}\""))).unwrap();
    let reg = d.join("coupler.reg.toml");
    std::fs::write(&reg, format!("[[change]]\nat = \"1\"\non = [\"{coupler}\"]\n")).unwrap();
    let outputs = [
        run(
            &["play", SCORE, "--organ", s(&organ), "--until", "1", "--to", &format!("wav:{}", s(&wav))],
            Duration::from_secs(60),
        ),
        run(
            &[
                "play",
                SCORE,
                "--organ",
                s(&coupler_organ),
                "--registration",
                s(&reg),
                "--until",
                "1",
                "--to",
                &format!("wav:{}", s(&wav)),
            ],
            Duration::from_secs(60),
        ),
        run(&["check", s(&order)], Duration::from_secs(60)),
        run(&["check", SCORE, "--organ", s(&organ)], Duration::from_secs(20)),
        run(&["info", SCORE, "--organ", s(&organ)], Duration::from_secs(20)),
    ];
    for o in &outputs {
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let all: String = outputs.iter().map(|o| format!("{}{}", text(&o.stdout), text(&o.stderr))).collect();
    assert!(
        !all.contains(['\u{1b}', '\u{9b}', '\u{7}', '\u{202e}']),
        "a control character reached the terminal:\n{all}"
    );
    let fake: Vec<&str> = all.lines().filter(|l| l.contains("FAKE") && !l.contains("\\n")).collect();
    assert!(fake.is_empty(), "a line break in a name started a line of its own: {fake:?}\n{all}");
    assert!(text(&outputs[0].stderr).contains("organ: rendered bwv643.mid on St Mary's\\x1B[2J"), "{all}");
    assert!(
        text(&outputs[1].stderr).contains("organ: warning: ") && text(&outputs[1].stderr).contains("Gt\\x1B[2J"),
        "{all}"
    );
    assert!(text(&outputs[2].stdout).contains("1. Hymn\\x1B[2J"), "{all}");
}

/// `organ plan --format jsonl` is often read on the terminal too: a name's C1 controls (CSI as
/// one character), DEL and direction overrides are written as JSON `\\u` escapes, so the
/// output holds none of them raw while a JSON reader still gets the name exactly.
#[test]
fn json_lines_escape_what_a_terminal_would_act_on() {
    let d = fresh("jsonl-escapes");
    let name = "Sw \u{9b}31m\u{7f}\u{202e}Open Diapason 8\u{2066}";
    let shipped = std::fs::read_to_string(repo_dir().join("organs/st-marys.toml")).unwrap();
    let organ = d.join("evil-organ.toml");
    std::fs::write(
        &organ,
        shipped.replace("\"Sw Open Diapason 8\"", "\"Sw \\u009b31m\\u007f\\u202eOpen Diapason 8\\u2066\""),
    )
    .unwrap();
    let o = run(
        &["plan", SCORE, "--organ", s(&organ), "--no-registration", "--until", "1", "--format", "jsonl"],
        Duration::from_secs(20),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(!out.contains(['\u{9b}', '\u{7f}', '\u{202e}', '\u{2066}', '\u{1b}']), "raw in the JSON lines:\n{out}");
    assert!(out.contains("\"Sw \\u009b31m\\u007f\\u202eOpen Diapason 8\\u2066\""), "{out}");
    let events = parse_jsonl(&out).unwrap();
    assert!(events.iter().any(|e| e.name.as_deref() == Some(name)), "the name is read back exactly");
}

#[test]
fn absurd_numbers_are_one_line_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--transpose", "-2147483648"], "--transpose -2147483648: use -24 to 24 semitones"),
        (&["--transpose", "2147483647"], "use -24 to 24 semitones"),
        (&["--bpm", "1e309"], "--bpm inf: use 10 to 400"),
        (&["--bpm", "NaN"], "use 10 to 400"),
        (&["--tempo", "1e400%"], "use a percentage between 10% and 400%"),
        (&["--tempo", "0.0000001%"], "use a percentage between 10% and 400%"),
        (&["--verses", "65535"], "a hymn has 1 to 99 verses"),
        (&["--verses", "2", "--gap", "99999999999999999999beats"], "--gap"),
        (&["--verses", "2", "--gap", "1e300s"], "--gap"),
        (&["--from", "99999999999999999999"], "--from"),
        (&["--from", "18446744073709551615.5s"], "--from"),
        (&["--verses", "2", "--fermatas", "4294967296:1", "--fermata", "1beat"], "fermata"),
        (&["--verses", "2", "--play-over", "0-4294967296"], "--play-over"),
        (&["--verses", "2", "--verse-preset", "4294967296=p"], "--verse-preset"),
    ];
    for (flags, needle) in cases {
        let args: Vec<&str> = ["plan", SCORE].iter().copied().chain(flags.iter().copied()).collect();
        one_line_error(&run(&args, Duration::from_secs(20)), needle);
    }
    // In files: an order of service and an organ definition.
    let d = fresh("numbers");
    let order = d.join("order.toml");
    for (item, needle) in [
        ("transpose = -9223372036854775808", "transpose = -9223372036854775808: use -24 to 24 semitones"),
        ("bpm = nan", "bpm = NaN: use 10 to 400"),
        ("verses = 9223372036854775807", "a hymn has 1 to 99 verses"),
    ] {
        std::fs::write(
            &order,
            format!("organ = \"st-marys\"\n[[item]]\nscore = \"{}\"\n{item}\n", repo_dir().join(SCORE).display()),
        )
        .unwrap();
        one_line_error(&run(&["service", s(&order)], Duration::from_secs(20)), needle);
    }
    let organ = organ_variant(&d, "pace.toml", "stop_pace_ms = 4 ", "stop_pace_ms = 9223372036854775807 ");
    one_line_error(
        &run(&["check", SCORE, "--organ", s(&organ)], Duration::from_secs(20)),
        "stop_pace_ms = 9223372036854775807 is out of range",
    );
}

/// (time in µs, bytes) of every message of a MIDI file, read by Python's mido (an independent
/// reader). Fails if the file is not a Standard MIDI File mido accepts.
fn mido_read(path: &Path) -> Vec<(u64, Vec<u8>)> {
    const SCRIPT: &str = r#"
import json, sys, mido
f = mido.MidiFile(sys.argv[1])
assert len(f.tracks) == 1, "one track"
tempo, tick, out = 500000, 0, []
for m in f.tracks[0]:
    tick += m.time
    if m.type == "set_tempo":
        tempo = m.tempo
    if not m.is_meta:
        out.append([tick * tempo // f.ticks_per_beat, m.bytes()])
print(json.dumps(out))
"#;
    let o = Command::new("/usr/bin/python3").args(["-c", SCRIPT]).arg(path).output().expect(
        "/usr/bin/python3 runs (the Debian package python3-mido is the independent reader; .ci/setup installs it)",
    );
    assert!(o.status.success(), "mido cannot read {}: {}", path.display(), text(&o.stderr));
    let v: Vec<(u64, Vec<u8>)> = serde_json::from_slice(&o.stdout).unwrap();
    v
}

/// Starts `organ play` and waits for its "playing" line; returns the child and when it came.
fn start_playing(
    args: &[&str],
    setup: impl FnOnce(&mut Command),
) -> (std::process::Child, Instant, std::thread::JoinHandle<Vec<String>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_organ"));
    cmd.arg("play")
        .args(args)
        .current_dir(repo_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    setup(&mut cmd);
    let mut child = cmd.spawn().expect("start organ play");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("organ: playing") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("organ play says it is playing");
    (child, Instant::now(), reader)
}

fn planned(args: &[&str]) -> Vec<crate::support::PlanEvent> {
    let o = run(&[&["plan", "--format", "jsonl"], args].concat(), Duration::from_secs(30));
    assert!(o.status.success(), "{}", text(&o.stderr));
    parse_jsonl(&text(&o.stdout)).unwrap()
}

#[test]
fn sigkill_leaves_a_readable_record_of_all_but_the_last_second() {
    let d = fresh("sigkill");
    let record = d.join("played.mid");
    let file = format!("file:{}", record.display());
    let args = [SCORE, "--tempo", "150%"];
    let plan = planned(&args);
    let (mut child, playing, reader) = start_playing(&[&args[..], &["--to", &file]].concat(), |_| {});
    std::thread::sleep(Duration::from_millis(4_000));
    // SAFETY: our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let killed_at = playing.elapsed();
    wait_with_timeout(&mut child, Duration::from_secs(10));
    reader.join().unwrap();
    let sent = mido_read(&record);
    // What the record holds is exactly the beginning of the plan, with its times…
    assert!(sent.len() <= plan.len());
    for ((t, b), p) in sent.iter().zip(&plan) {
        assert_eq!(b, &p.bytes, "the record is the plan's beginning");
        assert!(*t + 100 >= p.t_us && *t < p.t_us + 1_000_000, "{t} µs for {} µs", p.t_us);
    }
    // …and everything that fell due up to a second before the kill.
    let due = plan.iter().filter(|p| p.t_us + 1_000_000 <= killed_at.as_micros() as u64).count();
    let by_kill = plan.iter().filter(|p| p.t_us <= killed_at.as_micros() as u64).count();
    eprintln!(
        "SIGKILL {:.2} s after the playing line: the record holds {} messages; {due} were due a second before, {by_kill} by the kill",
        killed_at.as_secs_f64(),
        sent.len()
    );
    assert!(due > 50, "the test should kill well into the piece ({due} due)");
    assert!(sent.len() >= due, "the record holds {} messages; {due} were due a second before the kill", sent.len());
    assert!(sent.len() < plan.len(), "killed mid-piece");
}

#[test]
fn a_full_disk_stops_playback_at_once_and_says_so() {
    let d = fresh("full");
    let record = d.join("played.mid");
    let file = format!("file:{}", record.display());
    let args = [SCORE, "--tempo", "400%"];
    let plan = planned(&args);
    const LIMIT: u64 = 2_000;
    // The file-size limit of the process stands in for a full disk: a write past it fails
    // (EFBIG) exactly as a write to a full disk does (ENOSPC), through the same code.
    let (mut child, playing, reader) = start_playing(&[&args[..], &["--to", &file, "--to", "null"]].concat(), |cmd| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit { rlim_cur: LIMIT, rlim_max: LIMIT };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let took = playing.elapsed();
    let lines = reader.join().unwrap().join("\n");
    assert_eq!(status.code(), Some(2), "{lines}");
    // The record is no instrument: it is said to be incomplete, not sounding; the other
    // output took the release.
    assert!(
        lines.contains(&format!(
            "organ: stopped by an output failure; the record {file} is incomplete; every other output took the release: "
        )),
        "{lines}"
    );
    assert!(
        lines.contains(&format!(
            "organ: {file}: it failed while \"bwv643.mid\" played (send failed: the record file grew too large), "
        )),
        "{lines}"
    );
    assert!(
        lines.contains(
            "so it ends there, without the release: the record is incomplete; nothing sounds from a file, so no key is left down by it"
        ),
        "{lines}"
    );
    assert!(!lines.contains("MAY STILL SOUND") && !lines.contains("every key released"), "{lines}");
    let last = lines.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "organ: error: {file}: cannot write: File too large; the record holds what was sent until then"
        )),
        "{lines}"
    );
    let whole = Duration::from_micros(plan.last().unwrap().t_us);
    assert!(took < whole, "stopped when the disk filled ({took:?}), not at the end ({whole:?})");
    // The record is still a Standard MIDI File, holding the beginning of the plan.
    assert!(std::fs::metadata(&record).unwrap().len() <= LIMIT);
    let sent = mido_read(&record);
    assert!(sent.len() > 100, "{} messages recorded", sent.len());
    for ((_, b), p) in sent.iter().zip(&plan) {
        assert_eq!(b, &p.bytes);
    }
}

#[test]
fn stopping_with_a_slow_stop_pace_takes_about_two_seconds_at_most() {
    let d = fresh("slow-pace");
    // One second between stop messages, no General Cancel: the cancel is 28 offs, 27 s at that
    // pace. Stopping caps it.
    let organ = organ_variant(&d, "slow.toml", "stop_pace_ms = 4 ", "stop_pace_ms = 1000 ");
    let record = d.join("played.mid");
    let file = format!("file:{}", record.display());
    let (mut child, _, reader) =
        start_playing(&[SCORE, "--organ", s(&organ), "--tempo", "300%", "--to", &file], |_| {});
    std::thread::sleep(Duration::from_millis(1_500));
    // SAFETY: our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let asked = Instant::now();
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let took = asked.elapsed();
    reader.join().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(took < Duration::from_millis(3_500), "stopping took {took:?}");
    let sent = mido_read(&record);
    let organ = organ::organ::Organ::load(&organ).unwrap();
    let cancel: Vec<Vec<u8>> = organ.cancel_messages().iter().map(|m| m.as_bytes().to_vec()).collect();
    let tail = &sent[sent.len() - cancel.len()..];
    assert_eq!(tail.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(), cancel, "the whole cancel was sent");
    let span = tail.last().unwrap().0 - tail[0].0;
    // At most two seconds, plus a wake-up's lateness on a busy machine.
    assert!(span <= 2_020_000, "the cancel took {span} µs");
}
