//! Orchestration for the binary: files → plan → output. Each command is a function from parsed
//! arguments to an exit status; every failure is an [`Error`] with a one-line `Display`.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::cli::{CheckCmd, HymnArgs, InfoCmd, PlanArgs, PlanCmd, PlanFormat};
use crate::organ::registration::{At, organ_hint};
use crate::organ::{ConfigError, Organ, Registration};
use crate::plan::hymn::{self, HymnOptions};
use crate::plan::{self, PlanError, PlanOptions, Speed, Timeline, layout};
use crate::score::{self, Score, ScoreFileError, tempo::bpm};

/// Any failure of a command, printed as `organ: <message>`.
#[derive(Debug)]
pub enum Error {
    Score(ScoreFileError),
    Config(ConfigError),
    Plan(PlanError),
    /// A bad command-line value.
    Usage(String),
    Io(String),
    /// Something else, already phrased for the user.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Score(e) => e.fmt(f),
            Error::Config(e) => e.fmt(f),
            Error::Plan(e) => e.fmt(f),
            Error::Usage(s) | Error::Io(s) | Error::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<ScoreFileError> for Error {
    fn from(e: ScoreFileError) -> Self {
        Error::Score(e)
    }
}
impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
impl From<PlanError> for Error {
    fn from(e: PlanError) -> Self {
        Error::Plan(e)
    }
}

/// Exit status of a command that did its job (warnings may still make `check` fail).
pub type Status = i32;

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

/// The registration file beside a score: `x.mid` → `x.toml`.
pub fn registration_beside(score: &Path) -> PathBuf {
    score.with_extension("toml")
}

/// Loads score, organ and registration and turns the flags into [`PlanOptions`].
///
/// # Errors
/// Any file or flag problem, as a one-line message.
pub fn load_inputs(a: &PlanArgs) -> Result<Inputs, Error> {
    let score = score::load_file(&a.score)?;
    let reg_path = match (&a.registration, a.no_registration) {
        (_, true) => None,
        (Some(p), false) => {
            if !p.is_file() {
                return Err(Error::Usage(format!("{}: no such registration file", p.display())));
            }
            Some(p.clone())
        }
        (None, false) => Some(registration_beside(&a.score)).filter(|p| p.is_file()),
    };
    let reg_text = reg_path
        .as_ref()
        .map(|p| std::fs::read_to_string(p).map_err(|e| Error::Io(format!("{}: cannot read: {e}", p.display()))))
        .transpose()?;
    let organ_name = match (&a.organ, reg_text.as_deref().and_then(organ_hint)) {
        (Some(o), _) => o.clone(),
        (None, Some(o)) => o,
        (None, None) => {
            return Err(Error::Usage(format!(
                "no organ given: add --organ NAME (available: {}), or `organ = \"NAME\"` in the registration file",
                crate::organ::available_organs().join(", ")
            )));
        }
    };
    let organ = Organ::find(&organ_name)?;
    let registration = match (&reg_path, &reg_text) {
        (Some(p), Some(t)) => Some(Registration::from_toml(t, &p.display().to_string(), &organ)?),
        _ => None,
    };
    let options = plan_options(a)?;
    let mut inputs =
        Inputs { score, organ, registration, options, hymn: HymnOptions::default(), amen: None, notes: Vec::new() };
    let cli = hymn_options(&a.hymn, &inputs.organ)?;
    let file = if a.hymn.no_hymn {
        HymnOptions::default()
    } else {
        let mut file = inputs.registration.as_ref().map(|r| r.hymn.clone()).unwrap_or_default();
        // An amen file named in the registration file is found beside it.
        if let (Some(hymn::Amen::File(p)), Some(rp)) = (&mut file.amen, &reg_path)
            && p.is_relative()
        {
            *p = rp.parent().unwrap_or(Path::new("")).join(&*p);
        }
        file
    };
    if (inputs.options.from.is_some() || inputs.options.until.is_some()) && cli.is_empty() && !file.is_empty() {
        // Rehearsing bars of a hymn: play them once, as written.
        inputs.hymn = HymnOptions::default();
        inputs.notes.push(format!(
            "the registration file's [hymn] section ({}) is not used with --from/--until at a bar: the bars are played \
             once; to start inside the hymn, write --from verse:N or verse:N:BAR",
            file.describe()
        ));
    } else {
        inputs.hymn = file.overridden_by(&cli);
    }
    load_amen(&mut inputs)?;
    Ok(inputs)
}

/// Loads the amen file the hymn options name, if any.
///
/// # Errors
/// The file cannot be loaded.
pub fn load_amen(inputs: &mut Inputs) -> Result<(), Error> {
    inputs.amen = match &inputs.hymn.amen {
        Some(hymn::Amen::File(p)) => Some(score::load_file(p)?),
        _ => None,
    };
    Ok(())
}

/// The command line's hymn options.
///
/// # Errors
/// Values that do not parse; unknown presets.
pub fn hymn_options(h: &HymnArgs, organ: &Organ) -> Result<HymnOptions, Error> {
    let usage = |flag: &str, e: String| Error::Usage(format!("{flag}: {e}"));
    let mut o = HymnOptions {
        verses: h.verses,
        play_over: h.play_over.as_deref().map(hymn::parse_bars).transpose().map_err(|e| usage("--play-over", e))?,
        gap: h.gap.as_deref().map(hymn::parse_length).transpose().map_err(|e| usage("--gap", e))?,
        amen: h.amen.as_deref().map(hymn::parse_amen).transpose().map_err(|e| usage("--amen", e))?,
        fermata: h.fermata.as_deref().map(hymn::parse_fermata).transpose().map_err(Error::Usage)?,
        ..HymnOptions::default()
    };
    if let Some(v) = h.verses
        && (v == 0 || v > hymn::MAX_VERSES)
    {
        return Err(Error::Usage(format!("--verses {v}: a hymn has 1 to {} verses", hymn::MAX_VERSES)));
    }
    if !h.fermatas.is_empty() {
        let f: Result<Vec<_>, _> = h.fermatas.iter().map(|s| hymn::parse_fermata_at(s)).collect();
        o.fermatas = Some(f.map_err(|e| usage("--fermatas", e))?);
    }
    for entry in h.verse_preset.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let bad = || Error::Usage(format!("--verse-preset {entry}: write VERSE=PRESET, e.g. 3=p (0 is the play-over)"));
        let (n, p) = entry.split_once('=').ok_or_else(bad)?;
        let number: u16 = n.trim().parse().map_err(|_| bad())?;
        let preset = organ
            .presets
            .iter()
            .position(|x| crate::text::normalize_name(&x.name) == crate::text::normalize_name(p))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--verse-preset {entry}: {} has no preset \"{}\" (it has {})",
                    organ.name,
                    p.trim(),
                    organ.presets.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?;
        o.verse_registrations.retain(|v| v.number != number);
        o.verse_registrations.push(hymn::VerseRegistration { number, preset: Some(preset), ..Default::default() });
    }
    Ok(o)
}

