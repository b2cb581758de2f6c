//! Reading the console's messages through an organ definition: the inverse of what the organ
//! is sent. "Gt Principal 4 drawn", "swell C4 down", "General Cancel", or unknown.
//!
//! A control's message may be a sequence (an NRPN is CC 99, 98, 6; `raw` may hold several), so
//! the decoder keeps the last few messages and matches each control's sequences against them;
//! the leading messages of a sequence read as its parts. A message several controls share (the
//! organ file lets state controls share their off: a console that puts a group of stops in at
//! once) moves every one of them. Rodgers-style bitmaps (Roland "data set"
//! SysEx, `F0 41 dd 30 12 01 oo data… sum F7`, checksum verified) are read bit by bit against the
//! last state seen, so one bitmap may say that several stops moved.
//!
//! [`ConsoleDecoder`] is the one decoder: it turns messages into [`ConsoleEvent`]s by control
//! and division index, and it is what the built-in voice hears the plan with
//! (crate::voice::console) as well as what [`Decoder`] names for `organ monitor` and recording.
//!
//! # Threads
//! [`ConsoleDecoder::feed`] and [`MsgKey::of`] never allocate (the decoder's buffers are sized
//! when it is built), so the audio thread may run them. [`Decoder`] allocates its [`Meaning`]s
//! and runs on whichever ordinary thread reads the input, never on the real-time path.

use super::{Organ, RemoteAction, RemoteButton};

/// What one received message means on this organ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// A key of a division went down or up.
    Key { division: String, key: u8, down: bool },
    /// Controls moved: (name, drawn). A toggle reports `None` (its state cannot be told).
    Controls(Vec<(String, Option<bool>)>),
    /// The General Cancel.
    Cancel,
    /// A `[remote]` piston pressed (`pressed`) or let go: it drives `organ service`, and is not
    /// a stop, a key or anything else the organ plays.
    Remote { action: RemoteAction, pressed: bool },
    /// The first messages of a control's sequence (e.g. the NRPN parameter number).
    Part,
    /// A bitmap or message that parses but changes nothing known (e.g. an unchanged bitmap).
    NoChange,
    /// Nothing in the organ definition sends this.
    Unknown,
}

impl std::fmt::Display for Meaning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Meaning::Key { division, key, down } => {
                write!(f, "{division} {} {}", note_name(*key), if *down { "down" } else { "up" })
            }
            Meaning::Controls(v) => {
                let parts: Vec<String> = v
                    .iter()
                    .map(|(n, s)| match s {
                        Some(true) => format!("{n} drawn"),
                        Some(false) => format!("{n} put in"),
                        None => format!("{n} toggled"),
                    })
                    .collect();
                f.write_str(&parts.join(", "))
            }
            Meaning::Cancel => f.write_str("General Cancel"),
            Meaning::Remote { action, pressed: true } => write!(f, "remote: {}", action.describe()),
            Meaning::Remote { action, pressed: false } => write!(f, "remote: {} (let go)", action.describe()),
            Meaning::Part => f.write_str("(part of a control's message)"),
            Meaning::NoChange => f.write_str("(no change)"),
            Meaning::Unknown => f.write_str("unknown"),
        }
    }
}

/// `C4` for key 60 (middle C), `F#2` …
pub fn note_name(key: u8) -> String {
    const NAMES: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
    format!("{}{}", NAMES[usize::from(key % 12)], i32::from(key / 12) - 1)
}

/// A Roland "data set" (DT1) message as Rodgers consoles send their stop bitmaps:
/// `F0 41 <device> 30 12 01 <offset> <data…> <checksum> F7`. The checksum covers the address
/// (`01 <offset>`) and the data, as in GrandOrgue's `GORodgersChecksum` (GOMidiEvent::FromMidi,
/// src/grandorgue/midi/events/GORodgers.cpp): the low 7 bits of minus their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolandDataSet {
    pub device: u8,
    /// The first byte's index in the console's bitmap (7 stops per byte).
    pub offset: u8,
    pub data: Vec<u8>,
}

impl RolandDataSet {
    /// Parses and checks one message; `None` when it is not a data set or its checksum is wrong.
    pub fn parse(b: &[u8]) -> Option<RolandDataSet> {
        DataSetRef::parse(b).map(|d| RolandDataSet { device: d.device, offset: d.offset, data: d.data.to_vec() })
    }

    /// Whether stop bit `bit` (counted from bit 0 of byte 0 of the bitmap) is in this message,
    /// and if so whether it is set (GrandOrgue's `GORodgersGetBit`).
    pub fn bit(&self, bit: u32) -> Option<bool> {
        self.as_ref().bit(bit)
    }

    /// This data set, borrowed.
    pub fn as_ref(&self) -> DataSetRef<'_> {
        DataSetRef { device: self.device, offset: self.offset, data: &self.data }
    }

    /// The message bytes, checksum computed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0xF0, 0x41, self.device, 0x30, 0x12, 0x01, self.offset];
        v.extend_from_slice(&self.data);
        v.push(roland_checksum(&v[5..]));
        v.push(0xF7);
        v
    }
}

