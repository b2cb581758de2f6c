//! The console as a remote for `organ service --from SOURCE`: spare pistons or a MIDI foot
//! switch, mapped in the organ definition's `[remote]` table, go on, pause at the end of the
//! verse, stop, and choose the next or previous item — the same [`Action`]s the terminal keys
//! and the phone remote send, to the same [`Service`](super::Service). One console has one set
//! of pistons: an order played on several organ definitions takes the `[remote]` table they agree
//! on ([`remote_organ`]).
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
    /// The order's items are played on several organ definitions and none maps a piston
    /// (their names).
    NoRemoteAnywhere {
        organs: Vec<String>,
    },
    /// Two organ definitions of the order map different pistons: one console cannot be both.
    Disagree {
        /// (name, file) of each.
        a: (String, String),
        b: (String, String),
        /// The first piston they differ on.
        action: RemoteAction,
    },
    /// A piston's message is something another organ of the order plays or hears: played there,
    /// or echoed back by the console, it would drive the service.
    Confused {
        action: RemoteAction,
        /// What it is on that organ ("a stop's message", "key 60 of the great division").
        what: String,
        organ: String,
        source: String,
        item: String,
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
            ConsoleRemoteError::NoRemoteAnywhere { organs } => write!(
                f,
                "--from: none of the organs of this order ({}) has a [remote] table, so no piston would do anything; \
                 add one (e.g. [remote] go = {{ note = 10, channel = 15 }}) or learn it with organ learn --organ FILE \
                 --from SOURCE --only remote",
                input::printable(&organs.join(", "))
            ),
            ConsoleRemoteError::Disagree { a, b, action } => write!(
                f,
                "--from: the organs of this order map different console pistons ([remote] {} of \"{}\" ({}) and of \
                 \"{}\" ({}) differ), but there is one console; give them the same [remote] table, or play the order \
                 on one organ (organ = \"NAME\" at its top, or --organ)",
                action.key(),
                input::printable(&a.0),
                input::printable(&a.1),
                input::printable(&b.0),
                input::printable(&b.1)
            ),
            ConsoleRemoteError::Confused { action, what, organ, source, item } => write!(
                f,
                "--from: [remote] {} is {what} on \"{}\" ({}), which plays \"{}\": played there, or echoed back by \
                 the console, it would drive the service; give the piston a message of its own",
                action.key(),
                input::printable(organ),
                input::printable(source),
                input::printable(item)
            ),
            ConsoleRemoteError::Input(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConsoleRemoteError {}

/// The organ definition whose `[remote]` pistons drive a service whose items are played on
/// `organs` (each item's title and organ, in order). There is one console, so there is one set of
/// pistons: the `[remote]` table of the organs that have one, which must all agree (an organ
/// without one does not disagree: the pistons are the console's); and no piston's message may be
/// something any of the organs plays or hears (a key, a stop's message, the General Cancel, a
/// bitmap, an expression pedal), or playing that item would drive the service.
///
/// # Errors
/// No organ maps a piston; two map different ones; a piston is another organ's message.
pub fn remote_organ<'a>(organs: &[(&str, &'a Organ)]) -> Result<&'a Organ, ConsoleRemoteError> {
    let Some(&(_, chosen)) = organs.iter().find(|(_, o)| !o.remote.is_empty()) else {
        let mut names: Vec<String> = Vec::new();
        for (_, o) in organs {
            if !names.contains(&o.name) {
                names.push(o.name.clone());
            }
        }
        return Err(match organs.first() {
            Some((_, o)) if names.len() == 1 => {
                ConsoleRemoteError::NoRemote { organ: o.name.clone(), source: o.source.clone() }
            }
            _ => ConsoleRemoteError::NoRemoteAnywhere { organs: names },
        });
    };
    let named = |o: &Organ| (o.name.clone(), o.source.clone());
    for (_, o) in organs.iter().filter(|(_, o)| !o.remote.is_empty()) {
        if let Some(action) = RemoteAction::ALL.into_iter().find(|&a| o.remote_button(a) != chosen.remote_button(a)) {
            return Err(ConsoleRemoteError::Disagree { a: named(chosen), b: named(o), action });
        }
    }
    for (title, o) in organs {
        if std::ptr::eq(*o, chosen) || o.source == chosen.source {
            continue; // its own file checked its pistons against itself
        }
        if let Some((action, what)) = confused(chosen, o) {
            let (organ, source) = named(o);
            return Err(ConsoleRemoteError::Confused { action, what, organ, source, item: title.to_string() });
        }
    }
    Ok(chosen)
}

