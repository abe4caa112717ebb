"""Finite-width gradient simulator: closed forms (linear), GIA, engine equivalence, autograd checks.

Tolerances are Monte Carlo ones: |mean - theory| / sem below a bound chosen for the number of
comparisons (about 40 per check; |z| < 4.5 is exceeded with probability ~3e-4 by chance).
"""
import math

import numpy as np
import pytest
import torch

import meanfield as mf
from meanfield import simulation as sim
from meanfield.simulation import simulate_gradients

torch.set_num_threads(2)

SW, SB = 0.5, 0.1
ZMAX = 4.5


def linear_fixed_point(sw, sb, rho):
    q = sb / (1 - sw / rho)
    qab = sb / (1 - sw)
    return q, qab, qab / q


def huang_linear(sw, sb, rho, depth, gia=False):
    """Huang et al.'s closed forms (THEORY §4), written out independently; index 0 = layer 1."""
    q, qab, _ = linear_fixed_point(sw, sb, rho)
    chi1 = sw / rho
    gaa, gab = [], []
    for k in range(depth - 1, -1, -1):
        if gia:
            gaa.append(4 * q * q / rho * chi1 ** k)
            gab.append(4 * qab * qab * sw ** k)
        else:
            gaa.append(4 * q * q / rho * chi1 ** k * (1 + sum(chi1 ** j for j in range(1, k + 1)) / rho))
            gab.append(4 * qab * qab * sw ** k * sum((sw / rho ** 2) ** j for j in range(k + 1)))
    return np.array(gaa), np.array(gab)


def zscores(res, metric, theory):
    return (res.mean(metric) - theory) / res.sem(metric)


@pytest.mark.parametrize("gia", [False, True])
@pytest.mark.parametrize("keep", [0.6, 0.8, 1.0])
def test_linear_matches_huang_closed_forms(keep, gia):
    q, _, c = linear_fixed_point(SW, SB, keep)
    depth = 12
    res = simulate_gradients("linear", SW, SB, keep, width=250, depth=depth, realisations=80,
                             q0=q, c0=c, gia=gia, seed=11)
    gaa, gab = huang_linear(SW, SB, keep, depth, gia=gia)
    assert np.max(np.abs(zscores(res, "g_aa", gaa))) < ZMAX
    assert np.max(np.abs(zscores(res, "g_bb", gaa))) < ZMAX
    assert np.max(np.abs(zscores(res, "g_ab", gab))) < ZMAX
    # Paper check values (THEORY §5) at the output side for keep = 0.6.
    if keep == 0.6 and not gia:
        assert gaa[-1] == pytest.approx(2.4) and gaa[-2] == pytest.approx(4.7777777777)
        assert gab[-1] == pytest.approx(0.16) and gab[-2] == pytest.approx(0.19111111111)


def test_gia_is_visibly_wrong_for_linear_dropout():
    """The exact and GIA closed forms differ by far more than the Monte Carlo error: GIA misses."""
    q, _, c = linear_fixed_point(SW, SB, 0.6)
    depth = 12
    res = simulate_gradients("linear", SW, SB, 0.6, width=300, depth=depth, realisations=100,
                             q0=q, c0=c, seed=3)
    gaa_gia, _ = huang_linear(SW, SB, 0.6, depth, gia=True)
    z = zscores(res, "g_aa", gaa_gia)
    assert np.all(z[:-1] > 10)  # every layer but the output one


def test_dense_and_projected_engines_agree():
    """Explicit weight matrices + autograd versus the projection sampler: same law (two-sample z)."""
    kw = dict(width=60, depth=8, realisations=400, q0=0.5, c0=0.4, noise="dropout")
    for gia in (False, True):
        a = simulate_gradients("tanh", 1.4, 0.1, 0.8, engine="dense", seed=1, gia=gia, **kw)
        b = simulate_gradients("tanh", 1.4, 0.1, 0.8, engine="projected", seed=2, gia=gia, **kw)
        for m in ("g_aa", "g_ab", "g_abs"):
            z = (a.mean(m) - b.mean(m)) / np.hypot(a.sem(m), b.sem(m))
            assert np.max(np.abs(z)) < ZMAX, (gia, m, z)
            # variances too (Figs. 4-5 use them): log-ratio within ~4.5 of its large-R sd
            lr = np.log(a.var(m) / b.var(m))
            assert np.max(np.abs(lr)) < 4.5 * math.sqrt(2 * 2 / kw["realisations"]) * 2, (gia, m, lr)


