//! The one way a panel asks for a path: [`path_field`] shows a model, dataset, run, adapter,
//! file or folder by a readable name (a Hub id as it is; a run as `name · mode · step N`; a
//! dataset as `name · MIDI dataset`; the demo model by what it is) with the full path in its
//! tooltip, never as a text field cut to a few characters. Clicking the name opens a menu: the
//! path typed in full, Browse… (the system dialog, answered on a helper thread), the recent
//! choices of that kind (kept by egui's persisted memory, so across restarts), and Clear where
//! empty means something. A file or folder dropped on the field is taken by it (the shell
//! takes the drops no field claimed).
//!
//! The names read a little from disk (a run's config and checkpoints); they are cached for a
//! few seconds per path, so a frame never walks the disk for them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::ui::common::{DialogKind, FileDialog};

/// What a field holds: decides the dialog, how the name reads and which recent list it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// A Hub id, a model folder or a training run.
    Model,
    /// A PEFT adapter folder or a LoRA run.
    Adapter,
    /// A dataset folder (made by an import).
    Dataset,
    /// A training run's folder (a new one need not exist yet).
    Run,
    /// A folder read or written (need not exist yet when written).
    Folder,
    /// An audio file (WAV, FLAC, MP3, OGG).
    Audio,
    /// A MIDI file.
    Midi,
    /// A SoundFont (.sf2).
    SoundFont,
    /// A listening session's log (`session.jsonl`).
    SessionLog,
}

impl PathKind {
    /// The system dialog that picks one.
    pub fn dialog(self) -> DialogKind {
        match self {
            PathKind::Model
            | PathKind::Adapter
            | PathKind::Dataset
            | PathKind::Run
            | PathKind::Folder => DialogKind::Folder,
            PathKind::Audio => DialogKind::Open {
                filter: "Audio",
                extensions: &["wav", "flac", "mp3", "ogg"],
            },
            PathKind::Midi => DialogKind::Open {
                filter: "MIDI",
                extensions: &["mid", "midi"],
            },
            PathKind::SoundFont => DialogKind::Open {
                filter: "SoundFont",
                extensions: &["sf2"],
            },
            PathKind::SessionLog => DialogKind::Open {
                filter: "Session log",
                extensions: &["jsonl"],
            },
        }
    }

    /// Must the path exist (else the name is flagged as not found)?
    fn must_exist(self) -> bool {
        !matches!(self, PathKind::Run | PathKind::Folder)
    }

    /// May it be a Hub id rather than a path?
    fn takes_hub_ids(self) -> bool {
        matches!(self, PathKind::Model | PathKind::Adapter)
    }

    /// Its recent list in egui's persisted memory.
    fn recent_id(self) -> egui::Id {
        egui::Id::unique(("tunelab-recent-paths", format!("{self:?}")))
    }
}

/// How a path reads: its name, and whether it is missing where it should exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readable {
    pub name: String,
    pub missing: bool,
}

/// The most recent choices kept per kind.
pub const RECENT: usize = 8;

/// Does `s` read as a Hub repo id (`owner/name`, not a path)?
pub fn is_hub_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    ok(owner) && ok(name)
}

/// The last path component (the text itself when it has none).
fn last_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| p.display().to_string())
}

