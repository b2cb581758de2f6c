//! Classifying what the console sent when a control was drawn and then put in.
//!
//! The idea is GrandOrgue's "Detect complex MIDI setup" (`GOMidiEventRecvTab::DetectEvent`,
//! src/grandorgue/gui/dialogs/midi-event/GOMidiEventRecvTab.cpp): collect everything until a
//! quiet window after "on", then after "off", and classify the pair. Here the result is an
//! organ-definition message form (`{note, channel}`, `{cc, value, channel}`, `{program,
//! channel}`, `{nrpn, value, channel}`, `{sysex}`, `{raw}`) whose bytes are checked to equal
//! what the console sent — where no structured form reproduces them exactly, the bytes are kept
//! verbatim (`sysex`/`raw`).
//!
//! The SysEx dialects are recognised as GrandOrgue reads them (`GOMidiEvent::FromMidi`,
//! src/grandorgue/midi/events/GOMidiEvent.cpp):
//! - Johannus, 9 bytes: `F0 00 4A 4F 48 41 53 kk F7` ("JOHAS", element kk; toggles);
//! - Johannus, 11 bytes: `F0 00 4A 4F 48 41 53 bb 10 kk F7` (bank bb, element kk);
//! - Viscount: `F0 31 aa bb cc F7` (a 21-bit value; on and off values differ, or one toggles);
//! - Ahlborn-Galanti: `F0 35 aa bb F7` (a 14-bit value; GrandOrgue takes the on value's bits
//!   7-10 below 8 as "on", with off = on + 6·128 — here on and off are simply both recorded);
//! - Rodgers: a Roland data set `F0 41 dd 30 12 01 oo data… ss F7` with the checksum verified;
//!   the stop is the one bit set in "on" and clear in "off" (`GORodgersGetBit`).
//!
//! Pure functions on captured bytes; run on the control thread.

use crate::midi::{Channel, HexBytes};
use crate::organ::decode::{DataSetRef, RolandDataSet, bitmap_stop, differing_bits};

/// A message as an organ definition writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    Note {
        channel: Channel,
        key: u8,
        velocity: u8,
    },
    Cc {
        channel: Channel,
        cc: u8,
        value: u8,
    },
    Program {
        channel: Channel,
        program: u8,
    },
    Nrpn {
        channel: Channel,
        param: u16,
        value: u16,
    },
    Sysex(Vec<u8>),
    /// Several messages (or one that no other form writes), verbatim.
    Raw(Vec<Vec<u8>>),
}

impl Form {
    /// The bytes `organ` sends for this form (as organs/file.rs builds them).
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let cc = |ch: Channel, c: u8, v: u8| vec![0xB0 | ch.wire(), c, v];
        match self {
            Form::Note { channel, key, velocity } => vec![vec![0x90 | channel.wire(), *key, *velocity]],
            Form::Cc { channel, cc: c, value } => vec![cc(*channel, *c, *value)],
            Form::Program { channel, program } => vec![vec![0xC0 | channel.wire(), *program]],
            Form::Nrpn { channel, param, value } => {
                let mut v = vec![cc(*channel, 99, (param >> 7) as u8), cc(*channel, 98, (param & 0x7F) as u8)];
                if *value > 127 {
                    v.push(cc(*channel, 6, (value >> 7) as u8));
                    v.push(cc(*channel, 38, (value & 0x7F) as u8));
                } else {
                    v.push(cc(*channel, 6, *value as u8));
                }
                v
            }
            Form::Sysex(b) => vec![b.clone()],
            Form::Raw(v) => v.clone(),
        }
    }

    /// The off the organ definition infers when none is written (organ/file.rs
    /// `off_messages`): a note's note-off, a CC's or NRPN's value 0.
    pub fn inferred_off(&self) -> Option<Vec<Vec<u8>>> {
        match *self {
            Form::Note { channel, key, .. } => Some(vec![vec![0x80 | channel.wire(), key, 0]]),
            Form::Cc { channel, cc, value } if value != 0 => Some(Form::Cc { channel, cc, value: 0 }.messages()),
            Form::Nrpn { channel, param, value } if value != 0 => {
                Some(Form::Nrpn { channel, param, value: 0 }.messages())
            }
            _ => None,
        }
    }

    /// `note 36 on channel 16`, `SysEx F0 00 4A … F7` …
    pub fn describe(&self) -> String {
        match self {
            Form::Note { channel, key, velocity: 127 } => format!("note {key} on channel {}", channel.user()),
            Form::Note { channel, key, velocity } => {
                format!("note {key} velocity {velocity} on channel {}", channel.user())
            }
            Form::Cc { channel, cc, value } => format!("CC {cc} = {value} on channel {}", channel.user()),
            Form::Program { channel, program } => format!("program {program} on channel {}", channel.user()),
            Form::Nrpn { channel, param, value } => format!("NRPN {param} = {value} on channel {}", channel.user()),
            Form::Sysex(b) => format!("SysEx {}", super::super::short_hex(b)),
            Form::Raw(v) => {
                let all: Vec<u8> = v.iter().flatten().copied().collect();
                format!("{} message(s): {}", v.len(), super::super::short_hex(&all))
            }
        }
    }
}

