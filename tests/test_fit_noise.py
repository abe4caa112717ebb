"""The fit with any noise layer (issue 10): a boundary's theory depth scales are those of its noise
layer, from a table's ``noise`` column (a ``meanfield`` spec), else dropout at its ``keep``, else
``--noise`` / ``--keep``; labels name the layer. Expected depth scales come from
``meanfield.analyze`` called here with the layer object."""
import numpy as np
import pytest

import meanfield as mf
from experiments import fit
from meanfield.noise import Dropout, GaussianNoise, Sparseout

SB = 0.05
SPARSEOUT = Sparseout(keep=0.9, s=1.5)
GAUSS = GaussianNoise(sigma_eps2=0.1)


def _scales(layer, sw):
    r = mf.analyze("tanh", np.asarray(sw, float), SB, noise=layer)
    return np.asarray(r.xi_c), np.asarray(r.xi_1)


# a heatmap typed by hand: two noise layers by their spec (one spelled two ways), quoted because
# a spec has commas; trainable up to depth 20 at sigma_w^2 1.5 and up to 40 at 2.5
NOISE_TABLE = """\
sigma_w2,depth,accuracy,noise
1.5,10,0.9,"sparseout(keep=0.9, s=1.5)"
1.5,20,0.9,"sparseout(keep=0.9, s=1.5, backward='true')"
1.5,40,0.1,"sparseout(keep=0.9,s=1.5)"
2.5,10,0.9,"sparseout(keep=0.9, s=1.5)"
2.5,20,0.9,"sparseout(keep=0.9, s=1.5)"
2.5,40,0.9,"sparseout(keep=0.9, s=1.5)"
2.5,80,0.1,"sparseout(keep=0.9, s=1.5)"
1.5,10,0.9,gaussian(sigma_eps2=0.1)
1.5,20,0.1,gaussian(sigma_eps2=0.1)
2.5,10,0.9,gaussian(sigma_eps2=0.1)
2.5,20,0.9,gaussian(sigma_eps2=0.1)
2.5,40,0.1,gaussian(sigma_eps2=0.1)
"""


@pytest.fixture
def noise_table(tmp_path):
    p = tmp_path / "noise.csv"
    p.write_text(NOISE_TABLE)
    return p


def test_noise_column_gives_each_layer_its_depth_scales(noise_table):
    with pytest.warns(UserWarning, match="no activation column"):
        rows = fit.read_table(noise_table)
        bs = fit.extract_boundaries(rows, metric="accuracy", n_classes=10, sigma_b2=SB)
    assert [b.noise for b in bs] == [SPARSEOUT, GAUSS]      # the three spellings are one protocol
    assert [b.label for b in bs] == ["sparseout(keep=0.9, s=1.5, backward='true')",
                                     "gaussian(sigma_eps2=0.1)"]
    assert bs[0].keep == 0.9 and bs[1].keep == 1.0
    for b, layer in zip(bs, (SPARSEOUT, GAUSS)):
        xi_c, xi_1 = _scales(layer, [1.5, 2.5])
        np.testing.assert_allclose(b.xi_c, xi_c, rtol=1e-12)
        np.testing.assert_allclose(b.xi_1, xi_1, rtol=1e-12)
    np.testing.assert_allclose(bs[0].L_max, [np.sqrt(800), np.sqrt(3200)])
    # the layers' scales differ from dropout's at the same keep: the noise column is not ignored
    assert not np.allclose(bs[0].xi_1, _scales(Dropout(keep=0.9), [1.5, 2.5])[1], rtol=1e-3)


def test_fit_uses_the_noise_layer_scales(noise_table, capsys):
    """One interior point per sigma_w^2: a*xi_c is the log-mean of L_max / xi_c of that layer."""
    a = fit.fit_table(noise_table, sigma_b2=SB, activation="tanh", n_classes=10, n_boot=0)
    xi_c, _ = _scales(GAUSS, [1.5, 2.5])
    L = np.array([np.sqrt(200), np.sqrt(800)])
    expected = float(np.exp(np.mean(np.log(L / xi_c))))
    assert a.per_boundary[1]["a*xi_c"].theta[0] == pytest.approx(expected, rel=1e-7)
    text = fit.report(a)
    assert "### Boundary #2: gaussian(sigma_eps2=0.1)" in text
    assert f"| 1.5 | 14.1 |  | 10-20 | {xi_c[0]:.2f} |" in text


def test_keep_only_table_is_dropout(tmp_path):
    p = tmp_path / "keep.csv"
    p.write_text("sigma_w2,depth,accuracy,keep\n1.5,10,0.9,0.98\n1.5,20,0.1,0.98\n"
                 "2.5,10,0.9,0.98\n2.5,20,0.9,0.98\n2.5,40,0.1,0.98\n")
    (b,) = fit.extract_boundaries(fit.read_table(p), metric="accuracy", n_classes=10,
                                  activation="tanh", sigma_b2=SB)
    assert b.noise == Dropout(keep=0.98) and b.label == "keep=0.98"
    xi_c, xi_1 = _scales(Dropout(keep=0.98), [1.5, 2.5])
    np.testing.assert_allclose(b.xi_c, xi_c, rtol=1e-12)
    np.testing.assert_allclose(b.xi_1, xi_1, rtol=1e-12)


