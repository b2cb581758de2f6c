//! [`Progress`]: one snapshot of where a performance is, for every frontend to draw — the
//! position (bar and beat, section and verse), time played and left, tempo, the registration by
//! name, the state, the link, lateness. Computed on the control thread from the plan and the
//! engine's atomics ([`Shared`]); plain data, cheap to clone, readable from any thread through a
//! [`super::SessionHandle`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::engine::{Shared, State};
use crate::midi::Micros;
use crate::plan::{SectionKind, Timeline, WaitKind};

/// What the performance is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlayState {
    /// Nothing is being played.
    #[default]
    Idle,
    /// The engine is starting.
    Starting,
    Playing,
    /// Paused by the operator (keys released; resuming strikes them again).
    Paused,
    /// At a wait point of the plan (a fermata that waits, or the end of a verse when asked):
    /// the clock stands with the keys held until the operator continues.
    Waiting(WaitKind),
    /// An output's link is down and the organ's policy is to pause.
    WaitingForLink,
    /// Stopped, finished or failed; the engine is ending.
    Ending,
}

/// A stretch of the performance as people name it: the piece, the play-over, a verse, the amen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    pub kind: SectionKind,
    /// "play-over", "verse 3 of 4", "amen", or the score's name.
    pub label: String,
    /// 1-based verse number (verses only; 0 otherwise).
    pub verse: u16,
    pub verses: u16,
    /// The last score bar it plays.
    pub last_bar: u32,
}

/// Where a performance is, for display. Everything a frontend draws comes from here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Progress {
    pub state: PlayState,
    /// What is being played (given when it was started).
    pub title: String,
    /// How many performances this session has started (a frontend sees a new one begin).
    pub performance: u64,
    /// Bar and beat of the last message sent (of the first while nothing is sent yet).
    pub bar: u32,
    pub beat: u32,
    /// The score tick of that message (for a tempo at that point).
    pub tick: u64,
    /// The section it belongs to, and the one after it.
    pub section: Option<SectionInfo>,
    pub next_section: Option<SectionInfo>,
    /// True when the plan is a hymn (play-over, verses, amen).
    pub hymn: bool,
    /// The last bar of the performance.
    pub last_bar: u32,
    /// Plan time reached, the plan's length, and the time left at the current speed.
    pub played: Micros,
    pub duration: Micros,
    pub remaining: Micros,
    /// Speed in ‰ of the plan's (1000 = as planned), and the tempo in % of the written tempo.
    pub speed: u32,
    pub tempo_percent: f64,
    /// The registration drawn, by name ([`registration_name`]).
    pub registration: String,
    /// Some output's link is down, and since how long (as the session saw it).
    pub link_down: bool,
    /// The links down only stopped answering (a write unanswered): none is known to be lost.
    pub link_not_answering: bool,
    pub link_down_for: Option<Duration>,
    /// The engine will wait at the end of the current verse.
    pub pause_at_section_end: bool,
    /// Messages sent, sent late (over 1 ms), and the worst lateness in µs.
    pub sent: u64,
    pub late: u64,
    pub worst_late_us: u64,
    /// The outputs open, by name; and why some are not (failed to open, or lost).
    pub outputs: Vec<String>,
    pub output_error: Option<String>,
}

impl Progress {
    /// `bar:beat`, as in the link messages.
    pub fn bar_beat(&self) -> String {
        format!("{}:{}", self.bar, self.beat)
    }

    /// True while a performance is under way (anything but idle).
    pub fn is_playing(&self) -> bool {
        self.state != PlayState::Idle
    }

    /// Fills in the performance fields from the plan being played and the engine's telemetry.
    pub(crate) fn read(&mut self, t: &Timeline, shared: &Shared) {
        let next = shared.next.load(Ordering::Relaxed).min(t.events.len());
        let played = Micros(shared.plan_time.load(Ordering::Relaxed)).min(t.duration);
        let last = t.events.get(next.saturating_sub(1));
        let pos = last.map_or_else(|| t.meter.position(0), |e| t.position(e));
        let speed = shared.speed.load(Ordering::Relaxed);
        let factor = f64::from(speed) / 1000.0;
        let section_index = last.map(|e| usize::from(e.section));
        let info = |i: usize| {
            t.sections.get(i).map(|s| SectionInfo {
                kind: s.kind,
                label: s.label(),
                verse: s.verse,
                verses: s.verses,
                last_bar: s.last_bar,
            })
        };
        let waiting = shared.wait.load(Ordering::Relaxed);
        self.state = match shared.state() {
            State::Starting => PlayState::Starting,
            State::Playing => PlayState::Playing,
            // Suspended: the process is about to stop (or just went on): seen as a pause.
            State::Paused | State::Suspended => PlayState::Paused,
            State::WaitingForLink => PlayState::WaitingForLink,
            State::Waiting => {
                PlayState::Waiting(t.waits.get(waiting.wrapping_sub(1)).map_or(WaitKind::SectionEnd, |w| w.kind))
            }
            State::Finished | State::Stopped | State::Failed => PlayState::Ending,
        };
        self.bar = pos.bar;
        self.beat = pos.beat;
        self.tick = last.map_or(0, |e| e.tick);
        self.section = section_index.and_then(info);
        self.next_section = section_index.and_then(|i| info(i + 1));
        self.hymn = t.is_hymn();
        self.last_bar = t.last_bar;
        self.played = played;
        self.duration = t.duration;
        self.remaining = Micros((t.duration.0.saturating_sub(played.0) as f64 / factor.max(1e-3)) as u64);
        self.speed = speed;
        self.tempo_percent = t.speed_percent * factor;
        self.registration = t.registration_at(played).map(|r| registration_name(t, &r.drawn)).unwrap_or_default();
        self.link_down = shared.link_down.load(Ordering::Relaxed);
        self.link_not_answering = self.link_down && shared.link_not_answering.load(Ordering::Relaxed);
        self.pause_at_section_end = shared.pause_at_section_end.load(Ordering::Relaxed);
        self.sent = shared.sent.load(Ordering::Relaxed);
        self.late = shared.late.load(Ordering::Relaxed);
        self.worst_late_us = shared.worst_late.load(Ordering::Relaxed);
    }
}

