"""DropConnect: each weight kept with probability rho, per input (docs/THEORY.md §11).

Independent routes: the linear network's exact closed forms (derived in ``linear_closed_forms``
from the transpose rule with gamma = 1/rho, S_1 = E[phi'^2 phi^2], S_2 = E[PK]), and the dense
finite-width simulator with explicit masked weight matrices (one mask per input, metrics from the
actual weight gradients), compared by z-scores as in tests/test_simulation.py. Where DropConnect and
dropout differ (the single-input no-GIA source term, rho times dropout's), the simulation must
separate them.
"""
import numpy as np
import pytest

import meanfield as mf
from meanfield.noise import DropConnect, Dropout, make_noise, noise_from_spec

ZMAX = 4.5
SW, SB, KEEP = 0.5, 0.1, 0.6


def linear_closed_forms(sw, sb, keep, depth, gia=False):
    """Exact g_aa, g_ab of a linear DropConnect network, index 0 = layer 1, k = L - l.

    q* = sb/(1 - sw/rho), q*_ab = sb/(1 - sw), chi_1 = chi_q = sw/rho, chi_2 = sw; the transpose
    coefficient a = (sw/rho) 2 chi_1^k (gamma = 1/rho), S_1 = q*, S_2 = q*_ab, so
    qt^{L-k} = chi_1 qt^{L-k+1} + 4 chi_1^{2k} q* and
    g_aa = (4 q*^2/rho) chi_1^k [1 + sum_{j=1..k} chi_1^j]       (dropout: the sum over rho),
    g_ab = 4 q*_ab^2 sw^k sum_{j=0..k} (sw/rho^2)^j                (dropout's).
    """
    q, qab = sb / (1 - sw / keep), sb / (1 - sw)
    chi1 = sw / keep
    k = np.arange(depth)[::-1]
    if gia:
        return 4 * q * q / keep * chi1 ** k, 4 * qab * qab * sw ** k
    gaa = [4 * q * q / keep * chi1 ** kk * (1 + sum(chi1 ** j for j in range(1, kk + 1))) for kk in k]
    gab = [4 * qab * qab * sw ** kk * sum((sw / keep ** 2) ** j for j in range(kk + 1)) for kk in k]
    return np.array(gaa), np.array(gab)


def test_forward_maps_and_slopes_equal_dropout():
    for act, sw in (("tanh", 1.4), ("relu", 1.0), ("erf", 2.0)):
        a = mf.analyze(act, sw, 0.1, noise=DropConnect(keep=0.8))
        b = mf.analyze(act, sw, 0.1, noise=Dropout(keep=0.8))
        for f in ("q_star", "c_star", "chi_1", "chi_c", "chi_q", "xi_c"):
            assert float(getattr(a, f)) == float(getattr(b, f)), (act, f)
    assert float(mf.critical_sigma_w2("relu", 0.0, noise="dropconnect", keep=0.7)) == pytest.approx(1.4)


@pytest.mark.parametrize("method", ["exact", "gia"])
def test_linear_theory_closed_forms(method):
    depth = 10
    gm = mf.gradient_metrics("linear", SW, SB, depth=depth, noise="dropconnect", keep=KEEP, method=method)
    gaa, gab = linear_closed_forms(SW, SB, KEEP, depth, gia=method == "gia")
    np.testing.assert_allclose(gm.g_aa, gaa, rtol=1e-12)
    np.testing.assert_allclose(gm.g_ab, gab, rtol=1e-12)
    dropout = mf.gradient_metrics("linear", SW, SB, KEEP, depth, method=method)
    np.testing.assert_allclose(gm.g_ab, dropout.g_ab, rtol=1e-12)  # pair source: the same
    if method == "exact":  # single-input source rho times dropout's: smaller g_aa below the output
        assert np.all(gm.g_aa[:-1] < dropout.g_aa[:-1]) and gm.g_aa[-1] == pytest.approx(dropout.g_aa[-1])
        assert gm.g_aa[-2] == pytest.approx(3.6666666666667)  # THEORY §5's 4.7778 for dropout
    else:
        np.testing.assert_allclose(gm.g_aa, dropout.g_aa, rtol=1e-12)


def test_backprop_ingredients():
    act = mf.get_activation("tanh")
    nz = DropConnect(keep=[0.5, 0.8])
    np.testing.assert_allclose(nz.transpose_gain(), [2.0, 1.25])
    pd = mf.kernels.moment(act, "PD", 0.7)
    np.testing.assert_allclose(nz.backprop_source_single(act, 0.7), [pd, pd])
    np.testing.assert_allclose(Dropout(keep=[0.5, 0.8]).backprop_source_single(act, 0.7),
                               [pd * 8, pd / 0.512])


def test_layer_parameters_and_spec():
    nz = make_noise("dropconnect", drop=0.25)
    assert nz == DropConnect(keep=0.75) and nz.acts_on == "weights"
    assert nz != Dropout(keep=0.75) and hash(nz) != hash(Dropout(keep=0.75))
    assert noise_from_spec(nz.spec()) == nz
    assert DropConnect(keep=1.0).is_identity()
    with pytest.raises(ValueError, match="keep"):
        DropConnect(keep=1.5)
    for unit_forward in (lambda: nz.torch_g(None, None), lambda: nz.torch_xi(None)):
        with pytest.raises(NotImplementedError, match="weights"):
            unit_forward()


# ------------------------------------------------------------------ simulation (torch)

def zscores(res, metric, theory):
    return (res.mean(metric) - theory) / res.sem(metric)


