//! One output stream for the whole studio. The device is opened once and wrapped in a
//! [`SharedPlayer`]; every panel gets its own [`Player`] handle on it. A panel that starts
//! playback takes the stream over from whichever panel had it; the panel that lost it sees its
//! clip as stopped at the point where it was taken over (its playhead stays where the listener
//! left it) and may take the stream back with `resume`. The studio draws on one thread, so the
//! handles share the sink through `Rc<RefCell<…>>`; a device stream need not be `Send`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::{AudioSink, NullSink};

/// The one sink, and which handle's clip it holds.
struct Inner {
    sink: Box<dyn AudioSink>,
    owner: Option<usize>,
    /// Per handle (indexed by its id): what it last played and where it was left.
    slots: Vec<Slot>,
}

#[derive(Default)]
struct Slot {
    clip: Option<(Arc<Vec<f32>>, u32)>,
    /// The playhead when another handle took the stream over (or when it was paused there).
    parked: Duration,
}

/// The studio's audio output: hands out one [`Player`] per panel.
pub struct SharedPlayer {
    inner: Rc<RefCell<Inner>>,
}

impl SharedPlayer {
    /// Shares `sink` (the device, opened once; or the null sink).
    pub fn new(sink: Box<dyn AudioSink>) -> Self {
        Self {
            inner: Rc::new(RefCell::new(Inner {
                sink,
                owner: None,
                slots: Vec::new(),
            })),
        }
    }

    /// A new handle (one per panel).
    pub fn handle(&self) -> Player {
        let mut inner = self.inner.borrow_mut();
        inner.slots.push(Slot::default());
        Player {
            inner: self.inner.clone(),
            id: inner.slots.len() - 1,
        }
    }
}

/// A panel's view of the shared output: the same calls as [`AudioSink`], answered for this
/// panel's clip only.
pub struct Player {
    inner: Rc<RefCell<Inner>>,
    id: usize,
}

impl Player {
    /// A player with a silent sink of its own (a panel used alone, as in its tests).
    pub fn silent() -> Self {
        SharedPlayer::new(Box::new(NullSink::default())).handle()
    }

    /// Does the stream hold this panel's clip?
    pub fn owns(&self) -> bool {
        self.inner.borrow().owner == Some(self.id)
    }

    /// Plays `samples` (mono, `rate` Hz) from `from`, taking the stream over from another panel
    /// (whose playhead is kept where it was).
    pub fn play(&self, samples: Arc<Vec<f32>>, rate: u32, from: Duration) -> Result<(), String> {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        if let Some(other) = inner.owner.filter(|o| *o != self.id) {
            let at = inner.sink.position();
            if let Some(slot) = inner.slots.get_mut(other) {
                slot.parked = at;
            }
        }
        inner.owner = Some(self.id);
        if let Some(slot) = inner.slots.get_mut(self.id) {
            slot.clip = Some((samples.clone(), rate));
            slot.parked = Duration::ZERO;
        }
        inner.sink.play(samples, rate, from)
    }

    /// Appends to this panel's clip while it holds the stream (a clip still being generated);
    /// once another panel took the stream over, the listener has moved on and nothing is
    /// appended.
    pub fn append(&self, samples: &[f32]) -> Result<(), String> {
        if self.owns() {
            self.inner.borrow_mut().sink.append(samples)
        } else {
            Ok(())
        }
    }

    /// The whole clip of a stream that has ended, so that Play / Pause and `resume` treat it as
    /// this panel's clip (it replaces the part that was played when the stream started).
    pub fn stream_finished(&self, samples: Arc<Vec<f32>>, rate: u32) {
        if let Some(slot) = self.inner.borrow_mut().slots.get_mut(self.id) {
            slot.clip = Some((samples, rate));
        }
    }

