#!/usr/bin/env python3
"""Generate the PyTorch / HF-transformers / PEFT gradient-parity references for tunelab's trainer.

Run from the repository root (or anywhere), AFTER tools/make_fixtures.py has produced
tests/fixtures/tiny-musicgen/ (this script only reads it):

    python3 tools/make_grad_fixtures.py            # (re)writes tests/fixtures/grad_ref.{safetensors,json}
    python3 tools/make_grad_fixtures.py --check    # same, then rebuilds into a temp dir and compares sha256

Deterministic and idempotent: CPU only, one thread, every random draw comes from a
torch.Generator seeded with SEED, nothing is downloaded (the model and tokenizer are loaded from
the local fixture directory). Outputs are byte-identical for the versions in tools/requirements.txt.
Only tests/fixtures/grad_ref.safetensors and tests/fixtures/grad_ref.json are written.

What is computed
================
Model: MusicgenForConditionalGeneration.from_pretrained("tests/fixtures/tiny-musicgen"), float32,
attn_implementation="eager", model.train(). Every dropout probability in the tiny config is 0
(decoder dropout / attention_dropout / activation_dropout / layerdrop, T5 dropout_rate) and the
script asserts that, and that every nn.Dropout module has p == 0, so train() == eval() numerically.
text_encoder and audio_encoder are frozen (requires_grad=False; the audio encoder is not even run
when labels are given). Trainable ("full" fine-tuning) = every parameter whose name starts with
`decoder.` (token embeddings, all layers, final layer_norm, lm_heads) or `enc_to_dec_proj.`:
44 tensors. (The sinusoidal position table is a buffer, not a parameter. Decoder linears have no
bias; enc_to_dec_proj has one.)

Batch (B=2, K=4 codebooks):
  * text: PROMPTS tokenised with tests/fixtures/tiny-musicgen/tokenizer.json (T5 post-processor
    appends </s>=1), right-padded with <pad>=0 to the longest prompt, attention_mask 1/0.
    Cross-checked against PreTrainedTokenizerFast(padding=True) from the same directory.
  * codes: torch.randint(0, 2048, [B, K, N_FRAMES=10]) from Generator(SEED).
  * labels [B, T, K] with T = N_FRAMES + K - 1 = 13: the MusicGen delay pattern WITHOUT the BOS
    column, labels[b, t, k] = codes[b, k, t - k] if 0 <= t - k < N_FRAMES else 2048. So codebook k
    has 2048 at its first k and its last K-1-k positions.
  * call: model(input_ids=text_ids, attention_mask=text_mask, labels=labels) -- nothing else.

What HF does with that call (transformers 5.23, verified by assertions below):
  * decoder_input_ids = shift_tokens_right(labels, pad=2048, start=config.decoder.decoder_start_token_id):
    labels are transposed to [B, K, T], shifted right by one step (the last label column is
    dropped), column 0 is filled with the start token, and -100s would become 2048. The decoder is
    fed this [B, K, T] = [2, 4, 13] tensor (MusicgenDecoder reshapes input_ids to
    (-1, K, seq_len), so [B, K, T] and [B*K, T] are equivalent). Saved as `decoder_input_ids`,
    captured with a forward pre-hook on model.decoder, and asserted equal to
    cat([2048]*K column, labels[:, :-1].transpose(1, 2)).
    SURPRISE: the tiny config.json (like the hub checkpoints) has no decoder.decoder_start_token_id,
    and in transformers 5.x the config object then has no such attribute, so the labels path raises
    AttributeError('MusicgenDecoderConfig' object has no attribute 'decoder_start_token_id').
    This script asserts that failure and then sets model.config.decoder.decoder_start_token_id =
    2048 (== bos == pad == codebook_size, what generation uses). This is the only change.
  * The decoder input therefore contains 2048 (BOS/pad, embedding row 2048 of each
    embed_tokens[k]) at column 0 and at the delay-pattern holes; these positions are NOT masked in
    self-attention: decoder_attention_mask is None -> pure causal mask (asserted: passing an
    all-ones decoder_attention_mask gives a bit-identical loss).
  * Text side: encoder_hidden_states = enc_to_dec_proj(T5(text)) * text_mask[..., None] (so the
    projection bias is zeroed on padded text positions, which matters for grad.enc_to_dec_proj.bias),
    and text_mask is also the cross-attention key mask.
  * Loss (MusicgenForCausalLM.forward): logits [B, K, T, V] (last T positions, here all of them);
    labels == 2048 -> -100 (ignored); for each codebook k, CrossEntropyLoss(mean) over all
    non-ignored (b, t) positions of the batch pooled together (not per sample); loss = sum_k CE_k / K.
    Here every codebook has B * N_FRAMES = 20 valid positions. `ce` = the 4 CE_k (recomputed from
    the returned logits; asserted mean(ce) == loss).
  * No classifier-free guidance in training: no unconditional batch is built, guidance_scale is
    only a generation-time concept, and HF does no condition dropout (audiocraft's trainer does).

Full fine-tune step: zero grads, loss.backward(), record grads, then
torch.nn.utils.clip_grad_norm_(trainable, 1.0) (global L2 over all 44 grads; returns the pre-clip
norm = grad_norm_total; grads scaled by 1/(norm + 1e-6) when norm > 1) and one
torch.optim.AdamW(trainable, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1).step()
(single param group: weight decay also hits biases, LayerNorm weights and embeddings). PyTorch
AdamW, step t=1:  p <- p * (1 - lr*wd);  m = (1-b1) g;  v = (1-b2) g^2;
p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), with g the CLIPPED grad.
(Note: for a single step the Adam update is ~lr * sign(g) where |g| >> eps, so `updated.*` mostly
tests sign + weight decay; entries with g == 0 exactly, e.g. unused embedding rows, only decay.)
`loss_after_step` = loss of a second forward on the same batch after the step (train mode).

LoRA: a freshly loaded model (same decoder_start_token_id fix), peft.get_peft_model with
LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=LORA_TARGET_REGEX),
a string, so PEFT re.fullmatch()es it against each module name -> exactly the 8 decoder
self-attention q/k/v/out projections (not encoder_attn, not T5). scaling = alpha / r = 2.0;
forward = W x + scaling * B(A(x)) (dropout 0 -> Identity). Only lora_A/lora_B are trainable
(asserted). PEFT's init (A kaiming-uniform, B zeros) is then OVERWRITTEN, in named_parameters()
order, with N(0, 0.1^2) draws from Generator(SEED + 1) for A and B alike, so both get non-zero
grads; these values are saved as `lora_init.<peft name>`. Same batch, same call; then clip 1.0 and
AdamW(lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1) over the 16 LoRA tensors only.
PEFT parameter names: `base_model.model.` + HF name of the wrapped Linear + `.lora_A.default.weight`
([r, in] = [4, 32]) / `.lora_B.default.weight` ([out, r] = [32, 4]); the frozen base weight
becomes `....q_proj.base_layer.weight`.

Outputs
=======
grad_ref.safetensors (all float32 unless noted):
  text_ids [2, L] i64, text_mask [2, L] i64, labels [2, T, 4] i64, decoder_input_ids [2, 4, T] i64,
  loss [] , ce [4],
  grad.<name>, updated.<name>      for <name> in SAVED_PARAMS (HF parameter names, full fine-tune),
  lora_init.<n>, lora_grad.<n>, lora_updated.<n>   for every PEFT LoRA parameter name <n>,
  lora_loss [].
grad_ref.json: loss, ce, T, L, grad_norm_total, grad_norms {name: L2 of the grad} for all 44
  trainable params, saved_params, adamw {...}, lora {...}, notes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures"
MODEL_DIR = ROOT / "tests" / "fixtures" / "tiny-musicgen"
OUT_FILES = ("grad_ref.safetensors", "grad_ref.json")

SEED = 0
PAD = 2048  # decoder pad == BOS == decoder_start == codebook_size
N_FRAMES = 10
PROMPTS = ["lofi hip hop beat with mellow piano and vinyl crackle", "80s synthwave"]

CLIP = 1.0
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
LORA_ADAMW = dict(lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
LORA_R, LORA_ALPHA, LORA_INIT_STD = 4, 8, 0.1
LORA_TARGET_REGEX = r".*decoder\.model\.decoder\.layers\.\d+\.self_attn\.(q|k|v|out)_proj"

# Full-fine-tune tensors whose grads / updated values are stored (embeddings skipped: too big).
SAVED_PARAMS = [
    "enc_to_dec_proj.weight",
    "enc_to_dec_proj.bias",
    "decoder.model.decoder.layers.0.self_attn.q_proj.weight",
    "decoder.model.decoder.layers.0.encoder_attn.v_proj.weight",
    "decoder.model.decoder.layers.1.fc1.weight",
    "decoder.model.decoder.layers.1.final_layer_norm.weight",
    "decoder.model.decoder.layer_norm.bias",
    "decoder.lm_heads.3.weight",
]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def f32(x) -> float:
    """Python float of a (float32) scalar; json writes its shortest round-trip repr."""
    return float(x.item() if torch.is_tensor(x) else x)


def tokenize(prompts: list[str]):
    """Right-pad with <pad>=0 (T5 / HF padding=True convention); mask 1 for real tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    ids = [tok.encode(p, add_special_tokens=True).ids for p in prompts]
    lmax = max(len(x) for x in ids)
    text_ids = torch.zeros(len(ids), lmax, dtype=torch.long)
    text_mask = torch.zeros(len(ids), lmax, dtype=torch.long)
    for i, x in enumerate(ids):
        text_ids[i, : len(x)] = torch.tensor(x)
        text_mask[i, : len(x)] = 1
    # cross-check with the HF tokenizer wrapper (what a user would call)
    hf = PreTrainedTokenizerFast.from_pretrained(str(MODEL_DIR))(prompts, padding=True, return_tensors="pt")
    assert torch.equal(hf["input_ids"], text_ids) and torch.equal(hf["attention_mask"], text_mask)
    assert len(set(len(x) for x in ids)) == len(ids), "prompts must have different lengths"
    return text_ids, text_mask


