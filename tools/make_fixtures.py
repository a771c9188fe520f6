#!/usr/bin/env python3
"""Generate the PyTorch / HF-transformers reference fixtures for tunelab's MusicGen port.

Run from the repository root (or anywhere):

    python3 tools/make_fixtures.py            # (re)writes tests/fixtures/, prints a summary
    python3 tools/make_fixtures.py --check    # same, then verifies a second build is byte-identical

Everything is built from configs (no hub downloads) and seeded, so the outputs are
byte-for-byte reproducible for a given torch/transformers/tokenizers version (see
tools/requirements.txt). All computations run on CPU with a single thread.

Produced files (all under tests/fixtures/):

  tiny-musicgen/            a tiny random-weight MusicgenForConditionalGeneration
      config.json, generation_config.json, model.safetensors   (save_pretrained, safetensors)
      tokenizer.json, tokenizer_config.json                     (T5-style Unigram tokenizer)
  tokenizer_cases.json      [{"text", "ids"}] encoded with add_special_tokens=True (appends </s>=1)
  t5_ref.safetensors        text-encoder reference outputs (single prompts + padded batch)
  encodec_ref.safetensors   EnCodec encode (latents, codes) / decode references
  decoder_ref.safetensors   MusicGen decoder logits (cond / uncond / CFG, batch of 2)
  greedy_ref.json           codes HF generate() hands to the EnCodec decoder (do_sample=False)
  greedy_audio.safetensors  decoded audio of greedy case 0

Deviation from a "d_model == hidden_size == 32" tiny config: the text encoder uses
d_model=24 so that the decoder hidden size (32) differs and HF instantiates
`enc_to_dec_proj` (as in every real MusicGen checkpoint: T5 768 -> decoder 1024/1536/2048).
With equal sizes HF silently skips that projection.

Checkpoint layout written by transformers 5.x (what the Rust loader must accept):
EnCodec weight-norm convs are stored as `...conv.parametrizations.weight.original0` (g, shape
[dim0,1,1]) and `...original1` (v) -- the hub checkpoints use the older `weight_g`/`weight_v`
names for the same tensors; the T5 token embedding is stored once as `text_encoder.shared.weight`
(encoder.embed_tokens is tied to it); the RVQ buffers embed/embed_avg/cluster_size/inited are saved.
With the specified sub-model sizes the checkpoint alone is ~4.3 MB (2048-entry vocab / codebooks
dominate), so the fixture directory totals ~6 MB.

Weights are re-initialised with scales larger than HF's default init so that greedy
argmax decisions and the EnCodec nearest-neighbour choices have clear margins; the script
prints both margins and fails if either is <= MIN_MARGIN.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from musicgen_layout import encodec_32khz_config  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures"

MIN_MARGIN = 1e-3
STRICT = True
SEED = 0
PAD = 2048  # MusicGen decoder pad / BOS / decoder_start token (== codebook_size)
GUIDANCE = 3.0
# Init scales (see reinit_weights); chosen so that both printed margins are comfortably > MIN_MARGIN.
LM_HEAD_GAIN = 6.0  # lm_heads std = gain / sqrt(hidden)
CROSS_ATTN_GAIN = 0.5  # decoder encoder_attn.out_proj std = gain / sqrt(hidden)
CODEBOOK_STD = (3.0, 3.0, 3.0, 3.0)  # EnCodec RVQ codebook entries, per quantizer

# --------------------------------------------------------------------------------------
# Tokenizer training corpus: short English music captions (genres, instruments, moods, bpm).
# --------------------------------------------------------------------------------------
CAPTIONS = [
    "lofi hip hop beat with mellow piano and vinyl crackle",
    "upbeat pop song with bright synths and a catchy melody",
    "epic orchestral soundtrack with strings brass and timpani",
    "ambient drone with soft pads and distant bells",
    "fast techno track at 130 bpm with a driving kick drum",
    "relaxing acoustic guitar ballad with gentle vocals",
    "dark cinematic score with deep cello and tense percussion",
    "funky bass groove with slap bass and tight drums",
    "smooth jazz with saxophone solo and walking bass",
    "heavy metal riff with distorted electric guitar and double bass drums",
    "chill house music at 120 bpm with warm chords",
    "classical piano sonata in a minor key",
    "reggae rhythm with offbeat guitar skank and dub bass",
    "80s synthwave with retro arpeggios and gated reverb drums",
    "sad violin melody with slow string accompaniment",
    "happy ukulele tune with hand claps and whistling",
    "drum and bass at 174 bpm with rolling breakbeats",
    "country song with banjo fiddle and steel guitar",
    "blues shuffle with harmonica and electric guitar",
    "trap beat with booming 808 bass and crisp hi hats",
    "calm meditation music with flute and singing bowls",
    "energetic rock anthem with loud guitars and heavy drums",
    "latin salsa with congas trumpets and piano montuno",
    "minimal electronic music with glitchy clicks and sub bass",
    "dreamy shoegaze with washed out guitars and reverb",
    "folk song with acoustic guitar mandolin and soft harmonies",
    "bossa nova with nylon guitar and brushed drums at 90 bpm",
    "dubstep drop with wobble bass and snare rolls",
    "baroque harpsichord piece with a lively counterpoint",
    "gospel choir with organ and powerful claps",
    "video game chiptune with square wave leads",
    "soulful rnb groove with electric piano and smooth bass",
    "tense horror soundtrack with dissonant strings",
    "uplifting trance at 138 bpm with euphoric supersaw chords",
    "jazzy lofi beat with muted trumpet and rain sounds",
    "marching band with snare drums and tubas",
    "indian classical raga with sitar and tabla",
    "irish jig with fiddle tin whistle and bodhran",
    "afrobeat groove with percussion horns and guitar",
    "slow piano lullaby for sleeping babies",
    "aggressive industrial track with metallic percussion",
    "warm analog synth bass line with a steady beat",
    "romantic string quartet in a major key",
    "disco track with four on the floor kick and funky guitar",
    "hip hop instrumental with boom bap drums and jazz samples",
    "peaceful nature ambience with birds and a soft piano",
    "cinematic trailer music with huge drums and choir",
    "garage rock with fuzzy guitars and raw vocals",
    "bright marimba melody over a light percussion loop",
    "melancholic indie song with reverb guitar and soft drums",
    "electro swing with clarinet and a bouncy beat",
    "spanish flamenco guitar with fast strumming and claps",
    "k pop dance track with punchy drums and synth hooks",
    "slow tempo ballad at 70 bpm with piano and strings",
    "psychedelic rock with swirling organ and phaser guitar",
    "deep house groove with a rolling bassline at 122 bpm",
    "cheerful children song with xylophone and bells",
    "noir jazz with smoky saxophone and upright bass",
    "tribal drums with chanting and a deep pulse",
    "modern classical piece with minimalist piano patterns",
    "epic fantasy music with horns harp and a big orchestra",
    "chillwave with hazy synths and a slow groove",
]

# Prompts used for the reference outputs.
TOKENIZER_CASES = [
    "lofi hip hop beat with mellow piano",
    "Energetic ROCK anthem, loud guitars & heavy drums!",
    "ambient  drone   with soft pads",  # repeated spaces
    "a zqxjv theremin solo at 95 bpm... très bizarre?",  # OOV word + accented chars + punctuation
    "80s synthwave",
]
T5_PROMPTS = [
    "lofi hip hop beat with mellow piano",
    "epic orchestral soundtrack with strings brass and timpani",
    "80s synthwave",
]
DECODER_PROMPT = "funky bass groove with slap bass and tight drums"
DECODER_PROMPTS_B2 = ["80s synthwave", "dark cinematic score with deep cello and tense percussion"]
GREEDY_CASES = [
    # (prompt or None for unconditional, guidance_scale, max_new_tokens)
    ("lofi hip hop beat with mellow piano", 3.0, 20),
    ("energetic rock anthem with loud guitars and heavy drums", 3.0, 20),
    ("calm meditation music with flute", 3.0, 20),
    ("lofi hip hop beat with mellow piano", 1.0, 20),
    (None, 3.0, 20),
]


# --------------------------------------------------------------------------------------
# (a) tokenizer
# --------------------------------------------------------------------------------------
def build_tokenizer(vocab_size: int = 200):
    """T5-style Unigram tokenizer: <pad>=0, </s>=1, <unk>=2, Metaspace, '$A </s>' post-processor."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    # T5 uses a Precompiled (NFKC-like) charsmap followed by collapsing runs of spaces.
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
        max_piece_length=12,
    )
    tok.train_from_iterator(CAPTIONS, trainer=trainer)
    # The Unigram trainer is not bit-reproducible (hash-map iteration order changes the float
    # summation order, hence the last bits of the scores and the order of equal-score pieces, and
    # the order in which leftover required characters are appended with scores min - k*1e-4).
    # Canonicalise: keep the specials at ids 0..2, round the log-probs, re-assign the appended
    # character tail in sorted order, and sort by (score desc, piece) so ids are stable.
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    specials, pieces = vocab[:3], [(p, round(sc, 4)) for p, sc in vocab[3:]]
    assert [p for p, _ in specials] == ["<pad>", "</s>", "<unk>"], specials
    tail = 1
    while tail < len(pieces) and abs(pieces[-tail - 1][1] - pieces[-tail][1]) < 1.5e-4 and len(pieces[-tail - 1][0]) == 1:
        tail += 1
    if len(pieces[-1][0]) == 1 and tail > 1:
        top = max(sc for _, sc in pieces[-tail:])
        chars = sorted(p for p, _ in pieces[-tail:])
        pieces = pieces[:-tail] + [(c, round(top - 1e-4 * k, 4)) for k, c in enumerate(chars)]
    pieces = sorted(pieces, key=lambda x: (-x[1], x[0]))
    tok.model = models.Unigram([(p, 0.0) for p, _ in specials] + pieces, unk_id=2, byte_fallback=False)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    assert tok.token_to_id("<pad>") == 0 and tok.token_to_id("</s>") == 1 and tok.token_to_id("<unk>") == 2
    return tok


