//! The learning-rate schedule: linear warmup, then cosine decay (audiocraft's
//! `CosineLRScheduler`).

/// Linear warmup from 0 to `peak` over `warmup` steps, then cosine decay to `peak * min_ratio`
/// at `total` (audiocraft's `CosineLRScheduler`). `step` counts completed updates (0-based:
/// the first update uses `lr_at(0)`... which is `peak / warmup` so no update uses lr 0).
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64, min_ratio: f64) -> f64 {
    let s = step + 1;
    if s <= warmup {
        return peak * s as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((s - warmup) as f64 / span).min(1.0);
    let ratio =
        min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let lr = |s| lr_at(s, 110, 10, 1e-3, 0.1);
        assert!((lr(0) - 1e-4).abs() < 1e-12);
        assert!((lr(9) - 1e-3).abs() < 1e-12);
        assert!(lr(10) < 1e-3 && lr(10) > 0.99e-3);
        assert!((lr(59) - 0.55e-3).abs() < 1e-9, "{}", lr(59)); // half way: mid of 1e-3 and 1e-4
        assert!((lr(109) - 1e-4).abs() < 1e-12);
        let mut prev = f64::INFINITY;
        for s in 9..110 {
            assert!(lr(s) <= prev);
            prev = lr(s);
        }
        // No warmup: starts at the peak.
        assert!((lr_at(0, 100, 0, 1e-3, 0.0) - 1e-3).abs() < 1e-6);
    }
}
