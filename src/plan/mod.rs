//! Planning: score + organ + registration + options → [`Timeline`].
//!
//! Pure and deterministic; runs on the control thread before playback. Everything the engine will
//! do is decided here: the time of every message (exact rational arithmetic from ticks, rounded
//! once to microseconds), which parts go to which division, transposition and compass folding,
//! one pipe per key (keys merged across parts of a division), the registration at every point
//! (chased when starting mid-piece), stop lead and pacing, and the closing release and cancel.
//!
//! Ordering rule at equal times: note-offs, then registration messages, then note-ons; the
//! closing all-notes-off and cancel come after the last note-off.

pub mod hymn;
pub mod layout;
pub mod report;
mod timeline;

use std::fmt;

use crate::midi::{Channel, Micros, ShortMsg};
use crate::organ::registration::At;
use crate::organ::{ControlId, Organ, Registration};
use crate::score::{ExactTime, Score};

pub use timeline::{
    ControlInfo, DivisionInfo, Event, Kind, Msg, NONE_U8, NONE_U16, RegistrationState, Section, SectionKind, Timeline,
    WaitKind, WaitPoint,
};

/// The layout used when neither `--layout` nor the registration file gives one.
pub const DEFAULT_LAYOUT: &str = "SSGGP";

/// The longest performance planned: 30 days.
pub const MAX_LENGTH: Micros = Micros(30 * 86_400 * 1_000_000);

/// Why a plan could not be made. One line, already naming what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub message: String,
}

impl PlanError {
    pub fn new(message: impl Into<String>) -> PlanError {
        PlanError { message: message.into() }
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PlanError {}

/// How fast to play.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Speed {
    #[default]
    AsWritten,
    /// Percent of the written tempo (80 = slower).
    Percent(f64),
    /// The opening tempo becomes this many quarter notes a minute; later tempo changes keep their
    /// proportion.
    Bpm(f64),
}

impl Speed {
    /// Parses `80%`, `80`, `1.2x` for `--tempo`.
    ///
    /// # Errors
    /// A sentence naming the accepted forms.
    pub fn parse_tempo(s: &str) -> Result<Speed, String> {
        let t = s.trim();
        let bad = || format!("--tempo {s}: write a percentage of the written tempo, e.g. 80% or 110%");
        let v: f64 = if let Some(x) = t.strip_suffix('x') {
            x.trim().parse::<f64>().map_err(|_| bad())? * 100.0
        } else {
            t.trim_end_matches('%').trim().parse().map_err(|_| bad())?
        };
        if !(10.0..=400.0).contains(&v) {
            return Err(format!("--tempo {s}: use a percentage between 10% and 400%"));
        }
        Ok(Speed::Percent(v))
    }

    /// As a rational factor on times: (mul, div) so that new time = old × mul / div.
    fn time_factor(self, first_us_per_quarter: u32) -> (u128, u128) {
        match self {
            Speed::AsWritten => (1, 1),
            Speed::Percent(p) => (100_000, (p * 1000.0).round().max(1.0) as u128),
            // new = old × (written bpm / wanted bpm) = old × 60e6 / (us_per_quarter × bpm)
            Speed::Bpm(b) => (60_000_000_000, u128::from(first_us_per_quarter) * (b * 1000.0).round().max(1.0) as u128),
        }
    }
}

/// Everything the user can ask of a plan besides the files.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--layout`, overriding the registration file's.
    pub layout: Option<String>,
    /// `--map 1=swell,…`.
    pub map: Option<String>,
    pub speed: Speed,
    /// Semitones.
    pub transpose: i32,
    /// Start here (registration chased).
    pub from: Option<At>,
    /// Stop at the end of this bar (or at this exact position for bar:beat and seconds).
    pub until: Option<At>,
    /// `--stops`: drawn at the start, on top of the registration.
    pub stops: Vec<String>,
    /// Leave the stops drawn at the end (overrides the organ's `cancel.at_end`).
    pub keep_stops: bool,
}

/// MIDI key number as a note name (60 = C4).
pub fn key_name(key: u8) -> String {
    const N: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
    format!("{}{}", N[usize::from(key % 12)], i32::from(key / 12) - 1)
}

