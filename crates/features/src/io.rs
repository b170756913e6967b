//! Parquet reading and writing of [`FeatureTable`]s.
//!
//! Files are always written under a temporary name and renamed once the
//! footer is on disk ([`crate::durable`]): Parquet has no usable content without its footer, and an
//! `ArrowWriter` dropped early (an error, a kill) leaves a truncated file. A
//! reader therefore only ever sees complete files. The embedded Arrow schema is
//! kept so `FixedSizeList` comes back as such in pyarrow and here.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{FixedSizeBinaryBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, FixedSizeBinaryArray, FixedSizeListArray, Float32Array, Int32Array,
    RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use tempfile::TempPath;

use crate::durable;
use crate::table::columns;
use crate::vectors;
use crate::{Error, FeatureMeta, FeatureTable, Result};

/// Rows per Parquet row group when writing a whole table at once.
const ROW_GROUP: usize = 1024;

fn schema(dim: usize, with_view: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new(columns::PATH, DataType::Utf8, false),
        Field::new(columns::CLASS, DataType::Utf8, false),
        Field::new(columns::LABEL, DataType::Int32, false),
        Field::new(columns::SHA256, DataType::FixedSizeBinary(32), false),
        Field::new(
            columns::FEATURES,
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, false)),
                dim as i32,
            ),
            false,
        ),
    ];
    if with_view {
        fields.push(Field::new(columns::VIEW, DataType::Int32, false));
    }
    Arc::new(Schema::new(fields))
}

fn has_views(table: &FeatureTable) -> bool {
    table.views.iter().any(|&v| v != 0) || table.meta.extra.contains_key("xfer.augment")
}

fn properties(meta: &FeatureMeta) -> WriterProperties {
    let kv = meta
        .to_pairs()
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect();
    // Vectors are dense floats: dictionary pages and Snappy buy almost no
    // space on them but cost about half of a training run's start-up to
    // decode, so only the small string columns keep both.
    let features = ColumnPath::from(vec![
        columns::FEATURES.to_string(),
        "list".into(),
        "item".into(),
    ]);
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_column_compression(features.clone(), Compression::UNCOMPRESSED)
        .set_column_dictionary_enabled(features, false)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_key_value_metadata(Some(kv))
        .build()
}

fn batch(table: &FeatureTable, schema: &SchemaRef) -> Result<RecordBatch> {
    let n = table.len();
    let mut class = StringBuilder::with_capacity(n, n * 8);
    for i in 0..n {
        class.append_value(table.class_of(i));
    }
    let mut sha = FixedSizeBinaryBuilder::with_capacity(n, 32);
    for h in &table.sha256 {
        sha.append_value(h)?;
    }
    let values = Arc::new(Float32Array::from(table.features.clone()));
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let features = FixedSizeListArray::try_new(item, table.meta.dim as i32, values, None)?;
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(table.paths.iter())),
        Arc::new(class.finish()),
        Arc::new(Int32Array::from(table.labels.clone())),
        Arc::new(sha.finish()),
        Arc::new(features),
    ];
    if schema.fields().len() == 6 {
        cols.push(Arc::new(Int32Array::from(table.views.clone())));
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Encodes a table as Parquet bytes in memory.
///
/// # Errors
/// When Arrow or Parquet reject the data (should not happen for a table built
/// through [`FeatureTable::push`]).
pub fn to_parquet_bytes(table: &FeatureTable) -> Result<Vec<u8>> {
    let schema = schema(table.dim(), has_views(table));
    let mut buf = Vec::new();
    let pq = |e| Error::Parquet {
        path: "<memory>".into(),
        source: e,
    };
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(properties(&table.meta)))
        .map_err(pq)?;
    w.write(&batch(table, &schema)?).map_err(pq)?;
    w.close().map_err(pq)?;
    Ok(buf)
}

/// Decodes Parquet bytes written by [`to_parquet_bytes`] or [`write_file`].
///
/// # Errors
/// When the bytes are not a feature file of the contract.
pub fn from_parquet_bytes(bytes: Vec<u8>) -> Result<FeatureTable> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).map_err(|e| {
        Error::Parquet {
            path: "<memory>".into(),
            source: e,
        }
    })?;
    read_builder(builder, Path::new("<memory>"))
}

/// Writes a whole table to `path` atomically (temporary name, then rename).
///
/// # Errors
/// On I/O failure; nothing is left at `path` then, and an older file there is
/// untouched.
pub fn write_file(path: &Path, table: &FeatureTable) -> Result<()> {
    let mut w = FeatureFileWriter::create(path, table.meta.clone(), has_views(table))?;
    w.write(table)?;
    w.finish()
}

