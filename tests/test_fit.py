"""Trainable-depth fits: boundary extraction and censoring on synthetic sweeps, recovery of known
law constants within the bootstrap CI, held-out comparison picks the generating law."""
import numpy as np
import pytest

from experiments import fit


def _boundary(L, xc, x1, censor=None, label="syn", keep=1.0):
    n = len(L)
    c = np.zeros(n, int) if censor is None else np.asarray(censor)
    return fit.Boundary(label, keep, np.linspace(1, 4, n), np.asarray(L, float), c,
                        np.asarray(xc, float), np.asarray(x1, float))


def _scales(n, rng):
    xc = rng.uniform(3, 30, n)
    x1 = rng.uniform(3, 60, n)
    return xc, x1


@pytest.mark.parametrize("law,theta", [("a*xi_c", [6.0]), ("a*xi_1", [9.0]),
                                       ("a*min(xi_1,xi_c)", [7.0]), ("a*xi_c+b", [5.0, 12.0]),
                                       ("two-scale", [5.0, 10.0])])
def test_recovers_constants_within_ci(law, theta):
    """Five independent noisy synthetic sweeps: the fitted constants are unbiased and the 95 % CI
    covers the truth in at least 3 of 5 (fails by chance with probability ~1 % at 88 % coverage)."""
    covered, fits = 0, []
    for k in range(5):
        rng = np.random.default_rng(100 + k)
        xc, x1 = _scales(40, rng)
        L = fit.LAWS[law].predict(np.array(theta), xc, x1) * np.exp(rng.normal(0, 0.1, 40))
        res = fit.fit_law(law, _boundary(L, xc, x1), n_boot=100, seed=k)
        covered += bool(np.all(res.ci_low <= theta) and np.all(np.asarray(theta) <= res.ci_high))
        fits.append(res.theta)
        assert abs(res.rmse - 0.1) < 0.04   # residual scatter = injected noise
    assert covered >= 3, fits
    np.testing.assert_allclose(np.median(fits, axis=0), theta, rtol=0.25)


def test_ci_coverage_single_constant():
    """95 % CIs of a*xi_c cover the truth in most of 30 independent synthetic sweeps."""
    rng = np.random.default_rng(5)
    hits = 0
    for k in range(30):
        xc, x1 = _scales(12, rng)
        L = 6.0 * xc * np.exp(rng.normal(0, 0.2, 12))
        r = fit.fit_law("a*xi_c", _boundary(L, xc, x1), n_boot=fit.MIN_BOOT, seed=k)
        hits += r.ci_low[0] <= 6.0 <= r.ci_high[0]
    # with 100 resamples the coverage of such sweeps was 0.935 (200 other sweeps); binomial(30,
    # 0.935) gives >= 24 with probability 0.997
    assert hits >= 24


def test_censored_points_only_bound_the_fit():
    rng = np.random.default_rng(3)
    xc, x1 = _scales(30, rng)
    true = 6.0 * xc
    L = true.copy()
    c = np.zeros(30, int)
    # right-censor: grid ended at 0.7x the true boundary (all depths trained)
    L[:8] = 0.7 * true[:8]; c[:8] = 1
    # left-censor: smallest grid depth 1.5x the true boundary (nothing trained)
    L[8:12] = 1.5 * true[8:12]; c[8:12] = -1
    res = fit.fit_law("a*xi_c", _boundary(L, xc, x1, c), n_boot=0)
    assert abs(res.theta[0] - 6.0) < 1e-6
    # treating the censored values as exact would bias the fit
    naive = fit.fit_law("a*xi_c", _boundary(L, xc, x1), n_boot=0)
    assert abs(naive.theta[0] - 6.0) > 0.1


def _rows(boundary_of, sigmas, depths, keep=1.0, dataset="mnist", noise=None):
    rows = []
    for s in sigmas:
        for d in depths:
            acc = 0.95 if d <= boundary_of(s) else 0.1
            if noise is not None and (s, d) in noise:
                acc = noise[(s, d)]
            rows.append(dict(dataset=dataset, activation="tanh", init="gaussian", width=64,
                             sigma_b2=0.05, keep=keep, optimizer="sgd", lr=0.01, batch_size=128,
                             steps=100, data_seed=0, eval_size=500, test_size=1000, seed=0,
                             sigma_w2=s, depth=d, eval_acc=acc, train_acc_last=acc, test_acc=acc))
    return rows


