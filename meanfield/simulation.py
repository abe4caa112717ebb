"""Finite-width simulation of weight-gradient metrics in random noisy networks (torch, float64).

Setting of Huang et al. 2019 / docs/THEORY.md §1, §2, §4: width N, depth L,
``z^l = W^l x~^{l-1} + b^l`` with ``x~ = g(z, xi)`` (activation followed by dropout or Sparseout
noise), two inputs a, b that share weights and biases but draw independent masks, started at the
fixed point (layer-0 pre-activations with variance q*, correlation c*). Loss
``E = sum_i y_i^2`` with ``y = phi(z^L)`` (no noise on the output), or a readout loss
``y = V x~^L`` (noisy last layer, ``n_out`` outputs, own weights V ~ N(0, sigma_w^2/N), no bias;
the convention of ``meanfield.gradient_metrics(loss="readout")``, whose values are per output and
carry a factor N: multiply them by n_out / N). Backward by autograd through
the same masks. Per layer l (index 0 = layer 1, index L-1 = layer L), with ``delta = dE/dz``:

- ``g_aa^l = (|delta^{l,a}|^2/N)(|x~^{l-1,a}|^2/N)`` = mean_ij (dE_a/dW_ij)^2 (and g_bb for input b)
- ``g_ab^l = (delta^a.delta^b/N)(x~^a.x~^b/N)`` = mean_ij dE_a/dW_ij dE_b/dW_ij
- ``g~_ab^l = (mean_i |delta_i^a delta_i^b|)(mean_j |x~_j^a x~_j^b|)`` = mean_ij |dE_a/dW_ij dE_b/dW_ij|

(the weight gradient of one input is the rank-one matrix ``delta x~^T``, hence the factorisation).

Two engines give the same joint law of every forward and backward quantity:

- ``engine="dense"``: explicit Gaussian matrices W (R realisations batched with ``torch.bmm``),
  autograd through them. Costs R L N^2 Gaussian draws and stores the weights of a chunk of
  realisations (chunked to a memory budget).
- ``engine="projected"`` (default): never forms W. A layer only sees W through ``Y = W X`` (forward,
  X = [x~_a, x~_b]) and ``W^T D`` (backward, D = [delta_a, delta_b]). With Q an orthonormal basis of
  span(X), ``A = W Q`` and ``W (I - Q Q^T)`` are independent, ``Y = A Q^T X`` and D depends on W only
  through A, so ``W^T D = Q A^T D + (I - Q Q^T) Wt^T D`` with Wt a fresh copy of W, and
  ``Wt^T D = G S`` with G an N x 2 standard normal matrix and ``S = sqrt((sigma_w^2/N) D^T D)``.
  This is exact in distribution at every N (not a large-N approximation) and costs O(R L N).

GIA mode (``gia=True``) replaces ``W^T`` in the backward pass by a fresh independent copy (dense: a
second matrix; projected: ``G S`` alone), the gradient-independence assumption made exact.

Weight noise (DropConnect, docs/THEORY.md §11) needs the dense engine: each input a, b has its own
effective matrix ``W~^a = noise.torch_weight(W, u^a)`` (independent uniforms, shared W) in every
layer, the readout included, and no unit noise. The weight gradient ``dE_a/dW`` is then not rank
one, so the metrics are taken from it directly (autograd w.r.t. one copy of W per input):
``g_aa = mean_ij (dE_a/dW_ij)^2``, ``g_ab = mean_ij dE_a/dW_ij dE_b/dW_ij``, ``g~_ab = mean_ij
|dE_a/dW_ij dE_b/dW_ij|``. GIA with weight noise back-propagates through a fresh copy of W under
the same masks (``W~t^a = torch_weight(Wt, u^a)``). Memory: about 8 N^2 floats per layer and
realisation (11 with GIA).

Noise enters through :mod:`meanfield.nn` (the one torch adapter): a layer that is the identity
(keep = 1) draws no random numbers, so such runs reproduce those without noise.

torch is imported here only; ``meanfield/__init__`` never imports this module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .activations import get_activation
from .depth_scales import analyze_params
from .maps import params as layer_params
from .nn import draws, masked_linear, unit_noise
from .noise import NoiseLayer, make_noise
from .noise.base import WEIGHTS
from .validation import choice, integer, real

__all__ = ["SimulationResult", "simulate_gradients", "METRICS", "ENGINES"]

METRICS = ("g_aa", "g_bb", "g_ab", "g_abs")
ENGINES = ("projected", "dense")
LOSSES = ("sum_squares", "readout")


@dataclass(frozen=True)
class SimulationResult:
    """Per-realisation, per-layer gradient metrics; arrays of shape (R, L), column 0 = layer 1."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    noise: NoiseLayer
    loss: str
    n_out: int
    width: int
    depth: int
    realisations: int
    gia: bool
    engine: str
    seed: int
    q0: float
    c0: float
    g_aa: np.ndarray = field(repr=False)
    g_bb: np.ndarray = field(repr=False)
    g_ab: np.ndarray = field(repr=False)
    g_abs: np.ndarray = field(repr=False)

    def _metric(self, metric):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        return getattr(self, metric)

    def mean(self, metric):
        """m^l: mean of the metric over realisations, shape (L,)."""
        return self._metric(metric).mean(axis=0)

    def var(self, metric):
        """V^l: unbiased variance of the metric over realisations, shape (L,)."""
        return self._metric(metric).var(axis=0, ddof=1)

    def sem(self, metric):
        """Standard error of ``mean(metric)``: sqrt(V / R)."""
        return np.sqrt(self.var(metric) / self.realisations)

    @property
    def keep(self):
        """Keep probability rho of the noise layer (1 for layers that drop nothing)."""
        return float(getattr(self.noise, "keep", 1.0))

    @property
    def drop(self):
        """Drop probability 1 - keep (PyTorch's ``p``)."""
        return 1.0 - self.keep


