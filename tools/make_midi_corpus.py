#!/usr/bin/env python3
"""Build tunelab's MIDI demo corpus from public-domain collections in music21's bundled corpus.

    pip install 'music21==10.5.1'
    python3 tools/make_midi_corpus.py --out assets/demo/midi            # the shipped defaults
    python3 tools/make_midi_corpus.py --out /tmp/m --classical 20 --folk 40 --seed 7

Output layout (everything under --out is rewritten; stale *.mid / *.json in the two
collection folders are deleted first, nothing else is touched):

  classical/<slug>.mid + <slug>.json   J. S. Bach four-part chorales (Riemenschneider list)
  folk/<slug>.mid + <slug>.json        fiddle tunes: O'Neill's "Music of Ireland" (1903,
                                       1850 melodies) and Ryan's Mammoth Collection (1883)
  LICENSES.md                          origin and licence of every collection
  index.json                           one line of metadata per piece, plus the run settings

Sources inside music21's corpus (paths relative to music21/corpus/):
  classical  bach/bwv<N>.mxl           via corpus.chorales.ChoraleListRKBWV (Riemenschneider 1-371,
                                       deduplicated by BWV file)
  folk       oneills1850/*.abc         multi-tune ABC files, tunes addressed by X: number
                                       (the same X: appears in more than one file for a few
                                       ranges; the first file in sorted order wins)
             ryansMammoth/*.abc        one tune per file (byte-identical duplicates dropped)
  The Essen folksong collection (essenFolksong/) is deliberately NOT used: music21 ships it
  with permission for non-commercial use only.

Selection is deterministic: candidates are sorted, shuffled with random.Random(seed), and
rendered in that order until N pieces per collection pass the filters (parse + MIDI export
succeed, 10 s <= duration <= 300 s). Output files are written in sorted order; the MIDI bytes
depend only on the music21 version, the seed and N.

Rendering: every part is set to music21's Piano (General MIDI program 0), all existing tempo
marks are replaced by one MetronomeMark at the start (the score's own mark when it is
plausible, otherwise a per-collection default, see choose_tempo), chord symbols are dropped
(MIDI export would sound them; music21's ABC reader also turns "f"/"p" dynamics into F and
P chord symbols). Repeats are expanded by music21's MIDI writer (it always does that); for the
ABC tunes, a ':|' with no '|:' is first given an explicit start at the previous section
boundary (ABC convention; music21 would go back to the top of the tune), and an expansion is
only kept if no bar plays more than twice -- otherwise, or if music21 cannot expand the
repeats, the tune is exported once as written (recorded in the sidecar's notes.repeats).
Pickup (anacrusis) bars are kept as written: the first note is at time 0, no padding to a
full bar. Durations are measured on the exported MIDI (to the last event; music21's one
quarter of trailing silence before end-of-track is not counted).
"""
from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
import sys
import time
import unicodedata
from pathlib import Path

DEFAULT_CLASSICAL = 250
DEFAULT_FOLK = 500
DEFAULT_SEED = 20240601
MIN_SECONDS = 10.0
MAX_SECONDS = 300.0

CHORALE_DEFAULT_QBPM = 90  # quarter notes per minute
CHORALE_QBPM_RANGE = (50, 130)  # accept the score's own (Finale playback) tempo inside this
FOLK_QBPM_RANGE = (40, 240)  # accept an ABC Q: field inside this (as music21 reads it)

LICENCE_CHORALE = ("Music: public domain (J. S. Bach, 1685-1750). Encoding: music21 corpus "
                   "(bach/, MusicXML by Margaret Greentree, jsbchorales.net), distributed by "
                   "music21 with the encoders' permission; see LICENSES.md.")
LICENCE_ONEILL = ("Music: public domain (traditional; published in F. O'Neill, Music of Ireland, "
                  "Chicago 1903). Encoding: volunteer ABC transcription distributed in the music21 "
                  "corpus (oneills1850/); see LICENSES.md.")
LICENCE_RYAN = ("Music: public domain (traditional; published in Ryan's Mammoth Collection, "
                "Boston: Elias Howe 1883). Encoding: volunteer ABC transcription distributed in the "
                "music21 corpus (ryansMammoth/); see LICENSES.md.")

