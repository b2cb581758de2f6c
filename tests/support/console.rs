//! A scripted organ console on JACK: a client with a MIDI output (what the console sends when
//! the organist acts — at once, or each message at its own time on JACK's clock, to the frame)
//! and a MIDI input (what it is sent, recorded with JACK's time of the frame it arrived in, and
//! with the frame itself: see [`HeardAt`]).
//!
//! The process callback only moves messages between preallocated lock-free rings and the
//! ports; the test thread fills and drains the rings.

use jack::{AsyncClient, Client, ClientOptions, Control, MidiIn, MidiOut, Port, ProcessScope, RawMidi};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// A message received by the console: JACK time in µs of its frame, and its bytes.
pub type Heard = (u64, Vec<u8>);

/// A message received by the console, with the clocks it can be timed by.
///
/// To measure the time between two messages, use `frame`: the server's sample clock, which is
/// what a sound card plays out by. `usecs` is JACK's estimate of when the frame's cycle began
/// (jack2's filtered wake-up time, `jack_get_cycle_times`); with the dummy backend on a busy
/// machine that estimate wanders by tens of milliseconds from one cycle to the next, while the
/// frames keep to the time the callbacks actually ran. The frames lose time only where the
/// server stalled (an xrun: the dummy backend then carries on from where it stopped); `now`, the
/// system time at which the console's callback ran, shows that.
#[derive(Debug, Clone)]
pub struct HeardAt {
    /// JACK µs of its frame (as in [`Heard`]).
    pub usecs: u64,
    /// The frame it arrived at: the cycle's first frame plus its offset (wraps after a day).
    pub frame: u64,
    /// JACK's system time (µs, `jack_get_time`) when the console's callback ran.
    pub now: u64,
    pub bytes: Vec<u8>,
}

/// Room for a performance's messages scheduled ahead.
const TIMED: usize = 1 << 16;

pub struct Proc {
    out: Port<MidiOut>,
    inp: Port<MidiIn>,
    to_send: HeapCons<Vec<u8>>,
    heard: HeapProd<HeardAt>,
    /// Messages to send at a JACK time (µs), in time order.
    timed: HeapCons<Heard>,
    /// What was sent at a time: the JACK time of the frame it was written at.
    sent: HeapProd<Heard>,
}

/// Writes the timed messages due before the end of this cycle, each at the frame its time falls
/// on (a time already past goes at the first free frame), and notes the time of that frame.
fn send_timed(
    timed: &mut HeapCons<Heard>,
    sent: &mut HeapProd<Heard>,
    w: &mut jack::MidiWriter,
    ps: &ProcessScope,
    mut offset: u32,
) {
    let Ok(t) = ps.cycle_times() else { return };
    let n = ps.n_frames().max(1);
    let span = t.next_usecs.saturating_sub(t.current_usecs).max(1);
    while let Some((due, _)) = timed.first() {
        if *due >= t.next_usecs {
            break;
        }
        let (due, bytes) = timed.try_pop().expect("first exists");
        let frame = (due.saturating_sub(t.current_usecs) * u64::from(n) / span) as u32;
        offset = frame.max(offset).min(n - 1);
        if w.write(&RawMidi { time: offset, bytes: &bytes }).is_ok() {
            let at = t.current_usecs + span * u64::from(offset) / u64::from(n);
            let _ = sent.try_push((at, bytes));
        }
    }
}

impl jack::ProcessHandler for Proc {
    fn process(&mut self, c: &Client, ps: &ProcessScope) -> Control {
        let times = ps.cycle_times().ok();
        let n = u64::from(ps.n_frames().max(1));
        let now = c.time();
        let first = u64::from(ps.last_frame_time());
        for ev in self.inp.iter(ps) {
            let usecs = times
                .map_or(0, |t| t.current_usecs + t.next_usecs.saturating_sub(t.current_usecs) * u64::from(ev.time) / n);
            let frame = first + u64::from(ev.time);
            let _ = self.heard.try_push(HeardAt { usecs, frame, now, bytes: ev.bytes.to_vec() });
        }
        let mut w = self.out.writer(ps);
        let mut offset = 0u32;
        while let Some(m) = self.to_send.try_pop() {
            let _ = w.write(&RawMidi { time: offset.min(ps.n_frames() - 1), bytes: &m });
            offset += 1;
        }
        send_timed(&mut self.timed, &mut self.sent, &mut w, ps, offset);
        Control::Continue
    }
}

pub struct Console {
    client: AsyncClient<(), Proc>,
    to_send: HeapProd<Vec<u8>>,
    heard: HeapCons<HeardAt>,
    timed: HeapProd<Heard>,
    sent: HeapCons<Heard>,
    pub name: String,
}

