//! The one error type of the prediction crate.
//!
//! These are the failures that stop `xfer predict` (exit status 2): a bad
//! flag, an unusable model or head, a head that belongs to another model.
//! An image that cannot be read is not one of them: it is reported in the
//! output in its place and the others are still classified (exit status 1).
use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What can stop `xfer predict`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag has a value outside its range.
    #[error("--{flag}: {reason}")]
    Config {
        /// The flag, without its dashes.
        flag: &'static str,
        /// What is wrong and what is allowed.
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
    /// The paths given hold no image at all.
    #[error("no images to classify in {}", display_paths(.paths))]
    NoImages {
        /// The command-line paths.
        paths: Vec<PathBuf>,
    },
    /// The head file is unreadable or inconsistent (the inner error names
    /// it). Boxed, as is [`Error::Model`], to keep `Result`s small.
    #[error(transparent)]
    Head(Box<xfer_train::Error>),
    /// The head's metadata cannot describe an input xfer can make (a size
    /// that is not square, an unknown resize filter).
    #[error("{path}: metadata `{key}`: {reason}")]
    HeadMeta {
        /// The head file.
        path: PathBuf,
        /// The metadata key.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The base model cannot be opened or run (the inner error names it).
    #[error(transparent)]
    Model(Box<xfer_extract::Error>),
    /// The head was trained on vectors of another model, size or
    /// preprocessing than the base given.
    #[error(
        "{head} does not fit {model}: its `{key}` is {head_value:?} but the model's is {model_value:?}; \
         the head was trained on vectors of another model (use the base it was trained with, \
         or retrain the head on features of this one)"
    )]
    Mismatch {
        /// The head file.
        head: PathBuf,
        /// The ONNX base.
        model: PathBuf,
        /// The metadata entry that differs.
        key: String,
        /// The head's value.
        head_value: String,
        /// The model's value.
        model_value: String,
    },
    /// Writing the results failed (a closed pipe, a full disk).
    #[error("writing the results: {0}")]
    Output(#[source] std::io::Error),
}

impl From<xfer_train::Error> for Error {
    fn from(e: xfer_train::Error) -> Self {
        Error::Head(Box::new(e))
    }
}

impl From<xfer_extract::Error> for Error {
    fn from(e: xfer_extract::Error) -> Self {
        Error::Model(Box::new(e))
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(flag: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            flag,
            reason: reason.into(),
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