/// Reads one feature file.
///
/// # Errors
/// When the file is missing, not Parquet, or lacks a column or key of the
/// contract; the error names the file.
pub fn read_file(path: &Path) -> Result<FeatureTable> {
    // Reading the vectors dominates the start of every training run: the
    // files xfer writes take the direct path (`vectors`, one copy per
    // float); any other layout goes through Arrow on the file in memory,
    // whose row groups workers decode in shares, and one pass copies the
    // batches, in order, into the table sized up front.
    let parquet_err = |e| Error::Parquet {
        path: path.into(),
        source: e,
    };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    let meta = meta_of(&builder, path)?;
    if let Some(features) = vectors::read(path, builder.metadata(), meta.dim)? {
        let mut table = keys_of(builder, meta, path)?;
        if features.len() != table.len() * table.dim() {
            return Err(Error::Column {
                path: path.into(),
                column: columns::FEATURES.into(),
                reason: format!(
                    "{} vectors for {} rows",
                    features.len() / table.dim().max(1),
                    table.len()
                ),
            });
        }
        table.features = features;
        return Ok(table);
    }
    let bytes = Bytes::from(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).map_err(parquet_err)?;
    let groups = builder.metadata().num_row_groups();
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(groups)
        .max(1);
    let decode = |share: Vec<usize>| -> Result<Vec<RecordBatch>> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .map_err(parquet_err)?
            .with_row_groups(share)
            .with_batch_size(1024);
        let reader = builder.build().map_err(parquet_err)?;
        reader.map(|b| b.map_err(Error::from)).collect()
    };
    let parts: Vec<Result<Vec<RecordBatch>>> = if workers == 1 {
        vec![decode((0..groups).collect())]
    } else {
        let shares: Vec<Vec<usize>> = (0..workers)
            .map(|w| (0..groups).filter(|g| g * workers / groups == w).collect())
            .collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = shares
                .into_iter()
                .map(|share| scope.spawn(move || decode(share)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("reader thread does not panic"))
                .collect()
        })
    };
    let mut table = FeatureTable::empty(meta);
    table.reserve(rows);
    for part in parts {
        for b in part? {
            append_batch(&mut table, &b, path)?;
        }
    }
    Ok(table)
}

/// Every column but the vectors, into a table whose `features` stay empty.
fn keys_of(
    builder: ParquetRecordBatchReaderBuilder<File>,
    meta: FeatureMeta,
    path: &Path,
) -> Result<FeatureTable> {
    let schema = builder.metadata().file_metadata().schema_descr();
    let keys = (0..schema.num_columns()).filter(|&i| !vectors::is_vector_leaf(schema, i));
    let mask = ProjectionMask::leaves(schema, keys);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(|e| Error::Parquet {
            path: path.into(),
            source: e,
        })?;
    let mut table = FeatureTable::empty(meta);
    for b in reader {
        append_keys(&mut table, &b?, path)?;
    }
    Ok(table)
}

/// The rows of a feature file without their vectors: (path, view,
/// sha256) in file order, for indexing a cache (a 100k x 2048 file holds
/// 800 MB of floats that this never reads).
///
/// # Errors
/// As [`read_file`].
pub fn read_keys(path: &Path) -> Result<Vec<(String, i32, [u8; 32])>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::Parquet {
        path: path.into(),
        source: e,
    })?;
    let meta = meta_of(&builder, path)?;
    let t = keys_of(builder, meta, path)?;
    Ok(t.paths
        .into_iter()
        .zip(t.views)
        .zip(t.sha256)
        .map(|((p, v), sha)| (p, v, sha))
        .collect())
}

fn meta_of<T: parquet::file::reader::ChunkReader + 'static>(
    builder: &ParquetRecordBatchReaderBuilder<T>,
    path: &Path,
) -> Result<FeatureMeta> {
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let pairs = kv
        .iter()
        .filter_map(|e| e.value.as_deref().map(|v| (e.key.as_str(), v)));
    FeatureMeta::from_pairs(pairs).map_err(|(key, reason)| Error::Metadata {
        path: path.into(),
        key,
        reason,
    })
}

fn read_builder<T: parquet::file::reader::ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<T>,
    path: &Path,
) -> Result<FeatureTable> {
    let meta = meta_of(&builder, path)?;
    let reader = builder
        .with_batch_size(8192)
        .build()
        .map_err(|e| Error::Parquet {
            path: path.into(),
            source: e,
        })?;
    let mut table = FeatureTable::empty(meta);
    for b in reader {
        let b = b?;
        append_batch(&mut table, &b, path)?;
    }
    Ok(table)
}

