//! Hymn options: how a score that holds one verse is played as a hymn (verses, play-over, gap,
//! amen, fermatas, a verse's own registration), and their one parser and checker.
//!
//! The same vocabulary arrives three ways, and each is checked here:
//! - a registration file's `[hymn]` and `[[verse]]` tables, and an order of service item's keys
//!   ([`HymnToml`], `check_toml`): errors carry file, line and column;
//! - the command line's flags ([`HymnArgs`], [`HymnArgs::check`]): errors name the flag;
//! - the single values inside both ([`parse_bars`], [`parse_length`], [`parse_amen`],
//!   [`parse_fermata_at`], [`parse_fermata`]).
//!
//! The result is [`HymnOptions`], which the planner unrolls (`plan::hymn`). Pure; control thread.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{At, ValueError, control_ids, preset_id};
use crate::midi::Micros;
use crate::organ::{ConfigError, ControlId, Ctx, Organ};

/// Bars of the score: none, all of it, or a range `first-last` (inclusive, from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bars {
    None,
    All,
    Range(u32, u32),
}

/// A length in beats (of the time signature in force) or in clock time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    Beats(f64),
    Time(Micros),
}

/// Where the amen comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Amen {
    None,
    /// Bars at the end of the score (not part of the verse).
    Bars(u32, u32),
    /// A separate MIDI file with the same parts, played with the same layout.
    File(PathBuf),
}

/// What a fermata does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fermata {
    /// Extend the chord by this much.
    pub hold: Option<Length>,
    /// Wait for the operator at the end of the chord (keys held).
    pub wait: bool,
}

/// The breath between sections when the hymn options give no `gap`: one beat.
pub const DEFAULT_GAP: Length = Length::Beats(1.0);

/// The default fermata: one beat longer.
pub const DEFAULT_FERMATA: Fermata = Fermata { hold: Some(Length::Beats(1.0)), wait: false };

/// One verse's own registration (`[[verse]]`); verse 0 is the play-over.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerseRegistration {
    pub number: u16,
    /// Index into the organ's presets: the registration becomes exactly this preset…
    pub preset: Option<usize>,
    /// …then these are put in…
    pub off: Vec<ControlId>,
    /// …and these drawn.
    pub on: Vec<ControlId>,
}

/// Hymn options: from the registration file's `[hymn]`/`[[verse]]`, overridden by the command
/// line or an order of service. `None` = not given here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HymnOptions {
    pub verses: Option<u16>,
    pub play_over: Option<Bars>,
    pub gap: Option<Length>,
    pub amen: Option<Amen>,
    /// Fermata positions (bar, beat) in the score.
    pub fermatas: Option<Vec<(u32, f64)>>,
    pub fermata: Option<Fermata>,
    /// Every verse and the play-over start from this preset (an order of service's `preset`).
    pub preset: Option<usize>,
    pub verse_registrations: Vec<VerseRegistration>,
}

/// The most verses a hymn may have.
pub const MAX_VERSES: u16 = 99;

impl HymnOptions {
    /// True when nothing is set: the score is played once, as a piece.
    pub fn is_empty(&self) -> bool {
        *self == HymnOptions::default()
    }

    /// What is set, for people: "4 verses, play-over 5-8, gap, fermatas 4:2, amen, verse 0's
    /// registration".
    pub fn describe(&self) -> String {
        let mut items: Vec<String> = Vec::new();
        if let Some(v) = self.verses {
            items.push(format!("{v} verse{}", if v == 1 { "" } else { "s" }));
        }
        match self.play_over {
            Some(Bars::Range(a, b)) => items.push(format!("play-over {a}-{b}")),
            Some(Bars::All) => items.push("play-over".into()),
            _ => {}
        }
        if self.gap.is_some() {
            items.push("gap".into());
        }
        if let Some(f) = self.fermatas.as_ref().filter(|f| !f.is_empty()) {
            let list: Vec<String> = f.iter().map(|(bar, beat)| format!("{bar}:{beat}")).collect();
            items.push(format!("fermatas {}", list.join(",")));
        }
        if matches!(self.amen, Some(Amen::Bars(..) | Amen::File(_))) {
            items.push("amen".into());
        }
        for v in &self.verse_registrations {
            items.push(format!("verse {}'s registration", v.number));
        }
        items.join(", ")
    }