/// Plans loaded inputs: a hymn unrolled when there are hymn options, else the score once.
///
/// # Errors
/// As [`plan::plan`] and [`hymn::plan_hymn`].
pub fn plan_inputs(inputs: &Inputs) -> Result<Timeline, Error> {
    if inputs.hymn.is_empty() {
        Ok(plan::plan(&inputs.score, &inputs.organ, inputs.registration.as_ref(), &inputs.options)?)
    } else {
        Ok(hymn::plan_hymn(
            &inputs.score,
            inputs.amen.as_ref(),
            &inputs.organ,
            inputs.registration.as_ref(),
            &inputs.options,
            &inputs.hymn,
        )?)
    }
}

/// The flags as [`PlanOptions`].
///
/// # Errors
/// Unparsable values.
pub fn plan_options(a: &PlanArgs) -> Result<PlanOptions, Error> {
    let speed = match (&a.tempo, a.bpm) {
        (Some(t), _) => Speed::parse_tempo(t).map_err(|e| Error::Usage(e.to_string()))?,
        (None, Some(b)) if (10.0..=400.0).contains(&b) => Speed::Bpm(b),
        (None, Some(b)) => return Err(Error::Usage(format!("--bpm {b}: use 10 to 400 beats per minute"))),
        (None, None) => Speed::AsWritten,
    };
    if a.transpose.abs() > 24 {
        return Err(Error::Usage(format!("--transpose {}: use -24 to 24 semitones", a.transpose)));
    }
    // A bar, bar:beat or time of the score, or a section of a hymn (verse:3, verse:3:5, amen).
    type Position = (Option<At>, Option<plan::range::HymnAt>);
    let at = |s: &Option<String>, flag: &str| -> Result<Position, Error> {
        let Some(s) = s.as_deref() else { return Ok((None, None)) };
        let usage = |e: String| Error::Usage(format!("{flag} {e}"));
        match plan::range::HymnAt::parse(s).map_err(usage)? {
            Some(h) => Ok((None, Some(h))),
            None => Ok((Some(At::parse(s).map_err(usage)?), None)),
        }
    };
    let ((from, hymn_from), (until, hymn_until)) = (at(&a.from, "--from")?, at(&a.until, "--until")?);
    Ok(PlanOptions {
        layout: a.layout.clone(),
        map: a.map.clone(),
        speed,
        transpose: a.transpose,
        from,
        until,
        hymn_from,
        hymn_until,
        stops: a.stops.clone(),
        keep_stops: a.keep_stops,
    })
}

