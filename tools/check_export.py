#!/usr/bin/env python3
"""Proves tunelab's exports load in Python and agree.

Usage: tools/check_export.py --base BASE_DIR --hf HF_EXPORT --peft PEFT_EXPORT [--full FULL_HF_EXPORT]

- the `hf` export of a LoRA run (merged) loads with transformers' from_pretrained with no missing
  or unexpected keys;
- the `peft` export loads with PEFT on top of the base model;
- both give the same logits on a fixed batch (the merge is exact), and differ from the base
  (the adapter does something);
- optionally a full fine-tune's `hf` export loads cleanly too.
Exits non-zero on any failure.
"""
import argparse
import sys

import torch
from transformers import MusicgenForConditionalGeneration
from peft import PeftModel


def load(path):
    model, info = MusicgenForConditionalGeneration.from_pretrained(path, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        sys.exit(f"{path}: loading problems: {bad}")
    return model.eval()


def logits(model, cfg):
    torch.manual_seed(0)
    k = cfg.decoder.num_codebooks
    ids = torch.tensor([[5, 17, 9, 1], [7, 3, 1, 0]])
    mask = (ids != 0).long()
    dec = torch.randint(0, cfg.decoder.vocab_size, (2 * k, 12))
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--peft", required=True)
    ap.add_argument("--full")
    a = ap.parse_args()
    base = load(a.base)
    cfg = base.config
    base_logits = logits(base, cfg)
    merged = load(a.hf)
    merged_logits = logits(merged, cfg)
    peft = PeftModel.from_pretrained(load(a.base), a.peft).eval()
    peft_logits = logits(peft, cfg)
    diff = (merged_logits - peft_logits).abs().max().item()
    moved = (merged_logits - base_logits).abs().max().item()
    print(f"hf (merged) vs peft (unmerged): max |Δlogit| = {diff:.2e}; vs base: {moved:.2e}")
    if diff > 1e-4:
        sys.exit("the merged export and the PEFT adapter disagree")
    if moved < 1e-4:
        sys.exit("the adapter does not change the model")
    if a.full:
        full = load(a.full)
        moved = (logits(full, cfg) - base_logits).abs().max().item()
        print(f"full fine-tune export loads; max |Δlogit| vs base = {moved:.2e}")
        if moved < 1e-4:
            sys.exit("the full export equals the base model")
    print("ok")


if __name__ == "__main__":
    main()