/// One key event of a division before merging.
#[derive(Clone, Copy)]
struct KeyEvent {
    /// The segment it belongs to (segments follow each other in time).
    seg: u16,
    tick: u64,
    on: bool,
    key: u8,
    velocity: u8,
    part: u16,
}

/// A planned message before sorting: the order class breaks ties at equal times.
struct Pending {
    class: u8,
    event: Event,
}

const CLASS_NOTE_OFF: u8 = 0;
const CLASS_REGISTRATION: u8 = 1;
const CLASS_NOTE_ON: u8 = 2;
const CLASS_TAIL: u8 = 3;

/// The division of every part of `score`, from `--layout`/`--map` or the registration file.
///
/// # Errors
/// As [`layout::resolve`].
pub(crate) fn assignment(
    score: &Score,
    organ: &Organ,
    registration: Option<&Registration>,
    opts: &PlanOptions,
) -> Result<Vec<Option<usize>>, PlanError> {
    let (layout, layout_from) = match (&opts.layout, registration.and_then(|r| r.layout.as_ref())) {
        (Some(l), _) => (l.clone(), "--layout".to_string()),
        (None, Some(l)) => (l.clone(), registration.map(|r| r.source.clone()).unwrap_or_default()),
        (None, None) => (DEFAULT_LAYOUT.to_string(), "the default".to_string()),
    };
    let map = opts.map.as_deref().or(registration.and_then(|r| r.map.as_deref()));
    layout::resolve(score, organ, layout::LayoutSource { layout: &layout, from: &layout_from }, map)
}

/// Makes the plan.
///
/// # Errors
/// Layout problems, positions outside the score, unknown `--stops` names.
pub fn plan(
    score: &Score,
    organ: &Organ,
    registration: Option<&Registration>,
    opts: &PlanOptions,
) -> Result<Timeline, PlanError> {
    check_organ(organ)?;
    // --- which part plays on which division -------------------------------------------------
    let assignment = assignment(score, organ, registration, opts)?;

    // --- the performed range ----------------------------------------------------------------
    let music_end = score.last_note_end();
    let last_bar = score.meter.position(music_end.saturating_sub(1)).bar;
    let resolve_at = |at: &At, what: &str| -> Result<u64, PlanError> {
        match *at {
            At::Bar { bar, beat } => {
                if bar > last_bar {
                    return Err(PlanError::new(format!("{what} {at}: {} has {last_bar} bars", score.name)));
                }
                score.meter.tick_of(bar, beat).ok_or_else(|| {
                    let (n, _) = score.meter.signature_at(score.meter.bar_start(bar).unwrap_or(0));
                    PlanError::new(format!("{what} {at}: bar {bar} has {n} beats"))
                })
            }
            At::Time(t) => Ok(score.tempo.tick_at(t)),
        }
    };
    let from_tick = opts.from.as_ref().map(|a| resolve_at(a, "--from")).transpose()?.unwrap_or(0);
    let until_tick = match &opts.until {
        None => music_end,
        Some(At::Bar { bar, beat }) if *beat == 1.0 => {
            if *bar > last_bar {
                return Err(PlanError::new(format!("--until bar {bar}: {} has {last_bar} bars", score.name)));
            }
            score.meter.bar_start(bar.saturating_add(1)).unwrap_or(music_end).min(music_end)
        }
        Some(at) => resolve_at(at, "--until")?.min(music_end),
    };
    if until_tick <= from_tick {
        return Err(PlanError::new("--until comes before --from: nothing to play"));
    }
    let segment = Segment {
        score,
        assignment,
        registration,
        from: from_tick,
        until: until_tick,
        gap_before: Gap::default(),
        holds: Vec::new(),
        waits: Vec::new(),
        carry_registration: false,
        start_override: None,
        kind: SectionKind::Piece,
        verse: 0,
        verses: 0,
    };
    plan_segments(organ, opts, &[segment], score)
}

fn check_organ(organ: &Organ) -> Result<(), PlanError> {
    if organ.divisions.len() >= usize::from(NONE_U8) || organ.controls.len() >= usize::from(NONE_U16) {
        return Err(PlanError::new(format!("{}: too many divisions or controls", organ.source)));
    }
    Ok(())
}

