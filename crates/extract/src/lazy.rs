//! The base model's session, built only when an image needs encoding.
//!
//! A rerun with nothing new is the common case (`make features` after any
//! change to the head), and building an ONNX Runtime session for Xception
//! takes a third of a second and a few hundred megabytes. What the run needs
//! before that, to know which cached vectors are this model's, is the
//! model's metadata and hash ([`ModelInfo::from_file`]); the session is
//! opened by the first batch that has something to encode.
use std::path::Path;

use crate::model::{BaseModel, ModelInfo, Provider, SessionOptions};
use crate::Result;

/// The model of one run: its metadata now, its session on first use.
pub(crate) struct LazyModel<'a> {
    path: &'a Path,
    info: ModelInfo,
    opts: SessionOptions,
    size: u32,
    quiet: bool,
    model: Option<BaseModel>,
}

impl<'a> LazyModel<'a> {
    /// Reads `path`'s metadata (its hash known: `sha256`); nothing of ONNX
    /// Runtime is loaded yet.
    pub(crate) fn new(
        path: &'a Path,
        sha256: String,
        opts: SessionOptions,
        size: u32,
        quiet: bool,
    ) -> Result<Self> {
        Ok(LazyModel {
            path,
            info: ModelInfo::with_hash(path, sha256)?,
            opts,
            size,
            quiet,
            model: None,
        })
    }

    /// The model's metadata (read from the file, before any session).
    pub(crate) fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The session, built on the first call.
    pub(crate) fn get(&mut self) -> Result<&mut BaseModel> {
        if self.model.is_none() {
            let model = BaseModel::open_with(self.path, self.info.clone(), &self.opts)?;
            model.check_side(self.size)?;
            if let (Some(why), false) = (model.fallback(), self.quiet) {
                eprintln!("xfer extract: running on CPU: the CUDA provider did not load: {why}");
            }
            self.model = Some(model);
        }
        Ok(self.model.as_mut().expect("opened above"))
    }

    /// The provider that ran, or `None` when no session was needed.
    pub(crate) fn provider(&self) -> Option<Provider> {
        self.model.as_ref().map(BaseModel::provider)
    }
}
