//! Assigning the score's parts to the organ's divisions: a layout string (`SSGGP`, one letter per
//! part, `-` to leave a part out) and `--map 1=swell,…` overrides.

use std::fmt;

use crate::organ::Organ;
use crate::score::{Part, Score};
use crate::text::normalize_name;

/// Why parts cannot be given divisions: a layout or `--map` that does not fit the score or the
/// organ. Each message names the score, the layout and where it comes from, and what would fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// A layout letter that is no division's code.
    UnknownDivisionCode {
        score: String,
        layout: String,
        /// Where the layout comes from (`--layout`, the registration file, the default).
        from: String,
        organ: String,
        organ_source: String,
        code: char,
        /// The organ's codes, for the message: `G (great), P (pedal)`.
        codes: String,
    },
    /// A `--map` entry that is not `PART=DIVISION`.
    MapEntrySyntax { entry: String },
    /// A `--map` entry whose part is not a number from 1.
    MapPartNumber { entry: String },
    /// A `--map` entry for a part the score does not have.
    MapNoSuchPart {
        part: usize,
        score: String,
        parts: usize,
        /// The parts, described for the user.
        described: String,
    },
    /// A `--map` entry naming a division the organ does not have.
    MapUnknownDivision { entry: String, organ: String, division: String, codes: String },
    /// A layout with a letter count different from the score's parts.
    LayoutLength {
        score: String,
        parts: usize,
        layout: String,
        from: String,
        letters: usize,
        described: String,
        /// A layout that would fit.
        suggestion: String,
    },
    /// A layout (with `--map`) that plays no part at all.
    EveryPartLeftOut,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LayoutError as E;
        match self {
            E::UnknownDivisionCode { score, layout, from, organ, organ_source, code, codes } => write!(
                f,
                "{score}: layout \"{layout}\" ({from}): {organ} ({organ_source}) has no division with code {code}; its codes are {codes} (use - to leave a part out)"
            ),
            E::MapEntrySyntax { entry } => {
                write!(f, "--map entry \"{entry}\": write PART=DIVISION, e.g. --map 1=swell,2=swell,3=great")
            }
            E::MapPartNumber { entry } => {
                write!(f, "--map entry \"{entry}\": part numbers are 1, 2, 3… as `organ info` prints them")
            }
            E::MapNoSuchPart { part, score, parts, described } => {
                write!(f, "--map names part {part}, but {score} has {parts} part(s): {described}")
            }
            E::MapUnknownDivision { entry, organ, division, codes } => write!(
                f,
                "--map entry \"{entry}\": {organ} has no division \"{division}\"; its divisions are {codes} (or none)"
            ),
            E::LayoutLength { score, parts, layout, from, letters, described, suggestion } => {
                write!(
                    f,
                    "{score} has {parts} part(s) but the layout \"{layout}\" ({from}) names {letters}: {described}; "
                )?;
                if suggestion.chars().count() <= LONGEST_SUGGESTION {
                    write!(f, "try --layout {suggestion}")
                } else {
                    f.write_str("give --layout one letter per part (- leaves a part out), or choose parts with --map")
                }
            }
            E::EveryPartLeftOut => f.write_str("the layout leaves every part out; nothing would be played"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// Where the layout came from, for messages.
#[derive(Debug, Clone)]
pub struct LayoutSource<'a> {
    pub layout: &'a str,
    pub from: &'a str,
}

/// One line describing a part, for messages and `organ info`.
pub fn describe_part(p: &Part) -> String {
    let lo = p.notes.iter().map(|n| n.key).min().unwrap_or(0);
    let hi = p.notes.iter().map(|n| n.key).max().unwrap_or(0);
    let chans: Vec<String> = p.channels.iter().map(|c| c.user().to_string()).collect();
    format!(
        "{}{} (channel {}, {} notes, keys {}-{})",
        p.number,
        p.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default(),
        chans.join("+"),
        p.notes.len(),
        crate::plan::key_name(lo),
        crate::plan::key_name(hi)
    )
}

/// Every part of `score`, described, separated by `; `.
/// The parts for an error message: the first few (a file can hold thousands of tracks).
fn describe_parts(score: &Score) -> String {
    const SHOWN: usize = 8;
    let mut s = score.parts.iter().take(SHOWN).map(describe_part).collect::<Vec<_>>().join("; ");
    if score.parts.len() > SHOWN {
        s.push_str(&format!("; and {} more (organ info lists them)", score.parts.len() - SHOWN));
    }
    s
}

/// A layout longer than this is not worth suggesting on one line.
const LONGEST_SUGGESTION: usize = 32;

pub use super::suggest::suggest_layout;

/// Resolves the division of every part (`None` = part not played).
///
/// # Errors
/// Unknown letters or division names, a layout whose length does not match the parts (with the
/// parts found and a suggested layout), map entries for parts that do not exist. (Boxed: the
/// messages carry several names and the parts' descriptions.)
pub fn resolve(
    score: &Score,
    organ: &Organ,
    layout: LayoutSource,
    map: Option<&str>,
) -> Result<Vec<Option<usize>>, Box<LayoutError>> {
    let codes = || organ.divisions.iter().map(|d| format!("{} ({})", d.code, d.name)).collect::<Vec<_>>().join(", ");
    let letters: Vec<char> = layout.layout.chars().filter(|c| !c.is_whitespace()).collect();
    let mut by_letter = Vec::with_capacity(letters.len());
    for &c in &letters {
        if c == '-' || c == '.' {
            by_letter.push(None);
            continue;
        }
        let d = organ.divisions.iter().position(|d| d.code == c.to_ascii_uppercase()).ok_or_else(|| {
            LayoutError::UnknownDivisionCode {
                score: score.name.clone(),
                layout: layout.layout.to_string(),
                from: layout.from.to_string(),
                organ: organ.name.clone(),
                organ_source: organ.source.clone(),
                code: c,
                codes: codes(),
            }
        })?;
        by_letter.push(Some(d));
    }

    let mut overrides: Vec<(usize, Option<usize>)> = Vec::new();
    if let Some(map) = map {
        for entry in map.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (num, div) =
                entry.split_once('=').ok_or_else(|| LayoutError::MapEntrySyntax { entry: entry.to_string() })?;
            let num: usize = num
                .trim()
                .parse()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| LayoutError::MapPartNumber { entry: entry.to_string() })?;
            if num > score.parts.len() {
                return Err(Box::new(LayoutError::MapNoSuchPart {
                    part: num,
                    score: score.name.clone(),
                    parts: score.parts.len(),
                    described: describe_parts(score),
                }));
            }
            let div = div.trim();
            let d = if matches!(normalize_name(div).as_str(), "none" | "-" | "off") {
                None
            } else {
                Some(organ.division(div).ok_or_else(|| LayoutError::MapUnknownDivision {
                    entry: entry.to_string(),
                    organ: organ.name.clone(),
                    division: div.to_string(),
                    codes: codes(),
                })?)
            };
            overrides.push((num - 1, d));
        }
    }

    let n = score.parts.len();
    let covered = (0..n).all(|i| overrides.iter().any(|o| o.0 == i));
    let mut result: Vec<Option<usize>> = if letters.len() == n {
        by_letter
    } else if covered {
        vec![None; n]
    } else {
        return Err(Box::new(LayoutError::LayoutLength {
            score: score.name.clone(),
            parts: n,
            layout: layout.layout.to_string(),
            from: layout.from.to_string(),
            letters: letters.len(),
            described: describe_parts(score),
            suggestion: suggest_layout(score, organ),
        }));
    };
    for (i, d) in overrides {
        result[i] = d;
    }
    if result.iter().all(Option::is_none) {
        return Err(Box::new(LayoutError::EveryPartLeftOut));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORGAN: &str =
        "name = \"Two\"\n[division.great]\ncode = \"G\"\nchannel = 1\n[division.pedal]\ncode = \"P\"\nchannel = 2\n";

    fn score() -> Score {
        score_of(2)
    }

    /// Format 1, `n` tracks with one note each.
    fn score_of(n: u16) -> Score {
        let track: &[u8] = &[0x00, 0x90, 0x3C, 0x40, 0x83, 0x60, 0x80, 0x3C, 0x00, 0x00, 0xFF, 0x2F, 0x00];
        let mut b = b"MThd\x00\x00\x00\x06\x00\x01".to_vec();
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(b"\x01\xe0");
        for _ in 0..n {
            b.extend_from_slice(b"MTrk");
            b.extend_from_slice(&(track.len() as u32).to_be_bytes());
            b.extend_from_slice(track);
        }
        crate::score::load_bytes(&b, "two.mid").unwrap()
    }

    #[test]
    fn an_unknown_letter_names_the_score_and_the_organ_file() {
        let organ = Organ::from_toml(ORGAN, "organs/two.toml").unwrap();
        let e = resolve(&score(), &organ, LayoutSource { layout: "GX", from: "--layout" }, None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("two.mid: layout \"GX\" (--layout): Two (organs/two.toml) has no division with code X"),
            "{e}"
        );
        assert!(e.to_string().contains("G (great), P (pedal)"), "{e}");
    }

    /// A file of 2,000 tracks made the layout error a line of 100 kB, the suggestion 2,000
    /// letters: the parts are listed up to a handful, and the suggestion only when it is short.
    #[test]
    fn a_layout_error_on_a_score_of_many_parts_stays_short() {
        let organ = Organ::from_toml(ORGAN, "organs/two.toml").unwrap();
        let e = resolve(&score_of(2000), &organ, LayoutSource { layout: "G", from: "--layout" }, None)
            .unwrap_err()
            .to_string();
        assert!(e.len() < 600, "{} bytes: {e}", e.len());
        assert!(e.contains("has 2000 part(s)") && e.contains("and 1992 more (organ info lists them)"), "{e}");
        let few = resolve(&score_of(3), &organ, LayoutSource { layout: "G", from: "--layout" }, None)
            .unwrap_err()
            .to_string();
        assert!(few.contains("try --layout"), "{few}");
    }

    #[test]
    fn letters_dashes_and_map() {
        let organ = Organ::from_toml(ORGAN, "organs/two.toml").unwrap();
        let src = |l| LayoutSource { layout: l, from: "--layout" };
        assert_eq!(resolve(&score(), &organ, src("gp"), None).unwrap(), [Some(0), Some(1)]);
        assert_eq!(resolve(&score(), &organ, src("-P"), None).unwrap(), [None, Some(1)]);
        assert_eq!(resolve(&score(), &organ, src("G"), Some("1=pedal,2=great")).unwrap(), [Some(1), Some(0)]);
        assert!(resolve(&score(), &organ, src("--"), None).is_err());
        let e = resolve(&score(), &organ, src("G"), None).unwrap_err().to_string();
        assert!(
            e.contains("has 2 part(s) but the layout \"G\" (--layout) names 1") && e.contains("try --layout"),
            "{e}"
        );
    }
}
