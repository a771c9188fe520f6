//! Hugging Face checkpoint files: finding them in a directory, reading safetensors (single or
//! sharded with an index), normalising key aliases, and writing tensors atomically.
//! Pickle (`.bin`) weights are refused: they can run code on load.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::util::atomic_write;

/// The files of one model directory.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub generation_config: Option<PathBuf>,
    pub tokenizer: Option<PathBuf>,
    pub weights: Vec<PathBuf>,
}

pub const SINGLE: &str = "model.safetensors";
pub const INDEX: &str = "model.safetensors.index.json";

impl ModelFiles {
    /// Finds `config.json`, the safetensors weights and the optional files in `dir`.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                path: dir.into(),
                what: "model directory".into(),
            });
        }
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(Error::MissingFile {
                path: config,
                what: "the model's config.json".into(),
            });
        }
        let weights = if dir.join(SINGLE).is_file() {
            vec![dir.join(SINGLE)]
        } else if dir.join(INDEX).is_file() {
            shards_from_index(&dir.join(INDEX))?
        } else if dir.join("pytorch_model.bin").exists()
            || dir.join("pytorch_model.bin.index.json").exists()
        {
            return Err(Error::bad_file(
                dir.join("pytorch_model.bin"),
                "pickle weights are refused (they can execute code when loaded); \
                 convert the checkpoint to safetensors",
            ));
        } else {
            return Err(Error::MissingFile {
                path: dir.join(SINGLE),
                what: format!("weights ({SINGLE} or {INDEX})"),
            });
        };
        let opt = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Ok(Self {
            dir: dir.into(),
            config,
            generation_config: opt("generation_config.json"),
            tokenizer: opt("tokenizer.json"),
            weights,
        })
    }

    /// The path to name in errors about the weights.
    pub fn weights_label(&self) -> PathBuf {
        match self.weights.as_slice() {
            [one] => one.clone(),
            _ => self.dir.join(INDEX),
        }
    }
}

/// The shard files listed by a `model.safetensors.index.json`, each checked to exist.
pub fn shards_from_index(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(index, format!("not valid JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::bad_file(index, "no `weight_map` object"))?;
    let files: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
    let dir = index.parent().unwrap_or(Path::new("."));
    files
        .into_iter()
        .map(|f| {
            let p = dir.join(f);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::MissingFile {
                    path: p,
                    what: format!("shard listed in {}", index.display()),
                })
            }
        })
        .collect()
}

/// transformers ≥ 4.4x writes weight-norm parameters as
/// `parametrizations.weight.original0/1`; Hub checkpoints use `weight_g`/`weight_v`.
pub fn normalize_key(name: &str) -> String {
    if let Some(p) = name.strip_suffix("parametrizations.weight.original0") {
        format!("{p}weight_g")
    } else if let Some(p) = name.strip_suffix("parametrizations.weight.original1") {
        format!("{p}weight_v")
    } else {
        name.to_string()
    }
}

/// Reads every tensor of the given safetensors files (float tensors converted to `dtype`),
/// with keys normalised by [`normalize_key`].
pub fn load_tensors(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::bad_file(file, format!("not a safetensors file: {e}")))?;
        for (name, view) in st.tensors() {
            let t = candle_core::safetensors::Load::load(&view, device).map_err(|e| {
                Error::BadTensor {
                    path: file.clone(),
                    name: name.clone(),
                    problem: e.to_string(),
                }
            })?;
            let t = match t.dtype() {
                DType::F32 | DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(dtype)?,
                _ if name.ends_with("inited") => t, // EnCodec codebook buffers, unused
                other => {
                    return Err(Error::BadTensor {
                        path: file.clone(),
                        name,
                        problem: format!("dtype {other:?}, expected a float type"),
                    })
                }
            };
            out.insert(normalize_key(&name), t);
        }
    }
    Ok(out)
}

/// Writes tensors as one safetensors file, atomically (temp file, fsync, rename).
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    save_tensors_with_metadata(tensors, None, path)
}

/// The `__metadata__` strings of a safetensors file.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::bad_file(path, format!("not a safetensors file: {e}")))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// [`save_tensors`] with `__metadata__` strings (run state, adapter configs).
pub fn save_tensors_with_metadata(
    tensors: &HashMap<String, Tensor>,
    metadata: Option<HashMap<String, String>>,
    path: &Path,
) -> Result<()> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut views = Vec::with_capacity(sorted.len());
    for (name, t) in &sorted {
        let t = t.contiguous()?;
        let dtype = match t.dtype() {
            DType::F32 => safetensors::Dtype::F32,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
            DType::U32 => safetensors::Dtype::U32,
            DType::I64 => safetensors::Dtype::I64,
            DType::U8 => safetensors::Dtype::U8,
            other => {
                return Err(Error::InvalidRequest(format!(
                    "cannot save tensor {name} of dtype {other:?}"
                )))
            }
        };
        let bytes = tensor_bytes(&t)?;
        views.push(((*name).clone(), dtype, t.dims().to_vec(), bytes));
    }
    let data: Vec<(String, safetensors::tensor::TensorView<'_>)> = views
        .iter()
        .map(|(n, d, s, b)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::InvalidRequest(format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(data, metadata)
        .map_err(|e| Error::bad_file(path, format!("cannot serialise: {e}")))?;
    atomic_write(path, &bytes)
}

fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F16 => t
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::U32 => t
            .to_vec1::<u32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I64 => t
            .to_vec1::<i64>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::U8 => t.to_vec1::<u8>()?,
        other => {
            return Err(Error::InvalidRequest(format!(
                "cannot serialise dtype {other:?}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_norm_aliases() {
        assert_eq!(
            normalize_key("audio_encoder.encoder.layers.0.conv.parametrizations.weight.original0"),
            "audio_encoder.encoder.layers.0.conv.weight_g"
        );
        assert_eq!(
            normalize_key("a.conv.parametrizations.weight.original1"),
            "a.conv.weight_v"
        );
        assert_eq!(normalize_key("a.conv.bias"), "a.conv.bias");
    }

    #[test]
    fn save_then_load_roundtrip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let mut m = HashMap::new();
        m.insert(
            "x.weight".to_string(),
            Tensor::new(&[1f32, 2., 3.], &dev).unwrap(),
        );
        let p = dir.path().join("model.safetensors");
        save_tensors(&m, &p).unwrap();
        let back = load_tensors(std::slice::from_ref(&p), DType::F32, &dev).unwrap();
        assert_eq!(back["x.weight"].to_vec1::<f32>().unwrap(), vec![1., 2., 3.]);

        std::fs::write(&p, b"definitely not safetensors").unwrap();
        let e = load_tensors(std::slice::from_ref(&p), DType::F32, &dev)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("not a safetensors"),
            "{e}"
        );

        std::fs::remove_file(&p).unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
        let e = ModelFiles::in_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("pytorch_model.bin") && e.contains("pickle"),
            "{e}"
        );
    }
}
