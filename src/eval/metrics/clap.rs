//! CLAP score: how well each generated clip matches its prompt, as the cosine similarity between
//! LAION-CLAP's text embedding of the prompt and its audio embedding of the clip.
//!
//! What: for every `(prompt, clip)` pair, `cos(text(prompt), audio(clip))` with both embeddings
//! L2-normalised as HF's `ClapModel.get_text_features` / `get_audio_features` return them, and
//! the mean over pairs. Clips are MusicGen's 32 kHz audio ([`clap_score`]) or any rate
//! ([`clap_score_at`]); they are resampled to the model's 48 kHz first.
//!
//! Why: an objective, prompt-aware check that a fine-tune still follows its text conditioning.
//! Optional: it needs user-supplied LAION-CLAP weights (no weights ship with tunelab).
//!
//! Caveats: only the first 10 s of a clip count (HF crops longer clips at a random offset; this
//! is the deterministic offset-0 crop). Scores depend on the checkpoint, so compare runs scored
//! with the same one; values are cosines in [−1, 1], typically well below 1 even for good
//! matches.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::clap::Clap;

/// MusicGen's output rate.
pub const MUSICGEN_RATE: u32 = 32_000;

/// The score of one clip against its prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClapClipScore {
    pub prompt: String,
    /// Cosine similarity of the prompt's and the clip's CLAP embeddings, in [−1, 1].
    pub similarity: f64,
}

/// CLAP scores of a set of clips, in input order, and their mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClapScore {
    pub clips: Vec<ClapClipScore>,
    pub mean: f64,
}

/// CLAP score of `(prompt, clip)` pairs, the clips mono at 32 kHz (MusicGen's rate).
pub fn clap_score<P: AsRef<str>, A: AsRef<[f32]>>(
    model: &Clap,
    items: &[(P, A)],
) -> Result<ClapScore> {
    clap_score_at(model, items, MUSICGEN_RATE)
}

/// CLAP score of `(prompt, clip)` pairs, the clips mono at `sample_rate` Hz. Each distinct
/// prompt is embedded once.
pub fn clap_score_at<P: AsRef<str>, A: AsRef<[f32]>>(
    model: &Clap,
    items: &[(P, A)],
    sample_rate: u32,
) -> Result<ClapScore> {
    if items.is_empty() {
        return Err(Error::InvalidRequest(
            "CLAP score: no (prompt, clip) pairs".into(),
        ));
    }
    let mut text: HashMap<&str, Vec<f32>> = HashMap::new();
    let mut clips = Vec::with_capacity(items.len());
    for (prompt, clip) in items {
        let prompt = prompt.as_ref();
        if !text.contains_key(prompt) {
            let e = model.get_text_features(&[prompt])?;
            text.insert(prompt, e.flatten_all()?.to_vec1::<f32>()?);
        }
        let t = &text[prompt];
        let a = model
            .audio_embeddings(&[clip.as_ref()], sample_rate)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let similarity: f64 = t
            .iter()
            .zip(&a)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        clips.push(ClapClipScore {
            prompt: prompt.to_string(),
            similarity,
        });
    }
    let mean = clips.iter().map(|c| c.similarity).sum::<f64>() / clips.len() as f64;
    Ok(ClapScore { clips, mean })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::clap::tests::{captions, reference, tiny, waves};

    /// Every (caption, clip) pair of the fixture scores its reference cosine similarity.
    #[test]
    fn score_equals_the_reference_similarities() {
        let model = tiny();
        let r = reference();
        let sim = r["similarity"].to_vec2::<f32>().unwrap(); // [caption][clip]
        let waves = waves(&r);
        let caps = captions();
        let mut items = Vec::new();
        let mut want = Vec::new();
        for (i, c) in caps.iter().enumerate() {
            for (j, w) in waves.iter().enumerate() {
                items.push((c.as_str(), w.as_slice()));
                want.push(f64::from(sim[i][j]));
            }
        }
        let s = clap_score_at(&model, &items, 48_000).unwrap();
        assert_eq!(s.clips.len(), want.len());
        let mut worst = 0f64;
        for (got, want) in s.clips.iter().zip(&want) {
            worst = worst.max((got.similarity - want).abs());
        }
        eprintln!("CLAP score vs reference similarities: max abs error {worst:e}");
        // Measured 2.2e-7 (see models::clap::tests for the per-stage errors).
        assert!(worst <= 1e-6, "max abs error {worst}");
        let mean = want.iter().sum::<f64>() / want.len() as f64;
        assert!((s.mean - mean).abs() <= 1e-6);
        assert_eq!(s.clips[1].prompt, caps[0]);
        // Serialisable for the report.
        let json = serde_json::to_string(&s).unwrap();
        let back: ClapScore = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn score_at_32k_and_errors() {
        let model = tiny();
        let clip: Vec<f32> = (0..16_000).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
        let s = clap_score(&model, &[("a calm drone".to_string(), clip.clone())]).unwrap();
        assert_eq!(s.clips.len(), 1);
        assert!(s.mean.abs() <= 1.0 && s.mean == s.clips[0].similarity);
        let none: [(&str, &[f32]); 0] = [];
        assert!(clap_score(&model, &none).is_err());
        assert!(clap_score(&model, &[("x", &[][..])]).is_err());
    }
}
