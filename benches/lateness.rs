//! Lateness of the real-time engine: actual send time − deadline, over a dense piece (12-note
//! chords every 25 ms, over 10,000 messages) played to the `null` output on the system clock,
//! once on an idle machine and once with every core kept busy by spinning threads.
//!
//! Run: `cargo bench --bench lateness` (prints p50/p99/max in µs; README records the figures).
//! A custom harness (`harness = false`): lateness is a distribution over one real-time run,
//! not the duration of a repeated function, so criterion's iteration model does not fit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use organ::engine::{self, Config, End, SystemClock};
use organ::organ::Organ;
use organ::output::Output;
use organ::output::record::NullOutput;
use organ::plan::{PlanOptions, Timeline, plan};

/// A format-1 SSGGP-shaped file: 12-note chords (Great RH 4, Great LH 4, Pedal 2, Swell 2)
/// every `step` ticks, each held for most of the step.
fn dense_score(chords: usize) -> Vec<u8> {
    let ppq = 480u16;
    let step = 48u32; // a 40th of a whole note; at 250 bpm that is 24 ms
    let ev = |delta: u32, kind| TrackEvent { delta: u28::new(delta), kind };
    let tempo = ev(0, TrackEventKind::Meta(MetaMessage::Tempo(u24::new(240_000))));
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

fn run(t: &Arc<Timeline>) -> organ::engine::Report {
    let outputs: Vec<Box<dyn Output>> = vec![Box::new(NullOutput)];
    let (eng, handle) = engine::new(t.clone(), outputs, SystemClock::new(), Config::default());
    let handle = engine::spawn(eng, handle).unwrap();
    let report = handle.join();
    assert_eq!(report.end, End::Finished);
    report
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

fn line(label: &str, r: &organ::engine::Report, wall: Duration, steal: Option<u64>) {
    let s = &r.stats;
    println!(
        "{label:<28} {:>6} msgs  p50 {:>4} µs  p99 {:>5} µs  max {:>6} µs  mean {:>6.1} µs  >1ms {:>3}  ({:.1} s, {} ms stolen by the hypervisor)",
        s.count(),
        s.percentile(50.0),
        s.percentile(99.0),
        s.max(),
        s.mean(),
        s.count_above(1_000),
        wall.as_secs_f64(),
        steal.map_or("?".to_string(), |v| v.to_string())
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: then only check that it runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let t = timeline();
    let chords = t.events.iter().filter(|e| e.kind == organ::plan::Kind::NoteOn).count() / 12;
    println!("dense piece: {} messages ({} note-ons in 12-note chords), {}", t.events.len(), chords * 12, t.duration);
    if quick {
        println!("(run with `cargo bench --bench lateness` to measure)");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (start, steal) = (Instant::now(), steal_ms());
    let idle = run(&t);
    line("idle", &idle, start.elapsed(), steal.zip(steal_ms()).map(|(a, b)| b - a));

    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..cores)
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
    let (start, steal) = (Instant::now(), steal_ms());
    let loaded = run(&t);
    line(
        &format!("{cores} cores busy (spinning)"),
        &loaded,
        start.elapsed(),
        steal.zip(steal_ms()).map(|(a, b)| b - a),
    );
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    println!(
        "engine thread scheduling: {}",
        if loaded.realtime { "SCHED_FIFO (real-time) granted" } else { "normal priority (real-time refused)" }
    );
}
