//! Reading the f32 values of a CPU tensor in place: in a custom op's `cpu_fwd` (from its
//! `CpuStorage` and `Layout`) and from a `Tensor` (backward passes, optimisers). Used by the ops
//! of this folder and by `models::blas`, `models::encodec` and `train::optim`.

use candle_core::{DType, Tensor};

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

/// Runs `f` on the values of an f32 CPU tensor (made contiguous first); `None` for other
/// devices and dtypes.
pub(crate) fn on_cpu_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<Option<R>> {
    if !t.device().is_cpu() || t.dtype() != DType::F32 {
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
