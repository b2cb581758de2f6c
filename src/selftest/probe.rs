//! The self-test's material: generated pieces planned by the real planner on the organ under
//! test, the burst they give the organ, its time on a 5-pin cable, and the note-offs that stand
//! in for it on a real output. Pure (no I/O).

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use super::{DIN_BYTE, SelftestError};
use crate::midi::{Channel, Micros, ShortMsg};
use crate::organ::Organ;
use crate::plan::{Kind, PlanOptions, Timeline, plan};

/// The dense piece for the engine's silent run: a full chord every this many ticks, each held
/// [`DENSE_HOLD_TICKS`], at [`DENSE_TEMPO`].
const DENSE_STEP_TICKS: u32 = 25;
const DENSE_HOLD_TICKS: u32 = 20;
/// The dense piece's tempo, in µs a quarter note of 480 ticks: a tick of 1.005027 ms, so a chord
/// every 25.1257 ms. Its deadlines so fall at every phase of the kernel's timer tick (250 Hz on
/// the development VM: every 4 ms, taking the CPU for about 60 µs), as real music does. Until
/// 2026-12-01 it was 480,000 (a chord every 25 ms, a whole number of 4 ms): every deadline met
/// the tick at the same few phases, so a run either rarely met it or always did. The same fix
/// as the lateness bench's tempo (benches/lateness.rs).
const DENSE_TEMPO: u32 = 482_413;
/// Time between the dense piece's chords, in µs (25,125.7).
pub const DENSE_STEP_US: f64 = DENSE_STEP_TICKS as f64 * DENSE_TEMPO as f64 / 480.0;
/// The tempo of the other pieces: a tick is a millisecond.
const MS_TEMPO: u32 = 480_000;

/// The keys of a full chord on this organ: five for each hand on the first two manuals (both
/// hands on one manual when there is only one), two for the feet on a pedal division; each
/// part as (division code, keys), within the division's compass.
fn chord_parts(organ: &Organ) -> Vec<(char, Vec<u8>)> {
    let is_pedal = |d: &crate::organ::Division| d.code == 'P' || d.name.to_lowercase().contains("ped");
    let manuals: Vec<&crate::organ::Division> = organ.divisions.iter().filter(|d| !is_pedal(d)).take(2).collect();
    let pedal = organ.divisions.iter().find(|d| is_pedal(d));
    let pick = |d: &crate::organ::Division, offsets: &[i32]| -> Vec<u8> {
        let (lo, hi) = (i32::from(d.compass.0), i32::from(d.compass.1));
        let mid = (lo + hi) / 2;
        let mut keys: Vec<u8> = offsets.iter().map(|o| (mid + o).clamp(lo, hi) as u8).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    };
    let mut parts = Vec::new();
    match manuals.as_slice() {
        [one] => parts.push((one.code, pick(one, &[-19, -15, -12, -8, -5, 0, 4, 7, 12, 16]))),
        [a, b, ..] => {
            parts.push((a.code, pick(a, &[0, 4, 7, 12, 16])));
            parts.push((b.code, pick(b, &[-12, -8, -5, 0, 4])));
        }
        [] => {}
    }
    if let Some(p) = pedal {
        parts.push((p.code, pick(p, &[-12, -5])));
    }
    parts
}

/// A format-1 file with one track per part of [`chord_parts`]: `chords` full chords, `step`
/// ticks apart, each held `hold` ticks, at `tempo` µs a quarter note of 480 ticks.
fn chord_smf(parts: &[(char, Vec<u8>)], chords: usize, step: u32, hold: u32, tempo: u32) -> Vec<u8> {
    let ev = |delta: u32, kind| TrackEvent { delta: u28::new(delta), kind };
    let note = |key: u8, on: bool| TrackEventKind::Midi {
        channel: u4::new(0),
        message: if on {
            MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(64) }
        } else {
            MidiMessage::NoteOff { key: u7::new(key), vel: u7::new(0) }
        },
    };
    let mut tracks = Vec::new();
    for (i, (_, keys)) in parts.iter().enumerate() {
        let mut t = Vec::new();
        if i == 0 {
            t.push(ev(0, TrackEventKind::Meta(MetaMessage::Tempo(u24::new(tempo)))));
        }
        let mut delta = 0;
        for _ in 0..chords {
            for (j, &k) in keys.iter().enumerate() {
                t.push(ev(if j == 0 { delta } else { 0 }, note(k, true)));
            }
            for (j, &k) in keys.iter().enumerate() {
                t.push(ev(if j == 0 { hold } else { 0 }, note(k, false)));
            }
            delta = step.saturating_sub(hold);
        }
        t.push(ev(0, TrackEventKind::Meta(MetaMessage::EndOfTrack)));
        tracks.push(t);
    }
    let smf = Smf { header: Header { format: Format::Parallel, timing: Timing::Metrical(u15::new(480)) }, tracks };
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = smf.write_std(&mut out);
    out
}

