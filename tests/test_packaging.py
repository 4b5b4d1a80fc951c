"""Packaging and the command line."""

import re
import subprocess
import sys
from importlib import metadata

import pytest

from gpukern.cli import main


def test_runtime_dependencies_are_numpy_scipy_numba_threadpoolctl():
    """The core install stays small: threadpoolctl (pure Python) limits BLAS threads."""
    reqs = metadata.requires("gpukern") or []
    core = {re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in reqs if "extra ==" not in r}
    assert core == {"numpy", "scipy", "numba", "threadpoolctl"}


def test_diag_table_runs(capsys):
    assert main(["diag", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "naive NTK" in out and "SG-NTK" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("1 ", "inf"))]
    assert rows[-1][0] == "inf" and rows[-1][2] == "inf"  # naive NTK of sign diverges


def test_cli_bad_value_one_line(capsys):
    assert main(["diag", "--k", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "k must be > 0" in err[0]


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "gpukern", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "diag" in r.stdout


@pytest.mark.parametrize("argv", [["nope"], ["diag", "--depth", "x"]])
def test_cli_argparse_errors(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
