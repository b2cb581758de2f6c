//! `organ plan --format svg|html`: the picture of a shipped hymn and of BWV 643, parsed as XML
//! and checked for its structure (one lane per division, one row per stop drawn, the markers of
//! the hymn's sections and fermatas, a note for every note-on of the plan), and names from files
//! that try to inject markup.

use roxmltree::{Document, Node};

use crate::support::{organ_bin, parse_jsonl, scratch, text};

fn plan(args: &[&str]) -> String {
    let out = organ_bin(args);
    assert!(out.status.success(), "organ {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn with_class<'a>(doc: &'a Document, class: &str) -> Vec<Node<'a, 'a>> {
    doc.descendants().filter(|n| n.attribute("class").is_some_and(|c| c.split(' ').any(|x| x == class))).collect()
}

fn classes(doc: &Document, a: &str, b: &str) -> usize {
    with_class(doc, a).iter().filter(|n| n.attribute("class").is_some_and(|c| c.split(' ').any(|x| x == b))).count()
}

#[test]
fn the_picture_of_a_hymn_has_lanes_stop_rows_and_markers() {
    let args = ["plan", "scores/hymn-cwm-rhondda.mid", "--fermatas", "4:3,8:3"];
    let svg = plan(&[&args[..], &["--format", "svg"]].concat());
    let doc = Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let lanes: Vec<&str> = with_class(&doc, "lane").iter().map(|n| n.attribute("data-division").unwrap()).collect();
    assert_eq!(lanes, ["swell", "great", "pedal"]);
    // One row per control that is drawn at some point, named.
    let jsonl = parse_jsonl(&plan(&[&args[..], &["--format", "jsonl"]].concat())).unwrap();
    let mut drawn: Vec<String> = jsonl
        .iter()
        .filter(|e| e.kind.ends_with("_on") && e.kind != "note_on")
        .filter_map(|e| e.name.clone())
        .collect();
    drawn.sort();
    drawn.dedup();
    let mut rows: Vec<String> =
        with_class(&doc, "stop-row").iter().map(|n| n.attribute("data-name").unwrap().to_string()).collect();
    rows.sort();
    assert_eq!(rows, drawn);
    assert!(rows.iter().any(|r| r == "Sw to Gt") && rows.iter().any(|r| r == "Gt Twelfth 2 2/3"), "{rows:?}");
    // Verse 3's full registration: the Twelfth is drawn only in the last part of the piece.
    let twelfth =
        with_class(&doc, "stop-row").into_iter().find(|n| n.attribute("data-name") == Some("Gt Twelfth 2 2/3"));
    assert_eq!(twelfth.unwrap().children().filter(|c| c.attribute("class") == Some("drawn")).count(), 1);
    // Markers: play-over, three verses; fermatas 4:3 and 8:3 in each verse (the play-over is
    // bars 11-14).
    let sections: Vec<String> = with_class(&doc, "section")
        .iter()
        .map(|n| n.descendants().find(|c| c.has_tag_name("title")).unwrap().text().unwrap().to_string())
        .collect();
    assert_eq!(sections, ["play-over", "verse 1 of 3", "verse 2 of 3", "verse 3 of 3"]);
    assert_eq!(classes(&doc, "marker", "fermata"), 6);
    // Every note of the plan is drawn; bars are numbered.
    let note_ons = jsonl.iter().filter(|e| e.kind == "note_on").count();
    assert_eq!(with_class(&doc, "note").len(), note_ons);
    let bar_numbers: Vec<&str> = with_class(&doc, "bar-number").iter().filter_map(|n| n.text()).collect();
    assert!(bar_numbers.contains(&"14") && bar_numbers.iter().filter(|b| **b == "1").count() == 3, "{bar_numbers:?}");
}

#[test]
fn check_warnings_are_markers_at_their_place() {
    // The play-over on pp alone leaves the Great melody silent: one warning, at bar 5's first
    // note, on the Great.
    let svg = plan(&["plan", "scores/hymn-tallis-ordinal.mid", "--verse-preset", "0=pp", "--format", "svg"]);
    let doc = Document::parse(&svg).expect("well-formed SVG");
    let warnings: Vec<String> = with_class(&doc, "warning")
        .iter()
        .filter(|n| n.attribute("class").is_some_and(|c| c.contains("marker")))
        .filter_map(|n| n.descendants().find(|c| c.has_tag_name("title")).and_then(|t| t.text()).map(String::from))
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("play-over, bar 5:1: great: 14 notes (to bar 8:2) sound no stop")),
        "{warnings:?}"
    );
}

