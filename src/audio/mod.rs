//! Audio output behind a trait (as kira's backends): the studio plays through [`AudioSink`];
//! `rodio`/cpal implement it with feature `audio`, and [`NullSink`] (no device, tests) keeps a
//! wall-clock playhead so everything above it behaves the same without sound. The device sink
//! resamples to the device's rate (rodio's mixer) and fades each start in over 10 ms, so
//! switching clips at the playhead does not click.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Something that plays one mono clip at a time.
pub trait AudioSink {
    /// Plays `samples` (mono, `rate` Hz) from `from`, replacing what was playing.
    fn play(&mut self, samples: Arc<Vec<f32>>, rate: u32, from: Duration) -> Result<(), String>;
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
}

impl AudioSink for NullSink {
    fn play(&mut self, samples: Arc<Vec<f32>>, rate: u32, from: Duration) -> Result<(), String> {
        self.length = Duration::from_secs_f64(samples.len() as f64 / rate.max(1) as f64);
        self.offset = from.min(self.length);
        self.started = Some(Instant::now());
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

#[cfg(feature = "audio")]
mod device {
    use super::*;
    use rodio::Source;

    /// The default output device through rodio (cpal underneath).
    pub struct DeviceSink {
        stream: rodio::OutputStream,
        sink: Option<rodio::Sink>,
        /// Where the current clip started playing (skipped samples are not counted by rodio).
        offset: Duration,
    }

    impl DeviceSink {
        pub fn open() -> Result<Self, String> {
            let mut stream = rodio::OutputStreamBuilder::open_default_stream()
                .map_err(|e| format!("no audio output device: {e}"))?;
            stream.log_on_drop(false);
            Ok(Self {
                stream,
                sink: None,
                offset: Duration::ZERO,
            })
        }
    }

    impl AudioSink for DeviceSink {
        fn play(
            &mut self,
            samples: Arc<Vec<f32>>,
            rate: u32,
            from: Duration,
        ) -> Result<(), String> {
            if let Some(s) = self.sink.take() {
                s.stop();
            }
            let sink = rodio::Sink::connect_new(self.stream.mixer());
            let src = rodio::buffer::SamplesBuffer::new(1, rate, samples.as_ref().clone())
                .skip_duration(from)
                .fade_in(Duration::from_millis(10));
            sink.append(src);
            self.sink = Some(sink);
            self.offset = from;
            Ok(())
        }
        fn pause(&mut self) {
            if let Some(s) = &self.sink {
                s.pause();
            }
        }
        fn resume(&mut self) {
            if let Some(s) = &self.sink {
                s.play();
            }
        }
        fn stop(&mut self) {
            if let Some(s) = self.sink.take() {
                s.stop();
            }
        }
        fn position(&self) -> Duration {
            self.sink
                .as_ref()
                .map(|s| self.offset + s.get_pos())
                .unwrap_or_default()
        }
        fn is_playing(&self) -> bool {
            self.sink
                .as_ref()
                .is_some_and(|s| !s.is_paused() && !s.empty())
        }
    }
}

#[cfg(feature = "audio")]
pub use device::DeviceSink;

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
}
