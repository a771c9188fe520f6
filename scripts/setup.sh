#!/usr/bin/env bash
# Installs what tunelab needs on a fresh Debian/Ubuntu machine, skipping what is already there.
# Sourced by scripts/studio and scripts/test. Usage: setup.sh [build|studio]
set -euo pipefail
mode="${1:-build}"

sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi

# Build: a C toolchain (tokenizers' oniguruma), pkg-config and ALSA headers (cpal); a General
# MIDI SoundFont (public domain, 4 MB) to render MIDI pieces (tests render with it too);
# OpenBLAS, loaded at run time for the CPU's matrix products (≈ 2.4× candle's own GEMM here;
# tunelab runs without it, only slower).
pkgs=(build-essential pkg-config libasound2-dev csound-soundfont libopenblas0-pthread)
# The studio window (winit/glow load these at run time).
if [ "$mode" = studio ]; then
  pkgs+=(libx11-6 libxcursor1 libxrandr2 libxi6 libgl1 libegl1 libxkbcommon-x11-0 libasound2)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "tunelab setup: installing ${missing[*]}" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Rust toolchain.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "tunelab setup: installing Rust with rustup" >&2
    command -v curl >/dev/null 2>&1 || { $sudo_cmd apt-get update -qq; $sudo_cmd apt-get install -y -qq curl ca-certificates; }
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
