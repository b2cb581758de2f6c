//! Bluetooth LE MIDI output (`--to ble:NAME`): the packet [`codec`] (always built; pure) and,
//! with the `ble` cargo feature, the btleplug link and [`BleOutput`].
//!
//! # Threads
//! - [`open`] runs on the control thread: it starts the worker thread `organ-ble`, which owns a
//!   single-threaded tokio runtime and the btleplug connection, and waits until the device is
//!   found, connected, its services discovered and the MIDI characteristic subscribed.
//! - `BleOutput::send` runs on the real-time engine thread. It copies the message into a
//!   lock-free SPSC ring (fixed-size records; SysEx bodies in a second ring of bytes) and wakes
//!   the worker; it never waits on Bluetooth.
//! - The worker drains the rings, packs everything handed over in the same instant (it lets
//!   1 ms pass after waking so that a chord handed over message by message travels together)
//!   into as few packets as the MTU allows, each message stamped with its *scheduled* time
//!   (`Stamp::due` in milliseconds, modulo 8192), and writes them without response.
//!
//! # Link loss: what the output does, and what it expects from the engine
//! A `DeviceDisconnected` event or a failed write marks the link lost: [`Output::link`](crate::output::Output::link) turns
//! [`Link::Down`](crate::output::Link::Down) at once, and the worker keeps trying to reconnect (connect → discover services →
//! subscribe; scanning again when BlueZ has forgotten the device), backing off from 0.1 to 2 s.
//!
//! A write that BlueZ leaves unanswered for 250 ms (`DOUBT_AFTER` in the worker) puts the link
//! in doubt: `link()` turns [`Link::NotAnswering`](crate::output::Link::NotAnswering), a state of
//! down that the engine treats as one, so that it does not hand over music that cannot be written
//! on time. The worker goes on waiting for that answer up to the write timeout (2 s). If the
//! answer comes, the link is restored as after a reconnect (below; counted in
//! [`BleStats::stalls`]); if not, or BlueZ answers with an error, the link is lost as above. (A
//! disconnect event that comes meanwhile is looked at once the write has ended.)
//!
//! When it gets the device back (or its answer), *before any new note* it writes:
//! 1. a note-off for every key it had delivered a note-on for and no note-off (keys on the
//!    division channels), then CC 123 on every division channel;
//! 2. the registration from a known state: the plan's cancel, then the `on` messages of every
//!    control drawn once all the plan's registration messages up to the current plan position
//!    have played (`stop_pace` apart); on a console with toggles and no General Cancel the
//!    toggles are left as they are (what reached the console before the drop is not known);
//! 3. under `pause`, what was held across the gap (below), with the spacing it was handed over
//!    with (its scheduled times, all within a second), each message stamped with its send time:
//!    not in a burst;
//!
//! and only then reports [`Link::Up`](crate::output::Link::Up). The current plan position is the largest `Stamp::plan`
//! handed over so far (under `continue`, including the messages dropped during the gap).
//!
//! The engine's side of the contract:
//! - Call [`Output::prepare`](crate::output::Output::prepare) with the plan before the first `send`: the output needs it for the
//!   division channels and the registration.
//! - `Stamp::due` and `Stamp::now` are microseconds on one monotonic engine clock that keeps
//!   running through pauses (`due` moves with them). The worker maps that clock to its own from
//!   `now`, so `now` must be taken when the message is handed over.
//! - `send` never reports `Disconnected`: while the link is down it accepts messages and applies
//!   the policy below. It returns `Overflow` only when the ring is full (4096 messages or 64 KiB
//!   of SysEx waiting), which under `pause` means the engine did not stop.
//! - Poll [`Output::link`](crate::output::Output::link) (one atomic load) every cycle.
//! - **`pause`**: when `link()` is not `Up`, stop handing messages over and stop the plan clock;
//!   a release sequence of your own (note-offs for the keys down) is fine: it is held and
//!   written with the rest. The few messages handed over between the loss (or the unanswered
//!   write) and the engine noticing it stay in the ring, and a batch whose write failed or was
//!   answered late is kept too: they are played after the restore, before `Up`, with their
//!   spacing (step 3 above). Nothing is dropped. When `link()` is `Up` again, resume with `due`
//!   shifted by the pause. Keys that were sounding when the link dropped have been released and
//!   stay silent until their next note-on (the engine may re-strike them after `Up` if it wants;
//!   they would be tracked).
//! - **`continue`**: do nothing special. While the link is down the worker takes the messages
//!   out of the ring and drops them (counted in [`BleStats::dropped`]), as it does a batch whose
//!   write failed or was answered late: what falls in the gap is never played late in a burst.
//!   Messages handed over during the restore are dropped too. (While a write is unanswered the
//!   worker is waiting on it: what the engine hands over meanwhile waits in the ring, at most 2 s
//!   of it, and is dropped when the restore begins.)
//! - At the end (done, stop, Ctrl-C, error), send the usual release sequence through `send`,
//!   then call [`Output::finish`](crate::output::Output::finish) on the control thread. If the link is up, the worker writes
//!   what is queued, then note-offs for any key still down (normally none), and disconnects. If
//!   it is down, the worker keeps trying for [`BleOutput::set_shutdown_grace`] (2 s by
//!   default); if the device comes back in time it writes the release (note-offs, CC 123, and
//!   the cancel when the plan cancels at the end) instead of the queued messages. `finish`
//!   returns within that grace plus a few seconds whatever happens. Then
//!   [`Output::report`](crate::output::Output::report) tells the user about link losses,
//!   reconnects and drops, and whether keys may still sound because the link never came back.

