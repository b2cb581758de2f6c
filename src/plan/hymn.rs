//! Hymns: a score that holds one verse, unrolled into the performance a service needs — the
//! play-over (the tune, or part of it, given out before verse 1), verses 1..N with a breath
//! between them, fermatas held for a time or until the operator continues, a verse's own
//! registration, and an amen.
//!
//! Pure, like the rest of the planner: [`plan_hymn`] builds the sequence of score segments and
//! hands it to the same segment planner that plays a piece once, so times stay exact (ticks
//! through the tempo map, rounded once) and the registration is chased at every boundary.
//!
//! Timing rules (all exact, at the plan's speed):
//! - every section ends at its last note-off (a trailing rest is not played); the next starts
//!   `gap` later (the gap also comes after the play-over and before the amen): by default
//!   [`DEFAULT_GAP`], one beat, the breath an organist takes; `gap = "0"` runs them together;
//! - a gap in beats uses the beat and tempo at the end of the section before it; in seconds it
//!   is clock time and does not change with `--tempo`;
//! - a fermata at bar:beat holds the chord struck there (or sounding there): everything from the
//!   end of that chord on is delayed by `hold` (beats at the fermata's tempo, or seconds);
//!   `wait = true` stops the plan at the end of the chord, keys down, until the operator
//!   continues. Holds apply to the play-over too; waits only to verses and the amen;
//! - each verse (and the play-over) starts from the registration file's state at its first bar,
//!   then the item's `preset`, then its own `[[verse]]` registration; the amen carries on with
//!   the registration of the last verse.

use super::{
    EXACT_ZERO, Gap, PlanError, PlanOptions, PlanWarning, SectionKind, Segment, StartOverride, Timeline, WarningKind,
    assignment, exact_add, no_such_beat, past_the_end, plan_segments,
};
use crate::midi::Micros;
use crate::organ::Organ;
use crate::registration::Registration;
use crate::registration::hymn::{Amen, Bars, DEFAULT_FERMATA, DEFAULT_GAP, HymnOptions, Length, MAX_VERSES};
use crate::score::{ExactTime, Score, Timing};

// --- planning ----------------------------------------------------------------------------------

/// The exact duration of `ticks_num / ticks_den` ticks of `score` at `tick`'s tempo (µs at the
/// written tempo).
fn ticks_time(score: &Score, tick: u64, ticks_num: u128, ticks_den: u128) -> ExactTime {
    match score.tempo.timing() {
        Timing::Metrical { ppq } => ExactTime {
            num: ticks_num * u128::from(score.tempo.us_per_quarter_at(tick)),
            den: ticks_den * u128::from(ppq.max(1)),
        },
        Timing::Timecode { .. } => {
            let one = score.tempo.exact(1);
            ExactTime { num: ticks_num * one.num, den: ticks_den * one.den }
        }
    }
}

/// The beat length (ticks) at `tick`.
fn beat_ticks(score: &Score, tick: u64) -> u64 {
    score.meter.position(tick).beat_ticks
}

/// A length at `tick`: beats of the meter there at the tempo there (score time), or clock time.
fn length_at(score: &Score, tick: u64, len: Length) -> Gap {
    match len {
        Length::Beats(b) => {
            let milli = (b * 1000.0).round() as u128;
            let t = ticks_time(score, tick, milli * u128::from(beat_ticks(score, tick)), 1000);
            Gap { scaled: exact_add(EXACT_ZERO, t), fixed: Micros::ZERO }
        }
        Length::Time(us) => Gap { scaled: EXACT_ZERO, fixed: us },
    }
}

/// End of the last sound of the played parts among notes starting in `[from, to)`, cut at `to`.
fn last_sound(score: &Score, assignment: &[Option<usize>], from: u64, to: u64) -> u64 {
    score
        .parts
        .iter()
        .zip(assignment)
        .filter(|(_, a)| a.is_some())
        .flat_map(|(p, _)| p.notes.iter())
        .filter(|n| n.start >= from && n.start < to && n.end > n.start)
        .map(|n| n.end.min(to))
        .max()
        .unwrap_or(from)
}

/// Where a fermata at `f` takes effect: the end of the chord struck there (notes starting at
/// `f`, allowing a 128th-note of slack for files that start notes a tick late), else of the
/// notes sounding there, else `f` itself (a fermata over a rest).
fn fermata_end(score: &Score, assignment: &[Option<usize>], f: u64) -> u64 {
    let slack = (score.meter.quarter_ticks() / 32).max(1);
    let notes = || score.parts.iter().zip(assignment).filter(|(_, a)| a.is_some()).flat_map(|(p, _)| p.notes.iter());
    notes()
        .filter(|n| n.start >= f && n.start <= f + slack && n.end > n.start)
        .map(|n| n.end)
        .max()
        .or_else(|| notes().filter(|n| n.start < f && n.end > f).map(|n| n.end).max())
        .unwrap_or(f)
}

