//! Training batches from a dataset's token cache: a deterministic order (a fresh permutation
//! per epoch, derived from the run seed), random crops of long segments, delayed labels padded
//! with the model's pad id (2048 in every MusicGen; ignored by the loss), and audiocraft's
//! caption augmentation (field merging, word dropout, condition dropout). Every random choice comes from a generator seeded by
//! `(run seed, sample position)`, so a resumed run draws exactly what an uninterrupted one would.

use std::path::Path;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::dataset::{Info, Split};
use crate::data::token_cache::{read_codes, read_index};
use crate::error::{Error, Result};
use crate::models::device::count_transfer;
use crate::models::musicgen::patterns::CodebookPattern;

/// One encoded segment.
#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    pub codes: Vec<Vec<u32>>,
    pub caption: String,
    pub info: Info,
}

/// The train and valid splits of a dataset, in memory (codes are small: 4 × 1500 u32 per 30 s).
#[derive(Debug, Clone)]
pub struct TokenData {
    pub train: Vec<Example>,
    pub valid: Vec<Example>,
    pub test: Vec<Example>,
}

impl TokenData {
    pub fn load(dataset: &Path, fingerprint: &str) -> Result<Self> {
        let mut data = Self {
            train: Vec::new(),
            valid: Vec::new(),
            test: Vec::new(),
        };
        for entry in read_index(dataset, fingerprint)? {
            let codes = read_codes(dataset, &entry)?;
            if codes.first().is_none_or(|c| c.is_empty()) {
                continue;
            }
            let ex = Example {
                id: entry.segment,
                codes,
                caption: entry.caption,
                info: entry.info,
            };
            match entry.split {
                Split::Train => data.train.push(ex),
                Split::Valid => data.valid.push(ex),
                Split::Test => data.test.push(ex),
            }
        }
        if data.train.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "dataset {} has no encoded training segment",
                dataset.display()
            )));
        }
        Ok(data)
    }
}

/// A generator for one purpose at one position of the run.
pub fn rng_for(seed: u64, purpose: u64, position: u64) -> ChaCha8Rng {
    let mut s = seed ^ purpose.wrapping_mul(0xA24B_AED4_963E_E407);
    s ^= position.wrapping_mul(0x9FB2_1C65_1E98_DF25);
    ChaCha8Rng::seed_from_u64(s)
}

const PURPOSE_ORDER: u64 = 1;
const PURPOSE_CROP: u64 = 2;
const PURPOSE_CAPTION: u64 = 3;

/// Index into `n` examples of the `position`-th sample drawn: every epoch is a permutation.
pub fn sample_index(n: usize, seed: u64, position: u64) -> usize {
    let epoch = position / n as u64;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng_for(seed, PURPOSE_ORDER, epoch));
    order[(position % n as u64) as usize]
}

/// Caption augmentation knobs.
#[derive(Debug, Clone, Copy)]
pub struct Augment {
    pub condition_dropout: f64,
    pub word_dropout: f64,
    pub merge_fields: f64,
}

impl Augment {
    pub const NONE: Self = Self {
        condition_dropout: 0.0,
        word_dropout: 0.0,
        merge_fields: 0.0,
    };
}

/// The caption a training example is conditioned on this time; `""` = the null condition.
pub fn training_caption(ex: &Example, aug: Augment, rng: &mut impl Rng) -> String {
    if rng.random::<f64>() < aug.condition_dropout {
        return String::new();
    }
    let mut text = ex.caption.clone();
    if ex.info.description.is_some() && rng.random::<f64>() < aug.merge_fields {
        let fields = Info {
            description: None,
            title: None,
            ..ex.info.clone()
        }
        .caption("");
        if !fields.is_empty() {
            text = format!("{text}. {fields}");
        }
    }
    if aug.word_dropout > 0.0 {
        let kept: Vec<&str> = text
            .split_whitespace()
            .filter(|_| rng.random::<f64>() >= aug.word_dropout)
            .collect();
        text = kept.join(" ");
    }
    text
}

/// A batch ready for the LM.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Labels laid out in the model's codebook pattern `[B, K, S]` (u32; the pad id = ignored).
    pub labels: Tensor,
    pub captions: Vec<String>,
    /// Positions that count in the loss, summed over codebooks.
    pub tokens: usize,
}

/// Interleaved labels of one example, BOS column dropped (`[K][T + K - 1]` for the delay
/// pattern, `[K][T]` for parallel, `[K][K·T]` for flatten, where step `t·K + q` labels codebook
/// `q` of frame `t` only).
fn labels_of(codes: &[Vec<u32>], pad: u32, pattern: CodebookPattern) -> Vec<Vec<u32>> {
    pattern
        .apply(codes, pad)
        .into_iter()
        .map(|r| r[1..].to_vec())
        .collect()
}

