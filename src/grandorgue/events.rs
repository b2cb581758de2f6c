//! A model of how GrandOrgue 3.9 receives MIDI, used to choose and check bindings.
//!
//! GrandOrgue turns each incoming message into an event (`GOMidiEvent::FromMidi`), merges
//! controller sequences (`GOMidiMerger`: CC 0/32 bank select and CC 99/98, 101/100 parameter
//! numbers are swallowed and remembered; CC 6 becomes an NRPN or RPN event carrying the data-entry
//! MSB; a program change becomes 1-based and carries the bank), and then asks each element's
//! receiver patterns whether the event turns it on, off or over
//! (`GOMidiReceiverBase::Match`: the first matching pattern wins).
//!
//! [`bind`] picks patterns for a stop whose on and off messages are given, and proves them by
//! running both message sequences through this model from either starting state. Only patterns
//! that exist in GrandOrgue 3.9.5 (checked against its source and its binary's strings) are used.
//! Runs on the control thread.

use std::fmt;

use crate::midi::{HexBytes, Message};

/// A GrandOrgue MIDI event after merging (`GOMidiEvent` with its `MidiType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Note on or off (0x8n → value 0). Channel 1-16.
    Note {
        channel: u8,
        key: u8,
        value: u8,
    },
    Ctrl {
        channel: u8,
        key: u8,
        value: u8,
    },
    /// 1-based program number plus bank: `((bank_msb << 14) | (bank_lsb << 7) | program) + 1`.
    Program {
        channel: u8,
        key: u32,
    },
    Rpn {
        channel: u8,
        key: u16,
        value: u8,
    },
    Nrpn {
        channel: u8,
        key: u16,
        value: u8,
    },
    /// `F0 00 4A 4F 48 41 53 kk F7` (toggles the element with key kk).
    Johannus9 {
        key: u8,
    },
    /// `F0 31 a b c F7`: a 21-bit value.
    Viscount {
        value: u32,
    },
    /// `F0 35 a b F7`: a 14-bit value.
    Ahlborn {
        value: u16,
    },
    /// Something GrandOrgue's receivers ignore for drawstops (aftertouch, pitch bend, an unknown
    /// SysEx …), or a Rodgers / Johannus-11 SysEx this model does not follow.
    Other,
}

/// GrandOrgue's per-port controller memory (`GOMidiMerger`).
#[derive(Debug, Clone, Default)]
pub struct Merger {
    bank_msb: [u8; 16],
    bank_lsb: [u8; 16],
    rpn_msb: [u8; 16],
    rpn_lsb: [u8; 16],
    nrpn_msb: [u8; 16],
    nrpn_lsb: [u8; 16],
    rpn: bool,
}

impl Merger {
    /// The event GrandOrgue's receivers see for one message, or `None` when the merger swallows
    /// it (bank select and parameter-number controllers).
    pub fn process(&mut self, bytes: &[u8]) -> Option<Event> {
        let Some(&status) = bytes.first() else { return Some(Event::Other) };
        let ch = (status & 0x0F) as usize;
        let channel = (status & 0x0F) + 1;
        match (status & 0xF0, bytes.len()) {
            (0x80, 3) => Some(Event::Note { channel, key: bytes[1] & 0x7F, value: 0 }),
            (0x90, 3) => Some(Event::Note { channel, key: bytes[1] & 0x7F, value: bytes[2] & 0x7F }),
            (0xB0, 3) => {
                let (key, value) = (bytes[1] & 0x7F, bytes[2] & 0x7F);
                match key {
                    0 => self.bank_msb[ch] = value,
                    32 => self.bank_lsb[ch] = value,
                    101 => (self.rpn_msb[ch], self.rpn) = (value, true),
                    100 => (self.rpn_lsb[ch], self.rpn) = (value, true),
                    99 => (self.nrpn_msb[ch], self.rpn) = (value, false),
                    98 => (self.nrpn_lsb[ch], self.rpn) = (value, false),
                    6 if self.rpn => {
                        let key = (u16::from(self.rpn_msb[ch]) << 7) | u16::from(self.rpn_lsb[ch]);
                        return Some(Event::Rpn { channel, key, value });
                    }
                    6 => {
                        let key = (u16::from(self.nrpn_msb[ch]) << 7) | u16::from(self.nrpn_lsb[ch]);
                        return Some(Event::Nrpn { channel, key, value });
                    }
                    _ => return Some(Event::Ctrl { channel, key, value }),
                }
                None
            }
            (0xC0, 2) => {
                let key = (u32::from(bytes[1] & 0x7F)
                    | (u32::from(self.bank_lsb[ch]) << 7)
                    | (u32::from(self.bank_msb[ch]) << 14))
                    + 1;
                Some(Event::Program { channel, key })
            }
            (0xF0, _) => Some(sysex_event(bytes)),
            _ => Some(Event::Other),
        }
    }
}

