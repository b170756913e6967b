//! `xfer serve`: the trained classifier over HTTP.
//!
//! The model server our users would otherwise assemble from Python pieces,
//! with xfer's exact pixels: an image posted to `/predict` goes the way
//! `xfer predict` takes it (the same [`xfer_predict::Classifier`]: base and
//! head checked to belong together, input side, resize and preprocessing
//! from the head's metadata, the pixels of [`xfer_extract::pixels`]) and the
//! answer is the JSON object `xfer predict --json` prints, less `path`, so
//! the probabilities are the same.
//!
//! What serving adds: concurrent requests share one ONNX Runtime call
//! (`batch.rs`: one thread owns the session, requests wait at most
//! `--max-wait-ms`); decoding runs on a pool beside it, taking turns with
//! the calls when ONNX Runtime's threads fill the cores (`turns.rs`, as
//! `xfer extract` shares them); uploads are received
//! defensively (`upload.rs`: `--max-body`, `--read-timeout-ms`, the
//! decoder's `--max-pixels`, each refusal a 4xx with `{"error": ...}`);
//! `/metrics` (`metrics.rs`) says how batches fill and where time goes;
//! SIGTERM or Ctrl-C stops accepting, finishes what is in flight and exits
//! 0 (`server.rs`). The HTTP stack is axum on hyper and tokio.
#![deny(missing_docs)]

mod args;
mod batch;
mod error;
mod metrics;
mod routes;
mod server;
mod turns;
mod upload;

pub use args::{ServeArgs, ServeConfig};
pub use error::{Error, Result};

/// Runs `xfer serve` until SIGTERM or Ctrl-C; returns the exit status (0).
///
/// # Errors
/// A bad flag, an unusable model or head (as `xfer predict` reports them),
/// an address that cannot be bound, or a failure of the server itself.
pub fn run(args: ServeArgs) -> Result<u8> {
    server::run(ServeConfig::try_from(args)?)
}
