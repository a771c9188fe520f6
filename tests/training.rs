//! Training correctness on the tiny fixture model: every trainable tensor gets a finite,
//! non-zero gradient (candle 0.11's fused softmax/LayerNorm would silently drop them), and one
//! step matches PyTorch (loss, gradients, clipped AdamW update) when the reference is present.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle_core::{DType, Tensor};
use common::*;
use tunelab::models::checkpoint::{load_tensors, ModelFiles};
use tunelab::models::musicgen::config::MusicgenConfig;
use tunelab::models::musicgen::patterns::delay;
use tunelab::train::loss::{codebook_cross_entropy, shift_right};

fn tiny_parts() -> (MusicgenConfig, std::collections::HashMap<String, Tensor>) {
    let files = ModelFiles::in_dir(&tiny_dir()).unwrap();
    let cfg = MusicgenConfig::from_file(&files.config).unwrap();
    let tensors = load_tensors(&files.weights, DType::F32, &device()).unwrap();
    (cfg, tensors)
}

/// Pre-delayed labels `[B, K, T + K - 1]` from codes `[B][K][T]` (the BOS column dropped).
fn delayed_labels(codes: &[Vec<Vec<u32>>]) -> Tensor {
    let rows: Vec<Vec<Vec<u32>>> = codes
        .iter()
        .map(|c| {
            delay(c, 2048)
                .into_iter()
                .map(|r| r[1..].to_vec())
                .collect()
        })
        .collect();
    let (b, k, t) = (rows.len(), rows[0].len(), rows[0][0].len());
    let flat: Vec<u32> = rows.into_iter().flatten().flatten().collect();
    Tensor::from_vec(flat, (b, k, t), &device()).unwrap()
}

#[test]
fn every_trainable_tensor_gets_a_finite_nonzero_gradient() {
    let (cfg, tensors) = tiny_parts();
    let (lm, varmap) = trainable_lm(&cfg, &tensors, &device());
    let mut frozen = tiny();
    let (states, mask) = frozen
        .text
        .encode(&["calm piano".into(), "loud rock drums and guitars".into()])
        .unwrap();
    let cond = lm.condition(&states, &mask).unwrap();
    let codes: Vec<Vec<Vec<u32>>> = (0..2)
        .map(|b| {
            (0..4)
                .map(|k| {
                    (0..10)
                        .map(|t| ((b * 977 + k * 131 + t * 37) % 2048) as u32)
                        .collect()
                })
                .collect()
        })
        .collect();
    let labels = delayed_labels(&codes);
    let logits = lm
        .forward(&shift_right(&labels, 2048).unwrap(), &cond, None)
        .unwrap();
    let out = codebook_cross_entropy(&logits, &labels, 2048).unwrap();
    assert_eq!(out.tokens, vec![20, 20, 20, 20]);
    let grads = out.loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    assert!(data.len() > 30, "{} trainable tensors", data.len());
    for (name, var) in data.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let v = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{name}: non-finite gradient"
        );
        assert!(v.iter().any(|x| *x != 0.0), "{name}: zero gradient");
    }
}

// ---- parity with PyTorch (tests/fixtures/grad_ref.*, written by tools/make_grad_fixtures.py) ----

use tunelab::models::lora::{attach_lora, LoraConfig, LoraTarget};
use tunelab::train::optim::grad_norm;

struct GradRef {
    t: std::collections::HashMap<String, Tensor>,
    j: serde_json::Value,
}

fn grad_ref() -> GradRef {
    let j =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("grad_ref.json")).unwrap())
            .unwrap();
    GradRef {
        t: load("grad_ref.safetensors"),
        j,
    }
}

