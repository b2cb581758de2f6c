//! Drawing the service view: a pure function from a [`Screen`] (plain data the control loop
//! fills in) to a ratatui frame, so that the layout is tested with ratatui's test backend and
//! the live program only has to keep the `Screen` up to date.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};

/// One row of the order of service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub title: String,
    /// "3 verses, play-over 11-14".
    pub summary: String,
    /// Operator changes shown beside it: "95%", "+1", "preset f".
    pub changes: String,
    pub playing: bool,
    pub done: bool,
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
            ..self.clone()
        }
    }
}

/// Draws the screen (its text shown escaped: [`Screen::shown`]).
pub fn draw(f: &mut Frame, s: &Screen) {
    let s = &s.shown();
    let rows_height = (s.rows.len() as u16 + 2).clamp(3, 12);
    let width = f.area().width.max(1) as usize;
    let help_height = s.help.chars().count().div_ceil(width).clamp(1, 3) as u16;
    let [list_area, now_area, next_area, _, msg_area, help_area] = Layout::vertical([
        Constraint::Length(rows_height),
        Constraint::Length(s.now.len() as u16 + 3),
        Constraint::Length(s.next.len() as u16 + 2),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(help_height),
    ])
    .areas(f.area());

    let items: Vec<ListItem> = s
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mark = if r.playing {
                "▶ "
            } else if r.done {
                "✓ "
            } else {
                "  "
            };
            let mut spans = vec![
                Span::raw(mark),
                Span::styled(format!("{}. {}", i + 1, r.title), Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(format!("  ({})", r.summary)),
            ];
            if !r.changes.is_empty() {
                spans.push(Span::styled(format!("  [{}]", r.changes), Style::default().fg(Color::Yellow)));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(format!(" {} ", s.header)))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = ListState::default().with_selected(Some(s.selected));
    f.render_stateful_widget(list, list_area, &mut state);

    let state_style = match s.tone {
        Tone::Normal => Style::default().add_modifier(Modifier::BOLD),
        Tone::Attention => Style::default().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD),
        Tone::Alarm => Style::default().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
    };
    let mut now: Vec<Line> = s.now.iter().map(|l| Line::raw(l.clone())).collect();
    now.push(Line::styled(s.state.clone(), state_style));
    f.render_widget(Paragraph::new(now).block(Block::default().borders(Borders::ALL).title(" Now playing ")), now_area);
    let next: Vec<Line> = s.next.iter().map(|l| Line::raw(l.clone())).collect();
    f.render_widget(
        Paragraph::new(next).wrap(Wrap { trim: true }).block(Block::default().borders(Borders::ALL).title(" Next ")),
        next_area,
    );
    f.render_widget(Paragraph::new(Line::styled(s.message.clone(), Style::default().fg(Color::Cyan))), msg_area);
    f.render_widget(
        Paragraph::new(Line::styled(s.help.clone(), Style::default().add_modifier(Modifier::DIM)))
            .wrap(Wrap { trim: true }),
        help_area,
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
        };
        let mut t = Terminal::new(TestBackend::new(70, 20)).unwrap();
        t.draw(|f| draw(f, &s)).unwrap();
        let lines = text(&t);
        let all = lines.join("\n");
        assert!(lines[0].contains("Sunday — Test organ → null"), "{all}");
        assert!(lines[1].contains("✓ 1. Opening hymn  (3 verses)"), "{all}");
        assert!(lines[2].contains("> ▶ 2. Gradual  (1 verse)  [+1]"), "{all}");
        assert!(all.contains("verse 1 of 1, bar 3 of 8"));
        assert!(all.contains("WAITING AT A FERMATA — Enter continues"));
        assert!(all.contains("then: end of the service"));
        assert!(lines[18].starts_with("tempo 95%"), "{all}");
        assert!(lines[19].starts_with("Enter start · s stop · q quit"), "{all}");
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
