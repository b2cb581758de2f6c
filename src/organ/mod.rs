//! Organ definitions: divisions (keyboards) with their channel, code letter and compass; stops,
//! couplers and tremulants with the exact MIDI messages that draw them on and off; presets; the
//! General Cancel; stop timing.
//!
//! Loaded from TOML (serde + toml) and checked completely at load: every error names the file,
//! line and column and says what was expected; an unknown name suggests the closest one. After
//! loading, every message is a checked [`Message`], so the planner cannot produce an invalid byte.
//! Runs on the control thread; never on the real-time path.

pub mod decode;
mod file;
pub mod voice;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::midi::{Channel, Message, Micros};
use crate::text::{did_you_mean, normalize_name};

pub(crate) use file::{Ctx, check_default_output, parse_message_text};

/// The organ shipped with the program, used when `--organ st-marys` is not found on disk.
pub const BUILTIN_ORGANS: &[(&str, &str)] = &[("st-marys", include_str!("../../organs/st-marys.toml"))];

/// A checked organ definition.
#[derive(Debug, Clone)]
pub struct Organ {
    /// The organ's display name (`name = "…"`).
    pub name: String,
    /// Where it was loaded from, for messages.
    pub source: String,
    pub divisions: Vec<Division>,
    /// Stops, couplers and tremulants, in file order (stops, then couplers, then tremulants).
    pub controls: Vec<Control>,
    pub presets: Vec<Preset>,
    /// The General Cancel message(s); `None` = cancel by sending every control's off (toggles
    /// excepted: see [`Organ::cancel_messages`]).
    pub cancel: Option<Vec<Message>>,
    /// `[cancel] everything_in_at_start = true`: the organist vouches that the console starts
    /// with every stop, coupler and tremulant in, so toggles need no cancel to start from a
    /// known state (without a General Cancel, a console with toggles needs this to be played).
    pub everything_in_at_start: bool,
    /// Cancel the registration when the performance ends or is stopped (default true).
    pub cancel_at_end: bool,
    /// Stop/coupler messages go this long before the notes at the same instant.
    pub stop_lead: Micros,
    /// Minimum spacing between consecutive stop/coupler messages.
    pub stop_pace: Micros,
    /// Default output (`output = "port:WIDI Bud Pro"`), used when `--to` is not given.
    pub output: Option<String>,
    /// What to do when a wireless link drops mid-piece (`on_disconnect = "pause" | "continue"`).
    pub on_disconnect: DisconnectPolicy,
    /// `[remote]`: console pistons or a foot switch that drive `organ service` (empty when the
    /// file has none). Read from the console only; nothing here is ever sent.
    pub remote: Vec<RemoteButton>,
}

/// What a console piston mapped in `[remote]` asks of `organ service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteAction {
    /// `go`: start the chosen item, or go on from the end of a verse, a fermata or a pause.
    Go,
    /// `pause`: pause at the end of this verse (pressed again: don't).
    Pause,
    /// `stop`: stop now, every key released. Pressed twice within
    /// [`REMOTE_STOP_WINDOW_MS`] only, so that one stray press cannot cut a hymn.
    Stop,
    /// `next`: choose the next item of the order of service.
    Next,
    /// `previous`: choose the item before.
    Previous,
}

/// A `[remote] stop` piston stops only when pressed a second time within this many
/// milliseconds of the first press.
pub const REMOTE_STOP_WINDOW_MS: u64 = 2000;

impl RemoteAction {
    /// Every action, in the order of the file's keys.
    pub const ALL: [RemoteAction; 5] =
        [RemoteAction::Go, RemoteAction::Pause, RemoteAction::Stop, RemoteAction::Next, RemoteAction::Previous];

    /// Its key in `[remote]`.
    pub fn key(self) -> &'static str {
        match self {
            RemoteAction::Go => "go",
            RemoteAction::Pause => "pause",
            RemoteAction::Stop => "stop",
            RemoteAction::Next => "next",
            RemoteAction::Previous => "previous",
        }
    }

    /// What it does, for people ("go on", "pause at the end of the verse" …).
    pub fn describe(self) -> &'static str {
        match self {
            RemoteAction::Go => "go on",
            RemoteAction::Pause => "pause at the end of the verse",
            RemoteAction::Stop => "stop",
            RemoteAction::Next => "next item",
            RemoteAction::Previous => "previous item",
        }
    }
}

