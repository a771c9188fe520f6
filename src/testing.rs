//! Helpers the unit tests of every layer share (compiled for tests only). It sits at the bottom
//! of the crate, so any module's tests may use it without importing a sibling's tests.

use candle_core::Tensor;

/// The largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `secs` of a sine at `freq` Hz and amplitude 0.5, sampled at `rate`.
pub fn sine(freq: f32, rate: u32, secs: f32) -> Vec<f32> {
    (0..(rate as f32 * secs) as usize)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
        .collect()
}
