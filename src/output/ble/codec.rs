//! The BLE-MIDI packet format: a [`Packer`] that turns timestamped MIDI messages into as few
//! characteristic values ("packets") as fit, and a [`Decoder`] for the same format.
//!
//! Pure: no I/O, no clocks, no threads. The packer runs on the BLE worker thread (it reuses its
//! buffers, so steady-state packing does not allocate); the decoder serves the tests and, later,
//! MIDI input. Nothing here depends on the `ble` cargo feature.
//!
//! # The format
//! References are to the MIDI Manufacturers Association's *Specification for MIDI over
//! Bluetooth Low Energy (BLE-MIDI)* 1.0 (2015), by the titles of its packet-encoding sections:
//!
//! ```text
//! packet  = header message* | header sysex-continuation message*
//! header  = 10hhhhhh                 timestamp bits 12..7 (the "timestampHigh")
//! message = 1lllllll status data*    a timestamp byte (bits 6..0, "timestampLow"), a full message
//!         | 1lllllll data+           running status with its own timestamp
//!         | data+                    running status, same timestamp as the previous message
//! sysex   = 1lllllll F0 data* (packet break: next packet is header data*)... 1lllllll F7
//! ```
//!
//! - Timestamps are milliseconds modulo 8192 (13 bits). Within a packet, a timestampLow smaller
//!   than the previous one means timestampHigh advanced by one ("timestamp overflow"); so the
//!   packer only puts a message into the open packet when it is 0 to 127 ms after the previous
//!   message there, which keeps the reconstruction unambiguous.
//! - Running status ("Running Status" in the spec) holds only inside a packet: the first message of
//!   every packet carries its status byte. Only channel messages (80-EF) use it.
//! - A SysEx that does not fit continues in the next packet, whose header is followed directly
//!   by SysEx data bytes without a timestamp byte; the closing F7 is always preceded by its own
//!   timestamp byte ("System Exclusive" in the spec). System real-time messages may be
//!   interleaved in a SysEx, each with a timestamp byte (the decoder accepts them; the packer
//!   never produces them).
//! - A packet is at most MTU − 3 bytes (the ATT write header takes 3): 20 with the default
//!   ATT MTU of 23.
//!
//! # What the packer does, conservatively
//! - Every message gets its timestamp byte by default ([`RunningStatus::WithTimestamp`]): the
//!   spec lets a running-status message without a timestamp byte reuse the previous timestamp,
//!   but receivers differ in how well they handle that form; [`RunningStatus::Compact`] enables
//!   it, [`RunningStatus::Off`] disables running status altogether.
//! - Any system message (F0-FF) ends running status in the packer, although the spec says system
//!   common and real-time messages do not cancel it: never relying on that is always valid.
//! - Messages are packed greedily in the order given, so a batch takes the fewest packets this
//!   order allows. A SysEx starts in the open packet when at least three bytes are left there.

use std::fmt;

use crate::midi::expected_data_len;

/// BLE-MIDI timestamps count milliseconds modulo this (13 bits).
pub const TIMESTAMP_MODULUS: u64 = 8192;
/// The payload of a packet with the default ATT MTU of 23.
pub const DEFAULT_MAX_PAYLOAD: usize = 20;
/// The smallest payload the packer accepts: header, timestamp and a 3-byte message.
pub const MIN_PAYLOAD: usize = 5;
/// The largest payload the packer produces (the ATT attribute value limit is 512 bytes).
pub const MAX_PAYLOAD: usize = 512;
/// The decoder gives up on a SysEx longer than this (bytes, including F0 and F7).
pub const MAX_SYSEX: usize = 65_536;

/// The packet payload size for an ATT MTU: MTU − 3, kept within [`MIN_PAYLOAD`]..=[`MAX_PAYLOAD`].
pub fn payload_for_mtu(mtu: u16) -> usize {
    usize::from(mtu).saturating_sub(3).clamp(MIN_PAYLOAD, MAX_PAYLOAD)
}

/// The 13-bit BLE-MIDI timestamp of a millisecond time.
pub fn timestamp13(ms: u64) -> u16 {
    (ms % TIMESTAMP_MODULUS) as u16
}

/// How the packer uses running status (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunningStatus {
    /// Every message carries its status byte.
    Off,
    /// A repeated channel status inside a packet is left out; every message keeps its timestamp
    /// byte.
    #[default]
    WithTimestamp,
    /// Like `WithTimestamp`, and the timestamp byte is also left out when the message has the same
    /// timestamp as the previous one.
    Compact,
}

/// A message the packer refuses. `Copy` with static text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeError(pub &'static str);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode as BLE-MIDI: {}", self.0)
    }
}

impl std::error::Error for EncodeError {}

