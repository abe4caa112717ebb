"""Gaussian multiplicative noise g = phi(z) xi, xi ~ N(1, sigma_eps^2) (docs/THEORY.md §10).

Independent routes: scipy quad / dblquad over (z, xi) with the normal densities written out (not the
layer's mu_2, mu_4), the ReLU critical line 2 / (1 + sigma_eps^2), the linear network's exact
closed forms (derived for any multiplicative noise in the test's docstring), and finite-width
simulation with z-scores as in tests/test_simulation.py.
"""
import math

import numpy as np
import pytest
from scipy import integrate, stats

import meanfield as mf
from meanfield import get_activation
from meanfield.noise import Dropout, GaussianNoise, make_noise, noise_from_spec

ZMAX = 4.5
S2 = 0.3
Q = 0.8


def _xi_mean(fn, s2=S2):
    """E[fn(xi)], xi ~ N(1, s2), by quad over the density."""
    s = np.sqrt(s2)
    return integrate.quad(lambda x: fn(x) * stats.norm.pdf(x, 1, s), 1 - 14 * s, 1 + 14 * s,
                          epsabs=0, epsrel=1e-13, limit=200)[0]


def _z_mean(fn, q=Q):
    """E[fn(sqrt(q) z)], z ~ N(0, 1), by quad (split at 0, relu's kink); fn takes arrays."""
    def f(z):
        return fn(np.array([np.sqrt(q) * z]))[0] * stats.norm.pdf(z)
    return sum(integrate.quad(f, a, b, epsabs=0, epsrel=1e-13, limit=200)[0]
               for a, b in ((-14, 0), (0, 14)))


def test_noise_moments_against_quadrature():
    nz = GaussianNoise(sigma_eps2=S2)
    assert _xi_mean(lambda x: x) == pytest.approx(1.0, rel=1e-12)
    assert float(nz.mu2) == pytest.approx(_xi_mean(lambda x: x ** 2), rel=1e-12)
    assert float(nz.mu4) == pytest.approx(_xi_mean(lambda x: x ** 4), rel=1e-12)


@pytest.mark.parametrize("name", ["tanh", "erf", "relu"])
def test_map_and_backprop_moments_against_quadrature(name):
    """z and xi are independent: each moment is a z-integral times the matching power of xi
    (E[(phi xi)^2] = E[phi^2] E[xi^2], E[(phi' xi)^2 (phi xi)^2] = E[phi'^2 phi^2] E[xi^4], ...)."""
    act = get_activation(name)
    nz = GaussianNoise(sigma_eps2=S2)
    phi, dphi = act.phi, act.dphi
    xi2, xi4 = _xi_mean(lambda x: x ** 2), _xi_mean(lambda x: x ** 4)
    assert float(nz.second_moment(act, Q)) == pytest.approx(_z_mean(lambda x: phi(x) ** 2) * xi2, rel=1e-9)
    assert float(nz.deriv_second_moment(act, Q)) == pytest.approx(
        _z_mean(lambda x: dphi(x) ** 2) * xi2, rel=1e-9)
    assert float(nz.backprop_source_single(act, Q)) == pytest.approx(
        _z_mean(lambda x: (dphi(x) * phi(x)) ** 2) * xi4, rel=1e-9)
    h = 1e-4  # slope of the quadrature second moment by central difference (error ~1e-8)
    m2 = [_z_mean(lambda x: phi(x) ** 2, q=Q + d) * xi2 for d in (-h, h)]
    assert float(nz.second_moment_slope(act, Q)) == pytest.approx((m2[1] - m2[0]) / (2 * h), rel=1e-6)


def test_pair_source_against_quadrature():
    """S_2 = E[(g'g)bar(u1) (g'g)bar(u2)], (g'g)bar = phi' phi E[xi^2], at correlation c."""
    act, c = get_activation("tanh"), 0.4
    exi2 = _xi_mean(lambda x: x ** 2)

    def gg(u):  # tanh written out: phi' phi = (1 - tanh^2) tanh
        t = math.tanh(u)
        return (1 - t * t) * t * exi2

    def f(z2, z1):
        u1 = np.sqrt(Q) * z1
        u2 = np.sqrt(Q) * (c * z1 + np.sqrt(1 - c * c) * z2)
        return gg(u1) * gg(u2) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)
    want = integrate.dblquad(f, -10, 10, -10, 10, epsabs=1e-13, epsrel=1e-10)[0]
    got = float(GaussianNoise(sigma_eps2=S2).backprop_source_pair(act, Q, c))
    assert got == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("s2", [0.0, 0.25, 1.0, 3.0])
