"""k-winners: threshold, gain and slopes against scipy.stats / quad; the ReLU special case."""

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, stats

from derivations import kwinners as K
from derivations.symbols import f, tau


@pytest.mark.parametrize("ff", [0.02, 0.1, 0.3, 0.5, 0.8])
def test_tau_and_G_vs_scipy(ff):
    t = stats.norm.isf(ff)
    assert K.tau_numeric(ff) == pytest.approx(t, rel=1e-12, abs=1e-14)
    g, _ = integrate.quad(lambda z: z * z * stats.norm.pdf(z), t, np.inf, epsabs=1e-14)
    assert K.G_numeric(ff) == pytest.approx(g, rel=1e-10)
    assert K.forward_critical_numeric(ff) == pytest.approx(1 / g, rel=1e-10)
    assert K.chi_1_numeric(ff, 1.7) == pytest.approx(1.7 * stats.norm.sf(t), rel=1e-12)


def test_relu_case_and_no_double_criticality():
    assert K.threshold().subs(f, sp.Rational(1, 2)) == 0
    assert sp.simplify(K.G().subs({tau: 0, f: sp.Rational(1, 2)}) - sp.Rational(1, 2)) == 0
    # f / G(f) < 1 for f < 1/2 because tau pdf(tau) > 0 for tau > 0
    lam = sp.lambdify([f], K.chi_1_at_forward_critical().subs(tau, K.threshold()), "scipy")
    fs = np.linspace(0.01, 0.49, 25)
    assert np.all(lam(fs) < 1)
    assert lam(0.5) == pytest.approx(1.0, rel=1e-12)
