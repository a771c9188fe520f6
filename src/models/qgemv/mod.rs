//! Quantised weights for the decoding step: [`QMatrix`] stores a row-major `[out, in]` matrix
//! in blocks of 32 weights, 8 bits a weight ([`QFormat::Int8`]) or 4 ([`QFormat::Int4`]), and
//! multiplies a few input rows with it ([`QMatrix::matmul_rows`]) the way
//! [`super::gemv::rows_matmul`] does for f32: each weight is read once for all the rows, a few
//! contiguous spans of output rows per thread of the decoding team (`models::nn::team`).
//!
//! **Scales in two levels** (as ggml's k-quants): a block of 32 weights has an 8-bit integer
//! scale `s`, a super-block of eight blocks (256 weights) one f32 scale `d`, so a weight is
//! `d · s · q`. The input rows are quantised to 8 bits with one f32 scale per 256 values (as
//! ggml's q8_K). A super-block's product is then one integer sum scaled once:
//! `Σ w·x ≈ d · dx · Σ_blocks s · Σ_i q·qx`, and the integer scale rides in the instruction
//! that widens the products to 32 bits. On x86-64 that is, per block and input row,
//! `vpmaddubsw` (unsigned × signed bytes, pairs summed in 16 bits) then `vpmaddwd` by `s`
//! (`avx2.rs`), or with AVX-512 VNNI `vpdpwssd`, which multiplies by `s` and accumulates in one
//! instruction, two 8-bit blocks or four 4-bit blocks a register (`avx512.rs`; its 4-bit
//! input is stored in the order the packed nibbles unpack, [`QInput`]'s `nibble_order`):
//! - 8 bits: the weight's magnitude times the input carrying the weight's sign (|q|, |qx| ≤
//!   127, so a pair never saturates 16 bits; magnitude and sign are taken once for both input
//!   rows);
//! - 4 bits: the stored nibble `q ∈ [0, 15]` times the input directly, and `−8 · Σ qx` per
//!   block (kept with the input in 16 bits) times the block scales added once a super-block
//!   (one `vpmaddwd`), so no sign instruction at all.
//!
//! A portable kernel computes the same integers elsewhere; only the order of the f32 additions
//! differs. The sums fit: 8 bits, `8 blocks · 2 · 127 · 127 · 127` a lane ≈ 3.3e7 < 2³¹.
//!
//! Storage: 8.375 bits a weight for Int8 (ggml q8_0: 8.5), 4.375 for Int4 (q4_0: 4.5).
//!
//! Why not candle's `QMatMul`: it reads every weight once per input row (twice a step with
//! classifier-free guidance), and its q8_0 path has no AVX2 integer kernel (measured here:
//! 65 ms a musicgen-small step in q8 against 79 ms in f32).
//!
//! The x86 kernels are `unsafe` (CPU intrinsics): each runs only after the CPU reported its
//! features at run time, and reads only inside slices whose lengths are checked first.
#![allow(unsafe_code)]

use crate::error::{Error, Result};
use crate::models::nn::{team, Shortcut};

/// Weights per block (one integer scale each).
pub const BLOCK: usize = 32;
/// Blocks per super-block (one f32 scale each); a row's last super-block may have fewer.
const SUB: usize = 8;
/// Weights per (full) super-block.
const SUPER: usize = BLOCK * SUB;

/// Super-blocks in a row of `blocks` blocks.
fn supers_per_row(blocks: usize) -> usize {
    blocks.div_ceil(SUB)
}

/// How many bits a weight of a [`QMatrix`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    /// 8 bits, symmetric: `w = d · s · q`, `q ∈ [-127, 127]`.
    Int8,
    /// 4 bits, symmetric: `w = d · s · (q − 8)`, `q ∈ [0, 15]`; the block's value of largest
    /// magnitude maps to −8 (ggml q4_0's choice: the 16th level is used).
    Int4,
}

impl QFormat {
    /// Bytes of quantised values in one block.
    fn block_bytes(self) -> usize {
        match self {
            Self::Int8 => BLOCK,
            Self::Int4 => BLOCK / 2,
        }
    }
}

