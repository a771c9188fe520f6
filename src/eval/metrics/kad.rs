//! Kernel Audio Distance (KAD): unbiased MMD² between two sets of latent frames
//! with a Gaussian RBF kernel, plus a seeded bootstrap 95 % interval.
//!
//! What: with `k(x, y) = exp(−||x − y||² / (2 h²))`,
//!
//! ```text
//! KAD = 1/(n(n−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(m(m−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/(nm) Σ_{i,j} k(xᵢ, yⱼ)
//! ```
//!
//! (the U-statistic of Gretton et al.; KAD of Chung et al. 2025, "KAD: No More
//! FAD!"). Why next to FAD: it makes no Gaussian assumption and is unbiased, so
//! it does not drift with the number of frames the way FAD does; being unbiased
//! it can come out slightly **negative** when the sets match.
//!
//! Judgement calls (all documented so results can be reproduced):
//! - **Bandwidth** `h` defaults to the median pairwise Euclidean distance of the
//!   *pooled* (generated + reference) frames, computed over all pairs of a
//!   seeded subsample of at most [`DEFAULT_BANDWIDTH_SUBSAMPLE`] pooled frames
//!   (~500 k pairs). kadtk instead takes the median over the *reference* set
//!   only; [`Bandwidth::ReferenceMedian`] does that, [`Bandwidth::Fixed`] pins
//!   `h` (use it to compare checkpoints on one fixed scale).
//! - **Scaling:** [`Kad::raw`] is the plain MMD²; [`Kad::scaled`] is
//!   `raw × KadConfig::scale`, default [`KAD_SCALE`] = 1000 — tunelab's display
//!   convention, attributed to the KAD paper (not re-checked against the paper
//!   here). Caution: the kadtk reference code multiplies by 100
//!   (`SCALE_FACTOR = 100`); set `scale = 100.0` to print in its units (the
//!   values still are not comparable, see below). Always store `raw`.
//! - **Subsample cap:** the kernel matrices are O(N²) in time and memory, so each
//!   set larger than `max_per_set` (default [`DEFAULT_MAX_PER_SET`] = 2000 frames)
//!   is replaced by a seeded uniform subsample without replacement of that size.
//!   At 2000 + 2000 frames the three kernel matrices take ~96 MB of `f64`.
//! - **Bootstrap:** each replicate resamples both (capped) sets with
//!   replacement and re-evaluates the U-statistic on the cached kernel
//!   matrices, counting a frame drawn twice as *one* point for the `i ≠ j`
//!   exclusion (pairs of copies of the same frame are dropped, otherwise
//!   duplicates would add `k(x, x) = 1` terms and bias every replicate
//!   upwards). The bandwidth is held fixed across replicates.
//!
//! Distances are accumulated in `f32` SIMD-friendly lanes per 8 dimensions and
//! summed in `f64`; kernel sums are `f64`.
//!
//! **Caveat:** KAD (like FAD) on EnCodec latents is not comparable with VGGish /
//! CLAP / PANNs KAD or FAD published elsewhere; compare tunelab runs only.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::fad::{validate_frames, ConfidenceInterval};
use super::linalg::dot;
use crate::error::metrics::{MetricsError, Result};

/// Display scale applied to the raw MMD² by default (`scaled = raw × 1000`).
pub const KAD_SCALE: f64 = 1000.0;

/// Default cap on frames per set (seeded subsample beyond this).
pub const DEFAULT_MAX_PER_SET: usize = 2000;

/// Default number of pooled frames whose pairwise distances set the median
/// bandwidth.
pub const DEFAULT_BANDWIDTH_SUBSAMPLE: usize = 1000;

/// Fewest bootstrap resamples accepted.
pub const MIN_BOOTSTRAP_RESAMPLES: usize = 20;

/// Seed offset that separates the bootstrap stream from the subsampling
/// stream, so [`kad`] and [`kad_bootstrap`] agree on the point estimate.
const BOOTSTRAP_STREAM: u64 = 0x9E37_79B9_7F4A_7C15;

/// How the RBF bandwidth `h` is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Bandwidth {
    /// Median pairwise distance of the pooled generated + reference frames.
    PooledMedian,
    /// Median pairwise distance of the reference frames (kadtk's choice).
    ReferenceMedian,
    /// A fixed `h > 0`.
    Fixed(f64),
}

