"""Bad input gives a clear error naming the parameter and its valid range."""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import meanfield as mf

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
fast = settings(max_examples=40, deadline=None)


@fast
@given(keep=finite.filter(lambda k: not 0 < k <= 1))
def test_keep_outside_unit_interval(keep):
    with pytest.raises(ValueError, match=r"keep \(keep probability rho\) must lie in \(0, 1\]"):
        mf.analyze("tanh", 1.5, 0.05, keep)


@fast
@given(drop=finite.filter(lambda d: not 0 <= d < 1))
def test_drop_outside_range(drop):
    with pytest.raises(ValueError, match=r"drop .* must lie in \[0, 1\)"):
        mf.analyze("tanh", 1.5, 0.05, drop=drop)


def test_keep_and_drop_together():
    with pytest.raises(ValueError, match="not both"):
        mf.analyze("tanh", 1.5, 0.05, keep=0.9, drop=0.1)


@fast
@given(sw=st.floats(max_value=0.0, allow_infinity=False))
def test_nonpositive_weight_variance(sw):
    with pytest.raises(ValueError, match=r"sigma_w2 .* must be > 0"):
        mf.analyze("tanh", sw, 0.05, 0.9)


@fast
@given(sb=st.floats(max_value=-1e-300, allow_infinity=False))
def test_negative_bias_variance(sb):
    with pytest.raises(ValueError, match=r"sigma_b2 .* must be >= 0"):
        mf.q_star("tanh", 1.5, sb, 0.9)


@fast
@given(bad=st.sampled_from([np.nan, np.inf, -np.inf]), which=st.sampled_from(["sigma_w2", "sigma_b2", "keep"]))
def test_non_finite_values(bad, which):
    kw = dict(sigma_w2=1.5, sigma_b2=0.05, keep=0.9)
    kw[which] = bad
    with pytest.raises(ValueError, match=f"{which}.* must be finite"):
        mf.analyze("tanh", **kw)


def test_non_finite_inside_an_array():
    with pytest.raises(ValueError, match="sigma_w2.* must be finite"):
        mf.analyze("tanh", [1.0, np.nan], 0.05, 0.9)


@fast
@given(name=st.text(min_size=1, max_size=12).filter(
    lambda s: s.lower() not in mf.ACTIVATIONS + ("htanh", "hardtanh", "swish", "identity")))
def test_unknown_activation(name):
    with pytest.raises(ValueError, match="unknown activation"):
        mf.analyze(name, 1.5, 0.05, 0.9)


@fast
@given(keep=st.floats(0.05, 1.0), excess=st.floats(0.0, 10.0), sb=st.floats(1e-3, 1.0))
@example(keep=0.75, excess=0.0, sb=1.0)  # marginal: F = sigma_b^2 rounds to 0 beyond q ~ 1e16
@example(keep=1.0, excess=0.0, sb=1e-3)
def test_divergent_relu_q_map(keep, excess, sb):
    sw = 2 * keep + excess
    with pytest.raises(mf.NoFixedPointError, match="sigma_w2 < 2 keep"):
        mf.analyze("relu", sw, sb, keep)


@pytest.mark.parametrize("gap", [1e-6, 1e-10, 1e-13])
def test_near_marginal_relu_q_star(gap):
    # q* = sigma_b^2 / (1 - sigma_w^2 / (2 keep)) in exact rational arithmetic on the float inputs;
    # the huge q* (up to 1e13) must be found, not mistaken for the marginal divergence
    from fractions import Fraction
    sw = 1.5 * (1 - gap)
    exact = float(1 / (1 - Fraction(sw) / Fraction(1.5)))
    assert mf.analyze("relu", sw, 1.0, 0.75).q_star == pytest.approx(exact, rel=1e-15 / gap)


@fast
@given(keep=st.floats(0.05, 1.0), excess=st.floats(1e-3, 10.0))
def test_divergent_linear_q_map(keep, excess):
    with pytest.raises(mf.NoFixedPointError, match="no finite fixed point q\\*"):
        mf.q_star("linear", keep + excess, 0.1, keep)


