//! What the user typed for `xfer serve` (clap derive), and its validated
//! form.
//!
//! [`ServeArgs`] only parses. [`ServeConfig::try_from`] checks every range
//! once, before the model is opened, so the server handles validated values
//! only. As with `xfer predict`, the input size, resize filter and
//! preprocessing are not flags: they come from the head's metadata.
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use xfer_extract::model::{Device, SessionOptions};
use xfer_extract::pixels::DEFAULT_MAX_PIXELS;

use crate::{Error, Result};

/// `xfer serve`: the trained classifier over HTTP.
///
/// `POST /predict[?top=K]` takes an image's bytes as the body (or a
/// multipart form with a field `image`) and answers with the object `xfer
/// predict --json` prints for that file, less `path`. Concurrent requests
/// share one ONNX Runtime call (dynamic batching). `GET /health`, `GET
/// /metrics` (Prometheus text) and `GET /` (an upload page) come with it.
/// SIGTERM or Ctrl-C stops accepting, finishes what is in flight and exits
/// 0.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The ONNX base the head's features were extracted with.
    #[arg(long, value_name = "M.onnx")]
    pub model: PathBuf,
    /// Head file written by `xfer train`.
    #[arg(long, value_name = "HEAD.safetensors")]
    pub head: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub addr: String,
    /// Most images in one ONNX Runtime call.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
    pub max_batch: i64,
    /// Longest a request waits for others to share its call, in ms.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    pub max_wait_ms: i64,
    /// Largest request body (B, KB, KiB, MB, MiB, GB, GiB); larger gets 413.
    #[arg(long, default_value = "20MiB", value_name = "SIZE")]
    pub max_body: String,
    /// Images with more pixels are refused before decoding [default: PIL's
    /// limit, as `xfer extract`].
    #[arg(long, value_name = "N")]
    pub max_pixels: Option<u64>,
    /// Longest time to receive a request body, in ms; a slower client gets
    /// 408.
    #[arg(long, default_value_t = 10_000, allow_negative_numbers = true)]
    pub read_timeout_ms: i64,
    /// Where the base runs.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub device: Device,
    /// ONNX Runtime threads, and image-decoding threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No notes on stderr (the CUDA fallback).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Validated settings of `xfer serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The ONNX base.
    pub model: PathBuf,
    /// The head file.
    pub head: PathBuf,
    /// Address to bind, as given.
    pub addr: String,
    /// Images per ONNX Runtime call, at most (at least 1).
    pub max_batch: usize,
    /// How long the first request of a batch waits for more.
    pub max_wait: Duration,
    /// Largest body in bytes.
    pub max_body: usize,
    /// Pixel limit for decoding.
    pub max_pixels: u64,
    /// Longest time to receive a body.
    pub read_timeout: Duration,
    /// Session options for the base.
    pub session: SessionOptions,
    /// Decoding threads.
    pub threads: usize,
    /// Whether to keep stderr quiet.
    pub quiet: bool,
}

impl TryFrom<ServeArgs> for ServeConfig {
    type Error = Error;

    fn try_from(a: ServeArgs) -> Result<Self> {
        let max_batch = in_range("max-batch", a.max_batch, 1..=4096)? as usize;
        let max_wait = in_range("max-wait-ms", a.max_wait_ms, 0..=60_000)?;
        let read_timeout = in_range("read-timeout-ms", a.read_timeout_ms, 1..=3_600_000)?;
        let max_body = parse_size(&a.max_body).filter(|&b| b >= 1).ok_or_else(|| {
            Error::config(
                "max-body",
                format!(
                    "{:?} is not a positive size such as 20MiB, 500KB or 1048576",
                    a.max_body
                ),
            )
        })?;
        let max_body = usize::try_from(max_body)
            .map_err(|_| Error::config("max-body", "too large for this machine"))?;
        let max_pixels = a.max_pixels.unwrap_or(DEFAULT_MAX_PIXELS);
        if max_pixels == 0 {
            return Err(Error::config("max-pixels", "must be at least 1"));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match a.threads {
            Some(0) => return Err(Error::config("threads", "must be at least 1")),
            Some(t) => t,
            None => cores,
        };
        Ok(ServeConfig {
            model: a.model,
            head: a.head,
            addr: a.addr,
            max_batch,
            max_wait: Duration::from_millis(max_wait),
            max_body,
            max_pixels,
            read_timeout: Duration::from_millis(read_timeout),
            // Decoding and inference share the cores as in `xfer extract`:
            // taking turns (`turns.rs`) when ORT's threads fill them.
            session: SessionOptions::sharing_cores(a.device, threads),
            threads,
            quiet: a.quiet,
        })
    }
}

/// `value` if it lies in `range`, else an error naming `flag`.
fn in_range(flag: &'static str, value: i64, range: RangeInclusive<u64>) -> Result<u64> {
    u64::try_from(value)
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            Error::config(
                flag,
                format!("{value} is not in {}..={}", range.start(), range.end()),
            )
        })
}

/// `20MiB`, `500KB`, `1048576`: a byte count with an optional unit (decimal
/// KB/MB/GB, binary KiB/MiB/GiB, case-insensitive).
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["xfer", "--model", "m.onnx", "--head", "h.safetensors"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn defaults() {
        let c = ServeConfig::try_from(parse(&[])).unwrap();
        assert_eq!(c.addr, "127.0.0.1:8080");
        assert_eq!((c.max_batch, c.max_body), (32, 20 << 20));
        assert_eq!(c.max_wait, Duration::from_millis(5));
        assert_eq!(c.max_pixels, DEFAULT_MAX_PIXELS);
        assert_eq!(c.read_timeout, Duration::from_secs(10));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20MiB"), Some(20 << 20));
        assert_eq!(parse_size("500kb"), Some(500_000));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("3 GiB"), Some(3 << 30));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5MiB",
            "10 parsecs",
            "99999999999999999999GiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_are_checked_with_the_flag_named() {
        for (flag, value) in [
            ("--max-batch", "0"),
            ("--max-batch", "-3"),
            ("--max-wait-ms", "-1"),
            ("--max-body", "0"),
            ("--max-body", "lots"),
            ("--max-pixels", "0"),
            ("--read-timeout-ms", "0"),
            ("--threads", "0"),
        ] {
            let err = ServeConfig::try_from(parse(&[flag, value]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(flag), "{flag} {value}: {err}");
        }
    }
}