# Main pulse tempo (pulses per minute) by dance type for the fiddle tunes. The pulse is the
# dotted quarter in compound meters, the half note in 4/4, C, C| and 2/2 (fiddle tunes in
# those meters are written in eighths), the quarter in 2/4 (written in sixteenths) and 3/4.
TYPE_PULSE_BPM = {
    "reel": 100, "hornpipe": 80, "clog": 80, "jig": 108, "double jig": 108,
    "single jig": 108, "slip jig": 108, "slide": 120, "strathspey": 62,
    "highland fling": 66, "fling": 66, "walkaround": 100, "waltz": 150,
    "march": 100, "polka": 100,
}
TYPE_ALIASES = {"slipjig": "slip jig", "doublejig": "double jig", "highlandfling": "highland fling"}
# O'Neill's airs carry a tempo word in an N: field; pulse tempo as above.
TEMPO_WORDS = [  # checked in order
    ("very slow", 48), ("slow", 60), ("plaintiv", 60), ("tender", 60), ("expression", 63),
    ("feeling", 63), ("moderat", 80), ("graceful", 80), ("cheerful", 92), ("brisk", 104),
    ("spirit", 100), ("animated", 100), ("lively", 104), ("quick", 108),
]
AIR_PULSE_BPM = 72
METER_FALLBACK_TYPE = {"6/8": "jig", "9/8": "slip jig", "12/8": "slide", "2/2": "reel",
                       "2/4": "march", "4/4": "hornpipe"}


# ----------------------------------------------------------------------------------------
# helpers

@functools.lru_cache(maxsize=1)
def corpus_root() -> Path:
    from music21 import corpus
    return Path(corpus.getWork("bach/bwv1.6")).parent.parent


def ascii_slug(text: str, maxlen: int = 48) -> str:
    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    t = re.sub(r"[^A-Za-z0-9]+", "-", t.lower()).strip("-")
    if len(t) > maxlen:
        t = t[:maxlen].rsplit("-", 1)[0] or t[:maxlen]
    return t or "untitled"


SMALL_WORDS = {"a", "an", "and", "at", "by", "for", "in", "of", "on", "or", "the", "to", "with",
               "na", "an", "ar", "le", "de"}


def clean_title(raw: str) -> str:
    t = raw.strip().strip('"').strip()
    t = re.sub(r"\s+", " ", t).rstrip(".").strip()
    t = re.sub(r"(?<=[a-z]):(?=[a-z])", "", t)  # stray ':' typo ("Golden Gat:e")
    # Ryan's titles carry the dance type: "The Devil Among the Tailors -- Reel" (kept in tune_type)
    t2 = re.sub(r"\s*-+\s*(reel|hornpipe|jig|double jig|slip ?jig|clog|lancashire clog|"
                r"strathspey|highland fling|fling|walk ?around|waltz|march|polka)\.?$", "", t,
                flags=re.I)
    t = t2 or t
    m = re.match(r"^(.*),\s*(The|A|An)$", t, re.I)  # "Bag of Meal, The" -> "The Bag of Meal"
    if m:
        t = f"{m.group(2)} {m.group(1).rstrip('.').strip()}"
    letters = [c for c in t if c.isalpha()]
    if letters and sum(c.isupper() for c in letters) / len(letters) > 0.8:  # ALL CAPS
        words = []
        for i, w in enumerate(t.lower().split(" ")):
            if i and w in SMALL_WORDS:
                words.append(w)
                continue
            w = w[:1].upper() + w[1:]
            w = re.sub(r"^(O'|Mc|Mac(?=[a-z]{3}))([a-z])", lambda mm: mm.group(1) + mm.group(2).upper(), w)
            words.append(w)
        t = " ".join(words)
    return t[:1].upper() + t[1:] if t else "Untitled"


def norm_type(raw: str | None) -> str | None:
    if not raw:
        return None
    t = re.sub(r"\s+", " ", raw.strip().lower()).rstrip(".")
    if not t:
        return None
    t = TYPE_ALIASES.get(t.replace(" ", ""), t)
    return t


def scan_abc(path: Path) -> list[dict]:
    """Split an ABC file into tunes: X number, first T:, R:, N: lines, raw text."""
    tunes, cur = [], None
    for line in path.read_text(encoding="latin-1").splitlines():
        m = re.match(r"^X:\s*(\d+)", line)
        if m:
            cur = {"x": int(m.group(1)), "titles": [], "rhythm": None, "notes": [], "lines": []}
            tunes.append(cur)
        if cur is None:
            continue
        cur["lines"].append(line)
        if line.startswith("T:"):
            cur["titles"].append(line[2:].strip())
        elif line.startswith("R:") and cur["rhythm"] is None:
            cur["rhythm"] = line[2:].strip()
        elif line.startswith("N:"):
            cur["notes"].append(line[2:].strip())
    for t in tunes:
        t["text"] = "\n".join(t.pop("lines"))
    return tunes


