//! Layers and ops shared by our models, written so that **every op records a backward**: candle
//! 0.11's fused `softmax_last_dim` and `LayerNorm` do not, which silently loses gradients on a
//! training path. Inference uses the same code, so what we train is what we run.
//!
//! Where candle's composed form is slow on the CPU (single-threaded, or one graph node and one
//! gradient buffer per step), the op is one candle custom op with its backward written out, and
//! candle's form remains for other devices and dtypes, and for the CPU when
//! `TUNELAB_GENERIC_OPS=1` (every shortcut asks [`fast_path`]; see `cpu.rs`):
//!
//! - `linear.rs`: [`Linear`] with its LoRA adapter, [`WeightMode`], [`seeded_dropout`];
//! - `norm.rs`: [`LayerNorm`] and its fused op;
//! - `softmax.rs`: [`softmax`], [`masked_softmax`] and their fused ops;
//! - `attention.rs`: [`attention`] (fused with OpenBLAS) and [`single_query_attention`] (decoding);
//! - `activations.rs`: [`gelu_erf`] and [`elu`], element-wise ops made fused ops;
//! - `simd.rs`: the lane-wise sums and the AVX2 dispatch of the ops' loops;
//! - `kv.rs`: [`HalfKv`], a decoding step's self-attention cache in f16 (quantised weights);
//! - `team.rs`: threads that stay awake between a decoding step's short parallel products
//!   ([`team::run`]);
//! - `cpu.rs`: the shortcuts' switch and predicate ([`fast_path`], [`generic_ops`]), their
//!   entry counts ([`Shortcut`]), and reading a CPU tensor's f32 values in place.
//!
//! The fused ops' summation orders are part of their results: the PyTorch parity tests and the
//! exact-resume test compare bit patterns, so a change of lane count or of rows per task is a
//! numeric change.

mod activations;
mod attention;
mod cpu;
mod kv;
mod linear;
mod norm;
mod simd;
mod softmax;
pub mod team;
#[cfg(test)]
pub(crate) mod testing;

pub use activations::{elu, gelu_erf};
pub use attention::{attention, single_query_attention};
#[cfg(test)]
pub(crate) use cpu::force_generic_ops;
pub(crate) use cpu::{contiguous_f32, on_cpu_f32};
pub use cpu::{fast_path, generic_ops, Shortcut, GENERIC_OPS_VAR};
pub use kv::HalfKv;
pub use linear::{matmul_t, seeded_dropout, Linear, Lora, WeightMode};
pub use norm::LayerNorm;
pub(crate) use simd::lane_sum;
pub use softmax::{masked_softmax, softmax};
