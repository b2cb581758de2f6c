//! Every file of the corpus (tests/data/real, tests/data/ssggp): loaded note times against mido's
//! reference and against an independent tempo-map computation, and a plan on St Mary's organ
//! that keeps every invariant.

use std::collections::BTreeMap;
use std::path::Path;

use organ::plan::{self, PlanOptions};
use organ::score::{self, Score, Timing, WarningKind};

use crate::support::*;

/// The layout each corpus file is planned with on St Mary's: S Swell, G Great, P Pedal, and a
/// dash for a part left out. Chosen by hand from `organ info`: chord-name tracks are left out,
/// the lowest part goes to the pedal, and some files deliberately put parts an octave apart on
/// one division (bwv656: the 8' and 16' pedal cantus firmus) or fold parts into the pedal compass.
pub const LAYOUTS: &[(&str, &str)] = &[
    ("abc2midi-hymn-adeste-fideles", "GGGP"),
    ("abc2midi-hymn-holy-holy-holy", "SSGP"),
    ("abc2midi-hymn-strife-is-oer", "GGSP"),
    ("lily-bwv565-toccata-fugue", "SGP"),
    ("lily-bwv582-passacaglia", "GGSS-PP"),
    ("lily-bwv608-in-dulci-jubilo", "SGPG"),
    ("lily-bwv643-alle-menschen", "GGP"),
    ("lily-bwv656-o-lamm-gottes", "SGPP"),
    ("lily-hymn-constance", "GP"),
    ("lily-hymn-cwm-rhondda", "-GP"),
    ("lily-hymn-diademata", "-SP"),
    ("lily-hymn-old100", "GP"),
    ("lily-mendelssohn-wedding-march", "SGP"),
    ("lily-tallis-ordinal", "GP"),
    ("mido-ppq960-lift-high-the-cross", "GGGP"),
    ("mido-type0-ppq120-old100", "SP"),
    ("mido-type0-ppq96-first-noel", "GGSP"),
    ("musescore-bwv643-alle-menschen", "SGP"),
    ("musescore-hymn-diademata", "GGSSP"),
    ("musescore-hymn-holy-holy-holy", "GGGP"),
    ("music21-bwv656-o-lamm-gottes", "GGPP"),
    ("noteedit-jesu-joy", "GGGP-SS"),
    ("bwv643", "SSGGP"),
    ("hymn-nicaea-ssggp", "SSGGP"),
    ("hymn-old100-gt-gt-ped", "GGP"),
    ("hymn-st-anne-ssggp-musescore323", "SSGGP"),
];