# ----------------------------------------------------------------------------------------
# candidate lists (cheap: no music21 parsing)

def chorale_candidates() -> list[dict]:
    from music21 import corpus
    lst = corpus.chorales.ChoraleListRKBWV()
    out, seen = [], set()
    for rn in sorted(lst.byRiemenschneider):
        info = lst.byRiemenschneider[rn]
        bwv = str(info["bwv"])
        if bwv in seen:
            continue
        try:
            found = corpus.getWork("bach/bwv" + bwv)
        except Exception:  # not in this corpus build
            continue
        # getWork matches prefixes ('bwv245.3' also finds bwv245.37) and several formats
        # (bwv281.krn + bwv281.mxl): take the exact stem, MusicXML first.
        found = [Path(f) for f in (found if isinstance(found, list) else [found])]
        exact = sorted((f for f in found if f.stem == f"bwv{bwv}"),
                       key=lambda f: {".mxl": 0, ".xml": 1, ".musicxml": 1}.get(f.suffix, 9))
        if not exact and len(found) == 1:  # e.g. list says 18.5-l, file is bwv18.5-lz.mxl
            exact = found
        if not exact:
            continue
        rel = exact[0].relative_to(corpus_root()).as_posix()
        seen.add(bwv)
        out.append({
            "collection": "classical", "book": "bach",
            "corpus_path": rel, "number": None, "riemenschneider": rn, "bwv": bwv,
            "title": info["title"], "sort_key": (rn,),
            "slug": ascii_slug(f"bwv{bwv.replace('.', '-')}-{info['title']}", 56),
        })
    return out


def folk_candidates(root: Path) -> list[dict]:
    out = []
    seen_x = set()
    for f in sorted((root / "oneills1850").glob("*.abc")):
        for t in scan_abc(f):
            if t["x"] in seen_x:
                continue
            seen_x.add(t["x"])
            title = clean_title(t["titles"][0]) if t["titles"] else f"O'Neill's {t['x']}"
            out.append({
                "collection": "folk", "book": "oneill",
                "corpus_path": f"oneills1850/{f.name}", "number": t["x"], "title": title,
                "rhythm": norm_type(t["rhythm"]), "tempo_words": " ".join(t["notes"]),
                "sort_key": (0, t["x"], ""),
                "slug": ascii_slug(f"oneill-{t['x']:04d}-{title}", 56),
            })
    seen_hash = set()
    for f in sorted((root / "ryansMammoth").glob("*.abc")):
        tunes = scan_abc(f)
        if not tunes:
            continue
        t = tunes[0]
        h = hashlib.sha1(re.sub(r"\s+", "", f.read_text(encoding="latin-1")).encode()).hexdigest()
        if h in seen_hash:
            continue
        seen_hash.add(h)
        title = clean_title(t["titles"][0]) if t["titles"] else f.stem
        out.append({
            "collection": "folk", "book": "ryan",
            "corpus_path": f"ryansMammoth/{f.name}", "number": t["x"] if len(tunes) > 1 else None,
            "title": title, "rhythm": norm_type(t["rhythm"]), "tempo_words": " ".join(t["notes"]),
            "sort_key": (1, 0, f.name),
            "slug": ascii_slug(f"ryan-{f.stem}", 56),
        })
    return out


# ----------------------------------------------------------------------------------------
# rendering (runs in worker processes)

def meter_string(ts) -> str:
    return ts.ratioString if ts is not None else "4/4"


def pulse_of(ts):
    """Main pulse as a music21 Duration: half in 4/4 & 2/2, else music21's beat duration."""
    from music21 import duration
    if ts is None:
        return duration.Duration(1.0)
    if ts.ratioString in ("4/4", "2/2"):
        return duration.Duration(2.0)
    return ts.beatDuration


