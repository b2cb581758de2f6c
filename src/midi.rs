//! MIDI value types shared by every stage: time in microseconds, channels, and the short
//! (≤ 3-byte) channel message encoded on the stack.
//!
//! Everything here is `Copy` and allocation-free so the real-time engine can pass it around.
//! Values that would not be valid MIDI (a channel outside 0-15, a data byte above 127) cannot be
//! built through the constructors: they return `None` or clamp by construction.

use std::fmt;

/// A time or duration in whole microseconds.
///
/// Plan times are microseconds from the start of the performance. A newtype so that
/// milliseconds, seconds and ticks cannot be passed where microseconds are meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub u64);

impl Micros {
    pub const ZERO: Micros = Micros(0);

    /// From whole milliseconds.
    pub const fn from_millis(ms: u64) -> Micros {
        Micros(ms * 1000)
    }

    /// Seconds as a float, for display only (never for arithmetic on the timeline).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    pub fn saturating_sub(self, other: Micros) -> Micros {
        Micros(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Add for Micros {
    type Output = Micros;
    fn add(self, rhs: Micros) -> Micros {
        Micros(self.0 + rhs.0)
    }
}

impl fmt::Display for Micros {
    /// `m:ss.mmm`, the way the status line and `organ plan --format text` show times.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 / 1000;
        write!(f, "{}:{:02}.{:03}", ms / 60_000, (ms / 1000) % 60, ms % 1000)
    }
}

/// A MIDI channel, 0-15 on the wire (shown to users as 1-16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Channel(u8);

impl Channel {
    /// From the wire value 0-15.
    pub const fn new(wire: u8) -> Option<Channel> {
        if wire < 16 { Some(Channel(wire)) } else { None }
    }
    /// From the user-facing number 1-16.
    pub const fn from_user(n: i64) -> Option<Channel> {
        if n >= 1 && n <= 16 { Some(Channel(n as u8 - 1)) } else { None }
    }
    /// The wire value 0-15.
    pub const fn wire(self) -> u8 {
        self.0
    }
    /// The user-facing number 1-16.
    pub const fn user(self) -> u8 {
        self.0 + 1
    }
}

/// A 7-bit MIDI data byte (0-127).
pub fn data7(v: i64) -> Option<u8> {
    if (0..=127).contains(&v) { Some(v as u8) } else { None }
}

/// A MIDI channel message of one to three bytes, stored inline.
///
/// Built only through the constructors below (which take a `Channel` and mask data bytes) or
/// through [`ShortMsg::from_bytes`], which checks the status and data bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortMsg {
    bytes: [u8; 3],
    len: u8,
}

impl ShortMsg {
    pub const fn note_on(ch: Channel, key: u8, velocity: u8) -> ShortMsg {
        ShortMsg { bytes: [0x90 | ch.0, key & 0x7F, velocity & 0x7F], len: 3 }
    }
    pub const fn note_off(ch: Channel, key: u8) -> ShortMsg {
        ShortMsg { bytes: [0x80 | ch.0, key & 0x7F, 0], len: 3 }
    }
    pub const fn cc(ch: Channel, controller: u8, value: u8) -> ShortMsg {
        ShortMsg { bytes: [0xB0 | ch.0, controller & 0x7F, value & 0x7F], len: 3 }
    }
    pub const fn program(ch: Channel, program: u8) -> ShortMsg {
        ShortMsg { bytes: [0xC0 | ch.0, program & 0x7F, 0], len: 2 }
    }
    /// CC 123 All Notes Off.
    pub const fn all_notes_off(ch: Channel) -> ShortMsg {
        ShortMsg::cc(ch, 123, 0)
    }

    /// Checks and wraps raw bytes of one channel or system-common/real-time message
    /// (not SysEx): a status byte with the right number of data bytes, each ≤ 127.
    pub fn from_bytes(b: &[u8]) -> Option<ShortMsg> {
        let (&status, data) = b.split_first()?;
        if status < 0x80 || status == 0xF0 || status == 0xF7 {
            return None;
        }
        if data.len() != expected_data_len(status)? || data.iter().any(|&d| d > 127) {
            return None;
        }
        let mut bytes = [0u8; 3];
        bytes[..b.len()].copy_from_slice(b);
        Some(ShortMsg { bytes, len: b.len() as u8 })
    }

    /// The bytes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn status(&self) -> u8 {
        self.bytes[0]
    }

    /// The channel of a channel message; `None` for system messages.
    pub fn channel(&self) -> Option<Channel> {
        (self.bytes[0] < 0xF0).then_some(Channel(self.bytes[0] & 0x0F))
    }

    /// `Some((channel, key))` if this is a note-on with velocity > 0.
    pub fn as_note_on(&self) -> Option<(Channel, u8)> {
        (self.bytes[0] & 0xF0 == 0x90 && self.bytes[2] > 0).then_some((Channel(self.bytes[0] & 0x0F), self.bytes[1]))
    }

    /// `Some((channel, key))` if this is a note-off (0x8n, or 0x9n with velocity 0).
    pub fn as_note_off(&self) -> Option<(Channel, u8)> {
        let kind = self.bytes[0] & 0xF0;
        (kind == 0x80 || (kind == 0x90 && self.bytes[2] == 0)).then_some((Channel(self.bytes[0] & 0x0F), self.bytes[1]))
    }
}

/// A complete MIDI message as an organ definition states it: a short message, or a SysEx
/// (`F0 … F7`, data bytes ≤ 127 in between).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    Short(ShortMsg),
    Sysex(Box<[u8]>),
}