pub mod codec;
#[cfg_attr(not(feature = "ble"), allow(dead_code))]
mod state;

#[cfg(feature = "ble")]
mod link;
#[cfg(feature = "ble")]
mod worker;

#[cfg(feature = "ble")]
pub use link::{BleDevice, BleError, MIDI_CHARACTERISTIC, MIDI_SERVICE, Target, scan};

#[cfg(feature = "ble")]
pub use output::{BleOutput, BleStats, BleStatsHandle, open};

#[cfg(feature = "ble")]
mod output {
    use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, mpsc};
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    use ringbuf::HeapRb;
    use ringbuf::traits::{Observer, Producer, Split};

    use super::link::{BleDevice, BleError, Target};
    use super::state::{ALL_CHANNELS, division_mask};
    use super::worker::{self, Inbox, Record};
    use crate::organ::DisconnectPolicy;
    use crate::output::{FinishError, Link, Output, OutputError, OutputErrorKind, Stamp};
    use crate::plan::Timeline;

    /// Messages that can wait in the ring.
    const RECORDS: usize = 4096;
    /// SysEx bytes that can wait in the ring.
    const SYSEX_BYTES: usize = 65_536;
    const UP: u8 = 0;
    const DOWN: u8 = 1;
    const NOT_ANSWERING: u8 = 2;

    /// Counters of a BLE output, for reports.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct BleStats {
        /// Messages written to the device.
        pub messages: u64,
        /// Packets (characteristic writes) that succeeded.
        pub packets: u64,
        /// Messages handed over but never written (dropped in a gap, invalid, or discarded at
        /// shutdown while the link was down).
        pub dropped: u64,
        /// Times the link was lost.
        pub link_losses: u64,
        /// Times it was restored (release + registration sent).
        pub reconnects: u64,
        /// Times a write went unanswered past the doubt bound and was answered after all (the
        /// link then restored as after a reconnect). A write never answered is a link loss.
        pub stalls: u64,
        /// The link's ATT MTU (a packet carries at most MTU − 3 bytes).
        pub mtu: u16,
        /// The slowest packet write so far, and all writes together, in µs (how long BlueZ took
        /// to accept them).
        pub write_us_max: u64,
        pub write_us_total: u64,
    }

    /// State shared by the engine-side handle and the worker. Atomics, plus two mutexes that
    /// only the control thread and the worker touch.
    pub(crate) struct Shared {
        link: AtomicU8,
        /// The worker waits on this; `armed` says it wants a wake-up.
        pub wake: tokio::sync::Notify,
        pub armed: AtomicBool,
        pub shutdown: AtomicBool,
        pub grace_ms: AtomicU64,
        /// Division channels (bit n = wire channel n) whose keys are tracked.
        pub channels: AtomicU16,
        pub timeline: Mutex<Option<Arc<Timeline>>>,
        pub last_event: Mutex<String>,
        pub messages: AtomicU64,
        pub packets: AtomicU64,
        pub dropped: AtomicU64,
        pub link_losses: AtomicU64,
        pub reconnects: AtomicU64,
        pub stalls: AtomicU64,
        /// How the worker ended when the link was down at shutdown: [`AT_END_NORMAL`],
        /// [`AT_END_RELEASED`] or [`AT_END_GAVE_UP`].
        pub at_end: AtomicU8,
        /// Keys that may still sound when the worker gave up.
        pub keys_left: AtomicU64,
        pub mtu: AtomicU16,
        pub write_us_max: AtomicU64,
        pub write_us_total: AtomicU64,
    }

    /// The link was up at shutdown (or the worker has not ended).
    pub(crate) const AT_END_NORMAL: u8 = 0;
    /// The link was down at shutdown and came back within the grace: keys released.
    pub(crate) const AT_END_RELEASED: u8 = 1;
    /// The link was down at shutdown and did not come back: keys may still sound.
    pub(crate) const AT_END_GAVE_UP: u8 = 2;

    impl Shared {
        fn new() -> Shared {
            Shared {
                link: AtomicU8::new(UP),
                wake: tokio::sync::Notify::new(),
                armed: AtomicBool::new(false),
                shutdown: AtomicBool::new(false),
                grace_ms: AtomicU64::new(2000),
                channels: AtomicU16::new(ALL_CHANNELS),
                timeline: Mutex::new(None),
                last_event: Mutex::new(String::new()),
                messages: AtomicU64::new(0),
                packets: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                link_losses: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                stalls: AtomicU64::new(0),
                at_end: AtomicU8::new(AT_END_NORMAL),
                keys_left: AtomicU64::new(0),
                mtu: AtomicU16::new(0),
                write_us_max: AtomicU64::new(0),
                write_us_total: AtomicU64::new(0),
            }
        }

        /// Counts one packet write that took `d`.
        pub fn wrote(&self, d: Duration) {
            let us = d.as_micros() as u64;
            self.write_us_max.fetch_max(us, Ordering::Relaxed);
            self.write_us_total.fetch_add(us, Ordering::Relaxed);
        }

        pub fn set_link(&self, l: Link) {
            let v = match l {
                Link::Up => UP,
                Link::NotAnswering => NOT_ANSWERING,
                // The BLE worker never reports a link gone for good: it reconnects.
                Link::Down | Link::Gone(_) => DOWN,
            };
            self.link.store(v, Ordering::Release);
        }

        pub fn link(&self) -> Link {
            match self.link.load(Ordering::Acquire) {
                UP => Link::Up,
                NOT_ANSWERING => Link::NotAnswering,
                _ => Link::Down,
            }
        }

        pub fn note(&self, text: impl Into<String>) {
            if let Ok(mut e) = self.last_event.lock() {
                *e = text.into();
            }
        }

        pub fn shutting_down(&self) -> bool {
            self.shutdown.load(Ordering::Acquire)
        }

        pub fn timeline(&self) -> Option<Arc<Timeline>> {
            self.timeline.lock().ok().and_then(|t| t.clone())
        }
    }

    /// A BLE output's counters, kept by whoever handed the output on (see
    /// [`BleOutput::stats_handle`]).
    #[derive(Clone)]
    pub struct BleStatsHandle(Arc<Shared>);

    impl BleStatsHandle {
        pub fn stats(&self) -> BleStats {
            let s = &self.0;
            BleStats {
                messages: s.messages.load(Ordering::Relaxed),
                packets: s.packets.load(Ordering::Relaxed),
                dropped: s.dropped.load(Ordering::Relaxed),
                link_losses: s.link_losses.load(Ordering::Relaxed),
                reconnects: s.reconnects.load(Ordering::Relaxed),
                stalls: s.stalls.load(Ordering::Relaxed),
                mtu: s.mtu.load(Ordering::Relaxed),
                write_us_max: s.write_us_max.load(Ordering::Relaxed),
                write_us_total: s.write_us_total.load(Ordering::Relaxed),
            }
        }
    }

    /// An output to a BLE-MIDI device through its own worker thread. See the [module
    /// documentation](super) for the threads and the link-loss contract.
    pub struct BleOutput {
        name: String,
        device: BleDevice,
        policy: DisconnectPolicy,
        records: ringbuf::HeapProd<Record>,
        bytes: ringbuf::HeapProd<u8>,
        shared: Arc<Shared>,
        worker: Option<JoinHandle<()>>,
    }

    /// Finds the BLE-MIDI device `spec_name` (a case-insensitive part of its name, or its
    /// address), connects, discovers its services and subscribes to the MIDI characteristic,
    /// all within `timeout`, then returns the output with its worker running.
    ///
    /// # Errors
    /// No BlueZ or adapter; no matching device (the message lists the BLE-MIDI devices found
    /// instead); several match; the connection or service discovery failed or timed out.
    pub fn open(spec_name: &str, policy: DisconnectPolicy, timeout: Duration) -> Result<BleOutput, BleError> {
        let target = Target::parse(spec_name);
        let (records, rec_cons) = HeapRb::<Record>::new(RECORDS).split();
        let (bytes, byte_cons) = HeapRb::<u8>::new(SYSEX_BYTES).split();
        let shared = Arc::new(Shared::new());
        let (tx, rx) = mpsc::channel();
        let inbox = Inbox::new(rec_cons, byte_cons);
        let sh = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("organ-ble".into())
            .spawn(move || worker::run(target, timeout, policy, inbox, sh, tx))
            .map_err(|e| BleError::Thread(e.to_string()))?;
        // Link::open is bounded by `timeout` plus a connect and a few D-Bus calls.
        match rx.recv_timeout(timeout + Duration::from_secs(20)) {
            Ok(Ok(device)) => Ok(BleOutput {
                name: format!("ble:{spec_name}"),
                device,
                policy,
                records,
                bytes,
                shared,
                worker: Some(handle),
            }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                shared.shutdown.store(true, Ordering::Release);
                shared.wake.notify_one();
                Err(BleError::NotInTime { name: spec_name.to_string() })
            }
        }
    }

    impl BleOutput {
        /// The device connected to.
        pub fn device(&self) -> &BleDevice {
            &self.device
        }

        pub fn policy(&self) -> DisconnectPolicy {
            self.policy
        }

        /// How long `finish` keeps trying to get a lost link back to release the keys (default
        /// 2 s).
        pub fn set_shutdown_grace(&self, grace: Duration) {
            self.shared.grace_ms.store(grace.as_millis() as u64, Ordering::Relaxed);
        }

        pub fn stats(&self) -> BleStats {
            self.stats_handle().stats()
        }

        /// The counters, readable after the output has been handed to the engine.
        pub fn stats_handle(&self) -> BleStatsHandle {
            BleStatsHandle(Arc::clone(&self.shared))
        }
        /// The latest thing that happened to the link ("link lost: …", "reconnected …"), for the
        /// status line. Control thread only (takes a lock).
        pub fn last_event(&self) -> String {
            self.shared.last_event.lock().map(|e| e.clone()).unwrap_or_default()
        }

        fn stop_worker(&mut self) -> Result<(), FinishError> {
            let Some(handle) = self.worker.take() else { return Ok(()) };
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.wake.notify_one();
            // The worker's own bound: queued writes (2 s write timeout), then the grace.
            let grace = Duration::from_millis(self.shared.grace_ms.load(Ordering::Relaxed));
            let deadline = Instant::now() + grace + Duration::from_secs(5);
            while !handle.is_finished() {
                if Instant::now() > deadline {
                    return Err(FinishError::WorkerStuck { output: self.name.clone() });
                }
                thread::sleep(Duration::from_millis(5));
            }
            handle.join().map_err(|_| FinishError::WorkerPanicked { output: self.name.clone() })
        }
    }

    impl Output for BleOutput {
        fn name(&self) -> &str {
            &self.name
        }

        fn prepare(&mut self, timeline: &Arc<Timeline>) -> Result<(), OutputError> {
            self.shared.channels.store(division_mask(Some(timeline)), Ordering::Release);
            if let Ok(mut t) = self.shared.timeline.lock() {
                *t = Some(Arc::clone(timeline));
            }
            Ok(())
        }

        /// # Real-time safety
        /// Copies into preallocated rings (wait-free), then, only when the worker asked for a
        /// wake-up since it last looked, `Notify::notify_one`, which takes tokio's internal
        /// waiter lock for a few instructions (the worker holds it only as briefly). Never waits
        /// on Bluetooth, never allocates.
        fn send(&mut self, bytes: &[u8], at: Stamp) -> Result<(), OutputError> {
            let Some(&status) = bytes.first() else {
                return Err(OutputError { kind: OutputErrorKind::Backend, detail: "empty message" });
            };
            let long = status == 0xF0 || bytes.len() > 3;
            if self.records.is_full() || (long && self.bytes.vacant_len() < bytes.len()) || bytes.len() > SYSEX_BYTES {
                return Err(OutputError { kind: OutputErrorKind::Overflow, detail: "BLE queue full" });
            }
            let mut rec =
                Record { due: at.due.0, now: at.now.0, plan: at.plan.0, short: [0; 3], len: bytes.len() as u32, long };
            if long {
                self.bytes.push_slice(bytes);
            } else {
                rec.short[..bytes.len()].copy_from_slice(bytes);
            }
            let _ = self.records.try_push(rec);
            if self.shared.armed.swap(false, Ordering::SeqCst) {
                self.shared.wake.notify_one();
            }
            Ok(())
        }

        fn link(&self) -> Link {
            self.shared.link()
        }

        /// The worker has taken every message (it writes them to BlueZ at once when due).
        fn delivered(&self) -> bool {
            self.records.is_empty()
        }

        fn finish(&mut self) -> Result<(), FinishError> {
            self.stop_worker()
        }

        /// E.g. `ble:WIDI Jack: link lost once, reconnected once (keys released, registration
        /// restored); nothing dropped`, or `ble:WIDI Jack: link stopped answering once, answered
        /// again (keys released, registration restored); …`, and what became of the keys when
        /// the link was down at the end. `None` when the link never dropped nor stalled.
        fn report(&self) -> Option<String> {
            let s = self.stats();
            if s.link_losses == 0 && s.stalls == 0 && s.dropped == 0 {
                return None;
            }
            let mut parts = Vec::new();
            if s.link_losses > 0 || s.stalls == 0 {
                let mut r = format!("link lost {}", times(s.link_losses));
                match s.reconnects {
                    0 => r.push_str(", not reconnected"),
                    n => r.push_str(&format!(", reconnected {} (keys released, registration restored)", times(n))),
                }
                parts.push(r);
            }
            if s.stalls > 0 {
                parts.push(format!(
                    "link stopped answering {}, answered again (keys released, registration restored)",
                    times(s.stalls)
                ));
            }
            let mut r = format!("{}: {}", self.name, parts.join("; "));
            match s.dropped {
                0 => r.push_str("; nothing dropped"),
                n => r.push_str(&format!("; {n} message(s) dropped while the link was down")),
            }
            match self.shared.at_end.load(Ordering::Acquire) {
                AT_END_RELEASED => r.push_str("; the link came back at the end: keys released, stops cancelled"),
                AT_END_GAVE_UP => r.push_str(&format!(
                    "; the link was still down at the end: {} key(s) may still sound and the stops were not \
                     cancelled (run `organ panic` once the device is back)",
                    self.shared.keys_left.load(Ordering::Relaxed)
                )),
                _ => {}
            }
            Some(r)
        }

        fn keys_may_sound(&self) -> bool {
            self.shared.at_end.load(Ordering::Acquire) == AT_END_GAVE_UP
        }
    }

    fn times(n: u64) -> String {
        match n {
            1 => "once".into(),
            2 => "twice".into(),
            n => format!("{n} times"),
        }
    }

    impl Drop for BleOutput {
        fn drop(&mut self) {
            let _ = self.stop_worker();
        }
    }
}
