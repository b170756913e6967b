//! Making ONNX Runtime's CUDA provider loadable with no `LD_LIBRARY_PATH`.
//!
//! `make setup ORT=gpu` puts the GPU build of ONNX Runtime and the CUDA 13
//! runtime wheels its `cuda` and `cudnn` extras name (cuBLAS, cuRAND, cuFFT,
//! NVRTC, cudart, cuDNN) under `.ort/gpu-<version>/`, in the layout pip
//! gives them in site-packages (`nvidia/cu13/lib`, `nvidia/cudnn/lib`). The
//! provider library (`libonnxruntime_providers_cuda.so`) names them by
//! soname only, so the dynamic loader would search the system and fail on
//! the first (`libcublasLt.so.13: cannot open shared object file`). As
//! Python's `onnxruntime.preload_dlls()` does, [`prepare`] loads each one
//! first, by absolute path and in dependency order; when ONNX Runtime then
//! opens the provider, the loader finds them already loaded. The handles
//! live as long as the process.
//!
//! The one library no wheel provides is the NVIDIA driver's `libcuda.so.1`:
//! it comes with the GPU. [`prepare`] looks for it by name, and on a machine
//! without a GPU says exactly that, in one line: after every CUDA library
//! for `--device cuda` (so that the message also proves the rest in place),
//! before them for `--device auto` (so that a GPU build on a GPU-less
//! machine costs one failed `dlopen`, not a second of mapping CUDA). A CPU
//! build of ONNX Runtime is told apart from a broken CUDA one, so that
//! `--device auto` stays quiet on a CPU-only install
//! ([`Unavailable::CpuBuild`]).
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::ep::ExecutionProvider;

/// The CUDA provider's library, beside `libonnxruntime.so` in a GPU build.
pub(crate) const PROVIDER: &str = "libonnxruntime_providers_cuda.so";

/// The NVIDIA driver's library, installed with the GPU's driver.
pub(crate) const DRIVER: &str = "libcuda.so.1";

/// What the CUDA 13 provider of onnxruntime-gpu needs, relative to the
/// `nvidia` folder, in the order `onnxruntime.preload_dlls()` loads them on
/// Linux (cuBLASLt before cuBLAS, which needs it). cuDNN's own parts
/// (`libcudnn_ops.so.9`, ...) are opened later by `libcudnn.so.9` from its
/// folder. The sonames follow the pins in `scripts/ort-pins.txt`.
pub const LIBRARIES: [&str; 7] = [
    "cu13/lib/libcublasLt.so.13",
    "cu13/lib/libcublas.so.13",
    "cu13/lib/libnvrtc.so.13",
    "cu13/lib/libcurand.so.10",
    "cu13/lib/libcufft.so.12",
    "cu13/lib/libcudart.so.13",
    "cudnn/lib/libcudnn.so.9",
];

/// Why the CUDA provider cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// ONNX Runtime was built for CPU only: nothing to try, nothing to say
    /// unless CUDA was asked for.
    CpuBuild(String),
    /// A CUDA build, but a library it needs is missing or does not load.
    Failed(String),
}

impl Unavailable {
    /// The one-line reason.
    pub(crate) fn into_reason(self) -> String {
        match self {
            Unavailable::CpuBuild(s) | Unavailable::Failed(s) => s,
        }
    }
}

/// How much to try before the NVIDIA driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Every CUDA library, then the driver: `--device cuda`, where the user
    /// wants CUDA and the whole diagnosis (a GPU-less machine then proves
    /// that everything but the driver is in place).
    LibrariesFirst,
    /// The driver first (one cheap `dlopen`), the libraries only when it is
    /// there: `--device auto`, which must not spend a second and 300 MB
    /// mapping CUDA on a machine that cannot run it.
    DriverFirst,
}

/// Loads what the CUDA provider of the ONNX Runtime at `ort_lib` needs,
/// once per process (later calls return the first answer).
///
/// # Errors
/// [`Unavailable::CpuBuild`] when `ort_lib` is a CPU build;
/// [`Unavailable::Failed`] naming the library that is missing or failed to
/// load (the NVIDIA driver on a machine without a GPU).
pub(crate) fn prepare(ort_lib: &Path, order: Order) -> Result<(), Unavailable> {
    static DONE: OnceLock<Result<(), Unavailable>> = OnceLock::new();
    DONE.get_or_init(|| {
        let cuda_build = || ort::ep::CUDA::is_available().unwrap_or(false);
        prepare_with(ort_lib, DRIVER, order, cuda_build)
    })
    .clone()
}

