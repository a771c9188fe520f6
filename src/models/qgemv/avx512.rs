//! The AVX-512 VNNI kernel of [`super::QMatrix::matmul_rows`]: the block scale applied by
//! `vpdpwssd` as it accumulates (`vpmaddwd` and `vpaddd` in one).
//!
//! - 8 bits, two blocks a register. Per pair of blocks, shared by both input rows: the
//!   weights' magnitudes and signs (a mask register); per input row: the input with the
//!   weights' signs, one `vpmaddubsw` and one `vpdpwssd`.
//! - 4 bits, four blocks a 64-byte load: the low nibbles are values 0–15 of each block and the
//!   high nibbles values 16–31, each one AND (and a shift) away from bytes `vpmaddubsw` takes;
//!   the input is stored in that order ([`super::QInput::nibble_order`]), so nothing is
//!   permuted per weight. Each 128-bit lane then holds one block, whose scale a single
//!   `vpermw` per four blocks spreads; the nibbles' offset of 8 is one `vpmaddwd` of the
//!   scales with `−8 · Σ qx` per super-block. Four instructions per 128 weights are shared
//!   by the input rows, six per input row (two loads, two `vpmaddubsw`, two `vpdpwssd`).
//!
//! A row's short last super-block is read with masked loads (the missing blocks zero).

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{each_row_pair, groups_per_row, Part, QFormat, QInput, Row, BLOCK, GROUP, SUB};

pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    })
}

/// The AVX-512 VNNI form of [`super::portable_part`] (which it falls back to without it).
pub fn part(part: &Part, input: &QInput, out: &mut [f32]) {
    // 4 bits read the input in nibble order, which `Part::fits` does not check.
    let input_fits = part.format == QFormat::Int8
        || input.nibble_order.len() == input.m * groups_per_row(part.cols / BLOCK) * GROUP * BLOCK;
    if !available() || !part.fits(input, out.len() / input.m) || !input_fits {
        return super::portable_part(part, input, out);
    }
    each_row_pair(part, input, out, |row, j0, j1| {
        // SAFETY: the CPU has AVX-512 F/BW/VL/VNNI, AVX2 and FMA (checked above); the row holds
        // `nb` blocks of its format's bytes, `nb` scales and `ns` super-scales, each input row
        // `nb` blocks of values and `ns` scales (`Part::fits`), and for 4 bits its values in
        // nibble order (whole groups, checked above) and `nb` offsets; loads past a row's
        // last block are masked off.
        unsafe {
            match part.format {
                QFormat::Int8 => row_pair_int8(row, input, j0, j1),
                QFormat::Int4 => row_pair_int4(row, input, j0, j1),
            }
        }
    });
}

/// [`super::quantize_super`] sixteen values a register: the same scale, and the same integers
/// (`x · (1/d)` rounded to nearest, ties to even, as the portable form's `round`; tested bit
/// for bit). A 2 × 1024 input took 3.1 µs to quantise for 4 bits and takes 0.55 µs (2 × 4096:
/// 12.2 → 2.0 µs), serial work of every product of a decoding step.
///
/// # Safety
/// The CPU has AVX-512 F/BW; `sup.len() == qs.len()`, a multiple of 16.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn quantize_super(sup: &[f32], qs: &mut [i8]) -> f32 {
    let n = sup.len();
    debug_assert!(n.is_multiple_of(16) && qs.len() == n);
    let mut most = _mm512_setzero_ps();
    let mut nan: __mmask16 = 0;
    for c in (0..n).step_by(16) {
        // SAFETY: `c + 16 ≤ n`, inside `sup`.
        let v = unsafe { _mm512_loadu_ps(sup.as_ptr().add(c)) };
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        most = _mm512_max_ps(most, _mm512_abs_ps(v));
    }
    let amax = _mm512_reduce_max_ps(most);
    if nan != 0 || !amax.is_finite() {
        return f32::NAN;
    }
    let d = amax / 127.0;
    let inv = _mm512_set1_ps(super::inverse(d));
    for c in (0..n).step_by(16) {
        // SAFETY: `c + 16 ≤ n`, inside `sup` and `qs`.
        unsafe {
            let v = _mm512_mul_ps(_mm512_loadu_ps(sup.as_ptr().add(c)), inv);
            let i =
                _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            _mm_storeu_si128(qs.as_mut_ptr().add(c).cast(), _mm512_cvtsepi32_epi8(i));
        }
    }
    d
}

