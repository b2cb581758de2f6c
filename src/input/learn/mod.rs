//! `organ learn`: the organist on the bench draws and puts in each control when asked, and the
//! organ file is written from what the console sent.
//!
//! For each division: `press lowest key: great`, `press highest key: great` (the channel and
//! the compass). For each stop, coupler and tremulant: `draw: Gt Principal 4`, then
//! `put in: Gt Principal 4`; after each action it listens until a quiet window (default 1 s)
//! so nobody has to touch the laptop; then the pair is classified ([`classify`]) and written
//! into the organ file ([`doc`], comments and layout kept). Last, `press: General Cancel`.
//! Each prompt is one line on stdout starting with the action; results follow as
//! `learned: …`, `duplicate: …`, `burst: …`, `unclear: …`, `skipped: …` lines.
//!
//! Lines typed on standard input at any time (a terminal or a script): `r` asks the item in
//! progress again from its first prompt, `s` skips it, `u` goes back to the previous item
//! (undoing what was written for it), `q` stops (what was learned stays written).
//!
//! Learning sends nothing to the organ: no output is opened. `--verify` ([`verify`]) is the
//! one part that sends, and only control messages and the cancel.
//!
//! Runs on the control thread; the input backend and a stdin reader have their own threads.

pub mod classify;
pub mod doc;
pub mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

pub use super::ConsoleError as LearnError;
use super::Received;
use crate::organ::decode::MsgKey;
use classify::{Binding, Form, Outcome};
use doc::{Item, OrganDoc};

/// What `organ learn` was asked to do (plain values; the CLI builds it).
#[derive(Debug, Clone)]
pub struct LearnArgs {
    /// The console's MIDI source (`port:NAME`, `jack:PORT`).
    pub from: String,
    /// The organ file to write (created when `divisions`/`controls` are given and it does not
    /// exist).
    pub organ: PathBuf,
    /// Learn everything again, not only what the file does not have yet.
    pub all: bool,
    /// Learn only these (divisions, controls, `General Cancel`).
    pub only: Vec<String>,
    /// For a new file: its divisions, controls and name.
    pub divisions: Vec<String>,
    pub controls: Vec<String>,
    pub name: Option<String>,
    /// The quiet window that ends an action.
    pub quiet: Duration,
    /// How long to wait for the console after a prompt before the item is skipped.
    pub wait: Duration,
}

/// A line typed during learning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Retry,
    Skip,
    Undo,
    Quit,
}

impl Cmd {
    pub fn parse(line: &str) -> Option<Cmd> {
        match line.trim().to_lowercase().as_str() {
            "r" | "retry" => Some(Cmd::Retry),
            "s" | "skip" => Some(Cmd::Skip),
            "u" | "undo" => Some(Cmd::Undo),
            "q" | "quit" => Some(Cmd::Quit),
            _ => None,
        }
    }
}

/// What one listening period brought.
#[derive(Debug)]
enum Heard {
    Messages(Vec<Vec<u8>>),
    Command(Cmd),
    Timeout,
    Interrupted,
}

/// How an item ended.
enum Done {
    /// Finished (written, or reported as not written): on to the next.
    Next,
    Command(Cmd),
    Interrupted,
}

/// The learning loop, over any input channel and command channel (tests feed both).
pub struct Session<'a, W: Write> {
    pub doc: OrganDoc,
    pub rx: Receiver<Received>,
    pub cmds: Receiver<String>,
    pub out: W,
    pub quiet: Duration,
    pub wait: Duration,
    /// Polled while listening: true ends learning (Ctrl-C).
    pub interrupted: &'a dyn Fn() -> bool,
    /// What happened to each item, for the summary.
    pub results: Vec<(String, bool)>,
}

