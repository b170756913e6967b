//! The dense head (placeholder: being written).
use std::path::PathBuf;

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not written yet.
    #[error("not implemented yet")]
    Todo,
}

/// `xfer train` arguments.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Features folder.
    #[arg(long)]
    pub features: PathBuf,
}

/// `xfer eval` arguments.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Features folder.
    #[arg(long)]
    pub features: PathBuf,
}

/// Runs `xfer train`; returns the process exit status.
pub fn run(_args: TrainArgs) -> Result<u8> {
    Err(Error::Todo)
}

/// Runs `xfer eval`; returns the process exit status.
pub fn eval(_args: EvalArgs) -> Result<u8> {
    Err(Error::Todo)
}