def test_other_bad_options():
    with pytest.raises(ValueError, match="noise must be one of"):
        mf.analyze("tanh", 1.5, 0.05, 0.9, noise="laplace")
    with pytest.raises(ValueError, match="s .* must be a positive"):
        mf.analyze("tanh", 1.5, 0.05, 0.9, noise="sparseout", s=-1)
    with pytest.raises(ValueError, match="backward must be one of"):
        mf.analyze("tanh", 1.5, 0.05, 0.9, noise="sparseout", backward="fast")
    with pytest.raises(ValueError, match="noise='none' needs keep = 1"):
        mf.analyze("tanh", 1.5, 0.05, 0.9, noise="none")
    with pytest.raises(ValueError, match="on_missing"):
        mf.analyze("tanh", 1.5, 0.05, 0.9, on_missing="ignore")
    with pytest.raises(ValueError, match=r"c \(correlation\) must lie in \[-1, 1\]"):
        mf.c_map(1.0, 1.5, "tanh", 1.5, 0.05, 0.9)
    with pytest.raises(ValueError, match=r"q \(pre-activation variance\) must be >= 0"):
        mf.q_map(-1.0, "tanh", 1.5, 0.05, 0.9)
    with pytest.raises(ValueError, match="erf scale"):
        mf.get_activation("erf", scale=0.0)


def test_drop_is_one_minus_keep():
    a = mf.analyze("tanh", 1.5, 0.05, keep=0.8)
    b = mf.analyze("tanh", 1.5, 0.05, drop=0.2)
    assert float(a.xi_c) == pytest.approx(float(b.xi_c), rel=1e-12)
    assert float(a.drop) == pytest.approx(0.2)


# --- issue 12: named errors at the edges -----------------------------------------------------
def test_error_quotes_the_offending_element():
    with pytest.raises(ValueError, match=r"sigma_w2 .* must be > 0, got -2\.0 \(at index 1\)"):
        mf.analyze("tanh", [1.0, -2.0], 0.05, 0.9)
    with pytest.raises(ValueError, match=r"keep .* got 1\.0000001"):
        mf.q_star("tanh", 1.0, 0.05, 1.0000001)


def test_depth_scales_name_their_argument():
    with pytest.raises(ValueError,
                       match=r"chi \(slope of a forward map at its fixed point\) must lie in \[-1, 1\], got 2\.0"):
        mf.depth_scale(2.0)
    with pytest.raises(ValueError, match=r"chi .* got -1\.5"):
        mf.depth_scale(-1.5)
    with pytest.raises(ValueError, match=r"chi_1 \(gradient factor per layer\) must be >= 0"):
        mf.gradient_depth_scale(-0.5)


def test_critical_line_and_phase_diagram_arguments():
    with pytest.raises(ValueError, match="on_missing"):
        mf.critical_sigma_w2("tanh", 0.05, 0.9, on_missing="skip")
    with pytest.raises(ValueError, match="tol"):
        mf.critical_sigma_w2("tanh", 0.05, 0.9, tol=0.0)
    with pytest.raises(ValueError, match=r"sigma_b2 .* must be >= 0"):
        mf.critical_sigma_w2("tanh", -0.1, 0.9)
    with pytest.raises(ValueError, match=r"sigma_w2 .* must be a number"):
        mf.phase_diagram("tanh", "1:3", [0.05], 0.9)
    with pytest.raises(ValueError, match=r"sigma_b2 .* must be finite"):
        mf.phase_diagram("tanh", [1.0], [np.nan], 0.9)
    with pytest.raises(ValueError, match="n_check"):
        mf.phase_diagram("tanh", [1.0], [0.05], 0.9, n_check=-1)
    with pytest.raises(ValueError, match="exact"):
        mf.phase_diagram("tanh", [1.0], [0.05], 0.9, exact="yes")


def test_gradient_metrics_arguments():
    for depth in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="depth"):
            mf.gradient_metrics("tanh", 1.5, 0.05, 0.9, depth=depth)
    with pytest.raises(ValueError, match="method"):
        mf.gradient_metrics("tanh", 1.5, 0.05, 0.9, method="mc")
    with pytest.raises(ValueError, match="loss"):
        mf.gradient_metrics("tanh", 1.5, 0.05, 0.9, loss="l1")


def test_kwinners_marginal_and_errors():
    import meanfield.kwinners as kw
    f = 0.2
    crit = kw.forward_critical_sigma_w2(f)
    for sw in (crit, np.nextafter(crit, np.inf), np.nextafter(crit, -np.inf)):
        assert kw.q_star(f, sw, 0.0) == 0.0 and np.isinf(kw.xi_q(f, sw))
    with pytest.raises(mf.NoFixedPointError, match="sigma_w2"):
        kw.q_star(f, crit, 0.05)
    with pytest.raises(mf.NoFixedPointError, match="sigma_w2"):
        kw.xi_q(f, 1.01 * crit)
