"""Finite-width simulation of weight-gradient metrics in random noisy networks (torch, float64).

Setting of Huang et al. 2019 / THEORY §1, §2, §4: width N, depth L,
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

torch is imported here only; ``meanfield/__init__`` never imports this module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["SimulationResult", "simulate_gradients", "torch_activation", "METRICS", "ENGINES"]

METRICS = ("g_aa", "g_bb", "g_ab", "g_abs")
ENGINES = ("projected", "dense")
NOISES = ("none", "dropout", "sparseout")
LOSSES = ("sum_squares", "readout")
BACKWARDS = ("true", "code")

_SQRT_PI_2 = math.sqrt(math.pi) / 2.0

_TORCH_PHI = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "hard_tanh": lambda x: torch.clamp(x, -1.0, 1.0),
    "erf": lambda x: torch.erf(_SQRT_PI_2 * x),
    "sigmoid": torch.sigmoid,
    "gelu": lambda x: torch.nn.functional.gelu(x),  # exact x Phi(x)
    "silu": torch.nn.functional.silu,
}


def torch_activation(name):
    """Torch version of a core activation: ``name`` a string or an object with ``.name``."""
    key = getattr(name, "name", name)
    if not isinstance(key, str) or key not in _TORCH_PHI:
        raise ValueError(f"activation must be one of {sorted(_TORCH_PHI)}, got {name!r}")
    return _TORCH_PHI[key]


@dataclass(frozen=True)
class SimulationResult:
    """Per-realisation, per-layer gradient metrics; arrays of shape (R, L), column 0 = layer 1."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    keep: float
    noise: str
    s: float
    backward: str
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


# ---------------------------------------------------------------------------------------------
# Noise layer g(z, xi)


def _noisy(p, m, keep, noise, s, backward):
    """x~ = g(z, xi) from p = phi(z) and a 0/1 mask m; the derivative is left to autograd."""
    if noise == "none":
        return p
    if noise == "dropout":
        return p * m / keep
    xi = m / keep - 1.0
    nz = p != 0
    absp = torch.where(nz, p.abs(), torch.ones_like(p))  # safe base: no 0**negative in the graph
    amp = torch.where(nz, torch.sign(p) * absp ** (s / 2.0), torch.zeros_like(p))
    if backward == "true":  # d/dz = phi' (1 + (s/2) |phi|^{(s-2)/2} xi)
        return p + amp * xi
    # reference code's factor phi' (1 + |phi|^{(s-2)/2} xi): value unchanged, slope replaced
    slope = torch.where(nz, absp ** ((s - 2.0) / 2.0), torch.zeros_like(p)).detach()
    return p + amp.detach() * xi + (p - p.detach()) * slope * xi


def _pair_metrics(delta, x):
    """(g_aa, g_bb, g_ab, g_abs) per realisation from delta^l, x~^{l-1} of shape (r, N, 2)."""
    n_d, n_x = delta.shape[1], x.shape[1]
    dd = delta.transpose(1, 2) @ delta / n_d
    xx = x.transpose(1, 2) @ x / n_x
    g_abs = (delta[:, :, 0] * delta[:, :, 1]).abs().mean(1) * (x[:, :, 0] * x[:, :, 1]).abs().mean(1)
    return dd[:, 0, 0] * xx[:, 0, 0], dd[:, 1, 1] * xx[:, 1, 1], dd[:, 0, 1] * xx[:, 0, 1], g_abs


# ---------------------------------------------------------------------------------------------


def _check(name, value, lo, hi, lo_open=False, hi_open=False):
    ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and ok):
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {value!r}")


def _fixed_point(activation, sigma_w2, sigma_b2, keep, noise, s):
    try:
        import meanfield
        kw = dict(activation=activation, sigma_w2=sigma_w2, sigma_b2=sigma_b2, keep=keep, noise=noise)
        if noise == "sparseout":
            kw["s"] = s
        res = meanfield.analyze(**kw)
        return float(res.q_star), float(res.c_star)
    except (ImportError, AttributeError) as exc:  # theory core not available
        raise ValueError("q0 and c0 must be given when meanfield.analyze is unavailable") from exc


