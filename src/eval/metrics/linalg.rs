//! Minimal dense linear algebra for the evaluation metrics, in `f64`.
//!
//! What: a row-major [`Matrix`], sample mean/covariance ([`mean_cov`]), a
//! cyclic Jacobi eigen-solver for symmetric matrices ([`sym_eigen`],
//! [`sym_eigenvalues`]) and the PSD matrix square root ([`sqrtm_psd`]).
//!
//! Why hand-written: FAD needs exactly one hard operation — the eigen
//! decomposition of a symmetric 128×128 matrix — and pulling a general linear
//! algebra crate into the studio for that is not worth the build time. Jacobi is
//! slower than Householder + QL but is short, unconditionally stable for
//! symmetric input and yields eigenvalues to high *relative* accuracy, which
//! matters for the tiny eigenvalues of nearly singular latent covariances.
//!
//! Precision: inputs are `f32` latents, everything here is accumulated in `f64`.
//! Covariance uses two passes (mean first, then centred products) so that
//! latents with a large common offset do not lose digits.
//!
//! Caveat (applies to all metrics built on this): FAD on EnCodec latents is not
//! comparable with VGGish FAD numbers published elsewhere.

use crate::error::metrics::{MetricsError, Result};

/// Off-diagonal convergence tolerance of the Jacobi solver, relative to the
/// Frobenius norm of the input: iterate until `off(A) <= 1e-12 * ||A||_F`.
pub const JACOBI_TOL: f64 = 1e-12;

/// Maximum number of Jacobi sweeps (a sweep visits every off-diagonal pair
/// once). Convergence is quadratic; 128×128 covariances need about 8–12.
pub const JACOBI_MAX_SWEEPS: usize = 100;

/// Relative tolerance below which a negative eigenvalue is treated as rounding
/// noise and clamped to zero by [`sqrtm_psd`] (relative to the largest
/// eigenvalue magnitude).
pub const PSD_CLAMP_REL: f64 = 1e-9;

/// Rows per block in the covariance accumulation (keeps a `dim × block`
/// panel of centred data in L2 cache).
const COV_BLOCK: usize = 256;

