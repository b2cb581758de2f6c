//! Reading a GrandOrgue organ definition file (ODF, `*.organ`, an INI file), directly or from an
//! organ package (`*.orgue`, see [`super::package`]).
//!
//! What `organ` uses is modelled the way GrandOrgue 3.9 reads it (`GOOrganModel::Load`,
//! `GOManual::Load`, `GODrawstop::Load`): the church name (GrandOrgue compares it with the
//! settings file's); the manuals with the stops, couplers, tremulants and switches each lists;
//! the organ-wide tremulants, switches and divisional couplers; each element's name, console
//! label, `Function` and the switches it is computed from; enclosures, windchest groups and the
//! ranks' windchests (which enclosure a stop sits in); and the generals. Which element takes a
//! control's MIDI is worked out in [`super::drive`].
//!
//! The INI dialect is GrandOrgue's own (`GOConfigFileReader`): a UTF-8 BOM means UTF-8, anything
//! else is ISO-8859-1; `;` starts a comment line; `[Section]`; `Key=Value` with the key up to the
//! first `=`. GrandOrgue looks ODF keys up case-insensitively, so this reader does too.
//! Runs on the control thread.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// A parsed INI file: sections in file order, keys looked up case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct Ini {
    /// Section name → (key → raw value). Keys are stored lower-cased; values exactly as written
    /// (only the line's trailing `\r` removed).
    sections: HashMap<String, HashMap<String, String>>,
    /// Section names in file order (original spelling).
    order: Vec<String>,
    /// Exact-case `[Organ] ChurchName`, as GrandOrgue's settings check reads it.
    church_name_exact: Option<String>,
}

impl Ini {
    /// Decodes GrandOrgue-style: UTF-8 after a BOM, otherwise ISO-8859-1.
    pub fn decode(bytes: &[u8]) -> String {
        match bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
            Some(rest) => String::from_utf8_lossy(rest).into_owned(),
            None => bytes.iter().map(|&b| b as char).collect(),
        }
    }

    /// Parses INI text. Malformed lines are skipped, as GrandOrgue does (it logs them).
    pub fn parse(text: &str) -> Ini {
        let mut ini = Ini::default();
        let mut current: Option<String> = None;
        for raw in text.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() || line.starts_with(';') {
                continue;
            }
            let trimmed_end = line.trim_end();
            if line.starts_with('[') && trimmed_end.len() > 1 && trimmed_end.ends_with(']') {
                let name = trimmed_end[1..trimmed_end.len() - 1].to_string();
                let key = name.to_ascii_lowercase();
                if !ini.sections.contains_key(&key) {
                    ini.order.push(name);
                }
                ini.sections.entry(key.clone()).or_default();
                current = Some(key);
                continue;
            }
            let (Some(section), Some(eq)) = (&current, line.find('=')) else { continue };
            if eq == 0 {
                continue;
            }
            let (k, v) = (&line[..eq], &line[eq + 1..]);
            if section == "organ" && k == "ChurchName" {
                ini.church_name_exact = Some(v.to_string());
            }
            ini.sections
                .get_mut(section)
                .expect("current section exists")
                .insert(k.trim().to_ascii_lowercase(), v.to_string());
        }
        ini
    }

    /// The raw value of `key` in `section` (both case-insensitive).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(&section.to_ascii_lowercase())?.get(&key.to_ascii_lowercase()).map(String::as_str)
    }

    /// The value with surrounding whitespace removed; `None` when missing or empty.
    pub fn get_trimmed(&self, section: &str, key: &str) -> Option<&str> {
        self.get(section, key).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn has_section(&self, section: &str) -> bool {
        self.sections.contains_key(&section.to_ascii_lowercase())
    }

    /// Section names in file order.
    pub fn sections(&self) -> &[String] {
        &self.order
    }
}

/// Why an ODF could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdfError {
    pub file: String,
    pub message: String,
}

impl fmt::Display for OdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl std::error::Error for OdfError {}

