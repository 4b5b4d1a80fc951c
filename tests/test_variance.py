"""Pairs over varying variances read from their tables (gpukern/variance.py).

Against the independent nested 2-D quadrature at drawn (q, q') across a cell and
correlations including +-1, nearly +-1 (from the determinant) and 0; the compiled CPU
loop and the headers' per-entry read (a GPU thread's) against the array path on the same
table; whole kernels on inputs of many norms against the routes the tables replace; the
cells, the builder's refusals and the blocks that keep their route.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpukern as gk
from gpukern import gaussian, planner, variance
from gpukern.kernels import cpu_fused, ops

S = gk.surrogates
COMPILED = "compiled" in ops.available_executors()
MANY = 1 << 20  # a block large enough for a table
# (f, g, q range, q' range): a kinked surrogate facing itself on one cell (a symmetric
# table, built from the reduced pair), and two smooth functions over two different cells
# (built from the series where it is served, else the reduced pair)
CASES = [(S.fast_sigmoid(2.0), S.fast_sigmoid(2.0), (2.0 ** -5, 8.0), (2.0 ** -5, 8.0)),
         (S.sigmoid(3.0), S.sigmoid(2.0), (2.0 ** -5, 8.0), (0.125, 32.0))]
IDS = ["fast_sigmoid", "sigmoid(3)-sigmoid(2), two cells"]


def _table(f, g, qs, qps) -> variance.VarianceTable:
    table = gaussian.variance_table(f, g, np.array(qs), np.array(qps), entries=MANY)
    assert table is not None
    return table


def _rhos(extra: list[float]) -> np.ndarray:
    """Correlations: +-1, 1 -+ 10^-k (near-coinciding inputs), 0, t = 1/2, drawn ones."""
    near = 10.0 ** -np.arange(1.0, 16.0, 2.0)
    return np.concatenate([[1.0, -1.0, 0.0, 0.75, -0.75], 1 - near, -1 + near, extra])


def _cov(q: np.ndarray, qp: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c, det) with det = q q' (1 - rho^2) computed without cancellation near +-1."""
    one_minus = np.where(rho >= 0, 1.0 - rho, 1.0 + rho)
    return rho * np.sqrt(q * qp), q * qp * one_minus * (2.0 - one_minus)


@pytest.mark.parametrize("f, g, qs, qps", CASES, ids=IDS)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0),
       extra=st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4))
def test_table_against_2d_quadrature(f, g, qs, qps, a, b, extra):
    """Within 1e-9 of 2-D quadrature (order 16), relative to sqrt(E f^2 E g^2), anywhere
    in the cells (a, b: where q and q' lie on their log scales, ends included): the
    table's own tolerances (TOL, RANK_TOL: 1e-12 of the cell's largest value, which is
    at most ~300 times the smallest scale here), its nodes' route (~1e-13) and the
    reference's error (~1e-13) leave an order to spare."""
    table = _table(f, g, qs, qps)
    q = qs[0] * (qs[1] / qs[0]) ** a
    qp = qps[0] * (qps[1] / qps[0]) ** b
    rho = _rhos(extra)
    qa, qpa = np.full(rho.shape, q), np.full(rho.shape, qp)
    c, det = _cov(qa, qpa, rho)
    got = table(qa, qpa, c, det)
    ref = gaussian.quad_pair(f, g, qa, qpa, c, det, order=16)
    scale = math.sqrt(gaussian.quad_pair(f, f, q, q, q, 0.0, order=16)
                      * gaussian.quad_pair(g, g, qp, qp, qp, 0.0, order=16))
    err = np.abs(got - ref) / scale
    assert err.max() <= 1e-9, (err.max(), q, qp, rho[err.argmax()])


@pytest.mark.parametrize("f, g, qs, qps", CASES, ids=IDS)
def test_compiled_and_header_reads_equal_the_array_path(f, g, qs, qps, host_lib):
    """One table, three reads: the array path (variance.VarianceTable.__call__), the
    compiled CPU block (each row's phi contracted into the cores first) and the headers'
    per-entry sum (gk::variance_entry, a GPU thread's), the same expression summed in
    other orders: 1e-14 of the largest value."""
    table = _table(f, g, qs, qps)
    rng = np.random.default_rng(4)
    q1 = qs[0] * (qs[1] / qs[0]) ** rng.uniform(0, 1, 40)
    q2 = qps[0] * (qps[1] / qps[0]) ** rng.uniform(0, 1, 30)
    rho = np.clip(rng.uniform(-1.2, 1.2, (40, 30)), -1, 1)
    rho[0, :5] = 1.0 - 10.0 ** -np.arange(8.0, 18.0, 2.0)
    qq1, qq2 = np.broadcast_arrays(q1[:, None], q2[None, :])
    c, det = _cov(qq1, qq2, rho)
    ref = table(qq1.ravel(), qq2.ravel(), c.ravel(), det.ravel()).reshape(rho.shape)
    atol = 1e-14 * np.abs(ref).max()
    host = np.empty(ref.size)
    data = table.data()
    args = [np.ascontiguousarray(v.ravel(), dtype=np.float64) for v in (qq1, qq2, c, det)]
    host_lib.gk_variance(*(a.ctypes.data_as(cpu_fused._D) for a in [data, *args, host]),
                         host.size)
    np.testing.assert_allclose(host.reshape(ref.shape), ref, rtol=0, atol=atol)
    if COMPILED:
        np.testing.assert_allclose(ops.variance_block(data, q1, q2, c, det), ref, rtol=0,
                                   atol=atol)


