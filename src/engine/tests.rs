//! Deterministic engine tests: a manual or gated clock (never sleeps for real), in-memory outputs,
//! the shipped score and organ, and a counting allocator that proves the hot path allocates
//! nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::organ::Organ;
use crate::output::record::{MemoryOutput, Recording};
use crate::plan::{Kind, PlanOptions, plan};
use crate::registration::Registration;

// ---- a counting allocator for this test binary ------------------------------------------------

#[path = "../../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::Counter;

// ---- fixtures ----------------------------------------------------------------------------------

fn shipped_timeline(opts: PlanOptions) -> Arc<Timeline> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let organ = Organ::load(&root.join("organs/st-marys.toml")).unwrap();
    let score = crate::score::load_file(&root.join("scores/bwv643.mid")).unwrap();
    let reg = Registration::load(&root.join("scores/bwv643.toml"), &organ).unwrap();
    Arc::new(plan(&score, &organ, Some(&reg), &opts).unwrap())
}

/// A clock the test releases step by step: `wait_until` moves time only up to the gate.
#[derive(Clone, Default)]
struct GatedClock {
    now: Arc<AtomicU64>,
    gate: Arc<AtomicU64>,
}

impl GatedClock {
    fn open_to(&self, t: u64) {
        self.gate.store(t, Ordering::SeqCst);
    }

    /// Lets time run freely from now on.
    fn open(&self) {
        self.open_to(u64::MAX / 4);
    }

