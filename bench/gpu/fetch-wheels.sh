#!/usr/bin/env bash
# Downloads into .whl/ (in the repository's root) the wheels that the GPU
# machine's image (nvidia-h200: Python 3.12, PyTorch and JAX, no Keras) lacks
# for Keras, pinned, for CPython 3.12 on manylinux x86_64; bench/gpu/run.sh
# installs them there. Adds /.whl/ to the repository's info/exclude (git
# ignores it; the device tool's `carry: [".whl"]` takes it along).
#
# Checks that every requirement of these wheels is either one of them or a
# package the image holds (the device's KINDS.md lists them), and prints
# their size and that of the working tree that travels with them (64 MiB at
# most). .whl/ is this script's: it is emptied first (two versions of one
# package would stop the install).
#
#     bash bench/gpu/fetch-wheels.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PYTHON=${PYTHON:-python3}

# Keras and those of its requirements (Requires-Dist) that the image lacks.
WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0)
# Requirements of these wheels that the image already holds (KINDS.md's list).
IMAGE_HAS="absl-py numpy rich h5py ml-dtypes packaging typing-extensions"

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || { echo '/.whl/' >>"$exclude" && echo "added /.whl/ to $exclude"; }

rm -rf .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"

IMAGE_HAS=$IMAGE_HAS "$PYTHON" - .whl/*.whl <<'EOF'
"""Every requirement of the wheels (on CPython 3.12, Linux x86_64, no
extras) is one of the wheels or on the image."""
import os
import re
import sys
import zipfile

try:
    from packaging.requirements import Requirement
except ImportError:  # pip's own copy
    from pip._vendor.packaging.requirements import Requirement

def normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()

environment = dict(python_version="3.12", python_full_version="3.12.3", sys_platform="linux",
                   platform_system="Linux", platform_machine="x86_64", os_name="posix",
                   implementation_name="cpython", platform_python_implementation="CPython", extra="")
wheels = {normal(os.path.basename(path).split("-")[0]): path for path in sys.argv[1:]}
known = set(wheels) | {normal(name) for name in os.environ["IMAGE_HAS"].split()}
missing = []
for name, path in wheels.items():
    with zipfile.ZipFile(path) as wheel:
        metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        for line in wheel.read(metadata).decode().splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            if normal(requirement.name) not in known:
                missing.append(f"{name} needs {requirement}")
if missing:
    sys.exit("missing from .whl/ and from the GPU image: " + "; ".join(missing))
print("requirements: each is a wheel here or on the image")
EOF

ls -l .whl/*.whl | awk '{ printf "%10d  %s\n", $5, $9 }'
wheels=$(cat .whl/*.whl | wc -c)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 cat 2>/dev/null | wc -c)
awk -v w="$wheels" -v t="$tree" 'BEGIN {
  printf "wheels: %.1f MiB; with the working tree that travels: %.1f MiB (the limit is 64 MiB)\n", w / 2^20, (w + t) / 2^20 }'
