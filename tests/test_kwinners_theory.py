"""k-winners mean field (meanfield.kwinners) against independent routes: quadrature, ReLU closed
forms, brute-force iteration and a finite-width simulation."""
import mpmath as mp
import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from meanfield import kwinners as kw

FS = [0.5, 0.2, 0.1, 0.05]


def M_quad(c, t):
    """E[z1 z2 1(z1>t) 1(z2>t)] as a 1-D integral over z1 of the conditional mean of z2 1(z2>t)."""
    s = np.sqrt(1 - c * c)

    def inner(z1):
        a = (t - c * z1) / s
        return z1 * norm.pdf(z1) * (c * z1 * norm.sf(a) + s * norm.pdf(a))

    return integrate.quad(inner, t, np.inf, epsabs=1e-14, epsrel=1e-13)[0]


def relu_cmap(c, sw2, sb2, q):
    """Arc-cosine kernel: q_ab' for ReLU with equal input variances q."""
    return sw2 * q * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) / (2 * np.pi) + sb2


def test_tau_and_G_against_mpmath():
    for f in FS + [0.8]:
        t = kw.tau(f)
        with mp.workdps(30):
            assert abs(float(1 - mp.ncdf(t)) - f) < 1e-14
            g = mp.quad(lambda z: z**2 * mp.npdf(z), [t, mp.inf])
        assert abs(kw.G(f) - float(g)) < 1e-13


@pytest.mark.parametrize("c", [-0.95, -0.4, 0.0, 0.3, 0.8, 0.99, 0.99999])
@pytest.mark.parametrize("t", [-0.7, 0.0, 0.8416, 1.6449])
def test_M_against_quadrature(c, t):
    assert abs(kw.M(c, t) - M_quad(c, t)) < 1e-12


def test_M_against_dblquad_and_endpoints():
    for c, t in [(0.6, 1.2), (-0.5, -0.3), (0.2, 0.0)]:
        cov = np.array([[1, c], [c, 1]])
        rv = __import__("scipy.stats", fromlist=["multivariate_normal"]).multivariate_normal(
            mean=[0, 0], cov=cov)
        v = integrate.dblquad(lambda y, x: x * y * rv.pdf([x, y]), t, 9, t, 9,
                              epsabs=1e-11, epsrel=1e-10)[0]
        assert abs(kw.M(c, t) - v) < 1e-8
    for t in [-0.7, 0.0, 1.3]:
        assert kw.M(1.0, t) == pytest.approx(norm.sf(t) + t * norm.pdf(t), abs=1e-15)
        # c = -1: z2 = -z1, so the product is -z1^2 on t < z1 < -t
        expect = -integrate.quad(lambda z: z * z * norm.pdf(z), t, -t)[0] if t < 0 else 0.0
        assert kw.M(-1.0, t) == pytest.approx(expect, abs=1e-13)
        # continuity at the end points
        assert abs(kw.M(1 - 1e-12, t) - kw.M(1.0, t)) < 1e-5
        assert abs(kw.M(-1 + 1e-12, t) - kw.M(-1.0, t)) < 1e-5


@pytest.mark.parametrize("c", [-0.6, 0.1, 0.7, 0.97])
@pytest.mark.parametrize("t", [-0.5, 0.0, 0.8416, 1.6449])
def test_dM_dc_against_finite_difference_of_quadrature(c, t):
    h = 1e-4  # five-point stencil: truncation O(h^4), the curvature near c = 1 is large
    fd = (-M_quad(c + 2 * h, t) + 8 * M_quad(c + h, t) - 8 * M_quad(c - h, t)
          + M_quad(c - 2 * h, t)) / (12 * h)
    assert kw.dM_dc(c, t) == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_dM_dc_diverges_at_one_except_relu():
    assert kw.dM_dc(1.0, 0.0) == 0.5
    assert np.isinf(kw.dM_dc(1.0, 0.5))
    # 1/sqrt(1-c) growth of the jump term
    t = kw.tau(0.1)
    r = kw.dM_dc(1 - 1e-8, t) / kw.dM_dc(1 - 4e-8, t)
    assert r == pytest.approx(2.0, rel=1e-3)


