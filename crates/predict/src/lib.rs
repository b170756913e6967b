//! `xfer predict`: classify new images with a frozen ONNX base and a head
//! trained by `xfer train`.
//!
//! An image goes the way its training images went: the same pixels as
//! `xfer extract` ([`xfer_extract::pixels`], i.e. Keras's `load_img` and
//! `preprocess_input`), the same base ([`xfer_extract::model`]), then the
//! head ([`xfer_train::Head`]) and a softmax. Nothing about the input is a
//! flag: the side, resize filter, JPEG decoding (`xfer.decode`) and
//! preprocessing come from the head's metadata, which records what its
//! training vectors were made with, and the head must name this very base
//! (`xfer.model_sha256`, backbone, preprocessing, dimension). A head
//! trained for another model is refused with both values named, never
//! applied to give silently wrong answers.
//!
//! Images are decoded in parallel (rayon), one batch ahead of the ONNX
//! Runtime call, and each batch's rows are printed as soon as it is done
//! ([`output`]: a table, or JSON lines as `shared/CONTRACT.md` fixes them).
//! A file that cannot be read is reported in its place and the others are
//! still classified; the exit status is then 1 (ripgrep's policy: an error
//! on one input does not stop the run but is not hidden from the caller's
//! status either). 2 is left to failures that stop everything.
#![deny(missing_docs)]

mod args;
mod error;
pub mod inputs;
pub mod output;

use std::io::BufWriter;
use std::path::Path;

use rayon::prelude::*;
use xfer_extract::model::{BaseModel, Device, ModelInfo, SessionOptions};
use xfer_extract::pixels::{self, Decode, PixelSpec, Resize};
use xfer_features::{keys, FeatureMeta, NOT_QUANTIZED};
use xfer_train::Head;

pub use args::{PredictArgs, PredictConfig};
pub use error::{Error, Result};
use inputs::Input;
use output::{Outcome, Printer};

/// The extensions `xfer extract` takes, tested as Keras's
/// `flow_from_directory` does: the lower-cased file name ends with one
/// (crates/extract/src/walk.rs, Keras's `white_list_formats`).
pub const EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff"];

/// Whether a file found in a folder is taken as an image.
pub fn is_image_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    EXTENSIONS.iter().any(|e| name.ends_with(e))
}

/// Runs `xfer predict`; returns the process exit status (0 all classified,
/// 1 when some images could not be read).
///
/// # Errors
/// A bad flag or `XFER_SIMD`, an unreadable head or model, a head trained for another
/// model ([`Error::Mismatch`]), no images at all, or a failed write.
pub fn run(args: PredictArgs) -> Result<u8> {
    xfer_train::check_simd_env()?;
    let cfg = PredictConfig::try_from(args)?;
    let work = inputs::collect(&cfg.inputs, is_image_name)?;
    let mut classifier = Classifier::open(&cfg.model, &cfg.head, &cfg.session)?;
    if let (Some(why), false) = (classifier.model().fallback(), cfg.quiet) {
        debug_assert_eq!(cfg.session.device, Device::Auto);
        eprintln!("xfer predict: running on CPU: the CUDA provider did not load: {why}");
    }
    let spec = *classifier.spec();

    let classes = classifier.head().classes();
    let path_width = work
        .iter()
        .map(|i| i.path().to_string_lossy().chars().count())
        .max()
        .unwrap_or(0);
    let class_width = classes.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let top = cfg.top.min(classes.len());
    let stdout = std::io::stdout();
    let mut printer = Printer::new(
        BufWriter::new(stdout.lock()),
        cfg.json,
        top,
        path_width,
        class_width,
    );

    let pool = decode_pool(cfg.threads)?;
    let batches: Vec<&[Input]> = work.chunks(cfg.batch_size).collect();
    let mut failed = 0usize;
    let mut next = batches.first().map(|b| pool.install(|| decode(b, &spec)));
    for (k, batch) in batches.iter().enumerate() {
        let decoded = next.take().expect("decoded one batch ahead");
        // Run this batch while the next one decodes.
        let (outcomes, following) = pool.install(|| {
            rayon::join(
                || classify(&mut classifier, decoded, top),
                || batches.get(k + 1).map(|b| decode(b, &spec)),
            )
        });
        next = following;
        let written = batch
            .iter()
            .zip(outcomes?)
            .try_for_each(|(input, outcome)| {
                failed += usize::from(outcome.is_err());
                printer.print(input.path(), &outcome)
            });
        match written.and_then(|()| printer.flush()) {
            // The reader went away (`xfer predict ... | head`): stop quietly,
            // as ripgrep does; it is not a failure of ours.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(u8::from(failed > 0))
            }
            other => other.map_err(Error::Output)?,
        }
    }
    if failed > 0 && !cfg.quiet {
        eprintln!(
            "xfer predict: {failed} of {} images could not be classified (see their error entries)",
            work.len()
        );
    }
    Ok(u8::from(failed > 0))
}