/// A learned control: its on message, its off (`None` = the organ definition infers it), and
/// what kind of message the console uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub on: Form,
    pub off: Option<Form>,
    /// The same message draws and puts in (the console toggles).
    pub toggle: bool,
    /// For people: `note on/off`, `program change toggle`, `Johannus SysEx toggle`, `Rodgers
    /// bitmap, device 10h, stop bit 12` …
    pub dialect: String,
    /// Something the user should know (e.g. nothing came when it was put in).
    pub note: Option<String>,
}

impl Binding {
    /// The bytes of its off, written or inferred.
    pub fn off_messages(&self) -> Vec<Vec<u8>> {
        match &self.off {
            Some(f) => f.messages(),
            None => self.on.inferred_off().unwrap_or_default(),
        }
    }
}

/// What a draw/put-in pair of captures comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Bound(Binding),
    /// Nothing arrived when it was drawn.
    Nothing,
    /// Many messages for one control: a piston, or the console reporting its whole state.
    Burst {
        count: usize,
    },
    /// Messages arrived but do not make a control (the reason says what was seen).
    Unclear(String),
}

/// More events than this in one capture is a burst (a piston, a state report), not a stop.
pub const BURST: usize = 4;

/// A SysEx dialect, as GrandOrgue recognises it.
pub fn sysex_dialect(b: &[u8]) -> Option<&'static str> {
    match b {
        [0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, _, 0xF7] => Some("Johannus SysEx"),
        [0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, _, 0x10, _, 0xF7] => Some("Johannus SysEx (11 bytes)"),
        [0xF0, 0x31, _, _, _, 0xF7] => Some("Viscount SysEx"),
        [0xF0, 0x35, _, _, 0xF7] => Some("Ahlborn-Galanti SysEx"),
        _ if RolandDataSet::parse(b).is_some() => Some("Roland data set"),
        [0xF0, ..] => Some("SysEx"),
        _ => None,
    }
}

/// One event of a capture: a message, or an NRPN's CC 99/98/6(/38) run taken together.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    NoteOn { ch: u8, key: u8, vel: u8 },
    NoteOff { ch: u8, key: u8 },
    Cc { ch: u8, cc: u8, value: u8 },
    Program { ch: u8, program: u8 },
    Nrpn { ch: u8, param: u16, value: u16 },
    Sysex,
    Other,
}

/// Note-offs in one form (8n k 00), as organ sends them.
fn normal(b: &[u8]) -> Vec<u8> {
    match b {
        [s, k, 0] if s & 0xF0 == 0x90 => vec![0x80 | (s & 0x0F), *k, 0],
        [s, k, _] if s & 0xF0 == 0x80 => vec![*s, *k, 0],
        _ => b.to_vec(),
    }
}