/// KAD settings. `Default` gives the documented choices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KadConfig {
    /// Frames per set above which a seeded subsample is used.
    pub max_per_set: usize,
    /// Bandwidth rule.
    pub bandwidth: Bandwidth,
    /// Frames subsampled for the median-distance bandwidth.
    pub bandwidth_subsample: usize,
    /// Factor from `raw` to `scaled`.
    pub scale: f64,
    /// Seed for every random choice (subsampling, bandwidth, bootstrap).
    pub seed: u64,
}

impl Default for KadConfig {
    fn default() -> Self {
        Self {
            max_per_set: DEFAULT_MAX_PER_SET,
            bandwidth: Bandwidth::PooledMedian,
            bandwidth_subsample: DEFAULT_BANDWIDTH_SUBSAMPLE,
            scale: KAD_SCALE,
            seed: 0,
        }
    }
}

/// A KAD value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Kad {
    /// Unbiased MMD² (can be slightly negative).
    pub raw: f64,
    /// `raw × scale`.
    pub scaled: f64,
    /// The factor used for `scaled`.
    pub scale: f64,
    /// RBF bandwidth `h` used.
    pub bandwidth: f64,
    /// Generated frames used (after the cap).
    pub n_gen: usize,
    /// Reference frames used (after the cap).
    pub n_ref: usize,
}

/// KAD with its bootstrap interval, in raw and scaled units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KadBootstrap {
    pub kad: Kad,
    pub ci_raw: ConfidenceInterval,
    pub ci_scaled: ConfidenceInterval,
}

/// Contiguous `n × dim` copy of the selected frames.
struct Frames {
    n: usize,
    dim: usize,
    data: Vec<f32>,
}

impl Frames {
    #[inline]
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Cached kernel matrices of one (capped) problem.
struct Kernels {
    /// n × n, zero diagonal.
    kxx: Vec<f64>,
    /// m × m, zero diagonal.
    kyy: Vec<f64>,
    /// n × m.
    kxy: Vec<f64>,
    n: usize,
    m: usize,
    bandwidth: f64,
}

/// Sorted indices of a seeded subsample of `cap` out of `len` (all when
/// `len <= cap`).
fn subsample(rng: &mut ChaCha8Rng, len: usize, cap: usize) -> Vec<usize> {
    if len <= cap {
        return (0..len).collect();
    }
    let mut idx = rand::seq::index::sample(rng, len, cap).into_vec();
    idx.sort_unstable();
    idx
}

fn gather(frames: &[Vec<f32>], idx: &[usize], dim: usize) -> Frames {
    let mut data = Vec::with_capacity(idx.len() * dim);
    for &i in idx {
        data.extend_from_slice(&frames[i]);
    }
    Frames {
        n: idx.len(),
        dim,
        data,
    }
}

/// Squared Euclidean distance: `f32` differences in 8 lanes, `f64` total.
#[inline]
fn sqdist(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0_f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut s: f64 = acc.iter().map(|v| f64::from(*v)).sum();
    for (x, y) in ra.iter().zip(rb) {
        let d = f64::from(*x) - f64::from(*y);
        s += d * d;
    }
    s
}

/// Median of all pairwise distances among `rows` (numpy-style median).
fn median_pairwise_distance(rows: &[&[f32]]) -> f64 {
    let n = rows.len();
    let mut d = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            d.push(sqdist(rows[i], rows[j]).sqrt());
        }
    }
    let len = d.len();
    if len == 0 {
        return 0.0;
    }
    let mid = len / 2;
    let (_, hi, _) = d.select_nth_unstable_by(mid, f64::total_cmp);
    let hi = *hi;
    if len % 2 == 1 {
        hi
    } else {
        // The lower middle is the maximum of the left partition.
        let lo = d[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lo + hi)
    }
}

fn choose_bandwidth(cfg: &KadConfig, rng: &mut ChaCha8Rng, x: &Frames, y: &Frames) -> Result<f64> {
    let h = match cfg.bandwidth {
        Bandwidth::Fixed(h) => h,
        Bandwidth::PooledMedian | Bandwidth::ReferenceMedian => {
            let mut pool: Vec<&[f32]> = Vec::with_capacity(x.n + y.n);
            if cfg.bandwidth == Bandwidth::PooledMedian {
                pool.extend((0..x.n).map(|i| x.row(i)));
            }
            pool.extend((0..y.n).map(|i| y.row(i)));
            let idx = subsample(rng, pool.len(), cfg.bandwidth_subsample);
            let rows: Vec<&[f32]> = idx.iter().map(|&i| pool[i]).collect();
            median_pairwise_distance(&rows)
        }
    };
    if !(h.is_finite() && h > 0.0) {
        return Err(MetricsError::InvalidArgument(format!(
            "KAD bandwidth must be finite and > 0, got {h} (identical frames?)"
        )));
    }
    Ok(h)
}