def test_extract_boundary_and_censoring_rules():
    depths = [10, 20, 40, 80, 160]
    bmap = {1.0: 30, 2.0: 500, 3.0: 5, 4.0: 60}
    # one flipped cell at (4.0, 20): cutting after 10 or after 40 disagrees with one cell each;
    # the tie rule takes the geometric middle of the two cuts
    rows = _rows(lambda s: bmap[s], list(bmap), depths, noise={(4.0, 20): 0.1})
    (b,) = fit.extract_boundaries(rows, xi=False)
    assert np.isclose(b.threshold, 0.1 + 0.5 * (0.95 - 0.1))
    np.testing.assert_allclose(b.sigma_w2, [1, 2, 3, 4])
    np.testing.assert_allclose(b.L_max, [np.sqrt(20 * 40), 160, 10, (10 * 20 * 40 * 80) ** 0.25])
    np.testing.assert_array_equal(b.censor, [0, 1, -1, 0])
    (b_abs,) = fit.extract_boundaries(rows, threshold=0.99, relative=False, xi=False)
    assert np.all(b_abs.censor == -1)   # nothing reaches 99 %


def test_extract_uses_theory_depth_scales():
    rows = _rows(lambda s: 30, [1.0, 2.2], [10, 20, 40], keep=1.0)
    (b,) = fit.extract_boundaries(rows)
    # THEORY section 5 table: tanh, sigma_b^2 = 0.05, rho = 1
    np.testing.assert_allclose(b.xi_c, [3.63, 16.22], rtol=2e-3)
    np.testing.assert_allclose(b.xi_1, [3.63, 12.44], rtol=2e-3)


def test_held_out_comparison_prefers_generating_law():
    rng = np.random.default_rng(7)
    bs = []
    for k in range(2):
        xc, x1 = _scales(15, rng)
        L = fit.LAWS["two-scale"].predict(np.array([4.0, 8.0]), xc, x1) * np.exp(rng.normal(0, 0.05, 15))
        bs.append(_boundary(L, xc, x1, label=f"sweep{k}"))
    comp = fit.compare_held_out(bs)
    best = min(comp, key=lambda k: comp[k]["mean"])
    assert best == "two-scale"
    assert comp["two-scale"]["mean"] < 0.1 < comp["6*xi_c"]["mean"]
    text = fit.report(bs, n_boot=0)
    assert "**Held-out winner: two-scale**" in text


def test_two_scale_with_b_at_its_bound_is_a_xi_c():
    """Data from a*xi_c (3 % deterministic scatter): two-scale's b runs off to its bound in every
    fold, so its held-out error ties a*xi_c's to rounding; the winner is the simpler a*xi_c."""
    rng = np.random.default_rng(1)
    bs = []
    for k in range(2):
        xc, x1 = _scales(12, rng)
        L = 5.0 * xc * (1 + 0.03 * np.cos(np.arange(12) * (k + 1.7)))
        bs.append(_boundary(L, xc, x1, label=f"sweep{k}"))
    comp = fit.compare_held_out(bs)
    assert all(t[1] >= fit.RUNAWAY for t in comp["two-scale"]["theta"].values())
    assert comp["two-scale"]["mean"] == pytest.approx(comp["a*xi_c"]["mean"], rel=fit.TIE_RTOL)
    assert fit.held_out_winner(comp) == "a*xi_c"
    assert "**Held-out winner: a*xi_c**" in fit.report(bs, n_boot=0)


