//! Load + plan benchmarks (criterion): the shipped SSGGP score, a generated SSGGP file of
//! 1,000,000 notes, and the shipped score with an absurd registration of 100,000 changes.
//! Targets: the shipped score under 2 ms; 1M notes under 1 s and under 300 MB peak memory on
//! the project's 2-core machine (issue 2); 100,000 registration changes, read and planned with
//! every check, in about a second, growing in proportion to their number (issue 11).
//!
//! ```text
//! cargo bench --bench plan
//! ```
//!
//! Besides criterion's timings this prints, for the 1M-note case, the peak heap in use during
//! one load + plan (a counting global allocator, file bytes included), and writes the generated
//! file to `$TMPDIR/organ-bench-1m.mid` so the real binary's peak RSS can be measured too:
//!
//! ```text
//! /usr/bin/time -v target/release/organ check /tmp/organ-bench-1m.mid --organ st-marys
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use midly::num::{u4, u7, u15, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use organ::organ::Organ;
use organ::plan::{self, PlanOptions};
use organ::registration::Registration;
use organ::score;

/// Counts heap bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = IN_USE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                IN_USE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A small deterministic generator (64-bit LCG), so every run plans the same file.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// An SSGGP file as MuseScore writes one: PPQ 480, five staff tracks (tempo and time signatures
/// in the first), each with a track name, a program change and controllers on its top staff,
/// note-offs as note-on velocity 0. Each staff plays two-note chords of 1-4 eighths; the two
/// staves of a manual overlap on shared keys, so keys merge. A tempo change every 16 bars.
fn generate(total_notes: usize) -> Vec<u8> {
    let per_track = total_notes / 5;
    let ranges: [(u8, u8, u8); 5] = [(0, 60, 84), (0, 48, 72), (1, 60, 84), (1, 48, 72), (2, 36, 55)];
    let names: [&[u8]; 5] = [b"Swell\0", b"Swell\0", b"Great\0", b"Great\0", b"Pedal\0"];
    let midi = |ch: u8, message| TrackEventKind::Midi { channel: u4::new(ch), message };
    let mut tracks: Vec<Vec<(u64, u8, TrackEventKind<'static>)>> = Vec::new();
    let mut end = 0u64;
    for (i, &(ch, lo, hi)) in ranges.iter().enumerate() {
        let mut rng = Lcg(i as u64 + 1);
        // (tick, order, event): order puts note-offs before note-ons at one tick.
        let mut evs: Vec<(u64, u8, TrackEventKind<'static>)> = Vec::with_capacity(per_track * 2 + 8);
        evs.push((0, 0, TrackEventKind::Meta(MetaMessage::TrackName(names[i]))));
        if i % 2 == 0 {
            evs.push((0, 0, midi(ch, MidiMessage::ProgramChange { program: u7::new(19) })));
            for (c, v) in [(7, 100), (10, 64), (91, 0), (93, 0)] {
                evs.push((0, 0, midi(ch, MidiMessage::Controller { controller: u7::new(c), value: u7::new(v) })));
            }
        }
        let mut t = 0u64;
        let mut n = 0;
        while n < per_track {
            let len = 240 * (1 + rng.next(4));
            let root = lo + rng.next(u64::from(hi - lo - 4)) as u8;
            for key in [root, root + 3 + rng.next(2) as u8].into_iter().take(per_track - n) {
                let vel = 64 + rng.next(40) as u8;
                evs.push((t, 1, midi(ch, MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(vel) })));
                evs.push((t + len - 1, 0, midi(ch, MidiMessage::NoteOn { key: u7::new(key), vel: u7::new(0) })));
                n += 1;
            }
            t += len;
        }
        end = end.max(t);
        tracks.push(evs);
    }
    // Tempo and meter in the first track, as MuseScore 4 writes them.
    tracks[0].push((0, 0, TrackEventKind::Meta(MetaMessage::TimeSignature(4, 2, 24, 8))));
    let mut rng = Lcg(99);
    for bar in (0..end.div_ceil(1920)).step_by(16) {
        let us = 60_000_000 / (96 + rng.next(50) as u32);
        tracks[0].push((bar * 1920, 0, TrackEventKind::Meta(MetaMessage::Tempo(u24::new(us)))));
    }
    let mut smf = Smf::new(Header::new(Format::Parallel, Timing::Metrical(u15::new(480))));
    smf.tracks = tracks.into_iter().map(to_track).collect();
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes).expect("write to memory");
    bytes
}

fn to_track(mut evs: Vec<(u64, u8, TrackEventKind<'static>)>) -> Vec<TrackEvent<'static>> {
    evs.sort_by_key(|e| (e.0, e.1));
    let mut now = 0;
    let mut track: Vec<TrackEvent> = evs
        .into_iter()
        .map(|(t, _, kind)| {
            let delta = u28::new((t - now) as u32);
            now = t;
            TrackEvent { delta, kind }
        })
        .collect();
    track.push(TrackEvent { delta: u28::new(1), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    track
}

fn shipped(mid: &Path, organ: &Path, reg: &Path) -> usize {
    let score = score::load_file(mid).unwrap();
    let organ = Organ::load(organ).unwrap();
    let reg = Registration::load(reg, &organ).unwrap();
    let t = plan::plan(&score, &organ, Some(&reg), &PlanOptions::default()).unwrap();
    t.events.len()
}

fn big(bytes: &[u8], organ: &Organ) -> usize {
    let score = score::load_bytes(bytes, "organ-bench-1m.mid").unwrap();
    let t = plan::plan(&score, organ, None, &PlanOptions::default()).unwrap();
    t.events.len()
}

/// A registration file for bwv643.mid with `n` changes after mf at bar 1, 0.59 ms apart over the
/// piece's minute (so many fall on one tick, as in a careless generated file), each drawing or
/// putting in a stop: a different one each time, some under held keys, some changing nothing.
fn many_changes(n: usize) -> String {
    const STOPS: [&str; 4] = ["Gt Trumpet 8", "Sw Oboe 8", "Sw to Gt", "Ped Trombone 16"];
    let mut text = String::from("organ = \"st-marys\"\nlayout = \"SSGGP\"\n[[change]]\nat = \"1\"\npreset = \"mf\"\n");
    for i in 0..n {
        let at = 0.001 + 59.0 * i as f64 / n as f64;
        let what = if (i / 4) % 2 == 0 { "on" } else { "off" };
        text.push_str(&format!("[[change]]\nat = \"{at:.6}s\"\n{what} = [\"{}\"]\n", STOPS[i % 4]));
    }
    text
}

fn changes(score: &score::Score, organ: &Organ, text: &str) -> usize {
    let reg = Registration::from_toml(text, "changes.toml", organ).unwrap();
    let t = plan::plan(score, organ, Some(&reg), &PlanOptions::default()).unwrap();
    t.events.len() + t.warnings.len()
}

fn benches(c: &mut Criterion) {
    let dir = repo();
    let (mid, organ_path, reg) =
        (dir.join("scores/bwv643.mid"), dir.join("organs/st-marys.toml"), dir.join("scores/bwv643.toml"));
    c.bench_function("shipped bwv643.mid + st-marys.toml + bwv643.toml: load + plan", |b| {
        b.iter(|| shipped(black_box(&mid), &organ_path, &reg))
    });

    let bytes = generate(1_000_000);
    let organ = Organ::load(&organ_path).unwrap();
    let score = score::load_bytes(&bytes, "organ-bench-1m.mid").unwrap();
    assert_eq!(score.note_count(), 1_000_000);
    let out = std::env::temp_dir().join("organ-bench-1m.mid");
    std::fs::write(&out, &bytes).unwrap();
    drop(score);

    // One load + plan, timed and with its peak heap (the file's bytes, already in memory, count
    // towards it: the binary reads the whole file too).
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let start = Instant::now();
    let n = big(&bytes, &organ);
    let took = start.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - base + bytes.len();
    println!(
        "1M notes ({} MB file written to {}): one load + plan {:.0} ms, {n} messages, peak heap {:.1} MB",
        bytes.len() / 1_000_000,
        out.display(),
        took.as_secs_f64() * 1e3,
        peak as f64 / 1e6
    );

    let mut g = c.benchmark_group("1M notes");
    g.sample_size(10).measurement_time(Duration::from_secs(12));
    g.bench_function("generated SSGGP 1,000,000 notes: load + plan", |b| b.iter(|| big(black_box(&bytes), &organ)));
    g.finish();

    // 10,000 and 100,000 registration changes: the second should take about ten times the first.
    let shipped_score = score::load_file(&mid).unwrap();
    let mut g = c.benchmark_group("registration changes");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    for n in [10_000, 100_000] {
        let text = many_changes(n);
        g.bench_function(format!("bwv643.mid with {n} registration changes: read + plan + check"), |b| {
            b.iter(|| changes(&shipped_score, &organ, black_box(&text)))
        });
    }
    g.finish();
}

criterion_group!(plan_benches, benches);
criterion_main!(plan_benches);
