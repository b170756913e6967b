//! Augmented views end to end (issue 8): `xfer extract --augment K` on the
//! tiny ONNX base and generated images, `xfer train --views` on what it
//! wrote. Views are deterministic for a seed whatever the threads and differ
//! between views; the views cache is incremental and keyed by the settings;
//! `--size 150` and `--size 299` never mix; `--views` with K = 0 is the
//! plain run, number for number.
use std::path::Path;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use xfer_features::{read_split, FeatureTable};
use xfer_train::head::Head;

use crate::extract::{dataset, extract, extract_ok, image, Counts};
use crate::util::{run_python, tiny_model, xfer};

/// Strong enough transforms that every view differs from the others.
const AUGMENT: [&str; 10] = [
    "--seed",
    "5",
    "--rotation",
    "30",
    "--width-shift",
    "0.1",
    "--height-shift",
    "0.1",
    "--zoom",
    "0.2",
];

fn with<'a>(k: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--augment", k];
    v.extend_from_slice(&AUGMENT);
    v.extend_from_slice(extra);
    v
}

fn views(out: &Path) -> FeatureTable {
    read_split(&out.join("views"), "train").unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn views_are_deterministic_across_runs_and_threads_and_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache) = (tmp.path().join("data"), tmp.path().join("cache"));
    dataset(&data, &["train", "validation"], &["a", "b"], 3);
    let model = tiny_model(8, 3);
    let (one, two) = (tmp.path().join("t1"), tmp.path().join("t2"));
    let c = extract_ok(&cache, &data, &model, &one, &with("2", &["--threads", "1"]));
    assert_eq!(
        c,
        Counts {
            rows: 6 + 12 + 6,
            encoded: 24,
            reused: 0,
            skipped: 0
        }
    );
    extract_ok(&cache, &data, &model, &two, &with("2", &["--threads", "2"]));
    let (a, b) = (views(&one), views(&two));
    assert_eq!(a, b, "same seed: the same views, whatever the threads");
    let sharded = tmp.path().join("sharded");
    for shard in ["0/2", "1/2"] {
        extract_ok(
            &cache,
            &data,
            &model,
            &sharded,
            &with("2", &["--shard", shard]),
        );
    }
    assert!(sharded.join("views/train-1-of-2.parquet").is_file());
    assert_eq!(views(&sharded), a, "... and whatever the sharding");
    assert_eq!((a.len(), &a.views[..4]), (12, &[1, 2, 1, 2][..]));
    assert!(a.meta.extra["xfer.augment"].contains("\"views\":2"));

    // Views differ from each other and from the plain image.
    let plain = read_split(&one, "train").unwrap();
    for i in 0..plain.len() {
        assert_eq!(a.paths[2 * i], plain.paths[i]);
        assert_eq!(a.sha256[2 * i], plain.sha256[i]);
        let (v1, v2) = (a.row(2 * i), a.row(2 * i + 1));
        assert!(
            max_diff(v1, v2) > 1e-3,
            "{}: views 1 and 2 equal",
            plain.paths[i]
        );
        assert!(
            max_diff(v1, plain.row(i)) > 1e-3,
            "view 1 is the plain image"
        );
    }

    // The plain files are what a run without --augment writes, and keep the
    // contract's five columns; another seed gives other views.
    let bare = tmp.path().join("bare");
    extract_ok(&cache, &data, &model, &bare, &[]);
    assert_eq!(read_split(&bare, "train").unwrap(), plain);
    let cols = run_python(&[
        "-c",
        "import sys, pyarrow.parquet as pq; print(pq.read_schema(sys.argv[1]).names, pq.read_schema(sys.argv[2]).names)",
        one.join("train.parquet").to_str().unwrap(),
        one.join("views/train.parquet").to_str().unwrap(),
    ]);
    assert_eq!(
        cols.trim(),
        "['path', 'class', 'label', 'sha256', 'features'] ['path', 'class', 'label', 'sha256', 'features', 'view']"
    );
    let reseeded = tmp.path().join("s6");
    let mut args = with("2", &[]);
    args[3] = "6";
    extract_ok(&cache, &data, &model, &reseeded, &args);
    assert!(max_diff(&views(&reseeded).features, &a.features) > 1e-3);
    assert!(
        !reseeded.join("views/validation.parquet").exists(),
        "training split only"
    );
}

