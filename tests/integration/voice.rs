//! The built-in organ voice: a short score rendered to audio (through the library and through
//! `organ play --to wav:FILE`) and analysed with a Goertzel filter: silence until a stop is
//! drawn, the right pitch for each key and footage, couplers, a registration change that changes
//! the spectrum, silence at the end, and no clipping with everything drawn.

use std::path::{Path, PathBuf};

use organ::organ::Organ;
use organ::plan::{self, PlanOptions, Timeline};
use organ::registration::Registration;
use organ::voice;

use crate::support::analysis::{db, tone_amplitude};
use crate::support::{notes_track, organ_bin, ppq, scratch, smf, text};

const RATE: u32 = 48_000;

/// Every message form the voice must decode: note, CC, NRPN, program change, SysEx cancel.
const ORGAN: &str = r#"
name = "Voice test organ"
[division.swell]
code = "S"
channel = 1
[division.great]
code = "G"
channel = 2
[[stop]]
name = "Sw Gedackt 8"
division = "swell"
on = { note = 36, channel = 16 }
[[stop]]
name = "Sw Principal 4"
division = "swell"
on = { cc = 20, value = 127, channel = 16 }
[[stop]]
name = "Gt Bourdon 16"
division = "great"
on = { nrpn = 300, value = 127, channel = 16 }
[[coupler]]
name = "Sw to Gt"
from = "swell"
to = "great"
on = { program = 5, channel = 16 }
off = { program = 6, channel = 16 }
[cancel]
message = { sysex = "F0 00 4A 4F 48 41 53 7F F7" }
"#;

/// Bars of 2 s (4/4 at 120 bpm, 480 ticks a quarter): what is held and drawn in each.
const REGISTRATION: &str = r#"
layout = "SG"
[[change]]
at = "2"
on = ["Sw Gedackt 8"]
[[change]]
at = "4"
on = ["Sw Principal 4"]
[[change]]
at = "5"
off = ["Sw Gedackt 8", "Sw Principal 4"]
on = ["Gt Bourdon 16"]
[[change]]
at = "6"
off = ["Gt Bourdon 16"]
on = ["Sw Gedackt 8", "Sw to Gt"]
[[change]]
at = "7"
off = ["Sw to Gt"]
"#;

const BAR: u64 = 1920;

fn write_fixture(dir: &Path) -> PathBuf {
    // Part 1 (swell): C4 through bars 1-2, E4 in bar 3, C4 in bar 4.
    let swell = notes_track(0, &[(0, 2 * BAR, 60), (2 * BAR, 3 * BAR, 64), (3 * BAR, 4 * BAR, 60)]);
    // Part 2 (great): C4 in bar 5, G4 in bars 6 and 7.
    let great = notes_track(1, &[(4 * BAR, 5 * BAR, 60), (5 * BAR, 6 * BAR, 67), (6 * BAR, 7 * BAR, 67)]);
    let mid = dir.join("voice.mid");
    std::fs::write(&mid, smf(ppq(480), &[swell, great])).unwrap();
    std::fs::write(dir.join("voice.toml"), REGISTRATION).unwrap();
    std::fs::write(dir.join("organ.toml"), ORGAN).unwrap();
    mid
}

fn timeline(dir: &Path) -> Timeline {
    let mid = write_fixture(dir);
    let organ = Organ::from_toml(ORGAN, "organ.toml").unwrap();
    let reg = Registration::from_toml(REGISTRATION, "voice.toml", &organ).unwrap();
    let score = organ::score::load_file(&mid).unwrap();
    plan::plan(&score, &organ, Some(&reg), &PlanOptions::default()).unwrap()
}

fn hz(key: u8) -> f64 {
    440.0 * 2f64.powf((f64::from(key) - 69.0) / 12.0)
}

