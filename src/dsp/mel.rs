//! Log-mel spectrogram and the log-mel MSE between two renders.
//!
//! What: `n_fft = 2048`, `hop = 512`, periodic Hann window, centred frames
//! (`n_fft / 2` zeros padded on both sides, like librosa ≥ 0.10's default
//! `pad_mode="constant"`), power spectrum `|X|²`, 64 mel bands from 0 Hz to
//! Nyquist, then `log10(mel + 1e-5)`.
//!
//! Mel scale: **Slaney** (the Auditory Toolbox scale, librosa's default
//! `htk=False`): linear below 1 kHz (`mel = 3 f / 200`), logarithmic above
//! (27 mels per factor 6.4), with Slaney **area normalisation** of each
//! triangular filter (`2 / (f_hi − f_lo)`, librosa's `norm="slaney"`), so a
//! band measures power density rather than growing with its width. Chosen
//! because it is what `librosa.feature.melspectrogram` produces by default, so
//! numbers can be cross-checked in Python without flags.
//!
//! Why: [`log_mel_mse`] is the cheap "did this render change, and how much"
//! distance between two waveforms at the same sample rate (e.g. the same
//! prompt and seed before and after fine-tuning, or a reconstruction against
//! its source). The signals are trimmed to the shorter length first, so a
//! render that runs longer is compared over the overlap only.
//!
//! Caveat (shared with the latent metrics in this module family): none of
//! these numbers are comparable with metrics published elsewhere — in
//! particular FAD on EnCodec latents is not VGGish FAD.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::error::metrics::{MetricsError, Result};

/// FFT size (samples per frame).
pub const N_FFT: usize = 2048;
/// Hop between frames, in samples.
pub const HOP: usize = 512;
/// Number of mel bands.
pub const N_MELS: usize = 64;
/// Floor added before `log10`.
pub const LOG_EPS: f64 = 1e-5;

/// Slaney mel scale: linear part slope (Hz per mel).
const F_SP: f64 = 200.0 / 3.0;
/// Start of the logarithmic part, Hz and mel.
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP; // 15

fn log_step() -> f64 {
    6.4_f64.ln() / 27.0
}

/// Hz → mel on the Slaney scale.
pub fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

/// Mel → Hz on the Slaney scale.
pub fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        mel * F_SP
    }
}

/// Edges of one triangular mel filter, in Hz.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MelBand {
    pub lower_hz: f64,
    pub center_hz: f64,
    pub upper_hz: f64,
}

/// The `n_mels` bands spanning 0 Hz to `rate / 2`, equally spaced in mel.
pub fn mel_bands(rate: u32, n_mels: usize) -> Vec<MelBand> {
    let top = hz_to_mel(f64::from(rate) / 2.0);
    let pts: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64))
        .collect();
    pts.windows(3)
        .map(|w| MelBand {
            lower_hz: w[0],
            center_hz: w[1],
            upper_hz: w[2],
        })
        .collect()
}

/// A log-mel spectrogram, frame-major: `data[t * n_mels + m]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMel {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    /// Band values of frame `t`.
    pub fn frame(&self, t: usize) -> &[f32] {
        &self.data[t * self.n_mels..(t + 1) * self.n_mels]
    }
}

/// One sparse filter: weights for FFT bins `start..start + weights.len()`.
#[derive(Debug, Clone)]
struct Filter {
    start: usize,
    weights: Vec<f64>,
}

/// Reusable log-mel front end for one sample rate (FFT plan, window and
/// filterbank built once).
pub struct LogMelExtractor {
    rate: u32,
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    filters: Vec<Filter>,
}

impl std::fmt::Debug for LogMelExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMelExtractor")
            .field("rate", &self.rate)
            .field("n_fft", &N_FFT)
            .field("hop", &HOP)
            .field("n_mels", &self.filters.len())
            .finish()
    }
}