/// What kind of GrandOrgue element a section is. All of them are drawstops in GrandOrgue
/// (`GODrawstop`): on or off, set by MIDI when their `Function` is `Input`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementKind {
    Stop,
    Coupler,
    Tremulant,
    /// `[SwitchNNN]`: a drawknob with no sound of its own that other elements follow.
    Switch,
    DivisionalCoupler,
}

impl ElementKind {
    /// The section prefix, e.g. `Stop` for `[Stop003]`.
    pub fn section_prefix(self) -> &'static str {
        match self {
            ElementKind::Stop => "Stop",
            ElementKind::Coupler => "Coupler",
            ElementKind::Tremulant => "Tremulant",
            ElementKind::Switch => "Switch",
            ElementKind::DivisionalCoupler => "DivisionalCoupler",
        }
    }
    pub fn noun(self) -> &'static str {
        match self {
            ElementKind::Stop => "stop",
            ElementKind::Coupler => "coupler",
            ElementKind::Tremulant => "tremulant",
            ElementKind::Switch => "switch",
            ElementKind::DivisionalCoupler => "divisional coupler",
        }
    }
}

/// A drawstop's `Function` (GrandOrgue 3.x): `Input` takes MIDI and the mouse; the others are
/// computed from the switches the element lists and take no MIDI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Input,
    And,
    Or,
    Not,
    Nand,
    Nor,
    Xor,
}

impl Function {
    fn parse(v: &str) -> Option<Function> {
        const ALL: [(&str, Function); 7] = [
            ("input", Function::Input),
            ("and", Function::And),
            ("or", Function::Or),
            ("not", Function::Not),
            ("nand", Function::Nand),
            ("nor", Function::Nor),
            ("xor", Function::Xor),
        ];
        ALL.iter().find(|(n, _)| v.trim().eq_ignore_ascii_case(n)).map(|(_, f)| *f)
    }

    /// Whether an element computed this way is on exactly when its switches are (`And`, `Or`);
    /// the others invert.
    pub fn follows(self) -> bool {
        matches!(self, Function::And | Function::Or)
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Function::Input => "Input",
            Function::And => "And",
            Function::Or => "Or",
            Function::Not => "Not",
            Function::Nand => "Nand",
            Function::Nor => "Nor",
            Function::Xor => "Xor",
        })
    }
}

/// A stop, coupler, tremulant, switch or divisional coupler of the ODF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub kind: ElementKind,
    /// The ODF number: `[Stop003]` → 3. The settings file uses the same section name.
    pub number: u32,
    pub name: String,
    /// The ODF manual numbers that list this element (stops and couplers: the manual they belong
    /// to; tremulants and switches: the manuals that list them for their divisionals).
    pub manuals: Vec<u32>,
    /// Couplers: the manual whose pipes are played (`DestinationManual`).
    pub destination: Option<u32>,
    /// Couplers: `DestinationKeyshift` in semitones.
    pub keyshift: i32,
    /// Couplers: `UnisonOff=Y`.
    pub unison_off: bool,
    /// `Input` takes MIDI; any other function is computed from `switches` and takes none.
    pub function: Function,
    /// The switch numbers a computed element is computed from (`Switch001=…`), in order.
    pub switches: Vec<u32>,
    /// `DefaultToEngaged=Y`.
    pub default_on: bool,
    /// `DispLabelText`, when it differs from the name (the label on the console).
    pub label: Option<String>,
    /// Stops: the windchest groups of its pipes (its own `WindchestGroup` and its ranks').
    pub windchests: Vec<u32>,
    /// Stops: `NumberOfAccessiblePipes` (one pipe: a sound effect such as a stop noise).
    pub pipes: Option<u32>,
}

impl Element {
    /// The settings-file section, e.g. `Stop003`.
    pub fn section(&self) -> String {
        format!("{}{:03}", self.kind.section_prefix(), self.number)
    }

