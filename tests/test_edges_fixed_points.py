"""Marginal and degenerate points get the exact answer (issue 12, part 2).

Right values come from closed forms (the arc-cosine c-map of ReLU, the linear maps) solved with
mpmath, or from scipy quad (tests/_quadref.py); never from the code under test.
"""
import math
import warnings

import _quadref as ref
import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meanfield as mf

fast = settings(max_examples=25, deadline=None)


def relu_c_star(keep):
    """Root in (0, 1) of c = keep (sqrt(1 - c^2) + (pi - arccos c) c) / pi, by mpmath."""
    mp.mp.dps = 30
    k = mp.mpf(keep)
    f = lambda c: k * (mp.sqrt(1 - c * c) + (mp.pi - mp.acos(c)) * c) / mp.pi - c
    return float(mp.findroot(f, (mp.mpf(0), 1 - mp.mpf(10) ** -25), solver="illinois"))


@pytest.fixture(autouse=True)
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a divide-by-zero leaking out is a defect here
        yield


# --- ReLU exactly on the critical line sigma_w^2 = 2 keep, sigma_b^2 = 0 --------------------
def test_relu_critical_line_issue_value():
    r = mf.analyze("relu", 1.2, 0.0, keep=0.6)
    assert float(r.c_star) == pytest.approx(0.283908653549875, rel=1e-12)
    assert float(r.c_star) == pytest.approx(relu_c_star(0.6), rel=1e-12)
    assert float(r.q_star) == 0.0 and float(r.chi_q) == pytest.approx(1.0, rel=1e-15)
    assert float(r.chi_1) == pytest.approx(1.0, rel=1e-15)
    assert np.isinf(r.xi_q) and np.isinf(r.xi_1)


@pytest.mark.parametrize("ulps", [-2, -1, 0, 1, 2])
def test_relu_critical_line_does_not_depend_on_rounding(ulps):
    sw = 1.2
    for _ in range(abs(ulps)):
        sw = np.nextafter(sw, np.inf if ulps > 0 else -np.inf)
    r = mf.analyze("relu", sw, 0.0, keep=0.6)
    assert float(r.q_star) == 0.0
    assert float(r.c_star) == pytest.approx(0.283908653549875, rel=1e-12)


@fast
@given(keep=st.one_of(st.floats(0.02, 0.999), st.just(1.0)))
def test_relu_critical_line_any_keep(keep):
    r = mf.analyze("relu", 2 * keep, 0.0, keep)
    assert float(r.q_star) == 0.0
    expected = 1.0 if keep == 1 else relu_c_star(keep)
    assert float(r.c_star) == pytest.approx(expected, rel=1e-11, abs=1e-13)
    # the c-map is q-independent there: c* is its fixed point at any q, c_slope its slope
    assert float(mf.c_map(3.7, r.c_star, "relu", 2 * keep, 0.0, keep)) == pytest.approx(
        float(r.c_star), rel=1e-11, abs=1e-13)
    if keep < 1:
        kd = (math.pi - math.acos(expected)) / (2 * math.pi)
        assert float(r.chi_c) == pytest.approx(2 * keep * kd, rel=1e-10)
        assert float(r.c_slope) == pytest.approx(float(r.chi_c), rel=1e-13)


def test_relu_critical_line_keep_one_ulp_below_one():
    # 1 - c* ~ 5e-11 is resolved only to ~1e-16 / |G'(c*)| ~ 5e-11 in c (G' -> 0 at c = 1)
    keep = 1 - 2.0 ** -53
    r = mf.analyze("relu", 2 * keep, 0.0, keep)
    assert float(r.q_star) == 0.0
    assert float(r.c_star) == pytest.approx(relu_c_star(keep), abs=1e-10)


def test_relu_below_the_line_at_zero_bias_uses_the_mapped_variance():
    # sigma_b^2 = 0, sigma_w^2 < 2 keep: q -> 0 and c' = q_ab'/q' = keep * arc-cosine map(c)
    keep, sw = 0.9, 1.0
    r = mf.analyze("relu", sw, 0.0, keep)
    assert float(r.q_star) == 0.0
    assert float(r.c_star) == pytest.approx(relu_c_star(keep), rel=1e-11)
    kd = (math.pi - math.acos(relu_c_star(keep))) / (2 * math.pi)
    assert float(r.chi_c) == pytest.approx(sw * kd, rel=1e-10)  # the pair-gradient factor
    assert float(r.c_slope) == pytest.approx(2 * keep * kd, rel=1e-10)  # the c-map's slope


