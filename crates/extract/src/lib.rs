//! Images to pooled vectors (placeholder: being written).
use std::path::PathBuf;

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong extracting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not written yet.
    #[error("not implemented yet")]
    Todo,
}

/// `xfer extract` arguments.
#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// Image folder as flow_from_directory reads it.
    #[arg(long)]
    pub data: PathBuf,
}

/// Runs `xfer extract`; returns the process exit status.
pub fn run(_args: ExtractArgs) -> Result<u8> {
    Err(Error::Todo)
}
