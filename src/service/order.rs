//! Orders of service (`scores/services/<name>.toml`): the organ, a default output, and the items
//! played during the service, each a score with its hymn options (overriding the score's own
//! `[hymn]`), tempo, transposition, registration preset and a note for the operator.
//!
//! ```toml
//! title = "Sunday Eucharist"        # optional
//! organ = "st-marys"                # optional: else each score's registration file names it
//! output = "port:WIDI Bud Pro"      # optional: else the organ's; --to overrides both
//!
//! [[item]]
//! title = "Opening hymn: Guide me, O thou great Redeemer"
//! score = "../hymn-cwm-rhondda.mid" # relative to this file
//! registration = "…"                # optional: else the .toml beside the score
//! verses = 3                        # hymn options, as in [hymn]: verses, play_over, gap,
//! play_over = "11-14"               # amen, fermatas, fermata
//! tempo = "95%"                     # or bpm = 88
//! transpose = -1
//! preset = "mf"                     # every verse starts from this preset
//! note = "Start when the procession is at the back of the church"
//! ```
//!
//! Loading is pure apart from reading the files; planning an item happens when it is started
//! (with the operator's live changes), on the control thread.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::app::{Error, Status};
use crate::files::{FileKind, read_user_text};
use crate::inputs::{self, FindError, Inputs, RegistrationChoice};
use crate::organ::{Ctx, Organ, check_default_output};
use crate::plan::{PlanOptions, Speed, Timeline};
use crate::registration::hymn::{self, Amen, Bars, FermataToml, HymnOptions, HymnToml};
use crate::registration::{HymnAt, HymnSection, Registration};
use crate::score::{self, Score};
use crate::text::push_line;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderFile {
    title: Option<String>,
    organ: Option<Spanned<String>>,
    output: Option<Spanned<String>>,
    #[serde(default)]
    item: Vec<ItemFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemFile {
    title: Option<String>,
    score: Spanned<String>,
    registration: Option<Spanned<String>>,
    verses: Option<Spanned<i64>>,
    play_over: Option<Spanned<String>>,
    gap: Option<Spanned<String>>,
    amen: Option<Spanned<String>>,
    fermatas: Option<Vec<Spanned<String>>>,
    fermata: Option<Spanned<FermataToml>>,
    tempo: Option<Spanned<String>>,
    bpm: Option<Spanned<f64>>,
    transpose: Option<Spanned<i64>>,
    preset: Option<Spanned<String>>,
    note: Option<String>,
}

/// One item of the service, loaded and checked (planned when it is played).
pub struct Item {
    pub title: String,
    pub note: Option<String>,
    pub score: Score,
    pub organ: Organ,
    pub registration: Option<Registration>,
    /// The score's `[hymn]` with the item's options on top.
    pub hymn: HymnOptions,
    pub amen: Option<Score>,
    pub speed: Speed,
    pub transpose: i32,
    /// How long it lasts as written (planned once at load), at its own tempo.
    pub duration: crate::midi::Micros,
}

/// A loaded order of service.
pub struct Order {
    pub title: String,
    pub source: String,
    /// The default output (`output = "…"`), before the organ's.
    pub output: Option<String>,
    pub items: Vec<Item>,
}

impl Item {
    /// Plans the item with the operator's changes: `transpose` semitones, `preset` for every
    /// verse, and per-verse presets (verse number, preset index).
    ///
    /// # Errors
    /// As [`inputs::plan`].
    pub fn plan(
        &self,
        transpose: i32,
        preset: Option<usize>,
        verse_presets: &[(u16, usize)],
    ) -> Result<Timeline, Error> {
        self.plan_from(transpose, preset, verse_presets, None)
    }

    /// As [`Item::plan`], starting at verse `first_verse` (a hymn resumed; `None`: from the
    /// beginning, with its play-over).
    ///
    /// # Errors
    /// As [`inputs::plan`].
    pub fn plan_from(
        &self,
        transpose: i32,
        preset: Option<usize>,
        verse_presets: &[(u16, usize)],
        first_verse: Option<u16>,
    ) -> Result<Timeline, Error> {
        let mut hymn = self.hymn.clone();
        if preset.is_some() {
            hymn.preset = preset;
        }
        for &(v, p) in verse_presets {
            hymn.set_verse_preset(v, p);
        }
        let inputs = Inputs {
            score: self.score.clone(),
            organ: self.organ.clone(),
            registration: self.registration.clone(),
            options: PlanOptions {
                speed: self.speed,
                transpose,
                // Resumed: verse N with its breath, fermatas and registration, no play-over.
                hymn_from: first_verse.map(|v| HymnAt { section: HymnSection::Verse(v), at: None }),
                ..PlanOptions::default()
            },
            hymn,
            amen: self.amen.clone(),
            notes: Vec::new(),
        };
        Ok(inputs::plan(&inputs)?)
    }

    /// How many verses it has (0 when it is played once, as a piece).
    pub fn verses(&self) -> u16 {
        if self.hymn.is_empty() { 0 } else { self.hymn.verses.unwrap_or(1) }
    }

    /// What the item is, in a few words: "hymn, 3 verses, play-over 11-14" or "piece".
    pub fn summary(&self) -> String {
        if self.hymn.is_empty() {
            return "played once".into();
        }
        let verses = self.hymn.verses.unwrap_or(1);
        let mut s = format!("{verses} verse{}", if verses == 1 { "" } else { "s" });
        match self.hymn.play_over {
            Some(Bars::All) => s.push_str(", play-over: all"),
            Some(Bars::Range(a, b)) => s.push_str(&format!(", play-over {a}-{b}")),
            _ => {}
        }
        match &self.hymn.amen {
            Some(Amen::Bars(..)) | Some(Amen::File(_)) => s.push_str(", amen"),
            _ => {}
        }
        s
    }
}

/// Reads and checks an order of service; every score, registration and organ is loaded now, so
/// a typo shows before the service rather than during it. `organ_override` is `--organ`.
///
/// # Errors
/// Unreadable files, TOML errors (file:line:column), unknown presets, unloadable scores.
pub fn load(path: &Path, organ_override: Option<&str>) -> Result<Order, Error> {
    let source = path.display().to_string();
    let text = read_user_text(path, FileKind::Order).map_err(|e| Error::Io(e.to_string()))?;
    let ctx = Ctx { text: &text, file: &source };
    if let Some(e) = another_kind_of_file(&text, &source) {
        return Err(e);
    }
    let f: OrderFile = toml::from_str(&text).map_err(|e| Error::Config(ctx.toml_err(&e)))?;
    if let Some(o) = &f.output {
        check_default_output(&ctx, o)?;
    }
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    if f.item.is_empty() {
        return Err(Error::Usage(format!("{source}: the order of service has no [[item]]")));
    }
    let mut items = Vec::new();
    let organ_name = organ_override.or(f.organ.as_ref().map(|o| o.get_ref().as_str()));
    for it in f.item {
        items.push(load_item(&ctx, &dir, it, organ_name)?);
    }
    Ok(Order {
        title: f.title.clone().unwrap_or_else(|| {
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| source.clone())
        }),
        source,
        output: f.output.map(Spanned::into_inner),
        items,
    })
}

