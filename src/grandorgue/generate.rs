//! An organ definition written from a GrandOrgue organ (`organ grandorgue organ`): a starting
//! point that, together with `organ grandorgue config`, makes any GrandOrgue organ playable
//! without learning a single message by hand.
//!
//! - A division per manual: the key and code letter from the manual's name, channels 1, 2, …
//!   in the ODF's manual order, the manual's compass, `grandorgue = "<manual name>"`, and
//!   `expression = { cc = 11 }` where the manual has an enclosure.
//! - Every speaking stop, coupler and tremulant, named as the console labels its drawknob (stops
//!   prefixed with their division's code letter), each with a message of its own: note-on
//!   (velocity 127) draws it, note-off puts it in, notes 0, 1, 2 … in file order on channel 16
//!   (then 15, 14 … for more than 128 controls, skipping the divisions' channels).
//!   Stop noises and other effects are left out, and so is a second element that follows the
//!   same switch as an earlier one (one drawknob in GrandOrgue).
//! - The ODF's generals as commented-out presets.
//!
//! The result is checked before it is returned: it loads as an organ definition, and
//! [`configure`](super::configure) binds every control to its element (where a name would be
//! ambiguous, `grandorgue = "<section>"` names the element exactly). Pure; runs on the control
//! thread.

use std::fmt;
use std::fmt::Write as _;

use super::configure;
use super::odf::{ElementKind, Odf};
use crate::organ::{ConfigError, Organ};

/// Why no organ definition could be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerateError {
    /// More controls than the channels left after the divisions' can carry (128 per channel).
    TooManyControls { controls: usize, channels: usize },
    /// The ODF has no manual.
    NoManuals,
    /// The written definition does not load (a bug in this module), with the error.
    Invalid(ConfigError),
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenerateError::TooManyControls { controls, channels } => write!(
                f,
                "{controls} stops, couplers and tremulants need more than the {channels} channels the divisions leave free (128 notes each)"
            ),
            GenerateError::NoManuals => f.write_str("the organ has no manuals"),
            GenerateError::Invalid(e) => write!(f, "the organ definition written from it does not load: {e}"),
        }
    }
}

impl std::error::Error for GenerateError {}

/// A written organ definition.
#[derive(Debug, Clone)]
pub struct Generated {
    pub toml: String,
    pub divisions: usize,
    /// Stops, couplers and tremulants written.
    pub controls: usize,
    /// ODF elements left out, with why (also in the file as comments).
    pub left_out: Vec<String>,
}

struct Div {
    key: String,
    code: char,
    channel: u8,
    manual: u32,
}

