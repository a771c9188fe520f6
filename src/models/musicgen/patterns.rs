//! Codebook interleaving. MusicGen's **delay** pattern shifts codebook `k` right by `k` steps so
//! one decoder step predicts frame `t` of codebook 0 together with frame `t-k` of codebook `k`.
//! In the decoder's sequence, position 0 is the BOS (= pad, 2048) for every codebook and codebook
//! `k`'s frame `t` sits at position `t + k + 1`; every other slot holds the pad id.

use serde::{Deserialize, Serialize};

/// How the K codebooks are laid out over decoder steps. `Delay` is MusicGen's; `Parallel`
/// predicts all codebooks of a frame at the same step (the cheaper layout of the from-scratch
/// MusicGen experiments); `Flatten` unrolls the T frames × K codebooks into K·T steps, step
/// `t·K + q` carrying codebook `q` of frame `t` and nothing else (audiocraft's
/// `UnrolledPatternProvider` with every codebook flattened): the most expensive, one token per
/// step. Position 0 is the BOS in every layout; every slot that carries no frame holds the pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodebookPattern {
    #[default]
    Delay,
    Parallel,
    Flatten,
}

impl CodebookPattern {
    pub fn is_delay(&self) -> bool {
        *self == Self::Delay
    }

    /// The name `--pattern` and the configs use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Delay => "delay",
            Self::Parallel => "parallel",
            Self::Flatten => "flatten",
        }
    }

    /// Decoder position (the BOS is 0) of frame `t` of codebook `kk` of `k`.
    pub fn position(self, t: usize, kk: usize, k: usize) -> usize {
        match self {
            Self::Delay => t + kk + 1,
            Self::Parallel => t + 1,
            Self::Flatten => t * k + kk + 1,
        }
    }

    /// Decoder positions for `frames` frames of `k` codebooks, BOS included.
    pub fn len(self, frames: usize, k: usize) -> usize {
        match self {
            Self::Delay => frames + k.max(1),
            Self::Parallel => frames + 1,
            Self::Flatten => frames * k + 1,
        }
    }

    /// The most frames of `k` codebooks whose sequence fits in `positions` (BOS included).
    pub fn max_frames(self, positions: usize, k: usize) -> usize {
        match self {
            Self::Flatten => positions.saturating_sub(1) / k.max(1),
            _ => positions.saturating_sub(self.len(0, k)),
        }
    }

    /// Codes `[K][T]` → the interleaved sequence `[K][len]` including the BOS column.
    pub fn apply(self, codes: &[Vec<u32>], pad: u32) -> Vec<Vec<u32>> {
        let k_total = codes.len();
        let t = codes.first().map(|c| c.len()).unwrap_or(0);
        let len = self.len(t, k_total);
        codes
            .iter()
            .enumerate()
            .map(|(kk, row)| {
                let mut out = vec![pad; len];
                for (tt, &c) in row.iter().enumerate().take(t) {
                    out[self.position(tt, kk, k_total)] = c;
                }
                out
            })
            .collect()
    }

    /// Inverse of [`CodebookPattern::apply`]: codes `[K][frames]` in frame order.
    pub fn revert(self, seq: &[Vec<u32>], frames: usize) -> Vec<Vec<u32>> {
        let k = seq.len();
        seq.iter()
            .enumerate()
            .map(|(kk, row)| (0..frames).map(|t| row[self.position(t, kk, k)]).collect())
            .collect()
    }

    /// Which frame of codebook `kk` (of `k`) is produced at position `pos`, if any.
    pub fn frame_at(self, pos: usize, kk: usize, k: usize, frames: usize) -> Option<usize> {
        if kk >= k {
            return None;
        }
        let t = match self {
            Self::Delay => pos.checked_sub(kk + 1)?,
            Self::Parallel => pos.checked_sub(1)?,
            Self::Flatten => {
                let p = pos.checked_sub(1)?;
                if p % k != kk {
                    return None;
                }
                p / k
            }
        };
        (t < frames).then_some(t)
    }
}

impl std::str::FromStr for CodebookPattern {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s {
            "delay" => Ok(Self::Delay),
            "parallel" => Ok(Self::Parallel),
            "flatten" => Ok(Self::Flatten),
            o => Err(crate::error::Error::InvalidRequest(format!(
                "unknown codebook pattern {o:?} (delay, parallel, flatten)"
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
        assert!("interleave".parse::<CodebookPattern>().is_err());
    }

    #[test]
    fn flatten_unrolls_one_codebook_per_step() {
        // 2 frames × 3 codebooks → 6 steps after the BOS, step t·K + q carrying (t, q).
        let codes = vec![vec![1, 2], vec![3, 4], vec![5, 6]];
        let f = CodebookPattern::Flatten;
        let seq = f.apply(&codes, 9);
        assert_eq!(
            seq,
            vec![
                vec![9, 1, 9, 9, 2, 9, 9],
                vec![9, 9, 3, 9, 9, 4, 9],
                vec![9, 9, 9, 5, 9, 9, 6],
            ]
        );
        assert_eq!(f.len(2, 3), 7);
        assert_eq!(f.revert(&seq, 2), codes);
        // Exactly one codebook is produced at each step after the BOS.
        for pos in 1..7 {
            let made: Vec<(usize, usize)> = (0..3)
                .filter_map(|kk| f.frame_at(pos, kk, 3, 2).map(|t| (kk, t)))
                .collect();
            assert_eq!(made, vec![((pos - 1) % 3, (pos - 1) / 3)]);
        }
        assert_eq!(f.frame_at(0, 0, 3, 2), None);
        assert_eq!(f.frame_at(7, 0, 3, 2), None);
        assert_eq!(f.max_frames(7, 3), 2);
        assert_eq!(f.max_frames(9, 3), 2);
        assert_eq!(CodebookPattern::Delay.max_frames(2048, 4), 2044);
        assert_eq!(CodebookPattern::Parallel.max_frames(2048, 4), 2047);
        assert_eq!("flatten".parse::<CodebookPattern>().unwrap(), f);
        assert_eq!(f.name(), "flatten");
        assert_eq!(serde_json::to_string(&f).unwrap(), "\"flatten\"");
    }
}
