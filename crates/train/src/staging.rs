//! A run is written into a fresh folder beside `--out` and swapped in whole.
//!
//! A run folder must never hold files of another run: a single run's
//! `head.safetensors` left beside a later sweep's folders would be scored by
//! `xfer eval` and missed by the report. So `xfer train` never writes into
//! `--out` itself. It writes `.NAME.xfer-new-PID` next to it and, once
//! everything is written, renames the old folder away (`.NAME.xfer-old-PID`),
//! the new one into place, and removes the old one. A run that fails or is
//! killed leaves the old folder as it was; the hidden leftovers of a killed
//! run are cleared by the next run into the same `--out`.
//!
//! Only a run folder is ever replaced: an existing `--out` that is neither
//! empty nor an xfer run folder (it has no `run.json` and no `summary.csv`)
//! is refused before anything is read or written, so a user's own folder is
//! never deleted.
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::run_dir::files;
use crate::{Error, Result};

const NEW: &str = "new";
const OLD: &str = "old";

fn refuse(out: &Path, reason: impl Into<String>) -> Error {
    Error::RunFolder {
        path: out.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks, touching nothing, that `out` may be replaced by a new run: it is
/// absent, an empty folder or a run folder, and `features` does not lie
/// inside it (replacing the folder would delete the vectors).
///
/// # Errors
/// [`Error::RunFolder`] saying why `out` cannot be replaced.
pub(crate) fn check(out: &Path, features: &Path) -> Result<()> {
    if out.file_name().is_none() {
        return Err(refuse(
            out,
            "--out must name the run folder itself (xfer train replaces it whole)",
        ));
    }
    let meta = match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(out, e)),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(refuse(
            out,
            "is a symbolic link; xfer train replaces its --out whole, so give the folder itself",
        ));
    }
    if !meta.is_dir() {
        return Err(refuse(out, "exists and is not a folder"));
    }
    if let (Ok(f), Ok(o)) = (features.canonicalize(), out.canonicalize()) {
        if f.starts_with(&o) {
            return Err(refuse(
                out,
                format!(
                    "holds the features folder {}; xfer train replaces its --out whole, so give another --out",
                    features.display()
                ),
            ));
        }
    }
    let mut entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
    let empty = entries.next().is_none();
    if empty || out.join(files::RUN).is_file() || out.join(files::SUMMARY).is_file() {
        return Ok(());
    }
    Err(refuse(
        out,
        format!(
            "is not empty and is not an xfer run folder (no {} or {}); xfer train replaces \
             its --out whole, so give a new or empty folder, or remove this one yourself",
            files::RUN,
            files::SUMMARY
        ),
    ))
}

/// The folder a run is being written into, swapped in for `--out` by
/// [`Staging::commit`] and removed if dropped before.
#[derive(Debug)]
pub(crate) struct Staging {
    out: PathBuf,
    new: PathBuf,
    committed: bool,
}