fn events(msgs: &[Vec<u8>]) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < msgs.len() {
        let m = &msgs[i];
        let cc_at = |j: usize, ch: u8, c: u8| -> Option<u8> {
            match msgs.get(j).map(Vec::as_slice) {
                Some(&[s, n, v]) if s == 0xB0 | ch && n == c => Some(v),
                _ => None,
            }
        };
        let ev = match m.as_slice() {
            &[s, 99, msb] if s & 0xF0 == 0xB0 => {
                let ch = s & 0x0F;
                if let (Some(lsb), Some(v)) = (cc_at(i + 1, ch, 98), cc_at(i + 2, ch, 6)) {
                    let param = (u16::from(msb) << 7) | u16::from(lsb);
                    let (value, used) = match cc_at(i + 3, ch, 38) {
                        Some(lo) => ((u16::from(v) << 7) | u16::from(lo), 4),
                        None => (u16::from(v), 3),
                    };
                    i += used;
                    out.push(Ev::Nrpn { ch, param, value });
                    continue;
                }
                Ev::Cc { ch, cc: 99, value: msb }
            }
            &[s, k, v] if s & 0xF0 == 0x90 && v > 0 => Ev::NoteOn { ch: s & 0x0F, key: k, vel: v },
            &[s, k, _] if s & 0xF0 == 0x90 || s & 0xF0 == 0x80 => Ev::NoteOff { ch: s & 0x0F, key: k },
            &[s, c, v] if s & 0xF0 == 0xB0 => Ev::Cc { ch: s & 0x0F, cc: c, value: v },
            &[s, p] if s & 0xF0 == 0xC0 => Ev::Program { ch: s & 0x0F, program: p },
            [0xF0, ..] => Ev::Sysex,
            _ => Ev::Other,
        };
        out.push(ev);
        i += 1;
    }
    out
}

fn ch(c: u8) -> Channel {
    Channel::new(c & 0x0F).expect("masked")
}

/// The structured form of a single event, if there is one.
fn form_of(ev: &Ev, msgs: &[Vec<u8>]) -> Option<Form> {
    Some(match *ev {
        Ev::NoteOn { ch: c, key, vel } => Form::Note { channel: ch(c), key, velocity: vel },
        Ev::Cc { ch: c, cc, value } => Form::Cc { channel: ch(c), cc, value },
        Ev::Program { ch: c, program } => Form::Program { channel: ch(c), program },
        Ev::Nrpn { ch: c, param, value } => Form::Nrpn { channel: ch(c), param, value },
        Ev::Sysex => Form::Sysex(msgs.first()?.clone()),
        Ev::NoteOff { .. } | Ev::Other => return None,
    })
}

/// A form whose bytes are exactly `msgs` (after note-off normalisation): the structured form
/// when it reproduces them, else `sysex`/`raw` verbatim.
fn exact(msgs: &[Vec<u8>]) -> Form {
    let evs = events(msgs);
    if let [ev] = evs.as_slice()
        && let Some(f) = form_of(ev, msgs)
        && same(&f.messages(), msgs)
    {
        return f;
    }
    match msgs {
        [one] if one.first() == Some(&0xF0) => Form::Sysex(one.clone()),
        _ => Form::Raw(msgs.to_vec()),
    }
}

fn same(a: &[Vec<u8>], b: &[Vec<u8>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| normal(x) == normal(y))
}

fn kind_name(f: &Form) -> String {
    match f {
        Form::Note { .. } => "note".into(),
        Form::Cc { .. } => "control change".into(),
        Form::Program { .. } => "program change".into(),
        Form::Nrpn { .. } => "NRPN".into(),
        Form::Sysex(b) => sysex_dialect(b).unwrap_or("SysEx").into(),
        Form::Raw(_) => "message sequence".into(),
    }
}

