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

pub mod layout;
pub mod report;
mod timeline;

use std::fmt;

use crate::midi::{Channel, Micros, ShortMsg};
use crate::organ::registration::At;
use crate::organ::{ControlId, Organ, Registration};
use crate::score::Score;

pub use timeline::{ControlInfo, DivisionInfo, Event, Kind, Msg, NONE_U8, NONE_U16, RegistrationState, Timeline};

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
    if organ.divisions.len() >= usize::from(NONE_U8) || organ.controls.len() >= usize::from(NONE_U16) {
        return Err(PlanError::new(format!("{}: too many divisions or controls", organ.source)));
    }
    // --- which part plays on which division -------------------------------------------------
    let (layout, layout_from) = match (&opts.layout, registration.and_then(|r| r.layout.as_ref())) {
        (Some(l), _) => (l.clone(), "--layout".to_string()),
        (None, Some(l)) => (l.clone(), registration.map(|r| r.source.clone()).unwrap_or_default()),
        (None, None) => (DEFAULT_LAYOUT.to_string(), "the default".to_string()),
    };
    let map = opts.map.as_deref().or(registration.and_then(|r| r.map.as_deref()));
    let assignment = layout::resolve(score, organ, layout::LayoutSource { layout: &layout, from: &layout_from }, map)?;

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

    // --- time: exact from ticks, scaled by the speed, rounded once ---------------------------
    let (mul, div) = opts.speed.time_factor(score.tempo.us_per_quarter_at(from_tick));
    let from_exact = score.tempo.exact(from_tick);
    let rel = |tick: u64| -> Micros {
        let a = score.tempo.exact(tick);
        crate::score::ExactTime { num: (a.num - from_exact.num) * mul, den: a.den * div }.round()
    };
    // Every later time is at most this plus the setup, so the µs arithmetic below cannot
    // overflow. Only damaged delta times (or a hostile file) come near the limit.
    let length = rel(until_tick);
    if length > MAX_LENGTH {
        return Err(PlanError::new(format!(
            "{}: the music would last {:.0} days at this speed; the file's delta times are probably damaged",
            score.name,
            length.as_secs_f64() / 86_400.0
        )));
    }

    let mut warnings: Vec<String> = Vec::new();
    let divisions: Vec<DivisionInfo> = organ
        .divisions
        .iter()
        .map(|d| DivisionInfo { name: d.name.clone(), code: d.code, channel: d.channel })
        .collect();

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
        })
        .collect();
    let cancel: Vec<Msg> = organ.cancel_messages().iter().map(|m| Timeline::intern(&mut long, m)).collect();

    let mut changes: Vec<(u64, &crate::organ::registration::Change)> = Vec::new();
    if let Some(reg) = registration {
        for c in &reg.changes {
            let tick = match c.at {
                At::Bar { bar, beat } => score.meter.tick_of(bar, beat).ok_or_else(|| {
                    PlanError::new(format!("{}: change at {}: that position is not in the score", c.location, c.at))
                })?,
                At::Time(t) => score.tempo.tick_at(t),
            };
            changes.push((tick, c));
        }
    }
    changes.sort_by_key(|c| c.0);
    let n_controls = organ.controls.len();
    let apply = |state: &mut Vec<bool>, c: &crate::organ::registration::Change| {
        if let Some(p) = c.preset {
            state.iter_mut().for_each(|s| *s = false);
            for &id in &organ.presets[p].controls {
                state[id] = true;
            }
        }
        for &id in &c.off {
            state[id] = false;
        }
        for &id in &c.on {
            state[id] = true;
        }
    };
    let mut state = vec![false; n_controls];
    for (tick, c) in changes.iter().filter(|c| c.0 <= from_tick) {
        let _ = tick;
        apply(&mut state, c);
    }
    for s in &opts.stops {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        if let Some(p) = organ.preset(s) {
            for &id in &p.controls {
                state[id] = true;
            }
            continue;
        }
        let id = organ.control(s).ok_or_else(|| {
            PlanError::new(format!(
                "--stops: {} has no stop, coupler, tremulant or preset \"{s}\"{}",
                organ.name,
                organ.suggest_control(s)
            ))
        })?;
        state[id] = true;
    }

    let pace = organ.stop_pace.0;
    let lead = organ.stop_lead.0;
    let mut pending: Vec<Pending> = Vec::new();
    let start_pos = from_tick;
    let push_control =
        |pending: &mut Vec<Pending>, t: u64, id: ControlId, kind: Kind, msgs: &[Msg], tick: u64, class: u8| {
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
                    },
                });
            }
            last_stop_t = Some(0);
            slot = 1;
        }
        None => {
            for (id, c) in controls.iter().enumerate() {
                let t = slot * pace;
                push_control(&mut pending, t, id, Kind::Cancel, &c.off, start_pos, CLASS_REGISTRATION);
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

    // Changes during the performance, paced backwards from `lead` before their notes.
    let mut i = 0;
    let later: Vec<&(u64, &crate::organ::registration::Change)> =
        changes.iter().filter(|c| c.0 > from_tick && c.0 < until_tick).collect();
    while i < later.len() {
        // Changes at the same tick act as one.
        let tick = later[i].0;
        let before = state.clone();
        while i < later.len() && later[i].0 == tick {
            apply(&mut state, later[i].1);
            i += 1;
        }
        let offs: Vec<ControlId> = (0..n_controls).filter(|&c| before[c] && !state[c]).collect();
        let ons: Vec<ControlId> = (0..n_controls).filter(|&c| !before[c] && state[c]).collect();
        let k = (offs.len() + ons.len()) as u64;
        if k == 0 {
            continue;
        }
        let music_t = origin + rel(tick).0;
        let mut t = music_t.saturating_sub(lead + (k - 1) * pace);
        if let Some(prev) = last_stop_t {
            t = t.max(prev + pace);
        }
        let first_t = t;
        for (j, &id) in offs.iter().chain(ons.iter()).enumerate() {
            let on = j >= offs.len();
            let msgs = if on { &controls[id].on } else { &controls[id].off };
            push_control(
                &mut pending,
                t,
                id,
                Kind::for_control(organ.controls[id].kind, on),
                msgs,
                tick,
                CLASS_REGISTRATION,
            );
            last_stop_t = Some(t);
            if (j as u64) + 1 < k {
                t += pace;
            }
        }
        if t + lead > music_t {
            warnings.push(format!(
                "bar {}: the registration change ({k} stop message(s)) finishes {:.1} ms later than stop_lead_ms asks; earlier changes or stop_pace_ms crowd it",
                score.meter.position(tick),
                (t + lead - music_t) as f64 / 1000.0
            ));
        }
        registrations.push(RegistrationState { t: Micros(first_t), drawn: drawn(&state), preset: preset_of(&state) });
    }

    // --- notes: fold, merge keys per division ----------------------------------------------
    let mut per_division: Vec<Vec<KeyEvent>> = vec![Vec::new(); organ.divisions.len()];
    let mut folded = vec![0usize; organ.divisions.len()];
    let mut zero_length = 0usize;
    for (p, part) in score.parts.iter().enumerate() {
        let Some(d) = assignment[p] else { continue };
        let (lo, hi) = organ.divisions[d].compass;
        // A part written an octave (or more) outside the compass, as a 16' pedal line often is,
        // moves as a whole, so that its line is kept; only what still sticks out is folded.
        let outside = |shift: i32| {
            part.notes
                .iter()
                .filter(|n| !(i32::from(lo)..=i32::from(hi)).contains(&(i32::from(n.key) + opts.transpose + shift)))
                .count()
        };
        let shift = [0, 12, -12, 24, -24, 36, -36].into_iter().min_by_key(|&s| (outside(s), s.abs())).unwrap_or(0);
        if shift != 0 {
            let octaves = shift.abs() / 12;
            warnings.push(format!(
                "part {} lies {} the {} compass; it is played {} octave{} {}",
                part.number,
                if shift > 0 { "below" } else { "above" },
                organ.divisions[d].name,
                octaves,
                if octaves == 1 { "" } else { "s" },
                if shift > 0 { "higher" } else { "lower" }
            ));
        }
        let transpose = opts.transpose + shift;
        let out = &mut per_division[d];
        for n in &part.notes {
            let start = n.start.max(from_tick);
            let end = n.end.min(until_tick);
            if n.start == n.end {
                zero_length += 1;
                continue;
            }
            if start >= end {
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
            out.push(KeyEvent { tick: start, on: true, key, velocity: n.velocity, part: part.number as u16 });
            out.push(KeyEvent { tick: end, on: false, key, velocity: 0, part: part.number as u16 });
        }
    }
    let mut merged_total = 0usize;
    let mut last_note_t = origin;
    for (d, evs) in per_division.iter_mut().enumerate() {
        evs.sort_unstable_by_key(|e| (e.tick, e.on, e.key, e.part));
        let ch = organ.divisions[d].channel;
        let mut depth = [0u32; 128];
        let mut merged = 0usize;
        for e in evs.iter() {
            let k = usize::from(e.key);
            let t = origin + rel(e.tick).0;
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
            merged_total += merged;
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
    let _ = merged_total;
    if zero_length > 0 {
        warnings.push(format!("{zero_length} zero-length note(s) (on and off at the same tick) were left out"));
    }

    // --- the end: all notes off on every division, then the cancel ---------------------------
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
                        },
                    });
                }
            }
            None => {
                for (id, c) in controls.iter().enumerate() {
                    push_control(&mut pending, t, id, Kind::Cancel, &c.off, until_tick, CLASS_TAIL);
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
    Ok(Timeline {
        score_name: score.name.clone(),
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
        meter: score.meter.clone(),
        last_bar: score.meter.position(until_tick.saturating_sub(1)).bar,
        duration,
        speed_percent: if speed_percent > 0.0 { 100.0 / speed_percent } else { 100.0 },
        warnings,
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
    }
}

/// The channels of all divisions (for all-notes-off and panic).
pub fn division_channels(t: &Timeline) -> Vec<Channel> {
    t.divisions.iter().map(|d| d.channel).collect()
}