/// The layout `organ info --organ st-marys` suggests for each corpus file, written down by hand
/// from what an organist would do with its parts (tracks, names, ranges and onsets as
/// tests/data/SOURCES.md and `organ info` describe them), and why.
pub const SUGGESTED: &[(&str, &str, &str)] = &[
    ("abc2midi-hymn-adeste-fideles", "GGGP", "SATB, one voice a track: the bass to the pedal"),
    ("abc2midi-hymn-holy-holy-holy", "GGGP", "SATB, one voice a track: the bass to the pedal"),
    ("abc2midi-hymn-strife-is-oer", "GGGP", "SATB, one voice a track: the bass to the pedal"),
    ("lily-bwv565-toccata-fugue", "GGP", "RH, LH (names say nothing), the pedal line lowest"),
    (
        "lily-bwv582-passacaglia",
        "GGGG-P-",
        "the pedal theme is written three times an octave apart (16', 8', 4'): the lowest to the pedal, its doublings left out",
    ),
    ("lily-bwv608-in-dulci-jubilo", "GGPG", "the third voice (E2-E4, one note at a time) is the lowest: the pedal"),
    ("lily-bwv643-alle-menschen", "GGP", "named right, left, pedal"),
    (
        "lily-bwv656-o-lamm-gottes",
        "GG-P",
        "the cantus firmus of verse 3 is written at 8' and 16': the lower to the pedal, the other left out",
    ),
    ("lily-hymn-constance", "GG", "two staves, the lower holds tenor and bass together: not a line for the feet"),
    (
        "lily-hymn-cwm-rhondda",
        "-GG",
        "a chord-names track (block chords) left out; two staves of two voices on the Great",
    ),
    ("lily-hymn-diademata", "-GG", "a chord-names track left out; two staves of two voices on the Great"),
    ("lily-hymn-old100", "GG", "two staves of two voices each: no line for the feet"),
    ("lily-mendelssohn-wedding-march", "GGP", "the third track is the bass line (one note at a time, lowest)"),
    ("lily-tallis-ordinal", "GP", "melody and figured bass: the bass to the pedal"),
    ("mido-ppq960-lift-high-the-cross", "GGGP", "SATB, one voice a track: the bass to the pedal"),
    ("mido-type0-ppq120-old100", "GG", "format 0, two channels of two voices each"),
    ("mido-type0-ppq96-first-noel", "GGGP", "format 0, four single voices by channel: the bass to the pedal"),
    ("musescore-bwv643-alle-menschen", "GGP", "MuseScore dropped the names; the pedal line is the lowest"),
    (
        "musescore-hymn-diademata",
        "--GGP",
        "MuseScore split the chord names over two staves of one channel: both left out; the bass to the pedal",
    ),
    ("musescore-hymn-holy-holy-holy", "GGGP", "SATB, one voice a track: the bass to the pedal"),
    (
        "music21-bwv656-o-lamm-gottes",
        "GG-P",
        "as the LilyPond file: the 16' cantus firmus to the pedal, its 8' copy left out",
    ),
    ("noteedit-jesu-joy", "GGGPGGG", "the fourth track is the bass line (one note at a time, lowest)"),
    ("bwv643", "SSGGP", "named Swell, Swell, Great, Great, Pedal"),
    ("hymn-nicaea-ssggp", "SSGGP", "named Swell, Swell, Great, Great, Pedal"),
    ("hymn-old100-gt-gt-ped", "GGP", "named Great, Great, Pedal"),
    ("hymn-st-anne-ssggp-musescore323", "SSGGP", "five unnamed staves: MuseScore's SSGGP"),
];

/// `organ info`'s suggestion for every corpus file is the one written down above, and for every
/// shipped score the layout its registration file uses.
#[test]
fn organ_info_suggests_the_layout_an_organist_would_choose() {
    let suggested = |path: &Path| -> String {
        let out = organ_bin(&["info", &path.to_string_lossy(), "--organ", "st-marys"]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", path.display(), text(&out.stderr));
        let o = text(&out.stdout);
        let line = o.lines().find(|l| l.starts_with("suggested layout")).unwrap_or_else(|| panic!("{o}"));
        line.rsplit(' ').next().unwrap().to_string()
    };
    let files = corpus_files();
    assert_eq!(SUGGESTED.len(), files.len());
    for f in &files {
        let (_, want, why) = SUGGESTED.iter().find(|s| s.0 == stem(f)).unwrap_or_else(|| panic!("{}", f.display()));
        assert_eq!(suggested(f), *want, "{}: {why}", f.display());
    }
    for e in std::fs::read_dir(repo_dir().join("scores")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "mid") {
            let reg = std::fs::read_to_string(p.with_extension("toml")).unwrap();
            let layout = reg.lines().find_map(|l| l.strip_prefix("layout = ")).unwrap().trim_matches('"');
            assert_eq!(suggested(&p), layout, "{}", p.display());
        }
    }
}

fn layout_of(p: &Path) -> &'static str {
    let s = stem(p);
    LAYOUTS.iter().find(|l| l.0 == s).map(|l| l.1).unwrap_or_else(|| panic!("no layout for corpus file {s}"))
}

#[test]
fn the_corpus_is_complete() {
    let files = corpus_files();
    assert_eq!(files.len(), 26, "22 real + 4 SSGGP files");
    for f in &files {
        layout_of(f);
        assert!(data_dir().join("reference").join(format!("{}.json", stem(f))).is_file(), "{}", f.display());
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let sources = std::fs::read_to_string(data_dir().join("SOURCES.md")).unwrap();
        assert!(sources.contains(&format!("`{name}`")), "tests/data/SOURCES.md does not describe {name}");
    }
    assert_eq!(LAYOUTS.len(), files.len());
}

