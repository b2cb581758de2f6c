//! Reading a recording: the level of known pitches in a stretch of audio (Goertzel with a Hann
//! window), RMS, and the first non-silent sample.

/// Amplitude of a sine at `hz` in `x` (1.0 = a full-scale sine), Hann-windowed Goertzel.
pub fn tone_amplitude(x: &[f32], hz: f64, rate: f64) -> f64 {
    let n = x.len();
    if n < 2 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut wsum = 0.0;
    for (i, &v) in x.iter().enumerate() {
        let win = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
        wsum += win;
        let s0 = f64::from(v) * win + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / wsum
}

/// Decibels relative to full scale of an amplitude (−300 for silence).
pub fn db(a: f64) -> f64 {
    if a <= 0.0 { -300.0 } else { 20.0 * a.log10() }
}

pub fn rms(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Index of the first sample at or after `from` whose magnitude exceeds `threshold`.
pub fn onset(x: &[f32], from: usize, threshold: f32) -> Option<usize> {
    x.get(from..)?.iter().position(|v| v.abs() > threshold).map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_the_tone_and_not_its_neighbour() {
        let rate = 48_000.0;
        let x: Vec<f32> =
            (0..9600).map(|i| (0.2 * (2.0 * std::f64::consts::PI * 262.0 * i as f64 / rate).sin()) as f32).collect();
        assert!((tone_amplitude(&x, 262.0, rate) - 0.2).abs() < 0.01);
        assert!(tone_amplitude(&x, 330.0, rate) < 0.001);
        assert_eq!(onset(&x, 0, 0.1), Some(x.iter().position(|v| v.abs() > 0.1).unwrap()));
    }
}
