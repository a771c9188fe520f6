//! The streaming EnCodec decoder: chunks of any size, stitched, give the whole-clip decode (within
//! 1e-4 of full scale), on the tiny fixture's codec and on a random codec of musicgen-small's
//! layout; it holds back exactly its stated lookahead; bad chunks are errors, not panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle_core::{DType, Tensor};
use common::*;
use tunelab::models::encodec::{Config, EncodecModel};
use tunelab::models::musicgen::MusicGen;

/// Max abs error between the stitched stream and the whole-clip decode, as a fraction of full
/// scale (1.0).
const BOUND: f32 = 1e-4;

/// Codes `[1, K, t]` from a small LCG, every value inside the codebook.
fn codes(k: usize, t: usize, seed: u64) -> Tensor {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let v: Vec<u32> = (0..k * t)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 2048) as u32
        })
        .collect();
    Tensor::from_vec(v, (1, k, t), &device()).unwrap()
}

/// Decodes `codes` in chunks of `chunk` frames (an empty chunk in between) and returns the
/// stitched audio; checks the held-back samples against `lookahead_samples` after each chunk.
fn stitched(codec: &EncodecModel, codes: &Tensor, chunk: usize) -> Tensor {
    let (_, k, t) = codes.dims3().unwrap();
    let hop = codec.config().hop_length();
    let mut s = codec.decode_stream(k).unwrap();
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < t {
        let n = chunk.min(t - at);
        let y = s.push(&codes.narrow(2, at, n).unwrap()).unwrap();
        assert_eq!(y.dims()[..2], [1, 1]);
        pieces.push(y);
        at += n;
        if at >= 8 {
            // Past the start, every sample but the lookahead is out.
            assert_eq!(
                s.samples(),
                at * hop - s.lookahead_samples(),
                "after {at} frames"
            );
        }
        let empty = s.push(&codes.narrow(2, at, 0).unwrap()).unwrap();
        assert_eq!(empty.dims(), [1, 1, 0]);
    }
    assert_eq!(s.frames(), t);
    pieces.push(s.finish().unwrap());
    Tensor::cat(&pieces, 2).unwrap()
}

fn check(codec: &EncodecModel, what: &str, lengths: &[usize], chunks: &[usize]) {
    let k = 4;
    let mut worst = 0f32;
    for &t in lengths {
        let c = codes(k, t, t as u64);
        let whole = codec.decode(&c).unwrap();
        assert_eq!(whole.dims(), [1, 1, t * 640]);
        for &chunk in chunks {
            let got = stitched(codec, &c, chunk);
            let err = max_abs_diff(&got, &whole);
            assert!(
                err <= BOUND,
                "{what}: {t} frames in chunks of {chunk}: max abs error {err}"
            );
            worst = worst.max(err);
        }
    }
    println!("{what}, {lengths:?} frames: max abs error {worst:e}");
}

#[test]
fn stitched_chunks_equal_the_whole_clip_on_the_tiny_codec() {
    let m = tiny();
    let codec = m.codec().unwrap();
    // The 32 kHz layout's delay, from its layers: 3 frames of the first convolution's right
    // context (1920 samples), the transposed convolutions' left trims (4·80 + 3·16 + 2·4 + 2)
    // and the residual blocks' and last convolution's right contexts (80 + 16 + 4 + 1 + 3).
    assert_eq!(codec.decode_stream(4).unwrap().lookahead_samples(), 2402);
    // Lengths shorter than the first convolution's padding (HF pads those differently), a few
    // frames, and lengths that are no multiple of the chunks.
    check(codec, "tiny", &[1, 2, 3, 4, 5], &[1, 3, 7, 50]);
    check(codec, "tiny", &[53, 101], &[1, 3, 7, 50]);
    // HF's own codes of a real waveform (the parity fixture).
    let r = load("encodec_ref.safetensors");
    let c = r["codes"].squeeze(0).unwrap().to_dtype(DType::U32).unwrap();
    let whole = codec.decode(&c).unwrap();
    for chunk in [1, 3, 7, 50] {
        let err = max_abs_diff(&stitched(codec, &c, chunk), &whole);
        assert!(err <= BOUND, "fixture codes, chunks of {chunk}: {err}");
    }
}

#[test]
fn stitched_chunks_equal_the_whole_clip_at_musicgen_small_size() {
    let codec = MusicGen::random_codec(&Config::encodec_32khz(), 0, &device()).unwrap();
    let c = codes(4, 5, 0);
    let peak = codec
        .decode(&c)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // The bound means something only for a signal of the order of full scale.
    println!("musicgen-small layout, random weights: output peak {peak}");
    assert!(
        peak > 0.05 && peak < 20.0,
        "random codec's output peak {peak}"
    );
    check(&codec, "musicgen-small layout", &[2, 61], &[1, 3, 7, 50]);
}

