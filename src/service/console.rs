//! The console as a remote for `organ service --from SOURCE`: spare pistons or a MIDI foot
//! switch, mapped in the organ definition's `[remote]` table, go on, pause at the end of the
//! verse, stop, and choose the next or previous item — the same [`Action`]s the terminal keys
//! and the phone remote send, to the same [`Service`](super::Service).
//!
//! Every message from the console goes through the organ's one decoder
//! ([`crate::organ::decode`]): only a `[remote]` piston's press does anything. Keys, stops, the
//! cancel, whatever the console echoes of what organ plays, and messages nobody mapped are
//! ignored (the organ file refuses a remote message that is a key, a stop's, the cancel's, a
//! channel-mode message or an expression pedal's).
//!
//! Stop is deliberate: the stop piston stops only when pressed a second time within
//! [`REMOTE_STOP_WINDOW_MS`] of the first (the first press only says so on the screen), so one
//! stray press by a verger cannot cut a hymn. Pressing another remote piston in between
//! disarms it.
//!
//! Sends nothing: the remote maps console input to service actions and cannot make organ
//! strike a key. Runs on the control thread (it only reads the input's channel, which the
//! input's own thread fills).

use crate::input::{self, Input, Received};
use crate::midi::Micros;
use crate::organ::decode::{Decoder, Meaning};
use crate::organ::{Organ, REMOTE_STOP_WINDOW_MS, RemoteAction};

use super::app::Action;

/// What one remote piston press comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Do this (the piston pressed, and the action it means).
    Act(RemoteAction, Action),
    /// The stop piston's first press: stop if it is pressed again within the window.
    StopArmed,
}

/// The pistons' presses turned into actions; holds the stop piston's first press.
#[derive(Debug, Default)]
pub struct Presses {
    stop_armed: Option<Micros>,
}

impl Presses {
    /// A press of `action`'s piston at `at` (the input's clock).
    pub fn press(&mut self, action: RemoteAction, at: Micros) -> Step {
        let armed = self.stop_armed.take();
        let act = |a| Step::Act(action, a);
        match action {
            RemoteAction::Stop => match armed {
                Some(t) if at.0.saturating_sub(t.0) <= REMOTE_STOP_WINDOW_MS * 1000 => act(Action::Stop),
                _ => {
                    self.stop_armed = Some(at);
                    Step::StopArmed
                }
            },
            RemoteAction::Go => act(Action::Go),
            RemoteAction::Pause => act(Action::PauseAfterVerse(None)),
            RemoteAction::Next => act(Action::SelectBy(1)),
            RemoteAction::Previous => act(Action::SelectBy(-1)),
        }
    }
}

/// Why the console remote cannot run.
#[derive(Debug)]
pub enum ConsoleRemoteError {
    /// `--from` was given, but the organ maps no piston.
    NoRemote {
        organ: String,
        source: String,
    },
    Input(input::InputError),
}

