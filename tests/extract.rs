//! `xfer extract` end to end on the tiny ONNX base and generated images:
//! order and schema (read back by pyarrow, pandas, DuckDB and compared with
//! Keras's walk and ONNX Runtime on PIL pixels), the incremental cache, a
//! `kill -9` in the middle of a run, a corpus of bad files, shards, and the
//! pixels of real images against PIL.
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{clothing, ort_lib, run_python, skipped, tiny_model, xfer};
use xfer_features::{read_file, read_split, FeatureTable};

/// Side of the model input in these tests (small: fast).
pub(crate) const SIZE: &str = "32";

/// A deterministic image of `w x h` (PNG, JPEG, BMP... by extension).
pub(crate) fn image(path: &Path, w: u32, h: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = x
            .wrapping_mul(31)
            .wrapping_add(y.wrapping_mul(17))
            .wrapping_add(seed.wrapping_mul(101));
        image::Rgb([
            (v % 256) as u8,
            ((v / 3 + seed * 7) % 256) as u8,
            ((x * y + seed) % 256) as u8,
        ])
    });
    img.save(path).unwrap();
}

/// `DATA/<split>/<class>/<n>.png` with `per_class` images per class.
pub(crate) fn dataset(root: &Path, splits: &[&str], classes: &[&str], per_class: u32) {
    for (si, s) in splits.iter().enumerate() {
        for (ci, c) in classes.iter().enumerate() {
            for i in 0..per_class {
                let seed = si as u32 * 1000 + ci as u32 * 100 + i;
                image(
                    &root.join(s).join(c).join(format!("{i:03}.png")),
                    20 + i % 7,
                    15 + i % 5,
                    seed,
                );
            }
        }
    }
}

/// Counts from the closing summary line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) rows: usize,
    pub(crate) encoded: usize,
    pub(crate) reused: usize,
    pub(crate) skipped: usize,
}