/// Reads a feature file a chunk of rows at a time, so that memory stays
/// bounded by the chunk whatever the file's size (the extractor merges
/// earlier output and new rows this way). Iterating yields tables that
/// share the file's metadata.
pub struct FeatureFileReader {
    meta: FeatureMeta,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    path: PathBuf,
}

impl FeatureFileReader {
    /// Opens `path` and reads its metadata; rows come `rows` at a time.
    ///
    /// # Errors
    /// As [`read_file`], for the file and its metadata.
    pub fn open(path: &Path, rows: usize) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::Parquet {
                path: path.into(),
                source: e,
            })?;
        let meta = meta_of(&builder, path)?;
        let reader = builder
            .with_batch_size(rows.max(1))
            .build()
            .map_err(|e| Error::Parquet {
                path: path.into(),
                source: e,
            })?;
        Ok(FeatureFileReader {
            meta,
            reader,
            path: path.into(),
        })
    }

    /// The file's metadata.
    pub fn meta(&self) -> &FeatureMeta {
        &self.meta
    }
}

impl Iterator for FeatureFileReader {
    type Item = Result<FeatureTable>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.reader.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e.into())),
        };
        let mut table = FeatureTable::empty(self.meta.clone());
        Some(append_batch(&mut table, &batch, &self.path).map(|()| table))
    }
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T> {
    let col = b.column_by_name(name).ok_or_else(|| Error::Column {
        path: path.into(),
        column: name.into(),
        reason: "missing".into(),
    })?;
    col.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| Error::Column {
            path: path.into(),
            column: name.into(),
            reason: format!("unexpected type {}", col.data_type()),
        })
}

fn append_batch(table: &mut FeatureTable, b: &RecordBatch, path: &Path) -> Result<()> {
    let feats: &FixedSizeListArray = column(b, columns::FEATURES, path)?;
    let bad = |reason: String| Error::Column {
        path: path.into(),
        column: columns::FEATURES.into(),
        reason,
    };
    if feats.value_length() as usize != table.meta.dim {
        return Err(bad(format!(
            "vectors of length {} but xfer.dim is {}",
            feats.value_length(),
            table.meta.dim
        )));
    }
    let values = feats
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| bad("items are not Float32".into()))?;
    if feats.null_count() > 0 {
        return Err(bad("null values are not allowed".into()));
    }
    let d = table.meta.dim;
    let start = feats.offset() * d;
    let items = values.slice(start, b.num_rows() * d);
    if items.null_count() > 0 {
        // pyarrow writes nullable items by default; a null float would be
        // read as whatever its slot holds.
        let first = (0..items.len())
            .find(|&i| items.is_null(i))
            .expect("null_count > 0");
        return Err(bad(format!(
            "row {}: a null value at feature {}; vectors must be complete",
            table.len() + first / d,
            first % d
        )));
    }
    append_keys(table, b, path)?;
    table.features.extend_from_slice(items.values());
    Ok(())
}

/// Appends every column but the vectors: path, label, sha256 and view.
fn append_keys(table: &mut FeatureTable, b: &RecordBatch, path: &Path) -> Result<()> {
    let paths: &StringArray = column(b, columns::PATH, path)?;
    let labels: &Int32Array = column(b, columns::LABEL, path)?;
    let sha: &FixedSizeBinaryArray = column(b, columns::SHA256, path)?;
    let bad = |column: &str, reason: String| Error::Column {
        path: path.into(),
        column: column.into(),
        reason,
    };
    if sha.value_length() != 32 {
        return Err(bad(
            columns::SHA256,
            format!("{} bytes per hash, expected 32", sha.value_length()),
        ));
    }
    if paths.null_count() + labels.null_count() + sha.null_count() > 0 {
        return Err(bad(columns::FEATURES, "null values are not allowed".into()));
    }
    let views = match b.column_by_name(columns::VIEW) {
        Some(_) => Some(column::<Int32Array>(b, columns::VIEW, path)?),
        None => None,
    };
    let classes = table.meta.classes.len();
    if let Some(l) = labels
        .values()
        .iter()
        .find(|&&l| l < 0 || l as usize >= classes)
    {
        return Err(bad(
            columns::LABEL,
            Error::Label {
                label: (*l).into(),
                classes,
            }
            .to_string(),
        ));
    }
    table.labels.extend_from_slice(labels.values());
    table
        .paths
        .extend(paths.iter().map(|p| p.unwrap_or_default().to_owned()));
    table.sha256.extend(
        (0..b.num_rows())
            .map(|i| <[u8; 32]>::try_from(sha.value(i)).expect("32 bytes checked above")),
    );
    match views {
        Some(v) => table.views.extend_from_slice(v.values()),
        None => table.views.resize(table.views.len() + b.num_rows(), 0),
    }
    Ok(())
}

