//! Finding, for each division and control of an organ definition, its GrandOrgue counterpart:
//! divisions → manuals, stops / couplers / tremulants → ODF elements (by name as [`names`]
//! states, or by `grandorgue = "…"`, which may also name a switch or a section such as
//! `Switch007`), and divisions' expression controllers → enclosures.
//!
//! Only speaking stops, couplers and tremulants are candidates (never stop noises and other
//! effects, see [`Odf::is_effect`]), and a control is looked for on its own division's manual
//! only; suggestions come from the same place. Pure; runs on the control thread.

use std::fmt;

use super::names::{self, printable};
use super::odf::{ElementKind, Odf};
use super::{ManualLink, kind_of};
use crate::organ::{Control, ControlKind, Organ};
use crate::text::closest;

/// Matches divisions to manuals. Returns the links and, for each division without one, why.
pub fn manuals(organ: &Organ, odf: &Odf) -> (Vec<ManualLink>, Vec<(usize, String)>) {
    let mut links: Vec<ManualLink> = Vec::new();
    let mut unmatched = Vec::new();
    for (di, d) in organ.divisions.iter().enumerate() {
        let wanted = d.grandorgue.as_deref().unwrap_or(&d.name);
        let key = names::manual_key(wanted);
        let hits: Vec<u32> = odf
            .manuals
            .iter()
            .filter(|m| names::manual_key(&m.name) == key || m.section().eq_ignore_ascii_case(wanted.trim()))
            .map(|m| m.number)
            .collect();
        let taken = |m: u32| links.iter().find(|l| l.manual == m).map(|l| organ.divisions[l.division].name.clone());
        match hits.as_slice() {
            [m] if taken(*m).is_none() => links.push(ManualLink { division: di, manual: *m }),
            [m] => unmatched.push((
                di,
                format!(
                    "GrandOrgue manual \"{}\" is already played by division {}",
                    odf.manual(*m).map_or(String::new(), |x| printable(&x.name)),
                    taken(*m).unwrap_or_default()
                ),
            )),
            _ => {
                let all: Vec<&str> = odf.manuals.iter().map(|m| m.name.as_str()).collect();
                let hint = closest(wanted, all.iter().copied())
                    .map(|c| format!("; did you mean \"{}\"?", printable(c)))
                    .unwrap_or_default();
                let what = if d.grandorgue.is_some() { format!("grandorgue = \"{wanted}\": ") } else { String::new() };
                let problem = if hits.is_empty() {
                    "no GrandOrgue manual of that name"
                } else {
                    "several GrandOrgue manuals of that name"
                };
                unmatched.push((
                    di,
                    format!(
                        "{what}{problem} (its manuals: {}){hint}; add grandorgue = \"<manual name>\" to [division.{}]",
                        printable(&all.join(", ")),
                        d.name
                    ),
                ));
            }
        }
    }
    (links, unmatched)
}

/// Context for matching controls: the organ, the ODF and the manual links.
pub struct Matcher<'a> {
    pub organ: &'a Organ,
    pub odf: &'a Odf,
    pub manuals: &'a [ManualLink],
    /// Coupler-name vocabulary: (normalised name, code letter, the GrandOrgue manual's key).
    vocab: Vec<(String, Option<char>, String)>,
    /// Per element: whether it is a speaking stop, coupler or tremulant, and its names'
    /// comparison forms (worked out once: both look at the whole ODF).
    is_control: Vec<bool>,
    forms: Vec<Vec<String>>,
}

/// Why a control has no GrandOrgue element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmatched {
    /// Its division (or, for a coupler, one of its divisions) has no manual.
    NoManual { division: String },
    /// Several elements answer to the name.
    Ambiguous { noun: &'static str, target: String },
    /// Nothing answers to the name (`on`: the manual looked at; `hint`: a suggestion from it).
    NoSuch { noun: &'static str, target: String, on: Option<String>, hint: Option<String>, by_override: bool },
}

impl fmt::Display for Unmatched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmatched::NoManual { division } => {
                write!(f, "its division {division} has no GrandOrgue manual (see above)")
            }
            Unmatched::Ambiguous { noun, target } => write!(
                f,
                "several GrandOrgue {noun}s are named \"{target}\"; add grandorgue = \"…\" with the exact one (a section such as Stop003 also works)"
            ),
            Unmatched::NoSuch { noun, target, on, hint, by_override } => {
                let on = on.as_ref().map(|m| format!(" on {}", printable(m))).unwrap_or_default();
                let hint = hint.as_ref().map(|h| format!("; did you mean \"{}\"?", printable(h))).unwrap_or_default();
                if *by_override {
                    write!(f, "grandorgue = \"{target}\": no GrandOrgue {noun} or switch of that name{on}{hint}")
                } else {
                    write!(
                        f,
                        "no GrandOrgue {noun} named like \"{target}\"{on}{hint}; add grandorgue = \"<its name in GrandOrgue>\""
                    )
                }
            }
        }
    }
}

