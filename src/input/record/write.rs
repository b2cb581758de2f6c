//! A take as files: a Standard MIDI File with one track per division that was played (the track
//! named after the division, on its channel, so `organ info` suggests the layout back) and a
//! registration file beside it naming the stops, with `layout` and `organ` set so that
//! `organ play take.mid` needs nothing else.
//!
//! Times are converted exactly: every tick is computed from the note's absolute time in
//! microseconds, rounded once (never by summing rounded deltas), at 5000 ticks per quarter note
//! (100 µs a tick at the default 120 bpm).
//!
//! Files are written to temporary names in the same folder, synced, then linked to their final
//! names, which must not exist yet: nothing is ever overwritten. Runs on an ordinary thread.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use serde::{Deserialize, Serialize};

use super::RecordError;
use super::take::Take;
use crate::midi::{HexBytes, Micros};
use crate::organ::{ControlId, Organ};

/// Ticks per quarter note of a take's MIDI file.
pub const PPQ: u16 = 5000;

/// The tempo and time signature a take is written in, and whether its registration file gives
/// positions in bars (a tempo was given) or in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timebase {
    pub us_per_quarter: u32,
    pub numerator: u8,
    /// The time signature's denominator (2, 4, 8 …).
    pub denominator: u8,
    pub bars: bool,
}

impl Default for Timebase {
    /// 120 bpm in 4/4 (one tick is 100 µs), positions in seconds.
    fn default() -> Self {
        Timebase { us_per_quarter: 500_000, numerator: 4, denominator: 4, bars: false }
    }
}

impl Timebase {
    /// Positions in bars: `bpm` quarter notes a minute in `meter` (e.g. "3/4").
    ///
    /// # Errors
    /// A tempo outside 10-400 bpm or a time signature that is not N/2^k.
    pub fn bars(bpm: f64, meter: Option<&str>) -> Result<Timebase, RecordError> {
        if !(bpm.is_finite() && (10.0..=400.0).contains(&bpm)) {
            return Err(RecordError::Usage(format!(
                "--bpm {bpm}: give the tempo in quarter notes a minute, 10 to 400"
            )));
        }
        let (numerator, denominator) = match meter {
            None => (4, 4),
            Some(m) => parse_meter(m)?,
        };
        Ok(Timebase { us_per_quarter: (60e6 / bpm).round() as u32, numerator, denominator, bars: true })
    }

    /// The tick of an absolute time, rounded once.
    pub fn tick(&self, t: Micros) -> u64 {
        let num = u128::from(t.0) * u128::from(PPQ) * 2 + u128::from(self.us_per_quarter);
        u64::try_from(num / (2 * u128::from(self.us_per_quarter.max(1)))).unwrap_or(u64::MAX)
    }

    /// Where a tick is, as a registration file writes it: "12.3456s", or "5:2.5" in bars.
    pub fn position(&self, tick: u64) -> String {
        if !self.bars {
            // Exact: a tick is a whole number of µs at 120 bpm; otherwise rounded (only bars are
            // written then, but keep this total).
            let us = u128::from(tick) * u128::from(self.us_per_quarter) / u128::from(PPQ);
            return format!("{}s", trim_decimal(&format!("{}.{:06}", us / 1_000_000, us % 1_000_000)));
        }
        let beat_ticks = u64::from(PPQ) * 4 / u64::from(self.denominator.max(1));
        let bar_ticks = beat_ticks * u64::from(self.numerator.max(1));
        let bar = tick / bar_ticks + 1;
        let in_bar = tick % bar_ticks;
        let (beat, frac) = (in_bar / beat_ticks + 1, in_bar % beat_ticks);
        if frac == 0 {
            return if beat == 1 { bar.to_string() } else { format!("{bar}:{beat}") };
        }
        // beat_ticks divides 20000 = 2^5 × 5^4: the fraction is an exact decimal of ≤ 6 digits.
        let millionths = frac * 1_000_000 / beat_ticks;
        format!("{bar}:{}", trim_decimal(&format!("{beat}.{millionths:06}")))
    }
}

fn trim_decimal(s: &str) -> &str {
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s)
}

