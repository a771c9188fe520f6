//! How far a cheaper way of running a MusicGen (8- or 4-bit weights, bf16 or f16 compute) moves
//! its sampling distribution away from f32 on the same weights: the figures `tunelab bench
//! generate` prints beside the speed, so a weight mode's quality is measured, not assumed.
//!
//! Method: teacher forcing. The candidate generates as usual (seeded sampler, CFG, the codebook
//! pattern, sliding windows — [`generate_codes_observed`], not a second decoding loop), and at
//! every step an f32 reference model with its own KV cache is fed the very input ids the
//! candidate was fed, so both always condition on the same history. Compared per sampled
//! codebook and step, on the guided logits ([`guided_row`]) divided by the temperature, softmax
//! over the whole vocabulary:
//! - `KL(p_ref ‖ p_candidate)`, mean and 99th percentile. Before top-k / top-p truncation: after
//!   it the two distributions may keep different tokens and the divergence is infinite;
//! - top-1 agreement: the two guided argmaxes are equal;
//! - logit error relative to the reference's logit RMS, `max |Δ| / RMS(ref)`, its maximum and
//!   mean over steps.
//!
//! Greedy sampling (temperature 0) has no distribution to compare; its KL is taken at
//! temperature 1.

use candle_core::Tensor;
use serde::Serialize;

use super::{
    batch_conditioning, generate_codes_observed, guided_row, last_logits, StepFn, StepObserver,
    Window,
};
use crate::error::{Error, Result};
use crate::models::musicgen::decoder::{Conditioning, DecoderCache};
use crate::models::musicgen::sampling::{argmax, Sampler, SamplingParams};
use crate::models::musicgen::MusicGen;

/// A model and the conditioning it computed for the prompt (each side conditions itself: its
/// text projection is part of what is compared).
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub model: &'a MusicGen,
    pub cond: &'a Conditioning,
}

/// What to generate while comparing: the candidate's usual generation parameters.
#[derive(Debug, Clone)]
pub struct CompareParams<'a> {
    pub frames: usize,
    pub prompt: Option<&'a [Vec<u32>]>,
    pub guidance_scale: f64,
    pub sampling: SamplingParams,
    pub seed: u64,
    pub window: Window,
}

/// The candidate's codes and how far its distributions were from the reference's.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub codes: Vec<Vec<u32>>,
    pub quality: QualityReport,
}

/// The quality figures of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityReport {
    /// Codebook-steps compared (sampled codebooks summed over decoder steps).
    pub compared: usize,
    /// Mean of `KL(p_ref ‖ p_candidate)` in nats.
    pub kl_mean: f64,
    /// Its 99th percentile (nearest rank).
    pub kl_p99: f64,
    /// Mean KL of each codebook (index = codebook).
    pub kl_mean_by_codebook: Vec<f64>,
    /// Fraction of codebook-steps whose guided argmaxes agree.
    pub top1_agreement: f64,
    /// Largest `max |Δ| / RMS(ref)` of a codebook-step.
    pub logit_rel_err_max: f64,
    /// Mean of the per-codebook-step `max |Δ| / RMS(ref)`.
    pub logit_rel_err_mean: f64,
}

/// Generates with `candidate` while `reference` (f32, the same weights) is fed the same ids in
/// lockstep, and measures the candidate's sampling distributions against the reference's.
pub fn compare_codes(
    candidate: Side,
    reference: Side,
    params: &CompareParams,
    on_step: &mut StepFn,
) -> Result<Compared> {
    params.sampling.validate()?;
    let (c, r) = (
        &candidate.model.config.decoder,
        &reference.model.config.decoder,
    );
    if c.num_codebooks != r.num_codebooks
        || c.vocab_size != r.vocab_size
        || c.codebook_pattern != r.codebook_pattern
        || c.max_position_embeddings != r.max_position_embeddings
    {
        return Err(Error::InvalidRequest(
            "the reference model's layout differs from the candidate's".into(),
        ));
    }
    let temperature = if params.sampling.temperature > 0.0 {
        params.sampling.temperature
    } else {
        1.0
    };
    let mut observer = Lockstep {
        reference: reference.model,
        cond: batch_conditioning(reference.cond, params.guidance_scale)?,
        cache: None,
        guidance_scale: params.guidance_scale,
        vocab: reference.model.config.decoder.vocab_size,
        stats: QualityStats::new(temperature, reference.model.num_codebooks()),
    };
    let mut sampler = Sampler::new(params.sampling, params.seed);
    let codes = generate_codes_observed(
        candidate.model,
        candidate.cond,
        params.frames,
        params.prompt,
        params.guidance_scale,
        &mut sampler,
        on_step,
        params.window,
        &mut observer,
    )?;
    Ok(Compared {
        codes,
        quality: observer.stats.report(),
    })
}

