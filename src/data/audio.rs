//! Audio files in and out: any WAV/FLAC/MP3/OGG (symphonia) → mono f32 at the model's rate
//! (through [`crate::dsp::resample`]); WAV out (hound), written atomically.

use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::dsp::resample;
use crate::error::{Error, Result};
use crate::util::atomic_write;

/// Decoded audio, channels interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub samples: Vec<f32>,
    pub channels: usize,
    pub sample_rate: u32,
}

fn audio_err(path: &Path, problem: impl Into<String>) -> Error {
    Error::Audio {
        path: path.into(),
        problem: problem.into(),
    }
}

/// Decodes a whole file (WAV, FLAC, MP3, OGG/Vorbis).
pub fn decode_file(path: &Path) -> Result<Decoded> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if file.metadata().map_err(|e| Error::io(path, e))?.len() == 0 {
        return Err(audio_err(path, "the file is empty (0 bytes)"));
    }
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            // Gapless: drop the encoder delay and end padding that MP3 (LAME/Xing header) and
            // Vorbis (granule positions) declare, so a file decodes to its source's samples, in
            // time with it, rather than ~25 ms late and up to a frame too long.
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|e| audio_err(path, format!("not a supported audio file ({e})")))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| audio_err(path, "no audio track"))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| audio_err(path, format!("unsupported codec ({e})")))?;
    let mut samples = Vec::new();
    let mut channels = track.codec_params.channels.map(|c| c.count()).unwrap_or(0);
    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(audio_err(path, format!("read error: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = *buf.spec();
                channels = spec.channels.count();
                sample_rate = spec.rate;
                let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
                sb.copy_interleaved_ref(buf);
                samples.extend_from_slice(sb.samples());
            }
            // A corrupt packet is skipped, as players do.
            Err(SymError::DecodeError(_)) => continue,
            Err(e) => return Err(audio_err(path, format!("decode error: {e}"))),
        }
    }
    if samples.is_empty() || channels == 0 || sample_rate == 0 {
        return Err(audio_err(path, "contains no audio samples"));
    }
    // A damaged float file can hold NaN or ±∞: nothing downstream (resampling, loudness,
    // EnCodec) can use them, and rubato's FFT resampler panics on them.
    if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
        return Err(audio_err(
            path,
            format!(
                "sample {} of channel {} is {} (the file is damaged)",
                i / channels,
                i % channels,
                samples[i]
            ),
        ));
    }
    Ok(Decoded {
        samples,
        channels,
        sample_rate,
    })
}

/// Averages interleaved channels to mono.
pub fn to_mono(samples: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return samples.to_vec();
    }
    samples
        .chunks_exact(channels)
        .map(|f| f.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Any audio file → mono f32 at `rate`.
pub fn load_mono(path: &Path, rate: u32) -> Result<Vec<f32>> {
    let d = decode_file(path)?;
    let mono = to_mono(&d.samples, d.channels);
    resample(&mono, d.sample_rate, rate)
}

/// 16-bit PCM WAV bytes (mono); samples are clipped to [-1, 1].
pub fn wav_bytes(samples: &[f32], rate: u32) -> Result<Vec<u8>> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::with_capacity(samples.len() * 2 + 44));
    {
        let mut w = hound::WavWriter::new(&mut cur, spec)
            .map_err(|e| Error::InvalidRequest(format!("wav: {e}")))?;
        for s in samples {
            let v = (s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16;
            w.write_sample(v)
                .map_err(|e| Error::InvalidRequest(format!("wav: {e}")))?;
        }
        w.finalize()
            .map_err(|e| Error::InvalidRequest(format!("wav: {e}")))?;
    }
    Ok(cur.into_inner())
}

/// Writes a mono 16-bit WAV atomically.
pub fn write_wav(path: &Path, samples: &[f32], rate: u32) -> Result<()> {
    atomic_write(path, &wav_bytes(samples, rate)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sine;

    #[test]
    fn wav_roundtrip_stereo_44k_to_mono_32k() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let s = sine(440.0, 44_100, 0.5);
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for v in &s {
            let i = (v * 8_388_607.0) as i32;
            w.write_sample(i).unwrap();
            w.write_sample(i).unwrap();
        }
        w.finalize().unwrap();
        let m = load_mono(&p, 32_000).unwrap();
        assert_eq!(m.len(), 16_000);
        // Compare with the ideal 440 Hz sine at 32 kHz away from the edges.
        let want = sine(440.0, 32_000, 0.5);
        let err = m[1000..15000]
            .iter()
            .zip(&want[1000..15000])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-2, "resampling error {err}");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.mp3");
        std::fs::write(&p, b"not audio at all").unwrap();
        let e = load_mono(&p, 32_000).unwrap_err().to_string();
        assert!(e.contains("x.mp3"), "{e}");
        std::fs::write(dir.path().join("empty.wav"), b"").unwrap();
        let e = load_mono(&dir.path().join("empty.wav"), 32_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty.wav: audio: the file is empty"), "{e}");
        let e = load_mono(&dir.path().join("missing.wav"), 32_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.wav"), "{e}");
    }

    #[test]
    fn write_wav_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.wav");
        write_wav(&p, &sine(220.0, 32_000, 0.1), 32_000).unwrap();
        let r = hound::WavReader::open(&p).unwrap();
        assert_eq!(r.spec().sample_rate, 32_000);
        assert_eq!(r.len(), 3200);
    }
}
