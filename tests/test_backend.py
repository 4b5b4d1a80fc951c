"""The backend is chosen once at import; GPUKERN_BACKEND overrides it."""

import os
import subprocess
import sys

import pytest

import gpukern as gk
from gpukern._backend import BackendUnavailableError, choose_backend


def _run(env_value):
    env = dict(os.environ)
    env.pop("GPUKERN_BACKEND", None)
    if env_value is not None:
        env["GPUKERN_BACKEND"] = env_value
    return subprocess.run([sys.executable, "-c", "import gpukern; print(gpukern.backend())"],
                          env=env, capture_output=True, text=True, timeout=120)


def _cupy_usable():
    try:
        choose_backend("cupy")
        return True
    except BackendUnavailableError:
        return False


def test_numpy_forced():
    r = _run("numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"


def test_unknown_backend_named():
    r = _run("tpu")
    assert r.returncode != 0
    assert "GPUKERN_BACKEND='tpu' is not one of numpy, cupy" in r.stderr


@pytest.mark.skipif(_cupy_usable(), reason="a CUDA device is usable here")
def test_cupy_forced_without_gpu_fails_clearly():
    r = _run("cupy")
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "BackendUnavailableError: GPUKERN_BACKEND=cupy, but" in last
    with pytest.raises(BackendUnavailableError, match="GPUKERN_BACKEND=cupy"):
        choose_backend("cupy")


@pytest.mark.skipif(_cupy_usable(), reason="a CUDA device is usable here")
def test_automatic_choice_falls_back_to_numpy():
    r = _run(None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"
    assert choose_backend(None).name == "numpy"


def test_backend_reports_choice():
    assert gk.backend() in ("numpy", "cupy")
    assert gk.backend() == gk._backend.BACKEND.name
