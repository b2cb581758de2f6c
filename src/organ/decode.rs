//! Reading the console's messages through an organ definition: the inverse of what the organ
//! is sent. "Gt Principal 4 drawn", "swell C4 down", "General Cancel", or unknown.
//!
//! A control's message may be a sequence (an NRPN is CC 99, 98, 6; `raw` may hold several), so
//! the decoder keeps the last few messages and matches each control's sequences against them;
//! the leading messages of a sequence read as its parts. Rodgers-style bitmaps (Roland "data set"
//! SysEx, `F0 41 dd 30 12 01 oo data… sum F7`, checksum verified) are read bit by bit against the
//! last state seen, so one bitmap may say that several stops moved.
//!
//! Pure and allocation-light; runs on whichever ordinary thread reads the input, never on the
//! real-time path.

use std::collections::HashMap;

use super::{Organ, RemoteAction};
use crate::midi::Message;

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
        if b.len() < 10 || b[..2] != [0xF0, 0x41] || b[3..6] != [0x30, 0x12, 0x01] || b[b.len() - 1] != 0xF7 {
            return None;
        }
        let sum = b[b.len() - 2];
        (roland_checksum(&b[5..b.len() - 2]) == sum).then(|| RolandDataSet {
            device: b[2],
            offset: b[6],
            data: b[7..b.len() - 2].to_vec(),
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

    /// The message bytes, checksum computed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0xF0, 0x41, self.device, 0x30, 0x12, 0x01, self.offset];
        v.extend_from_slice(&self.data);
        v.push(roland_checksum(&v[5..]));
        v.push(0xF7);
        v
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

/// The stop bit that is set in `on` and clear in `off`, when that is the only difference.
pub fn bitmap_stop(on: &[u8], off: &[u8]) -> Option<BitmapStop> {
    let (a, b) = (RolandDataSet::parse(on)?, RolandDataSet::parse(off)?);
    if a.device != b.device {
        return None;
    }
    let lo = u32::from(a.offset.min(b.offset)) * 7;
    let end = |d: &RolandDataSet| (u32::from(d.offset) + d.data.len() as u32) * 7;
    let mut found = None;
    for bit in lo..end(&a).max(end(&b)) {
        match (a.bit(bit), b.bit(bit)) {
            (Some(true), Some(false)) if found.is_none() => found = Some(bit),
            (Some(x), Some(y)) if x != y => return None,
            _ => {}
        }
    }
    found.map(|bit| BitmapStop { device: a.device, bit })
}

struct Seq {
    bytes: Vec<Vec<u8>>,
    meaning: SeqMeaning,
}

#[derive(Clone)]
enum SeqMeaning {
    Control(usize, Option<bool>),
    Cancel,
    /// A `[remote]` piston, pressed or let go. Matched whatever a note-on's velocity (a
    /// piston's velocity may vary with how it is pressed).
    Remote(RemoteAction, bool),
}

/// Decodes messages through one organ definition. Keeps a little state (the last messages, the
/// last bitmap per device), so feed it every message in arrival order.
pub struct Decoder {
    names: Vec<String>,
    seqs: Vec<Seq>,
    bitmaps: Vec<(BitmapStop, usize)>,
    /// Division (name, channel, compass) for keys.
    divisions: Vec<(String, u8, (u8, u8))>,
    recent: Vec<Vec<u8>>,
    /// The last bit states seen per device (bit → set).
    state: HashMap<(u8, u32), bool>,
}

/// The most messages one control's sequence may span.
const RECENT: usize = 8;

/// A note-on of any velocity as velocity 1 (the remote's pistons match whatever the velocity).
fn loose(b: &[u8]) -> Vec<u8> {
    match b {
        [s, k, v] if s & 0xF0 == 0x90 && *v > 0 => vec![*s, *k, 1],
        _ => b.to_vec(),
    }
}

/// Note-offs as one form (8n k 0), so 8n k v, 9n k 0 and 8n k 0 all match.
fn normal(b: &[u8]) -> Vec<u8> {
    match b {
        [s, k, 0] if s & 0xF0 == 0x90 => vec![0x80 | (s & 0x0F), *k, 0],
        [s, k, _] if s & 0xF0 == 0x80 => vec![*s, *k, 0],
        _ => b.to_vec(),
    }
}

impl Decoder {
    pub fn new(organ: &Organ) -> Decoder {
        let mut d = Decoder {
            names: organ.controls.iter().map(|c| c.name.clone()).collect(),
            seqs: Vec::new(),
            bitmaps: Vec::new(),
            divisions: organ.divisions.iter().map(|x| (x.name.clone(), x.channel.wire(), x.compass)).collect(),
            recent: Vec::new(),
            state: HashMap::new(),
        };
        let bytes = |ms: &[Message]| ms.iter().map(|m| normal(m.as_bytes())).collect::<Vec<_>>();
        for (id, c) in organ.controls.iter().enumerate() {
            if let ([on], [off]) = (c.on.as_slice(), c.off.as_slice())
                && let Some(bs) = bitmap_stop(on.as_bytes(), off.as_bytes())
            {
                d.bitmaps.push((bs, id));
                continue;
            }
            let (on, off) = (bytes(&c.on), bytes(&c.off));
            if on == off {
                d.seqs.push(Seq { bytes: on, meaning: SeqMeaning::Control(id, None) });
            } else {
                d.seqs.push(Seq { bytes: on, meaning: SeqMeaning::Control(id, Some(true)) });
                d.seqs.push(Seq { bytes: off, meaning: SeqMeaning::Control(id, Some(false)) });
            }
        }
        if let Some(cancel) = &organ.cancel {
            d.seqs.push(Seq { bytes: bytes(cancel), meaning: SeqMeaning::Cancel });
        }
        // After the controls and the cancel: at equal length those win (the organ file refuses
        // a remote message that is one of theirs anyway).
        for b in &organ.remote {
            let loose = |ms: &[Message]| ms.iter().map(|m| loose(&normal(m.as_bytes()))).collect::<Vec<_>>();
            d.seqs.push(Seq { bytes: loose(&b.press), meaning: SeqMeaning::Remote(b.action, true) });
            if let Some(release) = &b.release {
                d.seqs.push(Seq { bytes: loose(release), meaning: SeqMeaning::Remote(b.action, false) });
            }
        }
        // Longest first, so that a sequence wins over a shorter one it ends with.
        d.seqs.sort_by_key(|s| std::cmp::Reverse(s.bytes.len()));
        d
    }

    /// What `bytes` (one complete message) means, given the messages before it.
    pub fn decode(&mut self, bytes: &[u8]) -> Meaning {
        let m = normal(bytes);
        self.recent.push(m.clone());
        if self.recent.len() > RECENT {
            self.recent.remove(0);
        }
        if let Some(ds) = RolandDataSet::parse(bytes)
            && self.bitmaps.iter().any(|(b, _)| b.device == ds.device)
        {
            return self.decode_bitmap(&ds);
        }
        let mut controls = Vec::new();
        let mut cancel = false;
        for s in &self.seqs {
            let n = s.bytes.len();
            if n > self.recent.len() {
                continue;
            }
            let tail = &self.recent[self.recent.len() - n..];
            let matches = match s.meaning {
                SeqMeaning::Remote(..) => tail.iter().zip(&s.bytes).all(|(r, b)| loose(r) == *b),
                _ => tail == &s.bytes[..],
            };
            if matches {
                match s.meaning {
                    SeqMeaning::Remote(action, pressed) => return Meaning::Remote { action, pressed },
                    SeqMeaning::Control(id, st) => {
                        if !controls.iter().any(|(n, _)| *n == self.names[id]) {
                            controls.push((self.names[id].clone(), st));
                        }
                    }
                    SeqMeaning::Cancel => cancel = true,
                }
                // One match is the message's meaning (the longest one: seqs are sorted).
                break;
            }
        }
        if cancel {
            self.state.clear();
            return Meaning::Cancel;
        }
        if !controls.is_empty() {
            return Meaning::Controls(controls);
        }
        if let Some(k) = self.key(&m) {
            return k;
        }
        if self.seqs.iter().any(|s| s.bytes.len() > 1 && s.bytes[..s.bytes.len() - 1].contains(&m)) {
            return Meaning::Part;
        }
        Meaning::Unknown
    }

    fn key(&self, m: &[u8]) -> Option<Meaning> {
        let [s, k, v] = *m else { return None };
        let down = match s & 0xF0 {
            0x90 if v > 0 => true,
            0x80 | 0x90 => false,
            _ => return None,
        };
        let (name, _, _) =
            self.divisions.iter().find(|(_, ch, (lo, hi))| *ch == s & 0x0F && (*lo..=*hi).contains(&k))?;
        Some(Meaning::Key { division: name.clone(), key: k, down })
    }

    fn decode_bitmap(&mut self, ds: &RolandDataSet) -> Meaning {
        let mut changed = Vec::new();
        for (b, id) in &self.bitmaps {
            if b.device != ds.device {
                continue;
            }
            let Some(now) = ds.bit(b.bit) else { continue };
            let before = self.state.insert((b.device, b.bit), now);
            // A first bitmap reports what is drawn; later ones report what moved.
            if before != Some(now) && (before.is_some() || now) {
                changed.push((self.names[*id].clone(), Some(now)));
            }
        }
        if changed.is_empty() { Meaning::NoChange } else { Meaning::Controls(changed) }
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