/// How `value` (a path or Hub id of `kind`) reads; `None` when it is empty.
pub fn describe(value: &str, kind: PathKind) -> Option<Readable> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let p = Path::new(v);
    let name = last_name(p);
    let ok = |name: String| {
        Some(Readable {
            name,
            missing: false,
        })
    };
    if p == crate::demo::model_dir() {
        return ok("demo: Bach chorales (Music Transformer)".into());
    }
    if v == crate::ui::generate::RANDOM_SMALL {
        return ok("musicgen-small layout · random weights".into());
    }
    if let Some(id) = hub_snapshot(p) {
        return ok(id);
    }
    if !p.exists() {
        if kind.takes_hub_ids() && is_hub_id(v) {
            return ok(v.to_string());
        }
        return Some(Readable {
            name: if kind.must_exist() {
                format!("{name} (not found)")
            } else {
                format!("{name} (new)")
            },
            missing: kind.must_exist(),
        });
    }
    if crate::store::run::is_run_dir(p) {
        return ok(run_name(p, &name));
    }
    if p.is_dir() {
        let what = if crate::data::midi_dataset::is_midi_dataset(p) {
            " · MIDI dataset"
        } else if p.join("segments.jsonl").is_file() {
            " · audio dataset"
        } else if p.join("adapter_config.json").is_file() {
            " · LoRA adapter"
        } else if p.join("config.json").is_file() {
            " · model folder"
        } else {
            ""
        };
        return ok(format!("{name}{what}"));
    }
    ok(name)
}

/// The Hub id of a snapshot in the HF cache (`…/models--owner--name/snapshots/<rev>`).
fn hub_snapshot(p: &Path) -> Option<String> {
    let parent = p.parent()?;
    if parent.file_name()? != "snapshots" {
        return None;
    }
    let repo = parent.parent()?.file_name()?.to_str()?;
    let rest = repo.strip_prefix("models--")?;
    let (owner, name) = rest.split_once("--")?;
    Some(format!("{owner}/{name}"))
}

/// A run as `name · mode · step N` (its latest kept step), from its config and checkpoints.
fn run_name(dir: &Path, name: &str) -> String {
    let cfg: serde_json::Value = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mode = cfg["mode"].as_str().unwrap_or("run");
    let kept = crate::ui::runs::checkpoint_names(dir)
        .iter()
        .filter_map(|c| c.strip_prefix("step-")?.parse::<u64>().ok())
        .max();
    let last = checkpoint_step(&crate::store::run::checkpoint_path(dir, "last"));
    let step = kept.max(last);
    match step {
        Some(s) => format!("{name} · {mode} · step {s}"),
        None => format!("{name} · {mode} · no step yet"),
    }
}

/// The step a checkpoint was saved at (its safetensors header's metadata), read without its
/// tensors; `None` when it is missing or unreadable.
fn checkpoint_step(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 16 << 20 {
        return None;
    }
    let mut header = vec![0u8; usize::try_from(len).ok()?];
    f.read_exact(&mut header).ok()?;
    let h: serde_json::Value = serde_json::from_slice(&header).ok()?;
    h["__metadata__"]["step"].as_str()?.parse().ok()
}

/// [`describe`], cached in egui's memory for a few seconds per path and kind.
pub fn readable(ctx: &egui::Context, value: &str, kind: PathKind) -> Option<Readable> {
    let id = egui::Id::unique(("tunelab-readable", value, format!("{kind:?}")));
    let now = ctx.input(|i| i.time);
    let cached: Option<(f64, Option<Readable>)> = ctx.data(|d| d.get_temp(id));
    match cached {
        Some((at, r)) if now - at < 3.0 => r,
        _ => {
            let r = describe(value, kind);
            ctx.data_mut(|d| d.insert_temp(id, (now, r.clone())));
            r
        }
    }
}

/// Puts `value` first in `kind`'s recent list (at most [`RECENT`], no repeats).
pub fn remember(ctx: &egui::Context, kind: PathKind, value: &str) {
    let v = value.trim();
    if v.is_empty() {
        return;
    }
    ctx.data_mut(|d| {
        let list: &mut Vec<String> = d.get_persisted_mut_or_default(kind.recent_id());
        list.retain(|r| r != v);
        list.insert(0, v.to_string());
        list.truncate(RECENT);
    });
}

/// `kind`'s recent choices, newest first.
pub fn recent(ctx: &egui::Context, kind: PathKind) -> Vec<String> {
    ctx.data_mut(|d| d.get_persisted::<Vec<String>>(kind.recent_id()))
        .unwrap_or_default()
}

