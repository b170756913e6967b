//! The run folder: every file a training run leaves behind.
//!
//! As the contract lists: `history.json` (Keras's `history.history` keys,
//! one number per epoch), `history.csv` (what Keras's `CSVLogger` writes:
//! `epoch` from 0, then the keys in sorted order), `head.safetensors` (the
//! best `val_accuracy` epoch, as `ModelCheckpoint(save_best_only=True)`
//! keeps it), `last.safetensors`, `metrics.json` (the best head on the
//! validation split), `curves.png` and `run.json` (every setting, the seed,
//! how the run ended).
//!
//! The folder is always a fresh one ([`crate::staging`] swaps it in for
//! `--out` whole), so it holds exactly what this run produced: no head
//! after a divergence in the first epoch, no file of an earlier run. Each
//! file is written whole or not at all ([`crate::atomic`]).
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::atomic::{write_atomic, write_json};
use crate::baseline::Baseline;
use crate::config::{HeadConfig, TrainConfig};
use crate::data::Data;
use crate::eval::Report;
use crate::fit::{Fit, History, Outcome};
use crate::{metrics, plot, Error, Result};

/// File names inside a run folder.
pub(crate) mod files {
    pub(crate) const HISTORY_JSON: &str = "history.json";
    pub(crate) const HISTORY_CSV: &str = "history.csv";
    pub(crate) const HEAD: &str = "head.safetensors";
    pub(crate) const LAST: &str = "last.safetensors";
    pub(crate) const METRICS: &str = "metrics.json";
    pub(crate) const CURVES: &str = "curves.png";
    pub(crate) const RUN: &str = "run.json";
    pub(crate) const SUMMARY: &str = "summary.csv";
    pub(crate) const SWEEP_PLOT: &str = "sweep.png";
    pub(crate) const BASELINE: &str = "baseline.json";
}

/// An `f32` widened to the `f64` with the same shortest decimal, so JSON
/// built through `serde_json::Value` shows `0.8933333`, not
/// `0.8933333158493042`.
pub(crate) fn short(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// One configuration's outcome: a row of `summary.csv`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) name: String,
    pub(crate) lr: f64,
    pub(crate) inner: Option<usize>,
    pub(crate) dropout: f64,
    /// `finished` or `diverged`.
    pub(crate) status: &'static str,
    /// Why it diverged, for the user.
    pub(crate) message: Option<String>,
    pub(crate) epochs_run: usize,
    pub(crate) best_epoch: Option<usize>,
    pub(crate) best_val_accuracy: Option<f32>,
    pub(crate) last_val_accuracy: Option<f32>,
    pub(crate) last_val_loss: Option<f32>,
    pub(crate) seconds: f64,
    pub(crate) history: History,
}

impl Summary {
    pub(crate) const CSV_HEADER: &'static str =
        "name,lr,inner,dropout,status,epochs_run,best_epoch,best_val_accuracy,last_val_accuracy,last_val_loss,seconds";

    pub(crate) fn csv_row(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_default();
        format!(
            "{},{},{},{},{},{},{},{},{},{},{:.4}",
            self.name,
            self.lr,
            self.inner.unwrap_or(0),
            self.dropout,
            self.status,
            self.epochs_run,
            opt(self.best_epoch.map(|v| v.to_string())),
            opt(self.best_val_accuracy.map(|v| v.to_string())),
            opt(self.last_val_accuracy.map(|v| v.to_string())),
            opt(self.last_val_loss.map(|v| v.to_string())),
            self.seconds
        )
    }
}

/// The message for a run that diverged.
pub(crate) fn diverged_message(hc: &HeadConfig, outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Finished => None,
        Outcome::Diverged { epoch, batch: 0 } => Some(format!(
            "diverged: the validation loss became NaN or infinite after epoch {epoch} (lr {}); stopped",
            hc.lr
        )),
        Outcome::Diverged { epoch, batch } => Some(format!(
            "diverged: the loss became NaN or infinite in epoch {epoch}, batch {batch} (lr {}); stopped, try a smaller --lr",
            hc.lr
        )),
    }
}

/// Everything written into one run folder.
pub(crate) struct RunFiles<'a> {
    pub(crate) cfg: &'a TrainConfig,
    pub(crate) hc: &'a HeadConfig,
    pub(crate) data: &'a Data,
    pub(crate) fit: &'a Fit,
    pub(crate) seconds: f64,
    pub(crate) baseline: Option<&'a Baseline>,
}