/// `out`'s parent folder (`.` for a bare name).
fn parent(out: &Path) -> &Path {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The hidden sibling `.NAME.xfer-KIND-PID` of `out`.
fn sibling(out: &Path, kind: &str, pid: u32) -> PathBuf {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    parent(out).join(format!(".{name}.xfer-{kind}-{pid}"))
}

/// Whether process `pid` still runs (a run into the same `--out` from
/// another process). Where that cannot be told, it is taken to run, so its
/// folder is left alone.
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Makes the renames in `dir` durable where the system can sync a folder
/// (on Linux it can; elsewhere opening or syncing a folder may fail, and
/// the rename is then as durable as the system makes it).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Clears what killed runs into `out` left: their new folders are removed;
/// an old folder is moved back to `out` when a run died between its two
/// renames (`out` missing), else removed.
fn clear_leftovers(out: &Path) -> Result<()> {
    let dir = parent(out);
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.xfer-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((kind, pid)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !(kind == NEW || kind == OLD) || alive(pid) {
            continue;
        }
        let path = entry.path();
        if kind == OLD && std::fs::symlink_metadata(out).is_err() {
            std::fs::rename(&path, out).map_err(|e| Error::io(&path, e))?;
        } else {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

impl Staging {
    /// Checks `out` ([`check`]), clears leftovers of killed runs into it
    /// and makes the empty folder the run is written into.
    ///
    /// # Errors
    /// [`Error::RunFolder`] when `out` may not be replaced; [`Error::Io`]
    /// naming the folder that could not be made or cleared.
    pub(crate) fn begin(out: &Path, features: &Path) -> Result<Staging> {
        check(out, features)?;
        let dir = parent(out);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        clear_leftovers(out)?;
        let new = sibling(out, NEW, std::process::id());
        std::fs::create_dir(&new).map_err(|e| Error::io(&new, e))?;
        Ok(Staging {
            out: out.to_path_buf(),
            new,
            committed: false,
        })
    }

    /// Where the run's files go until [`Staging::commit`].
    pub(crate) fn dir(&self) -> &Path {
        &self.new
    }

    /// Puts the written run in place of `out` and removes the old one.
    ///
    /// # Errors
    /// [`Error::Io`] naming the folder a rename or removal failed on; when
    /// the new run could not be moved into place, the old one is put back.
    pub(crate) fn commit(mut self) -> Result<()> {
        let old = sibling(&self.out, OLD, std::process::id());
        let had_old = match std::fs::rename(&self.out, &old) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(&self.out, e)),
        };
        if let Err(e) = std::fs::rename(&self.new, &self.out) {
            if had_old {
                let _ = std::fs::rename(&old, &self.out);
            }
            return Err(Error::io(&self.out, e));
        }
        self.committed = true;
        sync_dir(parent(&self.out));
        if had_old {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    /// A run that did not reach [`Staging::commit`] leaves no new folder.
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_run_replaces_the_folder_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(files::RUN), "{}").unwrap();
        std::fs::write(out.join(files::HEAD), "old head").unwrap();
        let s = Staging::begin(&out, &tmp.path().join("features")).unwrap();
        std::fs::write(s.dir().join(files::SUMMARY), "name\n").unwrap();
        // Until the commit, --out is the old run.
        assert_eq!(files_in(&out), vec![files::HEAD, files::RUN]);
        s.commit().unwrap();
        assert_eq!(files_in(&out), vec![files::SUMMARY]);
        assert_eq!(files_in(tmp.path()), vec!["run"], "no leftovers");
    }

    #[test]
    fn a_failed_run_leaves_the_old_folder_and_no_new_one() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(files::SUMMARY), "old").unwrap();
        let s = Staging::begin(&out, &tmp.path().join("features")).unwrap();
        std::fs::write(s.dir().join(files::RUN), "{}").unwrap();
        drop(s);
        assert_eq!(files_in(tmp.path()), vec!["run"]);
        assert_eq!(std::fs::read(out.join(files::SUMMARY)).unwrap(), b"old");
    }

    #[test]
    fn absent_and_empty_folders_are_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("deeper/run");
        Staging::begin(&out, tmp.path()).unwrap().commit().unwrap();
        assert!(out.is_dir());
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        check(&empty, tmp.path()).unwrap();
    }

    #[test]
    fn a_foreign_folder_is_refused_and_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("mine");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("thesis.tex"), "keep me").unwrap();
        let err = Staging::begin(&out, tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("mine") && err.contains("not an xfer run folder"),
            "{err}"
        );
        assert_eq!(files_in(tmp.path()), vec!["mine"]);
        assert_eq!(files_in(&out), vec!["thesis.tex"]);
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(check(&file, tmp.path())
            .unwrap_err()
            .to_string()
            .contains("not a folder"));
        assert!(check(Path::new("."), tmp.path()).is_err());
    }

    #[test]
    fn features_inside_the_run_folder_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        std::fs::create_dir_all(out.join("features")).unwrap();
        std::fs::write(out.join(files::RUN), "{}").unwrap();
        let err = check(&out, &out.join("features")).unwrap_err().to_string();
        assert!(err.contains("holds the features folder"), "{err}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn leftovers_of_dead_runs_are_cleared_or_restored() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        // No process has pid u32::MAX - 1 (Linux caps pids far lower).
        let dead = u32::MAX - 1;
        std::fs::create_dir(sibling(&out, NEW, dead)).unwrap();
        let old = sibling(&out, OLD, dead);
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join(files::RUN), "{}").unwrap();
        std::fs::create_dir(tmp.path().join(".run.xfer-new-notapid")).unwrap();
        // Killed between its two renames: the old run comes back as --out.
        clear_leftovers(&out).unwrap();
        assert_eq!(files_in(tmp.path()), vec![".run.xfer-new-notapid", "run"]);
        assert_eq!(files_in(&out), vec![files::RUN]);
        // With --out in place, a dead run's old folder is removed.
        std::fs::create_dir(&old).unwrap();
        clear_leftovers(&out).unwrap();
        assert_eq!(files_in(tmp.path()), vec![".run.xfer-new-notapid", "run"]);
    }
}
