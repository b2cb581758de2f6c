//! The additive organ: console state in, samples out.
//!
//! Every stop drawn on a division is a set of ranks with a harmonic spectrum ([`super::stops`]).
//! Because every rank of every stop sounds a whole multiple of the key's 32' pitch (8' = 4×,
//! 2 2/3' = 12×, 16' = 2×), all the drawn stops of a division together make one periodic wave
//! per key: the division's *timbre*, built once per registration as wavetables (one per octave
//! of keys, with the harmonics above the audible band left out, and mixture ranks breaking back
//! an octave in the treble as real mixtures do). A sounding key is then one table-reading
//! oscillator per division and detuning (celestes are their own layer, so they beat), however
//! many stops are drawn: that is what makes rendering hundreds of times faster than real time.
//!
//! A registration change is heard 20 ms after its last stop message ([`SETTLE_SECONDS`]).
//! A key sounds on a division when it is held there, or held on a division that a drawn coupler
//! brings it to (with the coupler's octave shift). A registration change crossfades each
//! sounding key from the old timbre to the new in phase. A tremulant modulates its division's
//! amplitude and pitch. The mix goes through a limiter that never lets a sample reach full scale.
//!
//! # Real-time safety
//! [`Synth::render`] and [`Synth::apply`] do not allocate once the timbres of the registrations
//! played were built ([`Synth::prepare`]; a registration is looked up by a fingerprint of its
//! stops) and while fewer than 512 voices sound; a registration never prepared is built on first
//! use (allocating), which only a console state the plan does not foresee asks for.

use std::collections::HashMap;

use super::OrganSound;
use super::console::{Console, ConsoleEvent};
use super::stops::{StopVoice, coupler_shift, stop_voice};
use crate::organ::ControlKind;

/// Wavetable length (a power of two): harmonics up to 1023 of the 32' pitch (256 of the 8').
const TABLE: usize = 2048;
const TABLE_BITS: u32 = 11;
/// Octave bands of keys, each with its own band-limited table.
const BANDS: usize = 11;
/// Gain of the mix before the limiter: one principal 8' key peaks near 0.1, a full registration
/// with five-part music mostly stays under the limiter's ceiling.
const MASTER: f32 = 0.06;
/// The limiter's ceiling.
const CEILING: f32 = 0.89;

const TREMULANT_HZ: f32 = 5.6;
const TREMULANT_AM: f32 = 0.22;
const TREMULANT_FM: f32 = 0.0035;

/// One division's sound for one registration and detuning: a table per octave band.
struct Timbre {
    /// A fixed length, so that reading `[i]` and `[i + 1]` with `i` from a phase needs no
    /// bounds check.
    bands: Vec<Box<[f32; TABLE + 1]>>,
}

fn key_hz(key: i32) -> f32 {
    440.0 * 2f32.powf((key as f32 - 69.0) / 12.0)
}

/// A deterministic spread of starting phases, so that the harmonics do not all peak together.
fn phase_of(h: u32) -> usize {
    (h.wrapping_mul(2_654_435_761) >> (32 - TABLE_BITS)) as usize
}

impl Timbre {
    fn build(stops: &[&StopVoice], sample_rate: f32, sine: &[f32]) -> Timbre {
        let limit = (0.45 * sample_rate).min(16_000.0);
        let mut bands = Vec::with_capacity(BANDS);
        for b in 0..BANDS {
            let top = key_hz((b * 12 + 11) as i32) / 4.0; // the 32' pitch of the band's top key
            let mut t = Box::new([0f32; TABLE + 1]);
            for s in stops {
                let compound = s.ranks.len() > 1;
                for r in &s.ranks {
                    let mut ratio = r.ratio;
                    // Mixtures break back: no rank above about 5 kHz.
                    while compound && ratio % 2 == 0 && ratio as f32 * top > 5_000.0 {
                        ratio /= 2;
                    }
                    for (n, &a) in r.harmonics.iter().enumerate() {
                        let h = ratio * (n as u32 + 1);
                        if a == 0.0 || h as f32 * top >= limit || h as usize >= TABLE / 2 {
                            continue;
                        }
                        let amp = a * s.level;
                        let off = phase_of(h);
                        for (i, v) in t.iter_mut().take(TABLE).enumerate() {
                            *v += amp * sine[(h as usize * i + off) & (TABLE - 1)];
                        }
                    }
                }
            }
            t[TABLE] = t[0];
            bands.push(t);
        }
        Timbre { bands }
    }
}

