//! `xfer train` and `xfer eval` end to end, on generated vectors written with
//! `xfer_features::write_file` (no images, no model): a normal run and its
//! files, reproducibility, `--init`, a sweep, a diverging configuration
//! beside finishing ones, every bad input of issue 4, the baseline, and
//! `eval` on a case small enough to check by hand.
use std::path::{Path, PathBuf};

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use serde_json::Value;
use xfer_features::{write_file, FeatureMeta, FeatureTable};
use xfer_train::head::{Dense, Head};

use crate::util::xfer;

const CLASSES: [&str; 3] = ["dress", "hat", "shoes"];

fn meta(dim: usize) -> FeatureMeta {
    let mut m = FeatureMeta::new(CLASSES.iter().map(|s| s.to_string()).collect(), dim);
    m.backbone = "tiny".into();
    m.model_sha256 = "ab".repeat(32);
    m.size = "32x32".into();
    m.preprocess = "tf".into();
    m
}

/// `n` rows of `dim` features: class `i % 3`, its own feature raised, the
/// rest a deterministic jitter, so a head learns it in a few epochs.
fn table(n: usize, dim: usize, salt: usize) -> FeatureTable {
    let mut t = FeatureTable::empty(meta(dim));
    let mut rows: Vec<(i32, Vec<f32>, String)> = (0..n)
        .map(|i| {
            let label = (i % 3) as i32;
            let v = (0..dim)
                .map(|j| {
                    let jitter = ((i * 31 + j * 17 + salt * 7) % 13) as f32 / 13.0;
                    jitter + if j == label as usize { 1.5 } else { 0.0 }
                })
                .collect();
            (label, v, format!("{}/{i:04}.jpg", CLASSES[label as usize]))
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    for (label, v, path) in rows {
        t.push(path, label, [0; 32], &v, 0).unwrap();
    }
    t
}

/// A features folder with `train` (60 rows) and `validation` (30 rows).
fn features(dir: &Path, dim: usize) -> PathBuf {
    let f = dir.join("features");
    write_file(&f.join("train.parquet"), &table(60, dim, 0)).unwrap();
    write_file(&f.join("validation.parquet"), &table(30, dim, 1)).unwrap();
    f
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn train(tmp: &Path, f: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = xfer(tmp);
    cmd.arg("train")
        .arg("--features")
        .arg(f)
        .arg("--out")
        .arg(out);
    cmd.args(extra).assert()
}

#[test]
fn train_writes_the_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let f = features(tmp.path(), 8);
    let run = tmp.path().join("run");
    let out = train(
        tmp.path(),
        &f,
        &run,
        &[
            "--epochs",
            "4",
            "--seed",
            "3",
            "--batch-size",
            "8",
            "--lr",
            "0.05",
        ],
    )
    .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("Epoch 4/4 - loss: "), "{stdout}");

    let h = json(&run.join("history.json"));
    for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
        assert_eq!(floats(&h[key]).len(), 4, "{key}");
    }
    let val_acc = floats(&h["val_accuracy"]);
    assert!(
        val_acc[3] > 0.9,
        "a separable problem is learned: {val_acc:?}"
    );
    let loss = floats(&h["loss"]);
    assert!(loss[3] < loss[0], "{loss:?}");

    let csv = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "epoch,accuracy,loss,val_accuracy,val_loss");
    assert_eq!(lines.len(), 5);
    assert!(lines[1].starts_with("0,"));

    let r = json(&run.join("run.json"));
    assert_eq!(r["seed"], 3);
    assert_eq!(r["lr"], 0.05);
    assert_eq!(r["batch_size"], 8);
    assert_eq!(r["epochs"], 4);
    assert_eq!(r["shuffle"], true);
    assert_eq!(r["status"], "finished");
    assert_eq!(r["optimizer"]["name"], "Adam");
    assert_eq!(r["optimizer"]["epsilon"], 1e-7);
    assert_eq!(r["train_rows"], 60);
    let best = r["best_epoch"].as_u64().unwrap() as usize;
    let best_acc = val_acc.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(
        val_acc[best - 1],
        best_acc,
        "best epoch = first max of val_accuracy"
    );
    assert_eq!(
        val_acc.iter().position(|&v| v == best_acc).unwrap() + 1,
        best
    );

    let m = json(&run.join("metrics.json"));
    assert_eq!(m["split"], "validation");
    assert_eq!(m["epoch"].as_u64().unwrap() as usize, best);
    let confusion = m["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 3);
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 30);
    assert_eq!(m["per_class"].as_array().unwrap().len(), 3);
    assert!((m["accuracy"].as_f64().unwrap() - best_acc).abs() < 1e-6);

    let head = Head::load(&run.join("head.safetensors")).unwrap();
    assert_eq!(head.meta().classes, meta(8).classes);
    assert_eq!(head.meta().model_sha256, meta(8).model_sha256);
    assert_eq!(head.inner_size(), None);
    let last = Head::load(&run.join("last.safetensors")).unwrap();
    assert_eq!(last.dense().kernel.len(), 8 * 3);
    let png = std::fs::read(run.join("curves.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(std::fs::read_dir(&run).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

#[test]
fn same_seed_same_history_and_init_reproduces() {
    let tmp = tempfile::tempdir().unwrap();
    let f = features(tmp.path(), 6);
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let args = [
        "--epochs",
        "2",
        "--seed",
        "9",
        "--inner",
        "5",
        "--dropout",
        "0.3",
    ];
    train(tmp.path(), &f, &a, &args).success();
    train(tmp.path(), &f, &b, &args).success();
    let (ha, hb) = (json(&a.join("history.json")), json(&b.join("history.json")));
    assert_eq!(ha, hb);
    assert_eq!(
        Head::load(&a.join("head.safetensors"))
            .unwrap()
            .inner_size(),
        Some(5)
    );

    // --init: the inner width comes from the head; same start, same history.
    let init = a.join("last.safetensors");
    let init_args = [
        "--epochs",
        "2",
        "--no-shuffle",
        "--init",
        init.to_str().unwrap(),
    ];
    train(tmp.path(), &f, &c, &init_args).success();
    let hc = json(&c.join("history.json"));
    train(tmp.path(), &f, &b, &init_args).success();
    assert_eq!(hc, json(&b.join("history.json")));
    assert_eq!(
        Head::load(&c.join("last.safetensors"))
            .unwrap()
            .inner_size(),
        Some(5)
    );
    train(
        tmp.path(),
        &f,
        &c,
        &["--init", init.to_str().unwrap(), "--inner", "7"],
    )
    .code(2)
    .stderr(contains("--inner").and(contains("--init")));
}

#[test]
fn sweep_runs_every_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let f = features(tmp.path(), 6);
    let run = tmp.path().join("sweep");
    let out = train(
        tmp.path(),
        &f,
        &run,
        &[
            "--lr",
            "0.001,0.01",
            "--inner",
            "0,4",
            "--dropout",
            "0,0.2",
            "--epochs",
            "3",
            "--seed",
            "1",
            "--threads",
            "2",
        ],
    )
    .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("best: "), "{stdout}");
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 9, "{csv}");
    assert!(lines[0].starts_with("name,lr,inner,dropout,status"));
    for name in ["lr0.001-inner0-dropout0", "lr0.01-inner4-dropout0.2"] {
        assert!(csv.contains(name), "{name} in {csv}");
        let r = json(&run.join(name).join("run.json"));
        assert_eq!(r["status"], "finished");
        assert!(run.join(name).join("head.safetensors").exists());
    }
    let r = json(&run.join("lr0.01-inner4-dropout0.2/run.json"));
    assert_eq!(r["head"]["inner"], 4);
    assert_eq!(r["head"]["dropout"], 0.2);
    assert_eq!(&std::fs::read(run.join("sweep.png")).unwrap()[1..4], b"PNG");
}

