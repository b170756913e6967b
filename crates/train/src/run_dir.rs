//! The run folder: every file a training run leaves behind.
//!
//! Files are written under a temporary name in the same folder and renamed
//! into place, so an interrupted run never leaves a half-written
//! `history.json` or head that a later tool would trust.
use std::path::Path;

use crate::{Error, Result};

/// Writes `bytes` to `path` through `<path>.tmp` and a rename, creating the
/// parent folder.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
