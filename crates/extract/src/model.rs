//! The frozen base: an ONNX file with xfer's metadata, run on batches.
//!
//! Every base exported by `scripts/export_model.py` carries `xfer.*`
//! metadata (see `scripts/xferexport/metadata.py`): backbone, input and
//! output names, layout, preprocessing mode, default input side, vector
//! dimension, whether the weights are trained. [`BaseModel::open`] reads and
//! checks it against the session's actual inputs and outputs, so a wrong
//! model fails at start with its name and the reason, not on the first
//! batch. Users never pass these facts by hand.
//!
//! Execution provider: [`Device::Cpu`] builds a CPU session;
//! [`Device::Cuda`] first loads the CUDA libraries the provider needs
//! (`cuda.rs`: from `.ort/gpu-*`, then the NVIDIA driver), registers the
//! provider with `error_on_failure()` (ONNX Runtime otherwise falls back to
//! CPU silently) and fails, in one line, if any step does; [`Device::Auto`]
//! tries CUDA the same way and, on failure, builds a CPU session. It records
//! why in [`BaseModel::fallback`] only when there was something to try: on
//! a CPU build of ONNX Runtime, CPU is simply what runs, and the summary
//! line names it.
//!
//! ```no_run
//! use xfer_extract::model::{BaseModel, Device, SessionOptions};
//! use xfer_extract::pixels::{self, PixelSpec, Resize};
//! let mut model = BaseModel::open("m.onnx".as_ref(), &SessionOptions::new(Device::Cpu))?;
//! let spec = PixelSpec::new(150, Resize::Nearest, model.info().preprocess);
//! let x = pixels::load("a.jpg".as_ref(), &spec).map_err(|e| xfer_extract::Error::Flag { flag: "image", reason: e.0 })?;
//! let vectors = model.run(&x, 1, 150)?; // model.info().dim floats
//! # Ok::<(), xfer_extract::Error>(())
//! ```
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use sha2::{Digest, Sha256};

use crate::cuda::{self, Order, Unavailable};
use crate::pixels::Preprocess;
use crate::{onnx_meta, runtime, Error, Result};

/// Where inference runs, as asked on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Device {
    /// CUDA when its provider loads, else CPU (with a note saying why).
    #[default]
    Auto,
    /// CPU only.
    Cpu,
    /// CUDA, or fail.
    Cuda,
}

/// The execution provider actually running the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// ONNX Runtime's CUDA provider.
    Cuda,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "CPU",
            Provider::Cuda => "CUDA",
        })
    }
}

/// How to build the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Requested device.
    pub device: Device,
    /// ONNX Runtime intra-op threads (`None`: one per core).
    pub threads: Option<usize>,
    /// Whether idle ONNX Runtime threads spin between the operators of one
    /// run (fast hand-off, but they take CPU from image decoding running
    /// beside them). They stop spinning when the run returns
    /// (`session.force_spinning_stop`): with the tiny test model, spinning
    /// on after each run took 45% of `xfer extract`'s CPU (perf), time the
    /// decoder needed for the next batch. Set it only where the caller
    /// then decodes between runs, never during one
    /// ([`BaseModel::takes_turns`]); [`SessionOptions::sharing_cores`]
    /// decides both.
    pub spin: bool,
}

impl SessionOptions {
    /// Options for `device` with ONNX Runtime's default threads.
    pub fn new(device: Device) -> Self {
        SessionOptions {
            device,
            threads: None,
            spin: false,
        }
    }

    /// Options for a caller that decodes images on `threads` threads of its
    /// own and runs ONNX Runtime with `threads` intra-op threads, on
    /// `device`. When those threads fill every core ([`fills_cores`]),
    /// decoding beside a run would preempt one of ORT's threads and stall
    /// each parallel operator at its barrier; so there the two take turns
    /// (the caller decodes only between runs, see
    /// [`BaseModel::takes_turns`]) and ORT's idle threads spin within a
    /// run. With a spare core, decoding overlaps inference and nothing
    /// spins.
    pub fn sharing_cores(device: Device, threads: usize) -> Self {
        SessionOptions {
            device,
            threads: Some(threads),
            spin: fills_cores(threads),
        }
    }
}

