#!/usr/bin/env bash
# The device check (scripts/device_check.py): the CuPy backend against NumPy references, the
# Numba kernels on the device, GPU timings; each step's pass/fail and seconds in
# OUT_DIR/device_check.json. Usage: scripts/device_check.sh OUT_DIR [--dry-run]
# (--dry-run: without a GPU, through the CuPy stand-in of tests/cupy_standin).
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/device_check.py "$@"
