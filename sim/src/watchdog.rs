//! Naming the seed that hangs a sweep.
//!
//! A simulated run is bounded in virtual time and in node steps, but a
//! loop inside one step of the code under test (or of the engine) never
//! returns to the event loop, so no budget of the run itself can fire.
//! Without help a sweep then hangs with no seed named, and a CI job dies
//! at its own time limit with nothing to replay. A [`SeedWatch`] notes
//! when each worker started its seed; a watching thread reports a seed
//! that has run longer than a wall-clock limit, with the command that
//! replays it.
//!
//! The wall clock only decides when to give up on a seed: nothing the
//! simulation does depends on it, so runs stay deterministic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the watching thread looks at the running seeds.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The seeds running on each worker, and since when.
#[derive(Debug)]
pub struct SeedWatch {
    running: Mutex<Vec<Option<(u64, Instant)>>>,
    stopped: AtomicBool,
}

impl SeedWatch {
    /// A watch over `workers` workers, numbered from 0.
    pub fn new(workers: usize) -> SeedWatch {
        SeedWatch {
            running: Mutex::new(vec![None; workers]),
            stopped: AtomicBool::new(false),
        }
    }

    /// Worker `worker` starts `seed`.
    pub fn start(&self, worker: usize, seed: u64) {
        if let Ok(mut running) = self.running.lock() {
            running[worker] = Some((seed, Instant::now()));
        }
    }

    /// Worker `worker` finished its seed.
    pub fn finish(&self, worker: usize) {
        if let Ok(mut running) = self.running.lock() {
            running[worker] = None;
        }
    }

    /// Ends [`SeedWatch::watch`]: the sweep is over.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Watches until [`SeedWatch::stop`], or until a seed has run for
    /// longer than `limit`; that seed and how long it has run are then
    /// returned (the lowest such seed, so the answer does not depend on
    /// which worker drew it). The caller decides what to do: its worker
    /// is stuck and will not come back.
    pub fn watch(&self, limit: Duration) -> Option<(u64, Duration)> {
        assert!(
            limit > Duration::ZERO,
            "a zero limit would report every seed"
        );
        while !self.stopped.load(Ordering::Relaxed) {
            std::thread::sleep(POLL_INTERVAL.min(limit));
            let Ok(running) = self.running.lock() else {
                return None;
            };
            let hung = running
                .iter()
                .flatten()
                .map(|(seed, started)| (*seed, started.elapsed()))
                .filter(|(_, elapsed)| *elapsed > limit)
                .min_by_key(|(seed, _)| *seed);
            if hung.is_some() {
                return hung;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_running_past_the_limit_is_named() {
        let watch = SeedWatch::new(2);
        watch.start(0, 7);
        watch.start(1, 3);
        watch.finish(1);
        let (seed, elapsed) = watch.watch(Duration::from_millis(50)).unwrap();
        assert_eq!(seed, 7, "seed 3 finished; seed 7 is still running");
        assert!(elapsed > Duration::from_millis(50));
    }

    #[test]
    fn a_stopped_watch_names_no_seed() {
        let watch = SeedWatch::new(1);
        watch.start(0, 1);
        watch.stop();
        assert_eq!(watch.watch(Duration::from_secs(60)), None);
    }
}