struct Ctl {
    element: usize,
    name: String,
    /// The `grandorgue = "…"` reference: the element's name, or its section where a name is
    /// ambiguous.
    reference: String,
    /// `[[stop]]`, `[[coupler]]` or `[[tremulant]]` lines other than name, on and grandorgue.
    lines: Vec<String>,
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    let mut q = String::from('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(q, "\\u{:04X}", u32::from(c));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn ascii_fold(c: char) -> &'static str {
    match c {
        'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => "a",
        'è' | 'é' | 'ê' | 'ë' => "e",
        'ì' | 'í' | 'î' | 'ï' => "i",
        'ò' | 'ó' | 'ô' | 'ö' | 'õ' | 'ø' => "o",
        'ù' | 'ú' | 'û' | 'ü' => "u",
        'ç' => "c",
        'ñ' => "n",
        'ß' => "ss",
        _ => "",
    }
}

/// A TOML bare key from a manual name: `First Manual` → `first_manual`, `Récit` → `recit`.
fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !ascii_fold(c).is_empty() {
            s.push_str(ascii_fold(c));
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    s.trim_matches('_').to_string()
}

/// The console's label for a drawknob with the console's hyphen breaks joined
/// (`Contre- basse 16'` → `Contrebasse 16'`).
fn label(s: &str) -> String {
    let mut out = String::new();
    let mut join = false;
    for w in s.split_whitespace() {
        if join {
            out.pop();
        } else if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
        join = w.len() > 1 && w.ends_with('-');
    }
    out
}

fn divisions(odf: &Odf) -> Vec<Div> {
    let mut out: Vec<Div> = Vec::new();
    for (i, m) in odf.manuals.iter().enumerate() {
        let mut key = slug(&m.name);
        if key.is_empty() || !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
            key = format!("manual_{}", m.number);
        }
        while out.iter().any(|d| d.key == key) {
            key.push('_');
        }
        let folded: String = m.name.to_lowercase().chars().map(|c| ascii_fold(c).chars().next().unwrap_or(c)).collect();
        let initials = folded.split_whitespace().filter_map(|w| w.chars().next());
        let pedal = (m.number == 0).then_some('p');
        let code = initials
            .chain(pedal)
            .chain(folded.chars())
            .chain('a'..='z')
            .map(|c| c.to_ascii_uppercase())
            .find(|c| c.is_ascii_uppercase() && !out.iter().any(|d| d.code == *c))
            .unwrap_or('X');
        out.push(Div { key, code, channel: i as u8 + 1, manual: m.number });
    }
    out
}

/// The controls to write, in order: each manual's stops, each manual's couplers, the tremulants
/// (the order in which an organ definition lists them, so that note numbers count up).
fn controls(odf: &Odf, divs: &[Div], left_out: &mut Vec<String>) -> Vec<Ctl> {
    let div_of = |m: u32| divs.iter().find(|d| d.manual == m);
    let mut order: Vec<(usize, Option<&Div>)> = Vec::new();
    for kind in [ElementKind::Stop, ElementKind::Coupler] {
        for d in divs {
            let m = odf.manual(d.manual).expect("division from a manual");
            let list = if kind == ElementKind::Stop { &m.stops } else { &m.couplers };
            order.extend(list.iter().filter_map(|n| odf.index_of(kind, *n)).map(|i| (i, Some(d))));
        }
    }
    for (i, e) in odf.elements.iter().enumerate().filter(|(_, e)| e.kind == ElementKind::Tremulant) {
        order.push((i, e.manuals.first().and_then(|m| div_of(*m))));
    }
    let mut out: Vec<Ctl> = Vec::new();
    let mut inputs: Vec<(usize, String)> = Vec::new();
    for (i, d) in order {
        let e = &odf.elements[i];
        let what = format!("{} \"{}\"", e.section(), e.name);
        if !odf.is_control(i) {
            continue; // stop noises and other effects
        }
        let drive = match odf.drive(i) {
            Ok(x) => x,
            Err(why) => {
                left_out.push(format!("{what}: {why}"));
                continue;
            }
        };
        if let Some((_, first)) = inputs.iter().find(|(x, _)| *x == drive.input) {
            left_out.push(format!("{what}: follows the same switch as \"{first}\" (one drawknob in GrandOrgue)"));
            continue;
        }
        let knob = &odf.elements[drive.input];
        let shown = label(knob.label.as_deref().unwrap_or(&knob.name));
        let (name, lines) = match e.kind {
            ElementKind::Stop => {
                let d = d.expect("stops belong to a manual");
                (format!("{} {shown}", d.code), vec![format!("division = {}", quoted(&d.key))])
            }
            ElementKind::Coupler => {
                let d = d.expect("couplers belong to a manual");
                let from = e.destination.and_then(div_of).unwrap_or(d);
                (shown, vec![format!("from = {}", quoted(&from.key)), format!("to = {}", quoted(&d.key))])
            }
            _ => (shown, d.map(|d| format!("division = {}", quoted(&d.key))).into_iter().collect()),
        };
        inputs.push((drive.input, name.clone()));
        out.push(Ctl { element: i, name, reference: e.name.clone(), lines });
    }
    // Unique names: a coupler or tremulant clashing with another name gets its division's
    // code; any name still clashing, its section.
    let norm = |s: &str| crate::text::normalize_name(s);
    for k in 0..out.len() {
        let clash = |out: &[Ctl], k: usize| out[..k].iter().any(|o| norm(&o.name) == norm(&out[k].name));
        if clash(&out, k) && odf.elements[out[k].element].kind != ElementKind::Stop {
            let m = odf.elements[out[k].element].manuals.first().and_then(|m| div_of(*m));
            if let Some(d) = m {
                out[k].name = format!("{} {}", d.code, out[k].name);
            }
        }
        if clash(&out, k) {
            out[k].name = format!("{} ({})", out[k].name, odf.elements[out[k].element].section());
        }
    }
    out
}

/// Writes the organ definition for `odf`.
///
/// # Errors
/// See [`GenerateError`].
pub fn organ_definition(odf: &Odf) -> Result<Generated, GenerateError> {
    if odf.manuals.is_empty() {
        return Err(GenerateError::NoManuals);
    }
    let divs = divisions(odf);
    let mut left_out = Vec::new();
    let mut ctls = controls(odf, &divs, &mut left_out);
    let free: Vec<u8> = (1..=16u8).rev().filter(|c| !divs.iter().any(|d| d.channel == *c)).collect();
    if ctls.len() > free.len() * 128 {
        return Err(GenerateError::TooManyControls { controls: ctls.len(), channels: free.len() });
    }
    let mut text = render(odf, &divs, &ctls, &free, &left_out);
    let mut organ = Organ::from_toml(&text, "(generated)").map_err(GenerateError::Invalid)?;
    // Where a name does not find its element (ambiguous on its manual), name the section.
    let s = configure(&organ, odf);
    if !s.unmatched_controls.is_empty() {
        for (ci, _) in &s.unmatched_controls {
            let k = ctls.iter().position(|c| c.name == organ.controls[*ci].name).expect("generated control");
            ctls[k].reference = odf.elements[ctls[k].element].section();
        }
        text = render(odf, &divs, &ctls, &free, &left_out);
        organ = Organ::from_toml(&text, "(generated)").map_err(GenerateError::Invalid)?;
    }
    Ok(Generated { toml: text, divisions: organ.divisions.len(), controls: organ.controls.len(), left_out })
}

fn render(odf: &Odf, divs: &[Div], ctls: &[Ctl], free: &[u8], left_out: &[String]) -> String {
    let mut t = String::new();
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    let _ = writeln!(t, "# Organ definition for the GrandOrgue organ \"{}\",", one_line(&odf.church_name));
    let _ = writeln!(t, "# written by `organ grandorgue organ` from {}.", one_line(&odf.source));
    t.push_str(
        "# A starting point: rename stops, change channels and messages to your needs, then write\n\
         # GrandOrgue's settings with `organ grandorgue config --organ <this file> --odf <the organ>`.\n\
         #\n\
         # Messages: each division's keys on its own channel; each stop, coupler and tremulant has\n\
         # a note of its own: note-on (velocity 127) draws it, note-off puts it in.\n",
    );
    let _ = writeln!(t, "name = {}\n", quoted(&odf.church_name));
    let enclosures = odf.manual_enclosures();
    for d in divs {
        let m = odf.manual(d.manual).expect("division from a manual");
        let keys = if m.keys == 0 { 61 } else { m.keys };
        let lo = m.first_note.min(116);
        let hi = (u32::from(lo) + keys - 1).clamp(u32::from(lo) + 11, 127);
        let _ = writeln!(t, "[division.{}]", d.key);
        let _ = writeln!(t, "code = \"{}\"\nchannel = {}\ncompass = [{lo}, {hi}]", d.code, d.channel);
        let _ = writeln!(t, "grandorgue = {}", quoted(&m.name));
        if let Some(&(_, ei, _)) = enclosures.iter().find(|x| x.0 == d.manual) {
            let _ = writeln!(
                t,
                "expression = {{ cc = 11 }}   # GrandOrgue's enclosure \"{}\"",
                one_line(&odf.enclosures[ei].name)
            );
        }
        t.push('\n');
    }
    for (k, c) in ctls.iter().enumerate() {
        let e = &odf.elements[c.element];
        let table = match e.kind {
            ElementKind::Coupler => "coupler",
            ElementKind::Tremulant => "tremulant",
            _ => "stop",
        };
        let _ = writeln!(t, "[[{table}]]\nname = {}", quoted(&c.name));
        for l in &c.lines {
            let _ = writeln!(t, "{l}");
        }
        let _ = writeln!(t, "grandorgue = {}", quoted(&c.reference));
        let _ = writeln!(t, "on = {{ note = {}, channel = {} }}\n", k % 128, free[k / 128]);
    }
    for l in left_out {
        let _ = writeln!(t, "# left out: {}", one_line(l));
    }
    presets(&mut t, odf, ctls);
    t
}

/// The generals as commented-out presets, in terms of the controls written.
fn presets(t: &mut String, odf: &Odf, ctls: &[Ctl]) {
    let name_of = |i: usize| -> Option<&str> {
        ctls.iter()
            .find(|c| c.element == i || odf.drive(c.element).is_ok_and(|d| d.input == i))
            .map(|c| c.name.as_str())
    };
    let mut lines = Vec::new();
    for g in &odf.generals {
        let mut drawn: Vec<String> = Vec::new();
        for n in g.draws.iter().filter_map(|&i| name_of(i)).map(quoted) {
            if !drawn.contains(&n) {
                drawn.push(n);
            }
        }
        let label = if g.name.trim() == g.number.to_string() {
            String::new()
        } else {
            format!("   # \"{}\"", g.name.replace(['\n', '\r'], " "))
        };
        lines.push(format!("# \"general {}\" = [{}]{label}", g.number, drawn.join(", ")));
    }
    if !lines.is_empty() {
        t.push_str("\n# The GrandOrgue organ's generals, as presets (uncomment to use them):\n# [preset]\n");
        for l in lines {
            let _ = writeln!(t, "{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grandorgue::{Settings, drive};

    fn round_trip(odf: &str) -> (Generated, Organ, Odf, Settings) {
        let odf = Odf::parse(odf, "t.organ").unwrap();
        let g = organ_definition(&odf).unwrap();
        let organ = Organ::from_toml(&g.toml, "generated.toml").unwrap();
        let s = configure(&organ, &odf);
        (g, organ, odf, s)
    }

    #[test]
    fn plain_drawstops_round_trip() {
        let (g, organ, odf, s) = round_trip(crate::grandorgue::tests::ODF);
        assert!(s.complete(), "{}", s.report(&organ, &odf));
        assert!(s.unused_elements.is_empty() && s.unused_manuals.is_empty(), "{}", s.report(&organ, &odf));
        assert_eq!((g.divisions, g.controls), (3, 8));
        let names: Vec<&str> = organ.controls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "P Subbass 16'",
                "P Posaune 16'",
                "G Principal 8'",
                "G Octave 4'",
                "S Gedackt 8'",
                "II/P",
                "Swell Super",
                "Tremolo"
            ]
        );
        let codes: Vec<(String, char, u8)> =
            organ.divisions.iter().map(|d| (d.name.clone(), d.code, d.channel.user())).collect();
        assert_eq!(codes, [("pedal".into(), 'P', 1), ("great_organ".into(), 'G', 2), ("swell".into(), 'S', 3)]);
        // every control its own note on channel 16, drawn by note-on, put in by note-off
        let c = &organ.controls[5];
        assert_eq!((c.on[0].as_bytes(), c.off[0].as_bytes()), (&[0x9F, 5, 127][..], &[0x8F, 5, 0][..]));
        assert!(g.toml.contains("[[coupler]]\nname = \"II/P\"\nfrom = \"swell\"\nto = \"pedal\"\ngrandorgue = \"II/P\"\non = { note = 5, channel = 16 }\n"), "{}", g.toml);
        assert_eq!(c.kind, crate::organ::ControlKind::Coupler { from: 2, to: 0 });
    }

    #[test]
    fn switched_organs_round_trip_and_leave_out_what_cannot_be_drawn() {
        let (g, organ, odf, s) = round_trip(drive::tests::SWITCHED);
        assert!(s.complete(), "{}", s.report(&organ, &odf));
        let names: Vec<&str> = organ.controls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["P Subbass 16'", "G Principal 8'", "G Bourdon 8'", "II/P"]);
        // the drawknob's console label, hyphen break joined
        assert_eq!(crate::text::normalize_name(&label("Princi- pal 8'")), "principal 8'");
        // the swell's Bourdon follows the great's switch; the tremulant is inverted
        assert_eq!(g.left_out.len(), 2, "{:?}", g.left_out);
        assert!(g.left_out[0].contains("Stop005") && g.left_out[0].contains("same switch as \"G Bourdon 8'\""));
        assert!(g.left_out[1].contains("Tremulant001") && g.left_out[1].contains("Function=Not"));
        assert!(g.toml.contains("# left out: Stop005"), "{}", g.toml);
        let unused: Vec<String> = s.unused_elements.iter().map(|&i| odf.elements[i].section()).collect();
        assert_eq!(unused, ["Tremulant001"]);
        // enclosures: the pedal's by name, the swell's by its windchest
        let exp: Vec<(&str, Option<u8>)> =
            organ.divisions.iter().map(|d| (d.name.as_str(), d.expression.map(|x| x.cc))).collect();
        assert_eq!(exp, [("pedal", Some(11)), ("great", None), ("swell", Some(11))]);
        assert_eq!(s.enclosures.len(), 2);
    }

    #[test]
    fn ambiguous_names_are_named_by_section_and_names_kept_unique() {
        let odf = crate::grandorgue::tests::ODF
            .replace("[Stop003]\nName=Octave 4'", "[Stop003]\nName=Principal 8'")
            .replace("[Tremulant001]\nName=Tremolo", "[Tremulant001]\nName=II/P");
        let (g, organ, odf, s) = round_trip(&odf);
        assert!(s.complete(), "{}\n{}", s.report(&organ, &odf), g.toml);
        let names: Vec<&str> = organ.controls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names[2..4], ["G Principal 8'", "G Principal 8' (Stop003)"]);
        assert!(names.contains(&"S II/P"), "{names:?}");
        assert!(g.toml.contains("grandorgue = \"Stop003\""), "{}", g.toml);
    }

