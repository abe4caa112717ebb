"""experiments.fit takes anyone's heatmap (issue 11 section 5): each failure a new user met is a
test with the right value, plus a hand-written CSV (literal lines, not written by the toolkit)
with missing cells, per-step logs and float-noisy sigma_w^2 through ``--table``."""
import math

import numpy as np
import pytest
from scipy import optimize, stats

import meanfield as mf
from experiments import fit


def _xi_c(sw, keep, sb=0.05):
    return float(mf.analyze("tanh", sw, sb, keep=keep).xi_c)


def _rows(cells, *, keep=1.0, steps=100, seed=0, **extra):
    """Rows {(sigma_w2, depth): accuracy} of one protocol (accuracy None / nan = missing)."""
    return [dict(dataset="mnist", activation="tanh", sigma_b2=0.05, keep=keep, steps=steps,
                 seed=seed, sigma_w2=s, depth=d, eval_acc=v, **extra)
            for (s, d), v in cells.items()]


# --- held-out pairs are keyed by index, not by label ------------------------------------------

def test_held_out_three_boundaries_with_equal_labels_give_six_pairs():
    sw = [1.5, 2.0, 2.5, 3.0]
    bs = [fit.boundary_from_arrays(sw, [40, 70, 60, 35], keep=k, label="given")
          for k in (1.0, 0.99, 0.98)]
    comp = fit.compare_held_out(bs)
    for name, v in comp.items():
        assert sorted(v["errors"]) == [(i, j) for i in range(3) for j in range(3) if i != j], name
    # each pair's error is that of the law fitted on i alone, scored on j
    th = fit.fit_law("a*xi_c", bs[0], n_boot=0).theta
    assert comp["a*xi_c"]["errors"][(0, 2)] == pytest.approx(fit.rms_log_error("a*xi_c", th, bs[2]))
    text = fit.report(bs, n_boot=0)
    assert text.count("#1 -> #2") == 1 and "#3 -> #2" in text
    assert "given #1" in text and "given #3" in text   # equal labels are numbered in the report


# --- a law that cannot be fitted is reported; the others still are ----------------------------

