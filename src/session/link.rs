//! Telling the user about link losses (wireless outputs, which reconnect by themselves), and a
//! wireless link that stopped answering (a write unanswered: in doubt, a state of down). A link
//! gone for good (a JACK server that shut down, [`crate::output::Link::Gone`]) is no link loss:
//! the engine treats that output as failed and the performance ends ([`super::Ending`]). Runs on
//! the control thread: it only follows [`Progress::link_down`], [`Progress::link_not_answering`]
//! and the position each time the session is polled, so nothing is added to the real-time
//! thread.

use std::time::{Duration, Instant};

use super::Progress;
use crate::organ::DisconnectPolicy;

/// Follows the link and turns its changes into lines for the user.
#[derive(Debug)]
pub struct LinkWatch {
    policy: DisconnectPolicy,
    /// Since when the link has been down, the position then, and whether it only stopped
    /// answering (not known to be lost).
    down: Option<(Instant, String, bool)>,
}

impl LinkWatch {
    pub fn new(policy: DisconnectPolicy) -> LinkWatch {
        LinkWatch { policy, down: None }
    }

    /// Looks at the link; returns a line to print when it was lost, stopped answering, was
    /// found lost after not answering, or came back.
    pub fn poll(&mut self, p: &Progress) -> Option<String> {
        match (&self.down, p.link_down) {
            (None, true) => {
                let at = p.bar_beat();
                let line = if p.link_not_answering {
                    format!("link stopped answering at bar {at}; waiting for it; {}", self.policy_words())
                } else {
                    self.lost_line(&at)
                };
                self.down = Some((Instant::now(), at, p.link_not_answering));
                Some(line)
            }
            // It stopped answering, and now it is known to be lost: say so (the time down runs
            // on from when it stopped answering).
            (Some((_, _, true)), true) if !p.link_not_answering => {
                let line = self.lost_line(&p.bar_beat());
                if let Some(d) = &mut self.down {
                    d.2 = false;
                }
                Some(line)
            }
            (Some((since, at, _)), false) => {
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

    /// What the policy does while the link is down.
    fn policy_words(&self) -> &'static str {
        match self.policy {
            DisconnectPolicy::Pause => "paused until it comes back (on_disconnect = \"pause\")",
            DisconnectPolicy::Continue => "playing on; what falls in the gap is dropped (on_disconnect = \"continue\")",
        }
    }

    /// A link lost that reconnects by itself (Bluetooth LE).
    fn lost_line(&self, at: &str) -> String {
        format!("link lost at bar {at}; reconnecting; {}", self.policy_words())
    }

    /// How long the link has been down, for the status line.
    pub fn down_for(&self) -> Option<Duration> {
        self.down.as_ref().map(|(since, ..)| since.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::engine::Shared;
    use crate::organ::Organ;
    use crate::plan::{self, PlanOptions, Timeline};

    /// The shipped piece's plan, and the engine's telemetry somewhere in bar 3 (3:2).
    fn at_bar_3() -> (Timeline, Shared) {
        let organ = Organ::find("st-marys").unwrap();
        let score =
            crate::score::load_file(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scores/bwv643.mid")))
                .unwrap();
        let t = plan::plan(&score, &organ, None, &PlanOptions::default()).unwrap();
        let shared = Shared::default();
        let i = t.events.iter().position(|e| t.position(e).bar == 3 && t.position(e).beat == 2).unwrap();
        shared.next.store(i + 1, Ordering::Relaxed);
        (t, shared)
    }

    #[test]
    fn reports_the_loss_and_the_return_once_each() {
        let (t, shared) = at_bar_3();
        let progress = |shared: &Shared| {
            let mut p = Progress::default();
            p.read(&t, shared);
            p
        };
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

    #[test]
    fn a_link_that_stops_answering_is_said_so_then_lost_or_back() {
        let (t, shared) = at_bar_3();
        let progress = |shared: &Shared| {
            let mut p = Progress::default();
            p.read(&t, shared);
            p
        };
        // Not answering, then answering again.
        let mut w = LinkWatch::new(DisconnectPolicy::Pause);
        shared.link_down.store(true, Ordering::Relaxed);
        shared.link_not_answering.store(true, Ordering::Relaxed);
        assert!(progress(&shared).link_not_answering);
        assert_eq!(
            w.poll(&progress(&shared)).unwrap(),
            "link stopped answering at bar 3:2; waiting for it; paused until it comes back (on_disconnect = \"pause\")"
        );
        assert_eq!(w.poll(&progress(&shared)), None, "once");
        shared.link_down.store(false, Ordering::Relaxed);
        let back = w.poll(&progress(&shared)).unwrap();
        assert!(back.starts_with("link back after 0.0 s: keys released, registration restored; resuming at bar 3:2"));
        // Not answering, then found lost: said once more, as a loss; then back once.
        let mut w = LinkWatch::new(DisconnectPolicy::Continue);
        shared.link_down.store(true, Ordering::Relaxed);
        let first = w.poll(&progress(&shared)).unwrap();
        assert!(
            first.starts_with("link stopped answering at bar 3:2; waiting for it; playing on; what falls"),
            "{first}"
        );
        shared.link_not_answering.store(false, Ordering::Relaxed);
        let lost = w.poll(&progress(&shared)).unwrap();
        assert!(lost.starts_with("link lost at bar 3:2; reconnecting; playing on;"), "{lost}");
        assert_eq!(w.poll(&progress(&shared)), None, "once");
        // A stale flag is not read without the link down.
        shared.link_not_answering.store(true, Ordering::Relaxed);
        shared.link_down.store(false, Ordering::Relaxed);
        assert!(!progress(&shared).link_not_answering);
        assert!(w.poll(&progress(&shared)).unwrap().starts_with("link back after "));
        assert_eq!(w.poll(&progress(&shared)), None);
    }
}