/// A row-major `[rows, cols]` matrix in blocks of [`BLOCK`] weights along each row.
#[derive(Debug, Clone)]
pub struct QMatrix {
    format: QFormat,
    rows: usize,
    cols: usize,
    /// `rows · cols / BLOCK` blocks of [`QFormat::block_bytes`], row after row. Int8: the
    /// values as `i8`. Int4: byte `i` of a block holds value `i` (low nibble) and `i + 16`.
    quants: Vec<u8>,
    /// One integer scale per block, in the same order (signed: an Int4 block's largest
    /// magnitude may be positive or negative).
    scales: Vec<i8>,
    /// One scale per super-block.
    supers: Vec<f32>,
}

impl QMatrix {
    /// Quantises the row-major `w` (`rows · cols` values). Fails when `cols` is not a whole
    /// number of blocks ([`BLOCK`]) or a weight is not finite.
    pub fn quantize(w: &[f32], rows: usize, cols: usize, format: QFormat) -> Result<Self> {
        if !cols.is_multiple_of(BLOCK) || cols == 0 {
            return Err(Error::InvalidRequest(format!(
                "a quantised matrix needs rows of a positive multiple of {BLOCK} values, not {cols}"
            )));
        }
        if w.len() != rows * cols {
            return Err(Error::InvalidRequest(format!(
                "a {rows}×{cols} matrix needs {} values, got {}",
                rows * cols,
                w.len()
            )));
        }
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidRequest(format!(
                "weight {i} of a {rows}×{cols} matrix is {}: it cannot be quantised",
                w[i]
            )));
        }
        let blocks = rows * cols / BLOCK;
        let mut quants = Vec::with_capacity(blocks * format.block_bytes());
        let mut scales = Vec::with_capacity(blocks);
        let mut supers = Vec::with_capacity(rows * supers_per_row(cols / BLOCK));
        for sup in w.chunks_exact(cols).flat_map(|row| row.chunks(SUPER)) {
            // The step each block would want on its own (signed for Int4: see QFormat).
            let mut want = [0f32; SUB];
            let want = &mut want[..sup.len() / BLOCK];
            for (t, block) in want.iter_mut().zip(sup.chunks_exact(BLOCK)) {
                *t = match format {
                    QFormat::Int8 => block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0,
                    QFormat::Int4 => {
                        block
                            .iter()
                            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
                            / -8.0
                    }
                };
            }
            let d = want.iter().fold(0f32, |m, t| m.max(t.abs())) / 127.0;
            supers.push(d);
            for (&t, block) in want.iter().zip(sup.chunks_exact(BLOCK)) {
                // The integer scale rounds the step's magnitude up, so no value clips (beyond
                // Int4's +8, which the format cannot hold).
                let s = if d == 0.0 {
                    0.0
                } else {
                    (t.abs() / d).ceil().min(127.0).copysign(t)
                };
                scales.push(s as i8);
                let inv = inverse(d * s);
                match format {
                    QFormat::Int8 => quants.extend(
                        block
                            .iter()
                            .map(|v| round(v * inv).clamp(-127.0, 127.0) as i8 as u8),
                    ),
                    QFormat::Int4 => {
                        let q = |v: f32| (round(v * inv) + 8.0).clamp(0.0, 15.0) as u8;
                        let (lo, hi) = block.split_at(BLOCK / 2);
                        quants.extend(lo.iter().zip(hi).map(|(&a, &b)| q(a) | (q(b) << 4)));
                    }
                }
            }
        }
        Ok(Self {
            format,
            rows,
            cols,
            quants,
            scales,
            supers,
        })
    }

    pub fn format(&self) -> QFormat {
        self.format
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Bytes the matrix occupies (values and scales).
    pub fn bytes(&self) -> usize {
        self.quants.len() + self.scales.len() + 4 * self.supers.len()
    }

    /// The matrix the quantised values stand for, row-major f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let bb = self.format.block_bytes();
        let nb = self.cols / BLOCK;
        let ns = supers_per_row(nb);
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for (b, (q, &s)) in self.quants.chunks_exact(bb).zip(&self.scales).enumerate() {
            let step = self.supers[b / nb * ns + b % nb / SUB] * s as f32;
            match self.format {
                QFormat::Int8 => out.extend(q.iter().map(|&v| v as i8 as f32 * step)),
                QFormat::Int4 => {
                    out.extend(q.iter().map(|&v| ((v & 15) as f32 - 8.0) * step));
                    out.extend(q.iter().map(|&v| ((v >> 4) as f32 - 8.0) * step));
                }
            }
        }
        out
    }

    /// `y[j, o] = Σ_i x[j, i] · w[o, i]` for `m` row-major input rows of `cols` values; returns
    /// `y` row-major `[m, rows]`. The inputs are quantised per super-block (see the module
    /// docs); a super-block holding a non-finite input makes its outputs NaN.
    pub fn matmul_rows(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        if x.len() != m * self.cols {
            return Err(Error::InvalidRequest(format!(
                "a product with a {}×{} matrix needs rows of {} values, got {} values for {m} rows",
                self.rows,
                self.cols,
                self.cols,
                x.len()
            )));
        }
        Shortcut::Gemv.entered();
        if m == 0 || self.rows == 0 {
            return Ok(Vec::new());
        }
        let input = QInput::new(x, m, self.cols, self.format);
        let mut yt = vec![0f32; self.rows * m]; // [rows, m]
        let nb = self.cols / BLOCK;
        let ns = supers_per_row(nb);
        let bytes_per_row = nb * self.format.block_bytes();
        let kernel: fn(&Part, &QInput, &mut [f32]) = if avx512::available() {
            avx512::part
        } else if avx2::available() {
            avx2::part
        } else {
            portable_part
        };
        // A few spans per thread, so a helper that starts late leaves its share to the others.
        let span = self.rows.div_ceil(4 * team::threads()).max(1);
        team::for_each_chunk(&mut yt, span * m, |s, out| {
            let first = s * span;
            let rows = out.len() / m;
            let part = Part {
                format: self.format,
                cols: self.cols,
                quants: &self.quants[first * bytes_per_row..(first + rows) * bytes_per_row],
                scales: &self.scales[first * nb..(first + rows) * nb],
                supers: &self.supers[first * ns..(first + rows) * ns],
            };
            kernel(&part, &input, out);
        });
        let mut y = vec![0f32; m * self.rows];
        for o in 0..self.rows {
            for j in 0..m {
                y[j * self.rows + o] = yt[o * m + j];
            }
        }
        Ok(y)
    }
}