def test_one_point_fits_the_one_constant_laws_and_reports_the_others(capsys):
    rc = fit.main(["--sigma-w2", "1.5", "--lmax", "60", "--keep", "0.98"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    a = 60 / _xi_c(1.5, 0.98)
    assert f"| a*xi_c | a = {a:.3g} (no CI)" in out
    assert out.count("cannot fit (needs >= 2 interior points, has 1)") == 2   # a*xi_c+b, two-scale
    fits = fit.fit_all([fit.boundary_from_arrays([1.5], [60], keep=0.98)], n_boot=0)
    assert fits["a*xi_c"].theta[0] == pytest.approx(a, rel=1e-7)
    assert fits["constant"].theta[0] == pytest.approx(60, rel=1e-7)
    assert isinstance(fits["two-scale"], fit.NoFit) and isinstance(fits["a*xi_c+b"], fit.NoFit)


# --- missing is missing ------------------------------------------------------------------------

@pytest.mark.parametrize("missing", [None, math.nan])
def test_missing_top_cell_leaves_the_point_censored(missing):
    depths = (10, 20, 40, 80)
    cells = {(1.0, d): (0.95 if d <= 20 else 0.1) for d in depths}
    cells.update({(2.0, d): 0.95 for d in depths})
    cells[(2.0, 80)] = missing                       # the top cell was never recorded
    cells[(1.0, 40)] = missing                       # a missing middle cell changes nothing here
    (b,) = fit.extract_boundaries(_rows(cells), xi=False)
    np.testing.assert_array_equal(b.censor, [0, 1])
    np.testing.assert_allclose(b.L_max, [math.sqrt(20 * 80), 40])  # > 40, the deepest with data
    assert np.isnan(b.accuracy[-1, 1]) and b.accuracy[-1, 0] == 0.1


def test_missing_seed_is_left_out_of_the_mean():
    cells = {(1.0, 10): 0.9, (1.0, 20): 0.9, (1.0, 40): 0.1}
    rows = _rows(cells) + _rows({(1.0, 20): None}, seed=1)
    (b,) = fit.extract_boundaries(rows, xi=False)
    assert b.accuracy[1, 0] == 0.9 and b.censor[0] == 0 and b.L_max[0] == pytest.approx(math.sqrt(800))


# --- sigma_w^2 grouped with a tolerance --------------------------------------------------------

def test_float_noisy_sigma_w2_is_one_grid_point():
    noisy = 1.7000000000000002
    assert noisy != 1.7
    cells = {(1.7, 10): 0.9, (1.7, 20): 0.9, (noisy, 40): 0.9, (noisy, 80): 0.1,
             (1.0 + 0.1 * 7, 10): 0.9, (2.5, 10): 0.9, (2.5, 20): 0.1}
    (b,) = fit.extract_boundaries(_rows(cells), xi=False)
    np.testing.assert_array_equal(b.sigma_w2, [1.7, 2.5])
    assert b.L_max[0] == pytest.approx(math.sqrt(40 * 80)) and b.censor[0] == 0


# --- censoring in the likelihood ---------------------------------------------------------------

def _interior(n=12, seed=3):
    rng = np.random.default_rng(seed)
    xc = rng.uniform(3, 30, n)
    return xc, 6.0 * xc * np.exp(rng.normal(0, 0.1, n))


def _with_point(xc, L, x_new, L_new, c_new):
    xcs, Ls = np.append(xc, x_new), np.append(L, L_new)
    c = np.append(np.zeros(len(xc), int), c_new)
    return fit.Boundary("syn", 1.0, np.linspace(1, 4, len(Ls)), Ls, c, xcs, xcs)


def test_censored_point_pulls_a_law_only_when_the_law_violates_it():
    xc, L = _interior()
    base = fit.fit_law("a*xi_c", _with_point(xc, L, [], [], []), n_boot=0).theta[0]
    x = 20.0
    # right-censored at half the prediction (the law predicts above the bound: no pull)
    a_above = fit.fit_law("a*xi_c", _with_point(xc, L, x, 0.5 * base * x, 1), n_boot=0).theta[0]
    assert a_above == pytest.approx(base, rel=1e-7)
    # right-censored at twice the prediction (the law predicts below the bound): pulled up
    a_below = fit.fit_law("a*xi_c", _with_point(xc, L, x, 2 * base * x, 1), n_boot=0).theta[0]
    assert a_below > 1.03 * base
    # and symmetrically for an upper bound (left-censored)
    a_ok = fit.fit_law("a*xi_c", _with_point(xc, L, x, 2 * base * x, -1), n_boot=0).theta[0]
    a_pull = fit.fit_law("a*xi_c", _with_point(xc, L, x, 0.5 * base * x, -1), n_boot=0).theta[0]
    assert a_ok == pytest.approx(base, rel=1e-7) and a_pull < base / 1.03


def test_tobit_fit_matches_scipy_stats_likelihood():
    """Independent route: the censored-normal likelihood written with scipy.stats and maximised
    by Nelder-Mead gives the same constants and scatter."""
    rng = np.random.default_rng(11)
    n = 15
    xc, x1 = rng.uniform(3, 30, n), rng.uniform(3, 60, n)
    L = fit.LAWS["two-scale"].predict([5.0, 10.0], xc, x1) * np.exp(rng.normal(0, 0.2, n))
    c = np.zeros(n, int)
    c[:3], L[:3] = 1, 0.8 * L[:3]
    c[3:5], L[3:5] = -1, 1.3 * L[3:5]
    res = fit.fit_law("two-scale", fit.Boundary("s", 1.0, np.linspace(1, 4, n), L, c, xc, x1), n_boot=0)
    y = np.log(L)

    def nll(p):
        mu, s = np.log(fit.LAWS["two-scale"].predict(np.exp(p[:2]), xc, x1)), np.exp(p[2])
        return -(stats.norm.logpdf(y[c == 0], mu[c == 0], s).sum()
                 + stats.norm.logsf(y[c == 1], mu[c == 1], s).sum()
                 + stats.norm.logcdf(y[c == -1], mu[c == -1], s).sum())
    o = optimize.minimize(nll, [np.log(4.0), np.log(12.0), np.log(0.3)], method="Nelder-Mead",
                          options=dict(xatol=1e-10, fatol=1e-13, maxiter=20000, maxfev=40000))
    np.testing.assert_allclose(res.theta, np.exp(o.x[:2]), rtol=1e-6)
    assert res.sigma == pytest.approx(np.exp(o.x[2]), rel=1e-6)
    assert res.nll + 10 * 0.5 * np.log(2 * np.pi) == pytest.approx(o.fun, abs=1e-8)  # 10 interior


# --- pooled confidence intervals resample whole protocols -------------------------------------

def test_pooled_ci_resamples_protocols_not_points():
    rng = np.random.default_rng(4)
    bs, xs, Ls = [], [], []
    for k, a in enumerate((4.0, 6.0, 8.0, 10.0, 5.0, 7.0)):   # constants differ between protocols
        xc = rng.uniform(3, 30, 12)
        L = a * xc * np.exp(rng.normal(0, 0.05, 12))
        bs.append(fit.Boundary(f"p{k}", 1.0, np.linspace(1, 4, 12), L, np.zeros(12, int), xc, xc,
                               protocol=(("panel", k),)))
        xs.append(xc); Ls.append(L)
    pooled = fit.fit_law("a*xi_c", bs, n_boot=200)
    assert pooled.ci_note.startswith("resampling whole protocols (6)")
    one = np.concatenate(Ls)
    naive = fit.fit_law("a*xi_c", fit.Boundary("all", 1.0, np.linspace(1, 4, 72), one,
                                                np.zeros(72, int), np.concatenate(xs),
                                                np.concatenate(xs)), n_boot=200)
    assert naive.ci_note.startswith("resampling the 72 boundary points")
    width = lambda f: f.ci_high[0] - f.ci_low[0]
    assert width(pooled) > 3 * width(naive)
    # the protocol-level interval covers the geometric mean of the protocol constants
    g = float(np.exp(np.mean(np.log([4, 6, 8, 10, 5, 7]))))
    assert pooled.ci_low[0] < g < pooled.ci_high[0]


# --- a hand-written table through the command line ---------------------------------------------

TABLE = """\
# a heatmap typed by hand: per-step logs (steps 100 and 200), missing cells, float-noisy sigma_w2
dataset,keep,sigma_w2,depth,seed,steps,accuracy,notes
mnist,1.0,1.0,10,0,100,0.90,
mnist,1.0,1.0,10,0,200,0.95,
mnist,1.0,1.0,20,0,100,0.30,slow start
mnist,1.0,1.0,20,0,200,0.93,
mnist,1.0,1.0,40,0,100,0.12,
mnist,1.0,1.0,40,0,200,0.15,
mnist,1.0,1.0,80,0,100,0.10,
mnist,1.0,1.0,80,0,200,0.11,
mnist,1.0,1.7,10,0,100,0.80,
mnist,1.0,1.7,10,0,200,0.94,
mnist,1.0,1.7,20,0,100,0.70,
mnist,1.0,1.7,20,0,200,0.93,
mnist,1.0,1.7000000000000002,40,0,100,0.60,
mnist,1.0,1.7000000000000002,40,0,200,0.91,
mnist,1.0,1.7000000000000002,80,0,100,,
mnist,1.0,1.7000000000000002,80,0,200,NaN,crashed
mnist,1.0,2.5,10,0,100,0.85,
mnist,1.0,2.5,10,0,200,0.90,
mnist,1.0,2.5,20,0,100,0.11,
mnist,1.0,2.5,20,0,200,0.12,
mnist,1.0,2.5,40,0,100,0.10,
mnist,1.0,2.5,40,0,200,0.10,
mnist,1.0,2.5,80,0,100,,
mnist,1.0,2.5,80,0,200,,
mnist,0.98,1.0,10,0,200,0.90,
mnist,0.98,1.0,20,0,200,0.88,
mnist,0.98,1.0,40,0,200,0.11,
mnist,0.98,1.0,80,0,200,0.10,
mnist,0.98,1.7,10,0,200,0.91,
mnist,0.98,1.7,20,0,200,0.89,
mnist,0.98,1.7,40,0,200,0.12,
mnist,0.98,1.7,80,0,200,0.10,
mnist,0.98,2.5,10,0,200,0.85,
mnist,0.98,2.5,20,0,200,0.10,
mnist,0.98,2.5,40,0,200,0.10,
mnist,0.98,2.5,80,0,200,0.10,
"""


@pytest.fixture
def table(tmp_path):
    p = tmp_path / "heatmap.csv"
    p.write_text(TABLE)
    return p


def test_table_through_the_command_line(table, capsys):
    rc = fit.main(["--table", str(table), "--bootstrap", "0", "--plot", str(table.with_suffix(".png"))])
    out, err = capsys.readouterr()
    assert rc == 0, err
    for field in ("activation", "sigma_b2"):      # absent protocol fields: defaulted with a warning
        assert f"warning: no {field} column" in err
    assert "warning: table columns not used: notes" in err
    assert "Traceback" not in err
    # last step of each network; sigma_w^2 1.7 is one point (two spellings); its top cell is
    # missing at every step, so it stays a lower bound at the deepest depth with data (40)
    keep1 = out.split("### Boundary #1: mnist keep=1 T=200")[1].split("###")[0]
    assert "| 1 | 28.3 |  | 20-40 |" in keep1
    assert "| 1.7 | 40.0 | > (every depth with data trains) |" in keep1
    assert "| 2.5 | 14.1 |  | 10-20 |" in keep1
    assert keep1.count("\n| ") == 3 + 1             # header row + three grid points
    assert "### Boundary #2: mnist keep=0.98 T=200" in out
    assert "#1 -> #2" in out and "#2 -> #1" in out   # held-out both ways
    assert table.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_each_step_is_a_budget(table, capsys):
    assert fit.main(["--table", str(table), "--bootstrap", "0", "--per-step", "each"]) == 0
    out = capsys.readouterr().out
    t100 = out.split("mnist keep=1 T=100")[1].split("###")[0]
    assert "| 1 | 14.1 |  | 10-20 |" in t100           # after 100 steps depth 20 had not trained
    assert "| 1.7 | 40.0 | >" in t100
    assert "per-budget constant a(T)" in out and "Held-out budgets" in out
    assert "cannot fit (needs >= 2 budgets with interior points, has 1)" in out


def test_fit_table_in_python_matches(table):
    with pytest.warns(UserWarning) as caught:
        a = fit.fit_table(table, n_boot=0)
    assert {str(w.message).split(":")[0] for w in caught} == {
        "no activation column", "no sigma_b2 column", "table columns not used"}
    b = a.boundaries[0]
    np.testing.assert_allclose(b.L_max, [math.sqrt(800), 40, math.sqrt(200)])
    np.testing.assert_array_equal(b.censor, [0, 1, 0])
    assert b.threshold == pytest.approx(0.1 + 0.5 * (0.95 - 0.1))
    np.testing.assert_allclose(b.xi_c, [_xi_c(s, 1.0) for s in (1.0, 1.7, 2.5)], rtol=1e-12)
    assert any("no sigma_b2 column" in n for n in a.notes)


def test_last_step_with_a_value_and_unequal_ends_warns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("sigma_w2,depth,steps,accuracy\n1.0,10,100,0.9\n1.0,10,200,0.92\n"
                 "1.0,20,100,0.85\n1.0,20,200,\n1.0,40,100,0.1\n1.0,40,200,0.1\n")
    rows = fit.read_table(p)
    with pytest.warns(UserWarning, match="end at different steps"):
        (b,) = fit.extract_boundaries(rows, metric="accuracy", keep=1.0, activation="tanh",
                                      sigma_b2=0.05, n_classes=10, xi=False)
    assert b.accuracy[1, 0] == 0.85 and b.L_max[0] == pytest.approx(math.sqrt(800))


@pytest.mark.parametrize("text,args,flag", [
    ("sigma_w2,depth,acc\n1,10,0.9\n", [], "accuracy"),
    ("sigma_w2,depth,accuracy\n1,10,95\n", [], "fraction"),
    ("sigma_w2,depth,accuracy\n1,ten,0.9\n", [], "line 2: depth must be a number"),
    ("sigma_w2,depth,accuracy\n1,10.5,0.9\n", [], "depth must be an integer"),
    ("sigma_w2,depth,accuracy\n,10,0.9\n", [], "sigma_w2 is empty"),
    ("sigma_w2,depth,accuracy\n1,10\n", [], "line 2 has 2 fields"),
    ("sigma_w2,depth,accuracy,keep\n1,10,0.9,1\n", ["--keep", "0.9"], "keep column"),
    ("sigma_w2,depth,accuracy,activation\n1,10,0.9,tanhh\n", [], "activation must be one of"),
    ("sigma_w2,depth,accuracy\n1,10,0.9\n", ["--bootstrap", "20"], "--bootstrap must be 0 (no CI) or >= 100"),
    ("sigma_w2,depth,accuracy\n1,10,0.9\n", ["--keep", "1.5"], "--keep"),
    ("sigma_w2,depth,accuracy\n1,10,0.9\n", ["--threshold", "1.5"], "--threshold"),
    ("sigma_w2,depth,accuracy\n1,10,0.9\n", ["--plot", "x.jpg"], "--plot"),
    ("sigma_w2,depth,accuracy\n1,10,0.9\n", ["--metric", "eval_acc"], "--metric"),
    ("sigma_w2,depth,accuracy\n1,10,0.9\n", ["--dataset", "mnist"], "no dataset column"),
])
def test_table_errors_name_the_problem(tmp_path, capsys, text, args, flag):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    assert fit.main(["--table", str(p), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and flag in err and "Traceback" not in err, err


@pytest.mark.parametrize("args,flag", [
    ([], "exactly one input"),
    (["--table", "no/such.csv"], "--table must name an existing file"),
    (["--sigma-w2", "1,2", "--lmax", "5"], "--lmax needs one value per --sigma-w2"),
    (["--sigma-w2", "1", "--lmax", "5", "--censor", "2"], "--censor"),
    (["--sigma-w2", "1", "--lmax", "5", "--per-step", "each"], "--per-step applies"),
])
def test_command_line_errors(capsys, args, flag):
    assert fit.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and flag in err, err


def test_bootstrap_zero_says_no_ci(capsys):
    assert fit.main(["--sigma-w2", "1.5,2,2.5,3", "--lmax", "40,70,60,35", "--keep", "1",
                     "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "(no CI)" in out and "no CI (0 resamples)" in out and "[" not in out.split("| a*xi_c |")[1].split("\n")[0]


def test_a_store_written_before_checkpoints_is_refused_by_name(tmp_path, capsys):
    """A trainability table without max_steps (the schema before checkpoints) is not opened: the
    store refuses a table whose columns differ from experiments.config.COLUMNS, and the fit says
    so (no row is read with a guessed budget)."""
    import sqlite3

    from experiments.config import COLUMNS
    db = tmp_path / "old.sqlite"
    old = {c: t for c, t in COLUMNS.items() if c != "max_steps"}
    with sqlite3.connect(db) as con:
        con.execute(f"CREATE TABLE trainability ({', '.join(f'{c} {t}' for c, t in old.items())})")
        con.execute("INSERT INTO trainability (sigma_w2, depth, steps, eval_acc) VALUES (1.5, 10, 100, 0.9)")
    with pytest.raises(ValueError, match="has columns .* but the store was opened with"):
        fit.read_db(db)
    assert fit.main(["--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: table 'trainability'") and "Traceback" not in err