    /// These options with every value `over` gives replacing this one's (verse registrations
    /// are replaced verse by verse).
    pub fn overridden_by(&self, over: &HymnOptions) -> HymnOptions {
        let mut verse_registrations: Vec<VerseRegistration> = self
            .verse_registrations
            .iter()
            .filter(|v| !over.verse_registrations.iter().any(|o| o.number == v.number))
            .cloned()
            .collect();
        verse_registrations.extend(over.verse_registrations.iter().cloned());
        verse_registrations.sort_by_key(|v| v.number);
        HymnOptions {
            verses: over.verses.or(self.verses),
            play_over: over.play_over.or(self.play_over),
            gap: over.gap.or(self.gap),
            amen: over.amen.clone().or_else(|| self.amen.clone()),
            fermatas: over.fermatas.clone().or_else(|| self.fermatas.clone()),
            fermata: over.fermata.or(self.fermata),
            preset: over.preset.or(self.preset),
            verse_registrations,
        }
    }

    /// An amen file named relative to a file is found beside that file: `dir` is its folder.
    pub fn amen_beside(mut self, dir: &Path) -> HymnOptions {
        if let Some(Amen::File(p)) = &mut self.amen
            && p.is_relative()
        {
            *p = dir.join(&*p);
        }
        self
    }

    /// Verse `number` starts from `preset` (replacing any registration of its own).
    pub fn set_verse_preset(&mut self, number: u16, preset: usize) {
        self.verse_registrations.retain(|v| v.number != number);
        self.verse_registrations.push(VerseRegistration { number, preset: Some(preset), ..Default::default() });
    }
}

// --- single values (shared by the TOML files and the command line) ------------------------------

/// Parses `"13-16"`, `"13"`, `"all"` or `"none"`.
///
/// # Errors
/// [`ValueError::NotBars`] or [`ValueError::BarsBackwards`], naming the accepted forms.
pub fn parse_bars(s: &str) -> Result<Bars, ValueError> {
    let t = s.trim();
    let bad = || ValueError::NotBars(s.to_string());
    match t.to_ascii_lowercase().as_str() {
        "all" => return Ok(Bars::All),
        "none" | "no" | "" => return Ok(Bars::None),
        _ => {}
    }
    let (a, b) = t.split_once('-').unwrap_or((t, t));
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(ValueError::BarsBackwards(s.to_string()));
    }
    Ok(Bars::Range(a, b))
}

/// Parses `"2 beats"`, `"2beats"`, `"1 beat"`, `"0.5b"`, `"1.5s"`, `"1.5 s"`, `"800ms"` or `"0"`.
///
/// # Errors
/// Not a length, or over the limits (32 beats, 60 seconds).
pub fn parse_length(s: &str) -> Result<Length, ValueError> {
    let t = s.trim().to_ascii_lowercase();
    let bad = || ValueError::NotALength(s.to_string());
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    match unit.trim() {
        "" if v == 0.0 => Ok(Length::Time(Micros::ZERO)),
        "beat" | "beats" | "b" => {
            if v > 32.0 {
                return Err(ValueError::TooManyBeats(s.to_string()));
            }
            Ok(Length::Beats(v))
        }
        "s" | "sec" | "secs" | "second" | "seconds" | "ms" => {
            let us = if unit.trim() == "ms" { v * 1e3 } else { v * 1e6 };
            if us > 60e6 {
                return Err(ValueError::TooManySeconds(s.to_string()));
            }
            Ok(Length::Time(Micros(us.round() as u64)))
        }
        _ => Err(bad()),
    }
}

/// Parses an amen: bars (`"17-18"`), a MIDI file (`"amen.mid"`) or `"none"`.
///
/// # Errors
/// [`ValueError::NotAnAmen`]: neither bars nor a `.mid` file.
pub fn parse_amen(s: &str) -> Result<Amen, ValueError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if lower.ends_with(".mid") || lower.ends_with(".midi") || lower.ends_with(".smf") {
        return Ok(Amen::File(PathBuf::from(t)));
    }
    match parse_bars(t) {
        Ok(Bars::None) => Ok(Amen::None),
        Ok(Bars::Range(a, b)) => Ok(Amen::Bars(a, b)),
        Ok(Bars::All) | Err(_) => Err(ValueError::NotAnAmen(s.to_string())),
    }
}

/// Parses a fermata position `"4:3"` (bar:beat) or `"4"` (beat 1).
///
/// # Errors
/// [`ValueError::NotAFermataPosition`]: not a bar:beat position.
pub fn parse_fermata_at(s: &str) -> Result<(u32, f64), ValueError> {
    match At::parse(s) {
        Ok(At::Bar { bar, beat }) => Ok((bar, beat)),
        _ => Err(ValueError::NotAFermataPosition(s.to_string())),
    }
}