/// Validates, caps, picks the bandwidth and fills the kernel matrices.
fn build_kernels(gen: &[Vec<f32>], reference: &[Vec<f32>], cfg: &KadConfig) -> Result<Kernels> {
    if cfg.max_per_set < 2 {
        return Err(MetricsError::InvalidArgument(
            "KAD max_per_set must be ≥ 2".into(),
        ));
    }
    if cfg.bandwidth_subsample < 2 {
        return Err(MetricsError::InvalidArgument(
            "KAD bandwidth_subsample must be ≥ 2".into(),
        ));
    }
    if !cfg.scale.is_finite() {
        return Err(MetricsError::NotFinite("KAD scale".into()));
    }
    for (what, set) in [
        ("KAD generated frames", gen),
        ("KAD reference frames", reference),
    ] {
        if set.len() < 2 {
            return Err(MetricsError::TooFewSamples {
                what,
                n: set.len(),
                need: 2,
            });
        }
    }
    let dim = reference.first().map_or(0, Vec::len);
    if dim == 0 {
        return Err(MetricsError::InvalidArgument(
            "KAD frames have dimension 0".into(),
        ));
    }
    validate_frames(reference, dim, "reference")?;
    validate_frames(gen, dim, "generated")?;

    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let ix = subsample(&mut rng, gen.len(), cfg.max_per_set);
    let iy = subsample(&mut rng, reference.len(), cfg.max_per_set);
    let x = gather(gen, &ix, dim);
    let y = gather(reference, &iy, dim);
    let bandwidth = choose_bandwidth(cfg, &mut rng, &x, &y)?;
    let gamma = 1.0 / (2.0 * bandwidth * bandwidth);

    let kxx = self_kernel(&x, gamma);
    let kyy = self_kernel(&y, gamma);
    let mut kxy = vec![0.0_f64; x.n * y.n];
    for i in 0..x.n {
        let xi = x.row(i);
        let row = &mut kxy[i * y.n..(i + 1) * y.n];
        for (j, k) in row.iter_mut().enumerate() {
            *k = (-gamma * sqdist(xi, y.row(j))).exp();
        }
    }
    Ok(Kernels {
        kxx,
        kyy,
        kxy,
        n: x.n,
        m: y.n,
        bandwidth,
    })
}

