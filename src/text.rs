//! Small text helpers for user-facing messages: name normalisation, "did you mean" suggestions,
//! byte offset → line:column, and [`shown`]: names from files made safe for a terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: C0 controls (ESC starts the sequences that
/// move the cursor, clear the screen or retitle the window), DEL, C1 controls (U+0080-U+009F,
/// CSI among them), and the Unicode direction overrides that make text read differently from
/// how it is stored.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:X}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// A name (or any text that holds names: a track, stop, organ or hymn title, a file name, a
/// device name) as it may be shown on a terminal or in the service view: control characters
/// and direction overrides are written as escapes (`\x1B`, `\u{9B}`, `\n`), so that a file
/// cannot move the cursor, clear the screen or fake a line. Everything else is unchanged (and
/// not copied). Used at every place that prints such text; the result is always one line.
pub fn shown(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// [`shown`] for a report of several lines: line breaks are kept, everything else is escaped.
pub fn shown_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Appends `line` and a line break to a report for the terminal, the line escaped as
/// [`shown`] does: a name in it can neither send a control sequence nor start a line of its
/// own (a fake `warning:` or `ok:`). Reports are built from these, never from names joined
/// with line breaks and escaped afterwards ([`shown_lines`] keeps a name's line break).
pub fn push_line(out: &mut String, line: &str) {
    out.push_str(&shown(line));
    out.push('\n');
}

/// Lower-case, with runs of whitespace collapsed to one space and the ends trimmed: the form in
/// which stop, coupler and preset names are compared.
pub fn normalize_name(s: &str) -> String {
    s.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>().join(" ")
}

/// True when `a` and `b` are the same name compared as [`normalize_name`] does (case and
/// spacing ignored), without allocating: a registration file of 100,000 changes looks names up
/// 100,000 times.
pub fn same_name(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split_whitespace(), b.split_whitespace());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) => {
                if !p.chars().flat_map(char::to_lowercase).eq(q.chars().flat_map(char::to_lowercase)) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `wanted` (after normalisation), if it is plausibly what was meant:
/// within a third of the length in edits, or containing / contained in the wanted text.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = normalize_name(wanted);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let n = normalize_name(c);
        let mut d = edit_distance(&w, &n);
        if !w.is_empty() && (n.contains(&w) || w.contains(&n)) {
            d = d.min(n.len().abs_diff(w.len()).min(2));
        }
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let limit = (w.chars().count() / 3).max(2);
    best.filter(|&(d, _)| d <= limit).map(|(_, c)| c)
}

/// `; did you mean "X"?` or the empty string.
pub fn did_you_mean<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(wanted, candidates).map(|c| format!("; did you mean \"{c}\"?")).unwrap_or_default()
}

/// 1-based line and column (in chars) of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..floor_char_boundary(src, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where each line of a text starts, so that many byte offsets (one per registration change)
/// become line and column in time proportional to their number, not times the text's length.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { text, starts }
    }

    /// As [`line_col`].
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }
}

/// µs as a short human figure: `6 µs`, `1.25 ms`.
pub fn short(t: crate::midi::Micros) -> String {
    if t.0 < 1_000 { format!("{} µs", t.0) } else { format!("{:.2} ms", t.0 as f64 / 1000.0) }
}

/// Joins items as `a, b and c`.
pub fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize_name("  Sw  Open\tDiapason 8 "), "sw open diapason 8");
        assert!(same_name("  Sw  Open\tDiapason 8 ", "sw open DIAPASON 8"));
        assert!(!same_name("Sw Open Diapason 8", "Sw Open Diapason"));
        assert!(!same_name("Sw Open", "Sw Opens"));
    }

    #[test]
    fn suggests_close_names() {
        let names = ["Sw Open Diapason 8", "Gt Principal 4", "Sw to Ped"];
        assert_eq!(closest("sw open diapson 8", names), Some("Sw Open Diapason 8"));
        assert_eq!(closest("Gt Principal", names), Some("Gt Principal 4"));
        assert_eq!(closest("Trumpet", names), None);
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert!(matches!(shown("Sw Open Diapason 8'"), Cow::Borrowed(_)));
        assert_eq!(shown("Gt \u{1b}[2J\u{1b}]0;owned\u{7}done"), "Gt \\x1B[2J\\x1B]0;owned\\x07done");
        assert_eq!(shown("a\u{9b}31mb\u{7f}c\rd\ne\tf"), "a\\u{9B}31mb\\x7Fc\\rd\\ne\\tf");
        assert_eq!(shown("abc\u{202e}fed"), "abc\\u{202E}fed");
        assert_eq!(shown_lines("one\u{1b}[A\ntwo\n"), "one\\x1B[A\ntwo\n");
        assert_eq!(shown("Récit — Voix céleste 8′"), "Récit — Voix céleste 8′");
    }

    #[test]
    fn line_and_column() {
        let s = "a = 1\nbb = 2\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 6), (2, 1));
        assert_eq!(line_col(s, 9), (2, 4));
        let index = LineIndex::new(s);
        for offset in 0..=s.len() + 2 {
            assert_eq!(index.line_col(offset), line_col(s, offset), "offset {offset}");
        }
        let wide = "é = 1\nü";
        assert_eq!(LineIndex::new(wide).line_col(wide.len()), line_col(wide, wide.len()));
    }
}
