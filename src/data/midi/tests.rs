//! Tests of MIDI ↔ events: parsing (formats, tempo maps, SMPTE, the sustain pedal), encoding
//! and decoding, round trips.

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
