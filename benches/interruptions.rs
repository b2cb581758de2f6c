//! What this machine takes from a thread that never lets go of the CPU: the floor under any
//! engine's lateness, whatever it does in user space.
//!
//! A probe thread at SCHED_FIFO (when the OS allows it), pinned to one CPU at a time and holding
//! `/dev/cpu_dma_latency` at 0 like the engine, reads `CLOCK_MONOTONIC` in a tight loop and
//! records every gap between two reads longer than 2 µs: each is a moment the CPU was taken from
//! it (the kernel's timer tick, other interrupts, the hypervisor). It spins in windows of 800 ms
//! with 200 ms asleep between them, so that the kernel's real-time throttling (by default a
//! SCHED_FIFO thread may run 950 ms of each second) never takes the CPU from it; a probe that
//! spun without a break would see a 50 ms stall each second that no engine meets (it spins about
//! a tenth of the time).
//!
//! For each CPU it prints the gaps a second, the tick-sized ones (20-150 µs) with their
//! p10/p50/p90 and the phase they come at, the stalls longer than 150 µs, and the figure that
//! bounds the lateness benchmark: the share of time that lies more than 20 µs into a gap. A
//! spinning engine whose deadlines fall at random phases reaches about that share of them more
//! than 20 µs late even with a perfect wait, so where it is above 1 % no engine can hold a p99 of
//! 20 µs on this machine.
//!
//! Run: `cargo bench --bench interruptions` (5 s a CPU), `cargo bench --bench interruptions --
//! 20` (20 s a CPU). A custom harness: the result is a distribution of gaps, not a repeated
//! function's duration. README records the figures next to the lateness benchmark's.

use std::time::{Duration, Instant};

/// Gaps longer than this are recorded.
const GAP_NS: u64 = 2_000;
/// The lateness target the share is computed against.
const TARGET_NS: u64 = 20_000;
/// Gaps up to this long are tick-sized; longer ones are stalls.
const TICK_MAX_NS: u64 = 150_000;

fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Pins the calling thread to `cpu` and asks for SCHED_FIFO; returns whether it got it.
fn pin_and_prioritise(cpu: usize) -> bool {
    // SAFETY: plain libc calls on the calling thread with valid, initialised arguments.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        let param = libc::sched_param { sched_priority: 20 };
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0
    }
}

/// One gap: when it began (CLOCK_MONOTONIC, ns) and how long it lasted.
#[derive(Clone, Copy)]
struct Gap {
    at: u64,
    len: u64,
}

struct Probe {
    gaps: Vec<Gap>,
    spun_ns: u64,
    fifo: bool,
}

/// Spins on `cpu` for `seconds` in 800 ms windows and records the gaps.
fn probe(cpu: usize, seconds: u64) -> Probe {
    std::thread::spawn(move || {
        let fifo = pin_and_prioritise(cpu);
        let mut gaps = Vec::with_capacity(1 << 20);
        let mut spun_ns = 0;
        let windows = seconds * 5 / 4;
        for _ in 0..windows {
            let start = now_ns();
            let end = start + 800_000_000;
            let mut prev = start;
            loop {
                let t = now_ns();
                if t >= end {
                    break;
                }
                if t - prev > GAP_NS && gaps.len() < gaps.capacity() {
                    gaps.push(Gap { at: prev, len: t - prev });
                }
                prev = t;
            }
            spun_ns += now_ns() - start;
            std::thread::sleep(Duration::from_millis(200));
        }
        Probe { gaps, spun_ns, fifo }
    })
    .join()
    .expect("the probe thread does not panic")
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

/// The 4 ms phase (in 100 µs bins) most tick-sized gaps begin at, and the share that do.
fn tick_phase(ticks: &[Gap]) -> (u64, f64) {
    let mut bins = [0usize; 40];
    for g in ticks {
        bins[((g.at % 4_000_000) / 100_000) as usize] += 1;
    }
    let (bin, n) = bins.iter().enumerate().max_by_key(|(_, n)| **n).map(|(b, n)| (b, *n)).unwrap_or((0, 0));
    (bin as u64 * 100, if ticks.is_empty() { 0.0 } else { n as f64 / ticks.len() as f64 })
}

fn report(cpu: usize, p: &Probe) {
    let secs = p.spun_ns as f64 / 1e9;
    let ticks: Vec<Gap> = p.gaps.iter().copied().filter(|g| g.len > TARGET_NS && g.len <= TICK_MAX_NS).collect();
    let mut tick_lens: Vec<u64> = ticks.iter().map(|g| g.len).collect();
    tick_lens.sort_unstable();
    let stalls: Vec<u64> = p.gaps.iter().map(|g| g.len).filter(|&l| l > TICK_MAX_NS).collect();
    let beyond: u64 = p.gaps.iter().map(|g| g.len.saturating_sub(TARGET_NS)).sum();
    let beyond_ticks: u64 = ticks.iter().map(|g| g.len - TARGET_NS).sum();
    let (phase, phase_share) = tick_phase(&ticks);
    println!(
        "cpu {cpu}{}: spun {secs:.1} s; {:.0} gaps > 2 µs a second",
        if p.fifo { "" } else { " (SCHED_FIFO refused: normal priority)" },
        p.gaps.len() as f64 / secs
    );
    println!(
        "  tick-sized (20-150 µs): {:.0} a second, p10 {} p50 {} p90 {} µs; {:.0} % of them begin {}-{} µs into each 4 ms",
        ticks.len() as f64 / secs,
        percentile(&tick_lens, 10.0) / 1000,
        percentile(&tick_lens, 50.0) / 1000,
        percentile(&tick_lens, 90.0) / 1000,
        phase_share * 100.0,
        phase,
        phase + 100
    );
    println!(
        "  stalls > 150 µs: {:.1} a second, {:.1} ms a second in all, longest {:.2} ms",
        stalls.len() as f64 / secs,
        stalls.iter().sum::<u64>() as f64 / 1e6 / secs,
        stalls.iter().max().copied().unwrap_or(0) as f64 / 1e6
    );
    println!(
        "  time more than 20 µs into a gap: {:.2} % ({:.2} % in tick-sized gaps): the share of deadlines at random \
         phases a perfect spinning engine reaches more than 20 µs late",
        beyond as f64 / p.spun_ns as f64 * 100.0,
        beyond_ticks as f64 / p.spun_ns as f64 * 100.0
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    // `cargo bench` passes `--bench`; the first number among the arguments is seconds a CPU.
    let seconds = std::env::args().skip(1).find_map(|a| a.parse::<u64>().ok()).unwrap_or(5).max(1);
    // Held for the whole run, as the engine holds it while it plays.
    let _awake = std::fs::OpenOptions::new().write(true).open("/dev/cpu_dma_latency").and_then(|mut f| {
        use std::io::Write;
        f.write_all(&0i32.to_ne_bytes()).map(|_| f)
    });
    if _awake.is_err() {
        println!("(deep idle states allowed: /dev/cpu_dma_latency not writable)");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    println!("interruptions: {seconds} s of spinning on each of {cpus} CPUs, load average {}", load_average());
    for cpu in 0..cpus {
        let p = probe(cpu, seconds);
        report(cpu, &p);
    }
    println!("({:.0} s)", started.elapsed().as_secs_f64());
}
