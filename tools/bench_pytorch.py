#!/usr/bin/env python3
"""Generation baseline: HF-transformers MusicGen (facebook/musicgen-small layout, random weights),
on the CPU or a CUDA GPU, in f32 or under bf16/f16 autocast.

Run:

    python3 tools/bench_pytorch.py                 # 5 s of audio, 2 threads, human-readable
    python3 tools/bench_pytorch.py --json          # one JSON object on stdout
    python3 tools/bench_pytorch.py --seconds 10 --threads 4
    python3 tools/bench_pytorch.py --device cuda --dtype bf16 --json

The model is built in memory from configs identical in shape to facebook/musicgen-small
(T5-base text encoder, EnCodec 32 kHz, 24-layer 1024-d decoder with 4 codebooks), fp32, with
HF's default random init; nothing is downloaded. `--dtype bf16|f16` keeps those f32 weights and
runs T5, generate() and the EnCodec decode under torch.autocast (bench_device.py). On CUDA every
clock reading waits for the GPU first (torch.cuda.synchronize). Timed:

  * T5 encoding of a 12-token prompt (median of several runs, after one warm-up),
  * generate() with do_sample=True, top_k=250, guidance_scale=3.0, batch 1,
    max_new_tokens = 50 * seconds + 3 (the delay pattern costs K-1 = 3 steps), reporting the
    wall time of the whole call, the median / mean time per decode step (taken between
    successive calls of the logits processors, so it includes the CFG forward of the doubled
    batch and sampling), and RTF = audio seconds / wall seconds (> 1 is faster than real time),
  * the EnCodec decode inside generate() (timed by wrapping audio_encoder.decode),
  * peak RSS of the process (resource.getrusage, KiB on Linux) and, on CUDA, the peak GPU
    memory (`peak_gpu_mb`: allocated by tensors; `peak_gpu_reserved_mb`: held by the allocator).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import bench_device  # noqa: E402
from musicgen_layout import encodec_32khz_config, musicgen_small_decoder_config  # noqa: E402


def build_model():
    from transformers import (
        MusicgenConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    text = T5Config(  # google-t5/t5-base
        vocab_size=32128,
        d_model=768,
        d_kv=64,
        d_ff=3072,
        num_layers=12,
        num_decoder_layers=12,
        num_heads=12,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="relu",
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
    )
    audio = encodec_32khz_config()  # facebook/encodec_32khz
    decoder = musicgen_small_decoder_config()
    cfg = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    model = MusicgenForConditionalGeneration(cfg).eval()
    model.generation_config.update(
        decoder_start_token_id=2048, pad_token_id=2048, bos_token_id=2048, max_length=1500
    )
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description="HF MusicGen-small generation baseline (random weights)")
    ap.add_argument("--seconds", type=float, default=5.0, help="audio seconds to generate (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print a single JSON object")
    bench_device.add_arguments(ap)
    args = ap.parse_args()

    from transformers import LogitsProcessor, LogitsProcessorList

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    dev = bench_device.device(args)

    def clock() -> float:
        bench_device.sync(dev)
        return time.perf_counter()

    t0 = time.perf_counter()
    model = build_model().to(dev)
    build_s = clock() - t0
    n_params = sum(p.numel() for p in model.parameters())
    log(f"built musicgen-small layout: {n_params / 1e6:.1f} M params in {build_s:.1f} s on {dev}")

    # ---- T5 encoding of a 12-token prompt (11 pieces + </s>)
    ids = torch.tensor([[371, 5, 2142, 1278, 28, 21764, 3, 10, 8614, 7, 11, 1]], device=dev)
    mask = torch.ones_like(ids)
    with torch.inference_mode(), bench_device.autocast(dev, args.dtype):
        model.text_encoder(input_ids=ids, attention_mask=mask)  # warm-up
        t5_times = []
        for _ in range(5):
            t = clock()
            model.text_encoder(input_ids=ids, attention_mask=mask)
            t5_times.append(clock() - t)

    # ---- generate
    frame_rate = model.config.audio_encoder.frame_rate  # 50
    K = model.decoder.num_codebooks
    max_new_tokens = int(round(args.seconds * frame_rate)) + (K - 1)

    step_stamps: list[float] = []

    class StepTimer(LogitsProcessor):
        def __call__(self, input_ids, scores):
            # generate() waits for the GPU every step anyway (its stopping check reads a value).
            step_stamps.append(clock())
            return scores

    decode_times: list[float] = []
    orig_decode = model.audio_encoder.decode

    def timed_decode(*a, **kw):
        t = clock()
        out = orig_decode(*a, **kw)
        decode_times.append(clock() - t)
        return out

    model.audio_encoder.decode = timed_decode

    t = clock()
    with bench_device.autocast(dev, args.dtype):
        audio = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            top_k=250,
            guidance_scale=3.0,
            max_new_tokens=max_new_tokens,
            logits_processor=LogitsProcessorList([StepTimer()]),
        )
    wall = clock() - t
    model.audio_encoder.decode = orig_decode

    sr = model.config.audio_encoder.sampling_rate
    audio_s = audio.shape[-1] / sr
    assert abs(audio_s - args.seconds) < 1e-6, f"expected {args.seconds} s of audio, got {audio_s} s"
    # intervals between successive logits-processor calls = one full decode step each
    steps = [b - a for a, b in zip(step_stamps, step_stamps[1:])]
    first_step_s = step_stamps[0] - t  # T5 encode + prefill/first forward
    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    result = {
        "impl": "pytorch-transformers",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        **bench_device.describe(dev, args.dtype, args.tf32),
        "params_m": round(n_params / 1e6, 1),
        "t5_encode_12tok_ms": round(statistics.median(t5_times) * 1e3, 2),
        "max_new_tokens": max_new_tokens,
        "decode_steps": len(step_stamps),
        "audio_samples": int(audio.shape[-1]),
        "audio_seconds": audio_s,
        "generate_wall_s": round(wall, 3),
        "first_step_s": round(first_step_s, 3),
        "step_ms_median": round(statistics.median(steps) * 1e3, 2),
        "step_ms_mean": round(statistics.fmean(steps) * 1e3, 2),
        "encodec_decode_ms": round(decode_times[0] * 1e3, 1),
        "rtf": round(audio_s / wall, 4),
        "peak_rss_mib": round(peak_rss_kib / 1024, 1),
        **bench_device.peak_gpu(dev),
        "model_build_s": round(build_s, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
