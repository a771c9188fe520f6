//! `tunelab bench kernels`: the decoding step's matrix products in each weight format against
//! the memory they stream, on musicgen-small's shapes with random values (no model built).
//!
//! One "step" is every matrix a musicgen-small decoding step multiplies (24 layers of six
//! 1024×1024 attention matrices, fc1 4096×1024 and fc2 1024×4096, and four 2048×1024 heads:
//! 352 M weights) times two input rows (classifier-free guidance), in the order the step takes
//! them. `read` streams a buffer of the same bytes as the f32 step through the same threads
//! (a sum of all its values): the memory's speed on this machine, measured beside the kernels.

use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::models::gemv::rows_matmul;
use crate::models::nn::{lane_sum, team};
use crate::models::qgemv::{QFormat, QMatrix};

#[derive(Debug, Args)]
pub struct BenchKernelsArgs {
    /// Timed repetitions of each step (the fastest and the median are reported).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct KernelReport {
    kernel: String,
    /// Bytes read per step (weights and their scales), in MB.
    weight_mb: f64,
    best_ms: f64,
    median_ms: f64,
    /// `weight_mb` over the fastest step.
    gb_per_s: f64,
}

/// `(rows, cols)` of every matrix a musicgen-small step multiplies, in order.
fn step_shapes() -> Vec<(usize, usize)> {
    let (h, ffn, vocab) = (1024, 4096, 2048);
    let mut shapes = Vec::new();
    for _ in 0..24 {
        shapes.extend([(h, h); 4]); // self-attention q, k, v, out
        shapes.extend([(h, h); 2]); // cross-attention q, out (its k, v are cached)
        shapes.extend([(ffn, h), (h, ffn)]);
    }
    shapes.extend([(vocab, h); 4]);
    shapes
}

/// Deterministic values in [-1, 1) (an LCG: fast for the hundreds of millions needed).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Times `step` `reps` times after one untimed run: (best, median) in ms.
fn time(reps: usize, mut step: impl FnMut() -> f32) -> (f64, f64) {
    let mut sink = step();
    let mut ms: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            sink += step();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    std::hint::black_box(sink);
    ms.sort_by(f64::total_cmp);
    (ms[0], ms[ms.len() / 2])
}

impl BenchKernelsArgs {
    pub fn run(&self) -> anyhow::Result<()> {
        let shapes = step_shapes();
        let total: usize = shapes.iter().map(|(r, c)| r * c).sum();
        let m = 2;
        let mut reports = Vec::new();
        let mut report = |kernel: &str, bytes: usize, (best, median): (f64, f64)| {
            let mb = bytes as f64 / 1e6;
            reports.push(KernelReport {
                kernel: kernel.into(),
                weight_mb: mb,
                best_ms: best,
                median_ms: median,
                gb_per_s: mb / best,
            });
        };
        // The f32 step's weights, one buffer per matrix.
        let dense: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(r, c))| fill(r * c, i as u64))
            .collect();
        let inputs: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(_, c))| fill(m * c, 1000 + i as u64))
            .collect();
        let read = time(self.reps, || {
            let mut sums = vec![0f32; dense.len()];
            team::for_each_chunk(&mut sums, 1, |i, s| s[0] = lane_sum(&dense[i]));
            sums.iter().sum()
        });
        report("read", total * 4, read);
        let f32_step = time(self.reps, || {
            let mut s = 0.0;
            for ((w, x), &(r, c)) in dense.iter().zip(&inputs).zip(&shapes) {
                s += rows_matmul(w, x, m, c, r)[0];
            }
            s
        });
        report("f32", total * 4, f32_step);
        for (name, format) in [("q8", QFormat::Int8), ("q4", QFormat::Int4)] {
            let q: Vec<QMatrix> = dense
                .iter()
                .zip(&shapes)
                .map(|(w, &(r, c))| QMatrix::quantize(w, r, c, format))
                .collect::<crate::error::Result<_>>()?;
            let bytes = q.iter().map(QMatrix::bytes).sum();
            let mut failed = None;
            let timed = time(self.reps, || {
                let mut s = 0.0;
                for (w, x) in q.iter().zip(&inputs) {
                    match w.matmul_rows(x, m) {
                        Ok(y) => s += y[0],
                        Err(e) => failed = Some(e),
                    }
                }
                s
            });
            if let Some(e) = failed {
                return Err(e.into());
            }
            report(name, bytes, timed);
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        } else {
            println!(
                "musicgen-small's decoding step: {} matrices, {:.0} M weights × {m} rows, {} threads",
                shapes.len(),
                total as f64 / 1e6,
                team::threads()
            );
            println!("kernel   MB/step   best ms   median ms   GB/s");
            for r in &reports {
                println!(
                    "{:<8} {:>7.0}   {:>7.2}   {:>9.2}   {:>4.1}",
                    r.kernel, r.weight_mb, r.best_ms, r.median_ms, r.gb_per_s
                );
            }
        }
        Ok(())
    }
}
