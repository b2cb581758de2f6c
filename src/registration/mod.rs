//! The score's registration file (`scores/<score>.toml`): the layout of its parts, the stop
//! changes over the piece, and how it is played as a hymn — read and checked against an organ
//! definition. One parser and checker for this vocabulary, used by the command line
//! ([`hymn::HymnArgs`]), the order of service and the planner alike.
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
//!
//! Sits above [`crate::organ`] (names are checked against an organ) and below [`crate::plan`]
//! (which plays what it describes). Pure apart from reading the file; control thread only.

mod at;
pub mod hymn;

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::organ::{ConfigError, ControlId, Ctx, Location, Organ};
use crate::text::did_you_mean;

pub use at::{At, HymnAt, HymnSection};
pub use hymn::{HymnArgs, HymnOptions};

/// A single value that does not parse: a position, bars, a length, an amen, a fermata. The
/// message quotes the value and names the accepted forms; callers add where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    NotAPosition(String),
    /// A bar or beat of 0.
    CountsFromOne(String),
    NotBars(String),
    /// Bar 0, or a range that goes backwards.
    BarsBackwards(String),
    NotALength(String),
    TooManyBeats(String),
    TooManySeconds(String),
    NotAnAmen(String),
    NotAFermataPosition(String),
    /// A `--from`/`--until` that names a section of a hymn badly (`verse:0`, `verse:2:x`).
    NotAHymnPosition(String),
    /// `--fermata VALUE` whose hold is not a length.
    FermataHold {
        value: String,
        error: Box<ValueError>,
    },
    /// `--fermata VALUE` with neither a hold nor `wait`.
    FermataForm(String),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::NotAPosition(s) => {
                write!(f, "\"{s}\" is not a position: write a bar (\"17\"), bar:beat (\"17:3\") or seconds (\"12.5s\")")
            }
            ValueError::CountsFromOne(s) => write!(f, "\"{s}\": bars and beats count from 1"),
            ValueError::NotBars(s) => {
                write!(f, "\"{s}\" is not a range of bars: write \"13-16\", \"13\", \"all\" or \"none\"")
            }
            ValueError::BarsBackwards(s) => {
                write!(f, "\"{s}\": bars count from 1 and the range goes forwards (\"13-16\")")
            }
            ValueError::NotALength(s) => {
                write!(f, "\"{s}\" is not a length: write beats (\"2 beats\", \"2beats\") or seconds (\"1.5s\")")
            }
            ValueError::TooManyBeats(s) => write!(f, "\"{s}\": at most 32 beats"),
            ValueError::TooManySeconds(s) => write!(f, "\"{s}\": at most 60 seconds"),
            ValueError::NotAnAmen(s) => write!(
                f,
                "\"{s}\" is not an amen: write the bars at the end of the score (\"17-18\"), a file (\"amen.mid\") or \"none\""
            ),
            ValueError::NotAFermataPosition(s) => write!(f, "fermata \"{s}\": write bar:beat, e.g. \"4:3\""),
            ValueError::NotAHymnPosition(s) => write!(
                f,
                "\"{s}\": write verse:N (verse N from its start), verse:N:BAR or verse:N:BAR:BEAT (bars as in the score), play-over[:BAR] or amen[:BAR]"
            ),
            ValueError::FermataHold { value, error } => write!(f, "--fermata {value}: {error}, or \"wait\""),
            ValueError::FermataForm(s) => write!(f, "--fermata {s}: write a hold (\"1beat\", \"2s\") or \"wait\""),
        }
    }
}

impl std::error::Error for ValueError {}

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
    hymn: Option<hymn::HymnToml>,
    #[serde(default)]
    verse: Vec<hymn::VerseToml>,
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

/// A preset named in a TOML file, as an index into [`Organ::presets`].
///
/// # Errors
/// An unknown preset (with a suggestion, or the presets there are), at its line and column.
pub(crate) fn preset_id(ctx: &Ctx, organ: &Organ, p: &Spanned<String>) -> Result<usize, ConfigError> {
    organ.preset_id(p.get_ref()).ok_or_else(|| {
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
}

/// Stops, couplers and tremulants named in a TOML file.
///
/// # Errors
/// An unknown name (with a suggestion), at its line and column.
pub(crate) fn control_ids(ctx: &Ctx, organ: &Organ, list: &[Spanned<String>]) -> Result<Vec<ControlId>, ConfigError> {
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
        for c in &f.change {
            let at = match c.at.get_ref() {
                AtValue::Int(b) if *b >= 1 && *b <= i64::from(u32::MAX) => At::Bar { bar: *b as u32, beat: 1.0 },
                AtValue::Int(b) => return Err(ctx.err(c.at.span(), format!("at = {b}: bars count from 1"))),
                AtValue::Str(s) => At::parse(s).map_err(|e| ctx.err(c.at.span(), e.to_string()))?,
            };
            let preset = c.preset.as_ref().map(|p| preset_id(&ctx, organ, p)).transpose()?;
            let (line, column) = lines.line_col(c.at.span().start);
            changes.push(Change {
                at,
                preset,
                on: control_ids(&ctx, organ, &c.on)?,
                off: control_ids(&ctx, organ, &c.off)?,
                location: Location { file: source.to_string(), line, column },
            });
        }
        let hymn = hymn::check_toml(&ctx, f.hymn.as_ref().unwrap_or(&hymn::HymnToml::default()), &f.verse, organ)?;
        Ok(Registration { source: source.to_string(), organ: f.organ, layout: f.layout, map: f.map, changes, hymn })
    }

    /// Reads and checks a registration file.
    ///
    /// # Errors
    /// As [`Registration::from_toml`], plus an unreadable file.
    pub fn load(path: &Path, organ: &Organ) -> Result<Registration, ConfigError> {
        let source = path.display().to_string();
        let text =
            crate::files::read_user_text(path, crate::files::FileKind::Registration).map_err(ConfigError::File)?;
        Registration::from_toml(&text, &source, organ)
    }
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
}