def test_readout_engines_agree():
    kw = dict(width=60, depth=6, realisations=300, q0=0.5, c0=0.4, loss="readout", n_out=3)
    a = simulate_gradients("relu", 1.0, 0.1, 0.7, engine="dense", seed=5, **kw)
    b = simulate_gradients("relu", 1.0, 0.1, 0.7, engine="projected", seed=6, **kw)
    for m in ("g_aa", "g_ab"):
        z = (a.mean(m) - b.mean(m)) / np.hypot(a.sem(m), b.sem(m))
        assert np.max(np.abs(z)) < ZMAX, (m, z)


def test_rank_one_metrics_equal_explicit_weight_gradients():
    """g_aa, g_ab, g~_ab from (delta, x~) equal the entry means of explicit autograd weight gradients."""
    g = torch.Generator().manual_seed(0)
    n, depth, keep = 7, 3, 0.7
    ws = [torch.randn(n, n, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(depth)]
    bs = [torch.randn(n, 1, generator=g, dtype=torch.float64) for _ in range(depth)]
    masks = [(torch.rand(n, 2, generator=g, dtype=torch.float64) < keep).double() for _ in range(depth)]
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)

    def forward(col):
        x, xs, zs = x0[:, col:col + 1], [], []
        for l in range(depth):
            x = torch.tanh(x) * masks[l][:, col:col + 1] / keep
            xs.append(x)
            z = ws[l] @ x + bs[l]
            z.retain_grad()
            zs.append(z)
            x = z
        return (torch.tanh(zs[-1]) ** 2).sum(), xs, zs

    grads, deltas, xtil = [], [], []
    for col in (0, 1):
        e, xs, zs = forward(col)
        grads.append(torch.autograd.grad(e, ws, retain_graph=True))
        deltas.append(torch.autograd.grad(e, zs))
        xtil.append(xs)
    for l in range(depth):
        d = torch.cat([deltas[0][l], deltas[1][l]], 1)[None]
        x = torch.cat([xtil[0][l], xtil[1][l]], 1)[None]
        gaa, gbb, gab, gabs = (t.item() for t in sim._pair_metrics(d, x))
        ga, gb = grads[0][l], grads[1][l]
        assert gaa == pytest.approx((ga ** 2).mean().item(), rel=1e-12)
        assert gbb == pytest.approx((gb ** 2).mean().item(), rel=1e-12)
        assert gab == pytest.approx((ga * gb).mean().item(), rel=1e-12)
        assert gabs == pytest.approx((ga * gb).abs().mean().item(), rel=1e-12)