impl<W: Write> Session<'_, W> {
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{}", super::printable(line));
        let _ = self.out.flush();
    }

    /// Waits for the console after a prompt: up to `wait` for the first message, then until
    /// `quiet` passes with nothing new. Real-time messages (clock, active sensing) are ignored.
    fn listen(&mut self) -> Heard {
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        let start = Instant::now();
        let mut last = start;
        loop {
            if (self.interrupted)() {
                return Heard::Interrupted;
            }
            let now = Instant::now();
            if msgs.is_empty() && now >= start + self.wait {
                return Heard::Timeout;
            }
            if !msgs.is_empty() && now >= last + self.quiet {
                return Heard::Messages(msgs);
            }
            let until = if msgs.is_empty() { start + self.wait } else { last + self.quiet };
            let tick = until.saturating_duration_since(now).min(Duration::from_millis(50));
            select! {
                recv(self.rx) -> m => match m {
                    Ok(r) if !r.is_realtime() => {
                        msgs.push(r.bytes.to_vec());
                        last = Instant::now();
                    }
                    Ok(_) => {}
                    Err(_) => return Heard::Interrupted,
                },
                recv(self.cmds) -> l => match l {
                    Ok(line) => if let Some(c) = Cmd::parse(&line) { return Heard::Command(c) },
                    Err(_) => self.cmds = crossbeam_channel::never(),
                },
                default(tick) => {}
            }
        }
    }

    /// Prompts, then listens; stale messages from before the prompt are dropped first.
    fn ask(&mut self, prompt: &str) -> Heard {
        while self.rx.try_recv().is_ok() {}
        self.say(prompt);
        self.listen()
    }

    /// Learns every item in turn, with retry, skip, undo and quit. Returns whether it was
    /// interrupted.
    ///
    /// # Errors
    /// The organ file cannot be written.
    pub fn run(&mut self, items: &[Item]) -> Result<bool, LearnError> {
        let mut undo: Vec<(usize, OrganDoc, usize)> = Vec::new();
        let mut i = 0;
        while i < items.len() {
            let before = (self.doc.clone(), self.results.len());
            let done = match &items[i] {
                Item::Division(name) => self.division(name)?,
                Item::Control { array, index, name } => self.control(array, *index, name)?,
                Item::Cancel => self.cancel()?,
                Item::Remote(a) => self.remote(*a)?,
            };
            match done {
                Done::Next => {
                    undo.push((i, before.0, before.1));
                    i += 1;
                }
                Done::Command(Cmd::Retry) => self.say(&format!("again: {}", items[i].name())),
                Done::Command(Cmd::Skip) => {
                    self.say(&format!("skipped: {}", items[i].name()));
                    self.results.push((items[i].name().to_string(), false));
                    undo.push((i, before.0, before.1));
                    i += 1;
                }
                Done::Command(Cmd::Undo) => {
                    if let Some((j, doc, n)) = undo.pop() {
                        self.doc = doc;
                        self.doc.save()?;
                        self.results.truncate(n);
                        self.say(&format!("undone: {}", items[j].name()));
                        i = j;
                    } else {
                        self.say("undo: nothing to undo yet");
                    }
                }
                Done::Command(Cmd::Quit) => break,
                Done::Interrupted => return Ok(true),
            }
        }
        Ok(false)
    }

    /// The messages of a capture, or how the item ends instead.
    fn heard(&mut self, h: Heard, name: &str, what: &str) -> Result<Vec<Vec<u8>>, Done> {
        match h {
            Heard::Messages(m) => Ok(m),
            Heard::Command(c) => Err(Done::Command(c)),
            Heard::Interrupted => Err(Done::Interrupted),
            Heard::Timeout => {
                self.say(&format!(
                    "skipped: {name}: nothing arrived within {} s of \"{what}\" (u goes back to it)",
                    seconds(self.wait)
                ));
                self.results.push((name.to_string(), false));
                Err(Done::Next)
            }
        }
    }

    fn division(&mut self, name: &str) -> Result<Done, LearnError> {
        let h = self.ask(&format!("press lowest key: {name}"));
        let low = match self.heard(h, name, "press lowest key") {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        let h = self.ask(&format!("press highest key: {name}"));
        let high = match self.heard(h, name, "press highest key") {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        match classify::division(&low, &high) {
            Ok((ch, compass)) => {
                if let Some(other) = self.division_on(ch.user(), name) {
                    self.say(&format!(
                        "duplicate: {name} plays on channel {} like {other}; not written (u goes back to it)",
                        ch.user()
                    ));
                    self.results.push((name.to_string(), false));
                } else {
                    self.doc.set_division(name, ch, compass);
                    self.doc.save()?;
                    let (lo, hi) =
                        (crate::organ::decode::note_name(compass.0), crate::organ::decode::note_name(compass.1));
                    self.say(&format!(
                        "learned: {name} = channel {}, keys {}-{} ({lo}-{hi})",
                        ch.user(),
                        compass.0,
                        compass.1
                    ));
                    self.results.push((name.to_string(), true));
                }
            }
            Err(why) => {
                self.say(&format!("unclear: {name}: {why}; not written (u goes back to it)"));
                self.results.push((name.to_string(), false));
            }
        }
        Ok(Done::Next)
    }

    /// Another division already on `channel`.
    fn division_on(&self, channel: u8, except: &str) -> Option<String> {
        let divs = self.doc.doc.get("division")?.as_table_like()?;
        divs.iter()
            .find(|(n, d)| *n != except && d.get("channel").and_then(|c| c.as_integer()) == Some(i64::from(channel)))
            .map(|(n, _)| n.to_string())
    }

    fn control(&mut self, array: &str, index: usize, name: &str) -> Result<Done, LearnError> {
        let h = self.ask(&format!("draw: {name}"));
        let on = match self.heard(h, name, "draw") {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        let h = self.ask(&format!("put in: {name}"));
        let off = match h {
            Heard::Timeout => Vec::new(),
            h => match self.heard(h, name, "put in") {
                Ok(m) => m,
                Err(d) => return Ok(d),
            },
        };
        let outcome = match classify::classify(&on, &off) {
            Outcome::Bound(b) => self.check_binding(name, b),
            o => o,
        };
        match outcome {
            Outcome::Bound(b) => {
                self.doc.set_control(array, index, &b);
                self.doc.save()?;
                self.say(&format!("learned: {name} = {} ({})", describe_binding(&b), b.dialect));
                if let Some(n) = &b.note {
                    self.say(&format!("note: {name}: {n}"));
                }
                self.results.push((name.to_string(), true));
            }
            Outcome::Burst { count } => {
                self.say(&format!(
                    "burst: {name}: {count} messages at once — a piston or the console reporting its state, not one control; not written (u goes back to it)"
                ));
                self.results.push((name.to_string(), false));
            }
            Outcome::Nothing => {
                self.say(&format!("unclear: {name}: nothing arrived when it was drawn; not written"));
                self.results.push((name.to_string(), false));
            }
            Outcome::Unclear(why) => {
                self.say(&format!("unclear: {name}: {why}; not written (u goes back to it)"));
                self.results.push((name.to_string(), false));
            }
        }
        Ok(Done::Next)
    }

    /// A duplicate of another control's message, or a key of a division, is not a binding.
    fn check_binding(&self, name: &str, b: Binding) -> Outcome {
        // A Rodgers stop's off is its byte cleared, which the other stops of that byte share.
        let mut mine = vec![b.on.messages()];
        if !b.dialect.starts_with("Rodgers") {
            mine.push(b.off_messages());
        }
        for (other, msgs) in self.doc.known_messages() {
            if crate::text::normalize_name(&other) == crate::text::normalize_name(name) {
                continue;
            }
            if msgs.iter().any(|m| mine.contains(m)) {
                return Outcome::Unclear(format!(
                    "duplicate: the console sent {}, which {other} already sends",
                    b.on.describe()
                ));
            }
        }
        if let Form::Note { channel, key, .. } = b.on
            && let Some(div) = self.division_on(channel.user(), "")
        {
            return Outcome::Unclear(format!(
                "note {key} on channel {} is a key of {div}, not a stop (was a key pressed?)",
                channel.user()
            ));
        }
        Outcome::Bound(b)
    }

    fn cancel(&mut self) -> Result<Done, LearnError> {
        let h = self.ask("press: General Cancel");
        let msgs = match self.heard(h, "General Cancel", "press") {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        // Compared as the console's decoder compares them (a note-off in any form is one).
        let known: Vec<MsgKey> =
            self.doc.known_messages().into_iter().flat_map(|(_, m)| m).flatten().map(|m| MsgKey::of(&m)).collect();
        match classify::piston(&msgs, |m| known.contains(&MsgKey::of(m))) {
            Ok(p) => {
                let report = if p.report > 0 {
                    format!(
                        "; followed by a burst of {} stop messages (the console's state report, not bound)",
                        p.report
                    )
                } else {
                    String::new()
                };
                match p.message {
                    Some(f) => {
                        self.doc.set_cancel(&f);
                        self.doc.save()?;
                        self.say(&format!("learned: General Cancel = {}{report}", f.describe()));
                        self.results.push(("General Cancel".into(), true));
                    }
                    None => {
                        self.say(&format!(
                            "unclear: General Cancel: only the stops' own messages arrived{report}; not written (organ cancels by sending every control's off)"
                        ));
                        self.results.push(("General Cancel".into(), false));
                    }
                }
            }
            Err(why) => {
                self.say(&format!("unclear: General Cancel: {why}; not written (u goes back to it)"));
                self.results.push(("General Cancel".into(), false));
            }
        }
        Ok(Done::Next)
    }
}

impl<W: Write> Session<'_, W> {
    /// A `[remote]` piston for `organ service`: its own message, which must not be a key, a
    /// control's, the General Cancel's or another remote piston's (a burst of stop state after
    /// it is the console's report, not bound, as for the General Cancel).
    fn remote(&mut self, action: crate::organ::RemoteAction) -> Result<Done, LearnError> {
        let name = doc::remote_name(action);
        let h = self.ask(&format!("press: {name}"));
        let msgs = match self.heard(h, name, "press") {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        let norm = |b: &[u8]| match *b {
            [s, k, v] if s & 0xF0 == 0x90 && v > 0 => vec![s, k, 1],
            [s, k, _] if s & 0xF0 == 0x90 || s & 0xF0 == 0x80 => vec![0x80 | (s & 0x0F), k, 0],
            _ => b.to_vec(),
        };
        let controls: Vec<Vec<u8>> =
            self.doc.known_messages().into_iter().flat_map(|(_, m)| m).flatten().map(|m| norm(&m)).collect();
        let msgs = without_releases(&msgs);
        let outcome = classify::piston(&msgs, |m| controls.contains(&norm(m))).and_then(|p| {
            let f = p.message.ok_or("only the stops' own messages arrived (a piston that draws stops)")?;
            let mine: Vec<Vec<u8>> = f.messages().iter().map(|m| norm(m)).collect();
            let taken = |other: &[Vec<u8>]| other.iter().map(|m| norm(m)).collect::<Vec<_>>() == mine;
            if self.doc.cancel_message().is_some_and(|c| taken(&c)) {
                return Err("it is the General Cancel's message".to_string());
            }
            if let Some((other, _)) =
                self.doc.remote_messages().into_iter().find(|(n, m)| n != name && taken(m))
            {
                return Err(format!("{other} already sends it"));
            }
            if let Form::Note { channel, key, .. } = f
                && let Some(div) = self.division_on(channel.user(), "")
            {
                return Err(format!(
                    "note {key} on channel {} is on {div}'s channel (was a key pressed? a piston needs a message the keys do not send)",
                    channel.user()
                ));
            }
            Ok(f)
        });
        match outcome {
            Ok(f) => {
                self.doc.set_remote(action, &f);
                self.doc.save()?;
                self.say(&format!("learned: {name} = {} ({})", f.describe(), action.describe()));
                self.results.push((name.to_string(), true));
            }
            Err(why) => {
                self.say(&format!("unclear: {name}: {why}; not written (u goes back to it)"));
                self.results.push((name.to_string(), false));
            }
        }
        Ok(Done::Next)
    }
}

/// A piston's capture without the release of what was pressed in it: the note-off after its
/// note-on, the controller back at 0 after a value (the organ file infers both).
fn without_releases(msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let releases = |press: &[u8], m: &[u8]| match (press, m) {
        (&[s, k, v], &[s2, k2, v2]) if s & 0xF0 == 0x90 && v > 0 => {
            s2 & 0x0F == s & 0x0F && k2 == k && (s2 & 0xF0 == 0x80 || (s2 & 0xF0 == 0x90 && v2 == 0))
        }
        (&[s, c, v], &[s2, c2, 0]) if s & 0xF0 == 0xB0 && v > 0 => s2 == s && c2 == c,
        _ => false,
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    for m in msgs {
        if !out.iter().any(|p| releases(p, m)) {
            out.push(m.clone());
        }
    }
    out
}

/// `note 36 on channel 16`, or `X, off Y` when the off is written.
pub fn describe_binding(b: &Binding) -> String {
    match &b.off {
        Some(off) if *off != b.on => format!("{}, off {}", b.on.describe(), off.describe()),
        _ => b.on.describe(),
    }
}

/// Lines typed on standard input, read on their own thread (ends at end of input).
pub fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let _ = std::thread::Builder::new().name("organ-stdin".into()).spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The organ file to learn into: the existing file, or a new one from names.
fn open_doc(a: &LearnArgs) -> Result<OrganDoc, LearnError> {
    let new = !a.divisions.is_empty() || !a.controls.is_empty();
    match (a.organ.exists(), new) {
        (true, false) => OrganDoc::load(&a.organ),
        (true, true) => Err(LearnError::Usage(format!(
            "{} exists; --divisions and --stops start a new organ file (add names to the file itself instead)",
            a.organ.display()
        ))),
        (false, true) if a.divisions.is_empty() => {
            Err(LearnError::Usage("a new organ file needs --divisions (e.g. --divisions great,swell,pedal)".into()))
        }
        (false, true) => {
            let stem = a.organ.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "organ".into());
            let d = OrganDoc::skeleton(&a.organ, a.name.as_deref().unwrap_or(&stem), &a.divisions, &a.controls)?;
            d.save()?;
            Ok(d)
        }
        (false, false) => Err(LearnError::Usage(format!(
            "{}: no such file; to start a new organ give --divisions great,swell,pedal and --stops \"Gt Principal 8,…\"",
            a.organ.display()
        ))),
    }
}

/// `organ learn` (without `--verify`).
///
/// # Errors
/// The organ file cannot be read or written, or the input cannot be opened.
pub fn run(a: &LearnArgs) -> Result<i32, LearnError> {
    crate::session::install_signal_handling();
    let doc = open_doc(a)?;
    let items = doc.items(a.all, &a.only);
    if items.is_empty() {
        out!("nothing left to learn in {} (--all learns everything again, --only NAMES some of it)", a.organ.display());
        return Ok(0);
    }
    let input = super::open(&a.from)?;
    err!(
        "organ: learning {} item(s) of {} from {}; after each prompt act at the console and wait; type r (again), s (skip), u (back), q (stop) and Enter at any time",
        items.len(),
        a.organ.display(),
        super::printable(input.name())
    );
    let interrupted = || crate::session::signal_received() != 0;
    let mut s = Session {
        doc,
        rx: input.messages().clone(),
        cmds: stdin_lines(),
        out: std::io::stdout(),
        quiet: a.quiet,
        wait: a.wait,
        interrupted: &interrupted,
        results: Vec::new(),
    };
    let was_interrupted = s.run(&items)?;
    let learned = s.results.iter().filter(|r| r.1).count();
    let missed: Vec<String> = s.results.iter().filter(|r| !r.1).map(|r| super::printable(&r.0)).collect();
    out!(
        "summary: learned {learned} of {}{}",
        items.len(),
        if missed.is_empty() { String::new() } else { format!("; not learned: {}", missed.join(", ")) }
    );
    match crate::organ::Organ::from_toml(&s.doc.text(), &a.organ.display().to_string()) {
        Ok(o) => out!(
            "{} is a complete organ definition ({} divisions, {} controls); check it with `organ learn --verify --organ {}`",
            a.organ.display(),
            o.divisions.len(),
            o.controls.len(),
            a.organ.display()
        ),
        Err(e) => out!("not complete yet: {}", super::printable(&e.to_string())),
    }
    Ok(if was_interrupted { 128 + crate::session::signal_received().max(2) } else { 0 })
}

/// A time in seconds as the user wrote it: `60`, `0.5`, `1.25` (not `0` for `--wait 500ms`).
fn seconds(d: Duration) -> String {
    // To the microsecond: `--wait 0.3s` is 0.299999999 s as a Duration.
    let s = (d.as_secs_f64() * 1e6).round() / 1e6;
    format!("{s}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::Micros;

    const FILE: &str = r#"# test organ
name = "T"

[division.great]
code = "G"

[[stop]]
name = "Gt Principal 8"
division = "great"

[[stop]]
name = "Gt Octave 4"   # the second stop
division = "great"
"#;

    /// A console on a thread: for each prompt line the session prints, it sends the scripted
    /// answer; the session's output is read back through a pipe-like channel writer.
    struct Lines(crossbeam_channel::Sender<String>, Vec<u8>);
    impl Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.1.extend_from_slice(b);
            while let Some(i) = self.1.iter().position(|&c| c == b'\n') {
                let line: Vec<u8> = self.1.drain(..=i).collect();
                let _ = self.0.send(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run_with(script: fn(&str) -> Vec<Vec<u8>>, cmds: &[(&str, &str)]) -> (String, Vec<String>) {
        run_only(script, cmds, &[])
    }

    fn run_only(script: fn(&str) -> Vec<Vec<u8>>, cmds: &[(&str, &str)], only: &[&str]) -> (String, Vec<String>) {
        let dir = std::env::temp_dir().join(format!(
            "organ-learn-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.toml");
        std::fs::write(&path, FILE).unwrap();
        let doc = OrganDoc::load(&path).unwrap();
        let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
        let items = doc.items(false, &only);
        let (in_tx, in_rx) = crossbeam_channel::unbounded::<Received>();
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded::<String>();
        let (out_tx, out_rx) = crossbeam_channel::unbounded::<String>();
        let cmds: Vec<(String, String)> = cmds.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let console = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut cmds = cmds;
            while let Ok(l) = out_rx.recv_timeout(Duration::from_secs(5)) {
                lines.push(l.clone());
                if let Some(pos) = cmds.iter().position(|(at, _)| l.starts_with(at.as_str())) {
                    let (_, c) = cmds.remove(pos);
                    let _ = cmd_tx.send(c);
                    continue;
                }
                for m in script(&l) {
                    let _ = in_tx.send(Received { at: Micros(0), bytes: m.into() });
                }
            }
            lines
        });
        let never = || false;
        let mut s = Session {
            doc,
            rx: in_rx,
            cmds: cmd_rx,
            out: Lines(out_tx, Vec::new()),
            quiet: Duration::from_millis(60),
            wait: Duration::from_millis(400),
            interrupted: &never,
            results: Vec::new(),
        };
        s.run(&items).unwrap();
        drop(s);
        let lines = console.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (text, lines)
    }

    fn organist(prompt: &str) -> Vec<Vec<u8>> {
        match prompt {
            "press lowest key: great" => vec![vec![0x91, 36, 64], vec![0x81, 36, 0]],
            "press highest key: great" => vec![vec![0x91, 96, 64], vec![0x81, 96, 0]],
            "draw: Gt Principal 8" => vec![vec![0x9F, 36, 127]],
            "put in: Gt Principal 8" => vec![vec![0x8F, 36, 0]],
            "draw: Gt Octave 4" | "put in: Gt Octave 4" => vec![vec![0xCF, 4]],
            "press: General Cancel" => {
                vec![vec![0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, 0x7F, 0xF7], vec![0x8F, 36, 0], vec![0xCF, 4]]
            }
            _ => Vec::new(),
        }
    }

    #[test]
    fn learns_a_small_organ_and_keeps_the_comments() {
        let (text, lines) = run_with(organist, &[]);
        assert!(text.starts_with("# test organ\nname = \"T\"\n"), "{text}");
        assert!(text.contains("name = \"Gt Octave 4\"   # the second stop\n"), "{text}");
        let organ = crate::organ::Organ::from_toml(&text, "t.toml").unwrap();
        assert_eq!(organ.divisions[0].channel.user(), 2);
        assert_eq!(organ.controls[0].on[0].as_bytes(), &[0x9F, 36, 127]);
        assert_eq!(organ.controls[1].off[0].as_bytes(), &[0xCF, 4]);
        assert_eq!(organ.cancel.as_ref().unwrap()[0].as_bytes()[..3], [0xF0, 0x00, 0x4A]);
        assert!(
            lines.contains(&"learned: Gt Octave 4 = program 4 on channel 16 (program change toggle)".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("learned: General Cancel = SysEx") && l.contains("burst of 2 stop messages")),
            "{lines:#?}"
        );
    }

    fn duplicate_console(prompt: &str) -> Vec<Vec<u8>> {
        match prompt {
            "draw: Gt Octave 4" => vec![vec![0x9F, 36, 127]],
            "put in: Gt Octave 4" => vec![vec![0x8F, 36, 0]],
            p => organist(p),
        }
    }

    #[test]
    fn a_duplicate_is_flagged_and_not_written() {
        let (text, lines) = run_with(duplicate_console, &[]);
        assert!(
            lines.iter().any(
                |l| l.starts_with("unclear: Gt Octave 4: duplicate:") && l.contains("Gt Principal 8 already sends")
            ),
            "{lines:#?}"
        );
        assert_eq!(text.matches("note = 36").count(), 1, "{text}");
    }

    #[test]
    fn skip_and_undo_from_standard_input() {
        // Skip the octave while it is being drawn; at the cancel, go back to it: it is asked
        // again (and learned), then the cancel.
        let (text, lines) = run_with(organist, &[("draw: Gt Octave 4", "s"), ("press: General Cancel", "u")]);
        let pos =
            |want: &str| lines.iter().position(|l| l.starts_with(want)).unwrap_or_else(|| panic!("{want}: {lines:#?}"));
        assert!(pos("skipped: Gt Octave 4") < pos("undone: Gt Octave 4"));
        assert!(pos("undone: Gt Octave 4") < pos("learned: Gt Octave 4"));
        assert_eq!(lines.iter().filter(|l| *l == "press: General Cancel").count(), 2, "{lines:#?}");
        assert!(text.contains("program = 4"), "{text}");
    }

    fn remote_pistons(prompt: &str) -> Vec<Vec<u8>> {
        match prompt {
            // A piston: note-on (any velocity) when pressed, note-off when let go.
            "press: remote go" | "press: remote next" => vec![vec![0x9F, 100, 90], vec![0x8F, 100, 0]],
            // A foot switch: a controller, 127 down and 0 up.
            "press: remote pause" => vec![vec![0xBE, 80, 127], vec![0xBE, 80, 0]],
            // A piston that sends a program change.
            "press: remote stop" => vec![vec![0xCE, 9]],
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_wait_is_said_in_seconds_as_written() {
        for (d, said) in [
            (Duration::from_secs(60), "60"),
            (Duration::from_millis(500), "0.5"),
            (Duration::from_secs_f64(0.3), "0.3"),
            (Duration::from_millis(1250), "1.25"),
            (Duration::from_micros(100), "0.0001"),
        ] {
            assert_eq!(seconds(d), said, "{d:?}");
        }
    }

    #[test]
    fn learns_the_remote_pistons_only_when_asked() {
        assert!(!run_with(organist, &[]).1.iter().any(|l| l.contains("remote")), "not asked unless --only remote");
        let (text, lines) = run_only(remote_pistons, &[], &["remote"]);
        let prompts: Vec<&String> = lines.iter().filter(|l| l.starts_with("press: ")).collect();
        assert_eq!(
            prompts,
            [
                "press: remote go",
                "press: remote pause",
                "press: remote stop",
                "press: remote next",
                "press: remote previous"
            ]
        );
        for want in [
            "learned: remote go = note 100 velocity 90 on channel 16 (go on)",
            "learned: remote pause = CC 80 = 127 on channel 15 (pause at the end of the verse)",
            "learned: remote stop = program 9 on channel 15 (stop)",
            "unclear: remote next: remote go already sends it; not written (u goes back to it)",
            // The test's wait is 400 ms: said as it is, not rounded down to "0 s".
            "skipped: remote previous: nothing arrived within 0.4 s of",
        ] {
            assert!(lines.iter().any(|l| l.starts_with(want)), "no {want:?} in {lines:#?}");
        }
        assert!(text.starts_with(FILE), "the file is kept as it was: {text}");
        let remote = &text[FILE.len()..];
        assert!(remote.starts_with("\n[remote]\ngo = { note = 100,"), "{remote}");
        // What was written loads as the [remote] of a complete organ, and means what was pressed.
        let complete = FILE
            .replace("code = \"G\"", "code = \"G\"\nchannel = 2")
            .replace("division = \"great\"\n", "division = \"great\"\non = { note = 36, channel = 16 }\n");
        let complete = complete.replacen(
            "on = { note = 36, channel = 16 }",
            "on = { program = 4, channel = 16 }\noff = { program = 4, channel = 16 }",
            1,
        );
        let organ = crate::organ::Organ::from_toml(&format!("{complete}{remote}"), "t.toml").unwrap();
        let mut d = crate::organ::decode::Decoder::new(&organ);
        for (bytes, want) in [
            (&[0x9F, 100, 127][..], "remote: go on"),
            (&[0xBE, 80, 127], "remote: pause at the end of the verse"),
            (&[0xCE, 9], "remote: stop"),
        ] {
            assert_eq!(d.decode(bytes).to_string(), want);
        }
    }

    #[test]
    fn commands_parse() {
        assert_eq!(Cmd::parse(" R "), Some(Cmd::Retry));
        assert_eq!(Cmd::parse("undo"), Some(Cmd::Undo));
        assert_eq!(Cmd::parse("y"), None);
    }
}
