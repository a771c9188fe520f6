//! The clip of a running generation, heard while it is generated: the engine's final audio
//! (`Event::Audio`) is buffered, handed to the panel's [`Player`] once [`StreamPlan`] says
//! playback will not catch up with generation, and shown as a growing waveform. Only the first
//! clip of a batch streams (the next ones would cut it off); the complete clip, its file and
//! its history entry come with the job's `Done` as before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audio::{Player, StreamPlan};
use crate::engine::JobId;

/// How often the growing waveform is copied for drawing.
const SHOW_EVERY: Duration = Duration::from_millis(100);

pub struct Streaming {
    pub job: JobId,
    plan: StreamPlan,
    /// The clip's samples from the first chunk's start (an audio prompt is not replayed).
    first: Option<usize>,
    buffer: Vec<f32>,
    /// How much of `buffer` the player has.
    sent: usize,
    rate: u32,
    /// When the first chunk came, for the speed the next stream starts with.
    first_at: Option<Instant>,
    shown_at: Option<Instant>,
}

impl Streaming {
    /// A stream for `job`, about `seconds` long; `prior_speed` is the last stream's measured
    /// speed (audio seconds per wall second).
    pub fn new(job: JobId, seconds: f64, prior_speed: Option<f64>) -> Self {
        Self {
            job,
            plan: StreamPlan::new(seconds, prior_speed),
            first: None,
            buffer: Vec::new(),
            sent: 0,
            rate: 0,
            first_at: None,
            shown_at: None,
        }
    }

    /// A chunk of the job's final audio. Returns the waveform to show when it is time to
    /// redraw it. A chunk out of order is an engine fault: it ends the stream's playback (the
    /// clip still comes whole with `Done`).
    pub fn chunk(
        &mut self,
        player: &Player,
        start: usize,
        samples: &[f32],
        rate: u32,
    ) -> Result<Option<Arc<Vec<f32>>>, String> {
        let now = Instant::now();
        let first = *self.first.get_or_insert(start);
        self.first_at.get_or_insert(now);
        if start != first + self.buffer.len() || (self.rate != 0 && rate != self.rate) {
            return Err(format!(
                "audio chunk at sample {start} after {} (a gap or an overlap)",
                first + self.buffer.len()
            ));
        }
        self.rate = rate;
        self.buffer.extend_from_slice(samples);
        let seconds = samples.len() as f64 / rate.max(1) as f64;
        if self.plan.produced(seconds, now) {
            self.send(player)?;
        }
        let show = self
            .shown_at
            .is_none_or(|t| now.duration_since(t) >= SHOW_EVERY);
        Ok(show.then(|| {
            self.shown_at = Some(now);
            Arc::new(self.buffer.clone())
        }))
    }

    /// Hands the player what it does not have yet, starting playback the first time.
    fn send(&mut self, player: &Player) -> Result<(), String> {
        if self.sent == 0 {
            player.play(Arc::new(self.buffer.clone()), self.rate, Duration::ZERO)?;
        } else if self.sent < self.buffer.len() {
            player.append(&self.buffer[self.sent..])?;
        }
        self.sent = self.buffer.len();
        Ok(())
    }

    /// The job is done with `clip`: the part not streamed is played, the player is told the
    /// whole clip is the panel's (so Play / Pause resumes it), and the speed measured is
    /// returned for the next stream. Nothing is played when nothing was streamed.
    pub fn finish(mut self, player: &Player, clip: &Arc<Vec<f32>>, rate: u32) -> Option<f64> {
        let first_at = self.first_at?;
        let first = self.first.unwrap_or(0).min(clip.len());
        let have = first + self.buffer.len();
        if have < clip.len() {
            self.buffer.extend_from_slice(&clip[have..]);
        }
        self.rate = rate;
        let speed = self.plan.measured_speed(Instant::now());
        // Playback that never started (a very slow generation) starts now.
        self.plan.finished();
        if self.send(player).is_ok() {
            player.stream_finished(clip.clone(), rate);
        }
        speed.or_else(|| {
            let wall = first_at.elapsed().as_secs_f64();
            (wall > 0.0).then(|| self.buffer.len() as f64 / rate.max(1) as f64 / wall)
        })
    }

    /// Cancelled: playback of this stream stops.
    pub fn cancel(self, player: &Player) {
        if self.sent > 0 {
            player.stop();
        }
    }
}
