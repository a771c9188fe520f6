//! Audio output behind a trait (as kira's backends): the studio plays through [`AudioSink`];
//! the real device (rodio on cpal, feature `audio`) lives in `device.rs`, and [`NullSink`] (no
//! device: tests, headless builds) keeps a wall-clock playhead so everything above it behaves
//! the same without sound. The device is opened once ([`default_sink`]) and shared by every
//! panel through [`SharedPlayer`] (`shared.rs`): one stream, one clip at a time, and each
//! panel's handle knows whether the clip playing is its own. A clip still being generated is
//! played as a stream (`play` what exists, `append` the rest as it comes); [`StreamPlan`]
//! (`stream.rs`) decides when to start so that playback does not catch up with generation.

#[cfg(feature = "audio")]
mod device;
mod shared;
mod stream;

#[cfg(feature = "audio")]
pub use device::DeviceSink;
pub use shared::{Player, SharedPlayer};
pub use stream::StreamPlan;

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Something that plays one mono clip at a time. Not `Send`: a device stream may be tied to
/// the thread that opened it (the UI thread).
pub trait AudioSink {
    /// Plays `samples` (mono, `rate` Hz) from `from`, replacing what was playing.
    fn play(&mut self, samples: Arc<Vec<f32>>, rate: u32, from: Duration) -> Result<(), String>;
    /// Appends `samples` to the clip last played (a clip still being generated: `play` what
    /// exists, then append as it comes). A sink that ran dry plays them as soon as they come,
    /// and its playhead counts clip time, not the wait.
    fn append(&mut self, samples: &[f32]) -> Result<(), String>;
    fn pause(&mut self);
    fn resume(&mut self);
    fn stop(&mut self);
    /// The playhead within the current clip.
    fn position(&self) -> Duration;
    fn is_playing(&self) -> bool;
}

/// No device: a playhead that advances with the clock while "playing".
#[derive(Debug, Default)]
pub struct NullSink {
    started: Option<Instant>,
    offset: Duration,
    length: Duration,
    rate: u32,
}

impl AudioSink for NullSink {
    fn play(&mut self, samples: Arc<Vec<f32>>, rate: u32, from: Duration) -> Result<(), String> {
        self.rate = rate.max(1);
        self.length = Duration::from_secs_f64(samples.len() as f64 / self.rate as f64);
        self.offset = from.min(self.length);
        self.started = Some(Instant::now());
        Ok(())
    }
    fn append(&mut self, samples: &[f32]) -> Result<(), String> {
        if self.started.is_some() && self.position() >= self.length {
            // Ran dry while playing: the playhead waited at the end and goes on from there.
            self.offset = self.length;
            self.started = Some(Instant::now());
        }
        self.length += Duration::from_secs_f64(samples.len() as f64 / self.rate.max(1) as f64);
        Ok(())
    }
    fn pause(&mut self) {
        self.offset = self.position();
        self.started = None;
    }
    fn resume(&mut self) {
        if self.started.is_none() && self.offset < self.length {
            self.started = Some(Instant::now());
        }
    }
    fn stop(&mut self) {
        self.started = None;
        self.offset = Duration::ZERO;
    }
    fn position(&self) -> Duration {
        let p = self.offset + self.started.map(|s| s.elapsed()).unwrap_or_default();
        p.min(self.length)
    }
    fn is_playing(&self) -> bool {
        self.started.is_some() && self.position() < self.length
    }
}

/// The device sink when there is one, else the null sink and a notice to show.
pub fn default_sink() -> (Box<dyn AudioSink>, Option<String>) {
    #[cfg(feature = "audio")]
    {
        match DeviceSink::open() {
            Ok(s) => (Box::new(s), None),
            Err(e) => (
                Box::new(NullSink::default()),
                Some(format!("{e}: playback is silent; WAV export still works.")),
            ),
        }
    }
    #[cfg(not(feature = "audio"))]
    {
        (
            Box::new(NullSink::default()),
            Some("built without the `audio` feature: playback is silent.".into()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_sink_keeps_a_playhead() {
        let mut s = NullSink::default();
        s.play(
            Arc::new(vec![0.0; 32_000]),
            32_000,
            Duration::from_millis(400),
        )
        .unwrap();
        assert!(s.is_playing());
        assert!(s.position() >= Duration::from_millis(400));
        s.pause();
        let p = s.position();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(s.position(), p);
        s.stop();
        assert_eq!(s.position(), Duration::ZERO);
        assert!(!s.is_playing());
    }

    #[test]
    fn a_null_sink_stream_that_ran_dry_goes_on_from_where_it_stopped() {
        let mut s = NullSink::default();
        s.play(Arc::new(vec![0.0; 10]), 1_000, Duration::ZERO)
            .unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(!s.is_playing(), "10 ms of audio ran out");
        assert_eq!(s.position(), Duration::from_millis(10));
        s.append(&[0.0; 1_000]).unwrap();
        assert!(s.is_playing(), "appended audio plays");
        let p = s.position();
        assert!(
            p >= Duration::from_millis(10) && p < Duration::from_millis(40),
            "the wait is not clip time: {p:?}"
        );
    }
}