#[test]
fn diverging_configuration_does_not_stop_the_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let f = features(tmp.path(), 6);
    let run = tmp.path().join("sweep");
    train(
        tmp.path(),
        &f,
        &run,
        &["--lr", "1e38,0.01", "--epochs", "3", "--seed", "1"],
    )
    .success()
    .stderr(contains("1 of 2 configurations diverged"))
    .stdout(contains("best: lr0.01"));
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    let row = |name: &str| {
        csv.lines()
            .find(|l| l.starts_with(&format!("{name},")))
            .unwrap()
            .to_string()
    };
    assert!(row("lr1e38").contains(",diverged,"), "{csv}");
    assert!(row("lr0.01").contains(",finished,"), "{csv}");
    let r = json(&run.join("lr1e38/run.json"));
    assert!(
        r["message"].as_str().unwrap().contains("NaN or infinite"),
        "{r}"
    );

    // A single diverging run says so and exits 1.
    train(
        tmp.path(),
        &f,
        &tmp.path().join("one"),
        &["--lr", "1e38", "--seed", "1"],
    )
    .code(1)
    .stderr(contains("diverged").and(contains("--lr")));
}

/// Each bad input of issue 4: a clear message naming the file or flag, exit 2.
#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let good = features(t, 4);
    let run = t.join("run");
    let cases: Vec<(&[&str], &str)> = vec![
        (&["--lr", "0"], "--lr: must be a positive finite number"),
        (&["--lr", "-0.1"], "--lr: must be a positive"),
        (&["--lr", "0.01,nan"], "--lr"),
        (&["--epochs", "0"], "--epochs: must be at least 1"),
        (&["--batch-size", "0"], "--batch-size: must be at least 1"),
        (&["--dropout", "1"], "--dropout: must be in [0, 1)"),
        (&["--dropout", "-0.2"], "--dropout: must be in [0, 1)"),
        (&["--val", "test"], "no feature file for split `test`"),
    ];
    for (args, message) in cases {
        train(t, &good, &run, args)
            .code(2)
            .stderr(contains(message));
    }
    assert!(!run.exists(), "no run folder for refused input");

    let broken = |name: &str, edit: &dyn Fn(&mut FeatureTable, &mut FeatureTable)| {
        let f = t.join(name);
        let (mut tr, mut va) = (table(12, 4, 0), table(6, 4, 1));
        edit(&mut tr, &mut va);
        write_file(&f.join("train.parquet"), &tr).unwrap();
        write_file(&f.join("validation.parquet"), &va).unwrap();
        f
    };
    let f = broken("empty", &|_, va| *va = va.select(&[]));
    train(t, &f, &run, &[])
        .code(2)
        .stderr(contains("validation.parquet").and(contains("holds no rows")));
    let f = broken("nan", &|tr, _| tr.features[5] = f32::NAN);
    train(t, &f, &run, &[])
        .code(2)
        .stderr(contains("train.parquet: row 1").and(contains("NaN")));
    let f = broken("inf", &|_, va| va.features[2] = f32::INFINITY);
    train(t, &f, &run, &[])
        .code(2)
        .stderr(contains("validation.parquet: row 0").and(contains("inf")));
    let f = broken("mismatch", &|_, va| va.meta.size = "299x299".into());
    train(t, &f, &run, &[]).code(2).stderr(
        contains("validation.parquet")
            .and(contains("xfer.size"))
            .and(contains("train.parquet")),
    );
    let f = broken("classes", &|_, va| va.meta.classes[2] = "boots".into());
    train(t, &f, &run, &[])
        .code(2)
        .stderr(contains("xfer.classes"));
    let f = broken("noclass", &|tr, _| {
        let keep: Vec<usize> = (0..tr.len()).filter(|&i| tr.labels[i] != 1).collect();
        *tr = tr.select(&keep);
    });
    train(t, &f, &run, &[])
        .code(2)
        .stderr(contains("class `hat` has no rows").and(contains("train.parquet")));
    let f = t.join("garbage");
    std::fs::create_dir_all(&f).unwrap();
    std::fs::write(f.join("train.parquet"), b"not parquet").unwrap();
    std::fs::copy(
        good.join("validation.parquet"),
        f.join("validation.parquet"),
    )
    .unwrap();
    train(t, &f, &run, &[])
        .code(2)
        .stderr(contains("train.parquet"));

    // A head made for other vectors is refused as --init.
    let mut other = meta(4);
    other.backbone = "xception".into();
    let head = t.join("other.safetensors");
    Head::glorot(other, None, 1).save(&head).unwrap();
    train(t, &good, &run, &["--init", head.to_str().unwrap()])
        .code(2)
        .stderr(contains("other.safetensors").and(contains("xfer.backbone")));
}