/// Dense row-major matrix of `f64`. `data[r * cols + c]` is element (r, c).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    /// All-zero `rows × cols` matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// `n × n` identity.
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = 1.0;
        }
        m
    }

    /// Wraps row-major data, checking its length.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(MetricsError::DimMismatch {
                what: "Matrix::from_vec data length",
                expected: rows * cols,
                got: data.len(),
            });
        }
        Ok(Self { rows, cols, data })
    }

    /// Builds a matrix from equally long rows.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let cols = rows.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(rows.len() * cols);
        for r in rows {
            if r.len() != cols {
                return Err(MetricsError::DimMismatch {
                    what: "Matrix::from_rows row length",
                    expected: cols,
                    got: r.len(),
                });
            }
            data.extend_from_slice(r);
        }
        Ok(Self {
            rows: rows.len(),
            cols,
            data,
        })
    }

    /// Diagonal matrix with the given diagonal.
    pub fn diag(values: &[f64]) -> Self {
        let n = values.len();
        let mut m = Self::zeros(n, n);
        for (i, v) in values.iter().enumerate() {
            m.data[i * n + i] = *v;
        }
        m
    }

    /// Element (r, c). Panics only on out-of-range indices, like slice indexing.
    #[inline]
    pub fn get(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    /// Sets element (r, c).
    #[inline]
    pub fn set(&mut self, r: usize, c: usize, v: f64) {
        self.data[r * self.cols + c] = v;
    }

    /// Row `r` as a slice.
    #[inline]
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Checks that `data.len() == rows * cols` (the fields are public).
    pub fn check(&self) -> Result<()> {
        if self.data.len() != self.rows * self.cols {
            return Err(MetricsError::DimMismatch {
                what: "Matrix data length",
                expected: self.rows * self.cols,
                got: self.data.len(),
            });
        }
        Ok(())
    }

    /// Checks the matrix is square and well formed; returns its order.
    pub fn check_square(&self) -> Result<usize> {
        self.check()?;
        if self.rows != self.cols {
            return Err(MetricsError::DimMismatch {
                what: "square matrix columns",
                expected: self.rows,
                got: self.cols,
            });
        }
        Ok(self.rows)
    }

    /// Transpose.
    pub fn transpose(&self) -> Self {
        let mut t = Self::zeros(self.cols, self.rows);
        for r in 0..self.rows {
            for c in 0..self.cols {
                t.data[c * self.rows + r] = self.data[r * self.cols + c];
            }
        }
        t
    }

    /// Matrix product `self * other` (i-k-j loop order, vectorisable inner loop).
    pub fn matmul(&self, other: &Matrix) -> Result<Matrix> {
        self.check()?;
        other.check()?;
        if self.cols != other.rows {
            return Err(MetricsError::DimMismatch {
                what: "matmul inner dimension",
                expected: self.cols,
                got: other.rows,
            });
        }
        let (n, m) = (self.rows, other.cols);
        let mut out = Matrix::zeros(n, m);
        for i in 0..n {
            let out_row = &mut out.data[i * m..(i + 1) * m];
            for k in 0..self.cols {
                let a = self.data[i * self.cols + k];
                if a == 0.0 {
                    continue;
                }
                let b_row = &other.data[k * m..(k + 1) * m];
                for (o, b) in out_row.iter_mut().zip(b_row) {
                    *o += a * b;
                }
            }
        }
        Ok(out)
    }

    /// Element-wise `self - other`.
    pub fn sub(&self, other: &Matrix) -> Result<Matrix> {
        self.check()?;
        other.check()?;
        if self.rows != other.rows || self.cols != other.cols {
            return Err(MetricsError::DimMismatch {
                what: "sub shape",
                expected: self.rows * self.cols,
                got: other.rows * other.cols,
            });
        }
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| a - b)
            .collect();
        Ok(Matrix {
            rows: self.rows,
            cols: self.cols,
            data,
        })
    }

    /// Sum of the diagonal (of the leading square part).
    pub fn trace(&self) -> f64 {
        let n = self.rows.min(self.cols);
        (0..n).map(|i| self.data[i * self.cols + i]).sum()
    }

    /// Largest absolute element.
    pub fn max_abs(&self) -> f64 {
        self.data.iter().fold(0.0_f64, |m, v| m.max(v.abs()))
    }

    /// `max |a_ij - a_ji|` of a square matrix.
    pub fn max_asymmetry(&self) -> f64 {
        let n = self.rows.min(self.cols);
        let mut worst = 0.0_f64;
        for i in 0..n {
            for j in i + 1..n {
                let d = (self.data[i * self.cols + j] - self.data[j * self.cols + i]).abs();
                worst = worst.max(d);
            }
        }
        worst
    }

    /// Replaces a square matrix by `(A + Aᵀ) / 2`.
    pub fn symmetrize(&mut self) {
        let n = self.rows.min(self.cols);
        for i in 0..n {
            for j in i + 1..n {
                let a = self.data[i * self.cols + j];
                let b = self.data[j * self.cols + i];
                let m = 0.5 * (a + b);
                self.data[i * self.cols + j] = m;
                self.data[j * self.cols + i] = m;
            }
        }
    }

    /// True when every element is finite.
    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }
}

/// Dot product with four independent accumulators (lets the compiler use
/// SIMD lanes without `-ffast-math`).
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0_f64; 4];
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Sample mean and unbiased (`n - 1`) covariance of `samples`, one `Vec<f32>`
/// per sample (e.g. one 128-d EnCodec frame per row).
pub fn mean_cov(samples: &[Vec<f32>]) -> Result<(Vec<f64>, Matrix)> {
    let dim = samples.first().map_or(0, Vec::len);
    mean_cov_rows(samples.len(), dim, |i| samples[i].as_slice())
}