/// Plans `chords` full chords on `organ` with `stops` drawn at the start: `step` ticks apart,
/// each held `hold` ticks, at `tempo` µs a quarter note of 480 ticks.
fn chord_plan(
    organ: &Organ,
    chords: usize,
    (step, hold, tempo): (u32, u32, u32),
    stops: Vec<String>,
) -> Result<Timeline, SelftestError> {
    let parts = chord_parts(organ);
    if parts.is_empty() {
        return Err(SelftestError::Probe(format!("{} has no keyboard division", organ.name)));
    }
    let score = crate::score::load_bytes(&chord_smf(&parts, chords, step, hold, tempo), "selftest.mid")
        .map_err(|e| SelftestError::Probe(e.to_string()))?;
    let layout: String = parts.iter().map(|(c, _)| *c).collect();
    let opts = PlanOptions { layout: Some(layout), stops, ..PlanOptions::default() };
    plan(&score, organ, None, &opts).map_err(|e| SelftestError::Probe(e.to_string()))
}

/// The engine's silent run: a full chord every [`DENSE_STEP_US`], no stops drawn.
pub fn dense_plan(organ: &Organ, chords: usize) -> Result<Timeline, SelftestError> {
    chord_plan(organ, chords, (DENSE_STEP_TICKS, DENSE_HOLD_TICKS, DENSE_TEMPO), Vec::new())
}

/// The organ's largest registration: the preset with the most messages, else every stop and
/// coupler.
fn fullest(organ: &Organ) -> (String, Vec<String>) {
    let messages = |ids: &[usize]| ids.iter().map(|&i| organ.controls[i].on.len()).sum::<usize>();
    match organ.presets.iter().max_by_key(|p| messages(&p.controls)) {
        Some(p) => (format!("preset \"{}\"", p.name), vec![p.name.clone()]),
        None => ("every stop and coupler".into(), organ.controls.iter().map(|c| c.name.clone()).collect()),
    }
}

/// The burst at the start of a piece, as the planner lays it out: the cancel, the fullest
/// registration (paced by `stop_pace_ms`), then, `stop_lead_ms` after the last stop, a full
/// chord.
#[derive(Debug, Clone)]
pub struct Burst {
    /// Every message up to the chord, with its plan time.
    pub events: Vec<(Micros, Vec<u8>)>,
    /// When the chord is due.
    pub chord_t: Micros,
    /// How many of the messages are the chord's notes (the last ones).
    pub notes: usize,
    /// `preset "full"`, or `every stop and coupler`.
    pub registration: String,
}

impl Burst {
    /// `the cancel and preset "full" (51 stop messages, 4 ms apart), then a full chord (12
    /// notes) 40 ms after the last stop`.
    pub fn describe(&self, organ: &Organ) -> String {
        format!(
            "the cancel and {} ({} stop messages{}), then a full chord ({} notes) {} after the last stop",
            self.registration,
            self.events.len() - self.notes,
            if organ.stop_pace.0 > 0 { format!(", {} apart", super::short(organ.stop_pace)) } else { String::new() },
            self.notes,
            super::short(organ.stop_lead)
        )
    }
}

/// The burst of `organ` (see [`Burst`]).
///
/// # Errors
/// The organ cannot play the probe chord.
pub fn burst(organ: &Organ) -> Result<Burst, SelftestError> {
    let (registration, stops) = fullest(organ);
    let t = chord_plan(organ, 1, (1000, 500, MS_TEMPO), stops)?;
    let chord_t = t.events.iter().find(|e| e.kind == Kind::NoteOn).map_or(Micros::ZERO, |e| e.t);
    let events: Vec<(Micros, Vec<u8>)> = t
        .events
        .iter()
        .take_while(|e| e.t <= chord_t && e.kind != Kind::NoteOff)
        .map(|e| (e.t, t.bytes(&e.msg).to_vec()))
        .collect();
    let notes = t.events.iter().filter(|e| e.kind == Kind::NoteOn && e.t == chord_t).count();
    Ok(Burst { events, chord_t, notes, registration })
}

/// The burst on a 5-pin cable: messages leave in order, each as soon as it is due and the
/// cable is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    pub bytes: usize,
    /// Time the whole burst spends on the cable.
    pub on_wire: Micros,
    /// The longest stretch the cable is busy without a pause (messages back to back).
    pub busiest: Micros,
    /// How long the chord's first note waits for the cable (behind stop messages).
    pub chord_wait: Micros,
    /// When the chord's last note has arrived, after the chord's time.
    pub chord_spread: Micros,
}

