"""Sparseout at the edges of s (issue 12, part 4).

1 < s < 2: E[g'^2] has an integrable |phi|^(s-2) singularity at the zeros of phi; checked
against mpmath with the substitution t = |x|^(s-1), which removes it (an independent route: the
toolkit subtracts the singular part instead). s <= 1: chi_1 = +inf at every entry point.
"""
import math

import _quadref as ref
import mpmath as mp
import numpy as np
import pytest
from scipy.special import gamma

import meanfield as mf

mp.mp.dps = 25
ALL = ["tanh", "relu", "hard_tanh", "erf", "gelu", "silu", "sigmoid"]

MP_PHI = {
    "tanh": (mp.tanh, lambda x: 1 / mp.cosh(x) ** 2),
    "gelu": (lambda x: x * mp.ncdf(x), lambda x: mp.ncdf(x) + x * mp.npdf(x)),
    "hard_tanh": (lambda x: max(min(x, 1), -1), lambda x: 1 if abs(x) < 1 else 0),
}


def mp_power_moment(name, q, p):
    """E[phi'^2 |phi|^p], x ~ N(0, q), p > -1: mpmath in t = |x|^(p+1) on each side of 0."""
    phi, dphi = MP_PHI[name]
    s = mp.sqrt(q)

    def h(x):  # phi'^2 |phi / x|^p pdf: smooth through 0
        return dphi(x) ** 2 * abs(phi(x) / x) ** p * mp.npdf(x, 0, s)
    top = (12 * s) ** (p + 1)
    pts = [0, top] if name != "hard_tanh" else [0, 1, top]
    return sum(mp.quad(lambda t, sg=sg: h(sg * t ** (1 / (p + 1))), pts) / (p + 1) for sg in (1, -1))


def kappa(s):
    return 2 ** (s / 2 - 1) * gamma((s + 1) / 2) / math.sqrt(math.pi)


@pytest.mark.parametrize("name", ALL)
def test_issue_s_just_above_one(name):
    r = mf.analyze(name, 1.5, 0.05, 0.9, noise="sparseout", s=1.01)
    assert np.isfinite(r.chi_1) and float(r.chi_1) > 0
    # q* is a fixed point of the variance map by scipy quad
    phi, rr = ref.PHI[name][0], 0.1 / 0.9
    q = float(r.q_star)
    m2 = ref.gauss1(lambda x: phi(x) ** 2 + rr * abs(phi(x)) ** 1.01, q, ref.KINKS.get(name, [0.0]))
    assert 1.5 * m2 + 0.05 == pytest.approx(q, rel=1e-10)


@pytest.mark.parametrize("name", ["tanh", "gelu", "hard_tanh"])
@pytest.mark.parametrize("s", [1 + 1e-6, 1.001, 1.2, 1.9])
@pytest.mark.parametrize("backward", ["true", "code"])
def test_chi_1_against_mpmath(name, s, backward):
    keep, sw, sb = 0.8, 1.4, 0.1
    r = mf.analyze(name, sw, sb, keep, noise="sparseout", s=s, backward=backward)
    q = mp.mpf(float(r.q_star))
    cs = s / 2 if backward == "true" else 1.0
    d2 = mp_power_moment(name, q, 0)  # E[phi'^2]
    expected = sw * (d2 + cs ** 2 * (1 - keep) / keep * mp_power_moment(name, q, mp.mpf(s) - 2))
    assert float(r.chi_1) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("s", [1 + 1e-6, 1.0001, 1.01])
def test_relu_chi_1_closed_form_near_one(s):
    # THEORY §6: q* = [sw r kappa_s / (1 - sw/2)]^(2/(2-s)) at sigma_b^2 = 0 and
    # chi_1 = sw [1/2 + c_s^2 r kappa_(s-2) q*^((s-2)/2)]; kappa_(s-2) ~ 1/(s-1) here
    keep, sw = 0.7, 1.5
    r_ = (1 - keep) / keep
    q = (sw * r_ * kappa(s) / (1 - sw / 2)) ** (2 / (2 - s))
    res = mf.analyze("relu", sw, 0.0, keep, noise="sparseout", s=s)
    assert float(res.q_star) == pytest.approx(q, rel=1e-11)
    chi = sw * (0.5 + (s / 2) ** 2 * r_ * kappa(s - 2) * q ** ((s - 2) / 2))
    assert float(res.chi_1) == pytest.approx(chi, rel=1e-11)


def test_single_source_against_mpmath_below_one():
    # E[g'^2 g^2] stays finite for 1/2 < s < 1 (|phi|^(2s-2) integrable); two-point xi by hand
    keep, s, q = 0.9, 0.75, mp.mpf("0.6")
    nz = mf.make_noise("sparseout", keep=keep, s=s)
    r_, c = (1 - keep) / keep, s / 2
    phi, dphi = MP_PHI["tanh"]

    def f(x):
        out = 0
        for xi, w in ((r_, keep), (-1.0, 1 - keep)):
            p = phi(x)
            a, b = mp.sign(p) * abs(p) ** (s / 2), c * abs(p) ** ((s - 2) / 2)
            out += w * (dphi(x) * (1 + b * xi) * (p + a * xi)) ** 2
        return out * mp.npdf(x, 0, mp.sqrt(q))
    expected = mp.quad(f, [-12, 0, 12])
    got = nz.backprop_source_single(mf.get_activation("tanh"), float(q))
    assert float(got) == pytest.approx(float(expected), rel=1e-11)
    assert np.isinf(mf.make_noise("sparseout", keep=keep, s=0.5).backprop_source_single(
        mf.get_activation("tanh"), 0.6))


