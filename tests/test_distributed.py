"""gpukern.distributed on a 2-process LocalCluster: exact tiles, resumable sweeps, bad input."""

import json
import os
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import gpukern as gk  # noqa: E402
from gpukern.distributed import kernel_array, run_sweep  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, env={"GPUKERN_BACKEND": "numpy"})
        c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


NETS = {
    "sign_erf": gk.MLP(3, gk.activations.sign(), gk.surrogates.erf(2.0), bias_std=0.1),
    "erf_fast_sigmoid": gk.MLP(2, gk.activations.erf(3.0), gk.surrogates.fast_sigmoid(4.0),
                               bias_std=0.2),
}


@pytest.mark.parametrize("chunks", [(7, 13), (16, 16), (5, 40), 100])
@pytest.mark.parametrize("net_name", list(NETS))
def test_tiled_equals_local_exactly(client, chunks, net_name):
    net = NETS[net_name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 3))
    x[20] = x[3]  # a coinciding pair
    y = rng.normal(size=(29, 3))
    # erf_fast_sigmoid's sgntk is a 1-D quadrature (exact across tiles too); its
    # surrogate x surrogate kernel would be 2-D quadrature, too slow for this test
    for which in ("nngp", "sgntk") + (("surrogate",) if net_name == "sign_erf" else ()):
        local = net.kernels(x, y, which=(which,))[which]
        got = kernel_array(net, x, y, which=which, chunks=chunks, client=client).compute()
        np.testing.assert_array_equal(got, local)
        local_sym = net.kernels(x, which=(which,))[which]
        got_sym = kernel_array(net, x, which=which, chunks=chunks, client=client).compute()
        np.testing.assert_array_equal(got_sym, local_sym)


def test_save_npy_stack_round_trip(client, tmp_path):
    import dask.array as da

    from gpukern.distributed import save_npy_stack

    net = NETS["sign_erf"]
    x = np.random.default_rng(2).normal(size=(23, 2))
    save_npy_stack(kernel_array(net, x, chunks=(5, 9), client=client), tmp_path / "k")
    np.testing.assert_array_equal(da.from_npy_stack(str(tmp_path / "k")).compute(), net.sgntk(x))


def test_kernel_array_reductions_and_dtype(client):
    net = NETS["sign_erf"]
    x = np.random.default_rng(1).normal(size=(50, 2))
    arr = kernel_array(net, x, which="nngp", chunks=12, client=client, dtype=np.float32)
    assert arr.dtype == np.float32 and arr.shape == (50, 50)
    np.testing.assert_allclose(arr.sum(axis=1).compute(), net.nngp(x).astype(np.float32).sum(1),
                               rtol=1e-5)


def _flaky(value, marker_dir, fail_once):
    """Fails the first time it runs for a value (a marker file says it ran), then works."""
    marker = os.path.join(marker_dir, f"ran-{value}")
    runs = os.path.join(marker_dir, f"count-{value}")
    with open(runs, "a") as fh:
        fh.write("x")
    if fail_once and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"transient failure for {value}")
    return {"value": value, "square": value * value}


def test_sweep_retries_persists_and_resumes(client, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "results"
    configs = {f"v{v}": {"value": v, "marker_dir": str(markers), "fail_once": v % 2 == 0}
               for v in range(6)}
    res = run_sweep(_flaky, configs, out, client=client, retries=1)
    assert sorted(res) == sorted(configs)
    assert all(res[f"v{v}"]["square"] == v * v for v in range(6))
    assert sorted(p.name for p in out.glob("*.json")) == sorted(f"{k}.json" for k in configs)
    counts = {v: len((markers / f"count-{v}").read_text()) for v in range(6)}
    assert counts == {v: 2 if v % 2 == 0 else 1 for v in range(6)}  # retried once, no more
    # a rerun with two more configs computes only those
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    more = dict(configs, v6={"value": 6, "marker_dir": str(markers), "fail_once": False},
                v7={"value": 7, "marker_dir": str(markers), "fail_once": False})
    res2 = run_sweep(_flaky, more, out, client=client)
    assert len(res2) == 8
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json") if p.name in mtimes} == mtimes
    assert {v: len((markers / f"count-{v}").read_text()) for v in range(6)} == counts
    assert json.loads((out / "v7.json").read_text()) == {"value": 7, "square": 49}


def test_sweep_persists_completed_results_when_a_task_keeps_failing(client, tmp_path):
    def boom_or_value(value):
        if value == 3:
            raise ValueError("always fails")
        return {"value": value}

    with pytest.raises(RuntimeError, match="1 sweep task"):
        run_sweep(boom_or_value, {f"c{v}": {"value": v} for v in range(5)}, tmp_path, client=client,
                  retries=0)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["c0.json", "c1.json", "c2.json",
                                                               "c4.json"]


def test_sgl_sweep_task_runs(client, tmp_path):
    from gpukern.experiments.sweeps import sgl_sweep_task

    res = run_sweep(sgl_sweep_task, {"w16": dict(depth=1, width=16, k=1.0, networks=4, steps=3,
                                                 seed=0, n_test=10)}, tmp_path, client=client)
    assert np.isfinite(res["w16"]["rmse_mean"]) and res["w16"]["width"] == 16


def test_bad_input(client, tmp_path):
    net = NETS["sign_erf"]
    x = np.ones((4, 2))
    with pytest.raises(ValueError, match="chunks must be >= 1"):
        kernel_array(net, x, chunks=0, client=client)
    with pytest.raises(ValueError, match="chunks must be >= 1"):
        kernel_array(net, x, chunks=(4, -1), client=client)
    with pytest.raises(TypeError, match="chunks must be an int or"):
        kernel_array(net, x, chunks="big", client=client)
    with pytest.raises(ValueError, match="which must be one of"):
        kernel_array(net, x, which="cov", client=client)
    with pytest.raises(ValueError, match="config names"):
        run_sweep(_flaky, {"../x": {}}, tmp_path, client=client)
    closed = distributed.Client(client.cluster, set_as_default=False)
    closed.close()
    with pytest.raises(ValueError, match="client must be a running"):
        kernel_array(net, x, client=closed)
