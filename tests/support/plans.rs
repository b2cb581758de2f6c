//! The plan as the tests see it: one checker of plan invariants used by every test, for library
//! timelines and the binary's JSON lines alike, and a parser of `organ plan --format jsonl`
//! that checks every documented key.

use std::collections::{BTreeMap, HashSet};

use organ::organ::Organ;
use organ::plan::Timeline;

// --- the plan as the checker sees it --------------------------------------------------------------

/// One planned message, from a [`Timeline`] or from a line of `organ plan --format jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanEvent {
    pub t_us: u64,
    pub bytes: Vec<u8>,
    pub kind: String,
    pub division: Option<String>,
    pub name: Option<String>,
    pub part: Option<usize>,
    pub tick: u64,
}

pub fn from_timeline(t: &Timeline) -> Vec<PlanEvent> {
    t.events
        .iter()
        .map(|e| {
            let j = t.json_event(e);
            PlanEvent {
                t_us: e.t.0,
                bytes: t.bytes(&e.msg).to_vec(),
                kind: e.kind.as_str().to_string(),
                division: j.division.map(str::to_string),
                name: j.name.map(str::to_string),
                part: e.part(),
                tick: e.tick,
            }
        })
        .collect()
}

fn hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    if s.is_empty() {
        return Err("empty bytes".into());
    }
    s.split(' ')
        .map(|h| {
            if h.len() != 2 || !h.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)) {
                return Err(format!("{h:?} is not two uppercase hex digits"));
            }
            u8::from_str_radix(h, 16).map_err(|e| e.to_string())
        })
        .collect()
}

/// Parses `organ plan --format jsonl` output, checking every documented key and its type.
pub fn parse_jsonl(text: &str) -> Result<Vec<PlanEvent>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line}", i + 1);
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let o = v.as_object().ok_or_else(|| at("not an object".into()))?;
        for key in ["t_us", "bytes", "kind", "division", "name", "part", "bar", "beat", "tick"] {
            if !o.contains_key(key) {
                return Err(at(format!("missing key {key}")));
            }
        }
        let opt_str = |k: &str| -> Result<Option<String>, String> {
            match &o[k] {
                serde_json::Value::Null => Ok(None),
                serde_json::Value::String(s) => Ok(Some(s.clone())),
                other => Err(at(format!("{k} should be a string or null, is {other}"))),
            }
        };
        let t_us = o["t_us"].as_u64().ok_or_else(|| at("t_us is not an unsigned integer".into()))?;
        let bytes = hex_bytes(o["bytes"].as_str().ok_or_else(|| at("bytes is not a string".into()))?).map_err(at)?;
        let kind = o["kind"].as_str().ok_or_else(|| at("kind is not a string".into()))?.to_string();
        let part = match &o["part"] {
            serde_json::Value::Null => None,
            p => Some(p.as_u64().filter(|&n| n >= 1).ok_or_else(|| at("part is not an integer ≥ 1".into()))? as usize),
        };
        let bar = o["bar"].as_u64().filter(|&b| b >= 1).ok_or_else(|| at("bar is not an integer ≥ 1".into()))?;
        let beat = o["beat"].as_f64().filter(|&b| b >= 1.0).ok_or_else(|| at("beat is not a number ≥ 1".into()))?;
        let _ = (bar, beat);
        let tick = o["tick"].as_u64().ok_or_else(|| at("tick is not an unsigned integer".into()))?;
        out.push(PlanEvent { t_us, bytes, kind, division: opt_str("division")?, name: opt_str("name")?, part, tick });
    }
    Ok(out)
}

/// What an organ allows in a plan, read from its definition.
pub struct OrganFacts {
    /// (division name, wire channel)
    pub divisions: Vec<(String, u8)>,
    /// Every on/off message of every control, and the General Cancel.
    pub registration_msgs: HashSet<Vec<u8>>,
    /// Channels used by those messages.
    pub control_channels: HashSet<u8>,
}

impl OrganFacts {
    pub fn of(organ: &Organ) -> OrganFacts {
        let mut registration_msgs = HashSet::new();
        for c in &organ.controls {
            for m in c.on.iter().chain(&c.off) {
                registration_msgs.insert(m.as_bytes().to_vec());
            }
        }
        for m in organ.cancel.iter().flatten() {
            registration_msgs.insert(m.as_bytes().to_vec());
        }
        let control_channels = registration_msgs.iter().filter(|m| m[0] < 0xF0).map(|m| m[0] & 0x0F).collect();
        OrganFacts {
            divisions: organ.divisions.iter().map(|d| (d.name.clone(), d.channel.wire())).collect(),
            registration_msgs,
            control_channels,
        }
    }