def test_linear_marginal_point():
    # phi = x at sigma_w^2 = keep, sigma_b^2 = 0: q' = q, c' = keep c -> c* = 0, slope keep
    for keep in (0.3, 0.77, 1.0):
        r = mf.analyze("linear", keep, 0.0, keep)
        assert float(r.q_star) == 0.0 and np.isinf(r.xi_q)
        assert float(r.c_star) == (1.0 if keep == 1 else 0.0)
        assert float(r.c_slope) == pytest.approx(keep, rel=1e-14)


# --- tiny sigma_w^2: the stopping rule is relative to q* ------------------------------------
def test_tiny_weight_variance_issue_value():
    assert float(mf.q_star("tanh", 1e-17, 0.05)) == pytest.approx(0.05, rel=1e-15)


@fast
@given(sw=st.floats(1e-300, 1e-8), sb=st.floats(1e-12, 10.0),
       name=st.sampled_from(["tanh", "erf", "relu", "hard_tanh"]))
def test_tiny_weight_variance(sw, sb, name):
    # q* = sb + sw E[phi(sqrt(q*) z)^2]: to first order in sw, with E from scipy quad
    first = sb + sw * ref.gauss1(lambda x: ref.PHI[name][0](x) ** 2, sb, ref.KINKS.get(name, [0.0]))
    assert float(mf.q_star(name, sw, sb)) == pytest.approx(first, rel=1e-14)


@pytest.mark.parametrize("sb", [1e-300, 1e-100, 1e-20, 1e-12])
@pytest.mark.parametrize("name,gain", [("tanh", 1.0), ("hard_tanh", 1.0), ("erf", 1.0),
                                       ("relu", 0.5), ("linear", 1.0)])
def test_tiny_bias_variance(sb, name, gain):
    # near the origin q' = sw (gain q + O(q^2)) + sb (exactly linear for relu, linear), so
    # q* = sb / (1 - sw gain) to O(sb^2)
    for sw in (0.5, 0.9):
        assert float(mf.q_star(name, sw, sb)) == pytest.approx(sb / (1 - sw * gain), rel=1e-10)


# --- sigma_b^2 = 0: q* = 0 exactly where the origin attracts ---------------------------------
@pytest.mark.parametrize("name", ["tanh", "hard_tanh", "erf"])
@pytest.mark.parametrize("keep", [1.0, 0.9, 0.37])
def test_origin_at_unit_slope(name, keep):
    # sigma_w^2 = keep: chi_q(0) = 1 and the map is below the diagonal (|phi(x)| < |x|)
    r = mf.analyze(name, keep, 0.0, keep)
    assert float(r.q_star) == 0.0
    assert float(r.chi_q) == pytest.approx(1.0, rel=1e-14) and np.isinf(r.xi_q)
    assert float(r.chi_1) == pytest.approx(1.0, rel=1e-14) and np.isinf(r.xi_1)


def test_tanh_issue_values():
    r = mf.analyze("tanh", 1.0, 0.0, 1.0)
    assert float(r.q_star) == 0.0 and np.isinf(r.xi_q)
    assert float(r.c_star) == 1.0 and float(r.c_slope) == 1.0  # no noise: c -> c at q -> 0
    assert float(mf.analyze("hard_tanh", 1.0, 0.0, 1.0).q_star) == 0.0


@pytest.mark.parametrize("name", ["tanh", "erf", "hard_tanh", "relu"])
def test_origin_attracts_below_unit_slope(name):
    sw = 0.8 * (2 if name == "relu" else 1)
    assert float(mf.q_star(name, sw, 0.0, 0.95)) == 0.0