/// [`prepare`] without the cache, the driver's name and the build's CUDA
/// support given (tests use fake libraries).
fn prepare_with(
    ort_lib: &Path,
    driver: &str,
    order: Order,
    cuda_build: impl FnOnce() -> bool,
) -> Result<(), Unavailable> {
    let dir = ort_lib.parent().unwrap_or(Path::new("."));
    let provider = dir.join(PROVIDER);
    if !provider.is_file() {
        return Err(if cuda_build() {
            Unavailable::Failed(format!(
                "{} is missing: run `make setup ORT=gpu` again",
                provider.display()
            ))
        } else {
            Unavailable::CpuBuild(format!(
                "{} is ONNX Runtime's CPU build; `make setup ORT=gpu` fetches the CUDA build \
                 and the CUDA libraries it needs",
                ort_lib.display()
            ))
        });
    }
    // Without an `nvidia` folder the CUDA libraries must come from the
    // system (a CUDA toolkit on the loader's path): nothing to preload.
    let nvidia = nvidia_dir(dir);
    let no_driver = |e: String, loaded: &str| {
        // dlerror's text starts with the name already given in brackets.
        let e = e.strip_prefix(&format!("{driver}: ")).unwrap_or(&e);
        Unavailable::Failed(format!(
            "the NVIDIA driver ({driver}) is missing: {e}; CUDA needs an NVIDIA GPU and its \
             driver{loaded}"
        ))
    };
    if order == Order::DriverFirst {
        load_global(driver.as_ref()).map_err(|e| no_driver(e, ""))?;
    }
    if let Some(nvidia) = &nvidia {
        for rel in LIBRARIES {
            let path = nvidia.join(rel);
            if !path.is_file() {
                return Err(Unavailable::Failed(format!(
                    "{} is missing: run `make setup ORT=gpu` again",
                    path.display()
                )));
            }
            load_global(path.as_os_str())
                .map_err(|e| Unavailable::Failed(format!("cannot load {}: {e}", path.display())))?;
        }
    }
    if order == Order::LibrariesFirst {
        load_global(driver.as_ref()).map_err(|e| {
            let loaded = match &nvidia {
                Some(n) => format!(" (every CUDA library it needs loaded from {})", n.display()),
                None => " (no nvidia folder: no CUDA libraries were preloaded)".into(),
            };
            no_driver(e, &loaded)
        })?;
    }
    Ok(())
}

/// Where the CUDA wheels' libraries are: `.ort/gpu-*/nvidia` as `make
/// setup ORT=gpu` lays them out, or `site-packages/nvidia` beside a pip
/// installed `onnxruntime/capi/`.
fn nvidia_dir(ort_dir: &Path) -> Option<PathBuf> {
    let mut candidates = vec![ort_dir.join("nvidia")];
    if let Some(site) = ort_dir.parent().and_then(Path::parent) {
        candidates.push(site.join("nvidia"));
    }
    candidates.into_iter().find(|d| d.is_dir())
}

/// The libraries loaded here, kept (never unloaded) for the process.
static LOADED: Mutex<Vec<libloading::os::unix::Library>> = Mutex::new(Vec::new());