@pytest.mark.parametrize("backward,cs", [("true", None), ("code", 1.0)])
@pytest.mark.parametrize("s", [1.5, 2.0, 3.0])
def test_sparseout_value_and_backward_factor(backward, cs, s):
    """g = phi + sgn(phi)|phi|^{s/2} xi; dg/dz = phi'(1 + c_s |phi|^{(s-2)/2} xi), c_s = s/2 or 1."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2000, dtype=torch.float64, generator=g).requires_grad_(True)
    m = (torch.rand(2000, dtype=torch.float64, generator=g) < 0.7).double()
    p = torch.tanh(z)
    out = mf.Sparseout(keep=0.7, s=s, backward=backward).torch_g(p, m / 0.7 - 1)
    (dz,) = torch.autograd.grad(out.sum(), z)
    pn, zn, xi = p.detach().numpy(), z.detach().numpy(), m.numpy() / 0.7 - 1
    np.testing.assert_allclose(out.detach().numpy(), pn + np.sign(pn) * np.abs(pn) ** (s / 2) * xi,
                               rtol=1e-13, atol=1e-15)
    c = s / 2 if cs is None else cs
    expect = (1 - np.tanh(zn) ** 2) * (1 + c * np.abs(pn) ** ((s - 2) / 2) * xi)
    np.testing.assert_allclose(dz.numpy(), expect, rtol=1e-12, atol=1e-14)


def test_sparseout_relu_zero_units_give_finite_gradients():
    res = simulate_gradients("relu", 1.0, 0.1, 0.8, width=50, depth=5, realisations=4, q0=0.5, c0=0.5,
                             noise="sparseout", s=1.5)
    for m in sim.METRICS:
        assert np.all(np.isfinite(getattr(res, m)))


def test_chunking_keeps_shapes_and_statistics():
    kw = dict(width=50, depth=4, realisations=37, q0=0.5, c0=0.3)
    res = simulate_gradients("erf", 1.2, 0.1, 0.9, max_bytes=60_000, **kw)
    assert res.g_aa.shape == (37, 4) and np.all(res.g_aa > 0)
    assert res.drop == pytest.approx(0.1)


def test_torch_activations_match_formulas():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    xn = x.numpy()
    from scipy.special import erf
    cases = {"linear": xn, "relu": np.maximum(xn, 0), "tanh": np.tanh(xn),
             "hard_tanh": np.clip(xn, -1, 1), "erf": erf(math.sqrt(math.pi) / 2 * xn),
             "sigmoid": 1 / (1 + np.exp(-xn)), "gelu": xn * 0.5 * (1 + erf(xn / math.sqrt(2))),
             "silu": xn / (1 + np.exp(-xn))}
    for name, want in cases.items():
        np.testing.assert_allclose(mf.get_activation(name).torch(x).detach().numpy(), want,
                                   rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("kw,word", [
    (dict(keep=0.0), "keep"), (dict(keep=1.2), "keep"), (dict(sigma_w2=-1.0), "sigma_w2"),
    (dict(width=1), "width"), (dict(depth=0), "depth"), (dict(realisations=1), "realisations"),
    (dict(noise="gauss"), "noise"), (dict(loss="xent"), "loss"), (dict(engine="gpu"), "engine"),
    (dict(activation="softplus"), "activation"), (dict(c0=1.5), "c0"), (dict(q0=0.0), "q0"),
    (dict(noise="none", keep=0.5), "keep"), (dict(backward="approx"), "backward"),
])
def test_bad_input_raises(kw, word):
    args = dict(activation="tanh", sigma_w2=1.0, sigma_b2=0.1, keep=0.8, width=10, depth=2,
                realisations=2, q0=0.5, c0=0.5)
    args.update(kw)
    with pytest.raises(ValueError, match=word):
        simulate_gradients(**args)


def test_cli_writes_table(tmp_path, capsys):
    from meanfield.cli.gradients import main
    out = tmp_path / "t.csv"
    rc = main(["--activation", "linear", "--sigma-w2", "0.5", "--sigma-b2", "0.1", "--drop", "0.4",
               "--depth", "4", "--width", "50", "--realisations", "8", "--q0", "0.6", "--c0", "0.33333333",
               "--out", str(out), "--last", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "keep=0.6 (drop=0.4)" in text and "sim g_aa" in text
    import csv
    rows = list(csv.DictReader(open(out)))
    assert [int(r["layer"]) for r in rows] == [1, 2, 3, 4] and float(rows[-1]["sim_g_aa"]) > 0
    with pytest.raises(SystemExit) as exc:
        main(["--keep", "0"])
    assert exc.value.code == 2 and "keep" in capsys.readouterr().err


def _theory():
    return mf.gradient_metrics


@pytest.mark.parametrize("act,sw,loss", [("tanh", 1.4, "sum_squares"), ("relu", 1.0, "sum_squares"),
                                         ("hard_tanh", 1.4, "sum_squares"), ("erf", 1.4, "readout")])
def test_nonlinear_exact_theory_matches_and_gia_theory_matches_gia_simulation(act, sw, loss):
    gm = _theory()
    depth, n_out, width = 10, 4, 300
    scale = n_out / width if loss == "readout" else 1.0  # readout theory is per output, times N
    ex = gm(act, sw, 0.1, 0.8, depth, method="exact", loss=loss)
    gi = gm(act, sw, 0.1, 0.8, depth, method="gia", loss=loss)
    for gia, theory in ((False, ex), (True, gi)):
        res = simulate_gradients(act, sw, 0.1, 0.8, width=width, depth=depth, realisations=100, gia=gia,
                                 loss=loss, n_out=n_out, seed=21)
        for m in ("g_aa", "g_ab"):
            z = zscores(res, m, scale * getattr(theory, m))
            assert np.max(np.abs(z)) < ZMAX, (gia, m, z)
    if loss == "sum_squares":  # GIA theory misses the faithful simulation
        res = simulate_gradients(act, sw, 0.1, 0.8, width=width, depth=depth, realisations=100, seed=22)
        assert np.max(np.abs(zscores(res, "g_aa", gi.g_aa))) > 5  # chance: ~1e-6


@pytest.mark.parametrize("act,sw,s,backward", [("tanh", 1.2, 1.5, "code"), ("relu", 0.8, 2.5, "true")])
def test_sparseout_simulation_matches_exact_theory(act, sw, s, backward):
    gm = _theory()
    depth = 8
    ex = gm(act, sw, 0.1, 0.8, depth, noise="sparseout", s=s, backward=backward, method="exact")
    res = simulate_gradients(act, sw, 0.1, 0.8, width=300, depth=depth, realisations=100, seed=31,
                             noise="sparseout", s=s, backward=backward)
    for m in ("g_aa", "g_ab"):
        assert np.max(np.abs(zscores(res, m, getattr(ex, m)))) < ZMAX