fn sysex_event(b: &[u8]) -> Event {
    match b {
        [0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, k, 0xF7] => Event::Johannus9 { key: *k },
        [0xF0, 0x31, a, bb, c, 0xF7] => {
            Event::Viscount { value: (u32::from(a & 0x7F) << 14) | (u32::from(bb & 0x7F) << 7) | u32::from(c & 0x7F) }
        }
        [0xF0, 0x35, a, bb, 0xF7] => Event::Ahlborn { value: (u16::from(a & 0x7F) << 7) | u16::from(bb & 0x7F) },
        _ => Event::Other,
    }
}

/// The events a sequence of messages produces, from a fresh merger.
pub fn events(messages: &[Message]) -> Vec<Event> {
    let mut m = Merger::default();
    messages.iter().filter_map(|msg| m.process(msg.as_bytes())).collect()
}

/// A receiver pattern of a drawstop, coupler or tremulant, by its GrandOrgue 3.9.5 type name.
/// Only the types `organ` writes are modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// `Note`: value ≤ low → off, value ≥ high → on (reversed when low > high).
    Note {
        channel: u8,
        key: u8,
        low: u8,
        high: u8,
    },
    /// `NoteOn`: value ≥ high toggles.
    NoteOn {
        channel: u8,
        key: u8,
        high: u8,
    },
    /// `NoteOff`: value ≤ low toggles.
    NoteOff {
        channel: u8,
        key: u8,
        low: u8,
    },
    /// `ControlChangeFixed`: value = low → off, value = high → on.
    CtrlFixed {
        channel: u8,
        key: u8,
        low: u8,
        high: u8,
    },
    /// `ControlChangeFixedOnOff`: value = low or = high toggles.
    CtrlFixedToggle {
        channel: u8,
        key: u8,
        low: u8,
        high: u8,
    },
    /// `ProgramChange`: the (1-based) program toggles.
    ProgramToggle {
        channel: u8,
        key: u32,
    },
    /// `ProgramRange`: program = low → off, = high → on (1-based).
    ProgramRange {
        channel: u8,
        low: u32,
        high: u32,
    },
    /// `NRPN` / `RPN`: like `Note` on the parameter's data-entry value.
    Nrpn {
        channel: u8,
        key: u16,
        low: u8,
        high: u8,
    },
    Rpn {
        channel: u8,
        key: u16,
        low: u8,
        high: u8,
    },
    /// `NRPNOnOff` / `RPNOnOff`: value ≥ high or ≤ low toggles.
    NrpnToggle {
        channel: u8,
        key: u16,
        low: u8,
        high: u8,
    },
    RpnToggle {
        channel: u8,
        key: u16,
        low: u8,
        high: u8,
    },
    /// `SysExJohannus`: the 9-byte Johannus message with this key toggles.
    Johannus {
        key: u8,
    },
    /// `SysExViscount` / `SysExAhlbornGalanti`: value = low → off, = high → on.
    Viscount {
        low: u32,
        high: u32,
    },
    Ahlborn {
        low: u16,
        high: u16,
    },
    /// `SysExViscountToggle`: value = low toggles.
    ViscountToggle {
        value: u32,
    },
}

/// What an event does to an element (`GOMidiMatchType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    On,
    Off,
    Toggle,
}

fn range_match(value: u32, low: u32, high: u32) -> Effect {
    if low <= high {
        if value <= low {
            Effect::Off
        } else if value >= high {
            Effect::On
        } else {
            Effect::None
        }
    } else if value >= low {
        Effect::Off
    } else if value <= high {
        Effect::On
    } else {
        Effect::None
    }
}

