//! GrandOrgue configured from the organ definition (`organ grandorgue config`), and an organ
//! definition written from a GrandOrgue organ (`organ grandorgue organ`).
//!
//! Reads a GrandOrgue organ definition file or organ package ([`odf`], [`package`]), works out
//! which element really takes the MIDI for each stop, coupler and tremulant ([`drive`]: the
//! element itself when it is a plain drawstop, else the switch it follows), matches them to the
//! organ definition's divisions and controls by name ([`matching`], [`names`] states the rule;
//! `grandorgue = "…"` overrides it), chooses for each control the GrandOrgue receiver patterns
//! that react to exactly the messages `organ` sends ([`events`], proved on a model of
//! GrandOrgue's MIDI input), and writes the per-organ settings file ([`cmb`]). [`generate`] goes
//! the other way.
//!
//! Everything here is pure and runs on the control thread; the caller reads and writes files
//! ([`files`] has the command-level steps).

pub mod cmb;
pub mod drive;
pub mod events;
pub mod files;
pub mod generate;
pub mod matching;
pub mod names;
pub mod odf;
pub mod package;

use std::fmt::Write as _;

use crate::midi::HexBytes;
use crate::organ::{Control, ControlKind, Expression, Organ};
use events::{Binding, Pattern};
use names::printable;
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
    /// Index into `Odf::elements` of the element that receives the MIDI: the matched element
    /// itself when it is a plain drawstop, else the switch it follows.
    pub element: usize,
    /// Index into `Odf::elements` of the stop, coupler or tremulant the control was matched to
    /// (the same as `element` for a plain drawstop or a switch named directly).
    pub target: usize,
    pub binding: Binding,
    /// How the names were matched, for the report (e.g. `by name`, `grandorgue = "…"`).
    pub how: String,
}

/// A division's expression controller bound to a GrandOrgue enclosure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclosureLink {
    /// Index into `Organ::divisions`.
    pub division: usize,
    /// Index into `Odf::enclosures`.
    pub enclosure: usize,
    pub expression: Expression,
    pub how: &'static str,
}

/// The result of matching an organ definition to an ODF: what to write and what to report.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub manuals: Vec<ManualLink>,
    pub controls: Vec<ControlLink>,
    pub enclosures: Vec<EnclosureLink>,
    /// The General Cancel message bound to GrandOrgue's General Cancel button (`[SetterGC]`).
    pub cancel: Option<Pattern>,
    /// Divisions without a manual (or whose expression has no enclosure), with the reason.
    pub unmatched_divisions: Vec<(usize, String)>,
    /// Controls without a GrandOrgue element (or whose messages GrandOrgue cannot receive).
    pub unmatched_controls: Vec<(usize, String)>,
    /// Controls whose GrandOrgue element follows the same switch as an earlier control's: the
    /// switch is bound once, to the earlier control. (control, matched element, note)
    pub shared: Vec<(usize, usize, String)>,
    /// ODF manuals no division plays.
    pub unused_manuals: Vec<u32>,
    /// ODF stops (speaking ones), couplers and tremulants that no control drives (indices into
    /// `Odf::elements`).
    pub unused_elements: Vec<usize>,
    /// Enclosures of played manuals whose division has no expression controller: (manual,
    /// index into `Odf::enclosures`).
    pub unused_enclosures: Vec<(u32, usize)>,
    /// Things worth knowing that need no change.
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

pub(crate) fn kind_of(c: &Control) -> ElementKind {
    match c.kind {
        ControlKind::Stop => ElementKind::Stop,
        ControlKind::Coupler { .. } => ElementKind::Coupler,
        ControlKind::Tremulant => ElementKind::Tremulant,
    }
}

fn control_noun(c: &Control) -> &'static str {
    kind_of(c).noun()
}

/// `Stop003 "Principal 8'"`, printable.
fn element_ref(odf: &Odf, i: usize) -> String {
    let e = &odf.elements[i];
    format!("{} \"{}\"", e.section(), printable(&e.name))
}

