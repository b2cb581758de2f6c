//! Which keys are down, per channel: a fixed bitset (no allocation), so that every exit path can
//! release exactly the keys that are sounding.

use crate::midi::{Channel, ShortMsg};

/// Keys down on each of the 16 channels, with the velocity each was struck with.
#[derive(Clone)]
pub struct HeldKeys {
    bits: [[u64; 2]; 16],
    velocity: [[u8; 128]; 16],
}

impl Default for HeldKeys {
    fn default() -> Self {
        HeldKeys { bits: [[0; 2]; 16], velocity: [[0; 128]; 16] }
    }
}

impl HeldKeys {
    pub fn new() -> HeldKeys {
        HeldKeys::default()
    }

    /// Updates the state from a message on its way out (note-on, note-off, CC 123).
    pub fn track(&mut self, bytes: &[u8]) {
        let Some(m) = ShortMsg::from_bytes(bytes) else { return };
        if let Some((ch, key)) = m.as_note_on() {
            self.press(ch, key, bytes[2]);
        } else if let Some((ch, key)) = m.as_note_off() {
            self.release(ch, key);
        } else if m.status() & 0xF0 == 0xB0 && bytes[1] == 123 {
            if let Some(ch) = m.channel() {
                self.bits[usize::from(ch.wire())] = [0; 2];
            }
        }
    }

    pub fn press(&mut self, ch: Channel, key: u8, velocity: u8) {
        let (c, k) = (usize::from(ch.wire()), usize::from(key & 0x7F));
        self.bits[c][k / 64] |= 1 << (k % 64);
        self.velocity[c][k] = velocity;
    }

    pub fn release(&mut self, ch: Channel, key: u8) {
        let (c, k) = (usize::from(ch.wire()), usize::from(key & 0x7F));
        self.bits[c][k / 64] &= !(1 << (k % 64));
    }

    pub fn is_down(&self, ch: Channel, key: u8) -> bool {
        let (c, k) = (usize::from(ch.wire()), usize::from(key & 0x7F));
        self.bits[c][k / 64] & (1 << (k % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|b| b[0] == 0 && b[1] == 0)
    }

    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| (b[0].count_ones() + b[1].count_ones()) as usize).sum()
    }

    /// Every key down as (channel, key, velocity), channel by channel, low keys first.
    /// Allocation-free.
    pub fn iter(&self) -> impl Iterator<Item = (Channel, u8, u8)> + '_ {
        (0u8..16).flat_map(move |c| {
            (0u8..128).filter_map(move |k| {
                let ch = Channel::new(c).expect("< 16");
                self.is_down(ch, k).then(|| (ch, k, self.velocity[usize::from(c)][usize::from(k)]))
            })
        })
    }

    pub fn clear(&mut self) {
        self.bits = [[0; 2]; 16];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_presses_and_releases() {
        let mut h = HeldKeys::new();
        h.track(&[0x91, 60, 80]);
        h.track(&[0x91, 64, 70]);
        h.track(&[0x90, 127, 1]);
        assert_eq!(h.count(), 3);
        h.track(&[0x91, 60, 0]); // velocity 0 = off
        h.track(&[0x80, 127, 0]);
        let v: Vec<(u8, u8, u8)> = h.iter().map(|(c, k, v)| (c.wire(), k, v)).collect();
        assert_eq!(v, vec![(1, 64, 70)]);
        h.track(&[0xB1, 123, 0]);
        assert!(h.is_empty());
        h.track(&[0xF0, 1, 0xF7]); // ignored
        assert!(h.is_empty());
    }
}
