//! When to start playing a clip that is still being generated. Starting at the first sample
//! makes a slower-than-real-time generation stall again and again; waiting for the whole clip
//! is what streaming is meant to avoid. The plan starts playback as soon as what is buffered
//! covers the rest at the generation speed measured so far, so the playhead never catches up
//! with generation: immediately when generating faster than real time.
//!
//! With `T` seconds of audio in all, `P` produced and a measured speed of `r` seconds of audio
//! per second of wall time, starting now plays the sample at `a` (> `P`) at `now + a` and has
//! it generated at `now + (a − P) / r`; playback never waits when `P ≥ T · (1 − r)`. The plan
//! asks for that with a safety factor and a small margin, because the speed is an estimate.

use std::time::Instant;

/// How far the buffered audio must cover the estimate (the speed varies from step to step).
const SAFETY: f64 = 1.15;
/// Audio buffered before any start, in seconds: a device needs a few blocks to begin.
const MARGIN_SECONDS: f64 = 0.25;
/// Audio seconds over which the speed must be measured before it is trusted (without a prior).
const MEASURE_SECONDS: f64 = 0.4;

/// The start decision for one streamed clip.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    total_seconds: f64,
    /// Audio seconds per wall second known before this clip (the last clip's), if any.
    prior_speed: Option<f64>,
    /// The first chunk: when it came and how much audio it held. The speed is measured from
    /// it on, so that the model's start-up (text encoding, the first window's lookahead) does
    /// not count as slowness.
    first: Option<(Instant, f64)>,
    produced_seconds: f64,
    started: bool,
}

impl StreamPlan {
    /// A clip of `total_seconds`; `prior_speed` (audio seconds per wall second) lets the first
    /// chunk start playback when the last generation was fast enough.
    pub fn new(total_seconds: f64, prior_speed: Option<f64>) -> Self {
        Self {
            total_seconds: total_seconds.max(0.0),
            prior_speed: prior_speed.filter(|s| s.is_finite() && *s > 0.0),
            first: None,
            produced_seconds: 0.0,
            started: false,
        }
    }

    /// Records `seconds` more audio produced at `now`; true once playback should start (and
    /// from then on).
    pub fn produced(&mut self, seconds: f64, now: Instant) -> bool {
        if !seconds.is_finite() || seconds < 0.0 {
            return self.started;
        }
        self.produced_seconds += seconds;
        if self.first.is_none() {
            self.first = Some((now, self.produced_seconds));
        }
        if !self.started {
            self.started = self.ready(now);
        }
        self.started
    }

    /// Everything is produced: start if not started.
    pub fn finished(&mut self) -> bool {
        self.started = true;
        true
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// The generation speed measured since the first chunk (audio seconds per wall second),
    /// once it spans enough audio to be trusted.
    pub fn measured_speed(&self, now: Instant) -> Option<f64> {
        let (t0, p0) = self.first?;
        let audio = self.produced_seconds - p0;
        let wall = now.saturating_duration_since(t0).as_secs_f64();
        (audio >= MEASURE_SECONDS && wall > 0.0).then(|| audio / wall)
    }

    /// The audio that must be buffered before starting, at `speed`.
    pub fn needed_seconds(&self, speed: f64) -> f64 {
        let behind = (self.total_seconds * (1.0 - speed)).max(0.0);
        (behind * SAFETY + MARGIN_SECONDS).min(self.total_seconds)
    }

    fn ready(&self, now: Instant) -> bool {
        if self.produced_seconds >= self.total_seconds {
            return true;
        }
        match self.measured_speed(now).or(self.prior_speed) {
            Some(speed) => self.produced_seconds >= self.needed_seconds(speed),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Feeds chunks of `chunk` seconds every `every` of wall time; returns the audio buffered
    /// when playback started, and whether playing from then at 1× ever overtook generation.
    fn simulate(total: f64, chunk: f64, every: f64, prior: Option<f64>) -> (f64, bool) {
        let t0 = Instant::now();
        let mut plan = StreamPlan::new(total, prior);
        let mut produced = 0.0;
        let mut start: Option<(f64, f64)> = None;
        let mut stalled = false;
        let mut k = 0;
        while produced < total - 1e-9 {
            k += 1;
            let wall = k as f64 * every;
            let now = t0 + Duration::from_secs_f64(wall);
            let before = produced;
            produced = (produced + chunk).min(total);
            // Playing since `s` with `p0` buffered: the playhead is at (wall − s); the chunk
            // that comes now starts at `before`, so playback waited if the playhead passed it.
            if let Some((s, _)) = start {
                if wall - s > before + 1e-9 {
                    stalled = true;
                }
            }
            if start.is_none() && plan.produced(produced - before, now) {
                start = Some((wall, produced));
            }
        }
        plan.finished();
        (start.map_or(total, |s| s.1), stalled)
    }

    #[test]
    fn faster_than_real_time_starts_at_once_after_measuring() {
        // 0.2 s of audio every 0.1 s: twice real time.
        let (buffered, stalled) = simulate(10.0, 0.2, 0.1, None);
        assert!(!stalled);
        assert!(
            buffered <= MEASURE_SECONDS + 0.2 + MARGIN_SECONDS + 1e-9,
            "started after {buffered} s"
        );
        // With a prior speed the first chunk suffices.
        let (buffered, stalled) = simulate(10.0, 0.4, 0.1, Some(2.0));
        assert!(!stalled);
        assert!((buffered - 0.4).abs() < 1e-9, "started after {buffered} s");
    }

    #[test]
    fn slower_than_real_time_waits_just_long_enough_not_to_stall() {
        for speed in [0.25, 0.5, 0.9] {
            let (buffered, stalled) = simulate(10.0, speed * 0.02, 0.02, None);
            assert!(
                !stalled,
                "speed {speed}: playback caught up with generation"
            );
            let bound = 10.0 * (1.0 - speed);
            assert!(
                buffered >= bound && buffered <= bound * SAFETY + MARGIN_SECONDS + 0.05,
                "speed {speed}: started after {buffered} s, needs {bound}"
            );
        }
    }

    #[test]
    fn a_clip_that_is_all_there_starts_and_bad_amounts_are_ignored() {
        let now = Instant::now();
        let mut plan = StreamPlan::new(1.0, None);
        assert!(!plan.produced(f64::NAN, now));
        assert!(!plan.produced(-3.0, now));
        assert!(!plan.produced(0.5, now));
        assert!(plan.produced(0.5, now), "all of it is there");
        let mut empty = StreamPlan::new(0.0, Some(f64::INFINITY));
        assert!(empty.produced(0.0, now));
    }
}
