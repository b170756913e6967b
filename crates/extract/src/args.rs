//! The command line of `xfer extract`, as the user typed it.
//!
//! Doc comments are the `--help` text. Nothing here is checked beyond what
//! clap parses; [`crate::config::Config`] validates everything once, before
//! any work starts.
use std::path::PathBuf;

use crate::model::Device;
use crate::pixels::{Resize, DEFAULT_MAX_PIXELS};

/// Images to pooled vectors, one Parquet file per split.
///
/// Reads DATA as Keras's flow_from_directory does (DATA/<split>/<class>/<image>
/// for the splits train, validation and test that exist, or DATA/<class>/<image>
/// for a single split named `train`), computes each image's vector with the
/// ONNX base, and writes FEATURES_DIR/<split>.parquet. Rows already there for
/// the same model, size, resize and preprocessing are reused; unreadable images
/// are listed in FEATURES_DIR/<split>.errors.csv.
#[derive(Debug, Clone, clap::Args)]
pub struct ExtractArgs {
    /// Image folder (DATA/<split>/<class>/<image> or DATA/<class>/<image>).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,

    /// ONNX base exported by scripts/export_model.py (it carries xfer metadata).
    #[arg(long, value_name = "M.onnx")]
    pub model: PathBuf,

    /// Output folder for <split>.parquet (created if needed).
    #[arg(long, value_name = "FEATURES_DIR")]
    pub out: PathBuf,

    /// Input side: images are resized to SIZE x SIZE.
    #[arg(long, default_value_t = 150)]
    pub size: u32,

    /// Images per ONNX Runtime run.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Where inference runs: auto takes CUDA when its provider loads, else CPU.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub device: Device,

    /// CPU threads for ONNX Runtime and for image decoding [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Take only the I-th of N deterministic shares of every split (I from 0)
    /// and write <split>-I-of-N.parquet.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// Resampling filter of Keras's load_img (PIL's arithmetic).
    #[arg(long, value_enum, default_value_t = Resize::Nearest)]
    pub resize: Resize,

    /// Follow symbolic links to folders inside class folders (Keras's follow_links).
    #[arg(long)]
    pub follow_links: bool,

    /// Exit with status 1 when any image was skipped.
    #[arg(long)]
    pub strict: bool,

    /// No progress and no summary (errors still print).
    #[arg(long, short)]
    pub quiet: bool,

    /// Refuse images with more pixels than this (decompression bombs); the
    /// default is where PIL raises DecompressionBombError.
    #[arg(long, value_name = "PIXELS", default_value_t = DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
}