def encode(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=True).ids


def encode_batch(tok, texts: list[str]):
    """Right-pad with <pad>=0 like the HF T5 tokenizer with padding=True."""
    ids = [encode(tok, t) for t in texts]
    lmax = max(len(x) for x in ids)
    out = torch.zeros(len(ids), lmax, dtype=torch.long)
    mask = torch.zeros(len(ids), lmax, dtype=torch.long)
    for i, x in enumerate(ids):
        out[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return out, mask


# --------------------------------------------------------------------------------------
# (b) model
# --------------------------------------------------------------------------------------
def build_config(text_vocab: int):
    from transformers import MusicgenConfig, MusicgenDecoderConfig, T5Config

    text = T5Config(
        vocab_size=text_vocab,
        d_model=24,  # != decoder hidden_size so that enc_to_dec_proj exists (see module docstring)
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="relu",
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    audio = encodec_32khz_config(num_filters=4, hidden_size=16)
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        max_position_embeddings=2048,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=4,
        hidden_size=32,
        num_codebooks=4,
        activation_function="gelu",
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        layerdrop=0.0,
        pad_token_id=PAD,
        bos_token_id=PAD,
        audio_channels=1,
        scale_embedding=False,
        tie_word_embeddings=False,
    )
    cfg = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    assert audio.frame_rate == 50 and audio.num_quantizers == 4 and audio.hop_length == 640
    return cfg


def _normal_(t: torch.Tensor, std: float, gen: torch.Generator):
    with torch.no_grad():
        t.copy_(torch.randn(t.shape, generator=gen) * std)


@torch.no_grad()
def reinit_weights(model, gen: torch.Generator):
    """Re-initialise every parameter/buffer deterministically with well-spread scales."""
    import torch.nn as nn
    from transformers.models.t5.modeling_t5 import T5Attention, T5LayerNorm

    def linear_(lin: nn.Linear, gain: float = 1.0):
        _normal_(lin.weight, gain / math.sqrt(lin.weight.shape[1]), gen)
        if lin.bias is not None:
            _normal_(lin.bias, 0.1, gen)

    # --- text encoder (T5)
    te = model.text_encoder
    _normal_(te.shared.weight, 0.5, gen)
    for m in te.modules():
        if isinstance(m, T5LayerNorm):
            m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
        elif isinstance(m, T5Attention) and m.has_relative_attention_bias:
            _normal_(m.relative_attention_bias.weight, 0.5, gen)
        elif isinstance(m, nn.Linear):
            linear_(m)

    # --- projection text -> decoder
    linear_(model.enc_to_dec_proj)

    # --- MusicGen decoder
    dec = model.decoder
    for emb in dec.model.decoder.embed_tokens:
        _normal_(emb.weight, 0.5, gen)
    for name, m in dec.named_modules():
        if name.startswith("lm_heads"):
            continue
        if isinstance(m, nn.LayerNorm):
            m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        elif isinstance(m, nn.Linear):
            linear_(m)
    for head in dec.lm_heads:
        linear_(head, gain=LM_HEAD_GAIN)
    for layer in dec.model.decoder.layers:  # damp the text conditioning so CFG does not dominate
        linear_(layer.encoder_attn.out_proj, gain=CROSS_ATTN_GAIN)

    # --- EnCodec
    ae = model.audio_encoder
    for m in ae.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) and hasattr(m, "parametrizations"):
            p = m.parametrizations.weight
            v = p.original1  # direction, same shape as weight
            if isinstance(m, nn.ConvTranspose1d):  # weight (in, out, k); each output sees in*k/stride taps
                fan_in = v.shape[0] * v.shape[2] / m.stride[0]
            else:  # weight (out, in, k)
                fan_in = v.shape[1] * v.shape[2]
            w = torch.randn(v.shape, generator=gen) / math.sqrt(fan_in)
            v.copy_(w)
            # weight_norm(dim=0): g has shape (dim0, 1, 1) and weight = g * v / ||v||; with g = ||v|| * s
            # the effective weight is s * v, s slightly off 1 so that g and v are both exercised.
            norm = w.flatten(1).norm(dim=1).view(-1, 1, 1)
            scale = 1.0 + 0.1 * torch.randn(norm.shape, generator=gen)
            p.original0.copy_(norm * scale)
            if m.bias is not None:
                _normal_(m.bias, 0.05, gen)
        elif isinstance(m, nn.LSTM):
            for pname, prm in m.named_parameters():
                if pname.startswith("weight"):
                    _normal_(prm, 1.0 / math.sqrt(m.hidden_size), gen)
                else:
                    _normal_(prm, 0.1, gen)
    for i, layer in enumerate(ae.quantizer.layers):
        cb = layer.codebook
        _normal_(cb.embed, CODEBOOK_STD[i], gen)
        cb.embed_avg.copy_(cb.embed)
        cb.cluster_size.fill_(1.0)
        cb.inited.fill_(1.0)

    # sanity: nothing left uninitialised / non-finite
    for n, p in model.state_dict().items():
        assert torch.isfinite(p.float()).all(), n