def test_held_out_winner_ties_and_runaway_constants():
    big, fin = [2.0, 1e13], [2.0, 30.0]

    def comp(two, one):
        """two-scale (mean error, constants of fold 0, of fold 1) against a*xi_1 (mean error)."""
        return {"two-scale": {"law": fit.LAWS["two-scale"], "errors": {0: two[0], 1: two[0]},
                              "theta": {0: np.array(two[1]), 1: np.array(two[2])},
                              "mean": two[0], "reason": None},
                "a*xi_1": {"law": fit.LAWS["a*xi_1"], "errors": {0: one, 1: one},
                           "theta": {0: np.array([3.0]), 1: np.array([3.0])}, "mean": one,
                           "reason": None}}
    # a tie within TIE_RTOL: the law with fewer constants wins
    assert fit.held_out_winner(comp((0.2, fin, fin), 0.2 * (1 + 1e-8))) == "a*xi_1"
    # a real difference wins, whatever the number of constants
    assert fit.held_out_winner(comp((0.19, fin, fin), 0.2)) == "two-scale"
    # b ran off in every fold: two-scale is a*xi_c, even where it scored better
    assert fit.held_out_winner(comp((0.19, big, big), 0.2)) == "a*xi_c"
    # ... but not when one fold used a finite b
    assert fit.held_out_winner(comp((0.19, big, fin), 0.2)) == "two-scale"
    # laws scored on fewer folds cannot win; no finite error: no winner
    c = comp((0.1, fin, fin), 0.2)
    del c["two-scale"]["errors"][1]
    assert fit.held_out_winner(c) == "a*xi_1"
    c["a*xi_1"]["mean"] = np.nan
    assert fit.held_out_winner(c) == "two-scale"
    assert fit.held_out_winner({}) is None


@pytest.mark.parametrize("law,theta,simpler,rest", [
    ("two-scale", [4.0, 1e13], "a*xi_c", [4.0]),
    ("two-scale", [1e13, 9.0], "a*xi_1", [9.0]),
    ("two-scale", [4.0, 9.0], "two-scale", [4.0, 9.0]),
    ("a_inf*T/(T+T_half)*xi_c", [3.0, 1e-9], "a*xi_c", [3.0]),
    ("a_inf*T/(T+T_half)*xi_1", [3.0, 50.0], "a_inf*T/(T+T_half)*xi_1", [3.0, 50.0])])
def test_simplest_law_predicts_what_the_fitted_law_predicts(law, theta, simpler, rest):
    name, th = fit.simplest(law, theta)
    assert name == simpler and list(th) == rest
    rng = np.random.default_rng(0)
    xc, x1, T = rng.uniform(3, 100, 50), rng.uniform(3, 100, 50), rng.uniform(10, 1e4, 50)
    np.testing.assert_allclose(fit.get_law(name).predict(list(th), xc, x1, T),
                               fit.get_law(law).predict(list(theta), xc, x1, T), rtol=1e-7)


def test_boundary_from_arrays_and_cli(capsys):
    b = fit.boundary_from_arrays([1.0, 2.2, 3.1], [20, 100, 45], keep=1.0)
    assert b.xi_c.shape == (3,) and np.all(b.censor == 0)
    assert fit.main(["--sigma-w2", "1.0,2.2,3.1", "--lmax", "20,100,45", "--keep", "1.0",
                     "--bootstrap", "100"]) == 0
    assert "a*xi_c" in capsys.readouterr().out
    with pytest.raises(ValueError, match="same length"):
        fit.boundary_from_arrays([1.0, 2.0], [20], keep=1.0)
    assert fit.main(["--sigma-w2", "1.0"]) == 2
    with pytest.raises(ValueError, match="interior"):
        fit.fit_law("a*xi_c", _boundary([10.0], [3.0], [3.0], censor=[1]))


def test_cli_grids_use_the_shared_parser(capsys):
    """--sigma-w2 / --lmax / --censor take what every command line takes (meanfield.cli.args):
    start:stop:step is the comma list, and a bad grid is argparse's error naming the flag."""
    outs = []
    for sw in ("1:2.5:0.5", "1,1.5,2,2.5"):
        assert fit.main(["--sigma-w2", sw, "--lmax", "20,60,90,40", "--censor", "0,0,1,0",
                         "--keep", "0.98", "--bootstrap", "0"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and "| 2.5 | 40.0 |" in outs[0] and "| 2 | 90.0 | > " in outs[0]
    for flag, bad, msg in (("--sigma-w2", "2:1:0.5", "must be >= its start"),
                           ("--lmax", "20,-5", "every value must be > 0"),
                           ("--censor", "0,0.5", "expected integers")):
        args = {"--sigma-w2": "1,2", "--lmax": "20,30", "--censor": "0,0", flag: bad}
        with pytest.raises(SystemExit) as e:
            fit.main([a for kv in args.items() for a in kv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"argument {flag}: " in err and msg in err, err
