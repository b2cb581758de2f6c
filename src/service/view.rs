//! Drawing the service view: a pure function from a [`Screen`] (plain data the control loop
//! fills in) to a ratatui frame, so that the layout is tested with ratatui's test backend and
//! the live program only has to keep the `Screen` up to date.
//!
//! Long lines (a note, an error) wrap instead of being cut. Below 70 columns or 24 rows the
//! layout is compact: the order of service shows titles only (the chosen one in full in the
//! boxes below) and the help line shrinks to "? keys". An overlay (the key help, the remote's
//! address and QR code) covers the view until a key is pressed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};

/// One row of the order of service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub title: String,
    /// "3 verses, play-over 11-14, 3:05".
    pub summary: String,
    /// Operator changes shown beside it: "95%", "+1", "preset f".
    pub changes: String,
    pub playing: bool,
    /// Played to the end.
    pub done: bool,
    /// Played in part (stopped).
    pub stopped: bool,
}

/// How loud the status is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tone {
    #[default]
    Normal,
    /// Something the operator must act on (a fermata wait, a question).
    Attention,
    /// Something wrong (output lost).
    Alarm,
}

/// A box drawn over the view (help, the remote's QR code) until a key is pressed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    pub title: String,
    pub lines: Vec<String>,
    /// Drawn white on black whatever the terminal's colours (a QR code needs it).
    pub inverse: bool,
}

/// Everything the view shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Screen {
    /// "Sunday Eucharist — St Mary's Church, Fishponds → port:WIDI Bud Pro".
    pub header: String,
    pub rows: Vec<Row>,
    pub selected: usize,
    /// Lines of the "Now playing" box (what, where, tempo, registration).
    pub now: Vec<String>,
    /// The state line under it ("PLAYING", "WAITING AT A FERMATA — Enter continues", …).
    pub state: String,
    pub tone: Tone,
    /// Lines of the "Next" box.
    pub next: Vec<String>,
    /// The last message (a change made, an error).
    pub message: String,
    pub help: String,
    /// The help line on a small terminal.
    pub short_help: String,
    /// "remote: http://192.168.1.20:8080/ · PIN 123456 · w shows the QR code".
    pub remote: String,
    pub overlay: Option<Overlay>,
}

/// Rows a text takes at `width` columns, wrapped.
fn wrapped_height(lines: &[String], width: u16) -> u16 {
    let w = usize::from(width.max(1));
    lines.iter().map(|l| l.chars().count().max(1).div_ceil(w) as u16).sum()
}

/// True when the terminal is too small for the full layout.
pub fn is_compact(area: Rect) -> bool {
    area.width < 70 || area.height < 24
}

impl Screen {
    /// The screen with every text made safe to draw ([`crate::text::shown`]): titles, names and
    /// notes come from files.
    pub fn shown(&self) -> Screen {
        let t = |s: &String| crate::text::shown(s).into_owned();
        Screen {
            header: t(&self.header),
            rows: self
                .rows
                .iter()
                .map(|r| Row { title: t(&r.title), summary: t(&r.summary), changes: t(&r.changes), ..r.clone() })
                .collect(),
            now: self.now.iter().map(t).collect(),
            state: t(&self.state),
            next: self.next.iter().map(t).collect(),
            message: t(&self.message),
            help: t(&self.help),
            short_help: t(&self.short_help),
            remote: t(&self.remote),
            // The QR code's lines are block characters the view made itself; its title may hold
            // a name.
            overlay: self.overlay.as_ref().map(|o| Overlay { title: t(&o.title), ..o.clone() }),
            ..self.clone()
        }
    }
}

