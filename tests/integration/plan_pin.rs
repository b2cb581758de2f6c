//! The plan, pinned byte for byte: `organ plan` through the real binary for every score in
//! scores/ and tests/data (with the registration and organ each needs), plus a few option
//! combinations and a small organ (tests/data/plan-pin/organ.toml) that reach every stage of the
//! planner. Stdout must equal the golden file exactly, and stderr (the warnings) too.
//!
//! This guards restructurings of the planner that must not change what it plans. When a change
//! of behaviour is intended, regenerate the golden files and review the difference:
//!
//! ```text
//! ORGAN_PIN_REGENERATE=1 cargo test --test integration plan_pin
//! ```
//!
//! The golden files are tests/data/plan-pin/CASE.jsonl.gz (or CASE.txt.gz for `--format text`,
//! which also shows a hymn's sections and wait points) and CASE.stderr. They are gzip-compressed
//! (`gzip -9n`; about 0.6 MB instead of 13 MB) and read with `gzip -dc`; a mismatch prints the
//! case, its command line and the first differing line, expected and actual.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::corpus::LAYOUTS;
use crate::support::*;

/// One pinned command: `organ ARGS` run in the repository directory.
struct Case {
    name: String,
    args: Vec<String>,
}

impl Case {
    fn new(name: impl Into<String>, args: &[&str]) -> Case {
        Case { name: name.into(), args: args.iter().map(|s| (*s).to_string()).collect() }
    }

    fn text_format(&self) -> bool {
        self.args.windows(2).any(|w| w[0] == "--format" && w[1] == "text")
    }

    fn golden(&self) -> PathBuf {
        pin_dir().join(format!("{}.{}.gz", self.name, if self.text_format() { "txt" } else { "jsonl" }))
    }

    fn golden_stderr(&self) -> PathBuf {
        pin_dir().join(format!("{}.stderr", self.name))
    }
}

fn pin_dir() -> PathBuf {
    data_dir().join("plan-pin")
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo_dir()).unwrap_or(p).to_string_lossy().into_owned()
}

