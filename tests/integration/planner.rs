//! Planner behaviours on small fixtures, with every expected time worked out by hand.
//!
//! Fixtures are PPQ 480 at the default 120 bpm in 4/4: a quarter is 500 000 µs, a bar (1920
//! ticks) is 2 s. Velocity 80 is 0x50. Channels on the wire: Swell 0, Great 1, Pedal 2, stops 15.

use organ::organ::Organ;
use organ::plan::{self, PlanOptions, Speed};
use organ::registration::Registration;
use organ::score::{self, Score};

use crate::support::*;

/// The test organ with stop lead and pace in ms and an optional General Cancel (see
/// support::organs).
fn test_organ(lead_ms: u32, pace_ms: u32, cancel: bool) -> Organ {
    TestOrgan::new(lead_ms, pace_ms, cancel).organ()
}

fn bare() -> Organ {
    TestOrgan::bare().organ()
}

fn registration(organ: &Organ, text: &str) -> Registration {
    Registration::from_toml(text, "test.toml", organ).unwrap()
}

fn load(tracks: &[Vec<(u64, Ev)>]) -> Score {
    score::load_bytes(&smf(ppq(480), tracks), "fixture.mid").unwrap()
}

fn layout(l: &str) -> PlanOptions {
    PlanOptions { layout: Some(l.to_string()), ..PlanOptions::default() }
}

/// Plans, checks every invariant, and returns (t_us, bytes, kind) of every message.
fn run(score: &Score, organ: &Organ, reg: Option<&Registration>, opts: &PlanOptions) -> Vec<(u64, String, String)> {
    let (ev, _) = run_full(score, organ, reg, opts);
    ev
}

fn run_full(
    score: &Score,
    organ: &Organ,
    reg: Option<&Registration>,
    opts: &PlanOptions,
) -> (Vec<(u64, String, String)>, Vec<String>) {
    let t = plan::plan(score, organ, reg, opts).unwrap_or_else(|e| panic!("{e}"));
    let events = from_timeline(&t);
    check_plan(&events, &OrganFacts::of(organ)).unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<Vec<_>>().join(" ");
    (
        events.iter().map(|e| (e.t_us, hex(&e.bytes), e.kind.clone())).collect(),
        t.warnings.iter().map(ToString::to_string).collect(),
    )
}

fn ev(list: &[(u64, &str, &str)]) -> Vec<(u64, String, String)> {
    list.iter().map(|&(t, b, k)| (t, b.to_string(), k.to_string())).collect()
}

/// The closing messages at `t` on the three divisions, then the General Cancel.
fn tail(t: u64) -> Vec<(u64, &'static str, &'static str)> {
    vec![
        (t, "B0 7B 00", "all_notes_off"),
        (t, "B1 7B 00", "all_notes_off"),
        (t, "B2 7B 00", "all_notes_off"),
        (t, SYSEX_CANCEL, "cancel"),
    ]
}

#[test]
fn a_key_held_by_two_parts_is_one_pipe() {
    // Parts 1 and 2 both on the Great: key 60 over ticks 0-960 and 480-1440. The organ sees one
    // note-on at 0 and one note-off at the later release (1440 ticks = 1 500 000 µs).
    let s = load(&[notes_track(0, &[(0, 960, 60)]), notes_track(0, &[(480, 1440, 60)])]);
    let organ = test_organ(0, 0, true);
    let (got, warnings) = run_full(&s, &organ, None, &layout("GG"));
    let mut want = vec![(0, SYSEX_CANCEL, "cancel"), (0, "91 3C 50", "note_on"), (1_500_000, "81 3C 00", "note_off")];
    want.extend(tail(1_500_000));
    assert_eq!(got, ev(&want));
    assert!(
        warnings.iter().any(|w| w.contains("1 note(s) struck while the same key was already down")),
        "{warnings:?}"
    );

    // On different divisions the same key is two pipes.
    let got = run(&s, &organ, None, &layout("GS"));
    let notes: Vec<_> = got.iter().filter(|e| e.2.starts_with("note")).map(|e| (e.0, e.1.as_str())).collect();
    assert_eq!(notes, [(0, "91 3C 50"), (500_000, "90 3C 50"), (1_000_000, "81 3C 00"), (1_500_000, "80 3C 00")]);
}