def test_relu_critical_line(s2):
    nz = GaussianNoise(sigma_eps2=s2)
    assert float(mf.critical_sigma_w2("relu", 0.0, noise=nz)) == pytest.approx(2 / (1 + s2), rel=1e-12)
    # chi_1 = sigma_w^2 (1 + sigma_eps^2) / 2 whatever q* is (relu' = 1 on half the line)
    res = mf.analyze("relu", 1.0 / (1 + s2), 0.1, noise=nz)
    assert float(res.chi_1) == pytest.approx(0.5, rel=1e-12)


def linear_closed_forms(sw, sb, mu2, mu4, depth, gia=False):
    """Exact g_aa, g_ab of a linear network with multiplicative noise (E xi^2 = mu2, E xi^4 = mu4).

    q* = sb/(1 - sw mu2), q*_ab = sb/(1 - sw), chi_1 = chi_q = sw mu2, chi_2 = sw, a at k layers
    from the output 2 sw chi_1^k, S_1 = mu4 q*, S_2 = mu2^2 q*_ab; solving the recursion (index 0 =
    layer 1, k = L - l):
    g_aa = 4 q*^2 mu2 chi_1^k [1 + (mu4/mu2^2) sum_{j=1..k} chi_1^j],
    g_ab = 4 q*_ab^2 sw^k sum_{j=0..k} (sw mu2^2)^j (dropout: Huang et al. eqs. 14-15).
    """
    q, qab = sb / (1 - sw * mu2), sb / (1 - sw)
    chi1 = sw * mu2
    k = np.arange(depth)[::-1]
    if gia:
        return 4 * q * q * mu2 * chi1 ** k, 4 * qab * qab * sw ** k
    gaa = [4 * q * q * mu2 * chi1 ** kk * (1 + mu4 / mu2 ** 2 * sum(chi1 ** j for j in range(1, kk + 1)))
           for kk in k]
    gab = [4 * qab * qab * sw ** kk * sum((sw * mu2 ** 2) ** j for j in range(kk + 1)) for kk in k]
    return np.array(gaa), np.array(gab)


@pytest.mark.parametrize("method", ["exact", "gia"])
def test_linear_exact_backprop_closed_form(method):
    sw, sb, depth = 0.5, 0.1, 12
    s = 0.5
    gm = mf.gradient_metrics("linear", sw, sb, depth=depth, noise="gaussian", sigma_eps2=s, method=method)
    gaa, gab = linear_closed_forms(sw, sb, 1 + s, 1 + 6 * s + 3 * s * s, depth, gia=method == "gia")
    np.testing.assert_allclose(gm.g_aa, gaa, rtol=1e-12)
    np.testing.assert_allclose(gm.g_ab, gab, rtol=1e-12)
    # the closed form reduces to Huang's dropout one (THEORY §5 numbers) with dropout's moments
    d_aa, d_ab = linear_closed_forms(sw, sb, 1 / 0.6, 0.6 ** -3, depth)
    assert d_aa[-2] == pytest.approx(4.7777777777) and d_ab[-2] == pytest.approx(0.19111111111)


