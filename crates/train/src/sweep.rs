//! Running one configuration or a whole grid of them.
//!
//! The vectors are loaded once and shared read-only; each configuration of
//! `--lr × --inner × --dropout` gets its own head, optimizer state, buffers
//! and run folder (`RUN_DIR/<name>/`), and the grid runs in parallel on a
//! rayon pool (one configuration per thread: each run's matrix products are
//! small, so running runs side by side uses the cores better than splitting
//! products). Every configuration starts from the same seed, so two runs
//! differ only by the hyperparameters. A diverging configuration is
//! recorded as such and the rest of the grid goes on. Afterwards:
//! `summary.csv`, `sweep.png` (validation accuracy of every run) and the best
//! configuration on stdout. Everything is written into a fresh folder that
//! replaces `--out` whole at the end ([`crate::staging`]), so a sweep never
//! leaves files beside those of an earlier single run, or the reverse.
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;

use crate::atomic::{write_atomic, write_json};
use crate::baseline::{self, Baseline};
use crate::config::{HeadConfig, TrainConfig};
use crate::data::Data;
use crate::fit::{self, EpochLog, FitOptions, History};
use crate::head::Head;
use crate::run_dir::{files, RunFiles, Summary};
use crate::staging::Staging;
use crate::{plot, Error, Result};

/// The grid with the inner width taken from `--init` where `--inner` was
/// not given.
///
/// # Errors
/// [`Error::Config`] when `--inner` disagrees with the `--init` head.
fn resolve_grid(cfg: &TrainConfig, init: Option<&Head>) -> Result<Vec<HeadConfig>> {
    let Some(init) = init else {
        return Ok(cfg.grid.clone());
    };
    let mut grid = cfg.grid.clone();
    for hc in &mut grid {
        if !cfg.inner_given {
            hc.inner = init.inner_size();
        } else if hc.inner != init.inner_size() {
            return Err(Error::config(
                "inner",
                format!(
                    "{} does not match the --init head, whose inner layer is {}",
                    hc.inner.unwrap_or(0),
                    init.inner_size()
                        .map_or("absent".to_string(), |n| n.to_string())
                ),
            ));
        }
    }
    Ok(grid)
}

/// Fits one configuration and writes its folder.
fn run_one(
    cfg: &TrainConfig,
    hc: &HeadConfig,
    data: &Data,
    init: Option<&Head>,
    dir: &Path,
    baseline: Option<&Baseline>,
    on_epoch: impl FnMut(&EpochLog),
) -> Result<Summary> {
    let start = Instant::now();
    let head = match init {
        Some(h) => {
            let mut h = h.clone();
            h.meta = data.meta.clone();
            h
        }
        None => Head::glorot(data.meta.clone(), hc.inner, cfg.seed),
    };
    let opts = FitOptions {
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        shuffle: cfg.shuffle,
        seed: cfg.seed,
    };
    let fit = fit::fit(
        head,
        &data.train,
        &data.val,
        hc.adam(),
        hc.dropout,
        opts,
        on_epoch,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    RunFiles {
        cfg,
        hc,
        data,
        fit: &fit,
        seconds,
        baseline,
    }
    .write(dir)
}

fn print_epoch(epochs: usize, log: &EpochLog) {
    println!(
        "Epoch {}/{epochs} - loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
        log.epoch, log.loss, log.accuracy, log.val_loss, log.val_accuracy
    );
}

fn describe(s: &Summary) -> String {
    match (&s.message, s.best_epoch, s.best_val_accuracy) {
        (Some(m), _, _) => m.clone(),
        (None, Some(e), Some(a)) => format!("best val_accuracy {a:.4} (epoch {e})"),
        _ => "no finished epoch".into(),
    }
}

fn print_baseline(b: &Baseline) {
    println!(
        "baseline ({}): val_accuracy {:.4} (train {:.4}, {:.1} s)",
        b.model, b.val_accuracy, b.train_accuracy, b.seconds
    );
}

/// Runs `xfer train` on loaded data; returns the exit status (0 when at
/// least one configuration finished, 1 when every one diverged).
///
/// # Errors
/// [`Error::Config`] for an `--inner`/`--init` conflict or a bad
/// `--threads`; I/O and plotting errors naming the file.
pub(crate) fn run(cfg: &TrainConfig, data: &Data, init: Option<&Head>) -> Result<u8> {
    let grid = resolve_grid(cfg, init)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.unwrap_or(0))
        .build()
        .map_err(|e| Error::config("threads", e.to_string()))?;
    let staging = Staging::begin(&cfg.out, &cfg.features)?;
    let dir = staging.dir();
    let baseline = if cfg.baseline {
        let b = pool.install(|| baseline::fit(data))?;
        write_json(&dir.join(files::BASELINE), &b)?;
        Some(b)
    } else {
        None
    };
    if !cfg.is_sweep() {
        let hc = &grid[0];
        // In the pool, so that `--threads` also bounds the halved batches.
        let s = pool.install(|| {
            run_one(cfg, hc, data, init, dir, baseline.as_ref(), |log| {
                print_epoch(cfg.epochs, log)
            })
        })?;
        staging.commit()?;
        if let Some(b) = &baseline {
            print_baseline(b);
        }
        return Ok(match &s.message {
            Some(m) => {
                eprintln!("xfer train: {m}");
                1
            }
            None => {
                println!(
                    "{}: {} -> {}",
                    s.name,
                    describe(&s),
                    cfg.out.join(files::HEAD).display()
                );
                0
            }
        });
    }
    let results: Vec<Result<Summary>> = pool.install(|| {
        grid.par_iter()
            .map(|hc| {
                run_one(
                    cfg,
                    hc,
                    data,
                    init,
                    &dir.join(&hc.name),
                    baseline.as_ref(),
                    |_| {},
                )
            })
            .collect()
    });
    let summaries: Vec<Summary> = results.into_iter().collect::<Result<_>>()?;
    let mut csv = String::from(Summary::CSV_HEADER);
    csv.push('\n');
    for s in &summaries {
        csv += &s.csv_row();
        csv.push('\n');
    }
    write_atomic(&dir.join(files::SUMMARY), csv.as_bytes())?;
    let refs: Vec<(String, &History)> = summaries
        .iter()
        .filter(|s| s.epochs_run > 0)
        .map(|s| (s.name.clone(), &s.history))
        .collect();
    plot::sweep(&dir.join(files::SWEEP_PLOT), &refs)?;
    staging.commit()?;
    let width = summaries.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &summaries {
        println!("{:<width$}  {}  {:.2} s", s.name, describe(s), s.seconds);
    }
    if let Some(b) = &baseline {
        print_baseline(b);
    }
    let best = summaries
        .iter()
        .filter(|s| s.message.is_none())
        .filter_map(|s| s.best_val_accuracy.map(|a| (a, s)))
        .fold(None::<(f32, &Summary)>, |acc, (a, s)| match acc {
            Some((b, _)) if b >= a => acc,
            _ => Some((a, s)),
        });
    let diverged = summaries.iter().filter(|s| s.message.is_some()).count();
    if diverged > 0 {
        eprintln!(
            "xfer train: {diverged} of {} configurations diverged (see summary.csv)",
            summaries.len()
        );
    }
    match best {
        Some((a, s)) => {
            println!(
                "best: {} (val_accuracy {a:.4} at epoch {}) -> {}",
                s.name,
                s.best_epoch.unwrap_or(0),
                cfg.out.join(&s.name).join(files::HEAD).display()
            );
            Ok(0)
        }
        None => {
            eprintln!("xfer train: no configuration finished");
            Ok(1)
        }
    }
}
