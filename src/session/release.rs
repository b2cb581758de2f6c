//! Whether the release reached each output, and how to say so: one verdict for every frontend
//! (`organ play`'s last lines, `organ service`'s closing lines).
//!
//! "every key released" is said only when every output took the release. An output it may not
//! have reached is [`Unreleased`], with why: it failed (and got nothing more), the engine's
//! release after an internal error was cut short (every output), messages to it were dropped
//! (that output only), the engine did not stop in time, a wireless link was still down at the end.
//! The panic hook's line is decided here too ([`keys_verdict`]), from what the engine published. A `file:` record is no instrument: one
//! the release did not reach is an incomplete record, and nothing sounds from it; an instrument
//! is "KEYS MAY STILL SOUND", with what to do.
//!
//! Pure; control thread only.

use super::{Ending, Finished};
use crate::engine::End;
use crate::text::shown;

/// An output that the release may not have reached, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreleased {
    pub output: String,
    /// Why, in words: "it failed while \"Hymn\" played (…), so the release did not reach it".
    pub why: String,
    /// A `file:` record: nothing sounds from it; what is missing is its end.
    pub record: bool,
}

/// What became of a performance's release on one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// It took the release.
    Took,
    /// A link was down when the engine released: the output itself releases when the link comes
    /// back, and says at the end if it never did ([`Finished::unreleased`]).
    Pending,
    /// It may not have.
    Missed(Unreleased),
}

impl Ending {
    /// What became of the release on each output this performance played to, in order.
    pub fn releases(&self) -> Vec<(String, Release)> {
        let title = shown(&self.title);
        self.outputs
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let record = self.records.contains(name);
                let failed_first = self.failed_output.as_ref() == Some(name);
                let why = if self.failed_outputs.contains(name) || failed_first {
                    let error = match self.end {
                        End::OutputFailed { error, .. } if failed_first => format!(" ({error})"),
                        _ => String::new(),
                    };
                    Some(match record {
                        true => format!("it failed while \"{title}\" played{error}, so it ends there, without the release"),
                        false => format!("it failed while \"{title}\" played{error}, so the release did not reach it"),
                    })
                } else if self.release_cut {
                    Some(format!(
                        "the engine stopped on an internal error while \"{title}\" played, and its release was cut short{}",
                        if record { ", so the record may lack it" } else { "" }
                    ))
                } else if let Some(&n) = self.dropped_by.get(k).filter(|&&n| n > 0) {
                    Some(format!(
                        "{n} message(s) to it could not be delivered while \"{title}\" played (a note-off among them leaves a key down)"
                    ))
                } else {
                    None
                };
                let release = match why {
                    Some(why) => Release::Missed(Unreleased { output: name.clone(), why, record }),
                    None if self.link_down_at_end => Release::Pending,
                    None => Release::Took,
                };
                (name.clone(), release)
            })
            .collect()
    }

    /// The outputs this performance's release may not have reached (see [`Ending::releases`]).
    pub fn unreleased(&self) -> Vec<Unreleased> {
        self.releases()
            .into_iter()
            .filter_map(|(_, r)| match r {
                Release::Missed(u) => Some(u),
                _ => None,
            })
            .collect()
    }
}

impl Finished {
    /// The outputs that finishing found the release may not have reached: the engine still
    /// running, a wireless link still down at the end.
    pub fn unreleased(&self) -> Vec<Unreleased> {
        let mut v = Vec::new();
        for n in self.engine_running.iter().flatten() {
            let record = self.records.contains(n);
            let why = match record {
                true => "the engine did not stop in time, so the record may lack the release",
                false => "the engine did not stop in time, so the release may not have been sent",
            };
            v.push(Unreleased { output: n.clone(), why: why.into(), record });
        }
        for n in &self.may_sound {
            v.push(Unreleased {
                output: n.clone(),
                why: "its link was still down at the end, so the release did not arrive".into(),
                record: false,
            });
        }
        v
    }
}

/// Adds `u` to `list`, in place of what was said of the same output before (the last word on
/// an output is the one that counts).
pub fn note(list: &mut Vec<Unreleased>, u: Unreleased) {
    list.retain(|x| x.output != u.output);
    list.push(u);
}

/// The verdict over `outputs` outputs of which `unsure` may lack the release: `every key
/// released`; or `KEYS MAY STILL SOUND on A, B`, `the record file:X is incomplete`, and `every
/// other output took the release` when some did.
pub fn verdict(unsure: &[Unreleased], outputs: usize) -> String {
    if unsure.is_empty() {
        return "every key released".into();
    }
    let names = |record: bool| -> Vec<String> {
        unsure.iter().filter(|u| u.record == record).map(|u| shown(&u.output).into_owned()).collect()
    };
    let (sounding, records) = (names(false), names(true));
    let mut parts = Vec::new();
    if !sounding.is_empty() {
        parts.push(format!("KEYS MAY STILL SOUND on {}", sounding.join(", ")));
    }
    match records.len() {
        0 => {}
        1 => parts.push(format!("the record {} is incomplete", records[0])),
        _ => parts.push(format!("the records {} are incomplete", records.join(", "))),
    }
    if unsure.len() < outputs {
        parts.push("every other output took the release".into());
    }
    parts.join("; ")
}

