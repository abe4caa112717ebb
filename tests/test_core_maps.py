"""Fixed points, slopes and depth scales against THEORY §5, closed forms and scipy quad."""
import math

import numpy as np
import pytest
from scipy.special import gamma

import meanfield as mf
from meanfield.phase import PairTable, PairTableCost, critical_sigma_w2, phase_diagram

import _quadref as ref

# THEORY §5 (tanh, sigma_b^2 = 0.05), quoted to 4 significant digits
THEORY_TABLE = [
    # keep, sigma_w2, q*, c*, chi_1, chi_c, xi_1, xi_c
    (1.00, 1.0, 0.1936, 1.0, 0.7590, 0.7590, 3.63, 3.63),
    (1.00, 2.2, 0.8553, 0.5972, 1.0837, 0.9402, 12.44, 16.22),
    (0.99, 1.6, 0.4836, 0.8489, 0.9675, 0.9251, 30.30, 12.85),
    (0.98, 3.1, 1.5502, 0.2312, 1.2321, 0.8679, 4.79, 7.06),
    (0.95, 4.0, 2.3618, 0.1141, 1.3684, 0.8165, 3.19, 4.93),
]


@pytest.mark.parametrize("row", THEORY_TABLE)
def test_theory_table_tanh(row):
    keep, sw, *expected = row
    r = mf.analyze("tanh", sw, 0.05, keep)
    got = [r.q_star, r.c_star, r.chi_1, r.chi_c, r.xi_1, r.xi_c]
    for g, e in zip(got, expected):
        assert float(g) == pytest.approx(e, abs=0.5 * 10 ** (math.floor(math.log10(abs(e))) - 3) + 0.006 * (e > 3))


def test_vectorised_equals_pointwise():
    sw = np.array([1.0, 2.2, 3.1])[:, None]
    keep = np.array([1.0, 0.95])
    grid = mf.analyze("tanh", sw, 0.05, keep)
    assert grid.q_star.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            one = mf.analyze("tanh", float(sw[i, 0]), 0.05, float(keep[j]))
            for name in ("q_star", "c_star", "chi_1", "chi_c", "chi_q", "xi_c"):
                assert getattr(grid, name)[i, j] == pytest.approx(float(getattr(one, name)), rel=1e-12)


def test_linear_closed_forms():
    # THEORY §5: sigma_w^2 = 0.5, sigma_b^2 = 0.1, rho = 0.6 -> q* = 0.6, c* = 1/3, chi_1 = 0.8333
    r = mf.analyze("linear", 0.5, 0.1, 0.6)
    assert float(r.q_star) == pytest.approx(0.6, rel=1e-14)
    assert float(r.c_star) == pytest.approx(1 / 3, rel=1e-13)
    assert float(r.chi_1) == pytest.approx(0.5 / 0.6, rel=1e-14)
    assert float(r.chi_q) == pytest.approx(0.5 / 0.6, rel=1e-14)
    assert float(r.chi_c) == pytest.approx(0.5, rel=1e-14)
    for keep in (0.6, 0.8, 1.0):  # q*_ab = sigma_b^2 / (1 - sigma_w^2) = 0.2 for every rho
        r = mf.analyze("linear", 0.5, 0.1, keep)
        assert float(r.c_star * r.q_star) == pytest.approx(0.2, rel=1e-13)


@pytest.mark.parametrize("sw,keep", [(sw, k) for k in (1.0, 0.9, 0.6) for sw in (0.3, 1.0, 1.5)
                                     if sw < 2 * k])  # sigma_w2 >= 2 keep has no finite q*
def test_relu_chi1_and_fixed_point(sw, keep):
    r = mf.analyze("relu", sw, 0.1, keep)
    assert float(r.chi_1) == pytest.approx(sw / (2 * keep), rel=1e-14)
    assert float(r.q_star) == pytest.approx(0.1 / (1 - sw / (2 * keep)), rel=1e-13)


