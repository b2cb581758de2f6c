//! The JACK output through an xrun: a JACK server with the dummy backend is stopped (SIGSTOP)
//! for 150 ms, 7 periods, while the real engine plays a steady stream of note-offs (one every
//! 5 ms for 3 s) through the real `JackOutput`, and a client of the test's own records every
//! message that reaches its port. JACK reports the xrun (its dummy driver wakes late and starts
//! its cycles afresh); the output counts it and writes every message, in order: those due during
//! the stall late, in the first cycle after it, and those after the stall at their place again
//! at once (its frame clock restarts on the xrun; without that they came a stall late for the
//! next second).
//!
//! What JACK does with the cycle the stall caught is beyond the output: the capture client may
//! miss our port buffer of that cycle or read it twice. The test allows that within a few
//! periods and prints what happened.
//!
//! Needs `jackd` (Debian `jackd2`); without it the test prints `SKIPPED: <reason>`, and with
//! `ORGAN_REQUIRE_GRANDORGUE=1` (CI, which installs it) it fails instead. About 4 s.

mod support;

#[cfg(feature = "jack")]
mod jack_xrun {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use ringbuf::traits::{Consumer, Producer, Split};

    use organ::midi::Micros;
    use organ::organ::Organ;
    use organ::selftest::Probe;
    use organ::selftest::jack::placement_run;

    use super::support::Scratch;
    use super::support::procs::{self, Unavailable, say};

