"""experiments.layers: KWinners basics, SparseWeights; Sparseout through meanfield.nn.NoiseModule
(duty cycles, state, KWinners2d and bad input of the k-winners layers: tests/test_layers_kwinners.py)."""
import numpy as np
import pytest
import torch
from torch import nn

from experiments.layers import KWinners, SparseWeights, attach_rezero
from meanfield.nn import NoiseModule

torch.set_num_threads(1)


def test_exactly_k_winners_values_and_gradient():
    torch.manual_seed(0)
    layer = KWinners(50, 7, boost_strength=0.0)
    x = torch.randn(16, 50, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    xn = x.detach().numpy()
    for row, out in zip(xn, y.detach().numpy()):
        top = np.argsort(-row)[:7]
        expect = np.zeros_like(row)
        expect[top] = row[top]
        np.testing.assert_array_equal(out, expect)
    w = torch.randn(16, 50, dtype=torch.float64)
    (y * w).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), (y.detach() != 0).double().numpy() * w.numpy())


def test_ties_go_to_lower_index():
    layer = KWinners(10, 3, boost_strength=0.0)
    x = torch.tensor([[1.0, 2.0, 2.0, 2.0, 2.0, 0.0, 2.0, -1.0, 0.5, 2.0],
                      [0.0] * 10])
    y = layer(x)
    assert (y != 0).sum().item() == 3  # all-zero row: 3 winners, but their value 0 is passed on
    assert torch.equal(y[0], torch.tensor([0, 2.0, 2.0, 2.0, 0, 0, 0, 0, 0, 0]))
    mask = layer.winner_mask(x, 3)
    assert mask.sum(dim=1).tolist() == [3, 3]
    assert mask[1].nonzero().flatten().tolist() == [0, 1, 2]


def test_boosting_changes_winners_not_values():
    torch.manual_seed(1)
    layer = KWinners(20, 4, boost_strength=3.0)
    x = torch.rand(8, 20) + 0.5  # positive, so the boost factor reorders them
    layer.eval()
    plain = layer.winner_mask(x, 4)
    # units 0-9 looked always on, units 10-19 never: boost favours 10-19
    layer.duty_cycle[:10] = 1.0
    layer.duty_cycle[10:] = 0.0
    boosted = layer.winner_mask(x, 4)
    assert not torch.equal(plain, boosted)
    assert boosted[:, 10:].sum() > plain[:, 10:].sum()
    layer.train()
    y = layer(x)
    win = y != 0
    assert torch.equal(win, boosted)
    assert torch.equal(y[win], x[win])  # un-boosted values are passed on


def test_inference_k_and_boost_decay():
    layer = KWinners(100, 10, boost_strength=1.0, boost_strength_factor=0.5)
    assert layer.k_inference == 15
    x = torch.randn(3, 100)
    assert ((layer(x) != 0).sum(dim=1) == 10).all()
    layer.eval()
    assert ((layer(x) != 0).sum(dim=1) == 15).all()
    layer.update_boost_strength()
    layer.update_boost_strength()
    assert float(layer.boost_strength) == 0.25  # 1 x 0.5 x 0.5, exact in binary
    assert KWinners(10, 8).k_inference == 10  # capped at n
    # conv feature maps are flattened: a global top-k over (c, h, w)
    conv = KWinners(2 * 3 * 3, 4)
    z = conv(torch.randn(5, 2, 3, 3))
    assert z.shape == (5, 2, 3, 3)
    assert ((z != 0).flatten(1).sum(dim=1) == 4).all()


@pytest.mark.parametrize("make", [lambda: nn.Linear(40, 30), lambda: nn.Conv2d(3, 8, 3)])
def test_sparse_masks_survive_training(make):
    torch.manual_seed(3)
    layer = SparseWeights(make(), density=0.25)
    w = layer.module.weight
    fan_in = w[0].numel()
    k = round(0.25 * fan_in)
    assert ((w != 0).flatten(1).sum(dim=1) == k).all()
    model = nn.Sequential(layer)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    attach_rezero(opt, model)
    x = torch.randn(16, 40) if isinstance(layer.module, nn.Linear) else torch.randn(4, 3, 8, 8)
    mask = layer.mask.clone()
    for _ in range(5):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    assert torch.equal(layer.mask, mask)
    assert (w[mask == 0] == 0).all()
    assert ((w != 0).flatten(1).sum(dim=1) == k).all()  # kept weights moved but stayed non-zero


def test_sparse_weights_masked_entries_exactly_zero_even_if_nan():
    torch.manual_seed(4)
    layer = SparseWeights(nn.Linear(12, 6), density=0.5)
    w = layer.module.weight
    keep = layer.mask != 0
    assert (keep.sum(dim=1) == 6).all()
    with torch.no_grad():
        w.fill_(float("nan"))  # e.g. after a diverged step
        w[0, ~keep[0]] = float("inf")
        w[1, ~keep[1]] = -float("inf")
    layer.rezero()
    assert (w[~keep] == 0).all() and not torch.signbit(w[~keep]).any()  # exactly +0
    assert torch.isnan(w[keep]).all()  # kept weights are the optimiser's business, left as they are