def test_relu_divergence_is_reported_with_the_parameter():
    with pytest.raises(mf.NoFixedPointError, match="sigma_w2"):
        mf.analyze("relu", 2.0, 0.1, 0.9)
    r = mf.analyze("relu", [1.0, 2.0], 0.1, 0.9, on_missing="nan")
    assert r.has_fixed_point.tolist() == [True, False]
    assert np.isnan(r.q_star[1]) and np.isfinite(r.q_star[0])


# --- independent high-precision route: scipy quad + brentq (tests/_quadref.py) ----------------
SPREAD = [
    ("tanh", 1.02, 1e-6, 0.97),   # q* near 0
    ("tanh", 1.6, 0.05, 0.99),
    ("tanh", 3.5, 2.0, 0.9),      # large q*
    ("tanh", 40.0, 5.0, 0.8),     # very large q*
    ("erf", 2.0, 0.2, 0.9),
    ("sigmoid", 3.0, 0.1, 0.95),
    ("gelu", 1.5, 0.3, 0.9),
    ("silu", 1.2, 0.1, 0.9),
    ("hard_tanh", 1.8, 0.1, 0.9),
    ("relu", 1.2, 0.2, 0.8),
]


@pytest.mark.parametrize("name,sw,sb,keep", SPREAD)
def test_fixed_points_and_slopes_match_quad(name, sw, sb, keep):
    r = mf.analyze(name, sw, sb, keep)
    q = ref.q_star(name, sw, sb, keep)
    assert float(r.q_star) == pytest.approx(q, rel=1e-10)
    assert float(r.chi_1) == pytest.approx(ref.chi_1(name, sw, q, keep), rel=1e-10)
    c = ref.c_star(name, sw, sb, keep, q)
    assert float(r.c_star) == pytest.approx(c, rel=1e-10, abs=1e-12)
    assert float(r.chi_c) == pytest.approx(ref.chi_c(name, sw, q, c), rel=1e-10)


@pytest.mark.parametrize("name", ["tanh", "erf", "gelu", "hard_tanh", "relu"])
def test_chi_q_is_the_slope_of_the_q_map(name):
    sw, sb, keep = 1.7, 0.1, 0.9
    r = mf.analyze(name, sw, sb, keep)
    q = float(r.q_star)
    h = 1e-4 * q
    # fourth-order central difference of the map itself
    fd = (-mf.q_map(q + 2 * h, name, sw, sb, keep) + 8 * mf.q_map(q + h, name, sw, sb, keep)
          - 8 * mf.q_map(q - h, name, sw, sb, keep) + mf.q_map(q - 2 * h, name, sw, sb, keep)) / (12 * h)
    assert float(r.chi_q) == pytest.approx(float(fd), rel=1e-8)


@pytest.mark.parametrize("name", ["erf", "relu", "hard_tanh", "linear"])
@pytest.mark.parametrize("q", [1e-4, 0.3, 2.0, 50.0])
def test_closed_forms_agree_with_quadrature(name, q):
    act = mf.get_activation(name)
    numeric = mf.Activation.from_callables("numeric", act.phi, act.dphi, act.d2phi,
                                           kinks=act.kinks, zeros=act.zeros)
    from meanfield.kernels import moment as act_moment, pair as act_pair
    for key in ("A2", "D2", "dA2", "PD"):
        if key in act.closed:
            assert act_moment(act, key, q) == pytest.approx(float(act_moment(numeric, key, q)), rel=1e-11), key
    for c in (-1.0, -0.5, 0.0, 0.2, 0.95, 0.9999, 1.0):
        keys = [k for k in ("K", "Kd", "PK") if k in act.closed]
        for k, a, b in zip(keys, act_pair(act, keys, q, c), act_pair(numeric, keys, q, c)):
            assert float(a) == pytest.approx(float(b), rel=1e-11, abs=1e-14), (k, c)


