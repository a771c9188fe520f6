//! The CPU shortcuts' common ground: **when** they may run ([`fast_path`], the one predicate
//! every shortcut site asks), **that** they ran ([`Shortcut`], counted per entry), and reading
//! the f32 values of a CPU tensor in place (in a custom op's `cpu_fwd` from its `CpuStorage` and
//! `Layout`, or from a `Tensor` in backward passes and optimisers).
//!
//! The shortcuts (OpenBLAS products, the decoding GEMV, the fused ops of this folder, EnCodec's
//! BLAS convolutions, the optimiser's in-place passes) exist only for f32 tensors on the CPU;
//! on any other device or dtype each site takes its device-generic form, composed of candle's
//! own ops, which is what a GPU runs. CI has no GPU, so **`TUNELAB_GENERIC_OPS=1`** makes the
//! CPU take those forms too: the parity and training tests then prove the GPU's path. The
//! switch is read once per process (any value but `0`, `off` or `false` turns it on).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use candle_core::{DType, Tensor};

/// The environment variable that turns every CPU shortcut off (see the module docs).
pub const GENERIC_OPS_VAR: &str = "TUNELAB_GENERIC_OPS";

static GENERIC_OPS: OnceLock<bool> = OnceLock::new();

/// Whether `TUNELAB_GENERIC_OPS` is set: every op takes its device-generic form.
pub fn generic_ops() -> bool {
    #[cfg(test)]
    if let Some(generic) = forced::GENERIC.with(std::cell::Cell::get) {
        return generic;
    }
    *GENERIC_OPS.get_or_init(|| {
        std::env::var(GENERIC_OPS_VAR)
            .is_ok_and(|v| !matches!(v.trim(), "" | "0" | "off" | "false"))
    })
}

/// Whether a CPU shortcut may compute with these tensors: all f32 on the CPU, and
/// `TUNELAB_GENERIC_OPS` not set. The one place that condition is written (OpenBLAS's paths ask
/// `models::blas::fast_path`, which adds that the library is loaded).
pub fn fast_path<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> bool {
    !generic_ops()
        && tensors
            .into_iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// The CPU shortcuts, each counted every time it computes (not when it is asked and declines):
/// a test proves that with `TUNELAB_GENERIC_OPS=1` none of them runs, and without it each does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    /// An OpenBLAS product (`models::blas`), one per matrix.
    Blas,
    /// The decoding GEMV (`models::gemv::rows_matmul`).
    Gemv,
    /// The fused layer norm, forward or backward.
    LayerNorm,
    /// The fused (masked) softmax, forward or backward.
    Softmax,
    /// The fused attention, forward or backward.
    Attention,
    /// A decoding step's attention over the KV cache.
    SingleQueryAttention,
    /// The fused GELU or ELU, forward or backward.
    Activation,
    /// One of EnCodec's BLAS convolutions (`models::encodec`).
    Convolution,
    /// EnCodec's LSTM run in place on the CPU (`models::encodec`).
    Recurrence,
    /// An in-place pass of the optimiser (`train::optim`: AdamW, EMA, norm, finiteness).
    Optimizer,
}

impl Shortcut {
    pub const ALL: [Self; 10] = [
        Self::Blas,
        Self::Gemv,
        Self::LayerNorm,
        Self::Softmax,
        Self::Attention,
        Self::SingleQueryAttention,
        Self::Activation,
        Self::Convolution,
        Self::Recurrence,
        Self::Optimizer,
    ];

    /// Records one run of this shortcut.
    pub(crate) fn entered(self) {
        ENTRIES[self as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How often this shortcut has run in this process.
    pub fn entries(self) -> u64 {
        ENTRIES[self as usize].load(Ordering::Relaxed)
    }
}

const SHORTCUTS: usize = Shortcut::ALL.len();
static ENTRIES: [AtomicU64; SHORTCUTS] = [const { AtomicU64::new(0) }; SHORTCUTS];

/// The f32 elements of a contiguous CPU tensor in a custom op (`what` names it in errors).
pub(crate) fn contiguous_f32<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        return Err(candle_core::Error::Msg(format!("{what} is not contiguous")));
    };
    Ok(&cpu_f32(s, what)?[a..b])
}

/// Runs `f` on the values of a tensor stored as f32 on the CPU (made contiguous first); `None`
/// for other storage. This reads values; whether a shortcut should is [`fast_path`]'s question.
pub(crate) fn on_cpu_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<Option<R>> {
    let stored_cpu_f32 = matches!(
        &*t.storage_and_layout().0,
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(_))
    );
    if !stored_cpu_f32 {
        return Ok(None);
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => Ok(Some(f(contiguous_f32(s, layout, "tensor")?))),
        _ => Ok(None),
    }
}

/// [`on_cpu_f32`] for two tensors at once.
pub(super) fn on_cpu_f32_pair<R>(
    a: &Tensor,
    b: &Tensor,
    f: impl FnOnce(&[f32], &[f32]) -> R,
) -> candle_core::Result<Option<R>> {
    Ok(on_cpu_f32(a, |a| on_cpu_f32(b, |b| f(a, b)))?
        .transpose()?
        .flatten())
}

/// All the f32 values of a CPU storage, whatever the layout (`what` names it in errors).
pub(super) fn cpu_f32<'a>(
    s: &'a candle_core::CpuStorage,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match s {
        candle_core::CpuStorage::F32(v) => Ok(v),
        _ => Err(candle_core::Error::Msg(format!("{what} is not f32"))),
    }
}

/// Forces the switch on (`true`) or off on this thread, whatever the environment says, until
/// the returned guard is dropped: a test of a shortcut against its generic form names the path
/// it means, so it tests the same thing in a `TUNELAB_GENERIC_OPS=1` run.
#[cfg(test)]
pub(crate) fn force_generic_ops(generic: bool) -> ForcedGenericOps {
    ForcedGenericOps(forced::GENERIC.with(|g| g.replace(Some(generic))))
}

/// See [`force_generic_ops`]; restores what was forced before.
#[cfg(test)]
#[must_use = "the switch is forced only while this guard lives"]
pub(crate) struct ForcedGenericOps(Option<bool>);

#[cfg(test)]
impl Drop for ForcedGenericOps {
    fn drop(&mut self) {
        forced::GENERIC.with(|g| g.set(self.0));
    }
}

#[cfg(test)]
mod forced {
    thread_local! {
        pub(super) static GENERIC: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }
}