/// A Roland data set read in place (no copy): what [`RolandDataSet::parse`] checks, borrowed, so
/// that the real-time thread can read a bitmap without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSetRef<'a> {
    pub device: u8,
    /// The first byte's index in the console's bitmap (7 stops per byte).
    pub offset: u8,
    pub data: &'a [u8],
}

impl<'a> DataSetRef<'a> {
    /// Parses and checks one message; `None` when it is not a data set or its checksum is wrong.
    pub fn parse(b: &'a [u8]) -> Option<DataSetRef<'a>> {
        if b.len() < 10 || b[..2] != [0xF0, 0x41] || b[3..6] != [0x30, 0x12, 0x01] || b[b.len() - 1] != 0xF7 {
            return None;
        }
        let sum = b[b.len() - 2];
        (roland_checksum(&b[5..b.len() - 2]) == sum).then_some(DataSetRef {
            device: b[2],
            offset: b[6],
            data: &b[7..b.len() - 2],
        })
    }

    /// Whether stop bit `bit` (counted from bit 0 of byte 0 of the bitmap) is in this message,
    /// and if so whether it is set (GrandOrgue's `GORodgersGetBit`).
    pub fn bit(&self, bit: u32) -> Option<bool> {
        let start = u32::from(self.offset) * 7;
        let rel = bit.checked_sub(start)?;
        let byte = self.data.get((rel / 7) as usize)?;
        Some(byte & (1 << (rel % 7)) != 0)
    }

    /// The bits past the last one this message holds.
    fn end(&self) -> u32 {
        (u32::from(self.offset) + self.data.len() as u32) * 7
    }
}

/// Roland's checksum: the low 7 bits of minus the sum of the address and data bytes.
pub fn roland_checksum(bytes: &[u8]) -> u8 {
    let sum = bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    sum.wrapping_neg() & 0x7F
}

/// A control whose on and off are two data sets that differ in one bit: a Rodgers stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitmapStop {
    pub device: u8,
    pub bit: u32,
}

/// The stop bits that both data sets hold and that differ between them, lowest first.
pub fn differing_bits<'a>(a: DataSetRef<'a>, b: DataSetRef<'a>) -> impl Iterator<Item = u32> + 'a {
    let lo = u32::from(a.offset.min(b.offset)) * 7;
    let hi = a.end().max(b.end());
    (lo..hi).filter(move |&i| matches!((a.bit(i), b.bit(i)), (Some(x), Some(y)) if x != y))
}

/// The stop bit that is set in `on` and clear in `off`, when that is the only difference.
pub fn bitmap_stop(on: &[u8], off: &[u8]) -> Option<BitmapStop> {
    let (a, b) = (DataSetRef::parse(on)?, DataSetRef::parse(off)?);
    if a.device != b.device {
        return None;
    }
    let mut differ = differing_bits(a, b);
    match (differ.next(), differ.next()) {
        (Some(bit), None) if a.bit(bit) == Some(true) => Some(BitmapStop { device: a.device, bit }),
        _ => None,
    }
}

/// A message reduced to a fixed-size, comparable key: its first bytes, length and a hash of all
/// of it (a SysEx of any length fits). Note-on with velocity 0 reads as note-off, and a
/// note-off's velocity is ignored, as receivers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsgKey {
    pub len: u32,
    pub head: [u8; 3],
    hash: u64,
}

impl MsgKey {
    pub fn of(bytes: &[u8]) -> MsgKey {
        let mut head = [0u8; 3];
        let n = bytes.len().min(3);
        head[..n].copy_from_slice(&bytes[..n]);
        if bytes.len() == 3 && (head[0] & 0xF0 == 0x80 || (head[0] & 0xF0 == 0x90 && head[2] == 0)) {
            head = [0x80 | (head[0] & 0x0F), head[1], 0];
        }
        // FNV-1a over the (normalised) bytes.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (i, &b) in bytes.iter().enumerate() {
            let b = if i < 3 { head[i] } else { b };
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
        MsgKey { len: bytes.len() as u32, head, hash }
    }

    /// A note-on of any velocity as velocity 1, everything else as it is: a `[remote]`
    /// piston matches whatever velocity it is pressed with.
    pub fn loose(self) -> MsgKey {
        if self.len == 3 && self.head[0] & 0xF0 == 0x90 && self.head[2] > 0 {
            MsgKey::of(&[self.head[0], self.head[1], 1])
        } else {
            self
        }
    }
}

/// What a control message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    On,
    Off,
    /// The same message draws and puts in (a toggle console).
    Toggle,
}

/// A change of the console's state, by division and control index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleEvent {
    Key {
        division: u8,
        key: u8,
        down: bool,
    },
    /// CC 123 on a division's channel.
    AllNotesOff {
        division: u8,
    },
    Control {
        id: u16,
        action: Action,
    },
    /// The General Cancel: every stop, coupler and tremulant in.
    Cancel,
    /// A `[remote]` piston pressed or let go (only from a decoder built
    /// [`ConsoleDecoder::with_remote`]): it changes nothing on the console.
    Remote {
        action: RemoteAction,
        pressed: bool,
    },
}

