//! A stop's `voice = { … }` in the organ definition: how the built-in organ voice
//! ([`crate::voice`]) should sound it when its name does not say enough. Parsed and checked here
//! (with file:line:column errors like the rest of the file); interpreted by [`crate::voice`].
//! Runs on the control thread.

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::file::Ctx;

/// The pipe family, which decides the spectrum of each rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Diapasons, principals, octaves: bright, all harmonics falling off gently.
    Principal,
    /// Open flutes: nearly a sine, a weak second harmonic.
    Flute,
    /// Stopped pipes (gedackt, bourdon): odd harmonics only.
    Stopped,
    /// Strings and celestes: many harmonics, a weak fundamental.
    String,
    /// Chorus reeds (trumpet, oboe, trombone): the richest, harmonics strongest around the 3rd-6th.
    Reed,
    /// Cylindrical reeds (clarinet, cromorne, krummhorn): odd harmonics, rich.
    Clarinet,
}

impl Family {
    pub const NAMES: &'static str = "principal, flute, stopped, string, reed, clarinet";

    pub fn parse(s: &str) -> Option<Family> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "principal" | "diapason" => Family::Principal,
            "flute" => Family::Flute,
            "stopped" => Family::Stopped,
            "string" => Family::String,
            "reed" => Family::Reed,
            "clarinet" => Family::Clarinet,
            _ => return None,
        })
    }
}

/// A checked `voice = { … }`. Every field is optional; what is left out comes from the stop's
/// name (see the README, "The built-in organ voice").
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VoiceSpec {
    pub family: Option<Family>,
    /// Sounding pitch as an organ-pipe length in feet (8 = unison, 4 = octave, 2 2/3 = twelfth).
    pub footage: Option<f64>,
    /// Several ranks sounding together (a mixture or cornet), each as a footage.
    pub ranks: Option<Vec<f64>>,
    /// Amplitudes of the harmonics 1, 2, 3, … of each rank, replacing the family's.
    pub harmonics: Option<Vec<f64>>,
    /// Detuning in cents (a celeste: a few cents sharp or flat).
    pub detune_cents: Option<f64>,
    /// Loudness relative to the family's usual level, in decibels.
    pub level_db: Option<f64>,
}

/// A footage as written: a number (`8`, `2.667`) or a string (`"2 2/3"`, `"1 3/5'"`).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum FootageFile {
    Number(f64),
    Text(String),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct VoiceFile {
    family: Option<Spanned<String>>,
    footage: Option<Spanned<FootageFile>>,
    ranks: Option<Spanned<Vec<FootageFile>>>,
    harmonics: Option<Spanned<Vec<f64>>>,
    detune_cents: Option<Spanned<f64>>,
    level_db: Option<Spanned<f64>>,
}

/// Parses a footage: `8`, `16'`, `2 2/3`, `1 3/5 ft`, `2/3`. `None` unless it is a positive
/// length of at most 64 feet.
pub fn parse_footage(s: &str) -> Option<f64> {
    let t = s.trim().trim_end_matches("ft").trim_end_matches(['\'', '’', '′']).trim();
    let mut total = 0.0;
    let mut parts = 0;
    for word in t.split_whitespace() {
        parts += 1;
        let v = match word.split_once('/') {
            Some((a, b)) => {
                let (a, b): (f64, f64) = (a.parse().ok()?, b.parse().ok()?);
                if b == 0.0 {
                    return None;
                }
                a / b
            }
            None => word.parse().ok()?,
        };
        total += v;
    }
    (parts > 0 && parts <= 2 && total > 0.0 && total <= 64.0).then_some(total)
}

fn footage(ctx: &Ctx, f: &FootageFile, span: std::ops::Range<usize>) -> Result<f64, ConfigError> {
    let v = match f {
        FootageFile::Number(n) => Some(*n).filter(|n| *n > 0.0 && *n <= 64.0),
        FootageFile::Text(t) => parse_footage(t),
    };
    v.ok_or_else(|| {
        ctx.err(span, "a footage is a pipe length in feet from 1/8 to 64, e.g. 8, 4, \"2 2/3\" or \"1 3/5\"")
    })
}