/// Mean/covariance over `n` rows supplied by `row(i)`; the workhorse behind
/// [`mean_cov`] and the bootstrap resamplers (which pass
/// gathered indices instead of copying frames).
pub(crate) fn mean_cov_rows<'a, F>(n: usize, dim: usize, row: F) -> Result<(Vec<f64>, Matrix)>
where
    F: Fn(usize) -> &'a [f32],
{
    if n < 2 {
        return Err(MetricsError::TooFewSamples {
            what: "covariance (samples)",
            n,
            need: 2,
        });
    }
    if dim == 0 {
        return Err(MetricsError::InvalidArgument(
            "covariance: samples have dimension 0".into(),
        ));
    }
    // Pass 1: validate and accumulate the mean.
    let mut mean = vec![0.0_f64; dim];
    for i in 0..n {
        let r = row(i);
        if r.len() != dim {
            return Err(MetricsError::DimMismatch {
                what: "covariance sample length",
                expected: dim,
                got: r.len(),
            });
        }
        for (m, &v) in mean.iter_mut().zip(r) {
            if !v.is_finite() {
                return Err(MetricsError::NotFinite(format!(
                    "sample {i} has a non-finite component"
                )));
            }
            *m += f64::from(v);
        }
    }
    let inv_n = 1.0 / n as f64;
    for m in &mut mean {
        *m *= inv_n;
    }

    // Pass 2: blocked accumulation of centred outer products. Each block of
    // rows is transposed into a `dim × block` panel so that every (i, j) entry
    // is a contiguous dot product.
    let mut acc = vec![0.0_f64; dim * dim];
    let mut panel = vec![0.0_f64; dim * COV_BLOCK.min(n)];
    let mut start = 0;
    while start < n {
        let b = COV_BLOCK.min(n - start);
        for k in 0..b {
            let r = row(start + k);
            for (i, (&v, m)) in r.iter().zip(&mean).enumerate() {
                panel[i * b + k] = f64::from(v) - m;
            }
        }
        for i in 0..dim {
            let ci = &panel[i * b..(i + 1) * b];
            for j in i..dim {
                let cj = &panel[j * b..(j + 1) * b];
                acc[i * dim + j] += dot(ci, cj);
            }
        }
        start += b;
    }
    let inv = 1.0 / (n as f64 - 1.0);
    let mut cov = Matrix::zeros(dim, dim);
    for i in 0..dim {
        for j in i..dim {
            let v = acc[i * dim + j] * inv;
            cov.data[i * dim + j] = v;
            cov.data[j * dim + i] = v;
        }
    }
    Ok((mean, cov))
}

/// Eigen-decomposition `A = V diag(values) Vᵀ` of a symmetric matrix.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SymEigen {
    /// Eigenvalues in ascending order.
    pub values: Vec<f64>,
    /// Orthonormal eigenvectors as **columns**, in the order of `values`.
    pub vectors: Matrix,
    /// Jacobi sweeps used.
    pub sweeps: usize,
}

/// Validates a matrix for the symmetric solver and returns (n, symmetrised copy).
fn prepare_symmetric(a: &Matrix) -> Result<(usize, Vec<f64>)> {
    let n = a.check_square()?;
    if !a.is_finite() {
        return Err(MetricsError::NotFinite(
            "matrix passed to the symmetric eigen-solver".into(),
        ));
    }
    let asym = a.max_asymmetry();
    if asym > 1e-9 * a.max_abs().max(f64::MIN_POSITIVE) {
        return Err(MetricsError::NotSymmetric {
            max_asymmetry: asym,
        });
    }
    let mut m = a.clone();
    m.symmetrize();
    Ok((n, m.data))
}