impl RunFiles<'_> {
    /// Writes the folder and returns its summary.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Plot`] naming the file that failed.
    pub(crate) fn write(&self, dir: &Path) -> Result<Summary> {
        let (cfg, hc, data, fit) = (self.cfg, self.hc, self.data, self.fit);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let h = &fit.history;
        write_json(&dir.join(files::HISTORY_JSON), h)?;
        let mut csv = String::from("epoch,accuracy,loss,val_accuracy,val_loss\n");
        for e in 0..h.epochs() {
            let _ = writeln!(
                csv,
                "{e},{},{},{},{}",
                h.accuracy[e], h.loss[e], h.val_accuracy[e], h.val_loss[e]
            );
        }
        write_atomic(&dir.join(files::HISTORY_CSV), csv.as_bytes())?;
        if let Some((epoch, head)) = &fit.best {
            head.save(&dir.join(files::HEAD))?;
            let logits = head.logits(&data.val.x, data.val.len());
            let pred = metrics::argmax_rows(&logits, data.classes());
            let report = Report {
                split: data.val.name.clone(),
                features: data.val.source.display().to_string(),
                head: files::HEAD.into(),
                epoch: Some(*epoch),
                metrics: metrics::compute(&data.meta.classes, &data.val.y, &pred),
            };
            write_json(&dir.join(files::METRICS), &report)?;
        }
        if let (Outcome::Finished, Some(last)) = (&fit.outcome, &fit.last) {
            last.save(&dir.join(files::LAST))?;
        }
        if h.epochs() > 0 {
            plot::curves(&dir.join(files::CURVES), h, &self.title())?;
        }
        let message = diverged_message(hc, &fit.outcome);
        let status = if message.is_some() {
            "diverged"
        } else {
            "finished"
        };
        let best = fit.best.as_ref().map(|(e, _)| *e);
        let best_val_accuracy = best.map(|e| h.val_accuracy[e - 1]);
        let best_val_accuracy_json = best_val_accuracy.map(short);
        let adam = hc.adam();
        let run = serde_json::json!({
            "command": "xfer train",
            "xfer_version": env!("CARGO_PKG_VERSION"),
            "name": hc.name,
            "features": cfg.features,
            "train_split": cfg.train_split,
            "val_split": cfg.val_split,
            "train_rows": data.train.len(),
            "val_rows": data.val.len(),
            "train_file": data.train.source,
            "val_file": data.val.source,
            "dim": data.dim(),
            "classes": data.meta.classes,
            "model": data.meta.to_pairs().into_iter().collect::<BTreeMap<_, _>>(),
            "head": {
                "inner": hc.inner,
                "dropout": hc.dropout,
                "layers": layers(hc),
            },
            "lr": hc.lr,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "seed_given": cfg.seed_given,
            "shuffle": cfg.shuffle,
            // --views: augmented views per image (view 0, the plain row, not
            // counted) and where they came from; null without --views.
            "views": data.train.views.as_ref().map(|v| serde_json::json!({
                "per_image": v.k,
                "file": v.source,
            })),
            "init": cfg.init.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "glorot_uniform".into()),
            "optimizer": {
                "name": "Adam",
                "learning_rate": hc.lr,
                "beta_1": adam.beta_1,
                "beta_2": adam.beta_2,
                "epsilon": adam.epsilon,
            },
            "loss": "categorical_crossentropy (from logits, mean over the batch)",
            "status": status,
            "message": message,
            "epochs_run": h.epochs(),
            "best_epoch": best,
            "best_val_accuracy": best_val_accuracy_json,
            "seconds": self.seconds,
            "baseline": self.baseline,
        });
        write_json(&dir.join(files::RUN), &run)?;
        Ok(Summary {
            name: hc.name.clone(),
            lr: hc.lr,
            inner: hc.inner,
            dropout: hc.dropout,
            status,
            message,
            epochs_run: h.epochs(),
            best_epoch: best,
            best_val_accuracy,
            last_val_accuracy: h.val_accuracy.last().copied(),
            last_val_loss: h.val_loss.last().copied(),
            seconds: self.seconds,
            history: h.clone(),
        })
    }

    fn title(&self) -> String {
        let hc = self.hc;
        let mut t = format!("lr {}", hc.lr);
        if let Some(n) = hc.inner {
            t += &format!(", inner {n}");
        }
        if hc.dropout > 0.0 {
            t += &format!(", dropout {}", hc.dropout);
        }
        t + &format!(", batch {}, seed {}", self.cfg.batch_size, self.cfg.seed)
    }
}

/// The head as Keras layers, for run.json.
fn layers(hc: &HeadConfig) -> Vec<String> {
    let mut out = Vec::new();
    let dropout = if hc.dropout > 0.0 {
        Some(format!("Dropout({})", hc.dropout))
    } else {
        None
    };
    match hc.inner {
        Some(n) => {
            out.push(format!("Dense({n}, relu)"));
            out.extend(dropout);
        }
        None => out.extend(dropout),
    }
    out.push("Dense(classes)".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_read_like_keras() {
        let hc = HeadConfig {
            name: "x".into(),
            lr: 0.1,
            inner: Some(100),
            dropout: 0.5,
        };
        assert_eq!(
            layers(&hc),
            vec!["Dense(100, relu)", "Dropout(0.5)", "Dense(classes)"]
        );
        let hc = HeadConfig {
            inner: None,
            dropout: 0.0,
            ..hc
        };
        assert_eq!(layers(&hc), vec!["Dense(classes)"]);
    }
}
