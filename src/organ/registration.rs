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
//!
//! [hymn]                  # optional: how the score (one verse) is played as a hymn
//! verses = 4
//! play_over = "13-16"     # bars, "all" or "none"; played before verse 1
//! gap = "2 beats"         # breath between sections (default 1 beat); "1.5s", "0" also accepted
//! amen = "17-18"          # bars at the end of the score, or a file ("amen.mid"), or "none"
//! fermatas = ["4:3", "8:3"]
//! fermata = { hold = "1 beat" }     # or { wait = true }
//! [[verse]]               # optional: a verse's own registration (0 = the play-over)
//! number = 3
//! preset = "p"
//! ```

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::file::Ctx;
use super::{ConfigError, ControlId, Location, Organ};
use crate::midi::Micros;
use crate::plan::hymn::{self, HymnOptions};
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
    /// `[hymn]` and `[[verse]]`: how the score is played as a hymn (empty when absent).
    pub hymn: HymnOptions,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegFile {
    organ: Option<String>,
    layout: Option<String>,
    map: Option<String>,
    #[serde(default)]
    change: Vec<ChangeFile>,
    hymn: Option<HymnFile>,
    #[serde(default)]
    verse: Vec<VerseFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HymnFile {
    verses: Option<Spanned<i64>>,
    play_over: Option<Spanned<String>>,
    gap: Option<Spanned<String>>,
    amen: Option<Spanned<String>>,
    fermatas: Option<Vec<Spanned<String>>>,
    fermata: Option<Spanned<FermataFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FermataFile {
    hold: Option<Spanned<String>>,
    #[serde(default)]
    wait: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerseFile {
    number: Spanned<i64>,
    preset: Option<Spanned<String>>,
    #[serde(default)]
    on: Vec<Spanned<String>>,
    #[serde(default)]
    off: Vec<Spanned<String>>,
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
/// needed before the file can be checked). Top-level keys come before the first table, so only
/// that part is read (the whole file when that part alone does not parse).
pub fn organ_hint(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Hint {
        organ: Option<String>,
    }
    let head = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| text[i..].trim_start_matches([' ', '\t']).starts_with('['))
        .map_or(text, |i| &text[..i]);
    toml::from_str::<Hint>(head).or_else(|_| toml::from_str::<Hint>(text)).ok().and_then(|h| h.organ)
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
        let lines = crate::text::LineIndex::new(text);
        let mut changes = Vec::with_capacity(f.change.len());
        let preset_id = |p: &Spanned<String>| -> Result<usize, ConfigError> {
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
                            if hint.is_empty() { format!("; {} has {}", organ.name, names.join(", ")) } else { hint }
                        ),
                    )
                })
        };
        // Names looked up once per change: a map, not a scan of the organ's names.
        let by_name: std::collections::HashMap<String, ControlId> =
            organ.controls.iter().enumerate().map(|(i, c)| (crate::text::normalize_name(&c.name), i)).collect();
        let ids = |list: &[Spanned<String>]| -> Result<Vec<ControlId>, ConfigError> {
            list.iter()
                .map(|s| {
                    by_name.get(&crate::text::normalize_name(s.get_ref())).copied().ok_or_else(|| {
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
        for c in &f.change {
            let at = match c.at.get_ref() {
                AtValue::Int(b) if *b >= 1 && *b <= i64::from(u32::MAX) => At::Bar { bar: *b as u32, beat: 1.0 },
                AtValue::Int(b) => return Err(ctx.err(c.at.span(), format!("at = {b}: bars count from 1"))),
                AtValue::Str(s) => At::parse(s).map_err(|e| ctx.err(c.at.span(), e))?,
            };
            let preset = c.preset.as_ref().map(preset_id).transpose()?;
            let (line, column) = lines.line_col(c.at.span().start);
            changes.push(Change {
                at,
                preset,
                on: ids(&c.on)?,
                off: ids(&c.off)?,
                location: Location { file: source.to_string(), line, column },
            });
        }
        let hymn = hymn_options(&ctx, f.hymn.as_ref(), &f.verse, &preset_id, &ids)?;
        Ok(Registration { source: source.to_string(), organ: f.organ, layout: f.layout, map: f.map, changes, hymn })
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

/// Resolves a list of control names.
type ControlIds<'a> = dyn Fn(&[Spanned<String>]) -> Result<Vec<ControlId>, ConfigError> + 'a;

/// Checks `[hymn]` and `[[verse]]`, with file, line and column in every error.
fn hymn_options(
    ctx: &Ctx,
    h: Option<&HymnFile>,
    verses: &[VerseFile],
    preset_id: &dyn Fn(&Spanned<String>) -> Result<usize, ConfigError>,
    ids: &ControlIds,
) -> Result<HymnOptions, ConfigError> {
    let mut o = HymnOptions::default();
    fn parsed<T>(ctx: &Ctx, v: &Spanned<String>, f: fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        f(v.get_ref()).map_err(|e| ctx.err(v.span(), e))
    }
    if let Some(h) = h {
        if let Some(v) = &h.verses {
            let n = *v.get_ref();
            if !(1..=i64::from(hymn::MAX_VERSES)).contains(&n) {
                return Err(ctx.err(v.span(), format!("verses = {n}: a hymn has 1 to {} verses", hymn::MAX_VERSES)));
            }
            o.verses = Some(n as u16);
        }
        o.play_over = h.play_over.as_ref().map(|v| parsed(ctx, v, hymn::parse_bars)).transpose()?;
        o.gap = h.gap.as_ref().map(|v| parsed(ctx, v, hymn::parse_length)).transpose()?;
        o.amen = h.amen.as_ref().map(|v| parsed(ctx, v, hymn::parse_amen)).transpose()?;
        o.fermatas = h
            .fermatas
            .as_ref()
            .map(|l| l.iter().map(|v| parsed(ctx, v, hymn::parse_fermata_at)).collect::<Result<Vec<_>, _>>())
            .transpose()?;
        if let Some(f) = &h.fermata {
            let hold = f.get_ref().hold.as_ref().map(|v| parsed(ctx, v, hymn::parse_length)).transpose()?;
            if hold.is_none() && !f.get_ref().wait {
                return Err(ctx.err(f.span(), "fermata: write { hold = \"1 beat\" } or { wait = true }"));
            }
            o.fermata = Some(hymn::Fermata { hold, wait: f.get_ref().wait });
        }
    }
    for v in verses {
        let n = *v.number.get_ref();
        if !(0..=i64::from(hymn::MAX_VERSES)).contains(&n) {
            return Err(ctx.err(v.number.span(), format!("number = {n}: verses count from 1 (0 is the play-over)")));
        }
        if o.verse_registrations.iter().any(|x| i64::from(x.number) == n) {
            return Err(ctx.err(v.number.span(), format!("verse {n} has two [[verse]] tables")));
        }
        o.verse_registrations.push(hymn::VerseRegistration {
            number: n as u16,
            preset: v.preset.as_ref().map(preset_id).transpose()?,
            off: ids(&v.off)?,
            on: ids(&v.on)?,
        });
    }
    o.verse_registrations.sort_by_key(|v| v.number);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_organ_is_read_from_the_top_level_keys() {
        assert_eq!(organ_hint("organ = \"st-marys\"\n[[change]]\nat = \"1\"\n").as_deref(), Some("st-marys"));
        assert_eq!(organ_hint("layout = \"GP\"\n  [hymn]\nverses = 2\n"), None);
        // A multi-line string with a line that starts with [ still reads.
        let text = "layout = \"\"\"\n[x\n\"\"\"\norgan = \"o\"\n[hymn]\n";
        assert_eq!(organ_hint(text).as_deref(), Some("o"));
    }

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