    /// Lets time run to `t` and waits (at most 10 s) until the engine has reached it.
    fn play_to(&self, shared: &Shared, t: u64) {
        self.open_to(t);
        let start = std::time::Instant::now();
        while shared.plan_time.load(Ordering::SeqCst) < t {
            assert!(start.elapsed() < Duration::from_secs(10), "the engine did not reach {t} µs");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Clock for GatedClock {
    fn now(&self) -> Micros {
        Micros(self.now.load(Ordering::SeqCst))
    }
    fn wait_until(&mut self, deadline: Micros) {
        let gate = self.gate.load(Ordering::SeqCst);
        if deadline.0 <= gate {
            self.now.fetch_max(deadline.0, Ordering::SeqCst);
        } else {
            self.now.fetch_max(gate, Ordering::SeqCst);
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
}

/// An output whose link the test can take down (reported as `down_as`), that fails on the n-th
/// message, or panics.
struct Flaky {
    down: Arc<AtomicBool>,
    down_as: Link,
    fail_at: Option<usize>,
    panic_at: Option<usize>,
    seen: usize,
}

impl Output for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn send(&mut self, _bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
        self.seen += 1;
        if Some(self.seen) == self.panic_at {
            panic!("test output panics");
        }
        if Some(self.seen) == self.fail_at {
            return Err(OutputError { kind: OutputErrorKind::Disconnected, detail: "cable pulled" });
        }
        Ok(())
    }
    fn link(&self) -> Link {
        if self.down.load(Ordering::SeqCst) { self.down_as } else { Link::Up }
    }
}

/// The keys down on the division channels after these messages.
fn keys_down<'a>(t: &Timeline, msgs: impl IntoIterator<Item = &'a [u8]>) -> HeldKeys {
    let mut held = HeldKeys::new();
    for b in msgs {
        if t.divisions.iter().any(|d| b[0] < 0xF0 && d.channel.wire() == b[0] & 0x0F) {
            held.track(b);
        }
    }
    held
}

fn memory(t: &Arc<Timeline>) -> (Box<dyn Output>, Recording) {
    let (mut m, h) = MemoryOutput::new();
    m.prepare(t).unwrap();
    (Box::new(m), h)
}

fn finish(report: &mut Report) {
    for o in &mut report.outputs {
        o.finish().unwrap();
    }
}

fn recording(h: &Recording) -> Vec<(Stamp, Vec<u8>)> {
    h.lock().unwrap().clone()
}

/// Every note-on is followed by its note-off, nothing is left down, and the last messages are
/// CC 123 on every division channel followed by the cancel.
fn assert_released(t: &Timeline, rec: &[(Stamp, Vec<u8>)]) {
    let mut held = HeldKeys::new();
    let mut last_note = 0;
    for (i, (_, b)) in rec.iter().enumerate() {
        let m = ShortMsg::from_bytes(b);
        if let Some(m) = m
            && (m.as_note_on().is_some() || m.as_note_off().is_some())
            && t.divisions.iter().any(|d| Some(d.channel) == m.channel())
        {
            last_note = i;
        }
        if let Some((ch, key)) = m.and_then(|m| m.as_note_on())
            && t.divisions.iter().any(|d| d.channel == ch)
        {
            assert!(!held.is_down(ch, key), "key {key} on channel {} struck twice at message {i}", ch.user());
        }
        held.track(b);
    }
    assert!(held.is_empty(), "keys left down: {:?}", held.iter().collect::<Vec<_>>());
    let tail: Vec<&Vec<u8>> = rec[last_note + 1..].iter().map(|(_, b)| b).collect();
    for d in &t.divisions {
        let cc123 = [0xB0 | d.channel.wire(), 123, 0];
        assert!(tail.iter().any(|b| b.as_slice() == cc123), "no all-notes-off on {} after the last note", d.name);
    }
    let cancel: Vec<&[u8]> = t.cancel.iter().map(|m| t.bytes(m)).collect();
    let sent_tail: Vec<&[u8]> = tail.iter().rev().take(cancel.len()).rev().map(|b| b.as_slice()).collect();
    assert_eq!(sent_tail, cancel, "the release must end with the cancel");
}

// ---- tests -------------------------------------------------------------------------------------

#[test]
fn plays_the_whole_plan_on_time_without_allocating() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    // Everything the engine shares is kept alive here, so that dropping the engine at the end
    // frees nothing either.
    let clock = ManualClock::new();
    let (engine, _handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let counter = Counter::start();
    let mut report = engine.run();
    let allocations = counter.stop();
    assert_eq!(allocations, 0, "the engine allocated or freed {allocations} times while playing");
    assert_eq!(report.end, End::Finished);
    finish(&mut report);
    let rec = recording(&h);
    assert_eq!(rec.len(), t.events.len());
    for ((stamp, bytes), e) in rec.iter().zip(&t.events) {
        assert_eq!(bytes.as_slice(), t.bytes(&e.msg));
        assert_eq!(stamp.plan, e.t);
        assert_eq!(stamp.due, e.t, "with a manual clock every message is sent at its deadline");
        assert_eq!(stamp.now, e.t);
    }
    assert_eq!(report.stats.count(), t.events.len() as u64);
    assert_eq!(report.stats.max(), 0);
}

#[test]
fn learning_the_wake_margins_does_not_allocate() {
    let mut w = clock::Waiter::new();
    let counter = Counter::start();
    let mut steps = 0;
    for i in 0..3 * clock::WINDOW as u64 {
        let deadline = Micros(i * 10_000 + 10_000);
        let mut now = Micros(i * 10_000);
        loop {
            let s = w.next(now, deadline);
            match s {
                clock::Step::Park(d) | clock::Step::Nap(d) => {
                    let late = Micros(40 + (i * 7919) % 900);
                    w.woke(s, late);
                    now = Micros(now.0 + d.0 + late.0);
                }
                clock::Step::Spin => {
                    w.spun(Micros(deadline.0 - now.0));
                    break;
                }
                clock::Step::Due => break,
            }
            steps += 1;
        }
    }
    assert_eq!(counter.stop(), 0, "waiting and learning the margins allocated");
    let s = w.stats();
    assert!(steps > 3 * clock::WINDOW && s.approach.sleeps > 0 && s.spin.sleeps > 0, "{s:?}");
    assert!(s.approach.max >= Micros(900), "{s:?}");
}

#[test]
fn stop_mid_piece_releases_exactly_the_keys_down_then_cancels() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    // Play to the middle of bar 6 (a point where chords are held), then stop.
    let mid = t.events.iter().find(|e| e.kind == Kind::NoteOn && t.position(e).bar == 6).unwrap().t.0 + 100;
    clock.play_to(&handle.shared, mid);
    handle.send(Command::Stop);
    clock.open();
    let mut report = handle.join();
    assert_eq!(report.end, End::Stopped);
    finish(&mut report);
    let rec = recording(&h);
    let played = t.events.iter().take_while(|e| e.t.0 <= mid).count();
    assert_eq!(
        rec[..played].iter().map(|(_, b)| b.as_slice()).collect::<Vec<_>>(),
        t.events[..played].iter().map(|e| t.bytes(&e.msg)).collect::<Vec<_>>()
    );
    assert!(played > 100 && played < t.events.len() / 2 + 200, "stopped in the middle ({played} sent)");
    // The keys down at the stop are exactly those the plan holds down at that time.
    let expect = keys_down(&t, t.events.iter().take_while(|e| e.t.0 <= mid).map(|e| t.bytes(&e.msg)));
    assert!(expect.count() > 0, "the test should stop while keys are down");
    let offs: Vec<(u8, u8)> = rec[played..]
        .iter()
        .filter_map(|(_, b)| ShortMsg::from_bytes(b).and_then(|m| m.as_note_off()))
        .filter(|(ch, _)| t.divisions.iter().any(|d| d.channel == *ch))
        .map(|(c, k)| (c.wire(), k))
        .collect();
    let expected: Vec<(u8, u8)> = expect.iter().map(|(c, k, _)| (c.wire(), k)).collect();
    assert_eq!(offs, expected, "exactly the keys that were down are released");
    assert_released(&t, &rec);
}

#[test]
fn pause_releases_and_resume_strikes_again_and_shifts_time() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    let at = t.events.iter().find(|e| e.kind == Kind::NoteOn && t.position(e).bar == 3).unwrap().t.0 + 50;
    clock.play_to(&handle.shared, at);
    handle.send(Command::Pause);
    wait_for(&handle, State::Paused);
    // Two seconds of pause.
    let pause = 2_000_000;
    clock.now.fetch_add(pause, Ordering::SeqCst);
    clock.open_to(at + pause);
    handle.send(Command::Resume);
    clock.open();
    let mut report = handle.join();
    assert_eq!(report.end, End::Finished);
    finish(&mut report);
    let rec = recording(&h);
    let paused_at = t.events.iter().take_while(|e| e.t.0 <= at).count();
    // At the pause: note-offs for every key down; at the resume: the same keys struck again.
    let down = keys_down(&t, rec[..paused_at].iter().map(|(_, b)| b.as_slice()));
    let n = down.count();
    assert!(n > 0);
    let offs: Vec<&Vec<u8>> = rec[paused_at..paused_at + n].iter().map(|(_, b)| b).collect();
    assert!(offs.iter().all(|b| b[0] & 0xF0 == 0x80), "pause releases the {n} keys down: {offs:?}");
    let ons: Vec<(u8, u8)> = rec[paused_at + n..paused_at + 2 * n].iter().map(|(_, b)| (b[0] & 0x0F, b[1])).collect();
    let expect: Vec<(u8, u8)> = down.iter().map(|(c, k, _)| (c.wire(), k)).collect();
    assert_eq!(ons, expect, "resume strikes the same keys again");
    // Everything after the resume is due two seconds later than planned.
    for (s, _) in &rec[paused_at + 2 * n..] {
        if s.plan.0 > at {
            assert_eq!(s.due.0, s.plan.0 + pause, "due time shifted by the pause");
        }
    }
    assert_released(&t, &rec);
}

#[test]
fn tempo_change_stretches_the_rest() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    let at = 10_000_000;
    clock.play_to(&handle.shared, at);
    handle.send(Command::Speed(500)); // half speed: plan time advances half as fast
    clock.open();
    let mut report = handle.join();
    finish(&mut report);
    let rec = recording(&h);
    for (s, _) in rec.iter().filter(|(s, _)| s.plan.0 > at + 10) {
        let expected = at + (s.plan.0 - at) * 2;
        assert!(s.due.0.abs_diff(expected) <= 2, "plan {} due {} expected {expected}", s.plan.0, s.due.0);
    }
}