/// Parses the command line's `--fermata`: `wait`, a hold length (`1beat`, `2s`), or both
/// (`wait+1beat`).
///
/// # Errors
/// [`ValueError::FermataHold`] or [`ValueError::FermataForm`].
pub fn parse_fermata(s: &str) -> Result<Fermata, ValueError> {
    let mut f = Fermata { hold: None, wait: false };
    for part in s.split('+').map(str::trim).filter(|p| !p.is_empty()) {
        if part.eq_ignore_ascii_case("wait") {
            f.wait = true;
        } else {
            let p = part.strip_prefix("hold").map(str::trim).unwrap_or(part);
            f.hold = Some(
                parse_length(p).map_err(|e| ValueError::FermataHold { value: s.to_string(), error: Box::new(e) })?,
            );
        }
    }
    if f.hold.is_none() && !f.wait {
        return Err(ValueError::FermataForm(s.to_string()));
    }
    Ok(f)
}

// --- TOML: a registration file's [hymn] and [[verse]], an order of service item ------------------

/// The hymn keys as written in TOML: a registration file's `[hymn]` table, or the same keys in
/// an order of service's `[[item]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HymnToml {
    pub verses: Option<Spanned<i64>>,
    pub play_over: Option<Spanned<String>>,
    pub gap: Option<Spanned<String>>,
    pub amen: Option<Spanned<String>>,
    pub fermatas: Option<Vec<Spanned<String>>>,
    pub fermata: Option<Spanned<FermataToml>>,
}

/// `fermata = { hold = "1 beat" }` or `{ wait = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FermataToml {
    pub hold: Option<Spanned<String>>,
    #[serde(default)]
    pub wait: bool,
}

/// A registration file's `[[verse]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerseToml {
    pub number: Spanned<i64>,
    pub preset: Option<Spanned<String>>,
    #[serde(default)]
    pub on: Vec<Spanned<String>>,
    #[serde(default)]
    pub off: Vec<Spanned<String>>,
}

/// Checks hymn keys and `[[verse]]` tables written in the TOML file `ctx`, against `organ`.
///
/// # Errors
/// A value that does not parse, out of range, an unknown preset or control, a verse given
/// twice; each with file, line and column.
pub(crate) fn check_toml(
    ctx: &Ctx,
    h: &HymnToml,
    verses: &[VerseToml],
    organ: &Organ,
) -> Result<HymnOptions, ConfigError> {
    fn parsed<T>(ctx: &Ctx, v: &Spanned<String>, f: fn(&str) -> Result<T, ValueError>) -> Result<T, ConfigError> {
        f(v.get_ref()).map_err(|e| ctx.err(v.span(), e.to_string()))
    }
    let mut o = HymnOptions::default();
    if let Some(v) = &h.verses {
        let n = *v.get_ref();
        if !(1..=i64::from(MAX_VERSES)).contains(&n) {
            return Err(ctx.err(v.span(), format!("verses = {n}: a hymn has 1 to {MAX_VERSES} verses")));
        }
        o.verses = Some(n as u16);
    }
    o.play_over = h.play_over.as_ref().map(|v| parsed(ctx, v, parse_bars)).transpose()?;
    o.gap = h.gap.as_ref().map(|v| parsed(ctx, v, parse_length)).transpose()?;
    o.amen = h.amen.as_ref().map(|v| parsed(ctx, v, parse_amen)).transpose()?;
    o.fermatas = h
        .fermatas
        .as_ref()
        .map(|l| l.iter().map(|v| parsed(ctx, v, parse_fermata_at)).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    if let Some(f) = &h.fermata {
        let hold = f.get_ref().hold.as_ref().map(|v| parsed(ctx, v, parse_length)).transpose()?;
        if hold.is_none() && !f.get_ref().wait {
            return Err(ctx.err(f.span(), "fermata: write { hold = \"1 beat\" } or { wait = true }"));
        }
        o.fermata = Some(Fermata { hold, wait: f.get_ref().wait });
    }
    for v in verses {
        let n = *v.number.get_ref();
        if !(0..=i64::from(MAX_VERSES)).contains(&n) {
            return Err(ctx.err(v.number.span(), format!("number = {n}: verses count from 1 (0 is the play-over)")));
        }
        if o.verse_registrations.iter().any(|x| i64::from(x.number) == n) {
            return Err(ctx.err(v.number.span(), format!("verse {n} has two [[verse]] tables")));
        }
        o.verse_registrations.push(VerseRegistration {
            number: n as u16,
            preset: v.preset.as_ref().map(|p| preset_id(ctx, organ, p)).transpose()?,
            off: control_ids(ctx, organ, &v.off)?,
            on: control_ids(ctx, organ, &v.on)?,
        });
    }
    o.verse_registrations.sort_by_key(|v| v.number);
    Ok(o)
}

// --- the command line ---------------------------------------------------------------------------

/// The hymn options as typed on a command line (`organ plan`, `check`, `play`), before checking.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HymnArgs {
    pub verses: Option<u16>,
    pub play_over: Option<String>,
    pub gap: Option<String>,
    pub amen: Option<String>,
    pub fermatas: Vec<String>,
    pub fermata: Option<String>,
    /// `VERSE=PRESET` entries.
    pub verse_preset: Vec<String>,
    /// Play the score once, ignoring the registration file's `[hymn]`.
    pub no_hymn: bool,
}