@pytest.mark.parametrize("name,sw", [("tanh", 1.5), ("erf", 2.0), ("hard_tanh", 1.3)])
def test_origin_repels_above_unit_slope(name, sw):
    q = float(mf.q_star(name, sw, 0.0))
    assert q > 0
    phi = ref.PHI[name][0]
    # q* is a fixed point of the variance map by scipy quad
    assert ref.gauss1(lambda x: phi(x) ** 2, q, ref.KINKS.get(name, [0.0])) * sw == pytest.approx(q, rel=1e-10)


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_marginal_map_above_the_diagonal_leaves_the_origin(name):
    # phi'(0) = 1/2: chi_q(0) = 1 at sigma_w^2 = 4; E[phi^2] = q/4 + 3 q^2/(2 pi) + ... for GELU
    # (above the diagonal), and the map stays above it (phi ~ x for x > 0): no finite q*
    with pytest.raises(mf.NoFixedPointError):
        mf.q_star(name, 4.0, 0.0)
    assert float(mf.q_star(name, 4.0 * (1 - 1e-6), 0.0)) == 0.0


def test_odd_activation_at_zero_bias_has_c_star_zero():
    # sigma_b^2 = 0, chaotic: c = 0 is fixed for odd phi (E phi = 0) and attracting
    for name, sw in (("tanh", 1.5), ("erf", 2.5), ("tanh", 1.001)):
        r = mf.analyze(name, sw, 0.0, 1.0)
        assert float(r.c_star) == 0.0


# --- the convention at q* = 0: chi_c (pair-gradient factor) and c_slope (the c-map's slope) --
@pytest.mark.parametrize("name", ["tanh", "erf", "hard_tanh"])
def test_c_slope_is_the_slope_of_c_map_at_q_zero(name):
    keep, sw = 0.9, 0.5
    r = mf.analyze(name, sw, 0.0, keep)
    assert float(r.q_star) == 0.0 and float(r.c_star) == 0.0
    assert float(r.chi_c) == pytest.approx(sw, rel=1e-12)  # sigma_w^2 phi'(0)^2
    assert float(r.c_slope) == pytest.approx(keep, rel=1e-12)  # c -> keep c
    h, q = 1e-3, 1e-12
    fd = (mf.c_map(q, h, name, sw, 0.0, keep) - mf.c_map(q, -h, name, sw, 0.0, keep)) / (2 * h)
    assert float(r.c_slope) == pytest.approx(float(fd), rel=1e-8)
    # c_map at q = 0, sigma_b^2 = 0 is the q -> 0 limit (no 0/0)
    assert float(mf.c_map(0.0, 0.5, name, sw, 0.0, keep)) == pytest.approx(0.5 * keep, rel=1e-12)


def test_c_slope_equals_chi_c_where_q_star_is_positive():
    r = mf.analyze("tanh", [1.0, 2.2, 3.1], 0.05, 0.98)
    # the same product formed in two orders, (sigma_w^2 / q*) q* Kd and sigma_w^2 Kd: an ulp apart
    np.testing.assert_allclose(r.c_slope, r.chi_c, rtol=4e-16, atol=0)


# --- critical line at sigma_b^2 = 0: exact, not bisection noise -----------------------------
@pytest.mark.parametrize("name,factor", [("tanh", 1.0), ("erf", 1.0), ("hard_tanh", 1.0),
                                         ("relu", 2.0), ("gelu", 4.0), ("silu", 4.0),
                                         ("linear", 1.0)])
@pytest.mark.parametrize("keep", [1.0, 0.9, 0.5])
def test_critical_line_at_zero_bias(name, factor, keep):
    # dropout: chi_1 = sigma_w^2 phi'(0)^2 / keep at q* = 0, so sigma_w^2 = keep / phi'(0)^2
    assert float(mf.critical_sigma_w2(name, 0.0, keep)) == pytest.approx(factor * keep, rel=4e-16)


def test_critical_line_issue_values():
    assert float(mf.critical_sigma_w2("tanh", 0.0, 0.9)) == pytest.approx(0.9, rel=4e-16)
    np.testing.assert_allclose(mf.critical_sigma_w2("gelu", [0.0, 0.0], 0.9), 3.6, rtol=4e-16)