/// Cyclic Jacobi on a symmetric row-major buffer, working on the diagonal and
/// the strictly upper triangle only (the lower triangle is left stale, so no
/// strided mirror writes are needed). Eigenvalues end on the diagonal;
/// eigenvectors accumulate as rows of `vt` when requested. Returns the sweeps
/// used.
fn jacobi(n: usize, a: &mut [f64], mut vt: Option<&mut [f64]>) -> Result<usize> {
    let upper_sq = |a: &[f64]| -> f64 {
        let mut s = 0.0;
        for p in 0..n {
            for v in &a[p * n + p + 1..(p + 1) * n] {
                s += v * v;
            }
        }
        s
    };
    let diag_sq: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
    let norm = (diag_sq + 2.0 * upper_sq(a)).sqrt();
    if norm == 0.0 || n < 2 {
        return Ok(0);
    }
    let mut off = (2.0 * upper_sq(a)).sqrt();
    let mut tmp = vec![0.0_f64; n];
    for sweep in 0..JACOBI_MAX_SWEEPS {
        if off <= JACOBI_TOL * norm {
            return Ok(sweep);
        }
        // Early sweeps skip small pairs (they will shrink anyway); this is the
        // classic threshold strategy and saves a good part of the work.
        let thresh = if sweep < 3 {
            let mut sum_abs = 0.0;
            for p in 0..n {
                for v in &a[p * n + p + 1..(p + 1) * n] {
                    sum_abs += v.abs();
                }
            }
            0.2 * sum_abs / (n * n) as f64
        } else {
            0.0
        };
        for p in 0..n - 1 {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let app = a[p * n + p];
                let aqq = a[q * n + q];
                let g = 100.0 * apq.abs();
                // After a few sweeps, an element negligible against both
                // diagonal entries is set to zero outright.
                if sweep > 3 && app.abs() + g == app.abs() && aqq.abs() + g == aqq.abs() {
                    a[p * n + q] = 0.0;
                    continue;
                }
                if apq.abs() <= thresh {
                    continue;
                }
                let h = aqq - app;
                let t = if h.abs() + g == h.abs() {
                    apq / h
                } else {
                    let theta = 0.5 * h / apq;
                    let t = 1.0 / (theta.abs() + theta.hypot(1.0));
                    if theta < 0.0 {
                        -t
                    } else {
                        t
                    }
                };
                let c = 1.0 / t.hypot(1.0);
                let s = t * c;
                let tau = s / (1.0 + c);
                a[p * n + p] = app - t * apq;
                a[q * n + q] = aqq + t * apq;
                a[p * n + q] = 0.0;
                let rot = |g: f64, h: f64| (g - s * (h + g * tau), h + s * (g - h * tau));
                // (j, p) and (j, q) for j < p: two upper-triangle columns.
                for j in 0..p {
                    let (x, y) = rot(a[j * n + p], a[j * n + q]);
                    a[j * n + p] = x;
                    a[j * n + q] = y;
                }
                // (p, j) and (j, q) for p < j < q.
                for j in p + 1..q {
                    let (x, y) = rot(a[p * n + j], a[j * n + q]);
                    a[p * n + j] = x;
                    a[j * n + q] = y;
                }
                // (p, j) and (q, j) for j > q: two contiguous row tails.
                {
                    let (head, tail) = a.split_at_mut(q * n);
                    let rp = &mut head[p * n + q + 1..(p + 1) * n];
                    let rq = &mut tail[q + 1..n];
                    for (x, y) in rp.iter_mut().zip(rq.iter_mut()) {
                        let (nx, ny) = rot(*x, *y);
                        *x = nx;
                        *y = ny;
                    }
                }
                if let Some(v) = vt.as_deref_mut() {
                    rotate_rows(v, n, p, q, s, tau, &mut tmp);
                }
            }
        }
        off = (2.0 * upper_sq(a)).sqrt();
    }
    if off <= JACOBI_TOL * norm {
        return Ok(JACOBI_MAX_SWEEPS);
    }
    Err(MetricsError::NoConvergence {
        sweeps: JACOBI_MAX_SWEEPS,
        off: off / norm,
    })
}

