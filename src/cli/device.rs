//! `--device` and `--dtype`, shared by every command that runs a model: parsed once, opened once,
//! and said on stderr (which device, its name and memory, the precision), so a user always knows
//! where the work ran.

use candle_core::Device;
use clap::Args;

use crate::models::device::{open_with_precision, set_tf32, DeviceChoice, DeviceInfo, Precision};

#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Where to run: auto (the first GPU that opens, else the CPU), cpu, cuda, cuda:N, metal.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// The model's compute precision: f32, bf16 or f16 (default: bf16 on CUDA devices of
    /// compute capability 8.0 or newer, f16 below, f32 on the CPU).
    #[arg(long = "dtype")]
    pub precision: Option<Precision>,
    /// Let f32 matrix products on CUDA use TF32 (faster, about 10 bits of mantissa).
    #[arg(long)]
    pub tf32: bool,
}

/// An opened device and the precision chosen for it.
#[derive(Debug, Clone)]
pub struct Opened {
    pub device: Device,
    pub info: DeviceInfo,
    pub precision: Precision,
    /// TF32 products were allowed (`--tf32`); the PyTorch references get the same switch.
    pub tf32: bool,
}

impl DeviceArgs {
    /// Opens the device and says which it is on stderr.
    pub fn open(&self) -> anyhow::Result<Opened> {
        let (device, info, precision) = open_with_precision(self.device, self.precision)?;
        set_tf32(self.tf32);
        eprintln!(
            "device: {info} · {precision}{}",
            if self.tf32 { " (TF32 on)" } else { "" }
        );
        Ok(Opened {
            device,
            info,
            precision,
            tf32: self.tf32,
        })
    }
}
