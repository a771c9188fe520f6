//! Downloading by repo id through hf-hub against a local HTTP server on 127.0.0.1 that speaks
//! the Hub's resolve protocol (Range requests, ETag, X-Repo-Commit), into a private HF cache.
//! This binary owns its environment variables (HF_HOME, HF_ENDPOINT): one test only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use candle_core::Device;
use tunelab::models::hub;
use tunelab::models::musicgen::MusicGen;
use tunelab::models::nn::WeightMode;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Serves `root/<file>` at `/acme/tiny-musicgen/resolve/main/<file>`; counts requests.
fn serve(root: PathBuf) -> (String, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let (s, h) = (stop.clone(), hits.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            h.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range = None;
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                    break;
                }
                if let Some(v) = l.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let v = v.trim().to_string();
                    let (a, b) = v.split_once('-').unwrap();
                    range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().ok()));
                }
            }
            let mut out = stream;
            let file = path
                .strip_prefix("/acme/tiny-musicgen/resolve/main/")
                .map(|f| root.join(f));
            match file.filter(|p| p.is_file()) {
                Some(p) => {
                    let body = std::fs::read(&p).unwrap();
                    let n = body.len();
                    let (a, b) = range
                        .map(|(a, b)| (a, b.unwrap_or(n - 1).min(n - 1)))
                        .unwrap_or((0, n - 1));
                    let etag = format!(
                        "{:x}",
                        body.iter()
                            .fold(0xcbf29ce484222325u64, |h, x| (h ^ *x as u64)
                                .wrapping_mul(0x100000001b3))
                    );
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {a}-{b}/{n}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
                        b + 1 - a
                    );
                    let _ = out.write_all(head.as_bytes());
                    let _ = out.write_all(&body[a..=b]);
                }
                None => {
                    let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
    });
    (addr, stop, hits)
}

/// A Hub id the way every caller resolves one: `ModelSpec`, then its folder.
fn hub_dir(
    id: &str,
    progress: &mut dyn FnMut(&hub::DownloadProgress),
) -> tunelab::Result<std::path::PathBuf> {
    let spec = tunelab::store::ModelSpec::resolve(id)?;
    assert_eq!(spec, tunelab::store::ModelSpec::Hub(id.into()));
    spec.musicgen_dir(progress)
}

#[test]
fn downloads_by_repo_id_into_the_hf_cache_and_reuses_it_offline() {
    let home = tempfile::tempdir().unwrap();
    let (addr, stop, hits) = serve(common::tiny_dir());
    std::env::set_var("HF_HOME", home.path());
    std::env::remove_var("HF_HUB_CACHE");
    std::env::set_var("HF_ENDPOINT", &addr);

    let mut reports = Vec::new();
    let dir = hub_dir("acme/tiny-musicgen", &mut |p| reports.push(p.clone())).unwrap();
    assert!(
        dir.starts_with(
            home.path()
                .join("hub/models--acme--tiny-musicgen/snapshots")
        ),
        "{}",
        dir.display()
    );
    assert!(dir.ends_with(COMMIT));
    assert!(
        reports
            .iter()
            .any(|p| p.file == "model.safetensors" && p.done == p.total && p.total > 1_000_000),
        "{reports:?}"
    );
    let model = MusicGen::load(&dir, &Device::Cpu, WeightMode::F32).unwrap();
    assert_eq!(model.num_codebooks(), 4);
    let listed = hub::cached_models(false);
    assert!(
        listed
            .iter()
            .any(|m| m.repo_id == "acme/tiny-musicgen" && m.size_bytes > 1_000_000),
        "{listed:?}"
    );

    // Second time: everything comes from the cache, with the server gone.
    stop.store(true, Ordering::SeqCst);
    let before = hits.load(Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let again = hub_dir("acme/tiny-musicgen", &mut |_| {}).unwrap();
    assert_eq!(again, dir);
    assert_eq!(hits.load(Ordering::SeqCst), before);

    // An unknown repo is a download error naming the repo and the file.
    let (addr, _stop, _) = serve(common::tiny_dir());
    std::env::set_var("HF_ENDPOINT", &addr);
    let e = hub_dir("acme/nothing-here", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("acme/nothing-here") && e.contains("config.json"),
        "{e}"
    );
}