pub(crate) fn counts(stderr: &str) -> Counts {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("xfer extract: ") && l.contains(" images: "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .take(4)
        .map(|t| t.parse().unwrap())
        .collect();
    Counts {
        rows: nums[0],
        encoded: nums[1],
        reused: nums[2],
        skipped: nums[3],
    }
}

/// Runs `xfer extract` and returns (exit status, stderr).
pub(crate) fn extract(
    cache: &Path,
    data: &Path,
    model: &Path,
    out: &Path,
    extra: &[&str],
) -> (i32, String) {
    let mut cmd = xfer(cache);
    cmd.args(["extract", "--device", "cpu"]);
    if !extra.contains(&"--batch-size") {
        cmd.args(["--batch-size", "8"]);
    }
    if !extra.contains(&"--size") {
        cmd.args(["--size", SIZE]);
    }
    let output = cmd
        .arg("--data")
        .arg(data)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub(crate) fn extract_ok(
    cache: &Path,
    data: &Path,
    model: &Path,
    out: &Path,
    extra: &[&str],
) -> Counts {
    let (code, err) = extract(cache, data, model, out, extra);
    assert_eq!(code, 0, "xfer extract failed:\n{err}");
    counts(&err)
}

fn check_pixels(args: &[&str]) -> String {
    let mut all = vec!["scripts/check_pixels.py"];
    all.extend_from_slice(args);
    run_python(&all)
}

#[test]
fn order_schema_and_vectors_match_keras() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Names that catch sorting shortcuts: classes "a" < "a b" < "b"; files
    // as strings ("10" < "8" < "9" < "Z"), then the sub-folder's files.
    for (split, n) in [("train", 3u32), ("validation", 2)] {
        for class in ["b", "a b", "a"] {
            for i in 0..n {
                image(
                    &data.join(split).join(class).join(format!("{}.png", 10 - i)),
                    17,
                    13,
                    i,
                );
            }
            image(&data.join(split).join(class).join("x/inner.JPG"), 40, 30, 9);
            image(&data.join(split).join(class).join("Z.bmp"), 8, 8, 3);
            std::fs::write(
                data.join(split).join(class).join("notes.txt"),
                b"not an image",
            )
            .unwrap();
        }
    }
    let model = tiny_model(8, 0);
    let out = tmp.path().join("features");
    let c = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!(
        c,
        Counts {
            rows: 3 * (3 + 2) + 3 * (2 + 2),
            encoded: 27,
            reused: 0,
            skipped: 0
        }
    );

    let train = read_split(&out, "train").unwrap();
    assert_eq!(train.meta.classes, ["a", "a b", "b"]);
    assert_eq!(
        &train.paths[..5],
        [
            "train/a/10.png",
            "train/a/8.png",
            "train/a/9.png",
            "train/a/Z.bmp",
            "train/a/x/inner.JPG"
        ]
    );
    assert_eq!(train.meta.size, "32x32");
    assert_eq!(train.meta.backbone, "tiny");
    assert_eq!(train.meta.resize, "nearest");
    assert_eq!(train.meta.preprocess, "tf");
    assert_eq!(train.meta.dim, 8);
    let report = check_pixels(&[
        "--features",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert!(report.contains(": OK;"), "{report}");
    assert!(
        !out.join(".parts").exists(),
        "parts are removed after a run"
    );
}

#[test]
fn cache_reuses_and_invalidates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train", "validation"], &["cat", "dog"], 5);
    let model = tiny_model(8, 0);
    let out = tmp.path().join("f");
    let first = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!((first.encoded, first.reused), (20, 0));
    let before = read_split(&out, "train").unwrap();

    let again = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!(
        (again.encoded, again.reused),
        (0, 20),
        "unchanged data encodes nothing"
    );
    assert_eq!(read_split(&out, "train").unwrap(), before);

    image(&data.join("train/cat/new1.png"), 21, 21, 77);
    image(&data.join("train/dog/new2.png"), 22, 19, 78);
    let added = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!((added.encoded, added.reused, added.rows), (2, 20, 22));

    image(&data.join("train/cat/001.png"), 30, 30, 999); // new bytes, same name
    std::fs::remove_file(data.join("train/dog/004.png")).unwrap();
    let changed = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!((changed.encoded, changed.reused, changed.rows), (1, 20, 21));
    let train = read_split(&out, "train").unwrap();
    assert!(
        !train.paths.contains(&"train/dog/004.png".to_string()),
        "deleted file left the output"
    );
    let i = train
        .paths
        .iter()
        .position(|p| p == "train/cat/001.png")
        .unwrap();
    let j = before
        .paths
        .iter()
        .position(|p| p == "train/cat/001.png")
        .unwrap();
    assert_ne!(train.row(i), before.row(j), "changed file re-encoded");

    // Another model, size or resize: everything again, never mixed.
    let other = tiny_model(8, 1);
    let m = extract_ok(tmp.path(), &data, &other, &out, &[]);
    assert_eq!((m.encoded, m.reused), (21, 0));
    let s = extract_ok(tmp.path(), &data, &other, &out, &["--size", "24"]);
    assert_eq!((s.encoded, s.reused), (21, 0));
    let r = extract_ok(
        tmp.path(),
        &data,
        &other,
        &out,
        &["--size", "24", "--resize", "bilinear"],
    );
    assert_eq!((r.encoded, r.reused), (21, 0));
    let t = read_split(&out, "train").unwrap();
    assert_eq!(
        (t.meta.size.as_str(), t.meta.resize.as_str()),
        ("24x24", "bilinear")
    );
    let back = extract_ok(
        tmp.path(),
        &data,
        &other,
        &out,
        &["--size", "24", "--resize", "bilinear"],
    );
    assert_eq!(back.encoded, 0);
}

#[test]
fn quiet_prints_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train"], &["a"], 2);
    let (code, err) = extract(
        tmp.path(),
        &data,
        &tiny_model(8, 0),
        &tmp.path().join("f"),
        &["--quiet"],
    );
    assert_eq!((code, err.as_str()), (0, ""));
}

#[test]
fn kill_9_mid_run_loses_nothing_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train"], &["a", "b"], 150);
    let model = tiny_model(8, 0);
    let out = tmp.path().join("f");
    let parts = out.join(".parts/train");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xfer"))
        .env("XDG_CACHE_HOME", tmp.path())
        .env("ORT_DYLIB_PATH", ort_lib())
        .args([
            "extract",
            "--device",
            "cpu",
            "--size",
            SIZE,
            "--batch-size",
            "1",
            "--threads",
            "1",
            "--quiet",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    while count(&parts) < 5 && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !out.join("train.parquet").exists(),
        "the run finished before the kill; make it longer"
    );
    // Every Parquet file left behind is complete.
    let mut done = 0;
    for e in std::fs::read_dir(&parts).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "parquet") {
            done += read_file(&e.path()).unwrap().len();
        }
    }
    assert!(done >= 4, "{done} rows finished before the kill");

    let resumed = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!(resumed.rows, 300);
    assert_eq!(resumed.encoded + resumed.reused, 300);
    assert!(
        resumed.reused >= done && resumed.encoded <= 300 - done,
        "{resumed:?} after {done} finished"
    );
    let clean = tmp.path().join("clean");
    extract_ok(tmp.path(), &data, &model, &clean, &[]);
    assert_eq!(
        read_split(&out, "train").unwrap(),
        read_split(&clean, "train").unwrap()
    );
    assert!(!out.join(".parts").exists());
}

