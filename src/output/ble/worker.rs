//! The BLE worker thread `organ-ble`: drains the engine's ring, packs and writes, and handles link
//! loss, reconnection, restore and shutdown. Runs a single-threaded tokio runtime; never on the
//! real-time thread. The contract with the engine is in the [module documentation](super).

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ringbuf::traits::{Consumer, Observer};
use tokio::time::{sleep, timeout};

use super::codec::{Packer, payload_for_mtu};
use super::link::{BleDevice, BleError, Link, Target};
use super::output::{AT_END_GAVE_UP, AT_END_RELEASED, Shared};
use super::state::{self, Keys};
use crate::midi::{Micros, ShortMsg};
use crate::organ::DisconnectPolicy;
use crate::output::Link as LinkState;

/// After waking, wait this long so that messages handed over at the same instant (a chord, a
/// registration change) travel in the same packets.
const COALESCE: Duration = Duration::from_millis(1);
/// A message handed over this long before it could be written (held across a reconnect) is
/// stamped with its send time rather than its long-gone scheduled time.
const STALE_MS: u64 = 500;
/// While idle, look at the ring this often even without a wake-up.
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// One reconnection attempt may take this long.
const ATTEMPT: Duration = Duration::from_secs(5);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A write unanswered this long puts the link in doubt ([`LinkState::NotAnswering`]): the engine
/// applies `on_disconnect` from then on instead of handing over music that cannot be written,
/// while the worker waits for the answer up to the link's whole write timeout (2 s), then takes
/// the link for lost. A healthy BlueZ answers a write without response at once (it queues the
/// packet); the simulated one here takes a few ms (`organ selftest`'s slowest write), so the
/// bound leaves a loaded machine room without letting the engine play on blind for long.
const DOUBT_AFTER: Duration = Duration::from_millis(250);
/// Messages held across a gap (policy `pause`) are written again with the spacing they were
/// handed over with, but all of them within this long.
const REPLAY_MAX: Duration = Duration::from_secs(1);

/// One message in the ring: short messages inline, SysEx bodies in the byte ring.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub due: u64,
    pub now: u64,
    pub plan: u64,
    pub short: [u8; 3],
    pub len: u32,
    pub long: bool,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    due: u64,
    plan: u64,
    start: usize,
    len: usize,
    /// Index of the packet holding the message's last byte in this batch (`usize::MAX` when the
    /// packer refused it).
    packet: usize,
}

/// The consumer side of the rings, and reusable buffers for what was taken out.
pub(crate) struct Inbox {
    records: ringbuf::HeapCons<Record>,
    bytes: ringbuf::HeapCons<u8>,
    scratch: Vec<u8>,
    items: Vec<Item>,
    /// Messages whose write failed, to be written again after the restore (policy `pause`).
    retry_scratch: Vec<u8>,
    retry: Vec<Item>,
}

impl Inbox {
    pub fn new(records: ringbuf::HeapCons<Record>, bytes: ringbuf::HeapCons<u8>) -> Inbox {
        Inbox {
            records,
            bytes,
            scratch: Vec::with_capacity(4096),
            items: Vec::with_capacity(256),
            retry_scratch: Vec::new(),
            retry: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.retry.is_empty()
    }

    /// Empties the current batch.
    fn reset(&mut self) {
        self.items.clear();
        self.scratch.clear();
    }

    /// Empties the current batch and starts the next one with the messages kept for retry.
    fn start_batch(&mut self) {
        self.reset();
        for it in self.retry.drain(..) {
            let start = self.scratch.len();
            self.scratch.extend_from_slice(&self.retry_scratch[it.start..it.start + it.len]);
            self.items.push(Item { start, ..it });
        }
        self.retry_scratch.clear();
    }

    /// Keeps the batch's messages from packet `from` on for the next batch.
    fn keep_for_retry(&mut self, from: usize) {
        for it in self.items.iter().filter(|it| it.packet != usize::MAX && it.packet >= from) {
            let start = self.retry_scratch.len();
            self.retry_scratch.extend_from_slice(&self.scratch[it.start..it.start + it.len]);
            self.retry.push(Item { start, ..*it });
        }
    }

    /// Forgets the messages kept for retry; returns how many.
    fn drop_retry(&mut self) -> usize {
        let n = self.retry.len();
        self.retry.clear();
        self.retry_scratch.clear();
        n
    }

    /// Moves everything waiting into `items`; returns how many messages.
    fn take(&mut self, clock: &mut EngineClock) -> usize {
        let now = Instant::now();
        let mut n = 0;
        while let Some(r) = self.records.try_pop() {
            clock.observe(now, r.now);
            let start = self.scratch.len();
            let len = r.len as usize;
            if r.long {
                // The producer pushed the bytes before the record, so they are all there.
                self.scratch.resize(start + len, 0);
                let got = self.bytes.pop_slice(&mut self.scratch[start..]);
                self.scratch.truncate(start + got);
            } else {
                self.scratch.extend_from_slice(&r.short[..len.min(3)]);
            }
            self.items.push(Item { due: r.due, plan: r.plan, start, len: self.scratch.len() - start, packet: 0 });
            n += 1;
        }
        n
    }

    fn bytes(&self, it: &Item) -> &[u8] {
        &self.scratch[it.start..it.start + it.len]
    }
}

/// Maps the engine clock (µs since playback started) to this thread's `Instant`s. Every record
/// says when it was handed over on the engine clock; the earliest-looking arrival is the best
/// estimate of the engine's origin.
struct EngineClock {
    origin: Option<Instant>,
    fallback: Instant,
}

impl EngineClock {
    fn observe(&mut self, received: Instant, now_us: u64) {
        if let Some(est) = received.checked_sub(Duration::from_micros(now_us)) {
            self.origin = Some(self.origin.map_or(est, |o| o.min(est)));
        }
    }