/// A registration file or an organ definition given where an order of service is expected
/// (`organ check FILE.toml`, `organ service FILE.toml`): what it is and how to use it, instead
/// of the keys an order of service does not have.
fn another_kind_of_file(text: &str, source: &str) -> Option<Error> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let has = |keys: &[&str]| keys.iter().any(|k| table.contains_key(*k));
    if has(&["item"]) {
        return None;
    }
    if has(&["division", "stop", "coupler", "tremulant"]) {
        return Some(Error::Usage(format!(
            "{source} is an organ definition, not an order of service: check it with a score, e.g. \
             organ check scores/bwv643.mid --organ {source}"
        )));
    }
    if has(&["change", "layout", "hymn", "verse", "map"]) {
        return Some(Error::Usage(format!(
            "{source} is a registration file, not an order of service: check it with the score it belongs to, \
             organ check SCORE.mid --registration {source}"
        )));
    }
    None
}

fn load_item(ctx: &Ctx, dir: &Path, it: ItemFile, organ_name: Option<&str>) -> Result<Item, Error> {
    let cfg = |span: std::ops::Range<usize>, m: String| Error::Config(ctx.err(span, m));
    let score_path = dir.join(it.score.get_ref());
    let score = score::load_file(&score_path).map_err(|e| cfg(it.score.span(), e.to_string()))?;
    let reg_path = it.registration.as_ref().map(|r| dir.join(r.get_ref()));
    let choice = reg_path.as_deref().map_or(RegistrationChoice::Beside, RegistrationChoice::File);
    let found = inputs::find(&score_path, choice, organ_name).map_err(|e| match e {
        FindError::Read { path, error } => Error::Io(format!("{}: cannot read: {error}", path.display())),
        FindError::NoOrgan => cfg(
            it.score.span(),
            "no organ: add organ = \"NAME\" at the top of the order of service (or in the score's registration file)"
                .into(),
        ),
        FindError::Config(e) => Error::Config(e),
    })?;
    // The score's own hymn options (an amen file there is found beside the registration)…
    let base = found.file_hymn();
    let (organ, registration) = (found.organ, found.registration);
    // …and the item's on top (an amen file here is found beside the order of service).
    let keys = HymnToml {
        verses: it.verses,
        play_over: it.play_over,
        gap: it.gap,
        amen: it.amen,
        fermatas: it.fermatas,
        fermata: it.fermata,
    };
    let mut over = hymn::check_toml(ctx, &keys, &[], &organ)?.amen_beside(dir);
    over.preset = it.preset.as_ref().map(|p| crate::registration::preset_id(ctx, &organ, p)).transpose()?;
    let hymn = base.overridden_by(&over);
    let amen = inputs::load_amen(&hymn)?;
    let speed = inputs::speed(it.tempo.as_ref().map(|t| t.get_ref().as_str()), it.bpm.as_ref().map(|b| *b.get_ref()))
        .map_err(|e| {
        // Where it went wrong: the bpm when both or it are given, else the tempo.
        let span = match (&e, &it.tempo, &it.bpm) {
            (inputs::SettingError::Tempo(_), Some(t), _) => t.span(),
            (_, _, Some(b)) => b.span(),
            (_, Some(t), None) => t.span(),
            (_, None, None) => it.score.span(),
        };
        cfg(span, e.in_file())
    })?;
    let transpose = match &it.transpose {
        Some(t) => inputs::transpose(*t.get_ref()).map_err(|e| cfg(t.span(), e.in_file()))?,
        None => 0,
    };
    let item = Item {
        title: it.title.clone().unwrap_or_else(|| score.name.clone()),
        note: it.note.clone(),
        score,
        organ,
        registration,
        hymn,
        amen,
        speed,
        transpose,
        duration: crate::midi::Micros::ZERO,
    };
    // Plan it once now, so that a bad option shows before the service.
    let planned =
        item.plan(item.transpose, None, &[]).map_err(|e| cfg(it.score.span(), format!("{}: {e}", item.title)))?;
    Ok(Item { duration: planned.duration, ..item })
}

