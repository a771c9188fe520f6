//! A team of threads that stays awake between the short parallel products of a decoding step.
//!
//! A MusicGen decoding step makes about 200 matrix products of 20–200 µs each, separated by
//! serial work (norms, attention, sampling) of tens of µs. Rayon's idle workers go to sleep
//! within microseconds and take tens of µs to wake in a VM: measured here, 144 quantised
//! products with 200 µs of serial work between them took 23.8 ms instead of 12.7 ms back to
//! back. [`run`] splits a job into parts that the caller and the team's helpers claim one at a
//! time; a helper spins (yielding the core now and then, so other threads still run) for
//! [`SPIN`] after its last part before it parks, so the next product of the step finds it
//! awake.
//!
//! Helpers: one fewer than rayon's thread count (the caller works too), started on first use.
//! One job runs at a time; a second caller meanwhile runs its parts alone, in order.
//!
//! The one `unsafe` here hands the helpers a reference to the caller's job whose lifetime the
//! compiler cannot see: [`run`] does not return (nor unwind) before every part a helper claimed
//! has finished, and a helper claims parts only while the job is published.
#![allow(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a helper stays awake after its last part.
pub const SPIN: Duration = Duration::from_micros(300);

type Job = &'static (dyn Fn(usize) + Sync);

/// The published job: what to run and which parts are still unclaimed.
#[derive(Default)]
struct Slot {
    job: Option<Job>,
    parts: usize,
    next: usize,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    /// Bumped each time a job is published (helpers watch it without the lock).
    epoch: AtomicU64,
    /// Parts of the current job finished (by anyone) so far.
    done: AtomicUsize,
    /// Whether a part panicked on a helper.
    panicked: AtomicBool,
    /// Whether a job is in flight (a second caller then runs alone).
    busy: AtomicBool,
    wake: Condvar,
    /// Guards the parking of helpers (paired with `wake`).
    parked: Mutex<usize>,
}

struct Team {
    shared: Arc<Shared>,
    helpers: usize,
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let shared = Arc::new(Shared::default());
        let want = rayon::current_num_threads().saturating_sub(1);
        let mut helpers = 0;
        for i in 0..want {
            let s = Arc::clone(&shared);
            let started = std::thread::Builder::new()
                .name(format!("tunelab-team-{i}"))
                .spawn(move || helper(&s));
            // A helper that cannot start leaves the work to the others (and the caller).
            if started.is_ok() {
                helpers += 1;
            }
        }
        Team { shared, helpers }
    })
}

/// How many threads [`run`] uses: the caller and the helpers.
pub fn threads() -> usize {
    team().helpers + 1
}

/// Runs `f(0)`, …, `f(parts − 1)`, each once, across the caller and the team's helpers, and
/// returns when all have finished. A panic in a part is raised here after every part ended.
pub fn run(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    let team = team();
    let s = &*team.shared;
    if parts <= 1 || team.helpers == 0 || s.busy.swap(true, SeqCst) {
        (0..parts).for_each(f);
        return;
    }
    // SAFETY: the reference is published only until `Finish` (below, also on unwinding) has
    // withdrawn it and seen every claimed part finished; helpers call it only for parts they
    // claimed while it was published.
    let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
    s.done.store(0, SeqCst);
    s.panicked.store(false, SeqCst);
    {
        let mut slot = lock(&s.slot);
        *slot = Slot {
            job: Some(job),
            parts,
            next: 0,
        };
        s.epoch.fetch_add(1, SeqCst);
    }
    if *lock(&s.parked) > 0 {
        s.wake.notify_all();
    }
    let finish = Finish { shared: s, parts };
    let mut failed = None;
    while let Some(i) = claim(s, None) {
        let result = catch_unwind(AssertUnwindSafe(|| f(i)));
        s.done.fetch_add(1, SeqCst);
        if let Err(payload) = result {
            failed = Some(payload);
            break;
        }
    }
    drop(finish);
    if let Some(payload) = failed {
        std::panic::resume_unwind(payload);
    }
    if s.panicked.load(SeqCst) {
        panic!("a part of a parallel product panicked on a helper thread");
    }
}