def delay_labels(codes: torch.Tensor) -> torch.Tensor:
    """codes [B, K, N] -> labels [B, N+K-1, K]; codebook k delayed by k, holes = PAD (no BOS column)."""
    b, k, n = codes.shape
    labels = torch.full((b, n + k - 1, k), PAD, dtype=torch.long)
    for cb in range(k):
        labels[:, cb : cb + n, cb] = codes[:, cb]
    return labels


def load_model():
    from transformers import MusicgenForConditionalGeneration

    model = MusicgenForConditionalGeneration.from_pretrained(
        str(MODEL_DIR), dtype=torch.float32, attn_implementation="eager"
    )
    assert model.dtype == torch.float32
    for cfg in (model.config, model.decoder.config, model.text_encoder.config):
        assert cfg._attn_implementation == "eager", cfg._attn_implementation
    dc, tc = model.config.decoder, model.config.text_encoder
    assert dc.dropout == dc.attention_dropout == dc.activation_dropout == dc.layerdrop == 0.0
    assert tc.dropout_rate == 0.0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Dropout):
            assert mod.p == 0.0, name
    assert dc.pad_token_id == PAD and dc.bos_token_id == PAD and dc.num_codebooks == 4
    # transformers 5.x: the labels path reads config.decoder.decoder_start_token_id, which the
    # checkpoint does not define -> AttributeError. Verify, then set it (see module docstring).
    try:
        getattr(model.config.decoder, "decoder_start_token_id")
        raise AssertionError("config.decoder.decoder_start_token_id now exists; re-check the docstring")
    except AttributeError:
        pass
    model.config.decoder.decoder_start_token_id = PAD
    assert model.decoder.config.decoder_start_token_id == PAD  # same config object
    model.train()
    model.text_encoder.requires_grad_(False)
    model.audio_encoder.requires_grad_(False)
    return model


