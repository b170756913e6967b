//! The one error type of the extract crate.
//!
//! A failure that stops `xfer extract` (a bad flag, a model without xfer
//! metadata, a missing ONNX Runtime, an unwritable output folder) is an
//! [`Error`]; every message names the file or flag and the reason, and where
//! there is an obvious fix, says it. One unreadable *image* is not an error
//! of this kind: it is a [`crate::pixels::BadImage`], listed in the split's
//! `errors.csv` while the run goes on.
use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What can stop an extraction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag value that cannot work.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag, e.g. `--shard`.
        flag: &'static str,
        /// What is wrong and what would work.
        reason: String,
    },
    /// An operating-system error on a file or folder.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The data folder is not laid out as `flow_from_directory` reads it.
    #[error("{path}: {reason}")]
    Layout {
        /// The folder concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The ONNX Runtime library is missing, unloadable or too old.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The model file is not an xfer base (no metadata, wrong inputs...).
    #[error("{path}: {reason}")]
    Model {
        /// The ONNX file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// ONNX Runtime failed while creating a session or running a batch.
    #[error("{path}: ONNX Runtime: {source}")]
    Ort {
        /// The ONNX file.
        path: PathBuf,
        /// The underlying error.
        source: ort::Error,
    },
    /// `--device cuda` was asked for and the CUDA provider cannot run.
    #[error("--device cuda: the CUDA execution provider is not available: {0}")]
    Cuda(String),
    /// Reading or writing a feature file failed.
    #[error(transparent)]
    Features(#[from] xfer_features::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
