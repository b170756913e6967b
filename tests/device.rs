//! Devices end to end. On a CPU build of ONNX Runtime `--device auto` runs
//! on CPU without a word about CUDA, and `--device cuda` says why not. On a
//! GPU build without the NVIDIA driver, every CUDA library loads from the
//! build's `nvidia/` folder with no `LD_LIBRARY_PATH`, and both devices name
//! the missing driver: checked with a fake GPU layout (the CPU library in a
//! folder with a provider file and CUDA libraries built with `cc`), and with
//! the real wheels of `make setup ORT=gpu` where they are present
//! (`.ort/gpu-*`, or `$XFER_GPU_ORT`).
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::extract::{dataset, SIZE};
use crate::util::{ort_lib, repo, skipped, tiny_model, xfer};
use xfer_extract::runtime::CUDA_LIBRARIES;

const MISSING_DRIVER: &str = "the NVIDIA driver (libcuda.so.1) is missing";

/// `xfer extract --device DEVICE` on two tiny classes with ONNX Runtime
/// `lib` and no `LD_LIBRARY_PATH`: (status, stderr).
fn extract(tmp: &Path, lib: &Path, device: &str) -> (Option<i32>, String) {
    let data = tmp.join("data");
    if !data.exists() {
        dataset(&data, &["train"], &["a", "b"], 2);
    }
    let o = xfer(tmp)
        .env("ORT_DYLIB_PATH", lib)
        .env_remove("LD_LIBRARY_PATH")
        .args(["extract", "--size", SIZE, "--device", device, "--data"])
        .arg(&data)
        .arg("--model")
        .arg(tiny_model(8, 0))
        .arg("--out")
        .arg(tmp.join(format!("out-{device}")))
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Whether this machine has the NVIDIA driver (then CUDA may really run).
fn driver_installed() -> bool {
    Command::new("/sbin/ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so.1 "))
}

#[test]
fn a_cpu_build_runs_quietly_and_cuda_says_why_not() {
    let lib = ort_lib();
    if lib
        .with_file_name("libonnxruntime_providers_cuda.so")
        .exists()
    {
        skipped(
            "device::a_cpu_build_runs_quietly_and_cuda_says_why_not",
            &format!("{} is a GPU build", lib.display()),
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (code, err) = extract(tmp.path(), &lib, "auto");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("provider CPU"), "{err}");
    assert!(
        !err.contains("CUDA"),
        "a CPU build says nothing of CUDA under --device auto: {err}"
    );
    let (code, err) = extract(tmp.path(), &lib, "cuda");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--device cuda")
            && err.contains("CPU build")
            && err.contains("make setup ORT=gpu"),
        "{err}"
    );
}

/// Without a driver: `--device cuda` stops with one line naming it,
/// `--device auto` runs on CPU and says the same.
fn stops_at_the_missing_driver(lib: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let (code, err) = extract(tmp.path(), lib, "cuda");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(MISSING_DRIVER) && err.contains("every CUDA library it needs loaded from"),
        "{err}"
    );
    let (code, err) = extract(tmp.path(), lib, "auto");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("running on CPU") && err.contains(MISSING_DRIVER),
        "{err}"
    );
    assert!(err.contains("provider CPU"), "{err}");
}

#[test]
fn a_fake_gpu_layout_stops_at_the_missing_driver() {
    if driver_installed() {
        skipped(
            "device::a_fake_gpu_layout_stops_at_the_missing_driver",
            "an NVIDIA driver is installed; the fake layout would go on to CUDA",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gpu-9.99.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        ort_lib().canonicalize().unwrap(),
        dir.join("libonnxruntime.so"),
    )
    .unwrap();
    std::fs::write(dir.join("libonnxruntime_providers_cuda.so"), b"").unwrap();
    let src = tmp.path().join("fake.c");
    std::fs::write(&src, "int xfer_fake_cuda(void) { return 1; }\n").unwrap();
    for rel in CUDA_LIBRARIES {
        let path = dir.join("nvidia").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let soname = path.file_name().unwrap().to_str().unwrap();
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", &format!("-Wl,-soname,{soname}"), "-o"])
            .arg(&path)
            .arg(&src)
            .output()
            .expect("this test builds fake CUDA libraries with `cc`");
        assert!(out.status.success(), "{out:?}");
    }
    stops_at_the_missing_driver(&dir.join("libonnxruntime.so"));
}

#[test]
fn the_real_gpu_wheels_stop_at_the_missing_driver() {
    let lib: Option<PathBuf> = std::env::var_os("XFER_GPU_ORT")
        .map(Into::into)
        .or_else(|| {
            let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join(".ort"))
                .ok()?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("gpu-"))
                .map(|e| e.path().join("libonnxruntime.so"))
                .filter(|p| p.exists())
                .collect();
            found.sort();
            found.pop()
        });
    let Some(lib) = lib else {
        skipped(
            "device::the_real_gpu_wheels_stop_at_the_missing_driver",
            "no .ort/gpu-*/libonnxruntime.so (`make ort ORT=gpu`, over 1 GB)",
        );
        return;
    };
    if driver_installed() {
        skipped(
            "device::the_real_gpu_wheels_stop_at_the_missing_driver",
            "an NVIDIA driver is installed (make check-gpu-libs runs CUDA then)",
        );
        return;
    }
    stops_at_the_missing_driver(&lib);
}