def _gaussian_inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3))


@pytest.mark.skipif(not COMPILED, reason="no compiled CPU path")
@pytest.mark.parametrize("sur, scale", [(S.fast_sigmoid(2.0), 1.0), (S.sigmoid(3.0), 1.5)],
                         ids=["fast_sigmoid, one cell", "sigmoid(3), two cells"])
def test_kernels_equal_the_routes_tables_replace(sur, scale, monkeypatch):
    """Depth 3 sign networks on N(0, I_3) inputs (first-layer variances from ~0.04 to ~5):
    the compiled loop reads the first layer from a table over variances (routes asserted)
    and the later ones from tables in the correlation. Against the same kernels with every
    table over variances refused (the reduced pair or the series, entry by entry), to
    1e-11 of the largest value: 512 x 512 symmetric (fast_sigmoid), then 512 x 520 cross
    with the second inputs scaled by ``scale`` (1.5: their variances on another cell)."""
    net = gk.MLP(3, gk.activations.sign(), sur, bias_std=0.2)
    x, y = _gaussian_inputs(512, 5), scale * _gaussian_inputs(520, 6)
    sides = [(net.side("left", "surrogate"), net.side("right", "surrogate"))]
    q1 = np.stack(planner.prepare(net.arch, x, None).q1)
    q2 = np.stack(planner.prepare(net.arch, y, None).q1)
    series, corr, var = cpu_fused.routes(net.arch.sigma, sides, q1, q2, net.arch.order)
    assert var is not None and var.tabled[0, 0] and not var.tabled[0, 1:].any()
    assert series is None and corr.tabled[0, 1:].all()
    for a, b in ((x, None), (x, y)) if scale == 1.0 else ((x, y),):
        got = net.kernels(a, b, which=("surrogate",))
        monkeypatch.setattr(gaussian, "variance_table", lambda *args, **kw: None)
        ref = net.kernels(a, b, which=("surrogate",))  # no route: tiles on the array path
        monkeypatch.undo()
        np.testing.assert_allclose(got["surrogate"], ref["surrogate"], rtol=0,
                                   atol=1e-11 * np.abs(ref["surrogate"]).max())


def test_cells():
    """A cell starts at the octave below the smallest variance and spans SPAN octaves."""
    assert variance.cell_of(1.0, 1.0) == 0
    assert variance.cell_of(0.75, 2.0 ** (variance.SPAN - 1)) == -1
    assert variance.cell_of(0.75, 2.0 ** (variance.SPAN - 1) * 1.01) is None
    for bad in ((0.0, 1.0), (-1.0, 1.0), (1.0, math.inf), (2.0, 1.0), (math.nan, 1.0)):
        assert variance.cell_of(*bad) is None


def test_blocks_that_keep_their_route():
    """Small blocks, variances over too many octaves, and a pair whose series is short
    at the median variance (sigmoid(2) about q = 1: ~120 terms) keep their routes."""
    fs = S.fast_sigmoid(2.0)
    spread = np.geomspace(0.1, 5.0, 64)
    assert gaussian.variance_table(fs, fs, spread, spread) is None  # 4096 entries
    wide = np.geomspace(1e-3, 10.0, 64)
    assert gaussian.variance_table(fs, fs, wide, wide, entries=MANY) is None
    near_one = np.geomspace(0.5, 2.0, 64)
    assert gaussian.variance_table(S.sigmoid(2.0), S.sigmoid(2.0), near_one, near_one,
                                   entries=MANY) is None


def test_builder_refuses_what_does_not_converge():
    """Noise never converges (a half's panels pass MAX_PANELS: None), nor does a
    non-finite value; a function of low rank and low degree is reproduced to rounding."""
    rng = np.random.default_rng(0)
    assert variance.build(lambda q, qp, c, det: rng.normal(size=q.shape), 0, 0) is None
    assert variance.build(lambda q, qp, c, det: np.full(q.shape, np.nan), 0, 0) is None

    def smooth(q, qp, c, det):
        return np.log(q) * qp + c + 0.5 * c ** 3 / (q * qp)

    table = variance.build(smooth, -2, 1)
    assert table is not None and table.ranks == (2, 2)  # log q q', sqrt(q q') (rho + rho^3 / 2)
    rng = np.random.default_rng(1)
    q, qp = 2.0 ** rng.uniform(-2, 6, 200), 2.0 ** rng.uniform(1, 9, 200)
    rho = rng.uniform(-1, 1, 200)
    c, det = _cov(q, qp, rho)
    want = smooth(q, qp, c, det)
    np.testing.assert_allclose(table(q, qp, c, det), want, rtol=0, atol=1e-13 * np.abs(want).max())
