//! Loudness matching of the two clips of a blind A/B pair (EBU R128 /
//! ITU-R BS.1770 via the `ebur128` crate).
//!
//! Why: listeners reliably prefer the louder of two otherwise similar clips,
//! so an unmatched A/B test measures level, not model quality. Each pair is
//! therefore brought to the same *integrated loudness* (LUFS, K-weighted and
//! gated as in BS.1770), and, if that would push either clip over a true-peak
//! ceiling, *both* are lowered by the same extra amount so that they stay
//! matched and neither clips.
//!
//! What: [`measure`] (integrated loudness and true peak of a mono buffer) and
//! [`match_pair`] (trim to common length, gain to a target, shared peak
//! limiting by gain only — no limiter or compressor touches the audio).
//! Silent or too-short input is an error ([`ListenError::Silent`]), never a
//! NaN or infinite gain.

use ebur128::{EbuR128, Mode};
use serde::{Deserialize, Serialize};

use super::error::{ListenError, Result};

/// EBU R128 target for broadcast programme loudness.
pub const DEFAULT_TARGET_LUFS: f64 = -23.0;
/// Common true-peak ceiling (EBU R128 allows −1 dBTP).
pub const DEFAULT_MAX_TRUE_PEAK_DBTP: f64 = -1.0;

/// Loudness of a mono buffer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Gated integrated loudness (LUFS).
    pub integrated_lufs: f64,
    /// Maximum true peak (dBTP; 4× oversampled below 96 kHz).
    pub true_peak_dbtp: f64,
}

/// A loudness-matched pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchedPair {
    /// Clip a after trimming and gain.
    pub a: Vec<f32>,
    /// Clip b after trimming and gain.
    pub b: Vec<f32>,
    /// Gain applied to a (dB).
    pub gain_a_db: f64,
    /// Gain applied to b (dB).
    pub gain_b_db: f64,
    /// Extra attenuation applied to *both* clips to respect the true-peak
    /// ceiling (dB, ≥ 0; 0 when the target was reachable).
    pub peak_reduction_db: f64,
    /// Samples kept from each clip (the shorter input's length).
    pub len: usize,
    /// Loudness of a before gain (after trimming).
    pub before_a: Loudness,
    /// Loudness of b before gain (after trimming).
    pub before_b: Loudness,
    /// Loudness of a after gain (re-measured).
    pub loudness_a: Loudness,
    /// Loudness of b after gain (re-measured).
    pub loudness_b: Loudness,
}

fn meter_err(e: ebur128::Error) -> ListenError {
    ListenError::Loudness(e.to_string())
}

/// Measure the integrated loudness and true peak of a mono buffer.
///
/// Errors: an empty buffer, a non-finite sample or a zero rate is
/// [`ListenError::Invalid`]; a buffer whose gated loudness is −∞ (digital
/// silence, or shorter than one 400 ms gating block) is
/// [`ListenError::Silent`] naming `"input"`.
pub fn measure(samples: &[f32], rate: u32) -> Result<Loudness> {
    measure_named(samples, rate, "input")
}

fn measure_named(samples: &[f32], rate: u32, what: &str) -> Result<Loudness> {
    if rate == 0 {
        return Err(ListenError::Invalid(format!(
            "{what}: sample rate must be > 0"
        )));
    }
    if samples.is_empty() {
        return Err(ListenError::Invalid(format!("{what}: no samples")));
    }
    if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
        return Err(ListenError::Invalid(format!(
            "{what}: sample {i} is not finite ({})",
            samples[i]
        )));
    }
    let mut meter = EbuR128::new(1, rate, Mode::I | Mode::TRUE_PEAK).map_err(meter_err)?;
    meter.add_frames_f32(samples).map_err(meter_err)?;
    let integrated_lufs = meter.loudness_global().map_err(meter_err)?;
    let peak = meter.true_peak(0).map_err(meter_err)?;
    if !integrated_lufs.is_finite() || peak.is_nan() || peak <= 0.0 {
        return Err(ListenError::Silent {
            what: what.to_string(),
        });
    }
    Ok(Loudness {
        integrated_lufs,
        true_peak_dbtp: 20.0 * peak.log10(),
    })
}

fn apply_gain(samples: &[f32], gain_db: f64) -> Vec<f32> {
    let g = 10f64.powf(gain_db / 20.0);
    samples.iter().map(|&s| (f64::from(s) * g) as f32).collect()
}