/// "3/4" → (3, 4).
///
/// # Errors
/// Not N/D with D a power of two up to 32.
pub fn parse_meter(s: &str) -> Result<(u8, u8), RecordError> {
    let bad = || RecordError::Usage(format!("--meter {s}: write a time signature such as 4/4, 3/4 or 6/8"));
    let (n, d) = s.trim().split_once('/').ok_or_else(bad)?;
    let n: u8 = n.trim().parse().map_err(|_| bad())?;
    let d: u8 = d.trim().parse().map_err(|_| bad())?;
    if n == 0 || n > 32 || !d.is_power_of_two() || d > 32 {
        return Err(bad());
    }
    Ok((n, d))
}

/// The layout of a take's MIDI file: the code of each division that was played, in order.
pub fn layout(take: &Take, organ: &Organ) -> String {
    organ.divisions.iter().enumerate().filter(|(d, _)| !take.notes[*d].is_empty()).map(|(_, d)| d.code).collect()
}

/// The name of the track that keeps what the organ definition does not know.
pub const UNRECOGNISED_TRACK: &str = "not recognised by the organ definition (not played back)";

/// The take's MIDI file.
///
/// # Errors
/// midly cannot encode it (cannot happen for what is built here, but is not unwrapped).
pub fn smf_bytes(take: &Take, organ: &Organ, tb: &Timebase, title: &str) -> io::Result<Vec<u8>> {
    let arena = midly::Arena::new();
    let meta = |m: MetaMessage<'static>| TrackEventKind::Meta(m);
    let end = tb.tick(take.length);
    let mut tracks: Vec<Vec<TrackEvent>> = Vec::new();
    let d_pow2 = tb.denominator.max(1).trailing_zeros() as u8;
    tracks.push(track(
        vec![
            (0, 0, TrackEventKind::Meta(MetaMessage::TrackName(arena.add(title.as_bytes())))),
            (0, 0, meta(MetaMessage::Tempo(u24::new(tb.us_per_quarter)))),
            (0, 0, meta(MetaMessage::TimeSignature(tb.numerator, d_pow2, 24, 8))),
        ],
        end,
    ));
    for (d, division) in organ.divisions.iter().enumerate() {
        let notes = &take.notes[d];
        if notes.is_empty() {
            continue;
        }
        let channel = u4::new(division.channel.wire());
        let mut evs = vec![(0, 0, TrackEventKind::Meta(MetaMessage::TrackName(arena.add(division.name.as_bytes()))))];
        for n in notes {
            let (a, b) = (tb.tick(n.start), tb.tick(n.end));
            let key = u7::new(n.key & 0x7F);
            let vel = u7::new(n.velocity.clamp(1, 127));
            // Note-offs sort before note-ons at the same tick: a key released and struck again.
            evs.push((a, 1, TrackEventKind::Midi { channel, message: MidiMessage::NoteOn { key, vel } }));
            evs.push((
                b.max(a + 1),
                0,
                TrackEventKind::Midi { channel, message: MidiMessage::NoteOff { key, vel: u7::new(0) } },
            ));
        }
        tracks.push(track(evs, end));
    }
    if !take.unrecognised.is_empty() {
        let mut evs =
            vec![(0, 0, TrackEventKind::Meta(MetaMessage::TrackName(arena.add(UNRECOGNISED_TRACK.as_bytes()))))];
        for u in &take.unrecognised {
            let text = if u.at < 0 {
                format!("{} ({:.3} s before the first note)", HexBytes(&u.bytes), -u.at as f64 / 1e6)
            } else {
                HexBytes(&u.bytes).to_string()
            };
            let tick = tb.tick(Micros(u.at.max(0) as u64));
            evs.push((tick, 0, TrackEventKind::Meta(MetaMessage::Text(arena.add(text.as_bytes())))));
        }
        tracks.push(track(evs, end));
    }
    let smf = Smf { header: Header { format: Format::Parallel, timing: Timing::Metrical(u15::new(PPQ)) }, tracks };
    let mut out = Vec::new();
    smf.write_std(&mut out)?;
    Ok(out)
}