    fn division_of_channel(&self, ch: u8) -> Option<&str> {
        self.divisions.iter().find(|d| d.1 == ch).map(|d| d.0.as_str())
    }
}

/// A key held down on the organ, as the plan plays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sounding {
    pub channel: u8,
    pub key: u8,
    pub on_t: u64,
    pub off_t: u64,
    pub on_tick: u64,
    pub off_tick: u64,
}

#[derive(Debug, Default)]
pub struct PlanSummary {
    pub note_ons: usize,
    pub note_offs: usize,
    pub registration: usize,
    pub all_notes_off: usize,
    pub soundings: Vec<Sounding>,
}

fn data_len(status: u8) -> Option<usize> {
    match status & 0xF0 {
        0x80 | 0x90 | 0xA0 | 0xB0 | 0xE0 => Some(2),
        0xC0 | 0xD0 => Some(1),
        _ => None,
    }
}

/// One well-formed MIDI message: a status byte, then the right number of data bytes ≤ 0x7F, or a
/// SysEx F0 … F7 with data bytes ≤ 0x7F between.
pub fn well_formed(b: &[u8]) -> Result<(), String> {
    let Some((&status, data)) = b.split_first() else { return Err("no bytes".into()) };
    if status < 0x80 {
        return Err(format!("first byte {status:02X} is not a status byte"));
    }
    if status == 0xF0 {
        if b.last() != Some(&0xF7) || b.len() < 2 {
            return Err("SysEx not closed by F7".into());
        }
        if let Some(x) = b[1..b.len() - 1].iter().find(|&&x| x > 0x7F) {
            return Err(format!("SysEx data byte {x:02X} > 7F"));
        }
        return Ok(());
    }
    let n = data_len(status).ok_or_else(|| format!("status {status:02X} is not a channel message"))?;
    if data.len() != n {
        return Err(format!("status {status:02X} with {} data bytes", data.len()));
    }
    if let Some(x) = data.iter().find(|&&x| x > 0x7F) {
        return Err(format!("data byte {x:02X} > 7F"));
    }
    Ok(())
}

const REGISTRATION_KINDS: [&str; 7] =
    ["stop_on", "stop_off", "coupler_on", "coupler_off", "tremulant_on", "tremulant_off", "cancel"];

