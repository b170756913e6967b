//! A file's identity, as git's index keeps it, to skip re-reading files
//! that have not changed.
//!
//! Device, inode, size, and the modification and change times to the
//! nanosecond: any write to a file moves its change time, which `touch`
//! cannot set back, and a file replaced by a rename has another inode. A
//! hash remembered with an identity is trusted while the identity is the
//! same, but only once the file has *settled*: a file modified within the
//! last seconds before the hash was taken could be modified again within
//! the same clock tick without its times moving ("racy git"), so such
//! entries are not remembered.
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

/// The identity of one file.
pub(crate) type FileId = [i64; 7];

/// How long after its last change a file's identity is trusted.
const SETTLE: Duration = Duration::from_secs(2);

pub(crate) fn of(meta: &std::fs::Metadata) -> FileId {
    [
        meta.dev() as i64,
        meta.ino() as i64,
        meta.len() as i64,
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    ]
}

/// Whether a hash taken now of a file with identity `id` may be
/// remembered (its last change is at least [`SETTLE`] old).
pub(crate) fn settled(id: &FileId, now: SystemTime) -> bool {
    let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
        return false;
    };
    let latest = id[3].max(id[5]);
    latest >= 0 && (latest as u64) + SETTLE.as_secs() < now.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_changes_the_identity_and_fresh_files_are_not_settled() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, b"one").unwrap();
        let first = of(&std::fs::metadata(&f).unwrap());
        assert_eq!(first, of(&std::fs::metadata(&f).unwrap()));
        std::fs::write(&f, b"two").unwrap();
        assert_ne!(first, of(&std::fs::metadata(&f).unwrap()), "ctime moves");
        assert!(!settled(&first, SystemTime::now()));
        assert!(settled(&first, SystemTime::now() + Duration::from_secs(5)));
    }
}