/// Whether `threads` threads fill every core this process may use.
pub fn fills_cores(threads: usize) -> bool {
    threads >= std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What the model's metadata says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// `xfer.backbone`, e.g. `xception`.
    pub backbone: String,
    /// `xfer.preprocess`.
    pub preprocess: Preprocess,
    /// `xfer.default_size`: the side the model was made for.
    pub default_size: u32,
    /// `xfer.dim`: length of the pooled vector.
    pub dim: usize,
    /// `xfer.pretrained`.
    pub pretrained: bool,
    /// `xfer.weights`: where the weights came from.
    pub weights: String,
    /// Name of the image input (`xfer.input`).
    pub input: String,
    /// Name of the vector output (`xfer.output`).
    pub output: String,
    /// sha256 (hex) of the ONNX file's bytes.
    pub sha256: String,
    /// Fixed input side (height, width) if the graph fixes one.
    pub fixed_side: Option<(i64, i64)>,
    /// `xfer.quant` (how `export_model.py quantize` made an int8 copy, as
    /// JSON); `None` for a float model. Carried into the feature files.
    pub quant: Option<String>,
}

/// An open base model: session, metadata, provider.
pub struct BaseModel {
    session: Session,
    info: ModelInfo,
    path: PathBuf,
    provider: Provider,
    fallback: Option<String>,
    turns: bool,
}

impl fmt::Debug for BaseModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseModel")
            .field("path", &self.path)
            .field("info", &self.info)
            .field("provider", &self.provider)
            .finish()
    }
}

/// sha256 (hex) of a file, streamed.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl BaseModel {
    /// Loads ONNX Runtime if needed, opens `path` on the requested device,
    /// and checks its metadata, input and output.
    ///
    /// # Errors
    /// [`Error::Runtime`] without a usable ONNX Runtime; [`Error::Model`]
    /// for a file that is not an xfer base; [`Error::Cuda`] for
    /// `--device cuda` without a working CUDA provider; [`Error::Ort`] when
    /// ONNX Runtime refuses the graph.
    pub fn open(path: &Path, opts: &SessionOptions) -> Result<Self> {
        BaseModel::open_with(path, ModelInfo::from_file(path)?, opts)
    }

    /// [`BaseModel::open`] with the metadata already read by
    /// [`ModelInfo::from_file`] (the file is not hashed again).
    ///
    /// # Errors
    /// As [`BaseModel::open`].
    pub fn open_with(path: &Path, mut info: ModelInfo, opts: &SessionOptions) -> Result<Self> {
        let env = runtime::init()?;
        let ort_err = |source: ort::Error| Error::Ort {
            path: path.into(),
            source,
        };
        let cpu = || -> Result<Session> {
            builder(&env, opts)
                .map_err(ort_err)?
                .commit_from_file(path)
                .map_err(ort_err)
        };
        let (session, provider, fallback) = match opts.device {
            Device::Cpu => (cpu()?, Provider::Cpu, None),
            Device::Cuda => (
                cuda_session(&env, opts, path).map_err(|u| Error::Cuda(u.into_reason()))?,
                Provider::Cuda,
                None,
            ),
            Device::Auto => match cuda_session(&env, opts, path) {
                Ok(s) => (s, Provider::Cuda, None),
                Err(Unavailable::CpuBuild(_)) => (cpu()?, Provider::Cpu, None),
                Err(Unavailable::Failed(why)) => (cpu()?, Provider::Cpu, Some(why)),
            },
        };
        info.fixed_side = check_graph(&session, path, &info)?;
        Ok(BaseModel {
            session,
            info,
            path: path.into(),
            provider,
            fallback,
            // On a GPU, decoding on the CPU takes nothing from a run.
            turns: opts.spin && provider == Provider::Cpu,
        })
    }

    /// The metadata.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The provider running the session.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Whether the caller must decode only between runs, never during one:
    /// the session was built to spin within a run over every core
    /// ([`SessionOptions::sharing_cores`]) and runs on the CPU.
    pub fn takes_turns(&self) -> bool {
        self.turns
    }

    /// With `--device auto` on CPU although ONNX Runtime is a CUDA build:
    /// why CUDA was not used (e.g. no NVIDIA driver). `None` on a CPU build.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Checks that `side` is an input size the graph accepts.
    ///
    /// # Errors
    /// [`Error::Model`] when the graph fixes another side.
    pub fn check_side(&self, side: u32) -> Result<()> {
        match self.info.fixed_side {
            Some((h, w)) if (h > 0 && h != i64::from(side)) || (w > 0 && w != i64::from(side)) => {
                Err(Error::Model {
                    path: self.path.clone(),
                    reason: format!("the model takes {h}x{w} inputs only, not --size {side}"),
                })
            }
            _ => Ok(()),
        }
    }

    /// Runs `n` preprocessed CHW images of side `side` (`batch` holds
    /// `n * 3 * side * side` floats) and returns `n * dim` floats, one
    /// pooled vector per image, in order.
    ///
    /// # Errors
    /// [`Error::Model`] on a length mismatch or an output of the wrong
    /// shape; [`Error::Ort`] when the run fails.
    pub fn run(&mut self, batch: &[f32], n: usize, side: u32) -> Result<Vec<f32>> {
        let s = side as usize;
        if batch.len() != n * 3 * s * s {
            return Err(Error::Model {
                path: self.path.clone(),
                reason: format!(
                    "{} input floats for {n} images of {side}x{side}",
                    batch.len()
                ),
            });
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let path = &self.path;
        let ort_err = |source: ort::Error| Error::Ort {
            path: path.clone(),
            source,
        };
        let tensor = TensorRef::from_array_view(([n, 3, s, s], batch)).map_err(ort_err)?;
        let outputs = self
            .session
            .run(ort::inputs![self.info.input.as_str() => tensor])
            .map_err(ort_err)?;
        let value = outputs.get(&self.info.output).ok_or_else(|| Error::Model {
            path: path.clone(),
            reason: format!("no output named {:?} in the results", self.info.output),
        })?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(ort_err)?;
        let dim = self.info.dim;
        if shape.len() != 2
            || shape[0] as usize != n
            || shape[1] as usize != dim
            || data.len() != n * dim
        {
            return Err(Error::Model {
                path: path.clone(),
                reason: format!(
                    "output {:?} has shape {:?}, expected [{n}, {dim}]",
                    self.info.output,
                    &shape[..]
                ),
            });
        }
        Ok(data.to_vec())
    }
}

