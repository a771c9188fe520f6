"""Where and in what precision the PyTorch references run: the `--device`, `--dtype` and `--tf32`
options both benchmarks share, and the clock and memory readings that stay honest on a GPU.

Reduced precision is `torch.autocast` over f32 weights, as audiocraft trains MusicGen (fp16
autocast, f32 master weights), so the weights and the optimizer state stay f32 and only the
products and activations run in bf16/f16. TF32 is off unless asked for: candle's default is
off too, so an f32 comparison compares the same arithmetic.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="default cpu")
    ap.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="f32",
        help="compute precision: f32, or bf16/f16 through torch.autocast over f32 weights",
    )
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in f32 products on CUDA")


def device(args: argparse.Namespace) -> torch.device:
    """The chosen device, with TF32 set as asked; fails clearly where CUDA is missing."""
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device cuda: no CUDA device visible to torch {torch.__version__}")
        set_tf32(args.tf32)
        # Peaks are per process, from here on.
        torch.cuda.reset_peak_memory_stats()
    return torch.device(args.device)


def set_tf32(on: bool) -> None:
    """TF32 for matrix products and cuDNN convolutions (EnCodec's)."""
    torch.set_float32_matmul_precision("high" if on else "highest")
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def autocast(dev: torch.device, dtype: str):
    """A context in which products run in `dtype`; nothing changes for f32."""
    if dtype == "f32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=DTYPES[dtype])


def sync(dev: torch.device) -> None:
    """Waits for the GPU's queued work, so a clock reading covers it (CUDA runs asynchronously)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def describe(dev: torch.device, dtype: str, tf32: bool) -> dict:
    """The report's fields that say where and how it ran."""
    out = {
        "device": dev.type,
        "dtype": {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[dtype],
        "weights_dtype": "float32",
        "autocast": dtype != "f32",
    }
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["tf32"] = tf32
        out["cuda"] = torch.version.cuda
    return out


def peak_gpu(dev: torch.device) -> dict:
    """Peak GPU memory of this process in MB (10^6 bytes, as tunelab reports): what tensors
    held (`peak_gpu_mb`) and what PyTorch's caching allocator reserved from the driver, which is
    what nvidia-smi shows (`peak_gpu_reserved_mb`). Empty on the CPU."""
    if dev.type != "cuda":
        return {}
    return {
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated(dev) / 1e6, 1),
        "peak_gpu_reserved_mb": round(torch.cuda.max_memory_reserved(dev) / 1e6, 1),
    }
