//! `organ learn --verify`: each learned control is drawn through an output, the organist says
//! whether it moved (`y`/`n` on standard input), and it is put in again; rejected controls are
//! marked in the organ file (a comment above the control), accepted ones unmarked.
//!
//! Safety: only the controls' own messages and the General Cancel are sent — never a note.
//! Every change (a control's on, its off, the cancel) waits at least the organ's
//! `stop_pace_ms` and never less than [`SAFE_PACE`] after the one before was delivered (left
//! the outputs, not merely handed to them), because some
//! consoles (Syndyne systems stepping piston memories) can be damaged by changes faster than
//! 250 ms. The console is cancelled first and on every way out: the end, `q`, the end of
//! input, Ctrl-C, an error, a panic (the [`Sender`]'s `Drop`).
//!
//! Ctrl-Z (job control, through the session's signal handling and a [`SuspendGate`]): the
//! control drawn is drawn off (paced as ever) and delivered before the process stops; after
//! `fg` it is drawn again and the question asked again. A stop while suspended (`kill %1`)
//! ends it without drawing anything again.
//!
//! Runs on the control thread: the outputs are the [`Session`]'s, sent to from here (no engine
//! plays), and finished by it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::LearnError;
use super::doc::OrganDoc;
use crate::midi::{Message, Micros};
use crate::organ::Organ;
use crate::session::{self, Session, SuspendGate};

/// The shortest time between two control changes `--verify` ever sends.
pub const SAFE_PACE: Duration = Duration::from_millis(250);

/// The longest a change waits for the outputs to deliver it before the pace starts anyway (an
/// output whose link is down never does).
const DELIVERY_WAIT: Duration = Duration::from_secs(1);

/// What `organ learn --verify` was asked to do.
#[derive(Debug, Clone)]
pub struct VerifyArgs {
    pub organ: PathBuf,
    /// Outputs (`--to`); empty = the organ's `output`.
    pub to: Vec<String>,
    /// A longer pace than the organ's and [`SAFE_PACE`], in milliseconds.
    pub pace_ms: Option<u64>,
    /// Only these controls.
    pub only: Vec<String>,
}

/// A control's on and off messages.
type Control = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The session's outputs, paced, cancelling on drop; the control drawn is drawn off before
/// the process stops on Ctrl-Z.
pub struct Sender {
    session: Session,
    cancel: Vec<Vec<u8>>,
    pace: Duration,
    last: Option<Instant>,
    failed: Option<String>,
    finished: bool,
    /// The control drawn now.
    drawn: Option<Control>,
    /// Until finished.
    gate: Option<SuspendGate>,
}

impl Sender {
    pub fn new(session: Session, cancel: Vec<Vec<u8>>, pace: Duration) -> Sender {
        Sender {
            session,
            cancel,
            pace,
            last: None,
            failed: None,
            finished: false,
            drawn: None,
            gate: Some(SuspendGate::new()),
        }
    }

    /// Sends one change (all its messages back to back), at least `pace` after the last.
    pub fn change(&mut self, msgs: &[Vec<u8>]) {
        self.wait_pace();
        self.send(msgs);
    }

