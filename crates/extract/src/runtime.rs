//! Finding and loading the ONNX Runtime library, once per process.
//!
//! xfer links ONNX Runtime at run time (`ort`'s `load-dynamic`), so nothing
//! is downloaded at build time and one binary works with the CPU or the GPU
//! build of the library. `ort` would panic on a missing library if left to
//! its environment-variable path; [`init`] instead loads it explicitly with
//! `ort::init_from` and turns every failure into one line that says what to
//! do. The library is looked for in this order:
//!
//! 1. `$ORT_DYLIB_PATH` (the Makefile exports it);
//! 2. `.ort/*/libonnxruntime.so` in the current folder (the repository root);
//! 3. `.ort/*/libonnxruntime.so` two levels above the executable (where
//!    `target/{debug,release}/xfer` finds the repository's copy).
//!
//! Within one `.ort` folder a GPU build (`gpu-*`) is preferred to a CPU one:
//! it runs on CPU too, and `--device auto` can then use CUDA. The CUDA
//! libraries a GPU build needs are loaded later, only when CUDA is tried
//! (`cuda.rs`).
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::{Error, Result};

/// The CUDA libraries loaded from `nvidia/` beside a GPU build before its
/// CUDA provider, in load order (see `cuda.rs`).
pub use crate::cuda::LIBRARIES as CUDA_LIBRARIES;

/// The file name of the library on this platform.
const LIB_NAME: &str = "libonnxruntime.so";

/// What to tell a user whose library is missing or unusable.
const FIX: &str = "run `make setup` (it fetches the pinned onnxruntime wheel into .ort/) \
                   or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.20 or newer";

/// The library `init` would load, without loading it.
///
/// # Errors
/// [`Error::Runtime`] when `$ORT_DYLIB_PATH` names a missing file or no
/// candidate exists.
pub fn library_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(Error::Runtime(format!(
                "ORT_DYLIB_PATH={} is not a file: {FIX}",
                p.display()
            )));
        }
        return Ok(std::path::absolute(&p).unwrap_or(p));
    }
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd.join(".ort"));
    }
    if let Some(repo) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent()?.parent().map(Path::to_path_buf))
    {
        roots.push(repo.join(".ort"));
    }
    for root in &roots {
        if let Some(found) = find_in(root) {
            return Ok(found);
        }
    }
    let looked: Vec<String> = roots
        .iter()
        .map(|r| format!("{}/*/", r.display()))
        .collect();
    Err(Error::Runtime(format!(
        "{LIB_NAME} not found (ORT_DYLIB_PATH is not set; looked in {}): {FIX}",
        looked.join(" and ")
    )))
}

/// `root/*/libonnxruntime.so`, GPU builds first, then newest name first.
fn find_in(root: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|d| d.join(LIB_NAME).is_file())
        .collect();
    dirs.sort_by_key(|d| {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (!name.starts_with("gpu"), std::cmp::Reverse(name))
    });
    dirs.first().map(|d| d.join(LIB_NAME))
}

type Loaded = std::result::Result<(Environment, PathBuf), String>;
static ENV: OnceLock<Loaded> = OnceLock::new();

fn load() -> Result<&'static (Environment, PathBuf)> {
    ENV.get_or_init(|| {
        let path = library_path().map_err(|e| match e {
            Error::Runtime(m) => m,
            other => other.to_string(),
        })?;
        let builder = ort::init_from(&path).map_err(|e| describe(&path, &e))?;
        let env = builder
            .with_name("xfer")
            .build()
            .map_err(|e| format!("{}: cannot start: {e}", path.display()))?;
        Ok((env, path))
    })
    .as_ref()
    .map_err(|m| Error::Runtime(m.clone()))
}

/// Loads ONNX Runtime (once) and returns the process's environment.
///
/// # Errors
/// [`Error::Runtime`], one line naming the library and the fix, when the
/// library is missing, not an ONNX Runtime, or older than 1.20.
pub fn init() -> Result<Environment> {
    load().map(|(env, _)| env.clone())
}

/// The library [`init`] loaded (loading it if need be).
///
/// # Errors
/// Those of [`init`].
pub fn loaded_path() -> Result<PathBuf> {
    load().map(|(_, path)| path.clone())
}

fn describe(path: &Path, e: &ort::LoadDynamicError) -> String {
    use ort::LoadDynamicError as L;
    match e {
        L::BadVersion { version_str, .. } => format!(
            "{} is version {version_str}, too old for xfer: {FIX}",
            path.display()
        ),
        L::Dlopen { error, .. } => format!("cannot load {}: {error}: {FIX}", path.display()),
        other => format!("{}: {other}: {FIX}", path.display()),
    }
}

/// The version string of the loaded library (e.g. `1.32.0`).
///
/// # Errors
/// Those of [`init`].
pub fn version() -> Result<String> {
    init()?;
    Ok(ort::info()
        .split(',')
        .find_map(|p| p.trim().strip_prefix("git-branch=rel-"))
        .unwrap_or("unknown")
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_build_is_preferred() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["cpu-1.32.0", "gpu-1.32.0", "empty"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("cpu-1.32.0").join(LIB_NAME), b"").unwrap();
        assert_eq!(
            find_in(dir.path()).unwrap(),
            dir.path().join("cpu-1.32.0").join(LIB_NAME)
        );
        std::fs::write(dir.path().join("gpu-1.32.0").join(LIB_NAME), b"").unwrap();
        assert_eq!(
            find_in(dir.path()).unwrap(),
            dir.path().join("gpu-1.32.0").join(LIB_NAME)
        );
        assert!(find_in(&dir.path().join("nothing")).is_none());
    }
}
