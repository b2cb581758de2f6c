//! What the service shows, as plain data: the terminal's [`Screen`] and the phone remote's
//! [`RemoteState`], both made from the same [`Service`] so that they say the same thing.
//! Pure (reads the service and its session's `Progress`); control thread.

use serde::Serialize;

use crate::plan::{SectionKind, WaitKind};
use crate::score::tempo::bpm;
use crate::session::{PlayState, Progress, short_time};

use super::app::{Played, Playing, Service};
use super::view::{Row, Screen, Tone};

impl Service {
    /// The terminal view's screen (without the prompt and help, which the keys add).
    pub(super) fn screen(&self) -> Screen {
        let order = &self.order;
        let organ = &order.items[self.playing.as_ref().map_or(self.selected, |p| p.item)].organ;
        let specs: Vec<String> = self.session.specs().iter().map(|s| s.to_string()).collect();
        let mut s = Screen {
            header: format!("{} — {} → {}", order.title, organ.name, specs.join(", ")),
            rows: self.rows(),
            selected: self.selected,
            message: self.message.clone(),
            ..Screen::default()
        };
        match &self.playing {
            None => {
                let it = &order.items[self.selected];
                s.now = vec!["nothing is playing".into()];
                s.state = match self.session.output_error() {
                    Some(e) => {
                        s.tone = Tone::Alarm;
                        format!("OUTPUT NOT AVAILABLE: {e} — o retries")
                    }
                    None => "READY".into(),
                };
                s.next = vec![format!("Enter starts {}. {} ({})", self.selected + 1, it.title, it.summary())];
                if let Some(n) = &it.note {
                    s.next.push(format!("note: {n}"));
                }
            }
            Some(p) => {
                let progress = self.session.progress();
                s.now = self.now_playing(p, progress);
                (s.tone, s.state) = state_line(progress, &self.goes_on);
                s.next = self.what_next(p, progress);
            }
        }
        s
    }

    /// How long item `i` lasts at the tempo chosen for it, `m:ss`.
    fn length_of(&self, i: usize) -> String {
        let us = self.order.items[i].duration.0 as f64 * 1000.0 / f64::from(self.speed[i].max(1));
        let s = (us / 1e6).round() as u64;
        format!("{}:{:02}", s / 60, s % 60)
    }

