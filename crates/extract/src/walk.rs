//! The images of a data folder, in Keras's `flow_from_directory` order.
//!
//! Row order is part of the contract, and Keras's order is a property of
//! its code, so this copies the code rather than the idea:
//!
//! * classes are `sorted(os.listdir(split))` entries that are folders
//!   (`os.path.isdir`, so a symlinked class folder counts), the same list in
//!   every split;
//! * inside a class, `sorted(os.walk(class, followlinks=...), key=root)`,
//!   then `sorted(files)` in each folder;
//! * a file is taken when `name.lower().endswith(ext)` for one of `png jpg
//!   jpeg bmp ppm tif tiff` (Keras tests the bare suffix, without the dot);
//! * symlinked folders inside a class are not entered unless
//!   `--follow-links`, and then each real folder at most once, so a link
//!   loop cannot hang the walk (Python's would recurse until the path is too
//!   long).
//!
//! What Keras would have taken but xfer cannot represent (a name that is not
//! UTF-8) or reach (a folder that cannot be listed) becomes a [`Skipped`]
//! entry with its reason, in the same order.
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Keras's `white_list_formats`.
pub(crate) const EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff"];

/// The split names looked for under DATA, in this order.
pub(crate) const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// The name of the one split of a `DATA/<class>/<image>` folder.
pub(crate) const SINGLE_SPLIT: &str = "train";

/// One image to extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// Path relative to DATA, `/`-separated (the `path` column).
    pub(crate) rel: String,
    /// Path to open.
    pub(crate) path: PathBuf,
    /// Index into the class list.
    pub(crate) label: i32,
}

/// Something Keras would have read that xfer skips, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Path relative to DATA, non-UTF-8 bytes written as `\xNN`.
    pub(crate) rel: String,
    /// Why.
    pub(crate) reason: String,
}

/// A walk entry, in flow order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// An image to extract.
    Image(Item),
    /// A name or folder that cannot be used.
    Skipped(Skipped),
}

/// One split's entries.
#[derive(Debug, Clone)]
pub(crate) struct Split {
    /// `train`, `validation`, `test`.
    pub(crate) name: String,
    /// Candidates in flow order.
    pub(crate) entries: Vec<Entry>,
}

/// The whole data folder.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    /// Sorted class names, shared by every split.
    pub(crate) classes: Vec<String>,
    /// The splits found.
    pub(crate) splits: Vec<Split>,
}

