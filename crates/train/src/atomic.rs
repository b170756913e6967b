//! Files written whole or not at all.
//!
//! Every file `xfer train` and `xfer eval` leave (heads, JSON, CSV) goes
//! through [`write_atomic`]: a unique temporary name in the same folder,
//! fsync, a rename and an fsync of the folder, so an interrupted run or a
//! power cut never leaves a half-written file that a later tool would
//! trust. It sits below the modules that write files (the
//! run folder, the head, eval), so none of them needs another for it.
use std::path::Path;

use crate::Result;

/// Writes `bytes` to `path` durably (a unique temporary name, fsync,
/// rename, fsync of the folder; [`xfer_features::write_atomic`]), creating
/// the parent folder, so a power cut never leaves an empty head or JSON
/// file.
///
/// # Errors
/// [`crate::Error::Features`] with a write error naming the file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(xfer_features::write_atomic(path, bytes)?)
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
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"], "no temporary file left");
    }
}