    /// Whether GrandOrgue reads MIDI settings for it (`Function=Input`).
    pub fn takes_midi(&self) -> bool {
        self.function == Function::Input
    }
}

/// A manual (or the pedal, manual 0) of the ODF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manual {
    /// `[Manual000]` is the pedal when `HasPedals=Y`.
    pub number: u32,
    pub name: String,
    /// MIDI note of the first key and number of keys.
    pub first_note: u8,
    pub keys: u32,
    /// The stop and coupler numbers it lists, in order (generals refer to them by position).
    pub stops: Vec<u32>,
    pub couplers: Vec<u32>,
}

impl Manual {
    pub fn section(&self) -> String {
        format!("Manual{:03}", self.number)
    }
}

/// A swell box (`[EnclosureNNN]`): its shutters follow a MIDI controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enclosure {
    pub number: u32,
    pub name: String,
}

impl Enclosure {
    pub fn section(&self) -> String {
        format!("Enclosure{:03}", self.number)
    }
}

/// A windchest group: which enclosures its pipes sit in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windchest {
    pub number: u32,
    pub name: String,
    pub enclosures: Vec<u32>,
}

/// A general combination (`[GeneralNNN]`) of the ODF: the elements it draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct General {
    pub number: u32,
    pub name: String,
    /// Indices into `Odf::elements` of the elements it draws (its positive entries).
    pub draws: Vec<usize>,
}

/// The parts of an ODF that `organ` uses.
#[derive(Debug, Clone)]
pub struct Odf {
    /// Where it was read from, for messages (`pkg.orgue:demo.organ` inside a package).
    pub source: String,
    /// Whether it came from an organ package (`.orgue`): GrandOrgue then never reads a `.cmb`
    /// beside it, only imported settings.
    pub from_package: bool,
    /// `[Organ] ChurchName` exactly as GrandOrgue compares it with the settings file's (its exact
    /// spelling of the key, trailing whitespace removed).
    pub church_name: String,
    pub manuals: Vec<Manual>,
    pub elements: Vec<Element>,
    pub enclosures: Vec<Enclosure>,
    pub windchests: Vec<Windchest>,
    pub generals: Vec<General>,
    /// How the elements are wired (see [`super::drive`]), worked out when parsed.
    pub(super) wiring: super::drive::Wiring,
}

fn yes(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.trim().chars().next(), Some('Y' | 'y')))
}

/// Typed access to the INI with errors that name the file.
struct Reader<'a> {
    ini: &'a Ini,
    source: &'a str,
}

impl Reader<'_> {
    fn err(&self, message: String) -> OdfError {
        OdfError { file: self.source.to_string(), message }
    }

    fn int(&self, section: &str, key: &str) -> Result<Option<i64>, OdfError> {
        match self.ini.get_trimmed(section, key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| self.err(format!("[{section}] {key}={v}: not a number"))),
        }
    }

    /// A count or element number: missing → 0; negative or huge → an error.
    fn count(&self, section: &str, key: &str) -> Result<u32, OdfError> {
        let v = self.int(section, key)?.unwrap_or(0);
        u32::try_from(v)
            .ok()
            .filter(|n| *n < 100_000)
            .ok_or_else(|| self.err(format!("[{section}] {key}={v}: out of range")))
    }

    /// `key001`…`keyNNN` for `n` entries, each a number.
    fn list(&self, section: &str, key: &str, n: u32, count_key: &str) -> Result<Vec<u32>, OdfError> {
        (1..=n)
            .map(|i| {
                let k = format!("{key}{i:03}");
                if self.ini.get_trimmed(section, &k).is_none() {
                    return Err(self.err(format!("[{section}] {count_key}={n} but {k} is missing")));
                }
                self.count(section, &k)
            })
            .collect()
    }

    fn text(&self, section: &str, key: &str) -> Option<&str> {
        self.ini.get_trimmed(section, key)
    }
}