fn ppq_of(score: &Score) -> u16 {
    match score.timing {
        Timing::Metrical { ppq } => ppq,
        Timing::Timecode { .. } => panic!("{}: the corpus is metrical", score.name),
    }
}

fn indep_of(r: &Reference) -> IndepTempo {
    let changes: Vec<(u64, u32)> = r.tempo_map.iter().map(|&(tick, _, us)| (tick, us)).collect();
    IndepTempo::new(r.ticks_per_beat, &changes)
}

/// |our µs − mido's seconds| ≤ 1 µs.
fn close(ours: u64, mido_s: f64) -> bool {
    (ours as f64 - mido_s * 1e6).abs() <= 1.0
}

#[test]
fn note_times_agree_with_mido_and_an_independent_tempo_map() {
    for path in corpus_files() {
        let name = stem(&path);
        let score = score::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let r = Reference::load(&path);
        assert_eq!(r.file, path.file_name().unwrap().to_string_lossy());
        let ppq = ppq_of(&score);
        assert_eq!(ppq, r.ticks_per_beat, "{name}");
        assert_eq!(score.tracks, r.num_tracks, "{name}");
        assert_eq!(score.format, r.format_type, "{name}");
        let indep = indep_of(&r);

        // The exact map equals the independent one at every tick that matters, exactly (as
        // rationals) and once rounded; and both agree with mido's float seconds to 1 µs.
        let mut ticks: Vec<u64> = r.events.iter().map(|e| e.6).chain(r.tempo_map.iter().map(|t| t.0)).collect();
        ticks.push(score.end_tick);
        ticks.sort_unstable();
        ticks.dedup();
        for &tick in &ticks {
            let ex = score.tempo.exact(tick);
            let num = indep.scaled(tick);
            assert_eq!(
                ex.num * indep.ppq() as u128,
                num as u128 * ex.den,
                "{name}: exact time of tick {tick} differs from the independent map"
            );
            assert_eq!(i128::from(score.tempo.micros(tick).0), indep.micros(tick), "{name} tick {tick}");
        }
        for &(tick, time_s, _) in &r.tempo_map {
            assert!(close(score.tempo.micros(tick).0, time_s), "{name}: tempo event at tick {tick}");
        }
        for &(time_s, track, channel, key, _, _, tick) in &r.events {
            let us = score.tempo.micros(tick).0;
            assert!(
                close(us, time_s),
                "{name}: track {track} ch {channel} key {key} tick {tick}: {us} µs vs mido {time_s} s"
            );
        }

        // Notes: paired by the documented rule from mido's rows, then matched to the loaded notes
        // by (track, channel, key, tick), with times checked once more through the match.
        let (ref_notes, stray) = pair_reference(&r);
        assert_eq!(score.note_count(), r.note_on_count, "{name}: note count");
        assert_eq!(ref_notes.len(), r.note_on_count);
        let paired_offs = ref_notes.iter().filter(|n| n.end.is_some()).count();
        assert_eq!(paired_offs + stray, r.note_off_count, "{name}");
        let strays_warned = score.warnings.iter().any(|w| w.kind == WarningKind::StrayNoteOff);
        assert_eq!(stray > 0, strays_warned, "{name}: stray note-off warning");

        // key → FIFO of reference notes, as they start
        type Key = (usize, u8, u8, u64);
        let mut expected: BTreeMap<Key, Vec<&RefNote>> = BTreeMap::new();
        for n in &ref_notes {
            expected.entry((n.track, n.channel, n.key, n.start_tick)).or_default().push(n);
        }
        let mut hanging = 0;
        for part in &score.parts {
            for n in &part.notes {
                let k = (part.track, n.channel.wire(), n.key, n.start);
                let candidates = expected.get_mut(&k).unwrap_or_else(|| panic!("{name}: unexpected note {k:?}"));
                // Among notes starting together on one key, match by end tick.
                let i = candidates
                    .iter()
                    .position(|c| c.end.is_none_or(|(end, _)| end == n.end))
                    .unwrap_or_else(|| panic!("{name}: note {k:?} ends at {} in no reference note", n.end));
                let c = candidates.swap_remove(i);
                assert_eq!(c.velocity, n.velocity, "{name} {k:?}");
                assert!(close(score.tempo.micros(n.start).0, c.start_s), "{name} {k:?} start");
                match c.end {
                    Some((_, end_s)) => assert!(close(score.tempo.micros(n.end).0, end_s), "{name} {k:?} end"),
                    None => {
                        hanging += 1;
                        assert!(n.end >= n.start);
                    }
                }
            }
        }
        assert!(expected.values().all(Vec::is_empty), "{name}: reference notes not loaded");
        let hanging_warned = score.warnings.iter().any(|w| w.kind == WarningKind::HangingNote);
        assert_eq!(hanging > 0, hanging_warned, "{name}: hanging-note warning");

        // Parts: format 1 → one part per track with notes, in file order; format 0 → one part per
        // channel, ordered by channel.
        if r.format_type == 1 {
            let mut tracks: Vec<usize> = ref_notes.iter().map(|n| n.track).collect();
            tracks.sort_unstable();
            tracks.dedup();
            assert_eq!(score.parts.iter().map(|p| p.track).collect::<Vec<_>>(), tracks, "{name}");
        } else {
            let mut chans: Vec<u8> = ref_notes.iter().map(|n| n.channel).collect();
            chans.sort_unstable();
            chans.dedup();
            let got: Vec<u8> = score.parts.iter().map(|p| p.notes[0].channel.wire()).collect();
            assert_eq!(got, chans, "{name}");
            assert!(score.parts.iter().all(|p| p.notes.iter().all(|n| n.channel == p.notes[0].channel)));
        }
        for (i, p) in score.parts.iter().enumerate() {
            assert_eq!(p.number, i + 1);
        }
    }
}