/// The reference side of the lockstep: its own conditioning batch and KV cache, fed the
/// candidate's input ids.
struct Lockstep<'a> {
    reference: &'a MusicGen,
    cond: Conditioning,
    cache: Option<DecoderCache>,
    guidance_scale: f64,
    vocab: usize,
    stats: QualityStats,
}

impl StepObserver for Lockstep<'_> {
    fn start_window(&mut self, len: usize) -> Result<()> {
        self.cache = Some(DecoderCache::new(&self.reference.config.decoder, len));
        Ok(())
    }

    fn observe(&mut self, input: &Tensor, sampled: &[(usize, Vec<f32>)]) -> Result<()> {
        let cache = self
            .cache
            .as_mut()
            .ok_or_else(|| Error::InvalidRequest("a step observed before its window".into()))?;
        let input = input.to_device(self.reference.device())?;
        let rows = last_logits(&self.reference.lm, &input, &self.cond, cache)?;
        for (kk, candidate) in sampled {
            let reference = guided_row(&rows, *kk, self.guidance_scale, self.vocab);
            self.stats.push(*kk, &reference, candidate);
        }
        Ok(())
    }
}

/// The running figures of a comparison: every codebook-step's KL is kept for the percentile.
#[derive(Debug, Clone)]
pub struct QualityStats {
    temperature: f64,
    kl: Vec<f64>,
    kl_by_codebook: Vec<(f64, usize)>,
    agree: usize,
    rel_err_max: f64,
    rel_err_sum: f64,
}

impl QualityStats {
    /// Figures at sampling temperature `temperature` (> 0) over `codebooks` codebooks.
    pub fn new(temperature: f64, codebooks: usize) -> Self {
        Self {
            temperature,
            kl: Vec::new(),
            kl_by_codebook: vec![(0.0, 0); codebooks],
            agree: 0,
            rel_err_max: 0.0,
            rel_err_sum: 0.0,
        }
    }

    /// One codebook-step: the reference's and the candidate's guided logits (same length).
    pub fn push(&mut self, codebook: usize, reference: &[f32], candidate: &[f32]) {
        let kl = kl_divergence(reference, candidate, self.temperature);
        self.kl.push(kl);
        if let Some(c) = self.kl_by_codebook.get_mut(codebook) {
            c.0 += kl;
            c.1 += 1;
        }
        if argmax(reference) == argmax(candidate) {
            self.agree += 1;
        }
        let rel = relative_error(reference, candidate);
        // NaN is kept (a broken mode must not look perfect): `max` would drop it.
        self.rel_err_max = if rel.is_nan() || self.rel_err_max.is_nan() {
            f64::NAN
        } else {
            self.rel_err_max.max(rel)
        };
        self.rel_err_sum += rel;
    }

    /// The figures so far; NaN where nothing was compared.
    pub fn report(&self) -> QualityReport {
        let n = self.kl.len();
        let mean = |sum: f64, n: usize| if n == 0 { f64::NAN } else { sum / n as f64 };
        QualityReport {
            compared: n,
            kl_mean: mean(self.kl.iter().sum(), n),
            kl_p99: percentile(&self.kl, 0.99),
            kl_mean_by_codebook: self
                .kl_by_codebook
                .iter()
                .map(|&(s, n)| mean(s, n))
                .collect(),
            top1_agreement: mean(self.agree as f64, n),
            logit_rel_err_max: if n == 0 { f64::NAN } else { self.rel_err_max },
            logit_rel_err_mean: mean(self.rel_err_sum, n),
        }
    }
}

/// `log softmax(logits / t)` in f64.
fn log_softmax(logits: &[f32], t: f64) -> Vec<f64> {
    let x: Vec<f64> = logits.iter().map(|&v| v as f64 / t).collect();
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    x.iter().map(|v| v - lse).collect()
}

/// `KL(softmax(p/t) ‖ softmax(q/t))` in nats over the whole vocabulary. Exactly 0 for equal
/// logits; a rounding-level negative sum is reported as 0 (KL is never negative); NaN if either
/// side is not finite.
pub fn kl_divergence(p: &[f32], q: &[f32], t: f64) -> f64 {
    if p.len() != q.len() || p.iter().chain(q).any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let (lp, lq) = (log_softmax(p, t), log_softmax(q, t));
    let kl: f64 = lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum();
    kl.max(0.0)
}

