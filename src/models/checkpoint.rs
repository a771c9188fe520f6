//! Hugging Face checkpoint files: finding them in a directory, reading safetensors (single or
//! sharded with an index), normalising key aliases, and writing tensors atomically.
//! Pickle (`.bin`) weights are refused: they can run code on load.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

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

/// The parsed header of a safetensors file: tensors `(name, dtype, shape, begin, end)` sorted by
/// offset, the metadata strings, and where the data starts.
struct Header {
    tensors: Vec<(String, String, Vec<usize>, u64, u64)>,
    metadata: HashMap<String, String>,
    data_start: u64,
}

fn read_header(file: &Path, f: &mut std::fs::File) -> Result<Header> {
    use std::io::Read;
    let bad = |m: String| Error::bad_file(file, format!("not a safetensors file: {m}"));
    let len = f.metadata().map_err(|e| Error::io(file, e))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| bad("shorter than its header".into()))?;
    let n = u64::from_le_bytes(n);
    if n > 100_000_000 || 8 + n > len {
        return Err(bad(format!(
            "header of {n} bytes does not fit a {len}-byte file"
        )));
    }
    let mut h = vec![0u8; n as usize];
    f.read_exact(&mut h).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&h).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let data_start = 8 + n;
    let mut tensors = Vec::new();
    let mut metadata = HashMap::new();
    for (name, v) in json {
        if name == "__metadata__" {
            if let Some(o) = v.as_object() {
                for (k, v) in o {
                    metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
            }
            continue;
        }
        let dtype = v["dtype"].as_str().unwrap_or_default().to_string();
        let shape: Option<Vec<usize>> = v["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect());
        let offs: Option<Vec<u64>> = v["data_offsets"]
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64()).collect());
        let (Some(shape), Some(offs)) = (shape, offs) else {
            return Err(bad(format!("tensor {name} has no shape or offsets")));
        };
        let (Some(&begin), Some(&end)) = (offs.first(), offs.get(1)) else {
            return Err(bad(format!("tensor {name} has bad offsets")));
        };
        if end < begin || data_start + end > len {
            return Err(Error::BadTensor {
                path: file.to_path_buf(),
                name,
                problem: format!(
                    "data ends at byte {} of a {len}-byte file (truncated?)",
                    data_start + end
                ),
            });
        }
        tensors.push((name, dtype, shape, begin, end));
    }
    tensors.sort_by_key(|t| t.3);
    Ok(Header {
        tensors,
        metadata,
        data_start,
    })
}

fn candle_dtype(s: &str) -> Option<DType> {
    Some(match s {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "U8" | "BOOL" => DType::U8,
        "U32" => DType::U32,
        "I64" => DType::I64,
        _ => return None,
    })
}

/// Reads every tensor of the given safetensors files (float tensors converted to `dtype`),
/// with keys normalised by [`normalize_key`]. Tensors are read one at a time, so the peak
/// memory is the loaded model plus one tensor, not twice the file.
pub fn load_tensors(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = HashMap::new();
    for file in files {
        let mut f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        let header = read_header(file, &mut f)?;
        let mut buf = Vec::new();
        for (name, dt, shape, begin, end) in header.tensors {
            let bad = |problem: String| Error::BadTensor {
                path: file.clone(),
                name: name.clone(),
                problem,
            };
            let Some(src) = candle_dtype(&dt) else {
                return Err(bad(format!("unsupported dtype {dt}")));
            };
            let want = shape.iter().product::<usize>() * src.size_in_bytes();
            if (end - begin) as usize != want {
                return Err(bad(format!(
                    "{} bytes for shape {shape:?} of {dt} (expected {want})",
                    end - begin
                )));
            }
            buf.resize(want, 0);
            f.seek(SeekFrom::Start(header.data_start + begin))
                .map_err(|e| Error::io(file, e))?;
            f.read_exact(&mut buf)
                .map_err(|e| bad(format!("cannot read: {e}")))?;
            let t = Tensor::from_raw_buffer(&buf, src, &shape, device)
                .map_err(|e| bad(e.to_string()))?;
            let t = match src {
                DType::F32 | DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(dtype)?,
                _ if is_index_buffer(&name) => t,
                other => {
                    return Err(bad(format!("dtype {other:?}, expected a float type")));
                }
            };
            out.insert(normalize_key(&name), t);
        }
    }
    Ok(out)
}

/// Integer buffers that checkpoints carry and the models ignore or recompute: EnCodec's codebook
/// `inited` flags, batch-norm step counts, RoBERTa's position / token-type ids and Swin's
/// relative position index (CLAP). They are kept as they are; other integer tensors are refused.
fn is_index_buffer(name: &str) -> bool {
    [
        "inited",
        "num_batches_tracked",
        "position_ids",
        "token_type_ids",
        "relative_position_index",
    ]
    .iter()
    .any(|b| name.ends_with(b))
}

/// Writes tensors as one safetensors file, atomically (temp file, fsync, rename).
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    save_tensors_with_metadata(tensors, None, path)
}

/// The `__metadata__` strings of a safetensors file (the header only is read).
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(read_header(path, &mut f)?.metadata)
}

/// [`save_tensors`] with `__metadata__` strings (run state, adapter configs). The file is
/// written tensor by tensor (no second copy of the model in memory), to a temp file that is
/// fsynced and renamed over `path`.
pub fn save_tensors_with_metadata(
    tensors: &HashMap<String, Tensor>,
    metadata: Option<HashMap<String, String>>,
    path: &Path,
) -> Result<()> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut header = serde_json::Map::new();
    if let Some(m) = metadata {
        let m: serde_json::Map<String, serde_json::Value> =
            m.into_iter().map(|(k, v)| (k, v.into())).collect();
        header.insert("__metadata__".into(), m.into());
    }
    let mut offset = 0usize;
    for (name, t) in &sorted {
        let dtype = match t.dtype() {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::U32 => "U32",
            DType::I64 => "I64",
            DType::U8 => "U8",
            other => {
                return Err(Error::InvalidRequest(format!(
                    "cannot save tensor {name} of dtype {other:?}"
                )))
            }
        };
        let size = t.elem_count() * t.dtype().size_in_bytes();
        header.insert(
            (*name).clone(),
            serde_json::json!({"dtype": dtype, "shape": t.dims(), "data_offsets": [offset, offset + size]}),
        );
        offset += size;
    }
    let mut h = serde_json::to_vec(&header).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    crate::util::atomic_write_with(path, |w| {
        use std::io::Write;
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for (_, t) in &sorted {
            let bytes = tensor_bytes(&t.contiguous().map_err(std::io::Error::other)?)
                .map_err(std::io::Error::other)?;
            w.write_all(&bytes)?;
        }
        Ok(())
    })
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