impl LogMelExtractor {
    /// Builds the extractor for `rate` Hz (must be > 0).
    pub fn new(rate: u32) -> Result<Self> {
        if rate == 0 {
            return Err(MetricsError::InvalidArgument(
                "sample rate must be > 0".into(),
            ));
        }
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        let window = (0..N_FFT)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos())
            .collect();
        let bin_hz = f64::from(rate) / N_FFT as f64;
        let n_bins = N_FFT / 2 + 1;
        let filters = mel_bands(rate, N_MELS)
            .iter()
            .map(|b| {
                let enorm = 2.0 / (b.upper_hz - b.lower_hz);
                let mut start = None;
                let mut weights = Vec::new();
                for k in 0..n_bins {
                    let f = k as f64 * bin_hz;
                    let lower = (f - b.lower_hz) / (b.center_hz - b.lower_hz);
                    let upper = (b.upper_hz - f) / (b.upper_hz - b.center_hz);
                    let w = lower.min(upper).max(0.0) * enorm;
                    if w > 0.0 {
                        let s = *start.get_or_insert(k);
                        weights.resize(k - s, 0.0);
                        weights.push(w);
                    }
                }
                Filter {
                    start: start.unwrap_or(0),
                    weights,
                }
            })
            .collect();
        Ok(Self {
            rate,
            fft,
            window,
            filters,
        })
    }

    /// Sample rate this extractor was built for.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Number of frames produced for `len` samples (centred framing).
    pub fn n_frames(len: usize) -> usize {
        1 + len / HOP
    }

    /// Log-mel spectrogram of a mono signal (needs ≥ 1 sample, all finite).
    pub fn compute(&self, signal: &[f32]) -> Result<LogMel> {
        if signal.is_empty() {
            return Err(MetricsError::TooFewSamples {
                what: "log-mel audio samples",
                n: 0,
                need: 1,
            });
        }
        if let Some(i) = signal.iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::NotFinite(format!(
                "audio sample {i} is not finite"
            )));
        }
        let pad = N_FFT / 2;
        let n_frames = Self::n_frames(signal.len());
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0_f64; spectrum.len()];
        let mut data = Vec::with_capacity(n_frames * N_MELS);
        for t in 0..n_frames {
            // Frame t covers padded[t*HOP .. t*HOP + N_FFT], i.e. signal
            // indices t*HOP − pad ..; outside the signal is zero.
            for (k, x) in input.iter_mut().enumerate() {
                let pos = (t * HOP + k).checked_sub(pad);
                let s = pos.and_then(|p| signal.get(p)).copied().unwrap_or(0.0);
                *x = f64::from(s) * self.window[k];
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .map_err(|e| MetricsError::Fft(e.to_string()))?;
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.re * c.re + c.im * c.im;
            }
            for f in &self.filters {
                let bins = &power[f.start..f.start + f.weights.len()];
                let e: f64 = bins.iter().zip(&f.weights).map(|(p, w)| p * w).sum();
                data.push((e + LOG_EPS).log10() as f32);
            }
        }
        Ok(LogMel {
            n_mels: N_MELS,
            n_frames,
            data,
        })
    }
}

/// Log-mel spectrogram of `signal` at `rate` Hz (builds a one-off
/// [`LogMelExtractor`]; keep one around when computing many).
pub fn log_mel_spectrogram(signal: &[f32], rate: u32) -> Result<LogMel> {
    LogMelExtractor::new(rate)?.compute(signal)
}

