//! `xfer predict`: generated images, the tiny base, heads trained by
//! `xfer train` or written by hand; the refusal of a head made for another
//! model; a bad image among good ones; the joined ONNX classifier of
//! `export_model.py classifier` against `xfer predict --json`.
use std::path::{Path, PathBuf};

use predicates::str::contains;
use serde_json::Value;
use xfer_features::FeatureMeta;
use xfer_train::Head;

use crate::util::{run_python, tiny_model, xfer};

/// Writes PNG images with PIL: (relative path, RGB base colour, width,
/// height); each gets seeded noise so no two are alike.
fn images(root: &Path, specs: &[(&str, [u8; 3], u32, u32)]) {
    let script = r#"
import json, sys, os
import numpy as np
from PIL import Image
root, specs = sys.argv[1], json.loads(sys.argv[2])
for i, (rel, rgb, w, h) in enumerate(specs):
    rng = np.random.default_rng(i)
    px = np.clip(np.array(rgb, float) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    Image.fromarray(px).save(p)
"#;
    let specs = serde_json::to_string(specs).unwrap();
    run_python(&["-c", script, root.to_str().unwrap(), &specs]);
}

const RED: [u8; 3] = [210, 40, 30];
const BLUE: [u8; 3] = [30, 60, 200];

/// DATA/{train,validation}/{blue,red}/*.png: colour decides the class.
pub(crate) fn dataset(root: &Path) -> PathBuf {
    let data = root.join("data");
    let mut specs = Vec::new();
    let names: Vec<String> = (0..8).map(|i| format!("{i:02}.png")).collect();
    for (split, count) in [("train", 8), ("validation", 3)] {
        for (class, rgb) in [("blue", BLUE), ("red", RED)] {
            for (i, name) in names.iter().take(count).enumerate() {
                let rel = format!("{split}/{class}/{name}");
                specs.push((rel, rgb, 24 + 4 * i as u32, 20 + 3 * i as u32));
            }
        }
    }
    let specs: Vec<(&str, [u8; 3], u32, u32)> = specs
        .iter()
        .map(|(r, c, w, h)| (r.as_str(), *c, *w, *h))
        .collect();
    images(&data, &specs);
    data
}

/// `xfer extract` of `data` with `model` into `root/features`.
fn extract(root: &Path, data: &Path, model: &Path) -> PathBuf {
    let out = root.join("features");
    xfer(root)
        .args(["extract", "--data"])
        .arg(data)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(&out)
        .args(["--size", "32"])
        .assert()
        .success();
    out
}

/// A temporary folder holding the colour dataset and its vectors from the
/// tiny base: (folder, model, DATA, features folder).
pub(crate) fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(8, 11);
    let data = dataset(tmp.path());
    let features = extract(tmp.path(), &data, &model);
    (tmp, model, data, features)
}

/// A hand-written head (glorot, seeded) for the vectors of `features`.
pub(crate) fn hand_head(root: &Path, features: &Path, inner: Option<usize>) -> PathBuf {
    let table = xfer_features::read_split(features, "validation").unwrap();
    let path = root.join(format!("hand-{}.safetensors", inner.unwrap_or(0)));
    Head::glorot(table.meta.clone(), inner, 5)
        .save(&path)
        .unwrap();
    path
}

/// `xfer predict --model MODEL --head HEAD`, ready for more arguments.
pub(crate) fn predict(root: &Path, model: &Path, head: &Path) -> assert_cmd::Command {
    let mut cmd = xfer(root);
    cmd.arg("predict")
        .arg("--model")
        .arg(model)
        .arg("--head")
        .arg(head);
    cmd
}

