//! MIDI files ↔ the event vocabulary of the Music Transformer (Huang et al. 2018), which is the
//! performance encoding of Oore et al. 2018 ("This Time with Feeling"): 128 `NOTE_ON`, 128
//! `NOTE_OFF`, 100 `TIME_SHIFT` (10 ms to 1 s) and 32 `SET_VELOCITY` events, followed by the three
//! control tokens `PAD`, `BOS` and `EOS` that the model adds. The ids themselves are the model's
//! (`models::music_transformer::vocab`); this file turns MIDI into them and back.
//!
//! As in the paper the model plays one instrument: every channel except the drum channel is merged
//! into one note stream, and the sustain pedal is folded into note durations (a note released
//! while the pedal is down keeps sounding until the pedal comes up or the key is struck again), as
//! Magenta's performance pipeline does.

use std::collections::BTreeSet;
use std::path::Path;

use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use crate::error::{Error, Result};
use crate::models::music_transformer::vocab::{
    BOS, EOS, EVENTS, NOTE_OFF, NOTE_ON, PAD, SET_VELOCITY, TIME_SHIFT, TIME_SHIFT_STEPS,
    VELOCITY_BINS,
};

/// Length of one time step (the smallest `TIME_SHIFT`).
pub const STEP_SECONDS: f64 = 0.01;

/// Velocity of notes decoded before any `SET_VELOCITY` (a model may omit it): mezzo-forte, and
/// what its bin decodes to, so decoded velocities are always bin representatives.
pub const DEFAULT_VELOCITY: u8 = 61;

/// Ticks per quarter note in the files we write.
const WRITE_TICKS_PER_BEAT: u16 = 480;
/// 120 bpm, so one second is exactly `2 * WRITE_TICKS_PER_BEAT` ticks.
const WRITE_TEMPO_US: u32 = 500_000;
const WRITE_TICKS_PER_SECOND: f64 = 960.0;
/// Notes starting later than this are ignored when encoding or writing: no performance is that
/// long, and it bounds both the token count and MIDI delta times (which are 28-bit).
const MAX_SECONDS: f64 = 100_000.0;
/// GM channel 10, the percussion channel.
const DRUM_CHANNEL: u8 = 9;

/// One note of a performance; times in seconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Note {
    /// MIDI pitch, 0..=127.
    pub pitch: u8,
    /// MIDI velocity, 1..=127.
    pub velocity: u8,
    /// Onset in seconds.
    pub start: f64,
    /// Release in seconds (after the sustain pedal is applied).
    pub end: f64,
}

/// What a MIDI file says about itself, for display next to the notes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MidiInfo {
    /// Name of the first track, or a "Title: …" text event.
    pub title: Option<String>,
    /// Only when a text or copyright event clearly names one ("Composer: …", "Composed by …").
    pub composer: Option<String>,
    /// First set-tempo event; `None` means the MIDI default of 120 bpm.
    pub tempo_bpm: Option<f64>,
    /// First time signature, e.g. "3/4".
    pub time_signature: Option<String>,
    /// First key signature, e.g. "G major".
    pub key: Option<String>,
    /// Distinct GM programs (0-based) that play notes on non-drum channels, sorted.
    pub programs: Vec<u8>,
    /// End of the last note, in seconds.
    pub duration: f64,
    /// Number of notes kept (drums excluded).
    pub notes: usize,
}

/// Velocity bin (0..32) of a MIDI velocity; 0 is treated as 1.
pub fn velocity_bin(velocity: u8) -> u32 {
    ((u32::from(velocity.max(1)) - 1) * VELOCITY_BINS / 127).min(VELOCITY_BINS - 1)
}

/// The velocity a bin decodes to: `bin * 127 / 32 + 2`, which lies inside the bin for every bin
/// (so encoding it again gives the same bin).
pub fn bin_velocity(bin: u32) -> u8 {
    let v = bin.min(VELOCITY_BINS - 1) * 127 / VELOCITY_BINS + 2;
    v.clamp(1, 127) as u8
}

/// Reads and parses a MIDI file; see [`parse_midi`].
pub fn read_midi(path: &Path) -> Result<(Vec<Note>, MidiInfo)> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::MissingFile {
                path: path.to_path_buf(),
                what: "MIDI file".into(),
            }
        } else {
            Error::io(path, e)
        }
    })?;
    parse_midi(&bytes, path)
}

/// Parses a standard MIDI file (format 0 or 1) into one note stream sorted by (start, pitch),
/// dropping the drum channel and applying the sustain pedal. `path` is only used in errors.
pub fn parse_midi(bytes: &[u8], path: &Path) -> Result<(Vec<Note>, MidiInfo)> {
    let smf = Smf::parse(bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!("not a readable MIDI file: {}", midly_reason(&e)),
        )
    })?;
    if smf.header.format == Format::Sequential {
        return Err(Error::bad_file(
            path,
            "type-2 (sequential) MIDI files are not supported",
        ));
    }
    let mut clock = Clock::new(smf.header.timing)
        .ok_or_else(|| Error::bad_file(path, "the header's time division is zero"))?;

    // One stream in time order; the stable sort keeps each track's own order at equal ticks.
    let mut events: Vec<(u64, usize, &TrackEventKind)> = Vec::new();
    for (t, track) in smf.tracks.iter().enumerate() {
        let mut tick = 0u64;
        for ev in track {
            tick += u64::from(ev.delta.as_int());
            events.push((tick, t, &ev.kind));
        }
    }
    events.sort_by_key(|&(tick, track, _)| (tick, track));

    let mut perf = Performance::new(smf.tracks.len());
    let mut meta = MetaReader::default();
    for &(tick, track, kind) in &events {
        let now = clock.seconds_at(tick);
        perf.track_end[track] = now;
        match kind {
            TrackEventKind::Meta(m) => {
                if let MetaMessage::Tempo(us) = m {
                    clock.set_tempo(us.as_int());
                }
                meta.read(track, m);
            }
            TrackEventKind::Midi { channel, message } => {
                perf.midi(channel.as_int(), message, now, track)
            }
            _ => {}
        }
    }
    let programs = perf.programs.iter().copied().collect();
    let mut notes = perf.finish();
    if notes.is_empty() {
        return Err(Error::bad_file(path, "no notes (outside the drum channel)"));
    }
    notes.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.pitch.cmp(&b.pitch)));
    let info = MidiInfo {
        title: meta.title.or(meta.text_title),
        composer: meta.composer,
        tempo_bpm: meta.tempo_us.map(|us| 60e6 / f64::from(us.max(1))),
        time_signature: meta.time_signature,
        key: meta.key,
        programs,
        duration: notes.iter().map(|n| n.end).fold(0.0, f64::max),
        notes: notes.len(),
    };
    Ok((notes, info))
}

