//! The dense head (placeholder: being written).
use std::path::PathBuf;

mod error;
mod gemm;
pub mod head;
mod run_dir;

pub use error::{Error, Result};
pub use head::Head;

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
    Err(Error::config("features", "not implemented yet"))
}

/// Runs `xfer eval`; returns the process exit status.
pub fn eval(_args: EvalArgs) -> Result<u8> {
    Err(Error::config("features", "not implemented yet"))
}
