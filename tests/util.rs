//! Shared helpers for the end-to-end tests: the `xfer` command with a private
//! cache folder, generated images and the tiny ONNX base.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Root of the repository (where Cargo.toml of the `xfer` package is).
pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with the packages of scripts/requirements-dev.txt: `$XFER_PYTHON`
/// (set by `make test`), else the repo's `.venv`.
pub(crate) fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("XFER_PYTHON") {
        return p.into();
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python for the tests: run `make test` (it makes .venv) or set XFER_PYTHON"
    );
    venv
}

/// The ONNX Runtime library: `$ORT_DYLIB_PATH`, else the Makefile's `.ort/`.
pub(crate) fn ort_lib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return p.into();
    }
    let found = std::fs::read_dir(repo().join(".ort"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("libonnxruntime.so"))
        .find(|p| p.exists());
    found.expect(
        "no ONNX Runtime library: run `make test` (it fetches the wheel) or set ORT_DYLIB_PATH",
    )
}

/// A folder for shared, generated test inputs (the tiny model).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = repo().join("target/test-scratch");
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Runs a Python script of the repo and panics with its output on failure.
pub(crate) fn run_python(args: &[&str]) -> String {
    let out = Command::new(python())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tiny ONNX base (dim `dim`, seed `seed`), built once per test process.
pub(crate) fn tiny_model(dim: usize, seed: u64) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = scratch().join(format!("tiny-d{dim}-s{seed}-{}.onnx", std::process::id()));
    if !path.exists() {
        run_python(&[
            "scripts/export_model.py",
            "tiny",
            "--dim",
            &dim.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
            path.to_str().unwrap(),
        ]);
    }
    path
}

/// The `xfer` binary under test, with ONNX Runtime's cache kept out of $HOME.
pub(crate) fn xfer(cache: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_xfer"));
    cmd.env("XDG_CACHE_HOME", cache)
        .env("ORT_DYLIB_PATH", ort_lib());
    cmd
}

/// Records that `test` did not check what it is for, and why: a line on
/// stderr (shown with `--nocapture` or when the test fails) and one in the
/// file `$XFER_SKIP_LOG` names, which `make test` counts and prints after
/// the tests, since cargo hides what passing tests print.
pub(crate) fn skipped(test: &str, reason: &str) {
    use std::io::Write as _;
    eprintln!("SKIPPED: {test}: {reason}");
    if let Some(log) = std::env::var_os("XFER_SKIP_LOG") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("XFER_SKIP_LOG {}: {e}", Path::new(&log).display()));
        writeln!(f, "{test}: {reason}").unwrap();
    }
}

/// The real clothing dataset, or `None` after recording `test` as skipped.
pub(crate) fn clothing(test: &str) -> Option<PathBuf> {
    let p = repo().join("../shared/clothing-dataset-small");
    if p.join("train").is_dir() {
        Some(p)
    } else {
        skipped(
            test,
            "../shared/clothing-dataset-small is absent; real clothing images not checked",
        );
        None
    }
}