/// What [`ConsoleDecoder::feed`] made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// It changed the console's state: the events went to `out`.
    Events,
    /// The first messages of a control's sequence (e.g. the NRPN parameter number).
    Part,
    /// A bitmap that changes nothing known (e.g. an unchanged bitmap).
    NoChange,
    /// Nothing in the organ definition sends this.
    Unknown,
}

/// One division as the decoder needs it: its channel (0-15 on the wire) and compass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DivisionWire {
    pub channel: u8,
    pub compass: (u8, u8),
}

/// One control as the decoder needs it: the bytes of its on and off messages.
#[derive(Debug, Clone, Copy)]
pub struct ControlWire<'a> {
    pub on: &'a [Vec<u8>],
    pub off: &'a [Vec<u8>],
}

/// One message sequence and everything it does: several controls where they share it (state
/// controls may share their off: a console that puts a group of stops in with one message).
struct Pattern {
    seq: Vec<MsgKey>,
    events: Vec<ConsoleEvent>,
}

/// `(sequence, event)` pairs as [`Pattern`]s: one per sequence (empty ones dropped), its events in
/// the order given, longest sequence first.
fn patterns(pairs: impl IntoIterator<Item = (Vec<MsgKey>, ConsoleEvent)>) -> Vec<Pattern> {
    let mut patterns: Vec<Pattern> = Vec::new();
    for (seq, event) in pairs {
        if seq.is_empty() {
            continue;
        }
        match patterns.iter_mut().find(|p| p.seq == seq) {
            Some(p) => p.events.push(event),
            None => patterns.push(Pattern { seq, events: vec![event] }),
        }
    }
    patterns.sort_by_key(|p| std::cmp::Reverse(p.seq.len()));
    patterns
}

/// A data set among the organ definition's own messages, kept whole so that a message known only
/// by its [`MsgKey`] (as the audio thread receives the plan's) can still be read bit by bit.
struct KnownSet {
    key: MsgKey,
    device: u8,
    offset: u8,
    data: Vec<u8>,
}

/// Turns a stream of messages into [`ConsoleEvent`]s for one organ, as the console's MIDI
/// interface would: keys on the divisions' channels within their compass; each control's on,
/// off or toggle message, sequences (an NRPN) read when their last message arrives, the longest
/// first, a message that several controls share (a group's off) moving them all; a Rodgers-style bitmap (a data set from a device whose stops are bitmap stops) read bit
/// by bit against the last state seen, so one bitmap may move several stops (and a one-byte data
/// set also puts in the other stops of its byte, as on the console); the General Cancel.
/// Keeps a little state (the last messages, the last bits seen), so feed it every message in
/// arrival order.
pub struct ConsoleDecoder {
    /// Longest first, so that a message completing a longer sequence (an NRPN) is read as that.
    patterns: Vec<Pattern>,
    /// Every non-final message of a sequence, for [`Heard::Part`].
    parts: Vec<MsgKey>,
    bitmaps: Vec<(BitmapStop, u16)>,
    /// The last state seen of each of `bitmaps`' bits.
    bits: Vec<Option<bool>>,
    known_sets: Vec<KnownSet>,
    divisions: Vec<DivisionWire>,
    history: Vec<MsgKey>,
    longest: usize,
    /// The `[remote]` pistons' sequences, their note-ons at any velocity ([`MsgKey::loose`]),
    /// longest first; matched after the controls and the cancel (the organ file refuses a
    /// remote message that is one of theirs anyway), against the same messages loosened.
    remote: Vec<Pattern>,
    loose_history: Vec<MsgKey>,
}