/// The id under which a drop taken by a field is marked for this frame.
fn drop_claim_id() -> egui::Id {
    egui::Id::unique("tunelab-drop-claimed")
}

/// Did a field take this frame's dropped files? (The shell leaves them alone then.)
pub fn drop_claimed(ctx: &egui::Context) -> bool {
    let frame = ctx.cumulative_pass_nr();
    ctx.data(|d| d.get_temp::<u64>(drop_claim_id())) == Some(frame)
}

/// A field's system dialog, kept in egui's memory between frames.
type SharedDialog = Arc<Mutex<FileDialog<()>>>;

/// A labelled path field (see the module's documentation); `empty`: what an empty value means
/// (`Some("none")`: it may be cleared), `None`: a value is needed. The response is the name's
/// button (named `label: name` for screen readers), marked changed when the value changed this
/// frame.
pub fn path_field(
    ui: &mut egui::Ui,
    label: &str,
    tip: &str,
    value: &mut String,
    kind: PathKind,
    empty: Option<&str>,
) -> egui::Response {
    let l = ui.label(label).on_hover_text(tip);
    let r = picker(ui, label, value, kind, empty);
    let name = readable(ui.ctx(), value, kind)
        .map(|r| r.name)
        .unwrap_or_else(|| empty.unwrap_or("nothing chosen").to_string());
    r.labelled_by(l.id)
        .accessible_name(format!("{label}: {name}"))
}

/// The picker itself (the name's menu button and Browse…), without the label.
pub fn picker(
    ui: &mut egui::Ui,
    id_salt: &str,
    value: &mut String,
    kind: PathKind,
    empty: Option<&str>,
) -> egui::Response {
    let id = ui.scope_id().with(("tunelab-path", id_salt));
    let ctx = ui.ctx().clone();
    let before = value.clone();
    let dialog: SharedDialog = ctx.data_mut(|d| {
        d.get_temp_mut_or_insert_with(id, SharedDialog::default)
            .clone()
    });
    if let Ok(mut d) = dialog.lock() {
        if let Some(((), p)) = d.poll() {
            *value = p.display().to_string();
        }
    }
    let shown = readable(&ctx, value, kind);
    let full = if value.trim().is_empty() {
        format!("{} (nothing chosen)", empty.unwrap_or("none"))
    } else {
        value.trim().to_string()
    };
    let inner = ui.horizontal(|ui| {
        let text = match &shown {
            Some(r) if r.missing => egui::RichText::new(&r.name).color(ui.visuals().warn_fg_color),
            Some(r) => egui::RichText::new(&r.name),
            None => egui::RichText::new(empty.unwrap_or("choose…")).weak(),
        };
        let button = egui::Button::new(text)
            .truncate()
            .min_size(egui::vec2(220.0, 0.0));
        let menu = ui
            .scope(|ui| {
                ui.set_max_width(340.0);
                egui::containers::menu::MenuButton::from_button(button).ui(ui, |ui| {
                    menu(ui, value, kind, empty, &dialog);
                })
            })
            .inner;
        let browse = ui
            .add_enabled(
                dialog.lock().is_ok_and(|d| !d.is_open()),
                egui::Button::new("Browse…"),
            )
            .on_hover_text("Choose with the system's file dialog.");
        if browse.clicked() {
            if let Ok(mut d) = dialog.lock() {
                d.open((), kind.dialog());
            }
        }
        menu.0.on_hover_text(full)
    });
    let mut response = inner.inner;
    let row = inner.response.rect;
    // A file or folder dropped on the field is its new value.
    let (hovering, dropped) = ui.input(|i| {
        (
            !i.raw.hovered_files.is_empty(),
            i.raw.dropped_files.first().map(|f| f.path().to_path_buf()),
        )
    });
    let over = ui.rect_contains_pointer(row);
    if hovering && over {
        ui.painter().rect_stroke(
            row.expand(2.0),
            4.0,
            ui.visuals().selection.stroke,
            egui::StrokeKind::Outside,
        );
    }
    if let Some(p) = dropped.filter(|_| over) {
        *value = p.display().to_string();
        let frame = ctx.cumulative_pass_nr();
        ctx.data_mut(|d| d.insert_temp(drop_claim_id(), frame));
    }
    if *value != before {
        remember(&ctx, kind, value);
        response.mark_changed();
    }
    response
}