def test_gaussian_dropout_matches_dropout_but_for_the_fourth_moment():
    keep = 0.6
    g, d = GaussianNoise.matching_dropout(keep=keep), Dropout(keep=keep)
    assert g == GaussianNoise.matching_dropout(drop=0.4)
    assert g.sigma_eps2 == pytest.approx(0.4 / 0.6)
    a, b = mf.analyze("tanh", 1.4, 0.1, noise=g), mf.analyze("tanh", 1.4, 0.1, noise=d)
    for f in ("q_star", "c_star", "chi_1", "chi_c", "chi_q"):
        assert float(getattr(a, f)) == pytest.approx(float(getattr(b, f)), rel=1e-12)
    # mu_4 = (3 - 2 rho^2)/rho^2 against 1/rho^3: larger for (sqrt 3 - 1)/2 < rho < 1
    assert float(g.mu4) == pytest.approx((3 - 2 * keep ** 2) / keep ** 2, rel=1e-12)
    act = get_activation("tanh")
    ratio = g.backprop_source_single(act, 0.7) / d.backprop_source_single(act, 0.7)
    assert float(ratio) == pytest.approx((3 - 2 * keep ** 2) * keep, rel=1e-12)
    low = GaussianNoise.matching_dropout(keep=0.3)
    assert float(low.mu4) < 0.3 ** -3
    with pytest.raises(ValueError, match="keep"):
        GaussianNoise.matching_dropout()


def test_parameters_validation_and_spec():
    assert noise_from_spec(GaussianNoise(sigma_eps2=0.25).spec()) == GaussianNoise(sigma_eps2=0.25)
    assert make_noise("gaussian", sigma_eps2=0.25, keep=1.0) == GaussianNoise(sigma_eps2=0.25)
    assert GaussianNoise().is_identity() and not GaussianNoise(sigma_eps2=0.1).is_identity()
    r = mf.analyze("tanh", 1.4, 0.1, noise=GaussianNoise(sigma_eps2=0.0))
    r0 = mf.analyze("tanh", 1.4, 0.1, noise="none")
    assert float(r.q_star) == float(r0.q_star) and float(r.chi_1) == float(r0.chi_1)
    arr = mf.analyze("tanh", 1.4, 0.1, noise=GaussianNoise(sigma_eps2=[0.1, 0.5]))
    assert arr.chi_1.shape == (2,) and arr.chi_1[1] > arr.chi_1[0]
    for bad in (-0.1, float("nan"), "0.3", np.inf):
        with pytest.raises(ValueError, match="sigma_eps2"):
            GaussianNoise(sigma_eps2=bad)
    with pytest.raises(ValueError, match="keep"):
        make_noise("gaussian", sigma_eps2=0.2, keep=0.5)


def test_gradients_cli_offers_gaussian_noise(capsys):
    from meanfield.cli.gradients import main
    assert main(["--activation", "relu", "--sigma-w2", "1.2", "--noise", "gaussian",
                 "--sigma-eps2", "0.5", "--depth", "5", "--realisations", "0"]) == 0
    assert "gaussian(sigma_eps2=0.5)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--noise", "gaussian", "--sigma-eps2", "-1", "--realisations", "0"])
    assert exc.value.code == 2 and "sigma_eps2" in capsys.readouterr().err


# ------------------------------------------------------------------ simulation (torch)

def zscores(res, metric, theory):
    return (res.mean(metric) - theory) / res.sem(metric)


def test_linear_simulation_matches_closed_forms():
    from meanfield.simulation import simulate_gradients
    sw, sb, s, depth = 0.5, 0.1, 0.5, 10
    q, qab = sb / (1 - sw * (1 + s)), sb / (1 - sw)
    res = simulate_gradients("linear", sw, sb, noise="gaussian", sigma_eps2=s, width=250, depth=depth,
                             realisations=80, q0=q, c0=qab / q, seed=12)
    gaa, gab = linear_closed_forms(sw, sb, 1 + s, 1 + 6 * s + 3 * s * s, depth)
    for m, want in (("g_aa", gaa), ("g_bb", gaa), ("g_ab", gab)):
        assert np.max(np.abs(zscores(res, m, want))) < ZMAX, m


@pytest.mark.parametrize("act,sw", [("tanh", 1.2), ("relu", 1.0)])
def test_simulation_matches_exact_theory(act, sw):
    from meanfield.simulation import simulate_gradients
    nz = GaussianNoise(sigma_eps2=0.3)
    ex = mf.gradient_metrics(act, sw, 0.1, depth=8, noise=nz, method="exact")
    res = simulate_gradients(act, sw, 0.1, noise=nz, width=300, depth=8, realisations=100, seed=32)
    for m in ("g_aa", "g_ab"):
        assert np.max(np.abs(zscores(res, m, getattr(ex, m)))) < ZMAX, m