/// How far ahead of the loads the weight bytes are prefetched: 4 KiB (2 KiB, as the f32
/// GEMV's, took 15.7–17.0 ms for `bench kernels`' q8 step and 8.5–9.0 ms for q4; 4 KiB took
/// 13.1–14.2 and 7.3–8.7 ms, alternated runs; 8 and 16 KiB were no better).
const AHEAD: usize = 4096;

/// One 8-bit weight row times input rows `j0` and `j1` (the same row twice for an odd last
/// one), two blocks a register.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn row_pair_int8(row: &Row, input: &QInput, j0: usize, j1: usize) -> (f32, f32) {
    let nb = row.s.len();
    let x = [input.row_q(j0), input.row_q(j1)];
    let dx = [input.row_scale(j0), input.row_scale(j1)];
    // For the pair of blocks (2p, 2p + 1) of a super-block: bytes (4p, 4p + 1) of each 128-bit
    // lane in the low half, (4p + 2, 4p + 3) in the high half, which pick the two blocks'
    // integer scales out of the super-block's eight 16-bit words.
    let picks: [__m512i; SUB / 2] = std::array::from_fn(|p| {
        let word = |i: usize| (2 * i as i16) | ((2 * i as i16 + 1) << 8);
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(word(2 * p))),
            _mm256_set1_epi16(word(2 * p + 1)),
        )
    });
    let mut acc = [_mm512_setzero_ps(); 2];
    for (sb, &d) in row.d.iter().enumerate() {
        let first = sb * SUB;
        let blocks = ((sb + 1) * SUB).min(nb) - first;
        // SAFETY: blocks `first .. first + blocks` lie in the row and the inputs (the caller's
        // checks); the short last super-block takes the masked form.
        let isum = unsafe {
            if blocks == SUB {
                super_int8::<true>(row, x, &picks, first, SUB)
            } else {
                super_int8::<false>(row, x, &picks, first, blocks)
            }
        };
        for t in 0..2 {
            let d = _mm512_set1_ps(d * dx[t][sb]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), d, acc[t]);
        }
    }
    (_mm512_reduce_add_ps(acc[0]), _mm512_reduce_add_ps(acc[1]))
}

/// The integer sums of one 8-bit super-block (`blocks` blocks from block `first`) with both
/// input rows `x`, lane by lane. `FULL`: the super-block has all [`SUB`] blocks.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI; the row and both input rows hold blocks
/// `first .. first + blocks`, and the row their scales.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn super_int8<const FULL: bool>(
    row: &Row,
    x: [&[i8]; 2],
    picks: &[__m512i; SUB / 2],
    first: usize,
    blocks: usize,
) -> [__m512i; 2] {
    let live: __mmask16 = if FULL {
        u8::MAX as u16
    } else {
        (1u16 << blocks).wrapping_sub(1)
    };
    // SAFETY (all loads): see the function's contract; a short super-block's missing scales
    // and a pair's missing second block are masked off. Prefetches are hints and never fault.
    let scales = unsafe { _mm_maskz_loadu_epi8(live, row.s.as_ptr().add(first).cast()) };
    let words = _mm512_broadcast_i32x4(_mm_cvtepi8_epi16(scales));
    let mut isum = [_mm512_setzero_si512(); 2];
    let pairs = if FULL { SUB / 2 } else { blocks.div_ceil(2) };
    for (p, &pick) in picks.iter().enumerate().take(pairs) {
        let b = first + 2 * p;
        let scale = _mm512_shuffle_epi8(words, pick);
        let wp = row.q.as_ptr().wrapping_add(b * BLOCK);
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(AHEAD).cast());
        let mask: __mmask64 = if FULL || 2 * p + 1 < blocks {
            u64::MAX
        } else {
            u32::MAX as u64
        };
        unsafe {
            let w = _mm512_maskz_loadu_epi8(mask, wp.cast());
            let wa = _mm512_abs_epi8(w);
            let negative = _mm512_movepi8_mask(w);
            for t in 0..2 {
                let xq = _mm512_maskz_loadu_epi8(mask, x[t].as_ptr().add(b * BLOCK).cast());
                // The input carrying the weight's sign, times |w|.
                let signed = _mm512_mask_sub_epi8(xq, negative, _mm512_setzero_si512(), xq);
                isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(wa, signed), scale);
            }
        }
    }
    isum
}

