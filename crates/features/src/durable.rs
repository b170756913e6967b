//! Durable file replacement, shared by every output xfer writes.
//!
//! An output appears under its final name complete or not at all, and stays
//! there across a power cut: bytes go to a temporary file beside the target
//! whose name no other writer can pick (`tempfile`, so two runs never
//! truncate each other's file), the file is fsynced, renamed over the
//! target, and the folder is fsynced so the rename itself is on disk. A
//! writer that stops early leaves no temporary file behind (it is removed
//! on drop); one killed with `kill -9` leaves a hidden `.<name>.*.tmp`,
//! which nothing reads and [`remove_stale_temps`] clears.
//!
//! Failures are reported as writes, in plain words (`writing F: no space
//! left on device`), not as the reader-side errors they used to surface as.
use std::fs::File;
use std::io::Write;
use std::path::Path;

use tempfile::TempPath;

use crate::{Error, Result};

/// A short, lower-case reason for an I/O failure, without the errno
/// suffix: what a user needs to fix it.
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::StorageFull => "no space left on device".into(),
        K::ReadOnlyFilesystem => "read-only file system".into(),
        K::PermissionDenied => "permission denied".into(),
        K::QuotaExceeded => "disk quota exceeded".into(),
        K::FileTooLarge => "file too large".into(),
        K::NotFound => "no such file or folder".into(),
        _ => {
            let s = e.to_string();
            // "Foo bar (os error 5)" -> "foo bar"
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

/// The write error for `path`.
pub(crate) fn write_error(path: &Path, e: &std::io::Error) -> Error {
    Error::Write {
        path: path.into(),
        reason: describe_io(e),
    }
}

/// The write error for a Parquet failure while writing `path`: the
/// operating system's reason where Parquet wraps one.
pub(crate) fn parquet_write_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    if let parquet::errors::ParquetError::External(inner) = &e {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return write_error(path, io);
        }
    }
    Error::Write {
        path: path.into(),
        reason: e.to_string(),
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and its parents, as a write.
///
/// # Errors
/// [`Error::Write`] naming the folder.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, &e))
}

fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.")
}

/// A new, uniquely named temporary file in `path`'s folder (created if
/// needed), removed when the returned [`TempPath`] is dropped.
///
/// # Errors
/// [`Error::Write`] when the folder or file cannot be created.
pub fn temp_beside(path: &Path) -> Result<(File, TempPath)> {
    let dir = parent_of(path);
    create_dir(dir)?;
    // 0o666 less the umask, as File::create gives (tempfile's own default
    // is 0o600, which would hide outputs from the group that shares them).
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| write_error(&dir.join(temp_prefix(path) + "tmp"), &e))?;
    Ok(tmp.into_parts())
}

/// Fsyncs `file` (the contents of `tmp`), renames `tmp` to `path` and
/// fsyncs the folder.
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn persist(file: &File, tmp: TempPath, path: &Path) -> Result<()> {
    file.sync_all().map_err(|e| write_error(path, &e))?;
    tmp.persist(path).map_err(|e| write_error(path, &e.error))?;
    sync_dir(parent_of(path))
}

/// Fsyncs a folder, so that renames and removals in it survive a power cut.
///
/// # Errors
/// [`Error::Write`] naming the folder.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| write_error(dir, &e))
}

/// Writes `bytes` to `path` durably: unique temporary file, fsync, rename,
/// fsync of the folder (created if needed).
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (mut file, tmp) = temp_beside(path)?;
    file.write_all(bytes).map_err(|e| write_error(path, &e))?;
    persist(&file, tmp, path)
}

/// Removes temporary files that a killed writer of `path` left (only call
/// while holding `path`'s lock: a live writer's file looks the same).
pub fn remove_stale_temps(path: &Path) {
    let prefix = temp_prefix(path);
    let Ok(rd) = std::fs::read_dir(parent_of(path)) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o044,
            0o666 & 0o044 & !umask(),
            "readable as File::create makes it"
        );
    }

    /// The process umask (read from a file File::create makes).
    fn umask() -> u32 {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("probe");
        std::fs::File::create(&f).unwrap();
        !std::fs::metadata(&f).unwrap().permissions().mode() & 0o666
    }

    #[test]
    fn stale_temps_of_one_file_only_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.parquet");
        let (_f, t) = temp_beside(&p).unwrap();
        let kept = t.keep().unwrap();
        std::fs::write(dir.path().join(".validation.parquet.x.tmp"), b"").unwrap();
        remove_stale_temps(&p);
        assert!(!kept.exists());
        assert!(dir.path().join(".validation.parquet.x.tmp").exists());
    }

    #[test]
    fn io_reasons_are_plain() {
        let full = std::io::Error::from_raw_os_error(28);
        assert_eq!(describe_io(&full), "no space left on device");
        let e = write_error(Path::new("f/x.parquet"), &full);
        assert_eq!(
            e.to_string(),
            "writing f/x.parquet: no space left on device"
        );
        let odd = std::io::Error::other("Something Odd");
        assert_eq!(describe_io(&odd), "something Odd");
    }
}