/// Classifies what arrived when a control was drawn (`on`) and put in (`off`). System
/// real-time messages must already be removed.
pub fn classify(on: &[Vec<u8>], off: &[Vec<u8>]) -> Outcome {
    if on.is_empty() {
        return Outcome::Nothing;
    }
    let on_evs = events(on);
    if on_evs.len() > BURST {
        return Outcome::Burst { count: on.len() };
    }
    // The same message both times: the console toggles.
    if same(on, off) {
        let f = exact(on);
        let dialect = format!("{} toggle", kind_name(&f));
        return Outcome::Bound(Binding { on: f.clone(), off: Some(f), toggle: true, dialect, note: None });
    }
    if let ([a], [b]) = (on, off)
        && RolandDataSet::parse(a).is_some()
        && RolandDataSet::parse(b).is_some()
    {
        return rodgers(a, b);
    }
    if off.is_empty() {
        let f = exact(on);
        return match f.inferred_off() {
            Some(_) if matches!(f, Form::Note { .. }) => Outcome::Bound(Binding {
                dialect: "note on/off".into(),
                on: f,
                off: None,
                toggle: false,
                note: Some("nothing came when it was put in; the off is the note-off".into()),
            }),
            _ => Outcome::Unclear(format!(
                "got {} when drawn but nothing when put in; put it in (or retry)",
                HexBytes(&on.concat())
            )),
        };
    }
    if events(off).len() > BURST {
        return Outcome::Burst { count: off.len() };
    }
    let (on_f, off_f) = (exact(on), exact(off));
    let on_f_bytes = on_f.messages();
    let dialect = match (&on_f, &off_f) {
        (Form::Note { .. }, _) if off.len() == 1 && same(&on_f.inferred_off().unwrap_or_default(), off) => {
            return bound(on_f, None, "note on/off");
        }
        (Form::Cc { .. } | Form::Nrpn { .. }, _) if on_f.inferred_off().is_some_and(|x| same(&x, off)) => {
            let d = if matches!(on_f, Form::Cc { .. }) { "control change, value on/off" } else { "NRPN, value on/off" };
            return bound(on_f, None, d);
        }
        // The console reads the velocity (GrandOrgue's `Note` with low and high values).
        (Form::Note { channel: a, key: k, .. }, Form::Note { channel: b, key: l, .. }) if a == b && k == l => {
            "note, one velocity on and another off"
        }
        (Form::Note { .. }, Form::Note { .. }) => "note, one key on and another off",
        (Form::Cc { cc: a, .. }, Form::Cc { cc: b, .. }) if a == b => "control change, fixed on and off values",
        (Form::Cc { .. }, Form::Cc { .. }) => "control change, one controller on and another off",
        (Form::Program { .. }, Form::Program { .. }) => "program change, one program on and another off",
        (Form::Nrpn { .. }, Form::Nrpn { .. }) => "NRPN, fixed on and off values",
        (Form::Sysex(a), Form::Sysex(_)) => sysex_dialect(a).unwrap_or("SysEx"),
        _ => "message sequence",
    };
    debug_assert!(same(&on_f_bytes, on));
    bound(on_f, Some(off_f), dialect)
}

fn bound(on: Form, off: Option<Form>, dialect: &str) -> Outcome {
    Outcome::Bound(Binding { on, off, toggle: false, dialect: dialect.into(), note: None })
}

/// Two Roland data sets: the stop is the one bit set when drawn and clear when put in. It is
/// written as the data set GrandOrgue sends for one stop (`GOMidiOutputMerger`): the one byte
/// holding the stop's bit, at its offset, with only that bit set (on) or clear (off).
fn rodgers(a: &[u8], b: &[u8]) -> Outcome {
    let Some(bs) = bitmap_stop(a, b) else {
        let (x, y) = (DataSetRef::parse(a).expect("checked"), DataSetRef::parse(b).expect("checked"));
        let differ = differing_bits(x, y).count();
        return Outcome::Unclear(format!(
            "the two bitmaps (device {:02X}h) differ in {differ} bits, not one; make sure only this stop moves, and retry",
            x.device
        ));
    };
    let byte = (bs.bit / 7) as u8;
    let mask = 1u8 << (bs.bit % 7);
    let on = RolandDataSet { device: bs.device, offset: byte, data: vec![mask] }.to_bytes();
    let off = RolandDataSet { device: bs.device, offset: byte, data: vec![0] }.to_bytes();
    Outcome::Bound(Binding {
        on: Form::Sysex(on),
        off: Some(Form::Sysex(off)),
        toggle: false,
        dialect: format!(
            "Rodgers bitmap, device {:02X}h, stop bit {} (byte {byte}, bit {})",
            bs.device,
            bs.bit,
            bs.bit % 7
        ),
        note: None,
    })
}

