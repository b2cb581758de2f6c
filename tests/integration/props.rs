//! Property tests: the planner's invariants over random small scores, layouts, registrations,
//! transpositions, tempi and ranges; and the loader (then the planner) over mutated corpus files,
//! which must never panic.

use std::panic::{AssertUnwindSafe, catch_unwind};

use organ::organ::Organ;
use organ::plan::{self, PlanOptions, Speed};
use organ::registration::At;
use organ::registration::Registration;
use organ::score;
use proptest::prelude::*;

use crate::support::*;

/// St Mary's, or St Mary's with a General Cancel and other stop timing.
fn organ_variant(cancel: bool, lead_ms: u32, pace_ms: u32) -> Organ {
    let text = std::fs::read_to_string(st_marys_path()).unwrap();
    let mut text = text
        .replace("stop_lead_ms = 40", &format!("stop_lead_ms = {lead_ms}"))
        .replace("stop_pace_ms = 4 ", &format!("stop_pace_ms = {pace_ms} "));
    if cancel {
        text = text.replace("# message = { sysex", "message = { sysex");
    }
    let o = Organ::from_toml(&text, "variant.toml").unwrap();
    assert_eq!(o.cancel.is_some(), cancel);
    assert_eq!(o.stop_pace.0, u64::from(pace_ms) * 1000);
    o
}

/// Notes of a random part: (start, duration, key, velocity), times in sixteenths.
type RandomNotes = Vec<(u64, u64, u8, u8)>;
/// A registration change: (bar, preset index, controls drawn, controls put in).
type RandomChange = (u32, Option<usize>, Vec<usize>, Vec<usize>);

#[derive(Debug, Clone)]
struct RandomScore {
    ppq: u16,
    /// Per part: channel and notes (start, duration, key, velocity).
    parts: Vec<(u8, RandomNotes)>,
    tempi: Vec<(u64, u32)>,
    meters: Vec<(u64, u8, u8)>,
    /// One track (format 0) instead of one per part.
    single_track: bool,
}

impl RandomScore {
    fn bytes(&self) -> Vec<u8> {
        let q = u64::from(self.ppq);
        let mut tracks: Vec<Vec<(u64, Ev)>> = Vec::new();
        let mut conductor: Vec<(u64, Ev)> = Vec::new();
        for &(t, us) in &self.tempi {
            conductor.push((t * q / 4, Ev::Tempo(us)));
        }
        for &(t, n, d) in &self.meters {
            conductor.push((t * q / 4, Ev::TimeSig(n, d)));
        }
        for (ch, notes) in &self.parts {
            let mut t = Vec::new();
            for &(s, d, k, v) in notes {
                // Times in sixteenths, so that notes meet and overlap exactly.
                t.push((s * q / 4, Ev::On(*ch, k, v)));
                t.push(((s + d) * q / 4, if v % 2 == 0 { Ev::Off(*ch, k) } else { Ev::On0(*ch, k) }));
            }
            tracks.push(t);
        }
        if self.single_track {
            let mut one = conductor;
            for t in tracks {
                one.extend(t);
            }
            smf(ppq(self.ppq), &[one])
        } else {
            let mut all = vec![conductor];
            all.extend(tracks);
            smf(ppq(self.ppq), &all)
        }
    }
}

fn random_score() -> impl Strategy<Value = RandomScore> {
    let note = (0u64..64, 0u64..12, 20u8..=108, 1u8..=127);
    let part = (0u8..16, prop::collection::vec(note, 0..16));
    (
        prop::sample::select(vec![96u16, 120, 384, 480, 960, 10080]),
        prop::collection::vec(part, 1..6),
        prop::collection::vec((0u64..64, 150_000u32..2_000_000), 0..4),
        prop::collection::vec((0u64..64, 1u8..8, 0u8..5), 0..3),
        any::<bool>(),
    )
        .prop_map(|(ppq, parts, tempi, meters, single_track)| RandomScore {
            ppq,
            parts,
            tempi,
            meters,
            single_track,
        })
}

#[derive(Debug, Clone)]
struct RandomPlan {
    layout: Vec<char>,
    transpose: i32,
    percent: Option<u32>,
    from: Option<u32>,
    until: Option<u32>,
    changes: Vec<RandomChange>,
    stops: Vec<usize>,
    keep_stops: bool,
    cancel: bool,
    lead_ms: u32,
    pace_ms: u32,
}