/// A registration for people: the preset it equals or nearly equals with what differs ("mf",
/// "mf + Sw to Gt", "mf − Gt Principal 4"), else the stops themselves when few, else a count.
pub fn registration_name(t: &Timeline, drawn: &[usize]) -> String {
    if drawn.is_empty() {
        return "no stops".into();
    }
    let name = |c: usize| t.controls[c].name.as_str();
    // The preset it is closest to, with what differs.
    let best = t
        .presets
        .iter()
        .map(|(preset, ids)| {
            let plus: Vec<usize> = drawn.iter().copied().filter(|c| !ids.contains(c)).collect();
            let minus: Vec<usize> = ids.iter().copied().filter(|c| !drawn.contains(c)).collect();
            (plus.len() + minus.len(), preset, plus, minus)
        })
        .min_by_key(|x| x.0);
    match best {
        Some((d, preset, plus, minus)) if d <= 3 => {
            let mut s = preset.clone();
            for c in plus {
                s.push_str(&format!(" + {}", name(c)));
            }
            for c in minus {
                s.push_str(&format!(" − {}", name(c)));
            }
            s
        }
        _ if drawn.len() <= 4 => drawn.iter().map(|&c| name(c)).collect::<Vec<_>>().join(", "),
        _ => format!("{} stops", drawn.len()),
    }
}

/// `m:ss.s`, the short time of the status line.
pub fn short_time(t: Micros) -> String {
    let ds = t.0 / 100_000;
    format!("{}:{:02}.{}", ds / 600, (ds / 10) % 60, ds % 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organ::Organ;
    use crate::plan::{self, PlanOptions};

    fn bwv643() -> Timeline {
        let organ = Organ::find("st-marys").unwrap();
        let score =
            crate::score::load_file(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scores/bwv643.mid")))
                .unwrap();
        let reg = crate::registration::Registration::load(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scores/bwv643.toml")),
            &organ,
        )
        .unwrap();
        plan::plan(&score, &organ, Some(&reg), &PlanOptions::default()).unwrap()
    }

    #[test]
    fn registrations_are_named_after_the_nearest_preset() {
        let t = bwv643();
        let preset = |n: &str| t.presets.iter().find(|p| p.0 == n).unwrap().1.clone();
        let control = |n: &str| t.controls.iter().position(|c| c.name == n).unwrap();
        assert_eq!(registration_name(&t, &[]), "no stops");
        assert_eq!(registration_name(&t, &preset("mf")), "mf");
        let mut more = preset("mf");
        more.push(control("Sw to Gt"));
        assert_eq!(registration_name(&t, &more), "mf + Sw to Gt");
        let fewer: Vec<usize> = preset("mf").into_iter().filter(|&c| c != control("Gt Principal 4")).collect();
        assert_eq!(registration_name(&t, &fewer), "mf − Gt Principal 4");
    }

    #[test]
    fn progress_follows_the_engine_telemetry() {
        let t = bwv643();
        let shared = Shared::default();
        let i = t.events.iter().position(|e| t.position(e).bar == 3 && t.position(e).beat == 2).unwrap();
        shared.next.store(i + 1, Ordering::Relaxed);
        shared.plan_time.store(t.events[i].t.0, Ordering::Relaxed);
        shared.speed.store(500, Ordering::Relaxed);
        let mut p = Progress::default();
        p.read(&t, &shared);
        assert_eq!(p.bar_beat(), "3:2");
        assert_eq!(p.state, PlayState::Starting);
        assert_eq!(p.played, t.events[i].t);
        assert_eq!(p.remaining.0, (t.duration.0 - t.events[i].t.0) * 2);
        assert_eq!(p.tempo_percent, t.speed_percent / 2.0);
        assert!(!p.hymn && p.section.as_ref().unwrap().kind == SectionKind::Piece);
        assert!(!p.registration.is_empty());
        assert_eq!(short_time(Micros(83_456_000)), "1:23.4");
    }
}
