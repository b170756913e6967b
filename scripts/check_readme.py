#!/usr/bin/env python3
"""Run the README's commands marked runnable, as a new user would, offline.

  check_readme.py [--keep] [--list] [--timeout 600] [FILE.md ...]

A fenced block whose info string holds the word `runnable` is a block of
commands that must work as written on a fresh checkout without network (but
for the package registry):

    ```sh runnable
    make features train BACKBONE=efficientnet-lite0
    ```

Every other block (synopses with placeholders, online steps, Slurm) is left
alone. The commands run one at a time, in the order the files list them, with
bash in a scratch copy of the working tree (tracked and untracked files that
git does not ignore); `.venv`, `.ort` and `target` are links to this checkout's,
and `target/release` is first on PATH, so `xfer` is the binary built here. The
copied files are dated in the past, so make inside the copy takes the linked
venv, ONNX Runtime and binary as up to date and never rebuilds them (`make
check-readme` brings them up to date first, in the checkout itself). `../shared/clothing-dataset-small`,
the Makefile's default DATA, is a small generated image set (3 classes, train and
validation) beside the copy, so every example runs in seconds. The first command
that fails stops the check with its output and the README line it came from;
exit status 0 when all ran.

Only the standard library and Pillow (scripts/requirements-dev.txt).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FILES = ("README.md", "data/README.md")
MARK = "runnable"
LINKED = (".venv", ".ort", "target")
CLASSES = ("dress", "hat", "shoes")
IMAGES = {"train": 6, "validation": 3}
PAST = 946684800  # 2000-01-01: older than anything make in the copy compares with

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def extract(text):
    """The runnable commands of a markdown text: [(line number, command)].

    A block is runnable when its opening fence's info string has the word
    `runnable`. Inside it, blank lines and `#` comment lines are dropped, a line
    ending in a backslash continues on the next, and the fence's indentation
    (a block inside a list item) is removed.
    """
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        runnable = MARK in m.group("info").split()
        i += 1
        pending, start = "", None
        while i < len(lines):
            line = lines[i]
            close = _FENCE.match(line)
            if close and close.group("fence")[0] == fence[0] \
                    and len(close.group("fence")) >= len(fence) and not close.group("info").strip():
                break
            if runnable:
                body = line[indent:] if line[:indent].strip() == "" else line.lstrip()
                stripped = body.strip()
                if pending or (stripped and not stripped.startswith("#")):
                    if start is None:
                        start = i + 1
                    if stripped.endswith("\\"):
                        pending += stripped[:-1].rstrip() + " "
                    else:
                        out.append((start, pending + stripped))
                        pending, start = "", None
            i += 1
        if pending:
            out.append((start, pending.strip()))
        i += 1
    return out


def example(text, name):
    """The code of the block whose info string is `python NAME` (a README
    example that a test runs), or None."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"```python {name}":
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                       len(lines))
            return "\n".join(lines[i + 1:end]) + "\n"
    return None


def commands(files):
    """[(file, line, command)] of every file, in order."""
    found = []
    for name in files:
        with open(os.path.join(REPO, name), encoding="utf-8") as f:
            found += [(name, n, c) for n, c in extract(f.read())]
    return found


def copy_tree(dest):
    """The working tree as git sees it (ignored files left out) into `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, stdout=subprocess.PIPE).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = os.path.join(REPO, rel)
        if rel.split("/")[0] in LINKED or not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)
        os.utime(os.path.join(dest, rel), (PAST, PAST), follow_symlinks=False)
    for name in LINKED:
        src = os.path.join(REPO, name)
        if os.path.exists(src):
            os.symlink(os.path.realpath(src), os.path.join(dest, name))


def make_images(data, seed=1):
    """A small clothing-like dataset: CLASSES under train/ and validation/, JPEG
    and PNG, sizes that differ, each class its own colour so a head can learn it."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    for split, count in IMAGES.items():
        for c, name in enumerate(CLASSES):
            folder = os.path.join(data, split, name)
            os.makedirs(folder, exist_ok=True)
            for k in range(count):
                w, h = rng.randint(40, 90), rng.randint(40, 90)
                base = [40, 40, 40]
                base[c] = 200
                img = Image.new("RGB", (w, h), tuple(v + rng.randint(-30, 30) for v in base))
                for _ in range(20):
                    x, y = rng.randrange(w), rng.randrange(h)
                    img.putpixel((x, y), tuple(rng.randrange(256) for _ in range(3)))
                ext = "jpg" if k % 2 == 0 else "png"
                img.save(os.path.join(folder, f"{name}-{k}.{ext}"))


def scratch_env(work):
    env = dict(os.environ)
    # Called from make: its flags and command-line variables must not leak into
    # the README's own make commands.
    for key in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(key, None)
    env["PATH"] = os.path.join(work, "target", "release") + os.pathsep + env.get("PATH", "")
    # Caches (ONNX Runtime's, the EfficientNet-Lite0 wheel) stay this checkout's.
    env.setdefault("XDG_CACHE_HOME", os.path.join(REPO, ".cache"))
    return env


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=list(DEFAULT_FILES))
    ap.add_argument("--list", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per command")
    args = ap.parse_args(argv)

    todo = commands(args.files)
    if args.list:
        for name, line, cmd in todo:
            print(f"{name}:{line}: {cmd}")
        return 0
    if not todo:
        print("check_readme: no command is marked runnable", file=sys.stderr)
        return 1
    if not os.path.exists(os.path.join(REPO, "target", "release", "xfer")):
        print("check_readme: no target/release/xfer: run `make setup` (or `make check-readme`)",
              file=sys.stderr)
        return 1
    root = tempfile.mkdtemp(prefix="xfer-readme-")
    work = os.path.join(root, "xfer")
    try:
        copy_tree(work)
        make_images(os.path.join(root, "shared", "clothing-dataset-small"))
        env = scratch_env(work)
        print(f"check_readme: {len(todo)} commands in a scratch copy ({work}), "
              f"DATA = ../shared/clothing-dataset-small: "
              f"{len(CLASSES)} generated classes", flush=True)
        for k, (name, line, cmd) in enumerate(todo, 1):
            print(f"[{k}/{len(todo)}] {name}:{line}: $ {cmd}", flush=True)
            start = time.monotonic()
            try:
                p = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, timeout=args.timeout,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                status, output = p.returncode, p.stdout
            except subprocess.TimeoutExpired as e:
                status = f"timeout after {args.timeout:.0f} s"
                output = (e.stdout or b"").decode(errors="replace") \
                    if isinstance(e.stdout, bytes) else (e.stdout or "")
            if status != 0:
                sys.stdout.write(output)
                print(f"check_readme: {name}:{line}: `{cmd}` failed (exit {status})",
                      file=sys.stderr)
                return 1
            print(f"    ok, {time.monotonic() - start:.1f} s", flush=True)
        print(f"check_readme: all {len(todo)} runnable commands of "
              f"{', '.join(args.files)} ran")
        return 0
    finally:
        if args.keep:
            print(f"check_readme: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
