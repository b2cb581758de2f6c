//! `organ service FILE`: playing for a service from one full-screen terminal view, and from
//! phones on the church's network (`--remote`).
//!
//! The person at the laptop is often not an organist. The view shows the order of service with
//! the chosen item highlighted, what is playing (verse, bar, tempo, registration), what comes
//! next, and one help line (`?` shows every key); Enter starts the chosen item or goes on from
//! a wait. The laptop may be tucked away: `--remote` serves a page for phones that drives the
//! same service ([`remote`]); without a terminal, `--remote` serves the phones alone. Spare
//! console pistons mapped in the organ's `[remote]` drive it too (`--from`, [`console`]).
//!
//! The parts: [`app`] (the service's state and its [`Action`]s, over the [`session`]), [`keys`]
//! (the terminal's keys and questions), [`console`] (the console's pistons), [`show`] (what the
//! terminal and the phones show), [`view`] (drawing), [`order`] (the order of service file),
//! [`remote`] (the phone remote's server). One session — one set of outputs, one clock, so a file record is one continuous
//! take — serves the whole service; the outputs, the engine of each item, signals, the panic
//! hook and releasing the keys on every way out are the session's. Control thread (the remote
//! server runs on its own thread and only sends [`Action`]s here).
//!
//! Every way out leaves no key down: a confirmed stop, the panic key and quitting stop the
//! engine (exact release, CC 123, cancel); Ctrl-C, SIGTERM and SIGHUP set the global stop
//! flag, which the engine obeys; a panic in the view is caught here and the session is
//! finished (stopped and its outputs written), and the terminal is restored by a guard that
//! also runs while unwinding.

pub mod app;
pub mod console;
pub mod keys;
pub mod order;
pub mod remote;
pub mod show;
pub mod view;

use std::io::{IsTerminal, Stdout, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::app::{Error, Status};
use crate::engine;
use crate::session::{self, Session};
pub use app::{Action, Answer, Played, Service};
use console::ConsoleRemote;
use keys::Keys;
use remote::{Listen, Remote};

/// What `organ service` was asked.
#[derive(Debug, Clone)]
pub struct ServiceArgs {
    pub file: PathBuf,
    pub to: Vec<String>,
    pub organ: Option<String>,
    /// `--remote [ADDRESS]`: serve the phone remote (`""`: on this computer only).
    pub remote: Option<String>,
    /// `--from SOURCE`: the console's MIDI input, whose `[remote]` pistons drive the service.
    pub from: Option<String>,
}

/// Restores the terminal when dropped (also while unwinding from a panic): the normal screen,
/// then raw mode off.
struct TerminalGuard {
    _screen: crate::term::FullScreen,
    _raw: crate::term::RawMode,
}

/// `organ service`.
///
/// # Errors
/// The order of service or its scores cannot be loaded; no terminal (and no `--remote`); the
/// remote cannot listen; the terminal fails.
pub fn cmd_service(a: &ServiceArgs) -> Result<Status, Error> {
    session::install_panic_hook();
    session::install_signal_handling();
    let order = order::load(&a.file, a.organ.as_deref())?;
    let listen = a.remote.as_deref().map(Listen::parse).transpose().map_err(|e| Error::Usage(e.to_string()))?;
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !terminal && listen.is_none() && a.from.is_none() {
        return Err(Error::Usage(
            "organ service draws a full-screen view: run it in a terminal, or give --remote (phones) or --from (the console's [remote] pistons) to be driven without one (to play one score, use organ play)"
                .into(),
        ));
    }
    let first_organ = &order.items[0].organ;
    // One console, one set of pistons: the [remote] every organ of the order agrees on
    // (console::remote_organ), read through the organ that defines it.
    let mut console = match a.from.as_deref() {
        None => None,
        Some(spec) => {
            let organs: Vec<(&str, &crate::organ::Organ)> =
                order.items.iter().map(|i| (i.title.as_str(), &i.organ)).collect();
            let remote = console::remote_organ(&organs).map_err(|e| Error::Usage(e.to_string()))?;
            Some(ConsoleRemote::open(spec, remote).map_err(|e| Error::Usage(e.to_string()))?)
        }
    };
    let default = order.output.as_deref().or(first_organ.output.as_deref());
    let specs = session::output_specs(&a.to, default, &order.source)?;
    let session = Session::new(specs, first_organ.on_disconnect);
    let mut svc = Service::new(order, session);
    let go_piston = console.as_ref().is_some_and(|c| c.maps(crate::organ::RemoteAction::Go));
    svc.set_goes_on(goes_on(go_piston, terminal, listen.is_some()));
    svc.open_missing_outputs();
    let remote = listen.as_ref().map(Remote::start).transpose().map_err(|e| Error::Io(e.to_string()))?;

    // The terminal outlives the view: it is restored only once every key is released and the
    // files are written (restoring a terminal that is gone may fail, even panic).
    let mut screen = if terminal { Some(open_terminal()?) } else { None };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut screen {
        None => {
            if let Some(r) = &remote {
                print_remote(r, &svc);
            }
            if let Some(c) = &console {
                print_console(c, &svc);
            }
            serve_without_terminal(&mut svc, remote.as_ref(), console.as_mut(), &AtomicBool::new(false));
        }
        Some((_, t)) => run_terminal(&mut svc, remote.as_ref(), console.as_mut(), t),
    }));
    // Whatever happened, nothing may keep sounding: stop and join the engine, then write files.
    let finished = svc.finish();
    drop(remote);
    if let Some((guard, mut t)) = screen {
        // ratatui's Terminal shows the cursor when dropped and, when that fails (the terminal is
        // gone), says so with eprintln!, which panics on a dead terminal: then it is not dropped
        // (the guard leaves the full screen and shows the cursor, ignoring errors).
        if t.show_cursor().is_err() {
            std::mem::forget(t);
        } else {
            drop(t);
        }
        drop(guard);
    }
    let sig = session::signal_received();
    // "every key released" only when every output took the release (see Service::closing_lines).
    let closing = svc.closing_lines(&finished);
    let released = !svc.keys_may_sound(&finished);
    {
        // The terminal may be gone (SIGHUP): never panic over a message.
        let mut err = std::io::stderr().lock();
        for line in &closing {
            let _ = writeln!(err, "{line}");
        }
        for r in &finished.reports {
            let _ = writeln!(err, "organ: {}", crate::text::shown(r));
        }
    }
    match result {
        Err(_) => Err(Error::Other(if released {
            "the service view stopped on an internal error; no key was left sounding (see above)".into()
        } else {
            "the service view stopped on an internal error; keys may still sound (see above)".into()
        })),
        Ok(()) => match finished.errors.into_iter().next() {
            Some(e) => Err(Error::Finish(e)),
            // 130 after Ctrl-C, 129 when the terminal was closed or lost, 128 + N for signal N.
            None => Ok(if sig != 0 { 128 + sig } else { 0 }),
        },
    }
}