// --- exact time arithmetic ------------------------------------------------------------------

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `a + b`, exactly, in lowest terms.
pub(crate) fn exact_add(a: ExactTime, b: ExactTime) -> ExactTime {
    let g = gcd(a.den, b.den).max(1);
    let den = a.den / g * b.den;
    let num = a.num * (den / a.den) + b.num * (den / b.den);
    let r = gcd(num, den).max(1);
    ExactTime { num: num / r, den: den / r }
}

pub(crate) const EXACT_ZERO: ExactTime = ExactTime { num: 0, den: 1 };

/// Silence between the end of one segment and the start of the next.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gap {
    /// Score time (µs at the written tempo), scaled by the speed like the music.
    pub scaled: ExactTime,
    /// Clock time, not scaled (a gap written in seconds).
    pub fixed: Micros,
}

impl Default for Gap {
    fn default() -> Self {
        Gap { scaled: EXACT_ZERO, fixed: Micros::ZERO }
    }
}

/// A registration applied on top of the chased one at the start of a segment (a verse's own
/// registration): `preset` replaces everything, then `off`, then `on`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StartOverride {
    pub preset: Option<usize>,
    pub on: Vec<ControlId>,
    pub off: Vec<ControlId>,
}

/// One stretch of a score in the performance, played from `from` to `until` (ticks of `score`).
pub(crate) struct Segment<'a> {
    pub score: &'a Score,
    pub assignment: Vec<Option<usize>>,
    /// Whose `[[change]]`s apply (positions in `score`).
    pub registration: Option<&'a Registration>,
    pub from: u64,
    pub until: u64,
    /// Silence before this segment (after the previous one's last note-off).
    pub gap_before: Gap,
    /// Fermata holds: at this tick everything from here on is delayed by this much score time
    /// (µs at the written tempo, exact). Sorted by tick.
    pub holds: Vec<(u64, ExactTime)>,
    /// Ticks where the plan waits for the operator (after any hold at the same tick).
    pub waits: Vec<u64>,
    /// Start from the registration in force at the end of the previous segment (an amen)
    /// instead of the registration file's state at `from`.
    pub carry_registration: bool,
    pub start_override: Option<StartOverride>,
    pub kind: SectionKind,
    pub verse: u16,
    pub verses: u16,
}