const FRAC_BITS: u32 = 32 - TABLE_BITS;

/// `coef^0 ..= coef^BLOCK`.
fn powers(coef: f32) -> Box<[f32; BLOCK + 1]> {
    let mut p = Box::new([1.0f32; BLOCK + 1]);
    for i in 1..=BLOCK {
        p[i] = p[i - 1] * coef;
    }
    p
}

/// The table read between two entries.
#[inline(always)]
fn lerp(table: &[f32; TABLE + 1], phase: u32) -> f32 {
    let i = (phase >> FRAC_BITS) as usize;
    let frac = (phase & ((1 << FRAC_BITS) - 1)) as f32 * (1.0 / (1u32 << FRAC_BITS) as f32);
    let (a, b) = (table[i], table[i + 1]);
    a + (b - a) * frac
}

/// Adds `gain` × the table read from `phase` on into `out`; returns the phase after.
fn read(table: &[f32; TABLE + 1], mut phase: u32, inc: u32, out: &mut [f32], gain: f32) -> u32 {
    for o in out.iter_mut() {
        *o += lerp(table, phase) * gain;
        phase = phase.wrapping_add(inc);
    }
    phase
}

/// One sounding key on one division and layer.
#[derive(Debug, Clone, Copy)]
struct Voice {
    division: u8,
    key: u8,
    layer: u8,
    timbre: u32,
    band: u8,
    phase: u32,
    /// Phase increment per sample, before the tremulant.
    inc: u32,
    env: f32,
    target: f32,
}

/// What a division sounds with now: its layers (timbre index, detune factor).
#[derive(Debug, Clone, Default)]
struct DivisionSound {
    layers: Vec<(u32, f32)>,
    tremulant: bool,
}

/// The additive organ for one organ definition.
pub struct Synth {
    rate: f32,
    console: Console,
    voices_of_stops: Vec<Option<StopVoice>>,
    division_of_stop: Vec<Option<usize>>,
    /// For each coupler: (from, to, key shift).
    couplers: Vec<Option<(usize, usize, i32)>>,
    /// Tremulant controls and their division (`None`: all).
    tremulants: Vec<Option<Option<usize>>>,
    sine: Vec<f32>,
    timbres: Vec<Timbre>,
    timbre_index: HashMap<Vec<usize>, u32>,
    /// Division and [`Synth::signature`] of its drawn stops → its layers.
    layer_cache: HashMap<(usize, u64), Vec<(u32, f32)>>,
    sound: Vec<DivisionSound>,
    voices: Vec<Voice>,
    dirty: bool,
    /// Samples until a registration change counts (see [`SETTLE_SECONDS`]); 0: none pending.
    settle: u32,
    registration_dirty: bool,
    lfo: f32,
    limiter: f32,
    /// Powers 0..=BLOCK of the attack's and the release's per-sample factor: the envelope
    /// `target + (env - target) * coef^i` is computed per sample without a chain from one
    /// sample to the next.
    attack: Box<[f32; BLOCK + 1]>,
    release: Box<[f32; BLOCK + 1]>,
    recover: f32,
}

/// A registration change sounds once no stop message has come for this long: stop messages come
/// a few milliseconds apart (`stop_pace_ms`), and a console's stop action takes about as long,
/// so the registration is heard whole rather than stop by stop (which would also build a timbre
/// for every half-drawn state).
pub const SETTLE_SECONDS: f32 = 0.02;

/// Block length for control-rate work (envelopes run per sample, the tremulant per block).
pub const BLOCK: usize = 64;