def simulate_gradients(activation, sigma_w2, sigma_b2, keep=1.0, *, width, depth, realisations,
                       noise="dropout", s=2.0, backward="true", gia=False, loss="sum_squares",
                       n_out=10, q0=None, c0=None, engine="projected", seed=0, device="cpu",
                       max_bytes=2 * 2**30, progress=False):
    """Simulate g_aa, g_bb, g_ab, g~_ab per layer for ``realisations`` random networks.

    ``keep`` is the keep probability rho (drop = 1 - keep). Layer-0 pre-activations have variance
    ``q0`` and correlation ``c0`` (default: the core's q*, c*). Realisations run in batches sized so
    that the stored tensors stay below ``max_bytes``. Returns a :class:`SimulationResult`.
    """
    if isinstance(activation, str) or hasattr(activation, "name"):
        phi = torch_activation(activation)
        act_name = getattr(activation, "name", activation)
    else:
        raise ValueError(f"activation must be a name or an Activation, got {activation!r}")
    for name, val, choices in (("noise", noise, NOISES), ("loss", loss, LOSSES),
                               ("backward", backward, BACKWARDS), ("engine", engine, ENGINES)):
        if val not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {val!r}")
    _check("sigma_w2", sigma_w2, 0.0, math.inf, lo_open=True, hi_open=True)
    _check("sigma_b2", sigma_b2, 0.0, math.inf, hi_open=True)
    _check("keep", keep, 0.0, 1.0, lo_open=True)
    if noise == "none" and keep != 1.0:
        raise ValueError(f"keep must be 1.0 with noise='none', got {keep!r}")
    if noise == "sparseout":
        _check("s", s, 0.0, math.inf, lo_open=True, hi_open=True)
    for name, val, lo in (("width", width, 2), ("depth", depth, 1), ("realisations", realisations, 2),
                          ("n_out", n_out, 1)):
        if not isinstance(val, (int, np.integer)) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    if q0 is None or c0 is None:
        fq, fc = _fixed_point(act_name, sigma_w2, sigma_b2, keep, noise, s)
        q0 = fq if q0 is None else q0
        c0 = fc if c0 is None else c0
    _check("q0", q0, 0.0, math.inf, lo_open=True, hi_open=True)
    _check("c0", c0, -1.0, 1.0)
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes!r}")

    n, depth, rtot = int(width), int(depth), int(realisations)
    if engine == "dense":
        per_real = 8 * (depth * n * n * (2 if gia else 1) + 12 * depth * n)
    else:
        per_real = 8 * 16 * depth * n
    chunk = int(max(1, min(rtot, max_bytes // per_real)))
    starts = list(range(0, rtot, chunk))
    seeds = np.random.SeedSequence(seed).generate_state(len(starts), dtype=np.uint64)
    linear = _ProjectedLinear.apply if engine == "projected" else _dense_linear
    dev = torch.device(device)
    dt = torch.float64
    out = {k: np.empty((rtot, depth)) for k in METRICS}

    it = starts
    if progress:
        from tqdm import tqdm
        it = tqdm(starts, desc=f"simulate {act_name} N={n} L={depth}", unit="chunk")
    for i, start in zip(range(len(starts)), it):
        r = min(chunk, rtot - start)
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seeds[i] % (2**63 - 1)))

        def mask():
            if noise == "none":
                return None
            return (torch.rand(r, n, 2, generator=gen, dtype=dt, device=dev) < keep).to(dt)

        e = torch.randn(r, n, 2, generator=gen, dtype=dt, device=dev)
        z0 = math.sqrt(q0) * torch.stack(
            [e[..., 0], c0 * e[..., 0] + math.sqrt(max(0.0, 1.0 - c0 * c0)) * e[..., 1]], dim=-1)
        z0.requires_grad_(True)  # a leaf so that autograd records the graph
        x = _noisy(phi(z0), mask(), keep, noise, s, backward)
        xs, zs = [], []
        for layer in range(depth):
            b = torch.randn(r, n, 1, generator=gen, dtype=dt, device=dev) * math.sqrt(sigma_b2)
            z = linear(x, n, sigma_w2, gen, gia) + b
            xs.append(x)
            zs.append(z)
            if layer < depth - 1:
                x = _noisy(phi(z), mask(), keep, noise, s, backward)
        if loss == "readout":  # y = V x~^L: noisy last layer, V ~ N(0, sigma_w^2/N), no bias
            y = linear(_noisy(phi(zs[-1]), mask(), keep, noise, s, backward), n_out, sigma_w2, gen, gia)
        else:
            y = phi(zs[-1])
        energy = (y * y).sum()
        deltas = torch.autograd.grad(energy, zs)
        with torch.no_grad():
            for layer in range(depth):
                for key, val in zip(METRICS, _pair_metrics(deltas[layer], xs[layer])):
                    out[key][start:start + r, layer] = val.cpu().numpy()
        del xs, zs, deltas, x, y, energy

    return SimulationResult(
        activation=act_name, sigma_w2=float(sigma_w2), sigma_b2=float(sigma_b2), keep=float(keep),
        noise=noise, s=float(s), backward=backward, loss=loss, n_out=int(n_out), width=n,
        depth=depth, realisations=rtot, gia=bool(gia), engine=engine, seed=int(seed),
        q0=float(q0), c0=float(c0), **out)