/// What goes on from a wait or a pause, as the messages say it: the console's go piston, Enter
/// when there is a terminal, else a phone's Continue.
fn goes_on(go_piston: bool, terminal: bool, phones: bool) -> &'static str {
    match (go_piston, terminal, phones) {
        (true, true, _) => "the go piston or Enter",
        (true, false, false) => "the go piston",
        (true, false, true) => "the go piston or Continue on a phone",
        (false, false, true) => "Continue on a phone",
        (false, _, _) => "Enter",
    }
}

/// The remote's address, PIN and QR code on standard output (no terminal view).
fn print_remote(r: &Remote, svc: &Service) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "organ: the phone remote of \"{}\" listens on {}", svc.order().title, r.url);
    let _ = writeln!(out, "  PIN: {}", r.pin);
    let _ = writeln!(out, "  view only (no PIN): {}", r.view_url);
    for l in r.qr_lines() {
        let _ = writeln!(out, "  {l}");
    }
    let _ = writeln!(out, "organ: no terminal: Ctrl-C or SIGTERM ends the service (every key released)");
    let _ = out.flush();
}

/// The console remote's input and pistons on standard output (no terminal view).
fn print_console(c: &ConsoleRemote, svc: &Service) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "organ: the console's pistons ({}) drive \"{}\" from {} (stop: press it twice within {} s)",
        c.mapped,
        crate::input::printable(&svc.order().title),
        crate::input::printable(c.name()),
        crate::organ::REMOTE_STOP_WINDOW_MS / 1000
    );
    let _ = writeln!(out, "organ: no terminal: Ctrl-C or SIGTERM ends the service (every key released)");
    let _ = out.flush();
}

/// The service driven by the phone remote alone, until a signal (or `stop`).
pub fn serve_headless(svc: &mut Service, remote: &Remote, stop: &AtomicBool) {
    serve_without_terminal(svc, Some(remote), None, stop);
}

/// The service driven by the phones and/or the console's pistons, without a terminal, until a
/// signal (or `stop`). With the console remote, what it does and where the service is are
/// logged on standard output, one line each.
fn serve_without_terminal(
    svc: &mut Service,
    remote: Option<&Remote>,
    mut console: Option<&mut ConsoleRemote>,
    stop: &AtomicBool,
) {
    let never_actions = crossbeam_channel::never();
    let never_console = crossbeam_channel::never();
    let mut last_status = String::new();
    while !engine::STOP_ALL.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        svc.poll();
        if let Some(r) = remote {
            r.publish(&svc.remote_state());
        }
        if console.is_some() {
            let status = svc.status_line();
            if status != last_status {
                out!("organ: {status}");
                last_status = status;
            }
        }
        let actions = remote.map_or(&never_actions, |r| r.actions());
        let heard = console.as_deref().map_or(&never_console, |c| c.messages()).clone();
        crossbeam_channel::select! {
            recv(actions) -> a => if let Ok(a) = a {
                remote_action(svc, a);
                while let Ok(a) = actions.try_recv() {
                    remote_action(svc, a);
                }
            },
            recv(heard) -> r => if let (Ok(r), Some(c)) = (r, console.as_deref_mut()) {
                if let Some(said) = console_step(svc, c, &r) {
                    out!("organ: console: {said}");
                }
            },
            default(Duration::from_millis(50)) => {}
        }
    }
}