/// Runs `xfer predict --json` and returns (exit status, one value per line).
pub(crate) fn predict_json(
    root: &Path,
    model: &Path,
    head: &Path,
    inputs: &[&Path],
    extra: &[&str],
) -> (i32, Vec<Value>, String) {
    let out = predict(root, model, head)
        .arg("--json")
        .args(extra)
        .args(inputs)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// {class: probability} of one JSON line's `top`.
fn top_map(line: &Value) -> Vec<(String, f64)> {
    line["top"]
        .as_array()
        .unwrap_or_else(|| panic!("no top in {line}"))
        .iter()
        .map(|t| {
            (
                t["class"].as_str().unwrap().to_string(),
                t["probability"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn predict_with_a_trained_head_matches_the_head_on_extracted_vectors() {
    let (tmp, model, data, features) = setup();
    let root = tmp.path();
    let run = root.join("run");
    xfer(root)
        .args(["train", "--features"])
        .arg(&features)
        .arg("--out")
        .arg(&run)
        .args(["--epochs", "30", "--lr", "0.05", "--seed", "1"])
        .assert()
        .success();
    let head_path = run.join("head.safetensors");
    let val = data.join("validation");
    let (code, lines, stderr) = predict_json(root, &model, &head_path, &[&val], &[]);
    assert_eq!(code, 0, "{stderr}");

    // sorted recursive walk = flow_from_directory order = the feature file's rows
    let table = xfer_features::read_split(&features, "validation").unwrap();
    assert_eq!(lines.len(), table.len());
    let head = Head::load(&head_path).unwrap();
    let probs = head.probabilities(&table.features, table.len());
    let c = head.classes().len();
    let mut right = 0;
    for (i, line) in lines.iter().enumerate() {
        let path = line["path"].as_str().unwrap();
        assert_eq!(
            Path::new(path),
            val.parent().unwrap().join(&table.paths[i]),
            "row {i}"
        );
        let top = top_map(line);
        assert_eq!(top.len(), 2, "--top 3 is clamped to the 2 classes");
        assert!(top[0].1 >= top[1].1);
        assert!((top.iter().map(|t| t.1).sum::<f64>() - 1.0).abs() < 1e-5);
        for (class, p) in &top {
            let j = head.classes().iter().position(|k| k == class).unwrap();
            let want = f64::from(probs[i * c + j]);
            assert!(
                (p - want).abs() < 1e-5,
                "{path} {class}: predict {p}, head on extract's vector {want}"
            );
        }
        right += usize::from(top[0].0 == table.class_of(i));
    }
    assert!(right >= 5, "only {right} of 6 colour images right");

    // --top 1 and the table form
    let (_, lines, _) = predict_json(root, &model, &head_path, &[&val], &["--top", "1"]);
    assert!(lines.iter().all(|l| top_map(l).len() == 1));
    let out = predict(root, &model, &head_path)
        .arg(val.join("red/00.png"))
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.starts_with("image"), "{text}");
    assert!(
        text.contains("red/00.png") && text.contains("top 2"),
        "{text}"
    );
}

/// `scripts/report.py` reads a real `xfer train` run folder: its numpy
/// predictions (head + validation vectors) give the confusion matrix that
/// `xfer train` wrote to metrics.json, and the page is written.
#[test]
fn report_of_a_trained_run_agrees_with_its_metrics() {
    let (tmp, _, data, features) = setup();
    let root = tmp.path();
    let run = root.join("run");
    xfer(root)
        .args(["train", "--features"])
        .arg(&features)
        .arg("--out")
        .arg(&run)
        .args(["--epochs", "3", "--seed", "2"])
        .assert()
        .success();
    let script = r#"
import json, sys
sys.path.insert(0, "scripts")
import report
run, data = sys.argv[1], sys.argv[2]
r = report.load_run(run)
rows, total, note, computed = report.misclassified(r, report.find_features(r, None), data, "validation")
assert note is None, note
assert computed["confusion"] == r["metrics"]["confusion"], (computed, r["metrics"])
assert report.main([run, "--data", data]) == 0
"#;
    run_python(&["-c", script, run.to_str().unwrap(), data.to_str().unwrap()]);
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(page.contains("Confusion matrix") && page.contains("validation images misclassified"));
}

#[test]
fn a_head_for_another_model_is_refused() {
    let (tmp, model, data, features) = setup();
    let root = tmp.path();
    let other = tiny_model(8, 12);
    let head = hand_head(root, &features, None);
    let img = data.join("validation/red/00.png");

    let out = predict(root, &other, &head)
        .arg(&img)
        .assert()
        .code(2)
        .stderr(contains("xfer.model_sha256"))
        .stderr(contains("does not fit"));
    assert!(out.get_output().stdout.is_empty(), "nothing is classified");

    // the same model but a head that claims another preprocessing
    let table = xfer_features::read_split(&features, "validation").unwrap();
    let mut meta: FeatureMeta = table.meta.clone();
    meta.preprocess = "torch".into();
    let torch = root.join("torch.safetensors");
    Head::glorot(meta, None, 1).save(&torch).unwrap();
    predict(root, &model, &torch)
        .arg(&img)
        .assert()
        .code(2)
        .stderr(contains("xfer.preprocess"));
}

#[test]
fn a_bad_image_is_reported_and_the_others_classified() {
    let (tmp, model, _, features) = setup();
    let root = tmp.path();
    let head = hand_head(root, &features, None);
    let dir = root.join("new");
    images(&dir, &[("a.png", RED, 30, 30), ("c.png", BLUE, 40, 20)]);
    std::fs::write(dir.join("b.jpg"), b"this is not a JPEG").unwrap();
    std::fs::write(dir.join("notes.txt"), b"skipped: not an image extension").unwrap();
    let missing = root.join("missing.png");

    let (code, lines, stderr) = predict_json(root, &model, &head, &[&dir, &missing], &[]);
    assert_eq!(code, 1, "some images failed: {stderr}");
    let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    let want: Vec<PathBuf> = vec![
        dir.join("a.png"),
        dir.join("b.jpg"),
        dir.join("c.png"),
        missing.clone(),
    ];
    assert_eq!(
        paths,
        want.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(top_map(&lines[0]).len(), 2);
    assert!(
        lines[1]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        lines[1]
    );
    assert!(lines[1].get("top").is_none());
    assert_eq!(top_map(&lines[2]).len(), 2);
    assert!(lines[3]["error"].is_string());
    assert!(stderr.contains("2 of 4"), "{stderr}");
}

/// The code of the README's fenced block whose info string is
/// `python NAME`.
fn readme_example(name: &str) -> String {
    let readme = std::fs::read_to_string(crate::util::repo().join("README.md")).unwrap();
    let open = format!("```python {name}");
    let start = readme
        .lines()
        .position(|l| l.trim_end() == open)
        .unwrap_or_else(|| panic!("README.md has no block {open}"));
    readme
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn joined_onnx_classifier_equals_predict() {
    let (tmp, model, data, features) = setup();
    let root = tmp.path();
    let head = hand_head(root, &features, Some(5));
    let joined = root.join("classifier.onnx");
    run_python(&[
        "scripts/export_model.py",
        "classifier",
        "--base",
        model.to_str().unwrap(),
        "--head",
        head.to_str().unwrap(),
        "--out",
        joined.to_str().unwrap(),
    ]);
    let val = data.join("validation");
    let (code, lines, stderr) = predict_json(root, &model, &head, &[&val], &[]);
    assert_eq!(code, 0, "{stderr}");

    // What any ONNX Runtime client does, as the README's classify.py example
    // does it (the example's own code runs here, so the README cannot drift):
    // Keras load_img to the head's size, the model's preprocessing, NCHW, the
    // joined model's probabilities.
    let example = root.join("classify.py");
    std::fs::write(&example, readme_example("classify.py")).unwrap();
    let script = r#"
import json, runpy, sys
classify = runpy.run_path(sys.argv[1], run_name="readme")["classify"]
for p in sys.argv[3:]:
    print(json.dumps({"path": p, "probabilities": classify(sys.argv[2], p)}))
"#;
    let mut args = vec![
        "-c",
        script,
        example.to_str().unwrap(),
        joined.to_str().unwrap(),
    ];
    let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    args.extend(paths.iter().copied());
    let onnx_out = run_python(&args);
    let onnx_lines: Vec<Value> = onnx_out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(onnx_lines.len(), lines.len());
    let mut worst = 0.0f64;
    for (ours, theirs) in lines.iter().zip(&onnx_lines) {
        assert_eq!(ours["path"], theirs["path"]);
        for (class, p) in top_map(ours) {
            let q = theirs["probabilities"][&class].as_f64().unwrap();
            worst = worst.max((p - q).abs());
        }
    }
    eprintln!("joined ONNX vs xfer predict: largest difference {worst:e}");
    assert!(
        worst < 1e-5,
        "joined ONNX and xfer predict differ by {worst}"
    );
}