    /// What a Play / Pause button does for `samples`: pauses this panel's clip while it plays;
    /// else resumes it from its playhead when `samples` is the clip left there part-way; else
    /// plays `samples` from the start.
    pub fn play_or_pause(&self, samples: Arc<Vec<f32>>, rate: u32) -> Result<(), String> {
        if self.is_playing() {
            self.pause();
            return Ok(());
        }
        let at = self.position().as_secs_f64();
        let seconds = samples.len() as f64 / rate.max(1) as f64;
        let left_here = self
            .inner
            .borrow()
            .slots
            .get(self.id)
            .and_then(|s| s.clip.as_ref())
            .is_some_and(|(clip, _)| Arc::ptr_eq(clip, &samples));
        if left_here && at > 0.0 && at < seconds - 0.01 {
            self.resume()
        } else {
            self.play(samples, rate, Duration::ZERO)
        }
    }

    /// Pauses this panel's clip (nothing when another panel has the stream).
    pub fn pause(&self) {
        if self.owns() {
            self.inner.borrow_mut().sink.pause();
        }
    }

    /// Resumes this panel's clip; when another panel took the stream over, takes it back and
    /// plays this panel's last clip from where it was left.
    pub fn resume(&self) -> Result<(), String> {
        if self.owns() {
            self.inner.borrow_mut().sink.resume();
            return Ok(());
        }
        let left = self
            .inner
            .borrow()
            .slots
            .get(self.id)
            .and_then(|s| s.clip.clone().map(|c| (c, s.parked)));
        match left {
            Some(((samples, rate), at)) => self.play(samples, rate, at),
            None => Ok(()),
        }
    }

    /// Stops this panel's clip and rewinds its playhead (another panel's clip plays on).
    pub fn stop(&self) {
        let owns = self.owns();
        let mut inner = self.inner.borrow_mut();
        if owns {
            inner.sink.stop();
        }
        if let Some(slot) = inner.slots.get_mut(self.id) {
            slot.parked = Duration::ZERO;
        }
    }

    /// This panel's playhead: the stream's while it holds this panel's clip, else where the clip
    /// was left.
    pub fn position(&self) -> Duration {
        let inner = self.inner.borrow();
        if inner.owner == Some(self.id) {
            inner.sink.position()
        } else {
            inner
                .slots
                .get(self.id)
                .map(|s| s.parked)
                .unwrap_or_default()
        }
    }