/// A division's channel and compass from the lowest and highest keys pressed.
///
/// # Errors
/// No note-on in one of the captures, the keys on two channels, or the highest not above the
/// lowest by an octave.
pub fn division(low: &[Vec<u8>], high: &[Vec<u8>]) -> Result<(Channel, (u8, u8)), String> {
    let first_on = |msgs: &[Vec<u8>]| {
        events(msgs).into_iter().find_map(|e| match e {
            Ev::NoteOn { ch, key, .. } => Some((ch, key)),
            _ => None,
        })
    };
    let (Some((c1, lo)), Some((c2, hi))) = (first_on(low), first_on(high)) else {
        return Err("no key was pressed (no note-on arrived)".into());
    };
    if c1 != c2 {
        return Err(format!("the lowest key came on channel {} and the highest on channel {}", c1 + 1, c2 + 1));
    }
    if hi < lo + 11 {
        return Err(format!("the highest key ({hi}) is not an octave above the lowest ({lo})"));
    }
    Ok((ch(c1), (lo, hi)))
}

/// What the General Cancel piston sent: its own message, and the state report that may follow
/// (messages equal to learned controls' on or off, found by `is_control`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piston {
    pub message: Option<Form>,
    /// How many messages were a report of the stops' state.
    pub report: usize,
}

/// Splits a piston's capture into its own message and a state report.
pub fn piston(msgs: &[Vec<u8>], is_control: impl Fn(&[u8]) -> bool) -> Result<Piston, String> {
    if msgs.is_empty() {
        return Err("nothing arrived".into());
    }
    // A Roland data set is the console's whole state (Rodgers), never a piston's own message.
    let (report, own): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
        msgs.iter().partition(|m| is_control(m) || RolandDataSet::parse(m).is_some());
    let own: Vec<Vec<u8>> = own.into_iter().cloned().collect();
    if own.is_empty() {
        return Ok(Piston { message: None, report: report.len() });
    }
    let evs = events(&own);
    if evs.len() > 1 {
        return Err(format!(
            "{} messages that are not the stops' own ({}); cannot tell which is the piston",
            own.len(),
            super::super::short_hex(&own.concat())
        ));
    }
    Ok(Piston { message: Some(exact(&own)), report: report.len() })
}