/// What the manuals list, gathered before the elements are read.
#[derive(Default)]
struct Listing {
    /// (kind, number, manual) in file order.
    refs: Vec<(ElementKind, u32, u32)>,
}

impl Odf {
    /// Reads and parses an ODF file, or the organ in an organ package (`.orgue`; a package with
    /// several organs: `PACKAGE.orgue:NAME.organ`).
    ///
    /// # Errors
    /// Unreadable file, a package GrandOrgue could not read either, or not an organ definition
    /// (see [`Odf::parse`]).
    pub fn load(path: &Path) -> Result<Odf, OdfError> {
        let file = path.display().to_string();
        if let Some((pkg, entry)) = split_package_path(path) {
            return Odf::load_package(&pkg, entry.as_deref());
        }
        // A package under another name is recognised by its first bytes, before the whole file
        // (gigabytes of samples) would be read, or refused as too large for an ODF.
        let err = |e: crate::files::FileError| OdfError { file: file.clone(), message: e.problem.to_string() };
        let mut magic = [0u8; 4];
        let opened = crate::files::open_user_file(path, crate::files::FileKind::OrganPackage).map_err(err)?;
        if std::io::Read::read_exact(&mut &opened, &mut magic).is_ok() && &magic == b"PK\x03\x04" {
            return Odf::load_package(path, None);
        }
        let bytes = crate::files::read_user_file(path, crate::files::FileKind::Odf).map_err(err)?;
        Odf::parse(&Ini::decode(&bytes), &file)
    }

    fn load_package(path: &Path, entry: Option<&str>) -> Result<Odf, OdfError> {
        let mut pkg = super::package::Package::open(path)?;
        let organs = pkg.organs()?;
        let listed = || organs.iter().map(|o| format!("{} (\"{}\")", o.odf, o.church_name)).collect::<Vec<_>>();
        let odf = match (entry, organs.as_slice()) {
            (Some(e), _) => organs
                .iter()
                .find(|o| o.odf.replace('\\', "/").eq_ignore_ascii_case(&e.replace('\\', "/")))
                .ok_or_else(|| OdfError {
                    file: pkg.path.clone(),
                    message: format!("the package has no organ {e}; it has {}", listed().join(", ")),
                })?,
            (None, [one]) => one,
            (None, _) => {
                return Err(OdfError {
                    file: pkg.path.clone(),
                    message: format!(
                        "the package holds {} organs: {}; name one as {}:NAME.organ",
                        organs.len(),
                        listed().join(", "),
                        pkg.path
                    ),
                });
            }
        };
        let bytes = pkg.read(&odf.odf)?;
        let mut parsed = Odf::parse(&Ini::decode(&bytes), &format!("{}:{}", pkg.path, odf.odf))?;
        parsed.from_package = true;
        Ok(parsed)
    }

