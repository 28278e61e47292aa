//! The thread pool every parallel region of the core runs in.
//!
//! rayon's global pool cannot be resized once built, but users expect
//! `rankcore.set_num_threads(n)` to take effect at any time, so we keep our own pool behind a
//! lock and rebuild it on resize. Results never depend on the pool's size: every parallel
//! region splits work into blocks whose boundaries depend only on the problem's shape.

use crate::{invalid, Result};
use std::sync::{Arc, RwLock};

static POOL: RwLock<Option<Arc<rayon::ThreadPool>>> = RwLock::new(None);

/// The thread count used when none was set: `RANKCORE_NUM_THREADS`, else the machine's
/// available parallelism.
pub fn default_num_threads() -> usize {
    std::env::var("RANKCORE_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(n: usize) -> Result<Arc<rayon::ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("rankcore-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| invalid!("could not start {n} threads: {e}"))
}

fn pool() -> Result<Arc<rayon::ThreadPool>> {
    if let Some(p) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Ok(p.clone());
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(build(default_num_threads())?);
    }
    Ok(slot.as_ref().expect("pool was just set").clone())
}

/// Resizes the pool. Calls already running finish on the old pool.
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(invalid!("n_threads must be a positive integer, got 0"));
    }
    let new = build(n)?;
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = Some(new);
    Ok(())
}

/// The number of threads the next call will use.
pub fn num_threads() -> usize {
    pool().map_or(1, |p| p.current_num_threads())
}

/// Runs `f` inside the pool, so that its rayon and faer parallelism uses our threads.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R> {
    Ok(pool()?.install(f))
}

/// Runs `f` on the calling thread with a scope of the pool: jobs `f` spawns on it run on the
/// pool's threads (no thread is created) while `f` goes on, and the call returns once they
/// have all finished.
pub fn scope<'s, R>(f: impl FnOnce(&rayon::Scope<'s>) -> R) -> Result<R> {
    Ok(pool()?.in_place_scope(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_and_install() {
        set_num_threads(3).unwrap();
        assert_eq!(num_threads(), 3);
        assert_eq!(install(rayon::current_num_threads).unwrap(), 3);
        assert!(set_num_threads(0).is_err());
        set_num_threads(2).unwrap();
        assert_eq!(install(rayon::current_num_threads).unwrap(), 2);
    }
}
