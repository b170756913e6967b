//! The one error type of the training crate.
//!
//! Every variant names the file, flag or split it concerns and says what is
//! wrong, so a user can fix the input without reading the code. A diverging
//! run is not an error (it is an outcome a sweep reports and moves past), so
//! it has no variant here.
use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong training, evaluating or reading a head.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a feature file failed (missing split, bad shard set, corrupt
    /// file); the inner error names the file.
    #[error(transparent)]
    Features(#[from] xfer_features::Error),
    /// An operating-system error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A flag has a value outside its range.
    #[error("--{flag}: {reason}")]
    Config {
        /// The flag, without its dashes.
        flag: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// Two feature splits (or a head and a split) come from different
    /// models, sizes, preprocessing or class lists.
    #[error("{path}: metadata `{key}` is {got:?} but {other} has {expected:?}; they come from different models or data and cannot be mixed")]
    Mismatch {
        /// The file that disagrees.
        path: PathBuf,
        /// The file it is compared with.
        other: PathBuf,
        /// The metadata key that differs.
        key: String,
        /// The value in `other`.
        expected: String,
        /// The value in `path`.
        got: String,
    },
    /// A split holds no rows.
    #[error("{path}: split `{split}` holds no rows")]
    EmptySplit {
        /// The feature file(s) of the split.
        path: PathBuf,
        /// The split name.
        split: String,
    },
    /// A feature value is NaN or infinite.
    #[error("{path}: row {row} ({image}) has a non-finite value ({value}) at feature {index}")]
    NonFinite {
        /// The feature file(s) of the split.
        path: PathBuf,
        /// Row number in flow order, from 0.
        row: usize,
        /// The image path of the row.
        image: String,
        /// Index inside the vector.
        index: usize,
        /// The value, `NaN` or `inf`.
        value: f32,
    },
    /// A class has no training rows, so the head could never learn it.
    #[error("{path}: class `{class}` has no rows in split `{split}`; every class needs training examples")]
    EmptyClass {
        /// The feature file(s) of the training split.
        path: PathBuf,
        /// The split name.
        split: String,
        /// The class without rows.
        class: String,
    },
    /// A head file is unreadable or inconsistent.
    #[error("{path}: not a usable head file: {reason}")]
    Head {
        /// The head file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Drawing a plot failed.
    #[error("{path}: drawing failed: {reason}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// The plotting library's message.
        reason: String,
    },
    /// `--views` and the augmented views of the training split are missing,
    /// incomplete or older than its plain rows.
    #[error("{path}: {reason}")]
    Views {
        /// The views file(s).
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// `--out` cannot be replaced by a new run (a folder that is not a
    /// run folder, a file, the features' own folder).
    #[error("{path}: {reason}")]
    RunFolder {
        /// The `--out` folder.
        path: PathBuf,
        /// Why it is left alone.
        reason: String,
    },
    /// An environment variable has a value xfer does not know.
    #[error("{var}={value:?}: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it may be.
        reason: String,
    },
    /// The linfa baseline failed to fit.
    #[error("baseline (linfa logistic regression): {0}")]
    Baseline(String),
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

    pub(crate) fn head(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Head {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