#[test]
fn output_failure_stops_and_releases_the_other_outputs() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let flaky =
        Box::new(Flaky { down: Arc::default(), down_as: Link::Down, fail_at: Some(400), panic_at: None, seen: 0 });
    let (engine, _) = new(t.clone(), vec![flaky, out], ManualClock::new(), Config::default());
    let mut report = engine.run();
    assert!(
        matches!(report.end, End::OutputFailed { output: 0, error } if error.kind == OutputErrorKind::Disconnected)
    );
    finish(&mut report);
    let rec = recording(&h);
    assert!(rec.len() < t.events.len(), "playback stopped early");
    assert_released(&t, &rec);
}

#[test]
fn every_output_that_failed_is_published_also_one_that_failed_taking_the_release() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let first =
        Box::new(Flaky { down: Arc::default(), down_as: Link::Down, fail_at: Some(400), panic_at: None, seen: 0 });
    // Takes message 400 (the other's failure), then fails on the first message of the release.
    let second =
        Box::new(Flaky { down: Arc::default(), down_as: Link::Down, fail_at: Some(401), panic_at: None, seen: 0 });
    let (engine, handle) = new(t.clone(), vec![first, second, out], ManualClock::new(), Config::default());
    let mut report = engine.run();
    assert!(matches!(report.end, End::OutputFailed { output: 0, .. }), "{:?}", report.end);
    assert_eq!(handle.shared.failed.load(Ordering::SeqCst), 0b011, "both failed outputs, not the memory one");
    assert!(!handle.shared.release_cut.load(Ordering::SeqCst));
    finish(&mut report);
    assert_released(&t, &recording(&h));
}

#[test]
fn a_panicking_output_is_dropped_and_the_others_released() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let flaky =
        Box::new(Flaky { down: Arc::default(), down_as: Link::Down, fail_at: None, panic_at: Some(300), seen: 0 });
    let (engine, _) = new(t.clone(), vec![flaky, out], ManualClock::new(), Config::default());
    let mut report = engine.run();
    assert!(matches!(report.end, End::OutputFailed { output: 0, .. }), "{:?}", report.end);
    finish(&mut report);
    assert_released(&t, &recording(&h));
}

/// A link lost, or one not answering (a state of down): the same pause, and the control thread
/// learns which.
#[test]
fn link_down_with_pause_policy_waits_and_resumes() {
    for down_as in [Link::Down, Link::NotAnswering] {
        let t = shipped_timeline(PlanOptions::default());
        let (out, h) = memory(&t);
        let down = Arc::new(AtomicBool::new(false));
        let flaky = Box::new(Flaky { down: down.clone(), down_as, fail_at: None, panic_at: None, seen: 0 });
        let clock = GatedClock::default();
        let cfg = Config { on_disconnect: DisconnectPolicy::Pause, ..Config::default() };
        let (engine, handle) = new(t.clone(), vec![flaky, out], clock.clone(), cfg);
        let handle = spawn(engine, handle).unwrap();
        let at = 20_000_000;
        clock.play_to(&handle.shared, at);
        down.store(true, Ordering::SeqCst);
        wait_for(&handle, State::WaitingForLink);
        assert!(handle.shared.link_down.load(Ordering::SeqCst));
        assert_eq!(handle.shared.link_not_answering.load(Ordering::SeqCst), down_as == Link::NotAnswering);
        let gap = 5_000_000;
        clock.now.fetch_add(gap, Ordering::SeqCst);
        clock.open();
        std::thread::sleep(Duration::from_millis(30));
        let sent_while_down = handle.shared.next.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            handle.shared.next.load(Ordering::SeqCst),
            sent_while_down,
            "nothing new is played while the link is {down_as:?}"
        );
        down.store(false, Ordering::SeqCst);
        let mut report = handle.join();
        assert_eq!(report.end, End::Finished);
        finish(&mut report);
        let rec = recording(&h);
        let last = rec.last().unwrap().0;
        assert!(last.due.0 >= last.plan.0 + gap, "the clock stopped during the gap");
        assert_released(&t, &rec);
    }
}

#[test]
fn link_down_with_continue_policy_keeps_time() {
    for down_as in [Link::Down, Link::NotAnswering] {
        let t = shipped_timeline(PlanOptions::default());
        let (out, h) = memory(&t);
        let down = Arc::new(AtomicBool::new(true));
        let flaky = Box::new(Flaky { down, down_as, fail_at: None, panic_at: None, seen: 0 });
        let cfg = Config { on_disconnect: DisconnectPolicy::Continue, ..Config::default() };
        let (engine, _) = new(t.clone(), vec![flaky, out], ManualClock::new(), cfg);
        let shared = engine.shared();
        let mut report = engine.run();
        assert_eq!(report.end, End::Finished);
        assert_eq!(shared.link_not_answering.load(Ordering::SeqCst), down_as == Link::NotAnswering);
        finish(&mut report);
        let rec = recording(&h);
        assert!(rec.iter().all(|(s, _)| s.due == s.plan), "continue never shifts the clock ({down_as:?})");
    }
}

