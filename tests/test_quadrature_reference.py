"""Every activation's Gaussian kernels against an independent route, q from 1e-6 to 1e8 (1e30 for
the bounded ones): scipy quad in x with breakpoints chosen in tests/_quadref.py (issue 12,
section 3: "quadrature must not converge falsely for any activation").

The integrals of one sign (A2, D2, PD, Kd) are compared relative to themselves; K and PK, which
cancel near c = 0 (and PK inside its inner integral), relative to their scale sqrt(E f^2 E f^2)
as well. dA2 is d/dq E[phi^2]: compared relative to itself (O(q^-1.5) for bounded phi at large q).
"""
import numpy as np
import pytest
import sympy as sp

import meanfield as mf
from meanfield import gauss, kernels

import _quadref as ref

NAMES = ["tanh", "sigmoid", "erf", "gelu", "silu", "hard_tanh", "relu", "linear"]
QS = [1e-6, 1e-2, 1.0, 50.0, 1e4, 1e8]


def qs_for(name):
    return QS + ([1e30] if mf.get_activation(name).bounded else [])


@pytest.mark.parametrize("name", NAMES)
def test_moments_match_quad(name):
    act = mf.get_activation(name)
    for q in qs_for(name):
        got = kernels.moments(act, ("A2", "dA2", "D2", "PD"), q)
        for key, g in zip(("A2", "dA2", "D2", "PD"), got):
            assert float(g) == pytest.approx(ref.moment_ref(name, key, q), rel=2e-13, abs=1e-300), (key, q)


QUAD_PAIRS = [(name, key) for name in NAMES for key in ("K", "Kd", "PK")
              if key not in mf.get_activation(name).closed]
PAIR_QS = [1e-6, 1.0, 50.0, 1e4, 1e8]
PAIR_CS = [-1.0, -0.99, 0.0, 0.5, 0.999999, 1.0]


@pytest.mark.slow
@pytest.mark.parametrize("name,key", QUAD_PAIRS)
def test_pair_kernels_match_quad(name, key):
    act = mf.get_activation(name)
    one = {"K": "A2", "Kd": "D2", "PK": "PD"}[key]
    for q in PAIR_QS:
        scale = float(kernels.moment(act, one, q))
        cs = PAIR_CS if q in (1.0, 1e8) else [-0.99, 0.5, 0.999999]
        for c in cs:
            got = float(kernels.pair(act, (key,), q, c)[0])
            exact = ref.pair_ref(name, key, q, c)
            tol = 1e-12 * abs(exact) + (0.0 if key == "Kd" else 1e-13 * scale)
            assert abs(got - exact) <= tol + 1e-300, (q, c, got, exact)


def test_series_and_direct_pairs_agree():
    """The Mehler series (moderate q) and direct quadrature are two routes to the same kernels."""
    act = mf.get_activation("tanh")
    fs = lambda x: np.stack([act.phi(x), act.dphi(x), act.phi(x) * act.dphi(x)])  # noqa: E731
    q, c = np.array([0.05, 0.7, 2.4, 5.0]), np.array([-0.9, 0.3, 0.99, 1.0])
    kernels.clear_cache()
    series = kernels.pair(act, ("K", "Kd", "PK"), q, c)
    direct = gauss.expect_pair(fs, fs, q, c, **act.structure)
    scale = kernels.moments(act, ("A2", "D2", "PD"), q)
    for s, d, sc in zip(series, direct, scale):
        np.testing.assert_array_less(np.abs(s - d), 3e-14 * sc)


def test_user_activation_without_closed_forms_at_large_variance():
    """GELU built from sympy with its structure declared: quadrature (no closed form) matches the
    closed forms at q where a Gaussian-scale rule puts no node in GELU's curved region."""
    x = sp.Symbol("x")
    user = mf.Activation.from_sympy(x * (1 + sp.erf(x / sp.sqrt(2))) / 2, name="gelu_q", scale=2.0,
                                    width=10.0, tails=((0.0, 0.0), (0.0, 1.0)))
    gelu = mf.get_activation("gelu")
    for q in (58.0, 100.0, 1e4, 1e8):
        for key in ("A2", "dA2", "D2"):
            assert float(kernels.moment(user, key, q)) == pytest.approx(
                float(kernels.moment(gelu, key, q)), rel=1e-13), (key, q)
        for c in (-0.5, 0.3, 0.999):
            assert float(kernels.pair(user, ("Kd",), q, c)[0]) == pytest.approx(
                float(kernels.pair(gelu, ("Kd",), q, c)[0]), rel=1e-12), (q, c)


def test_a_feature_the_first_level_misses_is_still_found():
    """E[gelu(x)^2] at q = 100: the fixed step 0.5 in z put no node in |x| < 5, so two levels
    agreed on the ReLU value q/2 (49.99999748); with the structure declared they cannot."""
    gelu = mf.get_activation("gelu")
    got = gauss.expect(lambda x: gelu.phi(x) ** 2, 100.0, **gelu.structure)
    assert float(got) == pytest.approx(float(gelu.closed["A2"](100.0)), rel=1e-13)


def test_bends_and_per_point_kinks():
    """E[|x - k|] for x ~ N(0, 1): per-point kinks k, and a bend (|.| smoothed on 1e-7) that a
    Gaussian-scale node set would step over."""
    from scipy.stats import norm
    k = np.array([-0.3, 0.0, 2.0])
    got = gauss.expect(lambda x: np.abs(x - k[:, None]), np.ones(3), kinks=k[:, None])
    exact = 2 * norm.pdf(k) + k * (2 * norm.cdf(k) - 1)
    np.testing.assert_allclose(got, exact, rtol=1e-13)
    w = 1e-7  # E[sqrt((x - 0.4)^2 + w^2)] = E|x - 0.4| + O(w^2 log w)
    got = gauss.expect(lambda x: np.sqrt((x - 0.4) ** 2 + w * w), 1.0, bends=([0.4], [w]))
    assert float(got) == pytest.approx(2 * norm.pdf(0.4) + 0.4 * (2 * norm.cdf(0.4) - 1), rel=1e-12)


def test_undeclared_structure_at_huge_variance_is_refused():
    """An activation without width (structure everywhere) at q = 1e12 needs ~10^6 panels: a clear
    ConvergenceError, not an allocation of that size or a wrong number."""
    user = mf.Activation.from_callables("user_tanh", np.tanh, lambda t: 1 / np.cosh(t) ** 2,
                                        lambda t: -2 * np.tanh(t) / np.cosh(t) ** 2)
    with pytest.raises(mf.ConvergenceError, match="declare width"):
        kernels.moment(user, "D2", 1e12)