impl Pattern {
    /// GrandOrgue's `MIDIEventType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Pattern::Note { .. } => "Note",
            Pattern::NoteOn { .. } => "NoteOn",
            Pattern::NoteOff { .. } => "NoteOff",
            Pattern::CtrlFixed { .. } => "ControlChangeFixed",
            Pattern::CtrlFixedToggle { .. } => "ControlChangeFixedOnOff",
            Pattern::ProgramToggle { .. } => "ProgramChange",
            Pattern::ProgramRange { .. } => "ProgramRange",
            Pattern::Nrpn { .. } => "NRPN",
            Pattern::Rpn { .. } => "RPN",
            Pattern::NrpnToggle { .. } => "NRPNOnOff",
            Pattern::RpnToggle { .. } => "RPNOnOff",
            Pattern::Johannus { .. } => "SysExJohannus",
            Pattern::Viscount { .. } => "SysExViscount",
            Pattern::Ahlborn { .. } => "SysExAhlbornGalanti",
            Pattern::ViscountToggle { .. } => "SysExViscountToggle",
        }
    }

    /// Whether GrandOrgue flips the element instead of setting it.
    pub fn is_toggle(&self) -> bool {
        matches!(
            self,
            Pattern::NoteOn { .. }
                | Pattern::NoteOff { .. }
                | Pattern::CtrlFixedToggle { .. }
                | Pattern::ProgramToggle { .. }
                | Pattern::NrpnToggle { .. }
                | Pattern::RpnToggle { .. }
                | Pattern::Johannus { .. }
                | Pattern::ViscountToggle { .. }
        )
    }

    /// The settings-file keys of this pattern as event number `n` (1-based), exactly the keys
    /// GrandOrgue 3.9.5 reads for the type (`HasChannel`, `HasKey`, `HasLowerLimit`,
    /// `HasUpperLimit` of `GOMidiReceiverBase`; an unread key makes it warn "Unused CMB entry").
    pub fn cmb_keys(&self, n: usize) -> Vec<(String, String)> {
        let mut v = vec![
            (format!("MIDIDevice{n:03}"), String::new()),
            (format!("MIDIEventType{n:03}"), self.type_name().into()),
        ];
        let mut push = |k: &str, val: String| v.push((format!("{k}{n:03}"), val));
        let (channel, key, low, high): (Option<u8>, Option<u32>, Option<u32>, Option<u32>) = match *self {
            Pattern::Note { channel, key, low, high } | Pattern::CtrlFixed { channel, key, low, high } => {
                (Some(channel), Some(key.into()), Some(low.into()), Some(high.into()))
            }
            Pattern::CtrlFixedToggle { channel, key, low, high } => {
                (Some(channel), Some(key.into()), Some(low.into()), Some(high.into()))
            }
            Pattern::NoteOn { channel, key, high } => (Some(channel), Some(key.into()), None, Some(high.into())),
            Pattern::NoteOff { channel, key, low } => (Some(channel), Some(key.into()), Some(low.into()), None),
            Pattern::ProgramToggle { channel, key } => (Some(channel), Some(key), None, None),
            Pattern::ProgramRange { channel, low, high } => (Some(channel), None, Some(low), Some(high)),
            Pattern::Nrpn { channel, key, low, high }
            | Pattern::Rpn { channel, key, low, high }
            | Pattern::NrpnToggle { channel, key, low, high }
            | Pattern::RpnToggle { channel, key, low, high } => {
                (Some(channel), Some(key.into()), Some(low.into()), Some(high.into()))
            }
            Pattern::Johannus { key } => (None, Some(key.into()), None, None),
            Pattern::Viscount { low, high } => (None, None, Some(low), Some(high)),
            Pattern::Ahlborn { low, high } => (None, None, Some(low.into()), Some(high.into())),
            Pattern::ViscountToggle { value } => (None, None, Some(value), None),
        };
        if let Some(c) = channel {
            push("MIDIChannel", c.to_string());
        }
        if let Some(k) = key {
            push("MIDIKey", k.to_string());
        }
        if let Some(l) = low {
            push("MIDILowerLimit", l.to_string());
        }
        if let Some(h) = high {
            push("MIDIUpperLimit", h.to_string());
        }
        v
    }

    /// What GrandOrgue does with `e` under this pattern (`GOMidiReceiverBase::Match` for a
    /// button element).
    pub fn effect(&self, e: &Event) -> Effect {
        let toggle = |hit: bool| if hit { Effect::Toggle } else { Effect::None };
        match (*self, *e) {
            (Pattern::Note { channel, key, low, high }, Event::Note { channel: c, key: k, value })
                if c == channel && k == key =>
            {
                range_match(value.into(), low.into(), high.into())
            }
            (Pattern::NoteOn { channel, key, high }, Event::Note { channel: c, key: k, value })
                if c == channel && k == key =>
            {
                toggle(value >= high)
            }
            (Pattern::NoteOff { channel, key, low }, Event::Note { channel: c, key: k, value })
                if c == channel && k == key =>
            {
                toggle(value <= low)
            }
            (Pattern::CtrlFixed { channel, key, low, high }, Event::Ctrl { channel: c, key: k, value })
                if c == channel && k == key =>
            {
                if value == low {
                    Effect::Off
                } else if value == high {
                    Effect::On
                } else {
                    Effect::None
                }
            }
            (Pattern::CtrlFixedToggle { channel, key, low, high }, Event::Ctrl { channel: c, key: k, value })
                if c == channel && k == key =>
            {
                toggle(value == high || value == low)
            }
            (Pattern::ProgramToggle { channel, key }, Event::Program { channel: c, key: k }) if c == channel => {
                toggle(k == key)
            }
            (Pattern::ProgramRange { channel, low, high }, Event::Program { channel: c, key }) if c == channel => {
                if key == low {
                    Effect::Off
                } else if key == high {
                    Effect::On
                } else {
                    Effect::None
                }
            }
            (Pattern::Nrpn { channel, key, low, high }, Event::Nrpn { channel: c, key: k, value })
            | (Pattern::Rpn { channel, key, low, high }, Event::Rpn { channel: c, key: k, value })
                if c == channel && k == key =>
            {
                range_match(value.into(), low.into(), high.into())
            }
            (Pattern::NrpnToggle { channel, key, low, high }, Event::Nrpn { channel: c, key: k, value })
            | (Pattern::RpnToggle { channel, key, low, high }, Event::Rpn { channel: c, key: k, value })
                if c == channel && k == key =>
            {
                toggle(value >= high || value <= low)
            }
            (Pattern::Johannus { key }, Event::Johannus9 { key: k }) => toggle(k == key),
            (Pattern::Viscount { low, high }, Event::Viscount { value }) => {
                if value == low {
                    Effect::Off
                } else if value == high {
                    Effect::On
                } else {
                    Effect::None
                }
            }
            (Pattern::Ahlborn { low, high }, Event::Ahlborn { value }) => {
                if value == low {
                    Effect::Off
                } else if value == high {
                    Effect::On
                } else {
                    Effect::None
                }
            }
            (Pattern::ViscountToggle { value: v }, Event::Viscount { value }) => toggle(v == value),
            _ => Effect::None,
        }
    }
}