/// midly's top-level message alone is vague ("malformed midi: …"); its causes say where.
fn midly_reason(e: &midly::Error) -> String {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let cause = s.to_string();
        // Every level repeats midly's "invalid midi: " kind prefix.
        let cause = ["invalid midi: ", "malformed midi: "]
            .iter()
            .find_map(|p| cause.strip_prefix(p))
            .unwrap_or(&cause);
        text.push_str(": ");
        text.push_str(cause);
        src = s.source();
    }
    text
}

/// Converts ticks to seconds through the tempo map, for a stream visited in tick order.
struct Clock {
    /// SMPTE timing: a fixed tick length that ignores tempo.
    fixed: Option<f64>,
    ticks_per_beat: f64,
    tempo_us: f64,
    last_tick: u64,
    last_seconds: f64,
}

impl Clock {
    fn new(timing: Timing) -> Option<Self> {
        let (fixed, ticks_per_beat) = match timing {
            Timing::Metrical(tpb) if tpb.as_int() > 0 => (None, f64::from(tpb.as_int())),
            Timing::Timecode(fps, sub) if sub > 0 => {
                (Some(1.0 / (f64::from(fps.as_f32()) * f64::from(sub))), 1.0)
            }
            _ => return None,
        };
        Some(Self {
            fixed,
            ticks_per_beat,
            tempo_us: f64::from(WRITE_TEMPO_US),
            last_tick: 0,
            last_seconds: 0.0,
        })
    }

    fn set_tempo(&mut self, us_per_beat: u32) {
        self.tempo_us = f64::from(us_per_beat);
    }

    fn seconds_at(&mut self, tick: u64) -> f64 {
        let per_tick = self
            .fixed
            .unwrap_or(self.tempo_us * 1e-6 / self.ticks_per_beat);
        self.last_seconds += tick.saturating_sub(self.last_tick) as f64 * per_tick;
        self.last_tick = self.last_tick.max(tick);
        self.last_seconds
    }
}

/// A note whose key is down or held by the pedal.
#[derive(Clone, Copy)]
struct Open {
    start: f64,
    velocity: u8,
    channel: u8,
    track: usize,
    /// The key is up but the pedal holds the note.
    released: bool,
}

/// Note state of the merged stream. Sounding notes are keyed by pitch alone because the model
/// hears one instrument: a re-strike from any channel ends the previous note of that pitch.
struct Performance {
    sounding: [Option<Open>; 128],
    pedal: [bool; 16],
    program: [u8; 16],
    programs: BTreeSet<u8>,
    track_end: Vec<f64>,
    notes: Vec<Note>,
}

impl Performance {
    fn new(tracks: usize) -> Self {
        Self {
            sounding: [None; 128],
            pedal: [false; 16],
            program: [0; 16],
            programs: BTreeSet::new(),
            track_end: vec![0.0; tracks],
            notes: Vec::new(),
        }
    }

    fn midi(&mut self, channel: u8, message: &MidiMessage, now: f64, track: usize) {
        if channel == DRUM_CHANNEL {
            return;
        }
        let ch = usize::from(channel);
        match *message {
            MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                let pitch = usize::from(key.as_int());
                if let Some(open) = self.sounding[pitch].take() {
                    self.close(pitch, open, now);
                }
                self.sounding[pitch] = Some(Open {
                    start: now,
                    velocity: vel.as_int(),
                    channel,
                    track,
                    released: false,
                });
                self.programs.insert(self.program[ch]);
            }
            MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                self.release(channel, usize::from(key.as_int()), now)
            }
            MidiMessage::Controller { controller, value } => match controller.as_int() {
                64 => {
                    let down = value.as_int() >= 64;
                    if self.pedal[ch] && !down {
                        self.pedal[ch] = false;
                        for pitch in 0..128 {
                            if let Some(open) = self.sounding[pitch] {
                                if open.channel == channel && open.released {
                                    self.sounding[pitch] = None;
                                    self.close(pitch, open, now);
                                }
                            }
                        }
                    }
                    self.pedal[ch] = down;
                }
                // All sound off / all notes off: a key release for every note of the channel.
                120 | 123 => {
                    for pitch in 0..128 {
                        self.release(channel, pitch, now);
                    }
                }
                _ => {}
            },
            MidiMessage::ProgramChange { program } => self.program[ch] = program.as_int(),
            _ => {}
        }
    }

    fn release(&mut self, channel: u8, pitch: usize, now: f64) {
        let Some(open) = self.sounding.get(pitch).copied().flatten() else {
            return;
        };
        // A note-off from another channel is for a note that a re-strike already ended.
        if open.channel != channel {
            return;
        }
        if self.pedal[usize::from(channel)] {
            self.sounding[pitch] = Some(Open {
                released: true,
                ..open
            });
        } else {
            self.sounding[pitch] = None;
            self.close(pitch, open, now);
        }
    }

    fn close(&mut self, pitch: usize, open: Open, end: f64) {
        if end > open.start {
            self.notes.push(Note {
                pitch: pitch as u8,
                velocity: open.velocity,
                start: open.start,
                end,
            });
        }
    }

    fn finish(mut self) -> Vec<Note> {
        for pitch in 0..128 {
            if let Some(open) = self.sounding[pitch].take() {
                let end = self.track_end[open.track];
                self.close(pitch, open, end);
            }
        }
        self.notes
    }
}