/// The name's menu: the path typed in full, Browse…, Clear, the recent choices.
fn menu(
    ui: &mut egui::Ui,
    value: &mut String,
    kind: PathKind,
    empty: Option<&str>,
    dialog: &SharedDialog,
) {
    ui.set_min_width(420.0);
    let what = if kind.takes_hub_ids() {
        "Path or Hub id"
    } else {
        "Path"
    };
    let l = ui.label(what);
    ui.add(egui::TextEdit::singleline(value).desired_width(f32::INFINITY))
        .labelled_by(l.id)
        .accessible_name(what);
    ui.horizontal(|ui| {
        if ui.button("Browse…").clicked() {
            if let Ok(mut d) = dialog.lock() {
                d.open((), kind.dialog());
            }
            ui.close();
        }
        if let Some(e) = empty {
            if !value.is_empty() && ui.button(format!("Clear ({e})")).clicked() {
                value.clear();
                ui.close();
            }
        }
    });
    let recent = recent(ui.ctx(), kind);
    if recent.is_empty() {
        return;
    }
    ui.separator();
    ui.weak("Recent");
    for r in recent {
        let name = describe(&r, kind).map(|d| d.name).unwrap_or_default();
        if ui
            .selectable_label(*value == r, name)
            .on_hover_text(&r)
            .clicked()
        {
            *value = r;
            ui.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::common::Dropped;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    #[test]
    fn names_read_as_what_the_path_is() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(describe("  ", PathKind::Model), None);
        let hub = describe("facebook/musicgen-small", PathKind::Model).unwrap();
        assert_eq!(hub.name, "facebook/musicgen-small");
        assert!(!hub.missing);
        // Not a Hub id where only paths are taken, and not a Hub id with three parts.
        assert!(
            describe("facebook/musicgen-small", PathKind::Dataset)
                .unwrap()
                .missing
        );
        assert!(!is_hub_id("/abs/path"));
        assert!(!is_hub_id("a/b/c"));
        assert!(!is_hub_id("../x"));
        let gone = dir.path().join("gone");
        let d = describe(&gone.display().to_string(), PathKind::Dataset).unwrap();
        assert_eq!(d.name, "gone (not found)");
        assert!(d.missing);
        let new = describe(&gone.display().to_string(), PathKind::Run).unwrap();
        assert_eq!(new.name, "gone (new)");
        assert!(!new.missing, "a run folder to create is not missing");
        // A MIDI dataset, a model folder, a file.
        let ds = dir.path().join("folk");
        std::fs::create_dir_all(&ds).unwrap();
        std::fs::write(ds.join("events.jsonl"), "").unwrap();
        assert_eq!(
            describe(&ds.display().to_string(), PathKind::Dataset)
                .unwrap()
                .name,
            "folk · MIDI dataset"
        );
        let model = dir.path().join("tiny");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        assert_eq!(
            describe(&model.display().to_string(), PathKind::Model)
                .unwrap()
                .name,
            "tiny · model folder"
        );
        std::fs::write(dir.path().join("song.wav"), "").unwrap();
        assert_eq!(
            describe(
                &dir.path().join("song.wav").display().to_string(),
                PathKind::Audio
            )
            .unwrap()
            .name,
            "song.wav"
        );
        let snap = "/cache/hub/models--facebook--musicgen-small/snapshots/0123abcd";
        assert_eq!(
            describe(snap, PathKind::Model).unwrap().name,
            "facebook/musicgen-small"
        );
        assert_eq!(
            describe(crate::ui::generate::RANDOM_SMALL, PathKind::Model)
                .unwrap()
                .name,
            "musicgen-small layout · random weights"
        );
        assert_eq!(
            describe(
                &crate::demo::model_dir().display().to_string(),
                PathKind::Model
            )
            .unwrap()
            .name,
            "demo: Bach chorales (Music Transformer)"
        );
    }

    #[test]
    fn a_run_reads_as_its_name_mode_and_latest_step() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("folk-finetune");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        std::fs::create_dir_all(run.join("model")).unwrap();
        std::fs::write(run.join("model/config.json"), "{}").unwrap();
        std::fs::write(run.join("config.json"), r#"{"mode":"lora"}"#).unwrap();
        let name = || {
            describe(&run.display().to_string(), PathKind::Model)
                .unwrap()
                .name
        };
        assert_eq!(name(), "folk-finetune · lora · no step yet");
        for s in ["step-000020", "step-000200", "last", "best"] {
            std::fs::write(run.join(format!("checkpoints/{s}.safetensors")), "").unwrap();
        }
        assert_eq!(name(), "folk-finetune · lora · step 200");
        // `last` is read from its header: runs that keep no step-N checkpoints say their step.
        let header = br#"{"__metadata__":{"step":"240","mode":"\"lora\""}}"#;
        let mut last = (header.len() as u64).to_le_bytes().to_vec();
        last.extend_from_slice(header);
        std::fs::write(run.join("checkpoints/last.safetensors"), last).unwrap();
        assert_eq!(name(), "folk-finetune · lora · step 240");
        std::fs::write(run.join("checkpoints/last.safetensors"), b"torn").unwrap();
        assert_eq!(name(), "folk-finetune · lora · step 200");
    }

    #[test]
    fn the_field_shows_the_name_keeps_recents_and_takes_a_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("first-run");
        let b = dir.path().join("second-run");
        let mut h = Harness::new_ui_state(
            |ui, v: &mut String| {
                path_field(ui, "Run folder", "Where it goes.", v, PathKind::Run, None);
            },
            a.display().to_string(),
        );
        h.run();
        assert!(h.query_by_label("Run folder: first-run (new)").is_some());
        assert!(
            h.query_by_label(&a.display().to_string()).is_none(),
            "the full path is not drawn, only its name"
        );
        *h.state_mut() = b.display().to_string();
        h.run();
        assert!(h.query_by_label("Run folder: second-run (new)").is_some());
        assert!(
            recent(&h.ctx, PathKind::Run).is_empty(),
            "a value set from outside the field is not a choice made in it"
        );
        // A folder dropped on the field becomes its value and is remembered.
        let dropped = dir.path().join("dropped");
        std::fs::create_dir_all(&dropped).unwrap();
        h.get_by_label("Run folder: second-run (new)").hover();
        h.run();
        h.input_mut()
            .dropped_files
            .push(std::sync::Arc::new(Dropped(dropped.clone())));
        h.step();
        assert_eq!(h.state(), &dropped.display().to_string());
        let claimed = h.ctx.data(|d| d.get_temp::<u64>(drop_claim_id()));
        assert_eq!(
            claimed,
            Some(h.ctx.cumulative_pass_nr() - 1),
            "the drop is claimed for the frame it came in (the shell leaves it alone)"
        );
        h.run();
        assert!(h.query_by_label("Run folder: dropped").is_some());
        // Opening the menu offers the full path to edit and the recent choices; a recent one
        // is chosen by its name.
        remember(&h.ctx, PathKind::Run, &a.display().to_string());
        h.get_by_label("Run folder: dropped").click();
        h.run();
        assert!(h.query_by_label("Path").is_some());
        h.get_by_label("first-run (new)").click();
        h.run();
        assert_eq!(h.state(), &a.display().to_string());
        assert_eq!(
            recent(&h.ctx, PathKind::Run),
            vec![a.display().to_string(), dropped.display().to_string()]
        );
    }
}
