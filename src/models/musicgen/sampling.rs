//! Token sampling with audiocraft's defaults (top-k 250, temperature 1.0, no top-p), seeded so
//! the same seed gives the same clip. Order as in HF: temperature → top-k → top-p → draw.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f64,
    /// Keep the k most likely tokens (0 = no limit, 1 = greedy).
    pub top_k: usize,
    /// Nucleus sampling threshold (0 or 1 = off).
    pub top_p: f64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 250,
            top_p: 0.0,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::InvalidRequest(format!(
                "temperature must be ≥ 0, got {}",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(Error::InvalidRequest(format!(
                "top-p must be in [0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.top_k == 1 || self.temperature == 0.0
    }
}

/// A seeded sampler; one per generation so results do not depend on anything else.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Self {
        Self {
            params,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Draws one token from `logits` (one codebook's vocabulary).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.is_greedy() {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.params.temperature as f32;
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        let k = match self.params.top_k {
            0 => logits.len(),
            k => k.min(logits.len()),
        };
        // Top-k by partial selection, then sort the kept ones (descending; ties by index).
        let cmp = |a: &usize, b: &usize| {
            logits[*b]
                .partial_cmp(&logits[*a])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(b))
        };
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, cmp);
            idx.truncate(k);
        }
        idx.sort_by(cmp);
        let max = logits[idx[0]] * inv_t;
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| (logits[i] * inv_t - max).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        let p = self.params.top_p;
        if p > 0.0 && p < 1.0 {
            // Smallest prefix whose mass reaches p (at least one token).
            let mut cum = 0.0f64;
            let mut keep = 0;
            for q in &probs {
                keep += 1;
                cum += *q as f64;
                if cum >= p {
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
            let s: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|q| *q /= s);
        }
        let r: f32 = self.rng.random();
        let mut acc = 0.0f32;
        for (q, &i) in probs.iter().zip(&idx) {
            acc += q;
            if r < acc {
                return i as u32;
            }
        }
        idx[idx.len() - 1] as u32
    }
}

/// First index of the maximum (as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Classifier-free guidance: `uncond + scale · (cond − uncond)`.
pub fn guide(cond: &[f32], uncond: &[f32], scale: f32) -> Vec<f32> {
    cond.iter()
        .zip(uncond)
        .map(|(c, u)| u + scale * (c - u))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_topk_one_pick_argmax() {
        let l = [0.1f32, 3.0, 2.0, 3.0];
        let mut s = Sampler::new(
            SamplingParams {
                top_k: 1,
                ..Default::default()
            },
            7,
        );
        assert_eq!(s.sample(&l), 1);
        assert_eq!(argmax(&l), 1);
    }

    #[test]
    fn top_k_never_leaves_the_k_best_and_seed_repeats() {
        let l: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = SamplingParams {
            top_k: 3,
            temperature: 5.0,
            top_p: 0.0,
        };
        let mut best: Vec<usize> = (0..100).collect();
        best.sort_by(|a, b| l[*b].partial_cmp(&l[*a]).unwrap());
        let mut a = Sampler::new(params, 42);
        let mut b = Sampler::new(params, 42);
        let draws: Vec<u32> = (0..200).map(|_| a.sample(&l)).collect();
        let again: Vec<u32> = (0..200).map(|_| b.sample(&l)).collect();
        assert_eq!(draws, again);
        assert!(draws.iter().all(|d| best[..3].contains(&(*d as usize))));
        // With temperature 5 all three appear.
        for t in &best[..3] {
            assert!(draws.contains(&(*t as u32)));
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probs ≈ [0.64, 0.23, 0.09, 0.03, ...]: p = 0.8 keeps two tokens.
        let l = [4.0f32, 3.0, 2.0, 1.0, 0.0];
        let params = SamplingParams {
            top_k: 0,
            temperature: 1.0,
            top_p: 0.8,
        };
        let mut s = Sampler::new(params, 1);
        for _ in 0..300 {
            assert!(s.sample(&l) <= 1);
        }
    }

    #[test]
    fn guidance_formula() {
        assert_eq!(guide(&[2.0], &[1.0], 3.0), vec![4.0]);
        assert_eq!(guide(&[2.0], &[1.0], 1.0), vec![2.0]);
    }
}
