//! Files written whole or not at all.
//!
//! Every file `xfer train` and `xfer eval` leave (heads, JSON, CSV) goes
//! through [`write_atomic`]: a temporary name in the same folder, then a
//! rename, so an interrupted run never leaves a half-written file that a
//! later tool would trust. It sits below the modules that write files (the
//! run folder, the head, eval), so none of them needs another for it.
use std::path::{Path, PathBuf};

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
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Pretty JSON of `value`, written atomically.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("plain data serializes");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.json");
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        assert!(!dir.path().join("sub/a.json.tmp").exists());
    }
}