/// Collects the descriptive meta events.
#[derive(Default)]
struct MetaReader {
    title: Option<String>,
    text_title: Option<String>,
    composer: Option<String>,
    tempo_us: Option<u32>,
    time_signature: Option<String>,
    key: Option<String>,
}

impl MetaReader {
    fn read(&mut self, track: usize, m: &MetaMessage) {
        match *m {
            // Later tracks' names are usually instrument names, not the piece's.
            MetaMessage::TrackName(name) if track == 0 && self.title.is_none() => {
                self.title = meta_text(name);
            }
            MetaMessage::Text(t) | MetaMessage::Copyright(t) => {
                if let Some(text) = meta_text(t) {
                    if self.composer.is_none() {
                        self.composer =
                            after_label(&text, &["composer:", "composed by", "music by"]);
                    }
                    if self.text_title.is_none() {
                        self.text_title = after_label(&text, &["title:"]);
                    }
                }
            }
            MetaMessage::Tempo(us) if self.tempo_us.is_none() => self.tempo_us = Some(us.as_int()),
            MetaMessage::TimeSignature(num, pow, _, _) if self.time_signature.is_none() => {
                self.time_signature = 1u32
                    .checked_shl(u32::from(pow))
                    .map(|d| format!("{num}/{d}"));
            }
            MetaMessage::KeySignature(sharps, minor) if self.key.is_none() => {
                self.key = key_name(sharps, minor);
            }
            _ => {}
        }
    }
}

/// Meta text is UTF-8 in modern files and Latin-1 in many old ones.
fn meta_text(bytes: &[u8]) -> Option<String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    };
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty()).then(|| text.to_string())
}

/// The rest of `text` after one of `labels` at its start (case-insensitive).
fn after_label(text: &str, labels: &[&str]) -> Option<String> {
    let lower = text.to_lowercase();
    labels.iter().find_map(|label| {
        if !lower.starts_with(label) {
            return None;
        }
        let rest = text
            .get(label.len()..)?
            .trim_start_matches([':', ' ', '\t'])
            .trim();
        (!rest.is_empty()).then(|| rest.to_string())
    })
}

fn key_name(sharps: i8, minor: bool) -> Option<String> {
    const MAJOR: [&str; 15] = [
        "Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#",
    ];
    const MINOR: [&str; 15] = [
        "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#", "G#", "D#", "A#",
    ];
    let i = usize::try_from(i16::from(sharps) + 7).ok()?;
    let (names, mode) = if minor {
        (&MINOR, "minor")
    } else {
        (&MAJOR, "major")
    };
    names.get(i).map(|n| format!("{n} {mode}"))
}

/// A note on an integer time grid (10 ms steps, or MIDI ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GridNote {
    pub pitch: u8,
    pub velocity: u8,
    pub start: u64,
    pub end: u64,
}

/// Puts notes on a grid of `per_second` units, ready to become on/off events that a decoder
/// (or a synthesizer, which releases every voice of a key at once) reads back unambiguously:
/// invalid notes are dropped, every note lasts at least one unit, and a note is cut where the
/// next note of the same pitch starts. Sorted by (start, pitch).
pub(crate) fn grid_notes(notes: &[Note], per_second: f64) -> Vec<GridNote> {
    let mut grid: Vec<GridNote> = notes
        .iter()
        .filter(|n| n.pitch < 128 && n.start.is_finite() && n.end > n.start)
        .filter(|n| n.start <= MAX_SECONDS)
        .map(|n| {
            let start = (n.start.max(0.0) * per_second).round() as u64;
            let end = (n.end.min(MAX_SECONDS + 3600.0) * per_second).round() as u64;
            GridNote {
                pitch: n.pitch,
                velocity: n.velocity.clamp(1, 127),
                start,
                end: end.max(start + 1),
            }
        })
        .collect();
    grid.sort_by_key(|n| (n.pitch, n.start, n.end));
    let mut kept: Vec<GridNote> = Vec::with_capacity(grid.len());
    for n in grid {
        if let Some(prev) = kept.last_mut() {
            if prev.pitch == n.pitch && prev.end > n.start {
                prev.end = n.start;
                if prev.end <= prev.start {
                    kept.pop();
                }
            }
        }
        kept.push(n);
    }
    kept.sort_by_key(|n| (n.start, n.pitch));
    kept
}

/// On/off events of grid notes in playing order: time, then offs before ons, then pitch.
/// Each item is (time, is_on, pitch, velocity).
pub(crate) fn grid_events(grid: &[GridNote]) -> Vec<(u64, bool, u8, u8)> {
    let mut events: Vec<(u64, bool, u8, u8)> = grid
        .iter()
        .flat_map(|n| {
            [
                (n.start, true, n.pitch, n.velocity),
                (n.end, false, n.pitch, n.velocity),
            ]
        })
        .collect();
    events.sort_by_key(|&(t, on, pitch, _)| (t, on, pitch));
    events
}

