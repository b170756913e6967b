//! `xfer extract`: image folders to pooled vectors in Parquet.
//!
//! The expensive stage of transfer learning, done once: every image of
//! `DATA/<split>/<class>/` goes through Keras's `load_img` pixels
//! ([`pixels`]) and the frozen ONNX base ([`model`]), and its vector lands in
//! `FEATURES_DIR/<split>.parquet` (the contract of `xfer-features`).
//!
//! Three modules are public because `xfer predict` uses them too and they
//! stay stable: [`runtime`] (loading ONNX Runtime), [`model`] (the base and
//! its metadata) and [`pixels`] (image file to model input).
#![deny(missing_docs)]

mod decode;
mod error;
pub mod model;
pub mod pixels;
mod resize;
pub mod runtime;

pub use error::{Error, Result};

use std::path::PathBuf;

/// `xfer extract` arguments.
#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// Image folder as flow_from_directory reads it.
    #[arg(long)]
    pub data: PathBuf,
}

/// Runs `xfer extract`; returns the process exit status.
///
/// # Errors
/// Not written yet.
pub fn run(_args: ExtractArgs) -> Result<u8> {
    Err(Error::Flag {
        flag: "extract",
        reason: "not implemented yet".into(),
    })
}