/// The effect of an event on an element with these patterns: the first pattern that matches.
pub fn effect_of(patterns: &[Pattern], e: &Event) -> Effect {
    patterns.iter().map(|p| p.effect(e)).find(|x| *x != Effect::None).unwrap_or(Effect::None)
}

/// The element's state after `messages`, from `start`.
pub fn run(patterns: &[Pattern], messages: &[Message], start: bool) -> bool {
    events(messages).iter().fold(start, |state, e| match effect_of(patterns, e) {
        Effect::None => state,
        Effect::On => true,
        Effect::Off => false,
        Effect::Toggle => !state,
    })
}

/// Patterns that make GrandOrgue follow a control's on and off messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub patterns: Vec<Pattern>,
    /// GrandOrgue flips the element on these messages instead of setting it: right only when
    /// its state is known (`organ` cancels the registration before playing).
    pub toggle: bool,
}

/// Why a control's messages cannot be expressed as GrandOrgue receiver patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbindable(pub String);

impl fmt::Display for Unbindable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn describe(msgs: &[Message]) -> String {
    msgs.iter().map(|m| HexBytes(m.as_bytes()).to_string()).collect::<Vec<_>>().join(", ")
}

/// The last event of a sequence that a drawstop pattern could react to. A data-entry LSB
/// (CC 38) after the data-entry MSB reaches GrandOrgue as a plain controller; it belongs to the
/// RPN/NRPN before it.
fn decisive(evs: &[Event]) -> Option<Event> {
    evs.iter().rev().copied().find(|e| *e != Event::Other && !matches!(e, Event::Ctrl { key: 38, .. }))
}