@pytest.mark.parametrize("keep", [0.99, 0.9, 0.5])
@pytest.mark.parametrize("name", ["tanh", "relu", "erf", "linear"])
def test_dropout_breaks_c_equal_one(name, keep):
    scale = {"relu": 2 * keep, "linear": keep}.get(name, 2.0)
    sw = np.array([0.3, 0.6, 0.95]) * scale
    r = mf.analyze(name, sw, 0.05, keep)
    assert np.all(r.c_star < 1) and np.all(np.isfinite(r.xi_c))


@pytest.mark.parametrize("name", ["tanh", "erf", "relu", "hard_tanh"])
def test_noiseless_ordered_phase(name):
    sw = 0.9
    r = mf.analyze(name, sw, 0.05, 1.0)
    assert float(r.chi_1) < 1
    assert float(r.c_star) == 1.0
    assert float(r.xi_c) == pytest.approx(float(r.xi_1), rel=1e-14)


def test_critical_line():
    assert critical_sigma_w2("relu", [0.01, 0.1], 0.8) == pytest.approx(1.6, rel=1e-10)
    sb = np.array([0.01, 0.05, 0.2])
    for keep in (1.0, 0.95):
        sw = critical_sigma_w2("tanh", sb, keep)
        assert mf.chi_1("tanh", sw, sb, keep) == pytest.approx(1.0, abs=1e-11)


def test_phase_diagram_matches_analyze():
    sw, sb = np.array([1.0, 2.0, 3.0]), np.array([0.01, 0.2])
    pd = phase_diagram("tanh", sw, sb, 0.95)
    assert pd.result.q_star.shape == (2, 3)
    r = mf.analyze("tanh", 2.0, 0.2, 0.95)
    assert pd.result.xi_c[1, 1] == pytest.approx(float(r.xi_c), rel=1e-12)
    assert pd.critical_sigma_w2.shape == (2,)


# --- Sparseout (THEORY §6) -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tanh", "relu", "hard_tanh", "erf"])
def test_sparseout_s2_equals_dropout(name):
    a = mf.analyze(name, 1.3, 0.1, 0.8, noise="sparseout", s=2.0)
    b = mf.analyze(name, 1.3, 0.1, 0.8, noise="dropout")
    for field in ("q_star", "c_star", "chi_1", "chi_c", "chi_q"):
        assert float(getattr(a, field)) == pytest.approx(float(getattr(b, field)), rel=1e-12, abs=1e-15)


def kappa(s):
    return 2 ** (s / 2 - 1) * gamma((s + 1) / 2) / math.sqrt(math.pi)


@pytest.mark.parametrize("s", [1.05, 1.2, 1.5, 1.8])
@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_sparseout_relu_fixed_point_theory(s, keep):
    sw = 1.5
    r = (1 - keep) / keep
    q_theory = (sw * r * kappa(s) / (1 - sw / 2)) ** (2 / (2 - s))
    res = mf.analyze("relu", sw, 0.0, keep, noise="sparseout", s=s)
    assert float(res.q_star) == pytest.approx(q_theory, rel=1e-11)
    for backward, cs in (("true", s / 2), ("code", 1.0)):
        res = mf.analyze("relu", sw, 0.0, keep, noise="sparseout", s=s, backward=backward)
        chi = sw * (0.5 + cs ** 2 * r * kappa(s - 2) * q_theory ** ((s - 2) / 2))
        assert float(res.chi_1) == pytest.approx(chi, rel=1e-10)


def test_sparseout_relu_variance_map_closed_form():
    s, keep, sw, sb = 1.5, 0.7, 1.2, 0.1
    r = (1 - keep) / keep
    for q in (0.01, 0.5, 3.0):
        expected = sw * (q / 2 + r * kappa(s) * q ** (s / 2)) + sb
        got = mf.q_map(q, "relu", sw, sb, keep, noise="sparseout", s=s)
        assert float(got) == pytest.approx(expected, rel=1e-12)


def test_sparseout_chi1_infinite_for_s_at_most_one():
    res = mf.analyze("relu", 1.0, 0.1, 0.8, noise="sparseout", s=1.0)
    assert np.isinf(res.chi_1) and res.xi_1 == 0