    fn wait_pace(&mut self) {
        if let Some(last) = self.last {
            let due = last + self.pace;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }

    /// Draws a control (`on`, paced); [`Sender::draw_off`] puts it in again.
    pub fn draw(&mut self, on: Vec<Vec<u8>>, off: Vec<Vec<u8>>) {
        self.wait_pace();
        // Never drawn while the process is about to stop.
        self.suspend_if_asked();
        if session::signal_received() != 0 {
            return;
        }
        self.send(&on);
        self.drawn = Some((on, off));
    }

    /// Puts in the control drawn, if any (paced).
    pub fn draw_off(&mut self) {
        if let Some((_, off)) = self.drawn.take() {
            self.change(&off);
        }
    }

    /// When Ctrl-Z asks (the [`SuspendGate`]): draws off the control drawn, waits until that is
    /// delivered, lets the process stop, and returns once it goes on (SIGCONT) with the control
    /// that was drawn, to draw again. `None` when no suspension was asked.
    pub fn suspend_if_asked(&mut self) -> Option<Option<Control>> {
        let n = self.gate.as_ref()?.asked()?;
        let was = self.drawn.clone();
        self.draw_off();
        let start = Instant::now();
        while !self.session.delivered() && start.elapsed() < session::SUSPEND_WAIT / 2 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(g) = &self.gate {
            g.put_back(n);
        }
        Some(was)
    }

    /// Sends a change, and waits (at most [`DELIVERY_WAIT`]) until the outputs have delivered
    /// it: the pace to the next change runs from then. Counted from the hand-over instead, a
    /// change that an output wrote late (a JACK cycle after its time, on a loaded machine)
    /// would reach the console less than `pace` before the next one, which is not late.
    fn send(&mut self, msgs: &[Vec<u8>]) {
        if let Some((name, e)) = self.session.send_now(msgs, &[], Micros::ZERO).into_iter().next() {
            self.failed.get_or_insert_with(|| format!("{name}: {e}"));
        }
        let start = Instant::now();
        while !self.session.delivered() && start.elapsed() < DELIVERY_WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.last = Some(Instant::now());
    }

    /// Cancels, then finishes the outputs (a file output is written here).
    ///
    /// # Errors
    /// A send or an output's finish failed.
    pub fn finish(&mut self) -> Result<(), String> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let cancel = self.cancel.clone();
        self.change(&cancel);
        // Ctrl-Z now: the cancel delivered first.
        self.suspend_if_asked();
        self.gate = None;
        if let Some(e) = self.session.finish().errors.into_iter().next() {
            self.failed.get_or_insert(e.to_string());
        }
        self.failed.take().map_or(Ok(()), Err)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn bytes(ms: &[Message]) -> Vec<Vec<u8>> {
    ms.iter().map(|m| m.as_bytes().to_vec()).collect()
}

/// The answer to "drawn?".
enum Answer {
    Yes,
    No,
    Quit,
    Interrupted,
}

/// Waits for the answer about `name`, drawn by `sender`; Ctrl-Z meanwhile draws it off, and
/// after `fg` it is drawn again and the question asked again.
fn answer(lines: &crossbeam_channel::Receiver<String>, sender: &mut Sender, name: &str) -> Answer {
    loop {
        if session::signal_received() != 0 {
            return Answer::Interrupted;
        }
        if let Some(was) = sender.suspend_if_asked() {
            if session::signal_received() != 0 {
                return Answer::Interrupted;
            }
            if let Some((on, off)) = was {
                sender.draw(on, off);
                out!("drawn again: {name} — did it move on the console? (y/n)");
            }
            continue;
        }
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(l) => match l.trim().to_lowercase().as_str() {
                "y" | "yes" | "j" => return Answer::Yes,
                "n" | "no" => return Answer::No,
                "q" | "quit" => return Answer::Quit,
                _ => out!("answer y (it moved) or n (it did not), or q to stop"),
            },
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Answer::Quit,
        }
    }
}

/// `organ learn --verify`.
///
/// # Errors
/// The organ definition is not valid, an output cannot be opened, a send fails, or the organ
/// file cannot be written.
pub fn run(a: &VerifyArgs) -> Result<i32, LearnError> {
    session::install_signal_handling();
    let organ = Organ::load(&a.organ)?;
    let mut doc = OrganDoc::load(&a.organ)?;
    let pace =
        SAFE_PACE.max(Duration::from_micros(organ.stop_pace.0)).max(Duration::from_millis(a.pace_ms.unwrap_or(0)));
    let toggles_blind = organ.cancel.is_none();
    let wanted = |n: &str| {
        a.only.is_empty() || a.only.iter().any(|o| crate::text::normalize_name(o) == crate::text::normalize_name(n))
    };
    let controls: Vec<usize> = (0..organ.controls.len()).filter(|&i| wanted(&organ.controls[i].name)).collect();
    // A toggle cannot be put into a known state without a General Cancel: every off would flip it
    // (the organ's cancel leaves toggles out).
    let cancel: Vec<Vec<u8>> = bytes(&organ.cancel_messages());
    let open = |e: crate::output::OpenError| LearnError::Output(e.into());
    let specs = session::output_specs(&a.to, organ.output.as_deref(), &organ.source).map_err(open)?;
    let mut outputs = Session::new(specs, organ.on_disconnect);
    let notes = outputs.open_outputs(false).map_err(open)?;
    let names = outputs.output_names();
    for n in &notes {
        err!("organ: {n}");
    }
    err!(
        "organ: verifying {} control(s) of {} through {}, one change every {} ms; answer y or n and Enter (q stops); the console is cancelled first and at the end",
        controls.len(),
        super::super::printable(&organ.name),
        names.join(", "),
        pace.as_millis()
    );
    let mut sender = Sender::new(outputs, cancel.clone(), pace);
    sender.change(&cancel);
    let lines = super::stdin_lines();
    let (mut ok, mut rejected, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    let mut interrupted = false;
    for &id in &controls {
        let c = &organ.controls[id];
        let name = super::super::printable(&c.name);
        if toggles_blind && c.on == c.off {
            out!(
                "skipped: {name}: it toggles and the organ has no General Cancel ([cancel] message), so it cannot be put into a known state"
            );
            skipped.push(name);
            continue;
        }
        sender.draw(bytes(&c.on), bytes(&c.off));
        if session::signal_received() != 0 {
            interrupted = true;
            break;
        }
        out!("drawn: {name} — did it move on the console? (y/n)");
        let reply = answer(&lines, &mut sender, &name);
        sender.draw_off();
        match reply {
            Answer::Yes => ok.push(c.name.clone()),
            Answer::No => rejected.push(c.name.clone()),
            Answer::Quit => break,
            Answer::Interrupted => {
                interrupted = true;
                break;
            }
        }
    }
    let sent = sender.finish();
    for n in &ok {
        doc.mark_rejected(n, false);
    }
    for n in &rejected {
        doc.mark_rejected(n, true);
    }
    doc.save()?;
    let list = |v: &[String]| v.iter().map(|n| super::super::printable(n)).collect::<Vec<_>>().join(", ");
    out!(
        "summary: {} confirmed, {} rejected{}{}; the console was cancelled",
        ok.len(),
        rejected.len(),
        if rejected.is_empty() {
            String::new()
        } else {
            format!(" ({}; marked in {})", list(&rejected), a.organ.display())
        },
        if skipped.is_empty() { String::new() } else { format!(", {} skipped", skipped.len()) }
    );
    sent.map_err(|e| LearnError::Output(crate::app::Error::Other(e)))?;
    let sig = session::signal_received();
    Ok(if interrupted {
        128 + sig.max(2)
    } else if rejected.is_empty() {
        0
    } else {
        1
    })
}