/// A pattern that turns the element on for `e` (`on = true`) or off, without saying anything
/// about the other direction except through the limits it must have.
fn one_way(e: Event, on: bool) -> Option<Pattern> {
    // `Note`/`NRPN` use ≤ low → off, ≥ high → on (reversed when low > high); `Fixed` uses =.
    let split = |v: u8| -> (u8, u8) {
        match (on, v) {
            (true, 0) => (1, 0),        // reversed: ≥ 1 off, ≤ 0 on
            (true, v) => (v - 1, v),    // ≥ v on
            (false, 127) => (127, 126), // reversed: ≥ 127 off
            (false, v) => (v, v + 1),   // ≤ v off
        }
    };
    let fixed = |v: u8| -> (u8, u8) {
        let other = if v == 0 { 127 } else { 0 };
        if on { (other, v) } else { (v, other) }
    };
    Some(match e {
        Event::Note { channel, key, value } => {
            let (low, high) = split(value);
            Pattern::Note { channel, key, low, high }
        }
        Event::Ctrl { channel, key, value } => {
            let (low, high) = fixed(value);
            Pattern::CtrlFixed { channel, key, low, high }
        }
        Event::Nrpn { channel, key, value } => {
            let (low, high) = split(value);
            Pattern::Nrpn { channel, key, low, high }
        }
        Event::Rpn { channel, key, value } => {
            let (low, high) = split(value);
            Pattern::Rpn { channel, key, low, high }
        }
        Event::Program { .. }
        | Event::Johannus9 { .. }
        | Event::Viscount { .. }
        | Event::Ahlborn { .. }
        | Event::Other => {
            return None;
        }
    })
}

/// Candidate patterns for a control whose on message ends in `on` and off message in `off`.
/// Toggles are only chosen when the on and off messages are the same (`same`): when they differ
/// but GrandOrgue sees the same event, it cannot tell them apart.
fn candidates(on: Event, off: Event, same: bool) -> Option<Vec<Pattern>> {
    use Event as E;
    if on == off && !same {
        return None;
    }
    Some(match (on, off) {
        (E::Note { channel, key, value: a }, E::Note { channel: c2, key: k2, value: b })
            if channel == c2 && key == k2 =>
        {
            if a == b {
                if a == 0 {
                    vec![Pattern::NoteOff { channel, key, low: 0 }]
                } else {
                    vec![Pattern::NoteOn { channel, key, high: a }]
                }
            } else {
                vec![Pattern::Note { channel, key, low: b, high: a }]
            }
        }
        (E::Ctrl { channel, key, value: a }, E::Ctrl { channel: c2, key: k2, value: b })
            if channel == c2 && key == k2 =>
        {
            if a == b {
                vec![Pattern::CtrlFixedToggle { channel, key, low: a, high: a }]
            } else {
                vec![Pattern::CtrlFixed { channel, key, low: b, high: a }]
            }
        }
        (E::Nrpn { channel, key, value: a }, E::Nrpn { channel: c2, key: k2, value: b })
            if channel == c2 && key == k2 =>
        {
            if a == b {
                vec![Pattern::NrpnToggle { channel, key, low: a, high: a }]
            } else {
                vec![Pattern::Nrpn { channel, key, low: b, high: a }]
            }
        }
        (E::Rpn { channel, key, value: a }, E::Rpn { channel: c2, key: k2, value: b })
            if channel == c2 && key == k2 =>
        {
            if a == b {
                vec![Pattern::RpnToggle { channel, key, low: a, high: a }]
            } else {
                vec![Pattern::Rpn { channel, key, low: b, high: a }]
            }
        }
        (E::Program { channel, key: a }, E::Program { channel: c2, key: b }) if channel == c2 => {
            if a == b {
                vec![Pattern::ProgramToggle { channel, key: a }]
            } else {
                vec![Pattern::ProgramRange { channel, low: b, high: a }]
            }
        }
        (E::Program { channel, key: a }, E::Program { key: b, channel: c2 }) => {
            vec![Pattern::ProgramToggle { channel, key: a }, Pattern::ProgramToggle { channel: c2, key: b }]
        }
        (E::Johannus9 { key: a }, E::Johannus9 { key: b }) => {
            if a == b {
                vec![Pattern::Johannus { key: a }]
            } else {
                vec![Pattern::Johannus { key: a }, Pattern::Johannus { key: b }]
            }
        }
        (E::Viscount { value: a }, E::Viscount { value: b }) => {
            if a == b {
                vec![Pattern::ViscountToggle { value: a }]
            } else {
                vec![Pattern::Viscount { low: b, high: a }]
            }
        }
        (E::Ahlborn { value: a }, E::Ahlborn { value: b }) if a != b => vec![Pattern::Ahlborn { low: b, high: a }],
        (on, off) => vec![one_way(on, true)?, one_way(off, false)?],
    })
}