    fn skip(reason: &str) {
        assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "ORGAN_REQUIRE_GRANDORGUE is set, but {reason}");
        say(&format!("SKIPPED: an_xrun_is_counted_and_every_message_written_in_order: {reason}"));
    }

    /// One message as it reached the capture client: its bytes and the JACK time (µs) of the
    /// cycle that carried it.
    #[derive(Clone, Copy, Debug)]
    struct Got {
        bytes: [u8; 3],
        cycle_us: u64,
    }

    struct Recorder {
        port: jack::Port<jack::MidiIn>,
        tx: ringbuf::HeapProd<Got>,
        lost: Arc<AtomicU64>,
    }

    impl jack::ProcessHandler for Recorder {
        fn process(&mut self, c: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
            let now = c.time();
            for ev in self.port.iter(ps) {
                let mut bytes = [0u8; 3];
                let n = ev.bytes.len().min(3);
                bytes[..n].copy_from_slice(&ev.bytes[..n]);
                if self.tx.try_push(Got { bytes, cycle_us: now }).is_err() {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                }
            }
            jack::Control::Continue
        }
    }

    /// A note-off that names its place in the stream: channel and key count up.
    fn message(i: usize) -> [u8; 3] {
        [0x80 | (i / 128 % 16) as u8, (i % 128) as u8, 0]
    }

    #[test]
    fn an_xrun_is_counted_and_every_message_written_in_order() {
        let dir = Scratch::new("jack-xrun");
        let session = match procs::start_jack(&dir.path) {
            Ok(s) => s,
            Err(Unavailable::Skip(r)) => return skip(&r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        let jackd_pid = session.jackd.proc.pid();

        // 3 s of note-offs, one every 5 ms.
        const N: usize = 600;
        const STEP_US: u64 = 5_000;
        let schedule: Vec<Probe> =
            (0..N).map(|i| Probe { at: Micros(i as u64 * STEP_US), bytes: message(i) }).collect();

        let out = organ::output::jack::open_port("jack").unwrap();
        let (client, _) = jack::Client::new("xrun-capture", jack::ClientOptions::NO_START_SERVER).unwrap();
        let port = client.register_port("in", jack::MidiIn::default()).unwrap();
        let (tx, mut rx) = ringbuf::HeapRb::<Got>::new(N * 2).split();
        let lost = Arc::new(AtomicU64::new(0));
        let capture = client.activate_async((), Recorder { port, tx, lost: Arc::clone(&lost) }).unwrap();
        capture.as_client().connect_ports_by_name(out.port_name(), "xrun-capture:in").unwrap();

        // The stall: 1.2 s into the stream, the server stops for 150 ms.
        let staller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200 + 1_200));
            let t = Instant::now();
            unsafe { libc::kill(jackd_pid as i32, libc::SIGSTOP) };
            std::thread::sleep(Duration::from_millis(150));
            unsafe { libc::kill(jackd_pid as i32, libc::SIGCONT) };
            t.elapsed()
        });
        let organ = Organ::find("st-marys").unwrap();
        let p = placement_run(out, &organ, &schedule).unwrap();
        let stalled = staller.join().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(capture);
        let mut got = Vec::new();
        while let Some(g) = rx.try_pop() {
            got.push(g);
        }
        let s = p.stats;
        say(&format!(
            "jack_xrun: stalled {stalled:?}; output: {} written, {} late (worst {} frames), {} dropped, {} xruns; \
             captured {} of {N}",
            s.written,
            s.late,
            s.late_frames_max,
            s.dropped,
            s.xruns,
            got.len()
        ));
        assert_eq!(lost.load(Ordering::Relaxed), 0, "the test's capture ring overflowed");
        // JACK told the output about the stall, and the output wrote every message.
        assert!(s.xruns >= 1, "no xrun counted for a {stalled:?} stall: {s:?}");
        assert_eq!((s.written, s.dropped), (N as u64, 0), "{s:?}");
        assert!(s.late >= 20, "the ~30 messages due during the stall were not written late: {s:?}");
        let stall_frames = (stalled.as_micros() as u64 * 48 / 1000) as u32;
        assert!(
            s.late_frames_max <= stall_frames + 3 * 1024,
            "worst lateness {} frames for a {stalled:?} stall",
            s.late_frames_max
        );

        // Each message as captured: its index in the stream, and how late its cycle came against
        // the schedule (µs, about the median: the constant latency).
        let index = |g: &Got| usize::from(g.bytes[0] & 0x0F) * 128 + usize::from(g.bytes[1]);
        let first = got.first().expect("nothing captured").cycle_us as i64;
        let mut late: Vec<(usize, i64)> =
            got.iter().map(|g| (index(g), g.cycle_us as i64 - first - (index(g) as u64 * STEP_US) as i64)).collect();
        let mut sorted: Vec<i64> = late.iter().map(|l| l.1).collect();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        for l in &mut late {
            l.1 -= median;
        }
        // In order. What JACK does in the cycle the stall caught is its own: a client that
        // misses that cycle reads our port buffer late, after we wrote the next (those messages
        // are lost to it) or twice (doubled). Measured: 8 lost, or 4 doubled, of one cycle or two.
        let mut seen = vec![0u32; N];
        let mut last = None;
        for l in &late {
            seen[l.0] += 1;
            if seen[l.0] == 1 {
                assert!(last < Some(l.0), "out of order: message {} after {last:?}", l.0);
                last = Some(l.0);
            }
        }
        let missing: Vec<usize> = (0..N).filter(|&i| seen[i] == 0).collect();
        let doubled: Vec<usize> = (0..N).filter(|&i| seen[i] > 1).collect();
        say(&format!("jack_xrun: lost by JACK {missing:?}; doubled by JACK {doubled:?}"));
        // Both only in the cycles the stall caught: at most 3 periods' worth, in one stretch.
        for odd in [&missing, &doubled] {
            if let (Some(a), Some(b)) = (odd.first(), odd.last()) {
                assert!(b - a < 14, "JACK lost or doubled messages beyond the stall: {odd:?}");
            }
        }
        // The messages due during the stall came late, by at most the stall and two periods;
        // from half a second after it on, every message is back at its place, within the
        // cycle's jitter: the frame clock restarted cleanly.
        let worst = late.iter().map(|l| l.1).max().unwrap();
        assert!(worst <= stalled.as_micros() as i64 + 2 * 21_333, "worst {worst} µs late after a {stalled:?} stall");
        let stalled_at = late.iter().find(|l| l.1 > 60_000).map(|l| l.0).expect("no message was held up by the stall");
        let after: Vec<&(usize, i64)> = late.iter().filter(|l| l.0 > stalled_at + 100).collect();
        assert!(after.len() > 200, "{} messages after the stall", after.len());
        for l in after {
            assert!(l.1.abs() <= 2 * 21_333, "message {} {} µs off its place after the stall", l.0, l.1);
        }
    }
}