/// Checks one complete MIDI message: a status byte with its data bytes, or `F0 data* F7`.
fn check_message(msg: &[u8]) -> Result<(), EncodeError> {
    let (&status, data) = msg.split_first().ok_or(EncodeError("empty message"))?;
    if status < 0x80 {
        return Err(EncodeError("the message does not start with a status byte"));
    }
    if status == 0xF0 {
        let (&last, body) = data.split_last().ok_or(EncodeError("SysEx without its closing F7"))?;
        if last != 0xF7 {
            return Err(EncodeError("SysEx without its closing F7"));
        }
        if body.iter().any(|&b| b > 0x7F) {
            return Err(EncodeError("SysEx data byte above 7F"));
        }
        return Ok(());
    }
    let n = expected_data_len(status).ok_or(EncodeError("undefined or lone status byte"))?;
    if data.len() != n {
        return Err(EncodeError("wrong number of data bytes for the status byte"));
    }
    if data.iter().any(|&b| b > 0x7F) {
        return Err(EncodeError("data byte above 7F"));
    }
    Ok(())
}

/// Packs timestamped MIDI messages into BLE-MIDI packets.
///
/// Push messages in the order they are to be played, then [`finish`](Packer::finish) and read
/// [`packets`](Packer::packets); [`clear`](Packer::clear) keeps the buffers for the next batch.
///
/// ```
/// use organ::output::ble::codec::Packer;
/// let mut p = Packer::new(20);
/// p.push(1000, &[0x90, 60, 100]).unwrap(); // 1000 ms = 0b00111_1101000
/// p.push(1000, &[0x90, 64, 100]).unwrap();
/// p.finish();
/// // header 10_000111, timestamp 1_1101000, note-on, then running status with its timestamp
/// assert_eq!(p.packets().collect::<Vec<_>>(), [&[0x87, 0xE8, 0x90, 60, 100, 0xE8, 64, 100][..]]);
/// ```
#[derive(Debug, Clone)]
pub struct Packer {
    max: usize,
    mode: RunningStatus,
    /// Finished packets back to back, then the open one from `start`.
    buf: Vec<u8>,
    /// End offsets of the finished packets in `buf`.
    ends: Vec<usize>,
    /// A packet is open at `buf[start..]`.
    open: bool,
    start: usize,
    /// Time of the last message put into the open packet.
    last_ms: u64,
    /// The running status of the open packet.
    running: Option<u8>,
}

impl Packer {
    /// A packer producing packets of at most `max_payload` bytes (clamped to
    /// [`MIN_PAYLOAD`]..=[`MAX_PAYLOAD`]), with [`RunningStatus::WithTimestamp`].
    pub fn new(max_payload: usize) -> Packer {
        Packer::with_running_status(max_payload, RunningStatus::default())
    }

    /// A packer with an explicit running-status mode.
    pub fn with_running_status(max_payload: usize, mode: RunningStatus) -> Packer {
        Packer {
            max: max_payload.clamp(MIN_PAYLOAD, MAX_PAYLOAD),
            mode,
            buf: Vec::with_capacity(4 * max_payload.clamp(MIN_PAYLOAD, MAX_PAYLOAD)),
            ends: Vec::with_capacity(8),
            open: false,
            start: 0,
            last_ms: 0,
            running: None,
        }
    }

    /// The largest packet this packer produces.
    pub fn max_payload(&self) -> usize {
        self.max
    }