/// Events at absolute ticks → a track with deltas (sorted by tick, then order), ending at `end`
/// or at its last event.
fn track<'a>(mut evs: Vec<(u64, u8, TrackEventKind<'a>)>, end: u64) -> Vec<TrackEvent<'a>> {
    evs.sort_by_key(|e| (e.0, e.1));
    let mut out = Vec::with_capacity(evs.len() + 1);
    let mut last = 0u64;
    let delta = |t: u64, last: u64| u28::new(u32::try_from(t - last).unwrap_or(u32::MAX).min(0x0FFF_FFFF));
    for (t, _, kind) in evs {
        out.push(TrackEvent { delta: delta(t, last), kind });
        last = t;
    }
    out.push(TrackEvent { delta: delta(end.max(last), last), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    out
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn name_list(organ: &Organ, ids: &[ControlId]) -> String {
    let v: Vec<String> = ids.iter().map(|&i| quoted(&organ.controls[i].name)).collect();
    format!("[{}]", v.join(", "))
}

/// The take's registration file: `organ`, `layout`, then the registration at the first note
/// and every change, by name. `comments` head the file (one line each).
pub fn registration_text(take: &Take, organ: &Organ, tb: &Timebase, organ_ref: &str, comments: &[String]) -> String {
    let mut s = String::new();
    for c in comments {
        let clean: String = c.chars().map(|ch| if crate::text::is_unsafe(ch) { ' ' } else { ch }).collect();
        s.push_str(&format!("# {clean}\n"));
    }
    s.push_str(&format!("organ = {}\n", quoted(organ_ref)));
    s.push_str(&format!("layout = {}\n", quoted(&layout(take, organ))));
    let preset_of = |ids: &[ControlId]| {
        organ.presets.iter().find(|p| {
            let mut a = p.controls.clone();
            a.sort_unstable();
            a.dedup();
            a == ids
        })
    };
    if !take.initial.is_empty() {
        let first = if tb.bars { "1" } else { "0s" };
        let same = preset_of(&take.initial).map(|p| format!("  (= preset {})", p.name)).unwrap_or_default();
        s.push_str(&format!("\n[[change]]   # drawn when the first note sounds{same}\nat = \"{first}\"\n"));
        s.push_str(&format!("on = {}\n", name_list(organ, &take.initial)));
    }
    for c in &take.changes {
        // Never tick 0: that would make it part of the starting registration.
        s.push_str(&format!("\n[[change]]\nat = \"{}\"\n", tb.position(tb.tick(c.at).max(1))));
        if !c.off.is_empty() {
            s.push_str(&format!("off = {}\n", name_list(organ, &c.off)));
        }
        if !c.on.is_empty() {
            s.push_str(&format!("on = {}\n", name_list(organ, &c.on)));
        }
    }
    s
}

/// Calendar date and time of a Unix time in µs, in the local time zone where the platform says
/// (UTC elsewhere): (year, month, day, hour, minute, second).
pub fn local_time(unix_us: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = (unix_us / 1_000_000) as i64;
    #[cfg(unix)]
    {
        let t: libc::time_t = secs as libc::time_t;
        // SAFETY: `tm` is a plain C struct for which all-zero is valid; localtime_r only writes
        // into it and reads `t`, both valid for the call.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        if ok {
            return (
                i64::from(tm.tm_year) + 1900,
                (tm.tm_mon + 1) as u32,
                tm.tm_mday as u32,
                tm.tm_hour as u32,
                tm.tm_min as u32,
                tm.tm_sec as u32,
            );
        }
    }
    // UTC from the days since 1970 (H. Hinnant's civil_from_days).
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, (rem / 3600) as u32, (rem / 60 % 60) as u32, (rem % 60) as u32)
}

