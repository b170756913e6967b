//! Loading the training and validation vectors once, checked.
//!
//! Everything downstream (every epoch, every sweep configuration, the
//! baseline) reads the same contiguous row-major `f32` buffer, so it is
//! loaded and checked here a single time: a split must have rows, finite
//! values only, and the two splits must come from the same model, size,
//! preprocessing and class list; every class needs training rows. Each
//! error names the feature file (or the shard set) at fault.
//!
//! With `--views`, the augmented views `xfer extract --augment K` wrote to
//! `DIR/views/<split>.parquet` are joined to the training rows by image
//! path and sha256 ([`Views`]): every image needs all K views made from its
//! current bytes, with the same model metadata, or the run stops and says
//! to extract again.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use xfer_features::{read_split, split_files, FeatureMeta, FeatureTable};

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
    /// Augmented views of these rows (training split with `--views`).
    pub(crate) views: Option<Views>,
}

/// The augmented views of a split's rows.
#[derive(Debug, Clone)]
pub(crate) struct Views {
    /// Views per image besides the plain row (K).
    pub(crate) k: usize,
    /// Row `i * k + (v - 1)` is view `v` (1..=K) of row `i`; `n·K × dim`.
    pub(crate) x: Vec<f32>,
    /// The views file, or its shard pattern.
    pub(crate) source: PathBuf,
}

/// Folder of the views files inside a features folder (as `xfer extract`
/// writes it).
pub(crate) const VIEWS_DIR: &str = "views";

/// Metadata entry of a views file with the augmentation settings (JSON,
/// `views` = K).
const AUGMENT_KEY: &str = "xfer.augment";

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
    load_keyed(dir, split).map(|(meta, split, _)| (meta, split))
}

/// Image path and sha256 of each row: what views are joined on.
type Keys = Vec<(String, [u8; 32])>;

/// Whether every value is finite (no early exit, so that it vectorises).
#[multiversion::multiversion(targets = "simd")]
fn all_finite(r: &[f32]) -> bool {
    r.iter().fold(true, |ok, v| ok & v.is_finite())
}

/// [`Error::NonFinite`] for the first NaN or infinite value of `table`
/// (read from `source`), if any.
fn check_finite(table: &FeatureTable, source: &Path) -> Result<()> {
    let d = table.dim().max(1);
    // Branch-free scan per row, at the CPU's vector width, rows shared
    // among threads; locate the value only on failure.
    let Some(row) = table
        .features
        .par_chunks(d)
        .position_first(|r| !all_finite(r))
    else {
        return Ok(());
    };
    let index = table.features[row * d..(row + 1) * d]
        .iter()
        .position(|v| !v.is_finite())
        .unwrap_or(0);
    Err(Error::NonFinite {
        path: source.into(),
        row,
        image: table.paths[row].clone(),
        index,
        value: table.features[row * d + index],
    })
}

/// [`load_split`], also returning each row's (path, sha256).
fn load_keyed(dir: &Path, split: &str) -> Result<(FeatureMeta, Split, Keys)> {
    let table = read_split(dir, split)?;
    let source = source(dir, split);
    if table.is_empty() {
        return Err(Error::EmptySplit {
            path: source,
            split: split.into(),
        });
    }
    check_finite(&table, &source)?;
    // Labels were checked against the class list when the file was read.
    let y = table.labels.iter().map(|&l| l as u32).collect();
    let split = Split {
        name: split.into(),
        source,
        x: table.features,
        y,
        views: None,
    };
    let keys = table.paths.into_iter().zip(table.sha256).collect();
    Ok((table.meta, split, keys))
}

/// Reads the views of `train` (the rows of split `name` in `dir`, with
/// metadata `meta` and row keys `keys`) from `dir/views/`.
///
/// # Errors
/// [`Error::Views`] when the views are missing, not all there or stale;
/// [`Error::Mismatch`] when they come from another model or size;
/// [`Error::NonFinite`]; those of [`read_split`].
fn load_views(
    dir: &Path,
    name: &str,
    meta: &FeatureMeta,
    train: &Split,
    keys: &Keys,
) -> Result<Views> {
    let vdir = dir.join(VIEWS_DIR);
    let source = source(&vdir, name);
    let table = match read_split(&vdir, name) {
        Err(xfer_features::Error::MissingSplit { .. }) => {
            return Err(Error::Views {
                path: source,
                reason: format!(
                    "--views: no augmented views of split `{name}`; make them with `xfer extract --augment K`"
                ),
            })
        }
        r => r?,
    };
    if let Some((key, expected, got)) = meta.first_difference(&table.meta) {
        return Err(Error::Mismatch {
            path: source,
            other: train.source.clone(),
            key,
            expected,
            got,
        });
    }
    let k = table
        .meta
        .extra
        .get(AUGMENT_KEY)
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .and_then(|v| v.get("views")?.as_u64())
        .ok_or_else(|| Error::Views {
            path: source.clone(),
            reason: format!("no readable `{AUGMENT_KEY}` entry with the number of views"),
        })? as usize;
    check_finite(&table, &source)?;
    let d = meta.dim;
    let row_of: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.as_str(), i))
        .collect();
    let mut x = vec![0.0f32; keys.len() * k * d];
    let mut have = vec![false; keys.len() * k];
    for r in 0..table.len() {
        let v = table.views[r];
        let Some(&i) = row_of.get(table.paths[r].as_str()) else {
            continue; // an image no longer in the split
        };
        if v < 1 || v as usize > k || table.sha256[r] != keys[i].1 {
            continue; // another K's view, or made from older bytes
        }
        let slot = i * k + (v as usize - 1);
        x[slot * d..(slot + 1) * d].copy_from_slice(table.row(r));
        have[slot] = true;
    }
    if let Some(slot) = have.iter().position(|h| !h) {
        let missing = have.iter().filter(|h| !**h).count();
        return Err(Error::Views {
            path: source,
            reason: format!(
                "{missing} of {} views are missing or older than {} (first: view {} of {}); run `xfer extract --augment {k}` again",
                have.len(),
                train.source.display(),
                slot % k + 1,
                keys[slot / k].0
            ),
        });
    }
    Ok(Views { k, x, source })
}

/// Reads and checks the training and validation splits of `dir`.
///
/// # Errors
/// Those of [`load_split`]; [`Error::Mismatch`] when the splits' metadata
/// differ; [`Error::EmptyClass`] when a class has no training rows.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn load(dir: &Path, train: &str, val: &str) -> Result<Data> {
    load_with(dir, train, val, false)
}

/// [`load`], with the training split's augmented views when `views`.
///
/// # Errors
/// Those of [`load`], and with `views` those of reading the views
/// ([`Error::Views`], [`Error::Mismatch`]).
pub(crate) fn load_with(dir: &Path, train: &str, val: &str, views: bool) -> Result<Data> {
    // The two reads are independent; the validation file loads while the
    // (larger) training file does.
    let (train, val) = rayon::join(|| load_keyed(dir, train), || load_split(dir, val));
    let ((meta, mut train, keys), (val_meta, val)) = (train?, val?);
    if views {
        train.views = Some(load_views(dir, &train.name, &meta, &train, &keys)?);
    }
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