    /// Changes the packet size (e.g. after a reconnect negotiated another MTU). Finishes the open
    /// packet first.
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.finish();
        self.max = max_payload.clamp(MIN_PAYLOAD, MAX_PAYLOAD);
    }

    fn room(&self) -> usize {
        self.max - (self.buf.len() - self.start)
    }

    fn open_packet(&mut self, ms: u64) {
        self.finish();
        self.start = self.buf.len();
        self.buf.push(0x80 | ((timestamp13(ms) >> 7) as u8 & 0x3F));
        self.open = true;
        self.last_ms = ms;
        self.running = None;
    }

    /// Whether a message at `ms` may join the open packet, time-wise.
    fn time_fits(&self, ms: u64) -> bool {
        self.open && ms >= self.last_ms && ms - self.last_ms <= 127
    }

    fn ts_byte(ms: u64) -> u8 {
        0x80 | (timestamp13(ms) as u8 & 0x7F)
    }

    /// Adds one complete message (a channel or system message, or `F0 … F7`) to be played at
    /// `ms` milliseconds (any monotonic millisecond clock; only its value modulo 8192 is sent).
    ///
    /// # Errors
    /// The bytes are not exactly one valid MIDI message; nothing is added then.
    pub fn push(&mut self, ms: u64, msg: &[u8]) -> Result<(), EncodeError> {
        check_message(msg)?;
        if !self.time_fits(ms) {
            self.open_packet(ms);
        }
        if msg[0] == 0xF0 {
            self.push_sysex(ms, &msg[1..msg.len() - 1]);
            return Ok(());
        }
        let status = msg[0];
        let is_channel = status < 0xF0;
        let use_running = self.mode != RunningStatus::Off && is_channel && self.running == Some(status);
        let need_ts = !(use_running && self.mode == RunningStatus::Compact && ms == self.last_ms);
        let need = if use_running { usize::from(need_ts) + msg.len() - 1 } else { 1 + msg.len() };
        if need > self.room() {
            // A fresh packet: header + timestamp + full message always fits (MIN_PAYLOAD).
            self.open_packet(ms);
            self.buf.push(Self::ts_byte(ms));
            self.buf.extend_from_slice(msg);
        } else if use_running {
            if need_ts {
                self.buf.push(Self::ts_byte(ms));
            }
            self.buf.extend_from_slice(&msg[1..]);
        } else {
            self.buf.push(Self::ts_byte(ms));
            self.buf.extend_from_slice(msg);
        }
        self.running = is_channel.then_some(status);
        self.last_ms = ms;
        if self.room() == 0 {
            self.finish();
        }
        Ok(())
    }

    /// `body` = the SysEx data bytes between F0 and F7. The open packet's time fits `ms`.
    fn push_sysex(&mut self, ms: u64, body: &[u8]) {
        if self.room() < 3 {
            self.open_packet(ms);
        }
        self.buf.push(Self::ts_byte(ms));
        self.buf.push(0xF0);
        self.running = None;
        self.last_ms = ms;
        let mut rest = body;
        while !rest.is_empty() {
            if self.room() == 0 {
                // Continuation packet: header, then data bytes straight away.
                self.open_packet(ms);
            }
            let n = self.room().min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        if self.room() < 2 {
            self.open_packet(ms);
        }
        self.buf.push(Self::ts_byte(ms));
        self.buf.push(0xF7);
        if self.room() == 0 {
            self.finish();
        }
    }

    /// Closes the open packet, if any. Call before reading [`packets`](Packer::packets).
    pub fn finish(&mut self) {
        if self.open {
            self.ends.push(self.buf.len());
            self.open = false;
            self.running = None;
        }
    }

    /// The finished packets, in order.
    pub fn packets(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.ends.iter().enumerate().map(|(i, &end)| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.buf[start..end]
        })
    }

    /// Number of packets begun, finished or open: the message just pushed ends in packet
    /// `packets_begun() - 1`.
    pub fn packets_begun(&self) -> usize {
        self.ends.len() + usize::from(self.open)
    }

    /// Number of finished packets.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No finished packet and no open one.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty() && !self.open
    }

    /// Forgets all packets (finished and open), keeping the buffers.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.open = false;
        self.start = 0;
        self.running = None;
    }
}

/// Packs a list of `(ms, message)` into packets of at most `max_payload` bytes.
///
/// # Errors
/// The first message that is not valid MIDI.
pub fn encode<'a>(
    max_payload: usize,
    items: impl IntoIterator<Item = (u64, &'a [u8])>,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let mut p = Packer::new(max_payload);
    for (ms, msg) in items {
        p.push(ms, msg)?;
    }
    p.finish();
    Ok(p.packets().map(<[u8]>::to_vec).collect())
}

/// One message taken out of BLE-MIDI packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The 13-bit millisecond timestamp (0-8191). For a SysEx, the timestamp of its F0.
    pub timestamp: u16,
    /// The complete message, with its status byte (running status restored); a SysEx from F0 to
    /// F7.
    pub bytes: Vec<u8>,
}

