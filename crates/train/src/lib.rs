//! `xfer train` and `xfer eval`: the dense softmax head on cached vectors.
//!
//! The vectors of a features folder are loaded once into contiguous `f32`
//! (`data.rs`), a head `Dense(C)` or `Dense(H, relu) → Dropout → Dense(C)`
//! ([`head`]) is fitted with categorical cross-entropy from logits
//! (`loss.rs`) and a hand-written Adam (`adam.rs`) in a loop that reproduces
//! Keras's `model.fit` number for number (`fit.rs`); lists of
//! hyperparameters run as a parallel grid (`sweep.rs`). With `--views` each
//! epoch shows every training image as one of its augmented views (written
//! by `xfer extract --augment K`, joined in `data.rs`). Every run leaves a
//! folder of history, heads, metrics and plots (`run_dir.rs`), written
//! beside `--out` and swapped in whole (`staging.rs`). `eval.rs`
//! scores a saved head on any split.
//!
//! [`head::Head`] is the public piece other commands use (`xfer predict`
//! loads heads through it); the rest is reached through [`run`] and
//! [`eval()`] with the clap structs [`TrainArgs`] and [`EvalArgs`].
#![deny(missing_docs)]

mod adam;
mod args;
mod atomic;
mod baseline;
mod config;
mod data;
mod error;
mod eval;
mod fit;
mod gemm;
pub mod head;
mod kernels;
mod loss;
mod metrics;
mod net;
mod plot;
mod run_dir;
mod staging;
mod sweep;

pub use args::{EvalArgs, TrainArgs};
pub use error::{Error, Result};
pub use head::{softmax_rows, Head};
pub use kernels::check_env as check_simd_env;

/// Runs `xfer train`: 0 when the run (or at least one configuration of a
/// sweep) finished, 1 when it diverged. The run replaces `--out` whole.
///
/// # Errors
/// A bad flag or `XFER_SIMD`, an `--out` that is not a run folder,
/// unreadable or inconsistent feature files, an `--init` head from other
/// vectors, or a file that cannot be written; the message names the flag
/// or file.
pub fn run(args: TrainArgs) -> Result<u8> {
    kernels::check_env()?;
    let cfg = config::TrainConfig::try_from(args)?;
    // Before the vectors are read: a folder that may not be replaced is
    // refused at once (it is checked again when the run is written).
    staging::check(&cfg.out, &cfg.features)?;
    let data = data::load_with(&cfg.features, &cfg.train_split, &cfg.val_split, cfg.views)?;
    let init = match &cfg.init {
        Some(path) => {
            let head = Head::load(path)?;
            head.check_features(path, &data.meta, &data.train.source)?;
            Some(head)
        }
        None => None,
    };
    sweep::run(&cfg, &data, init.as_ref())
}

/// Runs `xfer eval`; returns the exit status (0).
///
/// # Errors
/// A bad `XFER_SIMD`, an unreadable head or split, a head made for other
/// vectors, or a file that cannot be written; the message names the file.
pub fn eval(args: EvalArgs) -> Result<u8> {
    kernels::check_env()?;
    eval::run(config::EvalConfig::try_from(args)?)
}