    /// Now on the engine clock, in milliseconds.
    fn now_ms(&self) -> u64 {
        Instant::now().saturating_duration_since(self.origin.unwrap_or(self.fallback)).as_millis() as u64
    }
}

/// Reports the link down when the worker ends, however it ends (even by a panic), so that the
/// engine does not play on into a dead ring.
struct DownOnExit(Arc<Shared>);

impl Drop for DownOnExit {
    fn drop(&mut self) {
        self.0.set_link(LinkState::Down);
    }
}

/// Runs the worker: connects, reports the result through `ready`, then serves until shutdown.
pub(crate) fn run(
    target: Target,
    limit: Duration,
    policy: DisconnectPolicy,
    inbox: Inbox,
    shared: Arc<Shared>,
    ready: mpsc::Sender<Result<BleDevice, BleError>>,
) {
    let _down = DownOnExit(Arc::clone(&shared));
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(BleError::Runtime(e.to_string())));
            return;
        }
    };
    rt.block_on(async move {
        let opened = match timeout(limit + Duration::from_secs(15), Link::open(target.clone(), limit)).await {
            Ok(r) => r,
            Err(_) => Err(BleError::TimedOut { target: target.to_string() }),
        };
        let link = match opened {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        shared.note(format!("connected to {} (MTU {})", link.device(), link.mtu()));
        shared.mtu.store(link.mtu(), Ordering::Relaxed);
        if ready.send(Ok(link.device().clone())).is_err() {
            // `open` gave up waiting.
            link.disconnect().await;
            return;
        }
        let worker = Worker {
            packer: Packer::new(payload_for_mtu(link.mtu())),
            link,
            inbox,
            shared,
            keys: Keys::default(),
            clock: EngineClock { origin: None, fallback: Instant::now() },
            plan_pos: None,
            policy,
        };
        worker.run().await;
    });
}

enum Served {
    Lost(BleError),
    /// A write was answered after all, `after` it began, once the link had been reported in
    /// doubt.
    AnsweredLate(Duration),
    Shutdown,
}

/// Why a batch was not all written.
enum Fault {
    Lost(BleError),
    AnsweredLate(Duration),
}

struct Worker {
    shared: Arc<Shared>,
    inbox: Inbox,
    link: Link,
    packer: Packer,
    keys: Keys,
    clock: EngineClock,
    /// The largest plan time handed over so far.
    plan_pos: Option<u64>,
    policy: DisconnectPolicy,
}

/// Takes everything out of the ring and drops it (the link is down), keeping the plan position.
fn discard(inbox: &mut Inbox, clock: &mut EngineClock, plan_pos: &mut Option<u64>, shared: &Shared) {
    inbox.reset();
    let n = inbox.take(clock);
    for it in &inbox.items {
        *plan_pos = Some(plan_pos.map_or(it.plan, |p| p.max(it.plan)));
    }
    inbox.reset();
    shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
}