/// One 4-bit weight row times input rows `j0` and `j1` (the same row twice for an odd last
/// one), four blocks a load (see the module docs).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn row_pair_int4(row: &Row, input: &QInput, j0: usize, j1: usize) -> (f32, f32) {
    let nb = row.s.len();
    let rows = Int4Rows {
        x: [input.row_nibble_order(j0), input.row_nibble_order(j1)],
        neg8: [input.row_neg8_sums(j0), input.row_neg8_sums(j1)],
        // 128-bit lane k of group g takes 16-bit word 4g + k of the super-block's scales.
        spread: std::array::from_fn(|g| {
            let lane = |k: usize| _mm_set1_epi16((GROUP * g + k) as i16);
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_set_m128i(lane(1), lane(0))),
                _mm256_set_m128i(lane(3), lane(2)),
            )
        }),
    };
    let dx = [input.row_scale(j0), input.row_scale(j1)];
    let mut acc = [_mm512_setzero_ps(); 2];
    for (sb, &d) in row.d.iter().enumerate() {
        let first = sb * SUB;
        let blocks = ((sb + 1) * SUB).min(nb) - first;
        // SAFETY: blocks `first .. first + blocks` lie in the row and the inputs (the caller's
        // checks); the short last super-block takes the masked form.
        let isum = unsafe {
            if blocks == SUB {
                super_int4::<true>(row, &rows, first, SUB)
            } else {
                super_int4::<false>(row, &rows, first, blocks)
            }
        };
        for t in 0..2 {
            let d = _mm512_set1_ps(d * dx[t][sb]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), d, acc[t]);
        }
    }
    (_mm512_reduce_add_ps(acc[0]), _mm512_reduce_add_ps(acc[1]))
}

/// The two input rows of [`row_pair_int4`], and its scale spreads.
struct Int4Rows<'a> {
    /// Values in nibble order.
    x: [&'a [i8]; 2],
    /// `−8 · Σ qx` a block.
    neg8: [&'a [i16]; 2],
    spread: [__m512i; SUB / GROUP],
}

/// The integer sums of one super-block (`blocks` blocks from block `first`) with both input
/// rows, lane by lane. `FULL`: the super-block has all [`SUB`] blocks (no masks computed).
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI; the row holds blocks `first .. first + blocks` and their
/// scales, the inputs their offsets and whole groups in nibble order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn super_int4<const FULL: bool>(
    row: &Row,
    rows: &Int4Rows,
    first: usize,
    blocks: usize,
) -> [__m512i; 2] {
    const HALF: usize = BLOCK / 2;
    let live: __mmask8 = if FULL {
        u8::MAX
    } else {
        (1u16 << blocks).wrapping_sub(1) as u8
    };
    // SAFETY (all loads): see the function's contract; a short super-block's missing scales,
    // offsets and weights are masked off (the inputs hold zeros there). Prefetches are hints
    // and never fault.
    let words = unsafe {
        _mm_cvtepi8_epi16(_mm_maskz_loadu_epi8(
            live as __mmask16,
            row.s.as_ptr().add(first).cast(),
        ))
    };
    // The nibbles' offset of 8: Σ_blocks s · (−8 · Σ qx), in the accumulator's low lanes.
    let mut isum: [__m512i; 2] = std::array::from_fn(|t| {
        let off = unsafe { _mm_maskz_loadu_epi16(live, rows.neg8[t].as_ptr().add(first).cast()) };
        _mm512_zextsi128_si512(_mm_madd_epi16(words, off))
    });
    let words = _mm512_zextsi128_si512(words);
    let nibble = _mm512_set1_epi8(15);
    let groups = if FULL {
        SUB / GROUP
    } else {
        blocks.div_ceil(GROUP)
    };
    for g in 0..groups {
        let wmask: __mmask64 = if FULL || blocks - g * GROUP >= GROUP {
            u64::MAX
        } else {
            (1u64 << ((blocks - g * GROUP) * HALF)) - 1
        };
        let scale = _mm512_permutexvar_epi16(rows.spread[g], words);
        let wp = row.q.as_ptr().wrapping_add((first + g * GROUP) * HALF);
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(AHEAD).cast());
        unsafe {
            let v = _mm512_maskz_loadu_epi8(wmask, wp.cast());
            let lo = _mm512_and_si512(v, nibble);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nibble);
            let at = (first / GROUP + g) * GROUP * BLOCK;
            for (sum, x) in isum.iter_mut().zip(rows.x) {
                let x = x.as_ptr().add(at);
                let xl = _mm512_loadu_si512(x.cast());
                let xh = _mm512_loadu_si512(x.add(GROUP * HALF).cast());
                *sum = _mm512_dpwssd_epi32(*sum, _mm512_maddubs_epi16(lo, xl), scale);
                *sum = _mm512_dpwssd_epi32(*sum, _mm512_maddubs_epi16(hi, xh), scale);
            }
        }
    }
    isum
}
