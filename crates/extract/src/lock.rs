//! One writer per output file.
//!
//! Two runs writing the same split (a scheduler retrying a shard while the
//! first copy still runs, or a user starting `make features` twice) would
//! otherwise race on the parts folder and the final rename. Each output
//! file therefore has an advisory lock on a hidden file beside it,
//! `.<name>.lock`, taken with the operating system's `flock` (std's
//! [`File::lock`]): the lock belongs to the open file, so it dies with its
//! process, and `kill -9` never leaves a folder locked. The lock file is
//! never removed (removing it would let two runs lock two different files
//! of one name); it holds the owner's pid only so that a second run can say
//! whom it waits for. Shards and splits have their own files, so the shards
//! of one folder still run side by side.
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Held while a run writes one output file; released on drop (or when the
/// process dies).
#[derive(Debug)]
pub(crate) struct OutputLock {
    _file: File,
}

/// The lock file of output `path`.
fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.lock"))
}

/// Takes the lock of output `path`, waiting for another writer if there is
/// one (and saying so unless `quiet`).
///
/// # Errors
/// [`Error::Features`] with a write error when the lock file cannot be
/// created; [`Error::Io`] when locking itself fails.
pub(crate) fn acquire(path: &Path, quiet: bool) -> Result<OutputLock> {
    let lock = lock_path(path);
    if let Some(dir) = lock.parent() {
        xfer_features::create_dir(dir)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(|e| {
            Error::Features(xfer_features::Error::Write {
                path: lock.clone(),
                reason: xfer_features::describe_io(&e),
            })
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            if !quiet {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let who = match holder.trim() {
                    "" => "another xfer".to_string(),
                    pid => format!("pid {pid}"),
                };
                eprintln!("xfer extract: waiting for {who} writing {}", path.display());
            }
            file.lock().map_err(|e| Error::io(&lock, e))?;
        }
        Err(TryLockError::Error(e)) => return Err(Error::io(&lock, e)),
    }
    // Who holds it, for the next one to wait (not needed for correctness).
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(OutputLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub/train.parquet");
        let first = acquire(&out, true).unwrap();
        assert!(dir.path().join("sub/.train.parquet.lock").is_file());
        let (tx, rx) = std::sync::mpsc::channel();
        let out2 = out.clone();
        let waiter = std::thread::spawn(move || {
            let l = acquire(&out2, true).unwrap();
            tx.send(()).unwrap();
            l
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the second writer must wait"
        );
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second writer gets the lock once the first is gone");
        drop(waiter.join().unwrap());
        // Another file of the same folder is not serialised.
        let _a = acquire(&dir.path().join("sub/train-0-of-2.parquet"), true).unwrap();
        let _b = acquire(&dir.path().join("sub/train-1-of-2.parquet"), true).unwrap();
    }
}
