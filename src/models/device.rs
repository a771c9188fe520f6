//! Where a job runs and in which precision: the user's `--device auto|cpu|cuda[:N]|metal` and
//! `--dtype f32|bf16|f16`, resolved once into a candle [`Device`], what the UI and reports say
//! about it ([`DeviceInfo`]), and the precision a device runs best in.
//!
//! `auto` takes the first CUDA (or Metal) device that opens and otherwise the CPU, and says
//! which. A build without the `cuda` / `metal` feature has only the CPU: asking for a GPU there
//! is an error that says how to get the GPU build. The default precision is f32 on the CPU
//! (candle's reduced-precision CPU products are far slower than f32), bf16 on CUDA devices of
//! compute capability 8.0 and newer, f16 below, f32 on Metal (untested).
//!
//! The counter of host↔device transfers lives here too: the loops that must move data (sampled
//! ids, logits, losses, norms) call [`count_transfer`], and the benchmarks report the count per
//! step, so a step that starts copying more than it should shows.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The device the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The first GPU that opens, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA device `N`.
    Cuda(usize),
    /// Metal device `N` (untested: it cannot be built or run where tunelab is developed).
    Metal(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let ordinal = |rest: &str| -> Result<usize> {
            if rest.is_empty() {
                return Ok(0);
            }
            rest.strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::InvalidRequest(format!("bad device ordinal in {s:?}")))
        };
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            _ if s.starts_with("cuda") => Ok(Self::Cuda(ordinal(&s[4..])?)),
            _ if s.starts_with("metal") => Ok(Self::Metal(ordinal(&s[5..])?)),
            other => Err(Error::InvalidRequest(format!(
                "unknown device {other:?} (auto, cpu, cuda, cuda:N, metal)"
            ))),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

/// What a device is, as the studio, the CLI and every report name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `cpu`, `cuda:N` or `metal:N`.
    pub id: String,
    /// The processor or GPU's name.
    pub name: String,
    /// Free and total memory of a GPU, in bytes, when it was opened.
    pub free_memory: Option<u64>,
    pub total_memory: Option<u64>,
    /// CUDA compute capability (major, minor).
    pub compute_capability: Option<(u32, u32)>,
}

impl DeviceInfo {
    /// The precision this device runs models in unless told otherwise.
    pub fn default_precision(&self) -> Precision {
        match self.compute_capability {
            Some((major, _)) if major >= 8 => Precision::Bf16,
            Some(_) => Precision::F16,
            None => Precision::F32,
        }
    }

    /// Can this device compute in `p`? (bf16 needs CUDA compute capability 8.0.)
    pub fn supports(&self, p: Precision) -> bool {
        match (p, self.compute_capability) {
            (Precision::Bf16, Some((major, _))) => major >= 8,
            _ => true,
        }
    }
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.id, self.name)?;
        if let (Some(free), Some(total)) = (self.free_memory, self.total_memory) {
            write!(
                f,
                ", {:.1} of {:.1} GiB free",
                free as f64 / (1u64 << 30) as f64,
                total as f64 / (1u64 << 30) as f64
            )?;
        }
        Ok(())
    }
}

/// The precision a model computes in (`--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Self::F16),
            other => Err(Error::InvalidRequest(format!(
                "unknown precision {other:?} (f32, bf16, f16)"
            ))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Opens the device `choice` names.
pub fn open(choice: DeviceChoice) -> Result<(Device, DeviceInfo)> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, cpu_info())),
        DeviceChoice::Cuda(n) => open_cuda(n),
        DeviceChoice::Metal(n) => open_metal(n),
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(d) = open_cuda(0) {
                    return Ok(d);
                }
            }
            if candle_core::utils::metal_is_available() {
                if let Ok(d) = open_metal(0) {
                    return Ok(d);
                }
            }
            Ok((Device::Cpu, cpu_info()))
        }
    }
}

/// Opens `choice` and checks `precision` against it (`None`: the device's default).
pub fn open_with_precision(
    choice: DeviceChoice,
    precision: Option<Precision>,
) -> Result<(Device, DeviceInfo, Precision)> {
    let (device, info) = open(choice)?;
    let p = precision.unwrap_or_else(|| info.default_precision());
    if !info.supports(p) {
        return Err(Error::InvalidRequest(format!(
            "{info} cannot compute in {p} (bf16 needs CUDA compute capability 8.0 or newer): \
             use --dtype f16 or f32"
        )));
    }
    Ok((device, info, p))
}

/// What an already opened device is.
pub fn describe(device: &Device) -> DeviceInfo {
    match device {
        Device::Cpu => cpu_info(),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => cuda_info(d),
        other => DeviceInfo {
            id: format!("{:?}", other.location()).to_ascii_lowercase(),
            name: "GPU".into(),
            free_memory: None,
            total_memory: None,
            compute_capability: None,
        },
    }
}