    /// Parses ODF text. `source` names the file in messages.
    ///
    /// # Errors
    /// No `[Organ]` section, no `NumberOfManuals`, a reference to a section or switch that does
    /// not exist, or a number that is not one.
    pub fn parse(text: &str, source: &str) -> Result<Odf, OdfError> {
        let ini = Ini::parse(text);
        let r = Reader { ini: &ini, source };
        if !ini.has_section("Organ") {
            return Err(r.err("no [Organ] section: this is not a GrandOrgue organ definition (.organ) file".into()));
        }
        let church_name = ini.church_name_exact.clone().unwrap_or_default().trim_end().to_string();
        let n_manuals =
            r.int("Organ", "NumberOfManuals")?.ok_or_else(|| r.err("[Organ] has no NumberOfManuals".into()))?;
        let first = if yes(ini.get("Organ", "HasPedals")) { 0 } else { 1 };
        let n_switches = r.count("Organ", "NumberOfSwitches")?;
        let n_tremulants = r.count("Organ", "NumberOfTremulants")?;
        let enclosures = (1..=r.count("Organ", "NumberOfEnclosures")?)
            .map(|n| {
                let s = format!("Enclosure{n:03}");
                Enclosure { number: n, name: r.text(&s, "Name").unwrap_or(&s).to_string() }
            })
            .collect();
        let mut windchests = Vec::new();
        for n in 1..=r.count("Organ", "NumberOfWindchestGroups")? {
            let s = format!("WindchestGroup{n:03}");
            let count = r.count(&s, "NumberOfEnclosures")?;
            let enclosures = r.list(&s, "Enclosure", count, "NumberOfEnclosures")?;
            windchests.push(Windchest {
                number: n,
                name: r.text(&s, "Name").unwrap_or_default().to_string(),
                enclosures,
            });
        }
        let mut manuals = Vec::new();
        let mut listing = Listing::default();
        for m in first..=n_manuals.max(0) {
            manuals.push(read_manual(&r, m as u32, n_manuals, &mut listing)?);
        }
        let mut elements: Vec<Element> = Vec::new();
        for &(kind, no, manual) in &listing.refs {
            if matches!(kind, ElementKind::Tremulant | ElementKind::Switch) {
                let (max, what) = if kind == ElementKind::Switch {
                    (n_switches, "NumberOfSwitches")
                } else {
                    (n_tremulants, "NumberOfTremulants")
                };
                if no == 0 || no > max {
                    return Err(r.err(format!(
                        "Manual{manual:03} refers to {}{no:03}, but [Organ] {what}={max}",
                        kind.section_prefix()
                    )));
                }
                continue; // read below, organ-wide
            }
            match elements.iter_mut().find(|e| e.kind == kind && e.number == no) {
                Some(e) if !e.manuals.contains(&manual) => e.manuals.push(manual),
                Some(_) => {}
                None => elements.push(read_element(&r, kind, no, Some(manual))?),
            }
        }
        let organ_wide = [
            (ElementKind::Tremulant, n_tremulants),
            (ElementKind::Switch, n_switches),
            (ElementKind::DivisionalCoupler, r.count("Organ", "NumberOfDivisionalCouplers")?),
        ];
        for (kind, n) in organ_wide {
            for no in 1..=n {
                let mut e = read_element(&r, kind, no, None)?;
                e.manuals = listing.refs.iter().filter(|x| x.0 == kind && x.1 == no).map(|x| x.2).collect();
                e.manuals.dedup();
                elements.push(e);
            }
        }
        for e in &elements {
            if let Some(bad) = e.switches.iter().find(|&&s| s == 0 || s > n_switches) {
                return Err(r.err(format!(
                    "[{}] refers to Switch{bad:03}, but [Organ] NumberOfSwitches={n_switches}",
                    e.section()
                )));
            }
        }
        let generals = read_generals(&r, &manuals, &elements)?;
        let source = source.to_string();
        let wiring = super::drive::Wiring::default();
        let mut odf = Odf {
            source,
            from_package: false,
            church_name,
            manuals,
            elements,
            enclosures,
            windchests,
            generals,
            wiring,
        };
        odf.wire();
        Ok(odf)
    }

    pub fn manual(&self, number: u32) -> Option<&Manual> {
        self.manuals.iter().find(|m| m.number == number)
    }

    /// The index in `elements` of `[<Kind><number>]`.
    pub fn index_of(&self, kind: ElementKind, number: u32) -> Option<usize> {
        self.elements.iter().position(|e| e.kind == kind && e.number == number)
    }
}

/// `PACKAGE.orgue:ENTRY` (when that file does not exist but the package does): the package and
/// the entry; a path ending in `.orgue`: the package alone.
fn split_package_path(path: &Path) -> Option<(std::path::PathBuf, Option<String>)> {
    if super::package::is_package(path) {
        return Some((path.to_path_buf(), None));
    }
    let s = path.to_str()?;
    let at = s.to_ascii_lowercase().rfind(".orgue:")? + ".orgue".len();
    let pkg = Path::new(&s[..at]);
    (!path.exists() && pkg.is_file()).then(|| (pkg.to_path_buf(), Some(s[at + 1..].to_string())))
}