/// `2025-01-02 10:30:45`.
pub fn date_time(unix_us: u64) -> String {
    let (y, mo, d, h, mi, s) = local_time(unix_us);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// `take-2025-01-02-103045`: a file name stem with the date and time.
pub fn stem(prefix: &str, unix_us: u64) -> String {
    let (y, mo, d, h, mi, s) = local_time(unix_us);
    format!("{prefix}-{y:04}-{mo:02}-{d:02}-{h:02}{mi:02}{s:02}")
}

/// A file name part made safe: letters, digits, `-`, `_` and `.` kept, the rest `_`.
pub fn safe_name(s: &str) -> String {
    let v: String = s.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let v = v.trim_start_matches('.').to_string();
    if v.is_empty() { "take".to_string() } else { v }
}

/// Writes `files` (extension, bytes) as `<dir>/<stem>.<ext>`, with `stem` the first of
/// `base`, `base-2`, `base-3` … for which none of the files exists. Each is written to a
/// temporary name, synced, and linked to its final name (which fails rather than replace a
/// file); the folder is synced last. Returns the paths written.
///
/// # Errors
/// The folder cannot be written.
pub fn write_new_files(dir: &Path, base: &str, files: &[(&str, &[u8])]) -> io::Result<Vec<PathBuf>> {
    for n in 1..10_000 {
        let stem = if n == 1 { base.to_string() } else { format!("{base}-{n}") };
        let finals: Vec<PathBuf> = files.iter().map(|(ext, _)| dir.join(format!("{stem}.{ext}"))).collect();
        if finals.iter().any(|p| p.symlink_metadata().is_ok()) {
            continue;
        }
        let mut parts = Vec::new();
        for ((_, bytes), fin) in files.iter().zip(&finals) {
            // A new file (O_EXCL, O_NOFOLLOW): never through a link planted at a known name.
            let (mut f, part) = crate::files::create_beside(fin).map_err(|p| io::Error::other(p.to_string()))?;
            f.write_all(bytes)?;
            f.sync_all()?;
            parts.push(part);
        }
        let mut placed = Vec::new();
        let mut taken = false;
        for (part, fin) in parts.iter().zip(&finals) {
            match place(part, fin) {
                Ok(()) => placed.push(fin.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    taken = true; // someone else took the name meanwhile: try the next one
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        for p in &parts {
            let _ = std::fs::remove_file(p);
        }
        if taken {
            for p in &placed {
                let _ = std::fs::remove_file(p);
            }
            continue;
        }
        sync_dir(dir);
        return Ok(finals);
    }
    Err(io::Error::other(format!("{}: no free file name for {base}", dir.display())))
}

/// Gives `part` the name `fin` unless `fin` exists: a hard link (atomic, refuses to replace),
/// or, where the file system has no hard links, a rename after a check.
fn place(part: &Path, fin: &Path) -> io::Result<()> {
    match std::fs::hard_link(part, fin) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if fin.symlink_metadata().is_ok() => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
        Err(_) => std::fs::rename(part, fin),
    }
}

/// Makes a folder's new entries durable (Unix; elsewhere the rename is what the OS gives).
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::super::take::{Note, TakeChange, Unrecognised};
    use super::*;
    use crate::registration::Registration;
    use crate::score;

    fn take(organ: &Organ) -> Take {
        let mut notes = vec![Vec::new(); organ.divisions.len()];
        notes[1].push(Note { start: Micros(0), end: Micros(500_049), key: 60, velocity: 80 });
        notes[1].push(Note { start: Micros(500_049), end: Micros(1_000_000), key: 60, velocity: 90 });
        notes[2].push(Note { start: Micros(250_000), end: Micros(250_010), key: 40, velocity: 1 });
        Take {
            zero: Micros(7),
            length: Micros(1_000_000),
            notes,
            initial: organ
                .preset("mf")
                .unwrap()
                .controls
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            changes: vec![TakeChange {
                at: Micros(750_000),
                off: vec![organ.control("Sw Oboe 8").unwrap()],
                on: vec![organ.control("Gt to Ped").unwrap()],
            }],
            unrecognised: vec![
                Unrecognised { at: -1_500_000, bytes: vec![0xCF, 5].into() },
                Unrecognised { at: 600_000, bytes: vec![0xF0, 0x43, 0x10, 0xF7].into() },
            ],
            held_at_end: 0,
        }
    }

    #[test]
    fn positions_in_seconds_and_bars() {
        let s = Timebase::default();
        assert_eq!(s.tick(Micros(12_345_649)), 123_456);
        assert_eq!(s.tick(Micros(12_345_650)), 123_457);
        assert_eq!(s.position(123_456), "12.3456s");
        assert_eq!(s.position(0), "0s");
        assert_eq!(s.position(10_000), "1s");
        let b = Timebase::bars(60.0, Some("3/4")).unwrap(); // 1 s a beat
        assert_eq!(b.tick(Micros(1_000_000)), 5000);
        assert_eq!(b.position(0), "1");
        assert_eq!(b.position(5000 * 3), "2");
        assert_eq!(b.position(5000 * 4 + 2500), "2:2.5");
        assert_eq!(b.position(5000 * 4 + 1), "2:2.0002");
        let e = Timebase::bars(60.0, Some("6/8")).unwrap();
        assert_eq!(e.position(2500 * 6 + 125), "2:1.05");
        assert!(Timebase::bars(60.0, Some("3/5")).is_err() && Timebase::bars(0.0, None).is_err());
        assert!(parse_meter("x").is_err());
    }

    #[test]
    fn exact_times_over_hours() {
        // Ticks come from absolute times: three hours of notes 333 µs apart stay within half a
        // tick of their time, however many there are.
        let tb = Timebase::default();
        for k in [1u64, 7, 1_000_000, 32_432_432] {
            let t = Micros(k * 333);
            let tick = tb.tick(t);
            assert!((tick as i128 * 100 - t.0 as i128).abs() <= 50, "{k}");
        }
    }

    #[test]
    fn the_midi_file_plays_back_the_take() {
        let organ = Organ::find("st-marys").unwrap();
        let t = take(&organ);
        let bytes = smf_bytes(&t, &organ, &Timebase::default(), "take").unwrap();
        let score = score::load_bytes(&bytes, "take.mid").unwrap();
        assert_eq!(score.parts.len(), 2, "the great and the pedal; the unknown track has no notes");
        assert_eq!(layout(&t, &organ), "GP");
        let great = &score.parts[0];
        assert_eq!(great.name.as_deref(), Some("great"));
        let times: Vec<(u64, u64)> =
            great.notes.iter().map(|n| (score.tempo.micros(n.start).0, score.tempo.micros(n.end).0)).collect();
        assert_eq!(times, vec![(0, 500_000), (500_000, 1_000_000)]);
        // A 10 µs note keeps one tick.
        let p = &score.parts[1].notes[0];
        assert_eq!((score.tempo.micros(p.start).0, p.end - p.start), (250_000, 1));
        assert_eq!(crate::plan::layout::suggest_layout(&score, &organ), "GP", "organ info suggests the layout back");
    }

    #[test]
    fn the_registration_file_reads_back() {
        let organ = Organ::find("st-marys").unwrap();
        let t = take(&organ);
        let text = registration_text(
            &t,
            &organ,
            &Timebase::default(),
            "st-marys",
            &["a take\u{1b}[2J\u{9b}1m\u{202e}x".into()],
        );
        assert!(text.starts_with("# a take [2J 1m x\n"), "no control character or direction override: {text}");
        assert!(text.contains("(= preset mf)"), "{text}");
        assert!(text.contains("at = \"0.75s\"\noff = [\"Sw Oboe 8\"]\non = [\"Gt to Ped\"]\n"), "{text}");
        let reg = Registration::from_toml(&text, "take.toml", &organ).unwrap();
        assert_eq!(reg.layout.as_deref(), Some("GP"));
        assert_eq!(reg.organ.as_deref(), Some("st-marys"));
        assert_eq!(reg.changes.len(), 2);
        assert_eq!(reg.changes[0].on, t.initial);
        let bars = registration_text(&t, &organ, &Timebase::bars(120.0, None).unwrap(), "st-marys", &[]);
        assert!(
            bars.contains("at = \"1\"\n") && bars.contains("at = \"1:2.5\"\n"),
            "0.75 s is beat 2.5 at 120 bpm: {bars}"
        );
        assert!(Registration::from_toml(&bars, "take.toml", &organ).is_ok());
    }

    #[test]
    fn names_carry_the_date_and_files_are_never_replaced() {
        // 2024-02-29 12:34:56 UTC, in whatever zone the machine has: the date part is a date.
        let s = stem("take", 1_709_210_096_000_000);
        assert!(s.starts_with("take-2024-0") && s.len() == "take-2024-02-29-123456".len(), "{s}");
        assert_eq!(safe_name("../a b/é"), "_a_b_é");
        let dir = std::env::temp_dir().join(format!("organ-write-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t.toml"), "mine").unwrap();
        let got = write_new_files(&dir, "t", &[("mid", b"M"), ("toml", b"R")]).unwrap();
        assert_eq!(got, vec![dir.join("t-2.mid"), dir.join("t-2.toml")]);
        assert_eq!(std::fs::read_to_string(dir.join("t.toml")).unwrap(), "mine", "never replaced");
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