impl Console {
    /// Opens the client `name` with ports `out` and `in`.
    pub fn open(name: &str) -> Result<Console, String> {
        let (client, _) = Client::new(name, ClientOptions::NO_START_SERVER).map_err(|e| format!("console: {e}"))?;
        let name = client.name().to_string();
        let out = client.register_port("out", MidiOut::default()).map_err(|e| e.to_string())?;
        let inp = client.register_port("in", MidiIn::default()).map_err(|e| e.to_string())?;
        let (tx, to_send) = HeapRb::<Vec<u8>>::new(4096).split();
        let (heard_tx, heard) = HeapRb::<HeardAt>::new(4096).split();
        let (timed_tx, timed) = HeapRb::<Heard>::new(TIMED).split();
        let (sent_tx, sent) = HeapRb::<Heard>::new(TIMED).split();
        let client = client
            .activate_async((), Proc { out, inp, to_send, heard: heard_tx, timed, sent: sent_tx })
            .map_err(|e| format!("console: {e}"))?;
        Ok(Console { client, to_send: tx, heard, timed: timed_tx, sent, name })
    }

    pub fn out_port(&self) -> String {
        format!("{}:out", self.name)
    }

    pub fn in_port(&self) -> String {
        format!("{}:in", self.name)
    }

    /// Sends messages, in order, in the next cycle.
    pub fn send(&mut self, msgs: &[Vec<u8>]) {
        for m in msgs {
            let _ = self.to_send.try_push(m.clone());
        }
    }

    /// Sends each message at its JACK time (µs, as `Client::time`), in time order.
    pub fn schedule(&mut self, msgs: &[Heard]) {
        for m in msgs {
            assert!(self.timed.try_push(m.clone()).is_ok(), "more than {TIMED} messages scheduled");
        }
    }

    /// The scheduled messages sent since the last call, with the JACK time of their frame.
    pub fn take_sent(&mut self) -> Vec<Heard> {
        let mut v = Vec::new();
        while let Some(h) = self.sent.try_pop() {
            v.push(h);
        }
        v
    }

    /// JACK's clock now (µs).
    pub fn now(&self) -> u64 {
        self.client.as_client().time()
    }

    /// What was received since the last call (this or [`Console::take_heard_at`]).
    pub fn take_heard(&mut self) -> Vec<Heard> {
        self.take_heard_at().into_iter().map(|h| (h.usecs, h.bytes)).collect()
    }

    /// What was received since the last call (this or [`Console::take_heard`]), with its frame.
    pub fn take_heard_at(&mut self) -> Vec<HeardAt> {
        let mut v = Vec::new();
        while let Some(h) = self.heard.try_pop() {
            v.push(h);
        }
        v
    }

    /// The server's sample rate (frames a second).
    pub fn sample_rate(&self) -> u64 {
        self.client.as_client().sample_rate() as u64
    }

    pub fn client(&self) -> &Client {
        self.client.as_client()
    }
}

/// `heard` without the blocks it holds twice in a row where `record` holds them once (how
/// jack2 may double a stalled cycle's messages for a receiver), and how many messages that
/// removed. Anything else that differs is left as it was, for the caller's comparison.
pub fn undouble<'a>(record: &[&'a Vec<u8>], heard: &[&'a Vec<u8>]) -> (Vec<&'a Vec<u8>>, usize) {
    let mut out: Vec<&Vec<u8>> = Vec::with_capacity(heard.len());
    let (mut i, mut j, mut removed) = (0, 0, 0);
    while j < heard.len() {
        if i < record.len() && record[i] == heard[j] {
            out.push(heard[j]);
            i += 1;
            j += 1;
            continue;
        }
        // A block of up to 32 messages that repeats the one just heard.
        let repeat = (1..=32.min(out.len())).find(|&k| j + k <= heard.len() && heard[j..j + k] == out[out.len() - k..]);
        match repeat {
            Some(k) => {
                j += k;
                removed += k;
            }
            None => {
                out.extend_from_slice(&heard[j..]);
                break;
            }
        }
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::undouble;

    #[test]
    fn a_doubled_block_is_taken_out_and_nothing_else() {
        let m = |b: u8| vec![0x90, b, 0x50];
        let (a, b, c, d) = (m(1), m(2), m(3), m(4));
        let record = [&a, &b, &c, &d];
        let (out, n) = undouble(&record, &[&a, &b, &a, &b, &c, &d]);
        assert_eq!((out, n), (record.to_vec(), 2));
        // A missing message is not a doubling: left for the comparison to fail on.
        let (out, n) = undouble(&record, &[&a, &b, &d]);
        assert_eq!((out, n), (vec![&a, &b, &d], 0));
        // A repeat that the record holds too is the record's.
        let record2 = [&a, &a, &b];
        assert_eq!(undouble(&record2, &[&a, &a, &b]), (record2.to_vec(), 0));
    }
}