/// Encodes notes as event ids (no `BOS`/`EOS`): times are quantised to 10 ms, `TIME_SHIFT`s are
/// greedy (at most 1 s each), `SET_VELOCITY` comes before a `NOTE_ON` only when the bin changes,
/// and at equal times `NOTE_OFF`s come first.
pub fn encode(notes: &[Note]) -> Vec<u32> {
    let grid = grid_notes(notes, 1.0 / STEP_SECONDS);
    let mut out = Vec::with_capacity(grid.len() * 4);
    let mut now = 0u64;
    let mut bin = None;
    for (t, on, pitch, velocity) in grid_events(&grid) {
        let mut gap = t - now;
        while gap > 0 {
            let k = gap.min(u64::from(TIME_SHIFT_STEPS));
            out.push(TIME_SHIFT + k as u32 - 1);
            gap -= k;
        }
        now = t;
        if on {
            let b = velocity_bin(velocity);
            if bin != Some(b) {
                out.push(SET_VELOCITY + b);
                bin = Some(b);
            }
            out.push(NOTE_ON + u32::from(pitch));
        } else {
            out.push(NOTE_OFF + u32::from(pitch));
        }
    }
    out
}

/// Decodes any id sequence (model output included) into notes sorted by (start, pitch). `PAD`,
/// `BOS` and unknown ids are skipped, `EOS` stops, a `NOTE_OFF` of a silent pitch is ignored, a
/// `NOTE_ON` of a sounding pitch ends it first, notes still sounding at the end close there, and
/// zero-length notes are dropped. Velocity is [`DEFAULT_VELOCITY`] until a `SET_VELOCITY`.
pub fn decode(tokens: &[u32]) -> Vec<Note> {
    let mut sounding: [Option<(u64, u8)>; 128] = [None; 128];
    let mut notes = Vec::new();
    let mut now = 0u64;
    let mut velocity = DEFAULT_VELOCITY;
    for &id in tokens {
        match id {
            EOS => break,
            _ if id < NOTE_OFF => {
                let slot = &mut sounding[(id - NOTE_ON) as usize];
                if let Some(open) = slot.replace((now, velocity)) {
                    close_note(&mut notes, id - NOTE_ON, open, now);
                }
            }
            _ if id < TIME_SHIFT => {
                if let Some(open) = sounding[(id - NOTE_OFF) as usize].take() {
                    close_note(&mut notes, id - NOTE_OFF, open, now);
                }
            }
            _ if id < SET_VELOCITY => now += u64::from(id - TIME_SHIFT) + 1,
            _ if id < EVENTS => velocity = bin_velocity(id - SET_VELOCITY),
            _ => {}
        }
    }
    for (pitch, slot) in sounding.iter_mut().enumerate() {
        if let Some(open) = slot.take() {
            close_note(&mut notes, pitch as u32, open, now);
        }
    }
    notes.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.pitch.cmp(&b.pitch)));
    notes
}

fn close_note(notes: &mut Vec<Note>, pitch: u32, (start, velocity): (u64, u8), end: u64) {
    if end > start {
        notes.push(Note {
            pitch: pitch as u8,
            velocity,
            start: start as f64 * STEP_SECONDS,
            end: end as f64 * STEP_SECONDS,
        });
    }
}

/// Seconds of `TIME_SHIFT` in a token sequence, up to `EOS` as in [`decode`].
pub fn duration_of(tokens: &[u32]) -> f64 {
    let steps: u64 = tokens
        .iter()
        .take_while(|&&id| id != EOS)
        .filter(|&&id| (TIME_SHIFT..SET_VELOCITY).contains(&id))
        .map(|&id| u64::from(id - TIME_SHIFT) + 1)
        .sum();
    steps as f64 * STEP_SECONDS
}

/// Display name of a token: "NOTE_ON(60)", "NOTE_OFF(60)", "TIME_SHIFT(250ms)", "VELOCITY(80)"
/// (the velocity the bin decodes to), "PAD", "BOS", "EOS", or "UNKNOWN(id)".
pub fn token_name(id: u32) -> String {
    match id {
        _ if id < NOTE_OFF => format!("NOTE_ON({})", id - NOTE_ON),
        _ if id < TIME_SHIFT => format!("NOTE_OFF({})", id - NOTE_OFF),
        _ if id < SET_VELOCITY => format!("TIME_SHIFT({}ms)", (id - TIME_SHIFT + 1) * 10),
        _ if id < EVENTS => format!("VELOCITY({})", bin_velocity(id - SET_VELOCITY)),
        PAD => "PAD".into(),
        BOS => "BOS".into(),
        EOS => "EOS".into(),
        _ => format!("UNKNOWN({id})"),
    }
}

/// A format-0 standard MIDI file of `notes` on channel 0 with a program change to `program`
/// (0-based GM number), 480 ticks per quarter at 120 bpm (960 ticks per second).
pub fn midi_bytes(notes: &[Note], program: u8) -> Result<Vec<u8>> {
    let program = u7::try_from(program).ok_or_else(|| {
        Error::InvalidRequest(format!("MIDI program {program} is outside 0..=127"))
    })?;
    let channel = u4::new(0);
    let mut track: Vec<TrackEvent<'static>> = vec![
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(WRITE_TEMPO_US))),
        },
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::TimeSignature(4, 2, 24, 8)),
        },
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Midi {
                channel,
                message: MidiMessage::ProgramChange { program },
            },
        },
    ];
    let mut last = 0u64;
    for (tick, on, pitch, velocity) in grid_events(&grid_notes(notes, WRITE_TICKS_PER_SECOND)) {
        let delta = u32::try_from(tick - last)
            .ok()
            .and_then(u28::try_from)
            .ok_or_else(|| Error::InvalidRequest("notes too far apart for a MIDI file".into()))?;
        last = tick;
        let key = u7::new(pitch);
        let message = if on {
            MidiMessage::NoteOn {
                key,
                vel: u7::new(velocity),
            }
        } else {
            MidiMessage::NoteOff {
                key,
                vel: u7::new(64),
            }
        };
        track.push(TrackEvent {
            delta,
            kind: TrackEventKind::Midi { channel, message },
        });
    }
    track.push(TrackEvent {
        delta: u28::new(0),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    });
    let smf = Smf {
        header: Header::new(
            Format::SingleTrack,
            Timing::Metrical(u15::new(WRITE_TICKS_PER_BEAT)),
        ),
        tracks: vec![track],
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes)
        .map_err(|e| Error::io("<MIDI in memory>", e))?;
    Ok(bytes)
}

