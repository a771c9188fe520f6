#!/usr/bin/env bash
# Re-makes the shipped demo model (assets/demo/models/classical-small): a `small` Music
# Transformer trained from scratch by tunelab on the demo's Bach chorales, exported in f16 from
# its best validation checkpoint. About 30 min on 2 cores (250 steps × 8 × 512 events).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/tunelab-demo-model}"
cargo build --release --quiet
bin=./target/release/tunelab
rm -rf "$work" && mkdir -p "$work"
"$bin" dataset import assets/demo/midi/classical --out "$work/classical"
"$bin" train --family midi --mode scratch --preset small --dataset "$work/classical" \
  --run "$work/run" --steps 250 --batch-size 8 --warmup 25 --lr 1e-3 --eval-every 25 \
  --save-every 25 --seed 0
"$bin" export "$work/run" --format hf --checkpoint best --f16 \
  --out assets/demo/models/classical-small