    /// The order of service, with each item's changes.
    fn rows(&self) -> Vec<Row> {
        self.order
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let mut changes = Vec::new();
                if self.speed[i] != 1000 {
                    changes.push(format!("tempo {}%", self.speed[i] / 10));
                }
                if self.transpose[i] != it.transpose {
                    changes.push(format!("transpose {:+}", self.transpose[i]));
                }
                if let Some(p) = self.preset[i] {
                    changes.push(format!("preset {}", it.organ.presets[p].name));
                }
                if let Played::Stopped(at) = &self.played[i] {
                    changes.push(format!("stopped at {at}"));
                }
                Row {
                    title: it.title.clone(),
                    summary: format!("{}, {}", it.summary(), self.length_of(i)),
                    changes: changes.join(", "),
                    playing: self.playing.as_ref().is_some_and(|p| p.item == i),
                    done: self.played[i] == Played::Finished,
                    stopped: matches!(self.played[i], Played::Stopped(_)),
                }
            })
            .collect()
    }

    /// The "Now playing" lines: what, where, tempo, registration.
    fn now_playing(&self, p: &Playing, progress: &Progress) -> Vec<String> {
        let it = &self.order.items[p.item];
        let quarter = bpm(it.score.tempo.us_per_quarter_at(progress.tick)) * progress.tempo_percent / 100.0;
        vec![
            format!("{}. {}", p.item + 1, it.title),
            format!("{}    {}", where_(progress), times(progress)),
            format!(
                "tempo {:.0}% (♩ = {:.0})    registration: {}",
                progress.tempo_percent, quarter, progress.registration
            ),
        ]
    }

    /// What comes next: the next section of this item, then the next item, and the note.
    fn what_next(&self, p: &Playing, progress: &Progress) -> Vec<String> {
        let it = &self.order.items[p.item];
        let mut lines = Vec::new();
        if let Some(ns) = &progress.next_section {
            let chosen = p.verse_presets.iter().find(|x| x.0 == ns.verse && ns.kind == SectionKind::Verse);
            lines.push(format!(
                "{}{}",
                ns.label,
                chosen.map_or(String::new(), |c| format!(" (preset {})", it.organ.presets[c.1].name))
            ));
        } else {
            lines.push(format!("end of {}", it.title));
        }
        // The note of the item playing goes with it; the next item's title stands alone.
        if let Some(n) = &it.note {
            lines.push(format!("note: {n}"));
        }
        match self.next_item().filter(|&n| n != p.item) {
            Some(n) => lines.push(format!("then: {}. {}", n + 1, self.order.items[n].title)),
            None => lines.push("then: end of the service".into()),
        }
        lines
    }

    /// One line of where the service is, for a log (no bar: it changes only when the state,
    /// the item or the section does): "1. Gloria: verse-end, verse 1 of 3", "idle, chosen: 2.
    /// Amen".
    pub fn status_line(&self) -> String {
        let s = self.remote_state();
        let item = |i: usize| crate::input::printable(&format!("{}. {}", i + 1, self.order.items[i].title));
        let line = match s.playing {
            Some(i) if s.section.is_empty() => format!("{}: {}", item(i), s.state),
            Some(i) => format!("{}: {}, {}", item(i), s.state, s.section),
            None => format!("idle, chosen: {}", item(s.selected)),
        };
        if s.pause_at_verse_end { format!("{line} (will pause at the end of the verse)") } else { line }
    }

    /// The phone remote's view of the service.
    pub fn remote_state(&self) -> RemoteState {
        let progress = self.session.progress();
        let screen = self.screen();
        let playing = self.playing.as_ref().map(|p| p.item);
        let (state, waiting) = match (playing, progress.state) {
            (None, _) => ("idle", false),
            (_, PlayState::Waiting(WaitKind::Fermata)) => ("fermata", true),
            (_, PlayState::Waiting(WaitKind::SectionEnd)) => ("verse-end", true),
            (_, PlayState::Paused) => ("paused", true),
            (_, PlayState::WaitingForLink) => ("link-lost", false),
            (_, PlayState::Ending) => ("ending", false),
            (_, PlayState::Starting) => ("starting", false),
            _ => ("playing", false),
        };
        let section = progress.section.as_ref();
        let chosen = &self.order.items[playing.unwrap_or(self.selected)];
        RemoteState {
            title: self.order.title.clone(),
            organ: chosen.organ.name.clone(),
            items: screen
                .rows
                .iter()
                .zip(&self.order.items)
                .map(|(r, it)| RemoteItem {
                    title: r.title.clone(),
                    summary: r.summary.clone(),
                    changes: r.changes.clone(),
                    note: it.note.clone(),
                    verses: it.verses(),
                    done: r.done,
                    stopped: r.stopped,
                })
                .collect(),
            selected: self.selected,
            playing,
            state,
            state_text: screen.state.clone(),
            tone: match screen.tone {
                Tone::Normal => "normal",
                Tone::Attention => "attention",
                Tone::Alarm => "alarm",
            },
            waiting,
            section: playing.and(section.map(|s| s.label.clone())).unwrap_or_default(),
            verse: playing.and(section.map(|s| s.verse)).unwrap_or(0),
            verses: playing.and(section.map(|s| s.verses)).unwrap_or(0),
            bar: if playing.is_some() { progress.bar } else { 0 },
            last_bar: playing.and(section.map(|s| s.last_bar)).unwrap_or(0),
            registration: if playing.is_some() { progress.registration.clone() } else { String::new() },
            tempo: if playing.is_some() {
                progress.tempo_percent.round() as u32
            } else {
                self.speed[self.selected] / 10
            },
            pause_at_verse_end: playing.is_some() && progress.pause_at_section_end,
            time: if playing.is_some() { times(progress) } else { String::new() },
            next: if playing.is_some() { screen.next.clone() } else { Vec::new() },
            message: self.message.clone(),
            output_error: self.session.output_error(),
            link_down: playing.is_some() && progress.link_down,
        }
    }
}

/// "verse 1 of 3, bar 2 of 14", "bar 5 of 20", or "starting".
fn where_(progress: &Progress) -> String {
    match &progress.section {
        Some(sec) if sec.kind != SectionKind::Piece => {
            format!("{}, bar {} of {}", sec.label, progress.bar.min(sec.last_bar), sec.last_bar)
        }
        Some(_) => format!("bar {} of {}", progress.bar.min(progress.last_bar), progress.last_bar),
        None => "starting".into(),
    }
}

/// Time played and the whole length, both at the tempo now (so that the total follows +/-).
fn times(progress: &Progress) -> String {
    let factor = 1000.0 / f64::from(progress.speed.max(1));
    let at = |t: crate::midi::Micros| crate::midi::Micros((t.0 as f64 * factor) as u64);
    format!("{} / {}", short_time(at(progress.played)), short_time(at(progress.duration)))
}

