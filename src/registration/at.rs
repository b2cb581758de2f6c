//! Positions in a score, as people write them: a bar, bar:beat, or seconds. Pure; control
//! thread.

use std::fmt;

use super::ValueError;
use crate::midi::Micros;

/// Where a change happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    /// Bar (from 1) and beat (from 1, may have a fraction).
    Bar { bar: u32, beat: f64 },
    /// Seconds from the start of the score at its written tempo.
    Time(Micros),
}

impl At {
    /// Parses `"17"`, `"17:3"`, `"17:3.5"` or `"12.5s"`.
    ///
    /// # Errors
    /// [`ValueError::NotAPosition`] or [`ValueError::CountsFromOne`], naming the expected forms.
    pub fn parse(s: &str) -> Result<At, ValueError> {
        let t = s.trim();
        let bad = || ValueError::NotAPosition(s.to_string());
        if let Some(secs) = t.strip_suffix('s') {
            let v: f64 = secs.trim().parse().map_err(|_| bad())?;
            if !(0.0..1e7).contains(&v) {
                return Err(bad());
            }
            return Ok(At::Time(Micros((v * 1e6).round() as u64)));
        }
        let (bar, beat) = match t.split_once(':') {
            Some((b, beat)) => (b, beat.trim().parse::<f64>().map_err(|_| bad())?),
            None => (t, 1.0),
        };
        let bar: u32 = bar.trim().parse().map_err(|_| bad())?;
        if bar == 0 || !beat.is_finite() || beat < 1.0 {
            return Err(ValueError::CountsFromOne(s.to_string()));
        }
        Ok(At::Bar { bar, beat })
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            At::Bar { bar, beat: 1.0 } => write!(f, "bar {bar}"),
            At::Bar { bar, beat } => write!(f, "bar {bar}:{beat}"),
            At::Time(t) => write!(f, "{}s", t.as_secs_f64()),
        }
    }
}

/// `--from`/`--until` inside an unrolled hymn (`verse:3:5`); [`crate::plan::range`] plans it.
/// A section of an unrolled hymn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HymnSection {
    PlayOver,
    /// Verse number, from 1.
    Verse(u16),
    Amen,
}

/// A position in an unrolled hymn: a section, and a bar (and beat) of its score, or its start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HymnAt {
    pub section: HymnSection,
    /// `At::Bar` only; `None` = the section's start (`--from`) or end (`--until`).
    pub at: Option<At>,
}

impl fmt::Display for HymnAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.section {
            HymnSection::PlayOver => f.write_str("play-over")?,
            HymnSection::Verse(n) => write!(f, "verse:{n}")?,
            HymnSection::Amen => f.write_str("amen")?,
        }
        match self.at {
            Some(At::Bar { bar, beat: 1.0 }) => write!(f, ":{bar}"),
            Some(At::Bar { bar, beat }) => write!(f, ":{bar}:{beat}"),
            _ => Ok(()),
        }
    }
}

impl HymnAt {
    /// Parses `verse:3`, `verse:3:5`, `verse:3:5:2.5`, `play-over[:BAR[:BEAT]]`,
    /// `amen[:BAR[:BEAT]]`. `Ok(None)` when `s` does not name a section (a plain position).
    ///
    /// # Errors
    /// [`ValueError::NotAHymnPosition`]: a section name with a bad verse number or bar.
    pub fn parse(s: &str) -> Result<Option<HymnAt>, ValueError> {
        let t = s.trim().to_ascii_lowercase();
        let mut parts = t.split(':');
        let head = parts.next().unwrap_or("");
        let bad = || ValueError::NotAHymnPosition(s.to_string());
        let section = match head {
            "verse" | "v" => {
                let n: u16 = parts.next().and_then(|n| n.trim().parse().ok()).filter(|&n| n >= 1).ok_or_else(bad)?;
                HymnSection::Verse(n)
            }
            "play-over" | "playover" => HymnSection::PlayOver,
            "amen" => HymnSection::Amen,
            _ => return Ok(None),
        };
        let rest: Vec<&str> = parts.collect();
        let at = match rest.as_slice() {
            [] => None,
            [_] | [_, _] => match At::parse(&rest.join(":")) {
                Ok(a @ At::Bar { .. }) => Some(a),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        Ok(Some(HymnAt { section, at }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        assert_eq!(At::parse("17").unwrap(), At::Bar { bar: 17, beat: 1.0 });
        assert_eq!(At::parse("17:3").unwrap(), At::Bar { bar: 17, beat: 3.0 });
        assert_eq!(At::parse(" 4:2.5 ").unwrap(), At::Bar { bar: 4, beat: 2.5 });
        assert_eq!(At::parse("12.5s").unwrap(), At::Time(Micros(12_500_000)));
        assert!(At::parse("0").is_err());
        assert!(At::parse("3:0").is_err());
        assert!(At::parse("bar 3").is_err());
        assert!(At::parse("-1s").is_err());
    }

    #[test]
    fn positions_in_a_hymn() {
        let p = |s: &str| HymnAt::parse(s).unwrap().unwrap();
        assert_eq!(p("verse:3"), HymnAt { section: HymnSection::Verse(3), at: None });
        assert_eq!(p("Verse:3:5"), HymnAt { section: HymnSection::Verse(3), at: Some(At::Bar { bar: 5, beat: 1.0 }) });
        assert_eq!(p("verse:3:5:2.5").at, Some(At::Bar { bar: 5, beat: 2.5 }));
        assert_eq!(p("play-over").section, HymnSection::PlayOver);
        assert_eq!(p("amen:17").at, Some(At::Bar { bar: 17, beat: 1.0 }));
        assert_eq!(p("verse:3:5").to_string(), "verse:3:5");
        assert_eq!(HymnAt::parse("5").unwrap(), None);
        assert_eq!(HymnAt::parse("3:5").unwrap(), None, "bar:beat stays a plain position");
        assert!(HymnAt::parse("verse").is_err());
        assert!(HymnAt::parse("verse:0").is_err());
        assert!(HymnAt::parse("verse:2:x").is_err());
        assert!(HymnAt::parse("verse:2:1:2:3").is_err());
        assert!(HymnAt::parse("verse:2:12.5s").is_err());
    }
}