/// One super-block `sup` of an input row quantised into `qs` (as long): returns its scale
/// `d = max|x| / 127` with `q = round(x / d)`, or NaN, leaving `qs` alone, where a value is not
/// finite. [`avx512::quantize_super`] gives the same integers and scale.
fn quantize_super(sup: &[f32], qs: &mut [i8]) -> f32 {
    // Eight lanes of the largest magnitude (vectorises; NaN fails `is_finite` below).
    let mut lanes = [0f32; 8];
    for c in sup.chunks(8) {
        for (m, &v) in lanes.iter_mut().zip(c) {
            let a = v.abs();
            *m = if a > *m { a } else { *m };
        }
    }
    let amax = lanes.iter().fold(0f32, |m, &v| if v > m { v } else { m });
    if !amax.is_finite() || sup.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    let d = amax / 127.0;
    let inv = inverse(d);
    qs.iter_mut()
        .zip(sup)
        .for_each(|(q, &v)| *q = round(v * inv) as i8);
    d
}

/// `1 / d`, or 0 for a block of zeros (whose scale is 0) and for a scale so small (values
/// below ≈ 1e-36) that `1 / d` overflows: such a block quantises to zeros instead of ±∞.
fn inverse(d: f32) -> f32 {
    let inv = 1.0 / d;
    if d == 0.0 || !inv.is_finite() {
        0.0
    } else {
        inv
    }
}

