//! What a run tells afterwards: `<name>.errors.csv` and the summary lines.
//!
//! Skipped images are never silent: each one is a row `path,reason` in the
//! split's errors file (RFC 4180 quoting, written under a temporary name and
//! renamed like every output), and the counts are in the summary. A split
//! with nothing skipped has no errors file (an old one is removed, so the
//! folder always describes the last run).
use std::path::{Path, PathBuf};

use crate::model::Provider;
use crate::progress::clock;
use crate::{Error, Result};

/// One skipped image or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skip {
    pub(crate) rel: String,
    pub(crate) reason: String,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes `path` with one row per skip, or removes it when there is none.
pub(crate) fn write_errors(path: &Path, skips: &[Skip]) -> Result<()> {
    if skips.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        };
    }
    let mut text = String::from("path,reason\n");
    for s in skips {
        text.push_str(&format!("{},{}\n", csv_field(&s.rel), csv_field(&s.reason)));
    }
    Ok(xfer_features::write_atomic(path, text.as_bytes())?)
}

/// The outcome of one output file.
#[derive(Debug, Clone, Default)]
pub(crate) struct SplitReport {
    pub(crate) name: String,
    pub(crate) file: PathBuf,
    pub(crate) errors_file: Option<PathBuf>,
    pub(crate) rows: usize,
    pub(crate) encoded: usize,
    pub(crate) reused: usize,
    pub(crate) skipped: usize,
    pub(crate) encode_secs: f64,
    pub(crate) ort_secs: f64,
    /// Indexes (into the job's images) of the images that were skipped.
    pub(crate) failed: Vec<usize>,
}

impl SplitReport {
    pub(crate) fn line(&self) -> String {
        let mut s = format!(
            "{}: {} rows -> {}: {} encoded, {} reused, {} skipped",
            self.name,
            self.rows,
            self.file.display(),
            self.encoded,
            self.reused,
            self.skipped
        );
        if let Some(e) = &self.errors_file {
            s.push_str(&format!(" (reasons in {})", e.display()));
        }
        if self.encoded > 0 && self.encode_secs > 0.0 {
            s.push_str(&format!(
                "; {:.1} images/s, ONNX Runtime busy {:.0}% of {}",
                self.encoded as f64 / self.encode_secs,
                100.0 * self.ort_secs / self.encode_secs,
                clock(self.encode_secs)
            ));
        }
        s
    }
}

/// The closing line over all splits.
/// `provider` is `None` when nothing needed encoding (no session was built).
pub(crate) fn summary(reports: &[SplitReport], provider: Option<Provider>, secs: f64) -> String {
    let sum = |f: fn(&SplitReport) -> usize| reports.iter().map(f).sum::<usize>();
    let encoded = sum(|r| r.encoded);
    let encode_secs: f64 = reports.iter().map(|r| r.encode_secs).sum();
    let rate = if encoded > 0 && encode_secs > 0.0 {
        format!("{:.1} images/s", encoded as f64 / encode_secs)
    } else {
        "nothing to encode".to_string()
    };
    format!(
        "xfer extract: {} images: {} encoded, {} reused, {} skipped; provider {}; {rate}; {} in all",
        sum(|r| r.rows),
        encoded,
        sum(|r| r.reused),
        sum(|r| r.skipped),
        provider.map_or_else(|| "none (no session built)".into(), |p| p.to_string()),
        clock(secs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_file_quotes_and_disappears_when_clean() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.errors.csv");
        let skips = vec![
            Skip {
                rel: "a/x,1.png".into(),
                reason: "cannot identify image file".into(),
            },
            Skip {
                rel: "a/y.png".into(),
                reason: "said \"no\"".into(),
            },
        ];
        write_errors(&p, &skips).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "path,reason\n\"a/x,1.png\",cannot identify image file\na/y.png,\"said \"\"no\"\"\"\n"
        );
        write_errors(&p, &[]).unwrap();
        assert!(!p.exists());
        write_errors(&p, &[]).unwrap();
    }

    #[test]
    fn summary_counts() {
        let r = SplitReport {
            name: "train".into(),
            rows: 5,
            encoded: 3,
            reused: 2,
            skipped: 1,
            encode_secs: 1.5,
            ..Default::default()
        };
        let s = summary(&[r.clone(), r], Some(Provider::Cpu), 3.0);
        assert!(
            s.contains("10 images: 6 encoded, 4 reused, 2 skipped; provider CPU; 2.0 images/s"),
            "{s}"
        );
    }
}