/// The fixture batch: conditioning from the frozen T5 and labels `[B, K, T]`.
fn fixture_batch(
    r: &GradRef,
    lm: &tunelab::models::musicgen::decoder::MusicgenLm,
) -> (tunelab::models::musicgen::decoder::Conditioning, Tensor) {
    let mut frozen = tiny();
    let rows = unpadded_rows(&r.t["text_ids"], &r.t["text_mask"]);
    let (states, m) = frozen.text.encode_id_batch(&rows).unwrap();
    let cond = lm.condition(&states, &m).unwrap();
    // HF labels are [B, T, K].
    let labels = r.t["labels"]
        .to_dtype(DType::U32)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap();
    (cond, labels)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

fn tensor_norm(t: &Tensor) -> f64 {
    t.sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt()
}

#[test]
fn full_finetune_step_matches_pytorch() {
    let r = grad_ref();
    let (cfg, tensors) = tiny_parts();
    let (lm, varmap) = trainable_lm(&cfg, &tensors, &device());
    let (cond, labels) = fixture_batch(&r, &lm);
    let inputs = shift_right(&labels, 2048).unwrap();
    assert_eq!(
        ids(&inputs),
        ids(&r.t["decoder_input_ids"]),
        "decoder inputs = labels shifted right"
    );
    let out =
        codebook_cross_entropy(&lm.forward(&inputs, &cond, None).unwrap(), &labels, 2048).unwrap();
    let loss = out.loss.to_scalar::<f32>().unwrap() as f64;
    assert!(
        rel(loss, r.j["loss"].as_f64().unwrap()) < 1e-5,
        "loss {loss}"
    );
    for (k, ce) in out.ce.iter().enumerate() {
        assert!(
            rel(*ce as f64, r.j["ce"][k].as_f64().unwrap()) < 1e-5,
            "ce {k}"
        );
    }

    let grads = out.loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let norms = r.j["grad_norms"].as_object().unwrap();
    assert_eq!(norms.len(), data.len(), "same trainable tensors as PyTorch");
    for (name, want) in norms {
        let var = data
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not trainable here"));
        let got = tensor_norm(grads.get(var.as_tensor()).unwrap());
        assert!(
            rel(got, want.as_f64().unwrap()) < 1e-4,
            "{name}: grad norm {got} vs {want}"
        );
    }
    for name in r.j["saved_params"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let g = grads.get(data[name].as_tensor()).unwrap();
        let err = max_abs_diff(g, &r.t[&format!("grad.{name}")]) as f64;
        let scale = tensor_norm(&r.t[&format!("grad.{name}")]);
        assert!(
            err / scale.max(1e-12) < 1e-4,
            "{name}: gradient differs by {err}"
        );
    }

    let named: Vec<(String, candle_core::Var)> =
        data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    let vars: Vec<candle_core::Var> = data.values().cloned().collect();
    drop(data);
    let total = grad_norm(&grads, &vars).unwrap();
    assert!(rel(total, r.j["grad_norm_total"].as_f64().unwrap()) < 1e-4);
    // The trainer's own update (norm, clipping folded into tunelab's AdamW, the one runs use,
    // with saved moments) against clip_grad_norm_ + torch.optim.AdamW.
    let mut opt =
        tunelab::train::optim::AdamW::new(named, tunelab::train::optim::adamw_params(1e-3))
            .unwrap();
    let norm = opt.clipped_step(&grads, 1.0).unwrap();
    assert!(rel(norm, r.j["grad_norm_total"].as_f64().unwrap()) < 1e-4);
    let data = varmap.data().lock().unwrap();
    for name in r.j["saved_params"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let err = max_abs_diff(data[name].as_tensor(), &r.t[&format!("updated.{name}")]);
        assert!(err < 1e-5, "{name}: updated weights differ by {err}");
    }
    drop(data);
    // enc_to_dec_proj was trained too: condition again with the updated weights.
    let (cond, _) = fixture_batch(&r, &lm);
    let after =
        codebook_cross_entropy(&lm.forward(&inputs, &cond, None).unwrap(), &labels, 2048).unwrap();
    let after = after.loss.to_scalar::<f32>().unwrap() as f64;
    assert!(
        rel(after, r.j["adamw"]["loss_after_step"].as_f64().unwrap()) < 1e-4,
        "loss after step {after}"
    );
}

#[test]
fn lora_step_matches_peft() {
    let r = grad_ref();
    let (cfg, tensors) = tiny_parts();
    // Frozen base: plain tensors, no VarMap.
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &device());
    let mut lm =
        tunelab::models::musicgen::decoder::MusicgenLm::new(&cfg.decoder, cfg.t5_hidden_size(), vb)
            .unwrap();
    let init: std::collections::HashMap<String, Tensor> =
        r.t.iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("lora_init.")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect();
    let lcfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        targets: vec![LoraTarget::SelfAttn],
        dropout: 0.0,
    };
    let adapters = attach_lora(&mut lm, &lcfg, &init, 0).unwrap();
    assert_eq!(
        adapters.len() * 2,
        init.len(),
        "every PEFT adapter initialised"
    );
    let (cond, labels) = fixture_batch(&r, &lm);
    let inputs = shift_right(&labels, 2048).unwrap();
    let out =
        codebook_cross_entropy(&lm.forward(&inputs, &cond, None).unwrap(), &labels, 2048).unwrap();
    let loss = out.loss.to_scalar::<f32>().unwrap() as f64;
    assert!(
        rel(
            loss,
            r.t["lora_loss"]
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()[0]
        ) < 1e-5,
        "lora loss {loss}"
    );
    let grads = out.loss.backward().unwrap();
    let mut vars = Vec::new();
    for a in &adapters {
        let (na, nb) = a.peft_names();
        for (n, v) in [(na, &a.a), (nb, &a.b)] {
            let g = grads.get(v.as_tensor()).unwrap();
            let want = &r.t[&format!("lora_grad.{n}")];
            let err = max_abs_diff(g, want) as f64 / tensor_norm(want).max(1e-12);
            assert!(err < 1e-4, "{n}: gradient differs ({err} relative)");
            vars.push(v.clone());
        }
    }
    // Frozen base weights get no gradient buffers.
    assert!(grads.get(lm.layers[0].fc1.weight().unwrap()).is_none());
    let named: Vec<(String, candle_core::Var)> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| (i.to_string(), v.clone()))
        .collect();
    // The trainer's own update: norm, clipping folded into AdamW.
    let mut opt =
        tunelab::train::optim::AdamW::new(named, tunelab::train::optim::adamw_params(2e-3))
            .unwrap();
    let total = opt.clipped_step(&grads, 1.0).unwrap();
    assert!(rel(total, r.j["lora"]["grad_norm_total"].as_f64().unwrap()) < 1e-4);
    for a in &adapters {
        let (na, nb) = a.peft_names();
        for (n, v) in [(na, &a.a), (nb, &a.b)] {
            let err = max_abs_diff(v.as_tensor(), &r.t[&format!("lora_updated.{n}")]);
            assert!(err < 1e-5, "{n}: updated adapter differs by {err}");
        }
    }
    let after =
        codebook_cross_entropy(&lm.forward(&inputs, &cond, None).unwrap(), &labels, 2048).unwrap();
    let after = after.loss.to_scalar::<f32>().unwrap() as f64;
    assert!(
        rel(after, r.j["lora"]["loss_after_step"].as_f64().unwrap()) < 1e-4,
        "lora loss after step {after}"
    );
}

