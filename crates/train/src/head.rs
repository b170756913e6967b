//! The classification head and its file format.
//!
//! A head maps a pooled vector to class logits: `Dense(C)`, or
//! `Dense(H, relu)` then `Dense(C)` (the dropout between them has no weights
//! and exists only while training). Weights are kept in Keras's layout,
//! `kernel` `[inputs, outputs]` row-major, so a Keras model's weights load
//! as they are and `y = x·kernel + bias` reads the same in both.
//!
//! On disk a head is a safetensors file (`dense.kernel`, `dense.bias`, and
//! with an inner layer `inner.kernel`, `inner.bias`, all float32) whose
//! metadata carries the class list and the feature file's model entries
//! (`xfer.backbone`, `xfer.model_sha256`, `xfer.size`, ...). Those travel
//! with the weights so that a head is never applied to vectors from another
//! model, size or preprocessing: [`Head::check_features`] refuses them, and
//! `xfer predict` compares [`Head::meta`] with its ONNX base.
//!
//! ```
//! use xfer_features::FeatureMeta;
//! use xfer_train::head::{softmax_rows, Head};
//! let meta = FeatureMeta::new(vec!["cat".into(), "dog".into()], 3);
//! let head = Head::glorot(meta, None, 7);
//! let mut p = head.logits(&[0.5, -1.0, 2.0], 1);
//! softmax_rows(&mut p, 2);
//! assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
//! ```
use std::collections::HashMap;
use std::path::Path;

use rand::distributions::{Distribution, Uniform};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use xfer_features::FeatureMeta;

use crate::{atomic, gemm, Error, Result};

/// Tensor names of the head file (contract).
pub mod names {
    /// Output layer kernel, `[D or H, C]`.
    pub const DENSE_KERNEL: &str = "dense.kernel";
    /// Output layer bias, `[C]`.
    pub const DENSE_BIAS: &str = "dense.bias";
    /// Inner layer kernel, `[D, H]`.
    pub const INNER_KERNEL: &str = "inner.kernel";
    /// Inner layer bias, `[H]`.
    pub const INNER_BIAS: &str = "inner.bias";
}

/// A fully connected layer in Keras layout: `y = x·kernel + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// `inputs × outputs`, row-major.
    pub kernel: Vec<f32>,
    /// `outputs`.
    pub bias: Vec<f32>,
}

impl Dense {
    /// Keras's default initialisation: `glorot_uniform` kernel (uniform in
    /// `±sqrt(6 / (inputs + outputs))`) and a zero bias.
    pub fn glorot(inputs: usize, outputs: usize, rng: &mut ChaCha8Rng) -> Dense {
        let limit = (6.0 / (inputs + outputs) as f64).sqrt() as f32;
        let dist = Uniform::new(-limit, limit);
        let kernel = (0..inputs * outputs).map(|_| dist.sample(rng)).collect();
        Dense {
            inputs,
            outputs,
            kernel,
            bias: vec![0.0; outputs],
        }
    }

    /// `out[n×outputs] = x[n×inputs]·kernel + bias`.
    pub(crate) fn forward(&self, x: &[f32], n: usize, out: &mut [f32]) {
        gemm::ab(x, &self.kernel, out, n, self.inputs, self.outputs);
        for row in out[..n * self.outputs].chunks_exact_mut(self.outputs) {
            for (o, b) in row.iter_mut().zip(&self.bias) {
                *o += b;
            }
        }
    }
}

/// A trained (or initial) head with the metadata of the vectors it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub(crate) meta: FeatureMeta,
    pub(crate) inner: Option<Dense>,
    pub(crate) dense: Dense,
}

impl Head {
    /// A new head for vectors described by `meta`, initialised as Keras
    /// does (glorot-uniform kernels, zero biases) from `seed`; `inner` adds a
    /// `Dense(inner, relu)` layer before the output layer.
    pub fn glorot(meta: FeatureMeta, inner: Option<usize>, seed: u64) -> Head {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (d, c) = (meta.dim, meta.classes.len());
        let inner = inner.map(|h| Dense::glorot(d, h, &mut rng));
        let dense = Dense::glorot(inner.as_ref().map_or(d, |l| l.outputs), c, &mut rng);
        Head { meta, inner, dense }
    }

    /// Builds a head from layers, checking their shapes against `meta`.
    ///
    /// # Errors
    /// [`Error::Head`] (with `<memory>` as path) when widths do not chain
    /// from `meta.dim` to the number of classes.
    pub fn from_layers(meta: FeatureMeta, inner: Option<Dense>, dense: Dense) -> Result<Head> {
        let head = Head { meta, inner, dense };
        head.check_shapes()
            .map_err(|r| Error::head("<memory>", r))?;
        Ok(head)
    }

