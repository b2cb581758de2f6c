//! The organ file as `organ learn` edits it: a format-preserving TOML document (toml_edit), so
//! the user's comments, order and layout stay as they were; only the learned keys (`channel`,
//! `compass`, `on`, `off`, `[cancel] message`) are written, each with a short comment saying
//! what was learned.
//!
//! A file being learned need not be a complete organ definition yet: a division without its
//! channel, a stop without `on`, are what is left to learn. Runs on the control thread.

use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, InlineTable, Item as TomlItem, Table, Value, value};

use super::LearnError;
use super::classify::{Binding, Form};
use crate::grandorgue::names::{abbreviates, normalize};
use crate::midi::{Channel, HexBytes};
use crate::organ::RemoteAction;
use crate::text::normalize_name;

/// The arrays of controls, in the order the organ definition loads them.
pub const CONTROL_ARRAYS: [&str; 3] = ["stop", "coupler", "tremulant"];

/// Something `organ learn` asks the organist to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Press the lowest and then the highest key of this division.
    Division(String),
    /// Draw and put in this control: its array (`stop`, `coupler`, `tremulant`), index in it,
    /// and name.
    Control { array: &'static str, index: usize, name: String },
    /// Press the General Cancel piston.
    Cancel,
    /// Press the piston (or foot switch) that is to do this in `organ service` (`[remote]`).
    Remote(RemoteAction),
}

impl Item {
    pub fn name(&self) -> &str {
        match self {
            Item::Division(n) => n,
            Item::Control { name, .. } => name,
            Item::Cancel => "General Cancel",
            Item::Remote(a) => remote_name(*a),
        }
    }
}

/// `remote go`, `remote pause` …: how `organ learn` names a `[remote]` piston (and how
/// `--only` picks it; `--only remote` picks them all).
pub fn remote_name(a: RemoteAction) -> &'static str {
    match a {
        RemoteAction::Go => "remote go",
        RemoteAction::Pause => "remote pause",
        RemoteAction::Stop => "remote stop",
        RemoteAction::Next => "remote next",
        RemoteAction::Previous => "remote previous",
    }
}

/// The organ file being learned.
#[derive(Clone)]
pub struct OrganDoc {
    pub path: PathBuf,
    pub doc: DocumentMut,
}

const REJECTED: &str = "# organ learn --verify: REJECTED";

