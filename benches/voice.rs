//! Offline rendering speed of the built-in organ voice (criterion). Target (issue 16): at least
//! 100× faster than real time for a 4-minute piece with a full registration on the project's
//! 2-core machine.
//!
//! The piece: the shipped BWV 643 (five parts) played four times over as a hymn's verses
//! (4 min 8 s), on the shipped organ with its `full` preset drawn: every stop of every division
//! (mixtures, reeds, the 16' pedal), and every coupler including the swell's octave coupler.
//! Rendering goes to a sink that only reads the samples, as writing a WAV file adds little.
//!
//! ```text
//! cargo bench --bench voice
//! ```
//!
//! Besides criterion's timing it prints the length of the audio and the real-time factor of a
//! few single runs.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use organ::organ::Organ;
use organ::plan::hymn;
use organ::plan::{PlanOptions, Timeline};
use organ::registration::HymnOptions;
use organ::voice;

fn piece() -> Timeline {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let organ = Organ::load(&root.join("organs/st-marys.toml")).expect("st-marys loads");
    let score = organ::score::load_file(&root.join("scores/bwv643.mid")).expect("bwv643 loads");
    let opts = PlanOptions { stops: vec!["full".into()], ..PlanOptions::default() };
    let hymn = HymnOptions { verses: Some(4), ..HymnOptions::default() };
    hymn::plan_hymn(&score, None, &organ, None, &opts, &hymn).expect("plans")
}

fn render(t: &Timeline) -> (u64, f32) {
    let mut peak = 0f32;
    let n = voice::render_with::<()>(t, voice::SAMPLE_RATE, |b| {
        peak = b.iter().fold(peak, |m, v| m.max(v.abs()));
        Ok(())
    })
    .expect("renders");
    (n, peak)
}

fn bench(c: &mut Criterion) {
    let t = piece();
    let (samples, peak) = render(&t);
    let seconds = samples as f64 / f64::from(voice::SAMPLE_RATE);
    let notes = t.count(organ::plan::Kind::NoteOn);
    let drawn = t.registrations.first().map_or(0, |r| r.drawn.len());
    println!(
        "piece: {} × 4 verses on {}, {} controls drawn, {notes} notes, {seconds:.1} s of audio at {} Hz (peak {peak:.2})",
        t.score_name,
        t.organ_name,
        drawn,
        voice::SAMPLE_RATE
    );
    for _ in 0..3 {
        let start = Instant::now();
        black_box(render(&t));
        let took = start.elapsed().as_secs_f64();
        println!("rendered in {took:.3} s: {:.0}× real time", seconds / took);
    }
    let mut g = c.benchmark_group("voice");
    g.sample_size(10);
    g.bench_function("render 4-minute piece, full registration", |b| b.iter(|| black_box(render(&t))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