#[test]
fn released_and_struck_at_the_same_instant_is_off_then_on() {
    // In one part, and across two parts on one division.
    for tracks in [
        vec![notes_track(1, &[(0, 480, 62), (480, 960, 62)])],
        vec![notes_track(1, &[(0, 480, 62)]), notes_track(1, &[(480, 960, 62)])],
    ] {
        let s = load(&tracks);
        let l = if tracks.len() == 1 { "G" } else { "GG" };
        let got = run(&s, &test_organ(0, 0, true), None, &layout(l));
        let mut want = vec![
            (0, SYSEX_CANCEL, "cancel"),
            (0, "91 3E 50", "note_on"),
            (500_000, "81 3E 00", "note_off"),
            (500_000, "91 3E 50", "note_on"),
            (1_000_000, "81 3E 00", "note_off"),
        ];
        want.extend(tail(1_000_000));
        assert_eq!(got, ev(&want));
    }
}

/// One note per bar on the Great: 60, 62, 64, 65 (bars 1-4).
fn four_bars() -> Score {
    load(&[notes_track(1, &[(0, 1920, 60), (1920, 3840, 62), (3840, 5760, 64), (5760, 7680, 65)])])
}

const REG: &str = r#"
layout = "G"
[[change]]
at = "1"
preset = "mf"
[[change]]
at = 2
off = ["Gt Diapason 8"]
on = ["Sw to Ped"]
[[change]]
at = "3"
on = ["gt  DIAPASON 8"]
"#;

#[test]
fn from_bar_chases_the_registration() {
    let organ = test_organ(0, 0, true);
    let reg = registration(&organ, REG);
    let s = four_bars();
    // From bar 3: every change up to and including bar 3 is chased: mf − Gt Diapason + Sw to Ped
    // + Gt Diapason, drawn in organ order after the cancel; then bars 3 and 4 from time 0.
    let opts = PlanOptions { from: Some(organ::registration::At::parse("3").unwrap()), ..Default::default() };
    let got = run(&s, &organ, Some(&reg), &opts);
    let mut want = vec![
        (0, SYSEX_CANCEL, "cancel"),
        (0, "9F 24 7F", "stop_on"),
        (0, "BF 14 7F", "stop_on"),
        (0, "9F 3C 7F", "stop_on"),
        (0, "CF 05", "coupler_on"),
        (0, "91 40 50", "note_on"),
        (2_000_000, "81 40 00", "note_off"),
        (2_000_000, "91 41 50", "note_on"),
        (4_000_000, "81 41 00", "note_off"),
    ];
    want.extend(tail(4_000_000));
    assert_eq!(got, ev(&want));

    // From bar 2: the bar-3 change happens during the performance, between the note-off and
    // the note-on of that instant (no lead, no pace).
    let opts = PlanOptions { from: Some(organ::registration::At::parse("2").unwrap()), ..Default::default() };
    let got = run(&s, &organ, Some(&reg), &opts);
    let mut want = vec![
        (0, SYSEX_CANCEL, "cancel"),
        (0, "9F 24 7F", "stop_on"),
        (0, "9F 3C 7F", "stop_on"),
        (0, "CF 05", "coupler_on"),
        (0, "91 3E 50", "note_on"),
        (2_000_000, "81 3E 00", "note_off"),
        (2_000_000, "BF 14 7F", "stop_on"),
        (2_000_000, "91 40 50", "note_on"),
        (4_000_000, "81 40 00", "note_off"),
        (4_000_000, "91 41 50", "note_on"),
        (6_000_000, "81 41 00", "note_off"),
    ];
    want.extend(tail(6_000_000));
    assert_eq!(got, ev(&want));
}

