//! What to play, resolved from plain values: the score, its registration file (given, or the
//! `.toml` beside the score), the organ (given, or named by the registration file), the hymn
//! options (the file's `[hymn]` with the command line's on top), the amen file, and the
//! settings (tempo or bpm, transposition, --from/--until, layout, stops).
//!
//! The one place where a score's registration and organ are found and where tempo, bpm and
//! transposition are checked, for the command line ([`PlanArgs`]) and the order of service alike.
//! Knows nothing of clap: the binary maps its flags onto [`PlanArgs`]. Pure apart from reading
//! files; control thread.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::organ::{ConfigError, Organ};
use crate::plan::{self, PlanError, PlanOptions, Speed, Timeline, hymn};
use crate::registration::hymn::{Amen, ArgError};
use crate::registration::{At, HymnArgs, HymnAt, HymnOptions, Registration, ValueError, organ_hint};
use crate::score::{self, Score, ScoreFileError};

/// How to read the score and what to play of it, as given on a command line (`organ plan`,
/// `check`, `play`), before checking.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    pub score: PathBuf,
    /// An organ name or path; default: the registration file's `organ = "…"`.
    pub organ: Option<String>,
    /// The registration file; default: the score's `.toml` beside it, when it exists.
    pub registration: Option<PathBuf>,
    pub no_registration: bool,
    pub layout: Option<String>,
    pub map: Option<String>,
    /// A percentage of the written tempo ("80%").
    pub tempo: Option<String>,
    pub bpm: Option<f64>,
    pub transpose: i32,
    pub from: Option<String>,
    pub until: Option<String>,
    pub stops: Vec<String>,
    pub keep_stops: bool,
    pub hymn: HymnArgs,
}

/// The loaded inputs of a plan.
pub struct Inputs {
    pub score: Score,
    pub organ: Organ,
    pub registration: Option<Registration>,
    pub options: PlanOptions,
    /// Hymn options: the registration file's `[hymn]` with the command line's on top (empty:
    /// the score is played once).
    pub hymn: HymnOptions,
    /// The amen file, when the hymn options name one.
    pub amen: Option<Score>,
    /// Things to tell the user about how the inputs were read (printed as warnings).
    pub notes: Vec<String>,
}

/// Why the inputs could not be loaded; one line, naming the file or flag.
#[derive(Debug, Clone, PartialEq)]
pub enum InputError {
    Score(ScoreFileError),
    Config(ConfigError),
    Plan(PlanError),
    /// `--registration FILE` that does not exist.
    NoRegistrationFile(PathBuf),
    /// A file that exists but cannot be read.
    Read {
        path: PathBuf,
        error: String,
    },
    /// No `--organ` and no `organ = "…"` in a registration file.
    NoOrgan {
        available: Vec<String>,
    },
    /// A setting out of range.
    Setting(SettingError),
    /// `--from` / `--until` that is not a position.
    Position {
        flag: &'static str,
        error: ValueError,
    },
    Hymn(ArgError),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Score(e) => e.fmt(f),
            InputError::Config(e) => e.fmt(f),
            InputError::Plan(e) => e.fmt(f),
            InputError::NoRegistrationFile(p) => write!(f, "{}: no such registration file", p.display()),
            InputError::Read { path, error } => write!(f, "{}: cannot read: {error}", path.display()),
            InputError::NoOrgan { available } => write!(
                f,
                "no organ given: add --organ NAME (available: {}), or `organ = \"NAME\"` in the registration file",
                available.join(", ")
            ),
            InputError::Setting(e) => e.fmt(f),
            InputError::Position { flag, error } => write!(f, "{flag} {error}"),
            InputError::Hymn(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InputError {}

impl From<ScoreFileError> for InputError {
    fn from(e: ScoreFileError) -> Self {
        InputError::Score(e)
    }
}
impl From<ConfigError> for InputError {
    fn from(e: ConfigError) -> Self {
        InputError::Config(e)
    }
}
impl From<PlanError> for InputError {
    fn from(e: PlanError) -> Self {
        InputError::Plan(e)
    }
}

// --- settings: one check for the command line and the order of service ---------------------------

/// The bpm that may be asked for.
pub const BPM_RANGE: std::ops::RangeInclusive<f64> = 10.0..=400.0;
/// The most semitones a score may be transposed either way.
pub const MAX_TRANSPOSE: i64 = 24;

/// A tempo, bpm or transposition out of range. `Display` names the command-line flag;
/// [`SettingError::in_file`] words it as the TOML key.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingError {
    /// The tempo does not parse or is out of range (the message names `--tempo`).
    Tempo(String),
    Bpm(f64),
    /// Both a tempo and a bpm (only possible in a file: the command line refuses it itself).
    TempoAndBpm,
    Transpose(i64),
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingError::Tempo(e) => f.write_str(e),
            SettingError::Bpm(b) => write!(f, "--bpm {b}: use 10 to 400 beats per minute"),
            SettingError::TempoAndBpm => f.write_str("give --tempo or --bpm, not both"),
            SettingError::Transpose(t) => write!(f, "--transpose {t}: use -24 to 24 semitones"),
        }
    }
}

