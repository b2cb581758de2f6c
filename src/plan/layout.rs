//! Assigning the score's parts to the organ's divisions: a layout string (`SSGGP`, one letter per
//! part, `-` to leave a part out) and `--map 1=swell,…` overrides.

use crate::organ::Organ;
use crate::score::{Part, Score};
use crate::text::normalize_name;

use super::PlanError;

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

/// A plausible layout for the score on this organ: part names that name a division win; else the
/// lowest-sounding last part goes to the pedal (the division with the shortest compass, when it is
/// shorter than a manual's) and the others to the Great (code G) or the first manual.
pub fn suggest_layout(score: &Score, organ: &Organ) -> String {
    let pedal = organ
        .divisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.compass.1 - d.compass.0 < 60)
        .min_by_key(|(_, d)| d.compass.1 - d.compass.0)
        .map(|(i, _)| i);
    let manual = organ
        .divisions
        .iter()
        .position(|d| d.code == 'G')
        .or_else(|| (0..organ.divisions.len()).find(|&i| Some(i) != pedal))
        .unwrap_or(0);
    let n = score.parts.len();
    // Five parts with no names that say otherwise: the MuseScore SSGGP layout, if this organ
    // has those divisions.
    let codes: String = organ.divisions.iter().map(|d| d.code).collect();
    if n == 5 && score.parts.iter().all(|p| p.name.is_none()) && ['S', 'G', 'P'].iter().all(|c| codes.contains(*c)) {
        return "SSGGP".to_string();
    }
    let mean = |p: &Part| p.notes.iter().map(|x| f64::from(x.key)).sum::<f64>() / p.notes.len().max(1) as f64;
    let lowest = score.parts.iter().enumerate().min_by(|a, b| mean(a.1).total_cmp(&mean(b.1))).map(|x| x.0);
    score
        .parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let by_name = p.name.as_deref().and_then(|name| {
                let name = normalize_name(name);
                organ.divisions.iter().position(|d| {
                    let dn = normalize_name(&d.name);
                    name == dn || name.starts_with(&dn) || (name.len() >= 2 && dn.starts_with(&name))
                })
            });
            let d = by_name.unwrap_or(if n > 1 && i == n - 1 && Some(i) == lowest && pedal.is_some() {
                pedal.unwrap_or(manual)
            } else {
                manual
            });
            organ.divisions[d].code
        })
        .collect()
}

/// Resolves the division of every part (`None` = part not played).
///
/// # Errors
/// Unknown letters or division names, a layout whose length does not match the parts (with the
/// parts found and a suggested layout), map entries for parts that do not exist.
pub fn resolve(
    score: &Score,
    organ: &Organ,
    layout: LayoutSource,
    map: Option<&str>,
) -> Result<Vec<Option<usize>>, PlanError> {
    let codes = || organ.divisions.iter().map(|d| format!("{} ({})", d.code, d.name)).collect::<Vec<_>>().join(", ");
    let letters: Vec<char> = layout.layout.chars().filter(|c| !c.is_whitespace()).collect();
    let mut by_letter = Vec::with_capacity(letters.len());
    for &c in &letters {
        if c == '-' || c == '.' {
            by_letter.push(None);
            continue;
        }
        let d = organ.divisions.iter().position(|d| d.code == c.to_ascii_uppercase()).ok_or_else(|| {
            PlanError::new(format!(
                "{}: layout \"{}\" ({}): {} ({}) has no division with code {c}; its codes are {} (use - to leave a part out)",
                score.name,
                layout.layout,
                layout.from,
                organ.name,
                organ.source,
                codes()
            ))
        })?;
        by_letter.push(Some(d));
    }

    let mut overrides: Vec<(usize, Option<usize>)> = Vec::new();
    if let Some(map) = map {
        for entry in map.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (num, div) = entry.split_once('=').ok_or_else(|| {
                PlanError::new(format!(
                    "--map entry \"{entry}\": write PART=DIVISION, e.g. --map 1=swell,2=swell,3=great"
                ))
            })?;
            let num: usize = num.trim().parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                PlanError::new(format!(
                    "--map entry \"{entry}\": part numbers are 1, 2, 3… as `organ info` prints them"
                ))
            })?;
            if num > score.parts.len() {
                return Err(PlanError::new(format!(
                    "--map names part {num}, but {} has {} part(s): {}",
                    score.name,
                    score.parts.len(),
                    score.parts.iter().map(describe_part).collect::<Vec<_>>().join("; ")
                )));
            }
            let div = div.trim();
            let d = if matches!(normalize_name(div).as_str(), "none" | "-" | "off") {
                None
            } else {
                Some(organ.division(div).ok_or_else(|| {
                    PlanError::new(format!(
                        "--map entry \"{entry}\": {} has no division \"{div}\"; its divisions are {} (or none)",
                        organ.name,
                        codes()
                    ))
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
        return Err(PlanError::new(format!(
            "{} has {n} part(s) but the layout \"{}\" ({}) names {}: {}; try --layout {}",
            score.name,
            layout.layout,
            layout.from,
            letters.len(),
            score.parts.iter().map(describe_part).collect::<Vec<_>>().join("; "),
            suggest_layout(score, organ)
        )));
    };
    for (i, d) in overrides {
        result[i] = d;
    }
    if result.iter().all(Option::is_none) {
        return Err(PlanError::new("the layout leaves every part out; nothing would be played"));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORGAN: &str =
        "name = \"Two\"\n[division.great]\ncode = \"G\"\nchannel = 1\n[division.pedal]\ncode = \"P\"\nchannel = 2\n";

    fn score() -> Score {
        // Format 1, two tracks with one note each.
        let track: &[u8] = &[0x00, 0x90, 0x3C, 0x40, 0x83, 0x60, 0x80, 0x3C, 0x00, 0x00, 0xFF, 0x2F, 0x00];
        let mut b = b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0".to_vec();
        for _ in 0..2 {
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
            e.message
                .starts_with("two.mid: layout \"GX\" (--layout): Two (organs/two.toml) has no division with code X"),
            "{e}"
        );
        assert!(e.message.contains("G (great), P (pedal)"), "{e}");
    }

    #[test]
    fn letters_dashes_and_map() {
        let organ = Organ::from_toml(ORGAN, "organs/two.toml").unwrap();
        let src = |l| LayoutSource { layout: l, from: "--layout" };
        assert_eq!(resolve(&score(), &organ, src("gp"), None).unwrap(), [Some(0), Some(1)]);
        assert_eq!(resolve(&score(), &organ, src("-P"), None).unwrap(), [None, Some(1)]);
        assert_eq!(resolve(&score(), &organ, src("G"), Some("1=pedal,2=great")).unwrap(), [Some(1), Some(0)]);
        assert!(resolve(&score(), &organ, src("--"), None).is_err());
        let e = resolve(&score(), &organ, src("G"), None).unwrap_err().message;
        assert!(
            e.contains("has 2 part(s) but the layout \"G\" (--layout) names 1") && e.contains("try --layout"),
            "{e}"
        );
    }
}
