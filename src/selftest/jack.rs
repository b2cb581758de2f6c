//! The self-test of a JACK output, and the placement measurement the JACK benchmark uses: the
//! real engine plays note-offs through the real [`JackOutput`], and a second JACK client
//! connected to its port records the frame at which each arrived.
//!
//! Runs on the control thread; the engine has its own thread, and the capture runs in JACK's
//! process thread and only pushes frames into a preallocated ring.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ringbuf::traits::{Consumer, Producer, Split};

use super::{Check, HEARD, Probe, SelftestError, short};
use crate::midi::Micros;
use crate::organ::Organ;
use crate::output::Output;
use crate::output::jack::{JackOutput, JackStats};

/// Where the messages landed against their schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Messages sent and messages captured.
    pub sent: usize,
    pub captured: usize,
    /// Placement error about the median offset (the constant latency), in frames.
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// The engine's own lateness (subtracted by the output): p99 and max.
    pub engine_p99: Micros,
    pub engine_max: Micros,
    /// The output's counters after the run.
    pub stats: JackStats,
}

impl Placement {
    /// Frames as µs at the server's rate.
    pub fn us(&self, frames: f64) -> f64 {
        frames * 1e6 / f64::from(self.stats.sample_rate.max(1))
    }
}

fn jack_err(spec: &str, detail: impl ToString) -> SelftestError {
    SelftestError::Output { spec: spec.to_string(), detail: detail.to_string() }
}

/// The capture client's process callback: the frame of every message on its input.
struct Recorder {
    port: jack::Port<jack::MidiIn>,
    tx: ringbuf::HeapProd<u32>,
    lost: Arc<AtomicU64>,
}

