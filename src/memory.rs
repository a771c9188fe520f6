//! The C allocator's settings for tensor work (glibc on Linux; elsewhere these do nothing), and
//! the process's peak memory as the benchmarks report it.
//!
//! candle allocates a fresh buffer for every op's result. glibc serves anything above 128 KB
//! (raised as big blocks are freed, but reset by other settings) straight from `mmap` and hands
//! it back on `free`, so each step of training faulted in and zeroed gigabytes of pages again:
//! a quarter of a LoRA step on musicgen-small was the kernel's page-fault path (`perf`), and
//! the step took 29.7 s. With blocks up to 32 MB (glibc's ceiling) kept in the heap and freed
//! memory kept for reuse, the same step takes 18.9 s at the same peak RSS (`tunelab bench
//! train`). Blocks above that ceiling (a `[2, 16, 503, 503]` attention tensor is 32.4 MB) still
//! went to `mmap`, about 27 000 page faults a second in a full step (`perf stat`); with `mmap`
//! off (`M_MMAP_MAX = 0`) they come from the heap too: no faults, LoRA steps 5–8 % faster in
//! two alternated pairs of runs, peak RSS +27 MB. [`release`] gives the kept memory back when a
//! long job ends.

#![allow(unsafe_code)]

use std::sync::Once;

/// Serves every block from the heap and keeps freed memory for reuse. Idempotent; called by
/// `main` and by the training loop (so library users and tests get it too).
pub fn tune() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters (under its own lock); the values
        // are in the ranges glibc documents (the mmap threshold's maximum is 32 MB on 64-bit).
        // A block the heap cannot extend to (another thread's arena) is still mapped: glibc
        // falls back to `mmap` there whatever `M_MMAP_MAX` says.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}

/// Returns freed heap memory to the system (after a training run or a generation job, so an
/// idle studio does not hold a finished run's peak).
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the allocator's discretion.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Resident memory of this process now, in bytes (Linux `VmRSS`), if known (the studio's
/// status bar).
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

/// A `kB` line of `/proc/self/status`.
fn status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