def test_table_without_noise_columns_takes_the_noise_flag(tmp_path, capsys):
    p = tmp_path / "plain.csv"
    p.write_text("sigma_w2,depth,accuracy\n1.5,10,0.9\n1.5,20,0.1\n2.5,10,0.9\n2.5,20,0.9\n"
                 "2.5,40,0.1\n")
    assert fit.main(["--table", str(p), "--noise", "sparseout(keep=0.9, s=1.5)", "--sigma-b2",
                     "0.05", "--activation", "tanh", "--bootstrap", "0"]) == 0
    out, err = capsys.readouterr()
    assert "no keep" not in err                                   # the layer was given
    xi_c, xi_1 = _scales(SPARSEOUT, [1.5, 2.5])
    assert "### Boundary #1: sparseout(keep=0.9, s=1.5, backward='true')" in out
    assert f"| 2.5 | 28.3 |  | 20-40 | {xi_c[1]:.2f} | {xi_1[1]:.2f} |" in out


def test_given_boundary_with_a_noise_layer(capsys, tmp_path):
    png = tmp_path / "g.png"
    assert fit.main(["--sigma-w2", "1.5,2.5", "--lmax", "15,30", "--noise",
                     "gaussian(sigma_eps2=0.1)", "--bootstrap", "0", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    xi_c, _ = _scales(GAUSS, [1.5, 2.5])
    assert "### Boundary #1: given gaussian(sigma_eps2=0.1)" in out
    assert f"| 1.5 | 15.0 |  |  | {xi_c[0]:.2f} |" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    b = fit.boundary_from_arrays([1.5, 2.5], [15, 30], noise=GAUSS)
    np.testing.assert_allclose(b.xi_c, xi_c, rtol=1e-12)
    assert fit.boundary_from_arrays([1.5], [15], keep=0.9).noise == Dropout(keep=0.9)
    with pytest.raises(ValueError, match="exactly one of keep"):
        fit.boundary_from_arrays([1.5], [15], keep=0.9, noise=GAUSS)


@pytest.mark.parametrize("table,args,msg", [
    ("sigma_w2,depth,accuracy,noise,keep\n1.5,10,0.9,dropout(keep=0.9),0.95\n", [],
     "keep = 0.95 disagrees with the noise layer dropout(keep=0.9)"),
    ("sigma_w2,depth,accuracy,noise\n1.5,10,0.9,dropuot(keep=0.9)\n", [],
     "line 2: noise: noise must be"),
    ("sigma_w2,depth,accuracy,noise\n1.5,10,0.9,\n", [], "line 2: noise is empty"),
    ("sigma_w2,depth,accuracy,noise\n1.5,10,0.9,none()\n", ["--noise", "none()"], "noise column"),
    ("sigma_w2,depth,accuracy\n1.5,10,0.9\n", ["--noise", "dropout(keep=1.5)"], "--noise: keep"),
    ("sigma_w2,depth,accuracy\n1.5,10,0.9\n", ["--noise", "none()", "--keep", "0.9"], "not both"),
])
def test_noise_errors_name_the_problem(tmp_path, capsys, table, args, msg):
    p = tmp_path / "bad.csv"
    p.write_text(table)
    assert fit.main(["--table", str(p), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and msg in err and "Traceback" not in err, err


def test_boundary_takes_a_layer_its_spec_or_a_keep():
    args = (np.array([1.5]), np.array([10.0]), np.zeros(1, int), np.ones(1), np.ones(1))
    assert fit.Boundary("a", GAUSS, *args).noise is GAUSS
    assert fit.Boundary("b", "gaussian(sigma_eps2=0.1)", *args).noise == GAUSS
    assert fit.Boundary("c", 0.9, *args).noise == Dropout(keep=0.9)
    assert fit.Boundary("c", 0.9, *args).keep == 0.9 and fit.Boundary("a", GAUSS, *args).keep == 1.0
    with pytest.raises(ValueError, match="noise must be a meanfield noise layer"):
        fit.Boundary("d", None, *args)
    with pytest.raises(ValueError, match="noise must have scalar parameters"):
        fit.Boundary("e", Dropout(keep=np.array([0.9, 0.8])), *args)


def test_budget_figure_panel_of_a_noise_layer():
    pytest.importorskip("matplotlib")
    from experiments.figures.budget import draw
    bs = [fit.boundary_from_arrays([1.5, 2.5], [10 * np.log(T), 20 * np.log(T)], noise=GAUSS,
                                   budget=float(T)) for T in (100, 1000)]
    fig, data = draw(bs)
    assert fig.axes[0].get_title() == GAUSS.spec()
    np.testing.assert_allclose(data[f"{GAUSS.spec()}/2.5/L_max"], 20 * np.log([100, 1000]))
    import matplotlib.pyplot as plt
    plt.close(fig)