/// Symmetric kernel matrix with a zero diagonal (the `i ≠ j` exclusion).
fn self_kernel(x: &Frames, gamma: f64) -> Vec<f64> {
    let n = x.n;
    let mut k = vec![0.0_f64; n * n];
    for i in 0..n {
        let xi = x.row(i);
        for j in i + 1..n {
            let v = (-gamma * sqdist(xi, x.row(j))).exp();
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
    }
    k
}

impl Kernels {
    fn mmd2(&self) -> f64 {
        let (n, m) = (self.n as f64, self.m as f64);
        let sxx: f64 = self.kxx.iter().sum();
        let syy: f64 = self.kyy.iter().sum();
        let sxy: f64 = self.kxy.iter().sum();
        sxx / (n * (n - 1.0)) + syy / (m * (m - 1.0)) - 2.0 * sxy / (n * m)
    }

    /// U-statistic on resampled multiplicities `wx`, `wy` (copies of the same
    /// frame never pair with each other). `None` when a set collapsed onto a
    /// single frame.
    fn weighted_mmd2(&self, wx: &[f64], wy: &[f64]) -> Option<f64> {
        let within = |k: &[f64], w: &[f64], len: usize| -> Option<f64> {
            let total: f64 = w.iter().sum();
            let sq: f64 = w.iter().map(|v| v * v).sum();
            let pairs = total * total - sq;
            if pairs <= 0.0 {
                return None;
            }
            let mut s = 0.0;
            for (a, &wa) in w.iter().enumerate() {
                if wa != 0.0 {
                    s += wa * dot(&k[a * len..(a + 1) * len], w);
                }
            }
            Some(s / pairs)
        };
        let xx = within(&self.kxx, wx, self.n)?;
        let yy = within(&self.kyy, wy, self.m)?;
        let mut xy = 0.0;
        for (a, &wa) in wx.iter().enumerate() {
            if wa != 0.0 {
                xy += wa * dot(&self.kxy[a * self.m..(a + 1) * self.m], wy);
            }
        }
        xy /= self.n as f64 * self.m as f64;
        Some(xx + yy - 2.0 * xy)
    }

    fn to_kad(&self, raw: f64, scale: f64) -> Kad {
        Kad {
            raw,
            scaled: raw * scale,
            scale,
            bandwidth: self.bandwidth,
            n_gen: self.n,
            n_ref: self.m,
        }
    }
}

/// KAD between generated and reference frames (see module docs for the
/// bandwidth, scaling and subsample cap). Deterministic given `cfg.seed`.
pub fn kad(gen: &[Vec<f32>], reference: &[Vec<f32>], cfg: &KadConfig) -> Result<Kad> {
    let k = build_kernels(gen, reference, cfg)?;
    Ok(k.to_kad(k.mmd2(), cfg.scale))
}

/// Multinomial counts of `n` draws with replacement from `0..n`, as `f64`.
fn resample_counts(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut w = vec![0.0_f64; n];
    for _ in 0..n {
        w[rng.random_range(0..n)] += 1.0;
    }
    w
}

/// KAD plus a percentile 95 % bootstrap interval from `resamples` replicates
/// (both sets resampled with replacement; kernel matrices and bandwidth
/// reused). The point estimate equals [`kad`] with the same config.
pub fn kad_bootstrap(
    gen: &[Vec<f32>],
    reference: &[Vec<f32>],
    cfg: &KadConfig,
    resamples: usize,
) -> Result<KadBootstrap> {
    if resamples < MIN_BOOTSTRAP_RESAMPLES {
        return Err(MetricsError::TooFewSamples {
            what: "KAD bootstrap resamples",
            n: resamples,
            need: MIN_BOOTSTRAP_RESAMPLES,
        });
    }
    let k = build_kernels(gen, reference, cfg)?;
    let raw = k.mmd2();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ BOOTSTRAP_STREAM);
    let mut reps = Vec::with_capacity(resamples);
    // A replicate is redrawn when a set collapses onto one frame (only
    // plausible for tiny sets); the attempt budget keeps this bounded.
    let mut attempts = 0usize;
    while reps.len() < resamples {
        attempts += 1;
        if attempts > resamples * 10 {
            return Err(MetricsError::TooFewSamples {
                what: "KAD bootstrap: distinct frames per set",
                n: k.n.min(k.m),
                need: 3,
            });
        }
        let wx = resample_counts(&mut rng, k.n);
        let wy = resample_counts(&mut rng, k.m);
        if let Some(v) = k.weighted_mmd2(&wx, &wy) {
            reps.push(v);
        }
    }
    let ci_raw = ConfidenceInterval::from_replicates(raw, reps, 0.95);
    Ok(KadBootstrap {
        kad: k.to_kad(raw, cfg.scale),
        ci_raw,
        ci_scaled: ci_raw.scaled(cfg.scale),
    })
}

#[cfg(test)]
mod tests {
    use super::super::linalg::test_support::gaussian_diag;
    use super::*;

    const D: usize = 8;

    fn set(n: usize, shift0: f64, seed: u64) -> Vec<Vec<f32>> {
        let mut mean = vec![0.0; D];
        mean[0] = shift0;
        gaussian_diag(n, &mean, &[1.0; D], seed)
    }

    #[test]
    fn identical_distributions_give_near_zero() {
        let a = set(600, 0.0, 1);
        let b = set(600, 0.0, 2);
        let r = kad_bootstrap(&a, &b, &KadConfig::default(), 200).unwrap();
        println!("null: {r:?}");
        // Over 30 seeds of this setup the null raw KAD had sd ≈ 4e-4 (max
        // |value| 9e-4, and the 95 % interval held 0 in 30/30). 2e-3 is a ~5σ
        // bound and still 15× below the 1σ-shift value (≈ 0.03) below.
        assert!(r.kad.raw.abs() < 2e-3, "{r:?}");
        assert!(r.ci_raw.contains(0.0), "{r:?}");
        assert!((r.kad.scaled - r.kad.raw * 1000.0).abs() < 1e-12);
        assert_eq!(r.ci_scaled.lower, r.ci_raw.lower * 1000.0);
    }