fn read_manual(r: &Reader, m: u32, n_manuals: i64, listing: &mut Listing) -> Result<Manual, OdfError> {
    let section = format!("Manual{m:03}");
    if !r.ini.has_section(&section) {
        return Err(r.err(format!("[{section}] is missing (NumberOfManuals={n_manuals})")));
    }
    let mut lists: Vec<Vec<u32>> = Vec::new();
    for (kind, count_key) in [
        (ElementKind::Stop, "NumberOfStops"),
        (ElementKind::Coupler, "NumberOfCouplers"),
        (ElementKind::Tremulant, "NumberOfTremulants"),
        (ElementKind::Switch, "NumberOfSwitches"),
    ] {
        let count = r.count(&section, count_key)?;
        let numbers = r.list(&section, kind.section_prefix(), count, count_key)?;
        listing.refs.extend(numbers.iter().map(|&n| (kind, n, m)));
        lists.push(numbers);
    }
    Ok(Manual {
        number: m,
        name: r.text(&section, "Name").unwrap_or(&section).to_string(),
        first_note: r.int(&section, "FirstAccessibleKeyMIDINoteNumber")?.unwrap_or(36).clamp(0, 127) as u8,
        keys: r.int(&section, "NumberOfAccessibleKeys")?.unwrap_or(0).max(0) as u32,
        stops: std::mem::take(&mut lists[0]),
        couplers: std::mem::take(&mut lists[1]),
    })
}

/// Reads `[<Kind><no>]`, listed by `manual` (organ-wide elements: `None`).
fn read_element(r: &Reader, kind: ElementKind, no: u32, manual: Option<u32>) -> Result<Element, OdfError> {
    let section = format!("{}{no:03}", kind.section_prefix());
    if !r.ini.has_section(&section) {
        let by = manual.map_or_else(|| "[Organ]".to_string(), |m| format!("Manual{m:03}"));
        return Err(r.err(format!("{by} refers to [{section}], which does not exist")));
    }
    let function = match r.text(&section, "Function") {
        None => Function::Input,
        Some(f) => Function::parse(f).ok_or_else(|| {
            r.err(format!("[{section}] Function={f}: expected Input, And, Or, Not, Nand, Nor or Xor"))
        })?,
    };
    let switches = match function {
        Function::Input => Vec::new(),
        Function::Not => match r.text(&section, "Switch001") {
            Some(_) => vec![r.count(&section, "Switch001")?],
            None => return Err(r.err(format!("[{section}] Function=Not needs Switch001"))),
        },
        _ => {
            let n = r.count(&section, "SwitchCount")?;
            if n == 0 {
                return Err(r.err(format!("[{section}] Function={function} needs SwitchCount (1 or more)")));
            }
            r.list(&section, "Switch", n, "SwitchCount")?
        }
    };
    let name = r.text(&section, "Name").unwrap_or(&section).to_string();
    let label = r.text(&section, "DispLabelText").filter(|l| *l != name).map(str::to_string);
    let mut windchests: Vec<u32> = r.count(&section, "WindchestGroup").map(|w| vec![w]).unwrap_or_default();
    if kind == ElementKind::Stop {
        let n = r.count(&section, "NumberOfRanks")?;
        for rank in r.list(&section, "Rank", n, "NumberOfRanks")? {
            let w = r.count(&format!("Rank{rank:03}"), "WindchestGroup")?;
            windchests.push(w);
        }
    }
    windchests.retain(|w| *w != 0);
    windchests.dedup();
    Ok(Element {
        kind,
        number: no,
        name,
        manuals: manual.into_iter().collect(),
        destination: r.int(&section, "DestinationManual")?.and_then(|d| u32::try_from(d).ok()),
        keyshift: r.int(&section, "DestinationKeyshift")?.unwrap_or(0).clamp(-128, 128) as i32,
        unison_off: yes(r.ini.get(&section, "UnisonOff")),
        function,
        switches,
        default_on: yes(r.ini.get(&section, "DefaultToEngaged")),
        label,
        windchests,
        pipes: r.int(&section, "NumberOfAccessiblePipes")?.and_then(|p| u32::try_from(p).ok()),
    })
}