    /// The metadata of the vectors this head is for (classes, model entries).
    pub fn meta(&self) -> &FeatureMeta {
        &self.meta
    }

    /// The class names, in logit order.
    pub fn classes(&self) -> &[String] {
        &self.meta.classes
    }

    /// Input width (the vector dimension).
    pub fn dim(&self) -> usize {
        self.meta.dim
    }

    /// Width of the inner layer, if any.
    pub fn inner_size(&self) -> Option<usize> {
        self.inner.as_ref().map(|l| l.outputs)
    }

    /// The inner layer, if any.
    pub fn inner(&self) -> Option<&Dense> {
        self.inner.as_ref()
    }

    /// The output layer.
    pub fn dense(&self) -> &Dense {
        &self.dense
    }

    /// Class logits for `n` row-major vectors (`n × C` values, row-major).
    /// Dropout is off, as in inference.
    ///
    /// # Panics
    /// When `rows.len() != n * self.dim()`.
    pub fn logits(&self, rows: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(
            rows.len(),
            n * self.dim(),
            "logits: rows must hold n * dim floats"
        );
        let mut out = vec![0.0; n * self.dense.outputs];
        match &self.inner {
            None => self.dense.forward(rows, n, &mut out),
            Some(inner) => {
                let mut h = vec![0.0; n * inner.outputs];
                inner.forward(rows, n, &mut h);
                h.iter_mut().for_each(|v| *v = v.max(0.0));
                self.dense.forward(&h, n, &mut out);
            }
        }
        out
    }

    /// Class probabilities (softmax of [`Head::logits`]) for `n` vectors.
    ///
    /// # Panics
    /// When `rows.len() != n * self.dim()`.
    pub fn probabilities(&self, rows: &[f32], n: usize) -> Vec<f32> {
        let mut p = self.logits(rows, n);
        softmax_rows(&mut p, self.dense.outputs);
        p
    }

    /// `None` when vectors described by `features` may go through this head,
    /// else the first differing key with (head's value, features' value).
    pub fn mismatch(&self, features: &FeatureMeta) -> Option<(String, String, String)> {
        self.meta.first_difference(features)
    }

    /// Refuses vectors from another model, size, preprocessing or class
    /// list than the head was trained on.
    ///
    /// # Errors
    /// [`Error::Mismatch`] naming both files and the differing key.
    pub fn check_features(
        &self,
        head_path: &Path,
        features: &FeatureMeta,
        features_path: &Path,
    ) -> Result<()> {
        match self.mismatch(features) {
            None => Ok(()),
            Some((key, head_value, features_value)) => Err(Error::Mismatch {
                path: head_path.into(),
                other: features_path.into(),
                key,
                expected: features_value,
                got: head_value,
            }),
        }
    }

    fn check_shapes(&self) -> std::result::Result<(), String> {
        let d = self.meta.dim;
        let c = self.meta.classes.len();
        let mut width = d;
        if let Some(inner) = &self.inner {
            if inner.inputs != d {
                return Err(format!(
                    "{} has {} inputs but xfer.dim is {d}",
                    names::INNER_KERNEL,
                    inner.inputs
                ));
            }
            width = inner.outputs;
        }
        if self.dense.inputs != width {
            return Err(format!(
                "{} has {} inputs, expected {width}",
                names::DENSE_KERNEL,
                self.dense.inputs
            ));
        }
        if self.dense.outputs != c {
            return Err(format!(
                "{} has {} outputs but there are {c} classes",
                names::DENSE_KERNEL,
                self.dense.outputs
            ));
        }
        for l in self.inner.iter().chain([&self.dense]) {
            if l.kernel.len() != l.inputs * l.outputs || l.bias.len() != l.outputs {
                return Err("kernel or bias length disagrees with the layer shape".into());
            }
            if l.kernel.iter().chain(&l.bias).any(|v| !v.is_finite()) {
                return Err("weights hold NaN or infinite values".into());
            }
        }
        Ok(())
    }