/// Matches `organ` to `odf` and binds every matched control.
pub fn configure(organ: &Organ, odf: &Odf) -> Settings {
    let mut s = Settings::default();
    (s.manuals, s.unmatched_divisions) = matching::manuals(organ, odf);
    let manual_links = s.manuals.clone();
    let matcher = matching::Matcher::new(organ, odf, &manual_links);
    let mut taken: Vec<usize> = Vec::new();
    for ci in 0..organ.controls.len() {
        match matcher.find(ci, &taken) {
            Err(why) => s.unmatched_controls.push((ci, why.to_string())),
            Ok(found) => {
                taken.push(found.element);
                bind_control(&mut s, organ, odf, ci, found);
            }
        }
    }
    bind_enclosures(&mut s, organ, odf);
    if let Some(cancel) = &organ.cancel {
        match events::bind_push(cancel) {
            Ok(p) => s.cancel = Some(p),
            Err(why) => s.warnings.push(format!(
                "the General Cancel message cannot drive GrandOrgue's General Cancel ({why}): stops drawn in GrandOrgue stay drawn when `organ` cancels"
            )),
        }
    }
    check_cross_talk(&mut s, organ, odf);
    follow_ups(&mut s, organ, odf);
    s
}

/// Binds control `ci` to the element that takes the MIDI for `found`.
fn bind_control(s: &mut Settings, organ: &Organ, odf: &Odf, ci: usize, found: matching::Found) {
    let c = &organ.controls[ci];
    let t = found.element;
    let noun = odf.elements[t].kind.noun();
    let input = if odf.elements[t].kind == ElementKind::Switch { Ok(t) } else { odf.drive(t).map(|d| d.input) };
    let input = match input {
        Ok(i) => i,
        Err(why) => {
            let why = format!("matched GrandOrgue {noun} {}, but {why}", element_ref(odf, t));
            s.unmatched_controls.push((ci, why));
            return;
        }
    };
    if let Some(first) = s.controls.iter().find(|l| l.element == input) {
        let note = format!(
            "GrandOrgue's {noun} {} follows {}, which already carries \"{}\": one drawknob in GrandOrgue for both, bound once, to \"{}\"",
            element_ref(odf, t),
            element_ref(odf, input),
            organ.controls[first.control].name,
            organ.controls[first.control].name
        );
        s.shared.push((ci, t, note));
        return;
    }
    match events::bind(&c.on, &c.off) {
        Ok(binding) => s.controls.push(ControlLink { control: ci, element: input, target: t, binding, how: found.how }),
        Err(why) => {
            let why = format!("matched GrandOrgue {noun} {}, but {why}", element_ref(odf, t));
            s.unmatched_controls.push((ci, why));
        }
    }
}

/// Each played manual's enclosure to its division's expression controller.
fn bind_enclosures(s: &mut Settings, organ: &Organ, odf: &Odf) {
    let enclosures = odf.manual_enclosures();
    for l in &s.manuals {
        let d = &organ.divisions[l.division];
        let enclosure = enclosures.iter().find(|x| x.0 == l.manual);
        match (d.expression, enclosure) {
            (Some(expression), Some(&(_, ei, by_name))) => s.enclosures.push(EnclosureLink {
                division: l.division,
                enclosure: ei,
                expression,
                how: if by_name { "by name" } else { "it encloses most of the manual's stops" },
            }),
            (Some(x), None) => s.unmatched_divisions.push((
                l.division,
                format!(
                    "expression (CC {} ch {}): GrandOrgue manual \"{}\" has no enclosure (swell box)",
                    x.cc,
                    x.channel.user(),
                    odf.manual(l.manual).map_or(String::new(), |m| printable(&m.name))
                ),
            )),
            (None, Some(&(m, ei, _))) => s.unused_enclosures.push((m, ei)),
            (None, None) => {}
        }
    }
}

/// Warnings where a GrandOrgue element reacts to another control's messages, where a binding
/// toggles, and where an expression controller shares a control's controller.
fn check_cross_talk(s: &mut Settings, organ: &Organ, odf: &Odf) {
    let shown = |msgs: &[crate::midi::Message]| {
        msgs.iter().map(|m| HexBytes(m.as_bytes()).to_string()).collect::<Vec<_>>().join(", ")
    };
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
                        printable(&odf.elements[l.element].name),
                        other.name,
                        shown(msgs)
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
    for x in &s.enclosures {
        let (ch, cc) = (x.expression.channel.user(), x.expression.cc);
        for c in &organ.controls {
            let hit = |msgs: &[crate::midi::Message]| {
                events::events(msgs)
                    .iter()
                    .any(|e| matches!(e, events::Event::Ctrl { channel, key, .. } if *channel == ch && *key == cc))
            };
            if hit(&c.on) || hit(&c.off) {
                s.warnings.push(format!(
                    "the expression controller of division {} (CC {cc} ch {ch}) is also a message of \"{}\": GrandOrgue's enclosure moves with it",
                    organ.divisions[x.division].name, c.name
                ));
            }
        }
    }
}

