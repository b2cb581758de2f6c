//! A scripted organ console on JACK: a client with a MIDI output (what the console sends when
//! the organist acts) and a MIDI input (what it is sent, recorded with JACK's time of the frame
//! it arrived in).
//!
//! The process callback only moves messages between preallocated lock-free rings and the
//! ports; the test thread fills and drains the rings.

use jack::{AsyncClient, Client, ClientOptions, Control, MidiIn, MidiOut, Port, ProcessScope, RawMidi};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// A message received by the console: JACK time in µs of its frame, and its bytes.
pub type Heard = (u64, Vec<u8>);

pub struct Proc {
    out: Port<MidiOut>,
    inp: Port<MidiIn>,
    to_send: HeapCons<Vec<u8>>,
    heard: HeapProd<Heard>,
}

impl jack::ProcessHandler for Proc {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        let times = ps.cycle_times().ok();
        let n = u64::from(ps.n_frames().max(1));
        for ev in self.inp.iter(ps) {
            let at = times.map_or(0, |t| t.current_usecs + (t.next_usecs - t.current_usecs) * u64::from(ev.time) / n);
            let _ = self.heard.try_push((at, ev.bytes.to_vec()));
        }
        let mut w = self.out.writer(ps);
        let mut offset = 0u32;
        while let Some(m) = self.to_send.try_pop() {
            let _ = w.write(&RawMidi { time: offset.min(ps.n_frames() - 1), bytes: &m });
            offset += 1;
        }
        Control::Continue
    }
}

pub struct Console {
    client: AsyncClient<(), Proc>,
    to_send: HeapProd<Vec<u8>>,
    heard: HeapCons<Heard>,
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
        let (heard_tx, heard) = HeapRb::<Heard>::new(4096).split();
        let client = client
            .activate_async((), Proc { out, inp, to_send, heard: heard_tx })
            .map_err(|e| format!("console: {e}"))?;
        Ok(Console { client, to_send: tx, heard, name })
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

    /// What was received since the last call.
    pub fn take_heard(&mut self) -> Vec<Heard> {
        let mut v = Vec::new();
        while let Some(h) = self.heard.try_pop() {
            v.push(h);
        }
        v
    }

    pub fn client(&self) -> &Client {
        self.client.as_client()
    }
}