impl Worker {
    async fn run(mut self) {
        loop {
            match self.serve().await {
                Served::Shutdown => {
                    self.shutdown_up().await;
                    return;
                }
                Served::Lost(why) => {
                    self.lost(&why);
                    if !self.recover().await {
                        return;
                    }
                }
                Served::AnsweredLate(after) => {
                    if !self.answered_late(after).await {
                        return;
                    }
                }
            }
        }
    }

    /// A write went unanswered past [`DOUBT_AFTER`]: report the link in doubt (the engine then
    /// pauses or drops, as for a lost link) while the worker goes on waiting for the answer.
    fn not_answering(&self) {
        self.shared.set_link(LinkState::NotAnswering);
        self.shared.note(format!(
            "link to {} not answering (a write unanswered for {} ms); waiting for it",
            self.link.device(),
            DOUBT_AFTER.as_millis()
        ));
    }

    /// The write that put the link in doubt was answered after all: the link is there, but what
    /// reached the device meanwhile is not known to have come on time. Restore as after a
    /// reconnect (keys released, registration from a known state; under `pause` the held
    /// messages written again with their spacing), then report the link up. At shutdown,
    /// release instead. False when the worker is done.
    async fn answered_late(&mut self, after: Duration) -> bool {
        if self.shared.shutting_down() {
            match self.release_at_shutdown().await {
                Ok(()) => self.shared.at_end.store(AT_END_RELEASED, Ordering::Release),
                Err(e) => {
                    self.lost(&e);
                    return self.recover().await;
                }
            }
            return false;
        }
        match self.restore().await {
            Ok(()) => {
                self.shared.stalls.fetch_add(1, Ordering::Relaxed);
                self.shared.set_link(LinkState::Up);
                self.shared.note(format!(
                    "link to {} answered again after {:.1} s; keys released, registration restored",
                    self.link.device(),
                    after.as_secs_f64()
                ));
                true
            }
            Err(e) => {
                self.lost(&e);
                self.recover().await
            }
        }
    }

    fn lost(&mut self, why: &dyn std::fmt::Display) {
        self.shared.set_link(LinkState::Down);
        self.shared.link_losses.fetch_add(1, Ordering::Relaxed);
        self.shared.note(format!("link to {} lost ({why}); reconnecting", self.link.device()));
    }