/// The generals' positive entries (what each draws). Entries that do not resolve are skipped:
/// generals only become comments in a generated organ definition.
fn read_generals(r: &Reader, manuals: &[Manual], elements: &[Element]) -> Result<Vec<General>, OdfError> {
    let find = |kind: ElementKind, no: u32| elements.iter().position(|e| e.kind == kind && e.number == no);
    let positive = |s: &str, k: &str| r.int(s, k).ok().flatten().filter(|v| *v > 0).map(|v| v as u32);
    let mut generals = Vec::new();
    for n in 1..=r.count("Organ", "NumberOfGenerals")? {
        let s = format!("General{n:03}");
        let mut draws = Vec::new();
        for (kind, count_key, manual_key, number_key) in [
            (ElementKind::Stop, "NumberOfStops", Some("StopManual"), "StopNumber"),
            (ElementKind::Coupler, "NumberOfCouplers", Some("CouplerManual"), "CouplerNumber"),
            (ElementKind::Tremulant, "NumberOfTremulants", None, "TremulantNumber"),
            (ElementKind::Switch, "NumberOfSwitches", None, "SwitchNumber"),
            (ElementKind::DivisionalCoupler, "NumberOfDivisionalCouplers", None, "DivisionalCouplerNumber"),
        ] {
            for i in 1..=r.count(&s, count_key).unwrap_or(0) {
                let Some(pos) = positive(&s, &format!("{number_key}{i:03}")) else { continue };
                let no = match manual_key {
                    // Stops and couplers are numbered by their position in the manual's list.
                    Some(mk) => {
                        let m = r.int(&s, &format!("{mk}{i:03}")).ok().flatten().unwrap_or(-1);
                        let list = manuals.iter().find(|x| i64::from(x.number) == m);
                        let list = list.map(|x| if kind == ElementKind::Stop { &x.stops } else { &x.couplers });
                        list.and_then(|l| l.get(pos as usize - 1)).copied()
                    }
                    None => Some(pos),
                };
                if let Some(i) = no.and_then(|no| find(kind, no)) {
                    draws.push(i);
                }
            }
        }
        generals.push(General { number: n, name: r.text(&s, "Name").unwrap_or(&s).to_string(), draws });
    }
    Ok(generals)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODF: &str = "\u{feff}; comment\r\n[Organ]\r\nChurchName=Test Church  \r\nNumberOfManuals=2\r\nHasPedals=Y\r\nNumberOfTremulants=1\r\nNumberOfSwitches=1\r\n\
[Manual000]\nName=Pedal\nNumberOfStops=1\nStop001=3\nnumberofcouplers=1\nCoupler001=1\n\
[Manual001]\nName=Great\nNumberOfStops=1\nStop001=1\nFirstAccessibleKeyMIDINoteNumber=36\nNumberOfAccessibleKeys=61\n\
[Manual002]\nName=Swell\nNumberOfStops=1\nStop001=2\nNumberOfTremulants=1\nTremulant001=1\n\
[Stop001]\nName=Principal 8'\n[Stop002]\nName= Gedackt 8 \n[Stop003]\nName=Subbass 16\nFunction=And\nSwitchCount=1\nSwitch001=1\n[Switch001]\nName=Subbass\n\
[Coupler001]\nName=Swell to Pedal\nDestinationManual=2\nDestinationKeyshift=0\n[Tremulant001]\nName=Tremulant\n";

    #[test]
    fn parses_manuals_and_elements() {
        let odf = Odf::parse(ODF, "t.organ").unwrap();
        assert_eq!(odf.church_name, "Test Church");
        let names: Vec<(u32, &str)> = odf.manuals.iter().map(|m| (m.number, m.name.as_str())).collect();
        assert_eq!(names, [(0, "Pedal"), (1, "Great"), (2, "Swell")]);
        let st: Vec<(String, &str, Vec<u32>)> =
            odf.elements.iter().map(|e| (e.section(), e.name.as_str(), e.manuals.clone())).collect();
        assert_eq!(
            st,
            [
                ("Stop003".to_string(), "Subbass 16", vec![0]),
                ("Coupler001".to_string(), "Swell to Pedal", vec![0]),
                ("Stop001".to_string(), "Principal 8'", vec![1]),
                ("Stop002".to_string(), "Gedackt 8", vec![2]),
                ("Tremulant001".to_string(), "Tremulant", vec![2]),
                ("Switch001".to_string(), "Subbass", vec![]),
            ]
        );
        assert!(!odf.elements[0].takes_midi());
        assert_eq!((odf.elements[0].function, odf.elements[0].switches.clone()), (Function::And, vec![1]));
        assert!(odf.elements[1].takes_midi());
        assert_eq!(odf.elements[1].destination, Some(2));
        assert_eq!(odf.manual(1).unwrap().keys, 61);
    }

    #[test]
    fn latin1_without_bom() {
        let bytes = b"[Organ]\nChurchName=St. M\xe4rien\nNumberOfManuals=0\n";
        let odf = Odf::parse(&Ini::decode(bytes), "x").unwrap();
        assert_eq!(odf.church_name, "St. Märien");
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(Odf::parse("[Foo]\nA=1\n", "x").unwrap_err().message.contains("not a GrandOrgue"));
        let e = Odf::parse("[Organ]\nNumberOfManuals=1\n[Manual001]\nName=I\nNumberOfStops=1\nStop001=9\n", "x")
            .unwrap_err();
        assert!(e.message.contains("[Stop009]"), "{e}");
        let e = Odf::parse("[Organ]\nNumberOfManuals=1\n", "x").unwrap_err();
        assert!(e.message.contains("[Manual001] is missing"), "{e}");
        let bad_switch = ODF.replace("Switch001=1\n[Switch001]", "Switch001=2\n[Switch001]");
        let e = Odf::parse(&bad_switch, "x").unwrap_err();
        assert!(e.message.contains("[Stop003] refers to Switch002, but [Organ] NumberOfSwitches=1"), "{e}");
        let e = Odf::parse(&ODF.replace("Function=And", "Function=Maybe"), "x").unwrap_err();
        assert!(e.message.contains("Function=Maybe"), "{e}");
    }

    #[test]
    fn reads_the_organ_in_a_package() {
        let index = b"[General]\nOrganCount=1\n[Organ001]\nFilename=test.organ\nChurchName=Test Church\n";
        let zip =
            crate::grandorgue::package::tests::zip(&[("organindex.ini", index), ("test.organ", ODF.as_bytes())], false);
        let dir = std::env::temp_dir().join(format!("organ-odf-pkg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("test.orgue");
        std::fs::write(&p, &zip).unwrap();
        let odf = Odf::load(&p).unwrap();
        assert!(odf.from_package);
        assert_eq!(odf.church_name, "Test Church");
        assert!(odf.source.ends_with("test.orgue:test.organ"), "{}", odf.source);
        assert_eq!(odf.elements.len(), 6);
        // the same with the organ named, and a wrong name listing the right one
        assert_eq!(Odf::load(&dir.join("test.orgue:test.organ")).unwrap().elements.len(), 6);
        let e = Odf::load(&dir.join("test.orgue:other.organ")).unwrap_err();
        assert!(e.message.contains("no organ other.organ; it has test.organ (\"Test Church\")"), "{e}");
        // a package by its content, whatever its name
        let renamed = dir.join("test.zip");
        std::fs::write(&renamed, &zip).unwrap();
        assert!(Odf::load(&renamed).unwrap().from_package);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