/// Checks every plan invariant; returns what was played.
///
/// Sorted by time; every message well formed; channels only the division channels and the
/// organ's control channels; notes only on division channels and every other message one the
/// organ definition declares (nothing from the score but notes); no key struck while down; every
/// key released before the closing all-notes-off (one per division), after which no note is sent;
/// at equal times note-offs, then registration, then note-ons.
pub fn check_plan(events: &[PlanEvent], facts: &OrganFacts) -> Result<PlanSummary, String> {
    let mut s = PlanSummary::default();
    let mut down: BTreeMap<(u8, u8), (u64, u64)> = BTreeMap::new();
    let mut tail = false;
    let mut prev: Option<(u64, u8)> = None;
    for (i, e) in events.iter().enumerate() {
        let at = |m: String| format!("event {i} ({} at {} µs, {:02X?}): {m}", e.kind, e.t_us, e.bytes);
        well_formed(&e.bytes).map_err(at)?;
        let status = e.bytes[0];
        let ch = status & 0x0F;
        if status < 0xF0 && facts.division_of_channel(ch).is_none() && !facts.control_channels.contains(&ch) {
            return Err(at(format!("channel {} is neither a division's nor a control channel", ch + 1)));
        }
        let rank: u8 = match e.kind.as_str() {
            "note_on" | "note_off" => {
                let div = facts
                    .division_of_channel(ch)
                    .ok_or_else(|| at(format!("a note on channel {}, not a division channel", ch + 1)))?;
                if e.division.as_deref() != Some(div) {
                    return Err(at(format!("division {:?}, but channel {} is {div}", e.division, ch + 1)));
                }
                if e.part.is_none() || e.name.is_some() {
                    return Err(at("a note without a part, or with a control name".into()));
                }
                if tail {
                    return Err(at("a note after the closing all-notes-off".into()));
                }
                let key = e.bytes[1];
                if e.kind == "note_on" {
                    if status & 0xF0 != 0x90 || e.bytes[2] == 0 {
                        return Err(at("note_on is not 9n kk vv with vv > 0".into()));
                    }
                    if down.insert((ch, key), (e.t_us, e.tick)).is_some() {
                        return Err(at(format!("key {key} struck again while down (double strike)")));
                    }
                    s.note_ons += 1;
                    2
                } else {
                    if !(status & 0xF0 == 0x80 || (status & 0xF0 == 0x90 && e.bytes[2] == 0)) {
                        return Err(at("note_off is not a note-off".into()));
                    }
                    let (on_t, on_tick) =
                        down.remove(&(ch, key)).ok_or_else(|| at(format!("key {key} released while up")))?;
                    s.soundings.push(Sounding { channel: ch, key, on_t, off_t: e.t_us, on_tick, off_tick: e.tick });
                    s.note_offs += 1;
                    0
                }
            }
            "all_notes_off" => {
                if status & 0xF0 != 0xB0 || e.bytes[1] != 123 || e.bytes[2] != 0 {
                    return Err(at("all_notes_off is not Bn 7B 00".into()));
                }
                if facts.division_of_channel(ch).is_none() {
                    return Err(at("all_notes_off on a channel that is not a division's".into()));
                }
                if !down.is_empty() {
                    return Err(at(format!("keys still down at the closing all-notes-off: {:?}", down.keys())));
                }
                tail = true;
                s.all_notes_off += 1;
                3
            }
            k if REGISTRATION_KINDS.contains(&k) => {
                if !facts.registration_msgs.contains(&e.bytes) {
                    return Err(at("a registration message the organ definition does not declare".into()));
                }
                if e.part.is_some() {
                    return Err(at("a registration message with a part".into()));
                }
                s.registration += 1;
                if tail { 3 } else { 1 }
            }
            other => return Err(at(format!("unknown kind {other:?}"))),
        };
        if let Some((pt, prank)) = prev {
            if e.t_us < pt {
                return Err(at(format!("not sorted: {} µs after {pt} µs", e.t_us)));
            }
            if e.t_us == pt && rank < prank {
                return Err(at("at equal times the order must be note-offs, registration, note-ons".into()));
            }
        }
        prev = Some((e.t_us, rank));
    }
    if !down.is_empty() {
        return Err(format!("keys left sounding at the end: {:?}", down.keys()));
    }
    if s.all_notes_off != facts.divisions.len() {
        return Err(format!("{} all-notes-off for {} divisions", s.all_notes_off, facts.divisions.len()));
    }
    Ok(s)
}

/// Checks that every note of every played part sounds on its division through its whole written
/// length (in ticks), on a key an exact number of octaves from the written key + `transpose`.
/// `clip` is the performed range of ticks.
pub fn check_coverage(
    score: &organ::score::Score,
    assignment: &[Option<u8>],
    transpose: i32,
    clip: (u64, u64),
    soundings: &[Sounding],
) -> Result<(), String> {
    let mut by_key: BTreeMap<(u8, u8), Vec<(u64, u64)>> = BTreeMap::new();
    for s in soundings {
        by_key.entry((s.channel, s.key)).or_default().push((s.on_tick, s.off_tick));
    }
    for (part, ch) in score.parts.iter().zip(assignment) {
        let Some(ch) = *ch else { continue };
        for n in &part.notes {
            let (start, end) = (n.start.max(clip.0), n.end.min(clip.1));
            if n.start == n.end || start >= end {
                continue;
            }
            let written = i32::from(n.key) + transpose;
            let ok = (0u8..128)
                .filter(|&k| (i32::from(k) - written).rem_euclid(12) == 0)
                .any(|k| by_key.get(&(ch, k)).is_some_and(|v| v.iter().any(|&(on, off)| on <= start && end <= off)));
            if !ok {
                return Err(format!(
                    "part {} note {} ticks {}-{} does not sound on channel {} through its length",
                    part.number,
                    n.key,
                    n.start,
                    n.end,
                    ch + 1
                ));
            }
        }
    }
    Ok(())
}