/// Builds a batch of `examples`, each cropped to at most `max_frames` (at a random offset when
/// `crop_rng` is given, else from the start) and padded with `pad`.
pub fn make_batch(
    examples: &[(&Example, String)],
    max_frames: usize,
    pad: u32,
    pattern: CodebookPattern,
    mut crop_rng: Option<&mut ChaCha8Rng>,
    device: &Device,
) -> Result<Batch> {
    let mut rows = Vec::with_capacity(examples.len());
    let mut captions = Vec::with_capacity(examples.len());
    let mut tokens = 0;
    for (ex, caption) in examples {
        let t = ex.codes[0].len();
        let len = t.min(max_frames);
        let start = match crop_rng.as_deref_mut() {
            Some(r) if t > len => r.random_range(0..=t - len),
            _ => 0,
        };
        let codes: Vec<Vec<u32>> = ex
            .codes
            .iter()
            .map(|c| c[start..start + len].to_vec())
            .collect();
        tokens += len * codes.len();
        rows.push(labels_of(&codes, pad, pattern));
        captions.push(caption.clone());
    }
    let k = rows.first().map(|r| r.len()).unwrap_or(0);
    let s = rows
        .iter()
        .map(|r| r.first().map(|x| x.len()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let mut flat = Vec::with_capacity(rows.len() * k * s);
    for r in &rows {
        if r.len() != k {
            return Err(Error::InvalidRequest(
                "examples with different numbers of codebooks in one batch".into(),
            ));
        }
        for row in r {
            flat.extend_from_slice(row);
            flat.extend(std::iter::repeat_n(pad, s - row.len()));
        }
    }
    count_transfer();
    let labels = Tensor::from_vec(flat, (rows.len(), k, s), device)?;
    Ok(Batch {
        labels,
        captions,
        tokens,
    })
}

/// The training batch at `position` (samples drawn so far): `batch` examples in the run's
/// deterministic order, randomly cropped, with augmented captions.
#[allow(clippy::too_many_arguments)]
pub fn train_batch(
    data: &TokenData,
    seed: u64,
    position: u64,
    batch: usize,
    max_frames: usize,
    aug: Augment,
    pad: u32,
    pattern: CodebookPattern,
    device: &Device,
) -> Result<Batch> {
    let n = data.train.len();
    let mut picked = Vec::with_capacity(batch);
    for i in 0..batch as u64 {
        let ex = &data.train[sample_index(n, seed, position + i)];
        let caption = training_caption(ex, aug, &mut rng_for(seed, PURPOSE_CAPTION, position + i));
        picked.push((ex, caption));
    }
    let mut crop = rng_for(seed, PURPOSE_CROP, position);
    make_batch(&picked, max_frames, pad, pattern, Some(&mut crop), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: &str, t: usize, desc: Option<&str>) -> Example {
        Example {
            id: id.into(),
            codes: (0..4)
                .map(|k| (0..t).map(|i| (k * 100 + i) as u32).collect())
                .collect(),
            caption: desc.unwrap_or("ambient, 90 bpm").into(),
            info: Info {
                description: desc.map(String::from),
                genre: Some("ambient".into()),
                bpm: Some(90.0),
                ..Default::default()
            },
        }
    }

    #[test]
    fn every_epoch_is_a_permutation_and_reproducible() {
        let n = 7;
        for epoch in 0..3u64 {
            let mut seen: Vec<usize> = (0..n as u64)
                .map(|i| sample_index(n, 42, epoch * n as u64 + i))
                .collect();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
        let a: Vec<usize> = (0..20).map(|p| sample_index(n, 42, p)).collect();
        let b: Vec<usize> = (0..20).map(|p| sample_index(n, 42, p)).collect();
        assert_eq!(a, b);
        let c: Vec<usize> = (0..20).map(|p| sample_index(n, 43, p)).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn batches_are_delayed_cropped_and_padded() {
        let long = ex("a", 10, None);
        let short = ex("b", 3, None);
        let b = make_batch(
            &[(&long, "x".into()), (&short, "y".into())],
            6,
            2048,
            CodebookPattern::Delay,
            None,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(b.labels.dims(), &[2, 4, 9]); // 6 frames + 3 delay steps
        let l = b.labels.to_vec3::<u32>().unwrap();
        assert_eq!(&l[0][0][..6], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(&l[0][0][6..], &[2048, 2048, 2048]);
        assert_eq!(&l[0][3][..3], &[2048, 2048, 2048]);
        assert_eq!(&l[0][3][3..], &[300, 301, 302, 303, 304, 305]);
        // The short example: 3 frames, then padding to the batch length.
        assert_eq!(
            &l[1][1][..],
            &[2048, 100, 101, 102, 2048, 2048, 2048, 2048, 2048]
        );
        assert_eq!(b.tokens, 4 * 6 + 4 * 3);
        // A random crop keeps consecutive frames of every codebook aligned.
        let mut r = rng_for(1, 2, 3);
        let b = make_batch(
            &[(&long, "x".into())],
            4,
            2048,
            CodebookPattern::Delay,
            Some(&mut r),
            &Device::Cpu,
        )
        .unwrap();
        // Parallel: the labels are the frames themselves.
        let p = make_batch(
            &[(&short, "y".into())],
            6,
            2048,
            CodebookPattern::Parallel,
            None,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(p.labels.dims(), &[1, 4, 3]);
        assert_eq!(
            p.labels.to_vec3::<u32>().unwrap()[0][2],
            vec![200, 201, 202]
        );
        let l = b.labels.to_vec3::<u32>().unwrap();
        let start = l[0][0][0];
        assert!(start <= 6);
        assert_eq!(l[0][2][2], 200 + start);
    }

    #[test]
    fn flatten_batches_unroll_one_codebook_per_step() {
        let e = |id: &str, codes: Vec<Vec<u32>>| Example {
            id: id.into(),
            codes,
            caption: String::new(),
            info: Info::default(),
        };
        let a = e("a", vec![vec![1, 2, 3], vec![4, 5, 6]]);
        let b = e("b", vec![vec![7], vec![8]]);
        let p = 2048;
        let batch = make_batch(
            &[(&a, "x".into()), (&b, "y".into())],
            6,
            p,
            CodebookPattern::Flatten,
            None,
            &Device::Cpu,
        )
        .unwrap();
        // 3 frames × 2 codebooks = 6 steps; step t·K + q labels codebook q of frame t only.
        assert_eq!(batch.labels.dims(), &[2, 2, 6]);
        let l = batch.labels.to_vec3::<u32>().unwrap();
        assert_eq!(l[0][0], vec![1, p, 2, p, 3, p]);
        assert_eq!(l[0][1], vec![p, 4, p, 5, p, 6]);
        // The 1-frame example, padded to the batch length.
        assert_eq!(l[1][0], vec![7, p, p, p, p, p]);
        assert_eq!(l[1][1], vec![p, 8, p, p, p, p]);
        assert_eq!(batch.tokens, 6 + 2);
        // The decoder input (labels shifted right behind the BOS): at each step exactly the
        // token of the previous step is real, in its own codebook's row.
        let inputs = crate::train::loss::shift_right(&batch.labels, p).unwrap();
        let x = inputs.to_vec3::<u32>().unwrap();
        assert_eq!(x[0][0], vec![p, 1, p, 2, p, 3]);
        assert_eq!(x[0][1], vec![p, p, 4, p, 5, p]);
    }

    #[test]
    fn caption_augmentation_rates_are_as_configured() {
        let e = ex(
            "a",
            5,
            Some("a calm piano piece with soft strings and slow pads"),
        );
        let mut rng = rng_for(7, 0, 0);
        let n = 4000;
        let aug = Augment {
            condition_dropout: 0.3,
            word_dropout: 0.0,
            merge_fields: 0.25,
        };
        let caps: Vec<String> = (0..n)
            .map(|_| training_caption(&e, aug, &mut rng))
            .collect();
        let empty = caps.iter().filter(|c| c.is_empty()).count();
        let merged = caps
            .iter()
            .filter(|c| c.ends_with("ambient, 90 bpm"))
            .count();
        let p_empty = empty as f64 / n as f64;
        assert!((p_empty - 0.3).abs() < 0.03, "{p_empty}");
        let p_merge = merged as f64 / (n - empty) as f64;
        assert!((p_merge - 0.25).abs() < 0.04, "{p_merge}");
        let aug = Augment {
            word_dropout: 0.3,
            ..Augment::NONE
        };
        let words: usize = (0..n)
            .map(|_| {
                training_caption(&e, aug, &mut rng)
                    .split_whitespace()
                    .count()
            })
            .sum();
        let kept = words as f64 / (10 * n) as f64;
        assert!((kept - 0.7).abs() < 0.02, "{kept}");
        assert_eq!(
            training_caption(&e, Augment::NONE, &mut rng),
            "a calm piano piece with soft strings and slow pads"
        );
    }
}
