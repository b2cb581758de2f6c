//! `organ monitor`: one line per message from the console — arrival time, raw bytes and what
//! it means (through an organ definition when one is given: "Gt Principal 4 drawn", "swell C4
//! down", "unknown: F0 41 … F7"); a summary of the unknown messages at the end. Ctrl-C ends it.
//!
//! Sends nothing. Runs on the control thread, reading the input's channel.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use super::learn::classify::describe_message;
use super::{ConsoleError, Received, printable, short_hex};
use crate::midi::HexBytes;
use crate::organ::Organ;
use crate::organ::decode::{Decoder, Meaning};

/// What `organ monitor` was asked to do.
#[derive(Debug, Clone)]
pub struct MonitorArgs {
    pub from: String,
    /// An organ definition to name the messages with.
    pub organ: Option<String>,
    /// Stop after this long (else at Ctrl-C).
    pub seconds: Option<f64>,
}

/// Turns messages into lines and keeps the counts for the summary.
pub struct Monitor {
    decoder: Option<Decoder>,
    pub messages: usize,
    pub realtime: usize,
    /// Unknown messages by their bytes, with counts.
    pub unknown: BTreeMap<Vec<u8>, usize>,
}

impl Monitor {
    pub fn new(organ: Option<&Organ>) -> Monitor {
        Monitor { decoder: organ.map(Decoder::new), messages: 0, realtime: 0, unknown: BTreeMap::new() }
    }

    /// The line for one message, or `None` for real-time traffic (clock, active sensing), which
    /// is only counted.
    pub fn line(&mut self, r: &Received) -> Option<String> {
        if r.is_realtime() {
            self.realtime += 1;
            return None;
        }
        self.messages += 1;
        let meaning = match &mut self.decoder {
            None => describe_message(&r.bytes),
            Some(d) => match d.decode(&r.bytes) {
                Meaning::Unknown => {
                    *self.unknown.entry(r.bytes.to_vec()).or_default() += 1;
                    format!("unknown: {}", short_hex(&r.bytes))
                }
                m => printable(&m.to_string()),
            },
        };
        Some(format!("{:>9}  {:<26} {meaning}", r.at.to_string(), HexBytes(&r.bytes).to_string()))
    }

    /// The closing lines.
    pub fn summary(&self) -> String {
        let mut s = format!("summary: {} message(s)", self.messages);
        if self.realtime > 0 {
            s.push_str(&format!(" (and {} clock/active-sensing messages, not shown)", self.realtime));
        }
        if self.decoder.is_some() {
            if self.unknown.is_empty() {
                s.push_str("; every one is known to the organ definition");
            } else {
                let n: usize = self.unknown.values().sum();
                let mut v: Vec<(&Vec<u8>, &usize)> = self.unknown.iter().collect();
                v.sort_by_key(|x| std::cmp::Reverse(*x.1));
                let list: Vec<String> = v.iter().map(|(b, c)| format!("{} ×{c}", short_hex(b))).collect();
                s.push_str(&format!("; {n} unknown ({} different): {}", v.len(), list.join(", ")));
            }
        }
        s
    }
}

/// `organ monitor`.
///
/// # Errors
/// The organ definition or the input cannot be opened.
pub fn run(a: &MonitorArgs) -> Result<i32, ConsoleError> {
    crate::session::install_signal_handling();
    let organ = a.organ.as_deref().map(Organ::find).transpose()?;
    let input = super::open(&a.from)?;
    err!(
        "organ: listening to {}{} (Ctrl-C ends)",
        printable(input.name()),
        organ.as_ref().map(|o| format!(", named through {}", printable(&o.name))).unwrap_or_default()
    );
    let mut m = Monitor::new(organ.as_ref());
    let end = a.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut out = std::io::stdout();
    loop {
        if crate::session::signal_received() != 0 || end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        match input.messages().recv_timeout(Duration::from_millis(50)) {
            Ok(r) => {
                if let Some(line) = m.line(&r) {
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    // What arrived before the stop still counts.
    while let Ok(r) = input.messages().try_recv() {
        if let Some(line) = m.line(&r) {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(out, "{}", m.summary());
    if input.dropped() > 0 {
        err!("organ: {} message(s) were lost on the way in (input queue full)", input.dropped());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::midi::Micros;

    fn rx(at: u64, b: &[u8]) -> Received {
        Received { at: Micros(at), bytes: b.into() }
    }

    #[test]
    fn lines_and_summary() {
        let organ = Organ::find("st-marys").unwrap();
        let mut m = Monitor::new(Some(&organ));
        let stop = &organ.controls[0];
        let on = stop.on[0].as_bytes().to_vec();
        let line = m.line(&rx(1_234_000, &on)).unwrap();
        assert!(line.starts_with(" 0:01.234  9F 24 7F   "), "{line}");
        assert!(line.ends_with(&format!("{} drawn", stop.name)), "{line}");
        assert!(m.line(&rx(0, &[0xFE])).is_none());
        let u = m.line(&rx(0, &[0xF0, 0x41, 0x10, 0x42, 0x12, 0, 0, 0, 0, 0, 0, 0xF7])).unwrap();
        assert!(u.ends_with("unknown: F0 41 10 42 12 00 00 00 00 00 00 F7"), "{u}");
        m.line(&rx(0, &[0xF0, 0x41, 0x10, 0x42, 0x12, 0, 0, 0, 0, 0, 0, 0xF7]));
        let s = m.summary();
        assert!(s.contains("3 message(s) (and 1 clock/active-sensing"), "{s}");
        assert!(s.contains("2 unknown (1 different): F0 41 10 42 12 00 00 00 00 00 00 F7 ×2"), "{s}");
        let mut plain = Monitor::new(None);
        assert!(plain.line(&rx(0, &[0x9F, 36, 127])).unwrap().ends_with("note-on 36 (C2) velocity 127, channel 16"));
    }
}