fn random_plan() -> impl Strategy<Value = RandomPlan> {
    let change = (
        1u32..6,
        prop::option::of(0usize..6),
        prop::collection::vec(0usize..29, 0..4),
        prop::collection::vec(0usize..29, 0..4),
    );
    (
        prop::collection::vec(prop::sample::select(vec!['S', 'G', 'P', '-', 'g']), 16),
        -24i32..=24,
        prop::option::of(10u32..=400),
        prop::option::of(1u32..5),
        prop::option::of(1u32..5),
        prop::collection::vec(change, 0..5),
        prop::collection::vec(0usize..29, 0..3),
        any::<bool>(),
        (any::<bool>(), 0u32..60, 0u32..12),
    )
        .prop_map(
            |(layout, transpose, percent, from, until, changes, stops, keep_stops, (cancel, lead_ms, pace_ms))| {
                RandomPlan {
                    layout,
                    transpose,
                    percent,
                    from,
                    until,
                    changes,
                    stops,
                    keep_stops,
                    cancel,
                    lead_ms,
                    pace_ms,
                }
            },
        )
}

fn registration_text(organ: &Organ, changes: &[RandomChange]) -> String {
    let names =
        |ids: &[usize]| ids.iter().map(|&i| format!("{:?}", organ.controls[i].name)).collect::<Vec<_>>().join(", ");
    let mut t = String::new();
    for (bar, preset, on, off) in changes {
        t.push_str(&format!("[[change]]\nat = \"{bar}\"\n"));
        if let Some(p) = preset {
            t.push_str(&format!("preset = {:?}\n", organ.presets[*p].name));
        }
        t.push_str(&format!("on = [{}]\noff = [{}]\n", names(on), names(off)));
    }
    t
}

/// Checks one random case; `Ok(true)` when a plan was made (not refused).
fn check_random(rs: &RandomScore, rp: &RandomPlan) -> Result<bool, TestCaseError> {
    let Ok(score) = score::load_bytes(&rs.bytes(), "random.mid") else {
        // Only a score with no notes at all is refused.
        prop_assert!(rs.parts.iter().all(|p| p.1.is_empty()));
        return Ok(false);
    };
    let organ = organ_variant(rp.cancel, rp.lead_ms, rp.pace_ms);
    let reg = Registration::from_toml(&registration_text(&organ, &rp.changes), "random.toml", &organ).unwrap();
    let layout: String = rp.layout.iter().take(score.parts.len()).collect();
    let opts = PlanOptions {
        layout: Some(layout.clone()),
        speed: rp.percent.map_or(Speed::AsWritten, |p| Speed::Percent(f64::from(p))),
        transpose: rp.transpose,
        from: rp.from.map(|bar| At::Bar { bar, beat: 1.0 }),
        until: rp.until.map(|bar| At::Bar { bar, beat: 1.0 }),
        stops: rp.stops.iter().map(|&i| organ.controls[i].name.clone()).collect(),
        keep_stops: rp.keep_stops,
        ..PlanOptions::default()
    };
    let t = match plan::plan(&score, &organ, Some(&reg), &opts) {
        Ok(t) => t,
        Err(e) => {
            // The only refusals possible here: nothing to play, or a range outside the piece.
            let m = e.to_string();
            prop_assert!(
                m.contains("leaves every part out")
                    || m.contains("bars")
                    || m.contains("nothing to play")
                    || m.contains("not in the score"),
                "{m}"
            );
            return Ok(false);
        }
    };
    let events = from_timeline(&t);
    let s = check_plan(&events, &OrganFacts::of(&organ)).map_err(TestCaseError::fail)?;
    prop_assert_eq!(s.note_ons, s.note_offs);

    // Every note in the performed range sounds through its length on its division.
    let music_end = score.last_note_end();
    let from_tick = rp.from.map_or(0, |b| score.meter.bar_start(b).unwrap());
    let until_tick = rp.until.map_or(music_end, |b| score.meter.bar_start(b + 1).unwrap_or(music_end).min(music_end));
    let assignment: Vec<Option<u8>> = layout
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            'S' => Some(0),
            'G' => Some(1),
            'P' => Some(2),
            _ => None,
        })
        .collect();
    check_coverage(&score, &assignment, rp.transpose, (from_tick, until_tick), &s.soundings)
        .map_err(TestCaseError::fail)?;
    // Notes only inside the performed range, and later ticks never earlier in time.
    let mut notes: Vec<(u64, u64)> =
        events.iter().filter(|e| e.kind.starts_with("note")).map(|e| (e.tick, e.t_us)).collect();
    prop_assert!(notes.iter().all(|&(tick, _)| tick >= from_tick && tick <= until_tick));
    notes.sort_unstable();
    prop_assert!(notes.windows(2).all(|w| w[0].1 <= w[1].1), "time is monotonic in ticks");
    // The performance ends cancelled unless asked to keep the stops.
    let last = events.last().unwrap();
    prop_assert_eq!(last.kind == "cancel", !rp.keep_stops, "last event {:?}", last);
    Ok(true)
}

