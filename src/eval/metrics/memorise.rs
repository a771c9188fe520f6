//! Memorisation checks: is a generated clip (near-)copied from the training set?
//!
//! What:
//! - [`nearest`]: the training item whose *mean latent* (average of its 128-d
//!   EnCodec frames, see [`mean_latent`]) is closest in Euclidean distance to a
//!   generated clip's mean latent. A distance far below the typical
//!   nearest-neighbour distance between training items is a red flag.
//! - [`longest_shared_ngram`]: the longest run of identical consecutive tokens
//!   two token sequences share (longest common substring), by O(n·m) dynamic
//!   programming over two rolling rows — sequences are ≤ ~1500 tokens per
//!   codebook (30 s at 50 Hz), so one pair costs ~2 M cell updates.
//! - [`flag_copies`]: every generated item sharing a run of at least `min_len`
//!   tokens with some training item. Pairs are pre-filtered with an index of
//!   hashed `min_len`-grams of the training set (so the DP only runs on pairs
//!   that share at least one window); the result is exact (hash matches are
//!   confirmed by the DP, and equal windows always hash equal).
//!
//! Threshold: [`DEFAULT_COPY_THRESHOLD_FRAMES`] = 50 tokens, i.e. **1 second**
//! at the 50 Hz EnCodec frame rate of MusicGen's 32 kHz tokenizer. Independent
//! sampling essentially never reproduces a one-second run of one codebook
//! exactly, while a memorised riff does; shorter runs occur by chance in
//! repetitive material. Degenerate runs (silence, a held constant token) also
//! match and may need filtering by the caller.
//!
//! Codebooks: pass one codebook's stream (the first, coarsest codebook is the
//! most musically meaningful), or combine the codebooks of each frame into one
//! symbol with [`frame_keys`] so that only frames identical in *all* codebooks
//! match.
//!
//! Why: a fine-tune on a small private set can memorise; the studio must show
//! that a good FAD/KAD is not bought by copying.
//!
//! Caveat shared by the module family: distances here (like FAD on EnCodec
//! latents, which is not comparable with VGGish FAD) are only meaningful within
//! one tunelab model/tokenizer.

use serde::{Deserialize, Serialize};

use crate::error::metrics::{MetricsError, Result};

/// Default copy threshold: 50 tokens = 1 s at 50 Hz (MusicGen EnCodec).
pub const DEFAULT_COPY_THRESHOLD_FRAMES: usize = 50;

/// EnCodec frame rate of MusicGen's 32 kHz tokenizer, tokens per second.
pub const ENCODEC_FRAME_RATE_HZ: f64 = 50.0;

/// Mean of a clip's latent frames (all of the same dimension).
pub fn mean_latent(frames: &[Vec<f32>]) -> Result<Vec<f32>> {
    let dim = frames
        .first()
        .map(Vec::len)
        .ok_or(MetricsError::TooFewSamples {
            what: "mean latent frames",
            n: 0,
            need: 1,
        })?;
    let mut acc = vec![0.0_f64; dim];
    for (i, f) in frames.iter().enumerate() {
        if f.len() != dim {
            return Err(MetricsError::DimMismatch {
                what: "mean latent frame dimension",
                expected: dim,
                got: f.len(),
            });
        }
        for (a, v) in acc.iter_mut().zip(f) {
            if !v.is_finite() {
                return Err(MetricsError::NotFinite(format!(
                    "latent frame {i} has a non-finite component"
                )));
            }
            *a += f64::from(*v);
        }
    }
    let n = frames.len() as f64;
    Ok(acc.iter().map(|a| (a / n) as f32).collect())
}