/// What the panic hook can say of the keys, from what the engine published: `released`, it
/// finished its release (within the hook's wait); `failed`, the outputs that failed (bits, in
/// its order); `cut`, its release after an internal error was cut short; `dropped`, the outputs
/// to which messages could not be delivered (bits, as `failed`); `link_down`, a link was down as
/// it released. "every key released" only
/// when none of that leaves a doubt; otherwise which outputs may still sound, and what to do.
/// A failed `file:` record is said to be incomplete, not sounding.
pub(crate) fn keys_verdict(
    outputs: &[(String, bool)],
    released: bool,
    failed: u64,
    cut: bool,
    dropped: u64,
    link_down: bool,
) -> String {
    let all_in_doubt = !released || cut || link_down;
    let unsure: Vec<Unreleased> = outputs
        .iter()
        .enumerate()
        .filter(|(i, _)| all_in_doubt || (failed | dropped) & (1 << i) != 0)
        .map(|(_, (n, record))| Unreleased { output: n.clone(), why: String::new(), record: *record })
        .collect();
    let verdict = verdict(&unsure, outputs.len());
    match unsure.iter().find(|u| !u.record) {
        None => verdict,
        Some(u) => format!(
            "{verdict}{}: press the organ's General Cancel, or run organ panic --to {}",
            if released { "" } else { " (the release was not confirmed in time)" },
            shown(&u.output)
        ),
    }
}

