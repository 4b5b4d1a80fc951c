"""`gpukern reproduce` and `gpukern kernel` end to end at the tiny scale (seconds)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import gpukern as gk  # noqa: E402
from gpukern.cli import main  # noqa: E402
from gpukern.experiments import EXPERIMENTS  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _leaves(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, obj


def _check_outputs(out):
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(EXPERIMENTS) <= set(metrics)
    for name in EXPERIMENTS:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, name
        with np.load(out / name / "data.npz") as data:
            assert data.files
        assert (out / name / "metrics.json").exists()
    for path, value in _leaves(metrics):
        if isinstance(value, float | int) and not isinstance(value, bool):
            assert math.isfinite(value), path
        else:
            assert value is not None, path
    ntk = metrics["kernel_ntk"]
    for key in ("mse_init", "mse_trained", "slope_init", "slope_trained"):
        assert set(ntk[key]) == {"2", "5"}
    ens = metrics["sign_ensemble"]["widths"]
    for w in ("16", "32"):
        for base in ("sgntk", "nngp"):
            assert {"rmse_mean", "rmse_std", "rmse_mean_se"} <= set(ens[w][base])
    sw = metrics["surrogate_width"]["results"]
    assert set(sw) == {"1", "4"} and set(sw["1"]["16"]) == {"sgntk", "surrogate", "nngp"}
    pos = metrics["surrogate_width"]["positions"]
    assert set(pos["4"]["32"]) == {"t", "t_se", "gap", "off_line"}
    assert set(metrics["surrogate_width"]["position_summary"]["1"]) == {"pooled_t", "pooled_t_se"}
    assert len(metrics["ntk_divergence"]["naive_ntk_diag"]["2"]) == 3
    return metrics


def test_gap_position():
    """t recovers where the networks sit on the line between two means: exactly when they
    lie on it, and within its standard error with noise across the line; the standard
    error matches the spread of t over independent ensembles."""
    from gpukern.experiments.ensembles import gap_position

    rng = np.random.default_rng(3)
    start, end = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    s = rng.normal(0.3, 0.5, size=25)
    on_line = start + s[:, None, None] * (end - start)
    pos = gap_position(on_line, start, end, y_scale=2.0)
    assert pos["t"] == pytest.approx(s.mean(), abs=1e-13)
    assert pos["t_se"] == pytest.approx(s.std(ddof=1) / 5, rel=1e-12)
    assert pos["off_line"] < 1e-13
    assert pos["gap"] == pytest.approx(np.sqrt(np.mean((end - start) ** 2)) / 2.0, rel=1e-13)
    ts, ses = [], []
    for _ in range(400):  # t = 0.7, noise in every direction
        f = start + 0.7 * (end - start) + rng.normal(size=(50, 40, 2))
        p = gap_position(f, start, end)
        ts.append(p["t"])
        ses.append(p["t_se"])
    # mean of 400 estimates: SE = spread / 20; the SE estimates agree with the spread to
    # a few percent (each from 50 draws: relative SE 1/sqrt(98) ~ 10 %, averaged over 400)
    assert abs(np.mean(ts) - 0.7) < 4 * np.std(ts) / 20
    assert np.mean(ses) == pytest.approx(np.std(ts, ddof=1), rel=0.1)
    with pytest.raises(ValueError, match="distinct GP means"):
        gap_position(on_line, start, start)
    with pytest.raises(ValueError, match="2 networks"):
        gap_position(on_line[:1], start, end)


def test_reproduce_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["reproduce", "--out", str(out), "--scale", "tiny", "--no-progress"]
    assert main(argv + ["--only", "kernel_ntk"]) == 0  # "interrupted" after the first
    first = json.loads((out / "kernel_ntk" / "metrics.json").read_text())
    capsys.readouterr()
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert "[kernel_ntk] already done, skipped" in log
    assert "[sign_ensemble] done" in log
    metrics = _check_outputs(out)
    assert metrics["kernel_ntk"] == first
    # a rerun recomputes nothing and reproduces the metrics
    assert main(argv) == 0
    assert capsys.readouterr().out.count("already done, skipped") == len(EXPERIMENTS)
    assert json.loads((out / "metrics.json").read_text())["sign_ensemble"] == metrics["sign_ensemble"]
    # --force recomputes, with the same seeds the same numbers
    assert main(argv + ["--force", "--only", "kernel_sgntk"]) == 0
    assert "[kernel_sgntk] done" in capsys.readouterr().out
    again = json.loads((out / "kernel_sgntk" / "metrics.json").read_text())
    again.pop("seconds")
    old = dict(metrics["kernel_sgntk"])
    old.pop("seconds")
    assert again == old


def test_interrupted_ensemble_resumes_from_checkpoint(tmp_path, capsys, monkeypatch):
    import gpukern.training as tr

    out = tmp_path / "run"
    argv = ["reproduce", "--out", str(out), "--scale", "tiny", "--no-progress",
            "--only", "sign_ensemble"]
    assert main(argv) == 0
    ref = json.loads((out / "sign_ensemble" / "metrics.json").read_text())
    real = tr.sgl_step
    calls = {"n": 0}

    def boom(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # during the second width's training
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tr, "sgl_step", boom)
    assert main(argv + ["--force"]) == 130
    assert "interrupted; rerun" in capsys.readouterr().err
    assert any((out / "checkpoints" / "sign_ensemble").glob("*.npz"))
    monkeypatch.setattr(tr, "sgl_step", real)
    assert main(argv) == 0
    assert not (out / "checkpoints" / "sign_ensemble").exists()  # finished: removed
    got = json.loads((out / "sign_ensemble" / "metrics.json").read_text())
    got.pop("seconds"), ref.pop("seconds")
    assert got == ref


def test_user_training_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    np.savez(tmp_path / "data.npz", x=x, y=np.tanh(x[:, 0]))
    out = tmp_path / "run"
    assert main(["reproduce", "--out", str(out), "--scale", "tiny", "--no-progress",
                 "--train", str(tmp_path / "data.npz"), "--only", "sign_ensemble"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "user data from data.npz" in metrics["config"]["task"]
    csv = tmp_path / "data.csv"
    np.savetxt(csv, np.column_stack([x, x[:, 1]]), delimiter=",")
    assert main(["reproduce", "--out", str(tmp_path / "r2"), "--scale", "tiny", "--no-progress",
                 "--train", str(csv), "--only", "ntk_divergence"]) == 0
    # several outputs per point: y (N, C)
    np.savez(tmp_path / "multi.npz", x=x, y=np.stack([np.tanh(x[:, 0]), x[:, 1]], axis=1))
    out = tmp_path / "r3"
    assert main(["reproduce", "--out", str(out), "--scale", "tiny", "--no-progress",
                 "--train", str(tmp_path / "multi.npz"), "--only", "sign_ensemble"]) == 0
    with np.load(out / "sign_ensemble" / "data.npz") as d:
        outputs = [d[k] for k in d.files if k.startswith("outputs_w")]
    assert outputs and all(o.shape[-1] == 2 for o in outputs)


def test_digits_experiment(tmp_path, capsys, monkeypatch):
    """Ten classes end to end at the tiny scale: kernel classifiers far above chance (10 %),
    every metric and figure written; without scikit-learn a one-line hint."""
    pytest.importorskip("sklearn")
    from gpukern.experiments import digits

    out = tmp_path / "run"
    assert main(["reproduce", "--out", str(out), "--scale", "tiny", "--no-progress",
                 "--only", "digits"]) == 0
    m = json.loads((out / "digits" / "metrics.json").read_text())
    assert (out / "digits.png").stat().st_size > 10_000
    assert m["n_train"] == 150 and m["n_test"] == 60
    for key in ("sgntk_gp_accuracy_t_inf", "sgntk_gp_accuracy_at_steps"):
        assert m["sgl_sign"][key] > 0.6
    assert m["gd_erf_control"]["ntk_gp_accuracy_t_inf"] > 0.6
    assert m["nngp_posterior_accuracy"] > 0.6
    with np.load(out / "digits" / "data.npz") as d:
        assert d["confusion"].sum() == 60 and d["sgl_gp_mean"].shape[1:] == (60, 10)
    x, y, xs, lab_tr, lab_te = digits.digits_data(150, 60)
    np.testing.assert_allclose(np.sum(x * x, axis=1), 64.0)
    np.testing.assert_allclose(y.sum(axis=1), 0.0, atol=1e-12)
    assert (np.argmax(y, 1) == lab_tr).all()
    import gpukern.experiments as experiments

    monkeypatch.setitem(experiments.OPTIONAL, "digits", (lambda: False, digits.INSTALL_HINT))
    capsys.readouterr()
    assert main(["reproduce", "--out", str(tmp_path / "r2"), "--scale", "tiny", "--no-progress",
                 "--only", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'gpukern[data]'" in err


def test_surrogate_scale_and_family_experiments(tmp_path):
    """The analysis behind the two figures: I_c is a polynomial of degree depth in c whose
    constant term is the NNGP; one SGL step scales layer l's update by c^(L+1-l); the six
    matched surrogates have area 2 and one peak."""
    from scipy import integrate

    from gpukern.experiments import surrogate_family

    out = tmp_path / "run"
    assert main(["reproduce", "--out", str(out), "--scale", "tiny", "--no-progress",
                 "--only", "surrogate_scale", "surrogate_family"]) == 0
    m = json.loads((out / "surrogate_scale" / "metrics.json").read_text())
    assert m["polynomial_residual"] < 1e-12 and m["readout_term_equals_nngp"] < 1e-12
    for c, ratios in m["layer_update_ratio"].items():
        np.testing.assert_allclose(ratios, [float(c) ** 2, float(c), 1.0], rtol=1e-9)
    assert m["kernel_vs_lr_scaling"]["4"] > 0.1  # not a rescaling of the kernel
    f = json.loads((out / "surrogate_family" / "metrics.json").read_text())
    assert set(f["results"]) == {"erf", "sigmoid", "fast_sigmoid", "atan", "boxcar", "triangle"}
    for name, fn in surrogate_family.family().items():
        area = sum(integrate.quad(lambda v, fn=fn: float(fn(np.asarray(v))), a, b, limit=200)[0]
                   for a, b in ((-np.inf, -3), (-3, 0), (0, 3), (3, np.inf)))
        assert abs(area - 2.0) < 1e-6, (name, area)
        assert abs(float(fn(np.asarray(0.0))) - surrogate_family.PEAK) < 1e-12, name
    assert (out / "surrogate_scale.png").exists() and (out / "surrogate_family.png").exists()


def test_kernel_command_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(7, 2)), rng.normal(size=(4, 2))
    np.save(tmp_path / "x1.npy", x1)
    np.savetxt(tmp_path / "x2.csv", x2, delimiter=",")
    out = tmp_path / "k.npy"
    assert main(["kernel", "--x1", str(tmp_path / "x1.npy"), "--x2", str(tmp_path / "x2.csv"),
                 "--activation", "sign", "--surrogate", "fast_sigmoid", "--surrogate-param", "4",
                 "--depth", "3", "--bias-std", "0.2", "--out", str(out)]) == 0
    net = gk.MLP(3, gk.activations.sign(), gk.surrogates.fast_sigmoid(4.0), bias_std=0.2)
    np.testing.assert_array_equal(np.load(out), net.sgntk(x1, x2))
    assert main(["kernel", "--x1", str(tmp_path / "x1.npy"), "--which", "nngp",
                 "--activation", "erf", "--m", "3", "--out", str(out)]) == 0
    np.testing.assert_array_equal(
        np.load(out), gk.MLP(2, gk.activations.erf(3.0), gk.surrogates.erf(1.0),
                             bias_std=0.1).nngp(x1))
    assert main(["kernel", "--x1", str(tmp_path / "x1.npy"), "--activation", "step",
                 "--threshold", "0.5", "--out", str(out)]) == 0
    np.testing.assert_array_equal(
        np.load(out), gk.MLP(2, gk.activations.step(0.5), gk.surrogates.erf(1.0),
                             bias_std=0.1).sgntk(x1))
    assert main(["kernel", "--x1", str(tmp_path / "x1.npy"), "--activation", "quantizer",
                 "--bits", "3", "--low", "0", "--high", "2", "--out", str(out)]) == 0
    np.testing.assert_array_equal(
        np.load(out), gk.MLP(2, gk.activations.uniform_quantizer(3, 0.0, 2.0),
                             gk.surrogates.erf(1.0), bias_std=0.1).sgntk(x1))


@pytest.mark.parametrize("argv, words", [
    (["reproduce", "--scale", "huge"], "invalid choice: 'huge'"),
    (["reproduce", "--only", "fig9"], "invalid choice: 'fig9'"),
    (["reproduce", "--train", "/no/such/file.npz", "--scale", "tiny"], "does not exist"),
    (["kernel", "--x1", "/no/such.npy", "--out", "k.npy"], "--x1 file /no/such.npy does not exist"),
    (["kernel", "--x1", "BAD", "--out", "k.npy", "--surrogate-param", "-2"], None),
    (["kernel"], "the following arguments are required"),
    (["kernel", "--x1", "x.npy", "--out", "k.npy", "--activation", "relu", "--threshold", "1"],
     "--threshold applies to erf, sign and step, not relu"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_cli_input_is_one_line(tmp_path, argv, words):
    if argv[:3] == ["kernel", "--x1", "BAD"]:
        bad = tmp_path / "bad.csv"
        bad.write_text("1,2\n3,oops\n")
        argv = ["kernel", "--x1", str(bad), "--out", str(tmp_path / "k.npy")]
        words = "cannot be read as an array"
    r = subprocess.run([sys.executable, "-m", "gpukern", *argv], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert words in lines[0] and "Traceback" not in r.stderr


def test_malformed_training_file(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=np.ones(3))
    r = subprocess.run([sys.executable, "-m", "gpukern", "reproduce", "--scale", "tiny",
                        "--train", str(tmp_path / "d.npz"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"gpukern: error: --train {tmp_path / 'd.npz'}: expected x of shape (N, n0) and y of "
        "shape (N,) or (N, C), N >= 2; got (4, 2) and (3,)"]


def test_checkpoints_kept_on_request(tmp_path):
    out = tmp_path / "run"
    argv = ["reproduce", "--out", str(out), "--scale", "tiny", "--no-progress",
            "--only", "sign_ensemble"]
    assert main(argv + ["--keep-checkpoints"]) == 0
    assert any((out / "checkpoints" / "sign_ensemble").glob("*.npz"))


def test_rerun_with_another_configuration_refused(tmp_path, capsys):
    """Results of one configuration are never mixed with another's: a rerun with another
    seed is a one-line error naming the difference; --force recomputes; a corrupt
    metrics.json is an error naming the file."""
    out = tmp_path / "run"
    argv = ["reproduce", "--out", str(out), "--scale", "tiny", "--no-progress",
            "--only", "ntk_divergence"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv + ["--seed", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed: 0 there, 7 now" in err[0], err
    assert main(argv + ["--seed", "7", "--force"]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 7
    (out / "ntk_divergence" / "metrics.json").write_text("{not json")
    capsys.readouterr()
    assert main(argv + ["--seed", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics.json is not readable JSON" in err[0], err


def test_cli_paths_checked_first_and_named(tmp_path, capsys):
    """--out of `gpukern kernel` is checked before the kernel is computed; its real name is
    printed; a corrupt --train archive is a one-line error; --train takes y of shape (N, 1)."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5, 2)))
    (tmp_path / "file").write_text("")
    (tmp_path / "dir.npy").mkdir()
    for out in (tmp_path / "file" / "k.npy", tmp_path / "dir.npy"):
        assert main(["kernel", "--x1", str(tmp_path / "x.npy"), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--out" in err[0] and "cannot be written" in err[0], err
    assert main(["kernel", "--x1", str(tmp_path / "x.npy"), "--out", str(tmp_path / "K")]) == 0
    assert f"-> {tmp_path / 'K.npy'}" in capsys.readouterr().out
    assert np.load(tmp_path / "K.npy").shape == (5, 5)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    argv = ["reproduce", "--scale", "tiny", "--no-progress", "--only", "ntk_divergence",
            "--out", str(tmp_path / "o")]
    assert main(argv + ["--train", str(tmp_path / "broken.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be read" in err[0], err
    x = np.random.default_rng(1).normal(size=(6, 2))
    np.savez(tmp_path / "col.npz", x=x, y=np.sin(x[:, :1]))
    assert main(argv + ["--train", str(tmp_path / "col.npz")]) == 0
