#!/usr/bin/env python3
"""Training baseline: HF-transformers MusicGen LM (facebook/musicgen-small layout, random
weights), the same step `tunelab bench train` times, on the CPU or a CUDA GPU.

Run (one mode per process, so the peak memory is that mode's):

    python3 tools/bench_train_pytorch.py --mode full            # human-readable
    python3 tools/bench_train_pytorch.py --mode lora --json     # one JSON object on stdout
    python3 tools/bench_train_pytorch.py --mode full --device cuda --dtype bf16 --batch 4 \
        --seconds 30 --json

What is timed matches tunelab's benchmark:

  * the decoder LM of musicgen-small (24 layers, 1024-d, 16 heads, ffn 4096, 4 codebooks) in
    fp32 with HF's random init; T5 and EnCodec are frozen in training and not part of a step;
  * `--dtype bf16|f16`: the forward and the loss under torch.autocast, weights and AdamW state
    f32 (audiocraft's mixed precision); f16 adds a GradScaler, as audiocraft does;
  * batch 2 x 10 s by default (`--batch`, `--seconds`): 50 frames a second + 3 delay steps per
    item, delay-patterned inputs, labels [B, T, K] through `MusicgenForCausalLM(labels=...)`
    (HF's per-codebook cross-entropy);
  * the null text condition (tunelab's benchmark drops every caption): one zero state with a
    zero mask for cross-attention;
  * `full`: every LM weight trained; `lora`: PEFT LoRA r16, alpha 16, on self-attention
    q/k/v/out only (3,145,728 parameters);
  * one optimizer step = zero_grad, forward, backward, clip_grad_norm_(1.0), AdamW (lr 1e-4,
    betas 0.9/0.95, weight decay 0.1). The first step is reported separately (warm-up). On CUDA
    each step's clock waits for the GPU (torch.cuda.synchronize).
  * peak RSS of the process (resource.getrusage) in MB, and on CUDA the peak GPU memory
    (`peak_gpu_mb`: allocated by tensors; `peak_gpu_reserved_mb`: held by the allocator).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import bench_device  # noqa: E402
from musicgen_layout import musicgen_small_decoder_config  # noqa: E402


def build_lm():
    from transformers import MusicgenForCausalLM

    # No dropout: tunelab trains without it by default (audiocraft's setting).
    return MusicgenForCausalLM(musicgen_small_decoder_config(dropout=0.0))


def batch(batch: int, frames: int, k: int, seed: int):
    """Delay-patterned inputs [B*K, T] and labels [B, T, K] (T = frames + K - 1)."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2048, (batch, k, frames), generator=g)
    t = frames + k - 1
    delayed = torch.full((batch, k, t), 2048, dtype=torch.long)
    for q in range(k):
        delayed[:, q, q : q + frames] = codes[:, q]
    inputs = torch.full_like(delayed, 2048)
    inputs[:, :, 1:] = delayed[:, :, :-1]  # shifted right, start token 2048
    labels = delayed.masked_fill(delayed == 2048, -100).permute(0, 2, 1).contiguous()
    return inputs.reshape(batch * k, t), labels


def main() -> int:
    ap = argparse.ArgumentParser(description="HF MusicGen-small LM training step (random weights)")
    ap.add_argument("--mode", choices=["full", "lora"], required=True)
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps (first = warm-up)")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per item")
    ap.add_argument("--batch", type=int, default=2, help="items per step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    bench_device.add_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    dev = bench_device.device(args)

    model = build_lm()
    if args.mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=16,
                lora_alpha=16,
                lora_dropout=0.0,
                target_modules=r".*self_attn\.(q_proj|k_proj|v_proj|out_proj)",
            ),
        )
    model.to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    # f16's narrow range underflows small gradients without loss scaling; bf16 and f32 need none.
    scaler = torch.amp.GradScaler(dev.type, enabled=args.dtype == "f16")

    frames = int(round(args.seconds * 50))
    inputs, labels = batch(args.batch, frames, 4, 0)
    inputs, labels = inputs.to(dev), labels.to(dev)
    enc = torch.zeros(args.batch, 1, 1024, device=dev)
    enc_mask = torch.zeros(args.batch, 1, dtype=torch.long, device=dev)

    times = []
    for step in range(args.steps):
        bench_device.sync(dev)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with bench_device.autocast(dev, args.dtype):
            out = model(
                input_ids=inputs,
                encoder_hidden_states=enc,
                encoder_attention_mask=enc_mask,
                labels=labels,
            )
        scaler.scale(out.loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(opt)
        scaler.update()
        bench_device.sync(dev)
        times.append(time.perf_counter() - t)
        log(f"step {step + 1}: {times[-1]:.2f} s (loss {out.loss.item():.3f})")

    # ru_maxrss is in KiB on Linux; MB (10^6 bytes) is what tunelab's report uses.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    timed = times[1:] if len(times) > 1 else times
    report = {
        "mode": args.mode,
        "torch": torch.__version__,
        "threads": args.threads,
        **bench_device.describe(dev, args.dtype, args.tf32),
        "batch": f"{args.batch} x {args.seconds:g} s",
        "steps": args.steps,
        "trainable_parameters": trainable,
        "first_step_seconds": times[0],
        "seconds_per_step": sum(timed) / len(timed),
        "peak_rss_mb": peak_mb,
        **bench_device.peak_gpu(dev),
    }
    if args.json:
        print(json.dumps(report))
    else:
        gpu = f", GPU peak {report['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in report else ""
        log(
            f"{args.mode} on {dev} ({args.dtype}): {report['seconds_per_step']:.2f} s/step "
            f"(first {times[0]:.2f}), {trainable} trainable, peak {peak_mb:.0f} MB{gpu} "
            f"(torch {torch.__version__})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