impl jack::ProcessHandler for Recorder {
    fn process(&mut self, _: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        let base = ps.last_frame_time();
        for ev in self.port.iter(ps) {
            if self.tx.try_push(base.wrapping_add(ev.time)).is_err() {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        jack::Control::Continue
    }
}

/// A second client whose MIDI input, connected to `port`, records the frame of every message.
struct Capture {
    client: jack::AsyncClient<(), Recorder>,
    frames: ringbuf::HeapCons<u32>,
    lost: Arc<AtomicU64>,
}

impl Capture {
    fn start(spec: &str, port: &str, capacity: usize) -> Result<Capture, SelftestError> {
        let (client, _) = jack::Client::new("organ-selftest", jack::ClientOptions::NO_START_SERVER)
            .map_err(|e| jack_err(spec, format!("cannot open a capture client: {e}")))?;
        let midi_in = client.register_port("in", jack::MidiIn::default()).map_err(|e| jack_err(spec, e))?;
        let (tx, frames) = ringbuf::HeapRb::<u32>::new(capacity + 1024).split();
        let lost = Arc::new(AtomicU64::new(0));
        let recorder = Recorder { port: midi_in, tx, lost: Arc::clone(&lost) };
        let client = client.activate_async((), recorder).map_err(|e| jack_err(spec, e))?;
        let me = format!("{}:in", client.as_client().name());
        client.as_client().connect_ports_by_name(port, &me).map_err(|e| jack_err(spec, e))?;
        if !crate::output::jack::wait_routed(client.as_client(), port, &me, crate::output::jack::CONNECT_WAIT) {
            let why = crate::output::jack::JackError::NotRouted { port: port.to_string(), dest: me };
            return Err(jack_err(spec, why));
        }
        Ok(Capture { client, frames, lost })
    }

    /// Stops the client; the frames captured, in order.
    fn finish(mut self) -> (Vec<u32>, u64) {
        let _ = self.client.deactivate();
        let mut v = Vec::new();
        while let Some(f) = self.frames.try_pop() {
            v.push(f);
        }
        (v, self.lost.load(Ordering::Relaxed))
    }
}

/// Plays `schedule` (note-offs at their plan times) through `out` on the real engine, captures
/// it on a second client, and measures the placement.
///
/// # Errors
/// The capture client cannot be created or connected; the engine cannot start.
pub fn placement_run(out: JackOutput, organ: &Organ, schedule: &[Probe]) -> Result<Placement, SelftestError> {
    let spec = out.name().to_string();
    let capture = Capture::start(&spec, out.port_name(), schedule.len())?;
    let handle = out.stats_handle();
    std::thread::sleep(Duration::from_millis(200));
    let report = super::play(vec![Box::new(out)], super::probe_timeline(organ, schedule)?)?;
    for mut o in report.outputs {
        // Waits until the queue has reached the port, then closes the client.
        let _ = o.finish();
    }
    std::thread::sleep(Duration::from_millis(50));
    let stats = handle.stats();
    let (frames, lost) = capture.finish();
    let (p50, p99, max) = if lost > 0 {
        (f64::INFINITY, f64::INFINITY, f64::INFINITY)
    } else {
        errors(&frames, schedule, stats.sample_rate)
    };
    Ok(Placement {
        sent: schedule.len(),
        captured: frames.len(),
        p50,
        p99,
        max,
        engine_p99: Micros(report.stats.percentile(99.0)),
        engine_max: Micros(report.stats.max()),
        stats,
    })
}

/// Each message's frame against its scheduled time, about the median offset: p50, p99, max in
/// frames (`f64::INFINITY` when messages were lost).
fn errors(frames: &[u32], schedule: &[Probe], rate: u32) -> (f64, f64, f64) {
    if frames.len() != schedule.len() || frames.is_empty() {
        return (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    }
    let rate = f64::from(rate);
    let mut dev: Vec<f64> = frames
        .iter()
        .zip(schedule)
        .map(|(f, p)| f64::from(f.wrapping_sub(frames[0])) - (p.at.0 - schedule[0].at.0) as f64 * rate / 1e6)
        .collect();
    let mut sorted = dev.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    for d in &mut dev {
        *d = (*d - median).abs();
    }
    dev.sort_by(f64::total_cmp);
    let pct = |p: f64| dev[((dev.len() - 1) as f64 * p) as usize];
    (pct(0.5), pct(0.99), pct(1.0))
}

/// The self-test's schedule: a steady stream (ten note-offs every 20 ms for a second), then the
/// burst as planned. Keys and channels are the probes' (none of them down).
fn schedule(probes: &[Probe]) -> Vec<Probe> {
    let mut s: Vec<Probe> = (0..500)
        .map(|i| Probe { at: Micros((i / 10) as u64 * 20_000), bytes: probes[i % probes.len().max(1)].bytes })
        .collect();
    let base = 1_100_000;
    s.extend(probes.iter().map(|p| Probe { at: Micros(base + p.at.0), bytes: p.bytes }));
    s
}

/// Placement and period latency of an opened JACK output (`jack` or `jack:PORT`).
///
/// # Errors
/// The capture client cannot be opened.
pub fn checks(out: JackOutput, organ: &Organ, probes: &[Probe]) -> Result<Vec<Check>, SelftestError> {
    let p = placement_run(out, organ, &schedule(probes))?;
    let s = p.stats;
    let period = Micros(s.period as u64 * 1_000_000 / u64::from(s.sample_rate.max(1)));
    let lost = p.captured != p.sent || s.dropped > 0;
    let ok = !lost && s.xruns == 0 && p.us(p.p99) <= HEARD.0 as f64;
    let xruns = match s.xruns {
        0 => String::new(),
        n => format!("JACK skipped cycles ({n} xrun{})", if n == 1 { "" } else { "s" }),
    };
    let text = if lost {
        format!(
            "{} of {} note-offs reached the port ({})",
            p.captured,
            p.sent,
            if s.dropped > 0 {
                format!("{} dropped by the output", s.dropped)
            } else if s.xruns > 0 {
                format!("{xruns}: the server or this machine is too busy")
            } else {
                "JACK skipped a cycle: the server or this machine is too busy".to_string()
            }
        )
    } else {
        let mut t = format!(
            "{} note-offs placed: p50 {:.0} frames, p99 {:.0} ({:.0} µs), max {:.0} ({:.0} µs); {} written late; \
             latency one period: {} frames at {} Hz = {}",
            p.sent,
            p.p50,
            p.p99,
            p.us(p.p99),
            p.max,
            p.us(p.max),
            s.late,
            s.period,
            s.sample_rate,
            short(period)
        );
        if s.xruns > 0 {
            t.push_str(&format!("; {xruns}"));
        }
        t
    };
    let mut c = Check::new("jack", ok, text).summary(format!(
        "JACK placement p99 {:.0} frame{}",
        p.p99,
        if p.p99 == 1.0 { "" } else { "s" }
    ));
    if !ok {
        c = c.advice(if s.xruns > 0 {
            "JACK skipped cycles: run the JACK server at real-time priority (jackd -R) with a larger period (-p 512 \
             or 1024), and close other programs"
        } else {
            "run the JACK server at real-time priority (jackd -R) and close other programs"
        });
    }
    Ok(vec![c])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_errors_are_measured_about_the_constant_latency() {
        let schedule: Vec<Probe> = (0..100).map(|i| Probe { at: Micros(i * 1_000), bytes: [0x80, 60, 0] }).collect();
        // 48 frames a ms, 1024 frames of latency, one message 3 frames off.
        let mut frames: Vec<u32> = (0..100u32).map(|i| 1_024 + i * 48).collect();
        frames[50] += 3;
        let (p50, p99, max) = errors(&frames, &schedule, 48_000);
        assert_eq!((p50, p99, max), (0.0, 0.0, 3.0));
        assert_eq!(errors(&frames[1..], &schedule, 48_000).0, f64::INFINITY, "a lost message");
    }

    #[test]
    fn the_schedule_is_a_stream_then_the_burst() {
        let probes =
            vec![Probe { at: Micros(0), bytes: [0x80, 60, 0] }, Probe { at: Micros(4_000), bytes: [0x81, 62, 0] }];
        let s = schedule(&probes);
        assert_eq!(s.len(), 502);
        assert_eq!(s[10].at, Micros(20_000));
        assert_eq!(
            &s[500..],
            &[
                Probe { at: Micros(1_100_000), bytes: [0x80, 60, 0] },
                Probe { at: Micros(1_104_000), bytes: [0x81, 62, 0] }
            ]
        );
        assert!(s.iter().all(|p| p.bytes[0] & 0xF0 == 0x80));
    }
}
