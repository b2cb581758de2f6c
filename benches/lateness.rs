//! Lateness of the real-time engine against the best sleep-based player, on the same schedule
//! in the same run: actual send time − deadline over a dense piece (12-note chords every 24.1 ms,
//! over 10,000 messages) played to the `null` output, on an idle machine and with every core
//! kept busy by spinning threads.
//!
//! - **organ**: the engine as `organ play` runs it (SCHED_FIFO when the OS allows it; the CPU
//!   held out of deep idle states through `/dev/cpu_dma_latency` when the OS allows it; parks
//!   until its learned approach margin, naps to its learned spin margin, then spins).
//! - **organ, fixed 1 ms spin**: the engine as it was before it learned its margins (park
//!   until 1 ms before each deadline, spin the rest), for comparison.
//! - **organ, deep idle allowed**: the engine without its idle-state request (as where
//!   `/dev/cpu_dma_latency` is not writable), to show what that request is worth.
//! - **sleep-based player**: what careful players do: one thread at SCHED_FIFO (when allowed)
//!   that sleeps to each message's absolute deadline with `clock_nanosleep(CLOCK_MONOTONIC,
//!   TIMER_ABSTIME)` and sends; no spinning. It holds the same idle-state request as the
//!   engine, so the comparison is of the waiting alone.
//!
//! Each reports p50/p99/max lateness in µs, the messages later than 1 ms, and the CPU time of
//! their thread per minute of music, and how many times the organ's p99 the others' is. README
//! records the figures.
//!
//! Run: `cargo bench --bench lateness` (one round), `cargo bench --bench lateness -- 5` (five
//! rounds and a summary). A custom harness (`harness = false`): lateness is a distribution
//! over one real-time run, not the duration of a repeated function, so criterion's iteration
//! model does not fit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use organ::engine::clock::Limits;
use organ::engine::{self, Config, Cost, End, LatenessStats, SystemClock, WakeStats};
use organ::midi::Micros;
use organ::organ::Organ;
use organ::output::record::NullOutput;
use organ::output::{Output, Stamp};
use organ::plan::{PlanOptions, Timeline, plan};

/// The dense piece's tempo, in µs a quarter note (about 249 bpm): its chords come every
/// 24.1237 ms, so over a run they fall at every phase of the kernel's timer tick, as real music
/// does. Until 2026-12-01 it was 240,000 (250 bpm, a chord every 24 ms): every deadline was then
/// a whole number of 4 ms after the first, the same phase of a 250 Hz tick, so a run either
/// never met the tick or (rarely) always did. On the development VM the tick takes the CPU for
/// 36-79 µs (p10-p90) 250 times a second, about 1 % of the time past 20 µs.
const TEMPO: u32 = 241_237;

/// A format-1 SSGGP-shaped file: 12-note chords (Great RH 4, Great LH 4, Pedal 2, Swell 2)
/// every `step` ticks, each held for most of the step.
fn dense_score(chords: usize) -> Vec<u8> {
    let ppq = 480u16;
    let step = 48u32; // a 40th of a whole note; at [`TEMPO`] about 24.1 ms
    let ev = |delta: u32, kind| TrackEvent { delta: u28::new(delta), kind };
    let tempo = ev(0, TrackEventKind::Meta(MetaMessage::Tempo(u24::new(TEMPO))));
    let mut tracks = Vec::new();
    let parts: [(u8, &[u8]); 5] =
        [(0, &[72, 76]), (0, &[60, 64]), (1, &[67, 71, 74, 79]), (1, &[48, 52, 55, 59]), (2, &[36, 43])];
    for (i, (ch, keys)) in parts.iter().enumerate() {
        let mut t = Vec::new();
        if i == 0 {
            t.push(tempo);
        }
        let mut delta = 0;
        for c in 0..chords {
            let shift = (c % 5) as u8;
            for (j, &k) in keys.iter().enumerate() {
                let key = u7::new(k + shift);
                t.push(ev(
                    if j == 0 { delta } else { 0 },
                    TrackEventKind::Midi {
                        channel: u4::new(*ch),
                        message: MidiMessage::NoteOn { key, vel: u7::new(80) },
                    },
                ));
            }
            for (j, &k) in keys.iter().enumerate() {
                let key = u7::new(k + shift);
                t.push(ev(
                    if j == 0 { step - 8 } else { 0 },
                    TrackEventKind::Midi {
                        channel: u4::new(*ch),
                        message: MidiMessage::NoteOff { key, vel: u7::new(0) },
                    },
                ));
            }
            delta = 8;
        }
        t.push(ev(0, TrackEventKind::Meta(MetaMessage::EndOfTrack)));
        tracks.push(t);
    }
    let smf = Smf { header: Header { format: Format::Parallel, timing: Timing::Metrical(u15::new(ppq)) }, tracks };
    let mut out = Vec::new();
    smf.write_std(&mut out).unwrap();
    out
}

