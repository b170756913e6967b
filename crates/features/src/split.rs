//! Where a split lives in a features folder, and reading it whole.
//!
//! A split is `<split>.parquet`, or the shards `<split>-<I>-of-<N>.parquet`
//! (I from 0) written by `xfer extract --shard I/N` on many machines. Readers
//! accept either, check that the shards are complete and agree on their
//! metadata, and give back rows in `flow_from_directory` order whatever the
//! sharding, so a sharded run equals an unsharded one.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{read_file, Error, FeatureTable, Result};

/// File name of an unsharded split.
pub fn split_file_name(split: &str) -> String {
    format!("{split}.parquet")
}

/// File name of shard `index` (from 0) of `count`.
pub fn shard_file_name(split: &str, index: usize, count: usize) -> String {
    format!("{split}-{index}-of-{count}.parquet")
}

fn parse_shard(name: &str) -> Option<(String, usize, usize)> {
    let stem = name.strip_suffix(".parquet")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (split, index) = rest.rsplit_once('-')?;
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (!split.is_empty()).then(|| (split.to_string(), index, count))
}

/// The split names present in `dir`, sorted.
///
/// # Errors
/// When `dir` cannot be listed.
pub fn split_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((split, _, _)) = parse_shard(&name) {
            names.insert(split);
        } else if let Some(split) = name.strip_suffix(".parquet") {
            names.insert(split.to_string());
        }
    }
    Ok(names.into_iter().collect())
}

/// The files holding `split` in `dir`: the single file, or every shard in
/// index order.
///
/// # Errors
/// [`Error::MissingSplit`] when there is none; [`Error::Shards`] when both
/// forms exist, shard counts differ, or a shard is missing.
pub fn split_files(dir: &Path, split: &str) -> Result<Vec<PathBuf>> {
    let single = dir.join(split_file_name(split));
    let mut shards: BTreeMap<usize, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((s, i, n)) = parse_shard(&name) {
                if s == split {
                    shards.entry(n).or_default().insert(i, entry.path());
                }
            }
        }
    }
    let shards_err = |reason: String| Error::Shards {
        dir: dir.into(),
        split: split.into(),
        reason,
    };
    match (single.is_file(), shards.len()) {
        (true, 0) => Ok(vec![single]),
        (true, _) => Err(shards_err(format!(
            "both {} and shard files exist; remove one of the two",
            single.display()
        ))),
        (false, 0) => Err(Error::MissingSplit {
            dir: dir.into(),
            split: split.into(),
        }),
        (false, 1) => {
            let (&n, files) = shards.iter().next().expect("one shard count");
            let missing: Vec<String> = (0..n)
                .filter(|i| !files.contains_key(i))
                .map(|i| shard_file_name(split, i, n))
                .collect();
            if !missing.is_empty() {
                return Err(shards_err(format!(
                    "missing shards: {}",
                    missing.join(", ")
                )));
            }
            Ok(files.values().cloned().collect())
        }
        (false, _) => Err(shards_err(format!(
            "shards of different counts ({:?}); keep one set",
            shards.keys().collect::<Vec<_>>()
        ))),
    }
}

/// Reads a whole split (one file or all its shards), checking that every
/// shard has the same metadata, and returns the rows in
/// `flow_from_directory` order (class, then folder, then file name).
///
/// # Errors
/// Those of [`split_files`] and [`read_file`], and [`Error::Mismatch`] when
/// shards disagree.
pub fn read_split(dir: &Path, split: &str) -> Result<FeatureTable> {
    let files = split_files(dir, split)?;
    let mut table = read_file(&files[0])?;
    if files.len() == 1 {
        return Ok(table);
    }
    for f in &files[1..] {
        let t = read_file(f)?;
        if let Some((key, expected, got)) = table.meta.first_difference_all(&t.meta) {
            return Err(Error::Mismatch {
                path: f.clone(),
                first: files[0].clone(),
                key,
                expected,
                got,
            });
        }
        table.extend(&t)?;
    }
    let mut order: Vec<usize> = (0..table.len()).collect();
    order.sort_by(|&a, &b| flow_key(&table, a).cmp(&flow_key(&table, b)));
    Ok(table.select(&order))
}