@pytest.mark.parametrize("s", [1.2, 1.5, 1.9])
@pytest.mark.parametrize("backward,c_s", [("true", None), ("code", 1.0)])
def test_sparseout_at_zero_bias_and_tiny_weights(s, backward, c_s):
    # s < 2: E[g^2] ~ sw r E|phi'(0) z|^s q^(s/2) near 0, so the origin repels for every sw > 0
    # and q* ~ (sw r E|z|^s)^(2/(2-s)) (1e-40 and below); at q* the gradient factor tends to
    # chi_1 -> c_s^2 E|z|^(s-2) / E|z|^s = c_s^2 / (s - 1) > 1 as sw -> 0: no critical line
    c_s = s / 2 if c_s is None else c_s
    keep = 0.8
    m = lambda t: 2 ** (t / 2) * math.gamma((t + 1) / 2) / math.sqrt(math.pi)  # noqa: E731  E|z|^t
    for sw in (1e-6, 1e-9):
        r = mf.analyze("tanh", sw, 0.0, keep, noise="sparseout", s=s, backward=backward)
        q = (sw * (1 - keep) / keep * m(s)) ** (2 / (2 - s))
        assert float(r.q_star) == pytest.approx(q, rel=1e-4)
        assert float(r.chi_1) == pytest.approx(c_s ** 2 * m(s - 2) / m(s), rel=1e-4)
    assert np.isnan(mf.critical_sigma_w2("tanh", 0.0, keep, noise="sparseout", s=s,
                                         backward=backward, on_missing="nan"))


# --- empty parameter arrays -----------------------------------------------------------------
def test_empty_arrays_give_empty_results():
    e = np.zeros((0, 1))
    r = mf.analyze("tanh", e + 1.0, [0.05, 0.1, 0.2], 0.9)
    assert r.q_star.shape == r.c_slope.shape == r.xi_c.shape == (0, 3)
    assert mf.analyze("gelu", [], 0.05).q_star.shape == (0,)
    for fn in (mf.q_star, mf.chi_1, mf.chi_q, mf.c_star, mf.chi_c):
        assert fn("tanh", [], 0.05, 0.9).shape == (0,)
    assert mf.q_map([], "tanh", 1.0, 0.05).shape == (0,)
    assert mf.c_map(np.zeros((2, 0)), 0.5, "tanh", 1.0, 0.05).shape == (2, 0)
    assert mf.covariance_map(1.0, [], "tanh", 1.0, 0.05).shape == (0,)
    assert mf.critical_sigma_w2("gelu", [], 0.9).shape == (0,)
    assert mf.gradient_metrics("tanh", [], 0.05, 0.9, depth=3).g_aa.shape == (0, 3)
    pd = mf.phase_diagram("tanh", [], [0.05, 0.1], 0.9)
    assert pd.result.q_star.shape == (2, 0) and pd.critical_sigma_w2.shape == (2,)
    assert mf.depth_scale([]).shape == mf.gradient_depth_scale([]).shape == (0,)


# --- depth scales ---------------------------------------------------------------------------
def test_depth_scale_domain():
    assert float(mf.depth_scale(0.0)) == 0.0
    assert np.isinf(mf.depth_scale(1.0))
    assert float(mf.depth_scale(math.exp(-0.25))) == pytest.approx(4.0, rel=1e-15)
    assert float(mf.depth_scale(-math.exp(-0.25))) == pytest.approx(4.0, rel=1e-15)  # oscillating
    for bad in (2.0, -1.5, 1 + 1e-15, np.nan, [0.5, 1.5]):
        with pytest.raises(ValueError, match=r"chi .* must lie in \[-1, 1\]|chi .* must be finite"):
            mf.depth_scale(bad)
    assert float(mf.gradient_depth_scale(2.0)) == pytest.approx(1 / math.log(2.0), rel=1e-15)
    assert float(mf.gradient_depth_scale(0.5)) == pytest.approx(1 / math.log(2.0), rel=1e-15)
    assert float(mf.gradient_depth_scale(np.inf)) == 0.0 and float(mf.gradient_depth_scale(0.0)) == 0.0
    assert np.isinf(mf.gradient_depth_scale(1.0))
    for bad in (-1.0, np.nan, "x"):
        with pytest.raises(ValueError, match="chi_1"):
            mf.gradient_depth_scale(bad)
