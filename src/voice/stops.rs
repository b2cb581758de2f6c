//! How each stop sounds: its ranks (pitch as a multiple of the 32' pitch), the harmonic spectrum
//! of each rank, its loudness and detuning, read from the stop's name ("Gt Twelfth 2 2/3",
//! "Sw Voix Celeste 8", "Mixture III") and overridden by its `voice = { … }`.
//!
//! Pure; runs wherever the synth is built (the control thread).

use crate::organ::voice::{Family, VoiceSpec, parse_footage};

/// One rank of pipes: a pitch and a spectrum.
#[derive(Debug, Clone, PartialEq)]
pub struct Rank {
    /// The rank's fundamental as a multiple of the key's 32' pitch (a quarter of the 8' pitch):
    /// 8' = 4, 4' = 8, 16' = 2, 2 2/3' = 12.
    pub ratio: u32,
    /// Amplitudes of the harmonics 1, 2, 3, … of the rank's fundamental.
    pub harmonics: Vec<f32>,
}

/// How one stop sounds.
#[derive(Debug, Clone, PartialEq)]
pub struct StopVoice {
    pub family: Family,
    pub ranks: Vec<Rank>,
    /// Linear gain of every rank.
    pub level: f32,
    /// Cents; non-zero for celestes (they beat against the other stops).
    pub detune_cents: f32,
}

/// The pitch a footage sounds, as a multiple of the 32' pitch (rounded to a whole harmonic).
pub fn ratio_of(footage: f64) -> u32 {
    (32.0 / footage).round().clamp(1.0, 256.0) as u32
}

/// Amplitudes of the harmonics of one rank of a family.
pub fn spectrum(family: Family) -> Vec<f32> {
    let n = |count: usize, f: &dyn Fn(f32) -> f32| (1..=count).map(|k| f(k as f32)).collect::<Vec<f32>>();
    match family {
        Family::Principal => n(12, &|k| if k == 2.0 { 0.6 } else { 1.0 / k.powf(1.25) }),
        Family::Flute => vec![1.0, 0.18, 0.06, 0.02],
        Family::Stopped => vec![1.0, 0.0, 0.22, 0.0, 0.07, 0.0, 0.02],
        Family::String => n(20, &|k| if k == 1.0 { 0.55 } else { 0.75 / k.powf(0.8) }),
        Family::Reed => n(24, &|k| 0.9 * k.powf(0.6) * (-(k - 1.0) / 5.0).exp()),
        Family::Clarinet => n(17, &|k| if k as u32 % 2 == 1 { 1.0 / k.powf(0.6) } else { 0.08 / k }),
    }
}

/// The usual loudness of a family, relative to a principal.
fn family_level(family: Family) -> f32 {
    match family {
        Family::Principal => 1.0,
        Family::Flute | Family::Stopped => 0.85,
        Family::String => 0.5,
        Family::Reed => 0.75,
        Family::Clarinet => 0.6,
    }
}

fn has(words: &[String], keys: &[&str]) -> bool {
    words.iter().any(|w| keys.iter().any(|k| w.starts_with(k)))
}

/// The family a stop's name implies (a principal when nothing matches).
pub fn family_of(words: &[String]) -> Family {
    if has(words, &["clarinet", "cromorne", "krumm", "chalumeau", "cremona", "vox"]) {
        Family::Clarinet
    } else if has(
        words,
        &[
            "trumpet",
            "trompet",
            "trombone",
            "posaune",
            "oboe",
            "hautbo",
            "cornopean",
            "tuba",
            "clarion",
            "fagott",
            "bassoon",
            "contra-fag",
            "regal",
            "schalmei",
            "shawm",
            "horn",
            "cor",
            "bombarde",
            "ophicleide",
            "dulzian",
            "rankett",
        ],
    ) {
        Family::Reed
    } else if has(
        words,
        &["salicional", "gamba", "viol", "celeste", "unda", "aeoline", "string", "gemshorn", "dulciana", "keraulophon"],
    ) {
        Family::String
    } else if has(
        words,
        &[
            "stopped",
            "gedackt",
            "gedeckt",
            "bourdon",
            "subbass",
            "sub-bass",
            "quintaton",
            "lieblich",
            "rohr",
            "chimney",
            "tibia",
        ],
    ) {
        Family::Stopped
    } else if has(
        words,
        &[
            "flute", "flöte", "flote", "flauto", "nazard", "nasard", "larigot", "piccolo", "hohl", "spitz", "wald",
            "wood", "koppel", "nacht", "blockfl",
        ],
    ) {
        Family::Flute
    } else {
        Family::Principal
    }
}