/// `rel` with bytes that are not UTF-8 escaped as `\xNN`.
pub(crate) fn display_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn is_image_name(name: &OsStr) -> bool {
    let lower = name.to_string_lossy().to_lowercase();
    EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

/// Reads DATA's layout and walks every split.
///
/// # Errors
/// [`Error::Layout`] when DATA has no class folders, a class name is not
/// UTF-8, or the splits disagree on the classes; [`Error::Io`] when DATA or
/// a split cannot be listed.
pub(crate) fn scan(data: &Path, follow_links: bool) -> Result<Dataset> {
    let named: Vec<&str> = SPLITS
        .iter()
        .copied()
        .filter(|s| data.join(s).is_dir())
        .collect();
    let roots: Vec<(String, PathBuf, String)> = if named.is_empty() {
        vec![(SINGLE_SPLIT.to_string(), data.to_path_buf(), String::new())]
    } else {
        named
            .iter()
            .map(|s| (s.to_string(), data.join(s), format!("{s}/")))
            .collect()
    };
    let mut classes: Option<(String, Vec<String>)> = None;
    let mut splits = Vec::new();
    for (name, root, prefix) in roots {
        let these = list_classes(&root)?;
        match &classes {
            None => classes = Some((name.clone(), these.clone())),
            Some((first, known)) if *known != these => {
                return Err(class_mismatch(data, first, known, &name, &these));
            }
            Some(_) => {}
        }
        let mut entries = Vec::new();
        for (label, class) in these.iter().enumerate() {
            walk_class(
                &root.join(class),
                &format!("{prefix}{class}"),
                label as i32,
                follow_links,
                &mut entries,
            );
        }
        splits.push(Split { name, entries });
    }
    let classes = classes.map(|(_, c)| c).unwrap_or_default();
    if classes.is_empty() {
        return Err(Error::Layout {
            path: data.into(),
            reason: "no class folders: expected DATA/<split>/<class>/<image> (splits train, \
                     validation, test) or DATA/<class>/<image>"
                .into(),
        });
    }
    Ok(Dataset { classes, splits })
}

fn class_mismatch(
    data: &Path,
    first: &str,
    known: &[String],
    name: &str,
    these: &[String],
) -> Error {
    let missing: Vec<&str> = known
        .iter()
        .filter(|c| !these.contains(c))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = these
        .iter()
        .filter(|c| !known.contains(c))
        .map(String::as_str)
        .collect();
    let mut reason = format!("split `{name}` has other classes than `{first}`");
    if !missing.is_empty() {
        reason.push_str(&format!("; missing: {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        reason.push_str(&format!("; only in `{name}`: {}", extra.join(", ")));
    }
    reason.push_str(" (every split needs the same class folders, even if empty)");
    Error::Layout {
        path: data.into(),
        reason,
    }
}

/// `sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))`.
fn list_classes(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| Error::Layout {
            path: path.clone(),
            reason: "class folder name is not UTF-8; rename it".into(),
        })?;
        out.push(name.to_string());
    }
    out.sort();
    Ok(out)
}

/// One folder of `os.walk`: its path relative to DATA and its non-folder
/// entries.
struct WalkRoot {
    rel: OsString,
    abs: PathBuf,
    files: Vec<OsString>,
}

/// `os.walk(top, followlinks)`, roots then sorted by their path.
fn walk_class(top: &Path, rel_top: &str, label: i32, follow: bool, out: &mut Vec<Entry>) {
    let mut roots = Vec::new();
    let mut seen = HashSet::new();
    if let Ok(m) = std::fs::metadata(top) {
        seen.insert((m.dev(), m.ino()));
    }
    let mut stack = vec![(top.to_path_buf(), OsString::from(rel_top))];
    while let Some((abs, rel)) = stack.pop() {
        let rd = match std::fs::read_dir(&abs) {
            Ok(rd) => rd,
            Err(e) => {
                out.push(Entry::Skipped(Skipped {
                    rel: display_bytes(rel.as_bytes()),
                    reason: format!("cannot list folder: {e}"),
                }));
                continue;
            }
        };
        let mut files = Vec::new();
        for entry in rd.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let mut child_rel = rel.clone();
            child_rel.push("/");
            child_rel.push(&name);
            if !path.is_dir() {
                files.push(name);
                continue;
            }
            let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            if is_link && !follow {
                continue;
            }
            let id = std::fs::metadata(&path).map(|m| (m.dev(), m.ino())).ok();
            if let Some(id) = id {
                if !seen.insert(id) {
                    out.push(Entry::Skipped(Skipped {
                        rel: display_bytes(child_rel.as_bytes()),
                        reason: "folder already walked (symbolic link loop); not entered again"
                            .into(),
                    }));
                    continue;
                }
            }
            stack.push((path, child_rel));
        }
        roots.push(WalkRoot { rel, abs, files });
    }
    roots.sort_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
    for mut root in roots {
        root.files.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in root.files.into_iter().filter(|n| is_image_name(n)) {
            let mut rel = root.rel.clone();
            rel.push("/");
            rel.push(&name);
            let path = root.abs.join(&name);
            out.push(match rel.into_string() {
                Ok(rel) => Entry::Image(Item { rel, path, label }),
                Err(rel) => Entry::Skipped(Skipped {
                    rel: display_bytes(rel.as_bytes()),
                    reason: "file name is not valid UTF-8 (the path column is UTF-8); rename it"
                        .into(),
                }),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    fn rels(split: &Split) -> Vec<String> {
        split
            .entries
            .iter()
            .map(|e| match e {
                Entry::Image(i) => format!("{}:{}", i.label, i.rel),
                Entry::Skipped(s) => format!("skip:{}", s.rel),
            })
            .collect()
    }

    #[test]
    fn keras_order_and_extensions() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("train");
        for f in [
            "b/2.png",
            "b/10.PNG",
            "b/a b/x.jpg",
            "b/a/y.jpeg",
            "b/a/z.txt",
            "a/k.TIFF",
            "a/notes",
            "a/xpng",
        ] {
            touch(&t.join(f));
        }
        fs::create_dir_all(d.path().join("validation/a")).unwrap();
        fs::create_dir_all(d.path().join("validation/b")).unwrap();
        let ds = scan(d.path(), false).unwrap();
        assert_eq!(ds.classes, ["a", "b"]);
        assert_eq!(
            ds.splits
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["train", "validation"]
        );
        // roots sorted as strings: "b" < "b/a" < "b/a b" ('/' > ' '), then names.
        assert_eq!(
            rels(&ds.splits[0]),
            [
                "0:train/a/k.TIFF",
                "0:train/a/xpng",
                "1:train/b/10.PNG",
                "1:train/b/2.png",
                "1:train/b/a/y.jpeg",
                "1:train/b/a b/x.jpg"
            ]
        );
        assert!(ds.splits[1].entries.is_empty());
    }

    #[test]
    fn single_split_layout() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("cat/1.jpg"));
        touch(&d.path().join("dog/1.jpg"));
        let ds = scan(d.path(), false).unwrap();
        assert_eq!(ds.splits.len(), 1);
        assert_eq!(ds.splits[0].name, SINGLE_SPLIT);
        assert_eq!(rels(&ds.splits[0]), ["0:cat/1.jpg", "1:dog/1.jpg"]);
    }

    #[test]
    fn class_mismatch_is_an_error_naming_the_class() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("train/cat/1.jpg"));
        touch(&d.path().join("train/dog/1.jpg"));
        touch(&d.path().join("test/cat/1.jpg"));
        let e = scan(d.path(), false).unwrap_err().to_string();
        assert!(
            e.contains("split `test`") && e.contains("missing: dog"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(scan(empty.path(), false)
            .unwrap_err()
            .to_string()
            .contains("no class folders"));
    }

    #[test]
    fn links_are_followed_only_when_asked_and_loops_end() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("c/real/1.png"));
        touch(&d.path().join("elsewhere/2.png"));
        std::os::unix::fs::symlink(d.path().join("elsewhere"), d.path().join("c/linked")).unwrap();
        std::os::unix::fs::symlink(d.path().join("c"), d.path().join("c/real/loop")).unwrap();
        let ds = scan(d.path(), false).unwrap();
        let class_c = ds.classes.iter().position(|c| c == "c").unwrap() as i32;
        let only_c = |s: &Split| {
            rels(s)
                .into_iter()
                .filter(|r| r.starts_with(&format!("{class_c}:")))
                .collect::<Vec<_>>()
        };
        assert_eq!(only_c(&ds.splits[0]), [format!("{class_c}:c/real/1.png")]);
        let ds = scan(d.path(), true).unwrap();
        let all = rels(&ds.splits[0]);
        assert!(
            all.contains(&format!("{class_c}:c/linked/2.png")),
            "{all:?}"
        );
        assert!(
            all.iter().any(|r| r.starts_with("skip:c/real/loop")),
            "{all:?}"
        );
    }

    #[test]
    fn non_utf8_names_are_skipped_with_escapes() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("c/ok.png"));
        let name = OsStr::from_bytes(b"bad\xff.png");
        touch(&d.path().join("c").join(name));
        let ds = scan(d.path(), false).unwrap();
        let r = rels(&ds.splits[0]);
        assert_eq!(r, ["skip:c/bad\\xff.png", "0:c/ok.png"]);
    }
}
