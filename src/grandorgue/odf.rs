//! Reading a GrandOrgue organ definition file (ODF, `*.organ`): an INI file.
//!
//! Only what `organ grandorgue config` needs is modelled: the church name (GrandOrgue compares it
//! with the settings file's), the manuals with the stops, couplers and tremulants each lists, and
//! the names and a few properties of those elements.
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

/// What kind of GrandOrgue element a section is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementKind {
    Stop,
    Coupler,
    Tremulant,
}

impl ElementKind {
    /// The section prefix, e.g. `Stop` for `[Stop003]`.
    pub fn section_prefix(self) -> &'static str {
        match self {
            ElementKind::Stop => "Stop",
            ElementKind::Coupler => "Coupler",
            ElementKind::Tremulant => "Tremulant",
        }
    }
    pub fn noun(self) -> &'static str {
        match self {
            ElementKind::Stop => "stop",
            ElementKind::Coupler => "coupler",
            ElementKind::Tremulant => "tremulant",
        }
    }
}

/// A stop, coupler or tremulant of the ODF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub kind: ElementKind,
    /// The ODF number: `[Stop003]` → 3. The settings file uses the same section name.
    pub number: u32,
    pub name: String,
    /// The ODF manual numbers that list this element (a stop or coupler usually has one;
    /// tremulants are organ-wide and listed by the manuals they belong to).
    pub manuals: Vec<u32>,
    /// Couplers: the manual whose pipes are played (`DestinationManual`).
    pub destination: Option<u32>,
    /// Couplers: `DestinationKeyshift` in semitones.
    pub keyshift: i32,
    /// Couplers: `UnisonOff=Y`.
    pub unison_off: bool,
    /// GrandOrgue ignores MIDI for drawstops whose state is computed (`Function` other than
    /// `Input`, GrandOrgue 3.x switches logic); those cannot be bound.
    pub read_only: bool,
}

impl Element {
    /// The settings-file section, e.g. `Stop003`.
    pub fn section(&self) -> String {
        format!("{}{:03}", self.kind.section_prefix(), self.number)
    }
}

/// A manual (or the pedal, manual 0) of the ODF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manual {
    /// `[Manual000]` is the pedal when `HasPedals=Y`.
    pub number: u32,
    pub name: String,
    /// MIDI note of the first key and number of keys (for the report).
    pub first_note: u8,
    pub keys: u32,
}

impl Manual {
    pub fn section(&self) -> String {
        format!("Manual{:03}", self.number)
    }
}

/// The parts of an ODF that the settings file refers to.
#[derive(Debug, Clone)]
pub struct Odf {
    /// Where it was read from, for messages.
    pub source: String,
    /// `[Organ] ChurchName` exactly as GrandOrgue compares it with the settings file's (its exact
    /// spelling of the key, trailing whitespace removed).
    pub church_name: String,
    pub manuals: Vec<Manual>,
    pub elements: Vec<Element>,
}

fn yes(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.trim().chars().next(), Some('Y' | 'y')))
}

fn number(ini: &Ini, file: &str, section: &str, key: &str) -> Result<Option<i64>, OdfError> {
    match ini.get_trimmed(section, key) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| OdfError { file: file.to_string(), message: format!("[{section}] {key}={v}: not a number") }),
    }
}

impl Odf {
    /// Reads and parses an ODF file.
    ///
    /// # Errors
    /// Unreadable file, or not an organ definition (see [`Odf::parse`]).
    pub fn load(path: &Path) -> Result<Odf, OdfError> {
        let file = path.display().to_string();
        let bytes = crate::files::read_user_file(path, crate::files::FileKind::Odf)
            .map_err(|e| OdfError { file: file.clone(), message: e.problem.to_string() })?;
        Odf::parse(&Ini::decode(&bytes), &file)
    }

