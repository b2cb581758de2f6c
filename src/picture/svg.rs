//! The SVG (and the HTML page around it) of a plan's picture, written as text. Every text from a
//! file goes through [`esc`]; nothing here adds script or loads anything from elsewhere. Runs on
//! the control thread.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{Marker, MarkerKind, NoteBar, bar_lines, drawn_spans, notes_by_division};
use crate::midi::Micros;
use crate::organ::ControlKind;
use crate::plan::Timeline;

const LEFT: f64 = 190.0;
const RIGHT: f64 = 70.0;
const TITLE: f64 = 30.0;
/// Marker labels: rows of this height above the stop band, a label going to the first row
/// where it does not overlap the one before.
const MARK_ROW: f64 = 11.0;
const MARK_ROWS: usize = 3;
const MARKS: f64 = MARK_ROW * MARK_ROWS as f64 + 4.0;
const ROW: f64 = 12.0;
const AXIS: f64 = 20.0;
const KEY: f64 = 3.0;
const GAP: f64 = 6.0;

/// Division colours, in organ order (repeating after eight).
const COLOURS: [&str; 8] = ["#1f6fb4", "#c0392b", "#23934a", "#8e44ad", "#d68910", "#7b5a3c", "#c2185b", "#5d6d7e"];

/// Text for XML: markup characters escaped, control characters (never valid in XML) replaced.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if crate::text::is_unsafe(c) => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

fn colour(d: usize) -> &'static str {
    COLOURS[d % COLOURS.len()]
}

/// Horizontal scale: pixels per second, so that a hymn fits a wide screen and a short piece is
/// not stretched.
fn scale(duration: Micros) -> f64 {
    (1800.0 / duration.as_secs_f64().max(1.0)).clamp(4.0, 24.0)
}

struct Frame {
    pps: f64,
    width: f64,
}

impl Frame {
    fn x(&self, t: Micros) -> f64 {
        LEFT + t.as_secs_f64() * self.pps
    }
}

/// `m:ss`.
fn clock(t: Micros) -> String {
    let s = t.0 / 1_000_000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// The lanes: (division, lowest key, highest key, top, height) for divisions that play.
fn lanes(notes: &[Vec<NoteBar>], top: f64) -> Vec<(usize, u8, u8, f64, f64)> {
    let mut y = top;
    let mut v = Vec::new();
    for (d, n) in notes.iter().enumerate() {
        let lo = n.iter().map(|n| n.key).min().unwrap_or(60).saturating_sub(1);
        let hi = n.iter().map(|n| n.key).max().unwrap_or(60).saturating_add(1).min(127);
        let h = (f64::from(hi - lo + 1) * KEY).max(28.0);
        v.push((d, lo, hi, y, h));
        y += h + GAP;
    }
    v
}

/// Writes the picture as a standalone SVG document: the plan, its `markers`, and below it the
/// warnings that have no position (`unplaced`).
///
/// # Errors
/// Write errors.
pub fn write_svg(t: &Timeline, markers: &[Marker], unplaced: &[String], out: &mut dyn Write) -> io::Result<()> {
    out.write_all(svg(t, markers, unplaced).as_bytes())
}

/// Writes the picture as one self-contained HTML page (the SVG inline, no script, nothing
/// loaded from elsewhere).
///
/// # Errors
/// Write errors.
pub fn write_html(t: &Timeline, markers: &[Marker], unplaced: &[String], out: &mut dyn Write) -> io::Result<()> {
    let title = esc(&format!("{} on {}", t.score_name, t.organ_name));
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{title}</title>\n<style>body{{font-family:sans-serif;margin:12px}} h1{{font-size:16px}} .roll{{overflow-x:auto}}</style>\n\
         </head>\n<body>\n<h1>{title}</h1>\n<div class=\"roll\">\n"
    );
    h.push_str(&svg(t, markers, unplaced));
    h.push_str("</div>\n</body>\n</html>\n");
    out.write_all(h.as_bytes())
}

