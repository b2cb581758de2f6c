//! `--from jack[:PORT]`: a JACK MIDI input port `organ-in:in` (feature `jack`; libjack is loaded
//! at run time), connected to the JACK MIDI output named (full name, or a unique
//! case-insensitive part of it).
//!
//! Threads: the JACK process callback (real-time) stamps each event with its frame's time on
//! JACK's clock and copies it into a preallocated lock-free byte ring — no allocation, no lock;
//! when the ring is full the event is dropped and counted. A reader thread of ours drains the
//! ring every few milliseconds and sends each message into the crossbeam channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jack::{AsyncClient, Client, ClientOptions, Control, MidiIn, Port, PortFlags, ProcessScope};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use super::{InputError, Received, split_messages};
use crate::midi::Micros;

fn find_output(outputs: &[String], wanted: &str) -> Result<String, String> {
    crate::output::jack::find_port(outputs, wanted, "output").map_err(|e| e.to_string())
}

/// The JACK client name (the port is `organ-in:in`, or `organ-in-01:in` if the name is taken).
pub const CLIENT_NAME: &str = "organ-in";
/// Bytes in the ring between the process callback and the reader: seconds of dense input, or a
/// few long bitmaps per cycle.
pub const RING_BYTES: usize = 1 << 18;
/// The longest message carried (a SysEx longer than this is dropped and counted).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Header of one record in the ring: JACK time (µs, 8 bytes LE) and length (4 bytes LE).
const HEADER: usize = 12;

struct Process {
    port: Port<MidiIn>,
    tx: HeapProd<u8>,
    dropped: Arc<AtomicU64>,
}

impl jack::ProcessHandler for Process {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        let n = ps.n_frames().max(1);
        let times = ps.cycle_times().ok();
        for ev in self.port.iter(ps) {
            let at = match times {
                Some(t) if t.next_usecs > t.current_usecs => {
                    t.current_usecs + t.next_usecs.saturating_sub(t.current_usecs) * u64::from(ev.time) / u64::from(n)
                }
                Some(t) => t.current_usecs,
                None => 0,
            };
            let len = ev.bytes.len();
            if len == 0 || len > MAX_MESSAGE || self.tx.vacant_len() < HEADER + len {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut head = [0u8; HEADER];
            head[..8].copy_from_slice(&at.to_le_bytes());
            head[8..].copy_from_slice(&(len as u32).to_le_bytes());
            self.tx.push_slice(&head);
            self.tx.push_slice(ev.bytes);
        }
        Control::Continue
    }
}

