//! A MusicGen LM whose weights are `Var`s (full fine-tuning): every tensor under `decoder.` and
//! `enc_to_dec_proj.` becomes trainable; T5 and EnCodec stay frozen and outside the VarMap.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::error::Result;
use crate::models::musicgen::config::MusicgenConfig;
use crate::models::musicgen::decoder::MusicgenLm;

/// Is this checkpoint key part of the trainable LM?
pub fn is_lm_key(name: &str) -> bool {
    name.starts_with("decoder.") || name.starts_with("enc_to_dec_proj.")
}

/// Builds the LM from checkpoint tensors with every weight a `Var` in the returned map.
pub fn trainable_lm(
    cfg: &MusicgenConfig,
    tensors: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<(MusicgenLm, VarMap)> {
    let varmap = VarMap::new();
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| crate::error::Error::InvalidRequest("var map poisoned".into()))?;
        for (name, t) in tensors.iter().filter(|(n, _)| is_lm_key(n)) {
            let t = t.to_dtype(DType::F32)?.to_device(device)?;
            data.insert(name.clone(), Var::from_tensor(&t)?);
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let lm = MusicgenLm::new(&cfg.decoder, cfg.t5_hidden_size(), vb)?;
    Ok((lm, varmap))
}
