"""python -m experiments.figures --quick: every figure renders to a valid PNG and PDF, and the
curves it draws are the theory functions they claim to show (read back from the matplotlib Figure
and recomputed here with independent meanfield calls, or checked against simulation statistics)."""
import numpy as np
import pytest

import meanfield as mf
from experiments.figures import FIGURES, render_all
from experiments.figures.__main__ import main
from experiments.figures.cache import Cache


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("figs")
    return render_all(quick=True, out=out, cache_dir=out / "cache", progress=False), out


def _line(fig, gid):
    for ax in fig.axes:
        for ln in ax.get_lines():
            if ln.get_gid() == gid:
                return np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float)
    raise AssertionError(f"no line with gid {gid!r}")


def test_files_valid(rendered):
    done, out = rendered
    assert set(done) == set(FIGURES)
    for name in FIGURES:
        png, pdf = out / f"{name}.png", out / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
        b = pdf.read_bytes()
        assert b[:5] == b"%PDF-" and b"%%EOF" in b[-1024:] and len(b) > 5_000, name


def test_maps_theory_and_simulation(rendered):
    from experiments.figures.maps import ACTS, C0, KEEPS, Q0, SB
    r = rendered[0]["fig1_maps"]
    for act, sw in ACTS:
        for keep in KEEPS:
            key = f"{act}/{keep:g}"
            # independent iteration: the covariance map of two equal-variance inputs over q_map
            _, y = _line(r.fig, f"{key}/q_theory/1")
            q = Q0[1]
            for l in range(1, len(y)):
                q = float(mf.q_map(q, act, sw, SB, keep))
                assert y[l] == pytest.approx(q, rel=1e-12)
            res = mf.analyze(act, sw, SB, keep)
            _, yc = _line(r.fig, f"{key}/c_theory/0")
            q, c = float(res.q_star), C0[0]
            for l in range(1, len(yc)):
                c = float(mf.covariance_map(q, c, act, sw, SB, keep)) / float(mf.q_map(q, act, sw, SB, keep))
                q = float(mf.q_map(q, act, sw, SB, keep))
                assert yc[l] == pytest.approx(c, rel=1e-10)
            assert _line(r.fig, f"{key}/c_star")[1][0] == pytest.approx(float(res.c_star), rel=1e-10)
            # simulation agrees with the theory within its spread (6 networks of width 100)
            d = r.data
            for name in ("q", "c"):
                m, sd, th = d[f"{key}/{name}_sim_mean"], d[f"{key}/{name}_sim_sd"], d[f"{key}/{name}_theory"]
                assert np.all(np.abs(m - th) <= 4 * sd / np.sqrt(6) + 0.15 * np.abs(th) + 0.02), (key, name)


def test_gradient_figures_show_core_recursions(rendered):
    from experiments.figures.gradients import NONLINEAR, NONLINEAR_KEEPS, SB
    done = rendered[0]
    fig = done["fig2_linear_gradients"].fig
    for keep in (0.6, 1.0):
        # Huang's closed forms (THEORY §4), k = L - l
        q, qab, chi = SB / (1 - 0.5 / keep), SB / (1 - 0.5), 0.5 / keep
        x, y = _line(fig, f"linear/{keep:g}/g_aa/exact")
        k = 200 - x
        geo = np.array([np.sum(chi ** np.arange(1, kk + 1)) for kk in k.astype(int)])
        np.testing.assert_allclose(y, 4 * q * q / keep * chi ** k * (1 + geo / keep), rtol=1e-9)
        _, y = _line(fig, f"linear/{keep:g}/g_ab/exact")
        geo2 = np.array([np.sum((0.5 / keep ** 2) ** np.arange(kk + 1)) for kk in k.astype(int)])
        np.testing.assert_allclose(y, 4 * qab ** 2 * 0.5 ** k * geo2, rtol=1e-9)
        _, y = _line(fig, f"linear/{keep:g}/g_aa/gia")  # GIA: pure chi_1 decay from the output
        np.testing.assert_allclose(y[:-1] / y[1:], chi, rtol=1e-12)
        d = done["fig2_linear_gradients"].data
        m, e = d[f"linear/{keep:g}/g_aa/sim_mean"], d[f"linear/{keep:g}/g_aa/sim_sem"]
        th = d[f"linear/{keep:g}/g_aa/exact"][-len(m):]
        assert np.median(np.abs(m - th) / e) < 2.5
    fig3 = done["fig3_nonlinear_gradients"]
    for act, sw in NONLINEAR:
        for keep in NONLINEAR_KEEPS:
            key = f"{act}/{keep:g}"
            t = mf.gradient_metrics(act, sw, SB, keep, 200, method="exact")
            np.testing.assert_allclose(_line(fig3.fig, f"{key}/g_aa/exact")[1], t.g_aa, rtol=1e-12)
            tg = mf.gradient_metrics(act, sw, SB, keep, 200, method="gia")
            np.testing.assert_allclose(_line(fig3.fig, f"{key}/g_aa/gia")[1], tg.g_aa, rtol=1e-12)
            chi1 = float(mf.chi_1(act, sw, SB, keep))
            _, y = _line(fig3.fig, f"{key}/g_abs/chi1_decay")
            np.testing.assert_allclose(y[:-1] / y[1:], chi1, rtol=1e-12)