/// Runs `f(i, chunk)` for each `chunk`-long piece of `data` (the last may be shorter) through
/// [`run`]: the form every parallel product of a decoding step takes (each part writes its own
/// span of the output).
pub fn for_each_chunk<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let pieces: Vec<Mutex<&mut [T]>> = data.chunks_mut(chunk.max(1)).map(Mutex::new).collect();
    run(pieces.len(), &|i| f(i, &mut lock(&pieces[i])));
}

/// Withdraws the job (parts nobody claimed are dropped) and waits for the parts helpers
/// claimed.
struct Finish<'a> {
    shared: &'a Shared,
    parts: usize,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let s = self.shared;
        // Parts nobody claimed (a part panicked) will not run: count them as done.
        let unclaimed = {
            let mut slot = lock(&s.slot);
            let left = slot.parts - slot.next.min(slot.parts);
            *slot = Slot::default();
            left
        };
        s.done.fetch_add(unclaimed, SeqCst);
        let mut spins = 0u32;
        while s.done.load(SeqCst) < self.parts {
            spins = backoff(spins);
        }
        s.busy.store(false, SeqCst);
    }
}

/// The next unclaimed part of the published job (of epoch `epoch` when given).
fn claim(s: &Shared, epoch: Option<u64>) -> Option<usize> {
    let mut slot = lock(&s.slot);
    if epoch.is_some_and(|e| e != s.epoch.load(SeqCst)) || slot.job.is_none() {
        return None;
    }
    (slot.next < slot.parts).then(|| {
        slot.next += 1;
        slot.next - 1
    })
}

fn helper(s: &Shared) {
    let mut seen = s.epoch.load(SeqCst);
    loop {
        // Wait for a new job: spin for SPIN, then park.
        let since = Instant::now();
        let mut spins = 0u32;
        while s.epoch.load(SeqCst) == seen {
            // The clock is read every 64th wait only (a read costs as much as a few waits).
            if !spins.is_multiple_of(64) || since.elapsed() < SPIN {
                spins = backoff(spins);
                continue;
            }
            let mut parked = lock(&s.parked);
            *parked += 1;
            while s.epoch.load(SeqCst) == seen {
                parked = s
                    .wake
                    .wait_timeout(parked, Duration::from_millis(50))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            *parked -= 1;
        }
        seen = s.epoch.load(SeqCst);
        let job = lock(&s.slot).job;
        let Some(job) = job else { continue };
        while let Some(i) = claim(s, Some(seen)) {
            if catch_unwind(AssertUnwindSafe(|| job(i))).is_err() {
                s.panicked.store(true, SeqCst);
            }
            s.done.fetch_add(1, SeqCst);
        }
    }
}

/// One wait of a spin loop: a CPU pause, and every 64th time the core to another thread.
fn backoff(spins: u32) -> u32 {
    if spins % 64 == 63 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
    spins.wrapping_add(1)
}

/// Locks `m`, whether or not a panicking thread poisoned it (the state it guards stays valid:
/// every write to it is a single assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_part_runs_once_across_many_jobs() {
        for parts in [0, 1, 2, 3, 7, 64] {
            for _ in 0..200 {
                let hits: Vec<AtomicU32> = (0..parts).map(|_| AtomicU32::new(0)).collect();
                run(parts, &|i| {
                    hits[i].fetch_add(1, SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "{parts} parts");
            }
        }
    }

    #[test]
    fn jobs_from_several_threads_at_once_each_complete() {
        std::thread::scope(|scope| {
            for t in 0..4 {
                scope.spawn(move || {
                    for n in 0..100 {
                        let sum = AtomicUsize::new(0);
                        run(8, &|i| {
                            sum.fetch_add(i + t + n, SeqCst);
                        });
                        assert_eq!(sum.load(SeqCst), 28 + 8 * (t + n));
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_part_is_raised_by_the_caller_after_the_others_finished() {
        let finished = AtomicU32::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            run(16, &|i| {
                if i == 5 {
                    panic!("part 5");
                }
                std::thread::sleep(Duration::from_millis(1));
                finished.fetch_add(1, SeqCst);
            })
        }));
        assert!(result.is_err());
        // No part is still running once `run` has returned: the count stays where it is.
        let now = finished.load(SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(finished.load(SeqCst), now);
        // And the team still works.
        let sum = AtomicUsize::new(0);
        run(4, &|i| {
            sum.fetch_add(i, SeqCst);
        });
        assert_eq!(sum.load(SeqCst), 6);
    }
}
