//! Renders notes to audio with a General MIDI SoundFont (`.sf2`) through rustysynth, so symbolic
//! models can be heard without an external synthesizer.

use std::ffi::OsString;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustysynth::{SoundFontError, Synthesizer, SynthesizerSettings};

use crate::data::midi::{grid_events, grid_notes, Note};
use crate::error::{Error, Result};

/// Debian packages that install a GM SoundFont where [`find_soundfont`] looks, best first; any
/// one of them is enough.
pub const SOUNDFONT_PACKAGES: &str = "fluid-soundfont-gm timgm6mb-soundfont csound-soundfont";

/// Environment variable naming the SoundFont to use instead of the standard ones.
pub const SOUNDFONT_ENV: &str = "TUNELAB_SOUNDFONT";

/// Standard locations, best sounding first (FluidR3 is 140 MB of samples, the others 4-6 MB);
/// the last is Debian's alternatives link to whichever GM SoundFont is installed.
pub const SOUNDFONT_PATHS: &[&str] = &[
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/sf_GMbank.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
];

/// Seconds rendered after the last note ends, so releases and reverb fade out.
pub const RELEASE_TAIL_SECONDS: f64 = 1.0;

/// rustysynth's master volume (0.5) leaves GM pianos quiet (a C-major chord peaks near 0.1). With
/// this gain a sixteen-note fortissimo cluster peaks near 0.8 with sf_GMbank and 0.6 with TimGM6mb,
/// so ordinary music never reaches the clamp.
const OUTPUT_GAIN: f32 = 1.5;

/// Samples rendered per synthesizer call between events.
const CHUNK: usize = 4096;

/// Longest render accepted; a whole MIDI file of a long work fits, a runaway request does not.
pub const MAX_RENDER_SECONDS: f64 = 3.0 * 3600.0;

/// Enough voices for sustained piano passages (a key can use two or more voices).
const MAX_POLYPHONY: usize = 128;

/// The SoundFont to render with: `$TUNELAB_SOUNDFONT` if set (it must exist), else the first of
/// [`SOUNDFONT_PATHS`] that exists.
pub fn find_soundfont() -> Result<PathBuf> {
    choose_soundfont(std::env::var_os(SOUNDFONT_ENV), SOUNDFONT_PATHS)
}

/// [`find_soundfont`] with the environment and the standard paths passed in, so it can be tested
/// without touching the process environment.
fn choose_soundfont(env: Option<OsString>, candidates: &[&str]) -> Result<PathBuf> {
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if path.is_file() {
            return Ok(path);
        }
        return Err(Error::MissingFile {
            path,
            what: format!("the SoundFont named by {SOUNDFONT_ENV}"),
        });
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingFile {
            path: candidates.first().map(PathBuf::from).unwrap_or_default(),
            what: format!(
                "no General MIDI SoundFont found in {}; install one with \
                 `sudo apt-get install fluid-soundfont-gm` (best, 140 MB) or \
                 `sudo apt-get install csound-soundfont` (4 MB), or choose any .sf2 file with \
                 {SOUNDFONT_ENV} or the file picker",
                candidates.join(", ")
            ),
        })
}

/// A loaded SoundFont; cheap to clone (the samples are shared).
#[derive(Debug, Clone)]
pub struct SoundFont {
    inner: Arc<rustysynth::SoundFont>,
    path: PathBuf,
}