    /// Parses ODF text. `source` names the file in messages.
    ///
    /// # Errors
    /// No `[Organ]` section, no `NumberOfManuals`, or a manual/element reference that is not a
    /// number.
    pub fn parse(text: &str, source: &str) -> Result<Odf, OdfError> {
        let ini = Ini::parse(text);
        let err = |message: String| OdfError { file: source.to_string(), message };
        if !ini.has_section("Organ") {
            return Err(err("no [Organ] section: this is not a GrandOrgue organ definition (.organ) file".into()));
        }
        let church_name = ini.church_name_exact.clone().unwrap_or_default().trim_end().to_string();
        let n_manuals = number(&ini, source, "Organ", "NumberOfManuals")?
            .ok_or_else(|| err("[Organ] has no NumberOfManuals".into()))?;
        let first = if yes(ini.get("Organ", "HasPedals")) { 0 } else { 1 };
        let mut manuals = Vec::new();
        let mut elements: Vec<Element> = Vec::new();
        let add = |kind: ElementKind, no: i64, manual: u32, elements: &mut Vec<Element>| -> Result<(), OdfError> {
            let no = u32::try_from(no).map_err(|_| err(format!("{} number {no} is invalid", kind.noun())))?;
            if let Some(e) = elements.iter_mut().find(|e| e.kind == kind && e.number == no) {
                if !e.manuals.contains(&manual) {
                    e.manuals.push(manual);
                }
                return Ok(());
            }
            let section = format!("{}{no:03}", kind.section_prefix());
            if !ini.has_section(&section) {
                return Err(err(format!("Manual{manual:03} refers to [{section}], which does not exist")));
            }
            let name = ini.get_trimmed(&section, "Name").unwrap_or(&section).to_string();
            let function = ini.get_trimmed(&section, "Function");
            elements.push(Element {
                kind,
                number: no,
                name,
                manuals: vec![manual],
                destination: number(&ini, source, &section, "DestinationManual")?.and_then(|d| u32::try_from(d).ok()),
                keyshift: number(&ini, source, &section, "DestinationKeyshift")?.unwrap_or(0) as i32,
                unison_off: yes(ini.get(&section, "UnisonOff")),
                read_only: function.is_some_and(|f| !f.eq_ignore_ascii_case("input")),
            });
            Ok(())
        };
        for m in first..=n_manuals.max(0) {
            let m = m as u32;
            let section = format!("Manual{m:03}");
            if !ini.has_section(&section) {
                return Err(err(format!("[{section}] is missing (NumberOfManuals={n_manuals})")));
            }
            manuals.push(Manual {
                number: m,
                name: ini.get_trimmed(&section, "Name").unwrap_or(&section).to_string(),
                first_note: number(&ini, source, &section, "FirstAccessibleKeyMIDINoteNumber")?
                    .unwrap_or(36)
                    .clamp(0, 127) as u8,
                keys: number(&ini, source, &section, "NumberOfAccessibleKeys")?.unwrap_or(0).max(0) as u32,
            });
            for (kind, count_key) in [
                (ElementKind::Stop, "NumberOfStops"),
                (ElementKind::Coupler, "NumberOfCouplers"),
                (ElementKind::Tremulant, "NumberOfTremulants"),
            ] {
                let count = number(&ini, source, &section, count_key)?.unwrap_or(0);
                for i in 1..=count.max(0) {
                    let key = format!("{}{i:03}", kind.section_prefix());
                    let Some(no) = number(&ini, source, &section, &key)? else {
                        return Err(err(format!("[{section}] {count_key}={count} but {key} is missing")));
                    };
                    add(kind, no, m, &mut elements)?;
                }
            }
        }
        Ok(Odf { source: source.to_string(), church_name, manuals, elements })
    }

    pub fn manual(&self, number: u32) -> Option<&Manual> {
        self.manuals.iter().find(|m| m.number == number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODF: &str = "\u{feff}; comment\r\n[Organ]\r\nChurchName=Test Church  \r\nNumberOfManuals=2\r\nHasPedals=Y\r\nNumberOfTremulants=1\r\n\
[Manual000]\nName=Pedal\nNumberOfStops=1\nStop001=3\nnumberofcouplers=1\nCoupler001=1\n\
[Manual001]\nName=Great\nNumberOfStops=1\nStop001=1\nFirstAccessibleKeyMIDINoteNumber=36\nNumberOfAccessibleKeys=61\n\
[Manual002]\nName=Swell\nNumberOfStops=1\nStop001=2\nNumberOfTremulants=1\nTremulant001=1\n\
[Stop001]\nName=Principal 8'\n[Stop002]\nName= Gedackt 8 \n[Stop003]\nName=Subbass 16\nFunction=And\n\
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
            ]
        );
        assert!(odf.elements[0].read_only);
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
    }
}
