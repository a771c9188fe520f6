//! Single-precision GEMM through the system's OpenBLAS, loaded at run time.
//!
//! candle's CPU matmul (the `gemm` crate) runs AVX2 micro-kernels at ≈ 80 GFLOP/s on a 2-core
//! AVX-512 Xeon; OpenBLAS's AVX-512 kernels run the training shapes (`[1006 × 1024] ·
//! [1024 × 4096]` and friends) there at ≈ 190–200 GFLOP/s, PyTorch/MKL's speed. Training spends
//! most of its time in those products, so the products of the linear layers ([`linear`]) and of
//! attention ([`matmul`]; the fused attention's `batched` and `product`) and EnCodec's
//! convolutions ([`gemm`], which reads a window of a wider matrix in place) call OpenBLAS when it
//! is there and candle otherwise — the library is an accelerator, never a requirement: without
//! `libopenblas0` (Debian/Ubuntu) everything still runs, only slower. `TUNELAB_BLAS=off` turns
//! it off; [`backend`] says what is in use. Products of a few rows (a decoding step) stay with
//! candle, or `models::gemv` for a frozen weight. Every path here asks [`fast_path`]: f32 on the
//! CPU, `TUNELAB_GENERIC_OPS` not set (`models::nn::fast_path`), and the library loaded.
//!
//! [`matmul`] (and so [`linear`]) is a custom op with its own backward that computes a side's
//! gradient only for an operand that is trained (a `Var` or the result of one): candle's matmul
//! backward computes both sides always, so a LoRA step paid for a full gradient of every frozen
//! matrix.
//!
//! OpenBLAS 0.3.21 (Debian 12) does not recognise recent Xeons and falls back to its slowest
//! generic kernels (≈ 35 GFLOP/s on that Xeon); before loading it we name the core type from
//! the CPU's own feature flags unless the user set `OPENBLAS_CORETYPE`. Its idle threads go to
//! sleep at once after a product (`OPENBLAS_THREAD_TIMEOUT`, unless set) instead of spinning.
//!
//! `unsafe` here: the FFI calls and `batched`'s unzeroed output, each with its SAFETY
//! argument. (The crate's other `unsafe` code: `models::gemv`'s AVX-512 kernel and `memory`'s
//! allocator settings.)

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use crate::error::{Error, Result};
use crate::models::nn::{contiguous_f32, Shortcut};

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

type SgemmFn = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);
type StrFn = unsafe extern "C" fn() -> *const c_char;

struct Blas {
    // Keeps the library mapped for as long as `sgemm` may be called (the whole process).
    _lib: libloading::Library,
    sgemm: SgemmFn,
    name: String,
    /// One product at a time: OpenBLAS's pthreads server has a history of deadlocks and wrong
    /// results when several application threads call it at once (OpenBLAS issues #660, #2126,
    /// #5825), and each call already uses every core, so serialising costs no throughput.
    calls: std::sync::Mutex<()>,
}

static BLAS: OnceLock<Option<Blas>> = OnceLock::new();

/// Wall time (ns) and floating-point operations of every product OpenBLAS has computed in this
/// process, for the benchmarks' account of where a step's time goes ([`product_totals`]).
static PRODUCT_NANOS: AtomicU64 = AtomicU64::new(0);
static PRODUCT_FLOP: AtomicU64 = AtomicU64::new(0);

/// Seconds spent in, and floating-point operations done by, OpenBLAS products so far in this
/// process (`2·m·n·k` per product): a benchmark reads it before and after a step.
pub fn product_totals() -> (f64, f64) {
    (
        PRODUCT_NANOS.load(Ordering::Relaxed) as f64 * 1e-9,
        PRODUCT_FLOP.load(Ordering::Relaxed) as f64,
    )
}

fn blas() -> Option<&'static Blas> {
    BLAS.get_or_init(load).as_ref()
}

/// The BLAS in use for CPU matrix products (`"OpenBLAS 0.3.21 … (core SkylakeX)"`), or `None`
/// when candle's own GEMM is used.
pub fn backend() -> Option<&'static str> {
    blas().map(|b| b.name.as_str())
}

/// Whether OpenBLAS may compute with these tensors: the CPU shortcuts' condition
/// ([`crate::models::nn::fast_path`]) and the library loaded.
pub fn fast_path<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> bool {
    crate::models::nn::fast_path(tensors) && backend().is_some()
}

