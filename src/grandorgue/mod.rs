//! GrandOrgue configured from the organ definition: `organ grandorgue config`.
//!
//! Reads a GrandOrgue organ definition file ([`odf`]), matches its manuals, stops, couplers and
//! tremulants to the organ definition's divisions and controls by name ([`names`] states the
//! rule; `grandorgue = "…"` overrides it), chooses for each control the GrandOrgue receiver
//! patterns that react to exactly the messages `organ` sends ([`events`], proved on a model of
//! GrandOrgue's MIDI input), and writes the per-organ settings file ([`cmb`]).
//!
//! Everything here is pure and runs on the control thread; the caller reads and writes files.

pub mod cmb;
pub mod events;
pub mod names;
pub mod odf;

use std::fmt::Write as _;

use crate::midi::HexBytes;
use crate::organ::{Control, ControlKind, Organ};
use crate::text::closest;
use events::{Binding, Pattern};
use odf::{ElementKind, Odf};

/// A division played on a GrandOrgue manual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualLink {
    /// Index into `Organ::divisions`.
    pub division: usize,
    /// The ODF manual number.
    pub manual: u32,
}

/// A control bound to a GrandOrgue element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlLink {
    /// Index into `Organ::controls`.
    pub control: usize,
    /// Index into `Odf::elements`.
    pub element: usize,
    pub binding: Binding,
    /// How the names were matched, for the report (e.g. `by name`, `grandorgue = "…"`).
    pub how: String,
}

/// The result of matching an organ definition to an ODF: what to write and what to report.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub manuals: Vec<ManualLink>,
    pub controls: Vec<ControlLink>,
    /// The General Cancel message bound to GrandOrgue's General Cancel button (`[SetterGC]`).
    pub cancel: Option<Pattern>,
    /// Divisions without a manual, with the reason.
    pub unmatched_divisions: Vec<(usize, String)>,
    /// Controls without a GrandOrgue element (or whose messages GrandOrgue cannot receive).
    pub unmatched_controls: Vec<(usize, String)>,
    /// ODF manuals no division plays.
    pub unused_manuals: Vec<u32>,
    /// ODF elements no control drives (indices into `Odf::elements`).
    pub unused_elements: Vec<usize>,
    pub warnings: Vec<String>,
}

fn kind_of(c: &Control) -> ElementKind {
    match c.kind {
        ControlKind::Stop => ElementKind::Stop,
        ControlKind::Coupler { .. } => ElementKind::Coupler,
        ControlKind::Tremulant => ElementKind::Tremulant,
    }
}

fn control_noun(c: &Control) -> &'static str {
    kind_of(c).noun()
}

/// Canonical word list of a coupler name: filler words dropped, division / manual abbreviations
/// replaced by the manual's name key.
fn coupler_words(name: &str, vocab: &[(String, Option<char>, String)]) -> Vec<String> {
    names::normalize(&name.replace(['/', '-', '>'], " "))
        .split(' ')
        .filter(|w| !w.is_empty() && !matches!(*w, "to" | "coupler" | "coupl" | "cpl"))
        .map(|w| {
            vocab
                .iter()
                .find(|(n, code, _)| names::abbreviates(w, n, *code))
                .map_or_else(|| w.to_string(), |(_, _, key)| key.clone())
        })
        .collect()
}

