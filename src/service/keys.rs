//! The terminal's keys: what each key does to the [`Service`], and the questions asked before
//! doing something that cannot be undone (stop, start another item while one plays, quit).
//! Presentation clickers and foot switches send PageDown/PageUp/Right/Left/B/period: they go
//! on, choose, and hold. Control thread.

use crossterm::event::{KeyCode, KeyModifiers};

use super::app::{Action, Answer, Service};
use super::view::{Overlay, Screen, Tone};

/// The help line (the full list is behind `?`).
pub const HELP: &str =
    "Enter start/continue · s stop · x panic · p pause after verse · ↑↓ choose · +/- tempo · v verse · ? keys · q quit";

/// The help line of a small terminal.
pub const SHORT_HELP: &str = "? keys · Enter start/continue · s stop · q quit";

/// Every key, for `?`.
pub const KEYS: &[&str] = &[
    "Enter, space     start the chosen item; go on from a wait or a pause",
    "                 (another item playing: asks first)",
    "s, Esc           stop — press again to confirm",
    "x                panic: stop now, every key released, stops cancelled",
    "p                pause at the end of this verse (again: don't)",
    "v then 1-9       start the chosen hymn at that verse",
    "↑ ↓              choose an item",
    "+ -              tempo, in 5 % steps (live while playing)",
    "[ ]              transpose the next item",
    "r                registration of the next verse (cycles the presets)",
    "o                reopen a lost output",
    "w                the phone remote: address, PIN, QR code",
    "q                quit (asks first while playing)",
    "",
    "Clickers and foot switches:",
    "PageDown, →      go on (start the chosen item, continue from a wait)",
    "PageUp, ←        choose the item before",
    "B, .             hold: pause at the end of this verse (again: don't)",
    "",
    "any key closes this help",
];

/// A question waiting for its answer, or an overlay waiting for any key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ask {
    Quit,
    Stop,
    StartOther(usize),
    Verse,
    Help,
    Remote,
}

/// The key state of the terminal frontend.
#[derive(Debug, Default)]
pub struct Keys {
    ask: Option<Ask>,
    pub quit: bool,
    /// Lines of the remote's overlay (address, PIN, QR code), when the remote is on.
    pub remote: Vec<String>,
    /// The console's pistons and what each does, for the help (`--from`).
    pub console: Vec<String>,
}

impl Keys {
    /// Shows the remote's overlay now (at start).
    pub fn show_remote(&mut self) {
        if !self.remote.is_empty() {
            self.ask = Some(Ask::Remote);
        }
    }

    /// One key.
    pub fn key(&mut self, svc: &mut Service, code: KeyCode, mods: KeyModifiers) {
        if code == KeyCode::Char('c') && mods.contains(KeyModifiers::CONTROL) {
            // As SIGINT (raw mode sends none): the service stops and ends with exit status 130;
            // a second Ctrl-C hurries the stop.
            crate::session::interrupt();
            svc.act(Action::Stop);
            self.quit = true;
            return;
        }
        if code == KeyCode::Char('z') && mods.contains(KeyModifiers::CONTROL) {
            // As SIGTSTP: keys released and stops drawn off, then the process stops until `fg`.
            crate::session::suspend_key();
            return;
        }
        // Plain keys only: a stray NUL byte reads as Ctrl+Space and must not start a hymn.
        if !crate::term::plain(mods) {
            return;
        }
        if let Some(ask) = self.ask.take() {
            self.answer(svc, ask, code);
            return;
        }
        let act = |svc: &mut Service, a| {
            svc.act(a);
        };
        match code {
            KeyCode::Enter | KeyCode::Char(' ') | KeyCode::PageDown | KeyCode::Right => {
                if let Answer::AskStartOther(i) = svc.act(Action::Go) {
                    self.ask = Some(Ask::StartOther(i));
                }
            }
            KeyCode::Char('s') | KeyCode::Char('S') | KeyCode::Esc if svc.playing_item().is_some() => {
                self.ask = Some(Ask::Stop);
            }
            KeyCode::Char('x') | KeyCode::Char('X') => act(svc, Action::Panic),
            KeyCode::Char('p') | KeyCode::Char('P') | KeyCode::Char('b') | KeyCode::Char('B') | KeyCode::Char('.') => {
                act(svc, Action::PauseAfterVerse(None))
            }
            KeyCode::Up | KeyCode::PageUp | KeyCode::Left => act(svc, Action::SelectBy(-1)),
            KeyCode::Down => act(svc, Action::SelectBy(1)),
            KeyCode::Char('+') | KeyCode::Char('=') => act(svc, Action::Tempo(1)),
            KeyCode::Char('-') | KeyCode::Char('_') => act(svc, Action::Tempo(-1)),
            KeyCode::Char('[') => act(svc, Action::Transpose(-1)),
            KeyCode::Char(']') => act(svc, Action::Transpose(1)),
            KeyCode::Char('r') | KeyCode::Char('R') => act(svc, Action::CycleRegistration),
            KeyCode::Char('o') | KeyCode::Char('O') => act(svc, Action::ReopenOutputs),
            KeyCode::Char('v') | KeyCode::Char('V') => self.ask = Some(Ask::Verse),
            KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => self.ask = Some(Ask::Help),
            KeyCode::Char('w') | KeyCode::Char('W') => self.show_remote(),
            KeyCode::Char('q') | KeyCode::Char('Q') => {
                if svc.playing_item().is_some() {
                    self.ask = Some(Ask::Quit);
                } else {
                    self.quit = true;
                }
            }
            _ => {}
        }
    }