fn builder(
    env: &ort::environment::Environment,
    opts: &SessionOptions,
) -> ort::Result<ort::session::builder::SessionBuilder> {
    let mut b = Session::builder(env)?;
    if let Some(t) = opts.threads {
        b = b.with_intra_threads(t)?;
    }
    b = b.with_inter_threads(1)?;
    b = b.with_config_entry(
        "session.intra_op.allow_spinning",
        if opts.spin { "1" } else { "0" },
    )?;
    if opts.spin {
        // Spin inside a run only: after it, the decoder takes the cores.
        b = b.with_config_entry("session.force_spinning_stop", "1")?;
    }
    Ok(b)
}

/// A session with the CUDA provider registered strictly, or why not: the
/// CUDA libraries are loaded first ([`cuda::prepare`]), so that a missing
/// one, or the missing driver, is named rather than reported as whatever
/// ONNX Runtime's own attempt runs into.
fn cuda_session(
    env: &ort::environment::Environment,
    opts: &SessionOptions,
    path: &Path,
) -> std::result::Result<Session, Unavailable> {
    let lib = runtime::loaded_path().map_err(|e| Unavailable::Failed(e.to_string()))?;
    let order = match opts.device {
        Device::Cuda => Order::LibrariesFirst,
        Device::Auto | Device::Cpu => Order::DriverFirst,
    };
    cuda::prepare(&lib, order)?;
    let failed = |e: &dyn fmt::Display| Unavailable::Failed(first_line(&e.to_string()));
    let cuda = ort::ep::CUDA::default().build().error_on_failure();
    // On the GPU, decoding overlaps inference (the pipeline takes turns on
    // the CPU provider only), so ORT's CPU threads must never spin.
    let quiet = SessionOptions {
        spin: false,
        ..*opts
    };
    let b = builder(env, &quiet).map_err(|e| failed(&e))?;
    let mut b = b.with_execution_providers([cuda]).map_err(|e| failed(&e))?;
    b.commit_from_file(path).map_err(|e| failed(&e))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// The model path names a file, or the error that says it does not.
pub(crate) fn require_file(path: &Path) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    Err(Error::Model {
        path: path.into(),
        reason: "no such model file".into(),
    })
}

impl ModelInfo {
    /// Reads the model's `xfer.*` metadata and hashes the file, without
    /// building a session (a rerun with nothing to encode needs no more).
    /// `fixed_side` is known only once a session has read the graph
    /// ([`BaseModel::info`]); here it is `None`.
    ///
    /// # Errors
    /// [`Error::Model`] for a file that is not an xfer base; [`Error::Io`]
    /// when it cannot be read.
    pub fn from_file(path: &Path) -> Result<ModelInfo> {
        require_file(path)?;
        ModelInfo::with_hash(path, sha256_file(path)?)
    }