def choose_tempo(cand: dict, score, ts) -> tuple[float, object, str, str | None]:
    """Return (pulse_bpm, pulse Duration, tempo_source, tune_type)."""
    from music21 import duration, tempo
    marks = list(score.recurse().getElementsByClass(tempo.MetronomeMark))
    own_q = None
    for mm in marks:
        try:
            q = mm.getQuarterBPM()
        except Exception:
            q = None
        if q:
            own_q = float(q)
            break
    if cand["collection"] == "classical":
        pulse = duration.Duration(1.0)
        lo, hi = CHORALE_QBPM_RANGE
        if own_q and lo <= own_q <= hi:
            return round(own_q), pulse, "score (encoder's playback tempo)", "chorale"
        return CHORALE_DEFAULT_QBPM, pulse, "default", "chorale"

    meter = meter_string(ts)
    pulse = pulse_of(ts)
    ttype = cand.get("rhythm")
    lo, hi = FOLK_QBPM_RANGE
    if own_q and lo <= own_q <= hi:
        return round(own_q / pulse.quarterLength), pulse, "score (ABC Q: field)", ttype
    if ttype in TYPE_PULSE_BPM:
        bpm = TYPE_PULSE_BPM[ttype]
        if ttype == "waltz" or (meter == "3/4" and ttype not in ("air",)):
            pulse = duration.Duration(1.0)
        return bpm, pulse, f"default for {ttype}", ttype
    words = (cand.get("tempo_words") or "").lower()
    for w, bpm in TEMPO_WORDS:
        if w in words:
            # O'Neill marks airs with slow/moderate words; livelier words also head marches etc.
            return bpm, pulse, f"default for tempo word '{w}'", ttype or ("air" if bpm <= 80 else None)
    if ttype == "air":
        return AIR_PULSE_BPM, pulse, "default for air", ttype
    guess = METER_FALLBACK_TYPE.get(meter)
    if guess:
        return TYPE_PULSE_BPM[guess], pulse, f"default for {meter} ({guess} tempo)", ttype
    return 100, pulse, "default", ttype


def key_name(score, collection: str) -> tuple[str, str]:
    from music21 import key
    ks = score.recurse().getElementsByClass(key.KeySignature).first()
    if collection == "folk" and isinstance(ks, key.Key) and ks.mode:
        return f"{ks.tonic.name.replace('-', 'b')} {ks.mode}", "key signature (ABC K: field)"
    k = score.analyze("key")
    return f"{k.tonic.name.replace('-', 'b')} {k.mode}", "music21 key analysis (Krumhansl-Schmuckler)"


def unshare_objects(score) -> None:
    """music21's ABC reader sometimes puts the *same* TimeSignature/Key object into two
    measures (after an irregular bar); MIDI export then fails. Give each site its own copy."""
    import copy
    from music21 import clef, key, meter, stream
    seen = set()
    for m in score.recurse().getElementsByClass(stream.Measure):
        for el in list(m.getElementsByClass((meter.TimeSignature, key.KeySignature, clef.Clef))):
            if id(el) in seen:
                m.replace(el, copy.deepcopy(el))
            else:
                seen.add(id(el))


DOUBLE_BARS = {"double", "final", "light-light", "light-heavy", "heavy-light", "heavy-heavy"}


def fix_abc_repeat_starts(score) -> int:
    """ABC convention: a ':|' with no matching '|:' repeats from the previous section boundary
    (the previous ':|', or a double bar), not from the start of the tune, which is what music21
    assumes (so 'A :| B :| C :|' ballooned). Make those implicit starts explicit. A boundary that
    falls inside a 1st/2nd-ending bracket moves past it. Returns the number of starts added."""
    from music21 import bar, spanner, stream
    added = 0
    in_bracket = set()
    for rb in score.spannerBundle.getByClass(spanner.RepeatBracket):
        in_bracket.update(id(x) for x in rb.getSpannedElements())
    for part in score.parts:
        ms = list(part.getElementsByClass(stream.Measure))
        boundary = None  # index of the measure that starts the current section (None: tune start)
        explicit = False
        for i, m in enumerate(ms):
            lb = m.leftBarline
            if isinstance(lb, bar.Repeat) and lb.direction == "start":
                explicit = True
            rb = m.rightBarline
            is_end = isinstance(rb, bar.Repeat) and rb.direction == "end"
            if is_end and not explicit and boundary is not None and boundary <= i:
                ms[boundary].leftBarline = bar.Repeat(direction="start")
                added += 1
            if is_end or (rb is not None and getattr(rb, "type", None) in DOUBLE_BARS):
                j = i + 1
                while j < len(ms) and id(ms[j]) in in_bracket:
                    j += 1
                boundary = j if j < len(ms) else None
                explicit = False
    return added