/// The burst's time on a 5-pin MIDI cable (no running status: the worst case).
pub fn din_wire(b: &Burst) -> Wire {
    let mut free = Micros::ZERO;
    let (mut busy_since, mut busiest) = (Micros::ZERO, Micros::ZERO);
    let mut bytes = 0;
    let mut chord_wait = Micros::ZERO;
    let first_note = b.events.len() - b.notes;
    for (i, (t, m)) in b.events.iter().enumerate() {
        if *t > free {
            busy_since = *t; // the cable was idle: a new stretch begins
        }
        let start = free.max(*t);
        if i == first_note {
            chord_wait = Micros(start.0 - t.0);
        }
        free = Micros(start.0 + m.len() as u64 * DIN_BYTE.0);
        busiest = busiest.max(Micros(free.0 - busy_since.0));
        bytes += m.len();
    }
    Wire {
        bytes,
        on_wire: Micros(bytes as u64 * DIN_BYTE.0),
        busiest,
        chord_wait,
        chord_spread: Micros(free.0.saturating_sub(b.chord_t.0)),
    }
}

/// A note-off standing in for one message of the burst on a real output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The plan time of the message it stands in for.
    pub at: Micros,
    pub bytes: [u8; 3],
}

/// One note-off per message of the burst: a chord note's own key, else the chord's keys in
/// turn; all on keyboard channels, none of them down, so nothing sounds.
pub fn probes(b: &Burst) -> Vec<Probe> {
    let keys: Vec<(Channel, u8)> = b.events[b.events.len() - b.notes..]
        .iter()
        .filter_map(|(_, m)| ShortMsg::from_bytes(m).and_then(|s| s.as_note_on()))
        .collect();
    let fallback = (Channel::new(0).expect("0 < 16"), 60);
    b.events
        .iter()
        .enumerate()
        .map(|(i, (t, _))| {
            let (ch, key) = if keys.is_empty() { fallback } else { keys[i % keys.len()] };
            let m = ShortMsg::note_off(ch, key);
            let mut bytes = [0u8; 3];
            bytes.copy_from_slice(m.as_bytes());
            bytes[2] = 0;
            Probe { at: *t, bytes }
        })
        .collect()
}

