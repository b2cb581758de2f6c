//! The console as the built-in voice hears it: MIDI messages decoded into key presses and stop,
//! coupler and tremulant changes, exactly as an organ's MIDI interface would decode the
//! messages the plan sends (the same bytes that go to the real organ, matched against the organ
//! definition's on, off and cancel messages). So what the voice sounds is what the messages
//! say, not what the planner meant: a wrong stop message would be heard as such.
//!
//! # Real-time safety
//! [`MsgKey::of`] and [`Decoder::feed`] never allocate (the decoder's buffers are sized when it
//! is built), so they may run on the audio thread.

use super::OrganSound;
use crate::organ::ControlKind;

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
}

/// What a control message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    On,
    Off,
    /// The same message draws and puts in (a toggle console).
    Toggle,
}

/// A change of the console's state.
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
}

struct Pattern {
    seq: Vec<MsgKey>,
    event: ConsoleEvent,
}

/// Turns a stream of messages into [`ConsoleEvent`]s for one organ definition.
pub struct Decoder {
    /// Longest first, so that a message completing a longer sequence (an NRPN) is read as that.
    patterns: Vec<Pattern>,
    history: Vec<MsgKey>,
    longest: usize,
    /// Division index for each channel, or `u8::MAX`.
    channel_division: [u8; 16],
}

impl Decoder {
    pub fn new(organ: &OrganSound) -> Decoder {
        let keys = |msgs: &[Vec<u8>]| msgs.iter().map(|m| MsgKey::of(m)).collect::<Vec<_>>();
        let mut patterns = Vec::new();
        for (id, c) in organ.controls.iter().enumerate() {
            let id = id as u16;
            let (on, off) = (keys(&c.on), keys(&c.off));
            if on == off {
                patterns.push(Pattern { seq: on, event: ConsoleEvent::Control { id, action: Action::Toggle } });
            } else {
                patterns.push(Pattern { seq: on, event: ConsoleEvent::Control { id, action: Action::On } });
                patterns.push(Pattern { seq: off, event: ConsoleEvent::Control { id, action: Action::Off } });
            }
        }
        if let Some(cancel) = &organ.cancel {
            patterns.push(Pattern { seq: keys(cancel), event: ConsoleEvent::Cancel });
        }
        patterns.retain(|p| !p.seq.is_empty());
        patterns.sort_by_key(|p| std::cmp::Reverse(p.seq.len()));
        let longest = patterns.first().map_or(1, |p| p.seq.len());
        let mut channel_division = [u8::MAX; 16];
        for (d, ch) in organ.channels.iter().enumerate() {
            channel_division[usize::from(ch.wire())] = d as u8;
        }
        Decoder { patterns, history: Vec::with_capacity(longest), longest, channel_division }
    }

    /// Decodes one message; `out` receives what it does (nothing for a message the organ
    /// definition does not know, or the first messages of a sequence such as an NRPN).
    pub fn feed(&mut self, m: MsgKey, mut out: impl FnMut(ConsoleEvent)) {
        let status = m.head[0];
        let division =
            if (0x80..0xF0).contains(&status) { self.channel_division[usize::from(status & 0x0F)] } else { u8::MAX };
        let is_note = m.len == 3 && matches!(status & 0xF0, 0x80 | 0x90);
        if !(is_note && division != u8::MAX) {
            // Stop messages may be sequences: remember the last few.
            if self.history.len() == self.longest {
                self.history.remove(0);
            }
            self.history.push(m);
        }
        for p in &self.patterns {
            if self.history.ends_with(&p.seq) && (p.seq.last() == Some(&m)) {
                self.history.clear();
                out(p.event);
                return;
            }
        }
        if division == u8::MAX {
            return;
        }
        match status & 0xF0 {
            0x90 if is_note => out(ConsoleEvent::Key { division, key: m.head[1], down: true }),
            0x80 if is_note => out(ConsoleEvent::Key { division, key: m.head[1], down: false }),
            0xB0 if m.head[1] == 123 => out(ConsoleEvent::AllNotesOff { division }),
            _ => {}
        }
    }
}