    #[test]
    fn one_sigma_shift_is_clearly_positive() {
        let a = set(600, 1.0, 3);
        let b = set(600, 0.0, 4);
        let r = kad_bootstrap(&a, &b, &KadConfig::default(), 200).unwrap();
        println!("shift: {r:?}");
        assert!(r.kad.raw > 0.03, "{r:?}");
        assert!(r.ci_raw.lower > 0.0, "{r:?}");
        assert!(r.ci_raw.contains(r.kad.raw));
        // The point estimate equals plain kad() with the same config.
        let k = kad(&a, &b, &KadConfig::default()).unwrap();
        assert_eq!(k, r.kad);
    }

    #[test]
    fn deterministic_and_capped() {
        let a = set(700, 0.5, 5);
        let b = set(500, 0.0, 6);
        let cfg = KadConfig {
            max_per_set: 300,
            seed: 17,
            ..KadConfig::default()
        };
        let k1 = kad_bootstrap(&a, &b, &cfg, 50).unwrap();
        let k2 = kad_bootstrap(&a, &b, &cfg, 50).unwrap();
        assert_eq!(k1, k2);
        assert_eq!((k1.kad.n_gen, k1.kad.n_ref), (300, 300));
        let other = kad(&a, &b, &KadConfig { seed: 18, ..cfg }).unwrap();
        assert_ne!(other.raw, k1.kad.raw);
        // Uncapped uses every frame.
        let full = kad(&a, &b, &KadConfig::default()).unwrap();
        assert_eq!((full.n_gen, full.n_ref), (700, 500));
        let json = serde_json::to_string(&k1).unwrap();
        let back: KadBootstrap = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kad.n_gen, 300);
    }

    #[test]
    fn bandwidth_rules() {
        let a = set(200, 3.0, 7);
        let b = set(200, 0.0, 8);
        let pooled = kad(&a, &b, &KadConfig::default()).unwrap();
        let refmed = kad(
            &a,
            &b,
            &KadConfig {
                bandwidth: Bandwidth::ReferenceMedian,
                ..KadConfig::default()
            },
        )
        .unwrap();
        // The shifted pool is more spread out than the reference alone.
        assert!(pooled.bandwidth > refmed.bandwidth);
        // N(0, I₈): pairwise distance ≈ √(2·8) = 4.
        assert!((refmed.bandwidth - 4.0).abs() < 0.4, "{}", refmed.bandwidth);
        let fixed = kad(
            &a,
            &b,
            &KadConfig {
                bandwidth: Bandwidth::Fixed(2.5),
                ..KadConfig::default()
            },
        )
        .unwrap();
        assert_eq!(fixed.bandwidth, 2.5);
        for bad in [0.0, -1.0, f64::NAN] {
            let cfg = KadConfig {
                bandwidth: Bandwidth::Fixed(bad),
                ..KadConfig::default()
            };
            assert!(kad(&a, &b, &cfg).is_err());
        }
    }

    #[test]
    fn median_matches_brute_force() {
        let rows: Vec<Vec<f32>> = vec![vec![0.0], vec![1.0], vec![3.0], vec![7.0]];
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        // Distances 1,3,7,2,6,4 → sorted 1,2,3,4,6,7 → median 3.5.
        assert_eq!(median_pairwise_distance(&refs), 3.5);
        assert_eq!(median_pairwise_distance(&refs[..3]), 2.0);
    }

    #[test]
    fn errors() {
        let a = set(10, 0.0, 1);
        let b = gaussian_diag(10, &[0.0; 3], &[1.0; 3], 2);
        assert!(matches!(
            kad(&a, &b, &KadConfig::default()),
            Err(MetricsError::DimMismatch { .. })
        ));
        assert!(matches!(
            kad(&a[..1], &a, &KadConfig::default()),
            Err(MetricsError::TooFewSamples { .. })
        ));
        let same = vec![vec![1.0_f32; D]; 5];
        assert!(kad(&same, &same, &KadConfig::default()).is_err());
        assert!(kad_bootstrap(&a, &a, &KadConfig::default(), 3).is_err());
        let mut nan = a.clone();
        nan[0][0] = f32::NAN;
        assert!(matches!(
            kad(&nan, &a, &KadConfig::default()),
            Err(MetricsError::NotFinite(_))
        ));
    }
}