# ---------------------------------------------------------------------------------------------
# Linear layers of the two engines


def _sqrtm_psd2(m):
    """Symmetric square root of a batch of 2x2 PSD matrices: (M + sqrt(det) I) / sqrt(tr + 2 sqrt(det))."""
    det = (m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]).clamp(min=0.0)
    sd = det.sqrt()
    t = (m[:, 0, 0] + m[:, 1, 1] + 2.0 * sd).sqrt()
    eye = torch.eye(2, dtype=m.dtype, device=m.device)
    out = (m + sd[:, None, None] * eye) / torch.where(t > 0, t, torch.ones_like(t))[:, None, None]
    return torch.where((t > 0)[:, None, None], out, torch.zeros_like(out))


class _ProjectedLinear(torch.autograd.Function):
    """Y = W X for a virtual Gaussian W (n_out x n_in, variance sigma_w2/n_in); backward samples W^T D."""

    @staticmethod
    def forward(ctx, x, n_out, sigma_w2, gen, gia):
        r, n_in, k = x.shape
        scale = math.sqrt(sigma_w2 / n_in)
        q, rm = torch.linalg.qr(x)  # x = q rm, q orthonormal (r, n_in, k)
        a = torch.randn(r, n_out, k, generator=gen, dtype=x.dtype, device=x.device) * scale
        ctx.save_for_backward(q, a)
        ctx.gen, ctx.gia, ctx.sigma_w2 = gen, gia, sigma_w2
        return a @ rm

    @staticmethod
    def backward(ctx, d):
        q, a = ctx.saved_tensors
        r, n_in, k = q.shape
        if k != 2:
            raise RuntimeError("projected engine expects two inputs")
        s = _sqrtm_psd2((ctx.sigma_w2 / n_in) * (d.transpose(1, 2) @ d))
        fresh = torch.randn(r, n_in, k, generator=ctx.gen, dtype=d.dtype, device=d.device) @ s
        if ctx.gia:
            return fresh, None, None, None, None
        grad = q @ (a.transpose(1, 2) @ d) + fresh - q @ (q.transpose(1, 2) @ fresh)
        return grad, None, None, None, None


def _dense_linear(x, n_out, sigma_w2, gen, gia):
    r, n_in, _ = x.shape
    scale = math.sqrt(sigma_w2 / n_in)
    w = torch.randn(r, n_out, n_in, generator=gen, dtype=x.dtype, device=x.device) * scale
    if not gia:
        return torch.bmm(w, x)
    wt = torch.randn(r, n_out, n_in, generator=gen, dtype=x.dtype, device=x.device) * scale
    fake = torch.bmm(wt, x)  # value W X, gradient through the fresh copy Wt
    return torch.bmm(w, x.detach()) + fake - fake.detach()


def _pair_metrics(delta, x):
    """(g_aa, g_bb, g_ab, g_abs) per realisation from delta^l, x~^{l-1} of shape (r, N, 2)."""
    n_d, n_x = delta.shape[1], x.shape[1]
    dd = delta.transpose(1, 2) @ delta / n_d
    xx = x.transpose(1, 2) @ x / n_x
    g_abs = (delta[:, :, 0] * delta[:, :, 1]).abs().mean(1) * (x[:, :, 0] * x[:, :, 1]).abs().mean(1)
    return dd[:, 0, 0] * xx[:, 0, 0], dd[:, 1, 1] * xx[:, 1, 1], dd[:, 0, 1] * xx[:, 0, 1], g_abs


