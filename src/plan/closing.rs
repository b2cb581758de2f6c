//! A stage of the planner (listed in `plan`), the closing sequence: after the last note-off (or the last message,
//! if a registration message comes later), all-notes-off on every division, then the cancel,
//! paced after the last stop message, unless the stops are to stay drawn (`--keep-stops`,
//! `cancel.at_end = false`). Pure; runs on the control thread while planning.

use super::drawn::Drawn;
use super::messages::{Messages, Order};
use super::stops::StopScheduler;
use super::{DivisionInfo, Event, Kind, Msg, NONE_U16, RegistrationState};
use crate::midi::{Micros, ShortMsg};

/// Where the closing sequence goes: the end of the music, and the tick and section it closes.
pub(crate) struct End {
    /// The last note-off, or the last message when that is later.
    pub t: u64,
    pub tick: u64,
    pub section: u16,
}

/// Adds the closing sequence; with `cancel`, `registrations` gets the empty state from the
/// moment the cancel begins. `drawn` is the registration at the end (the toggles to put in).
pub(crate) fn close(
    divisions: &[DivisionInfo],
    stops: &mut StopScheduler,
    (cancel, drawn): (bool, &Drawn),
    end: &End,
    out: &mut Messages,
    registrations: &mut Vec<RegistrationState>,
) {
    for (d, div) in divisions.iter().enumerate() {
        out.push(
            Order::Tail,
            Event {
                t: Micros(end.t),
                msg: Msg::Short(ShortMsg::all_notes_off(div.channel)),
                kind: Kind::AllNotesOff,
                division: d as u8,
                control: NONE_U16,
                part: 0,
                tick: end.tick,
                section: end.section,
            },
        );
    }
    if cancel {
        let cancel_start = stops.cancel_at_end(out, end.t, (end.tick, end.section), drawn);
        registrations.push(RegistrationState { t: Micros(cancel_start), drawn: Vec::new(), preset: None });
    }
}
