//! The in-memory form of a feature file: one row per image, vectors stored
//! contiguously so training can run matrix products on them directly.
use crate::{Error, FeatureMeta, Result};

/// Column names of the contract.
pub mod columns {
    /// Image path relative to DATA (Utf8).
    pub const PATH: &str = "path";
    /// Class name (Utf8).
    pub const CLASS: &str = "class";
    /// Index into the class list (Int32).
    pub const LABEL: &str = "label";
    /// sha256 of the image file's bytes (FixedSizeBinary(32)).
    pub const SHA256: &str = "sha256";
    /// Pooled vector (FixedSizeList(Float32, D)).
    pub const FEATURES: &str = "features";
    /// Augmented view index, 0 = the plain image (Int32). Written only when
    /// a file holds augmented views, so older readers see the contract's
    /// five columns.
    pub const VIEW: &str = "view";
}

/// Rows of a feature file, column by column.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    /// File-level metadata.
    pub meta: FeatureMeta,
    /// Image paths relative to DATA, `/`-separated.
    pub paths: Vec<String>,
    /// Labels, indexes into `meta.classes`.
    pub labels: Vec<i32>,
    /// sha256 of each image file.
    pub sha256: Vec<[u8; 32]>,
    /// View index of each row (0 = plain image).
    pub views: Vec<i32>,
    /// `len() * meta.dim` floats, row-major.
    pub features: Vec<f32>,
}

impl FeatureTable {
    /// A table with no rows.
    pub fn empty(meta: FeatureMeta) -> Self {
        FeatureTable {
            meta,
            paths: Vec::new(),
            labels: Vec::new(),
            sha256: Vec::new(),
            views: Vec::new(),
            features: Vec::new(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.meta.dim
    }

    /// The vector of row `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.meta.dim;
        &self.features[i * d..(i + 1) * d]
    }

    /// The class name of row `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn class_of(&self, i: usize) -> &str {
        &self.meta.classes[self.labels[i] as usize]
    }

    /// Makes room for `rows` more rows (vectors included), so that filling
    /// the table copies each vector once.
    pub fn reserve(&mut self, rows: usize) {
        self.paths.reserve(rows);
        self.labels.reserve(rows);
        self.sha256.reserve(rows);
        self.views.reserve(rows);
        self.features.reserve(rows * self.meta.dim);
    }

    /// Appends one row.
    ///
    /// # Errors
    /// [`Error::FeatureDim`] when `vector` is not `dim` long, [`Error::Label`]
    /// when the label is outside the class list.
    pub fn push(
        &mut self,
        path: impl Into<String>,
        label: i32,
        sha256: [u8; 32],
        vector: &[f32],
        view: i32,
    ) -> Result<()> {
        if vector.len() != self.meta.dim {
            return Err(Error::FeatureDim {
                expected: self.meta.dim,
                got: vector.len(),
            });
        }
        if label < 0 || label as usize >= self.meta.classes.len() {
            return Err(Error::Label {
                label: label.into(),
                classes: self.meta.classes.len(),
            });
        }
        self.paths.push(path.into());
        self.labels.push(label);
        self.sha256.push(sha256);
        self.views.push(view);
        self.features.extend_from_slice(vector);
        Ok(())
    }

    /// Appends every row of `other` (same dimension required).
    ///
    /// # Errors
    /// [`Error::FeatureDim`] when the dimensions differ.
    pub fn extend(&mut self, other: &FeatureTable) -> Result<()> {
        if other.meta.dim != self.meta.dim {
            return Err(Error::FeatureDim {
                expected: self.meta.dim,
                got: other.meta.dim,
            });
        }
        self.paths.extend_from_slice(&other.paths);
        self.labels.extend_from_slice(&other.labels);
        self.sha256.extend_from_slice(&other.sha256);
        self.views.extend_from_slice(&other.views);
        self.features.extend_from_slice(&other.features);
        Ok(())
    }

    /// A new table with the rows at `index`, in that order.
    ///
    /// # Panics
    /// When an index is out of range.
    pub fn select(&self, index: &[usize]) -> FeatureTable {
        let mut out = FeatureTable::empty(self.meta.clone());
        out.features.reserve(index.len() * self.meta.dim);
        for &i in index {
            out.paths.push(self.paths[i].clone());
            out.labels.push(self.labels[i]);
            out.sha256.push(self.sha256[i]);
            out.views.push(self.views[i]);
            out.features.extend_from_slice(self.row(i));
        }
        out
    }
}