def test_universality_fits(rendered):
    from experiments.universality import fit_log_log
    for name in ("fig4_universality_aa", "fig5_universality_ab"):
        r = rendered[0][name]
        keys = [k[:-len("/fit")] for k in (ln.get_gid() for ax in r.fig.axes for ln in ax.get_lines())
                if k and k.endswith("/fit")]
        assert keys
        for key in keys:
            m, v = r.data[f"{key}/sim_m"], r.data[f"{key}/sim_V"]
            f = fit_log_log(m, v)
            x, y = _line(r.fig, f"{key}/fit")
            np.testing.assert_allclose(y, np.exp(f.intercept) * x ** f.exponent, rtol=1e-10)
        if name == "fig4_universality_aa":  # simulated means follow the exact theory near the
            # output (deeper, the width-100 networks drift by finite-width corrections)
            m = r.data["width/tanh/0.9/100/sim_m"]
            t = mf.gradient_metrics("tanh", 1.4, 0.1, 0.9, 30, method="exact").g_aa[::10]
            assert m[-1] == pytest.approx(t[len(m) - 1], rel=0.3)


def test_training_figures(rendered):
    r6 = rendered[0]["fig6_training_speed"]
    s = r6.data["steps"]
    assert s.shape == (3, len(r6.data["depths"]), len(r6.data["lrs"]))
    fin = s[np.isfinite(s)]
    assert fin.size and np.all(fin % 5 == 0) and np.all(fin <= 40)
    r7 = rendered[0]["fig7_trainability"]
    assert r7.data["panels"] == ["1", "0.98"]
    for panel in r7.data["panels"]:
        x, y = _line(r7.fig, f"{panel}/6xi_c")
        np.testing.assert_allclose(y, 6 * mf.analyze("tanh", x, 0.05, float(panel)).xi_c, rtol=1e-10)
        acc = r7.data[f"{panel}/accuracy"]
        assert np.all((acc >= 0) & (acc <= 1))


def test_fig7_panel_of_another_noise_layer_draws_its_own_theory(tmp_path, monkeypatch):
    """A Gaussian-noise panel beside dropout at keep 1 (both have keep probability 1): each panel
    draws 6 xi_c and the fitted law with its own layer's depth scales."""
    from experiments import fit
    from experiments.figures import Context, training
    from meanfield.noise import Dropout, GaussianNoise
    layers = (Dropout(keep=1.0), GaussianNoise(sigma_eps2=0.1))
    sws, depths = np.arange(1.0, 4.01, 0.5), (3, 5, 8, 12, 20, 32, 50, 80, 128)
    rows = []
    for layer in layers:
        xi_c = mf.analyze("tanh", sws, 0.05, noise=layer).xi_c
        for s, xc in zip(sws, xi_c):
            for d in depths:
                acc = 0.9 if d <= 4 * xc else 0.1
                rows.append(dict(dataset="mnist", activation="tanh", width=16, sigma_b2=0.05,
                                 noise=layer.spec(), keep=1.0, optimizer="sgd", lr=0.01,
                                 max_steps=100, steps=100, sigma_w2=float(s), depth=d, seed=0,
                                 eval_acc=acc))
    monkeypatch.setattr(training, "trainability_rows", lambda ctx: (rows, "test rows"))
    fig, data = training.render_trainability(Context(quick=True, cache=Cache(tmp_path),
                                                     progress=False))
    assert data["panels"] == ["1", "gaussian(sigma_eps2=0.1)"]
    assert [ax.get_title() for ax in fig.axes[:2]] == ["$\\rho$ = 1 (no dropout)",
                                                       "gaussian(sigma_eps2=0.1)"]
    law = fit.LAWS[data["law"]]
    for panel, layer in zip(data["panels"], layers):
        x, y = _line(fig, f"{panel}/6xi_c")
        res = mf.analyze("tanh", x, 0.05, noise=layer)
        np.testing.assert_allclose(y, 6 * res.xi_c, rtol=1e-10)
        _, y = _line(fig, f"{panel}/law")
        np.testing.assert_allclose(y, law.predict(list(data["theta"]), res.xi_c, res.xi_1),
                                   rtol=1e-9)
    # the two layers' theories differ: a panel drawing the other's would fail above
    assert not np.allclose(_line(fig, "1/6xi_c")[1], _line(fig, "gaussian(sigma_eps2=0.1)/6xi_c")[1])
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_budget_figure_draws_the_law_it_names(rendered):
    """Each drawn law curve is law.predict(theta, xi_c, xi_1, T) with the depth scales recomputed
    here from meanfield.analyze, and the a(T) curve is the law at unit depth scales."""
    from experiments import fit
    r = rendered[0]["budget_trainable_depth"]
    T = r.data["T_fine"]
    assert r.data["law"] in fit.budget_laws("xi_c")   # quick mode fits a law: nothing skipped
    law, theta = fit.get_law(r.data["law"]), list(r.data["theta"])
    keys = [g[:-len("/law")] for ax in r.fig.axes for g in (ln.get_gid() for ln in ax.get_lines())
            if g and g.endswith("/law") and not g.startswith("a(T)")]
    assert len(keys) >= 4 and {k.split("/")[0] for k in keys} == {"1", "0.98"}
    for key in keys:
        keep, s = (float(v) for v in key.split("/"))
        res = mf.analyze("tanh", s, 0.05, keep)
        x, y = _line(r.fig, f"{key}/law")
        np.testing.assert_array_equal(x, T)
        np.testing.assert_allclose(y, law.predict(theta, float(res.xi_c), float(res.xi_1), T),
                                   rtol=1e-9)
    np.testing.assert_allclose(_line(r.fig, "a(T)/law")[1], law.predict(theta, 1.0, 1.0, T),
                               rtol=1e-12)