/// Plans every corpus file on St Mary's organ and checks the invariants, the note times (against
/// the independent tempo map, offset by the hand-computed start of the music) and that every
/// note sounds through its written length.
#[test]
fn every_corpus_file_plans_on_st_marys() {
    let organ = st_marys();
    let facts = OrganFacts::of(&organ);
    // No registration: the start is every control's off, one every stop_pace_ms, and the
    // music begins stop_lead_ms after the last of them.
    let n_controls = organ.controls.len() as u64;
    assert_eq!(n_controls, 29, "24 stops, 4 couplers and a tremulant in organs/st-marys.toml");
    let origin = (n_controls - 1) * 4_000 + 40_000;
    for path in corpus_files() {
        let name = stem(&path);
        let score = score::load_file(&path).unwrap();
        let r = Reference::load(&path);
        let indep = indep_of(&r);
        let layout = layout_of(&path);
        let opts = PlanOptions { layout: Some(layout.to_string()), ..PlanOptions::default() };
        let t = plan::plan(&score, &organ, None, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let events = from_timeline(&t);
        let s = check_plan(&events, &facts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.note_ons > 0 && s.note_ons == s.note_offs, "{name}");
        // Setup: all 29 offs; at the end: 29 offs again (cancel at end), nothing else.
        assert_eq!(s.registration, 2 * n_controls as usize, "{name}");
        assert!(s.note_ons <= score.note_count());

        let assignment: Vec<Option<u8>> = layout
            .chars()
            .map(|c| match c {
                'S' => Some(0),
                'G' => Some(1),
                'P' => Some(2),
                _ => None,
            })
            .collect();
        check_coverage(&score, &assignment, 0, (0, u64::MAX), &s.soundings).unwrap_or_else(|e| panic!("{name}: {e}"));

        for e in events.iter().filter(|e| e.kind.starts_with("note_")) {
            let want = origin as i128 + indep.micros(e.tick);
            assert_eq!(i128::from(e.t_us), want, "{name}: {} at tick {}", e.kind, e.tick);
        }
        let last_off = events.iter().filter(|e| e.kind == "note_off").map(|e| e.t_us).max().unwrap();
        let played_end = score.parts.iter().zip(&assignment).filter(|(_, d)| d.is_some());
        let played_end = played_end.flat_map(|(p, _)| p.notes.iter().map(|n| n.end)).max().unwrap();
        let last_note_end = origin as i128 + indep.micros(played_end);
        assert_eq!(i128::from(last_off), last_note_end, "{name}: the last release is the last note's end");
    }
}