/// A message for people who have no organ definition yet: `note-on 36 velocity 127, channel 16`.
pub fn describe_message(b: &[u8]) -> String {
    match *b {
        [s, k, v] if s & 0xF0 == 0x90 && v > 0 => {
            format!("note-on {k} ({}) velocity {v}, channel {}", crate::organ::decode::note_name(k), (s & 0x0F) + 1)
        }
        [s, k, _] if s & 0xF0 == 0x90 || s & 0xF0 == 0x80 => {
            format!("note-off {k} ({}), channel {}", crate::organ::decode::note_name(k), (s & 0x0F) + 1)
        }
        [s, c, v] if s & 0xF0 == 0xB0 => format!("control change {c} = {v}, channel {}", (s & 0x0F) + 1),
        [s, p] if s & 0xF0 == 0xC0 => format!("program change {p}, channel {}", (s & 0x0F) + 1),
        [s, ..] if s & 0xF0 == 0xE0 => format!("pitch bend, channel {}", (s & 0x0F) + 1),
        [0xF0, ..] => match RolandDataSet::parse(b) {
            Some(ds) => format!(
                "Roland data set, device {:02X}h, offset {}, {} byte(s), checksum ok",
                ds.device,
                ds.offset,
                ds.data.len()
            ),
            None => format!("{} ({} bytes)", sysex_dialect(b).unwrap_or("SysEx"), b.len()),
        },
        _ => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::parse_hex;

    /// Captures as a console sends them, written in hex, one message per `|`.
    fn cap(s: &str) -> Vec<Vec<u8>> {
        if s.trim().is_empty() {
            return Vec::new();
        }
        s.split('|').map(|m| parse_hex(m).unwrap()).collect()
    }

    fn bind(on: &str, off: &str) -> Binding {
        match classify(&cap(on), &cap(off)) {
            Outcome::Bound(b) => b,
            o => panic!("{on} / {off}: {o:?}"),
        }
    }

    fn ch16() -> Channel {
        Channel::new(15).unwrap()
    }

    #[test]
    fn note_on_off_stop() {
        let b = bind("9F 24 7F", "8F 24 00");
        assert_eq!(b.on, Form::Note { channel: ch16(), key: 36, velocity: 127 });
        assert_eq!((b.off, b.toggle, b.dialect.as_str()), (None, false, "note on/off"));
        // Note-on velocity 0 and a note-off velocity are the same off.
        assert_eq!(bind("9F 24 40", "9F 24 00").on, Form::Note { channel: ch16(), key: 36, velocity: 64 });
        assert_eq!(bind("9F 24 40", "8F 24 40").off, None);
    }

    #[test]
    fn one_note_at_two_velocities_is_an_on_and_an_off() {
        let b = bind("9F 24 7F", "9F 24 01");
        assert!(!b.toggle);
        assert_eq!(b.on, Form::Note { channel: ch16(), key: 36, velocity: 127 });
        assert_eq!(b.off, Some(Form::Note { channel: ch16(), key: 36, velocity: 1 }));
        assert_eq!(b.dialect, "note, one velocity on and another off");
        assert_eq!(bind("9F 24 7F", "9F 25 7F").dialect, "note, one key on and another off");
    }

    #[test]
    fn toggles_are_the_same_message_twice() {
        let b = bind("CB 05", "CB 05");
        assert!(b.toggle);
        assert_eq!(b.on, Form::Program { channel: Channel::new(11).unwrap(), program: 5 });
        assert_eq!(b.off, Some(b.on.clone()));
        assert_eq!(b.dialect, "program change toggle");
        // A push button that sends note-on and note-off each time it is pressed.
        let b = bind("9F 30 7F|8F 30 00", "9F 30 7F|9F 30 00");
        assert!(b.toggle);
        assert_eq!(b.on, Form::Raw(cap("9F 30 7F|8F 30 00")));
        let b = bind("F0 00 4A 4F 48 41 53 12 F7", "F0 00 4A 4F 48 41 53 12 F7");
        assert_eq!((b.toggle, b.dialect.as_str()), (true, "Johannus SysEx toggle"));
        assert_eq!(b.on, Form::Sysex(parse_hex("F0 00 4A 4F 48 41 53 12 F7").unwrap()));
        let b = bind("F0 31 00 01 05 F7", "F0 31 00 01 05 F7");
        assert_eq!(b.dialect, "Viscount SysEx toggle");
    }

    #[test]
    fn control_changes() {
        let b = bind("BF 14 7F", "BF 14 00");
        assert_eq!(b.on, Form::Cc { channel: ch16(), cc: 20, value: 127 });
        assert_eq!(b.off, None);
        let b = bind("BF 14 41", "BF 14 01");
        assert_eq!(b.off, Some(Form::Cc { channel: ch16(), cc: 20, value: 1 }));
        assert_eq!(b.dialect, "control change, fixed on and off values");
        let b = bind("BF 14 7F", "BF 15 7F");
        assert_eq!(b.off, Some(Form::Cc { channel: ch16(), cc: 21, value: 127 }));
        assert_eq!(b.dialect, "control change, one controller on and another off");
    }

    #[test]
    fn program_pairs_and_nrpn() {
        let b = bind("CE 07", "CE 08");
        assert_eq!(b.on, Form::Program { channel: Channel::new(14).unwrap(), program: 7 });
        assert_eq!(b.off, Some(Form::Program { channel: Channel::new(14).unwrap(), program: 8 }));
        let b = bind("BF 63 02|BF 62 2C|BF 06 01", "BF 63 02|BF 62 2C|BF 06 00");
        assert_eq!(b.on, Form::Nrpn { channel: ch16(), param: 300, value: 1 });
        assert_eq!((b.off, b.dialect.as_str()), (None, "NRPN, value on/off"));
        // A 14-bit value with CC 38 that organ would send as CC 6 alone: kept verbatim.
        let b = bind("BF 63 00|BF 62 05|BF 06 00|BF 26 01", "BF 63 00|BF 62 05|BF 06 00|BF 26 00");
        assert_eq!(b.on, Form::Raw(cap("BF 63 00|BF 62 05|BF 06 00|BF 26 01")));
        let b = bind("BF 63 00|BF 62 05|BF 06 01|BF 26 01", "BF 63 00|BF 62 05|BF 06 00");
        assert_eq!(b.on, Form::Nrpn { channel: ch16(), param: 5, value: 129 });
    }

    #[test]
    fn sysex_dialects() {
        let b = bind("F0 31 00 01 05 F7", "F0 31 00 01 06 F7");
        assert_eq!(b.dialect, "Viscount SysEx");
        assert_eq!(b.off, Some(Form::Sysex(parse_hex("F0 31 00 01 06 F7").unwrap())));
        let b = bind("F0 35 01 10 F7", "F0 35 07 10 F7");
        assert_eq!(b.dialect, "Ahlborn-Galanti SysEx");
        let b = bind("F0 00 4A 4F 48 41 53 01 10 22 F7", "F0 00 4A 4F 48 41 53 00 10 22 F7");
        assert_eq!(b.dialect, "Johannus SysEx (11 bytes)");
        assert_eq!(sysex_dialect(&parse_hex("F0 7E 7F 06 01 F7").unwrap()), Some("SysEx"));
    }

    #[test]
    fn rodgers_bitmaps_by_the_bit_that_differs() {
        // A 5-byte bitmap (35 stops); stop 12 drawn (byte 1, bit 5) with stop 0 already drawn.
        let on = RolandDataSet { device: 0x10, offset: 0, data: vec![1, 0x20, 0, 0, 0] }.to_bytes();
        let off = RolandDataSet { device: 0x10, offset: 0, data: vec![1, 0, 0, 0, 0] }.to_bytes();
        let b = match classify(std::slice::from_ref(&on), std::slice::from_ref(&off)) {
            Outcome::Bound(b) => b,
            o => panic!("{o:?}"),
        };
        assert_eq!(b.dialect, "Rodgers bitmap, device 10h, stop bit 12 (byte 1, bit 5)");
        assert_eq!(b.on, Form::Sysex(parse_hex("F0 41 10 30 12 01 01 20 5E F7").unwrap()));
        assert_eq!(b.off, Some(Form::Sysex(parse_hex("F0 41 10 30 12 01 01 00 7E F7").unwrap())));
        // Two bits moved: not one stop.
        let two = RolandDataSet { device: 0x10, offset: 0, data: vec![0, 0x20, 0, 0, 0] }.to_bytes();
        let Outcome::Unclear(why) = classify(&[two], std::slice::from_ref(&off)) else { panic!() };
        assert!(why.contains("differ in 2 bits"), "{why}");
        // A wrong checksum is not a Rodgers bitmap: kept as plain SysEx.
        let mut bad = on.clone();
        let n = bad.len();
        bad[n - 2] ^= 0x01;
        let Outcome::Bound(b) = classify(&[bad.clone()], &[off]) else { panic!() };
        assert_eq!((b.dialect.as_str(), b.on), ("SysEx", Form::Sysex(bad)));
    }

    #[test]
    fn bursts_and_nothing() {
        let burst = "9F 24 00|9F 25 00|9F 26 00|9F 27 00|9F 28 00|9F 29 00";
        assert_eq!(classify(&cap(burst), &cap("")), Outcome::Burst { count: 6 });
        assert_eq!(classify(&cap(""), &cap("9F 24 00")), Outcome::Nothing);
        let b = bind("9F 24 7F", "");
        assert!(b.note.unwrap().contains("nothing came"));
        assert!(matches!(classify(&cap("CF 05"), &cap("")), Outcome::Unclear(_)));
    }

    #[test]
    fn every_bound_form_sends_what_the_console_sent() {
        for (on, off) in [
            ("9F 24 7F", "8F 24 00"),
            ("BF 14 7F", "BF 14 00"),
            ("CE 07", "CE 08"),
            ("BF 63 02|BF 62 2C|BF 06 01", "BF 63 02|BF 62 2C|BF 06 00"),
            ("F0 31 00 01 05 F7", "F0 31 00 01 06 F7"),
            ("9F 30 7F|8F 30 00", "9F 30 7F|8F 30 00"),
        ] {
            let b = bind(on, off);
            assert!(same(&b.on.messages(), &cap(on)), "{on}: {:?}", b.on);
            assert!(same(&b.off_messages(), &cap(off)), "{off}: {:?}", b.off);
        }
    }

    #[test]
    fn divisions_from_the_lowest_and_highest_keys() {
        let (c, compass) = division(&cap("91 24 40|81 24 00"), &cap("91 60 40|81 60 00")).unwrap();
        assert_eq!((c.user(), compass), (2, (36, 96)));
        assert!(
            division(&cap("91 24 40"), &cap("92 60 40"))
                .unwrap_err()
                .contains("channel 2 and the highest on channel 3")
        );
        assert!(division(&cap("91 24 40"), &cap("91 26 40")).unwrap_err().contains("octave"));
        assert!(division(&cap("CF 01"), &cap("91 60 40")).is_err());
    }

    #[test]
    fn a_piston_and_its_state_report() {
        let msgs = cap("CF 00|9F 24 00|9F 25 00|9F 26 00|9F 27 00|9F 28 00");
        let p = piston(&msgs, |m| m[0] == 0x9F).unwrap();
        assert_eq!(p, Piston { message: Some(Form::Program { channel: ch16(), program: 0 }), report: 5 });
        let only_report = piston(&cap("9F 24 00|9F 25 00"), |m| m[0] == 0x9F).unwrap();
        assert_eq!(only_report.message, None);
        assert!(piston(&cap("CF 00|CF 01"), |_| false).is_err());
        // A Rodgers console sends its program change and then its (cleared) bitmap.
        let bitmap = RolandDataSet { device: 0x10, offset: 0, data: vec![0; 5] }.to_bytes();
        let p = piston(&[vec![0xCF, 0], bitmap], |_| false).unwrap();
        assert_eq!((p.message.is_some(), p.report), (true, 1));
    }

    #[test]
    fn messages_for_people() {
        assert_eq!(describe_message(&[0x9F, 36, 127]), "note-on 36 (C2) velocity 127, channel 16");
        assert_eq!(describe_message(&[0x8F, 36, 0]), "note-off 36 (C2), channel 16");
        assert_eq!(
            describe_message(&parse_hex("F0 41 10 30 12 01 01 20 5E F7").unwrap()).as_str(),
            "Roland data set, device 10h, offset 1, 1 byte(s), checksum ok"
        );
        assert_eq!(describe_message(&parse_hex("F0 00 4A 4F 48 41 53 7F F7").unwrap()), "Johannus SysEx (9 bytes)");
    }
}