def test_half_is_relu():
    sw2, sb2, q = 1.7, 0.05, 0.8
    assert kw.tau(0.5) == 0.0
    assert kw.q_map(q, 0.5, sw2, sb2) == pytest.approx(sw2 * q / 2 + sb2, rel=1e-15)
    for c in [-0.9, -0.2, 0.0, 0.5, 0.9, 1.0]:
        ab = kw.covariance_map(q, c, 0.5, sw2, sb2)
        assert ab == pytest.approx(relu_cmap(c, sw2, sb2, q), rel=1e-14, abs=1e-15)
        assert kw.c_map(q, c, 0.5, sw2, sb2) == pytest.approx(
            relu_cmap(c, sw2, sb2, q) / (sw2 * q / 2 + sb2), rel=1e-14, abs=1e-15)
    assert kw.chi_1(0.5, sw2) == pytest.approx(sw2 / 2)
    assert kw.forward_critical_sigma_w2(0.5) == pytest.approx(2.0)
    assert kw.critical_sigma_w2(0.5) == pytest.approx(2.0)
    assert kw.q_star(0.5, sw2, sb2) == pytest.approx(sb2 / (1 - sw2 / 2))
    assert kw.c_star(0.5, sw2, sb2) == 1.0
    assert kw.chi_c(0.5, sw2, sb2) == pytest.approx(sw2 / 2)  # chi_c = chi_1 at c* = 1


def test_half_matches_core_relu():
    """f = 1/2 against the theory core's independent ReLU quadrature (meanfield.analyze)."""
    import meanfield as mf

    for sw2, sb2 in [(1.0, 0.05), (1.7, 0.2)]:
        core = mf.analyze(activation="relu", sigma_w2=sw2, sigma_b2=sb2, keep=1.0, noise="none")
        r = kw.analyze(0.5, sw2, sb2)
        for name in ("q_star", "c_star", "chi_1", "chi_c", "chi_q"):
            assert float(getattr(r, name)) == pytest.approx(float(getattr(core, name)), rel=1e-9)
    assert kw.NoFixedPointError is mf.NoFixedPointError


@pytest.mark.parametrize("f", [0.2, 0.1, 0.05, 0.8])
@pytest.mark.parametrize("sb2", [0.0, 0.05])
def test_c_star_by_iterating_the_full_maps(f, sb2):
    """Iterate the unnormalised maps (q_a, q_ab) from c near 1 instead of root finding.

    M itself is checked against quadrature above; this checks the fixed-point solver and chi_c.
    """
    sw2 = 0.95 / kw.G(f) if sb2 > 0 else 1.3
    qa, c = 1.0, 0.999
    for _ in range(3000):
        qab = kw.covariance_map(qa, c, f, sw2, sb2)
        qa = kw.q_map(qa, f, sw2, sb2)
        c = qab / qa
        if sb2 == 0:
            qa = 1.0  # scale invariance: only the ratio matters, avoid underflow
    cs = kw.c_star(f, sw2, sb2)
    assert cs < 1
    assert cs == pytest.approx(c, abs=1e-10)
    # chi_c = slope of the c-map at c*
    h = 1e-5
    slope = (kw.c_map(None, cs + h, f, sw2, sb2) - kw.c_map(None, cs - h, f, sw2, sb2)) / (2 * h)
    assert kw.chi_c(f, sw2, sb2) == pytest.approx(slope, rel=1e-6)
    assert 0 < kw.chi_c(f, sw2, sb2) < 1