/// Trim two mono clips to the shorter length and gain each to `target_lufs`.
///
/// If either clip's true peak after that gain would exceed
/// `max_true_peak_dbtp`, both gains are lowered by the same extra amount
/// (the larger overshoot), so the pair stays matched and the louder-peaking
/// clip lands on the ceiling. True peak scales linearly with gain, so the
/// prediction is exact up to float rounding; the result is re-measured and
/// reported in `loudness_a`/`loudness_b`.
///
/// Errors: silence or clips shorter than 400 ms ([`ListenError::Silent`]
/// naming `"clip a"`/`"clip b"`), non-finite targets, or the checks of
/// [`measure`].
pub fn match_pair(
    a: &[f32],
    b: &[f32],
    rate: u32,
    target_lufs: f64,
    max_true_peak_dbtp: f64,
) -> Result<MatchedPair> {
    if !target_lufs.is_finite() || !max_true_peak_dbtp.is_finite() {
        return Err(ListenError::Invalid(format!(
            "target loudness ({target_lufs}) and true-peak ceiling ({max_true_peak_dbtp}) must be finite"
        )));
    }
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let before_a = measure_named(a, rate, "clip a")?;
    let before_b = measure_named(b, rate, "clip b")?;

    let mut gain_a_db = target_lufs - before_a.integrated_lufs;
    let mut gain_b_db = target_lufs - before_b.integrated_lufs;
    let peak_after = (before_a.true_peak_dbtp + gain_a_db).max(before_b.true_peak_dbtp + gain_b_db);
    let peak_reduction_db = (peak_after - max_true_peak_dbtp).max(0.0);
    gain_a_db -= peak_reduction_db;
    gain_b_db -= peak_reduction_db;
    if !gain_a_db.is_finite() || !gain_b_db.is_finite() {
        return Err(ListenError::Invalid(format!(
            "computed gains are not finite (a: {gain_a_db} dB, b: {gain_b_db} dB)"
        )));
    }

    let out_a = apply_gain(a, gain_a_db);
    let out_b = apply_gain(b, gain_b_db);
    let loudness_a = measure_named(&out_a, rate, "clip a (after gain)")?;
    let loudness_b = measure_named(&out_b, rate, "clip b (after gain)")?;
    Ok(MatchedPair {
        a: out_a,
        b: out_b,
        gain_a_db,
        gain_b_db,
        peak_reduction_db,
        len,
        before_a,
        before_b,
        loudness_a,
        loudness_b,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const RATE: u32 = 48_000;

    fn sine(freq: f64, amp: f32, secs: f64) -> Vec<f32> {
        let n = (secs * RATE as f64) as usize;
        (0..n)
            .map(|i| {
                amp * (2.0 * std::f64::consts::PI * freq * i as f64 / RATE as f64).sin() as f32
            })
            .collect()
    }

    fn noise(amp: f32, secs: f64, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = (secs * RATE as f64) as usize;
        (0..n)
            .map(|_| amp * rng.random_range(-1.0f32..1.0))
            .collect()
    }

    fn db(x: f32) -> f32 {
        10f32.powf(x / 20.0)
    }

    #[test]
    fn measure_full_scale_sine() {
        // BS.1770: a 997 Hz-ish full-scale sine in one channel reads ≈ −3.01 LUFS
        let l = measure(&sine(1000.0, 1.0, 3.0), RATE).unwrap();
        assert!((l.integrated_lufs + 3.01).abs() < 0.2, "{l:?}");
        assert!(l.true_peak_dbtp.abs() < 0.2, "{l:?}");
    }

    #[test]
    fn pair_12_db_apart_is_matched() {
        let a = sine(440.0, 0.5, 4.0);
        let b: Vec<f32> = noise(0.5, 5.0, 1).iter().map(|s| s * db(-12.0)).collect();
        let before_gap = measure(&a, RATE).unwrap().integrated_lufs
            - measure(&b[..a.len()], RATE).unwrap().integrated_lufs;
        assert!(before_gap > 5.0, "gap {before_gap}");
        let m = match_pair(&a, &b, RATE, -23.0, -1.0).unwrap();
        assert_eq!(m.len, a.len());
        assert_eq!((m.a.len(), m.b.len()), (a.len(), a.len()));
        let (la, lb) = (m.loudness_a.integrated_lufs, m.loudness_b.integrated_lufs);
        assert!((la - lb).abs() < 0.5, "{la} vs {lb}");
        assert!(
            (la + 23.0).abs() < 0.5 && (lb + 23.0).abs() < 0.5,
            "{la} {lb}"
        );
        assert_eq!(m.peak_reduction_db, 0.0);
        assert!(m.gain_b_db > m.gain_a_db);
    }

    #[test]
    fn pair_12_db_apart_noise_and_noise() {
        let a = noise(0.3, 3.0, 2);
        let b: Vec<f32> = noise(0.3, 3.0, 3).iter().map(|s| s * db(-12.0)).collect();
        let m = match_pair(&a, &b, RATE, -23.0, -1.0).unwrap();
        assert!(((m.gain_b_db - m.gain_a_db) - 12.0).abs() < 0.5);
        let (la, lb) = (m.loudness_a.integrated_lufs, m.loudness_b.integrated_lufs);
        assert!(
            (la - lb).abs() < 0.5 && (la + 23.0).abs() < 0.5,
            "{la} {lb}"
        );
    }

    #[test]
    fn peaky_clip_lowers_both_by_the_same_amount() {
        // a: quiet noise with full-scale clicks (high crest factor): reaching
        // −23 LUFS would need ~+15 dB and drive the peaks far above 0 dBTP.
        let mut a = noise(0.001, 4.0, 4);
        for i in (0..a.len()).step_by(RATE as usize / 10) {
            a[i] = 0.99;
        }
        let b = sine(1000.0, 0.1, 4.0);
        let m = match_pair(&a, &b, RATE, -23.0, -1.0).unwrap();
        assert!(m.peak_reduction_db > 3.0, "{m:?}");
        let nominal_a = -23.0 - m.before_a.integrated_lufs;
        let nominal_b = -23.0 - m.before_b.integrated_lufs;
        let cut_a = nominal_a - m.gain_a_db;
        let cut_b = nominal_b - m.gain_b_db;
        assert!((cut_a - cut_b).abs() < 1e-9 && (cut_a - m.peak_reduction_db).abs() < 1e-9);
        let max_peak = m.loudness_a.true_peak_dbtp.max(m.loudness_b.true_peak_dbtp);
        assert!(max_peak <= -1.0 + 0.1, "peak {max_peak}");
        assert!(
            (max_peak + 1.0).abs() < 0.1,
            "the peakier clip sits on the ceiling"
        );
        let (la, lb) = (m.loudness_a.integrated_lufs, m.loudness_b.integrated_lufs);
        assert!((la - lb).abs() < 0.5, "still matched: {la} {lb}");
        assert!(
            la < -23.0 - 3.0,
            "below target because of the ceiling: {la}"
        );
    }

    #[test]
    fn silence_is_an_error_not_nan() {
        let silent = vec![0.0f32; RATE as usize * 2];
        let tone = sine(440.0, 0.5, 2.0);
        let err = match_pair(&tone, &silent, RATE, -23.0, -1.0).unwrap_err();
        assert!(
            matches!(&err, ListenError::Silent { what } if what == "clip b"),
            "{err}"
        );
        assert!(err.to_string().contains("silent"));
        assert!(matches!(
            measure(&silent, RATE),
            Err(ListenError::Silent { .. })
        ));
        // too short for a single 400 ms gating block
        assert!(matches!(
            measure(&tone[..RATE as usize / 10], RATE),
            Err(ListenError::Silent { .. })
        ));
        assert!(matches!(measure(&[], RATE), Err(ListenError::Invalid(_))));
        assert!(matches!(
            measure(&[0.1, f32::NAN], RATE),
            Err(ListenError::Invalid(_))
        ));
        assert!(matches!(
            match_pair(&tone, &tone, RATE, f64::NAN, -1.0),
            Err(ListenError::Invalid(_))
        ));
    }

    #[test]
    fn trims_to_shorter_clip() {
        let a = sine(300.0, 0.2, 3.0);
        let b = sine(500.0, 0.2, 2.0);
        let m = match_pair(&a, &b, RATE, -20.0, -1.0).unwrap();
        assert_eq!((m.len, m.a.len(), m.b.len()), (b.len(), b.len(), b.len()));
    }
}