#[test]
fn until_ends_at_the_end_of_the_bar_or_at_the_position() {
    // A long note through four bars, a short one in bar 2 and one in bar 3.
    let s = load(&[notes_track(1, &[(0, 7680, 60), (1920, 2400, 62), (3840, 4320, 64)])]);
    let at = |s: &str| Some(organ::registration::At::parse(s).unwrap());
    let notes = |opts: &PlanOptions| -> Vec<(u64, String)> {
        run(&s, &bare(), None, opts).into_iter().filter(|e| e.2.starts_with("note")).map(|e| (e.0, e.1)).collect()
    };
    let want = |v: &[(u64, &str)]| v.iter().map(|&(t, b)| (t, b.to_string())).collect::<Vec<_>>();
    // --until 2: to the end of bar 2 (tick 3840 = 4 s); the long note is released there.
    let opts = PlanOptions { layout: Some("G".into()), until: at("2"), ..Default::default() };
    assert_eq!(
        notes(&opts),
        want(&[(0, "91 3C 50"), (2_000_000, "91 3E 50"), (2_500_000, "81 3E 00"), (4_000_000, "81 3C 00")])
    );
    // --until 2:3: to beat 3 of bar 2 (tick 2880 = 3 s).
    let opts = PlanOptions { layout: Some("G".into()), until: at("2:3"), ..Default::default() };
    assert_eq!(
        notes(&opts),
        want(&[(0, "91 3C 50"), (2_000_000, "91 3E 50"), (2_500_000, "81 3E 00"), (3_000_000, "81 3C 00")])
    );
    // --from 2 --until 3: bars 2 and 3; the long note, sounding at the start, is struck at 0.
    let opts = PlanOptions { layout: Some("G".into()), from: at("2"), until: at("3"), ..Default::default() };
    assert_eq!(
        notes(&opts),
        want(&[
            (0, "91 3C 50"),
            (0, "91 3E 50"),
            (500_000, "81 3E 00"),
            (2_000_000, "91 40 50"),
            (2_500_000, "81 40 00"),
            (4_000_000, "81 3C 00"),
        ])
    );
    // Positions outside the piece are refused.
    let opts = PlanOptions { layout: Some("G".into()), from: at("9"), ..Default::default() };
    assert!(plan::plan(&s, &bare(), None, &opts).unwrap_err().to_string().contains("has 4 bars"));
    let opts = PlanOptions { layout: Some("G".into()), from: at("3"), until: at("2"), ..Default::default() };
    assert!(plan::plan(&s, &bare(), None, &opts).is_err());
}

