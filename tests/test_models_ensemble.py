"""Models and batched ensembles: init statistics against the stated laws, dropout statistics, and
member-by-member equality of the ensemble with networks trained alone (torch.optim on nn.Linear
layers is the independent route)."""
import math

import numpy as np
import pytest
import torch

from experiments.data import Dataset
from experiments.ensemble import EnsembleMLP, train_ensemble
from experiments.models import (
    DeepMLP,
    NetConfig,
    TrainConfig,
    init_params,
    train_network,
)
from meanfield.noise import DropConnect, Dropout, GaussianNoise, NoNoise, Sparseout

torch.set_num_threads(1)


def _toy_data(n=600, d=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d))
    y = rng.integers(0, classes, size=n)
    x = (centers[y] + 0.8 * rng.normal(size=(n, d)))
    x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32)
    return Dataset("toy", x[:500], y[:500].astype(np.int64), x[500:], y[500:].astype(np.int64))


def test_gaussian_init_variance():
    cfg = NetConfig(n_in=300, width=400, depth=2, sigma_w2=2.5, sigma_b2=0.3)
    (w0, b0), (w1, b1), (w2, _) = init_params(cfg, seed=1, dtype=torch.float64)
    assert w0.shape == (400, 300) and w2.shape == (10, 400)
    # entry variance sigma_w^2 / fan_in: 120k samples, relative s.e. sqrt(2/120000) = 0.4 %
    assert abs(w0.var().item() * 300 / 2.5 - 1) < 0.02
    assert abs(w1.var().item() * 400 / 2.5 - 1) < 0.02
    assert abs(torch.cat([b0, b1]).var().item() / 0.3 - 1) < 0.25   # 800 samples, s.e. 5 %


def test_orthogonal_init_is_scaled_orthogonal():
    cfg = NetConfig(n_in=50, width=30, depth=2, n_out=10, sigma_w2=1.7, init="orthogonal")
    ws = [w for w, _ in init_params(cfg, seed=2, dtype=torch.float64)]
    for w in ws:
        out, inn = w.shape
        gram = w @ w.T if out <= inn else w.T @ w
        np.testing.assert_allclose(gram.numpy(), 1.7 * np.eye(min(out, inn)), atol=1e-12)
    # different seeds give different matrices
    w_other = init_params(cfg, seed=3, dtype=torch.float64)[1][0]
    assert not torch.allclose(ws[1], w_other)


def test_dropout_keep_fraction_and_scaling():
    cfg = NetConfig(n_in=8, width=200, depth=1, sigma_w2=1.0, noise=Dropout(keep=0.7), activation="linear")
    net = DeepMLP(cfg, seed=0, dtype=torch.float64)
    x = torch.rand(500, 8, dtype=torch.float64)
    h_clean = torch.nn.functional.linear(x, net.weights[0], net.biases[0])
    # recover the mask through a hook-free route: identity readout on hidden units
    with torch.no_grad():
        u = torch.rand(500, 200, generator=torch.Generator().manual_seed(0 + 1_000_003),
                       dtype=torch.float64)
    m = (u < 0.7)
    frac = m.double().mean().item()
    assert abs(frac - 0.7) < 4 * math.sqrt(0.7 * 0.3 / m.numel())
    net.train()
    out = net(x)
    expected = torch.nn.functional.linear(h_clean * m / 0.7, net.weights[1], net.biases[1])
    torch.testing.assert_close(out, expected)
    net.eval()
    torch.testing.assert_close(net(x), torch.nn.functional.linear(h_clean, net.weights[1], net.biases[1]))


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("rmsprop", 0.003)])
def test_ensemble_members_match_networks_trained_alone(optimizer, lr):
    data = _toy_data()
    tcfg = TrainConfig(optimizer=optimizer, lr=lr, batch_size=50, steps=40, data_seed=7,
                       eval_size=100)
    # one noise layer per ensemble: the three keeps of the sweep are three ensembles
    groups = {1.0: [(1.0, 0.05, 11), (2.2, 0.05, 12)], 0.9: [(2.2, 0.05, 12), (3.5, 0.2, 13)],
              0.75: [(3.5, 0.2, 13), (1.0, 0.05, 11)]}
    for keep, members in groups.items():
        noise = Dropout(keep=keep)
        cfgs = [NetConfig(20, 16, 5, n_out=4, sigma_w2=s, sigma_b2=b, noise=noise) for s, b, _ in members]
        seeds = [seed for _, _, seed in members]
        ens = train_ensemble(cfgs, seeds, tcfg, data, dtype=torch.float64)
        for cfg, seed, r in zip(cfgs, seeds, ens):
            alone = train_network(cfg, tcfg, data, seed, dtype=torch.float64)
            # RMSprop amplifies rounding early
            np.testing.assert_allclose(r.losses, alone.losses, rtol=1e-8, atol=1e-10)
            assert r.train_acc_last == alone.train_acc_last
            assert r.eval_acc == alone.eval_acc and r.test_acc == alone.test_acc
            assert abs(r.eval_loss - alone.eval_loss) < 1e-10
        # training did something (the comparison is not between two frozen networks)
        assert min(r.losses[-1] / r.losses[0] for r in ens) < 0.8


