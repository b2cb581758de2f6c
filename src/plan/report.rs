//! Writing a [`Timeline`] for people (`--format text`) and for programs (`--format jsonl`).
//!
//! The JSONL format is a contract (README, "The plan as JSON lines"): one object per message in
//! send order with `t_us`, `bytes`, `kind`, `division`, `name`, `part`, `bar`, `beat`, `tick`,
//! and (added for hymns) `section`, `verse`. Keys may be added; none may be removed or change
//! meaning.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::Serialize;

use super::{Event, Timeline};
use crate::midi::HexBytes;
use crate::text::shown;

/// One line of `organ plan --format jsonl`.
#[derive(Serialize)]
pub struct JsonEvent<'a> {
    /// Microseconds from the start of the performance.
    pub t_us: u64,
    /// Uppercase hex, space separated.
    pub bytes: String,
    pub kind: &'static str,
    pub division: Option<&'a str>,
    /// Stop, coupler or tremulant name.
    pub name: Option<&'a str>,
    /// 1-based part number for notes.
    pub part: Option<usize>,
    pub bar: u32,
    /// Beat from 1, with a fraction between beats.
    pub beat: f64,
    /// Position in the score in ticks.
    pub tick: u64,
    /// Which part of a hymn: `play-over`, `verse` or `amen`; null for a piece played as written.
    pub section: Option<&'static str>,
    /// The verse number (from 1) for messages of a verse, else null.
    pub verse: Option<u16>,
}

impl Timeline {
    pub fn json_event<'a>(&'a self, e: &Event) -> JsonEvent<'a> {
        let pos = self.position(e);
        JsonEvent {
            t_us: e.t.0,
            bytes: HexBytes(self.bytes(&e.msg)).to_string(),
            kind: e.kind.as_str(),
            division: e.division().map(|d| self.divisions[d].name.as_str()),
            name: e.control().map(|c| self.controls[c].name.as_str()),
            part: e.part(),
            bar: pos.bar,
            beat: (pos.beat_f64() * 1e6).round() / 1e6,
            tick: e.tick,
            section: self.section_of(e).and_then(|s| s.kind.as_str()),
            verse: self.section_of(e).filter(|s| s.kind == super::SectionKind::Verse).map(|s| s.verse),
        }
    }

    /// Writes the plan as JSON lines.
    ///
    /// # Errors
    /// Write errors (a closed pipe ends the output quietly in the binary).
    ///
    /// Names come from files: besides what JSON must escape (C0 controls), a C1 control (CSI
    /// among them), DEL and a Unicode direction override are written as `\uXXXX` escapes, so
    /// that the lines read on a terminal cannot act on it, and a JSON reader still gets the
    /// name exactly.
    pub fn write_jsonl(&self, out: &mut impl Write) -> io::Result<()> {
        let mut line = Vec::new();
        for e in &self.events {
            line.clear();
            serde_json::to_writer(&mut line, &self.json_event(e))?;
            match std::str::from_utf8(&line) {
                Ok(s) if s.chars().any(crate::text::is_unsafe) => out.write_all(escape_json_unsafe(s).as_bytes())?,
                _ => out.write_all(&line)?,
            }
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Writes the plan as an aligned table.
    ///
    /// # Errors
    /// Write errors.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "# {} on {}: {} messages, {} ({} bars{})",
            shown(&self.score_name),
            shown(&self.organ_name),
            self.events.len(),
            self.duration,
            self.last_bar,
            if (self.speed_percent - 100.0).abs() > 1e-9 {
                format!(", at {:.0}% speed", self.speed_percent)
            } else {
                String::new()
            }
        )?;
        writeln!(out, "#      time  bar:beat  kind          division  bytes           name / part")?;
        let hymn = self.is_hymn();
        let mut section = None;
        for (i, e) in self.events.iter().enumerate() {
            for w in self.waits.iter().filter(|w| w.index == i) {
                writeln!(
                    out,
                    "# ... {} at {}",
                    match w.kind {
                        super::WaitKind::Fermata => "wait for the operator (fermata)",
                        super::WaitKind::SectionEnd => "may wait for the operator (end of section)",
                    },
                    w.t
                )?;
            }
            if hymn && section != Some(e.section) {
                section = Some(e.section);
                if let Some(s) = self.section_of(e) {
                    writeln!(
                        out,
                        "# --- {} (bars {}-{}, music {} to {})",
                        s.label(),
                        s.first_bar,
                        s.last_bar,
                        s.start,
                        s.end
                    )?;
                }
            }
            let pos = self.position(e);
            let who = match (e.control(), e.part()) {
                (Some(c), _) => shown(&self.controls[c].name).into_owned(),
                (None, Some(p)) => format!("part {p}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "{:>11}  {:<8}  {:<12}  {:<8}  {:<14}  {}",
                e.t.to_string(),
                pos.to_string(),
                e.kind.as_str(),
                e.division().map_or(Cow::Borrowed("-"), |d| shown(&self.divisions[d].name)),
                HexBytes(self.bytes(&e.msg)).to_string(),
                who
            )?;
        }
        Ok(())
    }
}

/// A line of JSON with every character a terminal would act on written as a `\uXXXX` escape.
/// Such characters occur only inside strings, where the escape means the same character; all
/// of them are in the Basic Multilingual Plane, so one escape each.
fn escape_json_unsafe(json: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if crate::text::is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}
