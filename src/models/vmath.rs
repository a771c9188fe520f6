//! `exp` and the standard normal CDF/density in plain f32 arithmetic, without branches or calls,
//! so loops over slices vectorise (the fused softmax and GELU compile theirs for AVX2 + FMA, see
//! `nn`'s `wide`; libm's are one scalar call per element: the softmax and GELU of a
//! musicgen-small training step spent about 12 % of it there).
//!
//! - [`exp`]: Cody–Waite reduction `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, then the degree-7 Taylor
//!   polynomial of `eʳ` (truncation below 1e-8 relative) scaled by `2ⁿ` through the exponent
//!   bits: within 2 ulp of the exact value (tested against f64).
//! - [`exp_m1`]: `eˣ − 1`, a polynomial near 0 and [`exp`] elsewhere (ELU's negative side);
//! - [`normal_cdf_pdf`]: Abramowitz & Stegun 7.1.26 for `erfc` (absolute error of `Φ`
//!   ≤ 7.5e-8, ≈ 3e-7 after f32 rounding; libm's `erff` is within 1 ulp), which
//!   shares its `e^{−x²/2}` with the density. The lower tail is computed directly, so `Φ(x)` for
//!   negative `x` does not cancel: its relative error is 0.16 % at x = −5 (Φ ≈ 3e-7) and grows
//!   to 3 % at x = −12 (Φ ≈ 2e-33), far below what a GELU's output or gradient can resolve.

/// `eˣ` for f32: 0 below −87.3 (where `eˣ` leaves the normal range), ∞ above 88.7, NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LO: f32 = -87.3;
    const HI: f32 = 88.7;
    // Adding and subtracting 1.5 · 2²³ rounds to the nearest integer (ties to even).
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4; // 355 / 512, exact in f32
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
    let xc = x.clamp(LO, HI);
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n ∈ [−126, 128]: 2ⁿ as two powers from the exponent field, each within [−63, 64].
    let n = n as i32;
    let half = n >> 1;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let y = p * pow2(half) * pow2(n - half);
    let y = if x < LO { 0.0 } else { y };
    if x > HI {
        f32::INFINITY
    } else {
        y
    }
}

/// `eˣ − 1` for f32 without cancellation near 0: the Taylor polynomial through `x⁸/8!` where
/// `|x| < 1/2` (truncation below 1.2e-8 relative), [`exp`]` − 1` elsewhere (where the result is
/// at least 0.39 in magnitude). Both are computed and one is kept, so loops vectorise.
#[inline(always)]
pub fn exp_m1(x: f32) -> f32 {
    let small = x
        * (1.0
            + x * (0.5
                + x * (1.0 / 6.0
                    + x * (1.0 / 24.0
                        + x * (1.0 / 120.0
                            + x * (1.0 / 720.0 + x * (1.0 / 5040.0 + x * (1.0 / 40320.0))))))));
    if x.abs() < 0.5 {
        small
    } else {
        exp(x) - 1.0
    }
}

/// `(Φ(x), φ(x))`: the standard normal CDF and density.
#[inline(always)]
pub fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152;
    const A5: f32 = 1.061_405_4;
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let e = exp(-0.5 * x * x); // e^{−z²}
    let tail = 0.5 * poly * e; // Φ(−|x|) = erfc(z) / 2
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, e * INV_SQRT_2PI)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite f32 of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.5 {
            let want = (x as f64).exp() as f32;
            let got = exp(x);
            worst = worst.max(ulps(got, want));
            x += 0.000_731;
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn exp_m1_is_within_a_few_ulp_of_the_exact_value() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp_m1() as f32;
            worst = worst.max(ulps(exp_m1(x), want));
            // Finer near 0, where `exp(x) − 1` would cancel.
            x += if x.abs() < 1.0 {
                0.000_013_7
            } else {
                0.000_731
            };
        }
        assert!(worst <= 3, "{worst} ulp");
        assert_eq!(exp_m1(0.0), 0.0);
        assert_eq!(exp_m1(1e-30), 1e-30);
        assert_eq!(exp_m1(f32::NEG_INFINITY), -1.0);
        assert!(exp_m1(f32::NAN).is_nan());
    }

    #[test]
    fn normal_cdf_and_density_match_the_exact_values() {
        // Φ(x) = erfc(−x/√2)/2 and φ in f64. Φ is within A&S's 7.5e-8 plus the f32 rounding
        // of its alternating polynomial (≈ 3 ulp near 0.5).
        let erfc = candle_core::cpu::erf::erfc_f64;
        let mut x = -12.0f32;
        while x <= 12.0 {
            let (cdf, pdf) = normal_cdf_pdf(x);
            let want_cdf = 0.5 * erfc(-(x as f64) / std::f64::consts::SQRT_2);
            let want_pdf = (-0.5 * (x as f64).powi(2)).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!(
                (cdf as f64 - want_cdf).abs() < 3e-7,
                "Φ({x}) = {cdf}, want {want_cdf}"
            );
            // The lower tail keeps its relative accuracy (no cancellation).
            let rel = if x >= -5.0 { 2e-3 } else { 4e-2 };
            if want_cdf > 1e-37 {
                assert!(
                    ((cdf as f64 - want_cdf) / want_cdf).abs() < rel,
                    "Φ({x}) = {cdf}, want {want_cdf}"
                );
            }
            // Relative: −x²/2 itself is rounded (4e-6 of e^{−72} at x = 12), as with libm's exp.
            assert!(
                (pdf as f64 - want_pdf).abs() <= 1e-5 * want_pdf + 1e-38,
                "φ({x}) = {pdf}, want {want_pdf}"
            );
            x += 0.003_17;
        }
        let (c, p) = normal_cdf_pdf(f32::NAN);
        assert!(c.is_nan() && p.is_nan());
    }
}
