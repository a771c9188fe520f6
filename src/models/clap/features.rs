//! The CLAP feature extractor: HF `ClapFeatureExtractor` with `truncation="rand_trunc"` (what
//! laion/clap-htsat-unfused uses), reproduced step by step:
//!
//! 1. A clip longer than the window (`max_length_s`) is cropped. HF draws the crop's start at
//!    random; here it is always the start of the clip (offset 0), so scores are deterministic.
//!    A shorter clip is filled per `padding` (`repeatpad`: whole copies, then zeros).
//! 2. A centred STFT: `n_fft / 2` samples of reflect padding on both sides, a periodic Hann
//!    window (NumPy's `hanning(n + 1)[:-1]`), frames every `hop_length` samples, computed in f64
//!    and — as HF stores the spectrum as `complex64` — rounded to f32 before `|X|²`.
//! 3. Slaney-scale, Slaney-normalised triangular mel filters between `frequency_min` and
//!    `frequency_max` (HF's `mel_filter_bank(norm="slaney", mel_scale="slaney")`; the FFT bin
//!    frequencies are `linspace(0, rate // 2, n_fft / 2 + 1)`), floored at 1e-10.
//! 4. `10 · log10(mel)` (dB with reference 1, no top-dB clipping), as f32, frame-major.
//!
//! `src/eval/metrics/mel.rs` uses the same Slaney scale but another FFT size, band range,
//! padding and log, so the filter bank here follows HF's formulas literally (same maths).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use super::config::{FeatureExtractorConfig, Padding};
use crate::error::{Error, Result};

/// Floor of the mel energies and of the dB conversion (HF's `mel_floor` / `min_value`).
const MEL_FLOOR: f64 = 1e-10;

/// Slaney mel scale, written as HF's `hertz_to_mel(mel_scale="slaney")`.
fn hz_to_mel(f: f64) -> f64 {
    let logstep = 27.0 / 6.4_f64.ln();
    if f >= 1000.0 {
        15.0 + (f / 1000.0).ln() * logstep
    } else {
        3.0 * f / 200.0
    }
}

/// Slaney mel → Hz, written as HF's `mel_to_hertz(mel_scale="slaney")`.
fn mel_to_hz(m: f64) -> f64 {
    let logstep = 6.4_f64.ln() / 27.0;
    if m >= 15.0 {
        1000.0 * (logstep * (m - 15.0)).exp()
    } else {
        200.0 * m / 3.0
    }
}

/// NumPy's `linspace(start, stop, num)` (endpoint included, `i · step + start`, last = stop).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

/// A mel filter restricted to its non-zero FFT bins.
#[derive(Debug, Clone)]
struct Filter {
    start: usize,
    weights: Vec<f64>,
}

/// Log-mel front end of one CLAP checkpoint (FFT plan, window and filters built once).
#[derive(Clone)]
pub struct FeatureExtractor {
    pub config: FeatureExtractorConfig,
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    filters: Vec<Filter>,
}

impl std::fmt::Debug for FeatureExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureExtractor")
            .field("config", &self.config)
            .finish()
    }
}

impl FeatureExtractor {
    /// Builds the extractor (the config is assumed validated, see
    /// [`FeatureExtractorConfig::validate`]).
    pub fn new(config: FeatureExtractorConfig) -> Self {
        let n_fft = config.fft_window_size;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        // np.hanning(M) = 0.5 + 0.5 cos(pi n / (M - 1)), n = 1 - M, 3 - M, ..., M - 1; periodic:
        // M = n_fft + 1 and the last point dropped.
        let m = n_fft + 1;
        let window = (0..n_fft)
            .map(|k| {
                let n = 2.0 * k as f64 + 1.0 - m as f64;
                0.5 + 0.5 * (std::f64::consts::PI * n / (m - 1) as f64).cos()
            })
            .collect();
        let filters = mel_filters(&config);
        Self {
            config,
            fft,
            window,
            filters,
        }
    }

    /// Mel bins per frame.
    pub fn n_mels(&self) -> usize {
        self.filters.len()
    }