/// Why (part of) a packet could not be decoded. `at` is the byte offset in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The first byte is not `10hhhhhh`.
    BadHeader(u8),
    /// A data byte where there is no running status to apply (or no timestamp yet).
    NoRunningStatus { at: usize },
    /// The packet ends inside a message (or right after a timestamp byte).
    Truncated { at: usize },
    /// A status byte that is not a complete message's start here (e.g. F7 outside a SysEx,
    /// an undefined status, or a status byte among a message's data bytes).
    UnexpectedStatus { at: usize, byte: u8 },
    /// A SysEx was interrupted by something other than a timestamp + F7 or real-time message,
    /// or a continuation packet arrived when no SysEx was open.
    BrokenSysex { at: usize },
    /// A SysEx longer than [`MAX_SYSEX`].
    SysexTooLong,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadHeader(b) => write!(f, "header byte {b:02X} is not 10hhhhhh"),
            DecodeError::NoRunningStatus { at } => write!(f, "byte {at}: data byte without a running status"),
            DecodeError::Truncated { at } => write!(f, "byte {at}: the packet ends inside a message"),
            DecodeError::UnexpectedStatus { at, byte } => write!(f, "byte {at}: unexpected status byte {byte:02X}"),
            DecodeError::BrokenSysex { at } => write!(f, "byte {at}: SysEx interrupted"),
            DecodeError::SysexTooLong => write!(f, "SysEx longer than {MAX_SYSEX} bytes"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes BLE-MIDI packets into messages. Keeps the state of a SysEx that spans packets, so feed
/// it the packets of one connection in order.
///
/// Never panics, whatever the bytes. On an error, the messages decoded before the bad byte are
/// delivered, the rest of that packet is skipped and any open SysEx is dropped.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    /// The open SysEx (from F0), if any, and its timestamp.
    sysex: Option<(u16, Vec<u8>)>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Whether a SysEx is open, waiting for its continuation.
    pub fn in_sysex(&self) -> bool {
        self.sysex.is_some()
    }

    /// Decodes one packet, appending its messages to `out`. An empty packet (what a BLE-MIDI
    /// device answers to a read) holds no messages.
    ///
    /// # Errors
    /// A malformed packet (see [`DecodeError`]); the messages before the fault are in `out`.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<Decoded>) -> Result<(), DecodeError> {
        let r = self.decode_inner(packet, out);
        if r.is_err() {
            self.sysex = None;
        }
        r
    }

    fn append_sysex(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        if let Some((_, buf)) = &mut self.sysex {
            if buf.len() + data.len() > MAX_SYSEX {
                return Err(DecodeError::SysexTooLong);
            }
            buf.extend_from_slice(data);
        }
        Ok(())
    }

    fn decode_inner(&mut self, p: &[u8], out: &mut Vec<Decoded>) -> Result<(), DecodeError> {
        let Some(&header) = p.first() else { return Ok(()) };
        if header & 0xC0 != 0x80 {
            return Err(DecodeError::BadHeader(header));
        }
        let mut high = u16::from(header & 0x3F);
        let mut last_low: Option<u8> = None;
        let mut ts: Option<u16> = None;
        let mut running: Option<u8> = None;
        let mut i = 1;
        // SysEx data bytes straight after the header continue the open SysEx.
        let data_end = |from: usize| from + p[from..].iter().take_while(|&&b| b < 0x80).count();
        if i < p.len() && p[i] < 0x80 {
            if self.sysex.is_none() {
                return Err(DecodeError::BrokenSysex { at: i });
            }
            let end = data_end(i);
            self.append_sysex(&p[i..end])?;
            i = end;
        }
        while i < p.len() {
            let b = p[i];
            if b >= 0x80 {
                // A timestamp byte; a smaller timestampLow than the last one means overflow.
                let low = b & 0x7F;
                if last_low.is_some_and(|l| low < l) {
                    high = (high + 1) & 0x3F;
                }
                last_low = Some(low);
                let t = (high << 7) | u16::from(low);
                ts = Some(t);
                i += 1;
                let &m = p.get(i).ok_or(DecodeError::Truncated { at: i })?;
                if self.sysex.is_some() {
                    match m {
                        0xF7 => {
                            self.append_sysex(&[0xF7])?;
                            if let Some((t0, bytes)) = self.sysex.take() {
                                out.push(Decoded { timestamp: t0, bytes });
                            }
                            i += 1;
                        }
                        0xF8..=0xFF if m != 0xF9 && m != 0xFD => {
                            out.push(Decoded { timestamp: t, bytes: vec![m] });
                            i += 1;
                            // The SysEx may go on after the real-time message.
                            let end = data_end(i);
                            self.append_sysex(&p[i..end])?;
                            i = end;
                        }
                        _ => return Err(DecodeError::BrokenSysex { at: i }),
                    }
                    continue;
                }
                if m < 0x80 {
                    // Running status with its own timestamp.
                    let status = running.ok_or(DecodeError::NoRunningStatus { at: i })?;
                    i = take_message(p, i, status, false, t, out)?;
                    continue;
                }
                match m {
                    0xF0 => {
                        self.sysex = Some((t, vec![0xF0]));
                        i += 1;
                        let end = data_end(i);
                        self.append_sysex(&p[i..end])?;
                        i = end;
                    }
                    _ => {
                        i = take_message(p, i, m, true, t, out)?;
                        if m < 0xF0 {
                            running = Some(m);
                        }
                    }
                }
            } else {
                // Running status without a timestamp byte: the previous timestamp applies.
                let (Some(status), Some(t)) = (running, ts) else {
                    return Err(DecodeError::NoRunningStatus { at: i });
                };
                i = take_message(p, i, status, false, t, out)?;
            }
        }
        Ok(())
    }
}

