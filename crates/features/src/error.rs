//! The one error type of the feature-file crate.
//!
//! Every variant names the file it concerns where there is one, so a user
//! sees which of many shards is wrong and why.
use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong reading or writing feature files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a file or folder failed: a full disk, a read-only folder, a
    /// missing permission (said in plain words, see [`crate::describe_io`]).
    #[error("writing {path}: {reason}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why, e.g. `no space left on device`.
        reason: String,
    },
    /// The Parquet layer failed reading (corrupt or truncated file, say).
    #[error("{path}: not a readable Parquet feature file: {source}")]
    Parquet {
        /// The file, or `<memory>`.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// The Arrow layer failed while building or reading columns.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A required column is missing or has the wrong type.
    #[error("{path}: column `{column}`: {reason}")]
    Column {
        /// The file.
        path: PathBuf,
        /// The column name.
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required metadata key is missing or unparsable.
    #[error("{path}: metadata `{key}`: {reason}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A vector has another length than the table's dimension.
    #[error("feature vector of length {got}, expected {expected}")]
    FeatureDim {
        /// The table's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A label outside the class list.
    #[error("label {label} outside the {classes} classes")]
    Label {
        /// The label.
        label: i64,
        /// The number of classes.
        classes: usize,
    },
    /// Shards or files of one split disagree on their metadata.
    #[error("{path}: metadata `{key}` is {got:?} but {first} has {expected:?}")]
    Mismatch {
        /// The disagreeing file.
        path: PathBuf,
        /// The first file read.
        first: PathBuf,
        /// The key that differs.
        key: String,
        /// The value in the first file.
        expected: String,
        /// The value in this file.
        got: String,
    },
    /// No file holds the split.
    #[error("{dir}: no feature file for split `{split}` (expected {split}.parquet or {split}-I-of-N.parquet)")]
    MissingSplit {
        /// The features folder.
        dir: PathBuf,
        /// The split name.
        split: String,
    },
    /// A split's shard set is incomplete or mixes shard counts.
    #[error("{dir}: split `{split}`: {reason}")]
    Shards {
        /// The features folder.
        dir: PathBuf,
        /// The split name.
        split: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