/// `v` rounded to the nearest integer, ties to even, for `|v| < 2²²` (the adding and
/// subtracting of 1.5 · 2²³ vectorises, where `f32::round` is a library call per value).
#[inline(always)]
fn round(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// Blocks a group of the 4-bit AVX-512 kernel: one 64-byte load of packed weights.
const GROUP: usize = 4;

/// Groups of [`GROUP`] blocks in a row of `blocks` blocks (the last may be short).
fn groups_per_row(blocks: usize) -> usize {
    blocks.div_ceil(GROUP)
}

/// `q`'s `m` rows of `cols` values in the order of [`QInput::nibble_order`].
fn nibble_order(q: &[i8], m: usize, cols: usize) -> Vec<i8> {
    let nb = cols / BLOCK;
    let per_row = groups_per_row(nb) * GROUP * BLOCK;
    let half = BLOCK / 2;
    let mut out = vec![0i8; m * per_row];
    for (row, o) in q.chunks_exact(cols).zip(out.chunks_exact_mut(per_row)) {
        for (b, block) in row.chunks_exact(BLOCK).enumerate() {
            let (g, k) = (b / GROUP, b % GROUP);
            let at = g * GROUP * BLOCK + k * half;
            o[at..at + half].copy_from_slice(&block[..half]);
            let at = at + GROUP * half;
            o[at..at + half].copy_from_slice(&block[half..]);
        }
    }
    out
}

/// Input rows quantised per super-block: `x ≈ scale · q`.
struct QInput {
    m: usize,
    cols: usize,
    /// `[m, cols]`, the values.
    q: Vec<i8>,
    /// 4-bit weights only (else empty), for the AVX-512 kernel: `[m, groups · 2 · GROUP / 2]`,
    /// each row in groups of [`GROUP`] blocks (the last padded with zeros), a group's values
    /// in the order its packed weights unpack: the first 16 values of each of its blocks, then
    /// the last 16 of each (a 64-byte load of four blocks' bytes splits into the low nibbles,
    /// values 0–15 of each block, and the high ones, values 16–31).
    nibble_order: Vec<i8>,
    /// 4-bit weights only (else empty): `[m, cols / BLOCK]`, `−8 · Σ q` of each block (the
    /// weights' offset of 8) in 16 bits (`|Σ q| ≤ 32 · 127`, so `8 · 4064 = 32512` fits).
    neg8_sums: Vec<i16>,
    /// `[m, super-blocks a row]`; NaN for a super-block holding a non-finite input.
    scale: Vec<f32>,
}

impl QInput {
    /// `x`'s `m` rows quantised, with what the kernel for `format` needs besides.
    fn new(x: &[f32], m: usize, cols: usize, format: QFormat) -> Self {
        let mut q = vec![0i8; m * cols];
        let mut scale = Vec::with_capacity(m * supers_per_row(cols / BLOCK));
        let sups = x.chunks_exact(cols).flat_map(|row| row.chunks(SUPER));
        let qsups = q
            .chunks_exact_mut(cols)
            .flat_map(|row| row.chunks_mut(SUPER));
        let fast = avx512::available();
        for (sup, qs) in sups.zip(qsups) {
            scale.push(if fast {
                // SAFETY: the CPU has AVX-512 F/BW (checked); `qs` is `sup`'s length, a
                // multiple of 16 (super-blocks are whole blocks of 32).
                unsafe { avx512::quantize_super(sup, qs) }
            } else {
                quantize_super(sup, qs)
            });
        }
        let (nibble_order, neg8_sums) = match format {
            QFormat::Int8 => (Vec::new(), Vec::new()),
            QFormat::Int4 => {
                let neg8 = q
                    .chunks_exact(BLOCK)
                    .map(|b| (-8 * b.iter().map(|&v| v as i32).sum::<i32>()) as i16)
                    .collect();
                (nibble_order(&q, m, cols), neg8)
            }
        };
        Self {
            m,
            cols,
            q,
            nibble_order,
            neg8_sums,
            scale,
        }
    }

    /// Row `j` of `nibble_order` (empty for 8-bit weights).
    fn row_nibble_order(&self, j: usize) -> &[i8] {
        let n = groups_per_row(self.cols / BLOCK) * GROUP * BLOCK;
        self.nibble_order
            .get(j * n..(j + 1) * n)
            .unwrap_or_default()
    }

    /// Row `j` of `neg8_sums` (empty for 8-bit weights).
    fn row_neg8_sums(&self, j: usize) -> &[i16] {
        let nb = self.cols / BLOCK;
        self.neg8_sums.get(j * nb..(j + 1) * nb).unwrap_or_default()
    }

    fn row_q(&self, j: usize) -> &[i8] {
        &self.q[j * self.cols..(j + 1) * self.cols]
    }

    fn row_scale(&self, j: usize) -> &[f32] {
        let ns = supers_per_row(self.cols / BLOCK);
        &self.scale[j * ns..(j + 1) * ns]
    }
}

/// A span of whole rows of a [`QMatrix`], one thread's share.
struct Part<'a> {
    format: QFormat,
    cols: usize,
    quants: &'a [u8],
    scales: &'a [i8],
    supers: &'a [f32],
}