/// An output whose link the test can make gone for good (a JACK server shut down).
struct Gone {
    gone: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

impl Output for Gone {
    fn name(&self) -> &str {
        "gone"
    }
    fn send(&mut self, _bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn link(&self) -> Link {
        match self.gone.load(Ordering::SeqCst) {
            true => Link::Gone(OutputError { kind: OutputErrorKind::Disconnected, detail: "server gone" }),
            false => Link::Up,
        }
    }
}

#[test]
fn a_link_gone_for_good_fails_the_output_at_once_under_either_policy_and_releases_the_others() {
    let cases =
        [(DisconnectPolicy::Pause, false), (DisconnectPolicy::Continue, false), (DisconnectPolicy::Pause, true)];
    for (policy, paused) in cases {
        let t = shipped_timeline(PlanOptions::default());
        let (out, h) = memory(&t);
        let (gone, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let lost = Box::new(Gone { gone: gone.clone(), sent: sent.clone() });
        let clock = GatedClock::default();
        let cfg = Config { on_disconnect: policy, ..Config::default() };
        let (engine, handle) = new(t.clone(), vec![lost, out], clock.clone(), cfg);
        let mut handle = spawn(engine, handle).unwrap();
        let mid = t.events.iter().find(|e| e.kind == Kind::NoteOn && t.position(e).bar == 3).unwrap().t.0 + 50;
        clock.play_to(&handle.shared, mid);
        // Paused by the user: nothing is sent, and the loss is still seen (not at the next send).
        if paused {
            handle.send(Command::Pause);
            wait_for(&handle, State::Paused);
        }
        let before = sent.load(Ordering::SeqCst);
        gone.store(true, Ordering::SeqCst);
        // Seen while the clock stands still; then time runs for the release's pacing.
        let start = std::time::Instant::now();
        while handle.shared.failed.load(Ordering::SeqCst) != 1 {
            assert!(start.elapsed() < Duration::from_secs(5), "{policy:?}: the loss was not seen");
            std::thread::sleep(Duration::from_millis(1));
        }
        clock.open();
        let mut report = handle.join();
        assert!(
            matches!(report.end, End::OutputFailed { output: 0, error } if error.detail == "server gone"),
            "{policy:?}: {:?}",
            report.end
        );
        assert_eq!(sent.load(Ordering::SeqCst), before, "{policy:?}: nothing more to the gone output");
        assert!(!report.outputs.is_empty());
        finish(&mut report);
        let rec = recording(&h);
        let played = t.events.iter().take_while(|e| e.t.0 <= mid).count();
        assert!(rec.len() < t.events.len(), "{policy:?}: it stopped there");
        // Every key the other output had down was released (by the failure, or by the pause
        // before it), and the stops cancelled.
        let down = keys_down(&t, t.events[..played].iter().map(|e| t.bytes(&e.msg)));
        assert!(down.count() > 0, "the test loses the link while keys are down");
        let offs = rec[played..].iter().take_while(|(_, b)| b[0] & 0xF0 == 0x80).count();
        assert_eq!(offs, down.count(), "{policy:?} (paused: {paused}): {:?}", &rec[played..]);
        assert_released(&t, &rec);
    }
}

/// An output whose queue is always full.
struct Full;

impl Output for Full {
    fn name(&self) -> &str {
        "full"
    }
    fn send(&mut self, _bytes: &[u8], _at: Stamp) -> Result<(), OutputError> {
        Err(OutputError { kind: OutputErrorKind::Overflow, detail: "queue full" })
    }
}

#[test]
fn drops_are_counted_on_the_output_that_dropped() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let (engine, _) = new(t.clone(), vec![out, Box::new(Full)], ManualClock::new(), Config::default());
    let shared = engine.shared();
    let mut report = engine.run();
    assert_eq!(report.end, End::Finished, "a full queue drops, it does not fail the output");
    finish(&mut report);
    let sent = recording(&h).len() as u64;
    assert_eq!((shared.dropped_by.get(0), shared.dropped_by.get(1)), (0, sent));
    assert_eq!(report.dropped, sent);
    assert_eq!(shared.dropped_by.mask(), 0b10);
    assert_eq!(shared.dropped_by.get(MAX_OUTPUTS), 0);
}

#[test]
fn seek_resends_the_registration_of_the_new_position() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    clock.play_to(&handle.shared, 5_000_000);
    // Jump past bar 5, where Sw to Ped goes off and Gt to Ped on.
    let target = t.events.iter().find(|e| t.position(e).bar == 9).unwrap().t;
    handle.send(Command::Seek(target));
    clock.open();
    let mut report = handle.join();
    finish(&mut report);
    let rec = recording(&h);
    let jump = rec.iter().position(|(s, _)| s.plan == target).unwrap();
    let reg = t.registration_at(target).unwrap();
    let gt_to_ped = t.controls.iter().position(|c| c.name == "Gt to Ped").unwrap();
    assert!(reg.drawn.contains(&gt_to_ped));
    let sent: Vec<&[u8]> = rec[jump..].iter().map(|(_, b)| b.as_slice()).collect();
    let mut expected: Vec<&[u8]> = t.cancel.iter().map(|m| t.bytes(m)).collect();
    for &id in &reg.drawn {
        expected.extend(t.controls[id].on.iter().map(|m| t.bytes(m)));
    }
    assert_eq!(&sent[..expected.len()], expected.as_slice(), "cancel, then the registration of bar 9");
    assert_released(&t, &rec);
}

#[test]
fn the_stop_flag_stops_the_engine() {
    // The flag signal handlers set; a private one here so other tests keep playing.
    static FLAG: AtomicBool = AtomicBool::new(false);
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let cfg = Config { stop_flag: &FLAG, ..Config::default() };
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), cfg);
    let handle = spawn(engine, handle).unwrap();
    clock.play_to(&handle.shared, 8_000_000);
    FLAG.store(true, Ordering::SeqCst);
    handle.wake();
    clock.open(); // the cancel is paced: let time run
    let mut report = handle.join();
    assert_eq!(report.end, End::Stopped);
    finish(&mut report);
    assert_released(&t, &recording(&h));
}