fn svg(t: &Timeline, markers: &[Marker], unplaced: &[String]) -> String {
    let notes = notes_by_division(t);
    let spans = drawn_spans(t);
    let mut rows: Vec<usize> = spans.iter().map(|s| s.0).collect();
    rows.dedup();
    let pps = scale(t.duration);
    let f = Frame { pps, width: LEFT + t.duration.as_secs_f64() * pps + RIGHT };
    let band_top = TITLE + MARKS;
    let axis_top = band_top + rows.len() as f64 * ROW + 4.0;
    let lane_top = axis_top + AXIS;
    let lanes = lanes(&notes, lane_top);
    let lanes_bottom = lanes.last().map_or(lane_top, |l| l.3 + l.4);
    let warnings: Vec<&Marker> = markers.iter().filter(|m| m.kind == MarkerKind::Warning).collect();
    let list_top = lanes_bottom + AXIS + 8.0;
    let height = list_top + 16.0 * (warnings.len() + unplaced.len()) as f64 + 8.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"organ-plan\" width=\"{:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"10\">",
        f.width, f.width
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>");
    let _ = writeln!(
        s,
        "<text class=\"title\" x=\"8\" y=\"19\" font-size=\"14\" font-weight=\"bold\">{} on {} — {} ({} bars)</text>",
        esc(&t.score_name),
        esc(&t.organ_name),
        t.duration,
        t.last_bar
    );
    stop_band(&mut s, t, &f, &rows, &spans, band_top);
    bar_axis(&mut s, t, &f, axis_top, lanes_bottom);
    for &(d, lo, hi, top, h) in &lanes {
        lane(&mut s, t, &f, d, &notes[d], (lo, hi, top, h));
    }
    time_axis(&mut s, t, &f, lanes_bottom);
    marker_lines(&mut s, &f, markers, &lanes, TITLE, lanes_bottom);
    warning_list(&mut s, &warnings, unplaced, list_top);
    s.push_str("</svg>\n");
    s
}

fn stop_band(s: &mut String, t: &Timeline, f: &Frame, rows: &[usize], spans: &[(usize, Micros, Micros)], top: f64) {
    let _ = writeln!(s, "<g class=\"stops\">");
    for (r, &c) in rows.iter().enumerate() {
        let ctl = &t.controls[c];
        let y = top + r as f64 * ROW;
        let (col, what) = match ctl.kind {
            ControlKind::Stop => (colour(ctl.division.unwrap_or(0)), "stop"),
            ControlKind::Coupler { from, .. } => (colour(from), "coupler"),
            ControlKind::Tremulant => (colour(ctl.division.unwrap_or(0)), "tremulant"),
        };
        let _ = writeln!(s, "<g class=\"stop-row {what}\" data-name=\"{}\">", esc(&ctl.name));
        if r % 2 == 0 {
            let _ =
                writeln!(s, "<rect x=\"0\" y=\"{y:.1}\" width=\"{:.0}\" height=\"{ROW}\" fill=\"#f4f4f4\"/>", f.width);
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{col}\">{}</text>",
            LEFT - 6.0,
            y + ROW - 2.5,
            esc(&ctl.name)
        );
        let dash = if what == "stop" { "" } else { " stroke-dasharray=\"3 2\" stroke=\"#333\" fill-opacity=\"0.55\"" };
        for &(_, from, until) in spans.iter().filter(|x| x.0 == c) {
            let _ = writeln!(
                s,
                "<rect class=\"drawn\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{col}\"{dash}><title>{} drawn {}–{}</title></rect>",
                f.x(from),
                y + 1.5,
                (f.x(until) - f.x(from)).max(1.0),
                ROW - 3.0,
                esc(&ctl.name),
                from,
                until
            );
        }
        s.push_str("</g>\n");
    }
    s.push_str("</g>\n");
}

fn bar_axis(s: &mut String, t: &Timeline, f: &Frame, top: f64, bottom: f64) {
    let lines = bar_lines(t);
    // Label every bar when there is room, else every 2nd, 5th or 10th.
    let min_gap = lines.windows(2).map(|w| f.x(w[1].1) - f.x(w[0].1)).filter(|g| *g > 0.0).fold(f64::MAX, f64::min);
    let every = [1u32, 2, 5, 10, 20, 50].into_iter().find(|&n| min_gap * f64::from(n) >= 18.0).unwrap_or(100);
    let _ = writeln!(s, "<g class=\"bars\" stroke=\"#c8c8c8\">");
    for &(bar, at) in &lines {
        let x = f.x(at);
        let _ = writeln!(s, "<line class=\"bar\" x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>");
        if bar % every == 0 || bar == 1 {
            let _ = writeln!(
                s,
                "<text class=\"bar-number\" x=\"{:.1}\" y=\"{:.1}\" stroke=\"none\" fill=\"#444\">{bar}</text>",
                x + 2.0,
                top + 13.0
            );
        }
    }
    s.push_str("</g>\n");
    let _ = writeln!(
        s,
        "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#444\">bar</text>",
        LEFT - 6.0,
        top + 13.0
    );
}

