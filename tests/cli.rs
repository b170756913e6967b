//! The front end itself: help, unknown commands, exit codes.
use crate::util::xfer;
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