/// Chooses receiver patterns for a control drawn by `on` and put in by `off`, and proves them on
/// the model: after `on` the element is on and after `off` it is off, from either starting state
/// (from the opposite state only, for toggles).
///
/// # Errors
/// Messages GrandOrgue cannot receive as a drawstop event (a SysEx dialect it does not know,
/// pitch bend …), or on and off messages it cannot tell apart.
pub fn bind(on: &[Message], off: &[Message]) -> Result<Binding, Unbindable> {
    let (on_ev, off_ev) = (events(on), events(off));
    let (Some(a), Some(b)) = (decisive(&on_ev), decisive(&off_ev)) else {
        let which = if decisive(&on_ev).is_none() { ("on", on) } else { ("off", off) };
        return Err(Unbindable(format!(
            "GrandOrgue cannot receive its {} message ({}) as a stop event (it understands notes, controllers, program changes, RPN/NRPN and the Johannus, Viscount and Ahlborn-Galanti SysEx formats)",
            which.0,
            describe(which.1)
        )));
    };
    let patterns = candidates(a, b, on == off).ok_or_else(|| {
        Unbindable(if a == b {
            format!("GrandOrgue cannot tell its on message ({}) from its off message ({})", describe(on), describe(off))
        } else {
            format!(
                "GrandOrgue has no receiver type that sets a stop from {} and clears it from {}",
                describe(on),
                describe(off)
            )
        })
    })?;
    let toggle = patterns.iter().any(Pattern::is_toggle);
    let ok = if toggle {
        run(&patterns, on, false) && !run(&patterns, off, true)
    } else {
        [false, true].iter().all(|&s| run(&patterns, on, s) && !run(&patterns, off, s))
    };
    if !ok {
        return Err(Unbindable(format!(
            "GrandOrgue cannot tell its on message ({}) from its off message ({})",
            describe(on),
            describe(off)
        )));
    }
    Ok(Binding { patterns, toggle })
}