/// Draws the screen (its text shown escaped: [`Screen::shown`]).
pub fn draw(f: &mut Frame, s: &Screen) {
    let s = &s.shown();
    let area = f.area();
    let compact = is_compact(area);
    let inner = area.width.saturating_sub(2);
    let mut now_lines = s.now.clone();
    now_lines.push(s.state.clone());
    let now_height = wrapped_height(&now_lines, inner) + 2;
    let next_height = wrapped_height(&s.next, inner) + 2;
    let help = if compact { &s.short_help } else { &s.help };
    let help_height = wrapped_height(std::slice::from_ref(help), area.width).min(3);
    let msg_height =
        if s.message.is_empty() { 0 } else { wrapped_height(std::slice::from_ref(&s.message), area.width).min(4) };
    let remote_height =
        if s.remote.is_empty() { 0 } else { wrapped_height(std::slice::from_ref(&s.remote), area.width).min(2) };
    let fixed = now_height + next_height + help_height + msg_height + remote_height;
    // The list gets what is left (at least 3 rows: one item and its border).
    let rows_height =
        (s.rows.len() as u16 + 2).min(if compact { 8 } else { 12 }).min(area.height.saturating_sub(fixed)).max(3);
    let [list_area, now_area, next_area, _, remote_area, msg_area, help_area] = Layout::vertical([
        Constraint::Length(rows_height),
        Constraint::Length(now_height),
        Constraint::Length(next_height),
        Constraint::Min(0),
        Constraint::Length(remote_height),
        Constraint::Length(msg_height),
        Constraint::Length(help_height),
    ])
    .areas(area);

    draw_rows(f, s, list_area, compact);
    let state_style = match s.tone {
        Tone::Normal => Style::default().add_modifier(Modifier::BOLD),
        Tone::Attention => Style::default().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD),
        Tone::Alarm => Style::default().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
    };
    let mut now: Vec<Line> = s.now.iter().map(|l| Line::raw(l.clone())).collect();
    now.push(Line::styled(s.state.clone(), state_style));
    let boxed = |title: &'static str| Block::default().borders(Borders::ALL).title(title);
    f.render_widget(Paragraph::new(now).wrap(Wrap { trim: false }).block(boxed(" Now playing ")), now_area);
    let next: Vec<Line> = s.next.iter().map(|l| Line::raw(l.clone())).collect();
    f.render_widget(Paragraph::new(next).wrap(Wrap { trim: false }).block(boxed(" Next ")), next_area);
    let plain =
        |text: &str, style: Style| Paragraph::new(Line::styled(text.to_string(), style)).wrap(Wrap { trim: false });
    f.render_widget(plain(&s.remote, Style::default().fg(Color::Green)), remote_area);
    f.render_widget(plain(&s.message, Style::default().fg(Color::Cyan)), msg_area);
    f.render_widget(plain(help, Style::default().add_modifier(Modifier::DIM)), help_area);
    if let Some(o) = &s.overlay {
        draw_overlay(f, o);
    }
}

/// The order of service: marks, numbers, titles (and, when there is room, summaries).
fn draw_rows(f: &mut Frame, s: &Screen, area: Rect, compact: bool) {
    let items: Vec<ListItem> = s
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mark = if r.playing {
                "▶ "
            } else if r.done {
                "✓ "
            } else if r.stopped {
                "◐ "
            } else {
                "  "
            };
            let mut spans = vec![
                Span::raw(mark),
                Span::styled(format!("{}. {}", i + 1, r.title), Style::default().add_modifier(Modifier::BOLD)),
            ];
            if !compact {
                spans.push(Span::raw(format!("  ({})", r.summary)));
                if !r.changes.is_empty() {
                    spans.push(Span::styled(format!("  [{}]", r.changes), Style::default().fg(Color::Yellow)));
                }
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let title = if compact { " Order of service ".to_string() } else { format!(" {} ", s.header) };
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(title))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = ListState::default().with_selected(Some(s.selected));
    f.render_stateful_widget(list, area, &mut state);
}