    /// Delivers messages while the link is up. Returns when it is lost or at shutdown.
    async fn serve(&mut self) -> Served {
        loop {
            if self.shared.shutting_down() {
                return Served::Shutdown;
            }
            match self.deliver(true).await {
                Ok(()) => {}
                Err(Fault::Lost(e)) => return Served::Lost(e),
                Err(Fault::AnsweredLate(d)) => return Served::AnsweredLate(d),
            }
            // Ask for a wake-up, then look again (the fence pairs with the engine's SeqCst swap:
            // either it sees `armed` or this sees its message).
            self.shared.armed.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if !self.inbox.is_empty() || self.shared.shutting_down() {
                continue;
            }
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = self.link.disconnected() => return Served::Lost(BleError::Disconnected),
                // Belt and braces: never sleep on a message for long.
                _ = sleep(IDLE_CHECK) => {}
            }
        }
    }

    /// Takes what is in the ring (after any messages kept for retry) and writes it. While
    /// `playing`, a chord handed over message by message is let gather first, and a write
    /// unanswered past [`DOUBT_AFTER`] puts the link in doubt: if its answer comes after all,
    /// the batch's later packets are kept for retry (`pause`) or dropped (`continue`) and
    /// [`Fault::AnsweredLate`] says so.
    async fn deliver(&mut self, playing: bool) -> Result<(), Fault> {
        self.inbox.start_batch();
        if self.inbox.take(&mut self.clock) == 0 && self.inbox.items.is_empty() {
            return Ok(());
        }
        if playing {
            sleep(COALESCE).await;
            self.inbox.take(&mut self.clock);
        }
        self.keys.set_channels(self.shared.channels.load(Ordering::Acquire));
        let now_ms = self.clock.now_ms();
        self.packer.clear();
        let mut invalid = 0u64;
        for i in 0..self.inbox.items.len() {
            let it = self.inbox.items[i];
            self.plan_pos = Some(self.plan_pos.map_or(it.plan, |p| p.max(it.plan)));
            let due_ms = it.due / 1000;
            let ms = if now_ms > due_ms + STALE_MS { now_ms } else { due_ms };
            self.inbox.items[i].packet = match self.packer.push(ms, self.inbox.bytes(&it)) {
                Ok(()) => self.packer.packets_begun() - 1,
                Err(_) => {
                    invalid += 1;
                    usize::MAX
                }
            };
        }
        self.packer.finish();
        let n = self.inbox.items.len() as u64;
        let mut written = 0usize;
        for p in self.packer.packets() {
            let began = Instant::now();
            let write = self.link.write(p);
            tokio::pin!(write);
            let result = match timeout(DOUBT_AFTER, &mut write).await {
                Ok(r) => r.map_err(Fault::Lost),
                Err(_) if !playing => write.await.map_err(Fault::Lost),
                Err(_) => {
                    self.not_answering();
                    match write.await {
                        Ok(()) => Err(Fault::AnsweredLate(began.elapsed())),
                        Err(e) => Err(Fault::Lost(e)),
                    }
                }
            };
            // Packets before `arrived` reached the device; the one at `uncertain` perhaps did.
            let (fault, arrived, uncertain) = match result {
                Ok(()) => {
                    self.shared.wrote(began.elapsed());
                    written += 1;
                    continue;
                }
                Err(Fault::AnsweredLate(d)) => {
                    self.shared.wrote(d);
                    (Fault::AnsweredLate(d), written + 1, None)
                }
                // The messages that ended in earlier packets arrived; those of later packets
                // were never handed to BlueZ. This packet's did not arrive when BlueZ refused
                // it, and perhaps did otherwise (no answer in time): then count its notes as
                // down and release nothing.
                Err(Fault::Lost(e)) => {
                    let maybe = !matches!(e, BleError::Refused { .. });
                    (Fault::Lost(e), written, maybe.then_some(written))
                }
            };
            // Under `pause` the messages that did not (surely) arrive are written again after
            // the restore; under `continue` they fell in the gap.
            let mut lost = 0u64;
            for it in &self.inbox.items {
                if it.packet < arrived {
                    self.keys.apply(self.inbox.bytes(it));
                } else if it.packet != usize::MAX {
                    if uncertain == Some(it.packet) {
                        self.keys.apply_uncertain(self.inbox.bytes(it));
                    }
                    lost += 1;
                }
            }
            let delivered = n - lost - invalid;
            if self.policy == DisconnectPolicy::Pause {
                self.inbox.keep_for_retry(arrived);
            } else {
                self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
            }
            self.shared.messages.fetch_add(delivered, Ordering::Relaxed);
            self.shared.packets.fetch_add(arrived as u64, Ordering::Relaxed);
            self.shared.dropped.fetch_add(invalid, Ordering::Relaxed);
            return Err(fault);
        }
        let written = written as u64;
        for it in &self.inbox.items {
            self.keys.apply(self.inbox.bytes(it));
        }
        self.shared.packets.fetch_add(written, Ordering::Relaxed);
        self.shared.messages.fetch_add(n - invalid, Ordering::Relaxed);
        self.shared.dropped.fetch_add(invalid, Ordering::Relaxed);
        Ok(())
    }

    /// Under `pause`, after the restore and before the link is reported up: writes what was
    /// held across the gap (the messages kept for retry, then what the engine handed over before
    /// it paused, and its release at the pause) with the spacing they were handed over with
    /// (their scheduled times; all within [`REPLAY_MAX`]), each stamped with its send time, so
    /// that they do not come in a burst. If a write fails, what did not surely arrive is kept for
    /// the next restore.
    async fn replay_held(&mut self) -> Result<(), BleError> {
        self.inbox.start_batch();
        self.inbox.take(&mut self.clock);
        let Some(first) = self.inbox.items.first().map(|it| it.due) else { return Ok(()) };
        // Not packed yet: kept for retry whatever packet fails.
        for it in &mut self.inbox.items {
            it.packet = usize::MAX - 1;
        }
        self.keys.set_channels(self.shared.channels.load(Ordering::Acquire));
        let t0 = Instant::now();
        // Packets written so far across the groups: items are numbered with it, as in a batch.
        let mut written = 0usize;
        let mut i = 0;
        while i < self.inbox.items.len() {
            let due_ms = self.inbox.items[i].due / 1000;
            let end = i + self.inbox.items[i..].iter().take_while(|it| it.due / 1000 == due_ms).count();
            let offset = Duration::from_micros(self.inbox.items[i].due.saturating_sub(first)).min(REPLAY_MAX);
            tokio::time::sleep_until((t0 + offset).into()).await;
            let now = self.clock.now_ms();
            self.packer.clear();
            for k in i..end {
                let it = self.inbox.items[k];
                self.plan_pos = Some(self.plan_pos.map_or(it.plan, |p| p.max(it.plan)));
                self.inbox.items[k].packet = match self.packer.push(now, self.inbox.bytes(&it)) {
                    Ok(()) => written + self.packer.packets_begun() - 1,
                    Err(_) => {
                        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                        usize::MAX
                    }
                };
            }
            self.packer.finish();
            for p in self.packer.packets() {
                let began = Instant::now();
                if let Err(e) = self.link.write(p).await {
                    let maybe = !matches!(e, BleError::Refused { .. });
                    for it in &self.inbox.items[i..] {
                        if it.packet < written {
                            self.keys.apply(self.inbox.bytes(it));
                            self.shared.messages.fetch_add(1, Ordering::Relaxed);
                        } else if maybe && it.packet == written {
                            self.keys.apply_uncertain(self.inbox.bytes(it));
                        }
                    }
                    self.inbox.keep_for_retry(written);
                    return Err(e);
                }
                self.shared.wrote(began.elapsed());
                self.shared.packets.fetch_add(1, Ordering::Relaxed);
                written += 1;
            }
            for it in &self.inbox.items[i..end] {
                if it.packet != usize::MAX {
                    self.keys.apply(self.inbox.bytes(it));
                    self.shared.messages.fetch_add(1, Ordering::Relaxed);
                }
            }
            i = end;
        }
        self.inbox.reset();
        Ok(())
    }

    /// Writes messages stamped `ms`, packed together.
    async fn write_now(&mut self, msgs: &[Vec<u8>], ms: u64) -> Result<(), BleError> {
        self.packer.clear();
        for m in msgs {
            let _ = self.packer.push(ms, m);
        }
        self.packer.finish();
        for p in self.packer.packets() {
            let began = Instant::now();
            self.link.write(p).await?;
            self.shared.wrote(began.elapsed());
            self.shared.packets.fetch_add(1, Ordering::Relaxed);
        }
        for m in msgs {
            self.keys.apply(m);
        }
        self.shared.messages.fetch_add(msgs.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Writes registration messages one at a time, `pace` apart.
    async fn write_paced(&mut self, msgs: &[Vec<u8>], pace: Micros) -> Result<(), BleError> {
        for (i, m) in msgs.iter().enumerate() {
            if i > 0 && pace.0 > 0 {
                sleep(Duration::from_micros(pace.0)).await;
            }
            let now = self.clock.now_ms();
            self.write_now(std::slice::from_ref(m), now).await?;
        }
        Ok(())
    }

    /// Reconnects until it succeeds (then restores and returns true) or until shutdown (then,
    /// within the grace period, releases if it got the link back, and returns false).
    async fn recover(&mut self) -> bool {
        let mut backoff = Duration::ZERO;
        let mut deadline: Option<Instant> = None;
        loop {
            if deadline.is_none() && self.shared.shutting_down() {
                deadline = Some(Instant::now() + Duration::from_millis(self.shared.grace_ms.load(Ordering::Relaxed)));
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    let left = self.inbox.records.occupied_len() as u64 + self.inbox.drop_retry() as u64;
                    self.shared.dropped.fetch_add(left, Ordering::Relaxed);
                    self.shared.keys_left.store(self.keys.count() as u64, Ordering::Relaxed);
                    self.shared.at_end.store(AT_END_GAVE_UP, Ordering::Release);
                    self.shared.note(format!(
                        "gave up reconnecting to {} at shutdown; {} key(s) may still sound",
                        self.link.device(),
                        self.keys.count()
                    ));
                    return false;
                }
            }
            // At shutdown neither the back-off nor the attempt may run past the grace period.
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let pause = left.map_or(backoff, |l| backoff.min(l));
            let limit = left.map_or(ATTEMPT, |l| ATTEMPT.min(l.saturating_sub(pause)));
            let result = {
                let Worker { link, inbox, shared, clock, plan_pos, policy, .. } = self;
                let attempt = async {
                    sleep(pause).await;
                    link.reconnect(limit).await
                };
                tokio::pin!(attempt);
                loop {
                    shared.armed.store(true, Ordering::SeqCst);
                    if *policy == DisconnectPolicy::Continue {
                        discard(inbox, clock, plan_pos, shared);
                    }
                    if deadline.is_none() && shared.shutting_down() {
                        break None;
                    }
                    tokio::select! {
                        biased;
                        r = &mut attempt => break Some(r),
                        _ = shared.wake.notified() => {}
                    }
                }
            };
            match result {
                None => continue,
                Some(Err(e)) => {
                    self.shared
                        .note(format!("link to {} lost; reconnecting failed: {e}; retrying", self.link.device()));
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                }
                Some(Ok(())) => {
                    self.link.drain_events();
                    self.packer.set_max_payload(payload_for_mtu(self.link.mtu()));
                    self.shared.mtu.store(self.link.mtu(), Ordering::Relaxed);
                    if deadline.is_some() || self.shared.shutting_down() {
                        match self.release_at_shutdown().await {
                            Ok(()) => self.shared.at_end.store(AT_END_RELEASED, Ordering::Release),
                            Err(e) => {
                                self.shared.note(format!("releasing at shutdown failed: {e}"));
                                self.shared.keys_left.store(self.keys.count() as u64, Ordering::Relaxed);
                                self.shared.at_end.store(AT_END_GAVE_UP, Ordering::Release);
                            }
                        }
                        return false;
                    }
                    match self.restore().await {
                        Ok(()) => {
                            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                            self.shared.set_link(LinkState::Up);
                            self.shared.note(format!(
                                "reconnected to {}; keys released, registration restored",
                                self.link.device()
                            ));
                            return true;
                        }
                        Err(e) => {
                            self.shared.note(format!("link to {} lost again while restoring: {e}", self.link.device()));
                            backoff = Duration::from_millis(100);
                        }
                    }
                }
            }
        }
    }

    /// After a reconnect: release the keys down, then the registration from a known state.
    async fn restore(&mut self) -> Result<(), BleError> {
        if self.policy == DisconnectPolicy::Continue {
            discard(&mut self.inbox, &mut self.clock, &mut self.plan_pos, &self.shared);
        }
        let timeline = self.shared.timeline();
        self.keys.set_channels(self.shared.channels.load(Ordering::Acquire));
        let release = state::release_messages(&self.keys, timeline.as_deref());
        let now = self.clock.now_ms();
        self.write_now(&release, now).await?;
        self.keys.clear();
        let t = timeline.as_deref();
        let mut written = self.plan_pos;
        if let (Some(t), Some(pos)) = (t, written) {
            let msgs = state::registration_messages(t, Micros(pos));
            self.write_paced(&msgs, t.stop_pace).await?;
        }
        if self.policy == DisconnectPolicy::Pause {
            self.replay_held().await?;
        }
        if self.policy == DisconnectPolicy::Continue {
            // What was handed over during the restore fell in the gap too; but a registration
            // change among it must still reach the organ (a stop change is never "late"), or the
            // organ keeps the registration from before it (say, every stop drawn after the
            // plan's cancel at the end). Until nothing more came: write those changes in order.
            loop {
                discard(&mut self.inbox, &mut self.clock, &mut self.plan_pos, &self.shared);
                let (Some(t), Some(from), Some(to)) = (t, written, self.plan_pos) else { break };
                let changes = state::registration_between(t, Micros(from), Micros(to));
                written = Some(to);
                if changes.is_empty() {
                    break;
                }
                self.write_paced(&changes, t.stop_pace).await?;
                // Counted as dropped when discarded; they were sent after all.
                self.shared.dropped.fetch_sub(changes.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The link came back during shutdown: drop what was queued (stale), release the keys,
    /// cancel the registration when the plan does so at the end, disconnect.
    async fn release_at_shutdown(&mut self) -> Result<(), BleError> {
        let kept = self.inbox.drop_retry() as u64;
        self.shared.dropped.fetch_add(kept, Ordering::Relaxed);
        discard(&mut self.inbox, &mut self.clock, &mut self.plan_pos, &self.shared);
        let timeline = self.shared.timeline();
        let release = state::release_messages(&self.keys, timeline.as_deref());
        let now = self.clock.now_ms();
        self.write_now(&release, now).await?;
        self.keys.clear();
        if let Some(t) = timeline.as_deref().filter(|t| t.cancel_at_end) {
            let cancel = state::cancel_messages(t);
            self.write_paced(&cancel, t.stop_pace).await?;
        }
        self.shared.note(format!("link to {} back at shutdown: keys released", self.link.device()));
        sleep(Duration::from_millis(100)).await;
        self.link.disconnect().await;
        Ok(())
    }

    /// Shutdown with the link up: write what the engine queued (its release sequence), then
    /// note-offs for any key still down, then disconnect.
    async fn shutdown_up(&mut self) {
        while !self.inbox.is_empty() {
            // Not playing: a slow answer is waited for, never `AnsweredLate`.
            if let Err(Fault::Lost(e)) = self.deliver(false).await {
                self.lost(&e);
                self.recover().await;
                return;
            }
        }
        if !self.keys.is_empty() {
            let offs: Vec<Vec<u8>> =
                self.keys.iter().map(|(ch, k)| ShortMsg::note_off(ch, k).as_bytes().to_vec()).collect();
            let now = self.clock.now_ms();
            if let Err(e) = self.write_now(&offs, now).await {
                self.lost(&e);
                self.recover().await;
                return;
            }
        }
        // Let BlueZ transmit the last writes-without-response before the link goes.
        sleep(Duration::from_millis(100)).await;
        self.link.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbuf::HeapRb;
    use ringbuf::traits::{Producer, Split};

    fn rec(due: u64, bytes: &[u8]) -> Record {
        let mut short = [0; 3];
        let long = bytes.len() > 3;
        if !long {
            short[..bytes.len()].copy_from_slice(bytes);
        }
        Record { due, now: due, plan: due, short, len: bytes.len() as u32, long }
    }

    #[test]
    fn inbox_takes_short_and_long_messages_and_keeps_unwritten_ones_for_retry() {
        let (mut rp, rc) = HeapRb::<Record>::new(8).split();
        let (mut bp, bc) = HeapRb::<u8>::new(64).split();
        let mut inbox = Inbox::new(rc, bc);
        let mut clock = EngineClock { origin: None, fallback: Instant::now() };
        let sx = [0xF0, 0x41, 0x10, 0x7F, 0xF7];
        rp.try_push(rec(1000, &[0x90, 60, 100])).unwrap();
        bp.push_slice(&sx);
        rp.try_push(rec(2000, &sx)).unwrap();
        rp.try_push(rec(3000, &[0xC0, 5])).unwrap();
        inbox.start_batch();
        assert_eq!(inbox.take(&mut clock), 3);
        let got: Vec<Vec<u8>> = inbox.items.iter().map(|it| inbox.bytes(it).to_vec()).collect();
        assert_eq!(got, [vec![0x90, 60, 100], sx.to_vec(), vec![0xC0, 5]]);
        // Packets 0, 1, 1: the write of packet 1 failed.
        for (it, p) in inbox.items.iter_mut().zip([0, 1, 1]) {
            it.packet = p;
        }
        inbox.keep_for_retry(1);
        assert!(!inbox.is_empty(), "messages wait for a retry");
        inbox.start_batch();
        let again: Vec<(u64, Vec<u8>)> = inbox.items.iter().map(|it| (it.due, inbox.bytes(it).to_vec())).collect();
        assert_eq!(again, [(2000, sx.to_vec()), (3000, vec![0xC0, 5])]);
        // New messages follow the retried ones in the same batch.
        rp.try_push(rec(4000, &[0x80, 60, 0])).unwrap();
        assert_eq!(inbox.take(&mut clock), 1);
        assert_eq!(inbox.bytes(&inbox.items[2]), [0x80, 60, 0]);
        inbox.start_batch();
        assert!(inbox.items.is_empty() && inbox.is_empty());
        inbox.keep_for_retry(0);
        assert_eq!(inbox.drop_retry(), 0);
    }

    #[test]
    fn engine_clock_takes_the_earliest_estimate() {
        let t = Instant::now();
        let mut c = EngineClock { origin: None, fallback: t };
        c.observe(t + Duration::from_millis(1005), 1_000_000); // arrived 5 ms late
        c.observe(t + Duration::from_millis(2001), 2_000_000); // 1 ms late: better
        c.observe(t + Duration::from_millis(3050), 3_000_000);
        assert_eq!(c.origin, Some(t + Duration::from_millis(1)));
        assert!(c.now_ms() < 1000);
    }
}