def strip_repeats(score) -> None:
    from music21 import bar, repeat, spanner, stream
    for m in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline("double")
    for el in list(score.recurse().getElementsByClass(repeat.RepeatMark)):
        if el.activeSite is not None:
            el.activeSite.remove(el)
    for sp in list(score.spannerBundle.getByClass(spanner.RepeatBracket)):
        score.spannerBundle.remove(sp)


def export_midi(score):
    """-> (MidiFile | None, length in ticks, error name). The score itself is not modified."""
    from music21 import midi
    try:
        mf = midi.translate.streamToMidiFile(score)
    except Exception as e:
        return None, 0, type(e).__name__
    # musical end = time of the last event before END_OF_TRACK (music21 pads every track
    # with one quarter of silence before END_OF_TRACK; that tail is not counted)
    ticks = 0
    for tr in mf.tracks:
        t = t_last = 0
        for ev in tr.events:
            if isinstance(ev, midi.DeltaTime):
                t += ev.time
            elif ev.type != midi.MetaEvents.END_OF_TRACK:
                t_last = t
        ticks = max(ticks, t_last)
    return mf, ticks, None


def render(cand: dict) -> dict:
    """Parse, normalise, export. Returns {'ok': True, 'midi': bytes, 'meta': {...}} or
    {'ok': False, 'reason': str}. Never raises."""
    try:
        return _render(cand)
    except Exception as e:  # one bad piece must not stop the run
        return {"ok": False, "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"}


