#!/usr/bin/env bash
# The wheels bench/gpu_check.py needs on the GPU machine and does not find there (it has torch,
# torch_geometric, Lightning, PyYAML and numpy, but not pydantic), at the versions of
# requirements/lock.txt, downloaded here into .whl/ (ignored by git) for Python 3.12 on x86-64
# Linux. The device tool carries .whl/ there (carry: [".whl"]); BENCHMARKS.md has the one command
# line that installs them and runs the check.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions)
rm -rf .whl
mkdir -p .whl
for name in "${PACKAGES[@]}"; do
    # the lock is universal: take the pin that holds on Python 3.12 (no marker, or one for >= 3.11)
    pin=$(grep -E "^${name}==[^ ;]+( ; python_full_version >= '3\.1[01]')?$" requirements/lock.txt \
        | head -1 | cut -d' ' -f1)
    [ -n "$pin" ] || { echo "gpu_wheels: no pin for $name in requirements/lock.txt" >&2; exit 1; }
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$pin"
done
ls -l .whl
du -sh .whl
