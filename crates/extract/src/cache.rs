//! Earlier vectors that can be reused instead of re-encoding an image.
//!
//! A vector depends only on the image's bytes and on the model key of its
//! file (backbone, model sha256, size, resize, preprocessing, dim). So a row
//! of any earlier feature file with that key, the same `path` and the same
//! `sha256` *is* the vector this run would compute. The sources are the
//! split's previous output file and the part files a previous, interrupted
//! run left in `OUT/.parts/<name>/` (each one complete: written under a
//! temporary name and renamed), plus the parts this run writes as it goes.
//! Files with another model key are ignored, never mixed in. Augmented
//! views (`views/<split>.parquet`) are keyed by `(path, view)` and also need
//! the same augmentation settings (`xfer.augment` less the number of views,
//! [`crate::augment::cache_key`]).
//!
//! Only `(path, sha256) -> (file, row)` is kept in memory; vectors are read
//! back a chunk at a time by [`RowReader`] when the final file is assembled,
//! so memory does not grow with the data set.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use xfer_features::{FeatureFileReader, FeatureMeta, FeatureTable};

use crate::{augment, Error, Result};

/// Rows per chunk when reading earlier files.
const CHUNK_ROWS: usize = 256;

/// Where a reusable vector is: source file number and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) source: usize,
    pub(crate) row: usize,
}

/// The index of reusable rows.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    sources: Vec<PathBuf>,
    rows: Vec<usize>,
    index: HashMap<RowKey, Vec<(Hit, [u8; 32])>>,
}

/// What a cached row is looked up by: image path and view (0 = plain).
type RowKey = (String, i32);

/// The augmentation part of a file's key (`None` for plain files).
fn augment_key(m: &FeatureMeta) -> Option<serde_json::Value> {
    augment::cache_key(m.extra.get(augment::META_KEY))
}

/// The entries that must match for vectors to be interchangeable.
pub(crate) fn same_model(a: &FeatureMeta, b: &FeatureMeta) -> bool {
    a.model_key() == b.model_key() && augment_key(a) == augment_key(b)
}

impl Cache {
    /// Adds the rows of `path` when its model key matches `want`. Returns
    /// `Ok(None)` when it was used, `Ok(Some(reason))` when it was not (an
    /// unreadable or other-model file is not an error: it is just not a
    /// cache).
    pub(crate) fn add_file(&mut self, path: &Path, want: &FeatureMeta) -> Result<Option<String>> {
        let reader = match FeatureFileReader::open(path, CHUNK_ROWS) {
            Ok(r) => r,
            Err(e) => return Ok(Some(format!("unreadable ({e})"))),
        };
        if reader.meta().model_key() == want.model_key() && !same_model(reader.meta(), want) {
            return Ok(Some(augment::difference(
                reader.meta().extra.get(augment::META_KEY),
                want.extra.get(augment::META_KEY),
            )));
        }
        if !same_model(reader.meta(), want) {
            let (key, old, new) = reader
                .meta()
                .model_key()
                .into_iter()
                .zip(want.model_key())
                .find(|(a, b)| a.1 != b.1)
                .map(|((k, a), (_, b))| (k, a, b))
                .unwrap_or_default();
            return Ok(Some(format!("made with {key}={old}, this run has {new}")));
        }
        // The index needs (path, view, sha256) only: the vectors are read
        // back at assembly, and only those that are used.
        let rows = match xfer_features::read_keys(path) {
            Ok(keys) => keys,
            Err(e) => return Ok(Some(format!("unreadable ({e})"))),
        };
        self.add_view_rows(path, rows);
        Ok(None)
    }

