#!/usr/bin/env python3
"""Generate the tiny random-weight LAION-CLAP fixture for tunelab's CLAP port (src/models/clap.rs).

Run from anywhere:

    python3 tools/make_clap_fixture.py            # (re)writes tests/fixtures/tiny-clap/, prints a summary
    python3 tools/make_clap_fixture.py --check    # same, then verifies a second build is byte-identical

Nothing is downloaded: the model is a `transformers.ClapModel` built from a tiny `ClapConfig`,
re-initialised from a seeded generator, and the tokenizer is a tiny RoBERTa-style byte-level BPE
built here (its merges are learnt by a deterministic toy BPE over a few captions). Versions: see
tools/requirements.txt. CPU, one thread.

Produced files (tests/fixtures/tiny-clap/):

  config.json, model.safetensors   `ClapModel.save_pretrained` (HF key names, incl. the int64
                                   buffers position_ids / token_type_ids / relative_position_index /
                                   num_batches_tracked that real checkpoints carry too)
  preprocessor_config.json         `ClapFeatureExtractor.save_pretrained`, with the settings of
                                   laion/clap-htsat-unfused (truncation "rand_trunc", padding
                                   "repeatpad", 50..14000 Hz, n_fft 1024, hop 480, 48 kHz) except
                                   feature_size 16 and max_length_s 1 (to keep the fixture small)
  tokenizer.json                   RoBERTa layout: <s>=0 <pad>=1 </s>=2 <unk>=3, 256 byte symbols,
                                   the learnt merges, <mask> last; ByteLevel pre-tokenizer,
                                   RobertaProcessing post-processor
  reference.json                   captions and their token ids (add_special_tokens=True)
  reference.safetensors            wave_0, wave_1      48 kHz waveforms (F16 values: the reference is
                                                       computed from exactly these samples)
                                   input_features      ClapFeatureExtractor output [2, 1, 101, 16];
                                                       wave_1 is longer than max_length, so
                                                       rand_trunc crops it: the crop offset is
                                                       pinned to 0 (what tunelab does)
                                   input_ids, attention_mask   the captions as a padded batch
                                   text_pooled, audio_pooled   pooler outputs (before projection)
                                   text_embeds, audio_embeds   get_text_features / get_audio_features
                                                               (projected, L2-normalised)
                                   similarity          text_embeds @ audio_embeds.T  [3, 2]

Tiny config: text RoBERTa hidden 32, 2 layers, 2 heads, vocab = tokenizer size; audio HTSAT
spec_size 64 with 16 mel bins (freq_ratio 4 as in the real 256/64), patch 4, window 4,
patch_embeds_hidden_size 8, depths [2, 2, 1] (each of the first two stages has a shifted-window
block; the last stage's 4x4 grid is not larger than the window, so HF drops the shift and shrinks
the window there, as the real model does in its last stage), projection_dim 16.
Weights are re-initialised with larger scales than HF's init (which zeroes the relative position
bias tables and leaves batch-norm at identity) so that every part of the model matters.

`--full-size DIR` writes the same files for a random model of laion/clap-htsat-unfused's real
layout (RoBERTa-base text tower, HTSAT-base with 4 stages and window 8, projection 512, 64 mel
bins, 10 s window; ~600 MB, never committed), with 4 s and 12 s waveforms. The ignored Rust test
`models::clap::tests::full_size_parity` checks it when TUNELAB_CLAP_FULL_SIZE=DIR is set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "tiny-clap"
SEED = 0
SAMPLE_RATE = 48_000
N_MERGES = 40

CORPUS = [
    "lofi hip hop beat with mellow piano and vinyl crackle",
    "upbeat pop song with bright synths and a catchy melody",
    "epic orchestral soundtrack with strings brass and timpani",
    "ambient drone with soft pads and distant bells",
    "fast techno track at 130 bpm with a driving kick drum",
    "relaxing acoustic guitar ballad with gentle vocals",
    "energetic rock anthem with loud guitars and heavy drums",
    "calm meditation music with flute and singing bowls",
    "smooth jazz with saxophone solo and walking bass",
    "the sound of rain on a window with distant thunder",
]

CAPTIONS = [
    "lofi hip hop beat with mellow piano",
    "Energetic ROCK anthem, loud guitars & drums!",
    "a calm drone",
]


# --------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the ByteLevel alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def learn_merges(words: list[str], n_merges: int) -> list[tuple[str, str]]:
    """Toy BPE: repeatedly merge the most frequent adjacent pair (ties: smallest pair)."""
    counts = Counter(words)
    seqs = {w: list(w) for w in counts}
    merges = []
    for _ in range(n_merges):
        pairs: Counter = Counter()
        for w, c in counts.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w in seqs:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def build_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words = [w for text in CORPUS for w, _ in pre.pre_tokenize_str(text)]
    merges = learn_merges(words, N_MERGES)
    vocab: dict[str, int] = {}
    for s in ["<s>", "<pad>", "</s>", "<unk>"]:
        vocab[s] = len(vocab)
    for b in range(256):
        vocab[bytes_to_unicode()[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    vocab["<mask>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False
    )
    tok.add_special_tokens(
        [
            AddedToken("<s>", special=True),
            AddedToken("<pad>", special=True),
            AddedToken("</s>", special=True),
            AddedToken("<unk>", special=True),
            AddedToken("<mask>", lstrip=True, special=True),
        ]
    )
    assert tok.token_to_id("<pad>") == 1 and tok.token_to_id("</s>") == 2
    return tok


# --------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------
def build_config(vocab_size: int, full_size: bool = False):
    from transformers import ClapConfig

    if full_size:  # laion/clap-htsat-unfused's layout (the class defaults)
        return ClapConfig(projection_dim=512)

    text = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
    )
    audio = dict(
        spec_size=64,
        num_mel_bins=16,
        window_size=4,
        patch_size=4,
        patch_stride=[4, 4],
        patch_embeds_hidden_size=8,
        depths=[2, 2, 1],
        num_attention_heads=[1, 2, 4],
        hidden_size=32,  # == patch_embeds_hidden_size * 2 ** (len(depths) - 1), as in the real 96 -> 768
    )
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=16)


@torch.no_grad()
def reinit(model, gen: torch.Generator) -> None:
    """Every float parameter and buffer from `gen`, with scales that make each part matter."""
    for name, p in sorted(list(model.named_parameters()) + list(model.named_buffers())):
        if not p.dtype.is_floating_point or name.startswith("logit_scale"):
            continue
        n = lambda std: torch.randn(p.shape, generator=gen) * std  # noqa: E731
        if name.endswith("relative_position_bias_table"):
            p.copy_(n(1.0))
        elif name.endswith("batch_norm.running_mean"):
            p.copy_(-45.0 + n(5.0))
        elif name.endswith("batch_norm.running_var"):
            p.copy_(400.0 * (0.5 + torch.rand(p.shape, generator=gen)))
        elif p.dim() == 1 and name.endswith("weight"):  # LayerNorm / BatchNorm scale
            p.copy_(1.0 + n(0.2))
        elif name.endswith("bias"):
            p.copy_(n(0.1))
        elif "embeddings" in name:
            p.copy_(n(0.5))
        else:  # Linear [out, in] / Conv2d [out, in, kh, kw]
            fan_in = p[0].numel()
            p.copy_(n(1.0 / fan_in**0.5))


# --------------------------------------------------------------------------------------
# audio
# --------------------------------------------------------------------------------------
def make_wave(seconds: float, freqs: list[float], rng: np.random.Generator) -> np.ndarray:
    """A sum of sines with a slow tremolo plus seeded noise, rounded to float16 values."""
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    w = sum(a * np.sin(2 * np.pi * f * t + ph) for f, a, ph in zip(freqs, [0.3, 0.2, 0.1], [0.0, 0.4, 1.3]))
    w = w * (0.75 + 0.25 * np.sin(2 * np.pi * 3.0 * t)) + 0.02 * rng.standard_normal(n)
    return w.astype(np.float16)


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_shas(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): file_sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def build(out: Path, verbose: bool = True, full_size: bool = False) -> None:
    from transformers import ClapFeatureExtractor, ClapModel

    log = print if verbose else (lambda *a, **k: None)
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    tok = build_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    vocab = tok.get_vocab_size(with_added_tokens=True)

    model = ClapModel(build_config(vocab, full_size)).eval()
    reinit(model, gen)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for f in ["config.json", "model.safetensors"]:
            shutil.copy(Path(tmp) / f, out / f)

    fe = ClapFeatureExtractor(
        feature_size=64 if full_size else 16,
        sampling_rate=SAMPLE_RATE,
        hop_length=480,
        max_length_s=10 if full_size else 1,
        fft_window_size=1024,
        padding_value=0.0,
        return_attention_mask=False,
        frequency_min=50,
        frequency_max=14_000,
        top_db=None,
        truncation="rand_trunc",
        padding="repeatpad",
    )
    with tempfile.TemporaryDirectory() as tmp:
        fe.save_pretrained(tmp)
        shutil.copy(Path(tmp) / "preprocessor_config.json", out / "preprocessor_config.json")

    # wave_0 (0.3 s) is shorter than max_length: repeat-padded (3 copies) then zero-padded.
    # wave_1 (1.05 s) is longer: rand_trunc takes a crop; np.random.randint is pinned to 0 here.
    secs = (4.0, 12.0) if full_size else (0.3, 1.05)
    waves = [make_wave(secs[0], [220.0, 660.0, 3520.0], rng), make_wave(secs[1], [98.0, 1244.5, 7040.0], rng)]
    real_randint = np.random.randint
    np.random.randint = lambda low, high=None, *a, **k: 0  # the crop offset tunelab uses
    try:
        feats = fe([w.astype(np.float32) for w in waves], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    finally:
        np.random.randint = real_randint
    input_features = feats["input_features"].float()
    want_shape = (2, 1, 1001, 64) if full_size else (2, 1, 101, 16)
    assert tuple(input_features.shape) == want_shape, input_features.shape

    encs = [tok.encode(c, add_special_tokens=True).ids for c in CAPTIONS]
    lmax = max(len(e) for e in encs)
    input_ids = torch.full((len(encs), lmax), tok.token_to_id("<pad>"), dtype=torch.long)
    attention_mask = torch.zeros(len(encs), lmax, dtype=torch.long)
    for i, e in enumerate(encs):
        input_ids[i, : len(e)] = torch.tensor(e)
        attention_mask[i, : len(e)] = 1

    with torch.no_grad():
        text_out = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        audio_out = model.get_audio_features(input_features=input_features)
        text_embeds = text_out.pooler_output
        audio_embeds = audio_out.pooler_output
        text_pooled = model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        audio_pooled = model.audio_model(input_features=input_features).pooler_output
        similarity = text_embeds @ audio_embeds.T

    tensors = {
        "wave_0": torch.from_numpy(waves[0].copy()),
        "wave_1": torch.from_numpy(waves[1].copy()),
        "input_features": input_features.contiguous(),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "text_pooled": text_pooled.contiguous(),
        "audio_pooled": audio_pooled.contiguous(),
        "text_embeds": text_embeds.contiguous(),
        "audio_embeds": audio_embeds.contiguous(),
        "similarity": similarity.contiguous(),
    }
    save_file(tensors, str(out / "reference.safetensors"))
    ref = {"captions": CAPTIONS, "ids": encs, "sample_rate": SAMPLE_RATE}
    (out / "reference.json").write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n")

    log(f"[tokenizer] vocab={vocab}, ids={encs}")
    log(f"[features] {tuple(input_features.shape)} range {input_features.min():.2f}..{input_features.max():.2f}")
    log(f"[similarity]\n{similarity.numpy()}")
    total = sum(p.stat().st_size for p in out.iterdir())
    log(f"[size] {total / 1024:.0f} KiB in {out}")
    for p in sorted(out.iterdir()):
        log(f"  {p.name}: {p.stat().st_size / 1024:.1f} KiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare sha256 of every file")
    ap.add_argument("--full-size", type=Path, metavar="DIR", help="write a real-size random model to DIR instead")
    args = ap.parse_args()
    if args.full_size:
        build(args.full_size, full_size=True)
        return 0
    build(args.out)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            other = Path(tmp) / "tiny-clap"
            build(other, verbose=False)
            a, b = tree_shas(args.out), tree_shas(other)
            bad = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if bad:
                print(f"[check] NOT deterministic: {bad}")
                return 1
            print(f"[check] deterministic: {len(b)} files identical (sha256)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