/// The line for one output the release may not have reached: why, and what to do (an
/// instrument), or that nothing sounds from it (a record). Starts with `organ: NAME:`.
pub fn advice(u: &Unreleased) -> String {
    let n = shown(&u.output);
    let why = shown(&u.why);
    match u.record {
        true => format!(
            "organ: {n}: {why}: the record is incomplete; nothing sounds from a file, so no key is left down by it"
        ),
        false => format!(
            "organ: {n}: {why}: press the organ's General Cancel or switch the organ off and on (or, once it is back, run organ panic --to {n})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputError, OutputErrorKind};
    use std::time::Duration;

    fn ending(end: End, outputs: &[&str]) -> Ending {
        Ending {
            end,
            title: "One".into(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            failed_output: None,
            failed_outputs: Vec::new(),
            records: Vec::new(),
            release_cut: false,
            sent: 10,
            dropped: 0,
            dropped_by: vec![0; outputs.len()],
            stats: crate::engine::LatenessStats::new(),
            first_sent: None,
            link_down_at_end: false,
            held_up: Duration::ZERO,
            cost: Default::default(),
            wake: None,
            awake: Default::default(),
        }
    }

    const GONE: OutputError = OutputError { kind: OutputErrorKind::Disconnected, detail: "gone" };

    #[test]
    fn released_everywhere_only_when_no_output_is_in_doubt() {
        let e = ending(End::Stopped, &["jack", "file:a.mid"]);
        assert!(e.releases().iter().all(|(_, r)| *r == Release::Took));
        assert_eq!(verdict(&e.unreleased(), 2), "every key released");
        // An internal error whose release ran to its end: released too.
        assert_eq!(verdict(&ending(End::Panicked, &["jack"]).unreleased(), 1), "every key released");
        // A link down at the end: up to the output, at its finish.
        let mut e = ending(End::Finished, &["ble:WIDI"]);
        e.link_down_at_end = true;
        assert_eq!(e.releases()[0].1, Release::Pending);
        let f = Finished { may_sound: vec!["ble:WIDI".into()], ..Default::default() };
        let u = f.unreleased();
        assert_eq!(verdict(&u, 1), "KEYS MAY STILL SOUND on ble:WIDI");
        assert!(advice(&u[0]).contains("its link was still down at the end"), "{u:?}");
    }

    #[test]
    fn a_failed_instrument_may_sound_and_a_failed_record_is_incomplete() {
        let mut e = ending(End::OutputFailed { output: 0, error: GONE }, &["jack:x", "file:r.mid", "null"]);
        e.failed_output = Some("jack:x".into());
        e.failed_outputs = vec!["jack:x".into()];
        e.records = vec!["file:r.mid".into()];
        let u = e.unreleased();
        assert_eq!(verdict(&u, 3), "KEYS MAY STILL SOUND on jack:x; every other output took the release");
        assert_eq!(
            advice(&u[0]),
            "organ: jack:x: it failed while \"One\" played (disconnected: gone), so the release did not reach \
             it: press the organ's General Cancel or switch the organ off and on (or, once it is back, run organ \
             panic --to jack:x)"
        );
        // The record failing instead (the first failure), and the instrument after it.
        e.failed_output = Some("file:r.mid".into());
        e.failed_outputs = vec!["file:r.mid".into()];
        let u = e.unreleased();
        assert_eq!(verdict(&u, 3), "the record file:r.mid is incomplete; every other output took the release");
        assert!(!verdict(&u, 3).contains("KEYS MAY STILL SOUND"));
        assert_eq!(
            advice(&u[0]),
            "organ: file:r.mid: it failed while \"One\" played (disconnected: gone), so it ends there, \
             without the release: the record is incomplete; nothing sounds from a file, so no key is left down by it"
        );
        e.failed_outputs.push("jack:x".into());
        let u = e.unreleased();
        assert_eq!(
            verdict(&u, 3),
            "KEYS MAY STILL SOUND on jack:x; the record file:r.mid is incomplete; every other output took the release"
        );
        assert!(u[0].why.ends_with("so the release did not reach it") && !u[0].why.contains("disconnected"));
        assert_eq!(verdict(&u, 2), "KEYS MAY STILL SOUND on jack:x; the record file:r.mid is incomplete");
    }

    #[test]
    fn a_release_cut_short_leaves_every_output_in_doubt_and_drops_only_their_own() {
        let mut e = ending(End::Panicked, &["a", "b"]);
        e.release_cut = true;
        assert_eq!(verdict(&e.unreleased(), 2), "KEYS MAY STILL SOUND on a, b");
        assert!(e.unreleased()[0].why.contains("internal error"));
        // Drops on b only: b is in doubt, a and the record took the release.
        let mut e = ending(End::Stopped, &["a", "b", "file:r.mid"]);
        e.records = vec!["file:r.mid".into()];
        (e.dropped, e.dropped_by) = (3, vec![0, 3, 0]);
        let u = e.unreleased();
        assert_eq!(verdict(&u, 3), "KEYS MAY STILL SOUND on b; every other output took the release");
        assert_eq!(
            u[0].why,
            "3 message(s) to it could not be delivered while \"One\" played (a note-off among them leaves a key down)"
        );
        assert_eq!(e.releases()[0].1, Release::Took);
        // Drops on the record: it is incomplete, nothing sounds.
        e.dropped_by = vec![0, 0, 2];
        assert_eq!(
            verdict(&e.unreleased(), 3),
            "the record file:r.mid is incomplete; every other output took the release"
        );
        // Drops on both instruments: both named.
        e.dropped_by = vec![1, 2, 0];
        assert_eq!(verdict(&e.unreleased(), 3), "KEYS MAY STILL SOUND on a, b; every other output took the release");
        let mut e = ending(End::Stopped, &["a"]);
        (e.dropped, e.dropped_by) = (3, vec![3]);
        assert!(e.unreleased()[0].why.starts_with("3 message(s) to it could not be delivered"));
        let f = Finished { engine_running: Some(vec!["c".into()]), records: vec!["c".into()], ..Default::default() };
        assert_eq!(verdict(&f.unreleased(), 1), "the record c is incomplete");
        let mut list = e.unreleased();
        note(&mut list, Unreleased { output: "a".into(), why: "later".into(), record: false });
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].why, "later");
    }

    #[test]
    fn the_panic_line_says_released_only_when_the_engine_released_everywhere() {
        let outputs = vec![("jack:x".to_string(), false), ("file:r.mid".to_string(), true)];
        assert_eq!(keys_verdict(&outputs, true, 0, false, 0, false), "every key released");
        assert_eq!(
            keys_verdict(&outputs, true, 0b01, false, 0, false),
            "KEYS MAY STILL SOUND on jack:x; every other output took the release: press the organ's General \
             Cancel, or run organ panic --to jack:x"
        );
        assert_eq!(
            keys_verdict(&outputs, true, 0b10, false, 0, false),
            "the record file:r.mid is incomplete; every other output took the release"
        );
        let late = keys_verdict(&outputs, false, 0, false, 0, false);
        assert!(
            late.starts_with("KEYS MAY STILL SOUND on jack:x; the record file:r.mid is incomplete (the release was not confirmed in time)"),
            "{late}"
        );
        for (cut, link) in [(true, false), (false, true)] {
            let v = keys_verdict(&outputs, true, 0, cut, 0, link);
            assert!(v.starts_with("KEYS MAY STILL SOUND on jack:x; the record file:r.mid is incomplete"), "{v}");
        }
        // Messages dropped on one output: only that one is in doubt.
        assert_eq!(
            keys_verdict(&outputs, true, 0, false, 0b01, false),
            "KEYS MAY STILL SOUND on jack:x; every other output took the release: press the organ's General \
             Cancel, or run organ panic --to jack:x"
        );
        assert_eq!(
            keys_verdict(&outputs, true, 0, false, 0b10, false),
            "the record file:r.mid is incomplete; every other output took the release"
        );
        assert_eq!(keys_verdict(&[], true, 0, false, 0, false), "every key released");
    }
}