    fn answer(&mut self, svc: &mut Service, ask: Ask, code: KeyCode) {
        let yes = matches!(code, KeyCode::Char('y') | KeyCode::Char('Y'));
        match ask {
            Ask::Quit if yes => {
                svc.act(Action::Stop);
                self.quit = true;
            }
            Ask::Stop if matches!(code, KeyCode::Char('s') | KeyCode::Char('S') | KeyCode::Esc) || yes => {
                svc.act(Action::Stop);
            }
            // Panic never waits for a question.
            Ask::Stop | Ask::Quit | Ask::StartOther(_) if matches!(code, KeyCode::Char('x') | KeyCode::Char('X')) => {
                svc.act(Action::Panic);
            }
            Ask::StartOther(i) if yes => svc.stop_then_start(i, None),
            Ask::Verse => {
                if let KeyCode::Char(c @ '1'..='9') = code {
                    let verse = c.to_digit(10).map(|d| d as u16);
                    let item = svc.selected();
                    if svc.playing_item().is_some() {
                        svc.stop_then_start(item, verse);
                    } else {
                        svc.act(Action::Start { item, verse });
                    }
                }
            }
            Ask::Help | Ask::Remote => {}
            Ask::Quit | Ask::Stop | Ask::StartOther(_) => {}
        }
    }

