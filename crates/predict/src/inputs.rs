//! The images to classify: command-line paths, folders walked recursively.
//!
//! A file named on the command line is always tried, whatever its extension
//! (the user asked for it; if it is no image, its decode error is reported
//! like any bad image). A folder is walked recursively in sorted order (by
//! file name at each level, folders and files interleaved, as `walkdir`'s
//! `sort_by_file_name` does), keeping the files whose extension `extract`
//! takes. Symlinked files are followed; symlinked folders are not, so a link
//! cycle cannot make the walk endless.
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One entry of the work list: an image to classify, or a command-line path
/// that does not exist (reported in the output in its place, like a bad
/// image, so that the other paths are still classified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file to decode and classify.
    Image(PathBuf),
    /// A command-line path that could not be read, with the reason.
    Missing(PathBuf, String),
}

impl Input {
    /// The path as it will be printed.
    pub fn path(&self) -> &Path {
        match self {
            Input::Image(p) | Input::Missing(p, _) => p,
        }
    }
}

/// Expands the command-line paths into the ordered work list.
///
/// `is_image` decides, from a file name inside a folder, whether to take it.
///
/// # Errors
/// [`Error::Io`] when a folder (or one below it) cannot be listed;
/// [`Error::NoImages`] when nothing at all is left to classify.
pub fn collect(paths: &[PathBuf], is_image: impl Fn(&Path) -> bool) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => walk(p, &is_image, &mut out)?,
            Ok(_) => out.push(Input::Image(p.clone())),
            Err(e) => out.push(Input::Missing(p.clone(), e.to_string())),
        }
    }
    if out.is_empty() {
        return Err(Error::NoImages {
            paths: paths.to_vec(),
        });
    }
    Ok(out)
}

fn walk(dir: &Path, is_image: &impl Fn(&Path) -> bool, out: &mut Vec<Input>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .and_then(|rd| rd.collect::<std::io::Result<Vec<_>>>())
        .map_err(|e| Error::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, is_image, out)?;
        } else if is_image(&path) && (kind.is_file() || path.is_file()) {
            out.push(Input::Image(path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpg(p: &Path) -> bool {
        p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg"))
    }

    #[test]
    fn folders_are_walked_in_sorted_order_and_filtered() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for f in [
            "b/z.jpg",
            "b/a.JPG",
            "a.jpg",
            "c.jpg",
            "b/notes.txt",
            "b/sub/m.jpg",
        ] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let got = collect(&[d.to_path_buf()], jpg).unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|i| i.path().strip_prefix(d).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["a.jpg", "b/a.JPG", "b/sub/m.jpg", "b/z.jpg", "c.jpg"]
        );
    }

    #[test]
    fn named_files_are_kept_and_missing_ones_reported_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let txt = tmp.path().join("readme.txt");
        std::fs::write(&txt, b"x").unwrap();
        let gone = tmp.path().join("gone.jpg");
        let got = collect(&[gone.clone(), txt.clone()], jpg).unwrap();
        assert!(matches!(&got[0], Input::Missing(p, _) if *p == gone));
        assert_eq!(got[1], Input::Image(txt));
    }

    #[test]
    fn an_empty_folder_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = collect(&[tmp.path().to_path_buf()], jpg).unwrap_err();
        assert!(matches!(err, Error::NoImages { .. }));
    }
}