impl Part<'_> {
    /// Whether the part holds `rows` whole rows and `input` matches it: what the x86 kernels
    /// check before they read.
    fn fits(&self, input: &QInput, rows: usize) -> bool {
        let (m, nb) = (input.m, self.cols / BLOCK);
        let ns = supers_per_row(nb);
        self.quants.len() == rows * nb * self.format.block_bytes()
            && self.scales.len() == rows * nb
            && self.supers.len() == rows * ns
            && input.cols == self.cols
            && input.q.len() == m * self.cols
            && match self.format {
                QFormat::Int8 => true,
                QFormat::Int4 => input.neg8_sums.len() == m * nb,
            }
            && input.scale.len() == m * ns
    }
}

/// One weight row of a [`Part`]: its blocks' bytes, integer scales and super-block scales.
struct Row<'a> {
    q: &'a [u8],
    s: &'a [i8],
    d: &'a [f32],
}

/// `out[r · m + j] = pair(row r, j, j + 1).0` (and `.1` for row `j + 1`): a kernel's product of
/// one weight row with two input rows (the same row twice for an odd last one), over the part.
fn each_row_pair(
    part: &Part,
    input: &QInput,
    out: &mut [f32],
    pair: impl Fn(&Row, usize, usize) -> (f32, f32),
) {
    let m = input.m;
    let nb = part.cols / BLOCK;
    let ns = supers_per_row(nb);
    let bb = part.format.block_bytes();
    for (r, ys) in out.chunks_exact_mut(m).enumerate() {
        let row = Row {
            q: &part.quants[r * nb * bb..(r + 1) * nb * bb],
            s: &part.scales[r * nb..(r + 1) * nb],
            d: &part.supers[r * ns..(r + 1) * ns],
        };
        for j in (0..m).step_by(2) {
            let j1 = if j + 1 < m { j + 1 } else { j };
            let (a, b) = pair(&row, j, j1);
            ys[j] = a;
            if j1 != j {
                ys[j1] = b;
            }
        }
    }
}