def test_phase_and_sparseout(rendered):
    r = rendered[0]["phase_depth_scales"]
    sw, sb = r.data["sigma_w2"], r.data["sigma_b2"]
    for keep in (1.0, 0.9):
        res = mf.analyze("tanh", sw[[1, 7]], sb[3], keep)
        np.testing.assert_allclose(r.data[f"{keep:g}/xi_1"][3, [1, 7]], res.xi_1, rtol=1e-9)
        np.testing.assert_allclose(r.data[f"{keep:g}/xi_c"][3, [1, 7]], res.xi_c, rtol=1e-9)
        crit, yb = _line(r.fig, f"{keep:g}/critical")
        np.testing.assert_allclose(mf.chi_1("tanh", crit[::3], yb[::3], keep), 1.0, atol=1e-8)
    r = rendered[0]["sparseout"]
    q = r.data["q"]
    # s = 2 Sparseout is inverted dropout (THEORY §6): an independent route through the dropout map
    np.testing.assert_allclose(_line(r.fig, "2/q_map")[1], mf.q_map(q, "tanh", 2.0, 0.05, 0.6), rtol=1e-10)
    sws = r.data["sigma_w2"]
    np.testing.assert_allclose(_line(r.fig, "2/xi_1")[1], mf.analyze("tanh", sws, 0.05, 0.6).xi_1, rtol=1e-8)
    res = mf.analyze("tanh", sws, 0.05, 0.6, noise="sparseout", s=1.5)
    np.testing.assert_allclose(_line(r.fig, "1.5/xi_c")[1], res.xi_c, rtol=1e-10)


def test_cell_edges():
    from experiments.figures.training import cell_edges
    np.testing.assert_array_equal(cell_edges([1.0, 2.0, 4.0]), [0.5, 1.5, 3.0, 5.0])
    np.testing.assert_array_equal(cell_edges([3.0]), [2.5, 3.5])


def test_cache_hits_and_keys(tmp_path):
    c = Cache(tmp_path)
    calls = []
    f = lambda: calls.append(1) or {"x": np.arange(3.0)}
    a = c.get("demo", {"a": 0.1 + 0.2, "b": [1, 2]}, f)
    b = c.get("demo", {"b": [1, 2], "a": 0.3}, f)  # same parameters, other order and rounding
    np.testing.assert_array_equal(a["x"], b["x"])
    assert len(calls) == 1
    c.get("demo", {"a": 0.4, "b": [1, 2]}, f)
    assert len(calls) == 2 and len(list(tmp_path.glob("demo-*.npz"))) == 2
    with pytest.raises(ValueError, match="kind"):
        c.path("bad kind!", {})


def test_cli_errors(capsys):
    assert main(["--list"]) == 0
    assert "fig1_maps" in capsys.readouterr().out
    assert main(["no_such_figure"]) == 2
    assert "valid names" in capsys.readouterr().err