/// The state line under "Now playing", and how loud it is. `go`: what goes on from a wait
/// ("Enter", "the go piston or Enter").
pub(super) fn state_line(p: &Progress, go: &str) -> (Tone, String) {
    match p.state {
        PlayState::Waiting(WaitKind::Fermata) => (Tone::Attention, format!("WAITING AT A FERMATA — {go} continues")),
        PlayState::Waiting(WaitKind::SectionEnd) => {
            (Tone::Attention, format!("PAUSED AT THE END OF THE VERSE — {go} goes on"))
        }
        PlayState::WaitingForLink if p.link_not_answering => {
            (Tone::Alarm, "LINK TO THE ORGAN NOT ANSWERING — waiting for it (s stops)".into())
        }
        PlayState::WaitingForLink => {
            (Tone::Alarm, "LINK TO THE ORGAN LOST — waiting for it to come back (s stops)".into())
        }
        PlayState::Paused => (Tone::Normal, format!("PAUSED — {go} resumes")),
        PlayState::Ending => (Tone::Normal, "ENDING".into()),
        _ if p.link_not_answering => (Tone::Alarm, "PLAYING — link to the organ not answering".into()),
        _ if p.link_down => (Tone::Alarm, "PLAYING — link to the organ down".into()),
        _ if p.pause_at_section_end => (Tone::Normal, "PLAYING — will pause at the end of this verse".into()),
        _ => (Tone::Normal, "PLAYING".into()),
    }
}

/// What every phone is sent (as JSON) whenever it changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteState {
    pub title: String,
    pub organ: String,
    pub items: Vec<RemoteItem>,
    pub selected: usize,
    pub playing: Option<usize>,
    /// idle, starting, playing, paused, fermata, verse-end, link-lost, ending.
    pub state: &'static str,
    pub state_text: String,
    /// normal, attention, alarm.
    pub tone: &'static str,
    /// Waiting for the operator to go on (a fermata, the end of a verse, a pause).
    pub waiting: bool,
    pub section: String,
    pub verse: u16,
    pub verses: u16,
    pub bar: u32,
    pub last_bar: u32,
    pub registration: String,
    /// Tempo in % of the written tempo (playing), or the speed chosen for the next item.
    pub tempo: u32,
    pub pause_at_verse_end: bool,
    pub time: String,
    pub next: Vec<String>,
    pub message: String,
    pub output_error: Option<String>,
    pub link_down: bool,
}

/// One item of the order of service, for the phone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteItem {
    pub title: String,
    pub summary: String,
    pub changes: String,
    pub note: Option<String>,
    /// Verses it has (0: played once).
    pub verses: u16,
    pub done: bool,
    pub stopped: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::Micros;

    #[test]
    fn the_total_time_follows_the_tempo() {
        let p =
            Progress { played: Micros(30_000_000), duration: Micros(60_000_000), speed: 500, ..Progress::default() };
        assert_eq!(times(&p), "1:00.0 / 2:00.0");
        let p = Progress { speed: 2000, ..p };
        assert_eq!(times(&p), "0:15.0 / 0:30.0");
    }

    #[test]
    fn the_state_line_says_what_goes_on() {
        let at = |state| Progress { state, ..Progress::default() };
        let verse_end = at(PlayState::Waiting(WaitKind::SectionEnd));
        assert_eq!(state_line(&verse_end, "Enter").1, "PAUSED AT THE END OF THE VERSE — Enter goes on");
        assert_eq!(
            state_line(&verse_end, "the go piston or Enter").1,
            "PAUSED AT THE END OF THE VERSE — the go piston or Enter goes on"
        );
        let fermata = at(PlayState::Waiting(WaitKind::Fermata));
        assert_eq!(state_line(&fermata, "the go piston").1, "WAITING AT A FERMATA — the go piston continues");
        assert_eq!(state_line(&at(PlayState::Paused), "Enter").1, "PAUSED — Enter resumes");
        let link = at(PlayState::WaitingForLink);
        assert!(state_line(&link, "Enter").1.starts_with("LINK TO THE ORGAN LOST — waiting for it to come back"));
        // A wireless link whose write went unanswered: in doubt, not (yet) known lost.
        let doubt = Progress { link_down: true, link_not_answering: true, ..link.clone() };
        assert_eq!(
            state_line(&doubt, "Enter"),
            (Tone::Alarm, "LINK TO THE ORGAN NOT ANSWERING — waiting for it (s stops)".into())
        );
        let playing = Progress { state: PlayState::Playing, ..doubt };
        assert_eq!(state_line(&playing, "Enter").1, "PLAYING — link to the organ not answering");
    }

    #[test]
    fn the_remote_state_says_what_the_terminal_says() {
        let mut s = super::super::app::tests::test_service();
        s.speed[1] = 1100;
        let r = s.remote_state();
        assert_eq!(r.state, "idle");
        assert_eq!(r.items.len(), 2);
        assert_eq!(r.items[0].verses, 3);
        assert!(r.items[1].summary.ends_with(&s.length_of(1)), "{}", r.items[1].summary);
        assert!(r.items[1].changes.contains("tempo 110%"));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"state\":\"idle\""), "{json}");
    }
}