    /// The clip as the model sees it: cropped to the window from its start, or filled.
    pub fn fit_to_window(&self, clip: &[f32]) -> Result<Vec<f64>> {
        let max = self.config.max_samples();
        if clip.is_empty() {
            return Err(Error::InvalidRequest(
                "CLAP features of an empty clip".into(),
            ));
        }
        if let Some(i) = clip.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidRequest(format!(
                "CLAP features: audio sample {i} is not finite"
            )));
        }
        let x: Vec<f64> = clip.iter().map(|&v| f64::from(v)).collect();
        if x.len() >= max {
            return Ok(x[..max].to_vec());
        }
        // HF: n_repeat = int(max_length / len(waveform)).
        let n_repeat = max / x.len();
        let mut out = match self.config.padding {
            Padding::Repeat => x.repeat(n_repeat + 1),
            Padding::Repeatpad => x.repeat(n_repeat),
            Padding::Pad => x,
        };
        out.resize(max, 0.0);
        Ok(out)
    }

    /// Log-mel features `[frames, mel bins]`, frame-major, of a clip at the extractor's rate.
    pub fn compute(&self, clip: &[f32]) -> Result<Vec<f32>> {
        let wave = self.fit_to_window(clip)?;
        let n_fft = self.config.fft_window_size;
        let hop = self.config.hop_length;
        let pad = n_fft / 2;
        let len = wave.len();
        // NumPy `pad(mode="reflect")`: mirror without repeating the edge sample.
        let reflect = |i: isize| -> f64 {
            let n = len as isize;
            if n == 1 {
                return wave[0];
            }
            let period = 2 * (n - 1);
            let mut j = i.rem_euclid(period);
            if j >= n {
                j = period - j;
            }
            wave[j as usize]
        };
        let padded_len = len + 2 * pad;
        let n_frames = 1 + (padded_len - n_fft) / hop;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0_f64; spectrum.len()];
        let mut out = Vec::with_capacity(n_frames * self.filters.len());
        for t in 0..n_frames {
            for (k, x) in input.iter_mut().enumerate() {
                let i = (t * hop + k) as isize - pad as isize;
                *x = reflect(i) * self.window[k];
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .map_err(|e| Error::InvalidRequest(format!("CLAP features: FFT failed: {e}")))?;
            for (p, c) in power.iter_mut().zip(&spectrum) {
                // HF keeps the spectrum as complex64.
                let (re, im) = (f64::from(c.re as f32), f64::from(c.im as f32));
                *p = re * re + im * im;
            }
            for f in &self.filters {
                let bins = &power[f.start..f.start + f.weights.len()];
                let e: f64 = bins.iter().zip(&f.weights).map(|(p, w)| p * w).sum();
                out.push((10.0 * e.max(MEL_FLOOR).log10()) as f32);
            }
        }
        Ok(out)
    }
}

/// HF's `mel_filter_bank(..., norm="slaney", mel_scale="slaney")`, one sparse row per mel band.
fn mel_filters(c: &FeatureExtractorConfig) -> Vec<Filter> {
    let n_bins = c.fft_window_size / 2 + 1;
    let n_mels = c.feature_size;
    let mel_freqs = linspace(
        hz_to_mel(c.frequency_min),
        hz_to_mel(c.frequency_max),
        n_mels + 2,
    );
    let filter_freqs: Vec<f64> = mel_freqs.iter().map(|&m| mel_to_hz(m)).collect();
    let fft_freqs = linspace(0.0, f64::from(c.sampling_rate / 2), n_bins);
    let diff: Vec<f64> = filter_freqs.windows(2).map(|w| w[1] - w[0]).collect();
    (0..n_mels)
        .map(|m| {
            let enorm = 2.0 / (filter_freqs[m + 2] - filter_freqs[m]);
            let mut start = None;
            let mut weights = Vec::new();
            for (k, &f) in fft_freqs.iter().enumerate() {
                let down = -(filter_freqs[m] - f) / diff[m];
                let up = (filter_freqs[m + 2] - f) / diff[m + 1];
                let w = 0f64.max(down.min(up)) * enorm;
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
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(padding: Padding) -> FeatureExtractor {
        FeatureExtractor::new(FeatureExtractorConfig {
            feature_size: 8,
            max_length_s: 0.01,
            padding,
            ..Default::default()
        })
    }

    #[test]
    fn window_filling_follows_each_padding_mode() {
        let clip = [0.5f32, -0.25, 0.125];
        let max = tiny(Padding::Pad).config.max_samples(); // 480
        let want = |v: Vec<f64>| {
            let mut v = v;
            v.resize(max, 0.0);
            v
        };
        let x: Vec<f64> = clip.iter().map(|&v| f64::from(v)).collect();
        assert_eq!(
            tiny(Padding::Pad).fit_to_window(&clip).unwrap(),
            want(x.clone())
        );
        assert_eq!(
            tiny(Padding::Repeatpad).fit_to_window(&clip).unwrap(),
            want(x.repeat(160))
        );
        assert_eq!(
            tiny(Padding::Repeat).fit_to_window(&clip).unwrap(),
            x.repeat(161)[..max].to_vec()
        );
        let long: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let cut = tiny(Padding::Repeatpad).fit_to_window(&long).unwrap();
        assert_eq!(cut.len(), max);
        assert_eq!(cut[max - 1], f64::from(long[max - 1]));
        assert!(tiny(Padding::Pad).fit_to_window(&[]).is_err());
        assert!(tiny(Padding::Pad).fit_to_window(&[f32::NAN]).is_err());
    }

    #[test]
    fn slaney_filters_have_unit_area_and_silence_hits_the_floor() {
        let fe = FeatureExtractor::new(FeatureExtractorConfig::default());
        assert_eq!(fe.n_mels(), 64);
        let bin_hz = 24_000.0 / 512.0;
        // Wide bands (many bins) integrate to ~1 over Hz (Slaney area normalisation).
        let wide = fe
            .filters
            .iter()
            .filter(|f| f.weights.len() > 15)
            .map(|f| f.weights.iter().sum::<f64>() * bin_hz)
            .collect::<Vec<_>>();
        assert!(wide.len() >= 8 && wide.iter().all(|a| (a - 1.0).abs() < 0.05));
        let silent = fe.compute(&[0.0; 4800]).unwrap();
        assert_eq!(silent.len(), 1001 * 64);
        assert!(silent.iter().all(|&v| v == -100.0));
    }
}