def _render(cand: dict) -> dict:
    from music21 import converter, harmony, instrument, meter, repeat, spanner, stream, tempo
    root = corpus_root()
    try:
        kw = {"number": cand["number"]} if cand["number"] is not None else {}
        score = converter.parse(root / cand["corpus_path"], **kw)
    except Exception as e:
        return {"ok": False, "reason": f"parse failed ({type(e).__name__})"}
    if isinstance(score, stream.Opus):
        scores = list(score.scores)
        if not scores:
            return {"ok": False, "reason": "parse failed (empty opus)"}
        score = scores[0]
    if not isinstance(score, stream.Score):
        s2 = stream.Score()
        s2.insert(0, score)
        score = s2
    parts = list(score.parts)
    if not parts or not score.recurse().notes:
        return {"ok": False, "reason": "no notes"}

    ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    meter_str = meter_string(ts)
    key_str, key_source = key_name(score, cand["collection"])
    pulse_bpm, pulse, tempo_source, ttype = choose_tempo(cand, score, ts)
    quarter_bpm = pulse_bpm * float(pulse.quarterLength)
    original_parts = [p.partName or f"Part {i + 1}" for i, p in enumerate(parts)]

    # strip things we replace / do not want sounded
    n_harmony = 0
    for cls in (tempo.MetronomeMark, tempo.TempoText, instrument.Instrument, harmony.Harmony):
        for el in list(score.recurse().getElementsByClass(cls)):
            site = el.activeSite
            if site is not None:
                site.remove(el)
                n_harmony += cls is harmony.Harmony
    for p in parts:
        first = p.getElementsByClass(stream.Measure).first()
        target = first if first is not None else p
        target.insert(0, instrument.Piano())
        target.insert(0, tempo.MetronomeMark(number=pulse_bpm, referent=pulse.quarterLength))

    unshare_objects(score)
    written_q = float(score.highestTime)
    has_repeats = bool(score.recurse().getElementsByClass(repeat.RepeatMark)
                       or score.spannerBundle.getByClass(spanner.RepeatBracket))
    n_fixed = fix_abc_repeat_starts(score) if (has_repeats and cand["collection"] == "folk") else 0

    # music21's MIDI writer expands repeats itself (prepareStreamForMidi); the played length is
    # read back from the MIDI. An expansion is accepted only if it plays every bar at most twice
    # (no D.C./D.S. in these sources); otherwise the piece is exported once, as written.
    mf, ticks, err = export_midi(score)
    repeats = "none"
    if has_repeats:
        played_q = ticks / mf.ticksPerQuarterNote if mf is not None else 0.0
        if mf is not None and played_q <= 2.0 * written_q + 1e-6:
            repeats = "expanded" if played_q > written_q + 1e-6 else "none effective"
            if n_fixed and repeats == "expanded":
                repeats += f" ({n_fixed} implicit ABC start-repeat(s) made explicit)"
        else:
            why = "expansion failed" if mf is None else \
                f"expansion gave {played_q / max(written_q, 1e-9):.1f}x the written length"
            strip_repeats(score)
            mf, ticks, err = export_midi(score)
            repeats = f"not expanded ({why}); played once as written"
    if mf is None:
        return {"ok": False, "reason": f"MIDI export failed ({err})"}
    seconds = ticks / mf.ticksPerQuarterNote * 60.0 / quarter_bpm
    if seconds < MIN_SECONDS:
        return {"ok": False, "reason": f"shorter than {MIN_SECONDS:.0f} s"}
    if seconds > MAX_SECONDS:
        return {"ok": False, "reason": f"longer than {MAX_SECONDS:.0f} s"}
    data = mf.writestr()
    if len(data) < 40:
        return {"ok": False, "reason": "MIDI export empty"}

    bpm_int = int(round(pulse_bpm))
    pulse_name = pulse.fullName.lower()
    if cand["collection"] == "classical":
        composer = "Johann Sebastian Bach"
        collection = "J. S. Bach, four-part chorales (371 Chorales, Riemenschneider numbering)"
        source = f"music21 corpus: {cand['corpus_path']} (Riemenschneider {cand['riemenschneider']}, BWV {cand['bwv']})"
        licence = LICENCE_CHORALE
        description = f"Bach chorale in {key_str}, {meter_str}, {bpm_int} bpm"
        genre = "classical"
    else:
        composer = "Traditional"
        if cand["book"] == "oneill":
            collection = "O'Neill's Music of Ireland (1903), 1850 melodies"
            source = f"music21 corpus: {cand['corpus_path']} number={cand['number']} (O'Neill's no. {cand['number']})"
            licence = LICENCE_ONEILL
            adj = "Irish"
        else:
            collection = "Ryan's Mammoth Collection (1883)"
            src_num = f" number={cand['number']}" if cand["number"] is not None else ""
            source = f"music21 corpus: {cand['corpus_path']}{src_num}"
            licence = LICENCE_RYAN
            adj = "Fiddle"
        kind = ttype or "tune"
        description = f"{adj} {kind} in {key_str}, {meter_str}, {bpm_int} bpm"
        genre = "folk"

    meta = {
        "title": cand["title"],
        "composer": composer,
        "artist": composer,
        "collection": collection,
        "source": source,
        "key": key_str,
        "meter": meter_str,
        "tempo_bpm": bpm_int,
        "bpm": bpm_int,
        "tempo_beat": pulse_name,
        "quarter_bpm": round(quarter_bpm, 2),
        "duration_s": round(seconds, 2),
        "instrument": "piano",
        "original_parts": original_parts,
        "genre": genre,
        "tune_type": ttype if cand["collection"] == "folk" else "chorale",
        "description": description,
        "licence": licence,
        "notes": {
            "key_source": key_source,
            "tempo_source": tempo_source,
            "repeats": repeats,
            "pickup": "kept as written (first note at t=0)",
            "chord_symbols_dropped": n_harmony,
        },
    }
    return {"ok": True, "midi": data, "meta": meta}


# ----------------------------------------------------------------------------------------

