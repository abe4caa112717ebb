"""meanfield.nn, the torch adapter: unit noise from uniforms, weight noise, the modules, and their
validation. Independent routes: the noise formulas written out here (dropout mask, Gaussian
inverse CDF from scipy), explicit per-example masked products, and autograd through them."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import special, stats

import meanfield as mf
from meanfield.nn import (
    ActivationModule,
    NoiseModule,
    NoisyLinear,
    draws,
    masked_linear,
    resolve_noise,
    unit_noise,
    weight_noise,
)
from meanfield.noise import DropConnect, Dropout, GaussianNoise, NoNoise, Sparseout

torch.set_num_threads(1)
DT = torch.float64


def _uniforms(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def test_unit_noise_formulas():
    p = torch.randn(400, 3, dtype=DT)
    u = _uniforms((400, 3), 0)
    torch.testing.assert_close(unit_noise(Dropout(keep=0.7), p, u), p * ((u < 0.7).double() / 0.7),
                               rtol=0, atol=0)
    xi = 1 + np.sqrt(0.4) * special.ndtri(u.numpy())
    np.testing.assert_allclose(unit_noise(GaussianNoise(sigma_eps2=0.4), p, u).numpy(), p.numpy() * xi,
                               rtol=1e-13)
    m = (u < 0.8).double()
    so = unit_noise(Sparseout(keep=0.8, s=3.0), p, u)
    np.testing.assert_allclose(so.numpy(), (p + p.sign() * p.abs() ** 1.5 * (m / 0.8 - 1)).numpy(),
                               rtol=1e-13, atol=1e-15)
    assert torch.equal(unit_noise(NoNoise(), p, u), p)


def test_gaussian_xi_is_normal_and_finite_at_zero():
    u = _uniforms(200_000, 1)
    xi = GaussianNoise(sigma_eps2=0.25).torch_xi(u).numpy()
    # Kolmogorov-Smirnov against N(1, 0.25): p-value below 1e-4 only by chance
    assert stats.kstest(xi, stats.norm(loc=1, scale=0.5).cdf).pvalue > 1e-4
    edge = GaussianNoise(sigma_eps2=0.25).torch_xi(torch.tensor([0.0, 0.5], dtype=DT))
    assert torch.isfinite(edge).all() and edge[1].item() == 1.0


def test_draws_only_where_the_layer_does_something():
    for nz in (NoNoise(), Dropout(keep=1.0), Sparseout(keep=1.0, s=1.5), GaussianNoise(sigma_eps2=0.0),
               DropConnect(keep=1.0)):
        assert not draws(nz), nz
    for nz in (Dropout(keep=0.9), Sparseout(keep=0.9), GaussianNoise(sigma_eps2=0.1),
               DropConnect(keep=0.9)):
        assert draws(nz), nz


def test_noise_module_identity_draws_nothing_and_eval_is_identity():
    p = torch.randn(50, 4, dtype=DT)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    for layer in (NoiseModule("dropout", keep=1.0), NoiseModule("gaussian", sigma_eps2=0.0),
                  NoiseModule(NoNoise())):
        assert torch.equal(layer(p), p)
    assert torch.equal(torch.get_rng_state(), state)  # no uniforms consumed
    layer = NoiseModule(GaussianNoise(sigma_eps2=0.3)).eval()
    assert torch.equal(layer(p), p)


def test_noise_module_uses_its_generator():
    p = torch.randn(30, 5, dtype=DT)
    a = NoiseModule("dropout", drop=0.4, generator=torch.Generator().manual_seed(9))(p)
    u = _uniforms((30, 5), 9)
    torch.testing.assert_close(a, p * ((u < 0.6).double() / 0.6), rtol=0, atol=0)
    assert "drop=0.4" in repr(NoiseModule("dropout", drop=0.4))


def test_noise_module_validation():
    with pytest.raises(ValueError, match="NoisyLinear"):
        NoiseModule("dropconnect", keep=0.9)
    with pytest.raises(ValueError, match="array parameters"):
        NoiseModule(Dropout(keep=[0.9, 0.8]))
    with pytest.raises(ValueError, match="sigma_eps2"):
        NoiseModule("gaussian", sigma_eps2=-0.1)
    with pytest.raises(ValueError, match="needs keep = 1"):
        NoiseModule("gaussian", keep=0.5)
    with pytest.raises(ValueError, match="do not also pass"):
        NoiseModule(Dropout(keep=0.9), keep=0.9)
    with pytest.raises(ValueError, match="give keep"):
        resolve_noise("dropconnect")
    with pytest.raises(TypeError):
        NoiseModule("dropout", 0.9)  # positional probability: the keep/drop trap


def test_weight_noise_and_masked_linear_are_explicit_products():
    w = torch.randn(4, 6, dtype=DT)
    x = torch.randn(3, 6, dtype=DT)
    b = torch.randn(4, dtype=DT)
    u = _uniforms((3, 4, 6), 2)
    nz = DropConnect(keep=0.75)
    m = (u < 0.75).double() / 0.75
    torch.testing.assert_close(weight_noise(nz, w, u), w * m, rtol=0, atol=0)
    want = torch.stack([(w * m[i]) @ x[i] + b for i in range(3)])
    torch.testing.assert_close(masked_linear(nz, x, w, u, b), want, rtol=1e-14, atol=1e-15)


def test_noisy_linear_per_example_masks_values_and_weight_gradient():
    torch.manual_seed(0)
    layer = NoisyLinear(6, 4, "dropconnect", keep=0.6, dtype=DT,
                        generator=torch.Generator().manual_seed(5))
    x = torch.randn(3, 6, dtype=DT)
    y = layer(x)
    m = (_uniforms((3, 4, 6), 5) < 0.6).double() / 0.6
    w, b = layer.weight.detach(), layer.bias.detach()
    torch.testing.assert_close(y, torch.stack([(w * m[i]) @ x[i] + b for i in range(3)]),
                               rtol=1e-14, atol=1e-15)
    g = torch.randn(3, 4, dtype=DT)
    (y * g).sum().backward()
    want = sum(torch.outer(g[i], x[i]) * m[i] for i in range(3))  # dE/dW = sum_b delta x^T o M / rho
    torch.testing.assert_close(layer.weight.grad, want, rtol=1e-13, atol=1e-14)
    # the same input twice: two different masks; eval: the plain layer
    same = layer(x[:1].expand(2, 6))
    assert not torch.allclose(same[0], same[1])
    layer.eval()
    torch.testing.assert_close(layer(x), F.linear(x, w, b))


def test_noisy_linear_shared_mask_leading_dims_and_identity():
    layer = NoisyLinear(5, 3, DropConnect(keep=0.5), per_example=False, dtype=DT,
                        generator=torch.Generator().manual_seed(1))
    y = layer(torch.ones(4, 5, dtype=DT))
    assert torch.allclose(y, y[:1].expand(4, 3))  # one mask for the batch
    deep = NoisyLinear(5, 3, "dropconnect", drop=0.3, dtype=DT)
    assert deep(torch.randn(2, 7, 5, dtype=DT)).shape == (2, 7, 3)
    plain = NoisyLinear(5, 3, "dropconnect", keep=1.0, dtype=DT)
    x = torch.randn(2, 5, dtype=DT)
    torch.testing.assert_close(plain(x), F.linear(x, plain.weight, plain.bias), rtol=0, atol=0)
    with pytest.raises(ValueError, match="NoiseModule"):
        NoisyLinear(5, 3, "dropout", keep=0.9)
    with pytest.raises(ValueError, match="in_features"):
        NoisyLinear(0, 3, "dropconnect", keep=0.9)
    with pytest.raises(ValueError, match="noise must be"):
        NoisyLinear(5, 3, 0.5)


def test_noisy_linear_keeps_the_forward_variance_of_dropout():
    """E[z_i^2 | x] = (sigma_w^2 / rho) |x|^2 / N for DropConnect, exactly at any N: the dropout
    variance map (docs/THEORY.md §11). 8000 weight draws x 8 units per example of a N = 50 layer."""
    n, keep, sw = 50, 0.6, 1.3
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, n, dtype=DT, generator=gen)
    layer = NoisyLinear(n, 8, "dropconnect", keep=keep, bias=False, dtype=DT, generator=gen)
    zs = []
    with torch.no_grad():
        for _ in range(8000):
            layer.weight.copy_(torch.randn(8, n, dtype=DT, generator=gen) * np.sqrt(sw / n))
            zs.append(layer(x))
    z2 = torch.stack(zs).pow(2).mean((0, 2)).numpy()
    want = sw / keep * (x * x).mean(1).numpy()
    # Var(z^2) / E[z^2]^2 = 2 + O(1/(N rho)) (the masked sum is nearly Gaussian); 3.2 bounds it:
    # 5 standard errors of a mean over 64000 samples. Without the 1/rho the error would be 67 %.
    np.testing.assert_allclose(z2, want, rtol=5 * np.sqrt(3.2 / 64_000))


def test_activation_module_wraps_the_torch_twin():
    x = torch.linspace(-3, 3, 11, dtype=DT)
    for name in mf.ACTIVATIONS:
        torch.testing.assert_close(ActivationModule(name)(x), mf.get_activation(name).torch(x))
    alg = ActivationModule(mf.Activation.from_sympy("x / sqrt(1 + x**2)"))
    torch.testing.assert_close(alg(x), x / torch.sqrt(1 + x * x))
    bare = mf.Activation.from_callables("cube", lambda v: v ** 3, lambda v: 3 * v ** 2, lambda v: 6 * v)
    with pytest.raises(ValueError, match="torch twin"):
        ActivationModule(bare)
    with pytest.raises(ValueError, match="activation"):
        ActivationModule("softplus")
