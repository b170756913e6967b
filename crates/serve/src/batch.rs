//! Dynamic batching: one thread owns the ONNX Runtime session and runs the
//! images of concurrent requests together.
//!
//! `Session::run` takes `&mut self`, so the session cannot be shared between
//! request handlers; and one call on 8 images costs far less than 8 calls on
//! one (on CPU the per-call overhead and the small per-image matrices leave
//! the cores idle; on a GPU even more so). So handlers decode their image on
//! the decoding pool and send the model input here over a bounded channel;
//! this thread takes the first waiting image, waits at most `max_wait` for
//! more (taking at once what is already queued, and not waiting at all when
//! no other request is in flight to join it), runs up to `max_batch` in one
//! call, and answers each request through its own one-shot channel. When
//! ONNX Runtime's threads fill the cores, each call takes its turn on them
//! (`turns.rs`): decoding pauses during the call and goes on between calls,
//! while this thread collects what it produces. The
//! thread ends when every sender is gone (the server has stopped and its
//! handlers have finished), after answering what it holds.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;
use xfer_predict::Classifier;

use crate::metrics::Metrics;
use crate::turns::{Turns, DRAIN};

/// One image's top classes, best first, or why inference failed.
pub(crate) type Answer = std::result::Result<Vec<(String, f32)>, String>;

/// One decoded image waiting for its batch.
pub(crate) struct Job {
    /// Model input, [`xfer_extract::pixels::PixelSpec::tensor_len`] floats.
    pub(crate) tensor: Vec<f32>,
    /// Classes to answer with.
    pub(crate) top: usize,
    /// Where the answer goes.
    pub(crate) reply: oneshot::Sender<Answer>,
    /// When the job was queued.
    pub(crate) queued: Instant,
}

/// Why a job was not queued.
pub(crate) enum Refused {
    /// The queue is full (more requests than the batcher can hold).
    Busy,
    /// The batcher has stopped.
    Stopped,
}

/// The handlers' side of the batcher.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: Sender<Job>,
}

impl Batcher {
    /// Starts the inference thread, which owns `classifier` from now on.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub(crate) fn start(
        classifier: Classifier,
        max_batch: usize,
        max_wait: Duration,
        metrics: Arc<Metrics>,
        turns: Arc<Turns>,
    ) -> std::io::Result<(Batcher, JoinHandle<()>)> {
        // Room for a few batches: beyond that, a flood gets 503 instead of
        // piling decoded images up in memory.
        let (tx, rx) = crossbeam_channel::bounded(4 * max_batch.max(16));
        let handle = std::thread::Builder::new()
            .name("xfer-infer".into())
            .spawn(move || run(classifier, &rx, max_batch, max_wait, &metrics, &turns))?;
        Ok((Batcher { tx }, handle))
    }

    /// Queues one job without blocking.
    pub(crate) fn submit(&self, job: Job) -> std::result::Result<(), Refused> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Busy,
            TrySendError::Disconnected(_) => Refused::Stopped,
        })
    }
}

fn run(
    mut classifier: Classifier,
    rx: &Receiver<Job>,
    max_batch: usize,
    max_wait: Duration,
    metrics: &Metrics,
    turns: &Turns,
) {
    let classes = classifier.head().classes().len();
    let len = classifier.spec().tensor_len();
    let mut tensors: Vec<f32> = Vec::new();
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + max_wait;
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            // Nobody else is being received or decoded: waiting would only
            // delay this batch (one client alone never pays --max-wait-ms).
            if metrics.in_flight.load(Ordering::Relaxed) <= jobs.len() as i64 {
                break;
            }
            match rx.recv_deadline(deadline) {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // A client that went away while its image waited needs no answer.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        tensors.clear();
        tensors.reserve(jobs.len() * len);
        for j in &jobs {
            tensors.extend_from_slice(&j.tensor);
        }
        let turn = turns.run(DRAIN);
        let called = Instant::now();
        for j in &jobs {
            metrics.queue.observe_duration(called - j.queued);
        }
        let result = classifier.classify(&tensors, jobs.len(), classes);
        drop(turn);
        metrics.inference.observe_duration(called.elapsed());
        metrics.batch_size.observe(jobs.len() as f64);
        match result {
            Ok(rows) => {
                for (job, mut row) in jobs.into_iter().zip(rows) {
                    row.truncate(job.top);
                    let _ = job.reply.send(Ok(row));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}