def test_pair_source_by_parts_matches_direct_quadrature():
    # s in (1/2, 1): both the direct rule and integration by parts work; they must agree
    act = mf.get_activation("tanh")
    q, c = np.array([0.5, 0.5, 2.0]), np.array([0.6, 0.95, 0.3])
    for s in (0.7, 0.9):
        nz = mf.make_noise("sparseout", keep=0.9, s=s)
        direct = nz._direct_pair_source(act, q, c, np.full(3, 0.9))
        np.testing.assert_allclose(nz.backprop_source_pair(act, q, c), direct, rtol=1e-12)


@pytest.mark.parametrize("s", [0.3, 0.5, 1.0])
def test_s_at_most_one_is_infinite_everywhere(s):
    kw = dict(noise="sparseout", s=s)
    r = mf.analyze("tanh", 1.5, 0.05, 0.9, **kw)
    assert np.isinf(r.chi_1) and float(r.xi_1) == 0.0
    assert np.isinf(mf.chi_1("relu", 1.0, 0.05, 0.9, **kw))
    for method in ("exact", "gia"):
        g = mf.gradient_metrics("tanh", 1.5, 0.05, 0.9, depth=4, method=method, **kw)
        assert np.isinf(g.chi_1)
        assert np.all(np.isinf(g.g_aa[:-1])) and np.isfinite(g.g_aa[-1])
        assert np.all(np.isfinite(g.g_ab)) and np.all(g.g_ab > 0)
    pd = mf.phase_diagram("tanh", [1.0, 2.0], [0.05, 0.2], 0.9, **kw)
    assert np.all(np.isinf(pd.result.chi_1))
    assert not np.any(pd.has_critical_line) and np.all(np.isnan(pd.critical_sigma_w2))
    with pytest.raises(ValueError, match=r"no critical line .*sparseout.*sigma_b2=0\.05"):
        mf.critical_sigma_w2("tanh", 0.05, 0.9, **kw)
    assert np.isnan(mf.critical_sigma_w2("tanh", 0.05, 0.9, on_missing="nan", **kw))


def test_pair_metrics_continuous_through_s_one():
    a = mf.gradient_metrics("tanh", 1.5, 0.05, 0.9, depth=5, noise="sparseout", s=1.0)
    b = mf.gradient_metrics("tanh", 1.5, 0.05, 0.9, depth=5, noise="sparseout", s=1 + 1e-9)
    np.testing.assert_allclose(a.g_ab, b.g_ab, rtol=1e-7)


def test_issue_phase_diagram_superlinear_branch():
    pd = mf.phase_diagram("relu", [1, 2], [0.05], keep=0.8, noise="sparseout", s=3.0)
    assert pd.result.has_fixed_point.tolist() == [[True, False]]
    # s > 2 and sigma_b^2 > 0: the stable q* disappears before chi_1 reaches 1; the edge of
    # existence is reported as the critical line (chi_1 jumps there)
    assert pd.has_critical_line.tolist() == [True]
    sw = float(pd.critical_sigma_w2[0])
    below = mf.analyze("relu", sw * (1 - 1e-9), 0.05, 0.8, noise="sparseout", s=3.0)
    assert float(below.chi_1) < 1
    with pytest.raises(mf.NoFixedPointError):
        mf.analyze("relu", sw * (1 + 1e-9), 0.05, 0.8, noise="sparseout", s=3.0)


def _mp_sigmoid(x):
    return 1 / (1 + mp.exp(-x))


# h = phi^2 + r |phi|^s with limits h_-, h_+ at -+inf: by the expansion of the Gaussian density
# around 0, E[h] = (h_- + h_+)/2 - J / sqrt(2 pi q) + O(q^-1.5), J = int_-inf^0 (h_- - h)
# + int_0^inf (h_+ - h), so d/dq E[h] = J / (2 sqrt(2 pi)) q^-1.5 (1 + O(1/q))
ASYMPTOTE_J = {
    "tanh": lambda r, s: 2 * mp.quad(lambda x: 1 + r - mp.tanh(x) ** 2 - r * mp.tanh(x) ** s,
                                     [0, 5, 20, mp.inf]),
    "hard_tanh": lambda r, s: 2 * (mp.mpf(2) / 3 + r * s / (s + 1)),  # int_0^1 (1 - x^2) + r (1 - x^s)
    "sigmoid": lambda r, s: (
        mp.quad(lambda x: -(_mp_sigmoid(x) ** 2 + r * _mp_sigmoid(x) ** s), [-mp.inf, -40, 0])
        + mp.quad(lambda x: 1 + r - _mp_sigmoid(x) ** 2 - r * _mp_sigmoid(x) ** s, [0, 40, mp.inf])),
}