/// Loads everything and plans.
///
/// # Errors
/// As [`load_inputs`] and [`plan::plan`].
pub fn make_plan(a: &PlanArgs) -> Result<(Inputs, Timeline), Error> {
    let inputs = load_inputs(a)?;
    let mut timeline = plan_inputs(&inputs)?;
    timeline.warnings.extend(inputs.notes.iter().map(|n| plan::PlanWarning::new(plan::WarningKind::Ignored, n)));
    Ok((inputs, timeline))
}

fn write_out(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), Error> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match f(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // `organ plan … | head` closes the pipe: that is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Io(format!("cannot write the output: {e}"))),
    }
}

/// `organ plan`.
///
/// # Errors
/// As [`make_plan`], and write errors.
pub fn cmd_plan(c: &PlanCmd) -> Result<Status, Error> {
    let (_, timeline) = make_plan(&c.plan)?;
    write_out(|out| {
        let mut out = out;
        match c.format {
            PlanFormat::Text => timeline.write_text(&mut out),
            PlanFormat::Jsonl => timeline.write_jsonl(&mut out),
        }
    })?;
    for w in &timeline.warnings {
        eprintln!("organ: {}: {}: {w}", w.kind.label(), timeline.score_name);
    }
    Ok(0)
}

/// Every warning about a score and its plan, one line each, with positions (the plan's notes,
/// [`plan::WarningKind::is_note`], are not warnings).
pub fn all_warnings(score: &Score, timeline: &Timeline) -> Vec<String> {
    let mut w: Vec<String> = score
        .warnings
        .iter()
        .map(|x| {
            let at = x.tick.map(|t| format!(" (from bar {})", score.meter.position(t))).unwrap_or_default();
            let part = x.part.map(|p| format!("part {p}: ")).unwrap_or_default();
            format!("{part}{}{at}", x.message)
        })
        .collect();
    w.extend(timeline.warnings.iter().filter(|x| !x.kind.is_note()).map(ToString::to_string));
    w
}