/// Sort key reproducing Keras's walk: class, then `sorted(os.walk)` roots,
/// then sorted file names, then view.
fn flow_key(t: &FeatureTable, i: usize) -> (i32, &str, &str, i32) {
    let p = t.paths[i].as_str();
    let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
    (t.labels[i], dir, name, t.views[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{write_file, FeatureMeta};

    fn table(paths: &[(&str, i32)]) -> FeatureTable {
        let mut t = FeatureTable::empty(FeatureMeta::new(vec!["a".into(), "b".into()], 2));
        for (i, (p, l)) in paths.iter().enumerate() {
            t.push(*p, *l, [0; 32], &[i as f32, 1.0], 0).unwrap();
        }
        t
    }

    #[test]
    fn shards_read_back_in_flow_order() {
        let dir = tempfile::tempdir().unwrap();
        let whole = table(&[
            ("a/1.png", 0),
            ("a/2.png", 0),
            ("a/x/0.png", 0),
            ("b/0.png", 1),
        ]);
        write_file(
            &dir.path().join(shard_file_name("train", 0, 2)),
            &whole.select(&[1, 3]),
        )
        .unwrap();
        write_file(
            &dir.path().join(shard_file_name("train", 1, 2)),
            &whole.select(&[0, 2]),
        )
        .unwrap();
        assert_eq!(read_split(dir.path(), "train").unwrap(), whole);
        assert_eq!(split_names(dir.path()).unwrap(), vec!["train".to_string()]);
    }

    #[test]
    fn missing_shard_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_file(
            &dir.path().join(shard_file_name("val", 0, 3)),
            &table(&[("a/1.png", 0)]),
        )
        .unwrap();
        let err = split_files(dir.path(), "val").unwrap_err().to_string();
        assert!(
            err.contains("val-1-of-3.parquet") && err.contains("val-2-of-3.parquet"),
            "{err}"
        );
    }

    #[test]
    fn missing_split_and_mixed_forms_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            split_files(dir.path(), "test"),
            Err(Error::MissingSplit { .. })
        ));
        write_file(&dir.path().join("test.parquet"), &table(&[("a/1.png", 0)])).unwrap();
        write_file(
            &dir.path().join(shard_file_name("test", 0, 1)),
            &table(&[("a/1.png", 0)]),
        )
        .unwrap();
        assert!(matches!(
            split_files(dir.path(), "test"),
            Err(Error::Shards { .. })
        ));
    }

    #[test]
    fn shards_with_other_metadata_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = table(&[("a/1.png", 0)]);
        let mut b = table(&[("b/1.png", 1)]);
        b.meta.size = "299x299".into();
        write_file(&dir.path().join(shard_file_name("train", 0, 2)), &a).unwrap();
        write_file(&dir.path().join(shard_file_name("train", 1, 2)), &b).unwrap();
        let err = read_split(dir.path(), "train").unwrap_err().to_string();
        assert!(
            err.contains("xfer.size") && err.contains("train-1-of-2"),
            "{err}"
        );
    }

    /// Views made with other augmentation settings share the model key but
    /// are not the same data: their shards never merge.
    #[test]
    fn shards_with_other_augmentation_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = table(&[("a/1.png", 0)]);
        let mut b = table(&[("b/1.png", 1)]);
        a.meta
            .extra
            .insert("xfer.augment".into(), "{\"zoom\":0.1}".into());
        b.meta
            .extra
            .insert("xfer.augment".into(), "{\"zoom\":0.2}".into());
        write_file(&dir.path().join(shard_file_name("train", 0, 2)), &a).unwrap();
        write_file(&dir.path().join(shard_file_name("train", 1, 2)), &b).unwrap();
        let err = read_split(dir.path(), "train").unwrap_err().to_string();
        assert!(err.contains("xfer.augment") && err.contains("0.2"), "{err}");
    }
}