def test_sparseout_superlinear_branch_has_no_finite_q_star():
    with pytest.raises(mf.NoFixedPointError):
        mf.analyze("relu", 1.9, 0.5, 0.5, noise="sparseout", s=3.0)


def test_pair_table_against_quadrature():
    from meanfield.kernels import pair as act_pair
    act = mf.get_activation("tanh")
    table = PairTable(act, 0.01, 3.0)
    rng = np.random.default_rng(1)
    q, c = np.exp(rng.uniform(np.log(0.01), np.log(3.0), 40)), rng.uniform(0, 1, 40)
    for got, exact in zip(table(q, c, ("K", "Kd")), act_pair(act, ("K", "Kd"), q, c)):
        np.testing.assert_allclose(got, exact, rtol=1e-10)
    # outside the tabulated range: quadrature
    K, = table(np.array([1e-4]), np.array([0.3]), ("K",))
    assert K[0] == pytest.approx(float(act_pair(act, ("K",), 1e-4, 0.3)[0]), rel=1e-13)
    assert table.pairs == 32 * 49  # converged on its first grid
    with pytest.raises(PairTableCost, match="pair integrals"):
        PairTable(act, 0.01, 3.0, max_pairs=1000)


def test_phase_diagram_table_equals_exact():
    # 32 x 16 points: a table (1568 pair integrals) costs less than direct solving (~7 per point)
    sw, sb = np.linspace(0.8, 3.5, 32), np.linspace(0.0, 0.3, 16)
    fast = phase_diagram("tanh", sw, sb, 0.9)
    slow = phase_diagram("tanh", sw, sb, 0.9, exact=True)
    assert fast.table_pairs > 0 and slow.table_pairs == 0
    np.testing.assert_allclose(fast.result.c_star, slow.result.c_star, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast.result.xi_c, slow.result.xi_c, rtol=1e-9)
    assert max(fast.table_check) < 1e-10


def test_phase_diagram_skips_a_costly_table():
    # few points, or q* over a wide range (a 128 x 128 table for sigma_w^2 up to 50): direct
    for sw, sb in ((np.linspace(0.8, 3.5, 6), [0.0, 0.05, 0.3]),
                   (np.linspace(0.5, 50.0, 12), np.linspace(0.0, 0.3, 6))):
        pd = phase_diagram("tanh", sw, sb, 0.95)
        assert pd.table_pairs == 0 and pd.table_check == (0.0, 0.0)
        direct = mf.analyze("tanh", np.asarray(sw)[None, :], np.asarray(sb)[:, None], 0.95)
        np.testing.assert_array_equal(pd.result.c_star, direct.c_star)


def test_user_defined_activations():
    import sympy as sp
    x = sp.Symbol("x")
    user = mf.Activation.from_sympy(sp.tanh(x), name="my_tanh")
    assert user.zeros == (0.0,)
    a = mf.analyze(user, 1.7, 0.1, 0.9)
    b = mf.analyze("tanh", 1.7, 0.1, 0.9)
    for field in ("q_star", "c_star", "chi_1", "chi_c", "chi_q"):
        assert float(getattr(a, field)) == pytest.approx(float(getattr(b, field)), rel=1e-11)
    # a smooth activation with no built-in: softplus - log 2 (odd-ish, unbounded), vs scipy quad
    sp_expr = sp.log(1 + sp.exp(x)) - sp.log(2)
    soft = mf.Activation.from_sympy(sp_expr)
    phi = sp.lambdify(x, sp_expr, "math")
    q = 0.7
    ref_val = ref.gauss1(lambda t: phi(t) ** 2, q)
    assert float(mf.q_map(q, soft, 1.0, 0.0, 1.0)) == pytest.approx(ref_val, rel=1e-11)
    cal = mf.Activation.from_callables("cubic", lambda t: t ** 3, lambda t: 3 * t ** 2, lambda t: 6 * t)
    assert float(mf.q_map(0.5, cal, 1.0, 0.0, 1.0)) == pytest.approx(15 * 0.5 ** 3, rel=1e-12)