def make_generation_config():
    from transformers import GenerationConfig

    return GenerationConfig(
        decoder_start_token_id=PAD,
        pad_token_id=PAD,
        bos_token_id=PAD,
        guidance_scale=GUIDANCE,
        do_sample=True,
        max_length=1500,
    )


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def top2_gap(scores: torch.Tensor) -> torch.Tensor:
    """top1 - top2 along the last dim."""
    t = scores.topk(2, dim=-1).values
    return t[..., 0] - t[..., 1]


def quantizer_margins(audio_encoder, latents: torch.Tensor, n_q: int) -> float:
    """Replays the RVQ and returns the min gap between the best and second-best (negated squared)
    distance, computed exactly like EncodecEuclideanCodebook.quantize."""
    residual = latents
    gaps = []
    for layer in audio_encoder.quantizer.layers[:n_q]:
        x = residual.permute(0, 2, 1).reshape(-1, residual.shape[1])
        embed = layer.codebook.embed.t()
        dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True))
        gaps.append(top2_gap(dist).min().item())
        idx = layer.encode(residual)
        residual = residual - layer.decode(idx)
    return min(gaps)


def make_wave(n: int, gen: torch.Generator) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / 32000.0
    w = 0.25 * torch.sin(2 * math.pi * 220.0 * t) + 0.15 * torch.sin(2 * math.pi * 554.37 * t + 0.3)
    w = w + 0.1 * torch.sin(2 * math.pi * 1318.5 * t + 1.1)  # amplitudes sum to 0.5
    w = w.float() + 0.01 * torch.randn(n, generator=gen)
    return w.view(1, 1, n)


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_shas(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): file_sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------
# main build
# --------------------------------------------------------------------------------------
def build(out: Path, verbose: bool = True) -> dict:
    from transformers import MusicgenForConditionalGeneration
    from transformers.generation import ClassifierFreeGuidanceLogitsProcessor

    log = print if verbose else (lambda *a, **k: None)
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    summary: dict = {}

    out.mkdir(parents=True, exist_ok=True)
    mdir = out / "tiny-musicgen"
    if mdir.exists():
        shutil.rmtree(mdir)
    mdir.mkdir(parents=True)

    # ---------------- (a) tokenizer
    tok = build_tokenizer()
    tok.save(str(mdir / "tokenizer.json"))
    (mdir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "pad_token": "<pad>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "model_max_length": 512,
                "padding_side": "right",
            },
            indent=2,
        )
        + "\n"
    )
    vocab = tok.get_vocab_size()
    cases = []
    for text in TOKENIZER_CASES:
        enc = tok.encode(text, add_special_tokens=True)
        cases.append({"text": text, "ids": enc.ids, "tokens": enc.tokens})
    (out / "tokenizer_cases.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    from transformers import AutoTokenizer  # the HF loader must agree with `tokenizers`

    hf_tok = AutoTokenizer.from_pretrained(str(mdir))
    for c in cases:
        assert hf_tok(c["text"]).input_ids == c["ids"], c["text"]
    n_unk = sum(c["ids"].count(2) for c in cases)
    assert n_unk > 0, "expected at least one <unk> in the tokenizer cases"
    log(f"[tokenizer] vocab={vocab}, {len(cases)} cases, <unk> occurrences={n_unk}")
    summary["vocab"] = vocab

    # ---------------- (b) model
    cfg = build_config(vocab)
    model = MusicgenForConditionalGeneration(cfg).eval()
    reinit_weights(model, gen)
    model.generation_config = make_generation_config()
    model.save_pretrained(str(mdir), safe_serialization=True)

    # Every reference below comes from the re-loaded checkpoint, i.e. exactly what Rust loads.
    loaded = MusicgenForConditionalGeneration.from_pretrained(str(mdir)).eval()
    sd0, sd1 = model.state_dict(), loaded.state_dict()
    assert sd0.keys() == sd1.keys()
    for k in sd0:
        assert torch.equal(sd0[k], sd1[k]), f"round-trip mismatch for {k}"
    model = loaded
    from safetensors import safe_open

    with safe_open(str(mdir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    wn_keys = sorted({k.rsplit(".", 1)[-1] for k in keys if k.startswith("audio_encoder.") and ".conv." in k})
    wn_example = sorted(k for k in keys if k.startswith("audio_encoder.encoder.layers.0.conv"))
    log(f"[model] {len(keys)} tensors saved; EnCodec conv tensor suffixes: {wn_keys}")
    log(f"[model] e.g. {wn_example}")
    summary["weight_norm_keys"] = wn_example
    summary["has_enc_to_dec_proj"] = any(k.startswith("enc_to_dec_proj") for k in keys)
    assert summary["has_enc_to_dec_proj"]

    te = model.text_encoder
    with torch.no_grad():
        # ---------------- (c) T5 reference
        t5 = {}
        for i, p in enumerate(T5_PROMPTS):
            ids = torch.tensor([encode(tok, p)])
            t5[f"ids.{i}"] = ids
            t5[f"hidden.{i}"] = te(input_ids=ids).last_hidden_state.contiguous()
        bids, bmask = encode_batch(tok, [T5_PROMPTS[1], T5_PROMPTS[2]])
        bh = te(input_ids=bids, attention_mask=bmask).last_hidden_state
        t5["batch_ids"], t5["batch_mask"], t5["batch_hidden"] = bids, bmask, bh.contiguous()
        t5["batch_proj"] = (model.enc_to_dec_proj(bh) * bmask[..., None]).contiguous()
        save_file(t5, str(out / "t5_ref.safetensors"))
        # unpadded row of the batch must match the single-prompt output
        d = (bh[0] - t5["hidden.1"][0]).abs().max().item()
        log(f"[t5] batch row0 vs single max|diff|={d:.2e}")

        # ---------------- (d) EnCodec reference
        ae = model.audio_encoder
        enc = {}
        qgaps = []
        for suffix, n in (("", 16000), ("_odd", 16123)):
            wave = make_wave(n, gen)
            latents = ae.encoder(wave)
            codes = ae.encode(wave, bandwidth=2.2).audio_codes
            decoded = ae.decode(codes, [None]).audio_values
            enc[f"wave{suffix}"] = wave.contiguous()
            enc[f"latents{suffix}"] = latents.contiguous()
            enc[f"codes{suffix}"] = codes.contiguous()
            enc[f"decoded{suffix}"] = decoded.contiguous()
            qgaps.append(quantizer_margins(ae, latents, 4))
            log(
                f"[encodec] wave{suffix} {tuple(wave.shape)} -> latents {tuple(latents.shape)} "
                f"codes {tuple(codes.shape)} decoded {tuple(decoded.shape)}  "
                f"latent std={latents.std():.3f} decoded std={decoded.std():.3f}"
            )
        # Lengths that are not a multiple of the hop (640): HF does NOT pad the waveform up front.
        # Every EncodecConv1d pads its own input: padding_total = (k-1)*dilation+1 - stride, split
        # non-causally as left = padding_total - padding_total//2, right = padding_total//2, plus
        # "extra" right padding = ceil(L/stride)*stride - L (for stride>1 convs) so the output has
        # ceil(L/stride) frames; all of it in pad_mode="reflect" (zero-extended first if L is
        # shorter than the pad). Hence T = ceil(16123/4)->4031, /4->1008, /5->202, /8->26 frames
        # (= ceil(16123/640)). ConvTranspose1d trims padding_total//2 on the right and the rest on
        # the left. decode() is not trimmed: decoded_odd has 26*640 = 16640 samples.
        save_file(enc, str(out / "encodec_ref.safetensors"))
        q_margin = min(qgaps)
        summary["quantizer_margin"] = q_margin
        assert enc["codes"].shape == (1, 1, 4, 25), enc["codes"].shape

        # ---------------- (e) decoder reference
        g = torch.Generator().manual_seed(1234)

        def delayed_inputs(batch: int, s: int) -> torch.Tensor:
            x = torch.randint(0, 2048, (batch, 4, s), generator=g)
            x[:, :, 0] = PAD
            for k in range(4):
                x[:, k, : k + 1] = PAD  # BOS column + k delay pads
            return x.reshape(batch * 4, s)

        S = 10
        dec = {}
        ids = torch.tensor([encode(tok, DECODER_PROMPT)])
        mask = torch.ones_like(ids)
        dids = delayed_inputs(1, S)
        cond = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dids).logits
        enc_h = te(input_ids=ids, attention_mask=mask).last_hidden_state
        uncond = model(
            encoder_outputs=(torch.zeros_like(enc_h),), attention_mask=torch.zeros_like(mask), decoder_input_ids=dids
        ).logits
        cfg_logits = uncond + GUIDANCE * (cond - uncond)
        # What generate() actually does: batch [cond; uncond] through one forward, then the CFG processor.
        both = model(
            encoder_outputs=(torch.cat([enc_h, torch.zeros_like(enc_h)]),),
            attention_mask=torch.cat([mask, torch.zeros_like(mask)]),
            decoder_input_ids=dids.repeat(2, 1),
        ).logits
        proc = ClassifierFreeGuidanceLogitsProcessor(GUIDANCE)
        hf_cfg = torch.stack([proc(dids, both[:, s]) for s in range(S)], dim=1)
        d_cfg = (hf_cfg - cfg_logits).abs().max().item()
        log(f"[decoder] CFG processor vs uncond+3*(cond-uncond): max|diff|={d_cfg:.2e}")
        assert d_cfg < 1e-5
        dec["text_ids"], dec["text_mask"], dec["decoder_input_ids"] = ids, mask, dids
        dec["logits_cond"] = cond.reshape(1, 4, S, -1).contiguous()
        dec["logits_uncond"] = uncond.reshape(1, 4, S, -1).contiguous()
        dec["logits_cfg"] = cfg_logits.reshape(1, 4, S, -1).contiguous()
        ids2, mask2 = encode_batch(tok, DECODER_PROMPTS_B2)
        dids2 = delayed_inputs(2, S)
        cond2 = model(input_ids=ids2, attention_mask=mask2, decoder_input_ids=dids2).logits
        dec["text_ids_b2"], dec["text_mask_b2"], dec["decoder_input_ids_b2"] = ids2, mask2, dids2
        dec["logits_cond_b2"] = cond2.reshape(2, 4, S, -1).contiguous()
        save_file(dec, str(out / "decoder_ref.safetensors"))
        # The references use the default attention backend (sdpa); eager must agree.
        eager = MusicgenForConditionalGeneration.from_pretrained(str(mdir), attn_implementation="eager").eval()
        d_eager = (eager(input_ids=ids2, attention_mask=mask2, decoder_input_ids=dids2).logits - cond2).abs().max()
        log(f"[decoder] eager vs {model.config._attn_implementation} attention: max|diff|={d_eager.item():.2e}")
        del eager
        log(f"[decoder] logits std={cond.std():.2f}, cfg logits std={cfg_logits.std():.2f}")

    # ---------------- (f) greedy generation reference
    captured: dict = {}
    orig_decode = model.audio_encoder.decode
    orig_apply = model.decoder.apply_delay_pattern_mask

    def decode_wrapper(audio_codes, *a, **kw):
        captured["codes"] = audio_codes.clone()
        return orig_decode(audio_codes, *a, **kw)

    def apply_wrapper(input_ids, mask):
        res = orig_apply(input_ids, mask)
        captured["delayed"] = res.clone()  # the last call is the final one inside generate()
        captured["pattern"] = mask.clone()
        return res

    model.audio_encoder.decode = decode_wrapper
    model.decoder.apply_delay_pattern_mask = apply_wrapper

    greedy = []
    gen_margins = []
    audio0 = None
    for ci, (prompt, gs, n_new) in enumerate(GREEDY_CASES):
        captured.clear()
        if prompt is None:
            inputs = model.get_unconditional_inputs(1)
            inputs.guidance_scale = gs
            kwargs = dict(inputs)
        else:
            ids = torch.tensor([encode(tok, prompt)])
            kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), guidance_scale=gs)
        out_g = model.generate(
            **kwargs,
            do_sample=False,
            max_new_tokens=n_new,
            return_dict_in_generate=True,
            output_scores=True,
        )
        codes = captured["codes"]  # (1 frame, B=1, K, T)
        assert codes.shape[:3] == (1, 1, 4), codes.shape
        delayed = captured["delayed"][:4]  # (K, 1 + max_new_tokens)
        pattern = captured["pattern"][:4]
        # margins only where the generated token is kept (pattern == -1 at position step+1)
        for step, sc in enumerate(out_g.scores):
            gap = top2_gap(sc[:4].float())
            keep = pattern[:, step + 1] == -1
            if keep.any():
                gen_margins.append(gap[keep].min().item())
        kk = codes[0, 0]
        n_unique = int(torch.unique(kk).numel())
        summary.setdefault("distinct", []).append(n_unique)
        assert n_unique > 4, f"degenerate codes in case {ci}"
        case = {
            "prompt": prompt,
            "unconditional": prompt is None,
            "guidance_scale": gs,
            "max_new_tokens": n_new,
            "text_ids": None if prompt is None else kwargs["input_ids"][0].tolist(),
            "codes": kk.tolist(),
            "delayed": delayed.tolist(),
        }
        greedy.append(case)
        if ci == 0:
            audio0 = out_g.sequences.contiguous()  # generate() returns decoded audio in .sequences
        log(
            f"[greedy] case {ci}: prompt={prompt!r} gs={gs} max_new_tokens={n_new} -> codes {tuple(kk.shape)}, "
            f"{n_unique} distinct, audio {tuple(out_g.sequences.shape)}"
        )
    model.audio_encoder.decode = orig_decode
    model.decoder.apply_delay_pattern_mask = orig_apply

    K = 4
    T = len(greedy[0]["codes"][0])
    n_new = greedy[0]["max_new_tokens"]
    notes = (
        f"K={K} codebooks. generate() starts from one BOS column (decoder_start_token_id={PAD}) and runs "
        f"max_new_tokens steps, so the delayed sequence has 1 + max_new_tokens columns "
        f"(field 'delayed', [K, 1+max_new_tokens]). Delay pattern: codebook k holds {PAD} at columns 0..k "
        f"(BOS + k delay pads) and at the last K-1-k columns (tail pads); column j>=1 of codebook k is the "
        f"token of frame j-1-k. HF overwrites the predicted token with {PAD} wherever the pattern says pad "
        f"(also at step 0 for codebooks 1..3). After generation HF drops every {PAD}, giving 'codes' "
        f"[K, T] with T = max_new_tokens - (K - 1) = max_new_tokens - {K - 1} un-delayed frames "
        f"(observed: max_new_tokens={n_new} -> T={T}); audio = T * 640 samples at 32 kHz (50 frames/s), "
        f"so N seconds needs max_new_tokens = 50*N + 3. With guidance_scale > 1 every step runs the "
        f"decoder on a doubled batch [cond; uncond] where uncond uses encoder_hidden_states = 0 "
        f"(then projected and multiplied by the zero attention mask, i.e. zero) and a zero encoder "
        f"attention mask; logits = uncond + guidance_scale * (cond - uncond); greedy takes the argmax "
        f"of those per codebook. guidance_scale = 1.0 runs the conditional half only. The unconditional "
        f"case uses model.get_unconditional_inputs(1) (encoder_outputs zeros [1,1,d_model_text], "
        f"attention_mask zeros [1,1]) with guidance_scale overridden to 3.0."
    )
    assert T == n_new - (K - 1)
    (out / "greedy_ref.json").write_text(json.dumps({"notes": notes, "cases": greedy}, indent=1) + "\n")
    save_file({"audio.0": audio0}, str(out / "greedy_audio.safetensors"))
    g_margin = min(gen_margins)
    summary["greedy_margin"] = g_margin
    summary["T"] = T

    # ---------------- summary
    total = 0
    log("\n[files]")
    for p in sorted(out.rglob("*")):
        if p.is_file():
            sz = p.stat().st_size
            total += sz
            log(f"  {sz:>10,d}  {p.relative_to(out)}")
    log(f"  {total:>10,d}  TOTAL ({total / 2**20:.2f} MiB)")
    summary["total_bytes"] = total
    log(f"\n[margins] min greedy top1-top2 guided logit gap (kept positions, all cases) = {g_margin:.4f}")
    log(f"[margins] min RVQ nearest vs second-nearest distance gap = {q_margin:.4f}")
    if STRICT:
        assert g_margin > MIN_MARGIN and q_margin > MIN_MARGIN, "margins too small; adjust scales"
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default tests/fixtures)")
    ap.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare sha256 of every file")
    args = ap.parse_args()
    build(args.out)
    if args.check:
        with tempfile.TemporaryDirectory() as td:
            build(Path(td), verbose=False)
            a, b = tree_shas(args.out), tree_shas(Path(td))
        bad = sorted(k for k in b if a.get(k) != b[k])  # only the files this script writes
        if bad:
            print(f"[check] NOT deterministic: {bad}")
            return 1
        print(f"[check] deterministic: {len(b)} files identical (sha256)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
