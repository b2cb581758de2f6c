//! [`PlanError`]: why a plan could not be made. Each variant carries what the one-line message
//! names (the file, the position, the value) and its `Display` says what is wrong and how to fix
//! it. Pure; used on the control thread only.

use std::fmt;
use std::path::PathBuf;

use super::layout::LayoutError;
use crate::midi::Micros;

/// Why a plan could not be made. One line, already naming what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The organ has more divisions or controls than a plan can number.
    OrganTooLarge {
        /// The organ file.
        organ: String,
    },
    /// The console has toggles (one message flips a control) but no General Cancel, and the
    /// organ file does not say that it starts with everything in: its state cannot be known.
    TogglesWithoutCancel {
        /// The organ file.
        organ: String,
        /// How many controls toggle, and the first of them.
        count: usize,
        first: String,
    },
    /// There is no stretch of music to plan.
    NothingToPlay,
    /// A hymn unrolled into more sections than a plan can number.
    TooManySections,
    /// A position (`--from`, `--until`, a fermata) after the score's last bar.
    PastTheEnd {
        /// `--from`, `--until` or `fermata`.
        what: &'static str,
        /// The position as the user wrote it (`bar 9`, `4:3`).
        position: String,
        score: String,
        bars: u32,
    },
    /// A position on a beat its bar does not have.
    NoSuchBeat { what: &'static str, position: String, bar: u32, beats: u8 },
    /// `--until` at or before `--from`.
    EmptyRange,
    /// A registration change at a position the score does not have.
    ChangeNotInScore {
        /// Where the change is written (`file:line:column`).
        location: String,
        /// The change's `at`, as written.
        at: String,
    },
    /// A `--stops` name that is no control or preset of the organ.
    UnknownStop {
        organ: String,
        name: String,
        /// `; did you mean "…"?`, or empty.
        suggestion: String,
    },
    /// The performance would last longer than [`super::MAX_LENGTH`].
    TooLong { score: String, length: Micros },
    /// The layout or `--map` does not fit the score and the organ.
    Layout(Box<LayoutError>),
    /// `--from`/`--until` at a plain bar together with hymn options.
    HymnWithRange,
    /// `--from verse:N` and the like on a score not played as a hymn.
    NotAHymn { what: &'static str, position: String },
    /// `--from`/`--until` naming a section the hymn does not have.
    NoSuchSection {
        what: &'static str,
        position: String,
        /// What the hymn has: `a play-over, 4 verse(s) and an amen`.
        sections: String,
    },
    /// `--from`/`--until` at a bar the section does not play.
    NotInSection { what: &'static str, position: String, first: u32, last: u32 },
    /// A verse count outside 1..=[`crate::registration::hymn::MAX_VERSES`].
    Verses { verses: u16 },
    /// A hymn's amen or play-over bars after the end of the score (the play-over: of a verse).
    BarsPastTheEnd { what: &'static str, first: u32, last: u32, score: String, bars: u32 },
    /// Amen bars that leave no verse before them.
    AmenAtStart { first: u32, last: u32 },
    /// No note before the amen's bars.
    NoVerse { score: String },
    /// Play-over bars without notes.
    EmptyPlayOver { first: u32, last: u32 },
    /// The hymn names an amen file that was not loaded.
    AmenNotLoaded { path: PathBuf },
    /// The amen file cannot be played with the hymn's layout.
    AmenFile { score: String, error: Box<PlanError> },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PlanError as E;
        match self {
            E::OrganTooLarge { organ } => write!(f, "{organ}: too many divisions or controls"),
            E::TogglesWithoutCancel { organ, count, first } => write!(
                f,
                "{organ}: {} toggle{} (the same message draws and puts in, e.g. \"{first}\") and the console has no \
                 General Cancel, so organ cannot know how the console stands and sending the toggles would flip them \
                 from whatever they are; either add the console's General Cancel ([cancel] message = {{ … }}), or, if \
                 the console is known to start with every stop in (switched on just before, nothing drawn by hand), \
                 say so with [cancel] everything_in_at_start = true",
                if *count == 1 { "1 control".to_string() } else { format!("{count} controls") },
                if *count == 1 { "s" } else { "" }
            ),
            E::NothingToPlay => f.write_str("nothing to play"),
            E::TooManySections => f.write_str("too many sections"),
            E::PastTheEnd { what, position, score, bars } => write!(f, "{what} {position}: {score} has {bars} bars"),
            E::NoSuchBeat { what, position, bar, beats } => write!(f, "{what} {position}: bar {bar} has {beats} beats"),
            E::EmptyRange => f.write_str("--until comes before --from: nothing to play"),
            E::ChangeNotInScore { location, at } => {
                write!(f, "{location}: change at {at}: that position is not in the score")
            }
            E::UnknownStop { organ, name, suggestion } => {
                write!(f, "--stops: {organ} has no stop, coupler, tremulant or preset \"{name}\"{suggestion}")
            }
            E::TooLong { score, length } => write!(
                f,
                "{score}: the music would last {:.0} days at this speed; the file's delta times are probably damaged",
                length.as_secs_f64() / 86_400.0
            ),
            E::Layout(e) => e.fmt(f),
            E::HymnWithRange => f.write_str(
                "--from BAR and --until BAR play bars of a score once; they cannot be combined with hymn options (verses, play-over, amen…); inside a hymn write --from verse:N or verse:N:BAR (also play-over, amen)",
            ),
            E::NotAHymn { what, position } => write!(
                f,
                "{what} {position}: the score is not played as a hymn here (no [hymn] section or hymn options); give a bar instead, e.g. {what} 5"
            ),
            E::NoSuchSection { what, position, sections } => {
                write!(f, "{what} {position}: the hymn has {sections}")
            }
            E::NotInSection { what, position, first, last } => {
                write!(f, "{what} {position}: that section plays bars {first}-{last}")
            }
            E::Verses { verses } => {
                write!(f, "verses = {verses}: a hymn has 1 to {} verses", crate::registration::hymn::MAX_VERSES)
            }
            E::BarsPastTheEnd { what, first, last, score, bars } => write!(
                f,
                "{what} {first}-{last}: {score} has {bars} bar(s){}",
                if *what == "play-over" { " in a verse" } else { "" }
            ),
            E::AmenAtStart { first, last } => write!(
                f,
                "amen {first}-{last}: the amen comes after the verse, so it starts at bar 2 or later"
            ),
            E::NoVerse { score } => write!(f, "{score}: no notes before the amen"),
            E::EmptyPlayOver { first, last } => write!(f, "play-over {first}-{last}: no notes in those bars"),
            E::AmenNotLoaded { path } => {
                write!(f, "amen = \"{}\": the amen file was not loaded", path.display())
            }
            E::AmenFile { score, error } => write!(f, "amen file {score}: {error}"),
        }
    }
}

impl std::error::Error for PlanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlanError::AmenFile { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }
}

impl From<Box<LayoutError>> for PlanError {
    fn from(e: Box<LayoutError>) -> Self {
        PlanError::Layout(e)
    }
}

/// A `--tempo` (or an order of service's `tempo`) that is not a percentage from 10 % to 400 %.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TempoError {
    /// Not a number with `%` or `x`.
    NotAPercentage { given: String },
    /// A percentage outside 10 %-400 %.
    OutOfRange { given: String },
}

