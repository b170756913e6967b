//! The feature-file contract shared by every `xfer` command.
//!
//! `xfer extract` writes pooled vectors once; `train`, `eval` and outside
//! tools (pyarrow, pandas, DuckDB) read them many times. This crate is the one
//! place that knows the column names, the Arrow types, the key-value metadata
//! and how a split is laid out on disk (one file, or `--shard` pieces), so the
//! writer and every reader cannot drift apart. The layout is fixed by
//! `shared/CONTRACT.md`; change it only together with the README.
//!
//! ```
//! use xfer_features::{FeatureMeta, FeatureTable};
//! let meta = FeatureMeta::new(vec!["cat".into(), "dog".into()], 2);
//! let mut table = FeatureTable::empty(meta);
//! table.push("dog/a.png", 1, [0u8; 32], &[0.5, -1.0], 0).unwrap();
//! let bytes = xfer_features::to_parquet_bytes(&table).unwrap();
//! let back = xfer_features::from_parquet_bytes(bytes).unwrap();
//! assert_eq!(back, table);
//! ```
#![deny(missing_docs)]

mod durable;
mod error;
mod io;
mod meta;
mod split;
mod table;
mod vectors;

pub use durable::{
    create_dir, describe_io, persist, remove_stale_temps, sync_dir, temp_beside, write_atomic,
};
pub use error::{Error, Result};
pub use io::{
    from_parquet_bytes, read_file, read_keys, to_parquet_bytes, write_file, FeatureFileReader,
    FeatureFileWriter,
};
pub use meta::{keys, FeatureMeta, FULL_DECODE, NOT_QUANTIZED, SCHEMA_VERSION};
pub use split::{read_split, shard_file_name, split_file_name, split_files, split_names};
pub use table::{columns, FeatureTable};