/// A message from the console: a piston's action carried out as a phone's would be. Returns
/// what was done, for the log (and shows it on the screen).
fn console_step(svc: &mut Service, c: &mut ConsoleRemote, r: &crate::input::Received) -> Option<String> {
    let step = c.heard(r)?;
    let said = match step {
        console::Step::StopArmed => {
            svc.message =
                format!("stop piston: press it again within {} s to stop", crate::organ::REMOTE_STOP_WINDOW_MS / 1000);
            svc.message.clone()
        }
        console::Step::Act(what, a) => {
            remote_action(svc, a);
            format!("{} ({})", what.describe(), svc.message)
        }
    };
    Some(said)
}

/// An action from a phone. A phone asks no questions: its stop was held to confirm, and Go
/// while another item plays is refused (the phone has a stop button).
fn remote_action(svc: &mut Service, a: Action) {
    if let Answer::AskStartOther(_) = svc.act(a) {
        svc.message = "something else is playing: stop it first".into();
    }
}

type Term = Terminal<CrosstermBackend<Stdout>>;

/// Raw mode and the alternate screen, restored when the guard is dropped.
fn open_terminal() -> Result<(TerminalGuard, Term), Error> {
    let terminal_error = |e: std::io::Error| Error::Io(format!("cannot use the terminal: {e}"));
    let raw = crate::term::RawMode::try_enable().map_err(terminal_error)?;
    let guard = TerminalGuard { _screen: crate::term::FullScreen::enter().map_err(terminal_error)?, _raw: raw };
    let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(terminal_error)?;
    Ok((guard, terminal))
}

fn run_terminal(svc: &mut Service, remote: Option<&Remote>, console: Option<&mut ConsoleRemote>, terminal: &mut Term) {
    let mut keys = Keys::default();
    let mut remote_line = String::new();
    if let Some(r) = remote {
        keys.remote = vec![format!("Open {} on a phone", r.url), format!("PIN: {}", r.pin), String::new()];
        keys.remote.extend(r.qr_lines());
        keys.remote.extend([String::new(), format!("view only (no PIN): {}", r.view_url), "any key closes".into()]);
        remote_line = format!("remote: {} · PIN {} · w: QR code", r.url, r.pin);
        keys.show_remote();
    }
    if let Some(c) = &console {
        keys.console = c.help_lines();
        let piston = format!("console pistons: {}", c.mapped);
        remote_line = if remote_line.is_empty() { piston } else { format!("{remote_line} · {piston}") };
    }
    terminal_loop(svc, (remote, console), &mut keys, &remote_line, terminal)
}

fn terminal_loop(
    svc: &mut Service,
    (remote, mut console): (Option<&Remote>, Option<&mut ConsoleRemote>),
    keys: &mut Keys,
    remote_line: &str,
    terminal: &mut Term,
) {
    let key_rx = crate::term::key_reader();
    let never = crossbeam_channel::never();
    let actions = remote.map_or(&never, |r| r.actions());
    let never_console = crossbeam_channel::never();
    let heard = console.as_deref().map_or(&never_console, |c| c.messages()).clone();
    let mut taken_back = crate::term::taken_back();
    while !keys.quit {
        if engine::STOP_ALL.load(Ordering::SeqCst) {
            // A signal (the terminal closed, say): the engine stops by itself; leave.
            break;
        }
        svc.poll();
        if let Some(r) = remote {
            r.publish(&svc.remote_state());
        }
        if crate::term::taken_back() != taken_back {
            // Back from a suspension: the whole screen is drawn again.
            taken_back = crate::term::taken_back();
            let _ = terminal.clear();
        }
        let mut screen = keys.dress(svc, svc.screen());
        screen.remote = remote_line.to_string();
        if !crate::term::suspended() && terminal.draw(|f| view::draw(f, &screen)).is_err() {
            // The terminal went away (EIO): as when it is closed (SIGHUP), a stop.
            session::terminal_lost();
            break;
        }
        crossbeam_channel::select! {
            recv(key_rx) -> k => match k {
                Ok((code, mods)) => keys.key(svc, code, mods),
                Err(_) => {
                    session::terminal_lost();
                    break;
                }
            },
            recv(actions) -> a => if let Ok(a) = a { remote_action(svc, a) },
            recv(heard) -> r => if let (Ok(r), Some(c)) = (r, console.as_deref_mut()) {
                console_step(svc, c, &r);
            },
            default(Duration::from_millis(50)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_goes_on_from_where_the_service_is_driven() {
        assert_eq!(goes_on(false, true, false), "Enter");
        assert_eq!(goes_on(false, true, true), "Enter");
        assert_eq!(goes_on(true, true, false), "the go piston or Enter");
        assert_eq!(goes_on(true, true, true), "the go piston or Enter");
        assert_eq!(goes_on(true, false, false), "the go piston");
        assert_eq!(goes_on(true, false, true), "the go piston or Continue on a phone");
        assert_eq!(goes_on(false, false, true), "Continue on a phone");
    }
}