#[test]
fn loss_falls_on_two_short_clips() {
    // Two 1 s clips (a 220 Hz tone, a noise burst pattern) encoded by the fixture's EnCodec, then
    // 40 full fine-tuning steps on them: the loss must fall below half its starting value.
    let (cfg, tensors) = tiny_parts();
    let (lm, varmap) = trainable_lm(&cfg, &tensors, &device());
    let mut frozen = tiny();
    let tone: Vec<f32> = (0..32_000)
        .map(|i| 0.4 * (2.0 * std::f32::consts::PI * 220.0 * i as f32 / 32_000.0).sin())
        .collect();
    let noise: Vec<f32> = (0..32_000u32)
        .map(|i| {
            if (i / 4000) % 2 == 0 {
                (((i.wrapping_mul(2654435761)) >> 16) as f32 / 65536.0 - 0.5) * 0.6
            } else {
                0.0
            }
        })
        .collect();
    let codes = vec![
        frozen.encode_audio(&tone).unwrap(),
        frozen.encode_audio(&noise).unwrap(),
    ];
    let labels = delayed_labels(&codes);
    let inputs = shift_right(&labels, 2048).unwrap();
    let (states, mask) = frozen
        .text
        .encode(&["a pure sine tone".into(), "bursts of noise".into()])
        .unwrap();
    let named: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let mut opt =
        tunelab::train::optim::AdamW::new(named, tunelab::train::optim::adamw_params(1e-3))
            .unwrap();
    let mut losses = Vec::new();
    for _ in 0..40 {
        let cond = lm.condition(&states, &mask).unwrap();
        let out = codebook_cross_entropy(&lm.forward(&inputs, &cond, None).unwrap(), &labels, 2048)
            .unwrap();
        losses.push(out.loss.to_scalar::<f32>().unwrap());
        let grads = out.loss.backward().unwrap();
        opt.clipped_step(&grads, 1.0).unwrap();
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    println!("loss {first:.3} → {last:.3} in 40 steps");
    assert!(last < 0.5 * first, "loss {first} → {last}: {losses:?}");
}

#[test]
fn activation_checkpointing_gives_the_plain_gradients() {
    use tunelab::train::checkpointing::loss_and_grads;
    use tunelab::train::optim::{GradSource, Grads};
    let (cfg, tensors) = tiny_parts();
    let mut frozen = tiny();
    let (states, mask) = frozen
        .text
        .encode(&["calm piano".into(), String::new()])
        .unwrap();
    let codes: Vec<Vec<Vec<u32>>> = (0..2)
        .map(|b| {
            (0..4)
                .map(|k| {
                    (0..12)
                        .map(|t| ((b * 411 + k * 97 + t * 53) % 2048) as u32)
                        .collect()
                })
                .collect()
        })
        .collect();
    let labels = delayed_labels(&codes);
    let inputs = shift_right(&labels, 2048).unwrap();
    for lora in [false, true] {
        let mut t = tensors.clone();
        let (mut lm, mut vars) =
            tunelab::train::trainable::build_lm(&cfg, &mut t, |_| !lora, &device()).unwrap();
        let lcfg = LoraConfig {
            r: 4,
            alpha: 8.0,
            targets: vec![
                LoraTarget::SelfAttn,
                LoraTarget::Ffn,
                LoraTarget::EncToDecProj,
            ],
            dropout: 0.2,
        };
        if lora {
            let adapters = attach_lora(&mut lm, &lcfg, &Default::default(), 3).unwrap();
            // Non-zero B so every adapter tensor gets a gradient.
            for a in &adapters {
                a.b.set(&(a.b.as_tensor().ones_like().unwrap() * 0.01).unwrap())
                    .unwrap();
            }
            tunelab::models::lora::set_dropout_seed(&mut lm, &lcfg, Some(11));
            vars = adapters
                .into_iter()
                .flat_map(|a| [("a".to_string(), a.a), ("b".to_string(), a.b)])
                .collect();
        }
        let cond = lm.condition(&states, &mask).unwrap();
        let plain =
            codebook_cross_entropy(&lm.forward(&inputs, &cond, None).unwrap(), &labels, 2048)
                .unwrap();
        let g_plain = (&plain.loss * 0.5).unwrap().backward().unwrap();
        let mut g_ckpt = Grads::default();
        let out = loss_and_grads(
            &lm,
            (&states, &mask),
            &inputs,
            &labels,
            &vars,
            0.5,
            &mut g_ckpt,
        )
        .unwrap();
        assert_eq!(
            out.loss.to_scalar::<f32>().unwrap(),
            plain.loss.to_scalar::<f32>().unwrap()
        );
        for (name, v) in &vars {
            let a = g_plain.get(v.as_tensor()).unwrap();
            let b = g_ckpt
                .grad(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let err = max_abs_diff(a, b) as f64 / tensor_norm(a).max(1e-12);
            assert!(err < 1e-5, "lora={lora} {name}: relative error {err}");
        }
    }
}
