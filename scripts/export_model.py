#!/usr/bin/env python3
"""Export a frozen base (or a joined classifier) to ONNX for xfer.

  export_model.py xception --weights imagenet|random|PATH.h5 [--seed N] --out M.onnx
  export_model.py efficientnet-lite0|efficientnet-lite1|efficientnet-lite2 --out M.onnx
  export_model.py adopt --onnx IN.onnx --preprocess tf|torch|lite|raw [--size S]
                  [--input NAME] [--output NAME] [--name NAME] --out M.onnx
  export_model.py quantize --model M.onnx --data DATA --out M-int8.onnx [--images 100]
                  [--seed 0] [--method minmax|entropy|percentile] [--size S]
                  [--no-reduce-range] [--calibration-cache RANGES.json]
  export_model.py combine --onnx A.onnx --onnx B.onnx [...] [--name NAME] [--size S]
                  --out M.onnx
  export_model.py efficientnet-lite0+efficientnet-lite2 --out M.onnx
                  (backbones joined by +: each exported with the options it takes, then combined)
  export_model.py tiny [--dim 8] [--seed 0] --out M.onnx        (tests)

Needs only numpy, h5py and onnx (scripts/requirements.txt); quantize needs
onnxruntime and PIL as well (also in scripts/requirements.txt). The output is
written under a temporary name and renamed, so a failure leaves no file.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xferexport import ExportError, graph  # noqa: E402


def build_tiny(args):
    from xferexport import tiny

    return tiny.build(dim=args.dim, seed=args.seed, default_size=args.size, preprocess=args.preprocess)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="backbone", required=True, metavar="BACKBONE")

    t = sub.add_parser("tiny", help="a few-KB random base for tests")
    t.add_argument("--dim", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--size", type=int, default=32, help="default input side written to the metadata")
    t.add_argument("--preprocess", default="tf")
    t.add_argument("--out", required=True)
    t.set_defaults(build=build_tiny)

    try:
        from xferexport import xception
        xception.add_parser(sub)
    except ImportError:
        pass
    try:
        from xferexport import lite0
        lite0.add_parser(sub)
    except ImportError:
        pass
    from xferexport import adopt, combine, quantize
    adopt.add_parser(sub)
    combine.add_parser(sub)
    quantize.add_parser(sub)
    try:
        from xferexport import classifier
        classifier.add_parser(sub)
    except ImportError:
        pass

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and "+" in argv[0]:
        # Backbones joined by +: each part is exported with the options it takes
        # (xception's --weights, say), then combined; an option no part takes is an error.
        parsed, untaken = [], None
        for name in argv[0].split("+"):
            part, extra = p.parse_known_args([name] + argv[1:])
            parsed.append(part)
            opts = {t.split("=")[0] for t in extra if t.startswith("-")}
            untaken = opts if untaken is None else untaken & opts
        if untaken:
            p.error(f"no backbone of {argv[0]} takes {', '.join(sorted(untaken))}")
    else:
        parsed = [p.parse_args(argv)]
    args = parsed[-1]
    try:
        if len(parsed) > 1:
            from xferexport import combine

            built = [(a.build(a), a.backbone) for a in parsed]
            # each part's sha256 is that of the file its own export writes
            model = combine.combine([combine.Part(m, name, combine.metadata.sha256_bytes(m.SerializeToString()))
                                     for m, name in built])
        else:
            model = args.build(args)
        out_dir = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(out_dir, exist_ok=True)
        graph.save_atomic(model, args.out)
    except (ExportError, ValueError, KeyError, OSError) as e:
        print(f"export_model.py: error: {e}", file=sys.stderr)
        return 1
    props = {p.key: p.value for p in model.metadata_props}
    print(f"wrote {args.out}: {props.get('xfer.backbone')} dim {props.get('xfer.dim')} "
          f"pretrained={props.get('xfer.pretrained')} preprocess={props.get('xfer.preprocess')}"
          + (f" quant={props['xfer.quant']}" if "xfer.quant" in props else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