    /// Is this panel's clip playing now?
    pub fn is_playing(&self) -> bool {
        let inner = self.inner.borrow();
        inner.owner == Some(self.id) && inner.sink.is_playing()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The null sink, recording every `play` (clip length and start) it is asked for.
    struct Recording {
        sink: NullSink,
        plays: Rc<RefCell<Vec<(usize, Duration)>>>,
    }

    impl AudioSink for Recording {
        fn play(&mut self, s: Arc<Vec<f32>>, rate: u32, from: Duration) -> Result<(), String> {
            self.plays.borrow_mut().push((s.len(), from));
            self.sink.play(s, rate, from)
        }
        fn append(&mut self, s: &[f32]) -> Result<(), String> {
            self.plays.borrow_mut().push((s.len(), Duration::MAX));
            self.sink.append(s)
        }
        fn pause(&mut self) {
            self.sink.pause()
        }
        fn resume(&mut self) {
            self.sink.resume()
        }
        fn stop(&mut self) {
            self.sink.stop()
        }
        fn position(&self) -> Duration {
            self.sink.position()
        }
        fn is_playing(&self) -> bool {
            self.sink.is_playing()
        }
    }

    #[test]
    fn a_panel_starting_playback_claims_the_one_stream_from_another() {
        let plays = Rc::new(RefCell::new(Vec::new()));
        let shared = SharedPlayer::new(Box::new(Recording {
            sink: NullSink::default(),
            plays: plays.clone(),
        }));
        let (a, b) = (shared.handle(), shared.handle());
        let rate = 1_000;
        a.play(Arc::new(vec![0.0; 10_000]), rate, Duration::from_secs(2))
            .unwrap();
        assert!(a.is_playing() && a.owns());
        assert!(!b.is_playing() && !b.owns());
        assert_eq!(b.position(), Duration::ZERO);

        b.play(Arc::new(vec![0.0; 5_000]), rate, Duration::ZERO)
            .unwrap();
        assert!(b.is_playing(), "b has the stream");
        assert!(!a.is_playing(), "a was taken over");
        let left = a.position();
        assert!(
            left >= Duration::from_secs(2),
            "a's playhead is kept: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(a.position(), left, "and no longer moves");
        // What a does now leaves b's clip alone.
        a.pause();
        a.stop();
        assert!(b.is_playing());
        assert_eq!(a.position(), Duration::ZERO, "a's stop rewinds a");
        assert_eq!(
            plays.borrow().as_slice(),
            [(10_000, Duration::from_secs(2)), (5_000, Duration::ZERO)],
            "both clips went to the same sink"
        );

        // Taking the stream back resumes a's clip where a left it.
        b.pause();
        let b_left = b.position();
        a.play(Arc::new(vec![0.0; 10_000]), rate, Duration::from_secs(3))
            .unwrap();
        assert!(a.is_playing() && !b.is_playing());
        assert_eq!(b.position(), b_left, "b keeps its paused playhead");
        b.resume().unwrap();
        assert!(b.is_playing() && !a.is_playing());
        assert_eq!(plays.borrow().last(), Some(&(5_000, b_left)));
        assert!(b.position() >= b_left);
    }

    #[test]
    fn play_or_pause_resumes_the_same_clip_and_starts_another_from_zero() {
        let shared = SharedPlayer::new(Box::new(NullSink::default()));
        let (a, b) = (shared.handle(), shared.handle());
        let clip = Arc::new(vec![0.0; 10_000]);
        a.play(clip.clone(), 1_000, Duration::from_secs(4)).unwrap();
        a.play_or_pause(clip.clone(), 1_000).unwrap();
        assert!(!a.is_playing(), "a click while playing pauses");
        let at = a.position();
        a.play_or_pause(clip.clone(), 1_000).unwrap();
        assert!(a.is_playing() && a.position() >= at, "resumed where it was");
        // Taken over: the same clip picks up where it was left, another one starts at zero.
        b.play(Arc::new(vec![0.0; 100]), 1_000, Duration::ZERO)
            .unwrap();
        let left = a.position();
        a.play_or_pause(clip.clone(), 1_000).unwrap();
        assert!(a.is_playing() && a.position() >= left && left >= at);
        a.pause();
        a.play_or_pause(Arc::new(vec![0.0; 10_000]), 1_000).unwrap();
        assert!(
            a.position() < Duration::from_secs(1),
            "a new clip plays from the start"
        );
    }

    #[test]
    fn a_stream_is_appended_only_while_its_panel_holds_the_output() {
        let plays = Rc::new(RefCell::new(Vec::new()));
        let shared = SharedPlayer::new(Box::new(Recording {
            sink: NullSink::default(),
            plays: plays.clone(),
        }));
        let (a, b) = (shared.handle(), shared.handle());
        a.play(Arc::new(vec![0.0; 100]), 1_000, Duration::ZERO)
            .unwrap();
        a.append(&[0.0; 50]).unwrap();
        b.append(&[0.0; 7]).unwrap();
        assert_eq!(
            plays.borrow().as_slice(),
            [(100, Duration::ZERO), (50, Duration::MAX)],
            "a's part went to the sink, b holds nothing to append to"
        );
        b.play(Arc::new(vec![0.0; 10]), 1_000, Duration::ZERO)
            .unwrap();
        a.append(&[0.0; 30]).unwrap();
        assert_eq!(plays.borrow().len(), 3, "a lost the stream: not appended");
        // The whole clip becomes a's: Play resumes it where it was left.
        let whole = Arc::new(vec![0.0; 10_000]);
        a.stream_finished(whole.clone(), 1_000);
        a.play_or_pause(whole, 1_000).unwrap();
        assert!(a.is_playing());
        assert_eq!(plays.borrow().last().map(|p| p.0), Some(10_000));
    }

    #[test]
    fn resume_without_a_clip_does_nothing() {
        let shared = SharedPlayer::new(Box::new(NullSink::default()));
        let (a, b) = (shared.handle(), shared.handle());
        b.resume().unwrap();
        assert!(!b.owns() && !b.is_playing());
        a.play(Arc::new(vec![0.0; 100]), 100, Duration::ZERO)
            .unwrap();
        b.resume().unwrap();
        assert!(a.is_playing(), "b had nothing to take the stream back for");
    }
}
