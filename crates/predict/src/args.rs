//! What the user typed for `xfer predict` (clap derive), and its validated
//! form.
//!
//! [`PredictArgs`] only parses. [`PredictConfig::try_from`] checks every
//! range once, before any file is opened, so the rest of the crate handles
//! validated values only. The input size, resize filter and preprocessing
//! are not flags: they come from the head's metadata (what the vectors it
//! was trained on were made with), so they cannot be given wrong.
use std::path::PathBuf;

use xfer_extract::model::{Device, SessionOptions};

use crate::{Error, Result};

/// `xfer predict`: classify new images with a base model and a trained head.
///
/// Folders are walked recursively in sorted order, taking the image
/// extensions `xfer extract` takes; files named directly are always tried.
/// Exit status: 0 when every image was classified, 1 when some could not be
/// read (each is reported in its place, the others are still classified),
/// 2 when nothing could run (bad flag, model or head, or a head trained for
/// another model).
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// The ONNX base the head's features were extracted with.
    #[arg(long, value_name = "M.onnx")]
    pub model: PathBuf,
    /// Head file written by `xfer train`.
    #[arg(long, value_name = "HEAD.safetensors")]
    pub head: PathBuf,
    /// Images or folders of images.
    #[arg(required = true, value_name = "IMAGE_OR_DIR")]
    pub inputs: Vec<PathBuf>,
    /// How many classes to show per image, most probable first.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    pub top: i64,
    /// Print one JSON object per image instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Images per ONNX Runtime call.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
    pub batch_size: i64,
    /// Where the base runs.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub device: Device,
    /// CPU threads for ONNX Runtime and for image decoding [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No notes on stderr (the CUDA fallback, the count of failed images).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Validated settings of one `xfer predict` run.
#[derive(Debug, Clone)]
pub struct PredictConfig {
    /// The ONNX base.
    pub model: PathBuf,
    /// The head file.
    pub head: PathBuf,
    /// Command-line images and folders, in order.
    pub inputs: Vec<PathBuf>,
    /// Classes shown per image (at least 1; more than the classes shows all).
    pub top: usize,
    /// JSON lines instead of a table.
    pub json: bool,
    /// Images per batch (at least 1).
    pub batch_size: usize,
    /// Session options for the base.
    pub session: SessionOptions,
    /// Decoding threads.
    pub threads: usize,
    /// Whether to keep stderr quiet.
    pub quiet: bool,
}

impl TryFrom<PredictArgs> for PredictConfig {
    type Error = Error;

    fn try_from(a: PredictArgs) -> Result<Self> {
        let top = usize::try_from(a.top)
            .ok()
            .filter(|&t| t >= 1)
            .ok_or_else(|| {
                Error::config(
                    "top",
                    format!("{} is not a positive number of classes", a.top),
                )
            })?;
        let batch_size = usize::try_from(a.batch_size)
            .ok()
            .filter(|&b| (1..=65_536).contains(&b))
            .ok_or_else(|| {
                Error::config(
                    "batch-size",
                    format!("{} is not in 1..=65536", a.batch_size),
                )
            })?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match a.threads {
            Some(0) => return Err(Error::config("threads", "must be at least 1")),
            Some(t) => t,
            None => cores,
        };
        Ok(PredictConfig {
            model: a.model,
            head: a.head,
            inputs: a.inputs,
            top,
            json: a.json,
            batch_size,
            // Decoding and inference share the cores as in `xfer extract`.
            session: SessionOptions::sharing_cores(a.device, threads),
            threads,
            quiet: a.quiet,
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
        args: PredictArgs,
    }

    fn parse(extra: &[&str]) -> PredictArgs {
        let mut argv = vec![
            "xfer",
            "--model",
            "m.onnx",
            "--head",
            "h.safetensors",
            "a.jpg",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn defaults() {
        let c = PredictConfig::try_from(parse(&[])).unwrap();
        assert_eq!((c.top, c.batch_size, c.json), (3, 32, false));
        assert_eq!(c.session.device, Device::Auto);
        assert_eq!(c.inputs, vec![PathBuf::from("a.jpg")]);
    }

    #[test]
    fn ranges_are_checked_with_the_flag_named() {
        for (flag, value) in [
            ("--top", "0"),
            ("--top", "-2"),
            ("--batch-size", "0"),
            ("--threads", "0"),
        ] {
            let err = PredictConfig::try_from(parse(&[flag, value]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(flag), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn decoding_takes_turns_with_inference_only_when_ort_fills_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let c = PredictConfig::try_from(parse(&[])).unwrap();
        assert_eq!((c.threads, c.session.threads), (cores, Some(cores)));
        assert!(c.session.spin, "all cores to ORT: it spins within runs");
        if cores > 1 {
            let c = PredictConfig::try_from(parse(&["--threads", "1"])).unwrap();
            assert!(
                !c.session.spin,
                "a spare core: decoding overlaps, no spinning"
            );
        }
    }

    #[test]
    fn an_image_is_required() {
        assert!(Cli::try_parse_from(["xfer", "--model", "m", "--head", "h"]).is_err());
    }
}
