//! Loading the training and validation vectors once, checked.
//!
//! Everything downstream (every epoch, every sweep configuration, the
//! baseline) reads the same contiguous row-major `f32` buffer, so it is
//! loaded and checked here a single time: a split must have rows, finite
//! values only, and the two splits must come from the same model, size,
//! preprocessing and class list; every class needs training rows. Each
//! error names the feature file (or the shard set) at fault.
use std::path::{Path, PathBuf};

use xfer_features::{read_split, split_files, FeatureMeta};

use crate::{Error, Result};

/// One split in memory.
#[derive(Debug, Clone)]
pub(crate) struct Split {
    /// Split name (`train`, `validation`, ...).
    pub(crate) name: String,
    /// The file, or `DIR/<split>-*-of-N.parquet` for shards (for messages).
    pub(crate) source: PathBuf,
    /// Rows, `n × dim`, row-major.
    pub(crate) x: Vec<f32>,
    /// Labels, indexes into the class list.
    pub(crate) y: Vec<u32>,
}

impl Split {
    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.y.len()
    }
}

/// The two splits a run trains and validates on, and their metadata.
#[derive(Debug, Clone)]
pub(crate) struct Data {
    pub(crate) meta: FeatureMeta,
    pub(crate) train: Split,
    pub(crate) val: Split,
}

impl Data {
    /// Vector dimension.
    pub(crate) fn dim(&self) -> usize {
        self.meta.dim
    }

    /// Number of classes.
    pub(crate) fn classes(&self) -> usize {
        self.meta.classes.len()
    }
}

fn source(dir: &Path, split: &str) -> PathBuf {
    match split_files(dir, split) {
        Ok(files) if files.len() == 1 => files[0].clone(),
        Ok(files) => dir.join(format!("{split}-*-of-{}.parquet", files.len())),
        Err(_) => dir.join(format!("{split}.parquet")),
    }
}

/// Reads one split (one file or its shards) and checks it has rows and
/// finite values.
///
/// # Errors
/// Those of [`read_split`]; [`Error::EmptySplit`], [`Error::NonFinite`].
pub(crate) fn load_split(dir: &Path, split: &str) -> Result<(FeatureMeta, Split)> {
    let table = read_split(dir, split)?;
    let source = source(dir, split);
    if table.is_empty() {
        return Err(Error::EmptySplit {
            path: source,
            split: split.into(),
        });
    }
    let d = table.dim().max(1);
    // Branch-free scan per row (vectorises); locate the value only on failure.
    let bad_row = table
        .features
        .chunks(d)
        .position(|r| !r.iter().fold(true, |ok, v| ok & v.is_finite()));
    if let Some(row) = bad_row {
        let k = row * d
            + table
                .row(row)
                .iter()
                .position(|v| !v.is_finite())
                .unwrap_or(0);
        return Err(Error::NonFinite {
            path: source,
            row,
            image: table.paths[row].clone(),
            index: k % d,
            value: table.features[k],
        });
    }
    // Labels were checked against the class list when the file was read.
    let y = table.labels.iter().map(|&l| l as u32).collect();
    let split = Split {
        name: split.into(),
        source,
        x: table.features,
        y,
    };
    Ok((table.meta, split))
}

/// Reads and checks the training and validation splits of `dir`.
///
/// # Errors
/// Those of [`load_split`]; [`Error::Mismatch`] when the splits' metadata
/// differ; [`Error::EmptyClass`] when a class has no training rows.
pub(crate) fn load(dir: &Path, train: &str, val: &str) -> Result<Data> {
    // The two reads are independent; the validation file loads while the
    // (larger) training file does.
    let (train, val) = rayon::join(|| load_split(dir, train), || load_split(dir, val));
    let ((meta, train), (val_meta, val)) = (train?, val?);
    if let Some((key, expected, got)) = meta.first_difference(&val_meta) {
        return Err(Error::Mismatch {
            path: val.source,
            other: train.source,
            key,
            expected,
            got,
        });
    }
    let mut counts = vec![0usize; meta.classes.len()];
    for &l in &train.y {
        counts[l as usize] += 1;
    }
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        return Err(Error::EmptyClass {
            path: train.source,
            split: train.name,
            class: meta.classes[c].clone(),
        });
    }
    Ok(Data { meta, train, val })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use xfer_features::{write_file, FeatureTable};

    /// A features folder with `train` and `validation` files of `n` rows
    /// each, `dim` features, classes `a`, `b`, `c`.
    pub(crate) fn folder(
        n: usize,
        dim: usize,
        f: impl Fn(&mut FeatureTable, &str),
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "validation"] {
            let mut t = FeatureTable::empty(FeatureMeta::new(
                vec!["a".into(), "b".into(), "c".into()],
                dim,
            ));
            for i in 0..n {
                let v: Vec<f32> = (0..dim)
                    .map(|j| ((i * 7 + j * 3) % 11) as f32 / 11.0)
                    .collect();
                t.push(format!("{}/{i}.jpg", i % 3), (i % 3) as i32, [0; 32], &v, 0)
                    .unwrap();
            }
            f(&mut t, split);
            write_file(&dir.path().join(format!("{split}.parquet")), &t).unwrap();
        }
        dir
    }

    #[test]
    fn loads_both_splits() {
        let dir = folder(6, 4, |_, _| {});
        let d = load(dir.path(), "train", "validation").unwrap();
        assert_eq!(
            (d.train.len(), d.val.len(), d.dim(), d.classes()),
            (6, 6, 4, 3)
        );
        assert_eq!(d.train.x.len(), 24);
        assert!(d.train.source.ends_with("train.parquet"));
    }

    #[test]
    fn non_finite_value_is_named() {
        let dir = folder(6, 4, |t, s| {
            if s == "validation" {
                t.features[9] = f32::NAN;
            }
        });
        let err = load(dir.path(), "train", "validation")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("validation.parquet") && err.contains("row 2") && err.contains("NaN"),
            "{err}"
        );
    }

    #[test]
    fn mismatched_splits_are_refused() {
        let dir = folder(6, 4, |t, s| {
            if s == "validation" {
                t.meta.backbone = "other".into();
            }
        });
        let err = load(dir.path(), "train", "validation")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("xfer.backbone") && err.contains("validation.parquet"),
            "{err}"
        );
    }

    #[test]
    fn class_without_training_rows_is_named() {
        let dir = folder(6, 4, |t, s| {
            if s == "train" {
                let keep: Vec<usize> = (0..t.len()).filter(|&i| t.labels[i] != 1).collect();
                *t = t.select(&keep);
            }
        });
        let err = load(dir.path(), "train", "validation")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("class `b`") && err.contains("train.parquet"),
            "{err}"
        );
    }

    #[test]
    fn empty_split_is_named() {
        let dir = folder(6, 4, |t, s| {
            if s == "validation" {
                *t = t.select(&[]);
            }
        });
        let err = load(dir.path(), "train", "validation")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("validation.parquet") && err.contains("no rows"),
            "{err}"
        );
    }
}
