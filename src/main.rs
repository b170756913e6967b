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
            // Every library error already says its cause in its own
            // message; `{err:#}` would append the cause chain again.
            eprintln!("xfer: error: {err}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// One set of short flags: a long flag has the same short one (or none)
    /// in every command, a short flag stands for one long flag, and
    /// `--quiet` is `-q` wherever a command has it.
    #[test]
    fn short_flags_mean_the_same_in_every_command() {
        let cli = Cli::command();
        let mut shorts_of: BTreeMap<String, BTreeSet<Option<char>>> = BTreeMap::new();
        let mut longs_of: BTreeMap<char, BTreeSet<String>> = BTreeMap::new();
        for cmd in cli.get_subcommands() {
            for arg in cmd.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                shorts_of
                    .entry(long.to_string())
                    .or_default()
                    .insert(arg.get_short());
                if let Some(s) = arg.get_short() {
                    longs_of.entry(s).or_default().insert(long.to_string());
                }
            }
        }
        for (long, shorts) in &shorts_of {
            assert_eq!(shorts.len(), 1, "--{long} has short flags {shorts:?}");
        }
        for (short, longs) in &longs_of {
            assert_eq!(longs.len(), 1, "-{short} stands for {longs:?}");
        }
        assert_eq!(shorts_of["quiet"], BTreeSet::from([Some('q')]));
    }
}