def _weight_metrics(grad):
    """(g_aa, g_bb, g_ab, g_abs) per realisation from the weight gradients (r, 2, n_out, n_in)."""
    ga, gb = grad[:, 0], grad[:, 1]
    prod = ga * gb
    return ((ga * ga).mean((1, 2)), (gb * gb).mean((1, 2)), prod.mean((1, 2)),
            prod.abs().mean((1, 2)))


# ---------------------------------------------------------------------------------------------


def _unit_noise_chunk(nz, phi, z0, n, depth, sigma_w2, sigma_b2, gen, gia, loss, n_out, linear):
    """Metrics (4 tensors (r, depth)) of one chunk with unit noise; z0 (r, n, 2) is a leaf."""
    r, dt, dev = z0.shape[0], z0.dtype, z0.device
    noisy = draws(nz)

    def g(p):
        if not noisy:
            return p
        return unit_noise(nz, p, torch.rand(r, n, 2, generator=gen, dtype=dt, device=dev))

    x = g(phi(z0))
    xs, zs = [], []
    for layer in range(depth):
        b = torch.randn(r, n, 1, generator=gen, dtype=dt, device=dev) * math.sqrt(sigma_b2)
        z = linear(x, n, sigma_w2, gen, gia) + b
        xs.append(x)
        zs.append(z)
        if layer < depth - 1:
            x = g(phi(z))
    if loss == "readout":  # y = V x~^L: noisy last layer, V ~ N(0, sigma_w^2/N), no bias
        y = linear(g(phi(zs[-1])), n_out, sigma_w2, gen, gia)
    else:
        y = phi(zs[-1])
    deltas = torch.autograd.grad((y * y).sum(), zs)
    with torch.no_grad():
        return [torch.stack(m, 1) for m in zip(*(_pair_metrics(d, x) for d, x in zip(deltas, xs)))]


def _weight_noise_chunk(nz, phi, z0, n, depth, sigma_w2, sigma_b2, gen, gia, loss, n_out):
    """Metrics (4 tensors (r, depth)) of one dense chunk with weight noise (module docstring)."""
    r, dt, dev = z0.shape[0], z0.dtype, z0.device

    def linear(x, n_o):  # x (r, 2, n_in) -> (r, 2, n_o), and the per-input leaf of W
        n_in = x.shape[-1]
        scale = math.sqrt(sigma_w2 / n_in)
        w = torch.randn(r, 1, n_o, n_in, generator=gen, dtype=dt, device=dev) * scale
        w = w.expand(r, 2, n_o, n_in).clone().requires_grad_(True)  # dE_a/dW and dE_b/dW apart
        u = torch.rand(r, 2, n_o, n_in, generator=gen, dtype=dt, device=dev)
        if not gia:
            return masked_linear(nz, x, w, u), w
        wt = torch.randn(r, 1, n_o, n_in, generator=gen, dtype=dt, device=dev) * scale
        fake = masked_linear(nz, x, wt, u)  # value W~ x, input gradient through Wt under the same mask
        return masked_linear(nz, x.detach(), w, u) + fake - fake.detach(), w

    x = phi(z0.transpose(1, 2))
    zs, ws = [], []
    for layer in range(depth):
        b = torch.randn(r, 1, n, generator=gen, dtype=dt, device=dev) * math.sqrt(sigma_b2)
        z, w = linear(x, n)
        zs.append(z + b)
        ws.append(w)
        x = phi(zs[-1])
    y = linear(x, n_out)[0] if loss == "readout" else x
    grads = torch.autograd.grad((y * y).sum(), ws)
    with torch.no_grad():
        return [torch.stack(m, 1) for m in zip(*(_weight_metrics(gw) for gw in grads))]


def _fixed_point(act, sigma_w2, sigma_b2, noise):
    res = analyze_params(layer_params(act, sigma_w2, sigma_b2, noise=noise))
    return float(res.q_star), float(res.c_star)