/// `organ check ORDER.toml`: every item of an order of service planned as `organ service` plays
/// it, with its warnings (the item's number before each). `organ` is `--organ`.
///
/// # Errors
/// As [`load`], and an item that cannot be planned.
pub fn cmd_check(path: &Path, organ: Option<&str>, deny_warnings: bool) -> Result<Status, Error> {
    let order = load(path, organ)?;
    // Every line escaped on its own (titles, notes and names come from files).
    let mut out = String::new();
    push_line(&mut out, &format!("{} ({}): {} item(s)", order.title, order.source, order.items.len()));
    let mut count = 0;
    for (i, item) in order.items.iter().enumerate() {
        let t = item.plan(item.transpose, None, &[]).map_err(|e| Error::Other(format!("{}: {e}", item.title)))?;
        push_line(
            &mut out,
            &format!(
                "{}. {}: {} on {} ({}), {} messages, {} long",
                i + 1,
                item.title,
                item.score.name,
                item.organ.name,
                item.summary(),
                t.events.len(),
                t.duration
            ),
        );
        for n in t.warnings.iter().filter(|w| w.kind.is_note()) {
            push_line(&mut out, &format!("note: {}. {n}", i + 1));
        }
        let warnings = crate::app::all_warnings(&item.score, &t);
        for w in &warnings {
            push_line(&mut out, &format!("warning: {}. {w}", i + 1));
        }
        count += warnings.len();
    }
    push_line(
        &mut out,
        &if count == 0 { "ok: no problems found".to_string() } else { format!("ok with {count} warning(s)") },
    );
    crate::app::write_out(|o| o.write_all(out.as_bytes()))?;
    Ok(if deny_warnings && count > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(name: &str, text: &str) -> Result<(), Error> {
        let dir = std::env::temp_dir().join(format!("organ-unit-order-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = dir.join("order.toml");
        std::fs::write(&path, text.replace("ROOT", &root.display().to_string())).unwrap();
        load(&path, None).map(|_| ())
    }

    #[test]
    fn the_shipped_order_of_service_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let o = load(&root.join("scores/services/sunday.toml"), None).unwrap();
        assert_eq!(o.title, "Sunday Eucharist");
        assert_eq!(o.items.len(), 4);
        let titles: Vec<&str> = o.items.iter().map(|i| i.title.as_str()).collect();
        assert!(titles[0].starts_with("Entrance hymn"));
        // Item options override the score's [hymn]: CWM RHONDDA's file says play_over 11-14.
        assert_eq!(o.items[0].hymn.play_over, Some(Bars::Range(13, 14)));
        assert_eq!(o.items[0].hymn.verses, Some(3));
        assert_eq!(o.items[1].hymn.fermata, Some(hymn::Fermata { hold: None, wait: true }));
        assert_eq!(o.items[1].speed, Speed::Percent(130.0));
        assert!(o.items[2].hymn.is_empty(), "Old Hundredth is played once");
        assert_eq!(o.items[3].transpose, 1);
        let full = o.items[3].organ.presets.iter().position(|p| p.name == "full");
        assert_eq!(o.items[3].hymn.preset, full);
        assert_eq!(o.items[0].summary(), "3 verses, play-over 13-14");
        assert_eq!(o.items[2].summary(), "played once");
    }

    #[test]
    fn mistakes_are_reported_with_file_line_and_column() {
        let head = "organ = \"st-marys\"\n[[item]]\nscore = \"ROOT/scores/hymn-cwm-rhondda.mid\"\n";
        let e = load_text("preset", &format!("{head}preset = \"fff\"\n")).unwrap_err().to_string();
        assert!(e.contains("order.toml:4:") && e.contains("unknown preset \"fff\""), "{e}");
        let e = load_text("key", &format!("{head}verse = 2\n")).unwrap_err().to_string();
        assert!(e.contains("order.toml:4:") && e.contains("verse"), "{e}");
        let e = load_text("bars", &format!("{head}play_over = \"13-16\"\n")).unwrap_err().to_string();
        assert!(e.contains("order.toml:3:") && e.contains("play-over 13-16"), "planned up front: {e}");
        let e =
            load_text("score", "organ = \"st-marys\"\n[[item]]\nscore = \"missing.mid\"\n").unwrap_err().to_string();
        assert!(e.contains("order.toml:3:") && e.contains("missing.mid"), "{e}");
        let e = load_text("empty", "organ = \"st-marys\"\n").unwrap_err().to_string();
        assert!(e.contains("no [[item]]"), "{e}");
        let e = load_text("both", &format!("{head}tempo = \"90%\"\nbpm = 80\n")).unwrap_err().to_string();
        assert!(e.contains("order.toml:5:") && e.contains("not both"), "{e}");
    }
}