#[test]
fn transpose_and_compass_folding() {
    let organ = bare();
    // +2 on the Great: 60 → 62.
    let s = load(&[notes_track(1, &[(0, 480, 60)])]);
    let opts = PlanOptions { layout: Some("G".into()), transpose: 2, ..Default::default() };
    let got = run(&s, &organ, None, &opts);
    assert_eq!(got[0], (0, "91 3E 50".to_string(), "note_on".to_string()));

    // A pedal part with one note above the compass (C2-G4): 72 is folded to 60, with a warning.
    let s = load(&[notes_track(2, &[(0, 480, 36), (480, 960, 40), (960, 1440, 43), (1440, 1920, 72)])]);
    let (got, warnings) = run_full(&s, &organ, None, &layout("P"));
    let ons: Vec<&str> = got.iter().filter(|e| e.2 == "note_on").map(|e| e.1.as_str()).collect();
    assert_eq!(ons, ["92 24 50", "92 28 50", "92 2B 50", "92 3C 50"]);
    assert!(
        warnings
            .iter()
            .any(|w| w == "bar 1:4: pedal: part 1: C5 lies above the compass C2-G4; it is played 1 octave lower (C4)"),
        "{warnings:?}"
    );

    // A hymn's left hand that goes once below C2 (the Great's compass C2-C7): only that note
    // is folded, with a warning that says where; the rest is played as written (moving the part
    // an octave up would have brought every note in, and the whole part with it).
    let mut lh: Vec<(u64, u64, u8)> =
        (0..12).map(|i| (i * 480, i * 480 + 480, [43, 48, 52, 55][i as usize % 4])).collect();
    lh.push((12 * 480, 13 * 480, 33));
    let s = load(&[notes_track(1, &lh)]);
    let (got, warnings) = run_full(&s, &organ, None, &layout("G"));
    let ons: Vec<u8> =
        got.iter().filter(|e| e.2 == "note_on").map(|e| u8::from_str_radix(&e.1[3..5], 16).unwrap()).collect();
    let mut want: Vec<u8> = lh.iter().map(|n| n.2).collect();
    want[12] = 45;
    assert_eq!(ons, want);
    assert_eq!(
        warnings.iter().filter(|w| w.contains("compass")).collect::<Vec<_>>(),
        ["bar 4:1: great: part 1: A1 lies below the compass C2-C7; it is played 1 octave higher (A2)"]
    );
    // Thirteen strays in 150 notes (every twelfth note, from the sixth): ten warnings, then one
    // for the other three.
    let many: Vec<(u64, u64, u8)> =
        (0..150).map(|i| (i * 240, i * 240 + 240, if i % 12 == 5 { 30 } else { 60 })).collect();
    let (_, warnings) = run_full(&load(&[notes_track(1, &many)]), &organ, None, &layout("G"));
    let folded: Vec<&String> = warnings.iter().filter(|w| w.contains("compass")).collect();
    assert_eq!(folded.len(), 11, "{folded:?}");
    assert_eq!(
        folded[0],
        "bar 1:3.50: great: part 1: F#1 lies below the compass C2-C7; it is played 1 octave higher (F#2)"
    );
    assert!(folded[9].starts_with("bar 15:1.50: great: part 1: F#1 lies below"), "{folded:?}");
    assert_eq!(
        folded[10],
        "bar 16:3.50: great: part 1: 3 more note(s) outside the compass C2-C7 (to bar 19:3.50) are folded by octaves into it"
    );

    // A 16' pedal line written an octave below the compass (D1-A2, as LilyPond writes BWV 643)
    // moves up an octave as a whole.
    let s = load(&[notes_track(2, &[(0, 480, 26), (480, 960, 33), (960, 1440, 45)])]);
    let (got, warnings) = run_full(&s, &organ, None, &layout("P"));
    let ons: Vec<&str> = got.iter().filter(|e| e.2 == "note_on").map(|e| e.1.as_str()).collect();
    assert_eq!(ons, ["92 26 50", "92 2D 50", "92 39 50"]);
    assert!(warnings.iter().any(|w| w.contains("part 1 lies below the pedal compass; it is played 1 octave higher")));

    // Transposed down 5 on the pedal, 36 and 38 fall below C2 (31, 33); moving the whole part
    // an octave up would push two others out (67+, 71, 74), so only those two are folded up.
    let s =
        load(&[notes_track(2, &[(0, 480, 36), (480, 960, 38), (960, 1440, 60), (1440, 1920, 64), (1920, 2400, 67)])]);
    let opts = PlanOptions { layout: Some("P".into()), transpose: -5, ..Default::default() };
    let (got, warnings) = run_full(&s, &organ, None, &opts);
    let ons: Vec<&str> = got.iter().filter(|e| e.2 == "note_on").map(|e| e.1.as_str()).collect();
    assert_eq!(ons, ["92 2B 50", "92 2D 50", "92 37 50", "92 3B 50", "92 3E 50"]);
    assert!(
        warnings
            .iter()
            .any(|w| w == "bar 1:1: pedal: part 1: G1 lies below the compass C2-G4; it is played 1 octave higher (G2)"),
        "{warnings:?}"
    );
    assert!(warnings.iter().any(|w| w.starts_with("bar 1:2: pedal: part 1: A1 lies below")), "{warnings:?}");

    // When moving the whole part an octave leaves fewer notes outside, it moves: 36 40 60 65
    // down 5 is 31 35 55 60 (two below C2); an octave up, 43 47 67 72 (one above G4, folded to 60).
    let s = load(&[notes_track(2, &[(0, 480, 36), (480, 960, 40), (960, 1440, 60), (1440, 1920, 65)])]);
    let (got, warnings) = run_full(&s, &organ, None, &opts);
    let ons: Vec<&str> = got.iter().filter(|e| e.2 == "note_on").map(|e| e.1.as_str()).collect();
    assert_eq!(ons, ["92 2B 50", "92 2F 50", "92 43 50", "92 3C 50"]);
    assert!(warnings.iter().any(|w| w.contains("part 1 lies below the pedal compass; it is played 1 octave higher")));
    assert!(
        warnings
            .iter()
            .any(|w| w == "bar 1:4: pedal: part 1: C5 lies above the compass C2-G4; it is played 1 octave lower (C4)"),
        "{warnings:?}"
    );
}

#[test]
fn tempo_percent_and_bpm_scale_musical_time_only() {
    let organ = test_organ(40, 4, true);
    let reg = registration(&organ, "layout = \"G\"\n[[change]]\nat = \"1\"\npreset = \"mf\"\n");
    let s = load(&[notes_track(1, &[(0, 1920, 60), (1920, 3840, 62)])]);
    // Setup: cancel at 0, the three mf stops at 4, 8, 12 ms; music from 12 + 40 = 52 ms.
    let origin = 52_000;
    for speed in [Speed::parse_tempo("50%").unwrap(), Speed::Bpm(60.0), Speed::parse_tempo("0.5x").unwrap()] {
        let opts = PlanOptions { speed, ..Default::default() };
        let got = run(&s, &organ, Some(&reg), &opts);
        let notes: Vec<(u64, &str)> =
            got.iter().filter(|e| e.2.starts_with("note")).map(|e| (e.0, e.1.as_str())).collect();
        // Each bar (2 s as written) now lasts 4 s.
        assert_eq!(
            notes,
            [
                (origin, "91 3C 50"),
                (origin + 4_000_000, "81 3C 00"),
                (origin + 4_000_000, "91 3E 50"),
                (origin + 8_000_000, "81 3E 00")
            ],
            "{speed:?}"
        );
        let setup: Vec<u64> = got.iter().filter(|e| e.2 == "stop_on").map(|e| e.0).collect();
        assert_eq!(setup, [4_000, 8_000, 12_000], "stop pacing is not scaled");
    }
    // 200% halves them.
    let opts = PlanOptions { speed: Speed::parse_tempo("200%").unwrap(), ..Default::default() };
    let got = run(&s, &organ, Some(&reg), &opts);
    let last_off = got.iter().filter(|e| e.2 == "note_off").map(|e| e.0).max().unwrap();
    assert_eq!(last_off, origin + 2_000_000);
}

