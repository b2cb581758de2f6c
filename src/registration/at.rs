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
}
