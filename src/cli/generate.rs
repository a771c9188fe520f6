//! `tunelab generate`: prompt → WAV (and optionally the codes as JSON), through the engine
//! worker; with a Music Transformer (a model folder or MIDI run): improv or primed → `.mid` and
//! its SoundFont rendering `.wav`. `--play` plays the clip while it is generated.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::device::DeviceArgs;
use crate::audio::{default_sink, AudioSink, StreamPlan};
use crate::data::audio::write_wav;
use crate::engine::{Command, EngineHandle, Event, JobOutput};
use crate::generate::midi::{prime_from_midi, MidiGenerateParams};
use crate::generate::GenerateParams;
use crate::models::musicgen::sampling::SamplingParams;
use crate::models::nn::WeightMode;
use crate::models::Family;
use crate::util::atomic_write;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A Hugging Face repo id (e.g. facebook/musicgen-small), a local model directory, or a
    /// tunelab training run (its weights on its base model).
    #[arg(long)]
    pub model: String,
    /// A LoRA adapter to use unmerged: a PEFT folder or a tunelab LoRA run.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Text description; empty for unconditional generation.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Seconds of audio (the audio prompt included).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Keep the k most likely tokens; 1 is greedy, 0 is no limit (default 250; MIDI: 0).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus threshold, 0 = off (default 0; MIDI: 0.95).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Classifier-free guidance; 1.0 disables it.
    #[arg(long, default_value_t = 3.0)]
    pub guidance_scale: f64,
    /// Audio to continue (WAV/FLAC/MP3/OGG).
    #[arg(long)]
    pub prompt_audio: Option<PathBuf>,
    /// Weight precision for inference: f32, q8, q4 or q4k.
    #[arg(long, default_value = "f32")]
    pub weights: WeightMode,
    /// Output file (MIDI: `X.mid` and `X.wav` are written for `--out X.mid` or `--out X`).
    #[arg(long)]
    pub out: PathBuf,
    /// MIDI: a piece to continue (its first `--prime-seconds`); without it, improv.
    #[arg(long)]
    pub prime: Option<PathBuf>,
    #[arg(long, default_value_t = 5.0)]
    pub prime_seconds: f64,
    /// MIDI: length in events instead of `--duration` seconds.
    #[arg(long)]
    pub events: Option<usize>,
    /// MIDI: General MIDI program of the output (0 = piano).
    #[arg(long, default_value_t = 0)]
    pub program: u8,
    /// MIDI: the SoundFont (.sf2) to render with (default: the first installed).
    #[arg(long)]
    pub soundfont: Option<PathBuf>,
    /// Also write the generated codes as JSON `[codebooks][frames]` (un-delayed).
    #[arg(long)]
    pub save_codes: Option<PathBuf>,
    /// Play while generating (MusicGen: as soon as enough is buffered that playback will not
    /// catch up with generation; MIDI: the rendered piece). The file is written either way,
    /// also without an audio device.
    #[arg(long)]
    pub play: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl GenerateArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel();
        let engine = EngineHandle::spawn(tx, Arc::new(|| {})).context("starting the engine")?;
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message("device");
        engine.send(Command::SetDevice {
            job: 0,
            device: self.device.device,
            precision: self.device.precision,
            tf32: self.device.tf32,
        });
        if let JobOutput::DeviceReady { device, precision } =
            wait(&rx, 0, &bar, &mut |_| {}).context("opening the device")?
        {
            bar.suspend(|| eprintln!("device: {device} · {precision}"));
        }
        bar.set_message("loading");
        engine.send(Command::LoadModel {
            job: 1,
            spec: self.model.clone(),
            weights: self.weights,
            adapter: self.adapter.clone(),
            checkpoint: None,
        });
        let loaded = wait(&rx, 1, &bar, &mut |_| {})
            .with_context(|| format!("loading model {}", self.model))?;
        if let JobOutput::ModelLoaded(info) = &loaded {
            if info.family == Family::Midi {
                return self.midi(&engine, &rx, &bar);
            }
        }
        let params = GenerateParams {
            prompt: self.prompt.clone(),
            duration: self.duration,
            seed: self.seed,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k.unwrap_or(250),
                top_p: self.top_p.unwrap_or(0.0),
            },
            guidance_scale: self.guidance_scale,
            prompt_audio: self.prompt_audio.clone(),
        };
        bar.set_message("generating");
        bar.set_position(0);
        let mut playback = self
            .play
            .then(|| bar.suspend(|| Playback::open(self.duration)));
        engine.send(Command::Generate {
            job: 2,
            params,
            stream: self.play,
        });
        let out = wait(&rx, 2, &bar, &mut |a| {
            if let Some(Err(e)) = playback.as_mut().map(|p| p.chunk(a)) {
                bar.suspend(|| eprintln!("playback stopped: {e} (the clip is still written)"));
                playback = None;
            }
        })
        .context("generating")?;
        bar.finish_and_clear();
        let JobOutput::Clip(clip) = out else {
            bail!("the engine answered a generation with something else");
        };
        write_wav(&self.out, &clip.audio, clip.sample_rate)
            .with_context(|| format!("writing {}", self.out.display()))?;
        if let Some(p) = &self.save_codes {
            let json = serde_json::to_vec(&clip.codes)?;
            atomic_write(p, &json).with_context(|| format!("writing {}", p.display()))?;
        }
        println!(
            "wrote {} ({:.2} s, {} frames × {} codebooks)",
            self.out.display(),
            clip.audio.len() as f64 / clip.sample_rate as f64,
            clip.codes.first().map(|c| c.len()).unwrap_or(0),
            clip.codes.len()
        );
        if let Some(mut p) = playback {
            p.finish(&clip.audio, clip.sample_rate)?;
        }
        Ok(())
    }
}

