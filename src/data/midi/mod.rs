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
mod tests;
