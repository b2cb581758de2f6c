//! The terminal, for the terminal frontends (`organ play`'s status line, `organ service`'s
//! view): raw mode and the full screen, restored on drop, given back to the shell while the
//! process is suspended (Ctrl-Z) and taken again when it goes on; keys read on a thread of their
//! own. Control thread, and the signal thread (for suspension, resumption and the loss of the
//! terminal: plain atomics and terminal calls, never a lock a frontend holds); nothing here
//! knows what a key means.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

/// Raw mode is on (a [`RawMode`] lives).
static RAW: AtomicBool = AtomicBool::new(false);
/// The full-screen view is on (a [`FullScreen`] lives).
static FULL_SCREEN: AtomicBool = AtomicBool::new(false);
/// The process is suspended, or about to be: frontends draw nothing.
static SUSPENDED: AtomicBool = AtomicBool::new(false);
/// The terminal went away (SIGHUP): nothing more is read from it.
static LOST: AtomicBool = AtomicBool::new(false);
/// Counts the times the terminal was taken back after a suspension: a full-screen frontend
/// redraws everything when it changes.
static TAKEN_BACK: AtomicU64 = AtomicU64::new(0);

/// Raw terminal mode for single-key commands; restored on drop (and by the panic hook).
pub struct RawMode;

impl RawMode {
    /// Raw mode, or `None` where the terminal refuses it.
    pub fn enable() -> Option<RawMode> {
        RawMode::try_enable().ok()
    }

    /// Raw mode.
    ///
    /// # Errors
    /// The terminal refuses it.
    pub fn try_enable() -> std::io::Result<RawMode> {
        crossterm::terminal::enable_raw_mode()?;
        RAW.store(true, Ordering::SeqCst);
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        RAW.store(false, Ordering::SeqCst);
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// The alternate screen with the cursor hidden (`organ service`'s view); left on drop.
pub struct FullScreen;

impl FullScreen {
    /// Enters the alternate screen.
    ///
    /// # Errors
    /// The terminal refuses.
    pub fn enter() -> std::io::Result<FullScreen> {
        crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen, crossterm::cursor::Hide)?;
        FULL_SCREEN.store(true, Ordering::SeqCst);
        Ok(FullScreen)
    }
}

impl Drop for FullScreen {
    fn drop(&mut self) {
        FULL_SCREEN.store(false, Ordering::SeqCst);
        let _ =
            crossterm::execute!(std::io::stdout(), crossterm::terminal::LeaveAlternateScreen, crossterm::cursor::Show);
    }
}

/// Whether this process may change the terminal now: it is in the terminal's foreground
/// process group. (A background process that changes it is stopped by SIGTTOU, and one that
/// handles SIGTTOU would retry for ever.)
pub fn in_foreground() -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    // SAFETY: plain calls on the standard input's descriptor and the calling process.
    unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp() }
}

/// Before the process stops (job control): the shell gets its terminal back as it was (raw mode
/// off, the normal screen) and frontends stop drawing.
pub fn give_back() {
    SUSPENDED.store(true, Ordering::SeqCst);
    if !in_foreground() {
        return;
    }
    if FULL_SCREEN.load(Ordering::SeqCst) {
        let _ =
            crossterm::execute!(std::io::stdout(), crossterm::terminal::LeaveAlternateScreen, crossterm::cursor::Show);
    }
    if RAW.load(Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// When the process goes on (SIGCONT, after a suspension or a SIGSTOP): raw mode and the full
/// screen as the frontends had them (the shell may have changed the terminal meanwhile), and a
/// full redraw.
pub fn take_back() {
    if in_foreground() {
        if RAW.load(Ordering::SeqCst) {
            // crossterm applies raw mode only when it believes it off.
            let _ = crossterm::terminal::disable_raw_mode();
            let _ = crossterm::terminal::enable_raw_mode();
        }
        if FULL_SCREEN.load(Ordering::SeqCst) {
            let _ = crossterm::execute!(
                std::io::stdout(),
                crossterm::terminal::EnterAlternateScreen,
                crossterm::cursor::Hide
            );
        }
    }
    TAKEN_BACK.fetch_add(1, Ordering::SeqCst);
    SUSPENDED.store(false, Ordering::SeqCst);
}

/// Whether frontends should draw nothing now (the process is being suspended).
pub fn suspended() -> bool {
    SUSPENDED.load(Ordering::SeqCst)
}

/// How many times the terminal was taken back ([`take_back`]): redraw everything when it changes.
pub fn taken_back() -> u64 {
    TAKEN_BACK.load(Ordering::SeqCst)
}

/// The terminal went away (SIGHUP, or it fails): the key reader stops reading it. Returns
/// whether it was known lost already.
pub fn lose() -> bool {
    LOST.swap(true, Ordering::SeqCst)
}

/// Whether the terminal is known gone ([`lose`], or reading it failed).
pub fn is_lost() -> bool {
    LOST.load(Ordering::SeqCst)
}

/// Puts the terminal back as it was (raw mode off, the normal screen), whatever lives: for a
/// process about to end without unwinding.
pub fn restore() {
    if FULL_SCREEN.load(Ordering::SeqCst) {
        let _ =
            crossterm::execute!(std::io::stdout(), crossterm::terminal::LeaveAlternateScreen, crossterm::cursor::Show);
    }
    let _ = crossterm::terminal::disable_raw_mode();
}

/// A key pressed (releases are left out).
pub type Key = (KeyCode, KeyModifiers);

/// True for a key with no Ctrl, Alt or Super: a NUL byte from a terminal reads as Ctrl+Space
/// and must not act as a space.
pub fn plain(mods: KeyModifiers) -> bool {
    !mods.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SUPER)
}

/// Reads keys on a thread of its own until the receiver is dropped or the terminal is gone
/// (SIGHUP, or an error reading it). It goes on reading while a performance stops, so that a
/// second Ctrl-C can hurry the stop. crossterm's `poll` can spin without returning once the
/// terminal is gone, so a control loop never calls it: it waits on this channel with a timeout
/// and so always gets to check the stop flag.
pub fn key_reader() -> crossbeam_channel::Receiver<Key> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let _ = std::thread::Builder::new().name("organ-keys".into()).spawn(move || {
        while !LOST.load(Ordering::SeqCst) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => {
                    LOST.store(true, Ordering::SeqCst);
                    return;
                }
            }
            match event::read() {
                Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                    if tx.send((k.code, k.modifiers)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    LOST.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    });
    rx
}
