//! The one error type of the serving crate.
//!
//! These are the failures that stop `xfer serve` before or while it listens
//! (exit status 2): a bad flag, a model or head that cannot be used (the
//! same checks as `xfer predict`), an address that cannot be bound. A bad
//! *upload* is never one of them: it is answered with a 4xx and
//! `{"error": ...}` and the server goes on (see `upload.rs`).
/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What can stop `xfer serve`.
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
    /// The model or head cannot be used (the inner error names the file).
    #[error(transparent)]
    Classifier(Box<xfer_predict::Error>),
    /// The listening address cannot be bound.
    #[error("--addr {addr}: cannot listen: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A thread or the async runtime could not be started, or the server
    /// failed while running.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The inference thread panicked (a bug; its message is kept).
    #[error("the inference thread stopped: {0}")]
    Inference(String),
}

impl From<xfer_predict::Error> for Error {
    fn from(e: xfer_predict::Error) -> Self {
        Error::Classifier(Box::new(e))
    }
}

impl Error {
    pub(crate) fn config(flag: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            flag,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(what: &'static str, source: std::io::Error) -> Self {
        Error::Io { what, source }
    }
}