/// One `[remote]` key: the message the console sends when the piston is pressed, and the one
/// it sends when it is let go (inferred for the note and cc forms; `None` otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteButton {
    pub action: RemoteAction,
    pub press: Vec<Message>,
    pub release: Option<Vec<Message>>,
}

/// What playback does while an output's link is down (lost, or not answering: a write unanswered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DisconnectPolicy {
    /// The clock stops and resumes where it left off once the link is back.
    #[default]
    Pause,
    /// The clock runs on; what falls in the gap is dropped, not played late.
    Continue,
}

/// A keyboard (manual or pedalboard).
#[derive(Debug, Clone)]
pub struct Division {
    /// The key in `[division.<name>]`.
    pub name: String,
    /// Layout letter, e.g. `S` (upper case).
    pub code: char,
    pub channel: Channel,
    /// Lowest and highest key (inclusive).
    pub compass: (u8, u8),
    /// Name of the matching manual in a GrandOrgue organ, when it differs.
    pub grandorgue: Option<String>,
    /// The controller that moves this division's swell shutters (`expression = { cc = 11 }`),
    /// if it has one.
    pub expression: Option<Expression>,
}

/// A division's expression (swell pedal) controller: `cc` on `channel` (by default the
/// division's own), 0 = shutters closed, 127 = open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expression {
    pub cc: u8,
    pub channel: Channel,
}

/// Index of a control in [`Organ::controls`].
pub type ControlId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Stop,
    Coupler { from: usize, to: usize },
    Tremulant,
}

/// What a coupler does to the division it is drawn on (`action = "…"` in the organ
/// definition, else read from its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouplerAction {
    /// The `from` division's stops sound at pitch on the `to` division's keys ("Sw to Gt").
    Unison,
    /// …an octave higher ("Sw Octave", "Swell Super", "Sw to Gt 4").
    Octave,
    /// …an octave lower ("Sw Sub Octave", "Sw to Gt 16").
    SubOctave,
    /// The division's own stops no longer sound at pitch on its keys ("Sw Unison Off"); only its
    /// octave couplers still bring them (`from` = `to`).
    UnisonOff,
}

impl CouplerAction {
    /// What a coupler's name says it does: "unison" with "off" → unison off; a word starting with
    /// "sub" (or a 16) → sub-octave; "octave", "super" (or a 4) → octave; otherwise unison.
    pub fn from_name(name: &str) -> CouplerAction {
        let lower = name.to_lowercase();
        let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        let has = |w: &str| words.contains(&w);
        if has("unison") && has("off") {
            CouplerAction::UnisonOff
        } else if words.iter().any(|w| w.starts_with("sub")) || has("16") {
            CouplerAction::SubOctave
        } else if words.iter().any(|w| w.starts_with("super") || *w == "octave") || has("4") {
            CouplerAction::Octave
        } else {
            CouplerAction::Unison
        }
    }

    /// The value of `action = "…"`.
    pub fn parse(s: &str) -> Option<CouplerAction> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unison" => Some(CouplerAction::Unison),
            "octave" | "super-octave" | "superoctave" => Some(CouplerAction::Octave),
            "sub-octave" | "suboctave" => Some(CouplerAction::SubOctave),
            "unison-off" | "unison off" => Some(CouplerAction::UnisonOff),
            _ => None,
        }
    }
}

/// A stop, coupler or tremulant: a name and the messages that draw it on and off.
#[derive(Debug, Clone)]
pub struct Control {
    pub name: String,
    pub kind: ControlKind,
    /// The division it belongs to (stops; tremulants when given; a coupler's `to`).
    pub division: Option<usize>,
    pub on: Vec<Message>,
    pub off: Vec<Message>,
    /// A toggle: `on` and `off` are the same message, which flips the control whichever way it
    /// stands. `organ` only sends it to change what it knows the state to be.
    pub toggle: bool,
    /// What a coupler does (couplers only).
    pub action: Option<CouplerAction>,
    pub grandorgue: Option<String>,
    /// A stop's `voice = { … }` for the built-in organ voice (`None`: voiced from its name).
    pub voice: Option<voice::VoiceSpec>,
}