impl Synth {
    pub fn new(organ: &OrganSound, sample_rate: u32) -> Synth {
        let rate = sample_rate as f32;
        let coef = |seconds: f32| (-1.0 / (seconds * rate)).exp();
        Synth {
            rate,
            console: Console::new(organ),
            voices_of_stops: organ
                .controls
                .iter()
                .map(|c| (c.kind == ControlKind::Stop).then(|| stop_voice(&c.name, c.voice.as_ref())))
                .collect(),
            division_of_stop: organ.controls.iter().map(|c| c.division).collect(),
            couplers: organ
                .controls
                .iter()
                .map(|c| match c.kind {
                    ControlKind::Coupler { from, to } => Some((from, to, coupler_shift(&c.name))),
                    _ => None,
                })
                .collect(),
            tremulants: organ
                .controls
                .iter()
                .map(|c| (c.kind == ControlKind::Tremulant).then_some(c.division))
                .collect(),
            sine: (0..TABLE).map(|i| (std::f32::consts::TAU * i as f32 / TABLE as f32).sin()).collect(),
            timbres: Vec::new(),
            timbre_index: HashMap::new(),
            layer_cache: HashMap::new(),
            sound: (0..organ.channels.len())
                .map(|_| DivisionSound { layers: Vec::with_capacity(8), tremulant: false })
                .collect(),
            voices: Vec::with_capacity(512),
            dirty: false,
            settle: 0,
            registration_dirty: false,
            lfo: 0.0,
            limiter: 1.0,
            attack: powers(coef(0.018)),
            release: powers(coef(0.03)),
            recover: coef(0.25),
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.rate as u32
    }

    /// Builds the timbres of a registration ahead of time (the controls drawn), so that playing
    /// it later allocates nothing.
    pub fn prepare(&mut self, drawn: &[usize]) {
        for d in 0..self.sound.len() {
            self.layers(d, |id| drawn.contains(&id));
        }
    }

    /// A fingerprint of the stops drawn on division `d` (FNV-1a over their ids).
    fn signature(&self, d: usize, drawn: &impl Fn(usize) -> bool) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let stops = (0..self.voices_of_stops.len()).filter(|&id| self.voices_of_stops[id].is_some());
        for id in stops.filter(|&id| self.on_division(id, d) && drawn(id)) {
            h = (h ^ id as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
        h
    }

    /// The layers (timbre, detune factor) of division `d` for the stops `drawn`: from the cache
    /// without allocating, or built (and kept) the first time.
    fn layers(&mut self, d: usize, drawn: impl Fn(usize) -> bool) -> &[(u32, f32)] {
        let sig = self.signature(d, &drawn);
        if !self.layer_cache.contains_key(&(d, sig)) {
            let mut groups: Vec<(Vec<usize>, f32)> = Vec::new();
            for (id, v) in self.voices_of_stops.iter().enumerate() {
                let Some(v) = v else { continue };
                if !drawn(id) || !self.on_division(id, d) {
                    continue;
                }
                match groups.iter_mut().find(|l| l.1 == v.detune_cents) {
                    Some(l) => l.0.push(id),
                    None => groups.push((vec![id], v.detune_cents)),
                }
            }
            let layers: Vec<(u32, f32)> =
                groups.into_iter().map(|(stops, cents)| (self.timbre(stops), 2f32.powf(cents / 1200.0))).collect();
            self.layer_cache.insert((d, sig), layers);
        }
        &self.layer_cache[&(d, sig)]
    }

    fn on_division(&self, id: usize, d: usize) -> bool {
        self.division_of_stop.get(id).copied().flatten() == Some(d)
    }

    /// Applies a change of the console's state (from [`super::console::Decoder`]).
    pub fn apply(&mut self, e: ConsoleEvent) {
        if self.console.apply(e) {
            self.settle = (SETTLE_SECONDS * self.rate) as u32;
        }
        self.dirty = true;
    }

    /// Whether anything sounds or is still dying away.
    pub fn is_silent(&self) -> bool {
        self.voices.is_empty()
    }

    /// The keys that sound on division `d`: its own and those coupled to it.
    fn sounding_keys(&self, d: usize) -> u128 {
        let mut keys = self.console.keys[d];
        for (id, c) in self.couplers.iter().enumerate() {
            if let Some((from, to, shift)) = *c
                && from == d
                && self.console.drawn[id]
            {
                let k = self.console.keys[to];
                keys |= match shift {
                    s if s > 0 => k << s,
                    s if s < 0 => k >> -s,
                    _ => k,
                };
            }
        }
        keys
    }

    /// The sound of division `d` for the stops drawn now.
    fn update_layers(&mut self, d: usize) {
        let drawn = std::mem::take(&mut self.console.drawn);
        let mut layers = std::mem::take(&mut self.sound[d].layers);
        layers.clear();
        layers.extend_from_slice(self.layers(d, |id| drawn[id]));
        self.sound[d].layers = layers;
        self.sound[d].tremulant = self.tremulants.iter().enumerate().any(|(id, t)| match t {
            Some(Some(td)) => *td == d && drawn[id],
            Some(None) => drawn[id],
            None => false,
        });
        self.console.drawn = drawn;
    }

    /// Brings the voices in line with the console: new keys start, released keys and changed
    /// registrations die away (a changed registration crossfades in phase).
    fn update(&mut self) {
        self.dirty = false;
        let registration = std::mem::take(&mut self.registration_dirty);
        for d in 0..self.sound.len() {
            if registration {
                self.update_layers(d);
            }
            let keys = self.sounding_keys(d);

            // Voices that no longer belong die away.
            for v in self.voices.iter_mut().filter(|v| usize::from(v.division) == d && v.target > 0.0) {
                let layer = self.sound[d].layers.get(usize::from(v.layer));
                if keys & (1u128 << v.key) == 0 || layer.is_none_or(|l| l.0 != v.timbre) {
                    v.target = 0.0;
                }
            }
            for (layer, &(timbre, detune)) in self.sound[d].layers.iter().enumerate() {
                let mut k = keys;
                while k != 0 {
                    let key = k.trailing_zeros() as u8;
                    k &= k - 1;
                    let live =
                        |v: &Voice| usize::from(v.division) == d && v.key == key && usize::from(v.layer) == layer;
                    if self.voices.iter().any(|v| live(v) && v.target > 0.0) {
                        continue;
                    }
                    // In phase with the voice it replaces, so that the crossfade does not dip.
                    let phase = self.voices.iter().rev().find(|v| live(v)).map_or(0, |v| v.phase);
                    let hz = key_hz(i32::from(key)) / 4.0 * detune;
                    self.voices.push(Voice {
                        division: d as u8,
                        key,
                        layer: layer as u8,
                        timbre,
                        band: (key / 12).min(BANDS as u8 - 1),
                        phase,
                        inc: (f64::from(hz) / f64::from(self.rate) * 4_294_967_296.0) as u32,
                        env: 0.0,
                        target: 1.0,
                    });
                }
            }
        }
    }

    /// Renders mono samples into `out` (overwriting it).
    pub fn render(&mut self, out: &mut [f32]) {
        for chunk in out.chunks_mut(BLOCK) {
            if self.settle > 0 {
                self.settle = self.settle.saturating_sub(chunk.len() as u32);
                if self.settle == 0 {
                    self.registration_dirty = true;
                    self.dirty = true;
                }
            }
            if self.dirty {
                self.update();
            }
            self.render_block(chunk);
        }
    }

    fn render_block(&mut self, out: &mut [f32]) {
        out.fill(0.0);
        let n = out.len();
        let lfo = (self.lfo * std::f32::consts::TAU).sin();
        self.lfo = (self.lfo + TREMULANT_HZ * n as f32 / self.rate).fract();
        let (attack, release) = (&self.attack, &self.release);
        for v in &mut self.voices {
            let sound = &self.sound[usize::from(v.division)];
            let (gain, inc) = if sound.tremulant {
                (MASTER * (1.0 + TREMULANT_AM * lfo), (v.inc as f32 * (1.0 + TREMULANT_FM * lfo)) as u32)
            } else {
                (MASTER, v.inc)
            };
            let table = &self.timbres[v.timbre as usize].bands[usize::from(v.band)];
            let pows = if v.target > 0.0 { attack } else { release };
            let (target, env, phase) = (v.target, v.env, v.phase);
            if target > 0.0 && env > 0.999 {
                // Settled (most of the time): no envelope to follow.
                v.phase = read(table, phase, inc, out, gain * env);
                continue;
            }
            let d = env - target;
            for ((i, o), p) in out.iter_mut().enumerate().zip(&pows[1..]) {
                let e = target + d * p;
                *o += lerp(table, phase.wrapping_add(inc.wrapping_mul(i as u32))) * e * gain;
            }
            v.env = target + d * pows[n];
            v.phase = phase.wrapping_add(inc.wrapping_mul(n as u32));
        }
        self.voices.retain(|v| v.target > 0.0 || v.env > 1e-3);
        // Limiter: instant attack, so no sample ever exceeds the ceiling.
        for o in out.iter_mut() {
            let a = o.abs() * self.limiter;
            if a > CEILING {
                self.limiter = CEILING / o.abs();
            } else {
                self.limiter = 1.0 - (1.0 - self.limiter) * self.recover;
            }
            *o *= self.limiter;
        }
    }

    fn timbre(&mut self, stops: Vec<usize>) -> u32 {
        if let Some(&i) = self.timbre_index.get(&stops) {
            return i;
        }
        let voices: Vec<&StopVoice> = stops.iter().filter_map(|&s| self.voices_of_stops[s].as_ref()).collect();
        let t = Timbre::build(&voices, self.rate, &self.sine);
        self.timbres.push(t);
        let i = (self.timbres.len() - 1) as u32;
        self.timbre_index.insert(stops, i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organ::Organ;
    use crate::voice::console::Action;

    const ORGAN: &str = r#"
name = "T"
[division.swell]
code = "S"
channel = 1
[[stop]]
name = "Sw Open Diapason 8"
division = "swell"
on = { note = 36, channel = 16 }
[[tremulant]]
name = "Sw Tremulant"
division = "swell"
on = { note = 80, channel = 16 }
"#;

    fn synth() -> Synth {
        Synth::new(&OrganSound::of_organ(&Organ::from_toml(ORGAN, "t.toml").unwrap()), 48_000)
    }

    fn run(s: &mut Synth, seconds: f32) -> Vec<f32> {
        let mut x = vec![0.0; (seconds * 48_000.0) as usize];
        s.render(&mut x);
        x
    }

    /// RMS in windows of four periods of C4 (15 ms).
    fn envelope(x: &[f32]) -> Vec<f32> {
        x.chunks(734).map(|c| (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32).sqrt()).collect()
    }

    #[test]
    fn the_cancel_silences_held_keys() {
        let mut s = synth();
        s.apply(ConsoleEvent::Key { division: 0, key: 60, down: true });
        assert!(run(&mut s, 0.2).iter().all(|&v| v == 0.0), "a key with nothing drawn is silent");
        s.apply(ConsoleEvent::Control { id: 0, action: Action::On });
        assert!(run(&mut s, 0.3).iter().any(|&v| v.abs() > 0.05));
        s.apply(ConsoleEvent::Cancel);
        let x = run(&mut s, 1.0);
        assert!(x[24_000..].iter().all(|&v| v == 0.0), "silent after the cancel though the key is held");
        assert!(s.is_silent());
    }

    /// Amplitude of `hz` in `x` (a plain DFT bin over whole seconds).
    fn tone(x: &[f32], hz: f32) -> f32 {
        let (mut re, mut im) = (0f64, 0f64);
        for (i, &v) in x.iter().enumerate() {
            let w = std::f64::consts::TAU * f64::from(hz) * i as f64 / 48_000.0;
            re += f64::from(v) * w.cos();
            im += f64::from(v) * w.sin();
        }
        (2.0 * (re * re + im * im).sqrt() / x.len() as f64) as f32
    }

    #[test]
    fn the_voice_table_of_the_organ_definition_is_heard() {
        let text = ORGAN.replace(
            "on = { note = 36, channel = 16 }",
            "on = { note = 36, channel = 16 }\nvoice = { footage = 4, family = \"stopped\" }",
        );
        let mut s = Synth::new(&OrganSound::of_organ(&Organ::from_toml(&text, "t.toml").unwrap()), 48_000);
        s.apply(ConsoleEvent::Key { division: 0, key: 57, down: true }); // A3, 220 Hz
        s.apply(ConsoleEvent::Control { id: 0, action: Action::On });
        run(&mut s, 0.5);
        let x = run(&mut s, 1.0);
        // Named "Open Diapason 8", voiced as a stopped 4': 440 Hz and 1320 Hz, nothing at 220 or 880.
        assert!(tone(&x, 440.0) > 0.02, "{}", tone(&x, 440.0));
        assert!(tone(&x, 1320.0) > 0.002);
        assert!(tone(&x, 220.0) < 1e-4 && tone(&x, 880.0) < 1e-4);
    }

    #[test]
    fn the_tremulant_modulates() {
        let mut s = synth();
        s.apply(ConsoleEvent::Key { division: 0, key: 60, down: true });
        s.apply(ConsoleEvent::Control { id: 0, action: Action::On });
        let steady = envelope(&run(&mut s, 1.0)[24_000..]);
        let (lo, hi) = steady.iter().fold((f32::MAX, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(hi / lo < 1.05, "steady without the tremulant: {lo} .. {hi}");
        s.apply(ConsoleEvent::Control { id: 1, action: Action::On });
        let trem = envelope(&run(&mut s, 1.0)[12_000..]);
        let (lo, hi) = trem.iter().fold((f32::MAX, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(hi / lo > 1.4, "the tremulant moves the level: {lo} .. {hi}");
    }
}