impl Message {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Short(m) => m.as_bytes(),
            Message::Sysex(b) => b,
        }
    }

    /// Splits a byte string into complete messages, checking each (status byte, data bytes
    /// ≤ 127, right length, SysEx closed by F7). Running status is not accepted: every message
    /// must have its status byte.
    pub fn parse_many(bytes: &[u8]) -> Result<Vec<Message>, String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let status = bytes[i];
            if status < 0x80 {
                return Err(format!("byte {} ({status:02X}) should be a status byte (80-FF)", i + 1));
            }
            if status == 0xF0 {
                let end = bytes[i..].iter().position(|&b| b == 0xF7).ok_or("SysEx without its closing F7")?;
                let body = &bytes[i + 1..i + end];
                if let Some(bad) = body.iter().find(|&&b| b > 0x7F) {
                    return Err(format!("SysEx data byte {bad:02X} is above 7F"));
                }
                out.push(Message::Sysex(bytes[i..=i + end].into()));
                i += end + 1;
                continue;
            }
            let n = expected_data_len(status).ok_or_else(|| format!("{status:02X} is not a message status byte"))?;
            let msg = bytes.get(i..i + 1 + n).ok_or_else(|| format!("message {status:02X} needs {n} data byte(s)"))?;
            let short = ShortMsg::from_bytes(msg).ok_or_else(|| format!("data byte above 7F in {}", HexBytes(msg)))?;
            out.push(Message::Short(short));
            i += 1 + n;
        }
        Ok(out)
    }
}

/// Number of data bytes after a status byte; `None` for SysEx and undefined statuses.
pub fn expected_data_len(status: u8) -> Option<usize> {
    match status {
        0x80..=0xBF | 0xE0..=0xEF => Some(2),
        0xC0..=0xDF => Some(1),
        0xF1 | 0xF3 => Some(1),
        0xF2 => Some(2),
        0xF6 | 0xF8 | 0xFA | 0xFB | 0xFC | 0xFE | 0xFF => Some(0),
        _ => None,
    }
}

impl fmt::Debug for ShortMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortMsg({})", HexBytes(self.as_bytes()))
    }
}

/// Formats bytes as uppercase hex separated by spaces: `90 3C 64`.
pub struct HexBytes<'a>(pub &'a [u8]);

impl fmt::Display for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Parses `"F0 00 4A 7F F7"` (spaces optional between pairs, case-insensitive) into bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.is_empty() {
        return Err("no bytes given".into());
    }
    // Slicing by two bytes below needs ASCII (a multi-byte character panicked there; found by
    // the fuzz replay).
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("{c:?} is not a hex digit in {s:?} (write bytes as hex pairs, e.g. \"F0 7F F7\")"));
    }
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits in {s:?} (write each byte as two digits, e.g. \"F0 7F F7\")"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("{:?} is not a hex byte in {s:?}", &digits[i..i + 2]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_with_any_character_is_an_error_not_a_panic() {
        assert_eq!(parse_hex("f0 7f F7").unwrap(), vec![0xF0, 0x7F, 0xF7]);
        assert!(parse_hex("F0 0\u{e9} F7").unwrap_err().contains("'é' is not a hex digit"));
        assert!(parse_hex("\u{fffd}0").is_err());
        assert!(parse_hex("GG").unwrap_err().contains("'G' is not a hex digit"));
    }

    #[test]
    fn channel_bounds() {
        assert!(Channel::from_user(0).is_none());
        assert!(Channel::from_user(17).is_none());
        assert_eq!(Channel::from_user(16).unwrap().wire(), 15);
        assert!(Channel::new(16).is_none());
    }

    #[test]
    fn short_msg_checks_bytes() {
        assert!(ShortMsg::from_bytes(&[0xB0, 0x14, 0x7F]).is_some());
        assert!(ShortMsg::from_bytes(&[0xB0, 0x14, 0x80]).is_none());
        assert!(ShortMsg::from_bytes(&[0xB0, 0x14]).is_none());
        assert!(ShortMsg::from_bytes(&[0x14, 0x7F]).is_none());
        assert!(ShortMsg::from_bytes(&[0xF0, 0x7F, 0xF7]).is_none());
        assert_eq!(ShortMsg::from_bytes(&[0xC5, 0x03]).unwrap().as_bytes(), &[0xC5, 0x03]);
    }

    #[test]
    fn note_classification() {
        let ch = Channel::new(2).unwrap();
        assert_eq!(ShortMsg::note_on(ch, 60, 80).as_note_on(), Some((ch, 60)));
        assert_eq!(ShortMsg::note_on(ch, 60, 0).as_note_off(), Some((ch, 60)));
        assert_eq!(ShortMsg::note_off(ch, 60).as_note_off(), Some((ch, 60)));
        assert_eq!(ShortMsg::note_off(ch, 60).as_note_on(), None);
    }

    #[test]
    fn hex_round_trip() {
        let b = parse_hex("f0 00 4A4f 7F f7").unwrap();
        assert_eq!(HexBytes(&b).to_string(), "F0 00 4A 4F 7F F7");
        assert!(parse_hex("F0 0").is_err());
        assert!(parse_hex("ZZ").is_err());
        assert!(parse_hex("  ").is_err());
    }

    #[test]
    fn parse_many_messages() {
        let m = Message::parse_many(&parse_hex("B0 63 01 B0 62 05 F0 00 4A 7F F7 C3 07").unwrap()).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].as_bytes(), &[0xF0, 0x00, 0x4A, 0x7F, 0xF7]);
        assert!(Message::parse_many(&[0xB0, 0x14]).is_err());
        assert!(Message::parse_many(&[0xB0, 0x14, 0x80]).is_err());
        assert!(Message::parse_many(&[0xF0, 0x00]).is_err());
        assert!(Message::parse_many(&[0x14]).is_err());
    }

    #[test]
    fn micros_display() {
        assert_eq!(Micros(61_234_567).to_string(), "1:01.234");
    }
}
