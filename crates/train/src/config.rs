//! Validated settings: [`TrainConfig`] is built from [`TrainArgs`] once,
//! before any file is read, and is the only form the training code accepts.
//!
//! The checks are the ones Keras would make at `compile`/`fit` time or that
//! a run would otherwise discover late: a learning rate that is not a
//! positive finite number, zero epochs or batch size, a dropout rate outside
//! `[0, 1)` (Keras's `Dropout` rejects 1), duplicate grid values (two
//! configurations would share a folder).
use std::path::PathBuf;

use crate::adam::AdamParams;
use crate::{Error, EvalArgs, Result, TrainArgs};

/// One point of the grid: the settings that differ between sweep runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeadConfig {
    /// Folder name inside a sweep, e.g. `lr0.01-inner100-dropout0.5`.
    pub(crate) name: String,
    /// Learning rate as typed (f64 for the record; Adam uses it as f32).
    pub(crate) lr: f64,
    /// Inner layer width, `None` for `Dense(C)` alone.
    pub(crate) inner: Option<usize>,
    /// Dropout rate, 0 for none.
    pub(crate) dropout: f64,
}

impl HeadConfig {
    /// Adam with Keras's defaults and this configuration's learning rate.
    pub(crate) fn adam(&self) -> AdamParams {
        AdamParams {
            lr: self.lr as f32,
            ..AdamParams::default()
        }
    }
}

/// Everything `xfer train` needs, checked.
#[derive(Debug, Clone)]
pub(crate) struct TrainConfig {
    pub(crate) features: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) train_split: String,
    pub(crate) val_split: String,
    /// The grid, lr outermost, then inner, then dropout.
    pub(crate) grid: Vec<HeadConfig>,
    /// Whether `--inner` was given (so the inner width comes from `--init`
    /// when it was not).
    pub(crate) inner_given: bool,
    pub(crate) epochs: usize,
    pub(crate) batch_size: usize,
    pub(crate) seed: u64,
    pub(crate) seed_given: bool,
    pub(crate) shuffle: bool,
    /// Draw one augmented view per image per epoch (`--views`).
    pub(crate) views: bool,
    pub(crate) init: Option<PathBuf>,
    pub(crate) baseline: bool,
    pub(crate) threads: Option<usize>,
}

impl TrainConfig {
    /// True when more than one configuration runs (one folder each).
    pub(crate) fn is_sweep(&self) -> bool {
        self.grid.len() > 1
    }
}

/// A grid value for a folder name: plain decimals in the usual range
/// (`0.0001`, `0.5`, `100`), exponent form outside it (`1e-7`, `1e38`).
fn short_number(x: f64) -> String {
    if x == 0.0 || (1e-5..1e6).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

fn distinct<T: PartialEq + std::fmt::Debug>(flag: &'static str, values: &[T]) -> Result<()> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(Error::config(flag, format!("{v:?} is listed twice")));
        }
    }
    Ok(())
}

impl TryFrom<TrainArgs> for TrainConfig {
    type Error = Error;

    fn try_from(a: TrainArgs) -> Result<Self> {
        for &lr in &a.lr {
            if !(lr.is_finite() && lr > 0.0 && (lr as f32) > 0.0 && (lr as f32).is_finite()) {
                return Err(Error::config(
                    "lr",
                    format!("must be a positive finite number, got {lr}"),
                ));
            }
        }
        distinct("lr", &a.lr)?;
        for &p in &a.dropout {
            if !(p.is_finite() && (0.0..1.0).contains(&p)) {
                return Err(Error::config(
                    "dropout",
                    format!("must be in [0, 1), got {p}"),
                ));
            }
        }
        distinct("dropout", &a.dropout)?;
        distinct("inner", &a.inner)?;
        if a.epochs < 1 {
            return Err(Error::config(
                "epochs",
                format!("must be at least 1, got {}", a.epochs),
            ));
        }
        if a.batch_size < 1 {
            return Err(Error::config(
                "batch-size",
                format!("must be at least 1, got {}", a.batch_size),
            ));
        }
        if a.threads == Some(0) {
            return Err(Error::config("threads", "must be at least 1"));
        }
        if a.train == a.val {
            return Err(Error::config(
                "val",
                format!(
                    "is the training split `{}`; validate on another split",
                    a.train
                ),
            ));
        }
        let inners: Vec<Option<usize>> = if a.inner.is_empty() {
            vec![None]
        } else {
            a.inner.iter().map(|&n| (n > 0).then_some(n)).collect()
        };
        let dropouts = if a.dropout.is_empty() {
            vec![0.0]
        } else {
            a.dropout.clone()
        };
        let mut grid = Vec::new();
        for &lr in &a.lr {
            for &inner in &inners {
                for &dropout in &dropouts {
                    let mut name = format!("lr{}", short_number(lr));
                    if !a.inner.is_empty() {
                        name += &format!("-inner{}", inner.unwrap_or(0));
                    }
                    if !a.dropout.is_empty() {
                        name += &format!("-dropout{}", short_number(dropout));
                    }
                    grid.push(HeadConfig {
                        name,
                        lr,
                        inner,
                        dropout,
                    });
                }
            }
        }
        let seed_given = a.seed.is_some();
        Ok(TrainConfig {
            features: a.features,
            out: a.out,
            train_split: a.train,
            val_split: a.val,
            grid,
            inner_given: !a.inner.is_empty(),
            epochs: a.epochs as usize,
            batch_size: a.batch_size as usize,
            seed: a.seed.unwrap_or_else(|| u64::from(rand::random::<u32>())),
            seed_given,
            shuffle: !a.no_shuffle,
            views: a.views,
            init: a.init,
            baseline: a.baseline,
            threads: a.threads,
        })
    }
}

