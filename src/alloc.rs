//! The allocator's retention of freed memory, and the process's huge pages, tuned for the
//! policy engine.
//!
//! The binary and the benches use mimalloc as the global allocator. By default it returns
//! memory it no longer uses to the OS (a *purge*) about a second after it was freed, and a
//! page returned costs a page fault and zeroing when it is used again. The policy engine
//! allocates and frees the same working set run after run (candidate sets, amounts, dense
//! blocks), so at the full city a profile of repeated what-ifs spent 54% of its time in the
//! kernel clearing pages it had just been given back (`clear_page_erms`), and the catalogue
//! recombined in 64.1 ms with the default against 50.2–53.2 ms with freed memory kept
//! (BENCHMARKS.md, issue 4). [`keep_freed_memory`] delays purging: memory stays with the
//! process while it is busy and goes back to the OS once it has been idle that long. Freed
//! memory is reused before more is asked of the OS, so the peak should not grow; the build,
//! whose peak memory is a target, keeps mimalloc's default.

/// mimalloc's `mi_option_purge_delay` (its index in `mi_option_t`, the same in v2 and v3).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory is kept before it is returned to the OS, by default.
pub const KEEP_FREED_MS: i64 = 10_000;

/// Keeps freed memory with the process for `ms` milliseconds before returning it to the OS
/// (`-1`: never). Only has effect when mimalloc is the global allocator.
pub fn keep_freed_memory(ms: i64) {
    // SAFETY: `mi_option_set` takes any option index and value; it only stores the value, and
    // mimalloc reads it at its next purge. It allocates nothing and is thread-safe.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, ms as std::os::raw::c_long);
    }
}

/// The purge delay in force, in milliseconds.
pub fn freed_memory_kept_ms() -> i64 {
    // SAFETY: reads an option's value; mimalloc initialises it from the environment on first
    // read.
    #[allow(unsafe_code)]
    let ms = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
    // `c_long` is `i64` here, but narrower on some platforms.
    #[allow(clippy::useless_conversion)]
    i64::from(ms)
}

/// Turns transparent huge pages off for this process, from now on (Linux; elsewhere nothing).
///
/// On this project's reference machine (a 2-core VM), a freshly opened policy engine spent
/// 28–47% of its time in the kernel zeroing the huge pages its new field columns, calendars
/// and relation indexes first touched (`clear_page_erms`). Without huge pages the whole
/// catalogue from a freshly opened full-city snapshot took 7.0–7.1 s against 12.1–12.6 s, while recombination and
/// counting, on memory already touched, measured the same (BENCHMARKS.md, issue 6). mimalloc
/// does the same at start-up when `MIMALLOC_ALLOW_THP=0` is set.
pub fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: `prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)` takes no pointers; it sets a flag of the
    // calling process that the kernel reads when it next maps memory. It fails harmlessly (on
    // a kernel without it) and its result is not needed.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_the_option_set() {
        // mimalloc's default purge delay (v3: 1000 ms; v2: 10 ms) unless the environment
        // says otherwise: a different value means the index names another option.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(matches!(freed_memory_kept_ms(), 1000 | 10));
        }
        keep_freed_memory(KEEP_FREED_MS);
        assert_eq!(freed_memory_kept_ms(), KEEP_FREED_MS);
    }

    /// Whether transparent huge pages are off for this process.
    #[cfg(target_os = "linux")]
    fn transparent_huge_pages_disabled() -> bool {
        // SAFETY: `prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)` takes no pointers and only reads the
        // calling process's flag.
        #[allow(unsafe_code)]
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        flag == 1
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_are_turned_off() {
        without_transparent_huge_pages();
        assert!(transparent_huge_pages_disabled());
    }
}