fn cpu_info() -> DeviceInfo {
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = candle_core::utils::get_num_threads();
    DeviceInfo {
        id: "cpu".into(),
        name: format!("{name}, {threads} threads"),
        free_memory: None,
        total_memory: None,
        compute_capability: None,
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<(Device, DeviceInfo)> {
    let device = Device::new_cuda(ordinal).map_err(|e| {
        Error::InvalidRequest(format!("CUDA device {ordinal} could not be opened: {e}"))
    })?;
    let info = describe(&device);
    Ok((device, info))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> Result<(Device, DeviceInfo)> {
    Err(Error::InvalidRequest(
        "this build has no CUDA support: build it with scripts/build-cuda (see docs/gpu.md)".into(),
    ))
}

#[cfg(feature = "cuda")]
fn cuda_info(d: &candle_core::CudaDevice) -> DeviceInfo {
    let stream = d.cuda_stream();
    let ctx = stream.context();
    let (free, total) = ctx
        .mem_get_info()
        .map(|(f, t)| (Some(f as u64), Some(t as u64)))
        .unwrap_or((None, None));
    DeviceInfo {
        id: format!("cuda:{}", ctx.ordinal()),
        name: ctx.name().unwrap_or_else(|_| "CUDA device".into()),
        free_memory: free,
        total_memory: total,
        compute_capability: ctx
            .compute_capability()
            .ok()
            .map(|(a, b)| (a.max(0) as u32, b.max(0) as u32)),
    }
}

#[cfg(feature = "metal")]
fn open_metal(ordinal: usize) -> Result<(Device, DeviceInfo)> {
    let device = Device::new_metal(ordinal).map_err(|e| {
        Error::InvalidRequest(format!("Metal device {ordinal} could not be opened: {e}"))
    })?;
    let info = DeviceInfo {
        id: format!("metal:{ordinal}"),
        name: "Apple GPU (Metal, untested)".into(),
        free_memory: None,
        total_memory: None,
        compute_capability: None,
    };
    Ok((device, info))
}

#[cfg(not(feature = "metal"))]
fn open_metal(_ordinal: usize) -> Result<(Device, DeviceInfo)> {
    Err(Error::InvalidRequest(
        "this build has no Metal support (build with --features metal on macOS; untested)".into(),
    ))
}

/// Sets whether f32 matrix products on CUDA may use TF32 (faster, ~10 bits of mantissa). Off
/// unless asked: parity tests run with it off.
pub fn set_tf32(on: bool) {
    candle_core::cuda::set_gemm_reduced_precision_f32(on);
}

/// Device memory in use (total − free) on a GPU, in bytes; `None` on the CPU.
pub fn memory_in_use(device: &Device) -> Option<u64> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => d
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, total)| (total - free) as u64),
        _ => None,
    }
}

static TRANSFERS: AtomicU64 = AtomicU64::new(0);

/// Records one host↔device transfer made by a step (on a GPU a synchronising copy; on the CPU
/// the same call site, counted the same way so the count can be tested here).
pub fn count_transfer() {
    TRANSFERS.fetch_add(1, Ordering::Relaxed);
}

/// Transfers counted so far in this process.
pub fn transfers() -> u64 {
    TRANSFERS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_and_precisions_parse_and_print_back() {
        for (s, c) in [
            ("auto", DeviceChoice::Auto),
            ("CPU", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:1", DeviceChoice::Cuda(1)),
            ("metal", DeviceChoice::Metal(0)),
        ] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap(), c);
            assert_eq!(c.to_string().parse::<DeviceChoice>().unwrap(), c);
        }
        for bad in ["gpu", "cuda:x", "cuda1"] {
            assert!(bad.parse::<DeviceChoice>().is_err(), "{bad}");
        }
        assert_eq!("bf16".parse::<Precision>().unwrap().dtype(), DType::BF16);
        assert_eq!("fp16".parse::<Precision>().unwrap(), Precision::F16);
        assert!("int8".parse::<Precision>().is_err());
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
    }

    #[test]
    fn auto_opens_something_and_precisions_follow_the_device() {
        let (device, info) = open(DeviceChoice::Auto).unwrap();
        if !candle_core::utils::cuda_is_available() && !candle_core::utils::metal_is_available() {
            assert!(device.is_cpu());
            assert_eq!(info.id, "cpu");
            assert_eq!(info.default_precision(), Precision::F32);
            let e = open(DeviceChoice::Cuda(0)).unwrap_err().to_string();
            assert!(e.contains("no CUDA support"), "{e}");
        }
        let gpu = |cc| DeviceInfo {
            id: "cuda:0".into(),
            name: "x".into(),
            free_memory: None,
            total_memory: None,
            compute_capability: Some(cc),
        };
        assert_eq!(gpu((9, 0)).default_precision(), Precision::Bf16);
        assert_eq!(gpu((7, 5)).default_precision(), Precision::F16);
        assert!(!gpu((7, 5)).supports(Precision::Bf16));
        assert!(gpu((8, 0)).supports(Precision::Bf16));
        let (_, _, p) = open_with_precision(DeviceChoice::Cpu, None).unwrap();
        assert_eq!(p, Precision::F32);
    }
}
