//! Honest statistics for blind A/B preference and ABX discrimination tests.
//!
//! Why: a listening test of a fine-tuned model against a baseline produces a
//! small number of binary votes. Normal approximations, optional stopping and
//! quietly dropped ties all inflate the apparent effect, so this module uses
//! *exact* binomial inference, states every convention it adopts, and returns
//! `None`/`NaN` rather than inventing a number where the input carries no
//! information.
//!
//! What:
//! - exact sign tests: [`binom_two_sided_p`] (preference, H0: p = ½) and
//!   [`binom_one_sided_p`] (ABX, H0: guessing);
//! - intervals: exact [`clopper_pearson`] (regularised incomplete beta
//!   [`betainc`], inverted by bisection) and [`wilson`];
//! - planning: [`min_wins_for_significance`] and [`power_votes`] (exact test,
//!   searched upward from a normal-approximation start);
//! - [`bootstrap_preference`]: two-stage cluster bootstrap (raters, then each
//!   resampled rater's prompts), deterministic via `ChaCha8Rng`, and
//!   [`bootstrap_clusters`], which says whether its interval means anything;
//! - [`summarise`] with an explicit [`TiePolicy`].
//!
//! All log-gamma values come from a Lanczos approximation written here
//! ([`ln_gamma`]), so tests with up to ~10 000 votes stay accurate without an
//! external special-functions crate. The module has no I/O and no dependency
//! on the rest of the crate.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------
// Special functions
// ---------------------------------------------------------------------------

/// Lanczos coefficients for g = 7, n = 9 (the widely published set; relative
/// error of Γ about 1e-15 for positive arguments).
#[allow(clippy::excessive_precision)]
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_93,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_13,
    -176.615_029_162_140_59,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_571_6e-6,
    1.505_632_735_149_311_6e-7,
];
const LANCZOS_G: f64 = 7.0;