    /// Registers a file whose rows (path, sha256) are known (a part this
    /// run just wrote); returns its source number.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn add_rows(&mut self, path: &Path, rows: Vec<(String, [u8; 32])>) -> usize {
        self.add_view_rows(path, rows.into_iter().map(|(p, sha)| (p, 0, sha)).collect())
    }

    /// [`Cache::add_rows`] with each row's view.
    pub(crate) fn add_view_rows(
        &mut self,
        path: &Path,
        rows: Vec<(String, i32, [u8; 32])>,
    ) -> usize {
        let source = self.sources.len();
        self.sources.push(path.into());
        self.rows.push(rows.len());
        for (row, (p, view, sha)) in rows.into_iter().enumerate() {
            self.index
                .entry((p, view))
                .or_default()
                .push((Hit { source, row }, sha));
        }
        source
    }

    /// The newest reusable row for `path` with these bytes.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn lookup(&self, path: &str, sha: &[u8; 32]) -> Option<Hit> {
        self.lookup_view(path, 0, sha)
    }

    /// The newest reusable row for view `view` of `path` with these bytes.
    pub(crate) fn lookup_view(&self, path: &str, view: i32, sha: &[u8; 32]) -> Option<Hit> {
        self.index
            .get(&(path.to_string(), view))?
            .iter()
            .rev()
            .find(|(_, s)| s == sha)
            .map(|(h, _)| *h)
    }

    /// Whether there is nothing to reuse.
    pub(crate) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Rows in source `source`.
    pub(crate) fn rows_in(&self, source: usize) -> usize {
        self.rows[source]
    }

    /// The file of source `source`.
    pub(crate) fn path(&self, source: usize) -> &Path {
        &self.sources[source]
    }
}

/// Reads vectors back from cache sources, one chunk per open source.
pub(crate) struct RowReader<'c> {
    cache: &'c Cache,
    open: HashMap<usize, Cursor>,
}

struct Cursor {
    reader: FeatureFileReader,
    chunk: FeatureTable,
    start: usize,
}

impl<'c> RowReader<'c> {
    pub(crate) fn new(cache: &'c Cache) -> Self {
        RowReader {
            cache,
            open: HashMap::new(),
        }
    }

    /// The vector at `hit`, which must be the row of `path`, `view` and
    /// `sha`: a file replaced since the index was made (by another writer,
    /// say) is an error, never a wrong vector. Rows are cheapest read in
    /// increasing order per source (the flow order they were written in);
    /// going back reopens.
    pub(crate) fn vector(
        &mut self,
        hit: Hit,
        path: &str,
        view: i32,
        sha: &[u8; 32],
    ) -> Result<&[f32]> {
        let file = self.cache.path(hit.source);
        let changed = |reason: String| Error::Layout {
            path: file.into(),
            reason: format!("{reason} (changed during the run?)"),
        };
        let stale = self
            .open
            .get(&hit.source)
            .is_some_and(|c| hit.row < c.start);
        if stale || !self.open.contains_key(&hit.source) {
            let mut reader = FeatureFileReader::open(file, CHUNK_ROWS)?;
            let chunk = reader
                .next()
                .transpose()?
                .unwrap_or_else(|| FeatureTable::empty(reader.meta().clone()));
            self.open.insert(
                hit.source,
                Cursor {
                    reader,
                    chunk,
                    start: 0,
                },
            );
        }
        let c = self.open.get_mut(&hit.source).expect("cursor just opened");
        while hit.row >= c.start + c.chunk.len() {
            c.start += c.chunk.len();
            c.chunk =
                c.reader.next().transpose()?.ok_or_else(|| {
                    changed(format!("row {} is past the end of the file", hit.row))
                })?;
        }
        let r = hit.row - c.start;
        if c.chunk.paths[r] != path || c.chunk.views[r] != view || &c.chunk.sha256[r] != sha {
            return Err(changed(format!(
                "row {} holds {} (view {}), not {path} (view {view}) with the bytes indexed",
                hit.row, c.chunk.paths[r], c.chunk.views[r]
            )));
        }
        Ok(c.chunk.row(r))
    }

