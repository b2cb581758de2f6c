//! Telling the user about link losses while `organ play` runs (wireless outputs). Runs on the
//! control thread: it only reads the engine's atomics ([`Shared::link_down`], the position) each
//! time the control loop turns, so nothing is added to the real-time thread.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::engine::Shared;
use crate::organ::DisconnectPolicy;
use crate::plan::Timeline;

/// Follows [`Shared::link_down`] and turns its changes into lines for the user.
#[derive(Debug)]
pub struct LinkWatch {
    policy: DisconnectPolicy,
    /// Since when the link has been down, and the position then.
    down: Option<(Instant, String)>,
}

/// Where the engine is, as `bar:beat` of the last message sent.
fn position(t: &Timeline, shared: &Shared) -> String {
    let next = shared.next.load(Ordering::Relaxed).min(t.events.len());
    let pos = match next {
        0 => t.meter.position(t.events.first().map_or(0, |e| e.tick)),
        n => t.position(&t.events[n - 1]),
    };
    format!("{}:{}", pos.bar, pos.beat)
}

impl LinkWatch {
    pub fn new(policy: DisconnectPolicy) -> LinkWatch {
        LinkWatch { policy, down: None }
    }

    /// Looks at the link; returns a line to print when it was lost or came back.
    pub fn poll(&mut self, t: &Timeline, shared: &Shared) -> Option<String> {
        let down = shared.link_down.load(Ordering::Relaxed);
        match (&self.down, down) {
            (None, true) => {
                let at = position(t, shared);
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
                    DisconnectPolicy::Continue => format!("playing on at bar {}", position(t, shared)),
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
    use super::*;
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
        // Somewhere in bar 3.
        let i = t.events.iter().position(|e| t.position(e).bar == 3 && t.position(e).beat == 2).unwrap();
        shared.next.store(i + 1, Ordering::Relaxed);
        let mut w = LinkWatch::new(DisconnectPolicy::Pause);
        assert_eq!(w.poll(&t, &shared), None);
        shared.link_down.store(true, Ordering::Relaxed);
        let lost = w.poll(&t, &shared).unwrap();
        assert_eq!(lost, "link lost at bar 3:2; reconnecting; paused until it comes back (on_disconnect = \"pause\")");
        assert_eq!(w.poll(&t, &shared), None, "once");
        assert!(w.down_for().is_some());
        shared.link_down.store(false, Ordering::Relaxed);
        let back = w.poll(&t, &shared).unwrap();
        assert!(back.starts_with("link back after 0.0 s: keys released, registration restored; resuming at bar 3:2"));
        assert_eq!(w.poll(&t, &shared), None);
        assert_eq!(w.down_for(), None);

        let mut w = LinkWatch::new(DisconnectPolicy::Continue);
        shared.link_down.store(true, Ordering::Relaxed);
        assert!(
            w.poll(&t, &shared)
                .unwrap()
                .ends_with("playing on; what falls in the gap is dropped (on_disconnect = \"continue\")")
        );
        shared.next.store(t.events.len(), Ordering::Relaxed);
        shared.link_down.store(false, Ordering::Relaxed);
        let back = w.poll(&t, &shared).unwrap();
        assert!(back.ends_with(&format!("playing on at bar {}", position(&t, &shared))), "{back}");
    }
}
