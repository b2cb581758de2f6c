//! How an ODF's elements are really played, as GrandOrgue 3.9 wires them: which element takes
//! the MIDI for a stop, coupler or tremulant (the element itself when it is a plain drawstop,
//! else the switch its `Function` follows), which stops are sound effects rather than speaking
//! stops (stop and blower noises), and which enclosure (swell box) belongs to which manual.
//!
//! GrandOrgue's rules (`GODrawstop::Load`, `GODrawstop::Update`): an element with
//! `Function=Input` (the default) takes MIDI; any other function makes it read-only, its state
//! computed from the switches it lists (`SwitchCount`, `Switch001`…), which may themselves be
//! computed. `And` and `Or` follow their switches; `Not`, `Nand`, `Nor` and `Xor` invert them.
//! Pure; runs on the control thread.

use std::fmt;

use super::names;
use super::odf::{Element, ElementKind, Function, Odf};

/// Why no single element can carry a control's MIDI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undrivable {
    /// Computed with an inverting function: drawing the control would have to put a switch in.
    Inverted { section: String, function: Function },
    /// Several switches set it and none stands out (by name or by driving fewer elements).
    Several { switches: Vec<String> },
    /// Its switches form a loop.
    Loop { section: String },
}

impl fmt::Display for Undrivable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undrivable::Inverted { section, function } => write!(
                f,
                "[{section}] is computed with Function={function}, which inverts its switches; organ binds only switches an element follows (Input, And, Or)"
            ),
            Undrivable::Several { switches } => write!(
                f,
                "it follows several switches ({}); name the one to bind with grandorgue = \"<switch name or section>\"",
                switches.join(", ")
            ),
            Undrivable::Loop { section } => write!(f, "the switches of [{section}] refer to each other in a loop"),
        }
    }
}

/// The element that takes a control's MIDI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    /// Index into `Odf::elements` of the element to bind: the control's element itself when it
    /// takes MIDI, else a switch.
    pub input: usize,
    /// Other switches that must be on for the element to be on (`And` of several), with
    /// whether they are on by default.
    pub also_needs: Vec<usize>,
}

impl Drive {
    pub fn is_switch(&self, odf: &Odf, element: usize) -> bool {
        self.input != element && odf.elements[self.input].kind == ElementKind::Switch
    }
}

/// Words that mark a stop (or its windchest) as a sound effect rather than a speaking stop.
const EFFECT_WORDS: &[&str] = &[
    "noise",
    "noises",
    "geräusch",
    "geräusche",
    "gerausch",
    "bruit",
    "bruits",
    "blower",
    "motor",
    "effect",
    "effects",
];

/// What [`Odf::wire`] works out once for every element (each is a walk over the ODF).
#[derive(Debug, Clone, Default)]
pub struct Wiring {
    leaves: Vec<Result<Vec<usize>, Undrivable>>,
    dependents: Vec<usize>,
    effects: Vec<bool>,
}

impl Odf {
    fn switch_element(&self, number: u32) -> Option<usize> {
        self.index_of(ElementKind::Switch, number)
    }

    /// Works out, once, each element's input elements, dependents and whether it is an effect.
    pub(super) fn wire(&mut self) {
        let n = self.elements.len();
        self.wiring = Wiring::default();
        let leaves: Vec<Result<Vec<usize>, Undrivable>> = (0..n)
            .map(|i| {
                let mut out = Vec::new();
                self.collect_leaves(i, 0, &mut out).map(|()| out)
            })
            .collect();
        let dependents = (0..n)
            .map(|si| {
                let no = self.elements[si].number;
                let switch = self.elements[si].kind == ElementKind::Switch;
                self.elements.iter().filter(|e| switch && !e.takes_midi() && e.switches.contains(&no)).count()
            })
            .collect();
        self.wiring = Wiring { leaves, dependents, effects: Vec::new() };
        self.wiring.effects = (0..n).map(|i| self.find_effect(i)).collect();
    }

    /// The input elements (`Function=Input`) that set element `i`, through computed switches.
    ///
    /// # Errors
    /// An inverting function on the way, or a loop.
    pub fn leaves(&self, i: usize) -> Result<Vec<usize>, Undrivable> {
        match self.wiring.leaves.get(i) {
            Some(cached) => cached.clone(),
            None => {
                let mut out = Vec::new();
                self.collect_leaves(i, 0, &mut out)?;
                Ok(out)
            }
        }
    }

