//! Activation checkpointing for the MusicGen LM, written with candle's ordinary autograd: the
//! forward pass keeps only each layer's input (`[B, S, H]`); the backward pass walks the layers
//! from the last to the first, recomputes one layer with its input as a fresh leaf, and
//! backpropagates `Σ out ⊙ g` to get that layer's weight gradients and the gradient of its input.
//! Peak activation memory is one layer's graph instead of all of them, for one extra forward.
//!
//! The result is the same gradient as a plain `loss.backward()` (tested against it); LoRA
//! dropout masks are seeded per forward, so a recomputed layer draws the same mask.

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};
use crate::models::musicgen::decoder::{Conditioning, MusicgenLm};
use crate::train::loss::{codebook_cross_entropy, LossOutput};
use crate::train::optim::Grads;

/// Loss of `labels` given decoder `inputs` and T5 `text` (states `[B, L, d]`, mask `[B, L]`),
/// and the gradients of `vars` of `loss * scale` (accumulated into `grads`). Nothing of the
/// graph outlives the call.
pub fn loss_and_grads(
    lm: &MusicgenLm,
    text: (&Tensor, &Tensor),
    inputs: &Tensor,
    labels: &Tensor,
    vars: &[(String, Var)],
    scale: f64,
    grads: &mut Grads,
) -> Result<LossOutput> {
    let (states, mask) = text;
    // Forward, keeping layer inputs only.
    let cond = lm.condition(states, mask)?;
    let cond_d = Conditioning {
        states: cond.states.detach(),
        mask: cond.mask.clone(),
    };
    drop(cond);
    let mut inputs_of = Vec::with_capacity(lm.layers.len());
    let mut xs = lm.embed(inputs, 0)?.detach();
    for i in 0..lm.layers.len() {
        let next = lm.layer_forward(i, &xs, &cond_d)?.detach();
        inputs_of.push(xs);
        xs = next;
    }

    // Head and loss, with the last hidden state as a leaf.
    let top = Var::from_tensor(&xs)?;
    drop(xs);
    let out = codebook_cross_entropy(&lm.head(top.as_tensor())?, labels, lm.config().pad_token_id)?;
    let g = (&out.loss * scale)?.backward()?;
    grads.add_from(&g, vars)?;
    let mut g_x = take(&g, top.as_tensor(), "the last hidden state")?;
    drop(g);

    // Layers, last to first.
    let cond_leaf = Var::from_tensor(&cond_d.states)?;
    let cond_v = Conditioning {
        states: cond_leaf.as_tensor().clone(),
        mask: cond_d.mask.clone(),
    };
    let mut g_cond: Option<Tensor> = None;
    while let Some(x_in) = inputs_of.pop() {
        let i = inputs_of.len();
        let leaf = Var::from_tensor(&x_in)?;
        drop(x_in);
        let y = lm.layer_forward(i, leaf.as_tensor(), &cond_v)?;
        let g = (y * &g_x)?.sum_all()?.backward()?;
        grads.add_from(&g, vars)?;
        g_x = take(&g, leaf.as_tensor(), "a layer input")?;
        if let Some(gc) = g.get(cond_leaf.as_tensor()) {
            g_cond = Some(match g_cond {
                Some(acc) => (acc + gc)?,
                None => gc.clone(),
            });
        }
    }

    // Embeddings and the text projection.
    let x0 = lm.embed(inputs, 0)?;
    grads.add_from(&(x0 * &g_x)?.sum_all()?.backward()?, vars)?;
    if let Some(gc) = g_cond {
        let cond = lm.condition(states, mask)?;
        grads.add_from(&(cond.states * gc)?.sum_all()?.backward()?, vars)?;
    }
    Ok(out)
}

fn take(g: &candle_core::backprop::GradStore, t: &Tensor, what: &str) -> Result<Tensor> {
    g.get(t).cloned().ok_or_else(|| {
        Error::InvalidRequest(format!(
            "no gradient reached {what} (an op without backward?)"
        ))
    })
}