impl OrganDoc {
    /// Reads an organ file.
    ///
    /// # Errors
    /// Unreadable, or not TOML.
    pub fn load(path: &Path) -> Result<OrganDoc, LearnError> {
        let file = path.display().to_string();
        // A regular file of bounded size only (crate::files).
        let text = crate::files::read_user_text(path, crate::files::FileKind::Organ)
            .map_err(|e| LearnError::Io { file: file.clone(), error: e.problem.to_string() })?;
        OrganDoc::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<OrganDoc, LearnError> {
        let doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            let at = e.span().map(|s| crate::text::line_col(text, s.start)).unwrap_or((1, 1));
            LearnError::Toml {
                file: format!("{}:{}:{}", path.display(), at.0, at.1),
                error: e.message().trim().replace('\n', " "),
            }
        })?;
        Ok(OrganDoc { path: path.to_path_buf(), doc })
    }

    /// A new organ file from division names and control names: `great`, `swell`, `pedal`;
    /// `Gt Principal 8` (a stop whose first word abbreviates a division), `swell:Gedackt 8` (a
    /// stop on the division named), `Sw to Gt` (a coupler), `Sw Tremulant` (a tremulant).
    ///
    /// # Errors
    /// A control whose division cannot be told, or a name given twice.
    pub fn skeleton(
        path: &Path,
        name: &str,
        divisions: &[String],
        controls: &[String],
    ) -> Result<OrganDoc, LearnError> {
        let mut text = format!(
            "# Organ definition started by `organ learn`; see organs/st-marys.toml for every key.\nname = {}\n",
            toml_edit::Value::from(name)
        );
        let mut codes: Vec<char> = Vec::new();
        let divs: Vec<String> = divisions.iter().map(|d| d.trim().to_lowercase()).filter(|d| !d.is_empty()).collect();
        for d in &divs {
            let code = d
                .chars()
                .chain('A'..='Z')
                .map(|c| c.to_ascii_uppercase())
                .find(|c| c.is_ascii_alphabetic() && !codes.contains(c))
                .expect("26 letters");
            codes.push(code);
            text.push_str(&format!(
                "\n[division.{}]\ncode = \"{code}\"\n",
                toml_edit::Key::new(d.as_str()).display_repr()
            ));
        }
        let mut seen: Vec<String> = Vec::new();
        for raw in controls.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
            let (explicit, cname) = match raw.split_once(':') {
                Some((d, n)) => (Some(d.trim().to_lowercase()), n.trim()),
                None => (None, raw),
            };
            if seen.contains(&normalize_name(cname)) {
                return Err(LearnError::Usage(format!("\"{cname}\" is given twice")));
            }
            seen.push(normalize_name(cname));
            let n = normalize(cname);
            let words: Vec<&str> = n.split(' ').collect();
            let abbreviated =
                |w: &str| divs.iter().zip(&codes).find(|(d, c)| abbreviates(w, d, Some(**c))).map(|x| x.0);
            let q = toml_edit::Value::from(cname);
            if let Some(i) = words.iter().position(|w| *w == "to")
                && i > 0
                && let (Some(from), Some(to)) =
                    (abbreviated(words[i - 1]), words.get(i + 1).and_then(|w| abbreviated(w)))
            {
                text.push_str(&format!("\n[[coupler]]\nname = {q}\nfrom = \"{from}\"\nto = \"{to}\"\n"));
                continue;
            }
            let division = match &explicit {
                Some(d) if divs.contains(d) => Some(d.clone()),
                Some(d) => {
                    return Err(LearnError::Usage(format!(
                        "\"{raw}\": no division \"{d}\" (the divisions are {})",
                        divs.join(", ")
                    )));
                }
                None => words.first().and_then(|w| abbreviated(w)).cloned(),
            };
            let array = if n.contains("trem") { "tremulant" } else { "stop" };
            match division {
                Some(d) => text.push_str(&format!("\n[[{array}]]\nname = {q}\ndivision = \"{d}\"\n")),
                None if array == "tremulant" => text.push_str(&format!("\n[[tremulant]]\nname = {q}\n")),
                None => {
                    return Err(LearnError::Usage(format!(
                        "\"{cname}\": which division? start the name with one (e.g. \"Gt {cname}\") or write \"great:{cname}\""
                    )));
                }
            }
        }
        OrganDoc::parse(path, &text)
    }

    /// What is left to learn (or everything with `all`, or only the names in `only`), in the
    /// order of the file: divisions, stops, couplers, tremulants, then the General Cancel (left
    /// to learn when the file has no `[cancel]` table; a table without `message` says the
    /// console has none).
    pub fn items(&self, all: bool, only: &[String]) -> Vec<Item> {
        let wanted = |name: &str, known: bool| {
            if only.is_empty() { all || !known } else { only.iter().any(|o| normalize_name(o) == normalize_name(name)) }
        };
        let mut items = Vec::new();
        if let Some(divs) = self.doc.get("division").and_then(TomlItem::as_table_like) {
            for (name, d) in divs.iter() {
                if wanted(name, d.get("channel").is_some()) {
                    items.push(Item::Division(name.to_string()));
                }
            }
        }
        for array in CONTROL_ARRAYS {
            if let Some(a) = self.doc.get(array).and_then(TomlItem::as_array_of_tables) {
                for (index, t) in a.iter().enumerate() {
                    let name = t.get("name").and_then(TomlItem::as_str).unwrap_or("?").to_string();
                    if wanted(&name, t.get("on").is_some()) {
                        items.push(Item::Control { array, index, name });
                    }
                }
            }
        }
        // A [cancel] table without a message says the console has no General Cancel: not asked.
        let cancel_known = self.doc.get("cancel").is_some();
        if wanted("General Cancel", cancel_known) {
            items.push(Item::Cancel);
        }
        // The remote's pistons only when asked for: not every console has spare ones.
        let all_remote = only.iter().any(|o| normalize_name(o) == "remote");
        for a in RemoteAction::ALL {
            if all_remote || only.iter().any(|o| normalize_name(o) == normalize_name(remote_name(a))) {
                items.push(Item::Remote(a));
            }
        }
        items
    }

    /// The `[remote]` pistons already written: (name, bytes of its messages).
    pub fn remote_messages(&self) -> Vec<(String, Vec<Vec<u8>>)> {
        let Some(t) = self.doc.get("remote").and_then(TomlItem::as_table_like) else { return Vec::new() };
        RemoteAction::ALL
            .iter()
            .filter_map(|a| {
                let v = t.get(a.key())?.as_value()?;
                let (msgs, _) = crate::organ::parse_message_text(&v.to_string(), false).ok()?;
                Some((remote_name(*a).to_string(), msgs.iter().map(|m| m.as_bytes().to_vec()).collect()))
            })
            .collect()
    }

    /// The General Cancel as written, if any.
    pub fn cancel_message(&self) -> Option<Vec<Vec<u8>>> {
        let v = self.doc.get("cancel")?.get("message")?.as_value()?;
        let (msgs, _) = crate::organ::parse_message_text(&v.to_string(), false).ok()?;
        Some(msgs.iter().map(|m| m.as_bytes().to_vec()).collect())
    }

    /// Writes a `[remote]` piston.
    pub fn set_remote(&mut self, action: RemoteAction, form: &Form) {
        if self.doc.get("remote").and_then(TomlItem::as_table_like).is_none() {
            self.doc.insert("remote", TomlItem::Table(Table::new()));
        }
        let r = self.doc.get_mut("remote").and_then(TomlItem::as_table_like_mut).expect("just made");
        let mut v = Value::InlineTable(inline(form));
        v.decor_mut()
            .set_suffix(format!("  # learned: the piston that does \"{}\" in organ service", action.describe()));
        r.insert(action.key(), TomlItem::Value(v));
    }

    /// The messages controls already have (`on`, and `off` where written), for flagging a
    /// duplicate: (name, bytes of each message form).
    pub fn known_messages(&self) -> Vec<(String, Vec<Vec<Vec<u8>>>)> {
        let mut out = Vec::new();
        for array in CONTROL_ARRAYS {
            let Some(a) = self.doc.get(array).and_then(TomlItem::as_array_of_tables) else { continue };
            for t in a.iter() {
                let name = t.get("name").and_then(TomlItem::as_str).unwrap_or("?").to_string();
                let parsed = |k: &str| {
                    t.get(k)
                        .and_then(TomlItem::as_value)
                        .and_then(|v| crate::organ::parse_message_text(&v.to_string(), k == "off").ok())
                };
                let bytes = |ms: &[crate::midi::Message]| ms.iter().map(|m| m.as_bytes().to_vec()).collect::<Vec<_>>();
                let mut msgs: Vec<Vec<Vec<u8>>> = Vec::new();
                if let Some((on, inferred)) = parsed("on") {
                    msgs.push(bytes(&on));
                    match parsed("off") {
                        Some((off, _)) => msgs.push(bytes(&off)),
                        None => msgs.extend(inferred.as_deref().map(bytes)),
                    }
                }
                if !msgs.is_empty() {
                    out.push((name, msgs));
                }
            }
        }
        out
    }

    fn control_table(&mut self, array: &str, index: usize) -> Option<&mut Table> {
        self.doc.get_mut(array)?.as_array_of_tables_mut()?.get_mut(index)
    }

    /// Writes a division's channel and compass.
    pub fn set_division(&mut self, name: &str, channel: Channel, compass: (u8, u8)) {
        let Some(t) = self.doc.get_mut("division").and_then(|d| d.get_mut(name)).and_then(TomlItem::as_table_like_mut)
        else {
            return;
        };
        t.insert("channel", value(i64::from(channel.user())));
        let mut a = Array::new();
        a.push(i64::from(compass.0));
        a.push(i64::from(compass.1));
        let mut v = Value::Array(a);
        v.decor_mut().set_suffix(format!("  # learned: keys {}-{}", compass.0, compass.1));
        t.insert("compass", TomlItem::Value(v));
    }

    /// Writes a control's `on` (with what was learned as a comment) and `off` (removed when the
    /// organ definition infers it).
    pub fn set_control(&mut self, array: &str, index: usize, b: &Binding) {
        let Some(t) = self.control_table(array, index) else { return };
        let mut on = Value::InlineTable(inline(&b.on));
        on.decor_mut().set_suffix(format!("  # learned: {}", b.dialect));
        t.insert("on", TomlItem::Value(on));
        match &b.off {
            // An `off` in the note form is read as a note-off; a console that sends a note-on to
            // put a stop in (a toggle, or another key) has its bytes written as they came.
            Some(Form::Note { channel, key, velocity }) => {
                let mut t2 = InlineTable::new();
                t2.insert("raw", HexBytes(&[0x90 | channel.wire(), *key, *velocity]).to_string().into());
                t2.fmt();
                t.insert("off", TomlItem::Value(Value::InlineTable(t2)));
            }
            Some(off) => {
                t.insert("off", TomlItem::Value(Value::InlineTable(inline(off))));
            }
            None => {
                t.remove("off");
            }
        }
    }

    /// Writes the General Cancel (`[cancel] message`).
    pub fn set_cancel(&mut self, form: &Form) {
        if self.doc.get("cancel").and_then(TomlItem::as_table_like).is_none() {
            self.doc.insert("cancel", TomlItem::Table(Table::new()));
        }
        let c = self.doc.get_mut("cancel").and_then(TomlItem::as_table_like_mut).expect("just made");
        let mut v = Value::InlineTable(inline(form));
        v.decor_mut().set_suffix("  # learned: the General Cancel piston");
        c.insert("message", TomlItem::Value(v));
    }

    /// Marks (or unmarks) a control as rejected by `--verify`, as a comment above its table.
    pub fn mark_rejected(&mut self, name: &str, rejected: bool) {
        for array in CONTROL_ARRAYS {
            let Some(a) = self.doc.get_mut(array).and_then(TomlItem::as_array_of_tables_mut) else { continue };
            for t in a.iter_mut() {
                if t.get("name").and_then(TomlItem::as_str).is_none_or(|n| normalize_name(n) != normalize_name(name)) {
                    continue;
                }
                let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
                let mut kept: String =
                    prefix.lines().filter(|l| !l.starts_with(REJECTED)).map(|l| format!("{l}\n")).collect();
                if rejected {
                    let quoted = toml_edit::Value::from(name);
                    kept.push_str(&format!("{REJECTED}: the organist saw no change; relearn with --only {quoted}\n"));
                }
                if prefix.is_empty() && !rejected {
                    continue;
                }
                // Keep the blank line that usually separates tables.
                if !kept.starts_with('\n') && prefix.starts_with('\n') {
                    kept.insert(0, '\n');
                }
                t.decor_mut().set_prefix(kept);
            }
        }
    }

    /// The document's text.
    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    /// Writes the file: to a new temporary file beside it (never through a link planted at a
    /// predictable name: [`crate::files::create_beside`]), then renamed over it, so an
    /// interruption never leaves half a file. An organ file that is a symbolic link is not
    /// replaced by a plain file: that is refused.
    ///
    /// # Errors
    /// The file cannot be written, or is a symbolic link.
    pub fn save(&self) -> Result<(), LearnError> {
        use std::io::Write;
        let file = self.path.display().to_string();
        let problem = |p: crate::files::FileProblem| LearnError::Io { file: file.clone(), error: p.to_string() };
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(problem(crate::files::FileProblem::Link));
        }
        let (mut f, tmp) = crate::files::create_beside(&self.path).map_err(problem)?;
        if let Err(e) = f.write_all(self.text().as_bytes()).and_then(|()| f.sync_all()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(LearnError::Io { file: file.clone(), error: e.to_string() });
        }
        crate::files::rename_into_place(&tmp, &self.path).map_err(problem)
    }
}

