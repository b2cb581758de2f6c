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
    /// The General Cancel message(s); `None` = cancel by sending every control's off.
    pub cancel: Option<Vec<Message>>,
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
}

/// What playback does while an output's link is down.
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

/// A stop, coupler or tremulant: a name and the messages that draw it on and off.
#[derive(Debug, Clone)]
pub struct Control {
    pub name: String,
    pub kind: ControlKind,
    /// The division it belongs to (stops; tremulants when given; a coupler's `to`).
    pub division: Option<usize>,
    pub on: Vec<Message>,
    pub off: Vec<Message>,
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
            return Organ::load(Path::new(name_or_path));
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

    /// Finds a stop, coupler or tremulant by name (case-insensitive, whitespace-normalised).
    pub fn control(&self, name: &str) -> Option<ControlId> {
        let n = normalize_name(name);
        self.controls.iter().position(|c| normalize_name(&c.name) == n)
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

    /// The messages that cancel every control: the General Cancel if defined, else every
    /// control's off, in definition order.
    pub fn cancel_messages(&self) -> Vec<Message> {
        match &self.cancel {
            Some(m) => m.clone(),
            None => self.controls.iter().flat_map(|c| c.off.iter().cloned()).collect(),
        }
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