/// Every score of scores/ with its registration file (which names the organ), every corpus
/// file on St Mary's with its hand-chosen layout, and the option combinations.
fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut scores: Vec<PathBuf> = std::fs::read_dir(repo_dir().join("scores"))
        .expect("scores/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "mid"))
        .collect();
    scores.sort();
    for s in &scores {
        v.push(Case::new(format!("scores-{}", stem(s)), &["plan", &rel(s), "--format", "jsonl"]));
    }
    for f in corpus_files() {
        let name = stem(&f);
        let layout = LAYOUTS.iter().find(|l| l.0 == name).unwrap_or_else(|| panic!("no layout for {name}")).1;
        let sub = f.parent().and_then(Path::file_name).expect("corpus subfolder").to_string_lossy().into_owned();
        v.push(Case::new(
            format!("{sub}-{name}"),
            &["plan", &rel(&f), "--organ", "st-marys", "--layout", layout, "--format", "jsonl"],
        ));
    }
    // (name, command line: words split at spaces, "quoted" words kept whole; PIN/ stands for
    // tests/data/plan-pin/)
    let extra: &[(&str, &str)] = &[
        // Hymns as their registration files unroll them, with sections and wait points.
        ("text-hymn-cwm-rhondda", "plan scores/hymn-cwm-rhondda.mid --format text"),
        ("text-hymn-tallis-ordinal", "plan scores/hymn-tallis-ordinal.mid --format text"),
        // A range: the registration chased to bar 3:2, --until a bar and a time.
        ("bwv643-from-until", "plan scores/bwv643.mid --from 3:2 --until 7 --format jsonl"),
        ("bwv643-until-seconds", "plan scores/bwv643.mid --from 5 --until 30.25s --format jsonl"),
        // Speed, transposition, --stops (names and a preset), stops left drawn at the end.
        (
            "bwv643-tempo-transpose-stops",
            r#"plan scores/bwv643.mid --tempo 80% --transpose -3 --stops "Sw Cornopean 8,Gt Trumpet 8,pp" --keep-stops --format jsonl"#,
        ),
        // --bpm, no registration, --map over the layout.
        (
            "bwv643-bpm-map",
            "plan scores/bwv643.mid --bpm 96 --no-registration --organ st-marys --layout SSGGP --map 1=none,5=great --format jsonl",
        ),
        // The order of service's items, as the command line gives them.
        ("tallis-service", "plan scores/hymn-tallis-ordinal.mid --verses 2 --tempo 130% --fermata wait --format text"),
        (
            "cwm-rhondda-last-verse",
            "plan scores/hymn-cwm-rhondda.mid --verses 1 --play-over none --transpose 1 --verse-preset 1=full --format jsonl",
        ),
        // An amen from another file, a gap in seconds, fermatas held and waited on.
        (
            "tallis-amen-file",
            "plan scores/hymn-tallis-ordinal.mid --amen tests/data/real/lily-tallis-ordinal.mid --gap 1.5s --fermatas 2:1,4:2 --fermata wait+1beat --format text",
        ),
        // A written-out hymn unrolled: play-over, amen bars (across a tempo change), --bpm.
        (
            "nicaea-amen-bars",
            "plan scores/hymn-nicaea.mid --verses 2 --play-over 1-4 --amen 79-80 --fermatas 16:3 --fermata 2beats --gap 1beat --bpm 100 --verse-preset 2=f --format text",
        ),
        // The small organ: SysEx cancel, every message form, folding, crowded changes.
        (
            "pin-organ-bwv643",
            "plan scores/bwv643.mid --organ PIN/organ.toml --registration PIN/bwv643.toml --format jsonl",
        ),
        (
            "pin-organ-bwv643-keep-stops",
            "plan scores/bwv643.mid --organ PIN/organ.toml --registration PIN/bwv643.toml --from 4 --keep-stops --format jsonl",
        ),
        (
            "pin-organ-tallis-hymn",
            "plan scores/hymn-tallis-ordinal.mid --organ PIN/organ.toml --registration PIN/tallis.toml --format text",
        ),
        (
            "pin-organ-tallis-hymn-jsonl",
            "plan scores/hymn-tallis-ordinal.mid --organ PIN/organ.toml --registration PIN/tallis.toml --format jsonl",
        ),
    ];
    for (name, line) in extra {
        let line = line.replace("PIN/", "tests/data/plan-pin/");
        let args = words(&line);
        v.push(Case::new(*name, &args.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    v
}

/// A command line split at spaces; a "double-quoted" stretch is one word (without the quotes).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run gzip (Debian's essential package gzip) to read {}: {e}", path.display()));
    assert!(out.status.success(), "gzip -dc {}: {}", path.display(), text(&out.stderr));
    out.stdout
}

fn gzip_to(path: &Path, data: &[u8]) {
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run gzip: {e}"));
    let mut stdin = child.stdin.take().expect("gzip stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().expect("gzip writer").expect("write to gzip");
    assert!(out.status.success(), "gzip -9n");
    std::fs::write(path, out.stdout).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// None when equal; else where and how they first differ, for people.
fn first_difference(expected: &[u8], actual: &[u8]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let e: Vec<&[u8]> = expected.split(|&b| b == b'\n').collect();
    let a: Vec<&[u8]> = actual.split(|&b| b == b'\n').collect();
    let show = |l: Option<&&[u8]>| l.map_or_else(|| "(end of output)".to_string(), |l| text(l));
    let i = (0..e.len().max(a.len())).find(|&i| e.get(i) != a.get(i)).unwrap_or(0);
    Some(format!(
        "line {} of {} expected, {} actual, first differs:\n  expected: {}\n  actual:   {}",
        i + 1,
        e.len(),
        a.len(),
        show(e.get(i)),
        show(a.get(i))
    ))
}

#[test]
fn plans_are_byte_identical_to_the_pinned_ones() {
    let regenerate = std::env::var_os("ORGAN_PIN_REGENERATE").is_some_and(|v| v == "1");
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let out = organ_bin(&args);
        let command = format!("organ {}", case.args.join(" "));
        assert!(out.status.success(), "{}: `{command}` failed: {}", case.name, text(&out.stderr));
        if regenerate {
            gzip_to(&case.golden(), &out.stdout);
            std::fs::write(case.golden_stderr(), &out.stderr).expect("write the golden stderr");
            continue;
        }
        assert!(
            case.golden().is_file(),
            "{}: no golden file {} for `{command}`; write it with ORGAN_PIN_REGENERATE=1 (see this test's doc)",
            case.name,
            rel(&case.golden())
        );
        let expected = gunzip(&case.golden());
        let expected_err = std::fs::read(case.golden_stderr()).expect("read the golden stderr");
        for (what, e, a) in [("stdout", &expected, &out.stdout), ("stderr", &expected_err, &out.stderr)] {
            if let Some(d) = first_difference(e, a) {
                failures.push(format!("{} ({what} of `{command}`): {d}", case.name));
            }
        }
    }
    if regenerate {
        eprintln!("plan_pin: wrote {} golden plans to {}", cases.len(), rel(&pin_dir()));
        return;
    }
    // No golden file without a case (a renamed case would leave one that pins nothing).
    let known: Vec<PathBuf> = cases.iter().flat_map(|c| [c.golden(), c.golden_stderr()]).collect();
    for e in std::fs::read_dir(pin_dir()).expect("tests/data/plan-pin") {
        let p = e.expect("dir entry").path();
        let golden = p.to_string_lossy().ends_with(".gz") || p.extension().is_some_and(|x| x == "stderr");
        assert!(!golden || known.contains(&p), "{}: a golden file no case writes; remove it", rel(&p));
    }
    assert!(failures.is_empty(), "{} of {} pinned plans differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn command_lines_split_into_words() {
    assert_eq!(
        words(r#"plan  a.mid --stops "Sw Oboe 8,pp" -t -3"#),
        ["plan", "a.mid", "--stops", "Sw Oboe 8,pp", "-t", "-3"]
    );
}

#[test]
fn a_difference_is_reported_at_its_first_line() {
    assert_eq!(first_difference(b"a\nb\n", b"a\nb\n"), None);
    let d = first_difference(b"a\nb\nc\n", b"a\nB\nc\n").unwrap();
    assert!(
        d.starts_with("line 2 of 4 expected, 4 actual") && d.contains("expected: b\n") && d.ends_with("actual:   B"),
        "{d}"
    );
    let d = first_difference(b"a\n", b"a\nextra\n").unwrap();
    assert!(d.contains("line 2") && d.contains("expected: \n") && d.contains("actual:   extra"), "{d}");
    let d = first_difference(b"a\nb", b"a\n").unwrap();
    assert!(d.contains("expected: b") && d.contains("actual:   "), "{d}");
}
