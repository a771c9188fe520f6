//! The default output device through rodio (cpal underneath), behind feature `audio`: the only
//! file that names either crate. It resamples to the device's rate (rodio's mixer) and fades
//! each start in over 10 ms, so switching clips at the playhead does not click.

use std::sync::Arc;
use std::time::Duration;

use rodio::Source;

use super::AudioSink;

/// One output stream on the default device.
pub struct DeviceSink {
    stream: rodio::OutputStream,
    sink: Option<rodio::Sink>,
    /// Where the current clip started playing (skipped samples are not counted by rodio).
    offset: Duration,
    /// The clip's rate, for the parts appended to it.
    rate: u32,
    /// How long each source queued on the sink lasts: rodio's `get_pos` counts within the
    /// source playing, so the playhead adds the ones already played.
    queued: Vec<Duration>,
}

impl DeviceSink {
    /// Opens the default device's output stream.
    pub fn open() -> Result<Self, String> {
        let mut stream = rodio::OutputStreamBuilder::open_default_stream()
            .map_err(|e| format!("no audio output device: {e}"))?;
        stream.log_on_drop(false);
        Ok(Self {
            stream,
            sink: None,
            offset: Duration::ZERO,
            rate: 1,
            queued: Vec::new(),
        })
    }
}

impl AudioSink for DeviceSink {
    fn play(&mut self, samples: Arc<Vec<f32>>, rate: u32, from: Duration) -> Result<(), String> {
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
        self.rate = rate.max(1);
        let length = Duration::from_secs_f64(samples.len() as f64 / self.rate as f64);
        self.queued = vec![length.saturating_sub(from)];
        Ok(())
    }
    fn append(&mut self, samples: &[f32]) -> Result<(), String> {
        let Some(sink) = &self.sink else {
            return Err("nothing is playing to append to".into());
        };
        if samples.is_empty() {
            return Ok(());
        }
        sink.append(rodio::buffer::SamplesBuffer::new(
            1,
            self.rate,
            samples.to_vec(),
        ));
        self.queued.push(Duration::from_secs_f64(
            samples.len() as f64 / self.rate as f64,
        ));
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
            .map(|s| {
                let played = self.queued.len().saturating_sub(s.len());
                let done: Duration = self.queued.iter().take(played).sum();
                // A drained sink reports the last source's position as zero: count it whole.
                let current = if s.empty() {
                    Duration::ZERO
                } else {
                    s.get_pos()
                };
                self.offset + done + current
            })
            .unwrap_or_default()
    }
    fn is_playing(&self) -> bool {
        self.sink
            .as_ref()
            .is_some_and(|s| !s.is_paused() && !s.empty())
    }
}