/// A JACK MIDI input.
pub struct JackInput {
    client: Option<AsyncClient<(), Process>>,
    port_name: String,
    connected: Option<String>,
    opened: Instant,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

fn library_missing(spec: &str, e: &str) -> InputError {
    InputError::Unavailable {
        spec: spec.into(),
        why: format!(
            "JACK is not installed here (libjack could not be loaded: {e}); install JACK (Debian/Ubuntu: apt install jackd2) or use --from port:NAME"
        ),
    }
}

impl JackInput {
    /// Creates the client and its input port, activates it, connects `source` to it when
    /// given, and starts the reader thread that feeds `tx`.
    ///
    /// # Errors
    /// libjack missing, no server running, the source port not found, or JACK refusing.
    pub fn open(
        spec: &str,
        source: Option<&str>,
        tx: crossbeam_channel::Sender<Received>,
    ) -> Result<JackInput, InputError> {
        jack::jack_sys::library().map_err(|e| library_missing(spec, &e.to_string()))?;
        jack::set_logger(jack::LoggerType::None);
        let backend = |why: String| InputError::Backend { spec: spec.into(), why };
        let (client, _) = Client::new(CLIENT_NAME, ClientOptions::NO_START_SERVER).map_err(|e| match e {
            jack::Error::LibraryError(e) => library_missing(spec, &e),
            _ => InputError::Unavailable {
                spec: spec.into(),
                why: "no JACK server is running; start one (e.g. `jackd -d alsa`, or with QjackCtl)".into(),
            },
        })?;
        let port = client.register_port("in", MidiIn::default()).map_err(|e| backend(format!("JACK: {e}")))?;
        let port_name = port.name().map_err(|e| backend(format!("JACK: {e}")))?;
        let (prod, cons) = HeapRb::<u8>::new(RING_BYTES).split();
        let dropped = Arc::new(AtomicU64::new(0));
        // JACK's clock at the moment we open: the zero of every stamp.
        let zero = client.time();
        let opened = Instant::now();
        let process = Process { port, tx: prod, dropped: Arc::clone(&dropped) };
        let active = client.activate_async((), process).map_err(|e| backend(format!("JACK: cannot activate: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let reader = std::thread::Builder::new()
            .name("organ-jack-in".into())
            .spawn(move || read_ring(cons, zero, tx, &stop2))
            .map_err(|e| backend(format!("cannot start the input thread: {e}")))?;
        let mut input =
            JackInput { client: Some(active), port_name, connected: None, opened, dropped, stop, reader: Some(reader) };
        if let Some(src) = source {
            input.connect(spec, src)?;
        }
        Ok(input)
    }

    fn connect(&mut self, spec: &str, wanted: &str) -> Result<(), InputError> {
        let client = self.client.as_ref().expect("open").as_client();
        let outputs: Vec<String> = client.ports(None, Some("midi"), PortFlags::IS_OUTPUT);
        let src = find_output(&outputs, wanted).map_err(|why| InputError::NoSuchPort { spec: spec.into(), why })?;
        match client.connect_ports_by_name(&src, &self.port_name) {
            Ok(()) | Err(jack::Error::PortAlreadyConnected(..)) => {}
            Err(e) => {
                return Err(InputError::Backend {
                    spec: spec.into(),
                    why: format!("JACK: cannot connect {src} to {}: {e}", self.port_name),
                });
            }
        }
        // Until the server routes the connection, what the console sends goes nowhere.
        if !crate::output::jack::wait_routed(client, &src, &self.port_name, crate::output::jack::CONNECT_WAIT) {
            let why = crate::output::jack::JackError::NotRouted { port: src, dest: self.port_name.clone() };
            return Err(InputError::Backend { spec: spec.into(), why: why.to_string() });
        }
        self.connected = Some(src);
        Ok(())
    }

    /// Our port's full name, e.g. `organ-in:in`.
    pub fn port_name(&self) -> &str {
        &self.port_name
    }

    /// The source port connected at open, if one was named.
    pub fn connected(&self) -> Option<&str> {
        self.connected.as_deref()
    }

    pub fn opened(&self) -> Instant {
        self.opened
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for JackInput {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            crate::output::jack::close_within(c, crate::output::jack::CLOSE_WAIT);
        }
        self.stop.store(true, Ordering::Release);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The MIDI ports of other JACK clients (outputs, inputs), when libjack loads and a server
/// runs; `None` otherwise.
pub fn midi_ports() -> Option<(Vec<String>, Vec<String>)> {
    jack::jack_sys::library().ok()?;
    jack::set_logger(jack::LoggerType::None);
    let (client, _) = Client::new("organ-ports", ClientOptions::NO_START_SERVER).ok()?;
    let mine = format!("{}:", client.name());
    let list = |flags| {
        client
            .ports(None, Some("midi"), flags)
            .into_iter()
            .filter(|p: &String| !p.starts_with(&mine))
            .collect::<Vec<_>>()
    };
    Some((list(PortFlags::IS_OUTPUT), list(PortFlags::IS_INPUT)))
}

/// The reader thread: moves records from the ring into the channel until told to stop (or the
/// channel's receiver is gone).
fn read_ring(mut rx: HeapCons<u8>, zero: u64, tx: crossbeam_channel::Sender<Received>, stop: &AtomicBool) {
    let mut head = [0u8; HEADER];
    loop {
        let stopping = stop.load(Ordering::Acquire);
        while rx.occupied_len() >= HEADER {
            rx.peek_slice(&mut head);
            let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
            if rx.occupied_len() < HEADER + len {
                break; // the body is still being written
            }
            rx.skip(HEADER);
            let mut body = vec![0u8; len];
            rx.pop_slice(&mut body);
            let at = Micros(u64::from_le_bytes(head[..8].try_into().expect("8 bytes")).saturating_sub(zero));
            for m in split_messages(&body) {
                if tx.send(Received { at, bytes: m }).is_err() {
                    return;
                }
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_source_ports() {
        let outs = vec!["console:out".to_string(), "a2j:Rodgers [20] (capture): MIDI 1".to_string()];
        assert_eq!(find_output(&outs, "console").unwrap(), "console:out");
        assert_eq!(find_output(&outs, "rodgers").unwrap(), "a2j:Rodgers [20] (capture): MIDI 1");
        assert!(find_output(&outs, "Allen").unwrap_err().contains("console:out"));
        assert!(find_output(&outs, "o").unwrap_err().contains("several"));
    }

    #[test]
    fn the_ring_carries_whole_messages_with_their_time() {
        let (mut prod, cons) = HeapRb::<u8>::new(256).split();
        for (t, bytes) in [(1_000_100u64, &[0x9F, 36, 127][..]), (1_000_200, &[0xF0, 0x41, 0x10, 0x7F, 0xF7][..])] {
            let mut head = [0u8; HEADER];
            head[..8].copy_from_slice(&t.to_le_bytes());
            head[8..].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            prod.push_slice(&head);
            prod.push_slice(bytes);
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = AtomicBool::new(true);
        read_ring(cons, 1_000_000, tx, &stop);
        let got: Vec<Received> = rx.try_iter().collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].at, &got[0].bytes[..]), (Micros(100), &[0x9F, 36, 127][..]));
        assert_eq!((got[1].at, &got[1].bytes[..]), (Micros(200), &[0xF0, 0x41, 0x10, 0x7F, 0xF7][..]));
    }
}
