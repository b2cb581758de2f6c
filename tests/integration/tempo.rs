//! Exactness of time: two hours of odd tempo changes end within 1 µs of a closed-form time;
//! tempo events in any track count; SMPTE divisions ignore tempo.

use midly::Fps;
use organ::plan::{self, PlanOptions};
use organ::score::{self, Timing};

use crate::support::*;

/// The tempo cycle: seven odd values (µs per quarter), one per 5-tick segment at PPQ 7, so that
/// no segment lasts a whole number of microseconds (5 × us / 7): a player that rounds or
/// truncates per segment drifts by thousands of µs over the piece.
const CYCLE: [u32; 7] = [250_001, 333_339, 416_679, 500_017, 583_357, 666_697, 750_037];
const SEG: u64 = 5;
const PPQ: u16 = 7;
/// Cycles of 7 segments: 2881 × 7 × 5 ticks ≈ 2 h 0 min.
const CYCLES: u64 = 2881;

/// Closed form of the end time: CYCLES × SEG × Σ CYCLE / PPQ µs, as (numerator, 7).
fn closed_form_end() -> (u128, u128) {
    let sum: u128 = CYCLE.iter().map(|&u| u128::from(u)).sum();
    (u128::from(CYCLES) * u128::from(SEG) * sum, u128::from(PPQ))
}

fn two_hour_file() -> Vec<u8> {
    let n = CYCLES * 7;
    let end = n * SEG;
    // Tempo events alternate between the conductor track and the pedal track (the map is global),
    // and every 10th segment has a decoy tempo at the same tick in an earlier track: the later one
    // in merged order wins.
    let mut conductor = vec![(0, Ev::Name("conductor"))];
    let mut pedal = vec![(0, Ev::Name("pedal"))];
    for i in 0..n {
        let tick = i * SEG;
        let us = CYCLE[(i % 7) as usize];
        if i % 10 == 0 {
            conductor.push((tick, Ev::Tempo(999_999)));
            pedal.push((tick, Ev::Tempo(us)));
        } else if i % 2 == 0 {
            conductor.push((tick, Ev::Tempo(us)));
        } else {
            pedal.push((tick, Ev::Tempo(us)));
        }
    }
    pedal.extend(notes_track(2, &[(0, end, 36)]));
    let manual = notes_track(1, &[(0, 7, 60), (end / 2, end / 2 + 7, 62), (end - 1, end, 64)]);
    smf(ppq(PPQ), &[conductor, manual, pedal])
}

#[test]
fn two_hours_of_odd_tempi_end_within_a_microsecond() {
    let bytes = two_hour_file();
    let score = score::load_bytes(&bytes, "two-hours.mid").unwrap();
    let end_tick = CYCLES * 7 * SEG;
    assert_eq!(score.last_note_end(), end_tick);
    let (num, den) = closed_form_end();
    let exact_us = num as f64 / den as f64;
    assert!(exact_us > 7.19e9 && exact_us < 7.21e9, "about two hours: {exact_us}");
    // Exactly the closed form as a rational, and rounded within 1 µs (in fact to the nearest).
    let ex = score.tempo.exact(end_tick);
    assert_eq!(ex.num * den, num * ex.den);
    let got = score.tempo.micros(end_tick).0;
    assert!((got as f64 - exact_us).abs() <= 0.5 + 1e-6, "{got} vs {exact_us}");
    assert_eq!(u128::from(got), (2 * num + den) / (2 * den));

    // Half-way: the note at end/2 starts after CYCLES/2 … computed independently as well.
    let indep = IndepTempo::new(PPQ, &score.tempo.changes().map(|c| (c.tick, c.us_per_quarter)).collect::<Vec<_>>());
    assert_eq!(i128::from(score.tempo.micros(end_tick / 2).0), indep.micros(end_tick / 2));

    // Through the planner: with no stops drawn and an organ with no controls the music starts
    // at 0, so the last note-off is the closed-form end time.
    let organ = TestOrgan::bare().organ();
    let opts = PlanOptions { layout: Some("GP".into()), ..PlanOptions::default() };
    let t = plan::plan(&score, &organ, None, &opts).unwrap();
    let events = from_timeline(&t);
    check_plan(&events, &OrganFacts::of(&organ)).unwrap();
    let last_off = events.iter().filter(|e| e.kind == "note_off").map(|e| e.t_us).max().unwrap();
    assert_eq!(u128::from(last_off), (2 * num + den) / (2 * den));
}

#[test]
fn smpte_divisions_ignore_tempo() {
    // 25 fps × 40 ticks per frame: one tick is exactly 1 ms, whatever the tempo events say.
    let tracks = [{
        let mut t = notes_track(0, &[(0, 1000, 60), (2500, 2501, 62)]);
        t.push((0, Ev::Tempo(1_000_000)));
        t.push((1200, Ev::Tempo(250_000)));
        t
    }];
    let bytes = smf(midly::Timing::Timecode(Fps::Fps25, 40), &tracks);
    let s = score::load_bytes(&bytes, "smpte25.mid").unwrap();
    assert_eq!(s.timing, Timing::Timecode { fps: 25, subframes: 40 });
    assert_eq!(s.tempo.micros(1000).0, 1_000_000);
    assert_eq!(s.tempo.micros(2501).0, 2_501_000);

    // 29.97 drop-frame × 100: 30 frames last 1.001 s; tick t is t × 1001 / 3 µs.
    let bytes = smf(midly::Timing::Timecode(Fps::Fps29, 100), &[notes_track(0, &[(0, 3000, 60), (3000, 3001, 61)])]);
    let s = score::load_bytes(&bytes, "smpte2997.mid").unwrap();
    assert_eq!(s.timing, Timing::Timecode { fps: 29, subframes: 100 });
    assert_eq!(s.tempo.micros(3000).0, 1_001_000);
    assert_eq!(s.tempo.micros(3001).0, 1_001_334); // 1 001 333.67 rounds up
    assert_eq!(s.tempo.micros(1).0, 334);

    // And through the planner.
    let organ = TestOrgan::bare().organ();
    let t = plan::plan(&s, &organ, None, &PlanOptions { layout: Some("G".into()), ..Default::default() }).unwrap();
    let ev = from_timeline(&t);
    check_plan(&ev, &OrganFacts::of(&organ)).unwrap();
    let times: Vec<(String, u64)> =
        ev.iter().filter(|e| e.kind.starts_with("note")).map(|e| (e.kind.clone(), e.t_us)).collect();
    assert_eq!(
        times,
        [("note_on", 0), ("note_off", 1_001_000), ("note_on", 1_001_000), ("note_off", 1_001_334)]
            .map(|(k, t)| (k.to_string(), t))
    );
}

#[test]
fn tempo_in_a_later_track_applies_to_all() {
    // MuseScore 3.5+/4 put tempo in the first staff's track; others put it anywhere. A tempo of
    // 1 s per quarter set in the last track at tick 480 slows the first track's notes too.
    let t0 = notes_track(0, &[(0, 480, 60), (960, 1440, 62)]);
    let mut t1 = notes_track(1, &[(0, 1440, 48)]);
    t1.push((480, Ev::Tempo(1_000_000)));
    let s = score::load_bytes(&smf(ppq(480), &[t0, t1]), "x.mid").unwrap();
    assert_eq!(s.tempo.micros(480).0, 500_000);
    assert_eq!(s.tempo.micros(960).0, 1_500_000);
    assert_eq!(s.tempo.micros(1440).0, 2_500_000);
}
