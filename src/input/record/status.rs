//! What the recording looks like so far, for the status line: the take's length, its notes, the
//! stops drawn, whether the console is sending. Kept by the journal thread as messages arrive
//! (through its own [`Decoder`]) and read by the control thread.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::input::Received;
use crate::midi::Micros;
use crate::organ::Organ;
use crate::organ::decode::{Decoder, Meaning};

/// The recording so far. Times of takes and silences are on the source's clock (as the takes
/// will have them), carried on to "now" from the last message's arrival.
#[derive(Debug, Clone, Default)]
pub struct LiveStatus {
    /// Messages received (clock and active sensing not counted).
    pub messages: u64,
    /// Keys struck in the current take.
    pub notes: u64,
    pub keys_down: usize,
    /// Stops, couplers and tremulants drawn now.
    pub drawn: usize,
    pub unrecognised: u64,
    /// Takes begun (more than one with a split).
    pub takes: u32,
    /// When the current take's first key went down.
    pub take_start: Option<Micros>,
    /// When the last key went up (with every key up).
    pub all_up_at: Option<Micros>,
    /// The last message: its time on the source's clock, and when it arrived.
    pub last_at: Micros,
    pub last_message: Option<Instant>,
    /// The journal could not be written (disk full …).
    pub error: Option<String>,
}

impl LiveStatus {
    /// The status line: `● recording take 2  0:42.3  312 notes  5 stops drawn  console sending`.
    pub fn line(&self, now: Instant, split: Option<Duration>) -> String {
        let (sending, source_now) = match self.last_message {
            Some(t) => {
                let quiet = now.saturating_duration_since(t);
                let source_now = self.last_at + Micros(quiet.as_micros() as u64);
                if quiet < Duration::from_secs(1) {
                    ("console sending".to_string(), source_now)
                } else {
                    (format!("console quiet {} s", quiet.as_secs()), source_now)
                }
            }
            None => ("nothing from the console yet".to_string(), self.last_at),
        };
        let stops = format!("{} stop{} drawn", self.drawn, if self.drawn == 1 { "" } else { "s" });
        let Some(start) = self.take_start else {
            return format!("● recording, waiting for the first note  {stops}  {sending}");
        };
        let end = if self.keys_down > 0 { source_now } else { self.all_up_at.unwrap_or(source_now) };
        let take = if split.is_some() { format!(" take {}", self.takes) } else { String::new() };
        let silence = match (split, self.all_up_at) {
            (Some(s), Some(t)) if self.keys_down == 0 && source_now.saturating_sub(t).0 >= s.as_micros() as u64 => {
                let secs = source_now.saturating_sub(t).0 / 1_000_000;
                format!("  silence {secs} s: the next note starts a new take")
            }
            _ => String::new(),
        };
        let ds = end.saturating_sub(start).0 / 100_000;
        format!(
            "● recording{take}  {}:{:02}.{}  {} notes  {stops}  {sending}{silence}",
            ds / 600,
            (ds / 10) % 60,
            ds % 10,
            self.notes
        )
    }
}

/// Reads the messages as they arrive and keeps a [`LiveStatus`] up to date.
pub struct Live {
    decoder: Decoder,
    divisions: Vec<(String, u8)>,
    names: Vec<String>,
    drawn: Vec<bool>,
    down: Vec<[bool; 128]>,
    split: Option<Micros>,
    pub status: Arc<Mutex<LiveStatus>>,
}

impl Live {
    pub fn new(organ: &Organ, split: Option<Duration>) -> Live {
        Live {
            decoder: Decoder::new(organ),
            divisions: organ.divisions.iter().map(|d| (d.name.clone(), d.channel.wire())).collect(),
            names: organ.controls.iter().map(|c| crate::text::normalize_name(&c.name)).collect(),
            drawn: vec![false; organ.controls.len()],
            down: vec![[false; 128]; organ.divisions.len()],
            split: split.map(|d| Micros(d.as_micros() as u64)),
            status: Arc::new(Mutex::new(LiveStatus::default())),
        }
    }