/// Unrolls a hymn into one plan: play-over, verses 1..N with gaps, fermatas, per-verse
/// registration and amen. `amen_score` is the loaded amen file when `hymn.amen` names one.
///
/// # Errors
/// Bars or fermatas outside the score, an amen that leaves no verse, `--from`/`--until` at a
/// plain bar (which apply to a piece; inside a hymn they name a section, [`super::range`]), and
/// everything [`super::plan`] refuses.
pub fn plan_hymn(
    score: &Score,
    amen_score: Option<&Score>,
    organ: &Organ,
    registration: Option<&Registration>,
    opts: &PlanOptions,
    hymn: &HymnOptions,
) -> Result<Timeline, PlanError> {
    if opts.from.is_some() || opts.until.is_some() {
        return Err(PlanError::HymnWithRange);
    }
    let verses = hymn.verses.unwrap_or(1);
    if verses == 0 || verses > MAX_VERSES {
        return Err(PlanError::Verses { verses });
    }
    let assign = assignment(score, organ, registration, opts)?;
    let bars = HymnBars::new(score, &assign, hymn)?;
    let fermatas = Fermatas::new(score, &assign, hymn, opts)?;
    let unroll = Unroll { score, assign, registration, hymn, verses, bars, fermatas };
    let mut segments = unroll.play_over_and_verses();
    if let Some(amen) = unroll.amen(amen_score, organ, opts)? {
        segments.push(amen);
    }
    let mut notes = Vec::new();
    if opts.hymn_from.is_some() || opts.hymn_until.is_some() {
        let extra = super::controls::extra_stops(organ, &opts.stops)?;
        let range = (opts.hymn_from.as_ref(), opts.hymn_until.as_ref());
        (segments, notes) = super::range::trim(organ, segments, range, &extra)?;
    }
    let mut t = plan_segments(organ, opts, &segments, score)?;
    t.warnings.splice(0..0, unroll.fermatas.warnings.iter().cloned().chain(notes));
    for v in &hymn.verse_registrations {
        if v.number > verses {
            let text = format!("the registration for verse {} is not used: the hymn has {verses} verse(s)", v.number);
            t.warnings.push(PlanWarning::new(WarningKind::NotPlayed, text));
        }
        if v.number == 0 && unroll.bars.play_over.is_none() {
            let text = "the registration for the play-over (verse 0) is not used: there is no play-over";
            t.warnings.push(PlanWarning::new(WarningKind::NotPlayed, text));
        }
    }
    Ok(t)
}

/// The stretches of the score a hymn plays, in ticks.
struct HymnBars {
    /// The verse ends here: its last sound before the amen's bars (or the end of the score).
    verse_until: u64,
    /// The play-over's first tick and last sound.
    play_over: Option<(u64, u64)>,
    /// The amen's bars at the end of the score: first tick and last sound.
    amen: Option<(u64, u64)>,
}

impl HymnBars {
    /// The verse is the whole score, or the score up to the amen's first bar.
    ///
    /// # Errors
    /// Bars after the end of the score (the play-over: of the verse), amen bars that leave no
    /// verse, play-over bars without notes.
    fn new(score: &Score, assign: &[Option<usize>], hymn: &HymnOptions) -> Result<HymnBars, PlanError> {
        let music_end = score.last_note_end();
        let last_bar = score.meter.position(music_end.saturating_sub(1)).bar;
        let bar_start = |bar: u32| -> u64 { score.meter.bar_start(bar).unwrap_or(music_end).min(music_end) };
        let check_bars = |what: &'static str, first: u32, last: u32, bars: u32| -> Result<(), PlanError> {
            if last > bars {
                return Err(PlanError::BarsPastTheEnd { what, first, last, score: score.name.clone(), bars });
            }
            Ok(())
        };
        let (verse_limit, amen) = match &hymn.amen {
            Some(Amen::Bars(a, b)) => {
                check_bars("amen", *a, *b, last_bar)?;
                if *a < 2 {
                    return Err(PlanError::AmenAtStart { first: *a, last: *b });
                }
                let from = bar_start(*a);
                let until = if *b >= last_bar { music_end } else { bar_start(b + 1) };
                (from, Some((from, last_sound(score, assign, from, until))))
            }
            _ => (music_end, None),
        };
        let verse_until = last_sound(score, assign, 0, verse_limit);
        if verse_until == 0 {
            return Err(PlanError::NoVerse { score: score.name.clone() });
        }
        let verse_last_bar = score.meter.position(verse_limit.saturating_sub(1)).bar;
        let play_over = match hymn.play_over.unwrap_or(Bars::None) {
            Bars::None => None,
            Bars::All => Some((0, verse_until)),
            Bars::Range(a, b) => {
                check_bars("play-over", a, b, verse_last_bar)?;
                let from = bar_start(a);
                let to = if b >= verse_last_bar { verse_limit } else { bar_start(b + 1) };
                let until = last_sound(score, assign, from, to);
                if until <= from {
                    return Err(PlanError::EmptyPlayOver { first: a, last: b });
                }
                Some((from, until))
            }
        };
        Ok(HymnBars { verse_until, play_over, amen })
    }
}

/// The hymn's fermatas: where a hold delays the rest, and where the plan waits.
struct Fermatas {
    /// (tick where the delay goes, hold as score time), sorted by tick.
    holds: Vec<(u64, ExactTime)>,
    /// Ticks where the plan waits for the operator, sorted, once each.
    waits: Vec<u64>,
    /// Fermatas given twice, or on the chord of another one: each chord is held once.
    warnings: Vec<PlanWarning>,
}

impl Fermatas {
    /// Each fermata takes effect at the end of the chord it is over ([`fermata_end`]); a hold in
    /// seconds becomes the score time the plan's speed maps onto it.
    ///
    /// # Errors
    /// A fermata after the last bar, or on a beat its bar does not have.
    fn new(
        score: &Score,
        assign: &[Option<usize>],
        hymn: &HymnOptions,
        opts: &PlanOptions,
    ) -> Result<Fermatas, PlanError> {
        let last_bar = score.meter.position(score.last_note_end().saturating_sub(1)).bar;
        // The speed factor on times (as the segment planner computes it), for holds in seconds.
        let factor = opts.speed.time_factor(score.tempo.us_per_quarter_at(0));
        let fermata = hymn.fermata.unwrap_or(DEFAULT_FERMATA);
        let mut holds: Vec<(u64, ExactTime)> = Vec::new();
        let mut waits: Vec<u64> = Vec::new();
        let mut warnings: Vec<PlanWarning> = Vec::new();
        // (chord end, the fermata as written) of each fermata taken.
        let mut taken: Vec<(u64, String)> = Vec::new();
        for &(bar, beat) in hymn.fermatas.as_deref().unwrap_or(&[]) {
            if bar > last_bar {
                return Err(past_the_end(score, "fermata", format!("{bar}:{beat}"), last_bar));
            }
            let f = score
                .meter
                .tick_of(bar, beat)
                .ok_or_else(|| no_such_beat(score, "fermata", format!("{bar}:{beat}"), bar))?;
            let at = fermata_end(score, assign, f);
            let written = format!("{bar}:{beat}");
            if let Some((_, other)) = taken.iter().find(|t| t.0 == at) {
                let text = if *other == written {
                    format!("fermata {written} is given twice: its chord is held once")
                } else {
                    format!("fermata {written} is on the chord of fermata {other}: the chord is held once")
                };
                let mut w = PlanWarning::new(WarningKind::NoEffect, text);
                w.position = Some(score.meter.position(f));
                warnings.push(w);
                continue;
            }
            taken.push((at, written));
            if let Some(h) = fermata.hold {
                let g = length_at(score, f, h);
                let t = exact_add(g.scaled, ExactTime { num: u128::from(g.fixed.0) * factor.1, den: factor.0 });
                holds.push((at, t));
            }
            if fermata.wait {
                waits.push(at);
            }
        }
        holds.sort_by_key(|f| f.0);
        waits.sort_unstable();
        waits.dedup();
        Ok(Fermatas { holds, waits, warnings })
    }

