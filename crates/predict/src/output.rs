//! What `xfer predict` prints: a table for people, JSON lines for programs.
//!
//! JSON lines follow `shared/CONTRACT.md`, one object per image in input
//! order: `{"path": "...", "top": [{"class": "...", "probability": 0.93},
//! ...]}`, or `{"path": "...", "error": "..."}` for an image that could not
//! be classified. The table has one row per image with the top classes and
//! their probabilities, columns sized from the paths and class names known
//! before the first row, so rows are printed as soon as their batch is done.
use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// The outcome for one image: its top classes, best first, or why it failed.
pub type Outcome = std::result::Result<Vec<(String, f32)>, String>;

/// The `top` highest probabilities with their class names, best first (ties
/// keep class order).
pub fn top_k(probabilities: &[f32], classes: &[String], top: usize) -> Vec<(String, f32)> {
    let mut idx: Vec<usize> = (0..probabilities.len()).collect();
    idx.sort_by(|&a, &b| {
        probabilities[b]
            .total_cmp(&probabilities[a])
            .then(a.cmp(&b))
    });
    idx.into_iter()
        .take(top)
        .map(|i| (classes[i].clone(), probabilities[i]))
        .collect()
}

// The JSON objects, as structs so the keys keep the contract's order.
#[derive(Serialize)]
struct JsonTop<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    top: Vec<JsonClass<'a>>,
}

#[derive(Serialize)]
struct JsonClass<'a> {
    class: &'a str,
    probability: f32,
}

#[derive(Serialize)]
struct JsonError<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    error: &'a str,
}

/// One image's JSON object as `xfer predict --json` prints it (one line,
/// no newline): `{"path": ..., "top": [{"class": ..., "probability": ...},
/// ...]}` or `{"path": ..., "error": ...}`; without `path` when it is
/// `None` (the body `xfer serve` answers with).
///
/// # Errors
/// When serialization fails (it does not for these types; kept for
/// `serde_json`'s signature).
pub fn json_object(path: Option<&str>, outcome: &Outcome) -> serde_json::Result<String> {
    match outcome {
        Ok(top) => serde_json::to_string(&JsonTop {
            path,
            top: top
                .iter()
                .map(|(class, probability)| JsonClass {
                    class,
                    probability: *probability,
                })
                .collect(),
        }),
        Err(reason) => serde_json::to_string(&JsonError {
            path,
            error: reason,
        }),
    }
}

/// Prints outcomes as a table or as JSON lines.
pub struct Printer<W: Write> {
    out: W,
    json: bool,
    path_width: usize,
    class_width: usize,
    top: usize,
    header_done: bool,
}

impl<W: Write> Printer<W> {
    /// A printer for rows whose paths are at most `path_width` characters
    /// and whose class names at most `class_width`.
    pub fn new(out: W, json: bool, top: usize, path_width: usize, class_width: usize) -> Self {
        Printer {
            out,
            json,
            path_width: path_width.max(5),
            class_width: class_width.max(5),
            top,
            header_done: false,
        }
    }

    /// Prints one image's row (the table's header before the first).
    ///
    /// # Errors
    /// When writing to the output fails (a closed pipe, say).
    pub fn print(&mut self, path: &Path, outcome: &Outcome) -> std::io::Result<()> {
        let shown = path.to_string_lossy();
        if self.json {
            let line = json_object(Some(&shown), outcome).map_err(std::io::Error::other)?;
            writeln!(self.out, "{line}")?;
        } else {
            if !self.header_done {
                self.header_done = true;
                let mut line = format!("{:<w$}", "image", w = self.path_width);
                for k in 1..=self.top {
                    line.push_str(&format!(
                        "  {:<w$}",
                        format!("top {k}"),
                        w = self.class_width + 8
                    ));
                }
                writeln!(self.out, "{}", line.trim_end())?;
            }
            let mut line = format!("{shown:<w$}", w = self.path_width);
            match outcome {
                Ok(top) => {
                    for (class, p) in top {
                        line.push_str(&format!("  {class:<w$} {p:.4}", w = self.class_width + 1));
                    }
                }
                Err(reason) => line.push_str(&format!("  error: {reason}")),
            }
            writeln!(self.out, "{}", line.trim_end())?;
        }
        Ok(())
    }

    /// Flushes the output.
    ///
    /// # Errors
    /// When writing to the output fails.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        ["cat", "dog", "fox"].map(String::from).to_vec()
    }

    #[test]
    fn top_k_orders_by_probability_then_class() {
        let t = top_k(&[0.2, 0.5, 0.3], &classes(), 2);
        assert_eq!(t, vec![("dog".into(), 0.5), ("fox".into(), 0.3)]);
        let tie = top_k(&[0.4, 0.2, 0.4], &classes(), 3);
        assert_eq!(
            tie.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
            ["cat", "fox", "dog"]
        );
        assert_eq!(top_k(&[0.4, 0.2, 0.4], &classes(), 9).len(), 3);
    }

    #[test]
    fn json_lines_follow_the_contract() {
        let mut buf = Vec::new();
        let mut p = Printer::new(&mut buf, true, 2, 0, 0);
        p.print(
            Path::new("a/b.jpg"),
            &Ok(vec![("dog".into(), 0.75), ("cat".into(), 0.25)]),
        )
        .unwrap();
        p.print(Path::new("bad\".jpg"), &Err("cannot decode".into()))
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "{\"path\":\"a/b.jpg\",\"top\":[{\"class\":\"dog\",\"probability\":0.75},\
             {\"class\":\"cat\",\"probability\":0.25}]}\n\
             {\"path\":\"bad\\\".jpg\",\"error\":\"cannot decode\"}\n"
        );
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["path"], "a/b.jpg");
        assert_eq!(lines[0]["top"][0]["class"], "dog");
        assert_eq!(lines[0]["top"][0]["probability"], 0.75);
        assert_eq!(lines[0]["top"][1]["probability"], 0.25);
        assert_eq!(
            lines[1],
            serde_json::json!({"path": "bad\".jpg", "error": "cannot decode"})
        );
        assert_eq!(
            json_object(None, &Ok(vec![("dog".into(), 0.75)])).unwrap(),
            "{\"top\":[{\"class\":\"dog\",\"probability\":0.75}]}"
        );
        assert_eq!(
            json_object(None, &Err("bad".into())).unwrap(),
            "{\"error\":\"bad\"}"
        );
    }

    #[test]
    fn table_rows_line_up() {
        let mut buf = Vec::new();
        let mut p = Printer::new(&mut buf, false, 2, 9, 3);
        p.print(
            Path::new("x/one.jpg"),
            &Ok(vec![("dog".into(), 0.75), ("cat".into(), 0.25)]),
        )
        .unwrap();
        p.print(Path::new("two.jpg"), &Err("cannot decode".into()))
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "image      top 1          top 2\n\
             x/one.jpg  dog    0.7500  cat    0.2500\n\
             two.jpg    error: cannot decode\n"
        );
    }
}