#[test]
fn bad_files_are_skipped_listed_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let c = data.join("train/c");
    image(&c.join("good.png"), 20, 20, 1);
    image(&c.join("good.jpg"), 200, 150, 2);
    std::fs::write(c.join("empty.png"), b"").unwrap();
    std::fs::write(c.join("text.jpg"), b"just some text, not a JPEG\n").unwrap();
    let jpeg = std::fs::read(c.join("good.jpg")).unwrap();
    std::fs::write(c.join("truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let mut png = std::fs::read(c.join("good.png")).unwrap();
    let n = png.len();
    png[n / 2] ^= 0xff; // breaks the IDAT CRC
    std::fs::write(c.join("corrupt.png"), &png).unwrap();
    std::fs::write(c.join("bomb.png"), bomb_png(30_000, 30_000)).unwrap();
    std::os::unix::fs::symlink(c.join("missing-target.png"), c.join("dangling.png")).unwrap();
    std::fs::create_dir_all(c.join("folder.jpg")).unwrap(); // a folder is walked, not read
    let weird = std::ffi::OsStr::from_bytes(b"latin1-\xe9.png");
    std::fs::copy(c.join("good.png"), c.join(weird)).unwrap();
    let fifo = c.join("fifo.png");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let unreadable = c.join("unreadable.png");
    std::fs::copy(c.join("good.png"), &unreadable).unwrap();
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let root = std::fs::read(&unreadable).is_ok();
    if root {
        skipped(
            "extract::bad_files_are_skipped_listed_and_counted",
            "running as root, permission bits do not stop reads; the unreadable file is not checked",
        );
    }

    let model = tiny_model(8, 0);
    let out = tmp.path().join("f");
    let (code, err) = extract(tmp.path(), &data, &model, &out, &[]);
    assert_eq!(code, 0, "{err}");
    let expected_bad = if root { 8 } else { 9 };
    let got = counts(&err);
    assert_eq!(
        (got.rows, got.skipped),
        (if root { 3 } else { 2 }, expected_bad),
        "{err}"
    );
    let csv = std::fs::read_to_string(out.join("train.errors.csv")).unwrap();
    for (name, reason) in [
        ("train/c/empty.png", "empty file"),
        ("train/c/text.jpg", "cannot identify image file"),
        ("train/c/truncated.jpg", "truncated"),
        ("train/c/corrupt.png", "broken PNG"),
        ("train/c/bomb.png", "decompression bomb"),
        ("train/c/dangling.png", "cannot read"),
        ("train/c/latin1-\\xe9.png", "not valid UTF-8"),
        ("train/c/fifo.png", "not a regular file"),
    ] {
        let line = csv
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{csv}"));
        assert!(line.contains(reason), "{line}");
    }
    if !root {
        assert!(csv.contains("train/c/unreadable.png,cannot read"), "{csv}");
    }
    assert!(err.contains("reasons in"), "{err}");
    assert_eq!(read_split(&out, "train").unwrap().len(), got.rows);

    let (strict, _) = extract(tmp.path(), &data, &model, &out, &["--strict", "--quiet"]);
    assert_eq!(strict, 1, "--strict fails on skips");

    // Nothing extractable: exit 1 (the layout itself is fine).
    let only_bad = tmp.path().join("bad");
    std::fs::create_dir_all(only_bad.join("c")).unwrap();
    std::fs::write(only_bad.join("c/x.png"), b"").unwrap();
    let (code, err) = extract(tmp.path(), &only_bad, &model, &tmp.path().join("g"), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing could be extracted"), "{err}");
}

/// A PNG whose header claims `w x h` pixels, with no real image data: PIL
/// refuses it at open time (DecompressionBombError), before decoding.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let crc = |data: &[u8]| {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    };
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc(&ihdr).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(b"IEND");
    out.extend_from_slice(&crc(b"IEND").to_be_bytes());
    out
}

#[test]
fn shards_together_equal_the_unsharded_output() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train", "test"], &["x", "y", "z"], 7);
    let model = tiny_model(8, 0);
    let whole = tmp.path().join("whole");
    let sharded = tmp.path().join("sharded");
    extract_ok(tmp.path(), &data, &model, &whole, &[]);
    for i in 0..3 {
        extract_ok(
            tmp.path(),
            &data,
            &model,
            &sharded,
            &["--shard", &format!("{i}/3")],
        );
    }
    assert!(sharded.join("train-2-of-3.parquet").is_file());
    for split in ["train", "test"] {
        let a: FeatureTable = read_split(&whole, split).unwrap();
        let b = read_split(&sharded, split).unwrap();
        assert_eq!(a, b, "{split}");
    }
    let (code, err) = extract(tmp.path(), &data, &model, &sharded, &["--shard", "3/3"]);
    assert_eq!(code, 2);
    assert!(err.contains("--shard"), "{err}");
}

