//! `xfer extract --decode draft` end to end: pixels equal to PIL's
//! `Image.draft('RGB', (S, S))` + `convert` + `resize` on generated JPEGs
//! whose sizes hit each DCT scale (1, 2, 4, 8) and on the real clothing
//! images; draft and full vectors never mixed (cache, shards); a head
//! trained on draft vectors makes `xfer predict` decode in draft mode.
use std::path::Path;

use xfer_features::{keys, read_split, FULL_DECODE};
use xfer_train::Head;

use crate::extract::{extract, extract_ok, image};
use crate::predict::predict_json;
use crate::util::{clothing, run_python, tiny_model, xfer};

fn check_pixels(args: &[&str]) -> String {
    let mut all = vec![
        "scripts/check_pixels.py",
        "--xfer",
        env!("CARGO_BIN_EXE_xfer"),
    ];
    all.extend_from_slice(args);
    run_python(&all)
}

#[test]
fn draft_equals_pil_at_each_scale_and_filter() {
    for resize in [
        "nearest", "bilinear", "bicubic", "lanczos", "box", "hamming",
    ] {
        let out = check_pixels(&[
            "--synthetic",
            "--size",
            "24",
            "--decode",
            "draft",
            "--resize",
            resize,
        ]);
        // check_pixels.py stops when PIL's own draft scales are not the
        // planned ones, and says how many JPEGs each scale had.
        for scale in ["1/1", "1/2", "1/4", "1/8"] {
            assert!(out.contains(&format!("{scale}: ")), "{out}");
        }
        assert!(
            out.contains("decode draft") && out.contains("max abs difference 0 "),
            "{resize}: {out}"
        );
    }
}

#[test]
fn real_images_draft_equal_pil() {
    let Some(data) = clothing("draft::real_images_draft_equal_pil") else {
        return;
    };
    // 400x533 images: draft scale 2 at 150, 4 at 60.
    for size in ["150", "60"] {
        let out = check_pixels(&[
            "--data",
            data.to_str().unwrap(),
            "--sample",
            "40",
            "--size",
            size,
            "--decode",
            "draft",
        ]);
        assert!(
            out.contains("40 rows compared") && out.contains("max abs difference 0 "),
            "{out}"
        );
    }
}

/// DATA/{train,validation}/{a,b}/*.jpg of 70 to 130 pixels: at side 32 the
/// draft scale is 2 or 4, so draft pixels differ from full ones.
fn jpeg_dataset(root: &Path) -> std::path::PathBuf {
    let data = root.join("data");
    for (split, n) in [("train", 4u32), ("validation", 3)] {
        for (ci, class) in ["a", "b"].into_iter().enumerate() {
            for i in 0..n {
                let seed = ci as u32 * 100 + i + u32::from(split == "train") * 1000;
                let path = data.join(split).join(class).join(format!("{i}.jpg"));
                image(&path, 70 + 20 * i, 130 - 10 * i, seed);
            }
        }
    }
    data
}

#[test]
fn draft_and_full_vectors_never_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let data = jpeg_dataset(tmp.path());
    let model = tiny_model(8, 3);
    let out = tmp.path().join("f");
    let draft = ["--decode", "draft"];

    let full = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!((full.encoded, full.reused), (14, 0));
    let full_table = read_split(&out, "train").unwrap();
    assert_eq!(full_table.meta.decode(), FULL_DECODE);
    assert!(!full_table.meta.extra.contains_key(keys::DECODE));

    // A full file is no cache for a draft run, and the reverse.
    let d = extract_ok(tmp.path(), &data, &model, &out, &draft);
    assert_eq!((d.encoded, d.reused), (14, 0));
    let draft_table = read_split(&out, "train").unwrap();
    assert_eq!(draft_table.meta.extra.get(keys::DECODE).unwrap(), "draft");
    assert_eq!(draft_table.paths, full_table.paths);
    assert!(
        (0..draft_table.len()).all(|i| draft_table.row(i) != full_table.row(i)),
        "draft vectors equal to full ones: the images do not exercise draft"
    );
    let again = extract_ok(tmp.path(), &data, &model, &out, &draft);
    assert_eq!((again.encoded, again.reused), (0, 14));
    let back = extract_ok(tmp.path(), &data, &model, &out, &[]);
    assert_eq!((back.encoded, back.reused), (14, 0));
    assert_eq!(read_split(&out, "train").unwrap(), full_table);
    // `--decode full` is the default, not a new kind of file.
    let same = extract_ok(tmp.path(), &data, &model, &out, &["--decode", "full"]);
    assert_eq!((same.encoded, same.reused), (0, 14));

    // Shards of one split made with both decodings are refused together.
    let sharded = tmp.path().join("s");
    extract_ok(tmp.path(), &data, &model, &sharded, &["--shard", "0/2"]);
    extract_ok(
        tmp.path(),
        &data,
        &model,
        &sharded,
        &["--shard", "1/2", "--decode", "draft"],
    );
    let err = read_split(&sharded, "train").unwrap_err().to_string();
    assert!(err.contains(keys::DECODE), "{err}");

    // And `xfer train` refuses them with the key named.
    let run = tmp.path().join("run");
    let output = xfer(tmp.path())
        .args(["train", "--features"])
        .arg(&sharded)
        .arg("--out")
        .arg(&run)
        .args(["--epochs", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(keys::DECODE), "{stderr}");

    let (code, err) = extract(tmp.path(), &data, &model, &out, &["--decode", "half"]);
    assert_eq!(code, 2);
    assert!(err.contains("--decode"), "{err}");
}

#[test]
fn predict_with_a_draft_head_decodes_draft() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = jpeg_dataset(root);
    let model = tiny_model(8, 4);
    let draft_out = root.join("draft");
    let full_out = root.join("full");
    extract_ok(root, &data, &model, &draft_out, &["--decode", "draft"]);
    extract_ok(root, &data, &model, &full_out, &[]);
    let draft = read_split(&draft_out, "validation").unwrap();
    let full = read_split(&full_out, "validation").unwrap();

    let head_path = root.join("draft-head.safetensors");
    Head::glorot(draft.meta.clone(), Some(6), 9)
        .save(&head_path)
        .unwrap();
    let head = Head::load(&head_path).unwrap();
    assert_eq!(head.meta().decode(), "draft");
    let want = head.probabilities(&draft.features, draft.len());
    let other = head.probabilities(&full.features, full.len());
    let c = head.classes().len();

    let val = data.join("validation");
    let (code, lines, stderr) = predict_json(root, &model, &head_path, &[&val], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines.len(), draft.len());
    let (mut off_draft, mut off_full) = (0.0f64, 0.0f64);
    for (i, line) in lines.iter().enumerate() {
        assert!(line["path"].as_str().unwrap().ends_with(&draft.paths[i]));
        for t in line["top"].as_array().unwrap() {
            let j = head
                .classes()
                .iter()
                .position(|k| k == t["class"].as_str().unwrap())
                .unwrap();
            let p = t["probability"].as_f64().unwrap();
            off_draft = off_draft.max((p - f64::from(want[i * c + j])).abs());
            off_full = off_full.max((p - f64::from(other[i * c + j])).abs());
        }
    }
    assert!(
        off_draft < 1e-5,
        "predict is {off_draft} off the draft vectors"
    );
    assert!(
        off_full > 1e-4,
        "full and draft vectors give the same probabilities ({off_full}): not a test"
    );
}