#[test]
fn views_cache_is_incremental_and_keyed_by_the_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache, out) = (
        tmp.path().join("data"),
        tmp.path().join("cache"),
        tmp.path().join("out"),
    );
    dataset(&data, &["train", "validation"], &["a", "b"], 3);
    let model = tiny_model(8, 3);
    let run = |args: &[&str]| extract_ok(&cache, &data, &model, &out, args);
    assert_eq!(run(&with("2", &[])).encoded, 6 + 12 + 6);
    let first = views(&out);
    let again = run(&with("2", &[]));
    assert_eq!((again.encoded, again.reused), (0, 24), "nothing to redo");
    assert_eq!(views(&out), first);

    // One more view: only view 3 of each image is encoded.
    let c = run(&with("3", &[]));
    assert_eq!((c.rows, c.encoded, c.reused), (6 + 18 + 6, 6, 24));
    let three = views(&out);
    let keep: Vec<usize> = (0..three.len()).filter(|&i| three.views[i] < 3).collect();
    let kept = three.select(&keep);
    assert_eq!(
        (&kept.paths, &kept.views, &kept.features),
        (&first.paths, &first.views, &first.features),
        "views 1 and 2 unchanged"
    );

    // Another setting re-encodes the views, never the plain rows.
    let (code, err) = extract(&cache, &data, &model, &out, &with("3", &["--shear", "5"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("settings (shear 10.0 -> 5.0)"), "{err}");
    assert_eq!(crate::extract::counts(&err).encoded, 18);

    // A changed image: its plain row and its views, nothing else.
    image(&data.join("train/b/001.png"), 30, 30, 999);
    let c = run(&with("3", &["--shear", "5"]));
    assert_eq!(c.encoded, 1 + 3);

    // A run without --augment leaves the views alone; train --views then
    // finds them stale for the image changed since.
    image(&data.join("train/a/000.png"), 31, 30, 998);
    assert_eq!(run(&[]).encoded, 1);
    assert_eq!(views(&out).len(), 18);
    xfer(&cache)
        .args(["train", "--epochs", "1", "--views", "--features"])
        .arg(&out)
        .arg("--out")
        .arg(tmp.path().join("run"))
        .assert()
        .code(2)
        .stderr(contains("3 of 18 views are missing or older than").and(contains("a/000.png")));
}

#[test]
fn sizes_150_and_299_never_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache) = (tmp.path().join("data"), tmp.path().join("cache"));
    dataset(&data, &["train", "validation"], &["a", "b"], 2);
    let model = tiny_model(8, 3);
    let out = tmp.path().join("out");
    let size = |s: &'static str| with("1", &["--size", s]);
    extract_ok(&cache, &data, &model, &out, &size("150"));
    let v150 = views(&out);
    assert_eq!(v150.meta.size, "150x150");

    // 299 into the same folder: everything re-encoded, nothing from 150 kept.
    let (code, err) = extract(&cache, &data, &model, &out, &size("299"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "train.parquet: not reused: made with xfer.size=150x150, this run has 299x299"
        ) && err.contains("views/train.parquet: not reused: made with xfer.size=150x150"),
        "{err}"
    );
    assert_eq!(crate::extract::counts(&err).encoded, 4 + 4 + 4);
    let fresh = tmp.path().join("fresh299");
    extract_ok(&cache, &data, &model, &fresh, &size("299"));
    for split in ["train", "validation"] {
        assert_eq!(
            read_split(&out, split).unwrap(),
            read_split(&fresh, split).unwrap()
        );
    }
    assert_eq!(views(&out), views(&fresh));
    assert_eq!(views(&out).meta.size, "299x299");
    assert!(max_diff(&views(&out).features, &v150.features) > 1e-3);

    // Views of another size beside a split are refused by train, by name.
    let f150 = tmp.path().join("f150");
    extract_ok(&cache, &data, &model, &f150, &size("150"));
    std::fs::copy(
        f150.join("views/train.parquet"),
        fresh.join("views/train.parquet"),
    )
    .unwrap();
    xfer(&cache)
        .args(["train", "--epochs", "1", "--views", "--features"])
        .arg(&fresh)
        .arg("--out")
        .arg(tmp.path().join("run"))
        .assert()
        .code(2)
        .stderr(contains("xfer.size").and(contains("views/train.parquet")));
}

