//! JACK output lateness benchmark: the real engine plays a dense stream through `JackOutput`
//! and a second JACK client records the frame at which every message arrived (the measurement
//! `organ selftest --to jack` makes, on a longer stream).
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
//! time, about the median offset (the constant one-period latency), in frames and µs. The
//! engine thread asks for real-time priority itself, as it does when playing.

use organ::midi::Micros;
use organ::organ::Organ;
use organ::selftest::Probe;
use organ::selftest::jack::placement_run;

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
    let out = match organ::output::jack::open(None) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("jack_lateness: {e}");
            std::process::exit(2);
        }
    };
    // Chords of 10 notes every 20 ms, released 10 ms later: 1,000 messages a second.
    let schedule: Vec<Probe> = (0..n)
        .map(|i| {
            let (chord, j) = (i / 20, i % 20);
            let t = chord as u64 * 20_000 + if j < 10 { 0 } else { 10_000 };
            let key = 48 + (j % 10) as u8 * 2;
            Probe { at: Micros(t), bytes: if j < 10 { [0x90, key, 100] } else { [0x80, key, 0] } }
        })
        .collect();
    let organ = Organ::find("st-marys").expect("the built-in organ");
    let p = match placement_run(out, &organ, &schedule) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("jack_lateness: {e}");
            std::process::exit(2);
        }
    };
    let stats = p.stats;
    let us = |frames: f64| p.us(frames);
    println!(
        "JACK output: {} messages in {:.1} s, period {} frames at {} Hz (fixed latency {:.0} µs)",
        stats.written,
        schedule.last().map_or(0.0, |s| s.at.0 as f64 / 1e6),
        stats.period,
        stats.sample_rate,
        us(f64::from(stats.period))
    );
    println!(
        "  written late: {} (worst {} frames = {:.0} µs), dropped {}, xruns {}; engine's own lateness p99 {} µs, max {} µs (subtracted)",
        stats.late,
        stats.late_frames_max,
        us(f64::from(stats.late_frames_max)),
        stats.dropped,
        stats.xruns,
        p.engine_p99.0,
        p.engine_max.0
    );
    if p.captured != p.sent || !p.p99.is_finite() {
        println!("  capture incomplete: {} of {} messages", p.captured, p.sent);
        std::process::exit(1);
    }
    println!(
        "  placement error vs schedule: p50 {:.1} frames ({:.0} µs), p99 {:.1} frames ({:.0} µs), max {:.1} frames ({:.0} µs)",
        p.p50,
        us(p.p50),
        p.p99,
        us(p.p99),
        p.max,
        us(p.max)
    );
}