/// Plans segments played one after another into one timeline. `main` is the score whose bars
/// the timeline's `meter` describes.
pub(crate) fn plan_segments(
    organ: &Organ,
    opts: &PlanOptions,
    segments: &[Segment],
    main: &Score,
) -> Result<Timeline, PlanError> {
    check_organ(organ)?;
    let first = segments.first().ok_or_else(|| PlanError::new("nothing to play"))?;
    if segments.len() >= usize::from(NONE_U16) {
        return Err(PlanError::new("too many sections"));
    }
    let hymn = first.kind != SectionKind::Piece;
    let start_pos = first.from;

    // --- time: exact from ticks, scaled by the speed, rounded once ---------------------------
    // --bpm sets the opening tempo: of the performed range, or of a hymn's verse.
    let basis = if hymn { 0 } else { first.from };
    let (mul, div) = opts.speed.time_factor(first.score.tempo.us_per_quarter_at(basis));
    // Score time of `tick` in segment `s` since the segment's start, holds included, exact.
    let score_rel = |s: usize, tick: u64| -> ExactTime {
        let seg = &segments[s];
        let a = seg.score.tempo.exact(tick);
        let f = seg.score.tempo.exact(seg.from);
        let mut r = ExactTime { num: a.num - f.num, den: a.den };
        for &(_, d) in seg.holds.iter().take_while(|h| h.0 <= tick) {
            r = exact_add(r, d);
        }
        r
    };
    let scaled = |e: ExactTime| -> ExactTime { exact_add(EXACT_ZERO, e.scaled(mul, div)) };

    let mut warnings: Vec<String> = Vec::new();
    let divisions: Vec<DivisionInfo> = organ
        .divisions
        .iter()
        .map(|d| DivisionInfo { name: d.name.clone(), code: d.code, channel: d.channel })
        .collect();
    let where_ = |s: usize, tick: u64| -> String {
        let seg = &segments[s];
        let pos = seg.score.meter.position(tick);
        match seg.kind {
            SectionKind::Piece => format!("bar {pos}"),
            SectionKind::PlayOver => format!("play-over, bar {pos}"),
            SectionKind::Verse => format!("verse {}, bar {pos}", seg.verse),
            SectionKind::Amen => format!("amen, bar {pos}"),
        }
    };

    // --- registration: state at the start, then the changes ---------------------------------
    let mut long: Vec<Box<[u8]>> = Vec::new();
    let controls: Vec<ControlInfo> = organ
        .controls
        .iter()
        .map(|c| ControlInfo {
            name: c.name.clone(),
            kind: c.kind,
            division: c.division,
            on: c.on.iter().map(|m| Timeline::intern(&mut long, m)).collect(),
            off: c.off.iter().map(|m| Timeline::intern(&mut long, m)).collect(),
            voice: c.voice.clone(),
        })
        .collect();
    let cancel: Vec<Msg> = organ.cancel_messages().iter().map(|m| Timeline::intern(&mut long, m)).collect();

    // Each segment's changes, by tick of its own score.
    let mut seg_changes: Vec<Vec<(u64, &crate::organ::registration::Change)>> = Vec::with_capacity(segments.len());
    for seg in segments {
        let mut changes: Vec<(u64, &crate::organ::registration::Change)> = Vec::new();
        if let Some(reg) = seg.registration {
            for c in &reg.changes {
                let tick = match c.at {
                    At::Bar { bar, beat } => seg.score.meter.tick_of(bar, beat).ok_or_else(|| {
                        PlanError::new(format!("{}: change at {}: that position is not in the score", c.location, c.at))
                    })?,
                    At::Time(t) => seg.score.tempo.tick_at(t),
                };
                changes.push((tick, c));
            }
        }
        changes.sort_by_key(|c| c.0);
        seg_changes.push(changes);
    }
    let n_controls = organ.controls.len();
    let apply_parts = |state: &mut Vec<bool>, preset: Option<usize>, off: &[ControlId], on: &[ControlId]| {
        if let Some(p) = preset {
            state.iter_mut().for_each(|s| *s = false);
            for &id in &organ.presets[p].controls {
                state[id] = true;
            }
        }
        for &id in off {
            state[id] = false;
        }
        for &id in on {
            state[id] = true;
        }
    };
    let apply =
        |state: &mut Vec<bool>, c: &crate::organ::registration::Change| apply_parts(state, c.preset, &c.off, &c.on);
    // --stops: drawn at the start (of every segment that does not carry on), on top.
    let mut extra_stops: Vec<ControlId> = Vec::new();
    for s in &opts.stops {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        if let Some(p) = organ.preset(s) {
            extra_stops.extend(p.controls.iter().copied());
            continue;
        }
        let id = organ.control(s).ok_or_else(|| {
            PlanError::new(format!(
                "--stops: {} has no stop, coupler, tremulant or preset \"{s}\"{}",
                organ.name,
                organ.suggest_control(s)
            ))
        })?;
        extra_stops.push(id);
    }
    // The registration at the start of segment `s`, given the state at the end of the one before.
    let start_state = |s: usize, before: &[bool]| -> Vec<bool> {
        let seg = &segments[s];
        let mut state = if seg.carry_registration && s > 0 {
            before.to_vec()
        } else {
            let mut st = vec![false; n_controls];
            for (_, c) in seg_changes[s].iter().filter(|c| c.0 <= seg.from) {
                apply(&mut st, c);
            }
            for &id in &extra_stops {
                st[id] = true;
            }
            st
        };
        if let Some(o) = &seg.start_override {
            apply_parts(&mut state, o.preset, &o.off, &o.on);
        }
        state
    };
    let mut state = start_state(0, &[]);

    let pace = organ.stop_pace.0;
    let lead = organ.stop_lead.0;
    let mut pending: Vec<Pending> = Vec::new();
    let push_control = |pending: &mut Vec<Pending>,
                        t: u64,
                        id: ControlId,
                        kind: Kind,
                        msgs: &[Msg],
                        tick: u64,
                        class: u8,
                        section: u16| {
        for &msg in msgs {
            pending.push(Pending {
                class,
                event: Event {
                    t: Micros(t),
                    msg,
                    kind,
                    division: controls[id].division.map_or(NONE_U8, |d| d as u8),
                    control: id as u16,
                    part: 0,
                    tick,
                    section,
                },
            });
        }
    };

    // Setup: cancel, then the starting registration, one control every `pace`.
    let mut slot = 0u64;
    let mut last_stop_t: Option<u64> = None;
    match &organ.cancel {
        Some(_) => {
            for &msg in &cancel {
                pending.push(Pending {
                    class: CLASS_REGISTRATION,
                    event: Event {
                        t: Micros(0),
                        msg,
                        kind: Kind::Cancel,
                        division: NONE_U8,
                        control: NONE_U16,
                        part: 0,
                        tick: start_pos,
                        section: 0,
                    },
                });
            }
            last_stop_t = Some(0);
            slot = 1;
        }
        None => {
            for (id, c) in controls.iter().enumerate() {
                let t = slot * pace;
                push_control(&mut pending, t, id, Kind::Cancel, &c.off, start_pos, CLASS_REGISTRATION, 0);
                last_stop_t = Some(t);
                slot += 1;
            }
        }
    }
    for id in (0..n_controls).filter(|&i| state[i]) {
        let t = slot * pace;
        push_control(
            &mut pending,
            t,
            id,
            Kind::for_control(organ.controls[id].kind, true),
            &controls[id].on,
            start_pos,
            CLASS_REGISTRATION,
            0,
        );
        last_stop_t = Some(t);
        slot += 1;
    }
    let origin = if slot > 0 { (slot - 1) * pace + lead } else { 0 };
    let preset_of = |state: &[bool]| -> Option<String> {
        organ
            .presets
            .iter()
            .find(|p| p.controls.len() == state.iter().filter(|&&s| s).count() && p.controls.iter().all(|&c| state[c]))
            .map(|p| p.name.clone())
    };
    let drawn = |state: &[bool]| -> Vec<ControlId> { (0..n_controls).filter(|&i| state[i]).collect() };
    let mut registrations = vec![RegistrationState { t: Micros(0), drawn: drawn(&state), preset: preset_of(&state) }];

    // --- where each segment starts and ends, exactly -----------------------------------------
    let mut seg_start: Vec<ExactTime> = Vec::with_capacity(segments.len());
    let mut seg_end: Vec<ExactTime> = Vec::with_capacity(segments.len());
    for (s, seg) in segments.iter().enumerate() {
        let start = if s == 0 {
            ExactTime { num: u128::from(origin), den: 1 }
        } else {
            let g =
                exact_add(scaled(seg.gap_before.scaled), ExactTime { num: u128::from(seg.gap_before.fixed.0), den: 1 });
            exact_add(seg_end[s - 1], g)
        };
        seg_end.push(exact_add(start, scaled(score_rel(s, seg.until))));
        seg_start.push(start);
    }
    // Every later time is at most this plus the closing cancel, so the µs arithmetic below
    // cannot overflow. Only damaged delta times (or a hostile file) come near the limit.
    let length = seg_end.last().map_or(Micros::ZERO, |e| e.round());
    if length > MAX_LENGTH {
        return Err(PlanError::new(format!(
            "{}: the music would last {:.0} days at this speed; the file's delta times are probably damaged",
            main.name,
            length.as_secs_f64() / 86_400.0
        )));
    }
    let time = |s: usize, tick: u64| -> u64 { exact_add(seg_start[s], scaled(score_rel(s, tick))).round().0 };

    // A registration change: offs then ons, paced backwards from `lead` before `music_t`.
    let change_to = |pending: &mut Vec<Pending>,
                     last_stop_t: &mut Option<u64>,
                     warnings: &mut Vec<String>,
                     before: &[bool],
                     after: &[bool],
                     music_t: u64,
                     tick: u64,
                     s: usize|
     -> Option<u64> {
        let offs: Vec<ControlId> = (0..n_controls).filter(|&c| before[c] && !after[c]).collect();
        let ons: Vec<ControlId> = (0..n_controls).filter(|&c| !before[c] && after[c]).collect();
        let k = (offs.len() + ons.len()) as u64;
        if k == 0 {
            return None;
        }
        let mut t = music_t.saturating_sub(lead + (k - 1) * pace);
        if let Some(prev) = *last_stop_t {
            t = t.max(prev + pace);
        }
        let first_t = t;
        for (j, &id) in offs.iter().chain(ons.iter()).enumerate() {
            let on = j >= offs.len();
            let msgs = if on { &controls[id].on } else { &controls[id].off };
            push_control(
                pending,
                t,
                id,
                Kind::for_control(organ.controls[id].kind, on),
                msgs,
                tick,
                CLASS_REGISTRATION,
                s as u16,
            );
            *last_stop_t = Some(t);
            if (j as u64) + 1 < k {
                t += pace;
            }
        }
        if t + lead > music_t {
            warnings.push(format!(
                "{}: the registration change ({k} stop message(s)) finishes {:.1} ms later than stop_lead_ms asks; earlier changes or stop_pace_ms crowd it",
                where_(s, tick),
                (t + lead - music_t) as f64 / 1000.0
            ));
        }
        Some(first_t)
    };

    // Changes during the performance: at each segment's start (a verse's own registration, or
    // back to the registration of bar 1), then inside it.
    for (s, seg) in segments.iter().enumerate() {
        if s > 0 {
            let after = start_state(s, &state);
            if let Some(first_t) =
                change_to(&mut pending, &mut last_stop_t, &mut warnings, &state, &after, time(s, seg.from), seg.from, s)
            {
                registrations.push(RegistrationState {
                    t: Micros(first_t),
                    drawn: drawn(&after),
                    preset: preset_of(&after),
                });
            }
            state = after;
        }
        let later: Vec<&(u64, &crate::organ::registration::Change)> =
            seg_changes[s].iter().filter(|c| c.0 > seg.from && c.0 < seg.until).collect();
        let mut i = 0;
        while i < later.len() {
            // Changes at the same tick act as one.
            let tick = later[i].0;
            let before = state.clone();
            while i < later.len() && later[i].0 == tick {
                apply(&mut state, later[i].1);
                i += 1;
            }
            if let Some(first_t) =
                change_to(&mut pending, &mut last_stop_t, &mut warnings, &before, &state, time(s, tick), tick, s)
            {
                registrations.push(RegistrationState {
                    t: Micros(first_t),
                    drawn: drawn(&state),
                    preset: preset_of(&state),
                });
            }
        }
    }

    // --- notes: fold, merge keys per division ----------------------------------------------
    let mut per_division: Vec<Vec<KeyEvent>> = vec![Vec::new(); organ.divisions.len()];
    let mut folded = vec![0usize; organ.divisions.len()];
    let mut zero_length = 0usize;
    // Octave shifts are decided once per score and part.
    let mut seen_scores: Vec<*const Score> = Vec::new();
    let mut shifts: Vec<(*const Score, usize, i32)> = Vec::new();
    for (s, seg) in segments.iter().enumerate() {
        let score = seg.score;
        let first_time = !seen_scores.contains(&(score as *const Score));
        if first_time {
            seen_scores.push(score as *const Score);
        }
        for (p, part) in score.parts.iter().enumerate() {
            if first_time {
                zero_length +=
                    part.notes.iter().filter(|n| n.start == n.end).count() * usize::from(seg.assignment[p].is_some());
            }
            let Some(d) = seg.assignment[p] else { continue };
            let (lo, hi) = organ.divisions[d].compass;
            let shift = match shifts.iter().find(|x| std::ptr::eq(x.0, score) && x.1 == p) {
                Some(x) => x.2,
                None => {
                    // A part written an octave (or more) outside the compass, as a 16' pedal line
                    // often is, moves as a whole, so that its line is kept; only what still
                    // sticks out is folded.
                    let outside = |shift: i32| {
                        part.notes
                            .iter()
                            .filter(|n| {
                                !(i32::from(lo)..=i32::from(hi)).contains(&(i32::from(n.key) + opts.transpose + shift))
                            })
                            .count()
                    };
                    let shift =
                        [0, 12, -12, 24, -24, 36, -36].into_iter().min_by_key(|&s| (outside(s), s.abs())).unwrap_or(0);
                    if shift != 0 {
                        let octaves = shift.abs() / 12;
                        warnings.push(format!(
                            "{}part {} lies {} the {} compass; it is played {} octave{} {}",
                            if std::ptr::eq(score, main) { String::new() } else { format!("{}: ", score.name) },
                            part.number,
                            if shift > 0 { "below" } else { "above" },
                            organ.divisions[d].name,
                            octaves,
                            if octaves == 1 { "" } else { "s" },
                            if shift > 0 { "higher" } else { "lower" }
                        ));
                    }
                    shifts.push((score as *const Score, p, shift));
                    shift
                }
            };
            let transpose = opts.transpose + shift;
            let out = &mut per_division[d];
            for n in &part.notes {
                let start = n.start.max(seg.from);
                let end = n.end.min(seg.until);
                if n.start == n.end || start >= end {
                    continue;
                }
                let mut key = i32::from(n.key) + transpose;
                if key < i32::from(lo) || key > i32::from(hi) {
                    folded[d] += 1;
                    while key < i32::from(lo) {
                        key += 12;
                    }
                    while key > i32::from(hi) {
                        key -= 12;
                    }
                }
                let key = key as u8;
                let seg_i = s as u16;
                out.push(KeyEvent {
                    seg: seg_i,
                    tick: start,
                    on: true,
                    key,
                    velocity: n.velocity,
                    part: part.number as u16,
                });
                out.push(KeyEvent { seg: seg_i, tick: end, on: false, key, velocity: 0, part: part.number as u16 });
            }
        }
    }
    let mut last_note_t = origin;
    for (d, evs) in per_division.iter_mut().enumerate() {
        evs.sort_unstable_by_key(|e| (e.seg, e.tick, e.on, e.key, e.part));
        let ch = organ.divisions[d].channel;
        let mut depth = [0u32; 128];
        let mut merged = 0usize;
        for e in evs.iter() {
            let k = usize::from(e.key);
            let t = time(usize::from(e.seg), e.tick);
            if e.on {
                if depth[k] == 0 {
                    pending.push(Pending {
                        class: CLASS_NOTE_ON,
                        event: note_event(t, ShortMsg::note_on(ch, e.key, e.velocity.max(1)), Kind::NoteOn, d, e),
                    });
                } else {
                    merged += 1;
                }
                depth[k] += 1;
            } else {
                depth[k] -= 1;
                if depth[k] == 0 {
                    pending.push(Pending {
                        class: CLASS_NOTE_OFF,
                        event: note_event(t, ShortMsg::note_off(ch, e.key), Kind::NoteOff, d, e),
                    });
                    last_note_t = last_note_t.max(t);
                }
            }
        }
        debug_assert!(depth.iter().all(|&x| x == 0));
        if merged > 0 {
            warnings.push(format!(
                "{}: {merged} note(s) struck while the same key was already down were merged (one pipe per key)",
                organ.divisions[d].name
            ));
        }
        if folded[d] > 0 {
            let (lo, hi) = organ.divisions[d].compass;
            warnings.push(format!(
                "{}: {} note(s) outside the compass {}-{} were folded by octaves into it",
                organ.divisions[d].name,
                folded[d],
                key_name(lo),
                key_name(hi)
            ));
        }
    }
    if zero_length > 0 {
        warnings.push(format!("{zero_length} zero-length note(s) (on and off at the same tick) were left out"));
    }

    // --- the end: all notes off on every division, then the cancel ---------------------------
    let last = segments.len() - 1;
    let until_tick = segments[last].until;
    let end_t = last_note_t.max(pending.iter().map(|p| p.event.t.0).max().unwrap_or(0));
    for (d, div) in divisions.iter().enumerate() {
        pending.push(Pending {
            class: CLASS_TAIL,
            event: Event {
                t: Micros(end_t),
                msg: Msg::Short(ShortMsg::all_notes_off(div.channel)),
                kind: Kind::AllNotesOff,
                division: d as u8,
                control: NONE_U16,
                part: 0,
                tick: until_tick,
                section: last as u16,
            },
        });
    }
    let cancel_at_end = organ.cancel_at_end && !opts.keep_stops;
    if cancel_at_end {
        let mut t = end_t;
        if let Some(prev) = last_stop_t {
            t = t.max(prev + pace);
        }
        let cancel_start = t;
        match &organ.cancel {
            Some(_) => {
                for &msg in &cancel {
                    pending.push(Pending {
                        class: CLASS_TAIL,
                        event: Event {
                            t: Micros(t),
                            msg,
                            kind: Kind::Cancel,
                            division: NONE_U8,
                            control: NONE_U16,
                            part: 0,
                            tick: until_tick,
                            section: last as u16,
                        },
                    });
                }
            }
            None => {
                for (id, c) in controls.iter().enumerate() {
                    push_control(&mut pending, t, id, Kind::Cancel, &c.off, until_tick, CLASS_TAIL, last as u16);
                    t += pace;
                }
            }
        }
        registrations.push(RegistrationState { t: Micros(cancel_start), drawn: Vec::new(), preset: None });
    }

    pending.sort_by_key(|p| (p.event.t, p.class));
    let events: Vec<Event> = pending.into_iter().map(|p| p.event).collect();
    let duration = events.last().map_or(Micros::ZERO, |e| e.t);
    let speed_percent = mul as f64 / div as f64;

    // --- sections and the points where the engine may wait ------------------------------------
    let mut sections: Vec<Section> = Vec::with_capacity(segments.len());
    for (s, seg) in segments.iter().enumerate() {
        let main_score = std::ptr::eq(seg.score, main);
        sections.push(Section {
            kind: seg.kind,
            verse: seg.verse,
            verses: seg.verses,
            start: seg_start[s].round(),
            end: seg_end[s].round(),
            first_bar: seg.score.meter.position(seg.from).bar,
            last_bar: seg.score.meter.position(seg.until.saturating_sub(1).max(seg.from)).bar,
            score_name: seg.score.name.clone(),
            meter: (!main_score).then(|| seg.score.meter.clone()),
        });
    }
    let mut waits: Vec<WaitPoint> = Vec::new();
    if hymn {
        let tail = |e: &Event| {
            matches!(e.kind, Kind::AllNotesOff) || (e.kind == Kind::Cancel && e.tick == until_tick && e.t.0 >= end_t)
        };
        for (s, seg) in segments.iter().enumerate() {
            for &w in &seg.waits {
                if let Some(index) = events.iter().position(|e| usize::from(e.section) == s && e.tick >= w && !tail(e))
                {
                    waits.push(WaitPoint { index, t: events[index].t, kind: WaitKind::Fermata, section: s as u16 });
                }
            }
            if s < last
                && let Some(i) = events.iter().rposition(|e| usize::from(e.section) == s)
            {
                waits.push(WaitPoint { index: i + 1, t: events[i].t, kind: WaitKind::SectionEnd, section: s as u16 });
            }
        }
        waits.sort_by_key(|w| (w.index, w.kind == WaitKind::SectionEnd));
        waits.dedup_by_key(|w| w.index);
    }

    Ok(Timeline {
        score_name: main.name.clone(),
        organ_name: organ.name.clone(),
        events,
        long,
        divisions,
        controls,
        presets: organ.presets.iter().map(|p| (p.name.clone(), p.controls.clone())).collect(),
        cancel,
        cancel_at_end,
        stop_pace: organ.stop_pace,
        registrations,
        meter: main.meter.clone(),
        last_bar: if hymn {
            segments
                .iter()
                .filter(|s| std::ptr::eq(s.score, main))
                .map(|s| s.score.meter.position(s.until.saturating_sub(1)).bar)
                .max()
                .unwrap_or(1)
        } else {
            main.meter.position(until_tick.saturating_sub(1)).bar
        },
        duration,
        speed_percent: if speed_percent > 0.0 { 100.0 / speed_percent } else { 100.0 },
        warnings,
        sections,
        waits,
    })
}

fn note_event(t: u64, msg: ShortMsg, kind: Kind, division: usize, e: &KeyEvent) -> Event {
    Event {
        t: Micros(t),
        msg: Msg::Short(msg),
        kind,
        division: division as u8,
        control: NONE_U16,
        part: e.part,
        tick: e.tick,
        section: e.seg,
    }
}

/// The channels of all divisions (for all-notes-off and panic).
pub fn division_channels(t: &Timeline) -> Vec<Channel> {
    t.divisions.iter().map(|d| d.channel).collect()
}
