//! `organ play --to audio:jack`: the built-in organ voice played in real time by the real binary
//! through cpal's JACK host into a JACK server with the dummy backend, recorded by a JACK client
//! and analysed: silence until the stop is drawn, the 8' at the key's pitch, the octave when a 4'
//! is added, silence after the end.
//!
//! Needs `jackd` (Debian `jackd2`); without it the test prints `SKIPPED: <reason>`, and with
//! `ORGAN_REQUIRE_GRANDORGUE=1` (CI, which installs it) it fails instead.

mod support;

#[cfg(all(feature = "jack", feature = "audio"))]
mod jack_audio {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use midly::num::{u4, u7, u15, u28};
    use midly::{Format, Header, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

    use super::support::Scratch;
    use super::support::analysis::{db, onset, tone_amplitude};
    use super::support::procs::{self, Jackd, RunLock, Unavailable, say, which};
    use super::support::recorder::Recorder;

    const ORGAN: &str = r#"
name = "JACK voice test"
[division.swell]
code = "S"
channel = 1
[[stop]]
name = "Sw Gedackt 8"
division = "swell"
on = { note = 36, channel = 16 }
[[stop]]
name = "Sw Principal 4"
division = "swell"
on = { cc = 20, value = 127, channel = 16 }
"#;

    /// Bars of 2 s: C4 held through bars 1-3; the Gedackt from bar 2, the Principal 4' from bar 3.
    const REGISTRATION: &str = r#"
layout = "S"
[[change]]
at = "2"
on = ["Sw Gedackt 8"]
[[change]]
at = "3"
on = ["Sw Principal 4"]
"#;

    fn score() -> Vec<u8> {
        let ev = |delta: u32, on: bool| TrackEvent {
            delta: u28::new(delta),
            kind: TrackEventKind::Midi {
                channel: u4::new(0),
                message: if on {
                    MidiMessage::NoteOn { key: u7::new(60), vel: u7::new(80) }
                } else {
                    MidiMessage::NoteOff { key: u7::new(60), vel: u7::new(0) }
                },
            },
        };
        let track = vec![
            ev(0, true),
            ev(3 * 1920, false),
            TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(midly::MetaMessage::EndOfTrack) },
        ];
        let smf =
            Smf { header: Header::new(Format::SingleTrack, Timing::Metrical(u15::new(480))), tracks: vec![track] };
        let mut bytes = Vec::new();
        smf.write_std(&mut bytes).unwrap();
        bytes
    }

    fn skip(reason: &str) {
        assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "ORGAN_REQUIRE_GRANDORGUE is set, but {reason}");
        say(&format!("SKIPPED: voice_through_jack: {reason}"));
    }

    #[test]
    fn voice_through_jack() {
        if which("jackd").is_none() {
            return skip("jackd is not installed (Debian package jackd2)");
        }
        let _lock = RunLock::acquire(Duration::from_secs(300)).unwrap();
        let dir = Scratch::new("voice-jack");
        procs::use_server();
        let _jackd = match Jackd::start(&dir.path) {
            Ok(j) => j,
            Err(Unavailable::Skip(r)) => return skip(&r),
            Err(Unavailable::Fail(f)) => panic!("{f}"),
        };
        std::fs::write(dir.path.join("organ.toml"), ORGAN).unwrap();
        std::fs::write(dir.path.join("piece.toml"), REGISTRATION).unwrap();
        std::fs::write(dir.path.join("piece.mid"), score()).unwrap();
        let rec = Recorder::open().unwrap();
        rec.start();
        let mut child = Command::new(env!("CARGO_BIN_EXE_organ"))
            .args(["play", "piece.mid", "--organ", "organ.toml", "--to", "audio:jack", "--quiet"])
            .current_dir(&dir.path)
            .env("JACK_DEFAULT_SERVER", procs::SERVER)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bar 1 is 2 s of silence: time to find organ's JACK ports and listen to them.
        let started = Instant::now();
        let mut connected = 0;
        while connected == 0 && started.elapsed() < Duration::from_secs(10) {
            let ports = rec.client().ports(Some("cpal_client.*"), None, jack::PortFlags::IS_OUTPUT);
            for (i, p) in ports.iter().take(2).enumerate() {
                if rec.client().connect_ports_by_name(p, &rec.port(["in_l", "in_r"][i])).is_ok() {
                    connected += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let connected_after = started.elapsed();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "organ play did not finish");
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let recording = rec.finish();
        assert!(status.success(), "{stderr}");
        assert!(connected > 0, "organ's JACK output ports never appeared");
        assert!(connected_after < Duration::from_millis(1500), "connected only after {connected_after:?}");
        let x = &recording.mono;
        let rate = f64::from(procs::RATE);
        let start = onset(x, 0, 0.005).expect("the voice was heard");
        // Silence from connecting until the stop is drawn at 2 s: at least 0.4 s of it recorded.
        assert!(start as f64 / rate > 0.4, "sound after only {:.2} s", start as f64 / rate);
        let at = |from: f64, to: f64| &x[start + (from * rate) as usize..start + (to * rate) as usize];
        let level = |w: &[f32], hz: f64| db(tone_amplitude(w, hz, rate));
        let c4 = 261.625_565;
        let bar2 = at(0.3, 1.7);
        let (fund, octave) = (level(bar2, c4), level(bar2, 2.0 * c4));
        assert!(fund > -45.0 && octave < fund - 40.0, "bar 2: the Gedackt 8' alone: {fund:.1} / {octave:.1} dB");
        let bar3 = at(2.3, 3.7);
        assert!(level(bar3, 2.0 * c4) > fund - 15.0, "bar 3: the 4' adds the octave: {:.1} dB", level(bar3, 2.0 * c4));
        // After the end (the key released, the stops cancelled) and the release: silence.
        let tail = &x[start + (4.5 * rate) as usize..];
        assert!(tail.len() > (0.2 * rate) as usize, "recorded {:.2} s after the end", tail.len() as f64 / rate);
        assert!(tail.iter().all(|v| v.abs() < 1e-4), "silent after the end");
    }
}

#[cfg(not(all(feature = "jack", feature = "audio")))]
#[test]
fn voice_through_jack() {
    assert!(std::env::var("ORGAN_REQUIRE_GRANDORGUE").is_err(), "built without the jack and audio features");
    eprintln!("SKIPPED: voice_through_jack: built without the `jack` and `audio` features");
}