impl std::error::Error for SettingError {}

impl SettingError {
    /// The message for a TOML file (`bpm = 500: use 10 to 400`).
    pub fn in_file(&self) -> String {
        match self {
            SettingError::Tempo(e) => e.clone(),
            SettingError::Bpm(b) => format!("bpm = {b}: use 10 to 400"),
            SettingError::TempoAndBpm => "give tempo or bpm, not both".into(),
            SettingError::Transpose(t) => format!("transpose = {t}: use -24 to 24 semitones"),
        }
    }
}

/// The speed asked for: a tempo percentage or a bpm (or neither: as written).
///
/// # Errors
/// A tempo that does not parse, values out of range, or both given.
pub fn speed(tempo: Option<&str>, bpm: Option<f64>) -> Result<Speed, SettingError> {
    match (tempo, bpm) {
        (Some(_), Some(_)) => Err(SettingError::TempoAndBpm),
        (Some(t), None) => Speed::parse_tempo(t).map_err(|e| SettingError::Tempo(e.to_string())),
        (None, Some(b)) if BPM_RANGE.contains(&b) => Ok(Speed::Bpm(b)),
        (None, Some(b)) => Err(SettingError::Bpm(b)),
        (None, None) => Ok(Speed::AsWritten),
    }
}

/// A transposition in semitones.
///
/// # Errors
/// More than [`MAX_TRANSPOSE`] either way.
pub fn transpose(t: i64) -> Result<i32, SettingError> {
    // A range check, not `abs()`: i64::MIN has no absolute value (`transpose = -9223372036854775808`
    // in an order of service panicked).
    if !(-MAX_TRANSPOSE..=MAX_TRANSPOSE).contains(&t) {
        return Err(SettingError::Transpose(t));
    }
    Ok(t as i32)
}

// --- finding a score's registration and organ -------------------------------------------------------

/// The registration file beside a score: `x.mid` → `x.toml`.
pub fn registration_beside(score: &Path) -> PathBuf {
    score.with_extension("toml")
}

/// Which registration file to read.
#[derive(Debug, Clone, Copy)]
pub enum RegistrationChoice<'a> {
    /// The score's `.toml` beside it, when it exists.
    Beside,
    /// This file.
    File(&'a Path),
    /// None.
    Without,
}

/// A score's registration file and organ, found and checked.
pub struct Found {
    pub organ: Organ,
    pub registration: Option<Registration>,
    /// Where the registration file is (an amen file it names is found beside it).
    pub registration_path: Option<PathBuf>,
}

/// Why a score's registration or organ could not be found.
#[derive(Debug)]
pub enum FindError {
    Read {
        path: PathBuf,
        error: String,
    },
    /// No organ given and none named in a registration file.
    NoOrgan,
    Config(ConfigError),
}

/// Reads the registration file, decides the organ (`organ`, else the file's `organ = "…"`),
/// and loads and checks both.
///
/// # Errors
/// An unreadable registration file, no organ, an organ or registration that does not load.
pub fn find(score: &Path, choice: RegistrationChoice, organ: Option<&str>) -> Result<Found, FindError> {
    let path = match choice {
        RegistrationChoice::Beside => Some(registration_beside(score)).filter(|p| p.is_file()),
        RegistrationChoice::File(p) => Some(p.to_path_buf()),
        RegistrationChoice::Without => None,
    };
    let text = path
        .as_ref()
        // A regular file of bounded size only (crate::files); its error is a ConfigError::File.
        .map(|p| {
            crate::files::read_user_text(p, crate::files::FileKind::Registration)
                .map_err(|e| FindError::Config(ConfigError::File(e)))
        })
        .transpose()?;
    let organ_name = match (organ, text.as_deref().and_then(organ_hint)) {
        (Some(o), _) => o.to_string(),
        (None, Some(o)) => o,
        (None, None) => {
            // A file that does not parse may well name its organ: say what is wrong with it,
            // not that no organ is given.
            if let (Some(p), Some(t)) = (&path, &text)
                && let Err(e) = toml::from_str::<toml::Table>(t)
            {
                let file = p.display().to_string();
                return Err(FindError::Config(crate::organ::Ctx { text: t, file: &file }.toml_err(&e)));
            }
            return Err(FindError::NoOrgan);
        }
    };
    let organ = Organ::find(&organ_name).map_err(FindError::Config)?;
    let registration = match (&path, &text) {
        (Some(p), Some(t)) => {
            Some(Registration::from_toml(t, &p.display().to_string(), &organ).map_err(FindError::Config)?)
        }
        _ => None,
    };
    Ok(Found { organ, registration, registration_path: path })
}

impl Found {
    /// The registration file's hymn options, with an amen file it names found beside it.
    pub fn file_hymn(&self) -> HymnOptions {
        let h = self.registration.as_ref().map(|r| r.hymn.clone()).unwrap_or_default();
        match &self.registration_path {
            Some(p) => h.amen_beside(p.parent().unwrap_or(Path::new(""))),
            None => h,
        }
    }
}