    /// The safetensors bytes of this head.
    pub fn to_bytes(&self) -> Vec<u8> {
        let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut owned: Vec<(&str, Vec<usize>, Vec<u8>)> = vec![
            (
                names::DENSE_KERNEL,
                vec![self.dense.inputs, self.dense.outputs],
                le(&self.dense.kernel),
            ),
            (
                names::DENSE_BIAS,
                vec![self.dense.outputs],
                le(&self.dense.bias),
            ),
        ];
        if let Some(inner) = &self.inner {
            owned.push((
                names::INNER_KERNEL,
                vec![inner.inputs, inner.outputs],
                le(&inner.kernel),
            ));
            owned.push((names::INNER_BIAS, vec![inner.outputs], le(&inner.bias)));
        }
        let views = owned.iter().map(|(name, shape, data)| {
            let view =
                TensorView::new(Dtype::F32, shape.clone(), data).expect("shape matches data");
            (*name, view)
        });
        let meta: HashMap<String, String> = self.meta.to_pairs().into_iter().collect();
        let bytes = safetensors::serialize(views, Some(meta)).expect("f32 tensors serialize");
        sorted_header(bytes)
    }

    /// Writes the head (temporary file, then rename).
    ///
    /// The same head always gives the same bytes (its header's keys are sorted).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        atomic::write_atomic(path, &self.to_bytes())
    }

    /// Reads a head file written by [`Head::save`] (or by any tool that
    /// follows the contract).
    ///
    /// # Errors
    /// [`Error::Io`] when unreadable; [`Error::Head`] naming the file when it
    /// is not safetensors, lacks a tensor or metadata key, or has shapes that
    /// do not chain from `xfer.dim` to the class count.
    pub fn load(path: &Path) -> Result<Head> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Head::from_bytes(&bytes).map_err(|reason| Error::head(path, reason))
    }

    /// Parses safetensors bytes; the error is a reason without the file name.
    fn from_bytes(bytes: &[u8]) -> std::result::Result<Head, String> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format!("{e}"))?;
        let pairs = header
            .metadata()
            .as_ref()
            .ok_or("no __metadata__ (xfer.classes and the model entries are required)")?;
        let meta = FeatureMeta::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|(key, reason)| format!("metadata `{key}`: {reason}"))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| format!("{e}"))?;
        for name in st.names() {
            if ![
                names::DENSE_KERNEL,
                names::DENSE_BIAS,
                names::INNER_KERNEL,
                names::INNER_BIAS,
            ]
            .contains(&name)
            {
                return Err(format!("unexpected tensor `{name}`"));
            }
        }
        let tensor =
            |name: &str, rank: usize| -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
                let t = st
                    .tensor(name)
                    .map_err(|_| format!("tensor `{name}` is missing"))?;
                if t.dtype() != Dtype::F32 {
                    return Err(format!("tensor `{name}` is {:?}, expected F32", t.dtype()));
                }
                if t.shape().len() != rank {
                    return Err(format!(
                        "tensor `{name}` has shape {:?}, expected rank {rank}",
                        t.shape()
                    ));
                }
                let data = t
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Ok((t.shape().to_vec(), data))
            };
        let layer = |k: &str, b: &str| -> std::result::Result<Dense, String> {
            let (ks, kernel) = tensor(k, 2)?;
            let (bs, bias) = tensor(b, 1)?;
            if bs[0] != ks[1] {
                return Err(format!(
                    "`{b}` has {} values but `{k}` has {} outputs",
                    bs[0], ks[1]
                ));
            }
            Ok(Dense {
                inputs: ks[0],
                outputs: ks[1],
                kernel,
                bias,
            })
        };
        let has_inner = st.names().iter().any(|n| n.starts_with("inner."));
        let inner = if has_inner {
            Some(layer(names::INNER_KERNEL, names::INNER_BIAS)?)
        } else {
            None
        };
        let dense = layer(names::DENSE_KERNEL, names::DENSE_BIAS)?;
        let head = Head { meta, inner, dense };
        head.check_shapes()?;
        Ok(head)
    }
}

/// Turns each row of `classes` logits into probabilities, in place,
/// subtracting the row's maximum first so `exp` cannot overflow.
pub fn softmax_rows(values: &mut [f32], classes: usize) {
    for row in values.chunks_exact_mut(classes) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
}