def simulate_gradients(activation, sigma_w2, sigma_b2, keep=None, *, width, depth, realisations,
                       noise="dropout", drop=None, gia=False, loss="sum_squares", n_out=10, q0=None,
                       c0=None, engine="projected", seed=0, device="cpu", max_bytes=2 * 2**30,
                       progress=False, **noise_params):
    """Simulate g_aa, g_bb, g_ab, g~_ab per layer for ``realisations`` random networks.

    Parameters
    ----------
    activation : str or Activation
        Needs a torch twin (every built-in and ``Activation.from_sympy`` have one).
    sigma_w2, sigma_b2 : float
        Weight variance > 0 and bias variance >= 0.
    keep, drop, noise, **noise_params
        The noise layer (scalar parameters), as in :func:`meanfield.maps.params`.
    width, depth, realisations : int
        N >= 2, L >= 1, R >= 2.
    gia : bool
        Fresh backward weights (the gradient-independence assumption made exact; weight noise
        keeps its masks on the fresh weights).
    loss : {"sum_squares", "readout"}
    n_out : int
        Outputs of the readout loss.
    q0, c0 : float, optional
        Layer-0 variance > 0 and correlation in [-1, 1] (default: the core's q*, c*).
    engine : {"projected", "dense"}
        Weight noise (``acts_on = "weights"``, e.g. DropConnect) needs ``"dense"``.
    seed : int
    device : str
    max_bytes : int
        Realisations run in batches whose stored tensors stay below this; one realisation
        larger than it is refused.
    progress : bool
        tqdm progress bar over batches.

    Returns
    -------
    SimulationResult

    Raises
    ------
    ValueError
        Naming the invalid argument and its range, or width and depth when one realisation
        would store more than ``max_bytes``.

    References
    ----------
    Huang et al. 2019 §4-5 (the simulated setting); docs/THEORY.md §4 (metrics), §11 (weight noise).
    """
    act = get_activation(activation)
    phi = act.torch
    act.torch(torch.zeros(1, dtype=torch.float64))  # fails early without a torch twin
    nz = make_noise(noise, keep=keep, drop=drop, **noise_params).scalar()
    choice("loss", loss, LOSSES)
    choice("engine", engine, ENGINES)
    sigma_w2 = real("sigma_w2 (weight variance)", sigma_w2, 0.0, lo_open=True)
    sigma_b2 = real("sigma_b2 (bias variance)", sigma_b2, 0.0)
    width = integer("width", width, 2)
    depth = integer("depth", depth, 1)
    realisations = integer("realisations", realisations, 2)
    n_out = integer("n_out", n_out, 1)
    if q0 is None or c0 is None:
        fq, fc = _fixed_point(act, sigma_w2, sigma_b2, nz)
        q0 = fq if q0 is None else q0
        c0 = fc if c0 is None else c0
    q0 = real("q0 (layer-0 variance)", q0, 0.0, lo_open=True)
    c0 = real("c0 (layer-0 correlation)", c0, -1.0, 1.0)
    real("max_bytes", max_bytes, 0.0, lo_open=True)
    weights = nz.acts_on == WEIGHTS and draws(nz)  # keep = 1 DropConnect is no noise: unit path
    if weights and engine != "dense":
        raise ValueError(f"engine must be 'dense' for {nz.name} noise (it acts on weights; the "
                         f"projected engine has no weight matrix to mask), got {engine!r}")

    n, depth, rtot = int(width), int(depth), int(realisations)
    if weights:
        per_real = 8 * (depth * n * n * (11 if gia else 8) + 4 * n * n_out + 12 * depth * n)
    elif engine == "dense":
        per_real = 8 * (depth * n * n * (2 if gia else 1) + 12 * depth * n)
    else:
        per_real = 8 * 16 * depth * n
    if per_real > max_bytes:  # batches hold whole realisations: one alone must fit
        raise ValueError(f"one realisation of width {n} and depth {depth} stores {per_real / 2**30:.3g} "
                         f"GiB, over max_bytes = {max_bytes / 2**30:.3g} GiB: reduce width or depth "
                         "(or raise max_bytes)")
    chunk = int(min(rtot, max_bytes // per_real))
    starts = list(range(0, rtot, chunk))
    seeds = np.random.SeedSequence(seed).generate_state(len(starts), dtype=np.uint64)
    linear = _ProjectedLinear.apply if engine == "projected" else _dense_linear
    dev = torch.device(device)
    dt = torch.float64
    out = {k: np.empty((rtot, depth)) for k in METRICS}

    it = starts
    if progress:
        from tqdm import tqdm
        it = tqdm(starts, desc=f"simulate {act.name} N={n} L={depth}", unit="chunk")
    for i, start in zip(range(len(starts)), it):
        r = min(chunk, rtot - start)
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seeds[i] % (2**63 - 1)))

        e = torch.randn(r, n, 2, generator=gen, dtype=dt, device=dev)
        z0 = math.sqrt(q0) * torch.stack(
            [e[..., 0], c0 * e[..., 0] + math.sqrt(max(0.0, 1.0 - c0 * c0)) * e[..., 1]], dim=-1)
        z0.requires_grad_(True)  # a leaf so that autograd records the graph
        args = (nz, phi, z0, n, depth, sigma_w2, sigma_b2, gen, gia, loss, n_out)
        metrics = _weight_noise_chunk(*args) if weights else _unit_noise_chunk(*args, linear)
        for key, val in zip(METRICS, metrics):
            out[key][start:start + r] = val.cpu().numpy()
        del metrics

    return SimulationResult(
        activation=act.name, sigma_w2=sigma_w2, sigma_b2=sigma_b2, noise=nz, loss=loss,
        n_out=n_out, width=n,
        depth=depth, realisations=rtot, gia=bool(gia), engine=engine, seed=int(seed),
        q0=float(q0), c0=float(c0), **out)