    /// [`ModelInfo::from_file`] with the file's sha256 already known (so
    /// the file was checked by [`require_file`] and read).
    pub(crate) fn with_hash(path: &Path, sha256: String) -> Result<ModelInfo> {
        ModelInfo::from_props(&onnx_meta::read(path)?, path, sha256)
    }

    fn from_props(
        props: &std::collections::BTreeMap<String, String>,
        path: &Path,
        sha256: String,
    ) -> Result<ModelInfo> {
        let bad = |reason: String| Error::Model {
            path: path.into(),
            reason,
        };
        let get = |key: &str| props.get(key).cloned();
        if get("xfer.backbone").is_none() {
            return Err(bad(
                "no xfer metadata (xfer.backbone, xfer.preprocess, ...): not a base exported by \
                 scripts/export_model.py; export one with `scripts/export_model.py xception --weights imagenet --out M.onnx`"
                    .into(),
            ));
        }
        let need = |key: &str| get(key).ok_or_else(|| bad(format!("metadata {key} is missing")));
        let layout = need("xfer.layout")?;
        if layout != "NCHW" {
            return Err(bad(format!(
                "xfer.layout is {layout:?}; xfer feeds NCHW input"
            )));
        }
        let pre = need("xfer.preprocess")?;
        let preprocess = Preprocess::from_name(&pre).ok_or_else(|| {
            bad(format!(
                "xfer.preprocess {pre:?} is not one of tf, torch, lite, raw"
            ))
        })?;
        let num = |key: &str| -> Result<u64> {
            let v = need(key)?;
            v.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(format!("{key} {v:?} is not a positive integer")))
        };
        let default_size = u32::try_from(num("xfer.default_size")?)
            .map_err(|_| bad("xfer.default_size too large".into()))?;
        let dim = num("xfer.dim")? as usize;
        let pretrained = match need("xfer.pretrained")?.as_str() {
            "true" => true,
            "false" => false,
            other => return Err(bad(format!("xfer.pretrained {other:?} is not true/false"))),
        };
        Ok(ModelInfo {
            backbone: need("xfer.backbone")?,
            preprocess,
            default_size,
            dim,
            pretrained,
            weights: get("xfer.weights").unwrap_or_default(),
            input: need("xfer.input")?,
            output: need("xfer.output")?,
            sha256,
            fixed_side: None,
            quant: get(xfer_features::keys::QUANT),
        })
    }
}

/// Checks the graph's input and output against the metadata; returns the
/// input's fixed side, if the graph fixes one.
fn check_graph(session: &Session, path: &Path, info: &ModelInfo) -> Result<Option<(i64, i64)>> {
    let bad = |reason: String| Error::Model {
        path: path.into(),
        reason,
    };
    let (input, output, dim) = (&info.input, &info.output, info.dim);
    let inlet = session
        .inputs()
        .iter()
        .find(|i| i.name() == input)
        .ok_or_else(|| {
            bad(format!(
                "xfer.input names {input:?} but the graph has no such input"
            ))
        })?;
    let fixed_side = match inlet.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } if shape.len() == 4 && (shape[1] == 3 || shape[1] < 0) => {
            if shape[0] > 0 {
                return Err(bad(format!(
                    "input {input:?} has a fixed batch of {}; xfer needs a dynamic batch \
                     dimension (re-export with scripts/export_model.py)",
                    shape[0]
                )));
            }
            (shape[2] > 0 || shape[3] > 0).then_some((shape[2], shape[3]))
        }
        other => {
            return Err(bad(format!(
                "input {input:?} is {other:?}, expected float32 [N, 3, H, W]"
            )))
        }
    };
    let outlet = session
        .outputs()
        .iter()
        .find(|o| o.name() == output)
        .ok_or_else(|| {
            bad(format!(
                "xfer.output names {output:?} but the graph has no such output"
            ))
        })?;
    match outlet.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } if shape.len() == 2 && (shape[1] < 0 || shape[1] as usize == dim) => {}
        other => {
            return Err(bad(format!(
                "output {output:?} is {other:?}, expected float32 [N, {dim}]"
            )))
        }
    }
    Ok(fixed_side)
}