/// The BLAS in use, for a test of a path that runs only with OpenBLAS: without it such a test
/// would pass on candle's fallback and check nothing, so it fails here, saying why.
#[cfg(test)]
pub(crate) fn loaded_for(test: &str) -> &'static str {
    backend().unwrap_or_else(|| {
        panic!(
            "{test} needs OpenBLAS, which is not loaded (install libopenblas0; TUNELAB_BLAS=off \
             turns it off): on candle's fallback this test would check nothing"
        )
    })
}

fn load() -> Option<Blas> {
    if std::env::var("TUNELAB_BLAS").is_ok_and(|v| v == "off" || v == "0") {
        return None;
    }
    if std::env::var_os("OPENBLAS_CORETYPE").is_none() {
        if let Some(core) = core_type() {
            // OpenBLAS reads this in its load-time constructor, so it must be set before
            // `dlopen`. This runs once, from whichever thread first multiplies matrices.
            std::env::set_var("OPENBLAS_CORETYPE", core);
        }
    }
    if std::env::var_os("OPENBLAS_THREAD_TIMEOUT").is_none() {
        // OpenBLAS's idle threads spin on `sched_yield` for 2²⁸ cycles (≈ 0.1 s) after every
        // product before they sleep; between products the training step's own element-wise
        // work needs those cores. 2⁴ cycles (its minimum): LoRA step 19.0 → 17.6 s (mean of
        // three alternated runs each; `tunelab bench train`).
        std::env::set_var("OPENBLAS_THREAD_TIMEOUT", "4");
    }
    for file in ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"] {
        // SAFETY: loading OpenBLAS runs its initialisers, which only set up its thread pool
        // and kernel tables.
        let Ok(lib) = (unsafe { libloading::Library::new(file) }) else {
            continue;
        };
        // SAFETY: `cblas_sgemm` has this C signature in every CBLAS (cblas.h).
        let sgemm = match unsafe { lib.get::<SgemmFn>(b"cblas_sgemm\0") } {
            Ok(f) => *f,
            Err(_) => continue,
        };
        let text = |sym: &[u8]| -> Option<String> {
            // SAFETY: OpenBLAS's info functions return static NUL-terminated strings.
            unsafe {
                let f = lib.get::<StrFn>(sym).ok()?;
                let p = f();
                (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
            }
        };
        let config = text(b"openblas_get_config\0").unwrap_or_else(|| file.to_string());
        let name = match text(b"openblas_get_corename\0") {
            Some(core) => format!("{config} (core {core})"),
            None => config,
        };
        tracing::debug!("matrix products through {name}");
        return Some(Blas {
            _lib: lib,
            sgemm,
            name,
            calls: std::sync::Mutex::new(()),
        });
    }
    None
}

/// OpenBLAS's name for the best kernel set this CPU runs.
fn core_type() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            return Some(if std::arch::is_x86_feature_detected!("avx512bf16") {
                "Cooperlake"
            } else {
                "SkylakeX"
            });
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some("Haswell");
        }
    }
    None
}

/// A row-major matrix operand: `rows × cols` (after `trans`) stored with leading dimension `ld`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    trans: bool,
    ld: usize,
}

/// `c[m, n] = op(a)[m, k] · op(b)[k, n]` (`+ c` when `accumulate`) for row-major slices, `a`
/// and `b` read with leading dimensions `lda`, `ldb`, so a window of a wider matrix (a
/// convolution tap's view of a padded signal) is read in place. `Ok(false)` when OpenBLAS is not
/// loaded; an error when a slice is too short for the shapes.
pub fn gemm(
    (m, n, k): (usize, usize, usize),
    (a, ta, lda): (&[f32], bool, usize),
    (b, tb, ldb): (&[f32], bool, usize),
    accumulate: bool,
    c: &mut [f32],
) -> Result<bool> {
    let a = Operand {
        data: a,
        trans: ta,
        ld: lda,
    };
    let b = Operand {
        data: b,
        trans: tb,
        ld: ldb,
    };
    let c = if accumulate {
        Dest::Add(c)
    } else {
        Dest::Overwrite(c)
    };
    Ok(sgemm((m, n, k), a, b, c)?)
}