/// Streams rows into one Parquet file: each [`FeatureFileWriter::write`]
/// becomes its own row group(s), so memory stays bounded by the batch. The
/// file appears under its final name only after [`FeatureFileWriter::finish`]
/// (a unique temporary name beside it until then, fsynced before the rename).
pub struct FeatureFileWriter {
    writer: Option<ArrowWriter<File>>,
    schema: SchemaRef,
    tmp: Option<TempPath>,
    path: PathBuf,
    meta: FeatureMeta,
}

impl FeatureFileWriter {
    /// Opens a temporary file beside `path` for writing, creating the
    /// parent folder.
    ///
    /// # Errors
    /// [`Error::Write`] when the folder or file cannot be created.
    pub fn create(path: &Path, meta: FeatureMeta, with_view: bool) -> Result<Self> {
        let (file, tmp) = durable::temp_beside(path)?;
        let schema = schema(meta.dim, with_view);
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties(&meta)))
            .map_err(|e| durable::parquet_write_error(path, e))?;
        Ok(FeatureFileWriter {
            writer: Some(writer),
            schema,
            tmp: Some(tmp),
            path: path.into(),
            meta,
        })
    }

    /// Appends the rows of `table` (its metadata must match the writer's).
    ///
    /// # Errors
    /// On a metadata or dimension mismatch, or a write failure.
    pub fn write(&mut self, table: &FeatureTable) -> Result<()> {
        if let Some((key, expected, got)) = self.meta.first_difference_all(&table.meta) {
            return Err(Error::Mismatch {
                path: "<rows>".into(),
                first: self.path.clone(),
                key,
                expected,
                got,
            });
        }
        if table.is_empty() {
            return Ok(());
        }
        let b = batch(table, &self.schema)?;
        let w = self.writer.as_mut().expect("writer present until finish");
        w.write(&b)
            .and_then(|()| w.flush())
            .map_err(|e| durable::parquet_write_error(&self.path, e))
    }

    /// Writes the footer, syncs, and renames the file to its final name
    /// (then syncs the folder).
    ///
    /// # Errors
    /// [`Error::Write`] on a write, sync or rename failure.
    pub fn finish(mut self) -> Result<()> {
        let w = self.writer.take().expect("writer present until finish");
        let file = w
            .into_inner()
            .map_err(|e| durable::parquet_write_error(&self.path, e))?;
        let tmp = self
            .tmp
            .take()
            .expect("temporary file present until finish");
        durable::persist(&file, tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize, dim: usize) -> FeatureTable {
        let meta = FeatureMeta::new(vec!["a".into(), "b".into(), "c".into()], dim);
        let mut t = FeatureTable::empty(meta);
        for i in 0..n {
            let v: Vec<f32> = (0..dim)
                .map(|j| (i * dim + j) as f32 * 0.25 - 3.0)
                .collect();
            t.push(
                format!("{}/img{i:03}.jpg", ["a", "b", "c"][i % 3]),
                (i % 3) as i32,
                [i as u8; 32],
                &v,
                0,
            )
            .unwrap();
        }
        t
    }

    /// Files xfer did not write (another writer's encodings, page version
    /// or compression) read to the same table, through Arrow when the
    /// direct path declines.
    #[test]
    fn other_layouts_read_the_same() {
        use parquet::file::properties::WriterVersion;
        let t = table(2500, 7);
        let dir = tempfile::tempdir().unwrap();
        let kv: Vec<KeyValue> = t
            .meta
            .to_pairs()
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let layouts = [
            ("default", WriterProperties::builder()),
            (
                "v2",
                WriterProperties::builder().set_writer_version(WriterVersion::PARQUET_2_0),
            ),
            (
                "snappy-plain",
                WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_dictionary_enabled(false),
            ),
        ];
        for (name, props) in layouts {
            let path = dir.path().join(format!("{name}.parquet"));
            let schema = schema(t.dim(), false);
            let props = props
                .set_max_row_group_row_count(Some(1000))
                .set_key_value_metadata(Some(kv.clone()))
                .build();
            let mut w =
                ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), Some(props))
                    .unwrap();
            w.write(&batch(&t, &schema).unwrap()).unwrap();
            w.close().unwrap();
            assert_eq!(read_file(&path).unwrap(), t, "{name}");
        }
        // xfer's own layout takes the direct path.
        let own = dir.path().join("own.parquet");
        write_file(&own, &t).unwrap();
        let direct = |path: &Path| {
            let footer = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
                .unwrap()
                .metadata()
                .clone();
            vectors::read(path, &footer, 7).unwrap()
        };
        assert!(direct(&own).is_some());
        assert!(direct(&dir.path().join("v2.parquet")).is_none());
    }

    /// pyarrow's default: nullable items. A null float is an error naming
    /// the file, row and feature, never whatever its slot holds.
    #[test]
    fn a_null_inside_a_vector_is_refused() {
        let t = table(3, 4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nullable.parquet");
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let mut fields: Vec<Field> = schema(4, false)
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[4] = Field::new(
            columns::FEATURES,
            DataType::FixedSizeList(item.clone(), 4),
            false,
        );
        let nullable = Arc::new(Schema::new(fields));
        let mut values: Vec<Option<f32>> = t.features.iter().map(|&v| Some(v)).collect();
        values[2 * 4 + 1] = None; // row 2, feature 1
        let list = FixedSizeListArray::try_new(item, 4, Arc::new(Float32Array::from(values)), None)
            .unwrap();
        let own = batch(&t, &schema(4, false)).unwrap();
        let mut cols = own.columns().to_vec();
        cols[4] = Arc::new(list);
        let b = RecordBatch::try_new(nullable.clone(), cols).unwrap();
        let kv: Vec<KeyValue> = t
            .meta
            .to_pairs()
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .build();
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), nullable, Some(props)).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        let err = read_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("nullable.parquet") && err.contains("row 2") && err.contains("feature 1"),
            "{err}"
        );
    }

    #[test]
    fn in_memory_round_trip() {
        let t = table(2500, 5);
        let back = from_parquet_bytes(to_parquet_bytes(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn streaming_writer_round_trip_and_atomic_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.parquet");
        let t = table(10, 4);
        let mut w = FeatureFileWriter::create(&path, t.meta.clone(), false).unwrap();
        // A second writer of the same file has its own temporary name.
        let mut other = FeatureFileWriter::create(&path, t.meta.clone(), false).unwrap();
        other.write(&t.select(&[0])).unwrap();
        drop(other);
        w.write(&t.select(&[0, 1, 2])).unwrap();
        assert!(!path.exists(), "final name appears only after finish");
        w.write(&t.select(&[3, 4, 5, 6, 7, 8, 9])).unwrap();
        w.finish().unwrap();
        assert_eq!(read_file(&path).unwrap(), t);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["train.parquet"], "no temporary file left");
    }

    #[test]
    fn chunked_reader_gives_the_rows_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("val.parquet");
        let t = table(10, 3);
        write_file(&path, &t).unwrap();
        let r = FeatureFileReader::open(&path, 4).unwrap();
        assert_eq!(r.meta(), &t.meta);
        let chunks: Vec<FeatureTable> = r.map(|c| c.unwrap()).collect();
        assert_eq!(
            chunks.iter().map(FeatureTable::len).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let mut all = FeatureTable::empty(t.meta.clone());
        for c in &chunks {
            all.extend(c).unwrap();
        }
        assert_eq!(all, t);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let t = table(3, 2);
        let mut w = FeatureFileWriter::create(&path, t.meta.clone(), false).unwrap();
        w.write(&t).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn views_column_round_trips() {
        let mut t = table(4, 3);
        t.views = vec![0, 1, 2, 0];
        let back = from_parquet_bytes(to_parquet_bytes(&t).unwrap()).unwrap();
        assert_eq!(back.views, vec![0, 1, 2, 0]);
    }

    #[test]
    fn truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        let bytes = to_parquet_bytes(&table(5, 3)).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.parquet"), "{err}");
    }

    #[test]
    fn push_rejects_wrong_dim_and_label() {
        let mut t = table(0, 3);
        assert!(matches!(
            t.push("p", 0, [0; 32], &[1.0], 0),
            Err(Error::FeatureDim {
                expected: 3,
                got: 1
            })
        ));
        assert!(matches!(
            t.push("p", 9, [0; 32], &[1.0; 3], 0),
            Err(Error::Label { .. })
        ));
    }
}