fn roman(w: &str) -> Option<usize> {
    // "III", "IV", "III-IV" (the largest count of a range).
    w.split('-')
        .map(|p| match p {
            "i" => Some(1),
            "ii" => Some(2),
            "iii" => Some(3),
            "iv" => Some(4),
            "v" => Some(5),
            "vi" => Some(6),
            "vii" => Some(7),
            "viii" => Some(8),
            _ => None,
        })
        .try_fold(0usize, |m, x| x.map(|x| m.max(x)))
}

/// The footage written in a name ("Twelfth 2 2/3", "Principal 8'", "Sesquialtera II" → none).
fn written_footage(words: &[String]) -> Option<f64> {
    for i in (0..words.len()).rev() {
        let w = &words[i];
        if !w.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        if w.contains('/')
            && i > 0
            && words[i - 1].chars().all(|c| c.is_ascii_digit())
            && let Some(f) = parse_footage(&format!("{} {w}", words[i - 1]))
        {
            return Some(f);
        }
        if let Some(f) = parse_footage(w) {
            return Some(f);
        }
    }
    None
}

/// The footage a name implies without a number ("Fifteenth" = 2').
fn named_footage(words: &[String]) -> Option<f64> {
    let table: &[(&str, f64)] = &[
        ("twelfth", 8.0 / 3.0),
        ("nazard", 8.0 / 3.0),
        ("nasard", 8.0 / 3.0),
        ("fifteenth", 2.0),
        ("piccolo", 2.0),
        ("doublette", 2.0),
        ("seventeenth", 1.6),
        ("tierce", 1.6),
        ("nineteenth", 4.0 / 3.0),
        ("larigot", 4.0 / 3.0),
        ("twenty", 1.0),
        ("clarion", 4.0),
        ("subbass", 16.0),
        ("contra", 16.0),
        ("double", 16.0),
        ("super", 2.0),
        ("octave", 4.0),
    ];
    table.iter().find(|(k, _)| words.iter().any(|w| w.starts_with(k))).map(|x| x.1)
}

