//! `xfer extract`: image folders to pooled vectors in Parquet.
//!
//! The expensive stage of transfer learning, done once so that every head
//! experiment afterwards is nearly free. Every image of
//! `DATA/<split>/<class>/` is read as Keras's `load_img` reads it
//! ([`pixels`]), run through the frozen ONNX base ([`model`]), and its
//! vector lands in `FEATURES_DIR/<split>.parquet` (the contract kept by
//! `xfer-features`), in `flow_from_directory` order.
//!
//! Three modules are public because `xfer predict` uses them too and they
//! stay stable: [`runtime`] (loading ONNX Runtime), [`model`] (the base, its
//! metadata, batches in and vectors out) and [`pixels`] (image file to model
//! input). The rest is the command: [`ExtractArgs`] (flags) are validated
//! into a config, the data folder is walked in Keras's order, a pipeline
//! decodes in parallel while the model runs, reuses earlier vectors, and
//! writes crash-safe output. With `--augment K` the same pipeline also
//! writes K augmented views of every training image (Keras
//! `ImageDataGenerator` transforms, `augment.rs`) to
//! `FEATURES_DIR/views/train.parquet`, cached like the plain vectors.
#![deny(missing_docs)]

mod args;
mod augment;
mod cache;
mod config;
mod cuda;
mod decode;
mod error;
mod file_id;
mod image_hashes;
mod lazy;
mod lock;
pub mod model;
mod model_hash;
mod onnx_meta;
mod pipeline;
pub mod pixels;
mod progress;
mod report;
mod resize;
mod run;
pub mod runtime;
mod walk;

pub use args::{AugmentArgs, ExtractArgs};
pub use augment::FillMode;
pub use error::{Error, Result};

/// Runs `xfer extract`; returns the process exit status (0, or 1 when
/// nothing could be extracted or, with `--strict`, anything was skipped).
///
/// # Errors
/// Any [`Error`] that stops the run: a bad flag or data layout, a model that
/// is not an xfer base, a missing ONNX Runtime, an unwritable output.
pub fn run(args: ExtractArgs) -> Result<u8> {
    run::run(config::Config::try_from(args)?)
}