    /// Forgets the open chunk of `source` (its rows are all read).
    pub(crate) fn close(&mut self, source: usize) {
        self.open.remove(&source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: &str) -> FeatureMeta {
        let mut m = FeatureMeta::new(vec!["a".into()], 2);
        m.size = size.into();
        m
    }

    #[test]
    fn reuse_needs_same_model_path_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = FeatureTable::empty(meta("8x8"));
        for i in 0..600 {
            t.push(
                format!("a/{i:04}.png"),
                0,
                [i as u8; 32],
                &[i as f32, 1.0],
                0,
            )
            .unwrap();
        }
        let f = dir.path().join("train.parquet");
        xfer_features::write_file(&f, &t).unwrap();

        let mut other = Cache::default();
        let why = other.add_file(&f, &meta("9x9")).unwrap().unwrap();
        assert!(why.contains("xfer.size=8x8"), "{why}");
        assert_eq!(other.lookup("a/0001.png", &[1; 32]), None);

        let mut c = Cache::default();
        assert_eq!(c.add_file(&f, &meta("8x8")).unwrap(), None);
        let hit = c.lookup("a/0300.png", &[44; 32]).unwrap(); // 300 as u8 == 44
        assert_eq!(
            hit,
            Hit {
                source: 0,
                row: 300
            }
        );
        assert_eq!(c.lookup("a/0300.png", &[45; 32]), None, "changed bytes");
        assert_eq!(c.lookup("a/9999.png", &[0; 32]), None);
        let mut rows = RowReader::new(&c);
        let at = |row: usize| Hit { source: 0, row };
        assert_eq!(
            rows.vector(at(599), "a/0599.png", 0, &[599u32 as u8; 32])
                .unwrap(),
            [599.0, 1.0]
        );
        assert_eq!(
            rows.vector(at(3), "a/0003.png", 0, &[3; 32]).unwrap(),
            [3.0, 1.0],
            "going back reopens"
        );
        assert!(rows.vector(at(600), "a/0600.png", 0, &[0; 32]).is_err());
        // A row that is not the one indexed (the file was replaced) is an
        // error naming the file, never another image's vector.
        let err = rows
            .vector(at(4), "a/0005.png", 0, &[4; 32])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.parquet") && err.contains("a/0004.png"),
            "{err}"
        );
        assert!(rows.vector(at(4), "a/0004.png", 0, &[5; 32]).is_err());
        assert!(rows.vector(at(4), "a/0004.png", 1, &[4; 32]).is_err());
    }

    #[test]
    fn newest_source_wins() {
        let mut c = Cache::default();
        c.add_rows(Path::new("old"), vec![("x".into(), [1; 32])]);
        c.add_rows(
            Path::new("new"),
            vec![("y".into(), [2; 32]), ("x".into(), [1; 32])],
        );
        assert_eq!(c.lookup("x", &[1; 32]), Some(Hit { source: 1, row: 1 }));
        assert_eq!(c.rows_in(1), 2);
    }

    #[test]
    fn views_need_the_same_augmentation_and_view() {
        let dir = tempfile::tempdir().unwrap();
        let aug = |zoom: f64, views: u32| {
            let mut m = meta("8x8");
            let a = crate::augment::Augment {
                views,
                seed: 1,
                rotation: 0.0,
                width_shift: 0.0,
                height_shift: 0.0,
                shear: 10.0,
                zoom,
                horizontal_flip: true,
                vertical_flip: false,
                fill: crate::augment::FillMode::Nearest,
                cval: 0.0,
            };
            m.extra.insert(augment::META_KEY.into(), a.to_json());
            m
        };
        let mut t = FeatureTable::empty(aug(0.1, 2));
        for v in 1..=2 {
            t.push("a/1.png", 0, [1; 32], &[v as f32, 0.0], v).unwrap();
        }
        let f = dir.path().join("train.parquet");
        xfer_features::write_file(&f, &t).unwrap();

        let mut c = Cache::default();
        assert_eq!(c.add_file(&f, &aug(0.1, 3)).unwrap(), None, "K may grow");
        assert_eq!(
            c.lookup_view("a/1.png", 2, &[1; 32]),
            Some(Hit { source: 0, row: 1 })
        );
        assert_eq!(c.lookup_view("a/1.png", 3, &[1; 32]), None);
        assert_eq!(c.lookup("a/1.png", &[1; 32]), None, "no plain row");

        let why = Cache::default()
            .add_file(&f, &aug(0.2, 2))
            .unwrap()
            .unwrap();
        assert!(why.contains("xfer.augment") && why.contains("0.2"), "{why}");
        let why = Cache::default()
            .add_file(&f, &meta("8x8"))
            .unwrap()
            .unwrap();
        assert!(why.contains("this run has none"), "{why}");
    }

    #[test]
    fn unreadable_file_is_not_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("train.parquet");
        std::fs::write(&f, b"not parquet").unwrap();
        let why = Cache::default()
            .add_file(&f, &meta("8x8"))
            .unwrap()
            .unwrap();
        assert!(why.starts_with("unreadable"), "{why}");
    }
}