impl SoundFont {
    /// Loads an `.sf2` file. Compressed `.sf3` files are refused with a hint to convert them,
    /// because rustysynth cannot decode their Ogg Vorbis samples.
    pub fn load(path: &Path) -> Result<Self> {
        let sf3 = || Error::Unsupported {
            path: path.to_path_buf(),
            what: "a compressed .sf3 SoundFont (convert it to .sf2, e.g. with Polyphone)".into(),
        };
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("sf3"))
        {
            return Err(sf3());
        }
        let file = std::fs::File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::MissingFile {
                    path: path.to_path_buf(),
                    what: "SoundFont file".into(),
                }
            } else {
                Error::io(path, e)
            }
        })?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut head = Vec::with_capacity(HEAD_BYTES);
        (&mut reader)
            .take(HEAD_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(path, e))?;
        if sf_major_version(&head) == Some(3) {
            return Err(sf3());
        }
        let mut whole = head.as_slice().chain(reader);
        let inner = rustysynth::SoundFont::new(&mut whole).map_err(|e| match e {
            SoundFontError::UnsupportedSampleFormat => sf3(),
            SoundFontError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                Error::bad_file(path, "not a SoundFont: the file ends early")
            }
            other => Error::bad_file(path, format!("not a usable SoundFont: {other}")),
        })?;
        Ok(Self {
            inner: Arc::new(inner),
            path: path.to_path_buf(),
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How much of the file is read to find the version chunk; it sits near the start of the INFO
/// list, right after the 24-byte RIFF and LIST headers.
const HEAD_BYTES: usize = 4096;

/// Major version from the `ifil` chunk of a RIFF `sfbk` file (3 means compressed samples).
fn sf_major_version(head: &[u8]) -> Option<u16> {
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"sfbk" {
        return None;
    }
    let at = head.windows(4).position(|w| w == b"ifil")?;
    let bytes = head.get(at + 8..at + 10)?;
    Some(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// Renders `notes` with GM `program` (0-based) on channel 0 to mono `f32` samples in [-1, 1]:
/// from time 0 to the last note's end plus [`RELEASE_TAIL_SECONDS`]. Events take effect on the
/// synthesizer's 64-sample block grid (under 1.5 ms at 44.1 kHz). No notes gives the silent tail
/// alone. Deterministic.
pub fn render(sf: &SoundFont, notes: &[Note], program: u8, sample_rate: u32) -> Result<Vec<f32>> {
    if program > 127 {
        return Err(Error::InvalidRequest(format!(
            "MIDI program {program} is outside 0..=127"
        )));
    }
    let rate = i32::try_from(sample_rate)
        .ok()
        .filter(|r| (16_000..=192_000).contains(r))
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "sample rate {sample_rate} Hz is outside 16000..=192000"
            ))
        })?;
    let mut settings = SynthesizerSettings::new(rate);
    settings.maximum_polyphony = MAX_POLYPHONY;
    let mut synth = Synthesizer::new(&sf.inner, &settings)
        .map_err(|e| Error::InvalidRequest(format!("synthesizer settings: {e}")))?;
    synth.process_midi_message(0, 0xC0, i32::from(program), 0);

    let events = grid_events(&grid_notes(notes, f64::from(sample_rate)));
    let last = events.last().map_or(0, |e| e.0);
    let total = last + (RELEASE_TAIL_SECONDS * f64::from(sample_rate)).round() as u64;
    if total as f64 > MAX_RENDER_SECONDS * f64::from(sample_rate) {
        return Err(Error::InvalidRequest(format!(
            "{:.0} s of audio is too long to render (the limit is {MAX_RENDER_SECONDS:.0} s)",
            total as f64 / f64::from(sample_rate)
        )));
    }
    let total = usize::try_from(total)
        .map_err(|_| Error::InvalidRequest("performance too long to render".into()))?;

    let mut out = Vec::with_capacity(total);
    // The synthesizer renders stereo; mixing down chunk by chunk keeps only the mono output.
    let mut left = vec![0f32; CHUNK];
    let mut right = vec![0f32; CHUNK];
    let mut render_until = |synth: &mut Synthesizer, out: &mut Vec<f32>, until: usize| {
        while out.len() < until {
            let n = (until - out.len()).min(CHUNK);
            synth.render(&mut left[..n], &mut right[..n]);
            out.extend(
                left[..n]
                    .iter()
                    .zip(&right[..n])
                    .map(|(l, r)| ((l + r) * 0.5 * OUTPUT_GAIN).clamp(-1.0, 1.0)),
            );
        }
    };
    for (at, on, pitch, velocity) in events {
        let at = usize::try_from(at).unwrap_or(total).min(total);
        render_until(&mut synth, &mut out, at);
        if on {
            synth.note_on(0, i32::from(pitch), i32::from(velocity));
        } else {
            synth.note_off(0, i32::from(pitch));
        }
    }
    render_until(&mut synth, &mut out, total);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 22_050;

    fn soundfont() -> SoundFont {
        let path = find_soundfont().unwrap();
        SoundFont::load(&path).unwrap()
    }

    fn note(pitch: u8, start: f64, end: f64) -> Note {
        Note {
            pitch,
            velocity: 90,
            start,
            end,
        }
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    fn peak(x: &[f32]) -> f32 {
        x.iter().fold(0.0, |m, &v| m.max(v.abs()))
    }

    #[test]
    fn melody_is_audible_with_expected_length() {
        let sf = soundfont();
        let melody = [
            note(60, 0.0, 0.3),
            note(62, 0.3, 0.6),
            note(64, 0.6, 1.0),
            note(48, 0.0, 1.0),
        ];
        let audio = render(&sf, &melody, 0, RATE).unwrap();
        assert_eq!(
            audio.len(),
            ((1.0 + RELEASE_TAIL_SECONDS) * f64::from(RATE)) as usize
        );
        let playing = &audio[..RATE as usize];
        assert!(rms(playing) > 0.005, "rms {}", rms(playing));
        assert!(peak(&audio) <= 1.0);
        // The release tail decays: its last 0.2 s is far quieter than the notes.
        assert!(rms(&audio[audio.len() - (RATE as usize / 5)..]) < rms(playing) / 10.0);
        assert_eq!(
            render(&sf, &melody, 0, RATE).unwrap(),
            audio,
            "deterministic"
        );
    }

    #[test]
    fn silence_before_the_first_note() {
        let sf = soundfont();
        let audio = render(&sf, &[note(67, 1.0, 1.5)], 0, RATE).unwrap();
        let half = RATE as usize / 2;
        assert!(peak(&audio[..half]) < 1e-6, "peak {}", peak(&audio[..half]));
        let second = RATE as usize;
        assert!(rms(&audio[second..second + half]) > 0.002);
    }

    #[test]
    fn dense_chord_does_not_clip() {
        let sf = soundfont();
        let chord: Vec<Note> = [36, 43, 48, 52, 55, 60, 64, 67, 72, 76]
            .iter()
            .map(|&p| Note {
                velocity: 127,
                ..note(p, 0.0, 1.0)
            })
            .collect();
        let audio = render(&sf, &chord, 0, RATE).unwrap();
        assert!(peak(&audio) < 1.0, "peak {}", peak(&audio));
        assert!(peak(&audio) > 0.1, "peak {}", peak(&audio));
    }

    #[test]
    fn no_notes_renders_the_tail_only() {
        let audio = render(&soundfont(), &[], 0, RATE).unwrap();
        assert_eq!(audio.len(), RATE as usize);
        assert!(audio.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn long_renders_are_refused() {
        let err = render(&soundfont(), &[note(60, 0.0, 4.0 * 3600.0)], 0, RATE).unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
    }

    #[test]
    fn bad_requests_are_refused() {
        let sf = soundfont();
        let notes = [note(60, 0.0, 0.5)];
        assert!(matches!(
            render(&sf, &notes, 128, RATE),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            render(&sf, &notes, 0, 8_000),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn sf3_is_unsupported() {
        let err = SoundFont::load(Path::new("/fonts/MuseScore_General.sf3")).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("/fonts/MuseScore_General.sf3") && text.contains(".sf3"),
            "{text}"
        );
        assert!(text.contains("convert it to .sf2"), "{text}");

        // An .sf3 renamed to .sf2 is caught by its version chunk.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("renamed.sf2");
        let mut bytes = b"RIFF\0\0\0\0sfbkLIST\0\0\0\0INFOifil\x04\0\0\0".to_vec();
        bytes.extend_from_slice(&[3, 0, 1, 0]);
        std::fs::write(&path, bytes).unwrap();
        let err = SoundFont::load(&path).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    }

    #[test]
    fn missing_and_garbage_files_name_the_path() {
        let err = SoundFont::load(Path::new("/nowhere/piano.sf2")).unwrap_err();
        assert!(matches!(err, Error::MissingFile { .. }), "{err}");
        assert!(err.to_string().contains("/nowhere/piano.sf2"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.sf2");
        std::fs::write(&garbage, b"definitely not a soundfont").unwrap();
        let text = SoundFont::load(&garbage).unwrap_err().to_string();
        assert!(
            text.contains("garbage.sf2") && text.contains("RIFF"),
            "{text}"
        );

        let cut = dir.path().join("cut.sf2");
        let real = std::fs::read(find_soundfont().unwrap()).unwrap();
        std::fs::write(&cut, &real[..5000]).unwrap();
        let text = SoundFont::load(&cut).unwrap_err().to_string();
        assert!(text.contains("cut.sf2"), "{text}");
    }

    #[test]
    fn choose_soundfont_order_and_messages() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.sf2");
        let b = dir.path().join("b.sf2");
        std::fs::write(&b, b"x").unwrap();
        let (a_str, b_str) = (a.to_string_lossy(), b.to_string_lossy());
        let candidates = [a_str.as_ref(), b_str.as_ref()];
        assert_eq!(choose_soundfont(None, &candidates).unwrap(), b);
        assert_eq!(
            choose_soundfont(Some(OsString::new()), &candidates).unwrap(),
            b,
            "an empty variable counts as unset"
        );
        std::fs::write(&a, b"x").unwrap();
        assert_eq!(choose_soundfont(None, &candidates).unwrap(), a);
        assert_eq!(
            choose_soundfont(Some(b.clone().into_os_string()), &candidates).unwrap(),
            b
        );

        let err = choose_soundfont(Some("/no/such/font.sf2".into()), &candidates).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/no/such/font.sf2") && text.contains(SOUNDFONT_ENV),
            "{text}"
        );

        let err = choose_soundfont(None, &["/no/such/one.sf2"]).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::MissingFile { .. }), "{text}");
        assert!(text.contains("sudo apt-get install"), "{text}");
        assert!(
            text.contains(SOUNDFONT_ENV) && text.contains("file picker"),
            "{text}"
        );
    }

    /// The only test that touches the process environment: it points TUNELAB_SOUNDFONT at the
    /// font found anyway, spelled differently, so tests running beside it still load that font.
    #[test]
    fn find_soundfont_honours_the_environment() {
        let found = find_soundfont().unwrap();
        let (Some(dir), Some(name)) = (found.parent(), found.file_name()) else {
            panic!("odd path {found:?}");
        };
        let respelled = dir.join(".").join(name);
        std::env::set_var(SOUNDFONT_ENV, &respelled);
        let chosen = find_soundfont();
        std::env::remove_var(SOUNDFONT_ENV);
        assert_eq!(chosen.unwrap().as_os_str(), respelled.as_os_str());
    }

    #[test]
    fn version_sniffing() {
        assert_eq!(sf_major_version(b"RIFF\0\0\0\0sfbk"), None);
        assert_eq!(
            sf_major_version(b"RIFX\0\0\0\0sfbkifil\x04\0\0\0\x03\0"),
            None
        );
        assert_eq!(
            sf_major_version(b"RIFF\0\0\0\0sfbkLIST\0\0\0\0INFOifil\x04\0\0\0\x02\0\x01\0"),
            Some(2)
        );
        let real = std::fs::read(find_soundfont().unwrap()).unwrap();
        assert_eq!(sf_major_version(&real[..HEAD_BYTES]), Some(2));
    }
}