/// Natural log of the gamma function, ln Γ(x), for x > 0 (Lanczos, g = 7).
///
/// For x < ½ the reflection formula is used; it is only meaningful where
/// Γ(x) > 0. Returns `+inf` at x = 0 and `NaN` for NaN input.
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::INFINITY;
    }
    if x < 0.5 {
        // Γ(x)Γ(1−x) = π / sin(πx)
        let s = (std::f64::consts::PI * x).sin().abs();
        return (std::f64::consts::PI / s).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = LANCZOS[0];
    let t = x + LANCZOS_G + 0.5;
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln C(n, k); `-inf` when k > n.
pub fn ln_choose(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    if k == 0 || k == n {
        return 0.0;
    }
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// Sum of exp(terms) computed stably (log-sum-exp), returned on the linear scale.
fn sum_exp(terms: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = terms.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return 0.0;
    }
    let s: f64 = terms.map(|t| (t - max).exp()).sum();
    (max + s.ln()).exp()
}

/// P(X ≥ k) for X ~ Binomial(n, ½), summed exactly in log space.
fn upper_tail_half(k: u64, n: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    sum_exp((k..=n).map(move |x| ln_choose(n, x) - ln_half_n)).min(1.0)
}

/// Regularised incomplete beta function I_x(a, b) for a, b > 0.
///
/// Continued fraction evaluated with the modified Lentz method (the approach
/// of Numerical Recipes' `betacf`), using the symmetry
/// I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges slowly.
/// Returns `NaN` for invalid parameters.
pub fn betainc(a: f64, b: f64, x: f64) -> f64 {
    if a.is_nan() || b.is_nan() || x.is_nan() || a <= 0.0 || b <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (-x).ln_1p();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Continued fraction for the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const MAX_ITER: usize = 20_000;
    const EPS: f64 = 1e-16;
    const TINY: f64 = 1e-300;
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        // even step
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        // odd step
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// x with I_x(a, b) = p, by bisection on [0, 1] to an interval width < 1e-12.
fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if betainc(a, b, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Standard normal quantile Φ⁻¹(p) (Acklam's rational approximation,
/// relative error < 1.2e-9). Used only for starting points and for turning a
/// confidence level into a z value; never for a reported p-value.
#[allow(clippy::excessive_precision)]
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || p <= 0.0 || p >= 1.0 {
        return if p == 0.0 {
            f64::NEG_INFINITY
        } else if p == 1.0 {
            f64::INFINITY
        } else {
            f64::NAN
        };
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.024_25;
    if p < P_LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

// ---------------------------------------------------------------------------
// Exact tests
// ---------------------------------------------------------------------------

/// Exact two-sided binomial (sign) test of `wins` out of `n` against p = ½.
///
/// The p-value is the total probability of all outcomes as or less likely
/// than the observed one. Because Binomial(n, ½) is symmetric this equals
/// `min(1, 2·P(X ≥ max(wins, n − wins)))`, which is what is computed (in log
/// space, so n up to 10 000 and beyond is accurate; values below ~1e-308
/// underflow to 0). `n = 0` gives 1 (no evidence); `wins > n` is impossible
/// input and gives `NaN`.
pub fn binom_two_sided_p(wins: u64, n: u64) -> f64 {
    if wins > n {
        return f64::NAN;
    }
    if n == 0 {
        return 1.0;
    }
    let m = wins.max(n - wins);
    if 2 * m == n {
        return 1.0;
    }
    (2.0 * upper_tail_half(m, n)).min(1.0)
}

/// Exact one-sided p-value P(X ≥ `correct`) for X ~ Binomial(n, ½): the
/// chance of doing at least this well in an ABX test by guessing.
/// `correct = 0` gives 1; `correct > n` gives `NaN`.
pub fn binom_one_sided_p(correct: u64, n: u64) -> f64 {
    if correct > n {
        return f64::NAN;
    }
    upper_tail_half(correct, n)
}

/// Exact (Clopper–Pearson) confidence interval for a binomial proportion.
///
/// `lo` solves I_lo(k, n−k+1) = α/2 and `hi` solves I_hi(k+1, n−k) = 1 − α/2
/// with α = 1 − `conf`; each is found by bisection to better than 1e-10.
/// k = 0 gives lo = 0 and k = n gives hi = 1. `n = 0` gives the uninformative
/// (0, 1); `k > n` or a `conf` outside (0, 1) gives (NaN, NaN).
pub fn clopper_pearson(k: u64, n: u64, conf: f64) -> (f64, f64) {
    if k > n || conf.is_nan() || conf <= 0.0 || conf >= 1.0 {
        return (f64::NAN, f64::NAN);
    }
    if n == 0 {
        return (0.0, 1.0);
    }
    let alpha = 1.0 - conf;
    let (kf, nf) = (k as f64, n as f64);
    let lo = if k == 0 {
        0.0
    } else {
        beta_quantile(alpha / 2.0, kf, nf - kf + 1.0)
    };
    let hi = if k == n {
        1.0
    } else {
        beta_quantile(1.0 - alpha / 2.0, kf + 1.0, nf - kf)
    };
    (lo, hi)
}

/// Wilson score interval for k successes out of n at normal quantile `z`
/// (1.96 for 95 %). `n = 0` gives (0, 1); `k > n` gives (NaN, NaN).
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if k > n || z.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    if n == 0 {
        return (0.0, 1.0);
    }
    let nf = n as f64;
    let p = k as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z / denom * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Smallest number of wins k (with k > n/2, i.e. wins for the side that is
/// ahead) whose exact two-sided p-value is strictly below `alpha`.
///
/// `None` when no outcome of n votes can be significant (e.g. n ≤ 5 at
/// α = 0.05) or `alpha` is not in (0, 1). The p-value decreases with k above
/// n/2, so a binary search is used.
pub fn min_wins_for_significance(n: u64, alpha: f64) -> Option<u64> {
    if alpha.is_nan() || alpha <= 0.0 || alpha >= 1.0 || n == 0 {
        return None;
    }
    if binom_two_sided_p(n, n) >= alpha {
        return None;
    }
    let (mut lo, mut hi) = (n / 2, n); // p(lo) >= alpha (p = 1 at/below n/2), p(hi) < alpha
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if binom_two_sided_p(mid, n) < alpha {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Exact power of the two-sided level-`alpha` sign test with `n` votes when
/// the true preference share is `true_pref`, given a table of ln k!.
fn exact_power(n: u64, true_pref: f64, alpha: f64, ln_fact: &[f64]) -> f64 {
    let n_us = n as usize;
    let lnc = |x: usize| ln_fact[n_us] - ln_fact[x] - ln_fact[n_us - x];
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    // Critical value: smallest k > n/2 with 2·P0(X ≥ k) < alpha.
    let mut tail = 0.0;
    let mut k_crit: Option<usize> = None;
    let mut x = n_us;
    while 2 * x > n_us {
        tail += (lnc(x) - ln_half_n).exp();
        if 2.0 * tail < alpha {
            k_crit = Some(x);
        } else {
            break;
        }
        if x == 0 {
            break;
        }
        x -= 1;
    }
    let Some(kc) = k_crit else {
        return 0.0;
    };
    let (lp, lq) = (true_pref.ln(), (-true_pref).ln_1p());
    let pmf = |x: usize| (lnc(x) + x as f64 * lp + (n_us - x) as f64 * lq).exp();
    let upper: f64 = (kc..=n_us).map(pmf).sum();
    let lower: f64 = (0..=(n_us - kc)).map(pmf).sum();
    (upper + lower).min(1.0)
}

/// Number of votes needed for the exact two-sided sign test at level `alpha`
/// to reach `power` when the true share preferring one side is `true_pref`.
///
/// Returns the *smallest* n whose exact power is ≥ `power`. (The exact test's
/// power is a saw-tooth in n, so a slightly larger n can occasionally fall
/// just below the target again.) The search starts at half the normal
/// approximation n ≈ ((z₁₋α/₂·½ + z_power·√(p(1−p))) / |p − ½|)² and walks
/// upward. `None` for `true_pref` = ½ (no finite n suffices), for arguments
/// outside (0, 1), or if nothing up to 4× the approximation (+1000) works.
pub fn power_votes(true_pref: f64, alpha: f64, power: f64) -> Option<u64> {
    let valid = |v: f64| v.is_finite() && v > 0.0 && v < 1.0;
    if !valid(true_pref) || !valid(alpha) || !valid(power) || true_pref == 0.5 {
        return None;
    }
    let z_a = normal_quantile(1.0 - alpha / 2.0);
    let z_b = normal_quantile(power);
    let d = (true_pref - 0.5).abs();
    let approx = ((z_a * 0.5 + z_b * (true_pref * (1.0 - true_pref)).sqrt()) / d).powi(2);
    if !approx.is_finite() || approx > 1e8 {
        return None;
    }
    let cap = (4.0 * approx).ceil() as u64 + 1000;
    let mut ln_fact = Vec::with_capacity(cap as usize + 1);
    ln_fact.push(0.0);
    for i in 1..=cap {
        ln_fact.push(ln_gamma(i as f64 + 1.0));
    }
    let mut start = ((0.5 * approx).floor() as u64).max(1);
    if exact_power(start, true_pref, alpha, &ln_fact) >= power {
        start = 1;
    }
    (start..=cap).find(|&n| exact_power(n, true_pref, alpha, &ln_fact) >= power)
}

// ---------------------------------------------------------------------------
// Resampling
// ---------------------------------------------------------------------------

/// Uniform integer in `0..n` from raw 64-bit draws, by rejection (unbiased).
///
/// Written here rather than taken from `rand`'s range sampling so that the
/// sequence for a given seed depends only on the ChaCha8 stream, which is
/// fixed by its specification, not on a `rand` version's algorithm choice.
/// `n = 0` returns 0.
pub(crate) fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let limit = u64::MAX - u64::MAX % n; // a multiple of n
    loop {
        let v = rng.next_u64();
        if v < limit {
            return v % n;
        }
    }
}

/// Fisher–Yates shuffle driven by [`below`] (see there for why).
pub(crate) fn shuffle<T>(rng: &mut impl RngCore, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// Percentile (linear interpolation between order statistics, "type 7")
/// of a sorted, non-empty slice.
fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Two-stage cluster bootstrap of the share of votes preferring B.
///
/// `votes` are `(rater, prompt, pref_b)` with `pref_b` = 1 for a vote for B,
/// 0 for A and ½ for a split tie (drop excluded ties before calling).
///
/// Each of `iters` replicates resamples raters with replacement; for every
/// drawn rater it resamples that rater's prompts with replacement; every vote
/// of a drawn (rater, prompt) cluster enters the replicate, whose statistic
/// is the vote-weighted share Σ pref_b / #votes. This respects that votes of
/// one rater, and of one rater on one prompt, are not independent.
///
/// Returns `(mean, lo, hi)`: `mean` is the observed share on the original
/// data (not the mean of the replicates) and `(lo, hi)` the 2.5 % and 97.5 %
/// percentiles of the replicates. Clusters are ordered by name before
/// sampling, so the result depends only on the votes and `seed`
/// (`ChaCha8Rng::seed_from_u64`). `None` for no votes, `iters = 0`, or a
/// non-finite `pref_b`.
pub fn bootstrap_preference(
    votes: &[(String, String, f64)],
    iters: usize,
    seed: u64,
) -> Option<(f64, f64, f64)> {
    if votes.is_empty() || iters == 0 || votes.iter().any(|v| !v.2.is_finite()) {
        return None;
    }
    // rater -> prompt -> (sum, count)
    let mut tree: BTreeMap<&str, BTreeMap<&str, (f64, u64)>> = BTreeMap::new();
    for (rater, prompt, pref) in votes {
        let cell = tree
            .entry(rater.as_str())
            .or_default()
            .entry(prompt.as_str())
            .or_insert((0.0, 0));
        cell.0 += pref;
        cell.1 += 1;
    }
    let clusters: Vec<Vec<(f64, u64)>> = tree
        .into_values()
        .map(|prompts| prompts.into_values().collect())
        .collect();
    let total: f64 = votes.iter().map(|v| v.2).sum();
    let mean = total / votes.len() as f64;

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n_raters = clusters.len() as u64;
    let mut reps = Vec::with_capacity(iters);
    for _ in 0..iters {
        let (mut sum, mut count) = (0.0, 0_u64);
        for _ in 0..n_raters {
            let prompts = &clusters[below(&mut rng, n_raters) as usize];
            let n_prompts = prompts.len() as u64;
            for _ in 0..n_prompts {
                let (s, c) = prompts[below(&mut rng, n_prompts) as usize];
                sum += s;
                count += c;
            }
        }
        // every cluster holds >= 1 vote, so count > 0
        reps.push(sum / count.max(1) as f64);
    }
    reps.sort_by(f64::total_cmp);
    Some((
        mean,
        percentile_sorted(&reps, 0.025),
        percentile_sorted(&reps, 0.975),
    ))
}

/// Fewest (rater, prompt) clusters for which [`bootstrap_preference`]'s
/// interval is an estimate.
pub const MIN_BOOTSTRAP_CLUSTERS: usize = 2;

/// Number of (rater, prompt) clusters that [`bootstrap_preference`] resamples.
///
/// Below [`MIN_BOOTSTRAP_CLUSTERS`] (one rater who judged one prompt) every
/// replicate redraws the very same votes, so the percentile interval has zero
/// width whatever the votes were: it reflects no uncertainty at all, and a
/// caller must report it as not estimable rather than print it.
pub fn bootstrap_clusters(votes: &[(String, String, f64)]) -> usize {
    votes
        .iter()
        .map(|(rater, prompt, _)| (rater.as_str(), prompt.as_str()))
        .collect::<BTreeSet<_>>()
        .len()
}

// ---------------------------------------------------------------------------
// Summaries
// ---------------------------------------------------------------------------

/// One preference outcome expressed in terms of the *models* (not the
/// anonymous sides the rater saw).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pref {
    /// Model A preferred.
    A,
    /// Model B preferred.
    B,
    /// No preference.
    Tie,
}

/// How "no preference" answers enter the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TiePolicy {
    /// Drop ties (the classical sign test). The default: it tests exactly
    /// "among raters who had a preference, is B preferred?", and the number
    /// of ties is always reported next to it.
    #[default]
    Exclude,
    /// Count a tie as half a win for each side. The share uses the
    /// fractional count; the exact test and the Clopper–Pearson interval use
    /// it rounded to the nearest integer, with an exact .5 rounded *toward*
    /// n/2 (the conservative direction).
    Split,
}

/// Result of [`summarise`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Votes entering the test (ties excluded under `Exclude`).
    pub n: u64,
    /// Wins for B (may be fractional under `Split`).
    pub wins_b: f64,
    /// Number of "no preference" answers seen (always reported).
    pub ties: u64,
    /// `wins_b / n`; `None` when `n = 0`.
    pub share_b: Option<f64>,
    /// The integer win count the exact test was run on.
    pub tested_wins: u64,
    /// Exact two-sided sign-test p-value (1 when `n = 0`).
    pub p_two_sided: f64,
    /// 95 % Clopper–Pearson interval for B's share ((0, 1) when `n = 0`).
    pub ci: (f64, f64),
}

/// Round `x` to the nearest integer; an exact .5 goes toward `centre`.
fn round_toward(x: f64, centre: f64) -> u64 {
    let down = x.floor();
    let up = x.ceil();
    if (x - down - 0.5).abs() < 1e-9 {
        if (up - centre).abs() < (down - centre).abs() {
            up as u64
        } else {
            down as u64
        }
    } else {
        x.round() as u64
    }
}

/// Summarise preference outcomes under a tie policy: count, B's share, exact
/// two-sided p-value and 95 % Clopper–Pearson interval.
pub fn summarise(answers: &[Pref], policy: TiePolicy) -> Summary {
    let a = answers.iter().filter(|p| **p == Pref::A).count() as u64;
    let b = answers.iter().filter(|p| **p == Pref::B).count() as u64;
    let ties = answers.iter().filter(|p| **p == Pref::Tie).count() as u64;
    let (n, wins_b) = match policy {
        TiePolicy::Exclude => (a + b, b as f64),
        TiePolicy::Split => (a + b + ties, b as f64 + 0.5 * ties as f64),
    };
    let tested_wins = round_toward(wins_b, n as f64 / 2.0).min(n);
    Summary {
        n,
        wins_b,
        ties,
        share_b: (n > 0).then(|| wins_b / n as f64),
        tested_wins,
        p_two_sided: binom_two_sided_p(tested_wins, n),
        ci: clopper_pearson(tested_wins, n, 0.95),
    }
}

#[cfg(test)]
mod tests;