/// Decoding beside inference (`--threads 1`, a core to spare) and taking
/// turns with it (ORT's threads on every core) give the same file.
#[test]
fn overlapping_or_taking_turns_gives_the_same_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train"], &["x", "y"], 9);
    let model = tiny_model(8, 0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (overlap, turns) = (tmp.path().join("overlap"), tmp.path().join("turns"));
    extract_ok(tmp.path(), &data, &model, &overlap, &["--threads", "1"]);
    let all = cores.to_string();
    extract_ok(tmp.path(), &data, &model, &turns, &["--threads", &all]);
    let (a, b) = (
        read_split(&overlap, "train").unwrap(),
        read_split(&turns, "train").unwrap(),
    );
    assert_eq!(a.len(), 18);
    assert_eq!(a, b);
}

/// Bad images inside a batch leave holes in its pixel buffer that are
/// closed before the model runs: the good images' rows are exactly a clean
/// run's, whichever way decoding and inference share the cores.
#[test]
fn bad_images_inside_batches_leave_the_others_vectors_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let (mixed, clean) = (tmp.path().join("mixed"), tmp.path().join("clean"));
    for k in 0..10u32 {
        for data in [&mixed, &clean] {
            image(&data.join(format!("train/c/{k:02}-good.png")), 40, 30, k);
        }
        if k % 3 != 1 {
            // Between two good images, at every place of a batch of 3.
            std::fs::write(mixed.join(format!("train/c/{k:02}-not.png")), b"no").unwrap();
        }
    }
    let model = tiny_model(8, 0);
    let want = tmp.path().join("want");
    extract_ok(tmp.path(), &clean, &model, &want, &["--batch-size", "3"]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in ["1".to_string(), cores.to_string()] {
        let out = tmp.path().join(format!("got-{threads}"));
        let n = extract_ok(
            tmp.path(),
            &mixed,
            &model,
            &out,
            &["--batch-size", "3", "--threads", &threads],
        );
        assert_eq!((n.rows, n.skipped), (10, 7), "--threads {threads}");
        assert_eq!(
            read_split(&out, "train").unwrap(),
            read_split(&want, "train").unwrap(),
            "--threads {threads}"
        );
    }
}

#[test]
fn layout_model_and_runtime_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data, &["train", "validation"], &["a", "b"], 1);
    std::fs::remove_dir_all(data.join("validation/b")).unwrap();
    let model = tiny_model(8, 0);
    let out = tmp.path().join("f");
    let (code, err) = extract(tmp.path(), &data, &model, &out, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("split `validation`") && err.contains("missing: b"),
        "{err}"
    );
    std::fs::create_dir_all(data.join("validation/b")).unwrap();

    let bare = tmp.path().join("bare.onnx");
    run_python(&[
        "-c",
        "import onnx,sys; m=onnx.load(sys.argv[1]); del m.metadata_props[:]; onnx.save(m, sys.argv[2])",
        model.to_str().unwrap(),
        bare.to_str().unwrap(),
    ]);
    let (code, err) = extract(tmp.path(), &data, &bare, &out, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bare.onnx") && err.contains("no xfer metadata"),
        "{err}"
    );

    let (code, err) = extract(tmp.path(), &data, &model, &out, &["--size", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--size"), "{err}");

    let out2 = xfer(tmp.path())
        .env(
            "ORT_DYLIB_PATH",
            tmp.path().join("nowhere/libonnxruntime.so"),
        )
        .args(["extract", "--device", "cpu"])
        .arg("--data")
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out2.stderr);
    assert_eq!(out2.status.code(), Some(2));
    assert!(
        err.contains("make setup") && err.contains("ORT_DYLIB_PATH") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn synthetic_formats_equal_pil() {
    let out = check_pixels(&[
        "--xfer",
        env!("CARGO_BIN_EXE_xfer"),
        "--synthetic",
        "--size",
        "40",
    ]);
    assert!(out.contains("max abs difference 0 "), "{out}");
    let out = check_pixels(&[
        "--xfer",
        env!("CARGO_BIN_EXE_xfer"),
        "--synthetic",
        "--size",
        "40",
        "--resize",
        "lanczos",
    ]);
    assert!(out.contains("max abs difference 0 "), "{out}");
}

#[test]
fn real_images_equal_pil() {
    let Some(data) = clothing("extract::real_images_equal_pil") else {
        return;
    };
    let out = check_pixels(&[
        "--xfer",
        env!("CARGO_BIN_EXE_xfer"),
        "--data",
        data.to_str().unwrap(),
        "--sample",
        "40",
        "--size",
        "150",
    ]);
    assert!(
        out.contains("40 rows compared") && out.contains("max abs difference 0 "),
        "{out}"
    );
}