/// The level (dBFS) of `f` Hz in bar `bar` (1-based), leaving out the first 0.3 s (attack,
/// crossfade) and the last 0.2 s (release).
fn level(x: &[f32], bar: u32, f: f64) -> f64 {
    let start = ((f64::from(bar - 1) * 2.0 + 0.3) * f64::from(RATE)) as usize;
    let end = ((f64::from(bar) * 2.0 - 0.2) * f64::from(RATE)) as usize;
    db(tone_amplitude(&x[start..end], f, f64::from(RATE)))
}

fn peak(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

const PRESENT: f64 = -45.0;
const ABSENT: f64 = -90.0;

#[test]
fn the_voice_sounds_what_the_messages_draw() {
    let dir = scratch("voice-library");
    let t = timeline(&dir);
    let x = voice::render(&t, RATE);
    let c4 = hz(60);
    // Bar 1: C4 held on the swell, nothing drawn: silence.
    assert!(peak(&x[..(1.9 * f64::from(RATE)) as usize]) == 0.0, "bar 1 is not silent");
    // Bar 2: the Gedackt 8' at the key's pitch, a stopped pipe with no octave and no sub-octave.
    let fund = level(&x, 2, c4);
    assert!(fund > PRESENT, "8' fundamental at {c4:.1} Hz: {fund:.1} dB");
    assert!(level(&x, 2, 2.0 * c4) < fund - 50.0, "a stopped 8' has no octave");
    assert!(level(&x, 2, 3.0 * c4) > fund - 30.0, "a stopped 8' has its twelfth");
    assert!(level(&x, 2, c4 / 2.0) < ABSENT);
    // Bar 3: E4 sounds E4, and C4 is gone.
    assert!(level(&x, 3, hz(64)) > PRESENT);
    assert!(level(&x, 3, c4) < ABSENT, "C4 released: {:.1} dB", level(&x, 3, c4));
    // Bar 4: the Principal 4' adds the octave: the spectrum changed with the registration.
    let octave = level(&x, 4, 2.0 * c4);
    assert!(octave > PRESENT && octave > level(&x, 2, 2.0 * c4) + 50.0, "4' octave: {octave:.1} dB");
    assert!((level(&x, 4, c4) - fund).abs() < 1.0, "the 8' is still there, unchanged");
    // Bar 5: the swell is off; the Great's Bourdon 16' sounds the sub-octave (and no unison).
    assert!(level(&x, 5, c4 / 2.0) > PRESENT, "16' sub-octave");
    assert!(level(&x, 5, c4) < ABSENT, "a stopped 16' has no unison (its 2nd harmonic)");
    assert!(level(&x, 5, 2.0 * c4) < ABSENT, "the swell's 4' is off");
    // Bar 6: G4 on the Great, nothing drawn there: the swell's Gedackt through Sw to Gt.
    assert!(level(&x, 6, hz(67)) > PRESENT, "coupled pitch: {:.1} dB", level(&x, 6, hz(67)));
    // Bar 7: the coupler is off: G4 is still held on the Great, which has nothing drawn.
    // (The release of bar 6's pipe dies away exponentially: below -80 dBFS within 0.5 s, then
    // nothing at all.)
    let from = (12.5 * f64::from(RATE)) as usize;
    assert!(peak(&x[from..]) < 1e-4, "bar 7 is silent: peak {}", peak(&x[from..]));
    assert!(peak(&x[(13.0 * f64::from(RATE)) as usize..]) == 0.0, "bar 7 and after the end are silent");
    // No clipping.
    assert!(peak(&x) < 0.9);
}

#[test]
fn a_full_registration_never_clips() {
    let organ = crate::support::st_marys();
    let score = organ::score::load_file(&crate::support::repo_dir().join("scores/bwv643.mid")).unwrap();
    let opts = PlanOptions { stops: vec!["full".into()], ..PlanOptions::default() };
    let t = plan::plan(&score, &organ, None, &opts).unwrap();
    let x = voice::render(&t, RATE);
    let p = peak(&x);
    assert!(p > 0.3, "loud: peak {p}");
    assert!(p < 0.9, "a full registration stays below full scale: peak {p}");
    // As a 16-bit file: not one sample at either rail.
    assert!(x.iter().all(|&s| (s * 32767.0).round().abs() < 32767.0));
}

#[test]
fn organ_play_to_wav_writes_what_the_library_renders() {
    let dir = scratch("voice-cli");
    let mid = write_fixture(&dir);
    let wav = dir.join("out.wav");
    let _ = std::fs::remove_file(&wav);
    let out = organ_bin(&[
        "play",
        mid.to_str().unwrap(),
        "--organ",
        dir.join("organ.toml").to_str().unwrap(),
        "--to",
        &format!("wav:{}", wav.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("with the built-in organ voice"), "{}", text(&out.stderr));
    let mut r = hound::WavReader::open(&wav).unwrap();
    assert_eq!((r.spec().channels, r.spec().sample_rate, r.spec().bits_per_sample), (1, voice::SAMPLE_RATE, 16));
    let file: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    let lib = voice::render(&timeline(&dir), voice::SAMPLE_RATE);
    assert_eq!(file.len(), lib.len());
    assert!(file.iter().zip(&lib).all(|(&a, &b)| (f32::from(a) - b * 32767.0).abs() <= 1.0));
}

#[test]
fn ctrl_c_stops_a_long_rendering_and_leaves_a_valid_file() {
    let dir = scratch("voice-interrupt");
    let wav = dir.join("long.wav");
    let _ = std::fs::remove_file(&wav); // a file left by an earlier run would be seen at once
    // 99 verses of BWV 643: 100 minutes of audio, far more than the test waits for.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_organ"))
        .args(["play", "scores/bwv643.mid", "--verses", "99", "--to", &format!("wav:{}", wav.display())])
        .current_dir(crate::support::repo_dir())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the file has audio in it, then Ctrl-C.
    let started = std::time::Instant::now();
    while std::fs::metadata(&wav).map_or(0, |m| m.len()) < 100_000 {
        assert!(started.elapsed().as_secs() < 60, "nothing rendered");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let signalled = std::time::Instant::now();
    let status = child.wait().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(signalled.elapsed().as_secs_f64() < 2.0, "took {:?} to stop", signalled.elapsed());
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("organ: interrupted: ") && stderr.contains("holds the first"), "{stderr}");
    let r = hound::WavReader::open(&wav).expect("a valid WAV file");
    let seconds = f64::from(r.duration()) / f64::from(voice::SAMPLE_RATE);
    assert!(seconds > 1.0 && seconds < 5000.0, "{seconds} s");
}

#[test]
fn organ_play_to_audio_without_a_sound_device_is_one_line() {
    if Path::new("/dev/snd").exists() {
        eprintln!("SKIPPED: this machine has a sound device (/dev/snd), so --to audio would play");
        return;
    }
    let out = organ_bin(&["play", "scores/bwv643.mid", "--to", "audio"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("organ: error: --to audio: no sound device here"), "{err}");
    assert!(err.contains("--to wav:FILE"), "{err}");
}

#[test]
fn an_organ_files_output_cannot_be_a_wav_file() {
    // Only `organ play --to wav:FILE` on the command line renders; a downloaded organ definition
    // must not make `organ` write a file.
    let dir = scratch("voice-organ-output");
    let mid = write_fixture(&dir);
    let organ = dir.join("organ.toml");
    let wav = dir.join("from-organ.wav");
    std::fs::write(&organ, format!("output = \"wav:{}\"\n{ORGAN}", wav.display())).unwrap();
    let out = organ_bin(&["play", mid.to_str().unwrap(), "--organ", organ.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("organ: error: --to wav:{}: a WAV file is rendered offline", wav.display())),
        "{err}"
    );
    assert!(!wav.exists());
}