/// Mean squared difference of the log-mel spectrograms of `a` and `b` (both at
/// `rate` Hz), over the overlapping length: both are trimmed to the shorter
/// signal first. Units: (log10 power)².
pub fn log_mel_mse(a: &[f32], b: &[f32], rate: u32) -> Result<f64> {
    let len = a.len().min(b.len());
    if len == 0 {
        return Err(MetricsError::TooFewSamples {
            what: "log-mel MSE overlapping samples",
            n: 0,
            need: 1,
        });
    }
    let ex = LogMelExtractor::new(rate)?;
    let ma = ex.compute(&a[..len])?;
    let mb = ex.compute(&b[..len])?;
    let sum: f64 = ma
        .data
        .iter()
        .zip(&mb.data)
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum();
    Ok(sum / ma.data.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    #[test]
    fn slaney_scale_values() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(440.0) - 6.6).abs() < 1e-12);
        // 2 kHz: 15 + ln 2 / (ln 6.4 / 27).
        let expected = 15.0 + 2.0_f64.ln() * 27.0 / 6.4_f64.ln();
        assert!((hz_to_mel(2000.0) - expected).abs() < 1e-12);
        for hz in [0.0, 300.0, 999.0, 1000.0, 4321.0, 16000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
    }

    #[test]
    fn sine_peaks_in_band_containing_1khz() {
        for rate in [32_000_u32, 44_100] {
            let x = sine(1000.0, rate, 1.0, 0.5);
            let m = log_mel_spectrogram(&x, rate).unwrap();
            let bands = mel_bands(rate, N_MELS);
            // Mean over interior frames (skip the zero-padded edges).
            let mut mean = vec![0.0_f64; N_MELS];
            for t in 2..m.n_frames - 2 {
                for (b, v) in m.frame(t).iter().enumerate() {
                    mean[b] += f64::from(*v);
                }
            }
            let peak = (0..N_MELS)
                .max_by(|&i, &j| mean[i].total_cmp(&mean[j]))
                .unwrap();
            let band = bands[peak];
            assert!(
                band.lower_hz <= 1000.0 && 1000.0 <= band.upper_hz,
                "rate {rate}: peak band {peak} {band:?}"
            );
            let nearest = (0..N_MELS)
                .min_by(|&i, &j| {
                    (bands[i].center_hz - 1000.0)
                        .abs()
                        .total_cmp(&(bands[j].center_hz - 1000.0).abs())
                })
                .unwrap();
            assert_eq!(peak, nearest, "rate {rate}");
            // Far-away bands are near the floor.
            let last = m.frame(m.n_frames / 2)[N_MELS - 1];
            assert!(last < -3.0, "top band {last}");
        }
    }

    #[test]
    fn shape_and_silence() {
        let m = log_mel_spectrogram(&vec![0.0; 32_000], 32_000).unwrap();
        assert_eq!(m.n_mels, 64);
        assert_eq!(m.n_frames, 1 + 32_000 / 512);
        assert_eq!(m.data.len(), m.n_frames * 64);
        assert!(m.data.iter().all(|v| (*v - (-5.0)).abs() < 1e-6));
        // A one-sample signal still gives one frame.
        assert_eq!(log_mel_spectrogram(&[0.1], 32_000).unwrap().n_frames, 1);
    }

    #[test]
    fn filters_have_unit_area() {
        // Slaney normalisation: each triangle integrates to 1 over Hz, which
        // the bin sum reproduces once a band spans many bins.
        let rate = 32_000;
        let ex = LogMelExtractor::new(rate).unwrap();
        let bin_hz = f64::from(rate) / N_FFT as f64;
        let mut checked = 0;
        for (f, b) in ex.filters.iter().zip(mel_bands(rate, N_MELS)) {
            if b.upper_hz - b.lower_hz > 10.0 * bin_hz {
                let area: f64 = f.weights.iter().sum::<f64>() * bin_hz;
                assert!((area - 1.0).abs() < 0.02, "{b:?} area {area}");
                checked += 1;
            }
        }
        assert!(checked > 30);
    }

    #[test]
    fn mse_zero_for_identical_positive_for_different() {
        let rate = 32_000;
        let a = sine(1000.0, rate, 0.5, 0.5);
        assert_eq!(log_mel_mse(&a, &a.clone(), rate).unwrap(), 0.0);
        let b = sine(2000.0, rate, 0.5, 0.5);
        let d = log_mel_mse(&a, &b, rate).unwrap();
        assert!(d > 1.0, "{d}");
        // Trimming: a longer copy with an extra tail compares equal.
        let mut longer = a.clone();
        longer.extend(sine(3000.0, rate, 0.25, 0.9));
        assert_eq!(log_mel_mse(&longer, &a, rate).unwrap(), 0.0);
        // A small gain change is a small, positive distance.
        let quieter: Vec<f32> = a.iter().map(|v| v * 0.9).collect();
        let g = log_mel_mse(&a, &quieter, rate).unwrap();
        assert!(g > 0.0 && g < d, "{g}");
    }

    #[test]
    fn errors() {
        assert!(log_mel_mse(&[], &[0.0], 32_000).is_err());
        assert!(log_mel_spectrogram(&[0.0], 0).is_err());
        assert!(matches!(
            log_mel_spectrogram(&[0.0, f32::NAN], 32_000),
            Err(MetricsError::NotFinite(_))
        ));
    }
}