/// Index and Euclidean distance of the bank entry nearest to `query` (all of
/// dimension `query.len()`); ties go to the lowest index.
pub fn nearest(query: &[f32], bank: &[Vec<f32>]) -> Result<(usize, f64)> {
    if bank.is_empty() {
        return Err(MetricsError::TooFewSamples {
            what: "nearest: bank entries",
            n: 0,
            need: 1,
        });
    }
    if !query.iter().all(|v| v.is_finite()) {
        return Err(MetricsError::NotFinite("nearest: query".into()));
    }
    let mut best = (0usize, f64::INFINITY);
    for (i, b) in bank.iter().enumerate() {
        if b.len() != query.len() {
            return Err(MetricsError::DimMismatch {
                what: "nearest: bank entry dimension",
                expected: query.len(),
                got: b.len(),
            });
        }
        let mut d2 = 0.0_f64;
        for (x, y) in query.iter().zip(b) {
            let d = f64::from(*x) - f64::from(*y);
            d2 += d * d;
        }
        if !d2.is_finite() {
            return Err(MetricsError::NotFinite(format!("nearest: bank entry {i}")));
        }
        if d2 < best.1 {
            best = (i, d2);
        }
    }
    Ok((best.0, best.1.sqrt()))
}

/// Where the longest shared run of two sequences is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedNgram {
    /// Run length in tokens (0 when nothing is shared).
    pub len: usize,
    /// Start of the run in the first sequence.
    pub a_start: usize,
    /// Start of the run in the second sequence.
    pub b_start: usize,
}

/// Longest common substring with its position (earliest end in `a`, then in
/// `b`, on ties). O(|a|·|b|) time, O(|b|) memory.
pub fn longest_shared_ngram_at<T: PartialEq>(a: &[T], b: &[T]) -> SharedNgram {
    let m = b.len();
    let mut prev = vec![0u32; m + 1];
    let mut cur = vec![0u32; m + 1];
    let mut best = SharedNgram {
        len: 0,
        a_start: 0,
        b_start: 0,
    };
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { 0 };
            let l = cur[j + 1] as usize;
            if l > best.len {
                best = SharedNgram {
                    len: l,
                    a_start: i + 1 - l,
                    b_start: j + 1 - l,
                };
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    best
}

/// Length of the longest run of consecutive tokens shared by `a` and `b`.
pub fn longest_shared_ngram<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    longest_shared_ngram_at(a, b).len
}

/// Packs up to 4 codebook streams (codes < 65 536, equal lengths) into one
/// `u64` symbol per frame, so n-grams match only when all codebooks match.
pub fn frame_keys(codebooks: &[&[u32]]) -> Result<Vec<u64>> {
    if codebooks.is_empty() || codebooks.len() > 4 {
        return Err(MetricsError::InvalidArgument(format!(
            "frame_keys takes 1 to 4 codebooks, got {}",
            codebooks.len()
        )));
    }
    let t = codebooks[0].len();
    let mut keys = vec![0u64; t];
    for (k, cb) in codebooks.iter().enumerate() {
        if cb.len() != t {
            return Err(MetricsError::DimMismatch {
                what: "frame_keys codebook length",
                expected: t,
                got: cb.len(),
            });
        }
        for (key, &code) in keys.iter_mut().zip(cb.iter()) {
            if code > u32::from(u16::MAX) {
                return Err(MetricsError::InvalidArgument(format!(
                    "frame_keys: code {code} does not fit 16 bits"
                )));
            }
            *key |= u64::from(code) << (16 * k);
        }
    }
    Ok(keys)
}

/// A generated item that shares a long run with a training item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyFlag {
    /// Index into the generated items.
    pub generated: usize,
    /// Index of the training item with the longest shared run.
    pub training: usize,
    /// Length of that run, in tokens.
    pub length: usize,
    /// Start of the run in the generated item.
    pub generated_start: usize,
    /// Start of the run in the training item.
    pub training_start: usize,
}

/// Polynomial rolling-hash base (odd, mod 2⁶⁴).
const HASH_BASE: u64 = 0x0000_0100_0000_01B3;

/// Rolling hashes of every `len`-window of `seq` (empty when shorter).
fn window_hashes<T: Copy + Into<u64>>(seq: &[T], len: usize) -> Vec<u64> {
    if seq.len() < len || len == 0 {
        return Vec::new();
    }
    let top = (1..len).fold(1u64, |p, _| p.wrapping_mul(HASH_BASE)); // B^(len-1)
    let sym = |t: T| -> u64 { t.into().wrapping_add(0x9E37_79B9_7F4A_7C15) };
    let mut h = 0u64;
    for &t in &seq[..len] {
        h = h.wrapping_mul(HASH_BASE).wrapping_add(sym(t));
    }
    let mut out = Vec::with_capacity(seq.len() - len + 1);
    out.push(h);
    for i in len..seq.len() {
        h = h
            .wrapping_sub(sym(seq[i - len]).wrapping_mul(top))
            .wrapping_mul(HASH_BASE)
            .wrapping_add(sym(seq[i]));
        out.push(h);
    }
    out
}

