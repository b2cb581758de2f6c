//! The console as the built-in voice hears it: MIDI messages decoded into key presses and stop,
//! coupler and tremulant changes, exactly as an organ's MIDI interface would decode the
//! messages the plan sends (the same bytes that go to the real organ, matched against the organ
//! definition's on, off and cancel messages). So what the voice sounds is what the messages
//! say, not what the planner meant: a wrong stop message would be heard as such.
//!
//! The decoding itself is the organ's one decoder (crate::organ::decode::ConsoleDecoder), the
//! same that `organ monitor` names messages with.
//!
//! # Real-time safety
//! [`MsgKey::of`] and [`Decoder::feed`] never allocate (the decoder's buffers are sized when it
//! is built), so they may run on the audio thread.

use super::OrganSound;
use crate::organ::ControlKind;
pub use crate::organ::decode::{Action, ConsoleEvent, MsgKey};
use crate::organ::decode::{ConsoleDecoder, ControlWire, DivisionWire};

/// Turns a stream of messages into [`ConsoleEvent`]s for one organ definition: the organ's
/// [`ConsoleDecoder`], every key of a division's channel taken as a key.
pub struct Decoder(ConsoleDecoder);

impl Decoder {
    pub fn new(organ: &OrganSound) -> Decoder {
        let divisions: Vec<DivisionWire> =
            organ.channels.iter().map(|ch| DivisionWire { channel: ch.wire(), compass: (0, 127) }).collect();
        let controls = organ.controls.iter().map(|c| ControlWire { on: &c.on, off: &c.off });
        Decoder(ConsoleDecoder::new(&divisions, controls, organ.cancel.as_deref()))
    }

    /// Decodes one message; `out` receives what it does (nothing for a message the organ
    /// definition does not know, or the first messages of a sequence such as an NRPN). A
    /// Rodgers-style data set is read bit by bit when it is one of the organ definition's own.
    pub fn feed(&mut self, m: MsgKey, out: impl FnMut(ConsoleEvent)) {
        self.0.feed(m, None, out);
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
            // A `[remote]` piston drives `organ service`; the console's sound does not change.
            ConsoleEvent::Remote { .. } => false,
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

    #[test]
    fn a_shared_off_silences_every_stop_of_its_group() {
        let text = format!(
            "{ORGAN}[[stop]]\nname = \"Gt Flute 4\"\ndivision = \"great\"\non = {{ note = 37, channel = 16 }}\n\
             off = {{ cc = 80, value = 0, channel = 16 }}\n[[stop]]\nname = \"Gt Trumpet 8\"\ndivision = \"great\"\n\
             on = {{ note = 38, channel = 16 }}\noff = {{ cc = 80, value = 0, channel = 16 }}\n"
        );
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let sound = OrganSound::of_organ(&organ);
        let (mut d, mut console) = (Decoder::new(&sound), Console::new(&sound));
        for m in [[0x9F, 36, 127], [0x9F, 37, 127], [0x9F, 38, 127], [0xBF, 80, 0]] {
            d.feed(MsgKey::of(&m), |e| {
                console.apply(e);
            });
        }
        let drawn: Vec<&str> =
            (0..console.drawn.len()).filter(|&i| console.drawn[i]).map(|i| organ.controls[i].name.as_str()).collect();
        assert_eq!(drawn, ["Sw Gedackt 8"], "the group's off put in both its stops, and only them");
    }

    #[test]
    fn a_stop_drawn_at_velocity_127_and_put_in_at_1_sounds_only_while_drawn() {
        let text = format!(
            "{ORGAN}[[stop]]\nname = \"Gt Flute 4\"\ndivision = \"great\"\non = {{ raw = \"9F 25 7F\" }}\n\
             off = {{ raw = \"9F 25 01\" }}\n"
        );
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let sound = OrganSound::of_organ(&organ);
        let (mut d, mut console) = (Decoder::new(&sound), Console::new(&sound));
        let mut drawn = Vec::new();
        // Drawn, drawn again (a console repeating its state), put in, put in again.
        for m in [[0x9F, 37, 127], [0x9F, 37, 127], [0x9F, 37, 1], [0x9F, 37, 1]] {
            d.feed(MsgKey::of(&m), |e| {
                console.apply(e);
            });
            drawn.push(console.drawn[3]);
        }
        assert_eq!(drawn, [true, true, false, false], "read as its state, never flipped");
    }
}
