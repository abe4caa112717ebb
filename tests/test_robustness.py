"""experiments.robustness: noise protocol, models, resumable smoke run, summary and figure."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import robustness as rb
from experiments.layers import KWinners, KWinners2d, SparseWeights

DATA = Path(__file__).parents[1].parent / "shared/data"


def test_add_noise_protocol():
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (50, 784)) / 255).astype(np.float32)
    assert rb.ETAS == (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
    for eta in rb.ETAS:
        y = rb.add_noise(x, eta, seed=3)
        changed = y != x
        assert (changed.sum(axis=1) == int(eta * 784 + 1e-9)).all()  # 0.05 * 784 = 39.2 -> 39
        assert np.all(y[changed] == np.float32(0.7469))
        np.testing.assert_array_equal(y, rb.add_noise(x, eta, seed=3))  # fixed draw per seed
    assert (rb.add_noise(x, 0.5, 3) != x).sum(axis=1)[0] == 392
    assert not np.array_equal(rb.add_noise(x, 0.2, 3), rb.add_noise(x, 0.2, 4))
    np.testing.assert_array_equal(x, (x * 255).round() / 255)  # input untouched
    with pytest.raises(ValueError, match="eta"):
        rb.add_noise(x, 1.5, 0)


def test_models():
    p = rb.PRESETS["smoke"]
    x = torch.randn(4, 784)
    for arch in rb.ARCHS:
        for variant in rb.VARIANTS:
            m = rb.build_model(arch, variant, p)
            assert m(x).shape == (4, 10)
            kinds = {type(layer) for layer in m.modules()}
            assert (KWinners in kinds) == (SparseWeights in kinds) == (variant == "sparse")
            assert (torch.nn.Dropout in kinds) == (variant == "dropout")
    drop = [d for d in rb.build_model("mlp", "dropout", p).modules() if isinstance(d, torch.nn.Dropout)]
    assert all(d.p == p.drop for d in drop)  # PyTorch's p is the drop probability
    # the sparse CNN keeps one duty cycle per channel on its conv map (nupic's KWinners2d)
    cnn = rb.build_model("cnn", "sparse", p)
    (kw2d,) = [m for m in cnn.modules() if isinstance(m, KWinners2d)]
    feat = p.channels * 12 * 12
    assert kw2d.channels == p.channels and kw2d.duty_cycle.shape == (p.channels,)
    assert kw2d.k == round(p.f_on * feat) and float(kw2d.boost_strength) == 1.5
    (kw,) = [m for m in cnn.modules() if isinstance(m, KWinners)]
    assert kw.n == p.hidden and kw.k == round(p.f_on * p.hidden)
    (sw,) = [m for m in cnn.modules() if isinstance(m, SparseWeights)]
    assert sw.module.in_features == feat and sw.in_degree == round(p.density * feat)
    cnn.train()
    z = cnn[:4](torch.rand(3, 784))  # after the conv k-winners: exactly k on per sample
    assert z.shape == (3, p.channels, 12, 12)
    assert ((z != 0).flatten(1).sum(dim=1) == kw2d.k).all()
    with pytest.raises(ValueError, match="arch"):
        rb.build_model("rnn", "dense", p)
    with pytest.raises(ValueError, match="variant"):
        rb.build_model("mlp", "noisy", p)


def test_summary_and_table():
    rows = []
    correct = {0: [90, 80] + [50] * 9, 1: [94, 70] + [40] * 9}
    for seed, c in correct.items():
        rows.append({"arch": "mlp", "variant": "dense", "seed": seed, "n_test": 100,
                     "correct": json.dumps(c), "noise_score": sum(c)})
    (s,) = rb.summarize(rows)
    assert s["seeds"] == 2
    assert s["acc_mean"][0] == pytest.approx(0.92)
    assert s["acc_std"][1] == pytest.approx(np.std([0.8, 0.7], ddof=1))
    assert s["score_mean"] == pytest.approx((620 + 524) / 2)
    assert s["score_std"] == pytest.approx(np.std([620, 524], ddof=1))
    table = rb.format_table([s])
    assert "| mlp | dense | 2 | 92.00 | 75.00 |" in table
    assert "572 +- 68 (of 1100)" in table


def test_smoke_run_resumes_and_plots(tmp_path, monkeypatch, capsys):
    # the CLI's defaults live under the working directory; the data folder comes from the env var
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEANFIELD_DATA_DIR", str(DATA))
    assert rb.main(["--preset", "smoke", "--serial"]) == 0  # Dask: tests/test_runner.py
    assert "| cnn | sparse | 1 |" in capsys.readouterr().out
    db = tmp_path / "results" / "robustness.sqlite"
    assert db.is_file() and (tmp_path / "figures" / "robustness_smoke.png").is_file()
    rows = rb.run("smoke", db, DATA, progress=False, engine="serial")
    p = rb.PRESETS["smoke"]
    assert len(rows) == len(rb.ARCHS) * len(rb.VARIANTS) * len(p.seeds)
    for r in rows:
        c = json.loads(r["correct"])
        assert len(c) == 11 and r["noise_score"] == sum(c)
        assert r["clean_acc"] == c[0] / p.n_test
        assert 0.1 < r["clean_acc"] <= 1  # better than chance after the smoke training

    def boom(*a, **k):
        raise AssertionError("finished networks must not be retrained")

    monkeypatch.setattr(rb, "train_and_score", boom)
    assert rb.run("smoke", db, DATA, progress=False) == rows  # all stored: no cluster starts
    paths = rb.plot(rb.summarize(rows), tmp_path / "fig")
    assert all(path.stat().st_size > 1000 for path in paths)
    assert {path.suffix for path in paths} == {".png", ".pdf"}
    with pytest.raises(ValueError, match="preset"):
        rb.run("huge", db, DATA)
