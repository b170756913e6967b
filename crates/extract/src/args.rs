//! The command line of `xfer extract`, as the user typed it.
//!
//! Doc comments are the `--help` text. Nothing here is checked beyond what
//! clap parses; [`crate::config::Config`] validates everything once, before
//! any work starts.
use std::path::PathBuf;

use crate::augment::FillMode;
use crate::model::Device;
use crate::pixels::{Decode, Resize, DEFAULT_MAX_PIXELS};

/// Images to pooled vectors, one Parquet file per split.
///
/// Reads DATA as Keras's flow_from_directory does (`DATA/<split>/<class>/<image>`
/// for the splits train, validation and test that exist, or `DATA/<class>/<image>`
/// for a single split named `train`), computes each image's vector with the
/// ONNX base, and writes `FEATURES_DIR/<split>.parquet`. Rows already there for
/// the same model, size, resize, decoding and preprocessing are reused; unreadable images
/// are listed in `FEATURES_DIR/<split>.errors.csv`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExtractArgs {
    /// Image folder (`DATA/<split>/<class>/<image>` or `DATA/<class>/<image>`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,

    /// ONNX base exported by scripts/export_model.py (it carries xfer metadata).
    #[arg(long, value_name = "M.onnx")]
    pub model: PathBuf,

    /// Output folder for `<split>.parquet` (created if needed).
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
    /// and write `<split>-I-of-N.parquet`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// Resampling filter of Keras's load_img (PIL's arithmetic).
    #[arg(long, value_enum, default_value_t = Resize::Nearest)]
    pub resize: Resize,

    /// JPEG decoding: full is Keras's load_img; draft is PIL's
    /// Image.draft('RGB', (SIZE, SIZE)) before the resize (libjpeg decodes at
    /// 1/2, 1/4 or 1/8 size where the image is that many times SIZE: faster,
    /// other pixels, recorded as xfer.decode so the vectors never mix).
    #[arg(long, value_enum, default_value_t = Decode::Full)]
    pub decode: Decode,

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

    /// Augmented views of the training split (`--augment K`).
    #[command(flatten)]
    pub augment: AugmentArgs,
}

/// Keras `ImageDataGenerator` augmentation, cached as views.
///
/// The defaults are the course's last generator (`shear_range=10,
/// zoom_range=0.1, horizontal_flip=True`); the other options need
/// `--augment`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Augmented views (training split only)")]
pub struct AugmentArgs {
    /// Also store K augmented views of every training image in
    /// FEATURES_DIR/views/train.parquet (view 0, the plain image, stays in
    /// train.parquet); `xfer train --views` draws one per image per epoch.
    #[arg(long, value_name = "K")]
    pub augment: Option<u32>,

    /// Seed of the views' random transforms (one per image path and view).
    #[arg(long, value_name = "S", default_value_t = 1, requires = "augment")]
    pub seed: u64,

    /// Keras rotation_range: rotations drawn from [-DEG, DEG] degrees.
    #[arg(long, value_name = "DEG", default_value_t = 0.0, requires = "augment")]
    pub rotation: f64,

    /// Keras width_shift_range: a fraction of the width below 1, pixels from 1.
    #[arg(long, value_name = "X", default_value_t = 0.0, requires = "augment")]
    pub width_shift: f64,

    /// Keras height_shift_range: a fraction of the height below 1, pixels from 1.
    #[arg(long, value_name = "X", default_value_t = 0.0, requires = "augment")]
    pub height_shift: f64,

    /// Keras shear_range: shear angles drawn from [-DEG, DEG] degrees.
    #[arg(long, value_name = "DEG", default_value_t = DEFAULT_SHEAR, requires = "augment")]
    pub shear: f64,

    /// Keras zoom_range: zooms drawn from [1 - Z, 1 + Z], x and y apart.
    #[arg(long, value_name = "Z", default_value_t = DEFAULT_ZOOM, requires = "augment")]
    pub zoom: f64,

    /// Flip half of the views left to right (the default).
    #[arg(long, overrides_with = "no_horizontal_flip", requires = "augment")]
    pub horizontal_flip: bool,

    /// Never flip left to right.
    #[arg(long, requires = "augment")]
    pub no_horizontal_flip: bool,

    /// Flip half of the views upside down.
    #[arg(long, requires = "augment")]
    pub vertical_flip: bool,

    /// Keras fill_mode: what pixels transformed in from outside the image get.
    #[arg(long, value_enum, default_value_t = FillMode::Nearest, requires = "augment")]
    pub fill_mode: FillMode,

    /// Keras cval: the value of outside pixels with --fill-mode constant (0..255).
    #[arg(long, value_name = "V", default_value_t = 0.0, requires = "augment")]
    pub cval: f64,
}

/// The course's `shear_range`.
pub(crate) const DEFAULT_SHEAR: f64 = 10.0;
/// The course's `zoom_range`.
pub(crate) const DEFAULT_ZOOM: f64 = 0.1;

impl Default for AugmentArgs {
    /// No augmentation; the other values are the command line's defaults.
    fn default() -> Self {
        AugmentArgs {
            augment: None,
            seed: 1,
            rotation: 0.0,
            width_shift: 0.0,
            height_shift: 0.0,
            shear: DEFAULT_SHEAR,
            zoom: DEFAULT_ZOOM,
            horizontal_flip: false,
            no_horizontal_flip: false,
            vertical_flip: false,
            fill_mode: FillMode::Nearest,
            cval: 0.0,
        }
    }
}