/// The pool images are decoded on, beside ONNX Runtime's own threads:
/// `threads` threads named `xfer-decode-N`.
///
/// # Errors
/// [`Error::Config`] (`--threads`) when the threads cannot be started.
pub fn decode_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("xfer-decode-{i}"))
        .build()
        .map_err(|e| Error::config("threads", format!("cannot start {threads} threads: {e}")))
}

/// A base and the head trained on its vectors, checked to belong together,
/// with the pixels they take: what `xfer predict` runs, and what `xfer
/// serve` keeps loaded.
#[derive(Debug)]
pub struct Classifier {
    model: BaseModel,
    head: Head,
    spec: PixelSpec,
}

impl Classifier {
    /// Loads the head, opens the base with `session`, refuses a head whose
    /// vectors came from another base, and takes the input side, resize
    /// filter and preprocessing from the head's metadata (PIL's pixel limit;
    /// see [`Classifier::set_max_pixels`]).
    ///
    /// # Errors
    /// An unreadable head or model, head metadata xfer cannot follow, or a
    /// head trained for another model ([`Error::Mismatch`]).
    pub fn open(model: &Path, head: &Path, session: &SessionOptions) -> Result<Self> {
        let head_path = head;
        let head = Head::load(head_path)?;
        let resize = head_resize(head_path, head.meta())?;
        let decode = head_decode(head_path, head.meta())?;
        let side = head_side(head_path, head.meta())?;
        let base = BaseModel::open(model, session)?;
        check_fits(head_path, head.meta(), model, base.info(), side)?;
        let spec = PixelSpec {
            decode,
            ..PixelSpec::new(side, resize, base.info().preprocess)
        };
        Ok(Classifier {
            model: base,
            head,
            spec,
        })
    }

    /// How image bytes become this base's input.
    pub fn spec(&self) -> &PixelSpec {
        &self.spec
    }

    /// Refuses images of more than `max_pixels` pixels before decoding them.
    pub fn set_max_pixels(&mut self, max_pixels: u64) {
        self.spec.max_pixels = max_pixels;
    }

    /// The base model.
    pub fn model(&self) -> &BaseModel {
        &self.model
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Runs `n` images (`tensors` holds their CHW inputs of
    /// [`PixelSpec::tensor_len`] floats each, in order) through the base and
    /// the head in one ONNX Runtime call; returns each image's `top` most
    /// probable classes, best first.
    ///
    /// # Errors
    /// [`Error::Model`] when ONNX Runtime fails or the lengths do not match.
    pub fn classify(
        &mut self,
        tensors: &[f32],
        n: usize,
        top: usize,
    ) -> Result<Vec<Vec<(String, f32)>>> {
        let vectors = self.model.run(tensors, n, self.spec.size)?;
        let probs = self.head.probabilities(&vectors, n);
        let c = self.head.classes().len();
        Ok(probs
            .chunks_exact(c)
            .map(|p| output::top_k(p, self.head.classes(), top))
            .collect())
    }
}

/// One batch's pixels: the CHW tensors of the images that decoded (in
/// order, concatenated) and, per input, `Ok(())` or the reason it failed.
struct Decoded {
    tensors: Vec<f32>,
    status: Vec<std::result::Result<(), String>>,
}

fn decode(batch: &[Input], spec: &PixelSpec) -> Decoded {
    let len = spec.tensor_len();
    let mut slots = vec![0.0f32; batch.len() * len];
    let status: Vec<std::result::Result<(), String>> = slots
        .par_chunks_mut(len)
        .zip(batch.par_iter())
        .map(|(slot, input)| match input {
            Input::Image(path) => pixels::read_image_file(path)
                .and_then(|bytes| pixels::from_bytes_into(&bytes, spec, slot))
                .map_err(|e| e.0),
            Input::Missing(_, why) => Err(why.clone()),
        })
        .collect();
    // Keep only the slots of images that decoded, in order.
    let mut tensors = Vec::with_capacity(slots.len());
    for (slot, st) in slots.chunks_exact(len).zip(&status) {
        if st.is_ok() {
            tensors.extend_from_slice(slot);
        }
    }
    Decoded { tensors, status }
}

fn classify(classifier: &mut Classifier, d: Decoded, top: usize) -> Result<Vec<Outcome>> {
    let n = d.status.iter().filter(|s| s.is_ok()).count();
    let mut rows = classifier.classify(&d.tensors, n, top)?.into_iter();
    Ok(d.status
        .into_iter()
        .map(|st| st.map(|()| rows.next().expect("one result per decoded image")))
        .collect())
}

/// The square side of the head's `xfer.size` (`SxS`).
fn head_side(path: &Path, meta: &FeatureMeta) -> Result<u32> {
    let bad = |reason: String| Error::HeadMeta {
        path: path.into(),
        key: keys::SIZE,
        reason,
    };
    let (w, h) = meta
        .size
        .split_once('x')
        .ok_or_else(|| bad(format!("{:?} is not WxH", meta.size)))?;
    let (w, h) = match (w.parse::<u32>(), h.parse::<u32>()) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(bad(format!(
                "{:?} is not WxH with positive sides",
                meta.size
            )))
        }
    };
    if w != h {
        return Err(bad(format!(
            "{w}x{h} is not square; xfer extract makes square inputs only"
        )));
    }
    if w > pixels::MAX_SIDE {
        return Err(bad(format!(
            "{w}x{h} is over the largest side xfer builds ({})",
            pixels::MAX_SIDE
        )));
    }
    Ok(w)
}

