//! Codebook interleaving. MusicGen's **delay** pattern shifts codebook `k` right by `k` steps so
//! one decoder step predicts frame `t` of codebook 0 together with frame `t-k` of codebook `k`.
//! In the decoder's sequence, position 0 is the BOS (= pad, 2048) for every codebook and codebook
//! `k`'s frame `t` sits at position `t + k + 1`; every other slot holds the pad id.

use serde::{Deserialize, Serialize};

/// How the K codebooks are laid out over decoder steps. `Delay` is MusicGen's; `Parallel`
/// predicts all codebooks of a frame at the same step (the cheaper layout of the from-scratch
/// MusicGen experiments). Both are "codebook `k` at offset `o_k`": frame `t` of codebook `k` sits
/// at position `t + o_k + 1` (position 0 is the BOS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodebookPattern {
    #[default]
    Delay,
    Parallel,
}

impl CodebookPattern {
    pub fn is_delay(&self) -> bool {
        *self == Self::Delay
    }

    /// Offset of each of `k` codebooks.
    pub fn offsets(self, k: usize) -> Vec<usize> {
        match self {
            Self::Delay => (0..k).collect(),
            Self::Parallel => vec![0; k],
        }
    }

    /// Decoder positions for `frames` frames of `k` codebooks, BOS included.
    pub fn len(self, frames: usize, k: usize) -> usize {
        frames + 1 + self.offsets(k).into_iter().max().unwrap_or(0)
    }

    /// Codes `[K][T]` → the interleaved sequence `[K][len]` including the BOS column.
    pub fn apply(self, codes: &[Vec<u32>], pad: u32) -> Vec<Vec<u32>> {
        let k_total = codes.len();
        let t = codes.first().map(|c| c.len()).unwrap_or(0);
        let len = self.len(t, k_total);
        codes
            .iter()
            .zip(self.offsets(k_total))
            .map(|(row, o)| {
                let mut out = vec![pad; len];
                out[o + 1..o + 1 + t].copy_from_slice(row);
                out
            })
            .collect()
    }

    /// Inverse of [`CodebookPattern::apply`].
    pub fn revert(self, seq: &[Vec<u32>], frames: usize) -> Vec<Vec<u32>> {
        seq.iter()
            .zip(self.offsets(seq.len()))
            .map(|(row, o)| row[o + 1..o + 1 + frames].to_vec())
            .collect()
    }

    /// Which frame of codebook `kk` (of `k`) is produced at position `pos`, if any.
    pub fn frame_at(self, pos: usize, kk: usize, k: usize, frames: usize) -> Option<usize> {
        let o = self.offsets(k).get(kk).copied()?;
        let t = pos.checked_sub(o + 1)?;
        (t < frames).then_some(t)
    }
}

impl std::str::FromStr for CodebookPattern {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s {
            "delay" => Ok(Self::Delay),
            "parallel" => Ok(Self::Parallel),
            "flatten" => Err(crate::error::Error::InvalidRequest(
                "the flatten pattern is not implemented yet (delay, parallel)".into(),
            )),
            o => Err(crate::error::Error::InvalidRequest(format!(
                "unknown codebook pattern {o:?} (delay, parallel)"
            ))),
        }
    }
}

/// Codes `[K][T]` → the delayed sequence `[K][T + K]` including the leading BOS column.
pub fn delay(codes: &[Vec<u32>], pad: u32) -> Vec<Vec<u32>> {
    CodebookPattern::Delay.apply(codes, pad)
}

/// Inverse of [`delay`]: the delayed sequence (with BOS column) → codes `[K][T]`.
pub fn undelay(delayed: &[Vec<u32>], frames: usize) -> Vec<Vec<u32>> {
    CodebookPattern::Delay.revert(delayed, frames)
}

/// Which frame of codebook `k` is produced at decoder position `pos` (1-based after BOS), if any.
pub fn frame_at(pos: usize, k: usize, frames: usize) -> Option<usize> {
    let t = pos.checked_sub(k + 1)?;
    (t < frames).then_some(t)
}

/// Decoder positions needed for `frames` frames of `k` codebooks, BOS included.
pub fn delayed_len(frames: usize, k: usize) -> usize {
    frames + k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_roundtrip_and_layout() {
        let codes = vec![
            vec![1, 2, 3],
            vec![4, 5, 6],
            vec![7, 8, 9],
            vec![10, 11, 12],
        ];
        let d = delay(&codes, 2048);
        assert_eq!(d[0], vec![2048, 1, 2, 3, 2048, 2048, 2048]);
        assert_eq!(d[3], vec![2048, 2048, 2048, 2048, 10, 11, 12]);
        assert_eq!(undelay(&d, 3), codes);
        assert_eq!(frame_at(1, 0, 3), Some(0));
        assert_eq!(frame_at(1, 1, 3), None);
        assert_eq!(frame_at(6, 3, 3), Some(2));
        assert_eq!(frame_at(4, 0, 3), None);
        assert_eq!(delayed_len(3, 4), 7);
    }

    #[test]
    fn parallel_pattern_predicts_a_whole_frame_per_step() {
        let codes = vec![vec![1, 2], vec![3, 4]];
        let p = CodebookPattern::Parallel;
        let seq = p.apply(&codes, 9);
        assert_eq!(seq, vec![vec![9, 1, 2], vec![9, 3, 4]]);
        assert_eq!(p.revert(&seq, 2), codes);
        assert_eq!(p.len(2, 2), 3);
        assert_eq!(p.frame_at(1, 1, 2, 2), Some(0));
        assert_eq!(CodebookPattern::Delay.apply(&codes, 9), delay(&codes, 9));
        assert!("flatten".parse::<CodebookPattern>().is_err());
    }
}
