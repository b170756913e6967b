//! Decoding and inference taking turns on the cores, as `xfer extract`
//! shares them.
//!
//! When ONNX Runtime's intra-op threads fill every core
//! ([`xfer_extract::model::BaseModel::takes_turns`]), an image decoded on
//! the pool during a run preempts one of ORT's threads, and each parallel
//! operator then waits at its barrier for that thread: the run slows by far
//! more than the decode costs (before this gate, at commit 3c8c5d7,
//! BENCHMARKS.md section 7: 177 ms of calls per image with 32 concurrent
//! clients against 146 ms with one). So here a
//! run and the decodes exclude each other: a run waits for the decodes
//! under way (they are short) and holds new ones back until it returns;
//! the decodes then have every core while the batcher collects what they
//! produce (within `--max-wait-ms`, as before). A run waits for decodes
//! under way at most [`DRAIN`]: one slow decode (a large image within
//! `--max-pixels`) may then overlap the run, but never holds a batch back
//! longer than that.
//!
//! With a spare core, or on a GPU, the gate is open: decoding runs beside
//! inference.
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Longest a run waits for the decodes under way to finish.
pub(crate) const DRAIN: Duration = Duration::from_millis(50);

#[derive(Default)]
struct State {
    /// Decodes under way.
    decoding: usize,
    /// A run is under way or waiting to start: no new decode begins.
    running: bool,
}

/// The gate between the decoding pool and the inference thread.
#[derive(Default)]
pub(crate) struct Turns {
    /// False: decoding and inference overlap freely.
    enabled: bool,
    state: Mutex<State>,
    changed: Condvar,
}

/// A decode's turn, held until dropped.
pub(crate) struct DecodeTurn<'a>(Option<&'a Turns>);

/// A run's turn, held until dropped.
pub(crate) struct RunTurn<'a>(Option<&'a Turns>);

impl Turns {
    /// A gate that makes decoding and inference take turns when `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        Turns {
            enabled,
            ..Turns::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two plain values, always consistent: a panic
        // elsewhere while holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits while a run is under way or about to start, then holds a
    /// decode's turn (others may decode at the same time).
    pub(crate) fn decode(&self) -> DecodeTurn<'_> {
        if !self.enabled {
            return DecodeTurn(None);
        }
        let mut s = self.lock();
        while s.running {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.decoding += 1;
        DecodeTurn(Some(self))
    }

    /// Holds new decodes back, waits for those under way to finish (at most
    /// `drain`), then holds the run's turn.
    pub(crate) fn run(&self, drain: Duration) -> RunTurn<'_> {
        if !self.enabled {
            return RunTurn(None);
        }
        let until = Instant::now() + drain;
        let mut s = self.lock();
        s.running = true;
        while s.decoding > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        RunTurn(Some(self))
    }
}

impl Drop for DecodeTurn<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            let mut s = t.lock();
            s.decoding -= 1;
            if s.decoding == 0 {
                t.changed.notify_all();
            }
        }
    }
}

impl Drop for RunTurn<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            t.lock().running = false;
            t.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn a_decode_waits_for_the_run_to_end() {
        let turns = Turns::new(true);
        let decoded = AtomicBool::new(false);
        std::thread::scope(|s| {
            let run = turns.run(LONG);
            let h = s.spawn(|| {
                let _d = turns.decode();
                decoded.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(!decoded.load(Ordering::SeqCst), "decoded during a run");
            drop(run);
            h.join().unwrap();
            assert!(decoded.load(Ordering::SeqCst));
        });
    }

    #[test]
    fn a_run_waits_for_the_decodes_under_way_and_holds_new_ones() {
        let turns = Turns::new(true);
        let ran = AtomicBool::new(false);
        let late = AtomicBool::new(false);
        std::thread::scope(|s| {
            let d1 = turns.decode();
            let d2 = turns.decode();
            let runner = s.spawn(|| {
                let _r = turns.run(LONG);
                ran.store(true, Ordering::SeqCst);
                // A decode asked for meanwhile has not begun.
                std::thread::sleep(Duration::from_millis(100));
                assert!(
                    !late.load(Ordering::SeqCst),
                    "a new decode began before the run"
                );
            });
            std::thread::sleep(Duration::from_millis(50));
            let newcomer = s.spawn(|| {
                let _d = turns.decode();
                late.store(true, Ordering::SeqCst);
            });
            drop(d1);
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !ran.load(Ordering::SeqCst),
                "ran while a decode was under way"
            );
            drop(d2);
            runner.join().unwrap();
            newcomer.join().unwrap();
            assert!(ran.load(Ordering::SeqCst) && late.load(Ordering::SeqCst));
        });
    }

    #[test]
    fn a_slow_decode_holds_a_run_back_at_most_the_drain_time() {
        let turns = Turns::new(true);
        let slow = turns.decode();
        let t = Instant::now();
        let run = turns.run(Duration::from_millis(20));
        assert!(t.elapsed() < LONG);
        drop(run);
        drop(slow);
        // Everything released: both turns are free again.
        drop(turns.decode());
        drop(turns.run(LONG));
    }

    #[test]
    fn disabled_the_gate_never_waits() {
        let turns = Turns::new(false);
        let _r = turns.run(LONG);
        let _d = turns.decode();
        let _r2 = turns.run(LONG);
    }
}
