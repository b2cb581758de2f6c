//! Test support: a console simulated from the messages it receives, and a small organ whose stops
//! toggle (Johannus-style program changes: the same message draws and puts in), to check that
//! what the console ends up with is what the plan meant, whatever state it started in. The
//! console reads its messages through the organ's one decoder (crate::organ::decode), so these
//! checks and the built-in voice cannot disagree about what a message does.

use crate::organ::Organ;
use crate::organ::decode::{Action, ConsoleDecoder, ConsoleEvent, MsgKey};

/// A two-division organ with program-change toggles on channel 12, one state stop (note on/off)
/// and a toggling coupler; `cancel` is the `[cancel]` table's body.
pub(crate) fn toggle_organ(cancel: &str) -> Organ {
    let text = format!(
        r#"
name = "Toggle organ"
[division.great]
code = "G"
channel = 2
[division.pedal]
code = "P"
channel = 3
compass = [36, 67]
[[stop]]
name = "Gt Principal 8"
division = "great"
on = {{ program = 0, channel = 12 }}
off = {{ program = 0, channel = 12 }}
[[stop]]
name = "Gt Flute 4"
division = "great"
on = {{ program = 1, channel = 12 }}
off = {{ program = 1, channel = 12 }}
[[stop]]
name = "Gt Trumpet 8"
division = "great"
on = {{ program = 2, channel = 12 }}
off = {{ program = 2, channel = 12 }}
[[stop]]
name = "Ped Subbass 16"
division = "pedal"
on = {{ program = 3, channel = 12 }}
off = {{ program = 3, channel = 12 }}
[[stop]]
name = "Ped Octave 8"
division = "pedal"
on = {{ note = 40, channel = 16 }}
[[coupler]]
name = "Gt to Ped"
from = "great"
to = "pedal"
on = {{ program = 4, channel = 12 }}
off = {{ program = 4, channel = 12 }}
[preset]
p = ["Gt Principal 8", "Ped Subbass 16"]
mf = ["Gt Principal 8", "Gt Flute 4", "Ped Subbass 16", "Ped Octave 8", "Gt to Ped"]
[cancel]
{cancel}
[timing]
stop_lead_ms = 40
stop_pace_ms = 4
"#
    );
    Organ::from_toml(&text, "toggle-organ.toml").unwrap()
}

/// mf at bar 1; at bar 3 the Trumpet instead of the Flute; p at bar 4.
pub(crate) const TOGGLE_REGISTRATION: &str = r#"
layout = "GP"
[[change]]
at = "1"
preset = "mf"
[[change]]
at = "3"
on = ["Gt Trumpet 8"]
off = ["Gt Flute 4"]
[[change]]
at = "4"
preset = "p"
"#;

/// A console that reacts to the messages it receives as the organ's one decoder
/// ([`ConsoleDecoder`], the same the built-in voice hears the plan with) reads them: a state
/// control's on draws and its off puts in (a shared off every control that has it), a toggle's
/// message flips it, the General Cancel puts everything in; keys change nothing here.
pub(crate) struct Console {
    decoder: ConsoleDecoder,
    pub drawn: Vec<bool>,
}

impl Console {
    /// The console of `organ`, standing as `drawn` says.
    pub fn new(organ: &Organ, drawn: Vec<bool>) -> Console {
        Console { decoder: ConsoleDecoder::of_organ(organ), drawn }
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        let drawn = &mut self.drawn;
        self.decoder.feed(MsgKey::of(bytes), Some(bytes), |e| match e {
            ConsoleEvent::Control { id, action } => {
                let d = &mut drawn[usize::from(id)];
                *d = match action {
                    Action::On => true,
                    Action::Off => false,
                    Action::Toggle => !*d,
                };
            }
            ConsoleEvent::Cancel => drawn.fill(false),
            ConsoleEvent::Key { .. } | ConsoleEvent::AllNotesOff { .. } | ConsoleEvent::Remote { .. } => {}
        });
    }

    /// The names of the controls drawn.
    pub fn names<'a>(&self, organ: &'a Organ) -> Vec<&'a str> {
        (0..self.drawn.len()).filter(|&i| self.drawn[i]).map(|i| organ.controls[i].name.as_str()).collect()
    }
}