def test_analyze_and_depth_scales():
    r = kw.analyze([0.5, 0.1], [1.5, 2.0], 0.05)
    assert r.q_star.shape == (2,)
    assert r.xi_1[1] == pytest.approx(1 / abs(np.log(2.0 * 0.1)))
    assert r.xi_c[1] == pytest.approx(-1 / np.log(r.chi_c[1]))
    assert r.xi_q[0] == pytest.approx(-1 / np.log(0.75))
    # forward critical weight scale leaves gradients vanishing for f < 1/2
    for f in [0.2, 0.1, 0.05]:
        sc = kw.forward_critical_sigma_w2(f)
        assert kw.chi_1(f, sc) < 1
        assert kw.chi_q(f, sc) == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="f"):
        kw.G(0.0)
    with pytest.raises(ValueError, match="f"):
        kw.tau(1.0)
    with pytest.raises(ValueError, match="sigma_w2"):
        kw.q_map(1.0, 0.1, -1.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        kw.q_star(0.1, 1.0, -0.1)
    with pytest.raises(ValueError, match="c"):
        kw.M(1.5, 0.0)
    with pytest.raises(ValueError, match="density"):
        kw.effective_sigma_w2(0.0, 100, 0.01)
    with pytest.raises(ValueError, match="f"):
        kw.critical_sigma_w2(1.5)
    with pytest.raises(kw.NoFixedPointError):
        kw.q_star(0.1, 1.01 / kw.G(0.1), 0.05)
    with pytest.raises(kw.NoFixedPointError):
        kw.analyze(0.5, 2.5, 0.0)
    assert issubclass(kw.NoFixedPointError, ValueError)


def test_effective_sigma_w2_by_simulation():
    """Fixed in-degree sparse weights: Var(W x) per unit = density * fan_in * Var(w) * |x|^2 / fan_in."""
    rng = np.random.default_rng(0)
    n_in, n_out, density, v = 400, 4000, 0.25, 0.003
    k = int(density * n_in)
    w = rng.normal(0, np.sqrt(v), (n_out, n_in))
    mask = np.zeros_like(w)
    for i in range(n_out):
        mask[i, rng.choice(n_in, k, replace=False)] = 1
    x = rng.normal(0, 1, n_in)
    z = (w * mask) @ x
    expect = kw.effective_sigma_w2(density, n_in, v) * np.mean(x * x)
    # sample variance of 4000 Gaussians: relative s.e. sqrt(2/4000) = 2.2 %
    assert np.var(z) == pytest.approx(expect, rel=0.09)


@pytest.mark.parametrize("f", [0.5, 0.1])
def test_one_layer_finite_width_simulation(f):
    """One exact top-k layer of width N = 4000, many draws: q' and c' match the maps.

    Given the inputs, the rows of a Gaussian W give i.i.d. pre-activation pairs with covariance
    (sigma_w^2/N) Gram + sigma_b^2, so the pairs are sampled directly (same law, O(N) per draw).
    """
    rng = np.random.default_rng(1)
    n, reps, sw2, sb2, q0, c0 = 4000, 400, 1.3, 0.05, 0.7, 0.6
    k = int(round(f * n))
    q1 = sw2 * q0 + sb2
    cov = np.array([[q1, sw2 * q0 * c0 + sb2], [sw2 * q0 * c0 + sb2, q1]])
    chol = np.linalg.cholesky(cov)
    qs, cs = [], []
    for _ in range(reps):
        za, zb = chol @ rng.standard_normal((2, n))
        ya = np.where(za >= np.sort(za)[-k], za, 0.0)
        yb = np.where(zb >= np.sort(zb)[-k], zb, 0.0)
        qa, qb = sw2 * np.mean(ya * ya) + sb2, sw2 * np.mean(yb * yb) + sb2
        qs.append(qa)
        cs.append((sw2 * np.mean(ya * yb) + sb2) / np.sqrt(qa * qb))
    c1 = cov[0, 1] / q1
    q2 = kw.q_map(q1, f, sw2, sb2)
    c2 = kw.c_map(q1, c1, f, sw2, sb2)
    se_q = np.std(qs) / np.sqrt(reps)
    se_c = np.std(cs) / np.sqrt(reps)
    # tolerance: 4 standard errors plus an O(1/(f N)) allowance for the finite-k order statistics
    assert abs(np.mean(qs) - q2) < 4 * se_q + q2 / (f * n)
    assert abs(np.mean(cs) - c2) < 4 * se_c + 1 / (f * n)
    # the allowance must not swamp the test: it is below a few per cent
    assert 1 / (f * n) < 0.003


def test_study_projected_engine_matches_dense_weights():
    """The O(N) conditional-Gaussian engine of experiments.kwinners_study against full matrices."""
    from experiments import kwinners_study as ks

    f, n, depth, reps = 0.1, 200, 5, 150
    sw2, sb2 = ks.setting_params("fixed", f)
    q1 = float(kw.q_star(f, sw2, sb2))
    res = {}
    for engine in ("projected", "dense"):
        rng = np.random.default_rng(11)
        S, Gr = zip(*(ks.simulate(f, n, sw2, sb2, depth, q1, 0.9, rng, engine=engine)
                      for _ in range(reps)))
        res[engine] = (np.array(S), np.array(Gr))
    for idx in [(slice(None), -1, 0), (slice(None), -1, 2), (slice(None), 2, 2)]:
        a, b = res["projected"][0][idx], res["dense"][0][idx]
        se = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / reps)
        assert abs(a.mean() - b.mean()) < 4 * se
    for layer in (0, 2):  # gradient norms, including the finite-width transpose correction
        a, b = res["projected"][1][:, layer], res["dense"][1][:, layer]
        se = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / reps)
        assert abs(a.mean() - b.mean()) < 4 * se


def test_study_runs_and_resumes(tmp_path):
    from experiments import kwinners_study as ks

    db = tmp_path / "kw.sqlite"
    rows = ks.run(db, reps=8, depth=6, fs=(0.5, 0.1), ns=(200,), progress=False, engine="serial")
    assert len(rows) == 4  # (tests/test_runner.py runs the study on a Dask LocalCluster)
    assert ks.run(db, reps=8, depth=6, fs=(0.5, 0.1), ns=(200,), progress=False, engine="serial") == rows
    table = ks.format_table(rows)
    assert "| 0.1 | 200 |" in table and "forward critical" in table
    r = next(r for r in rows if r["setting"] == "fixed" and r["f"] == 0.1)
    assert r["chi1_mf"] == pytest.approx(0.9 / kw.G(0.1) * 0.1)
    assert r["deep_mf"] == pytest.approx(0.81)