    #[test]
    fn generals_become_commented_presets() {
        let odf = crate::grandorgue::tests::ODF.replace("[Organ]\n", "[Organ]\nNumberOfGenerals=1\n")
            + "[General001]\nName=Tutti\nNumberOfStops=2\nStopManual001=1\nStopNumber001=2\nStopManual002=1\nStopNumber002=-1\n\
NumberOfCouplers=1\nCouplerManual001=0\nCouplerNumber001=1\n";
        let (g, ..) = round_trip(&odf);
        assert!(
            g.toml.contains("# [preset]\n# \"general 1\" = [\"G Octave 4'\", \"II/P\"]   # \"Tutti\"\n"),
            "{}",
            g.toml
        );
    }

    #[test]
    fn strings_and_keys_are_safe() {
        assert_eq!(quoted("a \"b\" \\ c\u{1b}[2J"), "\"a \\\"b\\\" \\\\ c\\u001B[2J\"");
        assert_eq!(slug("Récit expressif"), "recit_expressif");
        assert_eq!(slug("  II. Manual "), "ii_manual");
        let odf = crate::grandorgue::tests::ODF.replace("Name=Great Organ", "Name=\u{1b}[31m\"Great\"");
        let (g, organ, ..) = round_trip(&odf);
        assert_eq!(organ.divisions[1].grandorgue.as_deref(), Some("\u{1b}[31m\"Great\""));
        assert!(!g.toml.contains('\u{1b}'));
    }
}
