//! JACK output lateness benchmark: sends a dense stream through `JackOutput` at absolute
//! deadlines (like the engine) and records, on a second JACK client, the frame at which every
//! message arrived.
//!
//! Needs a running JACK server, e.g. the dummy backend:
//!
//! ```text
//! jackd -n bench -R -d dummy -r 48000 -p 1024 &
//! JACK_DEFAULT_SERVER=bench cargo bench --bench jack_lateness -- 12000
//! ```
//!
//! Without `--bench` among its arguments (`cargo test --benches` runs it that way) it only says
//! how to run it: it needs a JACK server that tests do not start.
//!
//! Reports the output's own counters (messages written after their frame had passed, worst
//! lateness in frames) and the placement error: each message's frame against its scheduled
//! time, about the median offset (the constant one-period latency), in frames and µs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use organ::midi::Micros;
use organ::output::{Output, Stamp};
use ringbuf::traits::{Consumer, Producer, Split};

fn main() {
    // `cargo bench` passes --bench (then any arguments after `--`); `cargo test --benches`
    // passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "jack_lateness: needs a JACK server; run it with `cargo bench --bench jack_lateness` (see its source)"
        );
        return;
    }
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(12_000);
    let mut out = match organ::output::jack::open(None) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("jack_lateness: {e}");
            std::process::exit(2);
        }
    };
    // Capture client: the frame of every message on organ:out.
    let (client, _) = jack::Client::new("organ-bench-rec", jack::ClientOptions::NO_START_SERVER).expect("client");
    let midi_in = client.register_port("in", jack::MidiIn::default()).expect("port");
    let (mut tx, mut rx) = ringbuf::HeapRb::<u32>::new(1 << 16).split();
    let lost = Arc::new(AtomicU64::new(0));
    let lost2 = Arc::clone(&lost);
    let handler = jack::contrib::ClosureProcessHandler::new(move |_: &jack::Client, ps: &jack::ProcessScope| {
        let base = ps.last_frame_time();
        for ev in midi_in.iter(ps) {
            if tx.try_push(base.wrapping_add(ev.time)).is_err() {
                lost2.fetch_add(1, Ordering::Relaxed);
            }
        }
        jack::Control::Continue
    });
    let rec = client.activate_async((), handler).expect("activate");
    let rec_port = format!("{}:in", rec.as_client().name());
    rec.as_client().connect_ports_by_name(out.port_name(), &rec_port).expect("connect");
    std::thread::sleep(Duration::from_millis(300));

    // Chords of 10 notes every 20 ms, released 10 ms later: 1,000 messages a second.
    let schedule: Vec<(u64, [u8; 3])> = (0..n)
        .map(|i| {
            let (chord, j) = (i / 20, i % 20);
            let t = chord as u64 * 20_000 + if j < 10 { 0 } else { 10_000 };
            let key = 48 + (j % 10) as u8 * 2;
            (t, if j < 10 { [0x90, key, 100] } else { [0x80, key, 0] })
        })
        .collect();
    let start = Instant::now();
    let mut engine_late_max = 0u64;
    for (t, msg) in &schedule {
        let due = start + Duration::from_micros(*t);
        // Sleep until shortly before the deadline, then spin (as the engine does).
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            if d > Duration::from_micros(300) {
                std::thread::sleep(d - Duration::from_micros(200));
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        let now = start.elapsed().as_micros() as u64;
        engine_late_max = engine_late_max.max(now.saturating_sub(*t));
        out.send(msg, Stamp { plan: Micros(*t), due: Micros(*t), now: Micros(now) }).expect("send");
    }
    out.drain(Duration::from_secs(2));
    let stats = out.stats();
    out.finish().expect("finish");
    std::thread::sleep(Duration::from_millis(200));
    let mut frames = Vec::with_capacity(n);
    while let Some(f) = rx.try_pop() {
        frames.push(f);
    }
    drop(rec);

    let rate = f64::from(stats.sample_rate);
    let us = |frames: f64| frames * 1e6 / rate;
    println!(
        "JACK output: {} messages in {:.1} s, period {} frames at {} Hz (fixed latency {:.0} µs)",
        stats.written,
        schedule.last().map_or(0.0, |s| s.0 as f64 / 1e6),
        stats.period,
        stats.sample_rate,
        us(f64::from(stats.period))
    );
    println!(
        "  written late: {} (worst {} frames = {:.0} µs), dropped {}; sender's own worst lateness {} µs (subtracted)",
        stats.late,
        stats.late_frames_max,
        us(f64::from(stats.late_frames_max)),
        stats.dropped,
        engine_late_max
    );
    if frames.len() != n || lost.load(Ordering::Relaxed) > 0 {
        println!("  capture incomplete: {} of {n} messages", frames.len());
        std::process::exit(1);
    }
    let mut dev: Vec<f64> = frames
        .iter()
        .zip(&schedule)
        .map(|(f, (t, _))| f64::from(f.wrapping_sub(frames[0])) - *t as f64 * rate / 1e6)
        .collect();
    let mut sorted = dev.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    for d in &mut dev {
        *d = (*d - median).abs();
    }
    dev.sort_by(f64::total_cmp);
    let pct = |p: f64| dev[((dev.len() - 1) as f64 * p) as usize];
    println!(
        "  placement error vs schedule: p50 {:.1} frames ({:.0} µs), p99 {:.1} frames ({:.0} µs), max {:.1} frames ({:.0} µs)",
        pct(0.5),
        us(pct(0.5)),
        pct(0.99),
        us(pct(0.99)),
        pct(1.0),
        us(pct(1.0))
    );
}