#[test]
fn stop_lead_and_pace() {
    // lead 40 ms, pace 4 ms. Registration: mf at bar 1; at bar 2 Gt Diapason off, Sw to Ped on.
    let organ = test_organ(40, 4, true);
    let reg = registration(
        &organ,
        "layout = \"G\"\n[[change]]\nat = \"1\"\npreset = \"mf\"\n[[change]]\nat = \"2\"\noff = [\"Gt Diapason 8\"]\non = [\"Sw to Ped\"]\n",
    );
    let s = load(&[notes_track(1, &[(0, 1920, 60), (1920, 3840, 62)])]);
    let (got, warnings) = run_full(&s, &organ, Some(&reg), &PlanOptions::default());
    // Setup: cancel at 0, mf's three stops at 4, 8, 12 ms, music at 12 + 40 = 52 ms.
    // Bar 2 is at 52 ms + 2 s = 2.052 s; its two messages end `lead` before it, `pace` apart:
    // 2.052 s − 40 ms − 4 ms = 2.008 s and 2.012 s (offs before ons).
    let mut want = vec![
        (0, SYSEX_CANCEL, "cancel"),
        (4_000, "9F 24 7F", "stop_on"),
        (8_000, "BF 14 7F", "stop_on"),
        (12_000, "9F 3C 7F", "stop_on"),
        (52_000, "91 3C 50", "note_on"),
        (2_008_000, "BF 14 00", "stop_off"),
        (2_012_000, "CF 05", "coupler_on"),
        (2_052_000, "81 3C 00", "note_off"),
        (2_052_000, "91 3E 50", "note_on"),
        (4_052_000, "81 3E 00", "note_off"),
    ];
    want.extend(tail(4_052_000));
    assert_eq!(got, ev(&want));
    // Bar 2 puts in the Great's only stop: its note is silent, and check says so.
    assert_eq!(
        warnings,
        [
            "bar 2:1: great: 1 note sounds no stop: no great stop is drawn and no coupler brings another division's stops to it"
        ]
    );

    // A slow action (pace 500 ms) cannot keep up: the setup ends at 1.5 s, music at 1.54 s; a
    // change at beat 1.5 (music 1.79 s) should go at 1.75 s but cannot before 2.0 s: warned.
    let organ = test_organ(40, 500, true);
    let reg = registration(
        &organ,
        "layout = \"G\"\n[[change]]\nat = \"1\"\npreset = \"mf\"\n[[change]]\nat = \"1:1.5\"\non = [\"Sw to Ped\"]\n",
    );
    let (got, warnings) = run_full(&s, &organ, Some(&reg), &PlanOptions::default());
    let reg_times: Vec<(u64, &str)> = got
        .iter()
        .filter(|e| !e.2.starts_with("note") && e.2 != "all_notes_off")
        .map(|e| (e.0, e.1.as_str()))
        .collect();
    assert_eq!(
        reg_times,
        [
            (0, SYSEX_CANCEL),
            (500_000, "9F 24 7F"),
            (1_000_000, "BF 14 7F"),
            (1_500_000, "9F 3C 7F"),
            (2_000_000, "CF 05"),
            (5_540_000, SYSEX_CANCEL)
        ]
    );
    assert!(warnings.iter().any(|w| w.contains("finishes 250.0 ms later than stop_lead_ms asks")), "{warnings:?}");
}

