//! Registration files (`scores/<score>.toml`): the layout of the score's parts and the stop
//! changes over the piece, checked against an organ definition.
//!
//! ```toml
//! organ = "st-marys"      # optional: the organ used when --organ is not given
//! layout = "SSGGP"
//! [[change]]
//! at = "1"                # bar, "bar:beat" (beats from 1) or seconds "12.5s"
//! preset = "mf"           # the registration becomes exactly this preset…
//! on = ["Sw to Ped"]      # …then these are drawn
//! off = []                # …and these put in
//! ```

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::file::Ctx;
use super::{ConfigError, ControlId, Location, Organ};
use crate::midi::Micros;
use crate::text::did_you_mean;

/// Where a change happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    /// Bar (from 1) and beat (from 1, may have a fraction).
    Bar { bar: u32, beat: f64 },
    /// Seconds from the start of the score at its written tempo.
    Time(Micros),
}

impl At {
    /// Parses `"17"`, `"17:3"`, `"17:3.5"` or `"12.5s"`.
    ///
    /// # Errors
    /// A description of the expected forms.
    pub fn parse(s: &str) -> Result<At, String> {
        let t = s.trim();
        let bad =
            || format!("\"{s}\" is not a position: write a bar (\"17\"), bar:beat (\"17:3\") or seconds (\"12.5s\")");
        if let Some(secs) = t.strip_suffix('s') {
            let v: f64 = secs.trim().parse().map_err(|_| bad())?;
            if !(0.0..1e7).contains(&v) {
                return Err(bad());
            }
            return Ok(At::Time(Micros((v * 1e6).round() as u64)));
        }
        let (bar, beat) = match t.split_once(':') {
            Some((b, beat)) => (b, beat.trim().parse::<f64>().map_err(|_| bad())?),
            None => (t, 1.0),
        };
        let bar: u32 = bar.trim().parse().map_err(|_| bad())?;
        if bar == 0 || !beat.is_finite() || beat < 1.0 {
            return Err(format!("\"{s}\": bars and beats count from 1"));
        }
        Ok(At::Bar { bar, beat })
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            At::Bar { bar, beat: 1.0 } => write!(f, "bar {bar}"),
            At::Bar { bar, beat } => write!(f, "bar {bar}:{beat}"),
            At::Time(t) => write!(f, "{}s", t.as_secs_f64()),
        }
    }
}

/// One registration change.
#[derive(Debug, Clone)]
pub struct Change {
    pub at: At,
    /// Index into [`Organ::presets`]: the registration becomes exactly this preset.
    pub preset: Option<usize>,
    pub on: Vec<ControlId>,
    pub off: Vec<ControlId>,
    /// Where the change is written, for messages.
    pub location: Location,
}

/// A checked registration.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub source: String,
    /// The organ the file was written for (`organ = "…"`), used when `--organ` is not given.
    pub organ: Option<String>,
    pub layout: Option<String>,
    pub map: Option<String>,
    /// Changes in file order (the planner orders them by position, stably).
    pub changes: Vec<Change>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegFile {
    organ: Option<String>,
    layout: Option<String>,
    map: Option<String>,
    #[serde(default)]
    change: Vec<ChangeFile>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AtValue {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeFile {
    at: Spanned<AtValue>,
    preset: Option<Spanned<String>>,
    #[serde(default)]
    on: Vec<Spanned<String>>,
    #[serde(default)]
    off: Vec<Spanned<String>>,
}

/// The `organ = "…"` line of a registration file, read without checking the rest (the organ is
/// needed before the file can be checked).
pub fn organ_hint(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Hint {
        organ: Option<String>,
    }
    toml::from_str::<Hint>(text).ok().and_then(|h| h.organ)
}

impl Registration {
    /// Parses and checks a registration against `organ`.
    ///
    /// # Errors
    /// Broken TOML, unknown keys, bad positions, unknown stop or preset names (with a suggestion),
    /// each with file, line and column.
    pub fn from_toml(text: &str, source: &str, organ: &Organ) -> Result<Registration, ConfigError> {
        let ctx = Ctx { text, file: source };
        let f: RegFile = toml::from_str(text).map_err(|e| ctx.toml_err(&e))?;
        let mut changes = Vec::new();
        for c in &f.change {
            let at = match c.at.get_ref() {
                AtValue::Int(b) if *b >= 1 && *b <= i64::from(u32::MAX) => At::Bar { bar: *b as u32, beat: 1.0 },
                AtValue::Int(b) => return Err(ctx.err(c.at.span(), format!("at = {b}: bars count from 1"))),
                AtValue::Str(s) => At::parse(s).map_err(|e| ctx.err(c.at.span(), e))?,
            };
            let preset = c
                .preset
                .as_ref()
                .map(|p| {
                    organ
                        .presets
                        .iter()
                        .position(|x| crate::text::normalize_name(&x.name) == crate::text::normalize_name(p.get_ref()))
                        .ok_or_else(|| {
                            let names: Vec<&str> = organ.presets.iter().map(|x| x.name.as_str()).collect();
                            let hint = did_you_mean(p.get_ref(), names.iter().copied());
                            ctx.err(
                                p.span(),
                                format!(
                                    "unknown preset \"{}\"{}",
                                    p.get_ref(),
                                    if hint.is_empty() {
                                        format!("; {} has {}", organ.name, names.join(", "))
                                    } else {
                                        hint
                                    }
                                ),
                            )
                        })
                })
                .transpose()?;
            let ids = |list: &[Spanned<String>]| -> Result<Vec<ControlId>, ConfigError> {
                list.iter()
                    .map(|s| {
                        organ.control(s.get_ref()).ok_or_else(|| {
                            ctx.err(
                                s.span(),
                                format!(
                                    "{} has no stop, coupler or tremulant \"{}\"{}",
                                    organ.name,
                                    s.get_ref(),
                                    organ.suggest_control(s.get_ref())
                                ),
                            )
                        })
                    })
                    .collect()
            };
            let (line, column) = crate::text::line_col(text, c.at.span().start);
            changes.push(Change {
                at,
                preset,
                on: ids(&c.on)?,
                off: ids(&c.off)?,
                location: Location { file: source.to_string(), line, column },
            });
        }
        Ok(Registration { source: source.to_string(), organ: f.organ, layout: f.layout, map: f.map, changes })
    }

    /// Reads and checks a registration file.
    ///
    /// # Errors
    /// As [`Registration::from_toml`], plus an unreadable file.
    pub fn load(path: &Path, organ: &Organ) -> Result<Registration, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Io { file: source.clone(), error: e.to_string() })?;
        Registration::from_toml(&text, &source, organ)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        assert_eq!(At::parse("17").unwrap(), At::Bar { bar: 17, beat: 1.0 });
        assert_eq!(At::parse("17:3").unwrap(), At::Bar { bar: 17, beat: 3.0 });
        assert_eq!(At::parse(" 4:2.5 ").unwrap(), At::Bar { bar: 4, beat: 2.5 });
        assert_eq!(At::parse("12.5s").unwrap(), At::Time(Micros(12_500_000)));
        assert!(At::parse("0").is_err());
        assert!(At::parse("3:0").is_err());
        assert!(At::parse("bar 3").is_err());
        assert!(At::parse("-1s").is_err());
    }
}