#[test]
fn baseline_is_reported_beside_the_head() {
    let tmp = tempfile::tempdir().unwrap();
    let f = features(tmp.path(), 5);
    let run = tmp.path().join("run");
    train(
        tmp.path(),
        &f,
        &run,
        &["--epochs", "2", "--baseline", "--seed", "1"],
    )
    .success()
    .stdout(contains(
        "baseline (linfa-logistic MultiLogisticRegression): val_accuracy",
    ));
    let b = json(&run.join("baseline.json"));
    assert!(b["val_accuracy"].as_f64().unwrap() > 0.9, "{b}");
    assert_eq!(
        json(&run.join("run.json"))["baseline"]["val_accuracy"],
        b["val_accuracy"]
    );
}

/// Two classes, vectors `[1, 0]` or `[0, 1]`, and a head whose logits are
/// the vector itself: it predicts the larger coordinate.
///
/// ```text
/// row  vector  true  predicted
/// 0    [1, 0]  dress dress
/// 1    [0, 1]  hat   hat
/// 2    [1, 0]  hat   dress   <- the one mistake
/// 3    [0, 1]  hat   hat
/// ```
///
/// accuracy 3/4; confusion (rows = true) [[1, 0], [1, 2]];
/// dress: precision 1/2, recall 1/1; hat: precision 2/2, recall 2/3.
#[test]
fn eval_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = meta(2);
    m.classes = vec!["dress".into(), "hat".into()];
    let mut t = FeatureTable::empty(m.clone());
    for (i, (v, label)) in [
        ([1.0, 0.0], 0),
        ([0.0, 1.0], 1),
        ([1.0, 0.0], 1),
        ([0.0, 1.0], 1),
    ]
    .iter()
    .enumerate()
    {
        t.push(
            format!("{}/{i}.jpg", m.classes[*label as usize]),
            *label,
            [0; 32],
            v,
            0,
        )
        .unwrap();
    }
    let f = tmp.path().join("features");
    write_file(&f.join("test.parquet"), &t).unwrap();
    let dense = Dense {
        inputs: 2,
        outputs: 2,
        kernel: vec![1.0, 0.0, 0.0, 1.0],
        bias: vec![0.0, 0.0],
    };
    let head_path = tmp.path().join("run/head.safetensors");
    Head::from_layers(m.clone(), None, dense)
        .unwrap()
        .save(&head_path)
        .unwrap();

    let out = xfer(tmp.path())
        .args(["eval", "--split", "test", "--json", "--features"])
        .arg(&f)
        .arg("--head")
        .arg(&head_path)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["accuracy"], 0.75);
    assert_eq!(r["classes"], serde_json::json!(["dress", "hat"]));
    assert_eq!(r["confusion"], serde_json::json!([[1, 0], [1, 2]]));
    let pc = &r["per_class"];
    assert_eq!(
        (pc[0]["precision"].as_f64(), pc[0]["recall"].as_f64()),
        (Some(0.5), Some(1.0))
    );
    assert_eq!(pc[1]["precision"].as_f64(), Some(1.0));
    assert!((pc[1]["recall"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert!((pc[1]["f1"].as_f64().unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(pc[1]["support"], 3);
    assert_eq!(json(&tmp.path().join("run/eval-test.json")), r);
    assert_eq!(
        &std::fs::read(tmp.path().join("run/confusion.png")).unwrap()[1..4],
        b"PNG"
    );

    // The table form names the numbers too.
    xfer(tmp.path())
        .args(["eval", "--split", "test", "--features"])
        .arg(&f)
        .arg("--head")
        .arg(&head_path)
        .arg("--out")
        .arg(tmp.path().join("elsewhere/e.json"))
        .assert()
        .success()
        .stdout(contains("accuracy 0.7500").and(contains("hat")));
    assert!(tmp.path().join("elsewhere/confusion.png").exists());

    // Vectors from another model are refused.
    let mut other = m.clone();
    other.model_sha256 = "cd".repeat(32);
    let mut t2 = t.clone();
    t2.meta = other;
    write_file(&f.join("other.parquet"), &t2).unwrap();
    xfer(tmp.path())
        .args(["eval", "--split", "other", "--features"])
        .arg(&f)
        .arg("--head")
        .arg(&head_path)
        .assert()
        .code(2)
        .stderr(contains("xfer.model_sha256").and(contains("head.safetensors")));
}

/// The files and folders directly inside `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Issue 13: a run folder never holds files of another run. A sweep into
/// the folder of a single run leaves only the sweep's files, and the
/// reverse; nothing is left beside `--out`.
#[test]
fn a_run_replaces_its_folder_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let f = features(tmp.path(), 6);
    let runs = tmp.path().join("runs");
    let run = runs.join("x");
    let single = ["--epochs", "2", "--seed", "1"];
    let sweep = ["--epochs", "2", "--seed", "1", "--lr", "0.001,0.01"];
    let single_files = vec![
        "curves.png",
        "head.safetensors",
        "history.csv",
        "history.json",
        "last.safetensors",
        "metrics.json",
        "run.json",
    ];
    let sweep_files = vec!["lr0.001", "lr0.01", "summary.csv", "sweep.png"];

    train(tmp.path(), &f, &run, &single).success();
    assert_eq!(listing(&run), single_files);
    // The paths printed are the final ones, not the folder written first.
    train(tmp.path(), &f, &run, &sweep).success().stdout(
        contains(format!("-> {}", run.join("lr0.0").display())).and(contains(".xfer-").not()),
    );
    assert_eq!(listing(&run), sweep_files);
    assert_eq!(listing(&run.join("lr0.01")), single_files);
    train(tmp.path(), &f, &run, &single).success();
    assert_eq!(listing(&run), single_files);
    // The single run's eval and report outputs go with it too.
    std::fs::write(run.join("eval-validation.json"), "{}").unwrap();
    train(tmp.path(), &f, &run, &single).success();
    assert_eq!(listing(&run), single_files);
    assert_eq!(listing(&runs), vec!["x"], "no staging folder left");
}

/// Issue 13: an `--out` that is not empty and not a run folder is the
/// user's: refused with its name, before any work, and left as it was.
#[test]
fn a_folder_that_is_not_a_run_is_refused_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let f = features(tmp.path(), 6);
    let mine = tmp.path().join("mine");
    std::fs::create_dir_all(mine.join("notes")).unwrap();
    std::fs::write(mine.join("thesis.tex"), "keep me").unwrap();
    train(tmp.path(), &f, &mine, &["--epochs", "1"])
        .code(2)
        .stdout("")
        .stderr(
            contains(mine.display().to_string())
                .and(contains("not an xfer run folder"))
                .and(contains("Epoch").not()),
        );
    assert_eq!(listing(&mine), vec!["notes", "thesis.tex"]);
    assert_eq!(std::fs::read(mine.join("thesis.tex")).unwrap(), b"keep me");
    assert_eq!(listing(tmp.path()), vec!["features", "mine"]);

    // A run whose training fails leaves the previous run as it was.
    let run = tmp.path().join("run");
    train(tmp.path(), &f, &run, &["--epochs", "1"]).success();
    let before = std::fs::read(run.join("history.json")).unwrap();
    train(
        tmp.path(),
        &f,
        &run,
        &["--epochs", "1", "--train", "nosuchsplit"],
    )
    .code(2);
    assert_eq!(std::fs::read(run.join("history.json")).unwrap(), before);
    // An empty folder is taken.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    train(tmp.path(), &f, &empty, &["--epochs", "1"]).success();
    assert!(empty.join("run.json").exists());
}