/// A plan that plays exactly `probes` (note-offs) at their times, for the real engine to send
/// to a real output: the one-chord plan of `organ` with its messages replaced, and no cancel,
/// registration or wait points left to send.
///
/// # Errors
/// The organ cannot play the probe chord.
pub fn probe_timeline(organ: &Organ, probes: &[Probe]) -> Result<Timeline, SelftestError> {
    let mut t = chord_plan(organ, 1, (1000, 500, MS_TEMPO), Vec::new())?;
    let template = t.events.first().copied();
    t.events = match template {
        Some(e) => probes
            .iter()
            .filter_map(|p| {
                let m = ShortMsg::from_bytes(&p.bytes)?;
                Some(crate::plan::Event {
                    t: p.at,
                    msg: crate::plan::Msg::Short(m),
                    kind: Kind::NoteOff,
                    control: crate::plan::NONE_U16,
                    ..e
                })
            })
            .collect(),
        None => Vec::new(),
    };
    t.cancel.clear();
    t.cancel_at_end = false;
    t.registrations.clear();
    t.waits.clear();
    t.duration = probes.last().map_or(Micros::ZERO, |p| p.at);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st_marys() -> Organ {
        Organ::find("st-marys").unwrap()
    }

    #[test]
    fn the_burst_is_the_cancel_the_fullest_preset_and_a_full_chord_as_planned() {
        let organ = st_marys();
        let b = burst(&organ).unwrap();
        assert_eq!(b.registration, "preset \"full\"");
        // St Mary's has no General Cancel: the 29 controls' offs, then the 25 of "full".
        assert_eq!(b.events.len() - b.notes, 29 + 25);
        assert_eq!(b.notes, 12, "five notes a hand on Swell and Great, two on the Pedal");
        // Stops 4 ms apart from 0, the chord 40 ms after the last.
        assert_eq!(b.chord_t, Micros(53 * 4_000 + 40_000));
        assert!(b.events[..54].iter().all(|(_, m)| m[0] & 0xF0 == 0x90 || m[0] & 0xF0 == 0x80));
        assert!(b.events[54..].iter().all(|(t, m)| *t == b.chord_t && m[0] & 0xF0 == 0x90 && m[2] > 0));
        assert!(b.describe(&organ).starts_with("the cancel and preset \"full\" (54 stop messages, 4.00 ms apart)"));
    }

    #[test]
    fn the_wire_time_is_320_us_a_byte_and_stops_paced_apart_leave_the_chord_alone() {
        let organ = st_marys();
        let w = din_wire(&burst(&organ).unwrap());
        assert_eq!(w.bytes, 66 * 3);
        assert_eq!(w.on_wire, Micros(198 * 320));
        assert_eq!(w.chord_wait, Micros::ZERO, "each stop message (0.96 ms) is gone before the next, 4 ms later");
        assert_eq!(w.chord_spread, Micros(12 * 3 * 320));
        assert_eq!(w.busiest, w.chord_spread, "the chord is the longest stretch");
    }

    #[test]
    fn unpaced_stops_without_lead_hold_up_the_chord() {
        let mut organ = st_marys();
        organ.stop_pace = Micros::ZERO;
        organ.stop_lead = Micros(10_000);
        let b = burst(&organ).unwrap();
        assert_eq!(b.chord_t, Micros(10_000));
        let w = din_wire(&b);
        // 54 stop messages at once take 51.84 ms; the chord is due after 10 ms.
        assert_eq!(w.chord_wait, Micros(54 * 960 - 10_000));
        assert_eq!(w.chord_spread, Micros(w.chord_wait.0 + 12 * 960));
        assert_eq!(w.busiest, Micros(66 * 960), "one stretch from the first stop to the last note");
    }

    #[test]
    fn probes_are_note_offs_of_the_chord_keys_one_per_message() {
        let b = burst(&st_marys()).unwrap();
        let p = probes(&b);
        assert_eq!(p.len(), b.events.len());
        let chord: Vec<[u8; 2]> = b.events[54..].iter().map(|(_, m)| [m[0] & 0x0F, m[1]]).collect();
        for (probe, (t, _)) in p.iter().zip(&b.events) {
            assert_eq!(probe.at, *t);
            assert_eq!(probe.bytes[0] & 0xF0, 0x80, "a note-off");
            assert_eq!(probe.bytes[2], 0);
            assert!(chord.contains(&[probe.bytes[0] & 0x0F, probe.bytes[1]]), "a key of the chord");
        }
    }

    #[test]
    fn the_probe_plan_holds_the_probes_and_nothing_else() {
        let organ = st_marys();
        let p = probes(&burst(&organ).unwrap());
        let t = probe_timeline(&organ, &p).unwrap();
        let sent: Vec<(Micros, Vec<u8>)> = t.events.iter().map(|e| (e.t, t.bytes(&e.msg).to_vec())).collect();
        let want: Vec<(Micros, Vec<u8>)> = p.iter().map(|p| (p.at, p.bytes.to_vec())).collect();
        assert_eq!(sent, want);
        assert!(t.cancel.is_empty() && !t.cancel_at_end && t.waits.is_empty());
    }

    #[test]
    fn the_dense_piece_is_a_chord_every_25_ms_and_a_bit_at_every_phase_of_a_4_ms_tick() {
        let chords = 160; // 4 s
        let t = dense_plan(&st_marys(), chords).unwrap();
        let ons: Vec<Micros> = t.events.iter().filter(|e| e.kind == Kind::NoteOn).map(|e| e.t).collect();
        assert_eq!(ons.len(), chords * 12);
        let starts: Vec<u64> = ons.iter().step_by(12).map(|t| t.0 - ons[0].0).collect();
        for (i, &s) in starts.iter().enumerate() {
            assert!((s as f64 - i as f64 * DENSE_STEP_US).abs() <= 1.0, "chord {i} at {s} µs");
        }
        assert!((DENSE_STEP_US - 25_125.7).abs() < 0.1, "{DENSE_STEP_US}");
        // Against a 250 Hz timer tick: the chords fall in every 250 µs of its 4 ms, and in none
        // of them twice as often as an even spread would put there.
        let mut phases = [0usize; 16];
        for s in &starts {
            phases[(s % 4000 / 250) as usize] += 1;
        }
        assert!(phases.iter().all(|&n| n > 0 && n <= 2 * chords / 16), "{phases:?}");
    }

    #[test]
    fn a_one_manual_organ_without_pedal_gets_ten_notes() {
        let text = r#"
name = "Chamber organ"
[division.manual]
code = "M"
channel = 1
compass = [36, 89]
[[stop]]
name = "Gedackt 8"
division = "manual"
on = { note = 1, channel = 16 }
"#;
        let organ = Organ::from_toml(text, "chamber.toml").unwrap();
        let parts = chord_parts(&organ);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1.len(), 10);
        let b = burst(&organ).unwrap();
        assert_eq!(b.notes, 10);
        assert_eq!(b.registration, "every stop and coupler");
    }
}
