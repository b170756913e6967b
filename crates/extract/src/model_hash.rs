//! The model file's sha256, remembered by the file's identity.
//!
//! Every rerun must know the model's hash (it is part of the key that says
//! which cached vectors are this model's), and hashing Xception's 83 MB
//! costs more than everything else a rerun with nothing new does. So the
//! output folder remembers it in `.model-sha256.json`, keyed by the model's
//! path and identity ([`crate::file_id`]). Anything different, and the
//! file is hashed again. The memo is only a cache: a
//! missing, unreadable or unwritable one costs a hash, never an error.
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::file_id;
use crate::model::sha256_file;
use crate::{Error, Result};

const MEMO: &str = ".model-sha256.json";

/// The sha256 (hex) of `model`, from `out`'s memo when the file is the one
/// hashed before, else computed (and remembered).
///
/// # Errors
/// [`Error::Io`] when the model cannot be read.
pub(crate) fn sha256(model: &Path, out: &Path) -> Result<String> {
    let key = std::fs::canonicalize(model)
        .map_err(|e| Error::io(model, e))?
        .to_string_lossy()
        .into_owned();
    let meta = std::fs::metadata(model).map_err(|e| Error::io(model, e))?;
    let id = json!(file_id::of(&meta));
    let memo_path = out.join(MEMO);
    let mut memo: BTreeMap<String, Value> = std::fs::read(&memo_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(entry) = memo.get(&key) {
        if entry.get("identity") == Some(&id) {
            if let Some(sha) = entry.get("sha256").and_then(Value::as_str) {
                return Ok(sha.to_string());
            }
        }
    }
    let sha = sha256_file(model)?;
    memo.insert(key, json!({"identity": id, "sha256": sha}));
    if out.is_dir() && file_id::settled(&file_id::of(&meta), std::time::SystemTime::now()) {
        let text = serde_json::to_vec_pretty(&memo).expect("JSON values serialize");
        let _ = xfer_features::write_atomic(&memo_path, &text);
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, b"one").unwrap();
        assert_eq!(
            sha256(&model, dir.path()).unwrap(),
            sha256_file(&model).unwrap()
        );
        assert!(
            !dir.path().join(MEMO).exists(),
            "a file just written is not settled"
        );
        std::thread::sleep(std::time::Duration::from_millis(3100));
        let first = sha256(&model, dir.path()).unwrap();
        assert_eq!(first, sha256_file(&model).unwrap());
        assert!(dir.path().join(MEMO).is_file());
        // A memo entry is trusted only for the same identity: forge one
        // with another hash and see it used, then change the file.
        let text = std::fs::read_to_string(dir.path().join(MEMO)).unwrap();
        std::fs::write(dir.path().join(MEMO), text.replace(&first, "forged")).unwrap();
        assert_eq!(sha256(&model, dir.path()).unwrap(), "forged");
        std::fs::write(&model, b"two").unwrap(); // another identity
        assert_eq!(
            sha256(&model, dir.path()).unwrap(),
            sha256_file(&model).unwrap()
        );
        // An unreadable memo is just a miss.
        std::fs::write(dir.path().join(MEMO), b"{not json").unwrap();
        assert_eq!(
            sha256(&model, dir.path()).unwrap(),
            sha256_file(&model).unwrap()
        );
    }
}
