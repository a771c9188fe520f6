//! The AVX-512 VNNI kernel of [`super::QMatrix::matmul_rows`]: two blocks a register, and the
//! block scale applied by `vpdpwssd` as it accumulates (`vpmaddwd` and `vpaddd` in one).
//!
//! Per pair of blocks, shared by both input rows: the weights and, for 8 bits, their magnitudes
//! and signs (a mask register); for 4 bits the nibbles spread to one byte each (a permute, a
//! shift and an AND). Per input row: the input (with the weights' signs, 8 bits), one
//! `vpmaddubsw` and one `vpdpwssd`: three instructions per 64 weights where the AVX2 kernel
//! takes four per 32. A row's odd last block is read with masked loads (the other half zero).

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{each_row_pair, Part, QFormat, QInput, Row, BLOCK, SUB};

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
    if !available() || !part.fits(input, out.len() / input.m) {
        return super::portable_part(part, input, out);
    }
    each_row_pair(part, input, out, |row, j0, j1| {
        // SAFETY: the CPU has AVX-512 F/BW/VL/VNNI, AVX2 and FMA (checked above); the row holds
        // `nb` blocks of its format's bytes, `nb` scales and `ns` super-scales, each input row
        // `nb` blocks of values, sums (4 bits) and `ns` scales (`Part::fits`), and the loads
        // of a short last pair are masked to the one block that exists.
        unsafe {
            match part.format {
                QFormat::Int8 => row_pair::<false>(row, input, j0, j1),
                QFormat::Int4 => row_pair::<true>(row, input, j0, j1),
            }
        }
    });
}

/// How far ahead of the loads the weight bytes are prefetched (2 KiB, as the f32 GEMV's).
const AHEAD: usize = 2048;

/// One weight row times input rows `j0` and `j1` (the same row twice for an odd last one).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn row_pair<const INT4: bool>(
    row: &Row,
    input: &QInput,
    j0: usize,
    j1: usize,
) -> (f32, f32) {
    let nb = row.s.len();
    let x = [input.row_q(j0), input.row_q(j1)];
    let xs = [input.row_sums(j0), input.row_sums(j1)];
    let dx = [input.row_scale(j0), input.row_scale(j1)];
    let bb = if INT4 { BLOCK / 2 } else { BLOCK };
    // 64-bit lanes 0,1 ← the first block's 16 bytes, 2,3 ← the second's (4 bits).
    let spread = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3);
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
        let live: __mmask8 = (1u16 << blocks).wrapping_sub(1) as u8;
        // SAFETY (all loads): the weight row holds blocks `first .. first + blocks` and their
        // scales, each input row their values, sums and scales (the caller's checks); a short
        // super-block's missing scales and a pair's missing second block are masked off.
        // Prefetches are hints and never fault, wherever they point.
        let scales =
            unsafe { _mm_maskz_loadu_epi8(live as __mmask16, row.s.as_ptr().add(first).cast()) };
        let words = _mm512_broadcast_i32x4(_mm_cvtepi8_epi16(scales));
        let mut isum = [_mm512_setzero_si512(); 2];
        for p in (0..blocks).step_by(2) {
            let b = first + p;
            let two = p + 1 < blocks;
            let scale = _mm512_shuffle_epi8(words, picks[p / 2]);
            let wp = row.q.as_ptr().wrapping_add(b * bb);
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(AHEAD).cast());
            let xmask: __mmask64 = if two { u64::MAX } else { u32::MAX as u64 };
            unsafe {
                if INT4 {
                    let wmask: __mmask32 = if two { u32::MAX } else { u16::MAX as u32 };
                    let packed = _mm256_maskz_loadu_epi8(wmask, wp.cast());
                    let v = _mm512_permutexvar_epi64(spread, _mm512_castsi256_si512(packed));
                    let shifted = _mm512_srli_epi16::<4>(v);
                    let w = _mm512_and_si512(
                        _mm512_mask_blend_epi64(0b1100_1100, v, shifted),
                        _mm512_set1_epi8(15),
                    );
                    for t in 0..2 {
                        let xq =
                            _mm512_maskz_loadu_epi8(xmask, x[t].as_ptr().add(b * BLOCK).cast());
                        let pairs = _mm512_maddubs_epi16(w, xq);
                        isum[t] = _mm512_dpwssd_epi32(isum[t], pairs, scale);
                    }
                } else {
                    let w = _mm512_maskz_loadu_epi8(xmask, wp.cast());
                    let wa = _mm512_abs_epi8(w);
                    let negative = _mm512_movepi8_mask(w);
                    for t in 0..2 {
                        let xq =
                            _mm512_maskz_loadu_epi8(xmask, x[t].as_ptr().add(b * BLOCK).cast());
                        // The input carrying the weight's sign, times |w|.
                        let signed = _mm512_mask_sub_epi8(xq, negative, _mm512_setzero_si512(), xq);
                        let pairs = _mm512_maddubs_epi16(wa, signed);
                        isum[t] = _mm512_dpwssd_epi32(isum[t], pairs, scale);
                    }
                }
            }
        }
        if INT4 {
            // Σ s · 8 · Σ qx over the super-block: the nibbles' offset of 8, lane by lane
            // (every lane is summed at the end; a short super-block's missing blocks are
            // masked off).
            let s32 = _mm256_cvtepi8_epi32(scales);
            for t in 0..2 {
                let sums =
                    unsafe { _mm256_maskz_loadu_epi32(live, xs[t].as_ptr().add(first).cast()) };
                let offset = _mm256_slli_epi32::<3>(_mm256_mullo_epi32(s32, sums));
                isum[t] = _mm512_sub_epi32(isum[t], _mm512_zextsi256_si512(offset));
            }
        }
        for t in 0..2 {
            let d = _mm512_set1_ps(d * dx[t][sb]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), d, acc[t]);
        }
    }
    (_mm512_reduce_add_ps(acc[0]), _mm512_reduce_add_ps(acc[1]))
}
