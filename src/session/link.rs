//! Telling the user about link losses (wireless outputs, which reconnect by themselves). A link
//! gone for good (a JACK server that shut down, [`crate::output::Link::Gone`]) is no link loss:
//! the engine treats that output as failed and the performance ends ([`super::Ending`]). Runs on
//! the control thread: it only follows [`Progress::link_down`] and the position each time the
//! session is polled, so nothing is added to the real-time thread.

use std::time::{Duration, Instant};

use super::Progress;
use crate::organ::DisconnectPolicy;

/// Follows the link and turns its changes into lines for the user.
#[derive(Debug)]
pub struct LinkWatch {
    policy: DisconnectPolicy,
    /// Since when the link has been down, and the position then.
    down: Option<(Instant, String)>,
}

impl LinkWatch {
    pub fn new(policy: DisconnectPolicy) -> LinkWatch {
        LinkWatch { policy, down: None }
    }

    /// Looks at the link; returns a line to print when it was lost or came back.
    pub fn poll(&mut self, p: &Progress) -> Option<String> {
        match (&self.down, p.link_down) {
            (None, true) => {
                let at = p.bar_beat();
                let what = match self.policy {
                    DisconnectPolicy::Pause => "paused until it comes back (on_disconnect = \"pause\")",
                    DisconnectPolicy::Continue => {
                        "playing on; what falls in the gap is dropped (on_disconnect = \"continue\")"
                    }
                };
                let line = format!("link lost at bar {at}; reconnecting; {what}");
                self.down = Some((Instant::now(), at));
                Some(line)
            }
            (Some((since, at)), false) => {
                let after = since.elapsed();
                let then = match self.policy {
                    DisconnectPolicy::Pause => format!("resuming at bar {at}"),
                    DisconnectPolicy::Continue => format!("playing on at bar {}", p.bar_beat()),
                };
                self.down = None;
                Some(format!(
                    "link back after {:.1} s: keys released, registration restored; {then}",
                    after.as_secs_f64()
                ))
            }
            _ => None,
        }
    }

    /// How long the link has been down, for the status line.
    pub fn down_for(&self) -> Option<Duration> {
        self.down.as_ref().map(|(since, _)| since.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::engine::Shared;
    use crate::organ::Organ;
    use crate::plan::{self, PlanOptions};

    #[test]
    fn reports_the_loss_and_the_return_once_each() {
        let organ = Organ::find("st-marys").unwrap();
        let score =
            crate::score::load_file(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scores/bwv643.mid")))
                .unwrap();
        let t = plan::plan(&score, &organ, None, &PlanOptions::default()).unwrap();
        let shared = Shared::default();
        let progress = |shared: &Shared| {
            let mut p = Progress::default();
            p.read(&t, shared);
            p
        };
        // Somewhere in bar 3.
        let i = t.events.iter().position(|e| t.position(e).bar == 3 && t.position(e).beat == 2).unwrap();
        shared.next.store(i + 1, Ordering::Relaxed);
        let mut w = LinkWatch::new(DisconnectPolicy::Pause);
        assert_eq!(w.poll(&progress(&shared)), None);
        shared.link_down.store(true, Ordering::Relaxed);
        let lost = w.poll(&progress(&shared)).unwrap();
        assert_eq!(lost, "link lost at bar 3:2; reconnecting; paused until it comes back (on_disconnect = \"pause\")");
        assert_eq!(w.poll(&progress(&shared)), None, "once");
        assert!(w.down_for().is_some());
        shared.link_down.store(false, Ordering::Relaxed);
        let back = w.poll(&progress(&shared)).unwrap();
        assert!(back.starts_with("link back after 0.0 s: keys released, registration restored; resuming at bar 3:2"));
        assert_eq!(w.poll(&progress(&shared)), None);
        assert_eq!(w.down_for(), None);

        let mut w = LinkWatch::new(DisconnectPolicy::Continue);
        shared.link_down.store(true, Ordering::Relaxed);
        assert!(
            w.poll(&progress(&shared))
                .unwrap()
                .ends_with("playing on; what falls in the gap is dropped (on_disconnect = \"continue\")")
        );
        shared.next.store(t.events.len(), Ordering::Relaxed);
        shared.link_down.store(false, Ordering::Relaxed);
        let back = w.poll(&progress(&shared)).unwrap();
        assert!(back.ends_with(&format!("playing on at bar {}", progress(&shared).bar_beat())), "{back}");
    }
}
