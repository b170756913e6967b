//! `xfer`: the thin command-line front over the libraries in `crates/`.
//!
//! Parsing is clap's; each command's arguments are defined, validated and
//! run by its own library crate. This file is the only place that turns an
//! error into an exit status: 2 for a failure that stops the command, the
//! command's own status otherwise (extract, for one, exits 1 when nothing
//! could be extracted).
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Transfer learning with cached features: a frozen ONNX base turns images
/// into vectors once, and a Keras-equal dense head trains on them in
/// milliseconds.
#[derive(Parser)]
#[command(name = "xfer", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Images to pooled vectors, one Parquet file per split.
    Extract(xfer_extract::ExtractArgs),
    /// Fit the dense head on cached vectors (lists of --lr/--inner/--dropout sweep).
    Train(xfer_train::TrainArgs),
    /// Classify new images with a base model and a trained head.
    Predict(xfer_predict::PredictArgs),
    /// Accuracy, per-class metrics and the confusion matrix of a head on a split.
    Eval(xfer_train::EvalArgs),
    /// The classifier over HTTP: batched, with metrics and an upload page.
    Serve(xfer_serve::ServeArgs),
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    Ok(match cli.command {
        Command::Extract(args) => xfer_extract::run(args)?,
        Command::Train(args) => xfer_train::run(args)?,
        Command::Predict(args) => xfer_predict::run(args)?,
        Command::Eval(args) => xfer_train::eval(args)?,
        Command::Serve(args) => xfer_serve::run(args)?,
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("xfer: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