/// A pattern that fires a push button (e.g. GrandOrgue's General Cancel) on `messages`.
///
/// # Errors
/// As [`bind`]: messages GrandOrgue cannot receive.
pub fn bind_push(messages: &[Message]) -> Result<Pattern, Unbindable> {
    let e = decisive(&events(messages))
        .ok_or_else(|| Unbindable(format!("GrandOrgue cannot receive {} as a button event", describe(messages))))?;
    let p = match e {
        Event::Program { channel, key } => Pattern::ProgramToggle { channel, key },
        Event::Johannus9 { key } => Pattern::Johannus { key },
        Event::Viscount { value } => Pattern::ViscountToggle { value },
        Event::Ahlborn { value } => Pattern::Ahlborn { low: value ^ 1, high: value },
        e => one_way(e, true).ok_or_else(|| Unbindable(format!("no button pattern for {}", describe(messages))))?,
    };
    if !run(std::slice::from_ref(&p), messages, false) {
        return Err(Unbindable(format!("no button pattern fires on {}", describe(messages))));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::parse_hex;

    fn m(hex: &str) -> Vec<Message> {
        Message::parse_many(&parse_hex(hex).unwrap()).unwrap()
    }

    #[test]
    fn note_stop() {
        let b = bind(&m("9F 24 7F"), &m("8F 24 00")).unwrap();
        assert_eq!(b.patterns, [Pattern::Note { channel: 16, key: 36, low: 0, high: 127 }]);
        assert!(!b.toggle);
        // velocity 0 note-on is an off as well
        assert!(!run(&b.patterns, &m("9F 24 00"), true));
        // other keys do nothing
        assert!(run(&b.patterns, &m("9F 25 00"), true));
    }

    #[test]
    fn cc_stop_uses_fixed_values() {
        let b = bind(&m("BF 14 7F"), &m("BF 14 00")).unwrap();
        assert_eq!(b.patterns, [Pattern::CtrlFixed { channel: 16, key: 20, low: 0, high: 127 }]);
        // a different value of the same controller leaves the stop alone
        assert!(run(&b.patterns, &m("BF 14 40"), true));
        let b = bind(&m("B0 14 00"), &m("B0 14 7F")).unwrap();
        assert_eq!(b.patterns, [Pattern::CtrlFixed { channel: 1, key: 20, low: 127, high: 0 }]);
    }

    #[test]
    fn nrpn_stop_binds_on_data_entry_msb() {
        // nrpn 300 = 0x12C → CC99 2, CC98 44; value 127 → CC6 127
        let b = bind(&m("BF 63 02 BF 62 2C BF 06 7F"), &m("BF 63 02 BF 62 2C BF 06 00")).unwrap();
        assert_eq!(b.patterns, [Pattern::Nrpn { channel: 16, key: 300, low: 0, high: 127 }]);
        // 14-bit value: GrandOrgue sees only the MSB (CC 38 arrives as a plain controller)
        let b = bind(&m("BF 63 02 BF 62 2C BF 06 10 BF 26 05"), &m("BF 63 02 BF 62 2C BF 06 00")).unwrap();
        assert_eq!(b.patterns, [Pattern::Nrpn { channel: 16, key: 300, low: 0, high: 16 }]);
        // values that differ only in the LSB cannot be told apart
        assert!(bind(&m("BF 63 02 BF 62 2C BF 06 01 BF 26 05"), &m("BF 63 02 BF 62 2C BF 06 01 BF 26 00")).is_err());
    }

    #[test]
    fn program_changes() {
        let b = bind(&m("CB 04"), &m("CB 05")).unwrap();
        assert_eq!(b.patterns, [Pattern::ProgramRange { channel: 12, low: 6, high: 5 }]);
        let t = bind(&m("CB 04"), &m("CB 04")).unwrap();
        assert!(t.toggle);
        assert_eq!(t.patterns, [Pattern::ProgramToggle { channel: 12, key: 5 }]);
    }

    #[test]
    fn different_keys_for_on_and_off() {
        let b = bind(&m("9F 24 7F"), &m("9F 25 7F")).unwrap();
        assert_eq!(b.patterns.len(), 2);
        assert!(run(&b.patterns, &m("9F 24 7F"), false));
        assert!(!run(&b.patterns, &m("9F 25 7F"), true));
        let b = bind(&m("BF 14 7F"), &m("BF 15 7F")).unwrap();
        assert!(run(&b.patterns, &m("BF 14 7F"), false) && !run(&b.patterns, &m("BF 15 7F"), true));
    }

    #[test]
    fn sysex_formats() {
        let j = bind(&m("F0 00 4A 4F 48 41 53 05 F7"), &m("F0 00 4A 4F 48 41 53 05 F7")).unwrap();
        assert!(j.toggle);
        let v = bind(&m("F0 31 00 01 02 F7"), &m("F0 31 00 01 03 F7")).unwrap();
        assert_eq!(v.patterns, [Pattern::Viscount { low: 131, high: 130 }]);
        let e = bind(&m("F0 41 10 30 12 01 00 01 6E F7"), &m("F0 41 10 30 12 01 00 00 6F F7")).unwrap_err();
        assert!(e.0.contains("cannot receive"), "{e}");
        assert!(bind(&m("E0 00 40"), &m("E0 00 00")).is_err());
    }

    #[test]
    fn bank_select_is_part_of_the_program() {
        let ev = events(&m("B0 00 01 B0 20 02 C0 03"));
        assert_eq!(ev, [Event::Program { channel: 1, key: (1 << 14) + (2 << 7) + 3 + 1 }]);
    }

    #[test]
    fn cmb_keys_are_exactly_the_read_ones() {
        let keys: Vec<String> =
            Pattern::ProgramRange { channel: 3, low: 2, high: 1 }.cmb_keys(2).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["MIDIDevice002", "MIDIEventType002", "MIDIChannel002", "MIDILowerLimit002", "MIDIUpperLimit002"]
        );
        let keys: Vec<String> = Pattern::Johannus { key: 4 }.cmb_keys(1).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["MIDIDevice001", "MIDIEventType001", "MIDIKey001"]);
    }

    #[test]
    fn push_button() {
        let p = bind_push(&m("F0 00 4A 4F 48 41 53 7F F7")).unwrap();
        assert_eq!(p, Pattern::Johannus { key: 0x7F });
        let p = bind_push(&m("BF 79 7F")).unwrap();
        assert_eq!(effect_of(&[p], &events(&m("BF 79 7F"))[0]), Effect::On);
    }
}
