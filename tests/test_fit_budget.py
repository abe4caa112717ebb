"""The training budget T as a covariate of the trainable-depth fit (issue 11 section 2): checkpoint
rows give one boundary per budget, a(T) per budget, a budget-aware law recovered with its CI and
preferred on held-out budgets, and the L_max-vs-T figure draws the law it claims."""
import numpy as np
import pytest

import meanfield as mf
from experiments import fit

A0, A1 = 1.0, 0.8              # generating a(T) = A0 + A1 ln T
BUDGETS = (100, 300, 1000, 3000)
LOG_LAW = "(a0+a1 ln T)*xi_c"


def _sweep(rng, *, n=15, noise=0.1, top=120.0):
    """One protocol, boundaries at every budget from L = a(T) xi_c e^noise; points above the
    deepest grid depth ``top`` are right-censored there (every depth trained)."""
    xc, x1 = rng.uniform(3, 30, n), rng.uniform(3, 60, n)
    bs = []
    for T in BUDGETS:
        L = (A0 + A1 * np.log(T)) * xc * np.exp(rng.normal(0, noise, n))
        c = (L > top).astype(int)
        bs.append(fit.Boundary(f"T={T}", 1.0, np.linspace(1, 4, n), np.minimum(L, top), c, xc, x1,
                               budget=float(T), protocol=(("panel", "A"),)))
    return bs


def test_log_law_recovered_within_ci_and_preferred_on_held_out_budgets():
    covered, fits = 0, []
    for k in range(5):
        bs = _sweep(np.random.default_rng(20 + k))
        assert sum(int(b.censor.sum()) for b in bs) >= 8     # the grid top censors some points
        r = fit.fit_law(LOG_LAW, bs, n_boot=fit.MIN_BOOT, seed=k)
        assert r.ci_note.startswith("resampling the 15 sigma_w^2 grid points of one protocol")
        covered += bool(r.ci_low[0] <= A0 <= r.ci_high[0] and r.ci_low[1] <= A1 <= r.ci_high[1])
        fits.append(r.theta)
        comp = fit.compare_budgets(bs)
        assert sorted(comp[LOG_LAW]["errors"]) == list(BUDGETS)
        assert comp[LOG_LAW]["mean"] < 0.8 * comp["a*xi_c"]["mean"], comp
    assert covered >= 3, fits   # joint coverage 0.9 (60 other sweeps): P(< 3 of 5) ~ 0.009
    # unbiased: over 200 such sweeps the mean fit was (1.001, 0.801) with sd (0.44, 0.076), so the
    # median of five lies within about 2.5 of its standard deviations (0.6, 0.1) of the truth
    assert abs(np.median([t[0] for t in fits]) - A0) < 0.6
    assert abs(np.median([t[1] for t in fits]) - A1) < 0.1


def test_per_budget_constant_follows_a_of_T():
    bs = _sweep(np.random.default_rng(3), n=25, noise=0.05)
    per = fit.per_budget_constants(bs, n_boot=fit.MIN_BOOT)
    assert list(per) == [float(T) for T in BUDGETS]
    a_T = A0 + A1 * np.log(BUDGETS)
    np.testing.assert_allclose([f.theta[0] for f in per.values()], a_T, rtol=0.05)
    hits = sum(f.ci_low[0] <= a <= f.ci_high[0] for f, a in zip(per.values(), a_T))
    assert hits >= 3


def test_budget_law_needs_budgets():
    b = fit.Boundary("x", 1.0, np.array([1.0, 2.0]), np.array([10.0, 20.0]), np.zeros(2, int),
                     np.array([2.0, 4.0]), np.array([2.0, 4.0]))
    with pytest.raises(ValueError, match="needs training budgets"):
        fit.fit_law(LOG_LAW, b)
    b2 = fit.Boundary("y", 1.0, b.sigma_w2, b.L_max, b.censor, b.xi_c, b.xi_1, budget=100.0)
    with pytest.raises(ValueError, match=r"needs >= 2 budgets with interior points, has 1"):
        fit.fit_law(LOG_LAW, b2)
    with pytest.raises(ValueError, match="at least two distinct budgets"):
        fit.compare_budgets([b2])


def _checkpoint_rows():
    """Rows of networks trained for 1000 steps and evaluated at checkpoints 100, 300, 1000: at
    budget T a network trains when depth <= reach[sigma_w2] * T / 1000."""
    reach = {1.0: 40, 2.0: 160, 3.0: 60}
    rows = []
    for keep in (1.0, 0.98):
        for s, r in reach.items():
            for d in (10, 20, 40, 80, 160):
                for T in (100, 300, 1000):
                    acc = 0.9 if d <= r * T / 1000 + 1e-9 else 0.1
                    rows.append(dict(dataset="mnist", activation="tanh", sigma_b2=0.05, keep=keep,
                                     max_steps=1000, steps=T, seed=0, sigma_w2=s, depth=d,
                                     eval_acc=acc))
    return rows


