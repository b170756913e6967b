#!/usr/bin/env bash
# What the build needs from the system besides Rust, gcc and Python: nasm,
# which assembles libjpeg-turbo's SIMD code (the mozjpeg crate builds
# libjpeg-turbo from source so JPEG pixels equal PIL's; without nasm it
# silently builds without SIMD and decodes 1.6x slower). Installed with
# apt-get where we are root (or have sudo) on Debian/Ubuntu; otherwise this
# stops with the one command to run. Shared by `make` and `.ci/run`.
set -euo pipefail
need=()
command -v nasm >/dev/null || need+=(nasm)
((${#need[@]})) || exit 0
if command -v apt-get >/dev/null; then
    if [ "$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo=sudo; else sudo=; fi
    if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
        echo "xfer: installing ${need[*]} (apt-get)" >&2
        $sudo apt-get update -q >/dev/null
        $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
        exit 0
    fi
    echo "xfer: the build needs ${need[*]}: run \`sudo apt-get install ${need[*]}\`, then make again" >&2
else
    echo "xfer: the build needs ${need[*]} (libjpeg-turbo's SIMD code): install it with your package manager (brew install nasm, dnf install nasm, ...), then make again" >&2
fi
exit 1