/// Applies the Jacobi rotation to rows `p` and `q` (p < q) of a row-major
/// `n × n` buffer: `row_p ← row_p − s(row_q + τ row_p)`,
/// `row_q ← row_q + s(row_p − τ row_q)`.
#[inline]
fn rotate_rows(m: &mut [f64], n: usize, p: usize, q: usize, s: f64, tau: f64, tmp: &mut [f64]) {
    let (head, tail) = m.split_at_mut(q * n);
    let rp = &mut head[p * n..(p + 1) * n];
    let rq = &mut tail[..n];
    tmp.copy_from_slice(rq);
    for ((x, y), yo) in rp.iter_mut().zip(rq.iter_mut()).zip(tmp.iter()) {
        let g = *x;
        let h = *yo;
        *x = g - s * (h + g * tau);
        *y = h + s * (g - h * tau);
    }
}

/// Eigenvalues and eigenvectors of a symmetric matrix by cyclic Jacobi
/// (converged to [`JACOBI_TOL`] relative off-diagonal norm, at most
/// [`JACOBI_MAX_SWEEPS`] sweeps). Eigenvalues ascending; vectors as columns.
pub fn sym_eigen(a: &Matrix) -> Result<SymEigen> {
    let (n, mut m) = prepare_symmetric(a)?;
    let mut vt = Matrix::identity(n).data;
    let sweeps = jacobi(n, &mut m, Some(&mut vt))?;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[i * n + i].total_cmp(&m[j * n + j]));
    let values = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vectors = Matrix::zeros(n, n);
    for (col, &k) in order.iter().enumerate() {
        for r in 0..n {
            vectors.data[r * n + col] = vt[k * n + r];
        }
    }
    Ok(SymEigen {
        values,
        vectors,
        sweeps,
    })
}

/// Eigenvalues only (ascending) of a symmetric matrix; about half the work of
/// [`sym_eigen`] because no eigenvectors are accumulated.
pub fn sym_eigenvalues(a: &Matrix) -> Result<Vec<f64>> {
    let (n, mut m) = prepare_symmetric(a)?;
    jacobi(n, &mut m, None)?;
    let mut values: Vec<f64> = (0..n).map(|i| m[i * n + i]).collect();
    values.sort_by(f64::total_cmp);
    Ok(values)
}

/// Clamps eigenvalues of a PSD matrix: negatives within
/// [`PSD_CLAMP_REL`] × (largest magnitude) become 0, larger negatives are an
/// error.
pub(crate) fn clamp_psd(values: &mut [f64]) -> Result<()> {
    let scale = values.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    for v in values.iter_mut() {
        if *v < 0.0 {
            if *v < -PSD_CLAMP_REL * scale {
                return Err(MetricsError::NotPositiveSemiDefinite {
                    eigenvalue: *v,
                    scale,
                });
            }
            *v = 0.0;
        }
    }
    Ok(())
}