/// Runs `cases` random cases (shrinking failures as `proptest!` does) and returns how many of
/// them `f` counted, so a test can show that it did not pass by skipping everything.
pub(crate) fn run_counted<S: Strategy>(
    cases: u32,
    strategy: S,
    f: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let counted = AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases, ..ProptestConfig::default() });
    let result = runner.run(&strategy, |v| {
        if f(v)? {
            counted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    counted.into_inner()
}

#[test]
fn planner_invariants_hold_for_random_scores() {
    let planned = run_counted(192, (random_score(), random_plan()), |(rs, rp)| check_random(&rs, &rp));
    // Most cases make a plan (the others are refused for a range outside the piece, or a
    // layout that leaves every part out): the invariants were really checked.
    assert!(planned >= 96, "only {planned} of 192 random cases were planned");
}

/// A mutation of a file: overwrite, insert or delete bytes, or cut it short.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

pub(crate) fn mutate(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Set(i, v) => {
                let i = i % b.len();
                b[i] = *v;
            }
            Mutation::Insert(i, bytes) => {
                let i = i % (b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = i % b.len();
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Truncate(n) => b.truncate(n % (b.len() + 1)),
        }
    }
    b
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        // Interesting bytes: status bytes, running status, meta/sysex, big variable-length values.
        3 => (any::<usize>(), prop::sample::select(vec![0x00u8, 0x7F, 0x80, 0x90, 0xB0, 0xC0, 0xF0, 0xF7, 0xFF, 0x51, 0x58, 0x2F]))
            .prop_map(|(i, v)| Mutation::Set(i, v)),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<usize>(), prop::collection::vec(Just(0xFFu8), 4..5)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

pub(crate) const SMALL_FILES: [&str; 5] = [
    "ssggp/bwv643.mid",
    "real/lily-tallis-ordinal.mid",
    "real/mido-type0-ppq120-old100.mid",
    "real/musescore-hymn-diademata.mid",
    "ssggp/hymn-st-anne-ssggp-musescore323.mid",
];

/// The loader never panics on damaged input; what it accepts, the planner plans without
/// breaking an invariant (or refuses with an error).
#[test]
fn mutated_files_never_panic() {
    let strategy = (0usize..SMALL_FILES.len(), prop::collection::vec(mutation(), 1..6));
    let loaded = run_counted(400, strategy, |(file, muts)| {
        let good = std::fs::read(data_dir().join(SMALL_FILES[file])).unwrap();
        let bytes = mutate(good, &muts);
        let loaded = catch_unwind(AssertUnwindSafe(|| score::load_bytes(&bytes, "mutated.mid")));
        let Ok(result) = loaded else {
            return Err(TestCaseError::fail(format!("load_bytes panicked on {muts:?}")));
        };
        if let Ok(score) = result {
            let organ = st_marys();
            let opts = PlanOptions { layout: Some("G".repeat(score.parts.len())), ..PlanOptions::default() };
            let planned = catch_unwind(AssertUnwindSafe(|| plan::plan(&score, &organ, None, &opts)));
            let Ok(planned) = planned else {
                return Err(TestCaseError::fail(format!("plan panicked on {muts:?}")));
            };
            if let Ok(t) = planned {
                check_plan(&from_timeline(&t), &OrganFacts::of(&organ)).map_err(TestCaseError::fail)?;
            }
            return Ok(true);
        }
        Ok(false)
    });
    // Both kinds of outcome occur (about one in ten loads): damage the loader refuses, and
    // damage inside event data that still parses and is planned.
    assert!((8..=392).contains(&loaded), "{loaded} of 400 mutated files loaded");
}