/// `dlopen(name, RTLD_NOW | RTLD_GLOBAL)`: by absolute path, or by name
/// through the loader's search for the driver. `RTLD_NOW` reports a missing
/// symbol here rather than at the first call into the library.
#[allow(unsafe_code)]
fn load_global(name: &std::ffi::OsStr) -> Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: opening a library runs its initialisers. The only libraries
    // opened here are the CUDA runtime's (NVIDIA's wheels, from the folder
    // `make setup ORT=gpu` fills) and the NVIDIA driver, whose initialisers
    // ONNX Runtime would run anyway when it opens its CUDA provider; they
    // take no arguments from us. The handle is stored in `LOADED` for the
    // rest of the process, so no library is unloaded while code or data of
    // it may be in use (its termination routines run at exit, as for any
    // linked library).
    let lib = unsafe { Library::open(Some(name), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| {
        // libloading says "dlopen failed"; dlerror's text is its source.
        std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
    })?;
    LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(lib);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A shared library with soname `soname` at `path`, linked against
    /// `needs` (paths of other libraries), built with the system's `cc`.
    fn fake_lib(path: &Path, soname: &str, needs: &[&Path]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let src = path.with_extension("c");
        let symbol: String = soname
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        std::fs::write(
            &src,
            format!("int xfer_fake_{symbol}(void) {{ return 1; }}\n"),
        )
        .unwrap();
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(path)
            .arg(format!("-Wl,-soname,{soname}"))
            .arg(&src)
            .arg("-Wl,--no-as-needed")
            .args(needs)
            .output()
            .expect("the tests build fake CUDA libraries with `cc`");
        assert!(
            out.status.success(),
            "cc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `.ort/gpu-*` with an ONNX Runtime placeholder, a provider and every
    /// preloaded library built fake; returns the placeholder's path.
    fn fake_gpu_dir(root: &Path) -> PathBuf {
        let dir = root.join("gpu-9.99.0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libonnxruntime.so"), b"").unwrap();
        std::fs::write(dir.join(PROVIDER), b"").unwrap();
        for rel in LIBRARIES {
            let path = dir.join("nvidia").join(rel);
            let soname = path.file_name().unwrap().to_string_lossy().into_owned();
            fake_lib(&path, &soname, &[]);
        }
        dir.join("libonnxruntime.so")
    }

    #[test]
    fn a_cpu_build_is_told_apart_and_quiet() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("cpu-1.32.0/libonnxruntime.so");
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        std::fs::write(&lib, b"").unwrap();
        let r = prepare_with(
            &lib,
            "libxfer-no-driver.so.1",
            Order::LibrariesFirst,
            || false,
        );
        assert!(
            matches!(&r, Err(Unavailable::CpuBuild(m)) if m.contains("CPU build") && m.contains("make setup ORT=gpu")),
            "{r:?}"
        );
        // A GPU build whose provider file was removed is not quiet.
        let r = prepare_with(
            &lib,
            "libxfer-no-driver.so.1",
            Order::LibrariesFirst,
            || true,
        );
        assert!(
            matches!(&r, Err(Unavailable::Failed(m)) if m.contains(PROVIDER)),
            "{r:?}"
        );
    }

    #[test]
    fn every_cuda_library_loads_and_the_missing_driver_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = fake_gpu_dir(tmp.path());
        let m = failure(&lib, Order::LibrariesFirst);
        assert!(
            m.starts_with("the NVIDIA driver (libxfer-no-such-driver.so.1) is missing")
                && m.contains("is missing: cannot open shared object file")
                && m.contains("every CUDA library it needs loaded from")
                && !m.contains('\n'),
            "{m}"
        );
        // With a driver present (a fake one, by path, under another soname
        // so that nothing else in this process takes it for the real one),
        // all is ready.
        let driver = tmp.path().join("driver/libxfer-fake-cuda.so.1");
        fake_lib(&driver, "libxfer-fake-cuda.so.1", &[]);
        assert_eq!(
            prepare_with(
                &lib,
                driver.to_str().unwrap(),
                Order::LibrariesFirst,
                || true
            ),
            Ok(())
        );
    }

    /// The reason [`prepare_with`] gives on this machine's missing driver
    /// (a name no machine has) for a CUDA build at `lib`.
    fn failure(lib: &Path, order: Order) -> String {
        match prepare_with(lib, "libxfer-no-such-driver.so.1", order, || true) {
            Err(Unavailable::Failed(m)) => m,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_or_unloadable_cuda_library_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = fake_gpu_dir(tmp.path());
        let nvidia = lib.parent().unwrap().join("nvidia");
        // cuDNN linked against a library that is then taken away.
        let gone = tmp.path().join("gone/libxfer-gone.so.7");
        fake_lib(&gone, "libxfer-gone.so.7", &[]);
        let cudnn = nvidia.join("cudnn/lib/libcudnn.so.9");
        fake_lib(&cudnn, "libcudnn.so.9", &[&gone]);
        std::fs::remove_file(&gone).unwrap();
        // `--device auto` asks for the driver first and stops there, the
        // broken library untouched.
        let m = failure(&lib, Order::DriverFirst);
        assert!(
            m.starts_with("the NVIDIA driver") && !m.contains("loaded from"),
            "{m}"
        );
        let m = failure(&lib, Order::LibrariesFirst);
        assert!(
            m.starts_with("cannot load ")
                && m.contains("libcudnn.so.9")
                && m.contains("libxfer-gone.so.7"),
            "{m}"
        );
        std::fs::remove_file(nvidia.join("cu13/lib/libcublas.so.13")).unwrap();
        let m = failure(&lib, Order::LibrariesFirst);
        assert!(
            m.contains("libcublas.so.13 is missing") && m.contains("make setup ORT=gpu"),
            "{m}"
        );
    }

    #[test]
    fn the_wheels_layout_is_found_beside_the_library_or_in_site_packages() {
        let tmp = tempfile::tempdir().unwrap();
        let ort = tmp.path().join(".ort/gpu-1.31.1");
        std::fs::create_dir_all(ort.join("nvidia")).unwrap();
        assert_eq!(nvidia_dir(&ort), Some(ort.join("nvidia")));
        let capi = tmp.path().join("site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        assert_eq!(nvidia_dir(&capi), None);
        std::fs::create_dir_all(tmp.path().join("site-packages/nvidia")).unwrap();
        assert_eq!(
            nvidia_dir(&capi),
            Some(tmp.path().join("site-packages/nvidia"))
        );
    }
}