    fn collect_leaves(&self, i: usize, depth: usize, out: &mut Vec<usize>) -> Result<(), Undrivable> {
        let e = &self.elements[i];
        if depth > 32 {
            return Err(Undrivable::Loop { section: e.section() });
        }
        if e.takes_midi() {
            if !out.contains(&i) {
                out.push(i);
            }
            return Ok(());
        }
        if !e.function.follows() {
            return Err(Undrivable::Inverted { section: e.section(), function: e.function });
        }
        for s in &e.switches {
            if let Some(si) = self.switch_element(*s) {
                self.collect_leaves(si, depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// How many elements list switch element `si` directly.
    pub fn dependents(&self, si: usize) -> usize {
        self.wiring.dependents.get(si).copied().unwrap_or_else(|| {
            let no = self.elements[si].number;
            self.elements.iter().filter(|e| !e.takes_midi() && e.switches.contains(&no)).count()
        })
    }

    /// The element to bind for element `i` (a stop, coupler or tremulant).
    ///
    /// # Errors
    /// See [`Undrivable`].
    pub fn drive(&self, i: usize) -> Result<Drive, Undrivable> {
        let leaves = self.leaves(i)?;
        let pick = match leaves.as_slice() {
            [one] => *one,
            _ => {
                let own = names::normalize(&self.elements[i].name);
                let by_name: Vec<usize> =
                    leaves.iter().copied().filter(|&l| names::normalize(&self.elements[l].name) == own).collect();
                let fewest = leaves.iter().map(|&l| self.dependents(l)).min().unwrap_or(0);
                let least: Vec<usize> = leaves.iter().copied().filter(|&l| self.dependents(l) == fewest).collect();
                match (by_name.as_slice(), least.as_slice()) {
                    ([one], _) | ([], [one]) => *one,
                    _ => {
                        return Err(Undrivable::Several {
                            switches: leaves
                                .iter()
                                .map(|&l| format!("{} \"{}\"", self.elements[l].section(), self.elements[l].name))
                                .collect(),
                        });
                    }
                }
            }
        };
        let and = self.elements[i].function == Function::And;
        let also_needs = if and { leaves.into_iter().filter(|&l| l != pick).collect() } else { Vec::new() };
        Ok(Drive { input: pick, also_needs })
    }

    /// The elements (other than `input` itself) whose state follows input element `input`.
    pub fn followers(&self, input: usize) -> Vec<usize> {
        (0..self.elements.len()).filter(|&i| i != input && self.leaves(i).is_ok_and(|l| l.contains(&input))).collect()
    }

    /// Whether element `i` is a stop that makes a sound effect (a stop, key or blower noise)
    /// rather than a speaking stop: a single pipe; a name or windchest named as an effect
    /// ("noise", "blower", "motor", "effect" …); or computed from the switch of another stop plus
    /// further switches (a stop's drawknob noise follows its switch and a "noises on" switch).
    pub fn is_effect(&self, i: usize) -> bool {
        self.wiring.effects.get(i).copied().unwrap_or_else(|| self.find_effect(i))
    }

    fn find_effect(&self, i: usize) -> bool {
        let e = &self.elements[i];
        if e.kind != ElementKind::Stop {
            return false;
        }
        let effect_words = |s: &str| names::normalize(s).split(' ').any(|w| EFFECT_WORDS.contains(&w));
        if e.pipes == Some(1) || effect_words(&e.name) {
            return true;
        }
        if e.windchests.iter().any(|w| self.windchests.iter().any(|x| x.number == *w && effect_words(&x.name))) {
            return true;
        }
        let Ok(mine) = self.leaves(i) else { return false };
        mine.len() > 1
            && self.elements.iter().enumerate().any(|(j, o)| {
                j != i
                    && o.kind == ElementKind::Stop
                    && self.leaves(j).is_ok_and(|l| l.len() == 1 && mine.contains(&l[0]))
            })
    }

    /// Whether element `i` is something an organ definition draws: a speaking stop, a coupler or
    /// a tremulant.
    pub fn is_control(&self, i: usize) -> bool {
        match self.elements[i].kind {
            ElementKind::Stop => !self.is_effect(i),
            ElementKind::Coupler | ElementKind::Tremulant => true,
            ElementKind::Switch | ElementKind::DivisionalCoupler => false,
        }
    }

    /// Names an element is known by on the console: its name, its label, and (for a computed
    /// element with one switch) the switch's name and label.
    pub fn names_of(&self, i: usize) -> Vec<&str> {
        let mut of: Vec<&Element> = vec![&self.elements[i]];
        if let Ok(d) = self.drive(i)
            && d.input != i
        {
            of.push(&self.elements[d.input]);
        }
        of.into_iter().flat_map(|e| std::iter::once(e.name.as_str()).chain(e.label.as_deref())).collect()
    }

    /// The enclosure (index into `enclosures`) of each manual that has one: the enclosure named
    /// like the manual, else the one that encloses most of the manual's enclosed speaking stops
    /// (through their windchest groups), each enclosure given to the manual it encloses the
    /// largest share of. Returns (manual number, enclosure index, matched by name).
    pub fn manual_enclosures(&self) -> Vec<(u32, usize, bool)> {
        let mut out: Vec<(u32, usize, bool)> = Vec::new();
        for (ei, enc) in self.enclosures.iter().enumerate() {
            let key = names::manual_key(&enc.name);
            let first = names::normalize(&enc.name);
            let first = first.split(' ').next().unwrap_or_default();
            let hits: Vec<u32> = self
                .manuals
                .iter()
                .filter(|m| {
                    names::manual_key(&m.name) == key || names::abbreviates(first, &names::normalize(&m.name), None)
                })
                .map(|m| m.number)
                .collect();
            if let [m] = hits.as_slice()
                && !out.iter().any(|x| x.0 == *m)
            {
                out.push((*m, ei, true));
            }
        }
        // (manual, enclosure, share of the manual's speaking stops it encloses)
        let mut claims: Vec<(u32, usize, f64)> = Vec::new();
        for m in &self.manuals {
            if out.iter().any(|x| x.0 == m.number) {
                continue;
            }
            let stops: Vec<usize> = (0..self.elements.len())
                .filter(|&i| {
                    let e = &self.elements[i];
                    e.kind == ElementKind::Stop && e.manuals.contains(&m.number) && !self.is_effect(i)
                })
                .collect();
            let encloses = |enc: u32, i: usize| {
                self.elements[i]
                    .windchests
                    .iter()
                    .any(|w| self.windchests.iter().any(|x| x.number == *w && x.enclosures.contains(&enc)))
            };
            let counts: Vec<(usize, usize)> = (0..self.enclosures.len())
                .filter(|&ei| !out.iter().any(|x| x.1 == ei))
                .map(|ei| (ei, stops.iter().filter(|&&i| encloses(self.enclosures[ei].number, i)).count()))
                .filter(|&(_, n)| n > 0)
                .collect();
            let best = counts.iter().map(|c| c.1).max().unwrap_or(0);
            if let [(ei, n)] = counts.iter().filter(|c| c.1 == best).copied().collect::<Vec<_>>().as_slice() {
                claims.push((m.number, *ei, *n as f64 / stops.len() as f64));
            }
        }
        for &(m, ei, share) in &claims {
            let rivals = claims.iter().filter(|c| c.1 == ei && c.0 != m);
            if rivals.clone().all(|c| c.2 < share) {
                out.push((m, ei, false));
            }
        }
        out.sort_by_key(|x| x.0);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The demo organ's wiring in miniature: stops and couplers computed from switches, stop
    /// noises following a stop's switch and a "noises on" switch, a blower, two enclosures.
    pub(crate) const SWITCHED: &str = "[Organ]\nChurchName=Switched\nNumberOfManuals=2\nHasPedals=Y\n\
NumberOfSwitches=6\nNumberOfTremulants=1\nNumberOfEnclosures=2\nNumberOfWindchestGroups=3\n\
[WindchestGroup001]\nName=Main\nNumberOfEnclosures=0\n[WindchestGroup002]\nName=Swell box\nNumberOfEnclosures=1\nEnclosure001=1\n\
[WindchestGroup003]\nName=Effects\nNumberOfEnclosures=0\n\
[Enclosure001]\nName=Recit\n[Enclosure002]\nName=Pedal\n\
[Manual000]\nName=Pedal\nNumberOfStops=1\nStop001=1\nNumberOfCouplers=1\nCoupler001=1\n\
[Manual001]\nName=Great\nNumberOfStops=3\nStop001=2\nStop002=3\nStop003=4\nNumberOfSwitches=2\nSwitch001=2\nSwitch002=3\n\
[Manual002]\nName=Swell\nNumberOfStops=1\nStop001=5\nNumberOfTremulants=1\nTremulant001=1\n\
[Stop001]\nName=Subbass 16'\nWindchestGroup=1\n\
[Stop002]\nName=Principal 8'\nFunction=And\nSwitchCount=1\nSwitch001=2\nWindchestGroup=1\n\
[Stop003]\nName=Principal 8' drawknob\nFunction=And\nSwitchCount=2\nSwitch001=2\nSwitch002=5\nWindchestGroup=1\n\
[Stop004]\nName=Bourdon 8'\nFunction=Or\nSwitchCount=1\nSwitch001=3\nWindchestGroup=1\n\
[Stop005]\nName=Bourdon 8'\nFunction=And\nSwitchCount=1\nSwitch001=3\nWindchestGroup=2\n\
[Coupler001]\nName=II/P\nDestinationManual=2\nFunction=And\nSwitchCount=2\nSwitch001=4\nSwitch002=6\n\
[Tremulant001]\nName=Tremolo\nFunction=Not\nSwitch001=1\n\
[Switch001]\nName=Tremolo off\n[Switch002]\nName=Principal 8'\nDispLabelText=Princi- pal 8'\n\
[Switch003]\nName=Bourdon 8'\n[Switch004]\nName=II/P\n[Switch005]\nName=Noises\nDefaultToEngaged=Y\n\
[Switch006]\nName=Wind\nDefaultToEngaged=Y\nFunction=And\nSwitchCount=1\nSwitch001=5\n";

    fn odf() -> Odf {
        Odf::parse(SWITCHED, "s.organ").unwrap()
    }

    fn at(odf: &Odf, section: &str) -> usize {
        odf.elements.iter().position(|e| e.section() == section).unwrap()
    }

    #[test]
    fn a_plain_drawstop_drives_itself() {
        let odf = odf();
        let s = at(&odf, "Stop001");
        assert_eq!(odf.drive(s).unwrap(), Drive { input: s, also_needs: vec![] });
        assert!(odf.is_control(s) && !odf.is_effect(s));
    }

    #[test]
    fn a_stop_follows_its_switch() {
        let odf = odf();
        let (stop, sw) = (at(&odf, "Stop002"), at(&odf, "Switch002"));
        assert_eq!(odf.drive(stop).unwrap().input, sw);
        // the noise follows the same switch and the noises switch: an effect, not a control
        let noise = at(&odf, "Stop003");
        assert!(odf.is_effect(noise) && !odf.is_control(noise));
        assert_eq!(odf.followers(sw), [stop, noise]);
        assert!(odf.names_of(stop).contains(&"Princi- pal 8'"));
        // by name, by its windchest, by its single pipe
        for (from, to) in [
            ("Name=Subbass 16'", "Name=Blower"),
            ("WindchestGroup=1\n[Stop005]", "WindchestGroup=3\n[Stop005]"),
            ("Name=Subbass 16'\n", "Name=Subbass 16'\nNumberOfAccessiblePipes=1\n"),
        ] {
            let odf = Odf::parse(&SWITCHED.replace(from, to), "s.organ").unwrap();
            let n = odf.elements.iter().filter(|e| e.kind == ElementKind::Stop).count();
            let effects = (0..odf.elements.len()).filter(|&i| odf.is_effect(i)).count();
            assert_eq!((n, effects), (5, 2), "{to}");
        }
    }

    #[test]
    fn shared_and_nested_switches() {
        let odf = odf();
        // Bourdon 8' on the great (Or) and on the swell (And) share Switch003
        let (gt, sw, s3) = (at(&odf, "Stop004"), at(&odf, "Stop005"), at(&odf, "Switch003"));
        assert_eq!((odf.drive(gt).unwrap().input, odf.drive(sw).unwrap().input), (s3, s3));
        assert_eq!(odf.followers(s3), [gt, sw]);
        // II/P = Switch004 and Wind (a computed switch following Noises): the one with fewer
        // dependents is the coupler's drawknob; the other must be on
        let c = at(&odf, "Coupler001");
        let d = odf.drive(c).unwrap();
        assert_eq!(d.input, at(&odf, "Switch004"));
        assert_eq!(d.also_needs, [at(&odf, "Switch005")]);
        // an inverted tremulant cannot be bound
        let t = at(&odf, "Tremulant001");
        assert!(matches!(odf.drive(t), Err(Undrivable::Inverted { .. })), "{:?}", odf.drive(t));
    }

    #[test]
    fn enclosures_by_name_and_by_windchest() {
        let odf = odf();
        // "Pedal" by name; "Recit" encloses the swell's only stop
        assert_eq!(odf.manual_enclosures(), [(0, 1, true), (2, 0, false)]);
    }
}