/// Loads the amen file the hymn options name, if any.
///
/// # Errors
/// The file cannot be loaded.
pub fn load_amen(hymn: &HymnOptions) -> Result<Option<Score>, ScoreFileError> {
    match &hymn.amen {
        Some(Amen::File(p)) => Ok(Some(score::load_file(p)?)),
        _ => Ok(None),
    }
}

// --- the command line -----------------------------------------------------------------------------

/// Loads score, organ and registration and turns the arguments into [`PlanOptions`] and hymn
/// options.
///
/// # Errors
/// Any file or argument problem, as a one-line message.
pub fn load(a: &PlanArgs) -> Result<Inputs, InputError> {
    let score = score::load_file(&a.score)?;
    let choice = match (&a.registration, a.no_registration) {
        (_, true) => RegistrationChoice::Without,
        // Missing, not merely "not a regular file": a FIFO or device is refused by name below.
        (Some(p), false) if !p.exists() => return Err(InputError::NoRegistrationFile(p.clone())),
        (Some(p), false) => RegistrationChoice::File(p),
        (None, false) => RegistrationChoice::Beside,
    };
    let found = find(&a.score, choice, a.organ.as_deref()).map_err(|e| match e {
        FindError::Read { path, error } => InputError::Read { path, error },
        FindError::NoOrgan => InputError::NoOrgan { available: crate::organ::available_organs() },
        FindError::Config(e) => InputError::Config(e),
    })?;
    let options = plan_options(a)?;
    let cli = a.hymn.check(&found.organ).map_err(InputError::Hymn)?;
    let file = if a.hymn.no_hymn { HymnOptions::default() } else { found.file_hymn() };
    let mut notes = Vec::new();
    let hymn = if (options.from.is_some() || options.until.is_some()) && cli.is_empty() && !file.is_empty() {
        // Rehearsing bars of a hymn: play them once, as written.
        notes.push(format!(
            "the registration file's [hymn] section ({}) is not used with --from/--until at a bar: the bars are played \
             once; to start inside the hymn, write --from verse:N or verse:N:BAR",
            file.describe()
        ));
        HymnOptions::default()
    } else {
        file.overridden_by(&cli)
    };
    let amen = load_amen(&hymn)?;
    Ok(Inputs { score, organ: found.organ, registration: found.registration, options, hymn, amen, notes })
}

/// The arguments as [`PlanOptions`].
///
/// # Errors
/// Values that do not parse or are out of range.
pub fn plan_options(a: &PlanArgs) -> Result<PlanOptions, InputError> {
    let speed = speed(a.tempo.as_deref(), a.bpm).map_err(InputError::Setting)?;
    let transpose = transpose(i64::from(a.transpose)).map_err(InputError::Setting)?;
    // A bar, bar:beat or time of the score, or a section of a hymn (verse:3, verse:3:5, amen).
    type Position = (Option<At>, Option<HymnAt>);
    let at = |s: &Option<String>, flag: &'static str| -> Result<Position, InputError> {
        let Some(s) = s.as_deref() else { return Ok((None, None)) };
        let position = |error| InputError::Position { flag, error };
        match HymnAt::parse(s).map_err(position)? {
            Some(h) => Ok((None, Some(h))),
            None => Ok((Some(At::parse(s).map_err(position)?), None)),
        }
    };
    let ((from, hymn_from), (until, hymn_until)) = (at(&a.from, "--from")?, at(&a.until, "--until")?);
    Ok(PlanOptions {
        layout: a.layout.clone(),
        map: a.map.clone(),
        speed,
        transpose,
        from,
        until,
        hymn_from,
        hymn_until,
        stops: a.stops.clone(),
        keep_stops: a.keep_stops,
    })
}

/// Plans loaded inputs: a hymn unrolled when there are hymn options, else the score once.
///
/// # Errors
/// As [`plan::plan`] and [`hymn::plan_hymn`].
pub fn plan(inputs: &Inputs) -> Result<Timeline, PlanError> {
    if inputs.hymn.is_empty() {
        plan::plan(&inputs.score, &inputs.organ, inputs.registration.as_ref(), &inputs.options)
    } else {
        hymn::plan_hymn(
            &inputs.score,
            inputs.amen.as_ref(),
            &inputs.organ,
            inputs.registration.as_ref(),
            &inputs.options,
            &inputs.hymn,
        )
    }
}

/// Loads everything and plans; the notes about how the inputs were read join the plan's
/// warnings.
///
/// # Errors
/// As [`load`] and [`plan()`].
pub fn load_and_plan(a: &PlanArgs) -> Result<(Inputs, Timeline), InputError> {
    let inputs = load(a)?;
    let mut timeline = plan(&inputs)?;
    timeline.warnings.extend(inputs.notes.iter().map(|n| plan::PlanWarning::new(plan::WarningKind::Ignored, n)));
    Ok((inputs, timeline))
}