/// A named registration (`[preset] mf = [...]`).
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    pub controls: Vec<ControlId>,
}

/// A position in a TOML file, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Why an organ definition (or registration file) could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    Io { file: String, error: String },
    /// Not a regular file, or too large to be one of ours ([`crate::files`]).
    File(crate::files::FileError),
    /// `--organ NAME` matched no file.
    NotFound { name: String, searched: Vec<String>, available: Vec<String> },
    /// Invalid content: where and what.
    Invalid { at: Location, message: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { file, error } => write!(f, "{file}: cannot read: {error}"),
            ConfigError::File(e) => e.fmt(f),
            ConfigError::NotFound { name, searched, available } => {
                write!(f, "no organ definition named \"{name}\" (looked in {})", searched.join(", "))?;
                if available.is_empty() {
                    write!(f, "; create organs/{name}.toml (see organs/st-marys.toml for the format)")
                } else {
                    let hint = did_you_mean(name, available.iter().map(String::as_str));
                    if hint.is_empty() {
                        write!(f, "; available: {}", available.join(", "))
                    } else {
                        write!(f, "{hint}")
                    }
                }
            }
            ConfigError::Invalid { at, message } => write!(f, "{at}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Organ {
    /// Parses and checks an organ definition. `source` names the file in messages.
    ///
    /// # Errors
    /// Broken TOML, unknown keys, missing keys, out-of-range values (channel 0 or 17, data bytes
    /// over 127), duplicate or unknown names, messages whose off cannot be inferred.
    pub fn from_toml(text: &str, source: &str) -> Result<Organ, ConfigError> {
        file::parse(text, source)
    }

    /// Reads and checks an organ definition file.
    ///
    /// # Errors
    /// As [`Organ::from_toml`], plus an unreadable file.
    pub fn load(path: &Path) -> Result<Organ, ConfigError> {
        let source = path.display().to_string();
        let text = crate::files::read_user_text(path, crate::files::FileKind::Organ).map_err(ConfigError::File)?;
        Organ::from_toml(&text, &source)
    }

    /// Finds an organ by name or path: a path (has a `/` or ends in `.toml`) is read as it is;
    /// a name is looked up as `organs/<name>.toml` in the current directory, then in the user's
    /// configuration directory (`$XDG_CONFIG_HOME/organ/organs` or `~/.config/organ/organs`), then
    /// among the organs built into the program.
    ///
    /// # Errors
    /// Not found (with the names that exist), or the file's own errors.
    pub fn find(name_or_path: &str) -> Result<Organ, ConfigError> {
        if name_or_path.contains('/') || name_or_path.contains('\\') || name_or_path.ends_with(".toml") {
            let path = Path::new(name_or_path);
            if path.symlink_metadata().is_err()
                && let Some(meant) = Organ::meant(name_or_path)
            {
                return Err(ConfigError::Io {
                    file: name_or_path.to_string(),
                    error: format!("no such file; did you mean \"{meant}\"?"),
                });
            }
            return Organ::load(path);
        }
        let dirs = search_dirs();
        for dir in &dirs {
            let p = dir.join(format!("{name_or_path}.toml"));
            if p.is_file() {
                return Organ::load(&p);
            }
        }
        if let Some((n, text)) = BUILTIN_ORGANS.iter().find(|(n, _)| *n == name_or_path) {
            return Organ::from_toml(text, &format!("(built-in) organs/{n}.toml"));
        }
        Err(ConfigError::NotFound {
            name: name_or_path.to_string(),
            searched: dirs.iter().map(|d| d.display().to_string()).chain(["the built-in organs".to_string()]).collect(),
            available: available_organs(),
        })
    }

    /// For a path to an organ definition that does not exist: the path with `.toml` added when
    /// that file exists, or the name of an organ that [`Organ::find`] finds for the file's stem
    /// (`st-marys.toml` given for `st-marys`, a file name without a folder).
    fn meant(path: &str) -> Option<String> {
        let with_ext = format!("{path}.toml");
        if !path.ends_with(".toml") && Path::new(&with_ext).is_file() {
            return Some(with_ext);
        }
        if Path::new(path).parent().is_some_and(|p| !p.as_os_str().is_empty()) {
            return None;
        }
        let stem = Path::new(path).file_stem()?.to_str()?;
        let found = search_dirs().iter().any(|d| d.join(format!("{stem}.toml")).is_file())
            || BUILTIN_ORGANS.iter().any(|(n, _)| *n == stem);
        (path.ends_with(".toml") && found).then(|| stem.to_string())
    }

    /// Finds a stop, coupler or tremulant by name (case-insensitive, whitespace-normalised).
    pub fn control(&self, name: &str) -> Option<ControlId> {
        self.controls.iter().position(|c| crate::text::same_name(&c.name, name))
    }

    /// `; did you mean "…"?` for an unknown control name.
    pub fn suggest_control(&self, name: &str) -> String {
        did_you_mean(name, self.controls.iter().map(|c| c.name.as_str()))
    }

    /// A preset by name (case-insensitive, whitespace-normalised).
    pub fn preset(&self, name: &str) -> Option<&Preset> {
        self.preset_id(name).map(|i| &self.presets[i])
    }

    /// A preset's index in [`Organ::presets`], by name as for [`Organ::preset`]. Every lookup of
    /// a preset by name goes through here.
    pub fn preset_id(&self, name: &str) -> Option<usize> {
        let n = normalize_name(name);
        self.presets.iter().position(|p| normalize_name(&p.name) == n)
    }

    /// A division by name or code letter (case-insensitive).
    pub fn division(&self, name_or_code: &str) -> Option<usize> {
        let n = normalize_name(name_or_code);
        self.divisions.iter().position(|d| normalize_name(&d.name) == n).or_else(|| {
            self.divisions.iter().position(|d| n.chars().count() == 1 && d.code.to_ascii_lowercase().to_string() == n)
        })
    }

    /// The messages that cancel whatever the console's state: the General Cancel if defined,
    /// else every control's off in definition order, toggles excepted (a toggle's message flips
    /// it from whatever it was, so it cannot cancel; putting in the toggles `organ` drew is the
    /// planner's and the engine's job).
    pub fn cancel_messages(&self) -> Vec<Message> {
        match &self.cancel {
            Some(m) => m.clone(),
            None => self.controls.iter().filter(|c| !c.toggle).flat_map(|c| c.off.iter().cloned()).collect(),
        }
    }

    /// The toggles (controls whose one message flips them), in definition order.
    pub fn toggles(&self) -> impl Iterator<Item = &Control> {
        self.controls.iter().filter(|c| c.toggle)
    }

    /// True when `organ` can bring the console into a known state before playing: it has a
    /// General Cancel, or no toggles, or the organ file says the console starts with everything
    /// in ([`Organ::everything_in_at_start`]).
    pub fn start_is_known(&self) -> bool {
        self.cancel.is_some() || self.everything_in_at_start || self.toggles().next().is_none()
    }

    /// The `[remote]` piston mapped to `action`, if any.
    pub fn remote_button(&self, action: RemoteAction) -> Option<&RemoteButton> {
        self.remote.iter().find(|b| b.action == action)
    }
}

fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("organ"))
}

/// Where `--organ NAME` looks, in order.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("organs")];
    if let Some(d) = config_dir() {
        dirs.push(d.join("organs"));
    }
    dirs
}

/// Names of the organ definitions that `--organ` can find.
pub fn available_organs() -> Vec<String> {
    let mut names: Vec<String> = BUILTIN_ORGANS.iter().map(|(n, _)| n.to_string()).collect();
    for dir in search_dirs() {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml")
                    && let Some(stem) = p.file_stem()
                {
                    names.push(stem.to_string_lossy().into_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}