@pytest.mark.parametrize("density", [0.0, 1.5, -0.1, float("nan"), float("inf"), "0.5", None, True])
def test_sparse_weights_bad_density(density):
    with pytest.raises(ValueError, match="density"):
        SparseWeights(nn.Linear(3, 3), density=density)


def test_sparse_weights_density_is_keyword_only():
    # a positional fraction is the keep/drop trap (torch.nn.Dropout(0.8) drops 80 %)
    with pytest.raises(TypeError):
        SparseWeights(nn.Linear(3, 3), 0.5)
    with pytest.raises(ValueError, match="module"):
        SparseWeights(nn.ReLU(), density=0.5)


def test_sparseout_s2_is_inverted_dropout_and_eval_identity():
    a = torch.randn(1000, dtype=torch.float64)
    layer = NoiseModule("sparseout", drop=0.3)
    assert layer.keep == pytest.approx(0.7) and layer.drop == pytest.approx(0.3)
    torch.manual_seed(5)
    out = layer(a)
    torch.manual_seed(5)
    m = (torch.rand_like(a) < 0.7).double()  # the adapter draws uniforms u and keeps u < rho
    torch.testing.assert_close(out, a * m / 0.7)
    layer.eval()
    assert torch.equal(layer(a), a)


def test_sparseout_moments():
    """E[a~|a] = a, Var[a~|a] = r |a|^s with r = drop/keep (Monte Carlo, 200k draws per value)."""
    torch.manual_seed(6)
    layer = NoiseModule("sparseout", keep=0.8, s=1.5)
    a = torch.tensor([-2.0, -0.3, 0.0, 0.7, 1.9], dtype=torch.float64)
    samples = layer(a.repeat(200_000, 1))
    r = 0.2 / 0.8
    var = r * a.abs() ** 1.5
    se = torch.sqrt(var / 200_000)
    assert ((samples.mean(0) - a).abs() <= 4 * se + 1e-12).all()
    # variance of a two-point variable: relative s.e. of the sample variance ~ sqrt(kurt/n)
    torch.testing.assert_close(samples.var(0), var, rtol=0.03, atol=1e-12)


@pytest.mark.parametrize("s", [1.0, 1.5, 2.0, 3.0])
def test_sparseout_backward_true_and_code(s):
    a = torch.tensor([-1.7, -0.2, 0.0, 0.4, 2.5], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.3, -1.0, 0.7, 2.0, 1.1], dtype=torch.float64)
    for backward in ("true", "code"):
        torch.manual_seed(7)
        NoiseModule("sparseout", keep=0.6, s=s, backward=backward)(a).backward(g)
        got = a.grad.clone()
        a.grad = None
        torch.manual_seed(7)
        xi = (torch.rand_like(a) < 0.6).double() / 0.6 - 1
        ad = a.detach().abs()
        if backward == "true":
            # independent route: autograd through the explicit formula (away from a = 0)
            b = a.detach().clone().requires_grad_(True)
            (b + torch.sign(b) * b.abs() ** (s / 2) * xi).backward(g)
            expect = b.grad.clone()
            nz = ad != 0
            torch.testing.assert_close(got[nz], expect[nz])
        else:
            power = torch.where(ad != 0, ad ** ((s - 2) / 2), torch.zeros_like(ad))
            expect = g * (1 + power * xi)
            torch.testing.assert_close(got[ad != 0], expect[ad != 0])
        # a = 0: noise factor 1 for s = 2 (dropout), 0 otherwise (documented convention)
        zero_factor = 1.0 if s == 2 else 0.0
        assert got[2].item() == pytest.approx(g[2].item() * (1 + zero_factor * xi[2].item()))


def test_sparseout_bad_input():
    with pytest.raises(ValueError, match="keep.*drop.*not both"):
        NoiseModule("sparseout", keep=0.5, drop=0.5)
    with pytest.raises(ValueError, match="give keep.*or drop"):
        NoiseModule("sparseout")
    with pytest.raises(ValueError, match="keep"):
        NoiseModule("sparseout", keep=0.0)
    with pytest.raises(ValueError, match="drop"):
        NoiseModule("sparseout", drop=1.0)
    with pytest.raises(ValueError, match="backward"):
        NoiseModule("sparseout", keep=0.5, backward="ref")
    with pytest.raises(ValueError, match="s "):
        NoiseModule("sparseout", keep=0.5, s=0.0)
    # a probability where the layer is expected: the keep/drop trap is a clear error
    with pytest.raises(ValueError, match="noise must be"):
        NoiseModule("0.5")
    with pytest.raises(ValueError, match="keyword"):
        NoiseModule(0.8)
    with pytest.raises(TypeError):
        NoiseModule("sparseout", 0.8)