fn lane(s: &mut String, t: &Timeline, f: &Frame, d: usize, notes: &[NoteBar], (lo, hi, top, h): (u8, u8, f64, f64)) {
    let div = &t.divisions[d];
    let col = colour(d);
    let _ = writeln!(s, "<g class=\"lane\" data-division=\"{}\">", esc(&div.name));
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT:.0}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{col}\" fill-opacity=\"0.06\"/>",
        f.width - LEFT - RIGHT
    );
    let _ = writeln!(
        s,
        "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\" font-weight=\"bold\" fill=\"{col}\">{} ({})</text>",
        LEFT - 6.0,
        top + h / 2.0 + 4.0,
        esc(&div.name),
        esc(&div.code.to_string())
    );
    if notes.is_empty() {
        let _ =
            writeln!(s, "<text x=\"{:.0}\" y=\"{:.1}\" fill=\"#888\">no notes</text>", LEFT + 6.0, top + h / 2.0 + 4.0);
    }
    for n in notes {
        let y = top + f64::from(hi - n.key) * KEY + (h - f64::from(hi - lo + 1) * KEY) / 2.0;
        let _ = writeln!(
            s,
            "<rect class=\"note\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{col}\"/>",
            f.x(n.start),
            (f.x(n.end) - f.x(n.start)).max(1.0),
            KEY
        );
    }
    s.push_str("</g>\n");
}

fn time_axis(s: &mut String, t: &Timeline, f: &Frame, top: f64) {
    let step = [5u64, 10, 15, 30, 60, 120, 300].into_iter().find(|&n| n as f64 * f.pps >= 60.0).unwrap_or(600);
    let _ = writeln!(s, "<g class=\"time\" fill=\"#444\">");
    let mut sec = 0;
    while Micros(sec * 1_000_000) <= t.duration {
        let x = f.x(Micros(sec * 1_000_000));
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#444\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            top + 4.0,
            x + 2.0,
            top + 14.0,
            clock(Micros(sec * 1_000_000))
        );
        sec += step;
    }
    let _ = writeln!(s, "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">time</text>", LEFT - 6.0, top + 14.0);
    s.push_str("</g>\n");
}

fn marker_lines(
    s: &mut String,
    f: &Frame,
    markers: &[Marker],
    lanes: &[(usize, u8, u8, f64, f64)],
    top: f64,
    bottom: f64,
) {
    let _ = writeln!(s, "<g class=\"markers\">");
    let mut warning_no = 0;
    let mut row_end = [f64::MIN; MARK_ROWS];
    for m in markers {
        let x = f.x(m.t);
        let (col, label) = match m.kind {
            MarkerKind::Section => ("#333333", m.text.clone()),
            MarkerKind::Fermata => ("#1a7f8e", m.text.clone()),
            MarkerKind::Wait => ("#b9770e", m.text.clone()),
            MarkerKind::Warning => {
                warning_no += 1;
                ("#d4001a", format!("\u{26A0}{warning_no}"))
            }
        };
        // A marker about one division spans its lane only.
        let lane = m.division.and_then(|d| lanes.iter().find(|l| l.0 == d));
        let (y1, y2, label_y) = match lane {
            Some(l) => (l.3, l.3 + l.4, l.3 + 10.0),
            None => {
                // Roughly 6 px a character at this size.
                let width = label.chars().count() as f64 * 6.0 + 6.0;
                let row = row_end.iter().position(|&e| e <= x).unwrap_or(MARK_ROWS - 1);
                row_end[row] = x + width;
                let y = top + MARK_ROW * (row as f64 + 1.0);
                (y - MARK_ROW + 2.0, bottom, y)
            }
        };
        let _ = writeln!(
            s,
            "<g class=\"marker {}\"><title>{}</title><line x1=\"{x:.1}\" y1=\"{y1:.1}\" x2=\"{x:.1}\" y2=\"{y2:.1}\" \
             stroke=\"{col}\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{col}\" \
             font-weight=\"bold\">{}</text></g>",
            m.kind.class(),
            esc(&m.text),
            x + 2.0,
            label_y,
            esc(&label)
        );
    }
    s.push_str("</g>\n");
}

fn warning_list(s: &mut String, placed: &[&Marker], unplaced: &[String], top: f64) {
    if placed.is_empty() && unplaced.is_empty() {
        return;
    }
    let _ = writeln!(s, "<g class=\"warnings\" fill=\"#d4001a\" font-size=\"11\">");
    let mut y = top;
    for (i, m) in placed.iter().enumerate() {
        let _ = writeln!(s, "<text x=\"8\" y=\"{y:.1}\">\u{26A0}{} at {}: {}</text>", i + 1, m.t, esc(&m.text));
        y += 16.0;
    }
    for w in unplaced {
        let _ = writeln!(s, "<text x=\"8\" y=\"{y:.1}\">\u{26A0} {}</text>", esc(w));
        y += 16.0;
    }
    s.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn names_cannot_become_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(esc("a\u{1b}[31mb\u{0}"), "a\u{FFFD}[31mb\u{FFFD}");
        // a direction override (the picture is also printed on the terminal): replaced too
        assert_eq!(esc("Sw \u{202e}8 nepO\u{9b}"), "Sw \u{FFFD}8 nepO\u{FFFD}");
    }
}
