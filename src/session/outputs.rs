//! The session's outputs: one slot per `--to`, opened on the control thread, lent to each
//! engine for a performance and taken back when it ends, reopened when lost, finished once at
//! the end (so a file record is one take, and a port stays open between hymns).

use std::sync::Arc;

use crate::engine;
use crate::organ::DisconnectPolicy;
use crate::output::{FinishError, OpenError, Output, OutputError, OutputSpec};
use crate::plan::Timeline;

/// Which outputs to open: `--to` as given, else a default `output = "…"` (from `source`).
///
/// # Errors
/// Neither given ([`OpenError::NoOutput`]), a form that is not an output, too many.
pub fn specs(to: &[String], default: Option<&str>, source: &str) -> Result<Vec<OutputSpec>, OpenError> {
    let texts: Vec<&str> = if to.is_empty() {
        match default {
            Some(o) => vec![o],
            None => return Err(OpenError::NoOutput { source: source.to_string() }),
        }
    } else {
        to.iter().map(String::as_str).collect()
    };
    if texts.len() > engine::MAX_OUTPUTS {
        return Err(OpenError::TooMany(engine::MAX_OUTPUTS));
    }
    texts.into_iter().map(|t| OutputSpec::parse(t).map_err(OpenError::from)).collect()
}

/// Outputs lent to an engine, with their slot numbers.
pub(crate) type Lent = (Vec<Box<dyn Output>>, Vec<usize>);

/// An output that went out of use during the session (it failed), with how its end went.
pub(crate) struct Retired {
    pub finish: Result<(), FinishError>,
    pub report: Option<String>,
    /// Its `--stats` line ([`Output::stats`]).
    pub stats: Option<String>,
    /// Its name, when keys may still sound on it ([`Output::keys_may_sound`]).
    pub may_sound: Option<String>,
    pub name: String,
    /// A `file:` record.
    pub record: bool,
}

/// The outputs of a session.
pub(crate) struct Outputs {
    pub specs: Vec<OutputSpec>,
    /// `None` while not open (not yet, failed to open, lost) or lent to the engine.
    pub slots: Vec<Option<Box<dyn Output>>>,
    /// Why a slot is not open.
    pub errors: Vec<Option<String>>,
    pub policy: DisconnectPolicy,
    pub retired: Vec<Retired>,
}

impl Outputs {
    pub fn new(specs: Vec<OutputSpec>, policy: DisconnectPolicy) -> Outputs {
        let n = specs.len();
        Outputs { specs, slots: (0..n).map(|_| None).collect(), errors: vec![None; n], policy, retired: Vec::new() }
    }

    /// Opens every output that is not open, in order. With `keep_going` it tries them all and
    /// returns the first error; without, it stops at the first failure. Lines for the user
    /// (e.g. "restart GrandOrgue") go to `notes`.
    pub fn open_missing(&mut self, keep_going: bool, notes: &mut Vec<String>) -> Result<(), OpenError> {
        let mut first = None;
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                continue;
            }
            match self.specs[i].open(self.policy, notes) {
                Ok(o) => {
                    self.slots[i] = Some(o);
                    self.errors[i] = None;
                }
                Err(e) => {
                    self.errors[i] = Some(e.to_string());
                    first.get_or_insert(e);
                    if !keep_going {
                        break;
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Why some outputs are not open, joined; `None` when all are.
    pub fn error(&self) -> Option<String> {
        let errors: Vec<&str> = self.errors.iter().flatten().map(String::as_str).collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }

    /// The names of the open outputs, in order.
    pub fn names(&self) -> Vec<String> {
        self.slots.iter().flatten().map(|o| o.name().to_string()).collect()
    }

    /// Takes the open outputs for an engine, prepared for `timeline`. Returns them with their
    /// slot numbers.
    ///
    /// # Errors
    /// An output cannot play this plan (it is put back, as are the others).
    pub fn lend(&mut self, timeline: &Arc<Timeline>) -> Result<Lent, (String, OutputError)> {
        let mut index = Vec::new();
        let mut lent = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(o) = slot.take() {
                index.push(i);
                lent.push(o);
            }
        }
        let failed = lent.iter_mut().find_map(|o| o.prepare(timeline).err().map(|e| (o.name().to_string(), e)));
        if let Some(f) = failed {
            self.take_back(lent, &index, None);
            return Err(f);
        }
        Ok((lent, index))
    }

    /// Takes the outputs back from an engine that ended (in the order lent). `failed`: the one
    /// that failed (its position among those lent, and why) is finished and left closed.
    pub fn take_back(&mut self, outputs: Vec<Box<dyn Output>>, index: &[usize], failed: Option<(usize, OutputError)>) {
        for (k, mut o) in outputs.into_iter().enumerate() {
            let i = index[k];
            match failed {
                Some((f, error)) if f == k => {
                    self.errors[i] = Some(format!("{}: {error}", self.specs[i]));
                    let finish = o.finish();
                    let may_sound = o.keys_may_sound().then(|| o.name().to_string());
                    let (name, record) = (o.name().to_string(), matches!(self.specs[i], OutputSpec::File(_)));
                    self.retired.push(Retired {
                        finish,
                        report: o.report(),
                        stats: o.stats(),
                        may_sound,
                        name,
                        record,
                    });
                }
                _ => self.slots[i] = Some(o),
            }
        }
    }

    /// The names of the open outputs that are `file:` records, and of those retired (failed).
    pub fn record_names(&self) -> Vec<String> {
        let open = self.slots.iter().zip(&self.specs).filter_map(|(o, s)| match (o, s) {
            (Some(o), OutputSpec::File(_)) => Some(o.name().to_string()),
            _ => None,
        });
        open.chain(self.retired.iter().filter(|r| r.record).map(|r| r.name.clone())).collect()
    }

    /// Finishes every open output (a file output writes its file here): the errors, the
    /// reports, the names of the outputs on which keys may still sound, and the `--stats` lines.
    pub fn finish(&mut self) -> (Vec<FinishError>, Vec<String>, Vec<String>, Vec<String>) {
        let mut errors = Vec::new();
        let mut reports = Vec::new();
        let mut may_sound = Vec::new();
        let mut stats = Vec::new();
        for r in &mut self.retired {
            errors.extend(std::mem::replace(&mut r.finish, Ok(())).err());
            reports.extend(r.report.take());
            stats.extend(r.stats.take());
            may_sound.extend(r.may_sound.take());
        }
        for o in self.slots.iter_mut().flatten() {
            if let Err(e) = o.finish() {
                errors.push(e);
            }
            reports.extend(o.report());
            stats.extend(o.stats());
            if o.keys_may_sound() {
                may_sound.push(o.name().to_string());
            }
        }
        (errors, reports, may_sound, stats)
    }
}