impl fmt::Display for TempoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TempoError::NotAPercentage { given } => {
                write!(f, "--tempo {given}: write a percentage of the written tempo, e.g. 80% or 110%")
            }
            TempoError::OutOfRange { given } => write!(f, "--tempo {given}: use a percentage between 10% and 400%"),
        }
    }
}

impl std::error::Error for TempoError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages the binary prints, word for word as before the error was typed (tests/
    /// and users' scripts match them).
    #[test]
    fn messages_are_the_established_ones() {
        let cases: Vec<(PlanError, &str)> = vec![
            (PlanError::OrganTooLarge { organ: "o.toml".into() }, "o.toml: too many divisions or controls"),
            (
                PlanError::PastTheEnd { what: "--from", position: "bar 99".into(), score: "x.mid".into(), bars: 16 },
                "--from bar 99: x.mid has 16 bars",
            ),
            (
                PlanError::NoSuchBeat { what: "fermata", position: "2:5".into(), bar: 2, beats: 4 },
                "fermata 2:5: bar 2 has 4 beats",
            ),
            (
                PlanError::TooLong { score: "x.mid".into(), length: Micros(40 * 86_400 * 1_000_000) },
                "x.mid: the music would last 40 days at this speed; the file's delta times are probably damaged",
            ),
            (
                PlanError::BarsPastTheEnd { what: "play-over", first: 3, last: 5, score: "h.mid".into(), bars: 4 },
                "play-over 3-5: h.mid has 4 bar(s) in a verse",
            ),
            (
                PlanError::BarsPastTheEnd { what: "amen", first: 7, last: 9, score: "h.mid".into(), bars: 6 },
                "amen 7-9: h.mid has 6 bar(s)",
            ),
            (
                PlanError::AmenFile {
                    score: "a.mid".into(),
                    error: Box::new(Box::new(LayoutError::EveryPartLeftOut).into()),
                },
                "amen file a.mid: the layout leaves every part out; nothing would be played",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(
            TempoError::OutOfRange { given: "5%".into() }.to_string(),
            "--tempo 5%: use a percentage between 10% and 400%"
        );
    }
}