    /// The holds in `(from, until]`.
    fn holds_in(&self, from: u64, until: u64) -> Vec<(u64, ExactTime)> {
        self.holds.iter().filter(|h| h.0 > from && h.0 <= until).copied().collect()
    }

    /// The waits in `(from, until]`.
    fn waits_in(&self, from: u64, until: u64) -> Vec<u64> {
        self.waits.iter().copied().filter(|&w| w > from && w <= until).collect()
    }
}

/// Everything needed to lay a hymn out as segments.
struct Unroll<'a> {
    score: &'a Score,
    assign: Vec<Option<usize>>,
    registration: Option<&'a Registration>,
    hymn: &'a HymnOptions,
    verses: u16,
    bars: HymnBars,
    fermatas: Fermatas,
}

impl<'a> Unroll<'a> {
    /// The gap after a section of `score` that ends at `until` (the hymn's, else
    /// [`DEFAULT_GAP`]): in the beats there, or clock time.
    fn gap_after(&self, score: &Score, until: u64) -> Gap {
        length_at(score, until.saturating_sub(1), self.hymn.gap.unwrap_or(DEFAULT_GAP))
    }

    /// The registration verse `number` (0: the play-over) starts with on top of the chased one:
    /// its `[[verse]]` entry, else the hymn's preset.
    fn override_for(&self, number: u16) -> Option<StartOverride> {
        let v = self.hymn.verse_registrations.iter().find(|v| v.number == number);
        let o = StartOverride {
            preset: v.and_then(|v| v.preset).or(self.hymn.preset),
            on: v.map(|v| v.on.clone()).unwrap_or_default(),
            off: v.map(|v| v.off.clone()).unwrap_or_default(),
        };
        (o != StartOverride::default()).then_some(o)
    }

    /// A section of the hymn's own score, from `from` to `until`.
    fn section(&self, kind: SectionKind, verse: u16, (from, until): (u64, u64), gap_before: Gap) -> Segment<'a> {
        Segment {
            score: self.score,
            assignment: self.assign.clone(),
            registration: self.registration,
            from,
            until,
            gap_before,
            holds: self.fermatas.holds_in(from, until),
            waits: Vec::new(),
            carry_registration: false,
            start_override: None,
            kind,
            verse,
            verses: self.verses,
        }
    }

    /// The play-over (holds, no waits, its own registration as verse 0), then the verses (holds,
    /// waits, their own registrations), each after the gap.
    fn play_over_and_verses(&self) -> Vec<Segment<'a>> {
        let mut segments = Vec::new();
        if let Some(range) = self.bars.play_over {
            let mut s = self.section(SectionKind::PlayOver, 0, range, Gap::default());
            s.start_override = self.override_for(0);
            segments.push(s);
        }
        let verse_until = self.bars.verse_until;
        for v in 1..=self.verses {
            let gap_before = match segments.last() {
                Some(previous) => self.gap_after(self.score, previous.until),
                None => Gap::default(),
            };
            let mut s = self.section(SectionKind::Verse, v, (0, verse_until), gap_before);
            s.waits = self.fermatas.waits_in(0, verse_until);
            s.start_override = self.override_for(v);
            segments.push(s);
        }
        segments
    }

    /// The amen after the last verse, carrying on its registration: bars at the end of the
    /// score (with their fermatas), or a file played whole with the hymn's layout.
    ///
    /// # Errors
    /// An amen file that was not loaded, or whose parts the layout does not fit.
    fn amen(
        &self,
        amen_score: Option<&'a Score>,
        organ: &Organ,
        opts: &PlanOptions,
    ) -> Result<Option<Segment<'a>>, PlanError> {
        let gap_before = self.gap_after(self.score, self.bars.verse_until);
        match (&self.hymn.amen, self.bars.amen) {
            (Some(Amen::Bars(..)), Some((from, until))) => {
                let mut s = self.section(SectionKind::Amen, 0, (from, until), gap_before);
                s.waits = self.fermatas.waits_in(from, until);
                s.carry_registration = true;
                Ok(Some(s))
            }
            (Some(Amen::File(path)), _) => {
                let amen = amen_score.ok_or_else(|| PlanError::AmenNotLoaded { path: path.clone() })?;
                let assignment = assignment(amen, organ, self.registration, opts)
                    .map_err(|e| PlanError::AmenFile { score: amen.name.clone(), error: Box::new(e) })?;
                Ok(Some(Segment {
                    score: amen,
                    assignment,
                    registration: None,
                    from: 0,
                    until: amen.last_note_end(),
                    gap_before,
                    holds: Vec::new(),
                    waits: Vec::new(),
                    carry_registration: true,
                    start_override: None,
                    kind: SectionKind::Amen,
                    verse: 0,
                    verses: self.verses,
                }))
            }
            _ => Ok(None),
        }
    }
}

