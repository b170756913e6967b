//! int8 bases (`export_model.py quantize`) through the whole tool: the
//! quantized tiny base keeps its metadata and adds `xfer.quant`, runs through
//! `xfer extract` with vectors close to the fp32 ones, never reuses fp32 rows
//! (nor the reverse), and `xfer predict` refuses a head made on the other kind.
use std::path::{Path, PathBuf};

use predicates::str::contains;
use xfer_extract::model::ModelInfo;
use xfer_features::{keys, read_split, FeatureTable, NOT_QUANTIZED};
use xfer_train::Head;

use crate::predict::{dataset, predict};
use crate::util::{run_python, tiny_model, xfer};

/// `export_model.py quantize` of `model` on `data` into `root/<name>`.
fn quantize(root: &Path, model: &Path, data: &Path, name: &str) -> PathBuf {
    let out = root.join(name);
    run_python(&[
        "scripts/export_model.py",
        "quantize",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--images",
        "8",
        "--seed",
        "3",
    ]);
    out
}

/// `xfer extract` of `data` with `model` into `out`; returns its stderr.
fn extract(root: &Path, data: &Path, model: &Path, out: &Path) -> String {
    let r = xfer(root)
        .args(["extract", "--data"])
        .arg(data)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(["--size", "32"])
        .assert()
        .success();
    String::from_utf8_lossy(&r.get_output().stderr).into_owned()
}

fn mean_cosine(a: &FeatureTable, b: &FeatureTable) -> f64 {
    assert_eq!(a.paths, b.paths);
    let cos = |x: &[f32], y: &[f32]| {
        let dot: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum();
        let n = |v: &[f32]| v.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
        dot / (n(x) * n(y))
    };
    (0..a.len()).map(|i| cos(a.row(i), b.row(i))).sum::<f64>() / a.len() as f64
}

#[test]
fn int8_tiny_base_keeps_its_metadata_and_its_vectors_never_mix_with_fp32() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fp32 = tiny_model(8, 11);
    let data = dataset(root);
    let int8 = quantize(root, &fp32, &data, "tiny-int8.onnx");

    // Every entry kept; xfer.quant added with the settings.
    let (a, b) = (
        ModelInfo::from_file(&fp32).unwrap(),
        ModelInfo::from_file(&int8).unwrap(),
    );
    assert_ne!(a.sha256, b.sha256);
    assert_eq!(a.quant, None);
    let q: serde_json::Value = serde_json::from_str(b.quant.as_deref().unwrap()).unwrap();
    assert_eq!(q["type"], "int8");
    assert_eq!(q["format"], "QDQ");
    assert_eq!(q["per_channel"], true);
    assert_eq!(q["method"], "minmax");
    // The measured default (docs/accuracy-int8.md): 7-bit weights.
    assert_eq!(q["reduce_range"], true);
    assert_eq!(
        (q["images"].as_u64(), q["seed"].as_u64()),
        (Some(8), Some(3))
    );
    let same = |m: &ModelInfo| ModelInfo {
        sha256: String::new(),
        quant: None,
        ..m.clone()
    };
    assert_eq!(same(&a), same(&b));

    // Through xfer extract: the entry reaches the files; vectors near fp32's.
    let (f32_out, i8_out) = (root.join("f-fp32"), root.join("f-int8"));
    extract(root, &data, &fp32, &f32_out);
    extract(root, &data, &int8, &i8_out);
    for split in ["train", "validation"] {
        let (x, y) = (
            read_split(&f32_out, split).unwrap(),
            read_split(&i8_out, split).unwrap(),
        );
        assert_eq!(x.meta.quant(), NOT_QUANTIZED);
        assert_eq!(y.meta.extra.get(keys::QUANT), b.quant.as_ref());
        assert_eq!(
            x.meta.first_difference(&y.meta).map(|d| d.0).as_deref(),
            Some(keys::QUANT)
        );
        let c = mean_cosine(&x, &y);
        assert!(c > 0.98, "{split}: mean cosine int8 to fp32 {c}");
        assert!(x.features != y.features, "{split}: int8 vectors are fp32's");
    }

    // The cache: int8 over an fp32 folder re-encodes everything, naming
    // xfer.quant, and the reverse; the result is each model's own vectors.
    let mixed = root.join("f-mixed");
    extract(root, &data, &fp32, &mixed);
    let said = extract(root, &data, &int8, &mixed);
    assert!(
        said.contains("not reused") && said.contains("xfer.quant"),
        "{said}"
    );
    let said = extract(root, &data, &fp32, &mixed);
    assert!(
        said.contains("not reused") && said.contains("xfer.quant"),
        "{said}"
    );
    for split in ["train", "validation"] {
        let (m, x) = (
            read_split(&mixed, split).unwrap(),
            read_split(&f32_out, split).unwrap(),
        );
        assert_eq!((m.meta.clone(), m.features), (x.meta.clone(), x.features));
    }

    // xfer predict: a head on int8 vectors with the fp32 base, and the
    // reverse, are refused; a head on int8 vectors fits the int8 base.
    let img = data.join("validation/red/00.png");
    let head = |features: &Path, name: &str| {
        let table = read_split(features, "validation").unwrap();
        let path = root.join(format!("{name}.safetensors"));
        Head::glorot(table.meta.clone(), None, 5)
            .save(&path)
            .unwrap();
        path
    };
    for (features, model, name) in [(&i8_out, &fp32, "int8"), (&f32_out, &int8, "fp32")] {
        predict(root, model, &head(features, name))
            .arg(&img)
            .assert()
            .code(2)
            .stderr(contains("xfer.quant"))
            .stderr(contains("does not fit"));
    }
    predict(root, &int8, &head(&i8_out, "int8-ok"))
        .arg(&img)
        .assert()
        .success();
}