/// What no control drives, what a bound switch draws besides, and switches a computed element
/// also needs.
fn follow_ups(s: &mut Settings, organ: &Organ, odf: &Odf) {
    let inputs: Vec<usize> = s.controls.iter().map(|l| l.element).collect();
    let targets: Vec<usize> = s.controls.iter().map(|l| l.target).chain(s.shared.iter().map(|x| x.1)).collect();
    for l in &s.controls {
        let extra: Vec<String> = odf
            .followers(l.element)
            .into_iter()
            .filter(|&i| odf.is_control(i) && !targets.contains(&i))
            .map(|i| element_ref(odf, i))
            .collect();
        if !extra.is_empty() {
            s.notes.push(format!(
                "\"{}\" also draws GrandOrgue's {} (they follow the same {})",
                organ.controls[l.control].name,
                extra.join(", "),
                element_ref(odf, l.element)
            ));
        }
        if let Ok(d) = odf.drive(l.target) {
            for n in d.also_needs.iter().filter(|n| !odf.elements[**n].default_on && !inputs.contains(n)) {
                s.warnings.push(format!(
                    "GrandOrgue's {} sounds only while {} is also on, which is off by default and no control draws it",
                    element_ref(odf, l.target),
                    element_ref(odf, *n)
                ));
            }
        }
    }
    s.unused_manuals =
        odf.manuals.iter().map(|m| m.number).filter(|n| !s.manuals.iter().any(|l| l.manual == *n)).collect();
    s.unused_elements = (0..odf.elements.len())
        .filter(|&i| odf.is_control(i) && !odf.leaves(i).is_ok_and(|l| l.iter().any(|x| inputs.contains(x))))
        .collect();
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
        // Only elements that take MIDI: GrandOrgue does not read MIDI settings of computed ones
        // and would warn about them.
        for (i, e) in odf.elements.iter().enumerate().filter(|(_, e)| e.takes_midi()) {
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
        for x in &self.enclosures {
            let (e, d) = (&odf.enclosures[x.enclosure], &organ.divisions[x.division]);
            c.section(&e.section(), Some(format!("{} ← expression of division {}", e.name, d.name)));
            c.enclosure_receiver(x.expression.channel.user(), x.expression.cc);
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
            printable(&odf.church_name),
            printable(&odf.source),
            printable(&organ.name),
            printable(&organ.source)
        );
        let _ = writeln!(r, "manuals:");
        for l in &self.manuals {
            let d = &organ.divisions[l.division];
            let m = odf.manual(l.manual).expect("linked manual exists");
            let _ = writeln!(
                r,
                "  {:<24} channel {:>2} → {} \"{}\"",
                printable(&d.name),
                d.channel.user(),
                m.section(),
                printable(&m.name)
            );
        }
        let _ = writeln!(r, "stops, couplers, tremulants:");
        for l in &self.controls {
            let c = &organ.controls[l.control];
            let how: Vec<String> = l.binding.patterns.iter().map(describe).collect();
            let via =
                if l.element == l.target { String::new() } else { format!("for {}; ", element_ref(odf, l.target)) };
            let _ = writeln!(
                r,
                "  {:<24} → {} ({via}{}; {})",
                printable(&c.name),
                element_ref(odf, l.element),
                l.how,
                how.join(" + ")
            );
        }
        if let Some(p) = &self.cancel {
            let _ = writeln!(r, "  {:<24} → SetterGC (General Cancel; {})", "[cancel] message", describe(p));
        }
        if !self.enclosures.is_empty() {
            let _ = writeln!(r, "enclosures:");
        }
        for x in &self.enclosures {
            let e = &odf.enclosures[x.enclosure];
            let _ = writeln!(
                r,
                "  {:<24} → {} \"{}\" ({}; CC {} ch {}, 0 closed … 127 open)",
                format!("{} expression", organ.divisions[x.division].name),
                e.section(),
                printable(&e.name),
                x.how,
                x.expression.cc,
                x.expression.channel.user()
            );
        }
        self.report_problems(&mut r, organ, odf);
        let total = (0..odf.elements.len()).filter(|&i| odf.is_control(i)).count();
        let _ = writeln!(
            r,
            "GrandOrgue's speaking stops, couplers and tremulants: {} of {total} driven",
            total - self.unused_elements.len()
        );
        r
    }

    fn report_problems(&self, r: &mut String, organ: &Organ, odf: &Odf) {
        if !self.shared.is_empty() || !self.notes.is_empty() {
            let _ = writeln!(r, "notes:");
            for (ci, _, note) in &self.shared {
                let c = &organ.controls[*ci];
                let _ = writeln!(r, "  {} \"{}\": {note}", control_noun(c), printable(&c.name));
            }
            for n in &self.notes {
                let _ = writeln!(r, "  {n}");
            }
        }
        if !self.unmatched_divisions.is_empty() || !self.unmatched_controls.is_empty() {
            let _ = writeln!(r, "not matched in {} (GrandOrgue will not follow these):", printable(&organ.name));
            for (d, why) in &self.unmatched_divisions {
                let _ = writeln!(r, "  division {}: {why}", printable(&organ.divisions[*d].name));
            }
            for (ci, why) in &self.unmatched_controls {
                let c = &organ.controls[*ci];
                let _ = writeln!(r, "  {} \"{}\": {why}", control_noun(c), printable(&c.name));
            }
        }
        if !self.unused_manuals.is_empty() || !self.unused_elements.is_empty() || !self.unused_enclosures.is_empty() {
            let _ = writeln!(r, "not driven in GrandOrgue (no MIDI binding written):");
            for m in &self.unused_manuals {
                let m = odf.manual(*m).expect("listed manual exists");
                let _ = writeln!(r, "  {} \"{}\"", m.section(), printable(&m.name));
            }
            for i in &self.unused_elements {
                let e = &odf.elements[*i];
                let on: Vec<String> =
                    e.manuals.iter().filter_map(|m| odf.manual(*m)).map(|m| printable(&m.name)).collect();
                let _ = writeln!(r, "  {} ({} on {})", element_ref(odf, *i), e.kind.noun(), on.join(", "));
            }
            for (m, ei) in &self.unused_enclosures {
                let (e, m) = (&odf.enclosures[*ei], odf.manual(*m).expect("listed manual exists"));
                let _ = writeln!(
                    r,
                    "  {} \"{}\" (the enclosure of {}; add expression = {{ cc = 11 }} to its division)",
                    e.section(),
                    printable(&e.name),
                    printable(&m.name)
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(r, "warning: {w}");
        }
    }

    /// Whether everything in the organ definition found its GrandOrgue counterpart.
    pub fn complete(&self) -> bool {
        self.unmatched_divisions.is_empty() && self.unmatched_controls.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    pub(crate) const ODF: &str = "[Organ]\nChurchName=Test Church\nNumberOfManuals=2\nHasPedals=Y\nNumberOfTremulants=1\n\
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

    /// An organ definition for the switch-driven ODF of `drive::tests::SWITCHED`.
    const SWITCHED_ORGAN: &str = r#"
name = "Switched test"
[division.pedal]
code = "P"
channel = 3
compass = [36, 67]
[division.great]
code = "G"
channel = 2
[division.swell]
code = "S"
channel = 1
expression = { cc = 11 }
[[stop]]
name = "Ped Subbass 16"
division = "pedal"
on = { note = 30, channel = 16 }
[[stop]]
name = "Gt Principal 8"
division = "great"
on = { note = 31, channel = 16 }
[[stop]]
name = "Gt Bourdon 8"
division = "great"
on = { note = 32, channel = 16 }
[[stop]]
name = "Sw Bourdon 8"
division = "swell"
on = { note = 33, channel = 16 }
[[coupler]]
name = "Sw to Ped"
from = "swell"
to = "pedal"
on = { note = 34, channel = 16 }
[[tremulant]]
name = "Sw Tremolo"
division = "swell"
on = { note = 35, channel = 16 }
"#;

    pub(crate) fn switched_organ() -> String {
        SWITCHED_ORGAN.to_string()
    }

    fn switched(odf: Odf) -> (Organ, Odf, Settings) {
        let organ = Organ::from_toml(SWITCHED_ORGAN, "switched.toml").unwrap();
        let s = configure(&organ, &odf);
        (organ, odf, s)
    }

    /// (control, element bound, element matched)
    fn bound_via(organ: &Organ, odf: &Odf, s: &Settings) -> Vec<(String, String, String)> {
        s.controls
            .iter()
            .map(|l| {
                let c = organ.controls[l.control].name.clone();
                (c, odf.elements[l.element].section(), odf.elements[l.target].section())
            })
            .collect()
    }

    fn switched_expectations(organ: &Organ, odf: &Odf, s: &Settings) {
        let want = [
            ("Ped Subbass 16", "Stop001", "Stop001"),   // a plain drawstop: itself
            ("Gt Principal 8", "Switch002", "Stop002"), // one switch: the switch
            ("Gt Bourdon 8", "Switch003", "Stop004"),   // a switch shared with Sw Bourdon 8
            ("Sw to Ped", "Switch004", "Coupler001"),   // the coupler's own switch, not "Wind"
        ];
        let want: Vec<(String, String, String)> =
            want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
        assert_eq!(bound_via(organ, odf, s), want);
    }

    #[test]
    fn a_stop_computed_from_a_switch_is_bound_through_the_switch() {
        let (organ, odf, s) = switched(Odf::parse(drive::tests::SWITCHED, "s.organ").unwrap());
        switched_expectations(&organ, &odf, &s);
        let text = String::from_utf8(s.to_cmb(&organ, &odf, "switched.toml").to_bytes()).unwrap();
        let ini = odf::Ini::parse(&text);
        assert_eq!(ini.get("Switch002", "MIDIEventType001"), Some("Note"));
        assert_eq!(ini.get("Switch002", "MIDIKey001"), Some("31"));
        // computed elements get no MIDI section (GrandOrgue would warn), idle inputs get none
        assert!(!text.contains("[Stop002]") && !text.contains("[Coupler001]") && !text.contains("[Tremulant001]"));
        assert_eq!(ini.get("Switch005", "NumberOfMIDIEvents"), Some("0"));
        assert_eq!(ini.get("Stop001", "MIDIKey001"), Some("30"));
        let report = s.report(&organ, &odf);
        assert!(
            report.contains(
                "Gt Principal 8           → Switch002 \"Principal 8'\" (for Stop002 \"Principal 8'\"; by name;"
            ),
            "{report}"
        );
        // the inverted tremulant is reported, and left undriven
        let why = &s.unmatched_controls.iter().find(|(c, _)| organ.controls[*c].name == "Sw Tremolo").unwrap().1;
        assert!(why.contains("Function=Not"), "{why}");
        assert_eq!(s.unused_elements.iter().map(|&i| odf.elements[i].section()).collect::<Vec<_>>(), ["Tremulant001"]);
        assert!(report.contains("speaking stops, couplers and tremulants: 5 of 6 driven"), "{report}");
    }

    #[test]
    fn stops_sharing_a_switch_are_bound_once_with_a_note() {
        let (organ, odf, s) = switched(Odf::parse(drive::tests::SWITCHED, "s.organ").unwrap());
        assert_eq!(s.shared.len(), 1);
        let (ci, target, note) = &s.shared[0];
        assert_eq!(
            (organ.controls[*ci].name.as_str(), odf.elements[*target].section()),
            ("Sw Bourdon 8", "Stop005".into())
        );
        assert!(note.contains("Switch003") && note.contains("bound once, to \"Gt Bourdon 8\""), "{note}");
        assert!(s.controls.iter().filter(|l| odf.elements[l.element].section() == "Switch003").count() == 1);
        // with only the great's Bourdon in the organ definition, the report says what else it draws
        let text =
            SWITCHED_ORGAN.replace("name = \"Sw Bourdon 8\"", "name = \"Sw Bourdon 8\"\ngrandorgue = \"nothing\"");
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let s = configure(&organ, &odf);
        assert!(
            s.notes.iter().any(|n| n.contains("\"Gt Bourdon 8\" also draws GrandOrgue's Stop005")),
            "{:?}",
            s.notes
        );
    }

    #[test]
    fn an_override_may_name_a_switch_or_a_section() {
        let odf = Odf::parse(drive::tests::SWITCHED, "s.organ").unwrap();
        let text = SWITCHED_ORGAN
            .replace("name = \"Gt Principal 8\"", "name = \"Gt Principal 8\"\ngrandorgue = \"Switch002\"")
            .replace("name = \"Ped Subbass 16\"", "name = \"Ped Subbass 16\"\ngrandorgue = \"Noises\"");
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let s = configure(&organ, &odf);
        let b = bound_via(&organ, &odf, &s);
        assert!(b.contains(&("Gt Principal 8".into(), "Switch002".into(), "Switch002".into())), "{b:?}");
        assert!(
            b.contains(&("Ped Subbass 16".into(), "Switch005".into(), "Switch005".into())),
            "{b:?} {:?}",
            s.unmatched_controls
        );
        assert!(s.report(&organ, &odf).contains("→ Switch005 \"Noises\" (by grandorgue = \"…\";"));
    }

    #[test]
    fn an_organ_package_binds_like_its_odf() {
        let index = b"[General]\nOrganCount=1\n[Organ001]\nFilename=Switched\\switched.organ\nChurchName=Switched\n";
        let zip = package::tests::zip(
            &[("organindex.ini", index), ("Switched/switched.organ", drive::tests::SWITCHED.as_bytes())],
            true,
        );
        let p = std::env::temp_dir().join(format!("organ-switched-{}.orgue", std::process::id()));
        std::fs::write(&p, zip).unwrap();
        let odf = Odf::load(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(odf.from_package);
        let (organ, odf, s) = switched(odf);
        switched_expectations(&organ, &odf, &s);
    }

    #[test]
    fn suggestions_come_from_the_same_manual_and_never_from_effects() {
        let odf = Odf::parse(drive::tests::SWITCHED, "s.organ").unwrap();
        let text = SWITCHED_ORGAN.replace("name = \"Gt Principal 8\"", "name = \"Gt Principal 8 drawknob\"").replace(
            "name = \"Ped Subbass 16\"\ndivision = \"pedal\"",
            "name = \"Gt Subbass 16\"\ndivision = \"great\"",
        );
        let organ = Organ::from_toml(&text, "t.toml").unwrap();
        let s = configure(&organ, &odf);
        let why =
            |name: &str| s.unmatched_controls.iter().find(|(c, _)| organ.controls[*c].name == name).unwrap().1.clone();
        // the stop noise "Principal 8' drawknob" is never a candidate nor a suggestion
        let w = why("Gt Principal 8 drawknob");
        assert!(w.contains("did you mean \"Principal 8'\"?") && !w.contains("drawknob'"), "{w}");
        // the pedal's Subbass is not suggested for the great
        let w = why("Gt Subbass 16");
        assert!(w.contains("on Great") && !w.contains("did you mean"), "{w}");
    }

    #[test]
    fn expression_drives_the_enclosure_of_its_manual() {
        let (organ, odf, s) = switched(Odf::parse(drive::tests::SWITCHED, "s.organ").unwrap());
        assert_eq!(s.enclosures.len(), 1);
        let x = &s.enclosures[0];
        assert_eq!(
            (organ.divisions[x.division].name.as_str(), odf.enclosures[x.enclosure].section()),
            ("swell", "Enclosure001".into())
        );
        let text = String::from_utf8(s.to_cmb(&organ, &odf, "switched.toml").to_bytes()).unwrap();
        let ini = odf::Ini::parse(&text);
        for (k, v) in [
            ("MIDIEventType001", "ControlChange"),
            ("MIDIChannel001", "1"),
            ("MIDIKey001", "11"),
            ("MIDIUpperLimit001", "127"),
        ] {
            assert_eq!(ini.get("Enclosure001", k), Some(v), "{k}");
        }
        assert!(!text.contains("[Enclosure002]"));
        // the pedal's enclosure is reported as not driven, with the key to add
        assert_eq!(s.unused_enclosures, [(0, 1)]);
        assert!(s.report(&organ, &odf).contains("Enclosure002 \"Pedal\" (the enclosure of Pedal; add expression"));
        // an expression on a manual without an enclosure is reported
        let organ = Organ::from_toml(
            &SWITCHED_ORGAN.replace("code = \"G\"", "code = \"G\"\nexpression = { cc = 11 }"),
            "t.toml",
        )
        .unwrap();
        let s = configure(&organ, &odf);
        assert!(
            s.unmatched_divisions.iter().any(|(_, w)| w.contains("\"Great\" has no enclosure")),
            "{:?}",
            s.unmatched_divisions
        );
    }
}
