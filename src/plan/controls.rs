//! A stage of the planner (listed in `plan`), the controls: the organ's divisions, its stop, coupler and tremulant
//! messages and its cancel, interned once into the timeline's message pool, and `--stops`
//! resolved to controls. Pure; runs on the control thread while planning.

use super::{ControlInfo, DivisionInfo, Msg, PlanError, Timeline};
use crate::organ::{ControlId, Organ};

/// What the timeline needs of the organ, with every SysEx interned into `long`.
pub(crate) struct OrganMessages {
    pub divisions: Vec<DivisionInfo>,
    pub controls: Vec<ControlInfo>,
    /// The General Cancel, or every control's off but the toggles'.
    pub cancel: Vec<Msg>,
    /// The SysEx pool that [`Msg::Long`] indexes.
    pub long: Vec<Box<[u8]>>,
}

impl OrganMessages {
    pub fn new(organ: &Organ) -> OrganMessages {
        let mut long: Vec<Box<[u8]>> = Vec::new();
        let divisions = organ
            .divisions
            .iter()
            .map(|d| DivisionInfo { name: d.name.clone(), code: d.code, channel: d.channel })
            .collect();
        let controls = organ
            .controls
            .iter()
            .map(|c| ControlInfo {
                name: c.name.clone(),
                kind: c.kind,
                division: c.division,
                on: c.on.iter().map(|m| Timeline::intern(&mut long, m)).collect(),
                off: c.off.iter().map(|m| Timeline::intern(&mut long, m)).collect(),
                toggle: c.toggle,
                voice: c.voice.clone(),
            })
            .collect();
        let cancel = organ.cancel_messages().iter().map(|m| Timeline::intern(&mut long, m)).collect();
        OrganMessages { divisions, controls, cancel, long }
    }
}

/// The controls `--stops` draws at the start: names of controls, or presets (all of theirs).
///
/// # Errors
/// A name that is neither a control nor a preset of the organ (with the closest name).
pub(crate) fn extra_stops(organ: &Organ, names: &[String]) -> Result<Vec<ControlId>, PlanError> {
    let mut ids: Vec<ControlId> = Vec::new();
    for s in names {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        if let Some(p) = organ.preset(s) {
            ids.extend(p.controls.iter().copied());
            continue;
        }
        let id = organ.control(s).ok_or_else(|| PlanError::UnknownStop {
            organ: organ.name.clone(),
            name: s.to_string(),
            suggestion: organ.suggest_control(s),
        })?;
        ids.push(id);
    }
    Ok(ids)
}