fn draw_overlay(f: &mut Frame, o: &Overlay) {
    let area = f.area();
    let width = (o.lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u16 + 2).min(area.width);
    let height = (wrapped_height(&o.lines, width.saturating_sub(2)) + 2).min(area.height);
    let r = Rect { x: (area.width - width) / 2, y: (area.height - height) / 2, width, height };
    let style = if o.inverse { Style::default().fg(Color::White).bg(Color::Black) } else { Style::default() };
    let lines: Vec<Line> = o.lines.iter().map(|l| Line::raw(l.clone())).collect();
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .style(style)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(format!(" {} ", o.title))),
        r,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn text(t: &Terminal<TestBackend>) -> Vec<String> {
        let b = t.backend().buffer();
        (0..b.area.height)
            .map(|y| (0..b.area.width).map(|x| b[(x, y)].symbol().to_string()).collect::<String>())
            .collect()
    }

    #[test]
    fn shows_the_list_the_state_and_what_comes_next() {
        let s = Screen {
            header: "Sunday — Test organ → null".into(),
            rows: vec![
                Row { title: "Opening hymn".into(), summary: "3 verses".into(), done: true, ..Default::default() },
                Row {
                    title: "Gradual".into(),
                    summary: "1 verse".into(),
                    changes: "+1".into(),
                    playing: true,
                    ..Default::default()
                },
            ],
            selected: 1,
            now: vec!["Gradual".into(), "verse 1 of 1, bar 3 of 8".into()],
            state: "WAITING AT A FERMATA — Enter continues".into(),
            tone: Tone::Attention,
            next: vec!["then: end of the service".into()],
            message: "tempo 95%".into(),
            help: "Enter start · s stop · q quit".into(),
            short_help: "? keys".into(),
            ..Screen::default()
        };
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
        t.draw(|f| draw(f, &s)).unwrap();
        let lines = text(&t);
        let all = lines.join("\n");
        assert!(lines[0].contains("Sunday — Test organ → null"), "{all}");
        assert!(lines[1].contains("✓ 1. Opening hymn  (3 verses)"), "{all}");
        assert!(lines[2].contains("> ▶ 2. Gradual  (1 verse)  [+1]"), "{all}");
        assert!(all.contains("verse 1 of 1, bar 3 of 8"));
        assert!(all.contains("WAITING AT A FERMATA — Enter continues"));
        assert!(all.contains("then: end of the service"));
        assert!(lines[22].starts_with("tempo 95%"), "{all}");
        assert!(lines[23].starts_with("Enter start · s stop · q quit"), "{all}");
    }

    #[test]
    fn names_from_files_are_drawn_escaped() {
        let evil = "Hymn\u{1b}[2J\u{1b}[1;1Horgan: played\u{9b}0m";
        let s = Screen {
            header: format!("{evil} — organ"),
            rows: vec![Row { title: evil.into(), summary: "1 verse".into(), ..Default::default() }],
            now: vec![evil.into()],
            next: vec![format!("then: {evil}")],
            message: evil.into(),
            ..Default::default()
        };
        let mut t = Terminal::new(TestBackend::new(100, 20)).unwrap();
        t.draw(|f| draw(f, &s)).unwrap();
        let all = text(&t).join("\n");
        assert!(all.contains("1. Hymn\\x1B[2J\\x1B[1;1Horgan: played\\u{9B}0m"), "{all}");
        assert!(!all.contains(['\u{1b}', '\u{9b}']), "{all}");
    }
}

#[cfg(test)]
mod small_terminal_tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn a_small_terminal_gets_the_compact_layout_and_long_lines_wrap() {
        let long = "cannot start: port:WIDI Bud Pro: no such MIDI port; the ports are: Midi Through Port-0, USB MIDI Interface";
        let s = Screen {
            header: "Sunday — Test organ → null".into(),
            rows: (1..=6)
                .map(|i| Row {
                    title: format!("Hymn number {i} with a long title"),
                    summary: "3 verses, 3:05".into(),
                    ..Default::default()
                })
                .collect(),
            selected: 5,
            now: vec!["nothing is playing".into()],
            state: "READY".into(),
            next: vec!["Enter starts 6. Hymn number 6 with a long title (3 verses)".into()],
            message: long.into(),
            help: "a very long help line that would not fit".into(),
            short_help: "? keys".into(),
            ..Screen::default()
        };
        let mut t = Terminal::new(TestBackend::new(50, 20)).unwrap();
        t.draw(|f| draw(f, &s)).unwrap();
        let b = t.backend().buffer();
        let lines: Vec<String> =
            (0..b.area.height).map(|y| (0..b.area.width).map(|x| b[(x, y)].symbol().to_string()).collect()).collect();
        let all = lines.join("\n");
        assert!(
            lines.iter().any(|l| l.starts_with("│>") && l.contains("6. Hymn number 6 with a long title")),
            "the chosen row is visible: {all}"
        );
        assert!(!all.contains("(3 verses, 3:05)"), "no summaries in the compact list: {all}");
        // The message wraps: its last word is on screen.
        assert!(lines.iter().any(|l| l.trim_end() == "Interface"), "{all}");
        assert!(lines[19].starts_with("? keys"), "{all}");
        assert!(is_compact(Rect::new(0, 0, 50, 20)) && !is_compact(Rect::new(0, 0, 100, 30)));
    }
}
