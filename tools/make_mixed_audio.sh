#!/usr/bin/env bash
# Makes tests/fixtures/mixed-audio: a small folder of real encoded audio in mixed formats, rates,
# channel counts and bit depths, plus bad inputs, for tests/import_formats.rs.
#
# Source music: two MIDI excerpts from the demo corpus (assets/demo/midi), rendered to 16-bit
# mono 44.1 kHz WAV by tunelab's own SoundFont renderer (src/generate/soundfont.rs, through the
# ignored helper test `render_excerpts` in tests/import_formats.rs) with TimGM6mb.sf2 (Debian's
# timgm6mb-soundfont), then cut to an exact length with sox and converted by sox:
#
#   chorale  Bach, "Meine Seel' erhebt den Herren" (BWV 10.7), first 2.2 s of notes, piano,
#            cut to exactly 3.000 s. One master, six encodings (the content tests compare them):
#     chorale-24bit-44k-stereo.flac  FLAC 24-bit, 44.1 kHz, stereo, 3.0 s (the reference: lossless,
#                                    both channels the master) + .json audiocraft sidecar
#     chorale-16bit-44k-stereo.wav   PCM 16-bit, 44.1 kHz, stereo, first 0.5 s only (size)
#     chorale-f32-48k.wav            IEEE float 32-bit, 48 kHz, mono, first 0.5 s only (size)
#     chorale-48k-stereo.mp3         MP3 (LAME VBR -V4, ~96 kbps, with its Xing/LAME gapless
#                                    header), 48 kHz, stereo, 3.0 s
#     chorale-22k-mono.ogg           Ogg Vorbis q1 (~35 kbps), 22.05 kHz, mono, 3.0 s
#     chorale-8bit-11k.wav           PCM unsigned 8-bit (dithered), 11.025 kHz, mono, 3.0 s
#   The uncompressed 16-bit and float WAVs are 0.5 s cuts because at 3 s they alone would be
#   1.1 MB; the tests compare every version with the FLAC and the 16-bit WAV with the FLAC.
#   Files at another rate were resampled by sox (rate -v, linear phase). The 16-bit WAV
#   and the MP3 are panned (left 1.25 x, right 0.75 x the master), so their mono mix is the
#   master; a decoder that kept one channel would be caught.
#
#   reel     "The Fairy Dance" (Ryan's Mammoth Collection), first 2.5 s of notes, flute (GM 73),
#            cut to exactly 3.000 s:
#     reel-24k-mono.mp3              MPEG-2 layer III (LAME VBR -V7), 24 kHz, mono + .txt caption
#     reel-badmeta.ogg               Ogg Vorbis q0, 44.1 kHz, mono; its .json sidecar is not JSON
#
#   Bad inputs (each must be listed in the import report with its reason; the rest imports):
#     empty.wav                     0 bytes
#     truncated.mp3                 the first 400 bytes of chorale-48k-stereo.mp3
#     notes.ogg                     a text file with an audio extension
#     reel-badmeta.json             invalid JSON beside a good file (that file is reported)
#   README.md                       not audio: ignored by import
#
# Deterministic: the renderer is deterministic, sox runs with -R (repeatable dither), LAME and
# libvorbis are deterministic for the same input. Re-running rewrites the same files (byte for
# byte with sox 14.4.2 and Debian's LAME/libvorbis/libFLAC), about 364 KB in all. Needs sox with
# mp3/ogg/flac support and the SoundFont
# (sudo apt-get install sox libsox-fmt-base libsox-fmt-mp3 timgm6mb-soundfont).
#
# Usage: tools/make_mixed_audio.sh            (from anywhere; builds the test binary if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures/mixed-audio
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TUNELAB_SOUNDFONT="${TUNELAB_SOUNDFONT:-/usr/share/sounds/sf2/TimGM6mb.sf2}"

# 1. Render the two excerpts with tunelab (out.wav|piece.mid|GM program|seconds of notes|rate).
TUNELAB_RENDER="$work/chorale-master.wav|assets/demo/midi/classical/bwv10-7-meine-seel-erhebt-den-herren.mid|0|2.2|44100
$work/reel-master.wav|assets/demo/midi/folk/ryan-fairydancereel.mid|73|2.5|44100" \
  nice cargo test --quiet --test import_formats -- --ignored --exact render_excerpts --nocapture

# 2. Exact lengths: 3.000 s with a 50 ms fade-out (132 300 samples at 44.1 kHz).
sox -R "$work/chorale-master.wav" "$work/chorale.wav" trim 0 3.0 fade t 0 3.0 0.05
sox -R "$work/reel-master.wav" "$work/reel.wav" trim 0 3.0 fade t 0 3.0 0.05

rm -rf "$out"
mkdir -p "$out"
pan="remix 1v1.25 1v0.75"
c="$work/chorale.wav"
r="$work/reel.wav"
# -D (no dither) where only the pan changes the samples: the mono mix stays the master to 1 LSB.
sox -R "$c" -b 24 "$out/chorale-24bit-44k-stereo.flac" remix 1 1
# -D (no dither): only the pan changes the samples, so the mono mix stays the master to 1 LSB.
sox -R -D "$c" -b 16 "$out/chorale-16bit-44k-stereo.wav" trim 0 0.5 $pan
sox -R "$c" -e floating-point -b 32 "$out/chorale-f32-48k.wav" trim 0 0.5 rate -v 48000
sox -R "$c" -C -4 "$out/chorale-48k-stereo.mp3" $pan rate -v 48000
sox -R "$c" -C 1 "$out/chorale-22k-mono.ogg" rate -v 22050
sox -R "$c" -e unsigned-integer -b 8 "$out/chorale-8bit-11k.wav" rate -v 11025
sox -R "$r" -C -7 "$out/reel-24k-mono.mp3" rate -v 24000
sox -R "$r" -C 0 "$out/reel-badmeta.ogg"

# 3. Metadata: an audiocraft sidecar (fields from the corpus's own sidecar) and a caption.
cat >"$out/chorale-24bit-44k-stereo.json" <<'EOF'
{
  "title": "Meine Seel' erhebt den Herren",
  "artist": "Johann Sebastian Bach",
  "genre": "classical",
  "bpm": 90,
  "key": "G minor",
  "description": "Bach chorale in G minor on piano, 4/4, 90 bpm"
}
EOF
printf 'a lively fiddle reel played on a flute\n' >"$out/reel-24k-mono.txt"
printf '{"title": "The Fairy Dance", "bpm": 100,\n' >"$out/reel-badmeta.json"

# 4. Bad inputs.
: >"$out/empty.wav"
head -c 400 "$out/chorale-48k-stereo.mp3" >"$out/truncated.mp3"
printf 'These are not Vorbis packets, just notes about the recording session.\n' >"$out/notes.ogg"
cat >"$out/README.md" <<'EOF'
Made by `tools/make_mixed_audio.sh` (see its header for what each file is); used by
`tests/import_formats.rs`. Do not edit by hand: re-run the script.
EOF

ls -l "$out"
du -sb "$out"