/// `out[r · m + j] = row r of the part · input row j`, a super-block at a time in integers.
fn portable_part(part: &Part, input: &QInput, out: &mut [f32]) {
    let m = input.m;
    let nb = part.cols / BLOCK;
    let bb = part.format.block_bytes();
    let ns = supers_per_row(nb);
    let mut w = [0i8; BLOCK];
    for (r, ys) in out.chunks_mut(m).enumerate() {
        ys.fill(0.0);
        for sb in 0..ns {
            let mut isum = [0i32; 2];
            let mut j0 = 0;
            while j0 < m {
                isum.fill(0);
                for b in sb * SUB..((sb + 1) * SUB).min(nb) {
                    let at = (r * nb + b) * bb;
                    let q = &part.quants[at..at + bb];
                    match part.format {
                        QFormat::Int8 => w.iter_mut().zip(q).for_each(|(w, &v)| *w = v as i8),
                        QFormat::Int4 => {
                            for (i, &v) in q.iter().enumerate() {
                                w[i] = (v & 15) as i8 - 8;
                                w[i + BLOCK / 2] = (v >> 4) as i8 - 8;
                            }
                        }
                    }
                    let s = part.scales[r * nb + b] as i32;
                    for (t, sum) in isum.iter_mut().enumerate().take(m - j0) {
                        let xq = &input.row_q(j0 + t)[b * BLOCK..(b + 1) * BLOCK];
                        let dot: i32 = w.iter().zip(xq).map(|(&a, &c)| a as i32 * c as i32).sum();
                        *sum += s * dot;
                    }
                }
                let d = part.supers[r * ns + sb];
                for (t, sum) in isum.iter().enumerate().take(m - j0) {
                    ys[j0 + t] += *sum as f32 * (d * input.row_scale(j0 + t)[sb]);
                }
                j0 += 2;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    use super::{Part, QInput};

    pub fn available() -> bool {
        false
    }
    pub fn part(part: &Part, input: &QInput, out: &mut [f32]) {
        super::portable_part(part, input, out)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    pub use super::avx2::{available, part};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gemv::tests::{naive, values};

    /// Quantising and dequantising keeps every weight within half a step of its block (a
    /// whole step for 4 bits, whose levels reach −8 steps but only +7), where the step is at
    /// most the block's own plus the super-block's finest (the integer scale rounds up).
    #[test]
    fn dequantized_weights_are_within_half_a_step() {
        // Rows of two full super-blocks and a short one (four blocks).
        let (rows, cols) = (3, 640);
        let mut w = values(3, rows * cols);
        w[64..96].fill(0.0); // a block of zeros (integer scale 0)
        w[cols + 256..cols + 512].fill(0.0); // a super-block of zeros (scale 0)
        w[100] = 40.0; // a block far larger than its neighbours
        for format in [QFormat::Int8, QFormat::Int4] {
            let q = QMatrix::quantize(&w, rows, cols, format).unwrap();
            assert_eq!(q.dims(), (rows, cols));
            let (levels, steps) = match format {
                QFormat::Int8 => (127.0, 0.5),
                QFormat::Int4 => (8.0, 1.0),
            };
            let blocks = rows * cols / BLOCK;
            assert_eq!(
                q.bytes(),
                blocks * (format.block_bytes() + 1) + rows * 3 * 4,
                "{format:?}"
            );
            let back = q.dequantize();
            let sups = |v: &[f32]| -> Vec<Vec<f32>> {
                v.chunks(cols)
                    .flat_map(|r| r.chunks(SUPER).map(<[f32]>::to_vec))
                    .collect()
            };
            for (sup, (a, b)) in sups(&w).iter().zip(sups(&back)).enumerate() {
                let amax = |v: &[f32]| v.iter().fold(0f32, |m, v| m.max(v.abs()));
                let finest = amax(a) / levels / 127.0;
                for (blk, (a, b)) in a.chunks(BLOCK).zip(b.chunks(BLOCK)).enumerate() {
                    let tol = (amax(a) / levels + finest) * steps * 1.0001 + 1e-7;
                    for (x, y) in a.iter().zip(b) {
                        assert!(
                            (x - y).abs() <= tol,
                            "{format:?} super {sup} block {blk}: {x} → {y} (tol {tol})"
                        );
                    }
                }
            }
            assert!(back[64..96].iter().all(|&v| v == 0.0));
            assert!(back[cols + 256..cols + 512].iter().all(|&v| v == 0.0));
        }
    }

    /// Runs `kernel` on every case: 1–5 rows (odd and even), rows of one block to sixteen
    /// super-blocks (with and without a short last one, with an odd number of blocks), and more
    /// output rows than threads or fewer; it must give the product of the dequantised weights
    /// with the dequantised inputs (what `matmul_rows` computes, whichever kernel it takes).
    fn check_kernel(name: &str, kernel: fn(&Part, &QInput, &mut [f32])) {
        let cases = [
            (1, 256, 3),
            (2, 1024, 37),
            (3, 544, 130),
            (5, 96, 6),
            (2, 4096, 1),
            (2, 32, 9),
            (4, 480, 5),
        ];
        for (m, n, out) in cases {
            for format in [QFormat::Int8, QFormat::Int4] {
                let w = values(1, out * n);
                let x = values(2, m * n);
                let q = QMatrix::quantize(&w, out, n, format).unwrap();
                let input = QInput::new(&x, m, n, format);
                let xd: Vec<f32> = input
                    .q
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| v as f32 * input.row_scale(i / n)[i % n / SUPER])
                    .collect();
                let want = naive(&q.dequantize(), &xd, m, n, out);
                let got = q.matmul_rows(&x, m).unwrap();
                let part = Part {
                    format,
                    cols: n,
                    quants: &q.quants,
                    scales: &q.scales,
                    supers: &q.supers,
                };
                let mut direct = vec![0f32; out * m];
                kernel(&part, &input, &mut direct);
                let tol = 1e-5 * n as f32;
                for j in 0..m {
                    for o in 0..out {
                        let v = want[j * out + o];
                        let (g, d) = (got[j * out + o], direct[o * m + j]);
                        assert!((g - v).abs() < tol, "matmul_rows {format:?} {m}x{n}x{out}");
                        assert!(
                            (d - v).abs() < tol,
                            "{name} {format:?} {m}x{n}x{out}: {d} vs {v}"
                        );
                    }
                }
                // And the product is close to the f32 one.
                let exact = naive(&w, &x, m, n, out);
                let tol = if format == QFormat::Int8 { 0.02 } else { 0.2 } * (n as f32).sqrt();
                for (a, b) in got.iter().zip(&exact) {
                    assert!((a - b).abs() < tol, "{format:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn the_portable_kernel_equals_the_product_of_the_dequantized_matrix() {
        check_kernel("portable", portable_part);
    }

    /// Every x86-64 CPU this runs on has AVX2 (the kernel falls back to the portable one
    /// without it, hence the check).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_kernel_equals_the_product_of_the_dequantized_matrix() {
        assert!(avx2::available(), "this CPU has no AVX2 and FMA");
        check_kernel("avx2", avx2::part);
    }

    /// The AVX-512 VNNI kernel, called directly. A CPU without it cannot run it, so it is
    /// ignored by default, visibly, rather than passing there without testing anything; on a
    /// CPU with it, `matmul_rows` in every test here takes this kernel too.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[ignore = "needs a CPU with AVX-512 VNNI (fails without): run it there with `-- --ignored`"]
    fn the_avx512_kernel_equals_the_product_of_the_dequantized_matrix() {
        assert!(avx512::available(), "this CPU has no AVX-512 VNNI");
        check_kernel("avx512", avx512::part);
    }

    /// The AVX-512 input quantisation gives the portable one's integers and scale bit for bit:
    /// random values, ties at every half step (`x / d = k + 0.5`, which round to even), a
    /// super-block of zeros, one of 4 blocks, values near f32's largest and smallest, and the
    /// non-finite cases (NaN scale, integers left as they were).
    #[test]
    #[ignore = "needs a CPU with AVX-512 VNNI (fails without): run it there with `-- --ignored avx512`"]
    #[allow(unsafe_code)]
    fn the_avx512_quantisation_equals_the_portable_one() {
        assert!(avx512::available(), "this CPU has no AVX-512 VNNI");
        let mut cases: Vec<Vec<f32>> = (0..4).map(|s| values(s, SUPER)).collect();
        // amax 127 makes d = 1: every k + 0.5 is a tie.
        let mut ties: Vec<f32> = (0..SUPER).map(|i| i as f32 / 2.0 - 63.5).collect();
        ties[0] = 127.0;
        cases.push(ties);
        cases.push(vec![0.0; SUPER]);
        cases.push(values(9, 4 * BLOCK));
        cases.push(values(10, SUPER).iter().map(|v| v * 3e37).collect());
        cases.push(values(11, SUPER).iter().map(|v| v * 1e-39).collect());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = values(12, SUPER);
            v[77] = bad;
            cases.push(v);
        }
        for (n, x) in cases.iter().enumerate() {
            let (mut a, mut b) = (vec![3i8; x.len()], vec![3i8; x.len()]);
            let da = quantize_super(x, &mut a);
            // SAFETY: the CPU has AVX-512 (asserted); equal lengths, a multiple of 16.
            let db = unsafe { avx512::quantize_super(x, &mut b) };
            assert_eq!(da.to_bits(), db.to_bits(), "case {n}: scale {da} and {db}");
            assert_eq!(a, b, "case {n}");
            assert_eq!(da.is_nan(), n >= cases.len() - 3, "case {n}");
        }
    }

    #[test]
    fn bad_shapes_and_values_are_refused_and_nonfinite_inputs_give_nan() {
        assert!(QMatrix::quantize(&[0.0; 30], 1, 30, QFormat::Int8).is_err());
        assert!(QMatrix::quantize(&[0.0; 256], 2, 256, QFormat::Int8).is_err());
        assert!(QMatrix::quantize(&[], 0, 0, QFormat::Int8).is_err());
        let mut w = vec![0.5; 512];
        w[3] = f32::NAN;
        assert!(QMatrix::quantize(&w, 2, 256, QFormat::Int4).is_err());
        let q = QMatrix::quantize(&values(1, 1024), 2, 512, QFormat::Int8).unwrap();
        assert!(q.matmul_rows(&[1.0; 511], 1).is_err());
        let mut x = values(2, 1024);
        x[700] = f32::INFINITY;
        let y = q.matmul_rows(&x, 2).unwrap();
        assert!(y[0].is_finite() && y[1].is_finite());
        assert!(y[2].is_nan() && y[3].is_nan());
    }
}
