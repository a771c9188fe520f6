//! The AVX2 + FMA kernel of [`super::QMatrix::matmul_rows`].
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{each_row_pair, Part, QFormat, QInput, Row, BLOCK, SUB};

pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// The AVX2 form of [`super::portable_part`] (which it falls back to without AVX2).
pub fn part(part: &Part, input: &QInput, out: &mut [f32]) {
    if !available() || !part.fits(input, out.len() / input.m) {
        return super::portable_part(part, input, out);
    }
    each_row_pair(part, input, out, |row, j0, j1| {
        // SAFETY: the CPU has AVX2 and FMA (checked above); the row holds `nb` blocks of its
        // format's bytes, `nb` scales and `ns` super-scales, each input row `nb` blocks of
        // values, offsets (4 bits) and `ns` scales (`Part::fits`), which is all the kernel reads.
        unsafe {
            match part.format {
                QFormat::Int8 => row_pair::<false>(row, input, j0, j1),
                QFormat::Int4 => row_pair::<true>(row, input, j0, j1),
            }
        }
    });
}

/// One weight row times input rows `j0` and `j1` (the same row twice for an odd last one).
#[target_feature(enable = "avx2,fma")]
unsafe fn row_pair<const INT4: bool>(
    row: &Row,
    input: &QInput,
    j0: usize,
    j1: usize,
) -> (f32, f32) {
    let nb = row.s.len();
    let x = [input.row_q(j0), input.row_q(j1)];
    let neg8 = [input.row_neg8_sums(j0), input.row_neg8_sums(j1)];
    let dx = [input.row_scale(j0), input.row_scale(j1)];
    let mut acc = [_mm256_setzero_ps(); 2];
    for (sb, &d) in row.d.iter().enumerate() {
        let blocks = sb * SUB..((sb + 1) * SUB).min(nb);
        let full = blocks.len() == SUB;
        let mut isum = [_mm256_setzero_si256(); 2];
        for b in blocks.clone() {
            let scale = _mm256_set1_epi16(row.s[b] as i16);
            // SAFETY (all loads): block `b < nb` lies inside the weight row and both input
            // rows (checked by the caller).
            unsafe {
                if INT4 {
                    // The nibbles as unsigned bytes 0..15, times the signed inputs.
                    let packed = _mm_loadu_si128(row.q.as_ptr().add(b * 16).cast());
                    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(packed), packed);
                    let w = _mm256_and_si256(both, _mm256_set1_epi8(15));
                    for t in 0..2 {
                        let xq = _mm256_loadu_si256(x[t].as_ptr().add(b * BLOCK).cast());
                        let pairs = _mm256_maddubs_epi16(w, xq);
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(pairs, scale));
                    }
                } else {
                    // |w| times the input carrying w's sign.
                    let w = _mm256_loadu_si256(row.q.as_ptr().add(b * BLOCK).cast());
                    let wa = _mm256_abs_epi8(w);
                    for t in 0..2 {
                        let xq = _mm256_loadu_si256(x[t].as_ptr().add(b * BLOCK).cast());
                        let pairs = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(xq, w));
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(pairs, scale));
                    }
                }
            }
        }
        if INT4 && !full {
            // Σ s · (−8 · Σ qx) over the (short) super-block: the nibbles' offset of 8, in
            // lane 0 (all lanes are summed at the end).
            for t in 0..2 {
                let offset: i32 = blocks
                    .clone()
                    .map(|b| row.s[b] as i32 * neg8[t][b] as i32)
                    .sum();
                isum[t] = _mm256_add_epi32(isum[t], _mm256_setr_epi32(offset, 0, 0, 0, 0, 0, 0, 0));
            }
        } else if INT4 {
            // The same for eight blocks at once, one `vpmaddwd` (its four sums in the low lanes).
            // SAFETY: blocks `sb·SUB .. sb·SUB + 8` lie inside the scales and the offsets.
            unsafe {
                let s8 = _mm_cvtepi8_epi16(_mm_loadl_epi64(row.s.as_ptr().add(sb * SUB).cast()));
                for t in 0..2 {
                    let off = _mm_loadu_si128(neg8[t].as_ptr().add(sb * SUB).cast());
                    let offset = _mm256_zextsi128_si256(_mm_madd_epi16(s8, off));
                    isum[t] = _mm256_add_epi32(isum[t], offset);
                }
            }
        }
        for t in 0..2 {
            let d = _mm256_set1_ps(d * dx[t][sb]);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), d, acc[t]);
        }
    }
    (hsum(acc[0]), hsum(acc[1]))
}

#[target_feature(enable = "avx2")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}
