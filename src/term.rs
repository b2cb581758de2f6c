//! The terminal, for the terminal frontends (`organ play`'s status line, `organ service`'s
//! view): raw mode that is restored on drop, and keys read on a thread of their own. Control
//! thread; nothing here knows what a key means.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::engine;

/// Raw terminal mode for single-key commands; restored on drop (and by the panic hook).
pub struct RawMode;

impl RawMode {
    /// Raw mode, or `None` where the terminal refuses it.
    pub fn enable() -> Option<RawMode> {
        crossterm::terminal::enable_raw_mode().ok().map(|()| RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// A key pressed (releases are left out).
pub type Key = (KeyCode, KeyModifiers);

/// True for a key with no Ctrl, Alt or Super: a NUL byte from a terminal reads as Ctrl+Space
/// and must not act as a space.
pub fn plain(mods: KeyModifiers) -> bool {
    !mods.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SUPER)
}

/// Reads keys on a thread of its own until the receiver is dropped, the terminal is gone or a
/// signal asked everything to stop. crossterm's `poll` can spin without returning once the
/// terminal is gone (SIGHUP), so a control loop never calls it: it waits on this channel with
/// a timeout and so always gets to check the stop flag.
pub fn key_reader() -> crossbeam_channel::Receiver<Key> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let _ = std::thread::Builder::new().name("organ-keys".into()).spawn(move || {
        while !engine::STOP_ALL.load(Ordering::SeqCst) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            match event::read() {
                Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                    if tx.send((k.code, k.modifiers)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    rx
}
