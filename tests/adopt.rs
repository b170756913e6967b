//! `scripts/export_model.py adopt` end to end: a Keras-style model (NHWC input
//! fixed at batch 1, an NHWC feature map out, no xfer metadata) made from the
//! tiny base is refused by `xfer extract` as it is, and once adopted gives the
//! tiny base's vectors within 1e-6.
use crate::extract::{dataset, extract, extract_ok};
use crate::util::run_python;
use xfer_features::read_split;

/// Writes the tiny base and its Keras-style rewrite (scripts/tests/test_adopt.py's).
const MAKE_MODELS: &str = "import sys, onnx
sys.path.insert(0, 'scripts')
from scripts.tests.test_adopt import Models
m = Models()
onnx.save(m.tiny, sys.argv[1])
onnx.save(m.nhwc_feature_map(batch=1, size=(32, 32)), sys.argv[2])";

#[test]
fn adopted_keras_style_model_gives_the_base_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, foreign, adopted) = (
        tmp.path().join("tiny.onnx"),
        tmp.path().join("keras_like.onnx"),
        tmp.path().join("adopted.onnx"),
    );
    run_python(&[
        "-c",
        MAKE_MODELS,
        base.to_str().unwrap(),
        foreign.to_str().unwrap(),
    ]);
    let data = tmp.path().join("data");
    dataset(&data, &["train"], &["x", "y"], 5);

    let (code, err) = extract(tmp.path(), &data, &foreign, &tmp.path().join("no"), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no xfer metadata"), "{err}");

    run_python(&[
        "scripts/export_model.py",
        "adopt",
        "--onnx",
        foreign.to_str().unwrap(),
        "--preprocess",
        "tf",
        "--out",
        adopted.to_str().unwrap(),
    ]);
    let (want_dir, got_dir) = (tmp.path().join("base"), tmp.path().join("adopted"));
    extract_ok(tmp.path(), &data, &base, &want_dir, &[]);
    extract_ok(tmp.path(), &data, &adopted, &got_dir, &[]);
    let (want, got) = (
        read_split(&want_dir, "train").unwrap(),
        read_split(&got_dir, "train").unwrap(),
    );
    assert_eq!(want.len(), 10);
    assert_eq!((&got.paths, got.meta.dim), (&want.paths, 8));
    let worst = want
        .features
        .iter()
        .zip(&got.features)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-6, "adopted vectors differ by {worst}");
    let spread = want.features.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(spread > 0.01, "degenerate vectors");
}