/// Writes [`midi_bytes`] to `path` atomically.
pub fn write_midi(path: &Path, notes: &[Note], program: u8) -> Result<()> {
    crate::util::atomic_write(path, &midi_bytes(notes, program)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::music_transformer::vocab::VOCAB;
    use midly::Fps;
    use rand::{Rng, SeedableRng};

    const TPB: u16 = 480;
    /// 120 bpm at 480 ticks per beat.
    const TICKS_PER_SECOND: f64 = 960.0;

    fn path() -> &'static Path {
        Path::new("/music/song.mid")
    }

    fn on(ch: u8, key: u8, vel: u8) -> TrackEventKind<'static> {
        TrackEventKind::Midi {
            channel: u4::new(ch),
            message: MidiMessage::NoteOn {
                key: u7::new(key),
                vel: u7::new(vel),
            },
        }
    }

    fn off(ch: u8, key: u8) -> TrackEventKind<'static> {
        TrackEventKind::Midi {
            channel: u4::new(ch),
            message: MidiMessage::NoteOff {
                key: u7::new(key),
                vel: u7::new(0),
            },
        }
    }

    fn cc(ch: u8, controller: u8, value: u8) -> TrackEventKind<'static> {
        TrackEventKind::Midi {
            channel: u4::new(ch),
            message: MidiMessage::Controller {
                controller: u7::new(controller),
                value: u7::new(value),
            },
        }
    }

    fn program(ch: u8, p: u8) -> TrackEventKind<'static> {
        TrackEventKind::Midi {
            channel: u4::new(ch),
            message: MidiMessage::ProgramChange {
                program: u7::new(p),
            },
        }
    }

    fn meta(m: MetaMessage<'static>) -> TrackEventKind<'static> {
        TrackEventKind::Meta(m)
    }

    /// A MIDI file from tracks of (absolute tick, event); events are sorted stably by tick.
    fn smf_bytes(
        format: Format,
        timing: Timing,
        tracks: Vec<Vec<(u64, TrackEventKind<'static>)>>,
    ) -> Vec<u8> {
        let tracks: Vec<Vec<TrackEvent<'static>>> = tracks
            .into_iter()
            .map(|mut events| {
                events.sort_by_key(|e| e.0);
                let mut last = 0;
                let mut track: Vec<TrackEvent<'static>> = events
                    .into_iter()
                    .map(|(tick, kind)| {
                        let delta = u28::new((tick - last) as u32);
                        last = tick;
                        TrackEvent { delta, kind }
                    })
                    .collect();
                track.push(TrackEvent {
                    delta: u28::new(0),
                    kind: meta(MetaMessage::EndOfTrack),
                });
                track
            })
            .collect();
        let smf = Smf {
            header: Header::new(format, timing),
            tracks,
        };
        let mut out = Vec::new();
        smf.write_std(&mut out).unwrap();
        out
    }

    fn metrical(tracks: Vec<Vec<(u64, TrackEventKind<'static>)>>) -> Vec<u8> {
        let format = if tracks.len() == 1 {
            Format::SingleTrack
        } else {
            Format::Parallel
        };
        smf_bytes(format, Timing::Metrical(u15::new(TPB)), tracks)
    }

    fn note(pitch: u8, velocity: u8, start: f64, end: f64) -> Note {
        Note {
            pitch,
            velocity,
            start,
            end,
        }
    }

    fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
        assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
    }

    /// Chords, a same-pitch re-strike across channels, overlaps, velocity changes, a tempo change
    /// mid-file on the conductor track and a gap longer than one second.
    fn rich_file() -> Vec<u8> {
        let conductor = vec![
            (0, meta(MetaMessage::Tempo(u24::new(500_000)))),
            // From 2 s on the tempo doubles: 480 ticks = 0.25 s.
            (1920, meta(MetaMessage::Tempo(u24::new(250_000)))),
        ];
        let piano = vec![
            (0, on(0, 60, 80)),
            (0, on(0, 64, 80)),
            (0, on(0, 67, 80)),
            (960, off(0, 60)),
            (960, off(0, 64)),
            (960, off(0, 67)),
            (480, on(0, 72, 100)),
            (1440, off(0, 72)),
            (960, on(0, 74, 30)),
            (2400, off(0, 74)),
            (2400, on(0, 60, 127)),
            (2880, off(0, 60)),
            // 2880 + 4800 ticks at 240 bpm: a 2.5 s gap.
            (7680, on(0, 65, 5)),
            (7700, off(0, 65)),
        ];
        let strings = vec![
            (0, program(1, 48)),
            (240, on(1, 64, 50)),
            (600, off(1, 64)),
            // Off of channel 0's 64 at tick 960 must not end this note.
            (1200, on(1, 48, 90)),
            (3000, off(1, 48)),
        ];
        metrical(vec![conductor, piano, strings])
    }

    #[test]
    fn parse_applies_tempo_map_and_restrikes() {
        let (notes, info) = parse_midi(&rich_file(), path()).unwrap();
        let t = |tick: f64| {
            if tick <= 1920.0 {
                tick / TICKS_PER_SECOND
            } else {
                2.0 + (tick - 1920.0) / (2.0 * TICKS_PER_SECOND)
            }
        };
        let expected = [
            note(60, 80, t(0.0), t(960.0)),
            // Cut by channel 1's re-strike of 64.
            note(64, 80, t(0.0), t(240.0)),
            note(67, 80, t(0.0), t(960.0)),
            note(64, 50, t(240.0), t(600.0)),
            note(72, 100, t(480.0), t(1440.0)),
            note(74, 30, t(960.0), t(2400.0)),
            note(48, 90, t(1200.0), t(3000.0)),
            note(60, 127, t(2400.0), t(2880.0)),
            note(65, 5, t(7680.0), t(7700.0)),
        ];
        let mut expected = expected.to_vec();
        expected.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.pitch.cmp(&b.pitch)));
        assert_eq!(notes.len(), expected.len(), "{notes:?}");
        for (n, e) in notes.iter().zip(&expected) {
            assert_eq!((n.pitch, n.velocity), (e.pitch, e.velocity));
            assert_close(n.start, e.start, 1e-9, "start");
            assert_close(n.end, e.end, 1e-9, "end");
        }
        assert_eq!(info.programs, vec![0, 48]);
        assert_eq!(info.notes, 9);
        assert_close(info.duration, t(7700.0), 1e-9, "duration");
        assert_eq!(info.tempo_bpm, Some(120.0));
    }

    #[test]
    fn round_trip_midi_tokens_midi_keeps_every_note() {
        let (original, _) = parse_midi(&rich_file(), path()).unwrap();
        let tokens = encode(&original);
        assert!(tokens.iter().all(|&t| t < EVENTS));
        // The 2.5 s gap needs more than one TIME_SHIFT in a row.
        assert!(tokens
            .windows(2)
            .any(|w| w.iter().all(|&t| (TIME_SHIFT..SET_VELOCITY).contains(&t))));
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("again.mid");
        write_midi(&out, &decode(&tokens), 0).unwrap();
        let (again, info) = read_midi(&out).unwrap();
        assert_eq!(again.len(), original.len());
        for (a, o) in again.iter().zip(&original) {
            assert_eq!(a.pitch, o.pitch);
            assert_close(a.start, o.start, STEP_SECONDS, "start");
            assert_close(a.end, o.end, STEP_SECONDS, "end");
            assert_eq!(velocity_bin(a.velocity), velocity_bin(o.velocity));
        }
        assert_eq!(info.tempo_bpm, Some(120.0));
        assert_eq!(info.programs, vec![0]);
        assert_close(
            duration_of(&tokens),
            info.duration,
            STEP_SECONDS,
            "duration",
        );
    }

    #[test]
    fn sustain_pedal_holds_released_notes_until_pedal_up() {
        let bytes = metrical(vec![vec![
            (0, on(0, 60, 70)),
            (100, cc(0, 64, 127)),
            (200, on(0, 62, 70)),
            (300, off(0, 62)),
            (480, off(0, 60)),
            (600, on(0, 64, 70)),
            (700, off(0, 64)),
            // A re-strike under the pedal ends the held note and starts a new one.
            (800, on(0, 62, 70)),
            (900, off(0, 62)),
            // A pedal on another channel does not hold channel 0.
            (1000, cc(1, 64, 100)),
            (1440, cc(0, 64, 0)),
            (1500, on(0, 67, 70)),
            (1600, off(0, 67)),
            (1700, on(0, 71, 70)),
            (1800, off(0, 71)),
        ]]);
        let (notes, _) = parse_midi(&bytes, path()).unwrap();
        let got: Vec<(u8, f64, f64)> = notes
            .iter()
            .map(|n| {
                (
                    n.pitch,
                    n.start * TICKS_PER_SECOND,
                    n.end * TICKS_PER_SECOND,
                )
            })
            .collect();
        let want = [
            (60, 0.0, 1440.0),
            (62, 200.0, 800.0),
            (64, 600.0, 1440.0),
            (62, 800.0, 1440.0),
            (67, 1500.0, 1600.0),
            (71, 1700.0, 1800.0),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0, "{got:?}");
            assert_close(g.1, w.1, 1e-6, "start tick");
            assert_close(g.2, w.2, 1e-6, "end tick");
        }
    }

    #[test]
    fn velocity_zero_note_on_is_note_off_and_open_notes_end_with_track() {
        let bytes = metrical(vec![vec![
            (0, on(0, 60, 90)),
            (480, on(0, 60, 0)),
            (480, on(0, 62, 90)),
            (1920, cc(0, 7, 100)),
        ]]);
        let (notes, _) = parse_midi(&bytes, path()).unwrap();
        assert_eq!(notes, vec![note(60, 90, 0.0, 0.5), note(62, 90, 0.5, 2.0)]);
    }

    #[test]
    fn drums_are_dropped() {
        let bytes = metrical(vec![vec![
            (0, program(9, 5)),
            (0, on(9, 36, 100)),
            (0, on(0, 60, 100)),
            (240, off(9, 36)),
            (480, off(0, 60)),
        ]]);
        let (notes, info) = parse_midi(&bytes, path()).unwrap();
        assert_eq!(notes, vec![note(60, 100, 0.0, 0.5)]);
        assert_eq!(info.programs, vec![0]);

        let only_drums = metrical(vec![vec![(0, on(9, 36, 100)), (240, off(9, 36))]]);
        let err = parse_midi(&only_drums, path()).unwrap_err().to_string();
        assert!(
            err.contains("song.mid") && err.contains("no notes"),
            "{err}"
        );
    }

    #[test]
    fn format_2_is_rejected() {
        let bytes = smf_bytes(
            Format::Sequential,
            Timing::Metrical(u15::new(TPB)),
            vec![vec![(0, on(0, 60, 100)), (480, off(0, 60))]],
        );
        let err = parse_midi(&bytes, path()).unwrap_err().to_string();
        assert!(err.contains("song.mid"), "{err}");
        assert!(
            err.contains("type-2 (sequential) MIDI files are not supported"),
            "{err}"
        );
    }

    #[test]
    fn broken_files_are_errors_naming_the_file() {
        let good = metrical(vec![vec![(0, on(0, 60, 100)), (480, off(0, 60))]]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("header cut", good[..10].to_vec()),
            ("track cut", good[..good.len() - 8].to_vec()),
            (
                "garbage",
                b"this is certainly not a MIDI file at all".to_vec(),
            ),
            ("no tracks", {
                let mut h = good[..14].to_vec();
                h[10..12].copy_from_slice(&[0, 0]);
                h
            }),
        ];
        for (what, bytes) in cases {
            match parse_midi(&bytes, path()) {
                Ok(r) => panic!("{what}: parsed {r:?}"),
                Err(e) => assert!(e.to_string().contains("/music/song.mid"), "{what}: {e}"),
            }
        }
        let err = parse_midi(b"MThd", path()).unwrap_err().to_string();
        assert!(err.contains("not a readable MIDI file"), "{err}");

        let missing = Path::new("/nonexistent/dir/piece.mid");
        let err = read_midi(missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/dir/piece.mid"), "{err}");
    }

    #[test]
    fn smpte_timing_uses_frames_not_tempo() {
        let bytes = smf_bytes(
            Format::SingleTrack,
            // 25 fps x 40 subframes = 1000 ticks per second.
            Timing::Timecode(Fps::Fps25, 40),
            vec![vec![
                (0, meta(MetaMessage::Tempo(u24::new(1_000_000)))),
                (1000, on(0, 60, 100)),
                (1500, off(0, 60)),
            ]],
        );
        let (notes, info) = parse_midi(&bytes, path()).unwrap();
        assert_eq!(notes, vec![note(60, 100, 1.0, 1.5)]);
        assert_eq!(info.tempo_bpm, Some(60.0));
    }

    #[test]
    fn info_fields_come_from_meta_events() {
        let conductor = vec![
            (
                0,
                meta(MetaMessage::TrackName("Gymnopédie No. 1".as_bytes())),
            ),
            (0, meta(MetaMessage::Text(b"Composer: Erik Satie"))),
            (
                0,
                meta(MetaMessage::Copyright(b"Copyright 2004 by Someone")),
            ),
            (0, meta(MetaMessage::Tempo(u24::new(833_333)))),
            (0, meta(MetaMessage::TimeSignature(3, 2, 24, 8))),
            (0, meta(MetaMessage::KeySignature(1, false))),
            (960, meta(MetaMessage::TimeSignature(4, 2, 24, 8))),
            (960, meta(MetaMessage::Tempo(u24::new(500_000)))),
        ];
        let music = vec![
            (0, meta(MetaMessage::TrackName(b"Piano"))),
            (0, on(0, 60, 100)),
            (0, program(1, 40)),
            (0, on(1, 72, 100)),
            (0, program(2, 73)),
            (0, program(9, 5)),
            (0, on(9, 36, 100)),
            (480, off(0, 60)),
            (480, off(1, 72)),
            (480, off(9, 36)),
        ];
        let (_, info) = parse_midi(&metrical(vec![conductor, music]), path()).unwrap();
        assert_eq!(info.title.as_deref(), Some("Gymnopédie No. 1"));
        assert_eq!(info.composer.as_deref(), Some("Erik Satie"));
        assert_close(info.tempo_bpm.unwrap(), 72.0, 1e-3, "tempo");
        assert_eq!(info.time_signature.as_deref(), Some("3/4"));
        assert_eq!(info.key.as_deref(), Some("G major"));
        assert_eq!(info.programs, vec![0, 40]);
        assert_eq!(info.notes, 2);

        // No labelled composer: the copyright holder is not guessed to be one.
        let plain = metrical(vec![vec![
            (0, meta(MetaMessage::Copyright(b"(c) 1999 Someone"))),
            (0, meta(MetaMessage::Text(b"Title: Prelude"))),
            (0, on(0, 60, 100)),
            (480, off(0, 60)),
        ]]);
        let (_, info) = parse_midi(&plain, path()).unwrap();
        assert_eq!(info.title.as_deref(), Some("Prelude"));
        assert_eq!(info.composer, None);
        assert_eq!(info.tempo_bpm, None);
        assert_eq!(info.key, None);
    }

    #[test]
    fn key_names() {
        assert_eq!(key_name(0, false).as_deref(), Some("C major"));
        assert_eq!(key_name(1, true).as_deref(), Some("E minor"));
        assert_eq!(key_name(-3, false).as_deref(), Some("Eb major"));
        assert_eq!(key_name(-7, true).as_deref(), Some("Ab minor"));
        assert_eq!(key_name(7, false).as_deref(), Some("C# major"));
        assert_eq!(key_name(8, false), None);
    }

    #[test]
    fn velocity_bins_round_trip() {
        assert_eq!(velocity_bin(1), 0);
        assert_eq!(velocity_bin(0), 0);
        assert_eq!(velocity_bin(127), 31);
        assert_eq!(
            bin_velocity(velocity_bin(DEFAULT_VELOCITY)),
            DEFAULT_VELOCITY
        );
        for b in 0..VELOCITY_BINS {
            assert_eq!(velocity_bin(bin_velocity(b)), b, "bin {b}");
        }
        for v in 1..127u8 {
            assert!(velocity_bin(v) <= velocity_bin(v + 1));
        }
    }

    #[test]
    fn encode_emits_expected_tokens() {
        let notes = [
            note(64, 80, 0.0, 1.5),
            note(60, 80, 0.0, 0.5),
            // Same pitch right after: the off must come before the on.
            note(60, 20, 0.5, 0.504),
        ];
        let tokens = encode(&notes);
        let vel80 = SET_VELOCITY + velocity_bin(80);
        let vel20 = SET_VELOCITY + velocity_bin(20);
        assert_eq!(
            tokens,
            vec![
                vel80,
                NOTE_ON + 60,
                NOTE_ON + 64,
                TIME_SHIFT + 49,
                NOTE_OFF + 60,
                vel20,
                NOTE_ON + 60,
                TIME_SHIFT,
                NOTE_OFF + 60,
                TIME_SHIFT + 98,
                NOTE_OFF + 64,
            ]
        );
        let names: Vec<String> = tokens[..4].iter().map(|&t| token_name(t)).collect();
        assert_eq!(
            names,
            vec![
                format!("VELOCITY({})", bin_velocity(velocity_bin(80))),
                "NOTE_ON(60)".to_string(),
                "NOTE_ON(64)".to_string(),
                "TIME_SHIFT(500ms)".to_string(),
            ]
        );
        assert_eq!(token_name(NOTE_OFF + 1), "NOTE_OFF(1)");
        assert_eq!(token_name(TIME_SHIFT + 99), "TIME_SHIFT(1000ms)");
        assert_eq!(token_name(PAD), "PAD");
        assert_eq!(token_name(BOS), "BOS");
        assert_eq!(token_name(EOS), "EOS");
        assert_eq!(token_name(1000), "UNKNOWN(1000)");
        assert_close(duration_of(&tokens), 1.5, 1e-9, "duration");
        let back = decode(&tokens);
        assert_eq!(back.len(), 3);
        assert_close(back[2].end, 0.51, 1e-9, "short note keeps one step");
    }

    #[test]
    fn encode_cuts_overlapping_same_pitch_and_skips_invalid_notes() {
        let notes = [
            note(60, 100, 0.0, 1.0),
            note(60, 100, 0.5, 1.5),
            note(200, 100, 0.0, 1.0),
            note(61, 100, f64::NAN, 1.0),
            note(62, 100, 1.0, 0.5),
        ];
        let back = decode(&encode(&notes));
        assert_eq!(
            back,
            vec![note(60, 100, 0.0, 0.5), note(60, 100, 0.5, 1.5)]
                .into_iter()
                .map(|n| Note {
                    velocity: bin_velocity(velocity_bin(100)),
                    ..n
                })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn decode_handles_control_tokens() {
        let tokens = [
            PAD,
            BOS,
            NOTE_OFF + 61,
            NOTE_ON + 60,
            TIME_SHIFT + 9,
            NOTE_ON + 60,
            NOTE_ON + 62,
            TIME_SHIFT + 9,
            EOS,
            TIME_SHIFT + 99,
            NOTE_OFF + 62,
        ];
        let notes = decode(&tokens);
        let v = DEFAULT_VELOCITY;
        assert_eq!(
            notes,
            vec![
                note(60, v, 0.0, 0.1),
                note(60, v, 0.1, 0.2),
                note(62, v, 0.1, 0.2)
            ]
        );
        assert_close(duration_of(&tokens), 0.2, 1e-9, "stops at EOS");
        assert!(decode(&[]).is_empty());
        assert!(decode(&[NOTE_ON + 60, NOTE_OFF + 60]).is_empty());
    }

    #[test]
    fn decode_of_random_ids_yields_valid_notes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let len = rng.random_range(0..600);
            let tokens: Vec<u32> = (0..len)
                .map(|_| rng.random_range(0..VOCAB as u32 + 20))
                .collect();
            let notes = decode(&tokens);
            let total = duration_of(&tokens);
            for w in notes.windows(2) {
                assert!((w[0].start, w[0].pitch) <= (w[1].start, w[1].pitch));
            }
            for n in &notes {
                assert!(n.pitch < 128 && (1..=127).contains(&n.velocity), "{n:?}");
                assert!(0.0 <= n.start && n.start < n.end, "{n:?}");
                assert!(n.end <= total + 1e-9, "{n:?} after {total}");
            }
            // Decoded notes are already on the grid, so they survive another round exactly.
            assert_eq!(decode(&encode(&notes)), notes);
        }
    }

    #[test]
    fn midi_bytes_rejects_bad_program_and_writes_program_change() {
        assert!(matches!(
            midi_bytes(&[note(60, 100, 0.0, 1.0)], 128),
            Err(Error::InvalidRequest(_))
        ));
        let bytes = midi_bytes(&[note(60, 100, 0.0, 1.0)], 40).unwrap();
        let smf = Smf::parse(&bytes).unwrap();
        assert_eq!(smf.header.timing, Timing::Metrical(u15::new(480)));
        let track = &smf.tracks[0];
        assert!(track.iter().any(|e| e.kind == program(0, 40)));
        let note_off = |e: &&TrackEvent| {
            matches!(
                e.kind,
                TrackEventKind::Midi {
                    message: MidiMessage::NoteOff { .. },
                    ..
                }
            )
        };
        // 1 s after the note-on at 960 ticks per second.
        assert_eq!(track.iter().filter(note_off).count(), 1);
        let ticks: u32 = track.iter().map(|e| e.delta.as_int()).sum();
        assert_eq!(ticks, 960);
        assert_eq!(
            track.last().map(|e| e.kind),
            Some(meta(MetaMessage::EndOfTrack))
        );
        let (notes, info) = parse_midi(&bytes, path()).unwrap();
        assert_eq!(notes, vec![note(60, 100, 0.0, 1.0)]);
        assert_eq!(info.programs, vec![40]);
    }
}
