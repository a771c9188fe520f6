//! Reference parity with Hugging Face transformers on the tiny random-init MusicGen written by
//! `tools/make_fixtures.py`: T5 states, EnCodec codes/audio, decoder logits with and without
//! CFG, and greedy codes. fp32 tolerance 1e-4; greedy codes must be identical.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle_core::{DType, IndexOp, Tensor};
use common::*;
use tunelab::generate::generate_codes;
use tunelab::models::musicgen::sampling::{Sampler, SamplingParams};

const TOL: f32 = 1e-4;

#[test]
fn tokenizer_matches_reference_ids() {
    let model = tiny();
    let text = std::fs::read_to_string(fixtures().join("tokenizer_cases.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 3);
    for c in cases {
        let want: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
        let got = model.text.tokenize(c["text"].as_str().unwrap()).unwrap();
        assert_eq!(got, want, "{}", c["text"]);
    }
}

#[test]
fn t5_hidden_states_match() {
    let mut model = tiny();
    let r = load("t5_ref.safetensors");
    for i in 0..3 {
        let ids = ids(&r[&format!("ids.{i}")]);
        let got = model.text.encode_ids(&ids).unwrap();
        let err = max_abs_diff(&got, &r[&format!("hidden.{i}")]);
        assert!(err <= TOL, "prompt {i}: T5 max abs error {err}");
    }
}

#[test]
fn padded_batch_conditioning_matches_masked_hf_batch() {
    let mut model = tiny();
    let r = load("t5_ref.safetensors");
    let rows = unpadded_rows(&r["batch_ids"], &r["batch_mask"]);
    let mask = r["batch_mask"]
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec2::<i64>()
        .unwrap();
    let (states, m) = model.text.encode_id_batch(&rows).unwrap();
    // Real tokens equal HF's masked batch.
    let want = &r["batch_hidden"];
    for (b, mrow) in mask.iter().enumerate() {
        let n = mrow.iter().filter(|v| **v == 1).count();
        let err = max_abs_diff(&states.i((b, 0..n)).unwrap(), &want.i((b, 0..n)).unwrap());
        assert!(err <= TOL, "row {b}: {err}");
    }
    let cond = model.lm.condition(&states, &m).unwrap();
    let err = max_abs_diff(&cond.states, &r["batch_proj"]);
    assert!(err <= TOL, "projected conditioning: {err}");
}

#[test]
fn encodec_codes_latents_and_audio_match() {
    let model = tiny();
    let r = load("encodec_ref.safetensors");
    let wave = &r["wave"];
    let latents = model.codec().unwrap().encode_latents(wave).unwrap();
    let err = max_abs_diff(&latents, &r["latents"]);
    assert!(err <= TOL, "latents: {err}");
    let codes = model.codec().unwrap().encode(wave).unwrap();
    let want = r["codes"].squeeze(0).unwrap(); // [1, 4, T]
    assert_eq!(ids(&codes), ids(&want), "EnCodec codes differ");
    let audio = model
        .codec()
        .unwrap()
        .decode(&want.to_dtype(DType::U32).unwrap())
        .unwrap();
    let err = max_abs_diff(&audio, &r["decoded"]);
    assert!(err <= TOL, "decoded audio: {err}");

    // A length that is not a multiple of the hop (extra padding inside every conv).
    let codes = model.codec().unwrap().encode(&r["wave_odd"]).unwrap();
    let want = r["codes_odd"].squeeze(0).unwrap();
    assert_eq!(ids(&codes), ids(&want), "EnCodec codes differ (odd length)");
    let audio = model
        .codec()
        .unwrap()
        .decode(&want.to_dtype(DType::U32).unwrap())
        .unwrap();
    let err = max_abs_diff(&audio, &r["decoded_odd"]);
    assert!(err <= TOL, "decoded audio (odd length): {err}");
}

fn decoder_logits(
    model: &mut tunelab::models::musicgen::MusicGen,
    text_ids: &Tensor,
    text_mask: &Tensor,
    dec_ids: &Tensor,
) -> (Tensor, Tensor) {
    let k = model.num_codebooks();
    let b = text_ids.dim(0).unwrap();
    let rows = unpadded_rows(text_ids, text_mask);
    let (states, mask) = model.text.encode_id_batch(&rows).unwrap();
    let cond = model.lm.condition(&states, &mask).unwrap();
    let s = dec_ids.dim(1).unwrap();
    let codes = dec_ids
        .to_dtype(DType::U32)
        .unwrap()
        .reshape((b, k, s))
        .unwrap();
    let logits = model.lm.forward(&codes, &cond, None).unwrap();
    let uncond = cond.with_unconditional().unwrap();
    let both = model
        .lm
        .forward(&Tensor::cat(&[&codes, &codes], 0).unwrap(), &uncond, None)
        .unwrap();
    let un = both.narrow(0, b, b).unwrap();
    (logits, un)
}

#[test]
fn decoder_logits_match_with_and_without_cfg() {
    let mut model = tiny();
    let r = load("decoder_ref.safetensors");
    let (cond, uncond) = decoder_logits(
        &mut model,
        &r["text_ids"],
        &r["text_mask"],
        &r["decoder_input_ids"],
    );
    let err = max_abs_diff(&cond, &r["logits_cond"]);
    assert!(err <= TOL, "conditional logits: {err}");
    let err = max_abs_diff(&uncond, &r["logits_uncond"]);
    assert!(err <= TOL, "unconditional logits: {err}");
    // Guided logits through the same formula the sampler uses.
    let (c, u) = (
        cond.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        uncond.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    let g = tunelab::models::musicgen::sampling::guide(&c, &u, 3.0);
    let g = Tensor::from_vec(g, cond.dims(), &device()).unwrap();
    let err = max_abs_diff(&g, &r["logits_cfg"]);
    assert!(err <= TOL, "CFG logits: {err}");
}

#[test]
fn decoder_logits_match_for_a_padded_batch_of_two_prompts() {
    let mut model = tiny();
    let r = load("decoder_ref.safetensors");
    let (cond, _) = decoder_logits(
        &mut model,
        &r["text_ids_b2"],
        &r["text_mask_b2"],
        &r["decoder_input_ids_b2"],
    );
    let err = max_abs_diff(&cond, &r["logits_cond_b2"]);
    assert!(err <= TOL, "batched logits: {err}");
}

#[test]
fn kv_cache_steps_equal_the_full_forward() {
    let mut model = tiny();
    let r = load("decoder_ref.safetensors");
    let (full, _) = decoder_logits(
        &mut model,
        &r["text_ids"],
        &r["text_mask"],
        &r["decoder_input_ids"],
    );
    let ids_v = ids(&r["text_ids"]);
    let (states, mask) = model.text.encode_id_batch(&[ids_v]).unwrap();
    let cond = model.lm.condition(&states, &mask).unwrap();
    let dec = &r["decoder_input_ids"];
    let s = dec.dim(1).unwrap();
    let codes = dec
        .to_dtype(DType::U32)
        .unwrap()
        .reshape((1, 4, s))
        .unwrap();
    let mut cache = tunelab::models::musicgen::decoder::DecoderCache::new(model.lm.config(), s);
    // A 3-token prefill, then one token at a time.
    let mut parts = vec![model
        .lm
        .forward(&codes.narrow(2, 0, 3).unwrap(), &cond, Some(&mut cache))
        .unwrap()];
    for p in 3..s {
        parts.push(
            model
                .lm
                .forward(&codes.narrow(2, p, 1).unwrap(), &cond, Some(&mut cache))
                .unwrap(),
        );
    }
    let stepped = Tensor::cat(&parts, 2).unwrap();
    let err = max_abs_diff(&stepped, &full);
    assert!(
        err <= TOL,
        "cached decoding differs from the full forward: {err}"
    );
}

#[test]
fn greedy_codes_are_identical_to_hf_generate() {
    let mut model = tiny();
    let cases = greedy_cases();
    assert!(cases.len() >= 4);
    let greedy = SamplingParams {
        top_k: 1,
        ..Default::default()
    };
    for c in cases {
        let k = model.num_codebooks();
        let frames = c.max_new_tokens + 1 - k;
        let prompt = if c.unconditional {
            String::new()
        } else {
            c.prompt.clone().unwrap_or_default()
        };
        let cond = model.condition(&[prompt]).unwrap();
        let mut sampler = Sampler::new(greedy, 0);
        let codes = generate_codes(
            &model,
            &cond,
            frames,
            None,
            c.guidance_scale,
            &mut sampler,
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(
            codes, c.codes,
            "prompt {:?} at CFG {}",
            c.prompt, c.guidance_scale
        );
    }
}

#[test]
fn greedy_audio_matches_hf() {
    let mut model = tiny();
    let c = &greedy_cases()[0];
    let audio = model.decode_codes(&c.codes).unwrap();
    let r = load("greedy_audio.safetensors");
    let want = r["audio.0"].flatten_all().unwrap();
    let got = Tensor::from_vec(audio.clone(), audio.len(), &device()).unwrap();
    let err = max_abs_diff(&got, &want);
    assert!(err <= TOL, "audio of the greedy clip: {err}");
    let _ = model.condition(&[String::new()]).unwrap();
}