fn timeline() -> Arc<Timeline> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let organ = Organ::load(&root.join("organs/st-marys.toml")).unwrap();
    let score = organ::score::load_bytes(&dense_score(450), "dense.mid").unwrap();
    let opts = PlanOptions { stops: vec!["full".into()], ..PlanOptions::default() };
    Arc::new(plan(&score, &organ, None, &opts).unwrap())
}

/// What one player did on one run.
struct Run {
    stats: LatenessStats,
    cost: Cost,
    wake: Option<WakeStats>,
    /// The player's thread ran at SCHED_FIFO.
    realtime: bool,
    /// The CPU was held out of deep idle states (`/dev/cpu_dma_latency` at 0) while it ran.
    awake: bool,
    /// CPU time the hypervisor took from this virtual machine during the run, in ms.
    steal_ms: Option<u64>,
}

/// The engine, as `organ play` runs it (`clock`: its system clock, or one with a fixed margin).
/// `keep_awake`: whether it holds the CPU out of deep idle states as `organ play` does.
fn run_engine(t: &Arc<Timeline>, clock: SystemClock, keep_awake: bool) -> Run {
    let steal = steal_ms();
    let outputs: Vec<Box<dyn Output>> = vec![Box::new(NullOutput)];
    let (eng, handle) = engine::new(t.clone(), outputs, clock, Config { keep_awake, ..Config::default() });
    let handle = engine::spawn(eng, handle).unwrap();
    let r = handle.join();
    assert_eq!(r.end, End::Finished);
    Run {
        stats: r.stats,
        cost: r.cost,
        wake: r.wake,
        realtime: r.realtime,
        awake: r.awake == organ::engine::Awake::Held,
        steal_ms: stolen_since(steal),
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a plain call with a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The best sleep-based player: SCHED_FIFO when allowed, `clock_nanosleep` to each absolute
/// deadline (no drift, no spinning), then send.
fn run_sleeper(t: &Arc<Timeline>) -> Run {
    let steal = steal_ms();
    let t = t.clone();
    let (stats, cost, realtime, awake) = std::thread::spawn(move || {
        // The same idle-state request as the engine holds while it plays (a fair comparison).
        let awake = organ::engine::awake::hold();
        // SAFETY: plain calls on the calling thread with a valid sched_param.
        let realtime = unsafe {
            let param = libc::sched_param { sched_priority: 40 };
            libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0
        };
        let mut out = NullOutput;
        let mut stats = LatenessStats::new();
        let cpu0 = engine::thread_cpu_time();
        let base = monotonic_ns();
        for e in &t.events {
            let due = base + e.t.0 * 1_000;
            if monotonic_ns() < due {
                let ts = libc::timespec { tv_sec: (due / 1_000_000_000) as _, tv_nsec: (due % 1_000_000_000) as _ };
                // SAFETY: a valid timespec; TIMER_ABSTIME sleeps to that instant (EINTR: the
                // message is sent at once, and shows as late if it was).
                unsafe {
                    libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut());
                }
            }
            let now = monotonic_ns();
            let stamp = Stamp { plan: e.t, due: Micros((due - base) / 1_000), now: Micros((now - base) / 1_000) };
            out.send(t.bytes(&e.msg), stamp).unwrap();
            stats.record(now.saturating_sub(due) / 1_000);
        }
        let wall = Micros((monotonic_ns() - base) / 1_000);
        let cpu = engine::thread_cpu_time().zip(cpu0).map(|(b, a)| Micros(b.0 - a.0));
        (stats, Cost { cpu, wall }, realtime, awake.is_some())
    })
    .join()
    .unwrap();
    Run { stats, cost, wake: None, realtime, awake, steal_ms: stolen_since(steal) }
}

/// CPU time the hypervisor took from this virtual machine ("steal", /proc/stat), in ms: a
/// stalled virtual CPU delays every thread, real-time or not, and explains outliers no program
/// can avoid.
fn steal_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?;
    let ticks: u64 = cpu.split_whitespace().nth(8)?.parse().ok()?;
    Some(ticks * 10) // USER_HZ = 100
}