#[test]
fn a_full_command_ring_cannot_lose_a_stop() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, mut handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    // Nothing drains the ring before the engine starts: it fills, and further commands are
    // refused...
    let taken = (0..100).filter(|_| handle.send(Command::Speed(1000))).count();
    assert_eq!(taken, 64, "the ring holds 64 commands");
    // ...but not a stop.
    assert!(handle.send(Command::Stop));
    let handle = spawn(engine, handle).unwrap();
    clock.open();
    let mut report = handle.join();
    assert_eq!(report.end, End::Stopped);
    finish(&mut report);
    let rec = recording(&h);
    assert!(rec.iter().all(|(_, b)| {
        ShortMsg::from_bytes(b)
            .and_then(|m| m.as_note_on())
            .is_none_or(|(ch, _)| t.divisions.iter().all(|d| d.channel != ch))
    }));
    let cancel: Vec<&[u8]> = t.cancel.iter().map(|m| t.bytes(m)).collect();
    let tail: Vec<&[u8]> = rec[rec.len() - cancel.len()..].iter().map(|(_, b)| b.as_slice()).collect();
    assert_eq!(tail, cancel, "stopped before the first note: only the release and the cancel");
}

#[test]
fn a_slow_stop_pace_never_makes_stopping_slow() {
    // 10 s between stop messages and no General Cancel: the cancel is every control's off (28
    // of them), which would take 270 s at that pace.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("organs/st-marys.toml")).unwrap();
    let organ = Organ::from_toml(&text.replace("stop_pace_ms = 4 ", "stop_pace_ms = 10000 "), "slow.toml").unwrap();
    assert_eq!(organ.stop_pace, Micros(10_000_000));
    let score = crate::score::load_file(&root.join("scores/bwv643.mid")).unwrap();
    let reg = Registration::load(&root.join("scores/bwv643.toml"), &organ).unwrap();
    let t = Arc::new(plan(&score, &organ, Some(&reg), &PlanOptions::default()).unwrap());
    assert!(t.cancel.len() > 20);
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, mut handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let handle_shared = handle.shared.clone();
    handle.send(Command::Stop);
    let handle = spawn(engine, handle).unwrap();
    clock.open();
    let mut report = handle.join();
    assert_eq!(report.end, End::Stopped);
    assert!(handle_shared.released.load(Ordering::SeqCst));
    finish(&mut report);
    let rec = recording(&h);
    let cancel = &rec[rec.len() - t.cancel.len()..];
    let took = cancel.last().unwrap().0.now.0 - cancel[0].0.now.0;
    assert!(took <= RELEASE_PACING.0, "the cancel took {took} µs");
    assert!(took >= RELEASE_PACING.0 - 100_000, "still paced, as evenly as the cap allows: {took} µs");
}

// ---- hymns: wait points and swapped plans ------------------------------------------------------

fn hymn_timeline(over: crate::registration::HymnOptions) -> Arc<Timeline> {
    use crate::plan::hymn::{fixture, plan_hymn};
    let organ = fixture::organ();
    let score = fixture::score();
    let reg = fixture::registration(&organ, fixture::REGISTRATION);
    Arc::new(
        plan_hymn(&score, None, &organ, Some(&reg), &PlanOptions::default(), &reg.hymn.overridden_by(&over)).unwrap(),
    )
}

fn wait_fermatas() -> crate::registration::HymnOptions {
    crate::registration::HymnOptions {
        fermata: Some(crate::registration::hymn::Fermata { hold: None, wait: true }),
        ..Default::default()
    }
}

