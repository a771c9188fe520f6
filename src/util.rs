//! Small helpers shared by the engine: atomic file writes and append-only logs.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never a
/// torn one: write a temp file beside it, fsync, rename over, fsync the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// [`atomic_write`] for content produced piece by piece by `fill` (large checkpoints).
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    atomic_write_io(path, fill).map_err(|e| Error::io(e.path, e.source))
}

/// A failed atomic write: the OS error and the file it concerns (the temp file, the target or
/// its directory).
#[derive(Debug)]
pub struct AtomicWriteError {
    /// The file or directory the failing call was about.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

/// The one atomic write of the crate, behind [`atomic_write`] and [`atomic_write_with`], for
/// modules that keep their own error type (the listening-test log maps it into `ListenError`).
/// On failure the temp file is removed, so a failed write leaves nothing behind.
pub fn atomic_write_io(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> std::result::Result<(), AtomicWriteError> {
    let fail = |path: &Path, source| AtomicWriteError {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| fail(d, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "file".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| fail(&tmp, e))?;
        let written = {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
            fill(&mut w).and_then(|_| w.flush())
        };
        if let Err(e) = written.and_then(|_| f.sync_all()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(&tmp, e));
        }
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(path, e));
    }
    // Best effort: the rename is already atomic; this only makes it durable across a power
    // loss, and some platforms (Windows) cannot open a directory as a file.
    if let Some(d) = dir {
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
    Ok(())
}

/// Appends one line to `path` and fsyncs it before returning (votes, metrics).
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut buf = line.trim_end_matches('\n').to_string();
    buf.push('\n');
    f.write_all(buf.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        append_line(&dir.path().join("log"), "x").unwrap();
        append_line(&dir.path().join("log"), "y\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("log")).unwrap(),
            "x\ny\n"
        );
    }

    #[test]
    fn a_failed_rename_leaves_no_temp_and_names_the_target() {
        let dir = tempfile::tempdir().unwrap();
        // a non-empty directory cannot be replaced by a file
        let p = dir.path().join("taken");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"x").unwrap();
        let err = atomic_write_io(&p, |w| w.write_all(b"new")).unwrap_err();
        assert_eq!(err.path, p);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(matches!(atomic_write(&p, b"new"), Err(Error::Io { path, .. }) if path == p));
    }

    /// One atomic-write routine in the crate: a hand-written temp + rename elsewhere in `src/`
    /// (the listening-test log had its own for its header) fails here.
    #[test]
    fn no_other_module_renames_files_into_place() {
        fn visit(dir: &Path, hits: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, hits);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("src/util.rs")
                    && std::fs::read_to_string(&path)
                        .unwrap()
                        .contains("fs::rename")
                {
                    hits.push(path);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut hits = Vec::new();
        visit(&src, &mut hits);
        assert!(src.join("eval").is_dir(), "scanned the wrong folder");
        assert!(
            hits.is_empty(),
            "write through util::atomic_write* instead of renaming by hand: {hits:?}"
        );
    }
}