/// Generated items that share a run of at least `min_len` tokens with any
/// training item (e.g. [`DEFAULT_COPY_THRESHOLD_FRAMES`] = 50 = 1 s), one
/// flag per flagged generated item naming its best-matching training item
/// (longest run; lowest index on ties), sorted by generated index.
pub fn flag_copies<T: Copy + Eq + Into<u64>>(
    generated: &[Vec<T>],
    training: &[Vec<T>],
    min_len: usize,
) -> Result<Vec<CopyFlag>> {
    if min_len == 0 {
        return Err(MetricsError::InvalidArgument(
            "flag_copies: min_len must be ≥ 1".into(),
        ));
    }
    // Index: (hash, training item), one entry per distinct window hash per
    // item — enough to know which items contain a window.
    let mut index: Vec<(u64, usize)> = Vec::new();
    for (t, seq) in training.iter().enumerate() {
        let mut hs = window_hashes(seq, min_len);
        hs.sort_unstable();
        hs.dedup();
        index.extend(hs.into_iter().map(|h| (h, t)));
    }
    index.sort_unstable();

    let mut flags = Vec::new();
    let mut seen = vec![false; training.len()];
    for (g, seq) in generated.iter().enumerate() {
        let mut hs = window_hashes(seq, min_len);
        hs.sort_unstable();
        hs.dedup();
        let mut candidates: Vec<usize> = Vec::new();
        for h in hs {
            let lo = index.partition_point(|e| e.0 < h);
            for &(eh, t) in &index[lo..] {
                if eh != h {
                    break;
                }
                if !seen[t] {
                    seen[t] = true;
                    candidates.push(t);
                }
            }
        }
        candidates.sort_unstable();
        let mut best: Option<CopyFlag> = None;
        for &t in &candidates {
            seen[t] = false;
            let s = longest_shared_ngram_at(seq, &training[t]);
            if s.len >= min_len && best.is_none_or(|b| s.len > b.length) {
                best = Some(CopyFlag {
                    generated: g,
                    training: t,
                    length: s.len,
                    generated_start: s.a_start,
                    training_start: s.b_start,
                });
            }
        }
        flags.extend(best);
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_tokens(n: usize, seed: u64) -> Vec<u32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(0..2048)).collect()
    }

    #[test]
    fn shared_ngram_crafted() {
        let a = [1u32, 2, 3, 4, 5, 6, 7];
        let b = [9u32, 3, 4, 5, 9, 1, 2];
        assert_eq!(
            longest_shared_ngram_at(&a, &b),
            SharedNgram {
                len: 3,
                a_start: 2,
                b_start: 1
            }
        );
        assert_eq!(longest_shared_ngram(&a, &a), 7);
        assert_eq!(longest_shared_ngram::<u32>(&a, &[]), 0);
        assert_eq!(longest_shared_ngram(&[1u32, 2], &[3u32, 4]), 0);
        // Repeats: "abab" vs "bab" → 3.
        assert_eq!(longest_shared_ngram(&[0u32, 1, 0, 1], &[1u32, 0, 1]), 3);
        // Generic over token types.
        assert_eq!(longest_shared_ngram(b"banana", b"ananas"), 5);
    }

    #[test]
    fn shared_ngram_planted_in_long_sequences() {
        let mut a = random_tokens(1500, 1);
        let b0 = random_tokens(1500, 2);
        let mut b = b0.clone();
        b[700..780].copy_from_slice(&a[100..180]);
        let s = longest_shared_ngram_at(&a, &b);
        assert!(s.len >= 80 && s.len < 85, "{s:?}");
        assert_eq!(
            &a[s.a_start..s.a_start + s.len],
            &b[s.b_start..s.b_start + s.len]
        );
        // Independent random codes share only short runs.
        a[100..180].copy_from_slice(&random_tokens(80, 3));
        assert!(longest_shared_ngram(&a, &b0) < 4);
    }

    #[test]
    fn nearest_picks_planted_duplicate() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let bank: Vec<Vec<f32>> = (0..50)
            .map(|_| (0..128).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let mut query = bank[37].clone();
        for v in &mut query {
            *v += 1e-3;
        }
        let (i, d) = nearest(&query, &bank).unwrap();
        assert_eq!(i, 37);
        assert!((d - (128.0_f64).sqrt() * 1e-3).abs() < 1e-5, "{d}");
        // From frames via mean latents.
        let frames = vec![bank[12].clone(), bank[12].clone()];
        let m = mean_latent(&frames).unwrap();
        assert_eq!(nearest(&m, &bank).unwrap(), (12, 0.0));
        assert!(nearest(&query, &[]).is_err());
        assert!(nearest(&query[..3], &bank).is_err());
        assert!(mean_latent(&[]).is_err());
    }

    #[test]
    fn flag_copies_finds_planted_copy_only() {
        let training: Vec<Vec<u32>> = (0..20).map(|s| random_tokens(1500, 100 + s)).collect();
        let mut generated: Vec<Vec<u32>> = (0..6).map(|s| random_tokens(1500, 200 + s)).collect();
        // Item 2 copies 1.2 s (60 tokens) of training item 13; item 4 copies
        // only 0.6 s (30 tokens) of item 5 — below the 1 s threshold.
        generated[2][400..460].copy_from_slice(&training[13][900..960]);
        generated[4][10..40].copy_from_slice(&training[5][0..30]);
        let flags = flag_copies(&generated, &training, DEFAULT_COPY_THRESHOLD_FRAMES).unwrap();
        assert_eq!(flags.len(), 1, "{flags:?}");
        let f = flags[0];
        assert_eq!((f.generated, f.training), (2, 13));
        assert!(f.length >= 60 && f.length < 65);
        assert_eq!(
            &generated[2][f.generated_start..f.generated_start + f.length],
            &training[13][f.training_start..f.training_start + f.length]
        );
        // A lower threshold also catches item 4, still one flag per item.
        let flags = flag_copies(&generated, &training, 25).unwrap();
        let pairs: Vec<(usize, usize)> = flags.iter().map(|f| (f.generated, f.training)).collect();
        assert_eq!(pairs, vec![(2, 13), (4, 5)]);
        assert!(flag_copies(&generated, &training, 0).is_err());
        // Sequences shorter than the threshold are simply never flagged.
        let short = vec![vec![1u32, 2, 3]];
        assert!(flag_copies(&short, &short, 50).unwrap().is_empty());
        let json = serde_json::to_string(&flags).unwrap();
        let back: Vec<CopyFlag> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, flags);
    }

    #[test]
    fn frame_keys_pack_codebooks() {
        let c0 = [1u32, 2, 3];
        let c1 = [4u32, 5, 6];
        let k = frame_keys(&[&c0, &c1]).unwrap();
        assert_eq!(k[0], 1 | (4 << 16));
        // A frame differing only in codebook 1 differs as a key.
        let c1b = [4u32, 9, 6];
        let kb = frame_keys(&[&c0, &c1b]).unwrap();
        assert_eq!(longest_shared_ngram(&k, &kb), 1);
        assert!(frame_keys(&[]).is_err());
        assert!(frame_keys(&[&c0, &c1[..2]]).is_err());
        assert!(frame_keys(&[&[70_000u32]]).is_err());
        // Keys feed flag_copies too (u64 tokens).
        let flags = flag_copies(std::slice::from_ref(&k), std::slice::from_ref(&k), 2).unwrap();
        assert_eq!(flags[0].length, 3);
    }

    #[test]
    fn window_hashes_roll_correctly() {
        let seq = random_tokens(200, 9);
        let rolled = window_hashes(&seq, 7);
        for (i, h) in rolled.iter().enumerate() {
            assert_eq!(*h, window_hashes(&seq[i..i + 7], 7)[0]);
        }
        assert!(window_hashes(&seq[..5], 7).is_empty());
    }
}