fn stolen_since(before: Option<u64>) -> Option<u64> {
    before.zip(steal_ms()).map(|(a, b)| b.saturating_sub(a))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `p50 1 p99 6 max 40 µs, >1ms 0, CPU 3.10 s/min`
fn cell(r: &Run) -> String {
    let s = &r.stats;
    format!(
        "p50 {:>4} p99 {:>5} max {:>6} µs, >1ms {:>3}, CPU {:>5} s/min",
        s.percentile(50.0),
        s.percentile(99.0),
        s.max(),
        s.count_above(1_000),
        r.cost.cpu_per_minute().map_or("?".into(), |c| format!("{c:.2}"))
    )
}

/// The organ's learned margins and spinning.
fn margins(organ: &Run) -> String {
    let Some(w) = organ.wake else { return String::new() };
    let (a, s) = (&w.approach, &w.spin);
    let ms = |m: Micros| m.0 as f64 / 1e3;
    format!(
        "parks end {:.2} ms before a deadline ({:.2}-{:.2}), naps {:.2} ms ({:.2}-{:.2}); late: {} of {} parks \
         (worst {:.2} ms), {} of {} naps (worst {:.2} ms), {} stalls beyond any margin; spinning {:.2} s/min",
        ms(a.margin),
        ms(a.min),
        ms(a.max),
        ms(s.margin),
        ms(s.min),
        ms(s.max),
        a.late,
        a.sleeps,
        ms(a.worst_overshoot),
        s.late,
        s.sleeps,
        ms(s.worst_overshoot),
        a.stalls + s.stalls,
        w.spun.0 as f64 / 1e6 * 60e6 / organ.cost.wall.0.max(1) as f64
    )
}

/// The players' names beside their runs.
fn named(runs: &[Run; 4]) -> Vec<(&'static str, &Run)> {
    NAMES.iter().copied().zip(runs.iter()).collect()
}

/// One condition: the players side by side.
fn rows(label: &str, players: &[(&str, &Run)]) {
    println!("  {label}:");
    let organ_p99 = players[0].1.stats.percentile(99.0).max(1) as f64;
    for (i, (who, r)) in players.iter().enumerate() {
        let ratio = r.stats.percentile(99.0) as f64 / organ_p99;
        let steal = r.steal_ms.map_or("?".into(), |v| v.to_string());
        let vs = if i == 0 { String::new() } else { format!("  p99 ×{ratio:.1} the organ's") };
        println!("    {who:<24} {}  (stolen {steal} ms){vs}", cell(r));
        // The learned margins of the adaptive players (the fixed one's are its 1 ms).
        if r.wake.is_some() && players[i].0 != NAMES[1] {
            println!("    {:<24} {}", "", margins(r));
        }
        // Why the missed deadlines were missed: the CPU taken from a spin, or a late sleep.
        if let Some(w) = &r.wake {
            println!("    {:<24} {}", "", organ::play::deadlines_line(w));
        }
        if !r.realtime {
            println!("    {:<24} (ran at normal priority: SCHED_FIFO refused)", "");
        }
        if !r.awake {
            println!("    {:<24} (deep idle states allowed: not asked for, or /dev/cpu_dma_latency not writable)", "");
        }
    }
}

/// Keeps every core busy with spinning threads (normal priority) until dropped.
struct Spinners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Spinners {
    fn start(n: usize) -> Spinners {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Spinners { stop, threads }
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The engine as it was before it learned its margins: park until 1 ms before each deadline,
/// spin the rest.
fn fixed_1ms() -> SystemClock {
    let fixed = Limits { start: Micros(1_000), min: Micros(1_000), max: Micros(1_000) };
    SystemClock::with_limits(fixed, fixed)
}

/// The players on the same schedule.
fn players(t: &Arc<Timeline>) -> [Run; 4] {
    [
        run_engine(t, SystemClock::new(), true),
        run_engine(t, fixed_1ms(), true),
        run_engine(t, SystemClock::new(), false),
        run_sleeper(t),
    ]
}

const NAMES: [&str; 4] = ["organ", "organ, fixed 1 ms spin", "organ, deep idle allowed", "sleep-based player"];

/// One round: the players idle, then with every core busy. Returns the p99s, idle then busy.
fn round(t: &Arc<Timeline>, cores: usize) -> [[u64; 4]; 2] {
    println!("round at load average {}:", load_average());
    let idle = players(t);
    rows("idle", &named(&idle));
    let spinners = Spinners::start(cores);
    let busy = players(t);
    drop(spinners);
    rows(&format!("{cores} cores busy (spinning threads)"), &named(&busy));
    [idle.each_ref().map(|r| r.stats.percentile(99.0)), busy.each_ref().map(|r| r.stats.percentile(99.0))]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: then only check that it runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1).max(1);
    let t = timeline();
    let chords = t.events.iter().filter(|e| e.kind == organ::plan::Kind::NoteOn).count() / 12;
    println!("dense piece: {} messages ({} note-ons in 12-note chords), {}", t.events.len(), chords * 12, t.duration);
    if quick {
        println!("(run with `cargo bench --bench lateness [-- ROUNDS]` to measure)");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let p99s: Vec<[[u64; 4]; 2]> = (0..rounds).map(|_| round(&t, cores)).collect();
    if rounds > 1 {
        println!("{rounds} rounds in {:.0} s; p99 (µs) of each round:", started.elapsed().as_secs_f64());
        for (c, condition) in ["idle", "busy"].iter().enumerate() {
            let col = |i: usize| p99s.iter().map(|p| p[c][i].to_string()).collect::<Vec<_>>().join(", ");
            let ok = p99s.iter().filter(|p| p[c][0] <= 20).count();
            println!(
                "  {condition}: organ {} ({ok} of {rounds} ≤ 20 µs); fixed 1 ms spin {}; deep idle allowed {}; \
                 sleep-based {}",
                col(0),
                col(1),
                col(2),
                col(3)
            );
        }
    }
}
