//! `xfer eval`: a head's accuracy, per-class precision, recall and F1, and
//! confusion matrix on one split of a features folder.
//!
//! The head's metadata must match the split's (same classes, model, size,
//! preprocessing), else the numbers would be meaningless. Results go to a
//! JSON file (default `eval-<split>.json` beside the head) and
//! `confusion.png` beside it, and to stdout: tables, or with `--json` one
//! JSON object holding at least `accuracy`, `classes` and `confusion`
//! (rows = true class), as the contract says.
use std::fmt::Write as _;

use crate::atomic::write_json;
use crate::config::EvalConfig;
use crate::data::load_split;
use crate::head::Head;
use crate::metrics::{self, Metrics};
use crate::{plot, Result};

/// What `eval` writes and prints; `metrics.json` of a run has the same form.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    /// Split name.
    pub(crate) split: String,
    /// Feature file(s) of the split.
    pub(crate) features: String,
    /// Head file.
    pub(crate) head: String,
    /// Training epoch of the head, when known (run folders).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) epoch: Option<usize>,
    #[serde(flatten)]
    pub(crate) metrics: Metrics,
}

/// Tables for a person: accuracy, per-class numbers, confusion counts.
fn table(r: &Report) -> String {
    let m = &r.metrics;
    let w = m.classes.iter().map(|c| c.len()).max().unwrap_or(5).max(9);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} rows of split `{}` ({}), head {}",
        m.rows, r.split, r.features, r.head
    );
    let _ = writeln!(s, "accuracy {:.4}\n", m.accuracy);
    let _ = writeln!(s, "{:<w$}  precision  recall      f1  support", "class");
    for c in &m.per_class {
        let _ = writeln!(
            s,
            "{:<w$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
            c.class, c.precision, c.recall, c.f1, c.support
        );
    }
    let _ = writeln!(
        s,
        "{:<w$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}\n",
        "macro avg", m.macro_precision, m.macro_recall, m.macro_f1, m.rows
    );
    let _ = writeln!(
        s,
        "confusion matrix (rows = true class, columns = predicted, by index):"
    );
    let cw = m
        .rows
        .to_string()
        .len()
        .max(m.classes.len().to_string().len())
        .max(3);
    let _ = write!(s, "{:>4} {:<w$}", "", "");
    for k in 0..m.classes.len() {
        let _ = write!(s, " {k:>cw$}");
    }
    s.push('\n');
    for (k, (name, row)) in m.classes.iter().zip(&m.confusion).enumerate() {
        let _ = write!(s, "{k:>4} {name:<w$}");
        for v in row {
            let _ = write!(s, " {v:>cw$}");
        }
        s.push('\n');
    }
    s
}

/// Runs `xfer eval`; returns the exit status.
///
/// # Errors
/// Unreadable head or split, a head from other vectors, I/O or plotting
/// errors; each names the file.
pub(crate) fn run(cfg: EvalConfig) -> Result<u8> {
    let head = Head::load(&cfg.head)?;
    let (meta, split) = load_split(&cfg.features, &cfg.split)?;
    head.check_features(&cfg.head, &meta, &split.source)?;
    let logits = head.logits(&split.x, split.len());
    let pred = metrics::argmax_rows(&logits, head.classes().len());
    let report = Report {
        split: cfg.split.clone(),
        features: split.source.display().to_string(),
        head: cfg.head.display().to_string(),
        epoch: None,
        metrics: metrics::compute(head.classes(), &split.y, &pred),
    };
    write_json(&cfg.out, &report)?;
    let title = format!(
        "{} - {} rows - accuracy {:.4}",
        cfg.split, report.metrics.rows, report.metrics.accuracy
    );
    plot::confusion(&cfg.plot, head.classes(), &report.metrics.confusion, &title)?;
    if cfg.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("plain data serializes")
        );
    } else {
        print!("{}", table(&report));
        println!(
            "\nwritten: {} and {}",
            cfg.out.display(),
            cfg.plot.display()
        );
    }
    Ok(0)
}
