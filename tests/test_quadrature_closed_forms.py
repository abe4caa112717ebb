"""Closed forms keep their digits up to c = +-1 and at large q (issue 12, section 3).

Every closed-form kernel of the built-in activations (linear, ReLU, erf, hard tanh, GELU) against
mpmath (tests/_quadref.py: a 1-D integral over u1 of f(u1) times the conditional expectation of
f(u2) in closed form, 20 digits; moments at 30 digits) at c = +-1, +-(1 - 1e-15), q = 1e-6 and
q = 1e8 (1e30 for the bounded ones).
"""
import numpy as np
import pytest

import meanfield as mf
from meanfield import kernels

import _quadref as ref

CLOSED = ["linear", "relu", "erf", "hard_tanh", "gelu"]
QS = [1e-6, 50.0, 1e8]
CS = [-(1 - 1e-15), 0.3, 1 - 1e-15]  # at q = 50 and 1e8; +-1 at every q (one-dimensional)


def qs_for(name):
    return QS + ([1e30] if mf.get_activation(name).bounded else [])


@pytest.mark.parametrize("name", CLOSED)
def test_closed_moments_match_mpmath(name):
    act = mf.get_activation(name)
    for key in ("A2", "dA2", "D2", "PD"):
        if key not in act.closed:
            continue
        for q in qs_for(name):
            exact = float(ref.mp_moment(name, key, q))
            assert float(kernels.moment(act, key, q)) == pytest.approx(exact, rel=5e-15, abs=1e-300), (key, q)


@pytest.mark.slow
@pytest.mark.parametrize("name", CLOSED)
def test_closed_pair_kernels_match_mpmath(name):
    """Accurate to 1e-14 of the kernel's own scale sqrt(E f^2 E f^2) at every c and q (hard tanh:
    1e-13, its pairs are 1-D quadratures of closed-form conditional expectations), and Kd (an
    integral of one sign) to 1e-13 relative: chi_c at huge q* rests on it."""
    act = mf.get_activation(name)
    tol = 1e-13 if name == "hard_tanh" else 1e-14
    for key, one in (("K", "A2"), ("Kd", "D2"), ("PK", "PD")):
        if key not in act.closed:
            continue
        for q in qs_for(name):
            scale = float(kernels.moment(act, one, q))
            for c in [-1.0, 1.0] + (CS if q in (50.0, 1e8) else []):
                exact = float(ref.mp_pair(name, key, q, c))
                got = float(kernels.pair(act, (key,), q, c)[0])
                assert abs(got - exact) <= tol * scale + 1e-300, (key, q, c, got, exact)
                if key == "Kd":
                    assert got == pytest.approx(exact, rel=1e-13, abs=1e-300), (q, c)


def test_hard_tanh_covariance_map_near_c_one():
    # issue 12: the Owen's-T form gave 0.9249248635651166; 40-digit mpmath gives ...512694
    exact = float(ref.mp_pair("hard_tanh", "K", 50.0, 1 - 1e-15, dps=40))
    assert exact == pytest.approx(0.9249248509512694, rel=1e-15)
    got = float(mf.covariance_map(50, 1 - 1e-15, "hard_tanh", 1, 0))
    assert got == pytest.approx(exact, rel=1e-14)
    # the c-map stays below 1, and 1 - C(c) (the distance that sets 1 - c* near the critical
    # line) is right to the rounding of K
    for q in (50.0, 1e8):
        a2 = ref.mp_moment("hard_tanh", "A2", q)
        for delta in (1e-15, 1e-12, 1e-9):
            cmap = float(mf.c_map(q, 1 - delta, "hard_tanh", 1.0, 0.0))
            assert cmap <= 1.0, (q, delta)
            if delta == 1e-9:  # closer to 1 the gap is a few ulp of K
                gap = float(1 - ref.mp_pair("hard_tanh", "K", q, 1 - delta, dps=25) / a2)
                assert 1 - cmap == pytest.approx(gap, rel=1e-4), (q, delta)


def test_gelu_q_map_at_large_variance():
    # issue 12: 49.99999748 before (the ReLU value q/2: no node in GELU's curved region)
    q = 100.0
    closed = q / 4 + q / (2 * np.pi) * (np.arcsin(q / (1 + q)) + 2 * q / ((1 + q) * np.sqrt(1 + 2 * q)))
    assert float(mf.q_map(q, "gelu", 1.0, 0.0)) == pytest.approx(49.98148273, abs=5e-9)
    assert float(mf.q_map(q, "gelu", 1.0, 0.0)) == pytest.approx(closed, rel=1e-15)
    assert float(mf.q_map(q, "gelu", 1.0, 0.0)) == pytest.approx(
        float(ref.mp_moment("gelu", "A2", q)), rel=1e-15)


def test_relu_and_erf_pairs_near_c_minus_one_keep_relative_digits():
    # K(c) -> 0 as (1 + c)^1.5 for ReLU; the closed forms keep relative accuracy there too
    for name, key in (("relu", "K"), ("erf", "Kd"), ("relu", "Kd")):
        act = mf.get_activation(name)
        for c in (-1 + 1e-12, -1 + 1e-6, -0.9):
            exact = float(ref.mp_pair(name, key, 2.0, c, dps=30))
            assert float(kernels.pair(act, (key,), 2.0, c)[0]) == pytest.approx(exact, rel=1e-12), (name, key, c)


def test_scipy_special_is_imported_only_where_used():
    # meanfield.special imports scipy.special on first use: the tanh, ReLU and linear paths (the
    # depthscale CLI's default) never load it; hard tanh's closed forms do, through it
    import subprocess
    import sys
    code = ("import sys, meanfield as mf\n"
            "mf.analyze('tanh', [1.0, 2.5], 0.05, 0.9); mf.analyze('relu', 1.5, 0.1, 0.9)\n"
            "mf.analyze('linear', 0.5, 0.1)\n"
            "print('scipy.special' in sys.modules)\n"
            "mf.q_map(2.0, 'hard_tanh', 1.5, 0.1, 0.9)\n"
            "print('scipy.special' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