/// A small hymn made for tests (engine tests use it too): 4/4 at 120 bpm, PPQ 480, verse bars
/// 1-4 and an amen in bars 5-6, a Great part in half notes and a Pedal part in whole notes, on
/// a five-control organ with a General Cancel.
#[cfg(test)]
pub(crate) mod fixture {
    use midly::num::{u4, u7, u15, u24, u28};
    use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

    use crate::organ::Organ;
    use crate::registration::Registration;
    use crate::score::Score;

    pub const ORGAN: &str = r#"
name = "Test organ"
[division.great]
code = "G"
channel = 2
[division.pedal]
code = "P"
channel = 3
compass = [36, 67]
[[stop]]
name = "Gt Open Diapason 8"
division = "great"
on = { cc = 20, value = 127, channel = 16 }
[[stop]]
name = "Gt Principal 4"
division = "great"
on = { cc = 21, value = 127, channel = 16 }
[[stop]]
name = "Gt Trumpet 8"
division = "great"
on = { cc = 22, value = 127, channel = 16 }
[[stop]]
name = "Ped Bourdon 16"
division = "pedal"
on = { cc = 23, value = 127, channel = 16 }
[[coupler]]
name = "Gt to Ped"
from = "great"
to = "pedal"
on = { cc = 24, value = 127, channel = 16 }
[preset]
p = ["Gt Open Diapason 8", "Ped Bourdon 16"]
mf = ["Gt Open Diapason 8", "Gt Principal 4", "Ped Bourdon 16", "Gt to Ped"]
[cancel]
message = { sysex = "F0 7D 01 F7" }
[timing]
stop_lead_ms = 40
stop_pace_ms = 4
"#;

    pub const REGISTRATION: &str = r#"
layout = "GP"
[[change]]
at = "1"
preset = "mf"
[[change]]
at = "3"
on = ["Gt Trumpet 8"]
[hymn]
verses = 4
play_over = "3-4"
gap = "2 beats"
amen = "5-6"
fermatas = ["2:3"]
fermata = { hold = "1 beat" }
[[verse]]
number = 3
preset = "p"
"#;

    /// Bar `b` (from 1), beat `beat` (from 1) in ticks.
    pub fn at(b: u64, beat: u64) -> u64 {
        (b - 1) * 1920 + (beat - 1) * 480
    }