impl ConsoleDecoder {
    /// A decoder for these divisions, controls (their index is the event's `id`) and General
    /// Cancel.
    pub fn new<'a>(
        divisions: &[DivisionWire],
        controls: impl IntoIterator<Item = ControlWire<'a>>,
        cancel: Option<&[Vec<u8>]>,
    ) -> ConsoleDecoder {
        let keys = |msgs: &[Vec<u8>]| msgs.iter().map(|m| MsgKey::of(m)).collect::<Vec<_>>();
        let mut pairs = Vec::new();
        let mut bitmaps = Vec::new();
        let mut sets: Vec<&[u8]> = Vec::new();
        for (id, c) in controls.into_iter().enumerate() {
            let id = id as u16;
            if let ([on], [off]) = (c.on, c.off)
                && let Some(bs) = bitmap_stop(on, off)
            {
                bitmaps.push((bs, id));
                sets.extend([on.as_slice(), off.as_slice()]);
                continue;
            }
            let (on, off) = (keys(c.on), keys(c.off));
            if on == off {
                pairs.push((on, ConsoleEvent::Control { id, action: Action::Toggle }));
            } else {
                pairs.push((on, ConsoleEvent::Control { id, action: Action::On }));
                pairs.push((off, ConsoleEvent::Control { id, action: Action::Off }));
            }
        }
        if let Some(cancel) = cancel {
            pairs.push((keys(cancel), ConsoleEvent::Cancel));
        }
        let patterns = patterns(pairs);
        let longest = patterns.first().map_or(1, |p| p.seq.len());
        let parts = patterns.iter().flat_map(|p| p.seq[..p.seq.len() - 1].iter().copied()).collect();
        let mut known_sets: Vec<KnownSet> = Vec::new();
        for s in sets {
            let key = MsgKey::of(s);
            if let Some(d) = DataSetRef::parse(s)
                && !known_sets.iter().any(|k| k.key == key)
            {
                known_sets.push(KnownSet { key, device: d.device, offset: d.offset, data: d.data.to_vec() });
            }
        }
        ConsoleDecoder {
            patterns,
            parts,
            bits: vec![None; bitmaps.len()],
            bitmaps,
            known_sets,
            divisions: divisions.to_vec(),
            history: Vec::with_capacity(longest),
            longest,
            remote: Vec::new(),
            loose_history: Vec::new(),
        }
    }

    /// The decoder of an organ definition: its divisions (keys within their compass), its controls
    /// (by their index in `organ.controls`) and its General Cancel; not its `[remote]` pistons
    /// (add them with [`ConsoleDecoder::with_remote`]).
    pub fn of_organ(organ: &Organ) -> ConsoleDecoder {
        let bytes = |ms: &[crate::midi::Message]| ms.iter().map(|m| m.as_bytes().to_vec()).collect::<Vec<_>>();
        let divisions: Vec<DivisionWire> =
            organ.divisions.iter().map(|d| DivisionWire { channel: d.channel.wire(), compass: d.compass }).collect();
        let messages: Vec<_> = organ.controls.iter().map(|c| (bytes(&c.on), bytes(&c.off))).collect();
        let cancel = organ.cancel.as_deref().map(bytes);
        ConsoleDecoder::new(&divisions, messages.iter().map(|(on, off)| ControlWire { on, off }), cancel.as_deref())
    }

    /// The same decoder, also reading these `[remote]` pistons (pressed, and let go where the
    /// organ file gives a release).
    pub fn with_remote(mut self, buttons: &[RemoteButton]) -> ConsoleDecoder {
        let keys =
            |ms: &[crate::midi::Message]| ms.iter().map(|m| MsgKey::of(m.as_bytes()).loose()).collect::<Vec<_>>();
        let mut pairs = Vec::new();
        for b in buttons {
            pairs.push((keys(&b.press), ConsoleEvent::Remote { action: b.action, pressed: true }));
            if let Some(release) = &b.release {
                pairs.push((keys(release), ConsoleEvent::Remote { action: b.action, pressed: false }));
            }
        }
        self.remote = patterns(pairs);
        for p in &self.remote {
            self.parts.extend(p.seq[..p.seq.len() - 1].iter().copied());
            self.longest = self.longest.max(p.seq.len());
        }
        self.history = Vec::with_capacity(self.longest);
        self.loose_history = Vec::with_capacity(self.longest);
        self
    }

    /// Decodes one message, known by its key and, where the caller still has them, its bytes
    /// (without them a bitmap is read only when it is one of the organ definition's own data
    /// sets). `out` receives what it does. Never allocates.
    pub fn feed(&mut self, m: MsgKey, bytes: Option<&[u8]>, mut out: impl FnMut(ConsoleEvent)) -> Heard {
        let status = m.head[0];
        let channel = status & 0x0F;
        let on_channel = |d: &&DivisionWire| (0x80..0xF0).contains(&status) && d.channel == channel;
        // A key of a division (the organ definition lets no control send one).
        if m.len == 3 && matches!(status & 0xF0, 0x80 | 0x90) {
            let key = m.head[1];
            if let Some(division) =
                self.divisions.iter().position(|d| on_channel(&d) && (d.compass.0..=d.compass.1).contains(&key))
            {
                out(ConsoleEvent::Key { division: division as u8, key, down: status & 0xF0 == 0x90 });
                return Heard::Events;
            }
        }
        // Stop messages may be sequences: remember the last few.
        if self.history.len() == self.longest {
            self.history.remove(0);
        }
        self.history.push(m);
        if !self.remote.is_empty() {
            if self.loose_history.len() == self.longest {
                self.loose_history.remove(0);
            }
            self.loose_history.push(m.loose());
        }
        if !self.bitmaps.is_empty() {
            let set = match bytes {
                Some(b) => DataSetRef::parse(b),
                None => self.known_sets.iter().find(|k| k.key == m).map(|k| DataSetRef {
                    device: k.device,
                    offset: k.offset,
                    data: &k.data,
                }),
            };
            if let Some(ds) = set
                && self.bitmaps.iter().any(|(b, _)| b.device == ds.device)
            {
                return Self::bitmap(&self.bitmaps, &mut self.bits, ds, out);
            }
        }
        for p in &self.patterns {
            if self.history.ends_with(&p.seq) {
                self.history.clear();
                self.loose_history.clear();
                if p.events.contains(&ConsoleEvent::Cancel) {
                    self.bits.iter_mut().for_each(|b| *b = None);
                }
                p.events.iter().for_each(|&e| out(e));
                return Heard::Events;
            }
        }
        for p in &self.remote {
            if self.loose_history.ends_with(&p.seq) {
                self.history.clear();
                self.loose_history.clear();
                p.events.iter().for_each(|&e| out(e));
                return Heard::Events;
            }
        }
        if status & 0xF0 == 0xB0
            && m.head[1] == 123
            && let Some(division) = self.divisions.iter().position(|d| on_channel(&d))
        {
            out(ConsoleEvent::AllNotesOff { division: division as u8 });
            return Heard::Events;
        }
        if self.parts.contains(&m) { Heard::Part } else { Heard::Unknown }
    }

    fn bitmap(
        bitmaps: &[(BitmapStop, u16)],
        bits: &mut [Option<bool>],
        ds: DataSetRef<'_>,
        mut out: impl FnMut(ConsoleEvent),
    ) -> Heard {
        let mut heard = Heard::NoChange;
        for ((b, id), before) in bitmaps.iter().zip(bits.iter_mut()) {
            if b.device != ds.device {
                continue;
            }
            let Some(now) = ds.bit(b.bit) else { continue };
            // A first bitmap reports what is drawn; later ones report what moved.
            if *before != Some(now) && (before.is_some() || now) {
                out(ConsoleEvent::Control { id: *id, action: if now { Action::On } else { Action::Off } });
                heard = Heard::Events;
            }
            *before = Some(now);
        }
        heard
    }
}

