//! Codebook interleaving. MusicGen's **delay** pattern shifts codebook `k` right by `k` steps so
//! one decoder step predicts frame `t` of codebook 0 together with frame `t-k` of codebook `k`.
//! In the decoder's sequence, position 0 is the BOS (= pad, 2048) for every codebook and codebook
//! `k`'s frame `t` sits at position `t + k + 1`; every other slot holds the pad id.

/// Codes `[K][T]` → the delayed sequence `[K][T + K]` including the leading BOS column.
pub fn delay(codes: &[Vec<u32>], pad: u32) -> Vec<Vec<u32>> {
    let k_total = codes.len();
    let t = codes.first().map(|c| c.len()).unwrap_or(0);
    let len = t + k_total;
    codes
        .iter()
        .enumerate()
        .map(|(k, row)| {
            let mut out = vec![pad; len];
            out[k + 1..k + 1 + t].copy_from_slice(row);
            out
        })
        .collect()
}

/// Inverse of [`delay`]: the delayed sequence (with BOS column) → codes `[K][T]`.
pub fn undelay(delayed: &[Vec<u32>], frames: usize) -> Vec<Vec<u32>> {
    delayed
        .iter()
        .enumerate()
        .map(|(k, row)| row[k + 1..k + 1 + frames].to_vec())
        .collect()
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
}