    /// Takes one message into account.
    pub fn seen(&mut self, r: &Received) {
        let now = Instant::now();
        let Ok(mut s) = self.status.lock() else { return };
        s.last_message = Some(now);
        s.last_at = r.at;
        if r.is_realtime() {
            return;
        }
        s.messages += 1;
        match self.decoder.decode(&r.bytes) {
            Meaning::Key { division, key, down } => {
                let Some(d) = self.divisions.iter().position(|x| x.0 == division) else { return };
                let k = usize::from(key & 0x7F);
                if down && !self.down[d][k] {
                    let new_take = s.take_start.is_none()
                        || (s.keys_down == 0
                            && self.split.is_some_and(|sp| s.all_up_at.is_some_and(|t| r.at.saturating_sub(t) >= sp)));
                    if new_take {
                        s.takes += 1;
                        s.take_start = Some(r.at);
                        s.notes = 0;
                    }
                    self.down[d][k] = true;
                    s.keys_down += 1;
                    s.notes += 1;
                    s.all_up_at = None;
                } else if !down && self.down[d][k] {
                    self.down[d][k] = false;
                    s.keys_down -= 1;
                    if s.keys_down == 0 {
                        s.all_up_at = Some(r.at);
                    }
                }
            }
            Meaning::Controls(v) => {
                for (name, st) in v {
                    let n = crate::text::normalize_name(&name);
                    if let Some(i) = self.names.iter().position(|x| *x == n) {
                        self.drawn[i] = st.unwrap_or(!self.drawn[i]);
                    }
                }
                s.drawn = self.drawn.iter().filter(|&&x| x).count();
            }
            Meaning::Cancel => {
                self.drawn.iter_mut().for_each(|x| *x = false);
                s.drawn = 0;
            }
            Meaning::Unknown => match *r.bytes {
                [st, 120 | 123, 0] if st & 0xF0 == 0xB0 && self.divisions.iter().any(|d| d.1 == st & 0x0F) => {
                    let d = self.divisions.iter().position(|d| d.1 == st & 0x0F).unwrap_or(0);
                    let released = self.down[d].iter().filter(|&&x| x).count();
                    self.down[d] = [false; 128];
                    s.keys_down -= released;
                    if released > 0 && s.keys_down == 0 {
                        s.all_up_at = Some(r.at);
                    }
                }
                _ => s.unrecognised += 1,
            },
            Meaning::Part | Meaning::NoChange | Meaning::Remote { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rx(b: &[u8]) -> Received {
        Received { at: Micros(0), bytes: b.into() }
    }

    #[test]
    fn counts_notes_stops_and_takes() {
        let organ = Organ::find("st-marys").unwrap();
        let mut live = Live::new(&organ, Some(Duration::ZERO));
        let now = Instant::now();
        assert!(live.status.lock().unwrap().line(now, None).contains("waiting for the first note"));
        live.seen(&rx(&[0x9F, 36, 127]));
        live.seen(&rx(&[0x9F, 48, 127]));
        live.seen(&rx(&[0x90, 60, 80]));
        live.seen(&rx(&[0xFE]));
        let s = live.status.lock().unwrap().clone();
        assert_eq!((s.messages, s.notes, s.keys_down, s.drawn, s.takes), (3, 1, 1, 2, 1));
        let line = s.line(Instant::now(), Some(Duration::from_secs(5)));
        assert!(line.starts_with("● recording take 1  0:00.0  1 notes  2 stops drawn  console sending"), "{line}");
        live.seen(&rx(&[0xB0, 123, 0])); // all notes off on the swell
        live.seen(&rx(&[0xCF, 1])); // unknown
        live.seen(&rx(&[0x91, 62, 80])); // a new take: the split is 0 s
        let s = live.status.lock().unwrap().clone();
        assert_eq!((s.keys_down, s.takes, s.notes, s.unrecognised), (1, 2, 1, 1));
    }
}