/// Matches `organ` to `odf` and binds every matched control.
pub fn configure(organ: &Organ, odf: &Odf) -> Settings {
    let mut s = Settings::default();

    // --- divisions → manuals --------------------------------------------------------------
    for (di, d) in organ.divisions.iter().enumerate() {
        let wanted = d.grandorgue.as_deref().unwrap_or(&d.name);
        let key = names::manual_key(wanted);
        let hits: Vec<u32> = odf
            .manuals
            .iter()
            .filter(|m| names::manual_key(&m.name) == key || m.section().eq_ignore_ascii_case(wanted.trim()))
            .map(|m| m.number)
            .collect();
        let taken = |m: u32| s.manuals.iter().find(|l| l.manual == m).map(|l| organ.divisions[l.division].name.clone());
        match hits.as_slice() {
            [m] if taken(*m).is_none() => s.manuals.push(ManualLink { division: di, manual: *m }),
            [m] => s.unmatched_divisions.push((
                di,
                format!(
                    "GrandOrgue manual \"{}\" is already played by division {}",
                    odf.manual(*m).map_or("", |x| &x.name),
                    taken(*m).unwrap_or_default()
                ),
            )),
            _ => {
                let all: Vec<&str> = odf.manuals.iter().map(|m| m.name.as_str()).collect();
                let hint = closest(wanted, all.iter().copied())
                    .map(|c| format!("; did you mean \"{c}\"?"))
                    .unwrap_or_default();
                let what = if d.grandorgue.is_some() { format!("grandorgue = \"{wanted}\": ") } else { String::new() };
                let problem = if hits.is_empty() {
                    "no GrandOrgue manual of that name"
                } else {
                    "several GrandOrgue manuals of that name"
                };
                s.unmatched_divisions.push((
                    di,
                    format!(
                        "{what}{problem} (its manuals: {}){hint}; add grandorgue = \"<manual name>\" to [division.{}]",
                        all.join(", "),
                        d.name
                    ),
                ));
            }
        }
    }
    let manual_links = s.manuals.clone();
    let manual_of = |division: usize| manual_links.iter().find(|l| l.division == division).map(|l| l.manual);

    // Vocabulary for coupler names: our division names and codes, and GrandOrgue's manual names,
    // each mapped to the GrandOrgue manual's key.
    let mut vocab: Vec<(String, Option<char>, String)> = Vec::new();
    for m in &odf.manuals {
        vocab.push((names::normalize(&m.name), None, names::manual_key(&m.name)));
    }
    for (di, d) in organ.divisions.iter().enumerate() {
        let key = manual_of(di)
            .and_then(|m| odf.manual(m))
            .map_or_else(|| names::manual_key(&d.name), |m| names::manual_key(&m.name));
        vocab.push((names::normalize(&d.name), Some(d.code), key));
    }

    // --- controls → elements --------------------------------------------------------------
    let mut linked: Vec<usize> = Vec::new();
    for (ci, c) in organ.controls.iter().enumerate() {
        let kind = kind_of(c);
        let home = c.division.and_then(manual_of);
        let candidates: Vec<usize> =
            (0..odf.elements.len()).filter(|&i| odf.elements[i].kind == kind && !linked.contains(&i)).collect();
        let on_home = |i: &usize| home.is_some_and(|h| odf.elements[*i].manuals.contains(&h));
        // Names of the division and its manual, for prefix stripping.
        let mut prefixes: Vec<String> = Vec::new();
        if let Some(d) = c.division {
            prefixes.push(names::normalize(&organ.divisions[d].name));
        }
        if let Some(m) = home.and_then(|h| odf.manual(h)) {
            prefixes.push(names::normalize(&m.name));
        }
        let pref: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        let code = c.division.map(|d| organ.divisions[d].code);
        let forms = |name: &str| -> Vec<String> {
            let n = names::normalize(name);
            let mut v = vec![n.clone()];
            if let Some(st) = names::strip_division(&n, &pref, code) {
                v.push(st.to_string());
            }
            v
        };
        let element_forms = |i: usize| -> Vec<String> {
            let e = &odf.elements[i];
            let n = names::normalize(&e.name);
            let mut v = vec![n.clone()];
            // GrandOrgue names may carry their own manual prefix.
            let mnames: Vec<String> =
                e.manuals.iter().filter_map(|m| odf.manual(*m)).map(|m| names::normalize(&m.name)).collect();
            let mrefs: Vec<&str> = mnames.iter().map(String::as_str).collect();
            if let Some(st) = names::strip_division(&n, &mrefs, None) {
                v.push(st.to_string());
            }
            v
        };
        let wanted: Vec<String> = match &c.grandorgue {
            Some(o) => vec![names::normalize(o)],
            None => forms(&c.name),
        };
        let name_hit = |i: &usize| {
            let ef = element_forms(*i);
            if kind == ElementKind::Coupler && c.grandorgue.is_none() {
                coupler_words(&c.name, &vocab) == coupler_words(&odf.elements[*i].name, &vocab)
                    || wanted.iter().any(|w| ef.contains(w))
            } else {
                wanted.iter().any(|w| ef.contains(w))
            }
        };
        if let (Some(d), None, None) = (c.division, home, &c.grandorgue) {
            let d = &organ.divisions[d];
            s.unmatched_controls.push((ci, format!("its division {} has no GrandOrgue manual (see above)", d.name)));
            continue;
        }
        let by_name_home: Vec<usize> = candidates.iter().copied().filter(|i| on_home(i) && name_hit(i)).collect();
        // Other manuals only for an explicit override or a control without a division.
        let by_name_all: Vec<usize> = if home.is_none() || c.grandorgue.is_some() {
            candidates.iter().copied().filter(name_hit).collect()
        } else {
            Vec::new()
        };
        let mut how =
            if c.grandorgue.is_some() { "by grandorgue = \"…\"".to_string() } else { "by name".to_string() };
        let found: Option<usize> = match (by_name_home.as_slice(), by_name_all.as_slice()) {
            ([one], _) => Some(*one),
            ([], [one]) => Some(*one),
            _ if c.grandorgue.is_some() => None,
            _ => {
                // Structural fallbacks when names do not match.
                match (kind, c.kind) {
                    (ElementKind::Coupler, ControlKind::Coupler { from, to }) => {
                        let (Some(fm), Some(tm)) = (manual_of(from), manual_of(to)) else {
                            let d = if manual_of(from).is_none() { from } else { to };
                            let why = format!(
                                "its division {} has no GrandOrgue manual (see above)",
                                organ.divisions[d].name
                            );
                            s.unmatched_controls.push((ci, why));
                            continue;
                        };
                        let n = names::normalize(&c.name);
                        let shift = if n.contains("sub") {
                            -12
                        } else if n.contains("octave") || n.contains("super") {
                            12
                        } else {
                            0
                        };
                        let hits: Vec<usize> = candidates
                            .iter()
                            .copied()
                            .filter(|&i| {
                                let e = &odf.elements[i];
                                e.manuals.contains(&tm)
                                    && e.destination == Some(fm)
                                    && !e.unison_off
                                    && e.keyshift == shift
                            })
                            .collect();
                        how = "by its manuals and key shift".into();
                        if let [one] = hits.as_slice() { Some(*one) } else { None }
                    }
                    (ElementKind::Tremulant, _) => {
                        let on_manual: Vec<usize> = candidates.iter().copied().filter(on_home).collect();
                        how = "as the only tremulant of its manual".into();
                        match on_manual.as_slice() {
                            [one] if names::normalize(&c.name).contains("trem") => Some(*one),
                            _ => None,
                        }
                    }
                    _ => None,
                }
            }
        };
        let Some(ei) = found else {
            let names_of_kind: Vec<&str> =
                odf.elements.iter().filter(|e| e.kind == kind).map(|e| e.name.as_str()).collect();
            let target = c.grandorgue.as_deref().unwrap_or(&c.name);
            let hint = closest(wanted.last().map_or(target, String::as_str), names_of_kind.iter().copied())
                .map(|n| format!("; did you mean \"{n}\"?"))
                .unwrap_or_default();
            let where_ = home.and_then(|h| odf.manual(h)).map(|m| format!(" on {}", m.name)).unwrap_or_default();
            let ambiguous = by_name_home.len() > 1 || by_name_all.len() > 1;
            let why = if ambiguous {
                format!(
                    "several GrandOrgue {}s are named \"{target}\"; add grandorgue = \"…\" with the exact one",
                    kind.noun()
                )
            } else if c.grandorgue.is_some() {
                format!("grandorgue = \"{target}\": no GrandOrgue {} of that name{where_}{hint}", kind.noun())
            } else {
                format!(
                    "no GrandOrgue {} named like \"{target}\"{where_}{hint}; add grandorgue = \"<its name in GrandOrgue>\"",
                    kind.noun()
                )
            };
            s.unmatched_controls.push((ci, why));
            continue;
        };
        let e = &odf.elements[ei];
        if e.read_only {
            s.unmatched_controls.push((
                ci,
                format!(
                    "GrandOrgue {} \"{}\" ({}) is computed by its ODF (Function=…) and takes no MIDI",
                    kind.noun(),
                    e.name,
                    e.section()
                ),
            ));
            linked.push(ei);
            continue;
        }
        match events::bind(&c.on, &c.off) {
            Ok(binding) => {
                linked.push(ei);
                s.controls.push(ControlLink { control: ci, element: ei, binding, how });
            }
            Err(why) => {
                linked.push(ei);
                s.unmatched_controls.push((
                    ci,
                    format!("matched GrandOrgue {} \"{}\" ({}), but {why}", kind.noun(), e.name, e.section()),
                ));
            }
        }
    }

    // --- General Cancel -------------------------------------------------------------------
    if let Some(cancel) = &organ.cancel {
        match events::bind_push(cancel) {
            Ok(p) => s.cancel = Some(p),
            Err(why) => s.warnings.push(format!(
                "the General Cancel message cannot drive GrandOrgue's General Cancel ({why}): stops drawn in GrandOrgue stay drawn when `organ` cancels"
            )),
        }
    }

    // --- cross-talk: does an element react to another control's messages? --------------------
    for l in &s.controls {
        for (oi, other) in organ.controls.iter().enumerate() {
            if oi == l.control {
                continue;
            }
            for (which, msgs) in [("on", &other.on), ("off", &other.off)] {
                if events::events(msgs)
                    .iter()
                    .any(|e| events::effect_of(&l.binding.patterns, e) != events::Effect::None)
                {
                    s.warnings.push(format!(
                        "GrandOrgue's \"{}\" also reacts to the {which} message of \"{}\" ({})",
                        odf.elements[l.element].name,
                        other.name,
                        msgs.iter().map(|m| HexBytes(m.as_bytes()).to_string()).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        if l.binding.toggle {
            s.warnings.push(format!(
                "\"{}\" toggles in GrandOrgue (its on and off messages are the same kind of switch): right only from a known state, which `organ` gives by cancelling before it plays",
                organ.controls[l.control].name
            ));
        }
    }

    s.unused_manuals =
        odf.manuals.iter().map(|m| m.number).filter(|n| !s.manuals.iter().any(|l| l.manual == *n)).collect();
    s.unused_elements = (0..odf.elements.len()).filter(|i| !linked.contains(i)).collect();
    s
}

/// A short description of a pattern for the report, e.g. `note 36 ch 16`.
pub fn describe(p: &Pattern) -> String {
    match *p {
        Pattern::Note { channel, key, low, high } => format!("note {key} ch {channel} (on ≥{high}, off ≤{low})"),
        Pattern::NoteOn { channel, key, .. } => format!("note-on {key} ch {channel}, toggles"),
        Pattern::NoteOff { channel, key, .. } => format!("note-off {key} ch {channel}, toggles"),
        Pattern::CtrlFixed { channel, key, low, high } => format!("CC {key} ch {channel} (on ={high}, off ={low})"),
        Pattern::CtrlFixedToggle { channel, key, high, .. } => format!("CC {key} = {high} ch {channel}, toggles"),
        Pattern::ProgramToggle { channel, key } => format!("program {} ch {channel}, toggles", key - 1),
        Pattern::ProgramRange { channel, low, high } => {
            format!("program {} on / {} off, ch {channel}", high - 1, low - 1)
        }
        Pattern::Nrpn { channel, key, low, high } => format!("NRPN {key} ch {channel} (data on ≥{high}, off ≤{low})"),
        Pattern::Rpn { channel, key, low, high } => format!("RPN {key} ch {channel} (data on ≥{high}, off ≤{low})"),
        Pattern::NrpnToggle { channel, key, .. } => format!("NRPN {key} ch {channel}, toggles"),
        Pattern::RpnToggle { channel, key, .. } => format!("RPN {key} ch {channel}, toggles"),
        Pattern::Johannus { key } => format!("Johannus SysEx {key}, toggles"),
        Pattern::Viscount { low, high } => format!("Viscount SysEx {high} on / {low} off"),
        Pattern::Ahlborn { low, high } => format!("Ahlborn-Galanti SysEx {high} on / {low} off"),
        Pattern::ViscountToggle { value } => format!("Viscount SysEx {value}, toggles"),
    }
}

impl Settings {
    /// The settings file. `origin` (e.g. the organ definition's source) goes into its header.
    pub fn to_cmb(&self, organ: &Organ, odf: &Odf, origin: &str) -> cmb::Cmb {
        let mut c = cmb::Cmb::new();
        c.header(&format!("GrandOrgue settings written by `organ grandorgue config` from {origin}"));
        c.header(&format!("for {} (\"{}\"). Regenerate rather than edit.", odf.source, odf.church_name));
        c.section("Organ", None);
        c.entry("ChurchName", &odf.church_name);
        for m in &odf.manuals {
            match self.manuals.iter().find(|l| l.manual == m.number) {
                Some(l) => {
                    let d = &organ.divisions[l.division];
                    c.section(
                        &m.section(),
                        Some(format!("{} ← division {} (channel {})", m.name, d.name, d.channel.user())),
                    );
                    c.manual_receiver(d.channel.user());
                }
                None => {
                    c.section(&m.section(), Some(format!("{}: not played by {}", m.name, organ.name)));
                    c.entry("NumberOfMIDIEvents", "0");
                }
            }
        }
        for (i, e) in odf.elements.iter().enumerate() {
            if e.read_only {
                continue;
            }
            match self.controls.iter().find(|l| l.element == i) {
                Some(l) => {
                    c.section(&e.section(), Some(format!("{} ← {}", e.name, organ.controls[l.control].name)));
                    c.receiver(&l.binding.patterns);
                }
                None => {
                    c.section(&e.section(), Some(format!("{}: not driven by {}", e.name, organ.name)));
                    c.entry("NumberOfMIDIEvents", "0");
                }
            }
        }
        if let Some(p) = &self.cancel {
            c.section("SetterGC", Some("General Cancel ← the organ's [cancel] message".into()));
            c.receiver(std::slice::from_ref(p));
        }
        c
    }

    /// The human-readable report: what was bound, what was not (both directions), warnings.
    pub fn report(&self, organ: &Organ, odf: &Odf) -> String {
        let mut r = String::new();
        let _ = writeln!(
            r,
            "GrandOrgue organ \"{}\" ({}) ← {} ({})",
            odf.church_name, odf.source, organ.name, organ.source
        );
        let _ = writeln!(r, "manuals:");
        for l in &self.manuals {
            let d = &organ.divisions[l.division];
            let m = odf.manual(l.manual).expect("linked manual exists");
            let _ = writeln!(r, "  {:<24} channel {:>2} → {} \"{}\"", d.name, d.channel.user(), m.section(), m.name);
        }
        let _ = writeln!(r, "stops, couplers, tremulants:");
        for l in &self.controls {
            let c = &organ.controls[l.control];
            let e = &odf.elements[l.element];
            let how: Vec<String> = l.binding.patterns.iter().map(describe).collect();
            let _ = writeln!(r, "  {:<24} → {} \"{}\" ({}; {})", c.name, e.section(), e.name, l.how, how.join(" + "));
        }
        if let Some(p) = &self.cancel {
            let _ = writeln!(r, "  {:<24} → SetterGC (General Cancel; {})", "[cancel] message", describe(p));
        }
        if !self.unmatched_divisions.is_empty() || !self.unmatched_controls.is_empty() {
            let _ = writeln!(r, "not matched in {} (GrandOrgue will not follow these):", organ.name);
            for (d, why) in &self.unmatched_divisions {
                let _ = writeln!(r, "  division {}: {why}", organ.divisions[*d].name);
            }
            for (ci, why) in &self.unmatched_controls {
                let c = &organ.controls[*ci];
                let _ = writeln!(r, "  {} \"{}\": {why}", control_noun(c), c.name);
            }
        }
        if !self.unused_manuals.is_empty() || !self.unused_elements.is_empty() {
            let _ = writeln!(r, "not driven in GrandOrgue (no MIDI binding written):");
            for m in &self.unused_manuals {
                let m = odf.manual(*m).expect("listed manual exists");
                let _ = writeln!(r, "  {} \"{}\"", m.section(), m.name);
            }
            for i in &self.unused_elements {
                let e = &odf.elements[*i];
                let on: Vec<&str> = e.manuals.iter().filter_map(|m| odf.manual(*m)).map(|m| m.name.as_str()).collect();
                let _ = writeln!(r, "  {} \"{}\" ({} on {})", e.section(), e.name, e.kind.noun(), on.join(", "));
            }
        }
        for w in &self.warnings {
            let _ = writeln!(r, "warning: {w}");
        }
        r
    }

    /// Whether everything in the organ definition found its GrandOrgue counterpart.
    pub fn complete(&self) -> bool {
        self.unmatched_divisions.is_empty() && self.unmatched_controls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORGAN: &str = r#"
name = "Test"
[division.swell]
code = "S"
channel = 1
[division.great]
code = "G"
channel = 2
[division.pedal]
code = "P"
channel = 3
compass = [36, 67]
[[stop]]
name = "Sw Gedackt 8"
division = "swell"
on = { note = 36, channel = 16 }
[[stop]]
name = "Gt Principal 8"
division = "great"
on = { cc = 20, value = 127, channel = 16 }
[[stop]]
name = "Gt Octave 4"
division = "great"
on = { nrpn = 300, value = 127, channel = 16 }
[[stop]]
name = "Ped Subbass 16"
division = "pedal"
on = { program = 10, channel = 15 }
off = { program = 11, channel = 15 }
[[stop]]
name = "Gt Trumpet 8"
division = "great"
on = { note = 40, channel = 16 }
[[stop]]
name = "Ped Rodgers"
division = "pedal"
grandorgue = "Posaune 16"
on = { sysex = "F0 41 10 30 12 01 00 01 6E F7" }
off = { sysex = "F0 41 10 30 12 01 00 00 6F F7" }
[[coupler]]
name = "Sw to Ped"
from = "swell"
to = "pedal"
on = { note = 73, channel = 16 }
[[coupler]]
name = "Sw Octave"
from = "swell"
to = "swell"
on = { note = 75, channel = 16 }
[[tremulant]]
name = "Sw Tremulant"
division = "swell"
on = { note = 80, channel = 16 }
[cancel]
message = { sysex = "F0 00 4A 4F 48 41 53 7F F7" }
"#;

    const ODF: &str = "[Organ]\nChurchName=Test Church\nNumberOfManuals=2\nHasPedals=Y\nNumberOfTremulants=1\n\
[Manual000]\nName=Pedal\nNumberOfStops=2\nStop001=4\nStop002=5\nNumberOfCouplers=1\nCoupler001=1\n\
[Manual001]\nName=Great Organ\nNumberOfStops=2\nStop001=2\nStop002=3\n\
[Manual002]\nName=Swell\nNumberOfStops=1\nStop001=1\nNumberOfCouplers=1\nCoupler001=2\nNumberOfTremulants=1\nTremulant001=1\n\
[Stop001]\nName=Gedackt 8'\n[Stop002]\nName=Principal 8'\n[Stop003]\nName=Octave 4'\n[Stop004]\nName=Subbass 16'\n[Stop005]\nName=Posaune 16'\n\
[Coupler001]\nName=II/P\nDestinationManual=2\n[Coupler002]\nName=Swell Super\nDestinationManual=2\nDestinationKeyshift=12\n\
[Tremulant001]\nName=Tremolo\n";

    fn setup() -> (Organ, Odf, Settings) {
        let organ = Organ::from_toml(ORGAN, "test.toml").unwrap();
        let odf = Odf::parse(ODF, "test.organ").unwrap();
        let s = configure(&organ, &odf);
        (organ, odf, s)
    }

    fn bound(organ: &Organ, odf: &Odf, s: &Settings) -> Vec<(String, String)> {
        s.controls.iter().map(|l| (organ.controls[l.control].name.clone(), odf.elements[l.element].section())).collect()
    }

    #[test]
    fn matches_manuals_and_elements() {
        let (organ, odf, s) = setup();
        let m: Vec<(usize, u32)> = s.manuals.iter().map(|l| (l.division, l.manual)).collect();
        assert_eq!(m, [(0, 2), (1, 1), (2, 0)]);
        let b = bound(&organ, &odf, &s);
        let want = [
            ("Sw Gedackt 8", "Stop001"),
            ("Gt Principal 8", "Stop002"),
            ("Gt Octave 4", "Stop003"),
            ("Ped Subbass 16", "Stop004"),
            ("Sw to Ped", "Coupler001"),
            ("Sw Octave", "Coupler002"),
            ("Sw Tremulant", "Tremulant001"),
        ];
        assert_eq!(b, want.map(|(a, b)| (a.to_string(), b.to_string())));
        // the override found the Posaune, but GrandOrgue cannot follow a Rodgers bitmap this way
        let unmatched: Vec<&str> = s.unmatched_controls.iter().map(|(c, _)| organ.controls[*c].name.as_str()).collect();
        assert_eq!(unmatched, ["Gt Trumpet 8", "Ped Rodgers"]);
        assert!(s.unmatched_controls[0].1.contains("no GrandOrgue stop named like"), "{:?}", s.unmatched_controls);
        assert!(s.unmatched_controls[1].1.contains("Posaune 16'"), "{:?}", s.unmatched_controls);
        assert_eq!(s.cancel, Some(Pattern::Johannus { key: 0x7F }));
        assert!(s.unused_manuals.is_empty());
        assert!(!s.complete());
    }

    #[test]
    fn writes_a_settings_file_grandorgue_can_read() {
        let (organ, odf, s) = setup();
        let text = String::from_utf8(s.to_cmb(&organ, &odf, "test.toml").to_bytes()).unwrap();
        let ini = odf::Ini::parse(&text);
        assert_eq!(ini.get("Organ", "ChurchName"), Some("Test Church"));
        assert_eq!(ini.get("Manual002", "MIDIChannel001"), Some("1"));
        assert_eq!(ini.get("Manual000", "MIDIChannel001"), Some("3"));
        assert_eq!(ini.get("Stop002", "MIDIEventType001"), Some("ControlChangeFixed"));
        assert_eq!(ini.get("Stop003", "MIDIEventType001"), Some("NRPN"));
        assert_eq!(ini.get("Stop003", "MIDIKey001"), Some("300"));
        assert_eq!(ini.get("Stop004", "MIDIEventType001"), Some("ProgramRange"));
        assert_eq!(ini.get("Stop004", "MIDILowerLimit001"), Some("12"));
        assert_eq!(ini.get("Stop004", "MIDIUpperLimit001"), Some("11"));
        assert_eq!(ini.get("Stop005", "NumberOfMIDIEvents"), Some("0"));
        assert_eq!(ini.get("SetterGC", "MIDIEventType001"), Some("SysExJohannus"));
        assert!(!text.contains("ODFHash"));
        let report = s.report(&organ, &odf);
        assert!(report.contains("Gt Trumpet 8"), "{report}");
        assert!(report.contains("Stop005"), "{report}");
    }

    #[test]
    fn overrides_win() {
        let text = ORGAN.replace("name = \"Gt Trumpet 8\"", "name = \"Gt Trumpet 8\"\ngrandorgue = \"Posaune 16'\"");
        let text = text.replace("grandorgue = \"Posaune 16\"\n", "");
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let odf = Odf::parse(ODF, "t.organ").unwrap();
        let s = configure(&organ, &odf);
        let b = bound(&organ, &odf, &s);
        assert!(b.contains(&("Gt Trumpet 8".to_string(), "Stop005".to_string())), "{b:?}");
        let text = ORGAN.replace("code = \"P\"", "code = \"P\"\ngrandorgue = \"Pedalwerk\"");
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let s = configure(&organ, &odf);
        assert_eq!(s.unmatched_divisions.len(), 1);
        assert!(s.unmatched_divisions[0].1.contains("grandorgue = \"Pedalwerk\""), "{:?}", s.unmatched_divisions);
        assert_eq!(s.unused_manuals, [0]);
    }
}
