"""Correlations stay correlations (issue 12, part 3): c-map outputs lie in [-1, 1], inputs within
rounding of +-1 are accepted, clearly invalid ones are refused naming c."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meanfield as mf
import meanfield.kwinners as kw
from meanfield.validation import C_ROUND

fast = settings(max_examples=30, deadline=None)
SMOOTH = ["tanh", "erf", "gelu", "silu", "sigmoid"]


def test_issue_iteration_hard_tanh():
    # sigma_w^2 = 1, sigma_b^2 = 0.05 from c = 0.5: the ordered phase, c -> 1; a step used to
    # return 1 + a few ulp and the next call raised
    q = float(mf.q_star("hard_tanh", 1.0, 0.05))
    c = 0.5
    for _ in range(2000):
        c = float(mf.c_map(q, c, "hard_tanh", 1.0, 0.05))
        assert -1.0 <= c <= 1.0
    assert c == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name,sw,sb,keep", [
    ("tanh", 1.0, 0.05, 1.0), ("tanh", 2.5, 0.05, 0.95), ("hard_tanh", 2.0, 0.05, 1.0),
    ("erf", 1.0, 0.02, 1.0), ("relu", 1.9, 0.01, 1.0), ("relu", 1.0, 0.05, 0.9),
    ("gelu", 1.5, 0.05, 1.0), ("silu", 1.0, 0.05, 1.0), ("sigmoid", 3.0, 0.05, 1.0),
    ("linear", 0.9, 0.05, 1.0)])
def test_layer_by_layer_iteration_of_both_maps(name, sw, sb, keep):
    # what one does to draw the papers' convergence figures: q and c together, 300 layers
    q, c = 1.0, 0.5
    for _ in range(300):
        q, c = float(mf.q_map(q, name, sw, sb, keep)), float(mf.c_map(q, c, name, sw, sb, keep))
        assert -1.0 <= c <= 1.0
    r = mf.analyze(name, sw, sb, keep)
    assert c == pytest.approx(float(r.c_star), abs=1e-6)


@fast
@given(name=st.sampled_from(SMOOTH + ["relu", "linear", "hard_tanh"]),
       q=st.floats(1e-8, 2.0), u=st.floats(0.0, 1e-6), sign=st.sampled_from([1.0, -1.0]),
       sw=st.floats(0.1, 4.0), sb=st.floats(0.0, 1.0))
def test_outputs_never_leave_the_interval(name, q, u, sign, sw, sb):
    c = float(mf.c_map(q, sign * (1 - u), name, sw, sb))
    assert -1.0 <= c <= 1.0


@pytest.mark.parametrize("name", ["tanh", "relu", "hard_tanh"])
def test_inputs_within_rounding_are_accepted_and_clipped(name):
    q = 0.7
    for c, edge in ((1 + 2.2e-16, 1.0), (1 + 1e-12, 1.0), (-1 - 4.4e-16, -1.0)):
        assert float(mf.c_map(q, c, name, 1.3, 0.05)) == float(mf.c_map(q, edge, name, 1.3, 0.05))
        assert float(mf.covariance_map(q, c, name, 1.3, 0.05)) == float(
            mf.covariance_map(q, edge, name, 1.3, 0.05))


@pytest.mark.parametrize("c", [1 + 10 * C_ROUND, -1.001, 1.5, [0.2, 1.1]])
def test_clearly_invalid_correlations_raise(c):
    with pytest.raises(ValueError, match=r"c \(correlation\) must lie in \[-1, 1\]"):
        mf.c_map(0.7, c, "tanh", 1.3, 0.05)
    with pytest.raises(ValueError, match=r"c \(correlation\) must lie in \[-1, 1\]"):
        mf.covariance_map(0.7, c, "tanh", 1.3, 0.05)
    with pytest.raises(ValueError, match=r"c \(correlation\)"):
        kw.M(c, 0.3)


def test_error_quotes_the_value_at_full_precision():
    with pytest.raises(ValueError, match=r"1\.000001"):
        mf.c_map(0.7, 1.000001, "tanh", 1.3, 0.05)


def test_zero_variance_limits():
    # q = 0: with sigma_b^2 > 0 both maps give sigma_b^2 (plus sigma_w^2 phi(0)^2): c' = 1
    assert float(mf.c_map(0.0, 0.3, "tanh", 1.3, 0.05)) == 1.0
    assert float(mf.c_map(0.0, 0.3, "sigmoid", 1.3, 0.0)) == 1.0
    # sigma_b^2 = 0 and phi(0) = 0: the q -> 0 limit, c' = keep c for smooth phi
    assert float(mf.c_map(0.0, 0.3, "tanh", 1.3, 0.0, 0.8)) == pytest.approx(0.24, rel=1e-12)


def test_kwinners_correlations():
    for f in (0.1, 0.5):
        assert kw.c_map(1.0, 1 + 1e-15, f, 1.3, 0.0) == kw.c_map(1.0, 1.0, f, 1.3, 0.0)
        c = 0.5
        for _ in range(200):
            c = kw.c_map(1.0, c, f, 1.3, 0.0)
            assert -1.0 <= c <= 1.0


TINY_C = [2.2e-308, -5e-324, 1e-320, 1e-300, -1e-151]  # 1/c overflows for the first three


@pytest.mark.parametrize("c", TINY_C)
def test_tiny_correlations_are_the_c_to_0_limit(c):
    # 0 < |c| < 1e-300 (subnormals included) made hard tanh's bend positions 1/c overflow; every
    # pair kernel is K(0) + O(c) there: products of one-dimensional means (independent u1, u2)
    import math
    import warnings

    from meanfield import kernels
    q = 1e6  # quadrature, not the Mehler series, for the smooth ones
    d1 = math.erf(1 / math.sqrt(2 * q))  # E[hard tanh'] = P(|x| < 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ht = kernels.pair(mf.get_activation("hard_tanh"), ("K", "Kd", "PK"), q, c)
        sig = kernels.pair(mf.get_activation("sigmoid"), ("K",), q, c)
        relu = kernels.pair(mf.get_activation("relu"), ("K", "Kd"), 2.0, c)
        out = mf.c_map(q, c, "hard_tanh", 1.5, 0.0, 0.9)
    scale = 1e-13  # the quadrature's tolerance, relative to E|phi| E|phi| <= 1
    assert abs(float(ht[0])) <= scale and abs(float(ht[2])) <= scale  # odd phi: E[phi]^2 = 0
    assert float(ht[1]) == pytest.approx(d1 * d1, rel=1e-12)
    assert float(sig[0]) == pytest.approx(0.25, rel=1e-13)  # E[sigmoid] = 1/2 at any q
    assert float(relu[0]) == pytest.approx(2.0 / (2 * math.pi), rel=1e-15)  # E[relu]^2 = q / 2pi
    assert float(relu[1]) == pytest.approx(0.25, rel=1e-15)
    assert abs(float(out)) <= 1e-12
