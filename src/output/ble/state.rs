//! What the BLE worker knows about the device's state, and the messages that bring the device back
//! to a known state after a reconnect. Pure (no I/O), so it is tested without Bluetooth.

use crate::midi::{Channel, Micros, ShortMsg};
use crate::plan::{Msg, Timeline};

/// Every channel.
pub(crate) const ALL_CHANNELS: u16 = 0xFFFF;

/// The keys down on the device, per channel, as far as the messages written to it tell.
///
/// Only the channels in the mask are tracked: the division channels. Stops drawn by note-on on a
/// control channel are not keys (releasing them would be the cancel's job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    down: [u128; 16],
    channels: u16,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys { down: [0; 16], channels: ALL_CHANNELS }
    }
}

impl Keys {
    /// Tracks only these channels (bit n = wire channel n).
    pub fn set_channels(&mut self, mask: u16) {
        self.channels = mask;
        for ch in 0..16 {
            if mask & (1 << ch) == 0 {
                self.down[ch] = 0;
            }
        }
    }

    fn tracked(&self, ch: Channel) -> bool {
        self.channels & (1 << ch.wire()) != 0
    }

    /// Applies one message that reached the device.
    pub fn apply(&mut self, bytes: &[u8]) {
        let Some(m) = ShortMsg::from_bytes(bytes) else { return };
        if let Some((ch, key)) = m.as_note_on() {
            if self.tracked(ch) {
                self.down[usize::from(ch.wire())] |= 1 << key;
            }
        } else if let Some((ch, key)) = m.as_note_off() {
            self.down[usize::from(ch.wire())] &= !(1u128 << key);
        } else if m.status() & 0xF0 == 0xB0 && matches!(bytes[1], 120 | 123) {
            // All Sound Off / All Notes Off release the whole channel.
            self.down[usize::from(m.status() & 0x0F)] = 0;
        }
    }

    /// For a message that may or may not have reached the device (BlueZ did not answer its
    /// write in time): a note-on counts as down, nothing is released.
    pub fn apply_uncertain(&mut self, bytes: &[u8]) {
        if let Some((ch, key)) = ShortMsg::from_bytes(bytes).and_then(|m| m.as_note_on()) {
            if self.tracked(ch) {
                self.down[usize::from(ch.wire())] |= 1 << key;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.down.iter().all(|&d| d == 0)
    }

    pub fn count(&self) -> usize {
        self.down.iter().map(|d| d.count_ones() as usize).sum()
    }

    pub fn clear(&mut self) {
        self.down = [0; 16];
    }

    /// `(channel, key)` of every key down, by channel then key.
    pub fn iter(&self) -> impl Iterator<Item = (Channel, u8)> + '_ {
        (0..16u8).flat_map(move |ch| {
            let bits = self.down[usize::from(ch)];
            (0..128u8).filter(move |&k| bits & (1 << k) != 0).map(move |k| (Channel::new(ch).expect("< 16"), k))
        })
    }
}

/// The division channels of a plan as a mask (all channels without a plan).
pub(crate) fn division_mask(timeline: Option<&Timeline>) -> u16 {
    match timeline {
        Some(t) if !t.divisions.is_empty() => t.divisions.iter().fold(0, |m, d| m | (1 << d.channel.wire())),
        _ => ALL_CHANNELS,
    }
}

/// Releases the keys down: a note-off for each, then CC 123 (All Notes Off) on every division
/// channel (every channel with a key down when there is no plan).
pub(crate) fn release_messages(keys: &Keys, timeline: Option<&Timeline>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = keys.iter().map(|(ch, k)| ShortMsg::note_off(ch, k).as_bytes().to_vec()).collect();
    let channels: Vec<Channel> = match timeline {
        Some(t) if !t.divisions.is_empty() => {
            let mut c: Vec<Channel> = t.divisions.iter().map(|d| d.channel).collect();
            c.sort();
            c.dedup();
            c
        }
        _ => {
            let mut c: Vec<Channel> = keys.iter().map(|(ch, _)| ch).collect();
            c.dedup();
            c
        }
    };
    out.extend(channels.into_iter().map(|ch| ShortMsg::all_notes_off(ch).as_bytes().to_vec()));
    out
}

fn bytes(timeline: &Timeline, m: &Msg) -> Vec<u8> {
    timeline.bytes(m).to_vec()
}

/// The registration from a known state: the cancel, then the `on` messages of the controls
/// drawn at plan time `at`. Send them `stop_pace` apart. Without a General Cancel a toggle is
/// left alone: what reached the console before the link dropped is not known, and its message
/// would flip it from whatever it is.
pub(crate) fn registration_messages(timeline: &Timeline, at: Micros) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = timeline.cancel.iter().map(|m| bytes(timeline, m)).collect();
    for &id in timeline.registration_at(at).map(|r| r.drawn.as_slice()).unwrap_or(&[]) {
        let control = &timeline.controls[id];
        if control.toggle && !timeline.general_cancel {
            continue;
        }
        out.extend(control.on.iter().map(|m| bytes(timeline, m)));
    }
    out
}