fn wait_for(handle: &EngineHandle, state: State) {
    let start = std::time::Instant::now();
    while handle.shared.state() != state {
        assert!(start.elapsed() < Duration::from_secs(5), "engine never reached {state:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_hymn_with_section_ends_plays_through_without_allocating() {
    let t = hymn_timeline(Default::default());
    assert!(t.waits.iter().all(|w| w.kind == crate::plan::WaitKind::SectionEnd) && t.waits.len() == 5);
    let (out, h) = memory(&t);
    let clock = ManualClock::new();
    let (engine, _handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let counter = Counter::start();
    let mut report = engine.run();
    assert_eq!(counter.stop(), 0);
    assert_eq!(report.end, End::Finished);
    finish(&mut report);
    let rec = recording(&h);
    assert_eq!(rec.len(), t.events.len(), "section ends are not waited at unless asked");
    assert!(rec.iter().zip(&t.events).all(|((s, _), e)| s.due == e.t));
}

#[test]
fn a_fermata_wait_holds_the_keys_down_until_continue() {
    let t = hymn_timeline(wait_fermatas());
    let w = *t.waits.iter().find(|w| w.kind == crate::plan::WaitKind::Fermata).unwrap();
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    clock.open();
    wait_for(&handle, State::Waiting);
    assert_eq!(handle.shared.next.load(Ordering::SeqCst), w.index);
    assert_eq!(handle.shared.plan_time.load(Ordering::SeqCst), w.t.0);
    assert_eq!(handle.shared.wait.load(Ordering::SeqCst), 1 + t.waits.iter().position(|x| *x == w).unwrap());
    // However long the congregation takes, nothing more is sent (the clock runs on freely).
    let waited = 7_000_000;
    clock.now.fetch_add(waited, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(handle.shared.sent.load(Ordering::SeqCst), w.index as u64, "nothing sent while waiting");
    assert_eq!(handle.shared.state(), State::Waiting);
    handle.send(Command::Continue);
    // The fermatas of verses 2-4 wait too; continue each one.
    let fermatas: Vec<usize> =
        (0..t.waits.len()).filter(|&i| t.waits[i].kind == crate::plan::WaitKind::Fermata).collect();
    assert_eq!(fermatas.len(), 4);
    for &i in &fermatas[1..] {
        let start = std::time::Instant::now();
        while handle.shared.wait.load(Ordering::SeqCst) != i + 1 || handle.shared.state() != State::Waiting {
            assert!(start.elapsed() < Duration::from_secs(5), "never waited at wait point {i}");
            std::thread::sleep(Duration::from_millis(1));
        }
        handle.send(Command::Continue);
    }
    let mut report = handle.join();
    assert_eq!(report.end, End::Finished);
    finish(&mut report);
    let rec = recording(&h);
    // Exactly the plan, no release or re-strike at the wait: the keys stayed down through it.
    assert_eq!(rec.len(), t.events.len());
    for ((_, b), e) in rec.iter().zip(&t.events) {
        assert_eq!(b.as_slice(), t.bytes(&e.msg));
    }
    let down = keys_down(&t, rec[..w.index].iter().map(|(_, b)| b.as_slice()));
    assert_eq!(down.count(), 2, "E4 and the pedal note sounded through the wait");
    // Everything after the wait is due `waited` later than planned.
    let (s, _) = &rec[w.index];
    assert_eq!(s.due.0, s.plan.0 + waited);
    assert_released(&t, &rec);
}

#[test]
fn stop_during_a_fermata_wait_releases_the_held_chord() {
    let t = hymn_timeline(wait_fermatas());
    let w = *t.waits.iter().find(|w| w.kind == crate::plan::WaitKind::Fermata).unwrap();
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    clock.open();
    wait_for(&handle, State::Waiting);
    handle.send(Command::Stop);
    let mut report = handle.join();
    assert_eq!(report.end, End::Stopped);
    finish(&mut report);
    let rec = recording(&h);
    assert!(rec.len() > w.index);
    let offs: Vec<(u8, u8)> = rec[w.index..]
        .iter()
        .filter_map(|(_, b)| ShortMsg::from_bytes(b).and_then(|m| m.as_note_off()))
        .map(|(c, k)| (c.wire(), k))
        .collect();
    assert_eq!(offs, vec![(1, 64), (2, 48)], "the held E4 (Great) and C3 (Pedal) are released");
    assert_released(&t, &rec);
}

#[test]
fn pause_at_section_end_waits_once_in_silence() {
    let t = hymn_timeline(Default::default());
    let end0 = t.waits[0];
    assert_eq!(end0.kind, crate::plan::WaitKind::SectionEnd);
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    handle.send(Command::PauseAtSectionEnd(true));
    while !handle.shared.pause_at_section_end.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    clock.open();
    wait_for(&handle, State::Waiting);
    assert_eq!(handle.shared.next.load(Ordering::SeqCst), end0.index);
    assert!(!handle.shared.pause_at_section_end.load(Ordering::SeqCst), "used once");
    let waited = 3_000_000;
    clock.now.fetch_add(waited, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    handle.send(Command::Continue);
    let mut report = handle.join();
    assert_eq!(report.end, End::Finished, "no other section end waits");
    finish(&mut report);
    let rec = recording(&h);
    assert_eq!(rec.len(), t.events.len());
    let down = keys_down(&t, rec[..end0.index].iter().map(|(_, b)| b.as_slice()));
    assert!(down.is_empty(), "nothing sounds at the end of the play-over");
    assert_eq!(rec[end0.index].0.due.0, rec[end0.index].0.plan.0 + waited);
}

#[test]
fn a_swapped_plan_is_taken_before_it_differs_and_refused_after() {
    use crate::registration::hymn::{HymnOptions, VerseRegistration};
    let t = hymn_timeline(Default::default());
    // The same hymn with verse 2 on preset p.
    let organ = crate::plan::hymn::fixture::organ();
    let p = organ.presets.iter().position(|x| x.name == "p").unwrap();
    let v2 = HymnOptions {
        verse_registrations: vec![VerseRegistration { number: 2, preset: Some(p), ..Default::default() }],
        ..Default::default()
    };
    let t2 = hymn_timeline(v2);
    let first_diff = t.events.iter().zip(&t2.events).position(|(a, b)| a != b).unwrap();
    assert!(t2.events[first_diff].section == 2, "the plans differ from verse 2's registration on");
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    // Play into verse 1, then swap.
    let mid = t.sections[1].start.0 + 1_000_000;
    clock.play_to(&handle.shared, mid);
    assert!(handle.swap_timeline(t2.clone(), first_diff));
    while handle.shared.swaps.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let back = handle.returned().expect("the old plan comes back");
    assert!(Arc::ptr_eq(&back, &t));
    // Too late now for a plan that differs from the start.
    let late = hymn_timeline(HymnOptions { verses: Some(3), ..Default::default() });
    assert!(handle.swap_timeline(late.clone(), 0));
    let start = std::time::Instant::now();
    let refused = loop {
        if let Some(r) = handle.returned() {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(Arc::ptr_eq(&refused, &late));
    clock.open();
    let mut report = handle.join();
    finish(&mut report);
    let rec = recording(&h);
    assert_eq!(rec.len(), t2.events.len());
    for ((_, b), e) in rec.iter().zip(&t2.events) {
        assert_eq!(b.as_slice(), t2.bytes(&e.msg), "what was sent is the new plan");
    }
}

// ---- a console whose stops toggle ------------------------------------------------------------

/// The toggle organ (no General Cancel; it starts with everything in) and its console.
fn toggle_timeline() -> (crate::organ::Organ, Arc<Timeline>) {
    use crate::plan::console_sim::{TOGGLE_REGISTRATION, toggle_organ};
    use crate::plan::hymn::fixture;
    let organ = toggle_organ("everything_in_at_start = true");
    let reg = fixture::registration(&organ, TOGGLE_REGISTRATION);
    let t = Arc::new(plan(&fixture::score(), &organ, Some(&reg), &PlanOptions::default()).unwrap());
    (organ, t)
}

/// The console after the messages recorded from the engine.
fn console_after(organ: &crate::organ::Organ, rec: &[(Stamp, Vec<u8>)]) -> Vec<String> {
    let mut console = crate::plan::console_sim::Console::new(organ, vec![false; organ.controls.len()]);
    for (_, b) in rec {
        console.receive(b);
    }
    console.names(organ).into_iter().map(String::from).collect()
}

#[test]
fn stopping_puts_in_exactly_the_toggles_that_were_drawn() {
    let (organ, t) = toggle_timeline();
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    // Into bar 3: the Trumpet drawn instead of the Flute.
    let bar3 = t.events.iter().find(|e| e.kind == Kind::NoteOn && t.position(e).bar == 3).unwrap().t.0;
    let stop_at = bar3 + 100_000;
    clock.play_to(&handle.shared, stop_at);
    handle.send(Command::Stop);
    clock.open();
    let mut report = handle.join();
    assert_eq!(report.end, End::Stopped);
    finish(&mut report);
    let rec = recording(&h);
    let played = t.events.iter().take_while(|e| e.t.0 <= stop_at).count();
    assert_eq!(
        console_after(&organ, &rec[..played]),
        ["Gt Principal 8", "Gt Trumpet 8", "Ped Subbass 16", "Ped Octave 8", "Gt to Ped"]
    );
    assert!(console_after(&organ, &rec).is_empty(), "everything in after the stop");
    // After the keys: the state stop's off (the cancel), then exactly the four toggles drawn.
    let toggles = rec[played..].iter().filter(|(_, b)| b[0] == 0xCB).count();
    assert_eq!(toggles, 4);
}

#[test]
fn seeking_on_a_toggle_console_flips_only_what_differs() {
    let (organ, t) = toggle_timeline();
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let mut handle = spawn(engine, handle).unwrap();
    let bar = |n: u32| t.events.iter().find(|e| e.kind == Kind::NoteOn && t.position(e).bar == n).unwrap().t;
    let seek_at = bar(4).0 + 100_000;
    clock.play_to(&handle.shared, seek_at);
    // Back to bar 3: the Trumpet and the coupler again, and the state stop.
    handle.send(Command::Seek(bar(3)));
    clock.open();
    let mut report = handle.join();
    finish(&mut report);
    let rec = recording(&h);
    let played = t.events.iter().take_while(|e| e.t.0 <= seek_at).count();
    assert_eq!(console_after(&organ, &rec[..played]), ["Gt Principal 8", "Ped Subbass 16"]);
    // The jump's messages are stamped with the new position, before bar 3's first note (a
    // note-on on the Great's or the Pedal's channel).
    let from = played + rec[played..].iter().position(|(s, _)| s.plan == bar(3)).unwrap();
    let jumped =
        from + rec[from..].iter().take_while(|(s, b)| s.plan == bar(3) && !matches!(b[0], 0x91 | 0x92)).count();
    assert_eq!(
        console_after(&organ, &rec[..jumped]),
        ["Gt Principal 8", "Gt Trumpet 8", "Ped Subbass 16", "Ped Octave 8", "Gt to Ped"]
    );
    assert!(console_after(&organ, &rec).is_empty(), "everything in at the end");
}

#[test]
fn suspension_releases_cancels_and_goes_on_as_from_a_pause() {
    // Private flags, so that other tests keep playing.
    static SUSPEND: AtomicBool = AtomicBool::new(false);
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let cfg = Config { suspend_flag: &SUSPEND, ..Config::default() };
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), cfg);
    let handle = spawn(engine, handle).unwrap();
    // Into bar 6 (chords held, a registration drawn), then suspend.
    let at = t.events.iter().find(|e| e.kind == Kind::NoteOn && t.position(e).bar == 6).unwrap().t.0 + 100;
    clock.play_to(&handle.shared, at);
    let played = t.events.iter().take_while(|e| e.t.0 <= at).count();
    SUSPEND.store(true, Ordering::SeqCst);
    handle.wake();
    clock.open_to(at + 2_000_000); // the cancel is paced
    let start = std::time::Instant::now();
    while handle.shared.suspended.load(Ordering::SeqCst) != 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "the engine did not report its suspension");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(handle.shared.state(), State::Suspended);
    let sent = handle.shared.sent.load(Ordering::SeqCst);
    // Ten seconds stopped; nothing is sent meanwhile.
    let suspended_for = 10_000_000;
    clock.now.fetch_add(suspended_for, Ordering::SeqCst);
    clock.open_to(at + 2_000_000 + suspended_for);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(handle.shared.sent.load(Ordering::SeqCst), sent, "nothing sent while suspended");
    // Going on: the registration drawn again, the same keys struck again, then the plan from
    // where it stood, shifted by the suspension — no burst.
    SUSPEND.store(false, Ordering::SeqCst);
    handle.wake();
    clock.open();
    let mut report = handle.join();
    assert_eq!(report.end, End::Finished);
    finish(&mut report);
    let rec = recording(&h);
    let down = keys_down(&t, rec[..played].iter().map(|(_, b)| b.as_slice()));
    assert!(down.count() > 0, "keys were down");
    // Suspended: the keys up, CC 123 on every division, the cancel; nothing more.
    let mut expected: Vec<Vec<u8>> =
        down.iter().map(|(c, k, _)| ShortMsg::note_off(c, k).as_bytes().to_vec()).collect();
    expected.extend(t.divisions.iter().map(|d| ShortMsg::all_notes_off(d.channel).as_bytes().to_vec()));
    expected.extend(t.cancel.iter().map(|m| t.bytes(m).to_vec()));
    assert_eq!(sent as usize, played + expected.len());
    let at_suspension: Vec<Vec<u8>> = rec[played..sent as usize].iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(at_suspension, expected, "release, all-notes-off, cancel");
    let resumed = played + expected.len();
    let drawn = t.registration_at(Micros(at)).unwrap().drawn.clone();
    let mut again: Vec<Vec<u8>> =
        drawn.iter().flat_map(|&c| t.controls[c].on.iter().map(|m| t.bytes(m).to_vec())).collect();
    again.extend(down.iter().map(|(c, k, v)| ShortMsg::note_on(c, k, v.max(1)).as_bytes().to_vec()));
    let sent: Vec<Vec<u8>> = rec[resumed..resumed + again.len()].iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(sent, again, "the registration drawn again, then the keys struck again");
    let rest = &rec[resumed + again.len()..];
    assert_eq!(rest.len(), t.events.len() - played, "then the rest of the plan");
    let shift = rest[0].0.due.0 - rest[0].0.plan.0;
    assert!(shift >= suspended_for, "the clock stood during the suspension ({shift} µs)");
    for (s, _) in rest {
        assert_eq!(s.due.0, s.plan.0 + shift, "the rest keeps its own pace");
    }
    assert_released(&t, &rec);
}

#[test]
fn a_thread_held_up_goes_on_from_where_it_stood_without_a_burst() {
    let t = shipped_timeline(PlanOptions::default());
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), Config::default());
    let handle = spawn(engine, handle).unwrap();
    let at = 20_000_000;
    clock.play_to(&handle.shared, at);
    // The process stopped for 30 s (SIGSTOP): the clock jumps while the engine plays.
    let gap = 30_000_000;
    clock.now.fetch_add(gap, Ordering::SeqCst);
    clock.open();
    let mut report = handle.join();
    assert_eq!(report.end, End::Finished);
    finish(&mut report);
    let rec = recording(&h);
    assert_eq!(rec.len(), t.events.len());
    let held_up = handle_held_up(&rec, at);
    assert!(held_up >= gap - 1_000_000 && held_up <= gap, "the clock moved on by the gap ({held_up} µs)");
    for (s, _) in &rec {
        assert!(s.now.0 - s.due.0 <= HELD_UP.0, "sent {} µs late: a burst", s.now.0 - s.due.0);
    }
}

/// How far the plan was moved on after `at` (due − plan of the messages after it).
fn handle_held_up(rec: &[(Stamp, Vec<u8>)], at: u64) -> u64 {
    rec.iter().filter(|(s, _)| s.plan.0 > at).map(|(s, _)| s.due.0 - s.plan.0).max().unwrap_or(0)
}

#[test]
fn hurrying_sends_the_rest_of_the_cancel_at_once() {
    static STOP: AtomicBool = AtomicBool::new(false);
    static HURRY: AtomicBool = AtomicBool::new(false);
    let t = shipped_timeline(PlanOptions::default());
    assert!(t.cancel.len() > 10 && t.stop_pace > Micros::ZERO, "a paced cancel of many messages");
    let (out, h) = memory(&t);
    let clock = GatedClock::default();
    let cfg = Config { stop_flag: &STOP, hurry_flag: &HURRY, ..Config::default() };
    let (engine, handle) = new(t.clone(), vec![out], clock.clone(), cfg);
    let handle = spawn(engine, handle).unwrap();
    let at = 10_000_000;
    clock.play_to(&handle.shared, at);
    STOP.store(true, Ordering::SeqCst);
    handle.wake();
    // The clock stands: the paced cancel waits after its first message…
    let start = std::time::Instant::now();
    let mut sent = 0;
    loop {
        std::thread::sleep(Duration::from_millis(30));
        let now = handle.shared.sent.load(Ordering::SeqCst);
        if now == sent && now > 0 {
            break;
        }
        sent = now;
        assert!(start.elapsed() < Duration::from_secs(10), "the release did not settle");
    }
    assert!(!handle.is_finished(), "the cancel is paced");
    // …until a second request hurries it: the rest goes at once (the clock still stands, so
    // the engine could not end otherwise).
    HURRY.store(true, Ordering::SeqCst);
    handle.wake();
    let mut report = handle.join();
    assert_eq!(report.end, End::Stopped);
    finish(&mut report);
    assert_released(&t, &recording(&h));
}
