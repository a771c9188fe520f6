//! The inner loops' building blocks: sums, dot products and maxima in independent lanes (which
//! the compiler vectorises, where one running sum is a serial chain it keeps scalar), and
//! [`wide`], which compiles a loop for AVX2 + FMA. The lane counts fix the fused ops' summation
//! order, so changing one changes their results in the last bits (the PyTorch parity and
//! exact-resume tests depend on them).

/// `Σ f(x)` in eight independent f64 lanes (one running sum is a serial chain the compiler
/// keeps scalar).
#[inline(always)]
pub(super) fn lane_sum_f64(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let (chunks, tail) = x.as_chunks::<8>();
    for c in chunks {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&v| f(v)).sum::<f64>()
}

/// `Σ a·b` in 16 independent lanes, which the compiler vectorises (a plain `sum()` of products
/// is a serial chain of scalar additions: strict float order). Inlined, so inside [`wide`] it
/// compiles for AVX2 (the same sums: the products and additions stay separate operations).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ac, at) = a.as_chunks::<16>();
    let (bc, bt) = b.as_chunks::<16>();
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = at.iter().zip(bt).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `Σ a` in 16 independent lanes (vectorised, as [`dot`]).
pub(crate) fn lane_sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (chunks, tail) = a.as_chunks::<16>();
    for x in chunks {
        for i in 0..16 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// The largest value, in 16 lanes (`f32::max` ignores NaN and stays scalar; a NaN here makes
/// the row NaN through `exp` anyway).
#[inline(always)]
pub(super) fn lane_max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let (chunks, tail) = a.as_chunks::<16>();
    for x in chunks {
        for i in 0..16 {
            acc[i] = if x[i] > acc[i] { x[i] } else { acc[i] };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in acc.iter().chain(tail) {
        max = if v > max { v } else { max };
    }
    max
}

/// Runs `f` compiled for the widest vector instructions this CPU has (AVX2 + FMA through
/// `pulp`; the build targets baseline x86-64, whose 4-wide SSE the compiler otherwise uses for
/// the element-wise loops of `f`, which must be `#[inline(always)]` to be compiled inside).
#[inline(always)]
pub(super) fn wide<R>(f: impl FnOnce() -> R) -> R {
    // Detected once (it is called per row).
    static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);
    ARCH.dispatch(f)
}
