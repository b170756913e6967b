//! The front end itself: help, unknown commands, exit codes.
use crate::util::xfer;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

#[test]
fn help_lists_the_four_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let out = xfer(tmp.path()).arg("--help").assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for cmd in ["extract", "train", "predict", "eval"] {
        assert!(text.contains(cmd), "{cmd} missing from --help:\n{text}");
    }
}

#[test]
fn unknown_command_fails_with_usage() {
    let tmp = tempfile::tempdir().unwrap();
    xfer(tmp.path())
        .arg("frobnicate")
        .assert()
        .code(2)
        .stderr(contains("Usage"));
}

/// Issue 13: an `XFER_SIMD` that names no kernel level is refused by every
/// command that runs the kernels, before any file is read.
#[test]
fn unknown_simd_level_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().to_str().unwrap();
    let commands: [&[&str]; 3] = [
        &["train", "--features", t, "--out", "run"],
        &["eval", "--features", t, "--head", "h.safetensors"],
        &[
            "predict",
            "--model",
            "m.onnx",
            "--head",
            "h.safetensors",
            "a.jpg",
        ],
    ];
    for args in commands {
        xfer(tmp.path())
            .args(args)
            .env("XFER_SIMD", "bogus")
            .assert()
            .code(2)
            .stderr(
                contains("XFER_SIMD=\"bogus\"")
                    .and(contains("avx512, avx2 or portable"))
                    .and(contains("h.safetensors").not()),
            );
    }
}