def test_checkpoint_rows_give_one_boundary_per_budget():
    rows = _checkpoint_rows()
    each = fit.extract_boundaries(rows, per_step="each", xi=False)
    assert [(b.keep, b.budget) for b in each] == [(1.0, 100.0), (1.0, 300.0), (1.0, 1000.0),
                                                 (0.98, 100.0), (0.98, 300.0), (0.98, 1000.0)]
    assert len({b.label for b in each}) == 6 and each[0].label == "mnist keep=1 T=100"
    assert each[0].protocol == each[2].protocol != each[3].protocol   # T is not the protocol
    # T = 1000: reach 40, 160, 60 -> L_max sqrt(40 * 80), > 160, sqrt(40 * 80)
    np.testing.assert_allclose(each[2].L_max, [np.sqrt(3200), 160, np.sqrt(3200)])
    np.testing.assert_array_equal(each[2].censor, [0, 1, 0])
    # T = 100: reach 4, 16, 6 -> nothing trains at sigma_w^2 1 and 3 (upper bounds at 10)
    np.testing.assert_allclose(each[0].L_max, [10, np.sqrt(10 * 20), 10])
    np.testing.assert_array_equal(each[0].censor, [-1, 0, -1])
    last = fit.extract_boundaries(rows, xi=False)   # default: each network's last step
    assert [(b.keep, b.budget) for b in last] == [(1.0, 1000.0), (0.98, 1000.0)]
    np.testing.assert_array_equal(last[0].L_max, each[2].L_max)


def test_separate_sweeps_in_a_database_are_separate_budgets(tmp_path):
    from experiments.trainability import Sweep, open_store
    db = tmp_path / "t.sqlite"
    with open_store(db) as st:
        for steps in (100, 300):
            sweep = Sweep(depths=(10, 20, 40), sigma_w2s=(1.0, 2.0), steps=steps)
            for c in sweep.configs():
                acc = 0.9 if c["depth"] <= (20 if steps == 300 else 10) else 0.1
                st.insert(dict(c, eval_acc=acc, train_acc_last=acc, test_acc=acc))
    rows = fit.read_db(db)
    assert all(r["max_steps"] == r["steps"] for r in rows)
    bs = fit.extract_boundaries(rows)
    assert [b.budget for b in bs] == [100.0, 300.0]
    np.testing.assert_allclose(bs[0].L_max, [np.sqrt(200)] * 2)
    np.testing.assert_allclose(bs[1].L_max, [np.sqrt(800)] * 2)


def test_report_has_the_budget_analysis():
    bs = _sweep(np.random.default_rng(5))
    text = fit.report(bs, n_boot=0)
    assert "### Training budget: per-budget constant a(T) of a*xi_c" in text
    assert "### Held-out budgets" in text and "**Budget winner:" in text
    assert "Best law (the one --plot and the figures draw): " in text and "held-out-budget" in text


def test_budget_figure_draws_the_fitted_law():
    pytest.importorskip("matplotlib")
    from experiments.figures.budget import draw
    sws = np.array([1.5, 2.0, 2.5, 3.0])
    law = fit.budget_laws("xi_c")[LOG_LAW]
    bs = []
    for keep in (1.0, 0.98):
        xc = np.asarray(mf.analyze("tanh", sws, 0.05, keep=keep).xi_c)
        for T in BUDGETS:
            L = law.predict([A0, A1], xc, xc, float(T)) * (1 + 0.02 * np.cos(sws * T))
            bs.append(fit.boundary_from_arrays(sws, L, keep=keep, budget=float(T)))
    bs = [fit.Boundary(b.label, b.noise, b.sigma_w2, b.L_max, b.censor, b.xi_c, b.xi_1,
                       budget=b.budget, protocol=(("keep", b.keep),)) for b in bs]
    f = fit.fit_law(LOG_LAW, bs, n_boot=0)
    per = fit.per_budget_constants(bs, n_boot=100)
    fig, data = draw(bs, f, per)
    T_fine = data["T_fine"]
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines()}
    for keep in (1.0, 0.98):
        for s in (1.5, 3.0):                         # the ends of the chosen sigma_w^2 values
            xc = float(mf.analyze("tanh", s, 0.05, keep=keep).xi_c)
            expected = (f.theta[0] + f.theta[1] * np.log(T_fine)) * xc
            np.testing.assert_allclose(lines[f"{keep:g}/{s:g}/law"].get_ydata(), expected, rtol=1e-10)
            np.testing.assert_array_equal(data[f"{keep:g}/{s:g}/T"], BUDGETS)
    np.testing.assert_allclose(lines["a(T)/law"].get_ydata(), f.theta[0] + f.theta[1] * np.log(T_fine))
    np.testing.assert_allclose(f.theta, [A0, A1], atol=0.1)
    np.testing.assert_allclose(data["a(T)/per_budget"][1], [p.theta[0] for p in per.values()])
    import matplotlib.pyplot as plt
    plt.close(fig)