impl GenerateArgs {
    fn midi(
        &self,
        engine: &EngineHandle,
        rx: &mpsc::Receiver<Event>,
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        let prime = match &self.prime {
            Some(p) => prime_from_midi(p, self.prime_seconds)
                .with_context(|| format!("reading the prime {}", p.display()))?,
            None => Vec::new(),
        };
        let d = MidiGenerateParams::default_sampling();
        let params = MidiGenerateParams {
            seconds: self.events.is_none().then_some(self.duration),
            events: self.events,
            seed: self.seed,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k.unwrap_or(d.top_k),
                top_p: self.top_p.unwrap_or(d.top_p),
            },
            prime,
            program: self.program,
        };
        bar.set_message("generating");
        bar.set_position(0);
        engine.send(Command::GenerateMidi {
            job: 2,
            params,
            out: self.out.with_extension(""),
            soundfont: self.soundfont.clone(),
        });
        let out = wait(rx, 2, bar, &mut |_| {}).context("generating")?;
        bar.finish_and_clear();
        let JobOutput::Piece(piece) = out else {
            bail!("the engine answered a generation with something else");
        };
        println!(
            "wrote {} ({} events, {} notes, {:.1} s)",
            piece.midi.display(),
            piece.events.len(),
            piece.notes,
            crate::data::midi::duration_of(&piece.events)
        );
        match (&piece.wav, &piece.render_error) {
            (Some(w), _) => println!("rendered {}", w.display()),
            (None, Some(e)) => eprintln!("not rendered: {e}"),
            (None, None) => {}
        }
        if self.play && !piece.audio.is_empty() {
            Playback::open(0.0).finish(&piece.audio, piece.sample_rate)?;
        }
        Ok(())
    }
}

/// A chunk of a generation's final audio (`Event::Audio`).
struct AudioChunk {
    start: usize,
    samples: Vec<f32>,
    sample_rate: u32,
}

/// Drains events until `job` is done, driving the progress bar; `job`'s audio goes to
/// `on_audio` as it comes.
fn wait(
    rx: &mpsc::Receiver<Event>,
    job: u64,
    bar: &ProgressBar,
    on_audio: &mut dyn FnMut(AudioChunk),
) -> anyhow::Result<JobOutput> {
    loop {
        match rx.recv().context("the engine stopped")? {
            Event::Download {
                file, done, total, ..
            } => {
                bar.set_message(file);
                bar.set_length(total);
                bar.set_position(done);
            }
            Event::GenerateStep { step, total, .. } => {
                bar.set_length(total as u64);
                bar.set_position(step as u64);
            }
            Event::Audio {
                job: j,
                start,
                samples,
                sample_rate,
            } if j == job => on_audio(AudioChunk {
                start,
                samples,
                sample_rate,
            }),
            Event::Done { job: j, result } if j == job => {
                return result.map_err(anyhow::Error::msg);
            }
            Event::Done { .. }
            | Event::Audio { .. }
            | Event::Train { .. }
            | Event::Progress { .. } => {}
        }
    }
}

/// `--play`: the clip heard while it is generated, on the default output device (or a silent
/// playhead without one, after saying so).
struct Playback {
    sink: Box<dyn AudioSink>,
    plan: StreamPlan,
    /// The audio streamed so far, from the first chunk's start (an audio prompt is not
    /// replayed), and how much of it the sink has.
    buffer: Vec<f32>,
    first: Option<usize>,
    sent: usize,
    silent: bool,
}

impl Playback {
    /// For a clip of about `seconds`.
    fn open(seconds: f64) -> Self {
        let (sink, notice) = default_sink();
        if let Some(n) = &notice {
            eprintln!("{n}");
        }
        Self {
            sink,
            plan: StreamPlan::new(seconds, None),
            buffer: Vec::new(),
            first: None,
            sent: 0,
            silent: notice.is_some(),
        }
    }

    /// A chunk of final audio: buffered, and played once the plan says playback will not
    /// catch up with generation.
    fn chunk(&mut self, a: AudioChunk) -> anyhow::Result<()> {
        let first = *self.first.get_or_insert(a.start);
        if a.start != first + self.buffer.len() {
            bail!(
                "audio chunk at sample {} after {} (a gap or an overlap)",
                a.start,
                first + self.buffer.len()
            );
        }
        self.buffer.extend_from_slice(&a.samples);
        let seconds = a.samples.len() as f64 / a.sample_rate.max(1) as f64;
        if self.plan.produced(seconds, Instant::now()) {
            self.send(a.sample_rate)?;
        }
        Ok(())
    }

    /// Hands the sink what it does not have yet (starting playback the first time).
    fn send(&mut self, rate: u32) -> anyhow::Result<()> {
        if self.sent == 0 {
            self.sink
                .play(Arc::new(self.buffer.clone()), rate, Duration::ZERO)
                .map_err(anyhow::Error::msg)?;
        } else if self.sent < self.buffer.len() {
            self.sink
                .append(&self.buffer[self.sent..])
                .map_err(anyhow::Error::msg)?;
        }
        self.sent = self.buffer.len();
        Ok(())
    }

    /// The whole clip is there: plays what was not streamed (all of it when nothing was) and
    /// waits until it has been heard.
    fn finish(&mut self, clip: &[f32], rate: u32) -> anyhow::Result<()> {
        let first = self.first.unwrap_or(0).min(clip.len());
        let have = first + self.buffer.len();
        if have < clip.len() {
            self.buffer.extend_from_slice(&clip[have..]);
        }
        self.plan.finished();
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.send(rate)?;
        if self.silent {
            return Ok(());
        }
        eprintln!("playing (Ctrl-C stops; the file is written)");
        while self.sink.is_playing() {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}
