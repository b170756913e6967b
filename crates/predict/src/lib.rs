//! Classifying new images (placeholder: being written).
use std::path::PathBuf;

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong predicting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not written yet.
    #[error("not implemented yet")]
    Todo,
}

/// `xfer predict` arguments.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Images or folders.
    pub inputs: Vec<PathBuf>,
}

/// Runs `xfer predict`; returns the process exit status.
pub fn run(_args: PredictArgs) -> Result<u8> {
    Err(Error::Todo)
}
