//! What happens around the work of `xfer extract`: a rerun with nothing new
//! builds no ONNX Runtime session, two writers of one output file take
//! turns (shards of one folder do not), and a failed write is said once,
//! for what it is, with the next run resuming.
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::extract::{counts, dataset, extract, extract_ok, SIZE};
use crate::util::{ort_lib, tiny_model, xfer};
use xfer_features::read_split;

fn extract_cmd(cache: &Path, data: &Path, model: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xfer"));
    cmd.env("XDG_CACHE_HOME", cache)
        .env("ORT_DYLIB_PATH", ort_lib())
        .args([
            "extract",
            "--device",
            "cpu",
            "--batch-size",
            "8",
            "--size",
            SIZE,
        ])
        .arg("--data")
        .arg(data)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(extra);
    cmd
}

#[test]
fn unchanged_rerun_builds_no_session() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train", "validation"], &["a", "b"], 4);
    let model = tiny_model(8, 0);
    let out = tmp.path().join("f");
    let first = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!(first.encoded, 16);
    // No ONNX Runtime at all: a rerun that needs no session still works,
    // and says so in its summary.
    let output = xfer(tmp.path())
        .env(
            "ORT_DYLIB_PATH",
            tmp.path().join("no-such-libonnxruntime.so"),
        )
        .args(["extract", "--device", "cpu", "--size", SIZE, "--data"])
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{err}");
    assert_eq!(counts(&err).reused, 16);
    assert!(err.contains("provider none (no session built)"), "{err}");
    // Something new: the session is built, and only for that.
    crate::extract::image(&data.join("train/a/new.png"), 20, 20, 5);
    let (code, err) = extract(tmp.path(), &data, &model, &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((counts(&err).encoded, counts(&err).reused), (1, 16));
    assert!(err.contains("provider CPU"), "{err}");
}

#[test]
fn two_writers_of_one_folder_take_turns_and_both_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train"], &["a", "b"], 60);
    let model = tiny_model(8, 0);
    let out = tmp.path().join("f");
    let spawn = || {
        extract_cmd(tmp.path(), &data, &model, &out, &[])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let errs = [a.stderr, b.stderr].map(|e| String::from_utf8_lossy(&e).into_owned());
    assert!(a.status.success() && b.status.success(), "{errs:#?}");
    let encoded: usize = errs.iter().map(|e| counts(e).encoded).sum();
    assert_eq!(
        encoded, 120,
        "every image encoded once between them: {errs:#?}"
    );
    let t = read_split(&out, "train").unwrap();
    assert_eq!(t.len(), 120);
    let mut paths = t.paths.clone();
    paths.dedup();
    assert_eq!(paths.len(), 120, "no duplicates");
    assert!(!out.join(".parts").exists());
}

/// Holds the lock of `out/<name>.parquet` the way a running writer does.
fn hold(out: &Path, name: &str) -> File {
    std::fs::create_dir_all(out).unwrap();
    let f = File::create(out.join(format!(".{name}.parquet.lock"))).unwrap();
    f.lock().unwrap();
    std::fs::write(out.join(format!(".{name}.parquet.lock")), "4242\n").unwrap();
    f
}

#[test]
fn a_held_shard_waits_and_says_for_whom_while_another_shard_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train"], &["a", "b"], 6);
    let model = tiny_model(8, 0);
    let out = tmp.path().join("f");
    let held = hold(&out, "train-0-of-2");
    let mut waiting = extract_cmd(tmp.path(), &data, &model, &out, &["--shard", "0/2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The other shard of the same folder is not held back.
    let (code, err) = extract(tmp.path(), &data, &model, &out, &["--shard", "1/2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.join("train-1-of-2.parquet").is_file());
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert!(
            waiting.try_wait().unwrap().is_none(),
            "shard 0 must wait for the lock's holder"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    let done = waiting.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{err}");
    assert!(err.contains("waiting for pid 4242 writing"), "{err}");
    assert_eq!(read_split(&out, "train").unwrap().len(), 12);
}

#[test]
fn a_write_failure_is_said_once_and_the_rerun_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train"], &["a", "b"], 100);
    let model = tiny_model(64, 0);
    let out = tmp.path().join("f");
    // A file-size limit makes writes fail part-way, as a full disk does
    // (EFBIG rather than ENOSPC; SIGXFSZ ignored so the write returns the
    // error instead of killing the process). The parts are ~10 KB each; the
    // final file is larger than the limit.
    let cmd = extract_cmd(tmp.path(), &data, &model, &out, &[]);
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let out_run = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 48; exec \"$0\" \"$@\"")
        .arg(program)
        .args(args)
        .env("XDG_CACHE_HOME", tmp.path())
        .env("ORT_DYLIB_PATH", ort_lib())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out_run.stderr);
    assert_eq!(out_run.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line:\n{err}");
    assert!(
        lines[0].starts_with("xfer: error: writing ") && lines[0].ends_with(": file too large"),
        "{err}"
    );
    assert_eq!(lines[0].matches("file too large").count(), 1, "{err}");
    assert!(!out.join("train.parquet").exists());
    // Parts written before the failure are kept and reused.
    let again = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert!(again.reused > 0, "{again:?}");
    assert_eq!(again.encoded + again.reused, 200);
    assert_eq!(read_split(&out, "train").unwrap().len(), 200);
    // No temporary file is left to trip anyone.
    let stray: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn an_uncreatable_folder_is_said_once_in_plain_words() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train"], &["a"], 2);
    let model = tiny_model(8, 0);
    // A folder under a regular file can never be created, root or not
    // (permissions would not stop root).
    std::fs::write(tmp.path().join("file"), b"x").unwrap();
    let out = tmp.path().join("file/f");
    let (code, err) = extract(tmp.path(), &data, &model, &out, &[]);
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("xfer: error: writing "), "{err}");
    assert!(lines[0].ends_with("file/f: not a directory"), "{err}");
}

#[test]
fn remembered_hashes_still_see_every_change() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train"], &["a", "b"], 3);
    // Files changed in the last seconds are never remembered (a change in
    // the same clock tick would not move their times): let them settle.
    std::thread::sleep(Duration::from_millis(3100));
    let model = tiny_model(8, 0);
    let out = tmp.path().join("f");
    assert_eq!(extract_ok(tmp.path(), &data, &model, &out, &[]).encoded, 6);
    let memo = std::fs::read_to_string(out.join(".train.parquet.hashes")).unwrap();
    assert_eq!(memo.matches(".png").count(), 6, "{memo}");
    let before = read_split(&out, "train").unwrap();
    // Same name, same size, other bytes: found by its new identity.
    crate::extract::image(&data.join("train/a/000.png"), 20, 15, 4242);
    let again = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!((again.encoded, again.reused), (1, 5));
    let after = read_split(&out, "train").unwrap();
    assert_ne!(after.row(0), before.row(0));
    assert_eq!(after.row(1), before.row(1));
}
