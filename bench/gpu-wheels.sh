#!/usr/bin/env bash
# Wheels bench/gpu.py needs on a GPU machine that has torch, transformers, aiohttp and
# Pillow but no network and none of: diffusers, pydantic, tomlkit, platformdirs.
#
#   bench/gpu-wheels.sh            # here, with network: fills .whl/ (git-ignored)
#   # there, in the repo root, with .whl/ copied along:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site python3 bench/gpu.py --shape sd15
#
# The versions are this virtualenv's, so the GPU run uses what the tests use.
# PYVER is the GPU machine's Python (3.12 on the lent H100/H200 image).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PY:-$root/.venv/bin/python}"
pyver="${PYVER:-3.12}"
dest="${DEST:-$root/.whl}"
names=(diffusers pydantic pydantic_core annotated-types typing-inspection tomlkit platformdirs
       importlib_metadata)
pins=()
for name in "${names[@]}"; do
    version="$("$py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")"
    pins+=("$name==$version")
done
mkdir -p "$dest"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$pyver" \
    --implementation cp "${platforms[@]}" -d "$dest" "${pins[@]}"
ls -1 "$dest"
