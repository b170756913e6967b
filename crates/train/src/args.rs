//! What the user typed for `xfer train` and `xfer eval` (clap derive).
//!
//! These structs only parse; every range and consistency check happens once
//! in [`crate::config`] before any file is read, so the rest of the crate
//! handles validated values only. Numbers that have a range (learning rate,
//! epochs, batch size, dropout) are parsed as signed so that `--lr -1` or
//! `--epochs 0` reach that check and get a message naming the flag and the
//! allowed range rather than a parser complaint.
use std::path::PathBuf;

/// `xfer train`: fit the dense head on cached vectors.
///
/// Lists such as `--lr 0.0001,0.001,0.01,0.1` (also `--inner`,
/// `--dropout`) run the whole grid in parallel, one run folder per
/// configuration, plus `summary.csv` and `sweep.png` in `--out`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Features folder written by `xfer extract` (`<split>.parquet` or shards).
    #[arg(long, value_name = "FEATURES_DIR")]
    pub features: PathBuf,
    /// Run folder for history, heads, metrics and plots; replaced whole by
    /// the new run (a folder that is not empty and not a run is refused).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// Split to train on.
    #[arg(long, default_value = "train", value_name = "SPLIT")]
    pub train: String,
    /// Split to validate on after every epoch.
    #[arg(long, default_value = "validation", value_name = "SPLIT")]
    pub val: String,
    /// Adam learning rate; a comma list sweeps.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.01",
        allow_negative_numbers = true,
        value_name = "LR[,LR...]"
    )]
    pub lr: Vec<f64>,
    /// Passes over the training split.
    #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
    pub epochs: i64,
    /// Rows per gradient step (the last, partial batch is kept).
    #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
    pub batch_size: i64,
    /// Width of a `Dense(N, relu)` layer before the output (0 = none); a
    /// comma list sweeps.
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    pub inner: Vec<usize>,
    /// Dropout rate in [0, 1) after the inner layer (on the vectors when
    /// there is none); a comma list sweeps.
    #[arg(
        long,
        value_delimiter = ',',
        allow_negative_numbers = true,
        value_name = "P[,P...]"
    )]
    pub dropout: Vec<f64>,
    /// Seed for the initial weights, the shuffling and dropout (drawn at
    /// random and recorded in run.json when absent).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Keep the training rows in file order instead of reshuffling every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Train on augmented views (`xfer extract --augment K`): every epoch
    /// each training image shows one of its views 0..=K (0 = plain), a
    /// different one from the epoch before, drawn from the seed; an epoch
    /// still has one row per image. Validation always uses the plain
    /// images.
    #[arg(long)]
    pub views: bool,
    /// Start from these weights instead of a seeded glorot-uniform init.
    #[arg(long, value_name = "HEAD.safetensors")]
    pub init: Option<PathBuf>,
    /// Also fit linfa's multinomial logistic regression and report its
    /// validation accuracy beside the head's.
    #[arg(long)]
    pub baseline: bool,
    /// Worker threads for a sweep (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// `xfer eval`: accuracy, per-class metrics and the confusion matrix of a
/// head on one split.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Features folder written by `xfer extract`.
    #[arg(long, value_name = "FEATURES_DIR")]
    pub features: PathBuf,
    /// Split to evaluate.
    #[arg(long, default_value = "test", value_name = "SPLIT")]
    pub split: String,
    /// Head file written by `xfer train`.
    #[arg(long, value_name = "HEAD.safetensors")]
    pub head: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Where to write the JSON results (default: `eval-<split>.json` beside
    /// the head); `confusion.png` goes beside it.
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,
}