@pytest.mark.parametrize("name", sorted(ASYMPTOTE_J))
@pytest.mark.parametrize("s", [0.7, 1.5, 3.0])
def test_second_moment_slope_at_huge_q(name, s):
    # Stein's form of phi^2 + r |phi|^s lost ~1e-16 sqrt(q) relative (0.1 at q = 1e30) before the
    # asymptote was subtracted
    keep = 0.8
    r = (1 - keep) / keep
    nz = mf.make_noise("sparseout", keep=keep, s=s)
    J = ASYMPTOTE_J[name](mp.mpf(r), mp.mpf(s))
    for q in (1e20, 1e30):
        exact = float(J / (2 * mp.sqrt(2 * mp.pi)) * mp.mpf(q) ** -1.5)
        assert float(nz.second_moment_slope(mf.get_activation(name), q)) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "linear"])
def test_second_moment_slope_at_huge_q_of_unbounded_activations(name):
    # asymptote x on x > 0 (and 0 or x on x < 0): d/dq E[x^2 + r |x|^s; tail sides] in closed form,
    # d/dq (q/2 + r kappa_s q^(s/2)) per side; GELU and SiLU differ by O(q^-0.5) relative
    keep, s, q = 0.8, 1.5, 1e30
    r = (1 - keep) / keep
    sides = 2 if name == "linear" else 1
    exact = sides * (0.5 + r * kappa(s) * s / 2 * q ** (s / 2 - 1))
    got = float(mf.make_noise("sparseout", keep=keep, s=s).second_moment_slope(mf.get_activation(name), q))
    assert got == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize("p", [0.7, 50.0, 400.0, 1000.0])
def test_tail_power_slope_at_large_exponents(p):
    # d/dq E[relu(x)^p] = (p/2) 2^(p/2-1) Gamma((p+1)/2) / sqrt(pi) q^(p/2-1) in mpmath; Gamma
    # overflows a float past p ~ 342 (the slope must then come from logs, inf where it is too big)
    from meanfield import kernels
    from meanfield.activations import get_activation
    _, slope, _ = kernels.tail_power(get_activation("relu"), p)
    for q in (1e-3, 0.01, 0.3, 2.0):
        mp_p = mp.mpf(p)
        exact = mp_p / 2 * mp.mpf(2) ** (mp_p / 2 - 1) * mp.gamma((mp_p + 1) / 2) / mp.sqrt(mp.pi) \
            * mp.mpf(q) ** (mp_p / 2 - 1)
        got = float(slope(np.array([q]))[0])
        if exact > mp.mpf(np.finfo(float).max):
            assert got == math.inf
        else:
            assert got == pytest.approx(float(exact), rel=1e-15 if p < 342 else 1e-12)


def test_tanh_sparseout_with_a_huge_exponent():
    # a bounded phi's tails are flat (b = 0): Gamma((s+1)/2) (an OverflowError past s ~ 342 once)
    # must not enter; chi_1 is finite and continuous in s there (|phi|^s -> 0 where |phi| < 1)
    chi = [float(mf.analyze("tanh", 1.5, 0.05, 0.9, noise="sparseout", s=s).chi_1) for s in (300, 400, 1000)]
    assert np.all(np.isfinite(chi))
    assert chi[1] == pytest.approx(chi[0], rel=1e-4) and chi[2] == pytest.approx(chi[0], rel=1e-4)


@pytest.mark.parametrize("s", [6.0, 12.0])
def test_relu_sparseout_above_two_finds_the_stable_low_fixed_point(s):
    # s > 2: E[g^2] ~ q^(s/2), so the map dips below the diagonal (stable q*) and rises again; the
    # bracket search must start near sigma_b^2, not at q = 1 past the dip. Reference: scipy quad
    from scipy.integrate import quad
    from scipy.optimize import brentq
    keep, sw, sb = 0.9, 0.5, 0.05
    r = (1 - keep) / keep

    def m2(q):
        f = lambda z: (z * z * q + r * (z * math.sqrt(q)) ** s) * math.exp(-z * z / 2)  # noqa: E731
        return quad(f, 0, 60, epsabs=0, epsrel=1e-13)[0] / math.sqrt(2 * math.pi)
    exact = brentq(lambda q: sw * m2(q) + sb - q, sb, 0.2, xtol=1e-16, rtol=1e-15)
    got = mf.analyze("relu", sw, sb, keep, noise="sparseout", s=s).q_star
    assert float(got) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("s", [50.0, 400.0])
def test_relu_sparseout_huge_exponent_is_no_fixed_point_not_an_overflow(s):
    # |phi|^s leaves the float range at q ~ (1e300^(1/s) / 10)^2: the search stops there and says so
    with pytest.raises(mf.NoFixedPointError, match="up to q = "):
        mf.analyze("relu", 0.5, 0.05, 0.9, noise="sparseout", s=s)