/// The resize filter named by the head's `xfer.resize`.
fn head_resize(path: &Path, meta: &FeatureMeta) -> Result<Resize> {
    Resize::from_name(&meta.resize).ok_or_else(|| Error::HeadMeta {
        path: path.into(),
        key: keys::RESIZE,
        reason: format!("{:?} is not a resize filter xfer knows", meta.resize),
    })
}

/// The JPEG decoding named by the head's `xfer.decode` (full when absent):
/// a head trained on draft-decoded vectors sees draft-decoded images.
fn head_decode(path: &Path, meta: &FeatureMeta) -> Result<Decode> {
    Decode::from_name(meta.decode()).ok_or_else(|| Error::HeadMeta {
        path: path.into(),
        key: keys::DECODE,
        reason: format!("{:?} is not a decoding xfer knows", meta.decode()),
    })
}

/// Refuses a head whose vectors came from another base than `info`: its
/// backbone, preprocessing, dimension, file hash, or (for a graph with a
/// fixed input side) its input size.
fn check_fits(
    head_path: &Path,
    meta: &FeatureMeta,
    model_path: &Path,
    info: &ModelInfo,
    side: u32,
) -> Result<()> {
    let mismatch = |key: &str, head_value: String, model_value: String| Error::Mismatch {
        head: head_path.into(),
        model: model_path.into(),
        key: key.into(),
        head_value,
        model_value,
    };
    let pairs = [
        (keys::BACKBONE, meta.backbone.clone(), info.backbone.clone()),
        (
            keys::PREPROCESS,
            meta.preprocess.clone(),
            info.preprocess.name().to_string(),
        ),
        (keys::DIM, meta.dim.to_string(), info.dim.to_string()),
        // Before the sha256 (which differs too), so int8 against fp32 is named.
        (
            keys::QUANT,
            meta.quant().to_string(),
            info.quant.clone().unwrap_or_else(|| NOT_QUANTIZED.into()),
        ),
        (
            keys::MODEL_SHA256,
            meta.model_sha256.clone(),
            info.sha256.clone(),
        ),
    ];
    if let Some((key, h, m)) = pairs.into_iter().find(|(_, h, m)| h != m) {
        return Err(mismatch(key, h, m));
    }
    if let Some((h, w)) = info.fixed_side {
        if (h > 0 && h != i64::from(side)) || (w > 0 && w != i64::from(side)) {
            return Err(mismatch(keys::SIZE, meta.size.clone(), format!("{w}x{h}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfer_extract::pixels::Preprocess;

    fn meta() -> FeatureMeta {
        let mut m = FeatureMeta::new(vec!["a".into(), "b".into()], 4);
        m.backbone = "tiny".into();
        m.model_sha256 = "ab".repeat(32);
        m.size = "32x32".into();
        m.preprocess = "tf".into();
        m
    }

    fn info() -> ModelInfo {
        ModelInfo {
            backbone: "tiny".into(),
            preprocess: Preprocess::Tf,
            default_size: 32,
            dim: 4,
            pretrained: false,
            weights: "random".into(),
            input: "input".into(),
            output: "features".into(),
            sha256: "ab".repeat(32),
            fixed_side: None,
            quant: None,
        }
    }

    fn key_of(e: Error) -> String {
        match e {
            Error::Mismatch { key, .. } => key,
            other => panic!("not a mismatch: {other}"),
        }
    }

    #[test]
    fn a_head_side_over_the_limit_is_refused() {
        let mut m = meta();
        m.size = "40000x40000".into();
        let err = head_side(Path::new("h.safetensors"), &m)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("h.safetensors") && err.contains("4096"),
            "{err}"
        );
        m.size = "4096x4096".into();
        assert_eq!(head_side(Path::new("h"), &m).unwrap(), 4096);
    }

    #[test]
    fn a_matching_head_fits() {
        check_fits(Path::new("h"), &meta(), Path::new("m"), &info(), 32).unwrap();
    }

    #[test]
    fn each_differing_fact_is_named() {
        let check = |m: FeatureMeta, i: ModelInfo| {
            key_of(check_fits(Path::new("h"), &m, Path::new("m"), &i, 32).unwrap_err())
        };
        let mut m = meta();
        m.model_sha256 = "cd".repeat(32);
        assert_eq!(check(m, info()), keys::MODEL_SHA256);
        let mut m = meta();
        m.preprocess = "torch".into();
        assert_eq!(check(m, info()), keys::PREPROCESS);
        let mut m = meta();
        m.dim = 5;
        assert_eq!(check(m, info()), keys::DIM);
        let mut i = info();
        i.backbone = "xception".into();
        assert_eq!(check(meta(), i), keys::BACKBONE);
        let mut i = info();
        i.fixed_side = Some((150, 150));
        assert_eq!(check(meta(), i), keys::SIZE);
        let msg = check_fits(
            Path::new("h.st"),
            &meta(),
            Path::new("m.onnx"),
            &{
                let mut i = info();
                i.sha256 = "ef".repeat(32);
                i
            },
            32,
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("h.st does not fit m.onnx") && msg.contains(&"ef".repeat(32)),
            "{msg}"
        );
    }

    #[test]
    fn int8_and_fp32_are_refused_both_ways_naming_xfer_quant() {
        let q = r#"{"format":"QDQ","method":"minmax","type":"int8"}"#;
        // A head made on int8 vectors with the fp32 model (whose sha256
        // differs too: the quantization is what is named).
        let mut int8_head = meta();
        int8_head.extra.insert(keys::QUANT.into(), q.into());
        int8_head.model_sha256 = "cd".repeat(32);
        let err = check_fits(
            Path::new("h.st"),
            &int8_head,
            Path::new("m.onnx"),
            &info(),
            32,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert_eq!(key_of(err), keys::QUANT);
        assert!(
            msg.contains("`xfer.quant`") && msg.contains("int8") && msg.contains(NOT_QUANTIZED),
            "{msg}"
        );
        // A head made on fp32 vectors with the int8 model.
        let mut int8_model = info();
        int8_model.quant = Some(q.into());
        int8_model.sha256 = "cd".repeat(32);
        let err = check_fits(Path::new("h"), &meta(), Path::new("m"), &int8_model, 32).unwrap_err();
        assert_eq!(key_of(err), keys::QUANT);
        // Both int8 from the same file: fits.
        check_fits(Path::new("h"), &int8_head, Path::new("m"), &int8_model, 32).unwrap();
    }

    #[test]
    fn size_and_resize_come_from_the_head() {
        assert_eq!(head_side(Path::new("h"), &meta()).unwrap(), 32);
        for bad in ["32x31", "32", "0x0", "ax b"] {
            let mut m = meta();
            m.size = bad.into();
            assert!(
                matches!(
                    head_side(Path::new("h"), &m),
                    Err(Error::HeadMeta {
                        key: keys::SIZE,
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            head_resize(Path::new("h"), &meta()).unwrap(),
            Resize::Nearest
        );
        let mut m = meta();
        m.resize = "area".into();
        assert!(head_resize(Path::new("h"), &m).is_err());
    }

    #[test]
    fn decoding_comes_from_the_head() {
        assert_eq!(head_decode(Path::new("h"), &meta()).unwrap(), Decode::Full);
        let mut m = meta();
        m.extra.insert(keys::DECODE.into(), "draft".into());
        assert_eq!(head_decode(Path::new("h"), &m).unwrap(), Decode::Draft);
        m.extra.insert(keys::DECODE.into(), "half".into());
        assert!(matches!(
            head_decode(Path::new("h"), &m),
            Err(Error::HeadMeta {
                key: keys::DECODE,
                ..
            })
        ));
    }

    #[test]
    fn image_names_as_keras_tests_them() {
        for yes in ["a.jpg", "B.JPEG", "c.Png", "d.tif", "x.ppm"] {
            assert!(is_image_name(Path::new(yes)), "{yes}");
        }
        for no in ["a.txt", "b.gif", "c.webp", "README"] {
            assert!(!is_image_name(Path::new(no)), "{no}");
        }
    }
}