/// Splits a name into lower-case words, foot marks and dots removed.
pub fn words(name: &str) -> Vec<String> {
    name.to_lowercase()
        .replace(['\'', '’', '′', '"', '.', ',', '(', ')'], " ")
        .split_whitespace()
        .map(|w| w.trim_end_matches("ft").to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A compound stop's ranks, from the name: a cornet, a sesquialtera, or a mixture of `count`.
fn compound_ranks(words: &[String], count: Option<usize>) -> Option<Vec<f64>> {
    let take = |list: &[f64], default: usize| list.iter().copied().take(count.unwrap_or(default)).collect::<Vec<_>>();
    if has(words, &["cornet"]) {
        Some(take(&[8.0, 4.0, 8.0 / 3.0, 2.0, 1.6], 5))
    } else if has(words, &["sesqui"]) {
        Some(take(&[8.0 / 3.0, 1.6], 2))
    } else if has(
        words,
        &["mixture", "fourniture", "plein", "scharf", "sharp", "cymbal", "zimbel", "acuta", "furniture"],
    ) || count.is_some_and(|c| c >= 2)
    {
        Some(take(&[2.0, 4.0 / 3.0, 1.0, 2.0 / 3.0, 0.5, 1.0 / 3.0, 0.25, 1.0 / 6.0], 3))
    } else {
        None
    }
}

/// How a stop sounds, from its name and its `voice = { … }` (which wins field by field).
pub fn stop_voice(name: &str, spec: Option<&VoiceSpec>) -> StopVoice {
    let w = words(name);
    let spec = spec.cloned().unwrap_or_default();
    let count = w.iter().rev().find_map(|x| roman(x));
    let named_family = family_of(&w);
    let compound = compound_ranks(&w, count);
    let family = spec.family.unwrap_or(match &compound {
        Some(_) if has(&w, &["cornet", "sesqui"]) => Family::Flute,
        _ => named_family,
    });
    let footages: Vec<f64> = match (&spec.ranks, spec.footage) {
        (Some(r), _) => r.clone(),
        (None, Some(f)) => vec![f],
        (None, None) => match compound {
            Some(r) => r,
            None => vec![written_footage(&w).or_else(|| named_footage(&w)).unwrap_or(8.0)],
        },
    };
    let harmonics: Vec<f32> = match &spec.harmonics {
        Some(h) => h.iter().map(|&a| a as f32).collect(),
        None => spectrum(family),
    };
    // A compound stop's ranks are each quieter than a single stop.
    let per_rank = if footages.len() > 1 { 0.75 / (footages.len() as f32).sqrt() } else { 1.0 };
    let detune = spec.detune_cents.unwrap_or(if has(&w, &["celeste", "unda", "vox angelica"]) {
        if has(&w, &["unda"]) { -6.0 } else { 6.0 }
    } else {
        0.0
    });
    StopVoice {
        family,
        ranks: footages.iter().map(|&f| Rank { ratio: ratio_of(f), harmonics: harmonics.clone() }).collect(),
        level: family_level(family) * per_rank * 10f32.powf(spec.level_db.unwrap_or(0.0) as f32 / 20.0),
        detune_cents: detune as f32,
    }
}

/// The key shift of a coupler, from its name: "Sub" an octave down, "Octave" or "Super" an octave
/// up, otherwise unison.
pub fn coupler_shift(name: &str) -> i32 {
    let w = words(name);
    if has(&w, &["sub"]) {
        -12
    } else if has(&w, &["octave", "super"]) {
        12
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str) -> StopVoice {
        stop_voice(name, None)
    }

    #[test]
    fn footage_and_family_from_the_name() {
        let ratios = |name: &str| v(name).ranks.iter().map(|r| r.ratio).collect::<Vec<_>>();
        assert_eq!(ratios("Sw Open Diapason 8"), vec![4]);
        assert_eq!(ratios("Ped Bourdon 16"), vec![2]);
        assert_eq!(ratios("Gt Principal 4"), vec![8]);
        assert_eq!(ratios("Gt Twelfth 2 2/3"), vec![12]);
        assert_eq!(ratios("Tierce 1 3/5'"), vec![20]);
        assert_eq!(ratios("Gt Fifteenth"), vec![16]);
        assert_eq!(ratios("Sw Mixture III"), vec![16, 24, 32]);
        assert_eq!(ratios("Sesquialtera II"), vec![12, 20]);
        assert_eq!(v("Sw Stopped Diapason 8").family, Family::Stopped);
        assert_eq!(v("Gt Harmonic Flute 4").family, Family::Flute);
        assert_eq!(v("Sw Oboe 8").family, Family::Reed);
        assert_eq!(v("Sw Salicional 8").family, Family::String);
        assert_eq!(v("Gt Open Diapason 8").family, Family::Principal);
        assert!(v("Sw Voix Celeste 8").detune_cents > 0.0);
        assert_eq!(v("Sw Salicional 8").detune_cents, 0.0);
        // Stopped pipes: odd harmonics only.
        assert!(spectrum(Family::Stopped).iter().skip(1).step_by(2).all(|&a| a == 0.0));
    }

    #[test]
    fn the_voice_table_wins() {
        let spec = VoiceSpec {
            family: Some(Family::Stopped),
            footage: Some(16.0),
            detune_cents: Some(-3.0),
            level_db: Some(-6.0),
            ..VoiceSpec::default()
        };
        let s = stop_voice("Gt Open Diapason 8", Some(&spec));
        assert_eq!((s.family, s.ranks[0].ratio, s.detune_cents), (Family::Stopped, 2, -3.0));
        assert!((s.level - 0.85 * 0.501).abs() < 0.01);
    }

    #[test]
    fn coupler_shifts() {
        assert_eq!(coupler_shift("Sw Octave"), 12);
        assert_eq!(coupler_shift("Sw Sub Octave"), -12);
        assert_eq!(coupler_shift("Sw to Gt"), 0);
        assert_eq!(coupler_shift("Swell Super"), 12);
    }
}