/// A command-line hymn option that cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgError {
    /// A flag's value does not parse.
    Value { flag: &'static str, error: ValueError },
    /// `--fermata` does not parse (its message names the flag).
    Fermata(ValueError),
    /// `--verses` out of range.
    Verses(u16),
    /// A `--verse-preset` entry that is not `VERSE=PRESET`.
    VersePresetForm(String),
    /// A `--verse-preset` naming a preset the organ does not have.
    UnknownVersePreset { entry: String, preset: String, organ: String, presets: Vec<String> },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Value { flag, error } => write!(f, "{flag}: {error}"),
            ArgError::Fermata(e) => e.fmt(f),
            ArgError::Verses(v) => write!(f, "--verses {v}: a hymn has 1 to {MAX_VERSES} verses"),
            ArgError::VersePresetForm(entry) => {
                write!(f, "--verse-preset {entry}: write VERSE=PRESET, e.g. 3=p (0 is the play-over)")
            }
            ArgError::UnknownVersePreset { entry, preset, organ, presets } => {
                write!(f, "--verse-preset {entry}: {organ} has no preset \"{preset}\" (it has {})", presets.join(", "))
            }
        }
    }
}

impl std::error::Error for ArgError {}

impl HymnArgs {
    /// True when no hymn flag was given (`--no-hymn` aside).
    pub fn is_empty(&self) -> bool {
        HymnArgs { no_hymn: false, ..self.clone() } == HymnArgs::default()
    }