def _linear_sim(depth, gia=False, seed=41, width=300, realisations=80):
    from meanfield.simulation import simulate_gradients
    q, qab = SB / (1 - SW / KEEP), SB / (1 - SW)
    return simulate_gradients("linear", SW, SB, noise="dropconnect", keep=KEEP, engine="dense",
                              width=width, depth=depth, realisations=realisations, q0=q, c0=qab / q,
                              gia=gia, seed=seed)


def test_linear_simulation_matches_closed_forms_and_differs_from_dropout():
    depth = 6
    res = _linear_sim(depth)
    gaa, gab = linear_closed_forms(SW, SB, KEEP, depth)
    for m, want in (("g_aa", gaa), ("g_bb", gaa), ("g_ab", gab)):
        assert np.max(np.abs(zscores(res, m, want))) < ZMAX, m
    # dropout's exact single-input theory is 30 % higher below the output: rejected layer by layer
    dropout = mf.gradient_metrics("linear", SW, SB, KEEP, depth)
    assert np.all(zscores(res, "g_aa", dropout.g_aa)[:-1] < -5)  # expected about -10 at k = 1


def test_linear_gia_simulation():
    depth = 6
    res = _linear_sim(depth, gia=True, seed=42)
    gaa, gab = linear_closed_forms(SW, SB, KEEP, depth, gia=True)
    for m, want in (("g_aa", gaa), ("g_ab", gab)):
        assert np.max(np.abs(zscores(res, m, want))) < ZMAX, m


@pytest.mark.parametrize("act,sw,loss", [("tanh", 1.4, "sum_squares"), ("relu", 1.0, "sum_squares"),
                                         ("tanh", 1.4, "readout")])
def test_nonlinear_simulation_matches_exact_theory(act, sw, loss):
    from meanfield.simulation import simulate_gradients
    depth, width, n_out = 5, 250, 4
    scale = n_out / width if loss == "readout" else 1.0
    ex = mf.gradient_metrics(act, sw, 0.1, depth=depth, noise="dropconnect", keep=0.7, loss=loss)
    res = simulate_gradients(act, sw, 0.1, noise="dropconnect", keep=0.7, engine="dense", width=width,
                             depth=depth, realisations=60, loss=loss, n_out=n_out, seed=43)
    for m in ("g_aa", "g_ab"):
        assert np.max(np.abs(zscores(res, m, scale * getattr(ex, m)))) < ZMAX, m
    assert np.all(res.g_abs >= np.abs(res.g_ab))


def test_keep_one_is_no_noise_and_engine_is_checked():
    from meanfield.simulation import simulate_gradients
    kw = dict(width=20, depth=3, realisations=4, q0=0.5, c0=0.3, seed=5)
    a = simulate_gradients("tanh", 1.2, 0.1, noise="dropconnect", keep=1.0, **kw)
    b = simulate_gradients("tanh", 1.2, 0.1, noise="none", **kw)
    for m in ("g_aa", "g_ab", "g_abs"):
        assert np.array_equal(getattr(a, m), getattr(b, m))
    with pytest.raises(ValueError, match="engine must be 'dense'"):
        simulate_gradients("tanh", 1.2, 0.1, noise="dropconnect", keep=0.8, **kw)


def test_gradients_cli_simulates_dropconnect(capsys):
    from meanfield.cli.gradients import main
    args = ["--activation", "tanh", "--noise", "dropconnect", "--keep", "0.8", "--depth", "3",
            "--width", "30", "--realisations", "4"]
    assert main(args + ["--engine", "dense"]) == 0
    assert "dropconnect(keep=0.8)" in capsys.readouterr().out
    assert main(args) == 0  # weight noise: the dense engine is the default
    assert "engine=dense" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # the projected engine cannot do weight noise
        main(args + ["--engine", "projected"])
    assert exc.value.code == 2 and "--engine dense" in capsys.readouterr().err


def test_acceptance_study_runs_resumes_and_reports(tmp_path, capsys):
    """experiments.noise_study at toy size on a 2-worker Dask cluster (one runner task per
    simulation): every case stored once; a serial rerun adds nothing and reports the same."""
    import json

    from experiments import noise_study
    db = tmp_path / "ns.sqlite"
    args = ["--width", "30", "--depth", "3", "--realisations", "3", "--db", str(db), "--no-progress"]
    assert noise_study.main(args + ["--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# 6 new simulations") and "DropConnect minus dropout" in out
    assert "dropconnect(keep=0.7)" in out and "gaussian(sigma_eps2=0.4285" in out
    assert noise_study.main(args + ["--serial", "--threads", "1", "--out", str(tmp_path / "r.txt")]) == 0
    again = capsys.readouterr().out
    assert again.startswith("# 0 new simulations, 6 in")
    assert again.split("\n", 1)[1] == out.split("\n", 1)[1]
    assert (tmp_path / "r.txt").read_text().count("## ") == 8
    # a row computed on a worker is the in-process simulation of its case (seeded)
    case = noise_study.cases(30, 3, 3)[0]
    _, (stored,) = noise_study.run(db, [case], progress=False, engine="serial")
    fresh = noise_study.simulate(case)
    for k in ("g_aa_mean", "g_ab_mean", "g_ab_sem"):
        np.testing.assert_allclose(json.loads(stored[k]), json.loads(fresh[k]), rtol=1e-10)
    for bad, flag in ((["--width", "1"], "--width"), (["--workers", "0"], "--workers")):
        with pytest.raises(SystemExit) as exc:
            noise_study.main(bad)
        assert exc.value.code == 2 and flag in capsys.readouterr().err