    /// The screen with the question, the help and the overlays on top.
    pub fn dress(&self, svc: &Service, mut s: Screen) -> Screen {
        s.help = HELP.into();
        s.short_help = SHORT_HELP.into();
        let title = |i: usize| format!("{}. {}", i + 1, svc.order().items[i].title);
        let question = match &self.ask {
            Some(Ask::Quit) => Some("Music is playing. Stop it and quit? y / n".to_string()),
            Some(Ask::Stop) => Some("Stop now? s again stops (x: panic) — any other key keeps playing".into()),
            Some(Ask::StartOther(i)) => Some(format!("Music is playing. Stop it and start {}? y / n", title(*i))),
            Some(Ask::Verse) => {
                let i = svc.selected();
                let verses = svc.order().items[i].verses();
                Some(if verses == 0 {
                    format!("{} is played once: no verses (any key)", title(i))
                } else {
                    format!("Start {} at verse: 1-{} (any other key: no)", title(i), verses.min(9))
                })
            }
            _ => None,
        };
        if let Some(q) = question {
            s.tone = Tone::Attention;
            s.state = q;
        }
        s.overlay = match self.ask {
            Some(Ask::Help) => {
                let mut lines: Vec<String> = KEYS.iter().map(|l| l.to_string()).collect();
                if !self.console.is_empty() {
                    // Before the closing "", "any key closes this help".
                    let at = lines.len() - 2;
                    lines.splice(at..at, std::iter::once(String::new()).chain(self.console.iter().cloned()));
                }
                Some(Overlay { title: "Keys".into(), lines, inverse: false })
            }
            Some(Ask::Remote) => {
                Some(Overlay { title: "Phone remote".into(), lines: self.remote.clone(), inverse: true })
            }
            _ => None,
        };
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::app::tests::test_service;

    fn press(k: &mut Keys, s: &mut Service, code: KeyCode) {
        k.key(s, code, KeyModifiers::NONE);
    }

    #[test]
    fn stop_asks_for_a_second_key_and_panic_does_not() {
        let mut s = test_service();
        let mut k = Keys::default();
        press(&mut k, &mut s, KeyCode::Enter);
        assert_eq!(s.playing_item(), Some(0));
        press(&mut k, &mut s, KeyCode::Char('s'));
        assert!(k.dress(&s, s.screen()).state.starts_with("Stop now?"));
        press(&mut k, &mut s, KeyCode::Char('n'));
        s.poll();
        assert_eq!(s.playing_item(), Some(0), "any other key keeps playing");
        press(&mut k, &mut s, KeyCode::Esc);
        press(&mut k, &mut s, KeyCode::Esc);
        assert_eq!(s.message(), "stopped: every key released");
        s.stop_and_join();
        press(&mut k, &mut s, KeyCode::Char('x'));
        assert!(s.message().starts_with("PANIC"), "{}", s.message());
        // A NUL byte from the terminal (read as Ctrl+Space) starts nothing.
        k.key(&mut s, KeyCode::Char(' '), KeyModifiers::CONTROL);
        assert_eq!(s.playing_item(), None);
    }

    #[test]
    fn clicker_keys_choose_go_on_and_hold() {
        let mut s = test_service();
        let mut k = Keys::default();
        press(&mut k, &mut s, KeyCode::Down);
        press(&mut k, &mut s, KeyCode::PageUp);
        assert_eq!(s.selected(), 0);
        press(&mut k, &mut s, KeyCode::PageDown);
        assert_eq!(s.playing_item(), Some(0));
        press(&mut k, &mut s, KeyCode::Char('b'));
        assert!(s.message().contains("will pause at the end"), "{}", s.message());
        let start = std::time::Instant::now();
        while !s.session.progress().pause_at_section_end {
            assert!(start.elapsed() < std::time::Duration::from_secs(5), "the engine took the hold");
            std::thread::sleep(std::time::Duration::from_millis(5));
            s.poll();
        }
        press(&mut k, &mut s, KeyCode::Char('.'));
        assert!(s.message().contains("will not pause"), "{}", s.message());
        press(&mut k, &mut s, KeyCode::Char('q'));
        press(&mut k, &mut s, KeyCode::Char('y'));
        assert!(k.quit);
        s.stop_and_join();
    }

    #[test]
    fn help_lists_every_key_and_any_key_closes_it() {
        let mut s = test_service();
        let mut k = Keys::default();
        press(&mut k, &mut s, KeyCode::Char('?'));
        let o = k.dress(&s, s.screen()).overlay.unwrap();
        for key in ["Enter", "s, Esc", "x ", "PageDown", "PageUp", "B, .", "v then", "q "] {
            assert!(o.lines.iter().any(|l| l.starts_with(key)), "{key} in the help");
        }
        press(&mut k, &mut s, KeyCode::Enter);
        assert!(k.dress(&s, s.screen()).overlay.is_none());
        assert_eq!(s.playing_item(), None, "the key that closes the help does nothing else");
        assert!(!o.lines.iter().any(|l| l.contains("piston")), "no console pistons without --from");
    }

    #[test]
    fn help_lists_the_console_pistons_with_from() {
        let mut s = test_service();
        let mut k = Keys {
            console: vec!["Console pistons (--from):".into(), "go               …".into()],
            ..Keys::default()
        };
        press(&mut k, &mut s, KeyCode::Char('?'));
        let lines = k.dress(&s, s.screen()).overlay.unwrap().lines;
        let at = lines.iter().position(|l| l == "Console pistons (--from):").expect("the pistons in the help");
        assert_eq!(lines[at - 1], "", "a blank line before them");
        assert_eq!(lines[at + 1], "go               …");
        assert_eq!(&lines[at + 2..], ["", "any key closes this help"], "the closing line stays last");
    }
}