/// A piston of `remote`'s `[remote]` whose press or release `organ` reads as something it plays
/// or hears, and what.
fn confused(remote: &Organ, organ: &Organ) -> Option<(RemoteAction, String)> {
    use crate::organ::decode::{ConsoleDecoder, ConsoleEvent, MsgKey};
    for b in &remote.remote {
        for m in b.press.iter().chain(b.release.iter().flatten()) {
            let bytes = m.as_bytes();
            // A fresh decoder each time: what the message alone means there.
            let mut events = Vec::new();
            ConsoleDecoder::of_organ(organ).feed(MsgKey::of(bytes), Some(bytes), |e| events.push(e));
            let what = events.first().map(|e| match *e {
                ConsoleEvent::Key { division, key, .. } => {
                    format!("key {key} of the {} division", organ.divisions[usize::from(division)].name)
                }
                ConsoleEvent::AllNotesOff { .. } => "a channel-mode message".to_string(),
                ConsoleEvent::Control { id, .. } => format!("\"{}\"'s message", organ.controls[usize::from(id)].name),
                ConsoleEvent::Cancel => "the General Cancel's message".to_string(),
                ConsoleEvent::Remote { .. } => "a piston".to_string(),
            });
            let expression = match bytes {
                [s, cc, _] if s & 0xF0 == 0xB0 => organ
                    .divisions
                    .iter()
                    .find(|d| d.expression.is_some_and(|e| e.cc == *cc && e.channel.wire() == s & 0x0F))
                    .map(|d| format!("the {} division's expression pedal", d.name)),
                _ => None,
            };
            if let Some(what) = what.or(expression) {
                return Some((b.action, what));
            }
        }
    }
    None
}

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

    #[test]
    fn one_console_one_set_of_pistons_across_the_organs_of_an_order() {
        let organ = |text: &str, file: &str| Organ::from_toml(text, file).unwrap();
        let without = &ORGAN[..ORGAN.find("[remote]").unwrap()];
        let a = organ(ORGAN, "a.toml");
        let same = organ(&ORGAN.replace("name = \"Remote\"", "name = \"Remote too\""), "a2.toml");
        let none = organ(without, "b.toml");
        // The organ that maps them, wherever it comes; one without a table does not disagree.
        let chosen = remote_organ(&[("One", &none), ("Two", &a), ("Three", &same)]).unwrap();
        assert_eq!(chosen.source, "a.toml");
        // Another go piston: one console cannot be both.
        let other =
            organ(&ORGAN.replace("go = { note = 20, channel = 16 }", "go = { note = 21, channel = 16 }"), "c.toml");
        let e = remote_organ(&[("One", &a), ("Two", &other)]).err().unwrap().to_string();
        assert_eq!(
            e,
            "--from: the organs of this order map different console pistons ([remote] go of \"Remote\" (a.toml) and \
             of \"Remote\" (c.toml) differ), but there is one console; give them the same [remote] table, or play \
             the order on one organ (organ = \"NAME\" at its top, or --organ)"
        );
        // A piston that another organ's stop sends, or one of its keys, or its expression pedal.
        let stop =
            organ(&without.replace("on = { note = 10, channel = 16 }", "on = { note = 20, channel = 16 }"), "d.toml");
        let e = remote_organ(&[("One", &a), ("Two", &stop)]).err().unwrap().to_string();
        assert!(
            e.starts_with(
                "--from: [remote] go is \"Gt Principal 8\"'s message on \"Remote\" (d.toml), which plays \"Two\""
            ),
            "{e}"
        );
        let keys = organ(
            &without
                .replace("channel = 1\n", "channel = 16\ncompass = [12, 96]\n")
                .replace("note = 10, channel = 16", "note = 10, channel = 14"),
            "e.toml",
        );
        let e = remote_organ(&[("One", &a), ("Two", &keys)]).err().unwrap().to_string();
        assert!(e.contains("[remote] go is key 20 of the great division on \"Remote\" (e.toml)"), "{e}");
        let pedal = organ(&without.replace("channel = 1\n", "channel = 15\nexpression = { cc = 64 }\n"), "f.toml");
        let e = remote_organ(&[("One", &a), ("Two", &pedal)]).err().unwrap().to_string();
        assert!(e.contains("[remote] pause is the great division's expression pedal"), "{e}");
        // None maps a piston: the one organ named, or all of them.
        let e = remote_organ(&[("One", &none), ("Two", &none)]).err().unwrap().to_string();
        assert!(e.starts_with("--from: the organ \"Remote\" (b.toml) has no [remote] table"), "{e}");
        let none2 = organ(&without.replace("name = \"Remote\"", "name = \"Other\""), "g.toml");
        let e = remote_organ(&[("One", &none), ("Two", &none2)]).err().unwrap().to_string();
        assert!(e.starts_with("--from: none of the organs of this order (Remote, Other) has a [remote] table"), "{e}");
    }
}