fn train(cache: &Path, features: &Path, out: &Path, extra: &[&str]) {
    xfer(cache)
        .args(["train", "--epochs", "4", "--seed", "9", "--lr", "0.05"])
        .arg("--features")
        .arg(features)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
        .success();
}

#[test]
fn train_with_views_k0_is_the_plain_run_and_views_change_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache) = (tmp.path().join("data"), tmp.path().join("cache"));
    dataset(&data, &["train", "validation"], &["a", "b"], 6);
    let model = tiny_model(8, 3);
    let read = |run: &str, file: &str| std::fs::read(tmp.path().join(run).join(file)).unwrap();
    // Head files compare by their tensors and metadata (the safetensors
    // header's key order is not fixed from one write to the next).
    let head = |run: &str, file: &str| Head::load(&tmp.path().join(run).join(file)).unwrap();

    // K = 0: an empty views file, and --views changes nothing.
    let f0 = tmp.path().join("f0");
    let c = extract_ok(&cache, &data, &model, &f0, &with("0", &[]));
    assert_eq!((c.rows, views(&f0).len()), (24, 0));
    train(&cache, &f0, &tmp.path().join("plain"), &[]);
    train(&cache, &f0, &tmp.path().join("k0"), &["--views"]);
    assert_eq!(read("plain", "history.json"), read("k0", "history.json"));
    for file in ["head.safetensors", "last.safetensors"] {
        assert_eq!(head("plain", file), head("k0", file), "{file}");
    }

    // K = 2: other rows each epoch, the same ones for the same seed; the
    // validation rows (and so the plain run's inputs) are untouched.
    let f2 = tmp.path().join("f2");
    extract_ok(&cache, &data, &model, &f2, &with("2", &[]));
    train(&cache, &f2, &tmp.path().join("k2"), &["--views"]);
    train(&cache, &f2, &tmp.path().join("k2again"), &["--views"]);
    train(&cache, &f2, &tmp.path().join("plain2"), &[]);
    assert_eq!(
        read("plain2", "history.json"),
        read("plain", "history.json")
    );
    assert_ne!(read("k2", "history.json"), read("plain", "history.json"));
    assert_eq!(read("k2", "history.json"), read("k2again", "history.json"));
    let run: serde_json::Value = serde_json::from_slice(&read("k2", "run.json")).unwrap();
    assert_eq!(run["views"]["per_image"], 2);
    assert_eq!(run["train_rows"], 12, "an epoch has one row per image");
}

#[test]
fn views_flags_and_missing_views_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache) = (tmp.path().join("data"), tmp.path().join("cache"));
    dataset(&data, &["train", "validation"], &["a", "b"], 2);
    let model = tiny_model(8, 3);
    let out = tmp.path().join("out");
    let (code, err) = extract(&cache, &data, &model, &out, &["--rotation", "10"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--augment"), "{err}");
    let (code, err) = extract(
        &cache,
        &data,
        &model,
        &out,
        &["--augment", "2", "--zoom", "1"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--zoom: 1 is not in [0, 1)"), "{err}");
    let only_val = tmp.path().join("val");
    dataset(&only_val, &["validation"], &["a", "b"], 1);
    let (code, err) = extract(&cache, &only_val, &model, &out, &with("1", &[]));
    assert_eq!(code, 2);
    assert!(
        err.contains("--augment makes views of the `train` split"),
        "{err}"
    );

    extract_ok(&cache, &data, &model, &out, &[]);
    xfer(&cache)
        .args(["train", "--views", "--features"])
        .arg(&out)
        .arg("--out")
        .arg(tmp.path().join("run"))
        .assert()
        .code(2)
        .stderr(contains("no augmented views").and(contains("xfer extract --augment K")));
}
