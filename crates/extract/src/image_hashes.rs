//! The images' sha256, remembered by file identity between runs.
//!
//! A rerun must know every image's hash to find its cached vector, and
//! reading and hashing every image file is then nearly all the work (101 MB
//! for the 3409 clothing images; a 100k-image folder would read gigabytes).
//! So each output file keeps, beside it, `.<name>.parquet.hashes`: for
//! every image of the last run, its identity ([`crate::file_id`]) and
//! sha256. An image whose identity is unchanged is not read again; any
//! other is read and hashed as before. It is only a cache: missing or
//! unreadable, it costs the reads; it is written under the output's lock.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use crate::file_id::{self, FileId};

/// Hashes known from the last run, by image path.
#[derive(Debug, Default)]
pub(crate) struct ImageHashes {
    known: HashMap<String, (FileId, [u8; 32])>,
}

/// The memo file of output `path`.
pub(crate) fn memo_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.hashes"))
}

fn parse(v: &Value) -> Option<(FileId, [u8; 32])> {
    let a = v.as_array()?;
    if a.len() != 8 {
        return None;
    }
    let mut id = [0i64; 7];
    for (slot, x) in id.iter_mut().zip(a) {
        *slot = x.as_i64()?;
    }
    let sha = hex::decode(a[7].as_str()?).ok()?.try_into().ok()?;
    Some((id, sha))
}

impl ImageHashes {
    /// The memo of output `path`, or an empty one.
    pub(crate) fn load(path: &Path) -> Self {
        let known = std::fs::read(memo_path(path))
            .ok()
            .and_then(|b| serde_json::from_slice::<HashMap<String, Value>>(&b).ok())
            .map(|m| {
                m.into_iter()
                    .filter_map(|(rel, v)| parse(&v).map(|e| (rel, e)))
                    .collect()
            })
            .unwrap_or_default();
        ImageHashes { known }
    }

    /// The remembered hash of `rel` if the file still has identity `id`.
    pub(crate) fn get(&self, rel: &str, id: &FileId) -> Option<[u8; 32]> {
        self.known
            .get(rel)
            .filter(|(known, _)| known == id)
            .map(|(_, sha)| *sha)
    }

    /// Remembers `entries` (path, identity, sha256) for output `path`,
    /// leaving out files too recently changed to be trusted; nothing is
    /// written when that is what `self` (the memo as loaded) already holds,
    /// so a rerun with nothing new writes nothing. A failure to write is not
    /// an error: the next run reads the images again.
    pub(crate) fn save<'a>(
        &self,
        path: &Path,
        entries: impl Iterator<Item = (&'a str, FileId, [u8; 32])>,
    ) {
        let now = SystemTime::now();
        let keep: HashMap<String, (FileId, [u8; 32])> = entries
            .filter(|(_, id, _)| file_id::settled(id, now))
            .map(|(rel, id, sha)| (rel.to_string(), (id, sha)))
            .collect();
        if keep == self.known {
            return;
        }
        let map: serde_json::Map<String, Value> = keep
            .into_iter()
            .map(|(rel, (id, sha))| {
                let mut a: Vec<Value> = id.iter().map(|&x| x.into()).collect();
                a.push(hex::encode(sha).into());
                (rel, Value::Array(a))
            })
            .collect();
        let text = serde_json::to_vec(&map).expect("JSON values serialize");
        let _ = xfer_features::write_atomic(&memo_path(path), &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_trusts_only_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("train.parquet");
        let old: FileId = [1, 2, 3, 1_000_000, 5, 1_000_000, 7];
        let fresh: FileId = [1, 2, 3, i64::MAX / 4, 0, i64::MAX / 4, 0];
        let entries = [("a/1.png", old, [9u8; 32]), ("a/2.png", fresh, [8u8; 32])];
        ImageHashes::default().save(&out, entries.into_iter());
        let memo = dir.path().join(".train.parquet.hashes");
        assert!(memo.is_file());
        let m = ImageHashes::load(&out);
        // The same entries again: the file is not rewritten.
        let written = std::fs::metadata(&memo).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.save(&out, entries.into_iter());
        assert_eq!(
            std::fs::metadata(&memo).unwrap().modified().unwrap(),
            written
        );
        assert_eq!(m.get("a/1.png", &old), Some([9; 32]));
        let mut moved = old;
        moved[6] += 1;
        assert_eq!(m.get("a/1.png", &moved), None, "another identity");
        assert_eq!(m.get("a/2.png", &fresh), None, "not settled: not kept");
        std::fs::write(memo_path(&out), b"[not a map").unwrap();
        assert_eq!(ImageHashes::load(&out).get("a/1.png", &old), None);
    }
}