/// `max |ref − cand| / RMS(ref)`; 0 when equal, infinite when the reference is all zeros and
/// the candidate is not, NaN when either is not finite.
pub fn relative_error(reference: &[f32], candidate: &[f32]) -> f64 {
    if reference.len() != candidate.len() || reference.is_empty() {
        return f64::NAN;
    }
    let mut max = 0.0f64;
    let mut sq = 0.0f64;
    for (&r, &c) in reference.iter().zip(candidate) {
        let d = (r as f64 - c as f64).abs();
        if d.is_nan() {
            return f64::NAN;
        }
        max = max.max(d);
        sq += r as f64 * r as f64;
    }
    let rms = (sq / reference.len() as f64).sqrt();
    if max == 0.0 {
        0.0
    } else {
        max / rms
    }
}

/// The `q`-quantile by nearest rank (the smallest value with at least `q` of the values at or
/// below it); NaN for no values, and NaN if any value is NaN.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_of_hand_made_distributions() {
        // p = softmax(ln[0.5, 0.25, 0.25]), q = uniform: KL = Σ p ln(p / q)
        //   = 0.5 ln 1.5 + 2 · 0.25 ln 0.75.
        let p = [0.5f32.ln(), 0.25f32.ln(), 0.25f32.ln()];
        let q = [0.0f32; 3];
        let want = 0.5 * 1.5f64.ln() + 0.5 * 0.75f64.ln();
        assert!((kl_divergence(&p, &q, 1.0) - want).abs() < 1e-7);
        // The direction matters: KL(q ‖ p) = ln(1/3 / 0.5)/3 + 2/3 ln(1/3 / 0.25).
        let back = (1.0f64 / 1.5).ln() / 3.0 + 2.0 / 3.0 * (4.0f64 / 3.0).ln();
        assert!((kl_divergence(&q, &p, 1.0) - back).abs() < 1e-7);
        // Shifting logits leaves the distribution as it is.
        assert_eq!(kl_divergence(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], 1.0), 0.0);
        assert!(kl_divergence(&[1.0, 2.0, 3.0], &[11.0, 12.0, 13.0], 1.0) < 1e-12);
        // Temperature 2 halves the logits to [0, ln 2]: p = [1/3, 2/3] against uniform.
        let t2 = kl_divergence(&[0.0, 2.0f32.ln() * 2.0], &[0.0, 0.0], 2.0);
        let (a, b) = (1.0 / 3.0f64, 2.0 / 3.0f64);
        let want2 = a * (a / 0.5).ln() + b * (b / 0.5).ln();
        assert!((t2 - want2).abs() < 1e-7, "{t2} vs {want2}");
        assert!(kl_divergence(&[f32::NAN, 0.0], &[0.0, 0.0], 1.0).is_nan());
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), 198.0);
        assert_eq!(percentile(&v, 0.5), 100.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.99), 3.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.99).is_nan());
        assert!(percentile(&[1.0, f64::NAN], 0.99).is_nan());
    }

    #[test]
    fn stats_count_agreement_errors_and_codebooks() {
        let mut s = QualityStats::new(1.0, 2);
        // Equal rows: no divergence, agreement, no error.
        s.push(0, &[1.0, 3.0, 2.0], &[1.0, 3.0, 2.0]);
        // Argmax moves from 1 to 2; max |Δ| = 2, RMS(ref) = √(14/3).
        s.push(1, &[1.0, 3.0, 2.0], &[1.0, 3.0, 4.0]);
        let r = s.report();
        assert_eq!(r.compared, 2);
        assert_eq!(r.top1_agreement, 0.5);
        let rel = 2.0 / (14.0f64 / 3.0).sqrt();
        assert!((r.logit_rel_err_max - rel).abs() < 1e-12);
        assert!((r.logit_rel_err_mean - rel / 2.0).abs() < 1e-12);
        let kl = kl_divergence(&[1.0, 3.0, 2.0], &[1.0, 3.0, 4.0], 1.0);
        assert!(kl > 0.1);
        assert!((r.kl_mean - kl / 2.0).abs() < 1e-12);
        assert_eq!(r.kl_p99, kl);
        assert_eq!(r.kl_mean_by_codebook, vec![0.0, kl]);
        // A NaN candidate is not hidden.
        s.push(0, &[1.0, 2.0], &[f32::NAN, 2.0]);
        let r = s.report();
        assert!(r.kl_mean.is_nan() && r.logit_rel_err_max.is_nan());
        assert!(QualityStats::new(1.0, 4).report().kl_mean.is_nan());
    }

    #[test]
    fn relative_error_edges() {
        assert_eq!(relative_error(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
        assert!(relative_error(&[0.0, 0.0], &[0.0, 1.0]).is_infinite());
        assert_eq!(relative_error(&[3.0, -3.0], &[3.0, -2.0]), 1.0 / 3.0);
    }
}