def per_codebook_ce(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """logits [B*K, T, V] (as HF returns them) -> CE_k [K], mean over labels != PAD."""
    b, t, _ = labels.shape
    lg = logits.reshape(b, k, t, -1)
    tgt = labels.masked_fill(labels == PAD, -100)
    return torch.stack(
        [torch.nn.functional.cross_entropy(lg[:, c].reshape(-1, lg.shape[-1]), tgt[..., c].reshape(-1)) for c in range(k)]
    )


class CaptureDecoderInput:
    """Forward pre-hook on model.decoder recording the input_ids HF feeds it."""

    def __init__(self, module):
        self.ids = None
        self.handle = module.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, mod, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.ids = ids.detach().clone()

    def remove(self):
        self.handle.remove()


def l2(t: torch.Tensor) -> float:
    return f32(torch.linalg.vector_norm(t.double()))


# --------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------
def build(out: Path, verbose: bool = True) -> dict:
    from transformers.models.musicgen.modeling_musicgen import shift_tokens_right

    log = print if verbose else (lambda *a, **k: None)
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    K = 4

    # ---------------- batch
    text_ids, text_mask = tokenize(PROMPTS)
    codes = torch.randint(0, PAD, (len(PROMPTS), K, N_FRAMES), generator=gen)
    labels = delay_labels(codes)
    B, T, _ = labels.shape
    L = text_ids.shape[1]
    assert T == N_FRAMES + K - 1
    for c in range(K):  # layout check: k leading and K-1-k trailing holes
        col = labels[:, :, c]
        assert (col[:, :c] == PAD).all() and (col[:, T - (K - 1 - c) :] == PAD).all()
        assert (col[:, c : T - (K - 1 - c)] < PAD).all()
    log(f"[batch] text_ids {tuple(text_ids.shape)} lengths {text_mask.sum(1).tolist()}  labels {tuple(labels.shape)} (T={T})")

    # ---------------- full fine-tune: forward / backward
    model = load_model()
    trainable = {n: p for n, p in model.named_parameters() if n.startswith(("decoder.", "enc_to_dec_proj."))}
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)
    assert len(trainable) == 44 and all(n in trainable for n in SAVED_PARAMS)

    cap = CaptureDecoderInput(model.decoder)
    outp = model(input_ids=text_ids, attention_mask=text_mask, labels=labels)
    cap.remove()
    loss = outp.loss
    dec_in = cap.ids
    expect = torch.cat([torch.full((B, K, 1), PAD, dtype=torch.long), labels[:, :-1].transpose(1, 2)], dim=2)
    assert dec_in.shape == (B, K, T) and torch.equal(dec_in, expect)
    assert torch.equal(dec_in, shift_tokens_right(labels, PAD, PAD))
    ce = per_codebook_ce(outp.logits.detach(), labels, K)
    assert torch.allclose(ce.mean(), loss.detach(), rtol=1e-6, atol=0), (ce.mean(), loss)
    log(f"[full] loss={loss.item():.6f} ce={[round(x, 5) for x in ce.tolist()]}")

    # sanity (no grad): an explicit all-ones decoder mask changes nothing -> HF uses only the causal mask
    with torch.no_grad():
        l_ones = model(
            input_ids=text_ids, attention_mask=text_mask, labels=labels, decoder_attention_mask=torch.ones(B, T, dtype=torch.long)
        ).loss
    assert torch.equal(l_ones, loss.detach()), (l_ones, loss)

    model.zero_grad(set_to_none=True)
    loss.backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == (n in trainable), n
    grads = {n: p.grad.detach().clone() for n, p in trainable.items()}
    grad_norms = {n: l2(g) for n, g in grads.items()}
    params = list(trainable.values())
    total = torch.nn.utils.clip_grad_norm_(params, CLIP)
    manual_total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
    assert torch.allclose(total, manual_total, rtol=1e-6)
    opt = torch.optim.AdamW(params, **ADAMW)
    opt.step()
    with torch.no_grad():
        loss_after = model(input_ids=text_ids, attention_mask=text_mask, labels=labels).loss
    log(f"[full] grad_norm_total={total.item():.6f} (clipped to {CLIP})  loss_after_step={loss_after.item():.6f}")

    tensors["text_ids"] = text_ids
    tensors["text_mask"] = text_mask
    tensors["labels"] = labels
    tensors["decoder_input_ids"] = dec_in
    tensors["loss"] = loss.detach().clone()
    tensors["ce"] = ce.contiguous()
    for n in SAVED_PARAMS:
        tensors[f"grad.{n}"] = grads[n].contiguous()
        tensors[f"updated.{n}"] = trainable[n].detach().clone().contiguous()
    full_json = dict(
        loss=f32(loss),
        ce=[f32(x) for x in ce],
        grad_norm_total=f32(total),
        grad_norms=grad_norms,
        adamw=dict(
            lr=ADAMW["lr"],
            betas=list(ADAMW["betas"]),
            eps=ADAMW["eps"],
            weight_decay=ADAMW["weight_decay"],
            clip=CLIP,
            loss_after_step=f32(loss_after),
        ),
    )
    del model, opt, outp

    # ---------------- LoRA
    from peft import LoraConfig, get_peft_model

    base = load_model()
    lcfg = LoraConfig(
        r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, bias="none", target_modules=LORA_TARGET_REGEX
    )
    pm = get_peft_model(base, lcfg)
    pm.train()
    lora = {n: p for n, p in pm.named_parameters() if ".lora_A." in n or ".lora_B." in n}
    assert len(lora) == 2 * 4 * 2, sorted(lora)
    for n, p in pm.named_parameters():
        assert p.requires_grad == (n in lora), n
    lgen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for n, p in lora.items():
            p.copy_(torch.randn(p.shape, generator=lgen) * LORA_INIT_STD)
            tensors[f"lora_init.{n}"] = p.detach().clone().contiguous()
    lnames = list(lora)
    scaling = pm.base_model.model.decoder.model.decoder.layers[0].self_attn.q_proj.scaling["default"]
    assert scaling == LORA_ALPHA / LORA_R

    cap = CaptureDecoderInput(pm.base_model.model.decoder)
    lout = pm(input_ids=text_ids, attention_mask=text_mask, labels=labels)
    cap.remove()
    assert torch.equal(cap.ids, dec_in)
    lloss = lout.loss
    pm.zero_grad(set_to_none=True)
    lloss.backward()
    for n, p in pm.named_parameters():
        assert (p.grad is not None) == (n in lora), n
    lgrads = {n: p.grad.detach().clone() for n, p in lora.items()}
    assert all(g.abs().max() > 0 for g in lgrads.values())
    lparams = list(lora.values())
    ltotal = torch.nn.utils.clip_grad_norm_(lparams, CLIP)
    torch.optim.AdamW(lparams, **LORA_ADAMW).step()
    with torch.no_grad():
        lloss_after = pm(input_ids=text_ids, attention_mask=text_mask, labels=labels).loss
    log(f"[lora] loss={lloss.item():.6f} grad_norm_total={ltotal.item():.6f} loss_after_step={lloss_after.item():.6f}")
    tensors["lora_loss"] = lloss.detach().clone()
    for n in lnames:
        tensors[f"lora_grad.{n}"] = lgrads[n].contiguous()
        tensors[f"lora_updated.{n}"] = lora[n].detach().clone().contiguous()
    lora_json = dict(
        r=LORA_R,
        alpha=LORA_ALPHA,
        scaling=float(scaling),
        dropout=0.0,
        target_modules_regex=LORA_TARGET_REGEX,
        init_std=LORA_INIT_STD,
        names=lnames,
        loss=f32(lloss),
        grad_norm_total=f32(ltotal),
        grad_norms={n: l2(g) for n, g in lgrads.items()},
        adamw=dict(
            lr=LORA_ADAMW["lr"],
            betas=list(LORA_ADAMW["betas"]),
            eps=LORA_ADAMW["eps"],
            weight_decay=LORA_ADAMW["weight_decay"],
            clip=CLIP,
        ),
        loss_after_step=f32(lloss_after),
    )

    # ---------------- write
    for n, t in tensors.items():
        assert t.dtype in (torch.float32, torch.int64), (n, t.dtype)
    save_file(tensors, str(out / "grad_ref.safetensors"))
    notes = (
        "Generated by tools/make_grad_fixtures.py (see its docstring for every detail). "
        f"Batch: B=2 prompts {PROMPTS!r}, right-padded T5 ids (pad 0) + mask; labels [B,T,K] = delay "
        f"pattern of seeded codes [B,K,{N_FRAMES}] without BOS column, holes 2048, T={T}. "
        "Call: model(input_ids, attention_mask, labels) in train mode (all dropouts 0), eager attention, f32. "
        "HF sets decoder_input_ids = shift_tokens_right(labels, pad=2048, start=2048) -> [B,K,T] "
        "(column 0 = 2048, then labels[:, :-1]); requires config.decoder.decoder_start_token_id = 2048 "
        "to be set by hand (absent from the config; AttributeError otherwise). Decoder self-attention is "
        "causal only (2048 inputs are attended to); cross-attention keys masked by text mask and "
        "encoder_hidden_states = enc_to_dec_proj(t5) * mask. Loss = mean_k CE_k, CE_k = mean over labels "
        "!= 2048 pooled over the batch. No CFG / unconditional path in training. "
        "Full: trainable = decoder.* + enc_to_dec_proj.* (44 tensors); grad_norm_total is the pre-clip "
        "global L2 norm returned by clip_grad_norm_(max_norm=1.0) (grads then scaled by 1/(norm+1e-6)); "
        "one torch AdamW step, single param group (decay on everything). "
        "LoRA: PEFT names base_model.model.<hf module>.lora_{A,B}.default.weight, A [r,in], B [out,r], "
        "forward W x + (alpha/r) B A x; PEFT init overwritten with N(0,0.1^2) from Generator(seed+1) in "
        "names order (lora_init.*); only LoRA params trainable. grad_norms are L2 norms of the unclipped grads."
    )
    js = dict(T=T, L=L, saved_params=SAVED_PARAMS, **full_json, lora=lora_json, notes=notes)
    (out / "grad_ref.json").write_text(json.dumps(js, indent=1) + "\n")

    total_bytes = 0
    log("[files]")
    for f in OUT_FILES:
        sz = (out / f).stat().st_size
        total_bytes += sz
        log(f"  {sz:>10,d}  {f}")
    log(f"  {total_bytes:>10,d}  TOTAL")
    assert total_bytes < 1.5e6
    return dict(T=T, loss=f32(loss), lora_loss=f32(lloss), bytes=total_bytes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default tests/fixtures)")
    ap.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare sha256 of the outputs")
    args = ap.parse_args()
    build(args.out)
    if args.check:
        with tempfile.TemporaryDirectory() as td:
            build(Path(td), verbose=False)
            bad = [f for f in OUT_FILES if file_sha(args.out / f) != file_sha(Path(td) / f)]
        if bad:
            print(f"[check] NOT deterministic: {bad}")
            return 1
        print(f"[check] deterministic: {len(OUT_FILES)} files identical (sha256)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