#[test]
fn cancel_at_start_and_end() {
    // No General Cancel: every control's off, one per pace (4 ms), at the start and at the end.
    let organ = test_organ(0, 4, false);
    let s = load(&[notes_track(1, &[(0, 480, 60)])]);
    let got = run(&s, &organ, None, &layout("G"));
    let offs = [("8F 24 00", "cancel"), ("BF 14 00", "cancel"), ("8F 3C 00", "cancel"), ("CF 06", "cancel")];
    let mut want: Vec<(u64, &str, &str)> =
        offs.iter().enumerate().map(|(i, &(b, k))| (i as u64 * 4_000, b, k)).collect();
    // The music starts after the last of them (12 ms, no lead); the note lasts 500 ms.
    want.push((12_000, "91 3C 50", "note_on"));
    want.push((512_000, "81 3C 00", "note_off"));
    want.extend([
        (512_000, "B0 7B 00", "all_notes_off"),
        (512_000, "B1 7B 00", "all_notes_off"),
        (512_000, "B2 7B 00", "all_notes_off"),
    ]);
    want.extend(offs.iter().enumerate().map(|(i, &(b, k))| (512_000 + i as u64 * 4_000, b, k)));
    assert_eq!(got, ev(&want));

    // --keep-stops: no cancel at the end.
    let opts = PlanOptions { layout: Some("G".into()), keep_stops: true, ..Default::default() };
    let got = run(&s, &organ, None, &opts);
    assert_eq!(got.iter().filter(|e| e.2 == "cancel").count(), 4);
    assert_eq!(got.last().unwrap().2, "all_notes_off");
}

#[test]
fn stops_option_and_map_override() {
    let organ = test_organ(0, 0, true);
    let s = load(&[notes_track(0, &[(0, 480, 60)]), notes_track(0, &[(0, 480, 50)])]);
    // --stops adds a preset and a coupler; --map moves part 2 to the pedal.
    let opts = PlanOptions {
        layout: Some("GG".into()),
        map: Some("2=pedal".into()),
        stops: vec!["Sw to Ped".into(), " mf ".into()],
        ..Default::default()
    };
    let got = run(&s, &organ, None, &opts);
    let head: Vec<(&str, &str)> = got.iter().take(7).map(|e| (e.1.as_str(), e.2.as_str())).collect();
    assert_eq!(
        head,
        [
            (SYSEX_CANCEL, "cancel"),
            ("9F 24 7F", "stop_on"),
            ("BF 14 7F", "stop_on"),
            ("9F 3C 7F", "stop_on"),
            ("CF 05", "coupler_on"),
            ("91 3C 50", "note_on"),
            ("92 32 50", "note_on"),
        ]
    );
    let opts = PlanOptions { layout: Some("GG".into()), stops: vec!["Sw Flute 4".into()], ..Default::default() };
    let e = plan::plan(&s, &organ, None, &opts).unwrap_err().to_string();
    assert!(e.contains("did you mean \"Sw Flute 8\""), "{e}");
}

#[test]
fn nothing_from_the_score_but_notes_reaches_the_plan() {
    // A MuseScore-like top staff: program change, CC 7/10/91/93, RPN block, pitch bend, SysEx.
    let mut t = vec![
        (0, Ev::Program(0, 19)),
        (0, Ev::Cc(0, 121, 0)),
        (0, Ev::Cc(0, 100, 0)),
        (0, Ev::Cc(0, 101, 0)),
        (0, Ev::Cc(0, 6, 12)),
        (0, Ev::Cc(0, 7, 100)),
        (0, Ev::Cc(0, 10, 64)),
        (0, Ev::Cc(0, 91, 0)),
        (0, Ev::Cc(0, 93, 0)),
        (10, Ev::PitchBend(0)),
        (10, Ev::Sysex(&[0x41, 0x10, 0x42, 0x12, 0xF7])),
        (240, Ev::Program(0, 1)),
    ];
    t.extend(notes_track(0, &[(0, 480, 60), (480, 960, 64)]));
    let s = load(&[t, notes_track(0, &[(0, 960, 48)])]);
    assert!(s.stripped.total() >= 12);
    let got = run(&s, &test_organ(0, 0, true), None, &layout("SS"));
    for (t, bytes, kind) in &got {
        let status = u8::from_str_radix(&bytes[..2], 16).unwrap();
        match kind.as_str() {
            "note_on" => assert_eq!(status, 0x90, "{t} {bytes}"),
            "note_off" => assert_eq!(status, 0x80, "{t} {bytes}"),
            "all_notes_off" => assert!(bytes.ends_with("7B 00")),
            "cancel" => assert_eq!(bytes, SYSEX_CANCEL),
            other => panic!("{other} {bytes}"),
        }
    }
    assert_eq!(got.iter().filter(|e| e.2 == "note_on").count(), 3);
}