/// The console's state: keys down per division and which controls are drawn.
#[derive(Debug, Clone)]
pub struct Console {
    /// One bit per key, per division.
    pub keys: Vec<u128>,
    pub drawn: Vec<bool>,
    kinds: Vec<ControlKind>,
}

impl Console {
    pub fn new(organ: &OrganSound) -> Console {
        Console {
            keys: vec![0; organ.channels.len()],
            drawn: vec![false; organ.controls.len()],
            kinds: organ.controls.iter().map(|c| c.kind).collect(),
        }
    }

    /// Applies one change. Returns true when it changed the registration (not only keys).
    pub fn apply(&mut self, e: ConsoleEvent) -> bool {
        match e {
            ConsoleEvent::Key { division, key, down } => {
                if let Some(k) = self.keys.get_mut(usize::from(division)) {
                    let bit = 1u128 << (key & 0x7F);
                    if down { *k |= bit } else { *k &= !bit }
                }
                false
            }
            ConsoleEvent::AllNotesOff { division } => {
                if let Some(k) = self.keys.get_mut(usize::from(division)) {
                    *k = 0;
                }
                false
            }
            ConsoleEvent::Control { id, action } => {
                let Some(d) = self.drawn.get_mut(usize::from(id)) else { return false };
                *d = match action {
                    Action::On => true,
                    Action::Off => false,
                    Action::Toggle => !*d,
                };
                true
            }
            ConsoleEvent::Cancel => {
                self.drawn.iter_mut().for_each(|d| *d = false);
                true
            }
        }
    }

    pub fn kind(&self, id: usize) -> ControlKind {
        self.kinds[id]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organ::Organ;

    const ORGAN: &str = r#"
name = "T"
[division.swell]
code = "S"
channel = 1
[division.great]
code = "G"
channel = 2
[[stop]]
name = "Sw Gedackt 8"
division = "swell"
on = { note = 36, channel = 16 }
[[stop]]
name = "Gt Principal 8"
division = "great"
on = { nrpn = 300, value = 127, channel = 16 }
[[stop]]
name = "Gt Octave 4"
division = "great"
on = { program = 3, channel = 16 }
off = { program = 3, channel = 16 }
[cancel]
message = { sysex = "F0 00 4A 4F 48 41 53 7F F7" }
"#;

    fn decode(bytes: &[&[u8]]) -> Vec<ConsoleEvent> {
        let organ = Organ::from_toml(ORGAN, "t.toml").unwrap();
        let mut d = Decoder::new(&OrganSound::of_organ(&organ));
        let mut v = Vec::new();
        for b in bytes {
            d.feed(MsgKey::of(b), |e| v.push(e));
        }
        v
    }

    #[test]
    fn every_message_form_is_decoded() {
        let ev = decode(&[
            &[0x9F, 36, 127],
            &[0xBF, 99, 2],
            &[0xBF, 98, 44],
            &[0xBF, 6, 127],
            &[0xCF, 3],
            &[0x90, 60, 100],
            &[0x91, 60, 0],
            &[0x8F, 36, 64],
            &[0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, 0x7F, 0xF7],
            &[0xB1, 123, 0],
        ]);
        use ConsoleEvent::*;
        assert_eq!(
            ev,
            vec![
                Control { id: 0, action: Action::On },
                Control { id: 1, action: Action::On },
                Control { id: 2, action: Action::Toggle },
                Key { division: 0, key: 60, down: true },
                Key { division: 1, key: 60, down: false },
                Control { id: 0, action: Action::Off },
                Cancel,
                AllNotesOff { division: 1 },
            ]
        );
    }

    #[test]
    fn an_nrpn_off_is_not_read_as_on() {
        let ev = decode(&[&[0xBF, 99, 2], &[0xBF, 98, 44], &[0xBF, 6, 0], &[0xBF, 6, 127]]);
        // The lone data entry after a complete sequence matches nothing.
        assert_eq!(ev, vec![ConsoleEvent::Control { id: 1, action: Action::Off }]);
    }
}
