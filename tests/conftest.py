"""Shared test helpers: statistical tolerances derived from the number of comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats


def z_bound(n_comparisons: int, dof: int | None = None, family_alpha: float = 1e-3) -> float:
    """Two-sided critical value with a Bonferroni correction over ``n_comparisons``.

    A correct implementation fails one of the comparisons with probability at most
    ``family_alpha`` (Student-t with ``dof`` degrees of freedom, normal if None).
    """
    p = 1.0 - family_alpha / (2.0 * n_comparisons)
    return float(stats.norm.ppf(p) if dof is None else stats.t.ppf(p, dof))


def assert_within_se(estimate, se, exact, dof, label=""):
    """|estimate - exact| <= z * se entrywise, z from :func:`z_bound`."""
    estimate, se, exact = map(np.asarray, (estimate, se, exact))
    z = z_bound(estimate.size, dof)
    dev = np.abs(estimate - exact) / se
    assert np.all(np.isfinite(dev)), f"{label}: non-finite deviation"
    assert dev.max() <= z, (
        f"{label}: max |MC - analytic| = {dev.max():.2f} standard errors > {z:.2f}\n"
        f"analytic={exact}\nMC={estimate}\nse={se}"
    )


@pytest.fixture
def points():
    """Five points in R^3 of different norms, one of them repeated (a coinciding pair)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3)) * np.array([[0.5], [1.0], [1.7], [2.5]])
    return np.concatenate([x, x[1:2]])