def test_ensemble_float32_and_orthogonal():
    data = _toy_data(seed=1)
    tcfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=64, steps=25, eval_size=100)
    cfgs = [NetConfig(20, 24, 3, n_out=4, sigma_w2=s, noise=Dropout(keep=0.9), init="orthogonal")
            for s in (1.2, 2.0)]
    ens = train_ensemble(cfgs, [0, 1], tcfg, data)
    for cfg, seed, r in zip(cfgs, [0, 1], ens):
        alone = train_network(cfg, tcfg, data, seed)
        np.testing.assert_allclose(r.losses, alone.losses, rtol=1e-4)


def test_ensemble_rejects_mixed_architectures():
    with pytest.raises(ValueError, match="differ in"):
        EnsembleMLP([NetConfig(5, 4, 2), NetConfig(5, 4, 3)], [0, 1])
    with pytest.raises(ValueError, match=r"differ in \['noise'\]"):
        EnsembleMLP([NetConfig(5, 4, 2, noise=Dropout(keep=0.9)),
                     NetConfig(5, 4, 2, noise=Dropout(keep=0.8))], [0, 1])
    with pytest.raises(ValueError, match="keep"):
        NetConfig(5, 4, 2, noise=Dropout(keep=0.0))
    with pytest.raises(ValueError, match="noise"):
        NetConfig(5, 4, 2, noise=0.9)
    with pytest.raises(ValueError, match="array parameters"):
        NetConfig(5, 4, 2, noise=Dropout(keep=[0.9, 0.8]))
    with pytest.raises(ValueError, match="activation"):
        NetConfig(5, 4, 2, activation="softplus")
    with pytest.raises(ValueError, match="sigma_w2"):
        NetConfig(5, 4, 2, sigma_w2=-1.0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="adam")


def test_dropconnect_forward_is_the_masked_network():
    """DeepMLP with DropConnect = explicit per-example masked weights on every layer that reads a
    hidden layer, masks regenerated from the documented stream (one (B, out, in) draw per layer)."""
    keep, seed = 0.7, 4
    cfg = NetConfig(n_in=6, width=9, depth=2, n_out=3, sigma_w2=1.3, activation="tanh",
                    noise=DropConnect(keep=keep))
    net = DeepMLP(cfg, seed=seed, dtype=torch.float64)
    x = torch.rand(5, 6, dtype=torch.float64)
    (w0, b0), (w1, b1), (w2, b2) = init_params(cfg, seed, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    m1 = (torch.rand(5, 9, 9, generator=gen, dtype=torch.float64) < keep).double() / keep
    m2 = (torch.rand(5, 3, 9, generator=gen, dtype=torch.float64) < keep).double() / keep
    assert 0.5 < (m1 > 0).double().mean().item() < 0.9
    expected = []
    for b in range(5):
        h = torch.tanh(w0 @ x[b] + b0)
        h = torch.tanh((w1 * m1[b]) @ h + b1)
        expected.append((w2 * m2[b]) @ h + b2)
    net.train()
    torch.testing.assert_close(net(x), torch.stack(expected), rtol=1e-13, atol=1e-14)
    net.eval()
    plain = w2 @ torch.tanh(w1 @ torch.tanh(w0 @ x.T + b0[:, None]) + b1[:, None]) + b2[:, None]
    torch.testing.assert_close(net(x), plain.T, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("noise", [DropConnect(keep=0.8), GaussianNoise(sigma_eps2=0.3),
                                   Sparseout(keep=0.8, s=1.5), NoNoise()], ids=lambda n: n.name)
def test_ensemble_matches_alone_for_every_noise_kind(noise):
    data = _toy_data(seed=2)
    tcfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=20, steps=15, data_seed=3, eval_size=50)
    cfgs = [NetConfig(20, 12, 3, n_out=4, sigma_w2=s, noise=noise) for s in (1.0, 2.0)]
    ens = train_ensemble(cfgs, [5, 6], tcfg, data, dtype=torch.float64)
    for cfg, seed, r in zip(cfgs, [5, 6], ens):
        alone = train_network(cfg, tcfg, data, seed, dtype=torch.float64)
        np.testing.assert_allclose(r.losses, alone.losses, rtol=1e-10)
        assert r.eval_acc == alone.eval_acc and r.test_acc == alone.test_acc
    assert min(r.losses[-1] / r.losses[0] for r in ens) < 0.9


def test_netconfig_takes_a_spec_and_sympy_activations():
    import meanfield as mf
    cfg = NetConfig(5, 4, 2, noise="dropout(keep=0.9)")
    assert cfg.noise == Dropout(keep=0.9)
    alg = mf.Activation.from_sympy("x / sqrt(1 + x**2)", name="algebraic sigmoid")
    net = DeepMLP(NetConfig(5, 7, 2, activation=alg, noise=GaussianNoise(sigma_eps2=0.2)), seed=0,
                  dtype=torch.float64).eval()
    x = torch.randn(3, 5, dtype=torch.float64)
    (w0, b0), (w1, b1), (w2, b2) = init_params(net.cfg, 0, dtype=torch.float64)
    def f(v):
        return v / torch.sqrt(1 + v * v)
    expect = f(f(x @ w0.T + b0) @ w1.T + b1) @ w2.T + b2
    torch.testing.assert_close(net(x), expect, rtol=1e-13, atol=1e-14)