impl std::fmt::Display for ConsoleRemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsoleRemoteError::NoRemote { organ, source } => write!(
                f,
                "--from: the organ \"{}\" ({}) has no [remote] table, so no piston would do anything; add one \
                 (e.g. [remote] go = {{ note = 10, channel = 15 }}) or learn it with organ learn --organ FILE --from \
                 SOURCE --only remote",
                input::printable(organ),
                input::printable(source)
            ),
            ConsoleRemoteError::Input(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConsoleRemoteError {}

/// The console's input, read through the organ definition for its `[remote]` pistons.
pub struct ConsoleRemote {
    input: Input,
    decoder: Decoder,
    presses: Presses,
    /// The pistons mapped, in the file's order.
    actions: Vec<RemoteAction>,
    /// The pistons mapped, for the screen ("go, pause, stop").
    pub mapped: String,
}

impl ConsoleRemote {
    /// Opens `--from SOURCE` for `organ`'s `[remote]`.
    ///
    /// # Errors
    /// The organ maps no piston; the input cannot be opened.
    pub fn open(spec: &str, organ: &Organ) -> Result<ConsoleRemote, ConsoleRemoteError> {
        if organ.remote.is_empty() {
            return Err(ConsoleRemoteError::NoRemote { organ: organ.name.clone(), source: organ.source.clone() });
        }
        let input = input::open(spec).map_err(ConsoleRemoteError::Input)?;
        Ok(ConsoleRemote::with_input(input, organ))
    }

    /// The remote over an input already open (tests feed one by hand).
    pub fn with_input(input: Input, organ: &Organ) -> ConsoleRemote {
        let actions: Vec<RemoteAction> =
            RemoteAction::ALL.into_iter().filter(|a| organ.remote_button(*a).is_some()).collect();
        let mapped = actions.iter().map(|a| a.key()).collect::<Vec<_>>().join(", ");
        ConsoleRemote { input, decoder: Decoder::new(organ), presses: Presses::default(), actions, mapped }
    }

    /// Whether the organ maps a piston for `action`.
    pub fn maps(&self, action: RemoteAction) -> bool {
        self.actions.contains(&action)
    }

    /// The pistons mapped, for the terminal's key help (`?`), in its two columns.
    pub fn help_lines(&self) -> Vec<String> {
        let mut lines = vec!["Console pistons (--from):".to_string()];
        for a in &self.actions {
            let does = match a {
                RemoteAction::Go => "start the chosen item; go on from a wait or a pause".to_string(),
                RemoteAction::Pause => "pause at the end of this verse (again: don't)".into(),
                RemoteAction::Stop => {
                    format!("stop — only when pressed twice within {} s", REMOTE_STOP_WINDOW_MS / 1000)
                }
                RemoteAction::Next => "choose the item after".into(),
                RemoteAction::Previous => "choose the item before".into(),
            };
            lines.push(format!("{:<17}{does}", a.key()));
        }
        lines
    }

    /// The input's name (`jack:console:out`, `port:…`).
    pub fn name(&self) -> &str {
        self.input.name()
    }

    /// The console's messages, for a `select!`.
    pub fn messages(&self) -> &crossbeam_channel::Receiver<Received> {
        self.input.messages()
    }

    /// What one message from the console does: nothing unless it is a remote piston's press.
    pub fn heard(&mut self, r: &Received) -> Option<Step> {
        if r.is_realtime() {
            return None;
        }
        match self.decoder.decode(&r.bytes) {
            Meaning::Remote { action, pressed: true } => Some(self.presses.press(action, r.at)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORGAN: &str = r#"
name = "Remote"
[division.great]
code = "G"
channel = 1
[[stop]]
name = "Gt Principal 8"
division = "great"
on = { note = 10, channel = 16 }
[cancel]
message = { cc = 21, value = 127, channel = 16 }
[remote]
go = { note = 20, channel = 16 }
pause = { cc = 64, value = 127, channel = 15 }
stop = { program = 9, channel = 15 }
next = { sysex = "F0 7D 01 F7" }
"#;

    fn rx(bytes: &[u8], ms: u64) -> Received {
        Received { at: Micros::from_millis(ms), bytes: bytes.into() }
    }

    #[test]
    fn only_a_pistons_press_acts_and_stop_needs_two_presses() {
        let organ = Organ::from_toml(ORGAN, "t.toml").unwrap();
        let (_tx, r) = crossbeam_channel::unbounded();
        let mut c = ConsoleRemote::with_input(Input::from_channel("test", r), &organ);
        assert_eq!(c.mapped, "go, pause, stop, next");
        assert!(c.maps(RemoteAction::Go) && !c.maps(RemoteAction::Previous));
        assert_eq!(
            c.help_lines(),
            [
                "Console pistons (--from):",
                "go               start the chosen item; go on from a wait or a pause",
                "pause            pause at the end of this verse (again: don't)",
                "stop             stop — only when pressed twice within 2 s",
                "next             choose the item after",
            ]
        );
        // A key, a stop, the cancel, a release, clock, unknown: nothing.
        for b in [
            &[0x90, 60, 100][..],
            &[0x80, 60, 0],
            &[0x9F, 10, 127],
            &[0x8F, 10, 0],
            &[0xBF, 21, 127],
            &[0x8F, 20, 0],
            &[0xBE, 64, 0],
            &[0xF8],
            &[0xBF, 123, 0],
            &[0xF0, 0x7D, 0x02, 0xF7],
        ] {
            assert_eq!(c.heard(&rx(b, 0)), None, "{b:02X?}");
        }
        // A piston's note-on, whatever its velocity.
        assert_eq!(c.heard(&rx(&[0x9F, 20, 64], 10)), Some(Step::Act(RemoteAction::Go, Action::Go)));
        assert_eq!(
            c.heard(&rx(&[0xBE, 64, 127], 20)),
            Some(Step::Act(RemoteAction::Pause, Action::PauseAfterVerse(None)))
        );
        assert_eq!(
            c.heard(&rx(&[0xF0, 0x7D, 0x01, 0xF7], 30)),
            Some(Step::Act(RemoteAction::Next, Action::SelectBy(1)))
        );
        // Stop: armed, then too late (re-armed), then within 2 s.
        assert_eq!(c.heard(&rx(&[0xCE, 9], 1000)), Some(Step::StopArmed));
        assert_eq!(c.heard(&rx(&[0xCE, 9], 3001)), Some(Step::StopArmed));
        assert_eq!(c.heard(&rx(&[0xCE, 9], 5001)), Some(Step::Act(RemoteAction::Stop, Action::Stop)));
        // Another piston between the two presses disarms the stop.
        assert_eq!(c.heard(&rx(&[0xCE, 9], 6000)), Some(Step::StopArmed));
        assert_eq!(c.heard(&rx(&[0x9F, 20, 127], 6100)), Some(Step::Act(RemoteAction::Go, Action::Go)));
        assert_eq!(c.heard(&rx(&[0xCE, 9], 6200)), Some(Step::StopArmed));
    }

    #[test]
    fn without_a_remote_table_from_is_refused() {
        let organ = Organ::from_toml(&ORGAN[..ORGAN.find("[remote]").unwrap()], "t.toml").unwrap();
        let e = ConsoleRemote::open("jack", &organ).err().unwrap().to_string();
        assert!(e.starts_with("--from: the organ \"Remote\" (t.toml) has no [remote] table"), "{e}");
    }
}