impl std::error::Error for Unmatched {}

/// Where a control was found: the ODF element and how.
pub struct Found {
    pub element: usize,
    pub how: String,
}

impl<'a> Matcher<'a> {
    pub fn new(organ: &'a Organ, odf: &'a Odf, manuals: &'a [ManualLink]) -> Matcher<'a> {
        let mut m = Matcher { organ, odf, manuals, vocab: Vec::new(), is_control: Vec::new(), forms: Vec::new() };
        m.is_control = (0..odf.elements.len()).map(|i| odf.is_control(i)).collect();
        m.forms = (0..odf.elements.len()).map(|i| m.element_forms(i)).collect();
        for x in &odf.manuals {
            m.vocab.push((names::normalize(&x.name), None, names::manual_key(&x.name)));
        }
        for (di, d) in organ.divisions.iter().enumerate() {
            let key = m
                .manual_of(di)
                .and_then(|x| odf.manual(x))
                .map_or_else(|| names::manual_key(&d.name), |x| names::manual_key(&x.name));
            m.vocab.push((names::normalize(&d.name), Some(d.code), key));
        }
        m
    }

    pub fn manual_of(&self, division: usize) -> Option<u32> {
        self.manuals.iter().find(|l| l.division == division).map(|l| l.manual)
    }

    /// Canonical word list of a coupler name: filler words dropped, division / manual
    /// abbreviations replaced by the manual's name key.
    fn coupler_words(&self, name: &str) -> Vec<String> {
        names::normalize(&name.replace(['/', '-', '>'], " "))
            .split(' ')
            .filter(|w| !w.is_empty() && !matches!(*w, "to" | "coupler" | "coupl" | "cpl"))
            .map(|w| {
                self.vocab
                    .iter()
                    .find(|(n, code, _)| names::abbreviates(w, n, *code))
                    .map_or_else(|| w.to_string(), |(_, _, key)| key.clone())
            })
            .collect()
    }

    /// The comparison forms of an element's names: each name normalised, and without a leading
    /// abbreviation of its own manual.
    fn element_forms(&self, i: usize) -> Vec<String> {
        let e = &self.odf.elements[i];
        let mnames: Vec<String> =
            e.manuals.iter().filter_map(|m| self.odf.manual(*m)).map(|m| names::normalize(&m.name)).collect();
        let mrefs: Vec<&str> = mnames.iter().map(String::as_str).collect();
        let mut v = Vec::new();
        for n in self.odf.names_of(i) {
            let n = names::normalize(n);
            if let Some(st) = names::strip_division(&n, &mrefs, None) {
                v.push(st.to_string());
            }
            v.push(n);
        }
        v
    }

    /// Finds the ODF element for control `ci` among the elements not in `taken`.
    ///
    /// # Errors
    /// Why nothing (or nothing unique) was found, with a suggestion from the same manual.
    pub fn find(&self, ci: usize, taken: &[usize]) -> Result<Found, Unmatched> {
        let c = &self.organ.controls[ci];
        let kind = kind_of(c);
        let home = c.division.and_then(|d| self.manual_of(d));
        if let (Some(d), None, None) = (c.division, home, &c.grandorgue) {
            return Err(Unmatched::NoManual { division: self.organ.divisions[d].name.clone() });
        }
        if let Some(o) = &c.grandorgue
            && let Some(i) = self.odf.elements.iter().position(|e| e.section().eq_ignore_ascii_case(o.trim()))
        {
            return Ok(Found { element: i, how: format!("by grandorgue = \"{}\"", o.trim()) });
        }
        let odf = self.odf;
        let candidates: Vec<usize> = (0..odf.elements.len())
            .filter(|&i| odf.elements[i].kind == kind && self.is_control[i] && !taken.contains(&i))
            .collect();
        let on_home = |i: &usize| home.is_some_and(|h| odf.elements[*i].manuals.contains(&h));
        let wanted = self.wanted_forms(c, home);
        let name_hit = |i: &usize| {
            let ef = &self.forms[*i];
            let by_words = kind == ElementKind::Coupler
                && c.grandorgue.is_none()
                && self.coupler_words(&c.name) == self.coupler_words(&odf.elements[*i].name);
            by_words || wanted.iter().any(|w| ef.contains(w))
        };
        let by_name_home: Vec<usize> = candidates.iter().copied().filter(|i| on_home(i) && name_hit(i)).collect();
        // Other manuals only for an explicit override or a control without a division.
        let by_name_all: Vec<usize> = if home.is_none() || c.grandorgue.is_some() {
            let mut all: Vec<usize> = candidates.iter().copied().filter(name_hit).collect();
            // An override may name a switch: the switch itself.
            if all.is_empty() && c.grandorgue.is_some() {
                all = (0..odf.elements.len())
                    .filter(|&i| {
                        let e = &odf.elements[i];
                        e.kind == ElementKind::Switch && e.takes_midi() && !taken.contains(&i) && name_hit(&i)
                    })
                    .collect();
            }
            all
        } else {
            Vec::new()
        };
        let how = if c.grandorgue.is_some() { "by grandorgue = \"…\"" } else { "by name" };
        let (by_name_home, by_name_all) = (self.one_per_input(by_name_home), self.one_per_input(by_name_all));
        match (by_name_home.as_slice(), by_name_all.as_slice()) {
            ([one], _) | ([], [one]) => return Ok(Found { element: *one, how: how.into() }),
            ([], []) if c.grandorgue.is_none() => {
                if let Some(found) = self.by_structure(c, &candidates) {
                    return Ok(found);
                }
            }
            _ => {}
        }
        Err(self.not_found(c, home, &candidates, &wanted, by_name_home.len() > 1 || by_name_all.len() > 1))
    }

    /// The hits without those that take their MIDI from the same element as an earlier hit
    /// (one drawknob in GrandOrgue: a stop and its switch, say).
    fn one_per_input(&self, hits: Vec<usize>) -> Vec<usize> {
        let input = |i: usize| self.odf.drive(i).map_or(i, |d| d.input);
        let mut out: Vec<usize> = Vec::new();
        for h in hits {
            if !out.iter().any(|&o| input(o) == input(h)) {
                out.push(h);
            }
        }
        out
    }

    fn wanted_forms(&self, c: &Control, home: Option<u32>) -> Vec<String> {
        if let Some(o) = &c.grandorgue {
            return vec![names::normalize(o)];
        }
        let mut prefixes: Vec<String> = Vec::new();
        if let Some(d) = c.division {
            prefixes.push(names::normalize(&self.organ.divisions[d].name));
        }
        if let Some(m) = home.and_then(|h| self.odf.manual(h)) {
            prefixes.push(names::normalize(&m.name));
        }
        let pref: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        let code = c.division.map(|d| self.organ.divisions[d].code);
        let n = names::normalize(&c.name);
        let mut v = vec![n.clone()];
        if let Some(st) = names::strip_division(&n, &pref, code) {
            v.push(st.to_string());
        }
        v
    }

    /// Couplers by their manuals and key shift; a tremulant as the only one of its manual.
    fn by_structure(&self, c: &Control, candidates: &[usize]) -> Option<Found> {
        let odf = self.odf;
        match c.kind {
            ControlKind::Coupler { from, to } => {
                let (fm, tm) = (self.manual_of(from)?, self.manual_of(to)?);
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
                        e.manuals.contains(&tm) && e.destination == Some(fm) && !e.unison_off && e.keyshift == shift
                    })
                    .collect();
                let [one] = hits.as_slice() else { return None };
                Some(Found { element: *one, how: "by its manuals and key shift".into() })
            }
            ControlKind::Tremulant => {
                let home = c.division.and_then(|d| self.manual_of(d))?;
                let on: Vec<usize> =
                    candidates.iter().copied().filter(|&i| odf.elements[i].manuals.contains(&home)).collect();
                match on.as_slice() {
                    [one] if names::normalize(&c.name).contains("trem") => {
                        Some(Found { element: *one, how: "as the only tremulant of its manual".into() })
                    }
                    _ => None,
                }
            }
            ControlKind::Stop => None,
        }
    }

    /// Why a control was not found, with a suggestion from the elements of its kind on its own
    /// manual (speaking ones only).
    fn not_found(
        &self,
        c: &Control,
        home: Option<u32>,
        candidates: &[usize],
        wanted: &[String],
        ambiguous: bool,
    ) -> Unmatched {
        if let (ControlKind::Coupler { from, to }, None) = (c.kind, &c.grandorgue) {
            for d in [from, to] {
                if self.manual_of(d).is_none() {
                    return Unmatched::NoManual { division: self.organ.divisions[d].name.clone() };
                }
            }
        }
        let noun = kind_of(c).noun();
        let odf = self.odf;
        let nearby: Vec<&str> = candidates
            .iter()
            .filter(|&&i| home.is_none_or(|h| odf.elements[i].manuals.contains(&h)))
            .map(|&i| odf.elements[i].name.as_str())
            .collect();
        let target = c.grandorgue.as_deref().unwrap_or(&c.name).to_string();
        if ambiguous {
            return Unmatched::Ambiguous { noun, target };
        }
        // Compared in the matching form (foot marks dropped), shown as GrandOrgue spells them.
        let forms: Vec<String> = nearby.iter().map(|n| names::normalize(n)).collect();
        let hint = closest(wanted.last().map_or(target.as_str(), String::as_str), forms.iter().map(String::as_str))
            .and_then(|f| forms.iter().position(|x| x == f))
            .map(|k| nearby[k].to_string());
        let on = home.and_then(|h| odf.manual(h)).map(|m| m.name.clone());
        Unmatched::NoSuch { noun, target, on, hint, by_override: c.grandorgue.is_some() }
    }
}