#[test]
fn the_picture_of_bwv643() {
    let svg = plan(&["plan", "scores/bwv643.mid", "--format", "svg"]);
    let doc = Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(with_class(&doc, "lane").len(), 3);
    assert_eq!(with_class(&doc, "stop-row").len(), 11);
    assert_eq!(classes(&doc, "marker", "section"), 0, "a piece played once has no sections");
    // The pedal part is moved up an octave: the warning is listed under the picture.
    let warnings = with_class(&doc, "warnings");
    assert!(warnings[0].descendants().any(|n| n.text().is_some_and(|t| t.contains("part 5 lies below"))));
    // The swell plays bars 1-4 only, then the great.
    let notes_in = |d: &str| {
        with_class(&doc, "lane")
            .iter()
            .find(|n| n.attribute("data-division") == Some(d))
            .unwrap()
            .children()
            .filter(|c| c.attribute("class") == Some("note"))
            .count()
    };
    assert!(notes_in("swell") > 50 && notes_in("great") > 100 && notes_in("pedal") > 40);
}

#[test]
fn names_from_files_cannot_inject_markup() {
    let dir = scratch("picture-injection");
    let organ = r#"
name = "St Evil's <script>alert(0)</script>"
[division."swell<img src=x onerror=alert(2)>"]
code = "S"
channel = 1
[division.great]
code = "G"
channel = 2
[division.pedal]
code = "P"
channel = 3
compass = [36, 67]
[[stop]]
name = "Sw </text><script>alert(1)</script> & 8"
division = "swell<img src=x onerror=alert(2)>"
on = { note = 36, channel = 16 }
[[stop]]
name = "Gt ]]><!-- 8"
division = "great"
on = { note = 37, channel = 16 }
"#;
    let organ_path = dir.join("evil.toml");
    std::fs::write(&organ_path, organ).unwrap();
    let score = dir.join("a&b<svg onload=alert(3)>.mid");
    std::fs::copy(crate::support::repo_dir().join("scores/bwv643.mid"), &score).unwrap();
    let args = |format: &str| {
        vec![
            "plan".to_string(),
            score.display().to_string(),
            "--organ".into(),
            organ_path.display().to_string(),
            "--no-registration".into(),
            "--stops".into(),
            "Sw </text><script>alert(1)</script> & 8,Gt ]]><!-- 8".into(),
            "--format".into(),
            format.into(),
        ]
    };
    let run = |format: &str| {
        let a = args(format);
        plan(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let svg = run("svg");
    let doc = Document::parse(&svg).expect("still well-formed");
    assert!(doc.descendants().all(|n| !["script", "img"].contains(&n.tag_name().name())));
    assert!(doc.descendants().filter(|n| n.tag_name().name() == "svg").count() == 1);
    let rows: Vec<&str> = with_class(&doc, "stop-row").iter().filter_map(|n| n.attribute("data-name")).collect();
    assert!(rows.contains(&"Sw </text><script>alert(1)</script> & 8"), "the name is shown as written: {rows:?}");
    assert!(svg.contains("a&amp;b&lt;svg onload=alert(3)&gt;.mid"));
    let html = run("html");
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script") && !lower.contains("<img") && !lower.contains("<svg onload"), "{html}");
    assert!(lower.starts_with("<!doctype html>") && lower.contains("content-security-policy"));
}
