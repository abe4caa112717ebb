"""ReLU with dropout: the arc-cosine kernel and Price's identity against scipy dblquad."""

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

import meanfield
from derivations import relu as R
from derivations.symbols import c, q, rho, sigma_w2


def _pair_expectation(fn, qq, cc):
    """E[fn(u1, u2)] by dblquad over (z1, z2) on [-10, 10]^2 (split at 0 for the kinks)."""
    pdf = lambda x: np.exp(-x * x / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    s = np.sqrt(1 - cc * cc)

    def integrand(z2, z1):
        return fn(np.sqrt(qq) * z1, np.sqrt(qq) * (cc * z1 + s * z2)) * pdf(z1) * pdf(z2)

    total = 0.0
    for lo1, hi1 in ((-10, 0), (0, 10)):
        # the kink of u2 sits at z2 = -c z1 / s
        total += integrate.dblquad(integrand, lo1, hi1, lambda z1: -10.0, lambda z1: -cc * z1 / s,
                                   epsabs=1e-13, epsrel=1e-11)[0]
        total += integrate.dblquad(integrand, lo1, hi1, lambda z1: -cc * z1 / s, lambda z1: 10.0,
                                   epsabs=1e-13, epsrel=1e-11)[0]
    return total


@pytest.mark.parametrize("qq,cc", [(1.0, 0.3), (2.5, -0.7), (0.4, 0.95)])
def test_kernel_and_orthant_probability_vs_dblquad(qq, cc):
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    assert R.kernel_numeric(qq, cc) == pytest.approx(_pair_expectation(lambda a, b: relu(a) * relu(b), qq, cc),
                                                     rel=1e-7)
    step = lambda a, b: (a > 0) * (b > 0)  # noqa: E731
    assert R.orthant_probability_numeric(cc) == pytest.approx(_pair_expectation(step, qq, cc), rel=1e-7)


def test_symbolic_identities():
    # Price's identity d/dc K = q E[phi' phi'] holds for the derived kernel
    assert sp.simplify(sp.diff(R.kernel(), c) - q * R.orthant_probability()) == 0
    # c = 1 gives the variance q/2; c = 0 gives E[relu]^2 = q/(2 pi)
    assert sp.simplify(R.kernel().subs(c, 1) - q / 2) == 0
    assert sp.simplify(R.kernel().subs(c, 0) - q / (2 * sp.pi)) == 0
    assert sp.simplify(R.chi_1() - sigma_w2 / (2 * rho)) == 0
    assert sp.simplify(R.critical_line() - 2 * rho) == 0
    assert sp.simplify(R.chi_c().subs(c, 1) - R.chi_1() * rho) == 0  # chi_c(1) = sigma_w2/2


def test_q_map_vs_quad():
    sw, sb, rho_, qq = 1.3, 0.1, 0.8, 0.7
    second, _ = integrate.quad(lambda z: (np.sqrt(qq) * z) ** 2 * np.exp(-z * z / 2) / np.sqrt(2 * np.pi), 0, np.inf)
    lam = sp.lambdify([q, sigma_w2, sp.Symbol("sigma_b2", positive=True), rho], R.q_map())
    assert lam(qq, sw, sb, rho_) == pytest.approx(sw / rho_ * second + sb, rel=1e-10)


def test_c_star_is_a_fixed_point_of_iterated_map():
    sw, sb, rho_ = 1.5, 0.1, 0.9
    cc = 0.2
    for _ in range(3000):
        cc = R.c_map_numeric(sw, sb, rho_, cc)
    assert R.c_star_numeric(sw, sb, rho_) == pytest.approx(cc, rel=1e-10)


def test_c_star_without_noise_is_one():
    """rho = 1: c = 1 is the stable fixed point below the critical line sigma_w2 = 2."""
    for sw in (1.5, 1.99):
        assert R.c_star_numeric(sw, 0.05, 1.0) == 1.0 == meanfield.analyze("relu", sw, 0.05, 1.0).c_star