LICENSES_MD = """# MIDI demo corpus: sources and licences

Generated by `tools/make_midi_corpus.py` (music21 {m21ver}, seed {seed}) from the corpus that
ships inside the music21 Python package. Each `<slug>.mid` has a `<slug>.json` sidecar naming
its exact music21 corpus path (and tune number for multi-tune ABC files).

| folder | collection | music21 corpus path | pieces |
|---|---|---|---|
| `classical/` | J. S. Bach, four-part chorale harmonisations (Riemenschneider's 371) | `bach/bwv*.mxl` (one `.xml`) | {n_classical} |
| `folk/` | O'Neill's *Music of Ireland* (Chicago, 1903; 1850 melodies) | `oneills1850/*.abc` | {n_oneill} |
| `folk/` | *Ryan's Mammoth Collection* (Boston: Elias Howe, 1883) | `ryansMammoth/*.abc` | {n_ryan} |

## Licence status

**The music** is in the public domain: Bach died in 1750; the fiddle tunes are traditional
and their source books were published in 1883 (Ryan) and 1903 (O'Neill).

**The encodings** are not covered by music21's BSD-3-Clause software licence. music21 says so
itself (README.md / package METADATA, section "License Coverage and Other/Prior Licenses"):
"The license applies to all code files that are new to music21 along with documentation. [...]
The encoded musical scores in the corpus have their own copyrights and licenses. [The]
underlying music is believed to be in the public domain in the US, EU, and Canada (and most
of the world) and the encodings are also either public domain or used by permission."
`music21/corpus/license.txt` adds that the corpus is "distributed with the permission of the
encoders", that "some encodings included in the corpus may not be used for commercial uses or
have other restrictions: please see the licenses embedded in individual compositions or
directories", and that works "may or may not be free in your jurisdiction".

- `bach/`: MusicXML by Margaret Greentree (formerly jsbchorales.net; files credit "PDF ©2004
  Margaret Greentree"). No per-directory licence file and no non-commercial restriction is
  stated for it in music21.
- `oneills1850/`, `ryansMammoth/`: ABC transcriptions by volunteers (named in each tune's `Z:`
  field, e.g. Norbert Paap, Henrik Norbeck, Bob Safranek, John Chambers, John B. Walsh). No
  per-directory licence file and no non-commercial restriction is stated for them in music21.

These MIDI files are mechanical renderings of those encodings (all parts on General MIDI
program 0, one tempo, repeats expanded); they add no creative content. Anyone redistributing
them commercially should read music21's statements quoted above.

## Deliberately excluded

- **Essen Folksong Collection** (`essenFolksong/`): its `license.txt` says the legal status is
  unclear and that permission was given "for non-commercial distribution and use of these
  files in music21". It is not used.
- Everything else in the music21 corpus (not needed; licences differ by directory).

## Rendering notes

- Tempo: the score's own metronome mark when plausible (the chorales' Finale playback tempo,
  used only within {crange} quarter-bpm; an ABC `Q:` field within {frange}), otherwise a default:
  quarter = {cdef} for chorales; for fiddle tunes a per-dance-type pulse tempo (reel {reel},
  hornpipe {hornpipe}, jig {jig}, slip jig {slipjig}, strathspey {strathspey}, ...) or, for
  O'Neill's airs, a tempo from the book's tempo word ("Slow", "Moderate", "With spirit", ...).
  Every sidecar records `tempo_source`.
- `bpm` / `tempo_bpm` count the pulse named in `tempo_beat`: quarter for the chorales; for
  the fiddle tunes dotted quarter in 6/8, 9/8 and 12/8, half note in 4/4, C, C| and 2/2,
  quarter otherwise. `quarter_bpm` is the MIDI tempo in quarter notes.
- Repeats (including first/second endings) are expanded, as music21's MIDI writer does. In
  the ABC tunes a `:|` without `|:` repeats from the previous section boundary (ABC
  convention), not from the top; an expansion that would play any bar more than twice, or
  that music21 cannot perform, is dropped and the tune is played once as written (see each
  sidecar's `notes.repeats`).
- Pickup bars are kept as written; the first note sounds at time 0.
- Pieces shorter than {mins:.0f} s or longer than {maxs:.0f} s are skipped.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output root directory")
    ap.add_argument("--classical", type=int, default=DEFAULT_CLASSICAL,
                    help=f"number of Bach chorales (default {DEFAULT_CLASSICAL})")
    ap.add_argument("--folk", type=int, default=DEFAULT_FOLK,
                    help=f"number of fiddle tunes (default {DEFAULT_FOLK})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"sampling seed (default {DEFAULT_SEED})")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                    help="worker processes (output does not depend on it)")
    args = ap.parse_args()

    try:
        import music21
    except ImportError:
        print("music21 is required: pip install 'music21==10.5.1'", file=sys.stderr)
        return 2

    t0 = time.time()
    root = corpus_root()
    pools = {"classical": chorale_candidates(), "folk": folk_candidates(root)}
    wanted = {"classical": max(0, args.classical), "folk": max(0, args.folk)}

    out = args.out
    results: dict[str, list[dict]] = {}
    skipped: dict[str, collections.Counter] = {}
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    for coll, cands in pools.items():
        cands = sorted(cands, key=lambda c: c["sort_key"])
        order = list(cands)
        random.Random(f"{args.seed}:{coll}").shuffle(order)
        n = min(wanted[coll], len(order))
        got, skip = [], collections.Counter()
        if n > 0:
            with ctx.Pool(args.jobs) as pool:
                for cand, res in zip(order, pool.imap(render, order, chunksize=1)):
                    if res["ok"]:
                        got.append((cand, res))
                        if len(got) >= n:
                            break
                    else:
                        skip[res["reason"]] += 1
                pool.terminate()
        if len(got) < wanted[coll]:
            print(f"warning: {coll}: only {len(got)} of {wanted[coll]} requested pieces available",
                  file=sys.stderr)
        results[coll] = got
        skipped[coll] = skip
        print(f"{coll}: {len(got)} pieces from {len(cands)} candidates "
              f"(tried {len(got) + sum(skip.values())}, skipped {sum(skip.values())})", flush=True)
        for reason, k in skip.most_common():
            print(f"    skipped {k:4d}  {reason}")

    # write
    out.mkdir(parents=True, exist_ok=True)
    index = []
    totals = {}
    for coll, got in results.items():
        d = out / coll
        if d.exists():
            for f in d.iterdir():
                if f.is_file() and f.suffix in (".mid", ".json"):
                    f.unlink()
        d.mkdir(parents=True, exist_ok=True)
        got = sorted(got, key=lambda cr: cr[0]["sort_key"])
        used_slugs = set()
        secs = 0.0
        nbytes = 0
        for cand, res in got:
            slug = cand["slug"]
            i = 2
            while slug in used_slugs:
                slug = f"{cand['slug']}-{i}"
                i += 1
            used_slugs.add(slug)
            meta = res["meta"]
            (d / f"{slug}.mid").write_bytes(res["midi"])
            js = json.dumps(meta, ensure_ascii=False, indent=1) + "\n"
            (d / f"{slug}.json").write_text(js, encoding="utf-8")
            secs += meta["duration_s"]
            nbytes += len(res["midi"]) + len(js.encode())
            index.append({"file": f"{coll}/{slug}.mid", "title": meta["title"],
                          "description": meta["description"], "duration_s": meta["duration_s"],
                          "source": meta["source"]})
        totals[coll] = (len(got), secs, nbytes)

    n_oneill = sum(1 for c, _ in results.get("folk", []) if c["book"] == "oneill")
    n_ryan = sum(1 for c, _ in results.get("folk", []) if c["book"] == "ryan")
    lic = LICENSES_MD.format(
        m21ver=music21.__version__, seed=args.seed, n_classical=len(results.get("classical", [])),
        n_oneill=n_oneill, n_ryan=n_ryan, crange="{}-{}".format(*CHORALE_QBPM_RANGE),
        frange="{}-{}".format(*FOLK_QBPM_RANGE), cdef=CHORALE_DEFAULT_QBPM,
        reel=TYPE_PULSE_BPM["reel"], hornpipe=TYPE_PULSE_BPM["hornpipe"], jig=TYPE_PULSE_BPM["jig"],
        slipjig=TYPE_PULSE_BPM["slip jig"], strathspey=TYPE_PULSE_BPM["strathspey"],
        mins=MIN_SECONDS, maxs=MAX_SECONDS)
    (out / "LICENSES.md").write_text(lic, encoding="utf-8")
    idx = {"generator": "tools/make_midi_corpus.py", "music21": music21.__version__,
           "seed": args.seed, "requested": wanted, "pieces": index}
    head = json.dumps({k: v for k, v in idx.items() if k != "pieces"}, ensure_ascii=False)[:-1]
    body = ",\n".join(" " + json.dumps(p, ensure_ascii=False) for p in index)
    (out / "index.json").write_text(f'{head}, "pieces": [\n{body}\n]}}\n', encoding="utf-8")

    all_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print()
    for coll, (n, secs, nb) in totals.items():
        print(f"{coll:10s} {n:5d} pieces  {secs / 60:7.1f} min  {nb / 1e6:6.2f} MB (mid+json)")
    n_all = sum(v[0] for v in totals.values())
    s_all = sum(v[1] for v in totals.values())
    print(f"{'total':10s} {n_all:5d} pieces  {s_all / 60:7.1f} min  {all_bytes / 1e6:6.2f} MB "
          f"({all_bytes} bytes under {out}, incl. LICENSES.md and index.json)")
    print(f"done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