/// Checks a `voice = { … }`.
pub(crate) fn check(ctx: &Ctx, v: &VoiceFile) -> Result<VoiceSpec, ConfigError> {
    let family = match &v.family {
        None => None,
        Some(f) => Some(Family::parse(f.get_ref()).ok_or_else(|| {
            ctx.err(f.span(), format!("family = \"{}\": expected one of {}", f.get_ref(), Family::NAMES))
        })?),
    };
    let foot = v.footage.as_ref().map(|f| footage(ctx, f.get_ref(), f.span())).transpose()?;
    let ranks = match &v.ranks {
        None => None,
        Some(r) if r.get_ref().is_empty() || r.get_ref().len() > 8 => {
            return Err(ctx.err(r.span(), "ranks = [...]: give 1 to 8 footages, e.g. [\"2\", \"1 1/3\", \"1\"]"));
        }
        Some(r) => Some(r.get_ref().iter().map(|f| footage(ctx, f, r.span())).collect::<Result<Vec<_>, _>>()?),
    };
    let harmonics = match &v.harmonics {
        None => None,
        Some(h) => {
            let ok = !h.get_ref().is_empty()
                && h.get_ref().len() <= 32
                && h.get_ref().iter().all(|a| a.is_finite() && (0.0..=1.0).contains(a));
            if !ok {
                return Err(
                    ctx.err(h.span(), "harmonics = [...]: 1 to 32 amplitudes from 0 to 1, e.g. [1.0, 0.0, 0.3]")
                );
            }
            Some(h.get_ref().clone())
        }
    };
    let ranged = |x: &Option<Spanned<f64>>, what: &str, lo: f64, hi: f64| -> Result<Option<f64>, ConfigError> {
        match x {
            None => Ok(None),
            Some(s) if (lo..=hi).contains(s.get_ref()) => Ok(Some(*s.get_ref())),
            Some(s) => Err(ctx.err(s.span(), format!("{what} = {} is out of range ({lo} to {hi})", s.get_ref()))),
        }
    };
    Ok(VoiceSpec {
        family,
        footage: foot,
        ranks,
        harmonics,
        detune_cents: ranged(&v.detune_cents, "detune_cents", -50.0, 50.0)?,
        level_db: ranged(&v.level_db, "level_db", -40.0, 12.0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::{Family, VoiceSpec, parse_footage};
    use crate::organ::Organ;

    fn organ(voice: &str) -> Result<Organ, String> {
        let text = format!(
            "name = \"T\"\n[division.great]\ncode = \"G\"\nchannel = 2\n[[stop]]\nname = \"Gt Hohlpfeife\"\ndivision = \"great\"\non = {{ note = 36, channel = 16 }}\n{voice}\n"
        );
        Organ::from_toml(&text, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_voice_table_is_read_and_checked() {
        let o = organ(r#"voice = { family = "flute", footage = "2 2/3", detune_cents = -4, level_db = -3 }"#).unwrap();
        let v = o.controls[0].voice.clone().unwrap();
        assert_eq!((v.family, v.detune_cents, v.level_db), (Some(Family::Flute), Some(-4.0), Some(-3.0)));
        assert!((v.footage.unwrap() - 8.0 / 3.0).abs() < 1e-12);
        let o = organ(r#"voice = { ranks = ["2", 1.333, "1"], harmonics = [1.0, 0.5] }"#).unwrap();
        let v = o.controls[0].voice.clone().unwrap();
        assert_eq!(v.ranks.as_ref().map(Vec::len), Some(3));
        assert_eq!(v, VoiceSpec { ranks: v.ranks.clone(), harmonics: Some(vec![1.0, 0.5]), ..VoiceSpec::default() });
        assert!(organ("").unwrap().controls[0].voice.is_none());
        for (voice, want) in [
            (r#"voice = { family = "bombarde" }"#, "t.toml:9:20: family = \"bombarde\": expected one of principal"),
            (r#"voice = { footage = "III" }"#, "t.toml:9:21: a footage is a pipe length"),
            (r#"voice = { harmonics = [2.0] }"#, "harmonics = [...]: 1 to 32 amplitudes from 0 to 1"),
            (r#"voice = { detune_cents = 99.0 }"#, "detune_cents = 99 is out of range (-50 to 50)"),
            (r#"voice = { pitch = 8 }"#, "unknown field `pitch`"),
        ] {
            let e = organ(voice).unwrap_err();
            assert!(e.contains(want), "{voice}: {e}");
        }
    }

    #[test]
    fn footages() {
        assert_eq!(parse_footage("8"), Some(8.0));
        assert_eq!(parse_footage("16'"), Some(16.0));
        assert!((parse_footage("2 2/3").unwrap() - 8.0 / 3.0).abs() < 1e-12);
        assert!((parse_footage("1 3/5 ft").unwrap() - 1.6).abs() < 1e-12);
        assert!((parse_footage("2/3").unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(parse_footage("III"), None);
        assert_eq!(parse_footage("0"), None);
        assert_eq!(parse_footage("1 2 3"), None);
    }
}