    /// Checks the flags against `organ`.
    ///
    /// # Errors
    /// Values that do not parse; unknown presets.
    pub fn check(&self, organ: &Organ) -> Result<HymnOptions, ArgError> {
        let value = |flag: &'static str| move |error| ArgError::Value { flag, error };
        let mut o = HymnOptions {
            verses: self.verses,
            play_over: self.play_over.as_deref().map(parse_bars).transpose().map_err(value("--play-over"))?,
            gap: self.gap.as_deref().map(parse_length).transpose().map_err(value("--gap"))?,
            amen: self.amen.as_deref().map(parse_amen).transpose().map_err(value("--amen"))?,
            fermata: self.fermata.as_deref().map(parse_fermata).transpose().map_err(ArgError::Fermata)?,
            ..HymnOptions::default()
        };
        if let Some(v) = self.verses
            && (v == 0 || v > MAX_VERSES)
        {
            return Err(ArgError::Verses(v));
        }
        if !self.fermatas.is_empty() {
            let f: Result<Vec<_>, _> = self.fermatas.iter().map(|s| parse_fermata_at(s)).collect();
            o.fermatas = Some(f.map_err(value("--fermatas"))?);
        }
        for entry in self.verse_preset.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let bad = || ArgError::VersePresetForm(entry.to_string());
            let (n, p) = entry.split_once('=').ok_or_else(bad)?;
            let number: u16 = n.trim().parse().map_err(|_| bad())?;
            let preset = organ.preset_id(p).ok_or_else(|| ArgError::UnknownVersePreset {
                entry: entry.to_string(),
                preset: p.trim().to_string(),
                organ: organ.name.clone(),
                presets: organ.presets.iter().map(|x| x.name.clone()).collect(),
            })?;
            o.set_verse_preset(number, preset);
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::Registration;

    fn organ() -> Organ {
        Organ::find("st-marys").unwrap()
    }

    #[test]
    fn parses_lengths_bars_and_amens() {
        assert_eq!(parse_length("2 beats").unwrap(), Length::Beats(2.0));
        assert_eq!(parse_length("2beats").unwrap(), Length::Beats(2.0));
        assert_eq!(parse_length("0.5b").unwrap(), Length::Beats(0.5));
        assert_eq!(parse_length("1.5s").unwrap(), Length::Time(Micros(1_500_000)));
        assert_eq!(parse_length("800 ms").unwrap(), Length::Time(Micros(800_000)));
        assert!(parse_length("2 bars").is_err());
        assert_eq!(parse_length("0").unwrap(), Length::Time(Micros::ZERO));
        assert!(parse_length("2").is_err(), "a length other than 0 needs its unit");
        assert!(parse_length("-1s").is_err());
        assert!(parse_length("61s").is_err());
        assert_eq!(parse_bars("13-16").unwrap(), Bars::Range(13, 16));
        assert_eq!(parse_bars(" 7 ").unwrap(), Bars::Range(7, 7));
        assert_eq!(parse_bars("all").unwrap(), Bars::All);
        assert_eq!(parse_bars("none").unwrap(), Bars::None);
        assert!(parse_bars("16-13").is_err());
        assert!(parse_bars("0-2").is_err());
        assert_eq!(parse_amen("17-18").unwrap(), Amen::Bars(17, 18));
        assert_eq!(parse_amen("amen.mid").unwrap(), Amen::File("amen.mid".into()));
        assert_eq!(parse_amen("none").unwrap(), Amen::None);
        assert!(parse_amen("all").is_err());
        assert_eq!(parse_fermata("wait").unwrap(), Fermata { hold: None, wait: true });
        assert_eq!(parse_fermata("1beat").unwrap(), Fermata { hold: Some(Length::Beats(1.0)), wait: false });
        assert_eq!(
            parse_fermata("wait+2s").unwrap(),
            Fermata { hold: Some(Length::Time(Micros(2_000_000))), wait: true }
        );
        assert!(parse_fermata("forever").is_err());
        assert_eq!(parse_fermata_at("4:3").unwrap(), (4, 3.0));
    }

    #[test]
    fn toml_errors_name_the_line() {
        let organ = organ();
        let bad = "[hymn]\nverses = 4\ngap = \"2 bars\"\n";
        let e = Registration::from_toml(bad, "x.toml", &organ).unwrap_err().to_string();
        assert!(e.starts_with("x.toml:3:"), "{e}");
        let unknown = "[hymn]\nverse = 4\n";
        let e = Registration::from_toml(unknown, "x.toml", &organ).unwrap_err().to_string();
        assert!(e.contains("x.toml:2:") && e.contains("verse"), "{e}");
        let preset = "[[verse]]\nnumber = 2\npreset = \"mff\"\n";
        let e = Registration::from_toml(preset, "x.toml", &organ).unwrap_err().to_string();
        assert!(e.contains("x.toml:3:") && e.contains("mf"), "{e}");
        let twice = "[[verse]]\nnumber = 2\npreset = \"p\"\n[[verse]]\nnumber = 2\npreset = \"mf\"\n";
        assert!(Registration::from_toml(twice, "x.toml", &organ).unwrap_err().to_string().contains("two"));
    }

    #[test]
    fn command_line_flags_are_checked_with_the_flag_in_the_message() {
        let organ = organ();
        let args = HymnArgs {
            verses: Some(3),
            play_over: Some("1-2".into()),
            fermatas: vec!["2:3".into()],
            fermata: Some("wait".into()),
            verse_preset: vec!["2=P".into()],
            ..HymnArgs::default()
        };
        let o = args.check(&organ).unwrap();
        assert_eq!((o.verses, o.play_over), (Some(3), Some(Bars::Range(1, 2))));
        assert_eq!(o.verse_registrations[0].preset, organ.preset_id("p"));
        let e = |a: HymnArgs| a.check(&organ).unwrap_err().to_string();
        assert_eq!(e(HymnArgs { verses: Some(0), ..HymnArgs::default() }), "--verses 0: a hymn has 1 to 99 verses");
        assert!(e(HymnArgs { gap: Some("2 bars".into()), ..HymnArgs::default() }).starts_with("--gap: \"2 bars\""));
        assert!(e(HymnArgs { fermata: Some("x".into()), ..HymnArgs::default() }).starts_with("--fermata x: "));
        assert!(
            e(HymnArgs { verse_preset: vec!["2=loud".into()], ..HymnArgs::default() }).contains("no preset \"loud\"")
        );
        assert!(HymnArgs { no_hymn: true, ..HymnArgs::default() }.is_empty());
    }
}