/// Rewrites a safetensors header with its JSON keys sorted.
///
/// `safetensors::serialize` takes the metadata as a `HashMap`, so the header's
/// key order (and the file's bytes) changed from one write to the next; with
/// sorted keys the same head is the same file, which diffs and hashes rely
/// on. Both forms are compact JSON of the same length, so the data offsets
/// and the 8-byte alignment padding are unchanged.
fn sorted_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return bytes;
    };
    let text = String::from_utf8_lossy(header);
    let trimmed = text.trim_end();
    let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) else {
        return bytes;
    };
    let sorted = serde_json::to_string(&value).expect("JSON values serialize");
    if sorted.len() == trimmed.len() {
        bytes[8..8 + sorted.len()].copy_from_slice(sorted.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> FeatureMeta {
        let mut m = FeatureMeta::new(vec!["a".into(), "b".into(), "c".into()], 4);
        m.backbone = "tiny".into();
        m.size = "32x32".into();
        m
    }

    #[test]
    fn save_load_round_trip_with_and_without_inner() {
        let dir = tempfile::tempdir().unwrap();
        for inner in [None, Some(5)] {
            let head = Head::glorot(meta(), inner, 3);
            let path = dir.path().join("h.safetensors");
            head.save(&path).unwrap();
            let back = Head::load(&path).unwrap();
            assert_eq!(back, head);
            assert_eq!(back.inner_size(), inner);
            assert_eq!(back.meta().size, "32x32");
        }
    }

    #[test]
    fn same_head_same_bytes_with_sorted_header() {
        let head = Head::glorot(meta(), Some(4), 7);
        let first = head.to_bytes();
        for _ in 0..5 {
            assert_eq!(
                head.to_bytes(),
                first,
                "a head's bytes must not depend on HashMap order"
            );
        }
        let len = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&first[8..8 + len]).unwrap();
        let keys = [
            "__metadata__",
            "dense.bias",
            "dense.kernel",
            "inner.bias",
            "inner.kernel",
        ];
        let pos: Vec<usize> = keys
            .iter()
            .map(|k| header.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{header}");
        assert!(header.find("xfer.backbone").unwrap() < header.find("xfer.classes").unwrap());
    }

    #[test]
    fn glorot_is_seeded_and_bounded() {
        let a = Head::glorot(meta(), Some(6), 11);
        assert_eq!(a, Head::glorot(meta(), Some(6), 11));
        assert_ne!(a, Head::glorot(meta(), Some(6), 12));
        let limit = (6.0f32 / 10.0).sqrt();
        assert!(a.inner().unwrap().kernel.iter().all(|v| v.abs() <= limit));
        assert!(a.dense().bias.iter().all(|&b| b == 0.0));
    }

    #[test]
    fn logits_by_hand() {
        let m = FeatureMeta::new(vec!["x".into(), "y".into()], 2);
        let inner = Dense {
            inputs: 2,
            outputs: 2,
            kernel: vec![1.0, -1.0, 0.0, 1.0],
            bias: vec![0.0, 0.5],
        };
        let dense = Dense {
            inputs: 2,
            outputs: 2,
            kernel: vec![1.0, 0.0, 0.0, 2.0],
            bias: vec![0.1, 0.0],
        };
        let head = Head::from_layers(m, Some(inner), dense).unwrap();
        // x = [1, 2]: inner = [1, -1+2+0.5] = [1, 1.5]; relu same; out = [1.1, 3]
        // x = [-1, 0]: inner = [-1, 1.5] -> relu [0, 1.5]; out = [0.1, 3]
        let z = head.logits(&[1.0, 2.0, -1.0, 0.0], 2);
        assert_eq!(z, vec![1.1, 3.0, 0.1, 3.0]);
    }

    #[test]
    fn softmax_is_stable() {
        let mut v = vec![1000.0, 1000.0, -1000.0, 0.0];
        softmax_rows(&mut v, 2);
        assert_eq!(v, vec![0.5, 0.5, 0.0, 1.0]);
    }

    #[test]
    fn bad_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"not a head").unwrap();
        let err = Head::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.safetensors") && err.contains("not a usable head"),
            "{err}"
        );

        // shapes that do not chain: a head for 4 dims relabelled as 5 dims
        let mut head = Head::glorot(meta(), None, 1);
        head.meta.dim = 5;
        std::fs::write(&path, head.to_bytes()).unwrap();
        let err = Head::load(&path).unwrap_err().to_string();
        assert!(err.contains("xfer.dim") || err.contains("inputs"), "{err}");
    }

    #[test]
    fn other_model_is_refused() {
        let head = Head::glorot(meta(), None, 1);
        let mut other = meta();
        other.size = "64x64".into();
        let err = head.check_features(
            Path::new("h.safetensors"),
            &other,
            Path::new("f/test.parquet"),
        );
        let msg = err.unwrap_err().to_string();
        assert!(
            msg.contains("xfer.size") && msg.contains("h.safetensors") && msg.contains("64x64"),
            "{msg}"
        );
        assert!(head
            .check_features(Path::new("h"), &meta(), Path::new("f"))
            .is_ok());
    }
}