/// Everything `xfer eval` needs, with the output path resolved.
#[derive(Debug, Clone)]
pub(crate) struct EvalConfig {
    pub(crate) features: PathBuf,
    pub(crate) split: String,
    pub(crate) head: PathBuf,
    pub(crate) json: bool,
    /// The JSON results file.
    pub(crate) out: PathBuf,
    /// The confusion-matrix image, beside `out`.
    pub(crate) plot: PathBuf,
}

impl TryFrom<EvalArgs> for EvalConfig {
    type Error = Error;

    fn try_from(a: EvalArgs) -> Result<Self> {
        if a.split.is_empty() || a.split.contains(['/', '\\']) {
            return Err(Error::config(
                "split",
                format!("{:?} is not a split name", a.split),
            ));
        }
        let out = a.out.unwrap_or_else(|| {
            let dir = a.head.parent().map(PathBuf::from).unwrap_or_default();
            dir.join(format!("eval-{}.json", a.split))
        });
        let plot = out
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default()
            .join("confusion.png");
        Ok(EvalConfig {
            features: a.features,
            split: a.split,
            head: a.head,
            json: a.json,
            out,
            plot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn parse(extra: &[&str]) -> Result<TrainConfig> {
        let mut argv = vec!["xfer", "--features", "f", "--out", "o"];
        argv.extend_from_slice(extra);
        TrainConfig::try_from(Cli::try_parse_from(argv).expect("parses").args)
    }

    fn message(extra: &[&str]) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_contracts() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.epochs, c.batch_size, c.shuffle), (10, 32, true));
        assert_eq!(
            (c.train_split.as_str(), c.val_split.as_str()),
            ("train", "validation")
        );
        assert_eq!(
            c.grid,
            vec![HeadConfig {
                name: "lr0.01".into(),
                lr: 0.01,
                inner: None,
                dropout: 0.0
            }]
        );
        assert!(!c.is_sweep());
    }

    #[test]
    fn lists_make_a_grid() {
        let c = parse(&[
            "--lr",
            "0.001,0.01",
            "--inner",
            "0,100",
            "--dropout",
            "0.2,0.5",
        ])
        .unwrap();
        assert_eq!(c.grid.len(), 8);
        assert_eq!(c.grid[0].name, "lr0.001-inner0-dropout0.2");
        assert_eq!(c.grid[7].name, "lr0.01-inner100-dropout0.5");
        assert_eq!(c.grid[7].inner, Some(100));
        assert!(c.is_sweep());
        let c = parse(&["--lr", "1e-7,0.0001,1e38"]).unwrap();
        let names: Vec<&str> = c.grid.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, vec!["lr1e-7", "lr0.0001", "lr1e38"]);
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert!(message(&["--lr", "0"]).starts_with("--lr: must be a positive"));
        assert!(message(&["--lr", "-1"]).starts_with("--lr:"));
        assert!(message(&["--lr", "inf"]).starts_with("--lr:"));
        assert!(
            message(&["--lr", "1e-50"]).starts_with("--lr:"),
            "underflows f32"
        );
        assert!(message(&["--epochs", "0"]).starts_with("--epochs: must be at least 1"));
        assert!(message(&["--batch-size", "0"]).starts_with("--batch-size:"));
        assert!(message(&["--dropout", "1"]).starts_with("--dropout: must be in [0, 1)"));
        assert!(message(&["--dropout", "-0.1"]).starts_with("--dropout:"));
        assert!(message(&["--lr", "0.1,0.1"]).contains("twice"));
        assert!(message(&["--val", "train"]).starts_with("--val:"));
    }
}