/// Principal square root of a symmetric positive semi-definite matrix via its
/// eigen-decomposition: `V diag(√λ) Vᵀ`, with tiny negative eigenvalues
/// (rounding noise, see [`PSD_CLAMP_REL`]) clamped to 0. The result is exactly
/// symmetric (built as `W Wᵀ` with `W = V diag(λ^{1/4})`).
pub fn sqrtm_psd(a: &Matrix) -> Result<Matrix> {
    let mut e = sym_eigen(a)?;
    clamp_psd(&mut e.values)?;
    let n = e.values.len();
    // W = V diag(λ^{1/4}), stored transposed (rows = scaled eigenvectors) so
    // that W Wᵀ is a sum of contiguous dot products.
    let mut wt = vec![0.0_f64; n * n];
    for k in 0..n {
        let f = e.values[k].sqrt().sqrt();
        for r in 0..n {
            wt[k * n + r] = e.vectors.data[r * n + k] * f;
        }
    }
    let mut out = Matrix::zeros(n, n);
    for i in 0..n {
        for j in i..n {
            let mut s = 0.0;
            for k in 0..n {
                s += wt[k * n + i] * wt[k * n + j];
            }
            out.data[i * n + j] = s;
            out.data[j * n + i] = s;
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Seeded Gaussian sampling shared by the metric tests (Box–Muller; the
    //! allowed dependencies have no normal distribution).
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Standard normal pair via Box–Muller.
    pub fn normal_pair(rng: &mut ChaCha8Rng) -> (f64, f64) {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let th = 2.0 * std::f64::consts::PI * u2;
        (r * th.cos(), r * th.sin())
    }

    /// `n` samples of N(mean, diag(std²)).
    pub fn gaussian_diag(n: usize, mean: &[f64], std: &[f64], seed: u64) -> Vec<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = mean.len();
        (0..n)
            .map(|_| {
                let mut z = Vec::with_capacity(d);
                while z.len() < d {
                    let (a, b) = normal_pair(&mut rng);
                    z.push(a);
                    if z.len() < d {
                        z.push(b);
                    }
                }
                (0..d)
                    .map(|i| (mean[i] + std[i] * z[i]) as f32)
                    .collect::<Vec<f32>>()
            })
            .collect()
    }

    /// `n` samples of N(mean, cov) using `x = mean + cov^{1/2} z`.
    pub fn gaussian_full(n: usize, mean: &[f64], cov: &super::Matrix, seed: u64) -> Vec<Vec<f32>> {
        let root = super::sqrtm_psd(cov).unwrap();
        let d = mean.len();
        let z = gaussian_diag(n, &vec![0.0; d], &vec![1.0; d], seed);
        z.iter()
            .map(|zi| {
                (0..d)
                    .map(|i| {
                        let mut s = mean[i];
                        for (k, zk) in zi.iter().enumerate() {
                            s += root.get(i, k) * f64::from(*zk);
                        }
                        s as f32
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_symmetric(n: usize, seed: u64) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut m = Matrix::zeros(n, n);
        for i in 0..n {
            for j in i..n {
                let v: f64 = rng.random_range(-1.0..1.0);
                m.set(i, j, v);
                m.set(j, i, v);
            }
        }
        m
    }

    fn max_abs_diff(a: &Matrix, b: &Matrix) -> f64 {
        a.sub(b).unwrap().max_abs()
    }

    #[test]
    fn jacobi_reconstructs_random_symmetric_20x20() {
        let a = random_symmetric(20, 7);
        let e = sym_eigen(&a).unwrap();
        let recon = e
            .vectors
            .matmul(&Matrix::diag(&e.values))
            .unwrap()
            .matmul(&e.vectors.transpose())
            .unwrap();
        assert!(max_abs_diff(&a, &recon) < 1e-10, "reconstruction error");
        // Orthonormal eigenvectors.
        let vtv = e.vectors.transpose().matmul(&e.vectors).unwrap();
        assert!(max_abs_diff(&vtv, &Matrix::identity(20)) < 1e-10);
        // Ascending order, and values-only path agrees.
        assert!(e.values.windows(2).all(|w| w[0] <= w[1]));
        let vals = sym_eigenvalues(&a).unwrap();
        for (x, y) in vals.iter().zip(&e.values) {
            assert!((x - y).abs() < 1e-12);
        }
        // Trace is preserved.
        assert!((e.values.iter().sum::<f64>() - a.trace()).abs() < 1e-12);
    }

    #[test]
    fn jacobi_known_2x2_and_diagonal() {
        let a = Matrix::from_rows(&[vec![2.0, 1.0], vec![1.0, 2.0]]).unwrap();
        let v = sym_eigenvalues(&a).unwrap();
        assert!((v[0] - 1.0).abs() < 1e-14 && (v[1] - 3.0).abs() < 1e-14);
        let d = Matrix::diag(&[3.0, -1.0, 2.0]);
        let e = sym_eigen(&d).unwrap();
        assert_eq!(e.values, vec![-1.0, 2.0, 3.0]);
        assert_eq!(e.sweeps, 0);
    }

    #[test]
    fn sqrtm_squares_back() {
        // PSD: B Bᵀ of a random 20×20.
        let b = random_symmetric(20, 11);
        let a = b.matmul(&b.transpose()).unwrap();
        let r = sqrtm_psd(&a).unwrap();
        let back = r.matmul(&r).unwrap();
        assert!(max_abs_diff(&a, &back) < 1e-10 * a.max_abs().max(1.0));
        assert_eq!(r.max_asymmetry(), 0.0);
        // Rank-deficient PSD (rank 1) works thanks to clamping.
        let u = Matrix::from_vec(3, 1, vec![1.0, 2.0, -1.0]).unwrap();
        let a1 = u.matmul(&u.transpose()).unwrap();
        let r1 = sqrtm_psd(&a1).unwrap();
        assert!(max_abs_diff(&r1.matmul(&r1).unwrap(), &a1) < 1e-12);
    }

    #[test]
    fn sqrtm_rejects_indefinite_and_bad_input() {
        let a = Matrix::diag(&[1.0, -0.5]);
        assert!(matches!(
            sqrtm_psd(&a),
            Err(MetricsError::NotPositiveSemiDefinite { .. })
        ));
        let ns = Matrix::from_rows(&[vec![1.0, 2.0], vec![0.0, 1.0]]).unwrap();
        assert!(matches!(
            sym_eigen(&ns),
            Err(MetricsError::NotSymmetric { .. })
        ));
        let rect = Matrix::zeros(2, 3);
        assert!(matches!(
            sym_eigen(&rect),
            Err(MetricsError::DimMismatch { .. })
        ));
        let nan = Matrix::diag(&[f64::NAN, 1.0]);
        assert!(matches!(sym_eigen(&nan), Err(MetricsError::NotFinite(_))));
    }

    #[test]
    fn mean_cov_matches_naive_and_flat() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // 600 rows crosses several COV_BLOCK boundaries.
        let rows: Vec<Vec<f32>> = (0..600)
            .map(|_| {
                (0..5)
                    .map(|_| rng.random_range(-3.0..3.0) + 100.0)
                    .collect()
            })
            .collect();
        let (mean, cov) = mean_cov(&rows).unwrap();
        let n = rows.len() as f64;
        for i in 0..5 {
            let m: f64 = rows.iter().map(|r| f64::from(r[i])).sum::<f64>() / n;
            assert!((m - mean[i]).abs() < 1e-9);
            for j in 0..5 {
                let mj: f64 = rows.iter().map(|r| f64::from(r[j])).sum::<f64>() / n;
                let c: f64 = rows
                    .iter()
                    .map(|r| (f64::from(r[i]) - m) * (f64::from(r[j]) - mj))
                    .sum::<f64>()
                    / (n - 1.0);
                assert!((c - cov.get(i, j)).abs() < 1e-9);
            }
        }
        // Two samples: unbiased variance of {0, 2} is 2.
        let (_, c) = mean_cov(&[vec![0.0], vec![2.0]]).unwrap();
        assert_eq!(c.get(0, 0), 2.0);
    }

    #[test]
    fn mean_cov_errors() {
        assert!(matches!(
            mean_cov(&[vec![1.0]]),
            Err(MetricsError::TooFewSamples { .. })
        ));
        assert!(matches!(
            mean_cov(&[vec![1.0, 2.0], vec![1.0]]),
            Err(MetricsError::DimMismatch { .. })
        ));
        assert!(matches!(
            mean_cov(&[vec![1.0], vec![f32::NAN]]),
            Err(MetricsError::NotFinite(_))
        ));
    }
}