/// A message form as an inline table of the organ definition.
pub fn inline(f: &Form) -> InlineTable {
    let mut t = InlineTable::new();
    match f {
        Form::Note { channel, key, velocity } => {
            t.insert("note", i64::from(*key).into());
            if *velocity != 127 {
                t.insert("velocity", i64::from(*velocity).into());
            }
            t.insert("channel", i64::from(channel.user()).into());
        }
        Form::Cc { channel, cc, value } => {
            t.insert("cc", i64::from(*cc).into());
            t.insert("value", i64::from(*value).into());
            t.insert("channel", i64::from(channel.user()).into());
        }
        Form::Program { channel, program } => {
            t.insert("program", i64::from(*program).into());
            t.insert("channel", i64::from(channel.user()).into());
        }
        Form::Nrpn { channel, param, value } => {
            t.insert("nrpn", i64::from(*param).into());
            t.insert("value", i64::from(*value).into());
            t.insert("channel", i64::from(channel.user()).into());
        }
        Form::Sysex(b) => {
            t.insert("sysex", HexBytes(b).to_string().into());
        }
        Form::Raw(v) => {
            let all: Vec<u8> = v.iter().flatten().copied().collect();
            t.insert("raw", HexBytes(&all).to_string().into());
        }
    }
    t.fmt();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# My organ — hand written.
name = "Test"   # the church

[division.great]   # the lower manual
code = "G"

[division.swell]
code = "S"
channel = 3

# The principal chorus
[[stop]]
name = "Gt Principal 8"
division = "great"

[[stop]]
name = "Sw Gedackt 8"
division = "swell"
on = { note = 40, channel = 16 }
"#;

    #[test]
    fn lists_what_is_left_to_learn() {
        let d = OrganDoc::parse(Path::new("t.toml"), FILE).unwrap();
        let names: Vec<String> = d.items(false, &[]).iter().map(|i| i.name().to_string()).collect();
        assert_eq!(names, ["great", "Gt Principal 8", "General Cancel"]);
        let all: Vec<String> = d.items(true, &[]).iter().map(|i| i.name().to_string()).collect();
        assert_eq!(all, ["great", "swell", "Gt Principal 8", "Sw Gedackt 8", "General Cancel"]);
        let only = d.items(false, &["sw gedackt 8".to_string()]);
        assert_eq!(only, vec![Item::Control { array: "stop", index: 1, name: "Sw Gedackt 8".into() }]);
        assert_eq!(
            d.known_messages(),
            vec![("Sw Gedackt 8".to_string(), vec![vec![vec![0x9F, 40, 127]], vec![vec![0x8F, 40, 0]]])]
        );
    }

    /// A console whose stop toggles on a note-on: the off is written as its bytes, since an
    /// `off` in the note form is a note-off; the organ definition then sees a toggle.
    #[test]
    fn a_note_toggle_is_written_so_that_it_stays_a_toggle() {
        let mut d = OrganDoc::parse(Path::new("t.toml"), FILE).unwrap();
        d.set_division("great", Channel::from_user(2).unwrap(), (36, 96));
        let note = Form::Note { channel: Channel::from_user(16).unwrap(), key: 36, velocity: 127 };
        let b = Binding { on: note.clone(), off: Some(note), toggle: true, dialect: "note toggle".into(), note: None };
        d.set_control("stop", 0, &b);
        d.set_cancel(&Form::Sysex(vec![0xF0, 0x00, 0x4A, 0x7F, 0xF7]));
        let text = d.text();
        assert!(
            text.contains("on = { note = 36, channel = 16 }  # learned: note toggle\noff = { raw = \"9F 24 7F\" }\n"),
            "{text}"
        );
        let organ = crate::organ::Organ::from_toml(&text, "t.toml").unwrap();
        let c = &organ.controls[0];
        assert!(c.toggle, "still a toggle");
        assert_eq!(c.off[0].as_bytes(), &[0x9F, 36, 127]);
        assert_eq!(d.known_messages()[0].1, vec![vec![vec![0x9F, 36, 127]], vec![vec![0x9F, 36, 127]]]);
    }

    #[test]
    fn writes_keys_and_keeps_comments() {
        let mut d = OrganDoc::parse(Path::new("t.toml"), FILE).unwrap();
        d.set_division("great", Channel::from_user(2).unwrap(), (36, 96));
        let b = Binding {
            on: Form::Program { channel: Channel::from_user(12).unwrap(), program: 5 },
            off: Some(Form::Program { channel: Channel::from_user(12).unwrap(), program: 5 }),
            toggle: true,
            dialect: "program change toggle".into(),
            note: None,
        };
        d.set_control("stop", 0, &b);
        d.set_cancel(&Form::Sysex(vec![0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, 0x7F, 0xF7]));
        let text = d.text();
        for want in [
            "# My organ — hand written.\nname = \"Test\"   # the church\n",
            "[division.great]   # the lower manual\ncode = \"G\"\nchannel = 2\ncompass = [36, 96]  # learned: keys 36-96\n",
            "# The principal chorus\n[[stop]]\nname = \"Gt Principal 8\"\ndivision = \"great\"\non = { program = 5, channel = 12 }  # learned: program change toggle\noff = { program = 5, channel = 12 }\n",
            "[cancel]\nmessage = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }  # learned: the General Cancel piston\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let organ = crate::organ::Organ::from_toml(&text, "t.toml").unwrap();
        assert_eq!(organ.controls[0].on[0].as_bytes(), &[0xCB, 5]);
        // Relearned as a state form: the written off goes (it is inferred).
        let b = Binding {
            on: Form::Note { channel: Channel::from_user(16).unwrap(), key: 36, velocity: 127 },
            off: None,
            toggle: false,
            dialect: "note on/off".into(),
            note: None,
        };
        d.set_control("stop", 0, &b);
        assert!(!d.text().contains("program = 5"), "{}", d.text());
    }

    #[test]
    fn marks_and_unmarks_rejects() {
        let mut d = OrganDoc::parse(Path::new("t.toml"), FILE).unwrap();
        d.mark_rejected("Sw Gedackt 8", true);
        let t = d.text();
        assert!(t.contains("\n# organ learn --verify: REJECTED: the organist saw no change; relearn with --only \"Sw Gedackt 8\"\n[[stop]]\nname = \"Sw Gedackt 8\""), "{t}");
        d.mark_rejected("Sw Gedackt 8", false);
        assert_eq!(d.text(), FILE);
        d.mark_rejected("Gt Principal 8", true);
        d.mark_rejected("Gt Principal 8", false);
        assert_eq!(d.text(), FILE, "the comment above the table is kept");
    }

    #[test]
    fn a_new_organ_from_names() {
        let d = OrganDoc::skeleton(
            Path::new("new.toml"),
            "St Nowhere",
            &["great".into(), "swell".into(), "pedal".into()],
            &[
                "Gt Principal 8".into(),
                "swell:Gedackt 8".into(),
                "Sw to Gt".into(),
                "Sw Tremulant".into(),
                "Ped Bourdon 16".into(),
            ],
        )
        .unwrap();
        let t = d.text();
        for want in [
            "name = \"St Nowhere\"",
            "[division.great]\ncode = \"G\"",
            "[division.swell]\ncode = \"S\"",
            "[division.pedal]\ncode = \"P\"",
            "[[stop]]\nname = \"Gt Principal 8\"\ndivision = \"great\"",
            "[[stop]]\nname = \"Gedackt 8\"\ndivision = \"swell\"",
            "[[coupler]]\nname = \"Sw to Gt\"\nfrom = \"swell\"\nto = \"great\"",
            "[[tremulant]]\nname = \"Sw Tremulant\"\ndivision = \"swell\"",
            "[[stop]]\nname = \"Ped Bourdon 16\"\ndivision = \"pedal\"",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert_eq!(d.items(false, &[]).len(), 3 + 5 + 1);
        let e = OrganDoc::skeleton(Path::new("n.toml"), "x", &["great".into()], &["Trumpet 8".into()]);
        assert!(e.err().unwrap().to_string().contains("which division?"));
    }
}