/// Decodes messages through one organ definition into [`Meaning`]s by name: a
/// [`ConsoleDecoder`] and the organ's names. Feed it every message in arrival order.
pub struct Decoder {
    core: ConsoleDecoder,
    names: Vec<String>,
    divisions: Vec<String>,
}

impl Decoder {
    pub fn new(organ: &Organ) -> Decoder {
        Decoder {
            core: ConsoleDecoder::of_organ(organ).with_remote(&organ.remote),
            names: organ.controls.iter().map(|c| c.name.clone()).collect(),
            divisions: organ.divisions.iter().map(|d| d.name.clone()).collect(),
        }
    }

    /// What `bytes` (one complete message) means, given the messages before it.
    pub fn decode(&mut self, bytes: &[u8]) -> Meaning {
        let mut controls = Vec::new();
        let mut meaning = None;
        let heard = self.core.feed(MsgKey::of(bytes), Some(bytes), |e| match e {
            ConsoleEvent::Key { division, key, down } => {
                meaning = Some(Meaning::Key { division: self.divisions[usize::from(division)].clone(), key, down });
            }
            ConsoleEvent::Control { id, action } => {
                let drawn = match action {
                    Action::On => Some(true),
                    Action::Off => Some(false),
                    Action::Toggle => None,
                };
                controls.push((self.names[usize::from(id)].clone(), drawn));
            }
            ConsoleEvent::Cancel => meaning = Some(Meaning::Cancel),
            ConsoleEvent::Remote { action, pressed } => meaning = Some(Meaning::Remote { action, pressed }),
            // Named by the callers that act on it (recording), from the bytes.
            ConsoleEvent::AllNotesOff { .. } => meaning = Some(Meaning::Unknown),
        });
        match heard {
            Heard::Events if !controls.is_empty() => Meaning::Controls(controls),
            Heard::Events => meaning.unwrap_or(Meaning::Unknown),
            Heard::Part => Meaning::Part,
            Heard::NoChange => Meaning::NoChange,
            Heard::Unknown => Meaning::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORGAN: &str = r#"
name = "Decode"
[division.swell]
code = "S"
channel = 1
[division.great]
code = "G"
channel = 2
[[stop]]
name = "Gt Principal 4"
division = "great"
on = { note = 36, channel = 16 }
[[stop]]
name = "Sw Gedackt 8"
division = "swell"
on = { nrpn = 300, value = 1, channel = 16 }
[[stop]]
name = "Sw Trumpet 8"
division = "swell"
on = { program = 3, channel = 12 }
off = { program = 3, channel = 12 }
[[stop]]
name = "Gt Mixture"
division = "great"
on = { sysex = "F0 41 10 30 12 01 01 04 7A F7" }
off = { sysex = "F0 41 10 30 12 01 01 00 7E F7" }
[[stop]]
name = "Gt Trumpet 8"
division = "great"
on = { sysex = "F0 41 10 30 12 01 01 08 76 F7" }
off = { sysex = "F0 41 10 30 12 01 01 00 7E F7" }
[cancel]
message = { sysex = "F0 00 4A 4F 48 41 53 7F F7" }
"#;

    #[test]
    fn roland_checksums_and_bits() {
        // Checksum examples computed by hand: 01 00 00 → 7F; 01 01 04 → 7A.
        assert_eq!(roland_checksum(&[0x01, 0x00, 0x00]), 0x7F);
        let ds = RolandDataSet { device: 0x10, offset: 1, data: vec![0x04] };
        assert_eq!(ds.to_bytes(), vec![0xF0, 0x41, 0x10, 0x30, 0x12, 0x01, 0x01, 0x04, 0x7A, 0xF7]);
        let back = RolandDataSet::parse(&ds.to_bytes()).unwrap();
        assert_eq!(back.bit(9), Some(true));
        assert_eq!(back.bit(8), Some(false));
        assert_eq!(back.bit(3), None);
        let mut broken = ds.to_bytes();
        broken[8] ^= 1;
        assert!(RolandDataSet::parse(&broken).is_none(), "a wrong checksum is not a data set");
    }

    #[test]
    fn names_keys_controls_and_unknowns() {
        let organ = Organ::from_toml(ORGAN, "t.toml").unwrap();
        let mut d = Decoder::new(&organ);
        assert_eq!(d.decode(&[0x9F, 36, 127]).to_string(), "Gt Principal 4 drawn");
        assert_eq!(d.decode(&[0x9F, 36, 0]).to_string(), "Gt Principal 4 put in");
        assert_eq!(d.decode(&[0x91, 60, 80]).to_string(), "great C4 down");
        assert_eq!(d.decode(&[0x81, 60, 64]).to_string(), "great C4 up");
        assert_eq!(d.decode(&[0xBF, 99, 2]), Meaning::Part);
        assert_eq!(d.decode(&[0xBF, 98, 44]), Meaning::Part);
        assert_eq!(d.decode(&[0xBF, 6, 1]).to_string(), "Sw Gedackt 8 drawn");
        assert_eq!(d.decode(&[0xBF, 99, 2]), Meaning::Part);
        assert_eq!(d.decode(&[0xBF, 98, 44]), Meaning::Part);
        assert_eq!(d.decode(&[0xBF, 6, 0]).to_string(), "Sw Gedackt 8 put in");
        assert_eq!(d.decode(&[0xCB, 3]).to_string(), "Sw Trumpet 8 toggled");
        assert_eq!(d.decode(&[0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, 0x7F, 0xF7]), Meaning::Cancel);
        assert_eq!(d.decode(&[0xF0, 0x43, 0x10, 0xF7]), Meaning::Unknown);
        // A whole bitmap: both stops of byte 1 drawn, then one put in.
        let both = RolandDataSet { device: 0x10, offset: 0, data: vec![0, 0x0C, 0] }.to_bytes();
        assert_eq!(d.decode(&both).to_string(), "Gt Mixture drawn, Gt Trumpet 8 drawn");
        assert_eq!(d.decode(&both), Meaning::NoChange);
        let one = RolandDataSet { device: 0x10, offset: 0, data: vec![0, 0x08, 0] }.to_bytes();
        assert_eq!(d.decode(&one).to_string(), "Gt Mixture put in");
    }

    #[test]
    fn note_ons_that_differ_only_in_velocity_read_as_drawn_and_put_in() {
        // Velocity 127 draws, velocity 1 puts in (and velocity 0, a note-off, is another
        // message): the state is told, not toggled, whichever comes and however often.
        let text = ORGAN.replace(
            "on = { program = 3, channel = 12 }\noff = { program = 3, channel = 12 }",
            "on = { raw = \"9C 30 7F\" }\noff = { raw = \"9C 30 01\" }",
        );
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let id = organ.controls.iter().position(|c| c.name == "Sw Trumpet 8").unwrap();
        assert!(!organ.controls[id].toggle);
        let mut d = Decoder::new(&organ);
        assert_eq!(d.decode(&[0x9C, 48, 127]).to_string(), "Sw Trumpet 8 drawn");
        assert_eq!(d.decode(&[0x9C, 48, 127]).to_string(), "Sw Trumpet 8 drawn", "again: still drawn");
        assert_eq!(d.decode(&[0x9C, 48, 1]).to_string(), "Sw Trumpet 8 put in");
        assert_eq!(d.decode(&[0x9C, 48, 1]).to_string(), "Sw Trumpet 8 put in");
        assert_eq!(d.decode(&[0x9C, 48, 0]), Meaning::Unknown, "a note-off is neither");
        let id = id as u16;
        let mut c = ConsoleDecoder::of_organ(&organ);
        let on = [0x9C, 48, 127];
        assert_eq!(feed(&mut c, &on, false), (Heard::Events, vec![ConsoleEvent::Control { id, action: Action::On }]));
        assert_eq!(
            feed(&mut c, &[0x9C, 48, 1], true),
            (Heard::Events, vec![ConsoleEvent::Control { id, action: Action::Off }])
        );
    }

    /// The organ's messages as [`ConsoleDecoder`] takes them, keys as the voice takes them (every
    /// key of a division's channel).
    fn core(organ: &Organ) -> ConsoleDecoder {
        let bytes = |ms: &[crate::midi::Message]| ms.iter().map(|m| m.as_bytes().to_vec()).collect::<Vec<_>>();
        let divisions: Vec<DivisionWire> =
            organ.divisions.iter().map(|d| DivisionWire { channel: d.channel.wire(), compass: (0, 127) }).collect();
        let messages: Vec<_> = organ.controls.iter().map(|c| (bytes(&c.on), bytes(&c.off))).collect();
        let cancel = organ.cancel.as_deref().map(bytes);
        ConsoleDecoder::new(&divisions, messages.iter().map(|(on, off)| ControlWire { on, off }), cancel.as_deref())
    }

    fn feed(d: &mut ConsoleDecoder, bytes: &[u8], with_bytes: bool) -> (Heard, Vec<ConsoleEvent>) {
        let mut v = Vec::new();
        let heard = d.feed(MsgKey::of(bytes), with_bytes.then_some(bytes), |e| v.push(e));
        (heard, v)
    }

    #[test]
    fn a_one_byte_data_set_moves_its_whole_byte_with_or_without_its_bytes() {
        let organ = Organ::from_toml(ORGAN, "t.toml").unwrap();
        let stop = |n: &str| organ.controls.iter().position(|c| c.name == n).unwrap() as u16;
        let (mixture, trumpet) = (stop("Gt Mixture"), stop("Gt Trumpet 8"));
        let on = |id| ConsoleEvent::Control { id, action: Action::On };
        let off = |id| ConsoleEvent::Control { id, action: Action::Off };
        let mixture_on = &organ.controls[usize::from(mixture)].on[0];
        let trumpet_on = &organ.controls[usize::from(trumpet)].on[0];
        let cleared = &organ.controls[usize::from(mixture)].off[0];
        // The audio thread has only the keys: the organ's own data sets are still read as bitmaps.
        for with_bytes in [false, true] {
            let mut d = core(&organ);
            assert_eq!(feed(&mut d, mixture_on.as_bytes(), with_bytes), (Heard::Events, vec![on(mixture)]));
            // The Trumpet's data set clears the Mixture's bit of the same byte, as on the console.
            assert_eq!(
                feed(&mut d, trumpet_on.as_bytes(), with_bytes),
                (Heard::Events, vec![off(mixture), on(trumpet)])
            );
            assert_eq!(feed(&mut d, trumpet_on.as_bytes(), with_bytes), (Heard::NoChange, vec![]));
            // The byte cleared (both stops' off) puts in whatever of it was drawn.
            assert_eq!(feed(&mut d, cleared.as_bytes(), with_bytes), (Heard::Events, vec![off(trumpet)]));
        }
        // A bitmap that is not one of the organ's own messages needs its bytes.
        let whole = RolandDataSet { device: 0x10, offset: 0, data: vec![0, 0x0C, 0] }.to_bytes();
        assert_eq!(feed(&mut core(&organ), &whole, false), (Heard::Unknown, vec![]));
        assert_eq!(feed(&mut core(&organ), &whole, true), (Heard::Events, vec![on(mixture), on(trumpet)]));
    }

    #[test]
    fn keys_inside_a_sequence_do_not_break_it_and_keys_need_the_compass() {
        let text = ORGAN.replace(
            "[division.great]\ncode = \"G\"\nchannel = 2",
            "[division.great]\ncode = \"G\"\nchannel = 2\ncompass = [36, 96]",
        );
        assert_ne!(text, ORGAN);
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let mut d = Decoder::new(&organ);
        assert_eq!(d.decode(&[0xBF, 99, 2]), Meaning::Part);
        assert_eq!(d.decode(&[0x91, 60, 80]).to_string(), "great C4 down");
        assert_eq!(d.decode(&[0xBF, 98, 44]), Meaning::Part);
        assert_eq!(d.decode(&[0x91, 60, 0]).to_string(), "great C4 up");
        assert_eq!(d.decode(&[0xBF, 6, 1]).to_string(), "Sw Gedackt 8 drawn");
        // Outside the compass a note on the great's channel is no key.
        assert_eq!(d.decode(&[0x91, 30, 80]), Meaning::Unknown);
        // All notes off on a division's channel is left to the callers (by its bytes).
        assert_eq!(d.decode(&[0xB1, 123, 0]), Meaning::Unknown);
    }

    #[test]
    fn remote_pistons_are_named_and_never_keys_or_stops() {
        let text = format!(
            "{ORGAN}[remote]\ngo = {{ note = 20, channel = 16 }}\nstop = {{ nrpn = 5, value = 1, channel = 15 }}\n"
        );
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let mut d = Decoder::new(&organ);
        let go = Meaning::Remote { action: RemoteAction::Go, pressed: true };
        assert_eq!(d.decode(&[0x9F, 20, 127]), go);
        assert_eq!(d.decode(&[0x9F, 20, 3]), go, "whatever the velocity");
        assert_eq!(d.decode(&[0x9F, 20, 0]).to_string(), "remote: go on (let go)");
        assert_eq!(d.decode(&[0x9F, 36, 127]).to_string(), "Gt Principal 4 drawn");
        assert_eq!(d.decode(&[0x91, 20, 127]), Meaning::Unknown, "another channel");
        assert_eq!(d.decode(&[0xBE, 99, 0]), Meaning::Part);
        assert_eq!(d.decode(&[0xBE, 98, 5]), Meaning::Part);
        assert_eq!(d.decode(&[0xBE, 6, 1]).to_string(), "remote: stop");
    }

    /// Two groups of stops, each put in by one shared off: a CC, and an NRPN (a sequence).
    const GROUPS: &str = r#"
name = "Groups"
[division.great]
code = "G"
channel = 2
[[stop]]
name = "A"
division = "great"
on = { note = 40, channel = 16 }
off = { cc = 80, value = 0, channel = 16 }
[[stop]]
name = "B"
division = "great"
on = { note = 41, channel = 16 }
off = { cc = 80, value = 0, channel = 16 }
[[stop]]
name = "C"
division = "great"
on = { note = 42, channel = 16 }
[[stop]]
name = "D"
division = "great"
on = { nrpn = 400, value = 1, channel = 16 }
[[stop]]
name = "E"
division = "great"
on = { nrpn = 401, value = 1, channel = 16 }
off = { nrpn = 400, value = 0, channel = 16 }
[[coupler]]
name = "F"
from = "great"
to = "great"
action = "octave"
on = { note = 43, channel = 16 }
off = { cc = 80, value = 0, channel = 16 }
"#;

    #[test]
    fn a_shared_off_puts_in_every_control_it_belongs_to() {
        let organ = Organ::from_toml(GROUPS, "t.toml").unwrap();
        let id = |n: &str| organ.controls.iter().position(|c| c.name == n).unwrap() as u16;
        let on = |n| ConsoleEvent::Control { id: id(n), action: Action::On };
        let off = |n| ConsoleEvent::Control { id: id(n), action: Action::Off };
        for with_bytes in [false, true] {
            let mut d = core(&organ);
            // Each on is its own: one control each, as before.
            for n in ["A", "B", "C", "F"] {
                let m = organ.controls[usize::from(id(n))].on[0].as_bytes();
                assert_eq!(feed(&mut d, m, with_bytes), (Heard::Events, vec![on(n)]));
            }
            // The shared off: every control that has it, in file order, and not C.
            assert_eq!(feed(&mut d, &[0xBF, 80, 0], with_bytes), (Heard::Events, vec![off("A"), off("B"), off("F")]));
            // A shared sequence: both stops when its last message arrives, its first ones parts.
            let nrpn_off = &organ.controls[usize::from(id("D"))].off;
            assert_eq!(nrpn_off, &organ.controls[usize::from(id("E"))].off);
            let (last, first) = nrpn_off.split_last().unwrap();
            for m in first {
                assert_eq!(feed(&mut d, m.as_bytes(), with_bytes), (Heard::Part, vec![]));
            }
            assert_eq!(feed(&mut d, last.as_bytes(), with_bytes), (Heard::Events, vec![off("D"), off("E")]));
            // The ons of that pair are still each its own.
            for n in ["D", "E"] {
                let mut v = Vec::new();
                for m in &organ.controls[usize::from(id(n))].on {
                    d.feed(MsgKey::of(m.as_bytes()), with_bytes.then_some(m.as_bytes()), |e| v.push(e));
                }
                assert_eq!(v, vec![on(n)]);
            }
        }
    }

    #[test]
    fn a_shared_off_is_named_with_all_its_controls() {
        let organ = Organ::from_toml(GROUPS, "t.toml").unwrap();
        let mut d = Decoder::new(&organ);
        assert_eq!(d.decode(&[0x9F, 40, 127]).to_string(), "A drawn");
        assert_eq!(d.decode(&[0xBF, 80, 0]).to_string(), "A put in, B put in, F put in");
        assert_eq!(d.decode(&[0x9F, 42, 0]).to_string(), "C put in");
        for m in &organ.controls[3].off[..organ.controls[3].off.len() - 1] {
            assert_eq!(d.decode(m.as_bytes()), Meaning::Part);
        }
        let last = organ.controls[3].off.last().unwrap();
        assert_eq!(d.decode(last.as_bytes()).to_string(), "D put in, E put in");
    }

    #[test]
    fn note_names() {
        assert_eq!(note_name(60), "C4");
        assert_eq!(note_name(36), "C2");
        assert_eq!(note_name(97), "C#7");
    }

    #[test]
    fn bitmap_difference_is_one_bit() {
        let on = RolandDataSet { device: 0x10, offset: 0, data: vec![0, 0x20, 0, 0] }.to_bytes();
        let off = RolandDataSet { device: 0x10, offset: 0, data: vec![0, 0, 0, 0] }.to_bytes();
        assert_eq!(bitmap_stop(&on, &off), Some(BitmapStop { device: 0x10, bit: 12 }));
        let two = RolandDataSet { device: 0x10, offset: 0, data: vec![1, 0x20, 0, 0] }.to_bytes();
        assert_eq!(bitmap_stop(&two, &off), None, "two bits differ");
        let other = RolandDataSet { device: 0x11, offset: 0, data: vec![0, 0, 0, 0] }.to_bytes();
        assert_eq!(bitmap_stop(&on, &other), None, "another device");
        // A one-byte data set (how organ writes a learned stop) against the same byte cleared.
        let on1 = RolandDataSet { device: 0x10, offset: 1, data: vec![0x20] }.to_bytes();
        let off1 = RolandDataSet { device: 0x10, offset: 1, data: vec![0] }.to_bytes();
        assert_eq!(bitmap_stop(&on1, &off1), Some(BitmapStop { device: 0x10, bit: 12 }));
    }
}