    fn track(notes: &[(u64, u64, u8)], ch: u8) -> Vec<TrackEvent<'static>> {
        let mut evs: Vec<(u64, bool, u8)> = Vec::new();
        for &(s, e, k) in notes {
            evs.push((s, true, k));
            evs.push((e, false, k));
        }
        evs.sort_by_key(|&(t, on, k)| (t, on, k));
        let mut last = 0;
        let mut out = Vec::new();
        for (t, on, k) in evs {
            let message = if on {
                MidiMessage::NoteOn { key: u7::new(k), vel: u7::new(80) }
            } else {
                MidiMessage::NoteOff { key: u7::new(k), vel: u7::new(0) }
            };
            out.push(TrackEvent {
                delta: u28::new((t - last) as u32),
                kind: TrackEventKind::Midi { channel: u4::new(ch), message },
            });
            last = t;
        }
        out.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
        out
    }

    /// The score: Great half notes (C4 then E4 in every bar; F4, E4 whole notes in the amen),
    /// Pedal whole notes (C3; F2, C3 in the amen).
    pub fn score() -> Score {
        let mut great = Vec::new();
        let mut pedal = Vec::new();
        for b in 1..=4 {
            great.push((at(b, 1), at(b, 3), 60));
            great.push((at(b, 3), at(b + 1, 1), 64));
            pedal.push((at(b, 1), at(b + 1, 1), 48));
        }
        great.push((at(5, 1), at(6, 1), 65));
        great.push((at(6, 1), at(7, 1), 64));
        pedal.push((at(5, 1), at(6, 1), 41));
        pedal.push((at(6, 1), at(7, 1), 48));
        let conductor = vec![
            TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(500_000))) },
            TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::TimeSignature(4, 2, 24, 8)) },
            TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) },
        ];
        let smf = Smf {
            header: Header { format: Format::Parallel, timing: Timing::Metrical(u15::new(480)) },
            tracks: vec![conductor, track(&great, 1), track(&pedal, 2)],
        };
        let mut bytes = Vec::new();
        smf.write_std(&mut bytes).unwrap();
        crate::score::load_bytes(&bytes, "test-hymn.mid").unwrap()
    }

    pub fn organ() -> Organ {
        Organ::from_toml(ORGAN, "test-organ.toml").unwrap()
    }

    pub fn registration(organ: &Organ, text: &str) -> Registration {
        Registration::from_toml(text, "test-hymn.toml", organ).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{self, at};
    use super::*;
    use crate::plan::{Event, Kind, WaitKind};
    use crate::registration::At;
    use crate::registration::hymn::Fermata;

    fn plan_fixture(reg_text: &str, over: &HymnOptions, opts: &PlanOptions) -> Timeline {
        let organ = fixture::organ();
        let score = fixture::score();
        let reg = fixture::registration(&organ, reg_text);
        let hymn = reg.hymn.overridden_by(over);
        plan_hymn(&score, None, &organ, Some(&reg), opts, &hymn).unwrap()
    }

    fn notes(t: &Timeline, kind: Kind) -> Vec<(u64, u8, u8)> {
        t.events
            .iter()
            .filter(|e| e.kind == kind && e.division == 0)
            .map(|e| {
                let b = t.bytes(&e.msg);
                (e.t.0, b[1], e.section as u8)
            })
            .collect()
    }

    /// (time, control name, on?) of every registration message after the setup.
    fn stop_changes(t: &Timeline) -> Vec<(u64, &str, bool)> {
        t.events
            .iter()
            .filter(|e| e.kind.is_registration() && e.kind != Kind::Cancel && e.t.0 > 20_000)
            .map(|e| {
                (
                    e.t.0,
                    t.controls[e.control().unwrap()].name.as_str(),
                    matches!(e.kind, Kind::StopOn | Kind::CouplerOn),
                )
            })
            .collect()
    }

    /// The worked example: every time below is computed by hand from 120 bpm (a quarter is
    /// 0.5 s), a 40 ms stop lead and 4 ms stop pace.
    #[test]
    fn unrolled_times_match_the_hand_computed_ones() {
        let t = plan_fixture(fixture::REGISTRATION, &HymnOptions::default(), &PlanOptions::default());
        // Setup: the cancel at 0, then the play-over's registration (bar 3: mf + Trumpet, five
        // controls) at 4, 8, 12, 16, 20 ms; the music starts 40 ms after the last: 60 ms.
        let kinds: Vec<(u64, Kind)> = t.events.iter().take(6).map(|e| (e.t.0, e.kind)).collect();
        assert_eq!(kinds[0], (0, Kind::Cancel));
        assert_eq!(kinds[1..].iter().map(|k| k.0).collect::<Vec<_>>(), vec![4_000, 8_000, 12_000, 16_000, 20_000]);
        // Sections: play-over 4 s (bars 3-4), gap 2 beats = 1 s, verses 8 s + 0.5 s fermata,
        // gap 1 s, …, amen 4 s.
        let spans: Vec<(SectionKind, u16, u64, u64)> =
            t.sections.iter().map(|s| (s.kind, s.verse, s.start.0, s.end.0)).collect();
        assert_eq!(
            spans,
            vec![
                (SectionKind::PlayOver, 0, 60_000, 4_060_000),
                (SectionKind::Verse, 1, 5_060_000, 13_560_000),
                (SectionKind::Verse, 2, 14_560_000, 23_060_000),
                (SectionKind::Verse, 3, 24_060_000, 32_560_000),
                (SectionKind::Verse, 4, 33_560_000, 42_060_000),
                (SectionKind::Amen, 0, 43_060_000, 47_060_000),
            ]
        );
        // Great note-ons: play-over bars 3-4, then every verse: C4 at beat 1, E4 at beat 3.
        let ons = notes(&t, Kind::NoteOn);
        let mut expect = vec![(60_000, 60, 0), (1_060_000, 64, 0), (2_060_000, 60, 0), (3_060_000, 64, 0)];
        for (s, v0) in [(1u8, 5_060_000u64), (2, 14_560_000), (3, 24_060_000), (4, 33_560_000)] {
            // Bars 1-2 on time; the fermata on 2:3 holds E4 half a second longer, so bars 3-4
            // come 0.5 s late.
            expect.extend([
                (v0, 60, s),
                (v0 + 1_000_000, 64, s),
                (v0 + 2_000_000, 60, s),
                (v0 + 3_000_000, 64, s),
                (v0 + 4_500_000, 60, s),
                (v0 + 5_500_000, 64, s),
                (v0 + 6_500_000, 60, s),
                (v0 + 7_500_000, 64, s),
            ]);
        }
        expect.extend([(43_060_000, 65, 5), (45_060_000, 64, 5)]);
        assert_eq!(ons, expect);
        // The fermata chord: E4 struck at 2:3 sounds 1.5 s (two beats plus the one-beat hold).
        let offs = notes(&t, Kind::NoteOff);
        assert!(offs.contains(&(5_060_000 + 4_500_000, 64, 1)));
        assert!(!offs.contains(&(5_060_000 + 4_000_000, 64, 1)));
        // The pedal note under it is held too.
        let ped_off = t
            .events
            .iter()
            .find(|e| e.kind == Kind::NoteOff && e.division == 1 && e.section == 1 && e.tick == at(3, 1))
            .unwrap();
        assert_eq!(ped_off.t.0, 9_560_000);
        // The end: all-notes-off on both divisions, then the cancel, at the amen's last note-off.
        let tail: Vec<(u64, Kind)> = t.events.iter().rev().take(3).map(|e| (e.t.0, e.kind)).collect();
        assert_eq!(
            tail,
            vec![(47_060_000, Kind::Cancel), (47_060_000, Kind::AllNotesOff), (47_060_000, Kind::AllNotesOff)]
        );
        assert_eq!(t.duration.0, 47_060_000);
        // Provenance.
        let e: &Event = t.events.iter().find(|e| e.t.0 == 24_060_000 + 4_500_000 && e.kind == Kind::NoteOn).unwrap();
        assert_eq!(t.section_of(e).unwrap().label(), "verse 3 of 4");
        assert_eq!(t.position(e).to_string(), "3:1");
        let j = t.json_event(e);
        assert_eq!((j.section, j.verse, j.bar), (Some("verse"), Some(3), 3));
    }

    #[test]
    fn registration_is_chased_at_every_boundary() {
        let t = plan_fixture(fixture::REGISTRATION, &HymnOptions::default(), &PlanOptions::default());
        let expect = vec![
            // Verse 1 starts from bar 1's mf: the Trumpet (drawn at bar 3 for the play-over)
            // goes in 40 ms before it; at bar 3 (0.5 s late after the fermata) it comes back.
            (5_020_000, "Gt Trumpet 8", false),
            (9_520_000, "Gt Trumpet 8", true),
            (14_520_000, "Gt Trumpet 8", false),
            (19_020_000, "Gt Trumpet 8", true),
            // Verse 3 has its own registration, p: three controls in, paced 4 ms apart and
            // finishing 40 ms before the verse.
            (24_012_000, "Gt Principal 4", false),
            (24_016_000, "Gt Trumpet 8", false),
            (24_020_000, "Gt to Ped", false),
            (28_520_000, "Gt Trumpet 8", true),
            // Verse 4 is back to mf (Trumpet in, Principal and the coupler out).
            (33_512_000, "Gt Trumpet 8", false),
            (33_516_000, "Gt Principal 4", true),
            (33_520_000, "Gt to Ped", true),
            (38_020_000, "Gt Trumpet 8", true),
            // The amen carries on with verse 4's registration; nothing changes.
        ];
        assert_eq!(stop_changes(&t), expect);
        let at = |us: u64| t.registration_at(Micros(us)).unwrap().preset.clone();
        assert_eq!(at(25_000_000), Some("p".to_string()));
        assert_eq!(at(34_000_000), Some("mf".to_string()));
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn wait_fermatas_and_section_ends_are_marked_for_the_engine() {
        let over = HymnOptions { fermata: Some(Fermata { hold: None, wait: true }), ..HymnOptions::default() };
        let t = plan_fixture(fixture::REGISTRATION, &over, &PlanOptions::default());
        // Without the hold, verses last 8 s.
        assert_eq!(t.sections[1].start.0, 5_060_000);
        assert_eq!(t.sections[1].end.0, 13_060_000);
        let fermatas: Vec<&crate::plan::WaitPoint> = t.waits.iter().filter(|w| w.kind == WaitKind::Fermata).collect();
        assert_eq!(fermatas.len(), 4, "one per verse, none in the play-over");
        for w in &fermatas {
            let v0 = t.sections[usize::from(w.section)].start.0;
            // The first message after the fermata is bar 3's Trumpet, 40 ms before the notes
            // that need it: the wait comes before it, so the held chord keeps its sound.
            let e = &t.events[w.index];
            assert_eq!((e.kind, t.controls[e.control().unwrap()].name.as_str()), (Kind::StopOn, "Gt Trumpet 8"));
            assert_eq!(w.t.0, v0 + 4_000_000 - 40_000);
            // Every message before the wait is due no later than it, and the chord is still down.
            assert!(t.events[..w.index].iter().all(|e| e.t <= w.t));
            let held = t.events[..w.index].iter().filter(|e| e.kind == Kind::NoteOn).count()
                - t.events[..w.index].iter().filter(|e| e.kind == Kind::NoteOff).count();
            assert_eq!(held, 2, "E4 and the pedal C3 sound through the wait");
        }
        let ends: Vec<(u16, u64)> =
            t.waits.iter().filter(|w| w.kind == WaitKind::SectionEnd).map(|w| (w.section, w.t.0)).collect();
        assert_eq!(ends, vec![(0, 4_060_000), (1, 13_060_000), (2, 22_060_000), (3, 31_060_000), (4, 40_060_000)]);
        for w in t.waits.iter().filter(|w| w.kind == WaitKind::SectionEnd) {
            // After the last message of the section, before anything of the next one.
            assert!(t.events[..w.index].iter().all(|e| e.section <= w.section));
            assert!(t.events[w.index..].iter().all(|e| e.section > w.section));
        }
    }

    #[test]
    fn gap_in_seconds_is_clock_time_and_beats_follow_the_tempo() {
        let half_speed = PlanOptions { speed: crate::plan::Speed::Percent(50.0), ..PlanOptions::default() };
        let secs = HymnOptions { gap: Some(Length::Time(Micros(1_500_000))), ..HymnOptions::default() };
        let t = plan_fixture(fixture::REGISTRATION, &secs, &half_speed);
        // At half speed the play-over lasts 8 s; the gap stays 1.5 s.
        assert_eq!(t.sections[0].end.0, 60_000 + 8_000_000);
        assert_eq!(t.sections[1].start.0, 60_000 + 8_000_000 + 1_500_000);
        let beats = plan_fixture(fixture::REGISTRATION, &HymnOptions::default(), &half_speed);
        // Two beats at half speed: 2 s.
        assert_eq!(beats.sections[1].start.0 - beats.sections[0].end.0, 2_000_000);
    }

    /// The registration messages between the end of section `s - 1` and the first note of `s`.
    fn breath_changes(t: &Timeline, s: usize) -> Vec<u64> {
        t.events.iter().filter(|e| e.kind.is_registration() && usize::from(e.section) == s).map(|e| e.t.0).collect()
    }

    #[test]
    fn a_verse_registration_is_drawn_in_the_breath_before_it() {
        // Verse 3 has its own preset (p: three controls change). A gap of 2 beats (1 s): the
        // change ends stop_lead_ms (40 ms) before the verse, well after verse 2's last release.
        let t = plan_fixture(fixture::REGISTRATION, &HymnOptions::default(), &PlanOptions::default());
        let (end2, start3) = (t.sections[2].end.0, t.sections[3].start.0);
        let v3: Vec<u64> = breath_changes(&t, 3).into_iter().filter(|&x| x < start3).collect();
        assert_eq!(v3, [start3 - 48_000, start3 - 44_000, start3 - 40_000]);
        assert!(v3[0] > end2);
        assert!(t.warnings.iter().all(|w| w.kind != WarningKind::ShortBreath), "{:?}", t.warnings);

        // A 10 ms breath: the change starts at verse 2's last release, after its last chord,
        // and is late, with a warning.
        let short = HymnOptions { gap: Some(Length::Time(Micros(10_000))), ..HymnOptions::default() };
        let t = plan_fixture(fixture::REGISTRATION, &short, &PlanOptions::default());
        let (end2, start3) = (t.sections[2].end.0, t.sections[3].start.0);
        assert_eq!(start3 - end2, 10_000);
        let v3: Vec<u64> = breath_changes(&t, 3).into_iter().filter(|&x| x < start3 + 10_000).collect();
        assert_eq!(v3, [end2, end2 + 4_000, end2 + 8_000]);
        // Every verse starts with a change here (verses 1, 2 and 4 put the Trumpet in).
        let short: Vec<&PlanWarning> = t.warnings.iter().filter(|w| w.kind == WarningKind::ShortBreath).collect();
        assert_eq!(short.iter().map(|w| w.section).collect::<Vec<_>>(), [Some(1), Some(2), Some(3), Some(4)]);
        let w = short[2];
        assert_eq!(
            w.to_string(),
            "verse 3, bar 1:1: the breath before it (10 ms) is too short for its registration change (3 stop message(s)) and stop_lead_ms: it finishes 38.0 ms later than stop_lead_ms asks; lengthen the gap"
        );
        assert_eq!(w.t, Some(Micros(end2)));
    }

    #[test]
    fn without_a_gap_sections_breathe_one_beat_and_gap_0_runs_them_together() {
        let none = fixture::REGISTRATION.replace("gap = \"2 beats\"\n", "");
        let t = plan_fixture(&none, &HymnOptions::default(), &PlanOptions::default());
        for pair in t.sections.windows(2) {
            assert_eq!(pair[1].start.0 - pair[0].end.0, 500_000, "one beat at 120 bpm");
        }
        let zero =
            HymnOptions { gap: Some(crate::registration::hymn::parse_length("0").unwrap()), ..HymnOptions::default() };
        let t = plan_fixture(&none, &zero, &PlanOptions::default());
        for pair in t.sections.windows(2) {
            assert_eq!(pair[1].start, pair[0].end);
        }
    }

    /// Note events as (section kind, verse, tick, bytes) from the first note-on at or after
    /// (`verse`, `tick`).
    fn notes_from(t: &Timeline, verse: u16, tick: u64) -> Vec<(SectionKind, u16, u64, Vec<u8>)> {
        let all: Vec<(SectionKind, u16, u64, Vec<u8>)> = t
            .events
            .iter()
            .filter(|e| matches!(e.kind, Kind::NoteOn | Kind::NoteOff))
            .map(|e| {
                let s = t.section_of(e).unwrap();
                (s.kind, s.verse, e.tick, t.bytes(&e.msg).to_vec())
            })
            .collect();
        let i =
            all.iter().position(|n| n.0 == SectionKind::Verse && n.1 == verse && n.2 >= tick && n.3[0] & 0xF0 == 0x90);
        all[i.unwrap()..].to_vec()
    }

    #[test]
    fn from_inside_a_hymn_keeps_its_structure_and_registration() {
        use crate::registration::HymnAt;
        let whole = plan_fixture(fixture::REGISTRATION, &HymnOptions::default(), &PlanOptions::default());
        let from = |s: &str| PlanOptions { hymn_from: HymnAt::parse(s).unwrap(), ..PlanOptions::default() };
        // Verse 3 from bar 3: verse 3 (its own p, then bar 3's Trumpet), verse 4, the amen.
        let t = plan_fixture(fixture::REGISTRATION, &HymnOptions::default(), &from("verse:3:3"));
        let kinds: Vec<(SectionKind, u16, u32)> = t.sections.iter().map(|s| (s.kind, s.verse, s.first_bar)).collect();
        assert_eq!(kinds, [(SectionKind::Verse, 3, 3), (SectionKind::Verse, 4, 1), (SectionKind::Amen, 0, 5)]);
        assert_eq!(t.sections[0].label(), "verse 3 of 4");
        let first_note = t.events.iter().find(|e| e.kind == Kind::NoteOn).unwrap().t;
        let names = |r: &crate::plan::RegistrationState| -> Vec<String> {
            r.drawn.iter().map(|&c| t.controls[c].name.clone()).collect()
        };
        assert_eq!(
            names(t.registration_at(first_note).unwrap()),
            ["Gt Open Diapason 8", "Gt Trumpet 8", "Ped Bourdon 16"]
        );
        // From there on the notes are the whole hymn's, section by section.
        assert_eq!(notes_from(&t, 3, at(3, 1)), notes_from(&whole, 3, at(3, 1)));
        let note = t.warnings.iter().find(|w| w.kind == WarningKind::LeftOut).unwrap();
        assert_eq!(note.to_string(), "the play-over, verse 1 and verse 2 left out (--from/--until)");

        // --until verse:4:2: to the end of verse 4's bar 2; the amen is left out.
        let range = PlanOptions { hymn_until: HymnAt::parse("verse:4:2").unwrap(), ..from("verse:3:3") };
        let t = plan_fixture(fixture::REGISTRATION, &HymnOptions::default(), &range);
        assert_eq!(t.sections.len(), 2);
        assert_eq!((t.sections[1].verse, t.sections[1].last_bar), (4, 2));
        assert!(
            t.warnings
                .iter()
                .any(|w| w.text == "the play-over, verse 1, verse 2 and the amen left out (--from/--until)")
        );

        // The amen alone carries verse 4's registration (mf, and bar 3's Trumpet).
        let t = plan_fixture(fixture::REGISTRATION, &HymnOptions::default(), &from("amen"));
        assert_eq!(t.sections.iter().map(|s| s.kind).collect::<Vec<_>>(), [SectionKind::Amen]);
        let first_note = t.events.iter().find(|e| e.kind == Kind::NoteOn).unwrap().t;
        assert_eq!(
            t.registration_at(first_note).unwrap().drawn,
            whole.registration_at(whole.sections[5].start).unwrap().drawn
        );

        // Mistakes name what the hymn has.
        let organ = fixture::organ();
        let reg = fixture::registration(&organ, fixture::REGISTRATION);
        let err = |opts: PlanOptions| {
            plan_hymn(&fixture::score(), None, &organ, Some(&reg), &opts, &reg.hymn).unwrap_err().to_string()
        };
        assert_eq!(err(from("verse:7")), "--from verse:7: the hymn has a play-over, 4 verse(s) and an amen");
        assert_eq!(err(from("verse:2:6")), "--from verse:2:6: that section plays bars 1-4");
        // --until a bar past the verse's last was taken as its end, without a word.
        let until = |at: &str| PlanOptions { hymn_until: HymnAt::parse(at).unwrap(), ..PlanOptions::default() };
        assert_eq!(err(until("verse:2:6")), "--until verse:2:6: that section plays bars 1-4");
        assert_eq!(err(until("verse:2:99")), "--until verse:2:99: that section plays bars 1-4");
        let backwards = PlanOptions { hymn_until: HymnAt::parse("verse:2").unwrap(), ..from("verse:3") };
        assert!(err(backwards).contains("nothing to play"));
    }

    #[test]
    fn a_fermata_given_twice_is_held_once_with_a_warning() {
        let once = plan_fixture(fixture::REGISTRATION, &HymnOptions::default(), &PlanOptions::default());
        // 2:3 twice, and 2:3.1 on the same chord (E4, struck at 2:3).
        let thrice = HymnOptions { fermatas: Some(vec![(2, 3.0), (2, 3.0), (2, 3.1)]), ..HymnOptions::default() };
        let t = plan_fixture(fixture::REGISTRATION, &thrice, &PlanOptions::default());
        let spans = |t: &Timeline| t.sections.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>();
        assert_eq!(spans(&t), spans(&once), "held once: the verses last as long as with one fermata");
        let texts: Vec<String> =
            t.warnings.iter().filter(|w| w.kind == WarningKind::NoEffect).map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "fermata 2:3 is given twice: its chord is held once",
                "fermata 2:3.1 is on the chord of fermata 2:3: the chord is held once"
            ]
        );
    }

    #[test]
    fn command_line_values_override_the_file() {
        let over = HymnOptions {
            verses: Some(2),
            play_over: Some(Bars::None),
            amen: Some(Amen::None),
            fermatas: Some(Vec::new()),
            ..HymnOptions::default()
        };
        let t = plan_fixture(fixture::REGISTRATION, &over, &PlanOptions::default());
        let kinds: Vec<(SectionKind, u16)> = t.sections.iter().map(|s| (s.kind, s.verse)).collect();
        assert_eq!(kinds, vec![(SectionKind::Verse, 1), (SectionKind::Verse, 2)]);
        // No amen: the verse is the whole score, bars 1-6; no fermata: 12 s.
        assert_eq!(t.sections[0].end.0 - t.sections[0].start.0, 12_000_000);
        assert_eq!(t.sections[0].last_bar, 6);
        assert!(t.warnings.iter().any(|w| w.text.contains("verse 3")), "{:?}", t.warnings);
    }

    #[test]
    fn a_single_verse_without_options_plays_like_the_piece() {
        let organ = fixture::organ();
        let score = fixture::score();
        let reg = fixture::registration(&organ, "layout = \"GP\"\n[[change]]\nat = \"1\"\npreset = \"mf\"\n");
        let piece = crate::plan::plan(&score, &organ, Some(&reg), &PlanOptions::default()).unwrap();
        let hymn = HymnOptions { verses: Some(1), ..HymnOptions::default() };
        let one = plan_hymn(&score, None, &organ, Some(&reg), &PlanOptions::default(), &hymn).unwrap();
        let strip = |t: &Timeline| t.events.iter().map(|e| (e.t, e.msg, e.kind, e.tick)).collect::<Vec<_>>();
        assert_eq!(strip(&piece), strip(&one));
        assert!(piece.waits.is_empty() && one.waits.is_empty());
        assert_eq!(piece.sections[0].kind, SectionKind::Piece);
    }

    #[test]
    fn an_amen_from_another_file_follows_the_last_verse() {
        let organ = fixture::organ();
        let score = fixture::score();
        let amen = fixture::score(); // six bars, 12 s, standing in for an amen file
        let reg = fixture::registration(&organ, fixture::REGISTRATION);
        let over = HymnOptions { amen: Some(Amen::File("amen.mid".into())), ..HymnOptions::default() };
        let hymn = reg.hymn.overridden_by(&over);
        let t = plan_hymn(&score, Some(&amen), &organ, Some(&reg), &PlanOptions::default(), &hymn).unwrap();
        // Without amen bars the verse is the whole score: 12 s plus the 0.5 s fermata.
        let spans: Vec<(SectionKind, u64, u64)> = t.sections.iter().map(|s| (s.kind, s.start.0, s.end.0)).collect();
        assert_eq!(spans[1], (SectionKind::Verse, 5_060_000, 17_560_000));
        assert_eq!(spans[4], (SectionKind::Verse, 45_560_000, 58_060_000));
        assert_eq!(spans[5], (SectionKind::Amen, 59_060_000, 71_060_000), "the amen file plays whole, no fermata");
        assert!(t.sections[5].meter.is_some() && t.sections[1].meter.is_none());
        // The amen carries on with verse 4's registration; the verse file's bar-3 change is not
        // the amen file's.
        assert!(stop_changes(&t).iter().all(|c| c.0 < 59_000_000));
        let e = t
            .events
            .iter()
            .find(|e| e.section == 5 && e.kind == Kind::NoteOn && e.t.0 == 59_060_000 + 4_000_000)
            .unwrap();
        assert_eq!(t.position(e).to_string(), "3:1");
        assert_eq!(t.json_event(e).section, Some("amen"));
        // Without the loaded file: a clear error.
        let e = plan_hymn(&score, None, &organ, Some(&reg), &PlanOptions::default(), &hymn).unwrap_err();
        assert!(e.to_string().contains("amen.mid"), "{e}");
    }

    #[test]
    fn bad_options_are_refused_with_reasons() {
        let organ = fixture::organ();
        let score = fixture::score();
        let reg = fixture::registration(&organ, fixture::REGISTRATION);
        let try_ = |over: HymnOptions, opts: PlanOptions| {
            plan_hymn(&score, None, &organ, Some(&reg), &opts, &reg.hymn.overridden_by(&over)).unwrap_err().to_string()
        };
        let e = try_(HymnOptions { play_over: Some(Bars::Range(3, 5)), ..Default::default() }, PlanOptions::default());
        assert!(e.contains("play-over 3-5") && e.contains("4 bar"), "{e}");
        let e = try_(HymnOptions { amen: Some(Amen::Bars(1, 6)), ..Default::default() }, PlanOptions::default());
        assert!(e.contains("amen"), "{e}");
        let e = try_(HymnOptions { fermatas: Some(vec![(2, 5.0)]), ..Default::default() }, PlanOptions::default());
        assert!(e.contains("bar 2 has 4 beats"), "{e}");
        let from = PlanOptions { from: Some(At::Bar { bar: 2, beat: 1.0 }), ..PlanOptions::default() };
        assert!(try_(HymnOptions::default(), from).contains("--from"));
    }
}