/// Where a product goes: added to `c` (`beta = 1`), or stored into `c` without reading it
/// (`beta = 0`), where a fresh destination may be uninitialised memory.
enum Dest<'a> {
    Add(&'a mut [f32]),
    Overwrite(&'a mut [f32]),
    Fresh(&'a mut [MaybeUninit<f32>]),
}

/// `c[m, n] = op(a)[m, k] · op(b)[k, n]` (`+ c` for [`Dest::Add`]) through OpenBLAS; `false`
/// when it is not loaded, and then `c` is untouched. The slices are checked against the shapes,
/// so a wrong call is an error, never a bad read. Otherwise all `m · n` elements are stored:
/// for `beta = 0` OpenBLAS writes `C` without reading it (tested on NaN-filled memory).
fn sgemm(
    (m, n, k): (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: Dest,
) -> candle_core::Result<bool> {
    let Some(blas) = blas() else {
        return Ok(false);
    };
    let needs = |o: Operand, rows: usize, cols: usize| -> bool {
        // Stored rows × stored columns of a row-major operand.
        let (sr, sc) = if o.trans { (cols, rows) } else { (rows, cols) };
        sr == 0 || sc == 0 || (o.ld >= sc && o.data.len() >= (sr - 1) * o.ld + sc)
    };
    let (c_len, beta) = match &c {
        Dest::Add(c) => (c.len(), 1.0),
        Dest::Overwrite(c) => (c.len(), 0.0),
        Dest::Fresh(c) => (c.len(), 0.0),
    };
    if !needs(a, m, k) || !needs(b, k, n) || c_len < m * n {
        return Err(candle_core::Error::Msg(format!(
            "sgemm: operands do not hold a {m}×{k} · {k}×{n} product"
        )));
    }
    let dim = |v: usize| -> candle_core::Result<c_int> {
        c_int::try_from(v)
            .map_err(|_| candle_core::Error::Msg(format!("sgemm: dimension {v} too large")))
    };
    if m == 0 || n == 0 {
        return Ok(true);
    }
    if k == 0 {
        // An empty sum: `c` stays as it is, or becomes zero.
        match c {
            Dest::Add(_) => {}
            Dest::Overwrite(c) => c[..m * n].fill(0.0),
            Dest::Fresh(c) => c[..m * n].fill(MaybeUninit::new(0.0)),
        }
        return Ok(true);
    }
    let c_ptr = match c {
        Dest::Add(c) | Dest::Overwrite(c) => c.as_mut_ptr(),
        Dest::Fresh(c) => c.as_mut_ptr().cast::<f32>(),
    };
    let t = |x: bool| if x { TRANS } else { NO_TRANS };
    let (m_, n_, k_) = (dim(m)?, dim(n)?, dim(k)?);
    let (lda, ldb, ldc) = (dim(a.ld.max(1))?, dim(b.ld.max(1))?, dim(n.max(1))?);
    // Nothing panics while it is held, so a poisoned lock can only come from elsewhere.
    let _one_at_a_time = blas.calls.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    // SAFETY: the operand lengths were checked above against (m, n, k) and the leading
    // dimensions, so OpenBLAS reads and writes only inside the slices (and with beta = 0 reads
    // nothing of `c`, which may then be uninitialised).
    unsafe {
        (blas.sgemm)(
            ROW_MAJOR,
            t(a.trans),
            t(b.trans),
            m_,
            n_,
            k_,
            1.0,
            a.data.as_ptr(),
            lda,
            b.data.as_ptr(),
            ldb,
            beta,
            c_ptr,
            ldc,
        );
    }
    Shortcut::Blas.entered();
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    PRODUCT_NANOS.fetch_add(nanos, Ordering::Relaxed);
    PRODUCT_FLOP.fetch_add(2 * (m * n * k) as u64, Ordering::Relaxed);
    Ok(true)
}

/// Rows of the left operand up to which [`matmul`] leaves the product to candle.
const FEW_ROWS: usize = 16;

/// Whether [`matmul`] multiplies `op(a)` and `b` through OpenBLAS: on its [`fast_path`], for
/// more than [`FEW_ROWS`] rows. A product of a few rows (a decoding step) stays with candle,
/// which reads strided views such as a KV cache in place; copying them to contiguous would cost
/// more than it saves.
fn takes_blas(a: &Tensor, ta: bool, b: &Tensor) -> bool {
    let rows = a.dims().len().checked_sub(if ta { 1 } else { 2 });
    let few_rows = rows.is_some_and(|d| a.dims()[d] <= FEW_ROWS);
    !few_rows && fast_path([a, b])
}

/// `x · wᵀ` for `x` `[M, K]` and `w` `[N, K]` (a linear layer's weight), differentiable. On the
/// CPU in f32 with OpenBLAS loaded it runs there and its backward skips the gradient of a `w`
/// that is not trained; elsewhere it is candle's matmul.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    matmul(x, false, w, true)
}

/// `op(a) · op(b)`, batched over leading dimensions (equal in `a` and `b`), where `op` transposes
/// the last two dimensions when its flag is set: `matmul(q, false, k, true)` is `q · kᵀ` without
/// materialising `kᵀ`. Differentiable; OpenBLAS on the CPU in f32, candle's matmul elsewhere.
pub fn matmul(a: &Tensor, ta: bool, b: &Tensor, tb: bool) -> Result<Tensor> {
    if !takes_blas(a, ta, b) {
        let a = if ta { a.t()? } else { a.clone() };
        let b = if tb { b.t()? } else { b.clone() };
        return Ok(a.matmul(&b)?);
    }
    let dims = |t: &Tensor| -> Result<(Vec<usize>, usize, usize)> {
        let d = t.dims();
        if d.len() < 2 {
            return Err(Error::InvalidRequest(format!(
                "matmul wants matrices, got shape {d:?}"
            )));
        }
        let (r, c) = (d[d.len() - 2], d[d.len() - 1]);
        Ok((d[..d.len() - 2].to_vec(), r, c))
    };
    let (lead_a, ar, ac) = dims(a)?;
    let (lead_b, br, bc) = dims(b)?;
    let k_a = if ta { ar } else { ac };
    let k_b = if tb { bc } else { br };
    if lead_a != lead_b || k_a != k_b {
        return Err(Error::InvalidRequest(format!(
            "matmul shapes do not fit: {:?}{} · {:?}{}",
            a.dims(),
            if ta { "ᵀ" } else { "" },
            b.dims(),
            if tb { "ᵀ" } else { "" },
        )));
    }
    let op = Bmm {
        ta,
        tb,
        grad_a: a.track_op(),
        grad_b: b.track_op(),
    };
    Ok(a.contiguous()?.apply_op2(&b.contiguous()?, op)?)
}

/// See [`matmul`]; the flags say which operands are transposed and which need a gradient.
struct Bmm {
    ta: bool,
    tb: bool,
    grad_a: bool,
    grad_b: bool,
}

/// The batched product of two contiguous row-major operands: `(batch, rows, cols)` as stored.
pub(crate) fn batched(
    a: (&[f32], (usize, usize, usize), bool),
    b: (&[f32], (usize, usize, usize), bool),
) -> candle_core::Result<(Vec<f32>, usize, usize)> {
    let (da, (n_batch, ar, ac), ta) = a;
    let (db, (_, br, bc), tb) = b;
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let n = if tb { br } else { bc };
    // Not zeroed first: each product stores all of its elements.
    let len = n_batch * m * n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    for i in 0..n_batch {
        let done = sgemm(
            (m, n, k),
            Operand {
                data: &da[i * ar * ac..(i + 1) * ar * ac],
                trans: ta,
                ld: ac,
            },
            Operand {
                data: &db[i * br * bc..(i + 1) * br * bc],
                trans: tb,
                ld: bc,
            },
            Dest::Fresh(&mut spare[i * m * n..(i + 1) * m * n]),
        )?;
        if !done {
            return Err(candle_core::Error::Msg(
                "matmul: OpenBLAS is not loaded".into(),
            ));
        }
    }
    // SAFETY: the n_batch products above each stored all m·n elements of their part of the
    // first `len` spare elements (`sgemm` with `Dest::Fresh`; an error returned before this).
    unsafe { out.set_len(len) };
    Ok((out, m, n))
}

/// Leading dimensions folded into one batch: `(batch, rows, cols)`.
fn folded(dims: &[usize]) -> (usize, usize, usize) {
    let n = dims.len();
    (dims[..n - 2].iter().product(), dims[n - 2], dims[n - 1])
}

/// `op(a) · op(b)` of two CPU tensors with equal leading dimensions, not recorded for backward.
pub(crate) fn product(a: &Tensor, ta: bool, b: &Tensor, tb: bool) -> candle_core::Result<Tensor> {
    let a = a.contiguous()?;
    let b = b.contiguous()?;
    let (out, m, n) = {
        let (sa, la) = a.storage_and_layout();
        let (sb, lb) = b.storage_and_layout();
        let (candle_core::Storage::Cpu(sa), candle_core::Storage::Cpu(sb)) = (&*sa, &*sb) else {
            return Err(candle_core::Error::Msg("matmul: not on the CPU".into()));
        };
        batched(
            (
                contiguous_f32(sa, la, "a matmul operand")?,
                folded(a.dims()),
                ta,
            ),
            (
                contiguous_f32(sb, lb, "a matmul operand")?,
                folded(b.dims()),
                tb,
            ),
        )?
    };
    let mut shape = a.dims()[..a.rank() - 2].to_vec();
    shape.extend([m, n]);
    Tensor::from_vec(out, shape, a.device())
}

impl CustomOp2 for Bmm {
    fn name(&self) -> &'static str {
        "blas-matmul"
    }

    fn cpu_fwd(
        &self,
        sa: &CpuStorage,
        la: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (out, m, n) = batched(
            (
                contiguous_f32(sa, la, "a matmul operand")?,
                folded(la.dims()),
                self.ta,
            ),
            (
                contiguous_f32(sb, lb, "a matmul operand")?,
                folded(lb.dims()),
                self.tb,
            ),
        )?;
        let mut shape = la.dims()[..la.dims().len() - 2].to_vec();
        shape.extend([m, n]);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // y = A·B with A = op(a), B = op(b): dA = g·Bᵀ, dB = Aᵀ·g, transposed back where a or
        // b was.
        let (ta, tb) = (self.ta, self.tb);
        let ga = match (self.grad_a, ta) {
            (false, _) => None,
            (true, false) => Some(product(g, false, b, !tb)?),
            (true, true) => Some(product(b, tb, g, true)?),
        };
        let gb = match (self.grad_b, tb) {
            (false, _) => None,
            (true, false) => Some(product(a, !ta, g, false)?),
            (true, true) => Some(product(g, true, a, ta)?),
        };
        Ok((ga, gb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::nn::force_generic_ops;
    use crate::testing::max_abs_diff;
    use candle_core::{Device, Var};

    /// Why a test fails where its product would not take the OpenBLAS path: candle's matmul,
    /// the reference, would then be compared with itself.
    const NOT_BLAS: &str = "this product stays with candle (too few rows?): nothing to compare";

    fn seeded(seed: u64, shape: (usize, usize)) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// `scripts/test` installs OpenBLAS and sets `TUNELAB_REQUIRE_BLAS=1`, so a missing install
    /// step fails here instead of silently testing only the fallback.
    #[test]
    fn openblas_is_loaded_where_required() {
        if std::env::var("TUNELAB_REQUIRE_BLAS").is_ok_and(|v| v == "1") {
            let name = backend().expect("OpenBLAS (libopenblas0) should be installed");
            assert!(name.contains("OpenBLAS"), "{name}");
        }
    }

    #[test]
    fn linear_and_its_gradients_equal_candle_matmul() {
        // Without OpenBLAS `linear` is candle's matmul, the reference itself.
        loaded_for("linear's product");
        let _fast = force_generic_ops(false);
        // Odd sizes, more rows than `FEW_ROWS` (which stay with candle), and a transposed
        // (non-contiguous) input.
        let x = Var::from_tensor(&seeded(1, (37, 19)).t().unwrap()).unwrap(); // [19, 37]
        let w = Var::from_tensor(&seeded(2, (29, 37))).unwrap();
        assert!(
            takes_blas(x.as_tensor(), false, w.as_tensor()),
            "{NOT_BLAS}"
        );
        {
            // TUNELAB_GENERIC_OPS=1 leaves the product to candle.
            let _generic = force_generic_ops(true);
            assert!(!takes_blas(x.as_tensor(), false, w.as_tensor()));
        }
        let g = seeded(3, (19, 29));
        let ours = linear(x.as_tensor(), w.as_tensor()).unwrap();
        let want = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
        assert_eq!(ours.dims(), &[19, 29]);
        assert!(max_abs_diff(&ours, &want) < 1e-5);
        let go = (ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = (want * &g).unwrap().sum_all().unwrap().backward().unwrap();
        for t in [x.as_tensor(), w.as_tensor()] {
            let (a, b) = (go.get(t).unwrap(), gw.get(t).unwrap());
            assert_eq!(a.dims(), b.dims());
            assert!(max_abs_diff(a, b) < 1e-5);
        }
    }

    #[test]
    fn batched_products_and_gradients_equal_candle_for_every_transposition() {
        loaded_for("the batched product");
        let _fast = force_generic_ops(false);
        let dev = Device::Cpu;
        let seeded4 =
            |seed: u64, r: usize, c: usize| seeded(seed, (6 * r, c)).reshape((2, 3, r, c)).unwrap();
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            // More rows than `FEW_ROWS`, which stay with candle.
            let (m, k, n) = (19, 5, 4);
            let a = Var::from_tensor(&if ta {
                seeded4(10, k, m)
            } else {
                seeded4(10, m, k)
            })
            .unwrap();
            let b = Var::from_tensor(&if tb {
                seeded4(11, n, k)
            } else {
                seeded4(11, k, n)
            })
            .unwrap();
            assert!(takes_blas(a.as_tensor(), ta, b.as_tensor()), "{NOT_BLAS}");
            let g = seeded4(12, m, n);
            let ours = matmul(a.as_tensor(), ta, b.as_tensor(), tb).unwrap();
            let op = |t: &Tensor, tr: bool| if tr { t.t().unwrap() } else { t.clone() };
            let want = op(a.as_tensor(), ta)
                .matmul(&op(b.as_tensor(), tb))
                .unwrap();
            assert_eq!(ours.dims(), &[2, 3, m, n]);
            assert!(max_abs_diff(&ours, &want) < 1e-5, "{ta} {tb}");
            let go = (ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gw = (want * &g).unwrap().sum_all().unwrap().backward().unwrap();
            for t in [a.as_tensor(), b.as_tensor()] {
                let (x, y) = (go.get(t).unwrap(), gw.get(t).unwrap());
                assert_eq!(x.dims(), y.dims());
                assert!(max_abs_diff(x, y) < 1e-5, "{ta} {tb}");
            }
        }
        let _ = dev;
    }

    /// `batched` leaves its output unzeroed, which is sound only if OpenBLAS never reads `C` for
    /// `beta = 0`: here `C` starts as NaN, which would survive any read (`NaN · 0 = NaN`), on
    /// shapes that take OpenBLAS's small-matrix, single-thread and threaded paths.
    #[test]
    fn a_stored_product_does_not_read_its_destination() {
        loaded_for("sgemm's beta = 0 store");
        for (m, n, k) in [
            (3, 5, 7),
            (1, 64, 33),
            (64, 1, 9),
            (300, 200, 150),
            (513, 257, 64),
        ] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32) - 6.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32) - 5.0).collect();
                let (lda, ldb) = (if ta { m } else { k }, if tb { k } else { n });
                let at = |i: usize, p: usize| if ta { a[p * lda + i] } else { a[i * lda + p] };
                let bt = |p: usize, j: usize| if tb { b[j * ldb + p] } else { b[p * ldb + j] };
                let mut c = vec![f32::NAN; m * n];
                let stored = sgemm(
                    (m, n, k),
                    Operand {
                        data: &a,
                        trans: ta,
                        ld: lda,
                    },
                    Operand {
                        data: &b,
                        trans: tb,
                        ld: ldb,
                    },
                    Dest::Overwrite(&mut c),
                )
                .unwrap();
                assert!(stored);
                for i in 0..m {
                    for j in 0..n {
                        // Small integers: the exact sum is representable.
                        let want: f32 = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
                        assert_eq!(c[i * n + j], want, "{m}×{n}×{k} {ta} {tb} at ({i}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn a_frozen_weight_gets_no_gradient() {
        // candle's own matmul (the fallback) stores one, of the frozen weight's full size.
        loaded_for("linear's backward");
        let _fast = force_generic_ops(false);
        let x = Var::from_tensor(&seeded(4, (20, 8))).unwrap();
        let frozen = seeded(5, (6, 8));
        assert!(takes_blas(x.as_tensor(), false, &frozen), "{NOT_BLAS}");
        let y = linear(x.as_tensor(), &frozen).unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some());
        assert!(g.get(&frozen).is_none());
        // candle files the gradient it computes under the id of `frozen.t()`, so the line above
        // holds on its path too: no gradient of the weight's size may be stored at all.
        let sizes: Vec<usize> = g
            .get_ids()
            .filter_map(|id| g.get_id(*id).map(|t| t.elem_count()))
            .collect();
        assert!(!sizes.contains(&frozen.elem_count()), "{sizes:?}");
    }
}
