//! How names in an organ definition are matched to names in a GrandOrgue ODF.
//!
//! The rule (also in README):
//! 1. Both names are normalised: lower case; foot marks and quotes (`'` `’` `′` `″` `"`) removed;
//!    `.` and `_` read as spaces; a `ft` after a number dropped (`8ft`, `8 ft` → `8`); runs of
//!    whitespace collapsed; a word broken with a hyphen for the console label joined again
//!    (`Contre- basse` → `contrebasse`). So `Principal 8'` = `principal 8` = `Principal  8 ft`.
//! 2. A first word that abbreviates the division is dropped: the division's name or code letter,
//!    or any word of two or more letters that starts with the division name's first letter and
//!    whose letters appear in order in it (`Sw`, `Gt`, `Ped`, `Ch`, `Pos` …). `Sw Open Diapason 8`
//!    on the swell matches `Open Diapason 8'` on GrandOrgue's Swell manual.
//! 3. Divisions match manuals by normalised name, also ignoring a trailing `organ` or `division`
//!    and a plural `s` (`Pedal` = `Pedals` = `Pedal Organ`).
//! 4. `grandorgue = "…"` in the organ definition overrides all of this: that name (normalised as
//!    in 1) must be the GrandOrgue element's.

/// The comparison form of a stop, coupler or manual name (rule 1).
pub fn normalize(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| !matches!(c, '\'' | '’' | '′' | '″' | '"' | '`'))
        .map(|c| if matches!(c, '.' | '_') { ' ' } else { c })
        .collect::<String>()
        .to_lowercase();
    let mut words: Vec<String> = Vec::new();
    let mut broken = false;
    for w in cleaned.split_whitespace() {
        if std::mem::take(&mut broken)
            && let Some(last) = words.last_mut()
        {
            last.pop();
            last.push_str(w);
            broken = last.ends_with('-') && last.len() > 1;
            continue;
        }
        if w.len() > 1 && w.ends_with('-') {
            words.push(w.to_string());
            broken = true;
            continue;
        }
        if w == "ft" && words.last().is_some_and(|p| p.chars().last().is_some_and(|c| c.is_ascii_digit())) {
            continue;
        }
        match w.strip_suffix("ft") {
            Some(num) if !num.is_empty() && num.chars().all(|c| c.is_ascii_digit() || c == '/') => {
                words.push(num.to_string())
            }
            _ => words.push(w.to_string()),
        }
    }
    words.join(" ")
}

/// A name from a file as it may be shown on a terminal: control characters (which could move
/// the cursor or change colours) shown escaped, as everywhere ([`crate::text::shown`]).
pub fn printable(s: &str) -> String {
    crate::text::shown(s).into_owned()
}

/// Whether `word` (normalised) abbreviates the division `name` (normalised) with code `code`.
pub fn abbreviates(word: &str, name: &str, code: Option<char>) -> bool {
    if word.is_empty() {
        return false;
    }
    if word == name || code.is_some_and(|c| word.chars().eq(c.to_lowercase())) {
        return true;
    }
    let first = name.chars().next();
    if word.chars().count() < 2 || word.chars().next() != first || !word.chars().all(char::is_alphabetic) {
        return false;
    }
    let mut rest = name.chars();
    word.chars().all(|c| rest.any(|n| n == c))
}

/// The name without a leading division abbreviation (rule 2), if it has one and something is left.
pub fn strip_division<'a>(normalized: &'a str, division_names: &[&str], code: Option<char>) -> Option<&'a str> {
    let (first, rest) = normalized.split_once(' ')?;
    division_names.iter().any(|d| abbreviates(first, d, code)).then_some(rest)
}

/// The comparison form of a manual / division name (rule 3).
pub fn manual_key(s: &str) -> String {
    let n = normalize(s);
    let mut words: Vec<&str> = n.split(' ').filter(|w| !w.is_empty()).collect();
    while words.len() > 1 && matches!(words.last(), Some(&"organ" | &"division" | &"manual")) {
        words.pop();
    }
    words.iter().map(|w| w.strip_suffix('s').filter(|x| x.len() >= 3).unwrap_or(w)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_foot_marks_and_spacing() {
        assert_eq!(normalize("Principal 8'"), "principal 8");
        assert_eq!(normalize("  Open   Diapason 8 ft "), "open diapason 8");
        assert_eq!(normalize("Flute 4ft"), "flute 4");
        assert_eq!(normalize("Twelfth 2 2/3’"), "twelfth 2 2/3");
        assert_eq!(normalize("Sw. Oboe"), "sw oboe");
        assert_eq!(normalize("Left"), "left");
        assert_eq!(normalize("Contre- basse 16'"), "contrebasse 16");
        assert_eq!(normalize("Sous- basse 16'"), normalize("Sousbasse 16'"));
        assert_eq!(normalize("Flute - 4"), "flute - 4");
        assert_eq!(printable("a\x1b[2Jb\n"), "a\\x1B[2Jb\\n");
    }

    #[test]
    fn abbreviations() {
        assert!(abbreviates("sw", "swell", Some('S')));
        assert!(abbreviates("gt", "great", Some('G')));
        assert!(abbreviates("ped", "pedal", Some('P')));
        assert!(abbreviates("s", "swell", Some('S')));
        assert!(abbreviates("swell", "swell", Some('S')));
        assert!(!abbreviates("open", "great", Some('G')));
        assert!(!abbreviates("gs", "great", Some('G')));
        assert!(!abbreviates("p", "great", Some('G')));
    }

    #[test]
    fn strips_prefixes() {
        assert_eq!(strip_division("sw open diapason 8", &["swell"], Some('S')), Some("open diapason 8"));
        assert_eq!(strip_division("open diapason 8", &["swell"], Some('S')), None);
        assert_eq!(strip_division("sw", &["swell"], Some('S')), None);
    }

    #[test]
    fn manual_names() {
        assert_eq!(manual_key("Pedal Organ"), manual_key("pedals"));
        assert_eq!(manual_key("Great"), "great");
        assert_ne!(manual_key("Swell"), manual_key("Great"));
    }
}