/// Frame by frame through `push_frame` (the studio's and `generate --play`'s path): it decodes
/// chunks of 1, 2, 4, … up to `MAX_CHUNK` frames, so the first audio comes after a few frames,
/// no frame is lost or doubled, and the stitched audio is the whole clip's.
#[test]
fn frames_pushed_one_by_one_decode_in_growing_chunks_to_the_whole_clip() {
    use tunelab::models::encodec::MAX_CHUNK;
    let m = tiny();
    let codec = m.codec().unwrap();
    let hop = codec.config().hop_length();
    for t in [1, 7, 40, 101] {
        let c = codes(4, t, 3 + t as u64);
        let whole = codec.decode(&c).unwrap();
        let cols: Vec<Vec<u32>> = (0..t)
            .map(|i| {
                let col = c.narrow(2, i, 1).unwrap().flatten_all().unwrap();
                col.to_vec1::<u32>().unwrap()
            })
            .collect();
        let mut s = codec.decode_stream(4).unwrap();
        let mut pieces = Vec::new();
        let mut decoded_at = Vec::new();
        for (i, col) in cols.iter().enumerate() {
            let before = s.frames();
            let y = s.push_frame(col).unwrap();
            if s.frames() > before {
                decoded_at.push(i + 1);
            }
            pieces.push(y);
        }
        // Chunks of 1, 2, 4, 8, 16, 16, … frames: decoded after frames 1, 3, 7, 15, 31, 47, …
        let mut want = Vec::new();
        let (mut at, mut chunk) = (0, 1);
        while at + chunk <= t {
            at += chunk;
            want.push(at);
            chunk = (chunk * 2).min(MAX_CHUNK);
        }
        assert_eq!(decoded_at, want, "{t} frames");
        pieces.push(s.finish().unwrap());
        let got = Tensor::cat(&pieces, 2).unwrap();
        assert_eq!(got.dims(), [1, 1, t * hop]);
        let err = max_abs_diff(&got, &whole);
        assert!(err <= BOUND, "{t} frames one by one: {err}");
    }
    // Wrong frames are refused at once, and the stream goes on.
    let mut s = codec.decode_stream(4).unwrap();
    assert!(s.push_frame(&[1, 2, 3]).is_err());
    let e = s.push_frame(&[1, 2, 3, 5000]).unwrap_err().to_string();
    assert!(e.contains("5000"), "{e}");
    assert_eq!(s.push_frame(&[1, 2, 3, 4]).unwrap().dims()[2], 0);
    assert_eq!(s.frames(), 1);
}

#[test]
fn bad_chunks_are_errors_and_leave_the_stream_usable() {
    let m = tiny();
    let codec = m.codec().unwrap();
    assert!(codec.decode_stream(0).is_err());
    assert!(
        codec.decode_stream(5).is_err(),
        "more codebooks than the codec has"
    );
    let c = codes(4, 12, 1);
    let mut s = codec.decode_stream(4).unwrap();
    let first = s.push(&c.narrow(2, 0, 6).unwrap()).unwrap();
    // Three codebooks into a stream of four.
    let e = s.push(&codes(3, 2, 2)).unwrap_err().to_string();
    assert!(e.contains("codebooks"), "{e}");
    // A code past the codebook, a negative one, a float, a 2-d tensor, another batch size.
    let dev = device();
    let bad = Tensor::from_vec(vec![0u32, 1, 2, 2048], (1, 4, 1), &dev).unwrap();
    let e = s.push(&bad).unwrap_err().to_string();
    assert!(e.contains("2048"), "{e}");
    let neg = Tensor::from_vec(vec![0i64, 1, -1, 3], (1, 4, 1), &dev).unwrap();
    assert!(s.push(&neg).is_err());
    assert!(s.push(&c.to_dtype(DType::F32).unwrap()).is_err());
    assert!(s.push(&c.squeeze(0).unwrap()).is_err());
    assert!(s.push(&Tensor::cat(&[&c, &c], 0).unwrap()).is_err());
    // None of that moved the stream: the rest decodes to the whole clip.
    let rest = s.push(&c.narrow(2, 6, 6).unwrap()).unwrap();
    let tail = s.finish().unwrap();
    let got = Tensor::cat(&[&first, &rest, &tail], 2).unwrap();
    let err = max_abs_diff(&got, &codec.decode(&c).unwrap());
    assert!(err <= BOUND, "{err}");
    // A stream that got nothing finishes with nothing.
    let none = codec.decode_stream(4).unwrap().finish().unwrap();
    assert_eq!(none.dims(), [1, 1, 0]);
}