/// The plan's registration messages after plan time `after` up to and including `until`, in
/// order: the changes that fell while a restore was being written (under `continue`), which the
/// registration written from `after` does not hold yet.
pub(crate) fn registration_between(timeline: &Timeline, after: Micros, until: Micros) -> Vec<Vec<u8>> {
    timeline
        .events
        .iter()
        .filter(|e| e.t > after && e.t <= until && e.kind.is_registration())
        .map(|e| bytes(timeline, &e.msg))
        .collect()
}

/// The cancel alone (at shutdown, when the plan cancels at the end).
pub(crate) fn cancel_messages(timeline: &Timeline) -> Vec<Vec<u8>> {
    timeline.cancel.iter().map(|m| bytes(timeline, m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organ::Organ;
    use crate::plan::{self, PlanOptions};

    fn ch(n: u8) -> Channel {
        Channel::new(n).unwrap()
    }

    #[test]
    fn keys_follow_notes_on_tracked_channels() {
        let mut k = Keys::default();
        k.set_channels(0b111);
        k.apply(&[0x90, 60, 100]);
        k.apply(&[0x91, 62, 100]);
        k.apply(&[0x9F, 36, 127]); // a stop drawn by note-on on channel 16: not a key
        k.apply(&[0x90, 64, 100]);
        k.apply(&[0x80, 60, 0]);
        k.apply(&[0x91, 62, 0]); // velocity 0 = off
        assert_eq!(k.iter().collect::<Vec<_>>(), [(ch(0), 64)]);
        k.apply(&[0x92, 40, 1]);
        k.apply(&[0xB2, 123, 0]);
        assert_eq!(k.count(), 1);
        k.apply_uncertain(&[0x90, 65, 1]);
        k.apply_uncertain(&[0x80, 64, 0]); // an uncertain note-off releases nothing
        assert_eq!(k.iter().collect::<Vec<_>>(), [(ch(0), 64), (ch(0), 65)]);
        k.apply(&[0xF0, 0x7D, 0xF7]); // ignored
        k.clear();
        assert!(k.is_empty());
    }

    fn bwv643() -> (Organ, plan::Timeline) {
        let organ = Organ::find("st-marys").unwrap();
        let score =
            crate::score::load_file(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scores/bwv643.mid")))
                .unwrap();
        let reg_text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scores/bwv643.toml")).unwrap();
        let reg = crate::registration::Registration::from_toml(&reg_text, "bwv643.toml", &organ).unwrap();
        let t = plan::plan(&score, &organ, Some(&reg), &PlanOptions::default()).unwrap();
        (organ, t)
    }

    #[test]
    fn restored_registration_is_the_one_being_sent() {
        use crate::plan::Kind;
        let (organ, t) = bwv643();
        let name = |id: usize| organ.controls[id].name.clone();
        // Replaying the plan's registration messages up to a time gives what the organ was
        // last told; restoring `registration_at` must never be behind that.
        let replay = |at: Micros| {
            let mut drawn = vec![false; t.controls.len()];
            for e in t.events.iter().take_while(|e| e.t <= at) {
                match (e.kind, e.control()) {
                    (Kind::StopOn | Kind::CouplerOn | Kind::TremulantOn, Some(i)) => drawn[i] = true,
                    (Kind::StopOff | Kind::CouplerOff | Kind::TremulantOff | Kind::Cancel, Some(i)) => drawn[i] = false,
                    (Kind::Cancel, None) => drawn.iter_mut().for_each(|d| *d = false),
                    _ => {}
                }
            }
            (0..drawn.len()).filter(|&i| drawn[i]).collect::<Vec<_>>()
        };
        // After the setup, the starting registration (mf + Sw to Ped) is drawn.
        let first_note = t.events.iter().find(|e| e.kind == Kind::NoteOn).unwrap().t;
        assert_eq!(replay(first_note), t.registration_at(first_note).unwrap().drawn);
        assert!(replay(first_note).iter().any(|&i| name(i) == "Sw to Ped"));
        // Once the bar-5 change's first stop message has gone out (ahead of its notes), the
        // restore gives the new registration.
        let change = &t.registrations[1];
        let msgs: Vec<Micros> = t
            .events
            .iter()
            .filter(|e| e.kind.is_registration() && e.t > first_note && e.t < t.duration)
            .map(|e| e.t)
            .collect();
        assert_eq!(change.t, msgs[0], "a registration takes over with its first message");
        let last_msg = *msgs.iter().take_while(|&&m| m < msgs[0] + Micros(1_000_000)).last().unwrap();
        for at in [msgs[0], last_msg] {
            assert_eq!(t.registration_at(at).unwrap().drawn, change.drawn);
        }
        assert_eq!(replay(last_msg), change.drawn);
        assert!(change.drawn.iter().any(|&i| name(i) == "Gt to Ped"));
        // At the end everything is cancelled.
        assert_eq!(t.registration_at(t.duration).unwrap().drawn.is_empty(), t.cancel_at_end);
    }

    #[test]
    fn registration_between_gives_the_changes_a_restore_has_not_written() {
        use crate::plan::Kind;
        let (_, t) = bwv643();
        let first_note = t.events.iter().find(|e| e.kind == Kind::NoteOn).unwrap().t;
        let change = t.registrations[1].t;
        // From the start up to the bar-5 change: exactly that change's first message.
        let first = registration_between(&t, first_note, change);
        let at_change: Vec<Vec<u8>> = t
            .events
            .iter()
            .filter(|e| e.t == change && e.kind.is_registration())
            .map(|e| t.bytes(&e.msg).to_vec())
            .collect();
        assert!(!at_change.is_empty());
        assert_eq!(first, at_change);
        assert!(registration_between(&t, change, change).is_empty(), "nothing after a time up to the same time");
        // To the end: every change after the first note, in the plan's order, and the cancel at
        // the end last (a restore during the final cancel must still send it).
        let all = registration_between(&t, first_note, t.duration);
        let notes = t.events.iter().filter(|e| e.t > first_note && !e.kind.is_registration()).count();
        assert_eq!(all.len() + notes, t.events.iter().filter(|e| e.t > first_note).count());
        if t.cancel_at_end {
            let cancel = cancel_messages(&t);
            assert_eq!(all[all.len() - cancel.len()..], cancel[..]);
        }
    }

    #[test]
    fn registration_messages_start_with_the_cancel() {
        let (_, t) = bwv643();
        let at = t.registrations[1].t;
        let msgs = registration_messages(&t, at);
        let cancel = cancel_messages(&t);
        assert!(!cancel.is_empty());
        assert_eq!(&msgs[..cancel.len()], &cancel[..]);
        let ons: Vec<Vec<u8>> = t.registrations[1]
            .drawn
            .iter()
            .flat_map(|&id| t.controls[id].on.iter().map(|m| t.bytes(m).to_vec()))
            .collect();
        assert_eq!(&msgs[cancel.len()..], &ons[..]);
    }

    #[test]
    fn after_a_link_loss_toggles_without_a_general_cancel_are_left_alone() {
        use crate::plan::console_sim::{TOGGLE_REGISTRATION, toggle_organ};
        use crate::plan::hymn::fixture;
        let organ = toggle_organ("everything_in_at_start = true");
        let reg = fixture::registration(&organ, TOGGLE_REGISTRATION);
        let t = plan::plan(&fixture::score(), &organ, Some(&reg), &PlanOptions::default()).unwrap();
        let at = t.registrations[1].t;
        // The state stop's off (the cancel), then its on: no program-change toggle.
        assert_eq!(registration_messages(&t, at), [vec![0x8F, 40, 0], vec![0x9F, 40, 127]]);
    }

    #[test]
    fn release_sends_note_offs_then_all_notes_off_per_division() {
        let (_, t) = bwv643();
        let mut k = Keys::default();
        k.set_channels(division_mask(Some(&t)));
        k.apply(&[0x91, 67, 90]);
        k.apply(&[0x90, 60, 90]);
        k.apply(&[0x9F, 36, 127]);
        let msgs = release_messages(&k, Some(&t));
        assert_eq!(
            msgs,
            [vec![0x80, 60, 0], vec![0x81, 67, 0], vec![0xB0, 123, 0], vec![0xB1, 123, 0], vec![0xB2, 123, 0]]
        );
        assert_eq!(division_mask(None), ALL_CHANNELS);
        assert_eq!(division_mask(Some(&t)), 0b111);
    }
}