/// What was stripped from the score, as a sentence, or `None`.
pub fn stripped_summary(score: &Score) -> Option<String> {
    let s = score.stripped;
    let items: Vec<String> = [
        (s.program_changes, "program change"),
        (s.controllers, "controller"),
        (s.pitch_bends, "pitch bend"),
        (s.aftertouch, "aftertouch"),
        (s.sysex, "SysEx"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
    .collect();
    (!items.is_empty()).then(|| {
        format!(
            "{} in the score {} not sent to the organ (only notes and the organ's own stop messages are)",
            crate::text::join_and(&items),
            if s.total() == 1 { "is" } else { "are" }
        )
    })
}

/// `organ check`.
///
/// # Errors
/// As [`make_plan`].
pub fn cmd_check(c: &CheckCmd) -> Result<Status, Error> {
    if c.plan.score.extension().is_some_and(|x| x == "toml") {
        return check_order_of_service(c);
    }
    let (inputs, timeline) = make_plan(&c.plan)?;
    let score = &inputs.score;
    let mut out = String::new();
    let assignment = plan_assignment(&inputs)?;
    let parts: Vec<String> = score
        .parts
        .iter()
        .zip(&assignment)
        .map(|(p, d)| {
            format!("{}→{}", p.number, d.map_or("(not played)".to_string(), |d| inputs.organ.divisions[d].name.clone()))
        })
        .collect();
    out.push_str(&format!(
        "{}: {} part(s) on {} ({}), {} messages, {} long, {} registration change(s){}\n",
        score.name,
        score.parts.len(),
        inputs.organ.name,
        parts.join(" "),
        timeline.events.len(),
        timeline.duration,
        timeline.registrations.len().saturating_sub(1 + usize::from(timeline.cancel_at_end)),
        inputs
            .registration
            .as_ref()
            .map(|r| format!(" from {}", r.source))
            .unwrap_or_else(|| " (no registration file)".into())
    ));
    if let Some(s) = stripped_summary(score) {
        out.push_str(&format!("note: {s}\n"));
    }
    for n in timeline.warnings.iter().filter(|w| w.kind.is_note()) {
        out.push_str(&format!("note: {n}\n"));
    }
    let warnings = all_warnings(score, &timeline);
    for w in &warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if warnings.is_empty() {
        out.push_str("ok: no problems found\n");
    } else {
        out.push_str(&format!("ok with {} warning(s)\n", warnings.len()));
    }
    write_out(|o| o.write_all(out.as_bytes()))?;
    Ok(if c.deny_warnings && !warnings.is_empty() { 1 } else { 0 })
}

/// `organ check ORDER.toml`: every item of an order of service planned as `organ service` plays
/// it, with its warnings (the item's number before each).
fn check_order_of_service(c: &CheckCmd) -> Result<Status, Error> {
    let order = crate::service::order::load(&c.plan.score, c.plan.organ.as_deref())?;
    let mut out = format!("{} ({}): {} item(s)\n", order.title, order.source, order.items.len());
    let mut count = 0;
    for (i, item) in order.items.iter().enumerate() {
        let t = item.plan(item.transpose, None, &[]).map_err(|e| Error::Other(format!("{}: {e}", item.title)))?;
        out.push_str(&format!(
            "{}. {}: {} on {} ({}), {} messages, {} long\n",
            i + 1,
            item.title,
            item.score.name,
            item.organ.name,
            item.summary(),
            t.events.len(),
            t.duration
        ));
        for n in t.warnings.iter().filter(|w| w.kind.is_note()) {
            out.push_str(&format!("note: {}. {n}\n", i + 1));
        }
        let warnings = all_warnings(&item.score, &t);
        for w in &warnings {
            out.push_str(&format!("warning: {}. {w}\n", i + 1));
        }
        count += warnings.len();
    }
    out.push_str(&if count == 0 {
        "ok: no problems found\n".to_string()
    } else {
        format!("ok with {count} warning(s)\n")
    });
    write_out(|o| o.write_all(out.as_bytes()))?;
    Ok(if c.deny_warnings && count > 0 { 1 } else { 0 })
}

fn plan_assignment(inputs: &Inputs) -> Result<Vec<Option<usize>>, Error> {
    let reg = inputs.registration.as_ref();
    let (l, from) = match (&inputs.options.layout, reg.and_then(|r| r.layout.clone())) {
        (Some(l), _) => (l.clone(), "--layout".to_string()),
        (None, Some(l)) => (l, reg.map(|r| r.source.clone()).unwrap_or_default()),
        _ => (plan::DEFAULT_LAYOUT.to_string(), "the default".to_string()),
    };
    let map = inputs.options.map.as_deref().or(reg.and_then(|r| r.map.as_deref()));
    Ok(layout::resolve(&inputs.score, &inputs.organ, layout::LayoutSource { layout: &l, from: &from }, map)
        .map_err(PlanError::from)?)
}

/// `organ info`.
///
/// # Errors
/// An unloadable score or organ.
pub fn cmd_info(c: &InfoCmd) -> Result<Status, Error> {
    let score = score::load_file(&c.score)?;
    let reg = registration_beside(&c.score);
    let organ_name = c
        .organ
        .clone()
        .or_else(|| std::fs::read_to_string(&reg).ok().and_then(|t| organ_hint(&t)))
        .unwrap_or_else(|| "st-marys".to_string());
    let organ = Organ::find(&organ_name)?;
    let mut o = String::new();
    let end = score.last_note_end();
    let timing = match score.timing {
        score::Timing::Metrical { ppq } => format!("{ppq} ticks per quarter note"),
        score::Timing::Timecode { fps, subframes } => {
            format!(
                "SMPTE {} fps × {subframes} ticks per frame",
                if fps == 29 { "29.97".to_string() } else { fps.to_string() }
            )
        }
    };
    o.push_str(&format!(
        "{}: SMF format {}, {timing}, {} track(s), {} part(s), {} notes\n",
        score.name,
        score.format,
        score.tracks,
        score.parts.len(),
        score.note_count()
    ));
    o.push_str(&format!(
        "length: {} to the last note ({} bars), {} to the end of the file\n",
        score.tempo.micros(end),
        score.meter.position(end.saturating_sub(1)).bar,
        score.tempo.micros(score.end_tick)
    ));
    o.push_str("parts:\n");
    for p in &score.parts {
        o.push_str(&format!("  {}  (track {})\n", layout::describe_part(p), p.track + 1));
    }
    o.push_str("tempo:\n");
    for c in score.tempo.changes() {
        o.push_str(&format!(
            "  bar {:<8} {:>7.2} bpm ({} µs per quarter) at {}\n",
            score.meter.position(c.tick).to_string(),
            bpm(c.us_per_quarter),
            c.us_per_quarter,
            score.tempo.micros(c.tick)
        ));
    }
    o.push_str("time signatures:\n");
    for (m, bar) in score.meter.changes() {
        o.push_str(&format!("  bar {bar:<8} {}/{}\n", m.numerator, 1u32 << m.denominator_pow2.min(31)));
    }
    if let Some(s) = stripped_summary(&score) {
        o.push_str(&format!("note: {s}\n"));
    }
    for w in &score.warnings {
        let at = w.tick.map(|t| format!(" (from bar {})", score.meter.position(t))).unwrap_or_default();
        let part = w.part.map(|p| format!("part {p}: ")).unwrap_or_default();
        o.push_str(&format!("warning: {part}{}{at}\n", w.message));
    }
    o.push_str(&format!("suggested layout for {}: --layout {}\n", organ.name, layout::suggest_layout(&score, &organ)));
    write_out(|out| out.write_all(o.as_bytes()))?;
    Ok(0)
}

// --- organ ble ----------------------------------------------------------------------------------

/// `organ ble scan`.
///
/// # Errors
/// Built without the `ble` feature; no Bluetooth (no BlueZ, no adapter, adapter off).
pub fn cmd_ble(c: &crate::cli::BleCmd) -> Result<Status, Error> {
    match c {
        crate::cli::BleCmd::Scan(s) => ble_scan(s.seconds),
    }
}

#[cfg(feature = "ble")]
fn ble_scan(seconds: f64) -> Result<Status, Error> {
    if !(seconds.is_finite() && (0.1..=600.0).contains(&seconds)) {
        return Err(Error::Usage(format!("--seconds {seconds}: use 0.1 to 600 seconds")));
    }
    let devices = crate::output::ble::scan(seconds).map_err(|e| Error::Other(format!("Bluetooth: {e}")))?;
    let mut o = String::new();
    if devices.is_empty() {
        o.push_str(&format!(
            "no BLE-MIDI devices found in {seconds:.1} s (is the device on, in range, and not connected to another \
             computer or phone?)\n"
        ));
    } else {
        o.push_str(&format!("BLE-MIDI devices found in {seconds:.1} s (strongest signal first):\n"));
        let width = devices.iter().map(|d| d.name.as_deref().unwrap_or("(no name)").chars().count()).max().unwrap_or(0);
        for d in &devices {
            let rssi = d.rssi.map(|r| format!("{r} dBm")).unwrap_or_else(|| "signal unknown".into());
            o.push_str(&format!("  {:<width$}  {}  {rssi}\n", d.name.as_deref().unwrap_or("(no name)"), d.address));
        }
        let example = devices[0].name.clone().unwrap_or_else(|| devices[0].address.clone());
        o.push_str(&format!("play to one with --to ble:\"{example}\" (a part of the name or the address)\n"));
    }
    write_out(|out| out.write_all(o.as_bytes()))?;
    Ok(0)
}

#[cfg(not(feature = "ble"))]
fn ble_scan(_seconds: f64) -> Result<Status, Error> {
    Err(Error::Other("this organ was built without Bluetooth LE MIDI (cargo feature `ble`)".into()))
}

// --- organ grandorgue … -----------------------------------------------------------------------
// (kept in one block so that it merges easily with other commands)

/// `organ grandorgue config|organ|port`.
///
/// # Errors
/// As the subcommands.
pub fn cmd_grandorgue(c: &crate::cli::GrandorgueCmd) -> Result<Status, Error> {
    match &c.command {
        crate::cli::GrandorgueCommand::Config(c) => cmd_grandorgue_config(c),
        crate::cli::GrandorgueCommand::Organ(c) => cmd_grandorgue_organ(c),
        crate::cli::GrandorgueCommand::Port(c) => cmd_grandorgue_port(c),
    }
}

/// `organ grandorgue config`: match, bind, report, write the .cmb.
///
/// # Errors
/// Unreadable organ definition or ODF; an existing foreign .cmb without `--force`; write errors.
pub fn cmd_grandorgue_config(c: &crate::cli::GrandorgueConfigCmd) -> Result<Status, Error> {
    let organ = Organ::find(&c.organ)?;
    let done = crate::grandorgue::files::write_config(&organ, &c.odf, c.out.as_deref(), c.force)
        .map_err(|e| Error::Other(e.to_string()))?;
    write_out(|o| o.write_all(done.report.as_bytes()))?;
    Ok(0)
}

/// `organ grandorgue organ`: an organ definition from a GrandOrgue organ, to a file or stdout.
///
/// # Errors
/// Unreadable ODF; an existing file without `--force`; write errors.
pub fn cmd_grandorgue_organ(c: &crate::cli::GrandorgueOrganCmd) -> Result<Status, Error> {
    let done = crate::grandorgue::files::write_organ(&c.odf, c.out.as_deref(), c.force)
        .map_err(|e| Error::Other(e.to_string()))?;
    if done.wrote.is_none() {
        write_out(|o| o.write_all(done.toml.as_bytes()))?;
    }
    eprintln!("organ: {}", done.summary);
    Ok(0)
}

/// `organ grandorgue port`: keep a loopback port open until Ctrl-C.
///
/// # Errors
/// No way to open a port here (no JACK server and no virtual-port backend), with what to do; the
/// JACK server shutting down while the port is open.
pub fn cmd_grandorgue_port(c: &crate::cli::GrandorguePortCmd) -> Result<Status, Error> {
    use crate::grandorgue::loopback::{Backends, LoopbackOptions, open_grandorgue};
    use crate::output::Link;
    let opts = match c.via.as_str() {
        "auto" => LoopbackOptions::default(),
        #[cfg(feature = "jack")]
        "jack" => LoopbackOptions::default(),
        other => return Err(Error::Usage(format!("--via {other}: use auto or jack"))),
    };
    let lb = if c.via == "jack" {
        #[cfg(feature = "jack")]
        {
            let out = crate::output::jack::open_port("jack").map_err(Error::Other)?;
            let message = format!(
                "created the JACK MIDI port {}; start GrandOrgue now (with JACK MIDI enabled): it connects to the MIDI sources it finds at start-up",
                out.port_name()
            );
            crate::grandorgue::loopback::Loopback { output: Box::new(out), message }
        }
        #[cfg(not(feature = "jack"))]
        unreachable!("--via jack is rejected above without the jack feature")
    } else {
        open_grandorgue(&opts, &Backends::default()).map_err(Error::Other)?
    };
    println!("{}", lb.message);
    println!("keeping it open; press Ctrl-C to close it");
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        if lb.output.link() == Link::Down {
            return Err(Error::Other("the MIDI port went away (the JACK server shut down?)".into()));
        }
    }
}