/// Takes one message at `p[i..]`: the status byte itself when `with_status`, else only the data
/// bytes of `status`. Returns the index after it.
fn take_message(
    p: &[u8],
    i: usize,
    status: u8,
    with_status: bool,
    t: u16,
    out: &mut Vec<Decoded>,
) -> Result<usize, DecodeError> {
    let n = expected_data_len(status).ok_or(DecodeError::UnexpectedStatus { at: i, byte: status })?;
    let data_at = i + usize::from(with_status);
    let data = p.get(data_at..data_at + n).ok_or(DecodeError::Truncated { at: p.len() })?;
    if let Some(k) = data.iter().position(|&d| d >= 0x80) {
        return Err(DecodeError::UnexpectedStatus { at: data_at + k, byte: data[k] });
    }
    if !with_status && n == 0 {
        // A data byte cannot stand for a message without data bytes.
        return Err(DecodeError::NoRunningStatus { at: i });
    }
    let mut bytes = Vec::with_capacity(1 + n);
    bytes.push(status);
    bytes.extend_from_slice(data);
    out.push(Decoded { timestamp: t, bytes });
    Ok(data_at + n)
}

/// Decodes a sequence of packets of one connection.
///
/// # Errors
/// The first malformed packet (its index and the error).
pub fn decode_all<'a>(packets: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Decoded>, (usize, DecodeError)> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for (k, p) in packets.into_iter().enumerate() {
        d.decode(p, &mut out).map_err(|e| (k, e))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(max: usize, items: &[(u64, &[u8])]) -> Vec<Vec<u8>> {
        encode(max, items.iter().copied()).unwrap()
    }

    fn dec(packets: &[Vec<u8>]) -> Vec<(u16, Vec<u8>)> {
        decode_all(packets.iter().map(|p| &p[..])).unwrap().into_iter().map(|d| (d.timestamp, d.bytes)).collect()
    }

    // Byte-exact vectors, worked out by hand from the spec's packet-encoding figures.

    #[test]
    fn one_full_message() {
        // Spec, "BLE Packet with One Full MIDI Message": header, timestamp, message.
        // t = 0: header 1000_0000, timestamp 1000_0000.
        assert_eq!(enc(20, &[(0, &[0x90, 0x3C, 0x64])]), [vec![0x80, 0x80, 0x90, 0x3C, 0x64]]);
        // t = 8191 = 0b111111_1111111: header 1011_1111, timestamp 1111_1111.
        assert_eq!(enc(20, &[(8191, &[0x80, 0x3C, 0x00])]), [vec![0xBF, 0xFF, 0x80, 0x3C, 0x00]]);
        // 13 bits only: 8192 + 130 ms is sent as 130 = 0b000001_0000010.
        assert_eq!(enc(20, &[(8192 + 130, &[0xC0, 0x05])]), [vec![0x81, 0x82, 0xC0, 0x05]]);
    }

    #[test]
    fn running_status_keeps_timestamps() {
        // Spec "Running Status": the status byte may be left out when it repeats the previous
        // message's inside the packet; by default we always keep the timestamp byte.
        let items: [(u64, &[u8]); 3] = [(10, &[0x91, 60, 90]), (10, &[0x91, 64, 90]), (12, &[0x81, 60, 0])];
        assert_eq!(enc(20, &items), [vec![0x80, 0x8A, 0x91, 60, 90, 0x8A, 64, 90, 0x8C, 0x81, 60, 0]]);
        let mut compact = Packer::with_running_status(20, RunningStatus::Compact);
        let mut off = Packer::with_running_status(20, RunningStatus::Off);
        for (ms, m) in items {
            compact.push(ms, m).unwrap();
            off.push(ms, m).unwrap();
        }
        compact.finish();
        off.finish();
        // Compact: the second note-on reuses the timestamp too.
        assert_eq!(compact.packets().next().unwrap(), [0x80, 0x8A, 0x91, 60, 90, 64, 90, 0x8C, 0x81, 60, 0]);
        assert_eq!(off.packets().next().unwrap(), [0x80, 0x8A, 0x91, 60, 90, 0x8A, 0x91, 64, 90, 0x8C, 0x81, 60, 0]);
    }

    #[test]
    fn running_status_never_crosses_packets() {
        // Eight note-ons at one instant in 20-byte packets: header (1) + ts+full message (4)
        // + 5 × ts+data (3) = 20 holds six of them.
        let notes: Vec<[u8; 3]> = (0..8).map(|k| [0x90, 60 + k, 100]).collect();
        let items: Vec<(u64, &[u8])> = notes.iter().map(|n| (0u64, &n[..])).collect();
        let packets = enc(20, &items);
        assert_eq!(packets.len(), 2);
        assert_eq!(
            packets[0],
            [0x80, 0x80, 0x90, 60, 100, 0x80, 61, 100, 0x80, 62, 100, 0x80, 63, 100, 0x80, 64, 100, 0x80, 65, 100]
        );
        assert_eq!(packets[0].len(), 20);
        // The next packet restates the status byte.
        assert_eq!(packets[1], [0x80, 0x80, 0x90, 66, 100, 0x80, 67, 100]);
    }

    #[test]
    fn other_status_or_system_message_breaks_running_status() {
        let items: [(u64, &[u8]); 4] = [(0, &[0x90, 60, 1]), (0, &[0xF8]), (0, &[0x90, 61, 1]), (0, &[0x80, 60, 0])];
        assert_eq!(enc(64, &items), [vec![0x80, 0x80, 0x90, 60, 1, 0x80, 0xF8, 0x80, 0x90, 61, 1, 0x80, 0x80, 60, 0]]);
    }

    #[test]
    fn timestamp_overflow_inside_a_packet() {
        // Spec "Timestamp overflow": 127 → 128 ms keeps header 0 and timestampLow goes 127 → 0;
        // the receiver increments timestampHigh.
        let items: [(u64, &[u8]); 2] = [(127, &[0xB0, 7, 100]), (128, &[0xB0, 7, 90])];
        let packets = enc(20, &items);
        assert_eq!(packets, [vec![0x80, 0xFF, 0xB0, 7, 100, 0x80, 7, 90]]);
        assert_eq!(dec(&packets), [(127, vec![0xB0, 7, 100]), (128, vec![0xB0, 7, 90])]);
    }

    #[test]
    fn wrap_around_8192() {
        // 8191 → 8192 (= 0): header 0x3F, low 0x7F, then low 0 → high wraps 63 → 0.
        let items: [(u64, &[u8]); 2] = [(8191, &[0x90, 1, 2]), (8192, &[0x90, 3, 4])];
        let packets = enc(20, &items);
        assert_eq!(packets, [vec![0xBF, 0xFF, 0x90, 1, 2, 0x80, 3, 4]]);
        assert_eq!(dec(&packets), [(8191, vec![0x90, 1, 2]), (0, vec![0x90, 3, 4])]);
        // Across a long gap the timestamps simply continue modulo 8192.
        let packets = enc(20, &[(8000, &[0xC0, 1][..]), (8192 * 3 + 5, &[0xC0, 2][..])]);
        assert_eq!(packets, [vec![0xBE, 0xC0, 0xC0, 1], vec![0x80, 0x85, 0xC0, 2]]);
        assert_eq!(dec(&packets), [(8000, vec![0xC0, 1]), (5, vec![0xC0, 2])]);
    }

    #[test]
    fn more_than_127_ms_or_backwards_opens_a_new_packet() {
        let packets =
            enc(64, &[(0, &[0xC0, 1][..]), (127, &[0xC0, 2][..]), (255, &[0xC0, 3][..]), (250, &[0xC0, 4][..])]);
        // 0 → 127 fits; 127 → 255 = 128 ms does not (two overflows would be ambiguous); 250 < 255.
        assert_eq!(packets, [vec![0x80, 0x80, 0xC0, 1, 0xFF, 2], vec![0x81, 0xFF, 0xC0, 3], vec![0x81, 0xFA, 0xC0, 4]]);
        assert_eq!(
            dec(&packets),
            [(0, vec![0xC0, 1]), (127, vec![0xC0, 2]), (255, vec![0xC0, 3]), (250, vec![0xC0, 4])]
        );
    }

    #[test]
    fn maximum_size_packets() {
        // 20-byte packets exactly full: 1 + 4 + 5 × 3 = 20 (note-ons with running status).
        let notes: Vec<[u8; 3]> = (0..6).map(|k| [0x92, 40 + k, 64]).collect();
        let items: Vec<(u64, &[u8])> = notes.iter().map(|n| (5u64, &n[..])).collect();
        let packets = enc(20, &items);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].len(), 20);
        // A 244-byte payload (MTU 247) is filled exactly too, and never exceeded.
        let many: Vec<[u8; 3]> = (0..200).map(|k| [0x90 | (k % 2) as u8, (k % 128) as u8, 1]).collect();
        let items: Vec<(u64, &[u8])> = many.iter().map(|n| (0u64, &n[..])).collect();
        let packets = enc(payload_for_mtu(247), &items);
        assert!(packets.iter().all(|p| p.len() <= 244));
        // No running status (alternating channels): 1 + 60 × 4 = 241, a 61st would need 245.
        assert_eq!(packets[0].len(), 241);
        assert_eq!(dec(&packets).len(), 200);
        assert_eq!(payload_for_mtu(23), 20);
        assert_eq!(payload_for_mtu(0), MIN_PAYLOAD);
        assert_eq!(payload_for_mtu(u16::MAX), MAX_PAYLOAD);
    }

    #[test]
    fn sysex_in_one_packet() {
        // Spec "System Exclusive": ts F0 data… ts F7 (the end has its own timestamp byte).
        let gc: &[u8] = &[0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, 0x7F, 0xF7];
        let packets = enc(20, &[(3, gc)]);
        assert_eq!(packets, [vec![0x80, 0x83, 0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, 0x7F, 0x83, 0xF7]]);
        assert_eq!(dec(&packets), [(3, gc.to_vec())]);
    }

    #[test]
    fn sysex_stop_bitmap_longer_than_a_packet() {
        // A Roland-style data set with a 24-byte stop bitmap: F0 41 10 30 12 01 00 <24 bytes>
        // <sum> F7 = 33 bytes, at t = 200 ms (header 0x81, timestamp 0xC8).
        let mut sx = vec![0xF0, 0x41, 0x10, 0x30, 0x12, 0x01, 0x00];
        sx.extend((0..24).map(|k| (k * 5) as u8 & 0x7F));
        sx.push(0x2A);
        sx.push(0xF7);
        let packets = enc(20, &[(200, &[0x90, 60, 100][..]), (200, &sx[..]), (200, &[0x80, 60, 0][..])]);
        // Packet 1: header, ts+note-on (4), ts F0 (2), then 13 data bytes fill it to 20.
        let mut p1 = vec![0x81, 0xC8, 0x90, 60, 100, 0xC8, 0xF0];
        p1.extend_from_slice(&sx[1..14]);
        // Packet 2: continuation: header then data bytes directly (18 bytes to the end of the
        // data + checksum: 31 − 13 = 18 → 1 + 18 = 19 bytes), no room for ts F7 (needs 2).
        let mut p2 = vec![0x81];
        p2.extend_from_slice(&sx[14..32]);
        // Packet 3: header, ts F7, then the note-off (full status: new packet).
        let p3 = vec![0x81, 0xC8, 0xF7, 0xC8, 0x80, 60, 0];
        assert_eq!(packets, [p1, p2, p3]);
        assert!(packets.iter().all(|p| p.len() <= 20));
        assert_eq!(dec(&packets), [(200, vec![0x90, 60, 100]), (200, sx.clone()), (200, vec![0x80, 60, 0])]);
    }

    #[test]
    fn sysex_needs_three_bytes_to_start() {
        // 1 + 4 + 3 × 3 (running status) + 4 (new status) = 18 bytes: 2 left, so the SysEx opens
        // a fresh packet instead of leaving only "ts F0" behind.
        let items: [(u64, &[u8]); 6] = [
            (0, &[0xB0, 1, 1]),
            (0, &[0xB0, 2, 2]),
            (0, &[0xB0, 3, 3]),
            (0, &[0xB0, 4, 4]),
            (0, &[0xB1, 5, 5]),
            (0, &[0xF0, 0x7D, 0xF7]),
        ];
        let packets = enc(20, &items);
        assert_eq!(packets[0].len(), 18);
        assert_eq!(packets[1], [0x80, 0x80, 0xF0, 0x7D, 0x80, 0xF7]);
        // With 3 bytes left it starts right there and its end goes on: 17 + "ts F0 7D" = 20,
        // then a continuation packet holding just "ts F7".
        let mut items = items;
        items[4] = (0, &[0xC1, 5]);
        let packets = enc(20, &items);
        assert_eq!(packets[0].len(), 20);
        assert_eq!(&packets[0][17..], [0x80, 0xF0, 0x7D]);
        assert_eq!(packets[1], [0x80, 0x80, 0xF7]);
        assert_eq!(dec(&packets)[5], (0, vec![0xF0, 0x7D, 0xF7]));
    }

    #[test]
    fn packer_rejects_invalid_messages() {
        let mut p = Packer::new(20);
        for bad in [
            &[][..],
            &[0x3C, 0x40],
            &[0x90, 0x3C],
            &[0x90, 0x3C, 0x80],
            &[0xF0, 0x01],
            &[0xF0, 0x81, 0xF7],
            &[0xF7],
            &[0xF4],
        ] {
            assert!(p.push(0, bad).is_err(), "{bad:02X?}");
        }
        assert!(p.is_empty());
        p.finish();
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn packer_reuses_buffers() {
        let mut p = Packer::new(20);
        p.push(0, &[0x90, 1, 1]).unwrap();
        assert_eq!(p.packets_begun(), 1);
        p.finish();
        assert_eq!(p.packets_begun(), 1);
        let cap = p.buf.capacity();
        p.clear();
        assert!(p.is_empty());
        p.push(1, &[0x90, 2, 2]).unwrap();
        p.finish();
        assert_eq!(p.packets().collect::<Vec<_>>(), [&[0x80, 0x81, 0x90, 2, 2][..]]);
        assert_eq!(p.buf.capacity(), cap);
    }

    #[test]
    fn decoder_accepts_what_other_senders_write() {
        // Running status without timestamp bytes (spec "Running Status" allows it).
        assert_eq!(dec(&[vec![0x80, 0x81, 0x90, 60, 1, 61, 1, 62, 1]]).len(), 3);
        // A real-time message inside a SysEx, with its own timestamp byte, and the SysEx going on.
        let got = dec(&[vec![0x80, 0x81, 0xF0, 0x01, 0x82, 0xF8, 0x02, 0x83, 0xF7]]);
        assert_eq!(got, [(2, vec![0xF8]), (1, vec![0xF0, 0x01, 0x02, 0xF7])]);
        // A continuation packet that holds only the end.
        let got = dec(&[vec![0x80, 0x81, 0xF0, 0x01], vec![0x80, 0x02, 0x03], vec![0x80, 0x85, 0xF7]]);
        assert_eq!(got, [(1, vec![0xF0, 0x01, 0x02, 0x03, 0xF7])]);
        // An empty characteristic value (the answer to a read) holds nothing.
        assert_eq!(dec(&[vec![]]), []);
        assert_eq!(dec(&[vec![0x80]]), []);
    }

    #[test]
    fn decoder_rejects_garbage_without_panicking() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        assert_eq!(d.decode(&[0x40, 0x80], &mut out), Err(DecodeError::BadHeader(0x40)));
        assert_eq!(d.decode(&[0xC0, 0x80], &mut out), Err(DecodeError::BadHeader(0xC0)));
        assert_eq!(d.decode(&[0x80, 0x80], &mut out), Err(DecodeError::Truncated { at: 2 }));
        assert_eq!(d.decode(&[0x80, 0x80, 0x90, 60], &mut out), Err(DecodeError::Truncated { at: 4 }));
        assert_eq!(d.decode(&[0x80, 60, 1], &mut out), Err(DecodeError::BrokenSysex { at: 1 }));
        assert_eq!(d.decode(&[0x80, 0x80, 60, 1], &mut out), Err(DecodeError::NoRunningStatus { at: 2 }));
        assert_eq!(d.decode(&[0x80, 0x80, 0xF7], &mut out), Err(DecodeError::UnexpectedStatus { at: 2, byte: 0xF7 }));
        assert_eq!(d.decode(&[0x80, 0x80, 0xF8, 0x01], &mut out), Err(DecodeError::NoRunningStatus { at: 3 }));
        // The good message before a fault is kept; an interrupted SysEx is dropped.
        out.clear();
        assert_eq!(
            d.decode(&[0x80, 0x80, 0xC0, 1, 0x80, 0xF0, 1, 0x80, 0x90, 1, 1], &mut out),
            Err(DecodeError::BrokenSysex { at: 8 })
        );
        assert_eq!(out, [Decoded { timestamp: 0, bytes: vec![0xC0, 1] }]);
        assert!(!d.in_sysex());
    }

    fn message() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0x80u8..=0xEF, 0u8..128, 0u8..128).prop_map(|(s, a, b)| {
                let n = expected_data_len(s).unwrap();
                [s, a, b][..=n].to_vec()
            }),
            prop::sample::select(vec![0xF1u8, 0xF2, 0xF3, 0xF6, 0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF]).prop_map(|s| {
                let mut v = vec![s];
                v.extend(std::iter::repeat_n(0x11, expected_data_len(s).unwrap()));
                v
            }),
            prop::collection::vec(0u8..128, 0..70).prop_map(|body| {
                let mut v = vec![0xF0];
                v.extend(body);
                v.push(0xF7);
                v
            }),
        ]
    }

    fn mode() -> impl Strategy<Value = RunningStatus> {
        prop_oneof![Just(RunningStatus::Off), Just(RunningStatus::WithTimestamp), Just(RunningStatus::Compact)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever the messages, times and packet size: packets never exceed the payload, start
        /// with a header, and decode to exactly the messages pushed with their 13-bit timestamps.
        #[test]
        fn round_trip(
            start in 0u64..20_000,
            items in prop::collection::vec((0u64..300, message()), 0..40),
            max in MIN_PAYLOAD..64usize,
            mode in mode(),
        ) {
            let mut p = Packer::with_running_status(max, mode);
            let mut t = start;
            let mut want = Vec::new();
            for (dt, m) in &items {
                // The same instant, 0-130 ms on (around the 127 ms limit), or a jump of seconds.
                t += match *dt {
                    0..80 => 0,
                    80..211 => *dt - 80,
                    _ => *dt * 10,
                };
                p.push(t, m).unwrap();
                want.push((timestamp13(t), m.clone()));
            }
            p.finish();
            let packets: Vec<Vec<u8>> = p.packets().map(<[u8]>::to_vec).collect();
            for pk in &packets {
                prop_assert!(pk.len() <= max && pk.len() >= 2);
                prop_assert_eq!(pk[0] & 0xC0, 0x80);
            }
            prop_assert_eq!(dec(&packets), want);
        }

        /// The decoder never panics and never leaves more state than one SysEx.
        #[test]
        fn decoder_survives_garbage(packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8)) {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            for p in &packets {
                let _ = d.decode(p, &mut out);
            }
            for m in &out {
                prop_assert!(m.timestamp < 8192);
                prop_assert!(m.bytes[0] >= 0x80);
            }
        }
    }
}
