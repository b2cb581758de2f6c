//! The planned messages before sorting: every stage adds its messages here with an [`Order`]
//! that breaks ties at equal times, and [`Messages::into_events`] sorts them into the timeline's
//! send order. Pure; runs on the control thread while planning.

use super::Event;

/// Which message goes first when two are due at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Order {
    /// Note-offs first, so a key released and struck again at once sounds again.
    NoteOff,
    /// Then registration messages (setup, changes), so the notes after them have their stops.
    Registration,
    NoteOn,
    /// The closing all-notes-off and cancel, after everything else at their time.
    Tail,
}

/// The messages planned so far, in the order the stages added them.
#[derive(Default)]
pub(crate) struct Messages {
    pending: Vec<(Order, Event)>,
}

impl Messages {
    pub fn push(&mut self, order: Order, event: Event) {
        self.pending.push((order, event));
    }

    /// The time of the latest message so far (0 when none).
    pub fn latest(&self) -> u64 {
        self.pending.iter().map(|p| p.1.t.0).max().unwrap_or(0)
    }

    /// Sorted by time, then [`Order`]; messages equal in both keep the order they were added in.
    pub fn into_events(mut self) -> Vec<Event> {
        self.pending.sort_by_key(|p| (p.1.t, p.0));
        self.pending.into_iter().map(|p| p.1).collect()
    }
}
