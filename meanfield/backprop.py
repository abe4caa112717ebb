"""Gradient statistics of deep noisy networks at infinite width: GIA and the exact recursion.

Setting (Huang et al. 2019): width N, L layers at the fixed point (q*, c*), layer l computes
z^l = W^l x~^{l-1} + b^l with x~ = g(z, xi) (noise on every hidden layer, independent masks per
input, the input x~^0 itself a noisy post-activation at the fixed point), output y = phi(z^L).
Weight-gradient metrics of layer l, with delta^l = dE/dz^l:

    g_aa^l = (|delta^{l,a}|^2 / N) (|x~^{l-1,a}|^2 / N) -> qt^l     E[g^2]
    g_ab^l = (delta^{l,a}.delta^{l,b} / N) (x~^{l-1,a}.x~^{l-1,b} / N) -> qt_ab^l  E[gbar(u1) gbar(u2)]

GIA: qt^{l-1} = chi_1 qt^l, qt_ab^{l-1} = chi_2 qt_ab^l. Exact (sum-of-squares loss on all N
outputs): W^{l T} delta^l = Zhat_l + a_l x~^{l-1} (Yang's transpose rule), a_L = 2 sigma_w^2
E[phi'^2 + phi phi''], a_l = a_{l+1} chi_q, and

    qt^{l-1}    = chi_1 qt^l    + a_l^2 S_1,   S_1 = E[g'^2 h^2]
    qt_ab^{l-1} = chi_c qt_ab^l + a_l^2 S_2,   S_2 = E[(g'h)bar(u1) (g'h)bar(u2)],

where h is the vector the transpose correction multiplies (h = g for unit noise) and the noise
layer supplies S_1, S_2 and the transpose gain gamma (a_L carries gamma; 1 for unit noise). With a
readout loss (a fixed number of outputs through their own weights) the correction vanishes and GIA
is exact at infinite width. docs/THEORY.md §4.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .depth_scales import analyze_params
from .maps import params, per_chunk
from .noise import NoiseLayer
from .validation import choice, integer

__all__ = ["METHODS", "LOSSES", "RESULT_CAP", "GradientMetrics", "gradient_metrics"]

METHODS = ("exact", "gia")
LOSSES = ("sum_squares", "readout")
RESULT_CAP = 2**30  # bytes of per-layer result arrays one call may return
_RESULT_ARRAYS = 5  # qt_aa, qt_ab, a, g_aa, g_ab


@dataclass(frozen=True)
class GradientMetrics:
    """Per-layer mean gradient metrics; the last axis is the layer, index 0 = layer 1 (input side).

    ``qt_aa``/``qt_ab``: backpropagated signal statistics |delta|^2/N and delta_a.delta_b/N;
    ``a``: the no-GIA correction coefficient a_l (zeros for GIA and for the readout loss).
    With ``loss='readout'`` the values are for one output and carry a factor N (multiply by
    n_outputs / width for a network of that width).
    """

    activation: str
    noise: NoiseLayer
    method: str
    loss: str
    depth: int
    q_star: np.ndarray
    c_star: np.ndarray
    chi_1: np.ndarray
    chi_c: np.ndarray
    chi_q: np.ndarray
    qt_aa: np.ndarray
    qt_ab: np.ndarray
    a: np.ndarray
    g_aa: np.ndarray
    g_ab: np.ndarray

    @property
    def keep(self):
        """Keep probability rho of the noise layer (1 for layers that drop nothing)."""
        return np.broadcast_to(np.asarray(getattr(self.noise, "keep", 1.0), float), self.q_star.shape)

    @property
    def chi_2(self):
        """Alias of chi_c (Huang et al.'s name)."""
        return self.chi_c

    @property
    def layers(self):
        """Layer numbers 1..L matching the last axis."""
        return np.arange(1, self.depth + 1)

    @property
    def decay_single(self):
        """Asymptotic per-layer decay of g_aa away from the output: max(chi_1, chi_q^2)."""
        return np.maximum(self.chi_1, self.chi_q ** 2) if self.method == "exact" else self.chi_1

    @property
    def decay_pair(self):
        """Asymptotic per-layer decay of the mean g_ab: max(chi_2, chi_q^2) (GIA: chi_2)."""
        return np.maximum(self.chi_c, self.chi_q ** 2) if self.method == "exact" else self.chi_c

    def crossover_depth(self, width):
        """Layers from the output at which the mean pair metric sinks below its finite-width floor.

        The realisation-to-realisation spread of delta_a.delta_b/N is ~ sqrt(qt_aa qt_bb / N), so
        the measured pair metric follows the mean only while |g_ab| > g_aa / sqrt(N). Returns the
        first k = L - l where that fails (inf if it never does within the depth); asymptotically
        k_x ~ ln(sqrt N) / ln(chi_1 / max(chi_2, chi_q^2)) (THEORY §4).
        """
        width = float(width)
        if not (np.isfinite(width) and width >= 1):
            raise ValueError(f"width must be a finite number >= 1, got {width!r}")
        k = np.arange(self.depth)
        below = np.abs(self.g_ab[..., ::-1]) < self.g_aa[..., ::-1] / np.sqrt(width)
        first = np.where(below.any(-1), np.argmax(below, -1), -1)
        return np.where(first >= 0, k[first], np.inf)


def gradient_metrics(activation, sigma_w2, sigma_b2, keep=None, depth=50, *, noise="dropout",
                     drop=None, method="exact", loss="sum_squares", **noise_params):
    """Per-layer g_aa and g_ab at the fixed point, by the exact recursion or under GIA.

    Parameters
    ----------
    activation, sigma_w2, sigma_b2, keep, drop, noise, **noise_params
        The layer (:func:`meanfield.maps.params`); numeric parameters broadcast to shape S.
    depth : int
        Number of layers L >= 1.
    method : {"exact", "gia"}
        The exact infinite-width recursion without the gradient-independence assumption, or GIA.
    loss : {"sum_squares", "readout"}
        E = sum_i phi(z^L_i)^2 on all N outputs, or one readout y = v.x~^L with its own weights
        (per output; multiply by n_outputs / width for a network of that width).

    Returns
    -------
    GradientMetrics
        Per-layer arrays of shape S + (depth,), index 0 = layer 1 (input side).

    Raises
    ------
    ValueError
        For invalid arguments, or results larger than ``RESULT_CAP`` (points x depth);
        NoFixedPointError where q* is not finite.

    Notes
    -----
    Sparseout with s <= 1: E[g'^2] diverges through the zeros of phi, so chi_1 = inf and
    qt_aa, g_aa are +inf on every layer below the output (for ``loss='readout'`` on every layer:
    the readout's delta passes through g'). The pair metrics stay finite: gbar' = phi'.

    References
    ----------
    Huang et al. 2019 (gradient backpropagation without GIA; linear closed forms); docs/THEORY.md §4.
    """
    choice("method", method, METHODS)
    choice("loss", loss, LOSSES)
    depth = integer("depth", depth, 1)
    p = params(activation, sigma_w2, sigma_b2, keep, noise=noise, drop=drop, **noise_params)
    cells = int(np.prod(p.shape)) * depth
    if cells * _RESULT_ARRAYS * 8 > RESULT_CAP:
        raise ValueError(f"depth={depth} with {int(np.prod(p.shape))} parameter point(s): the "
                         f"per-layer results would take {cells * _RESULT_ARRAYS * 8 / 2**30:.3g} GiB "
                         f"(limit {RESULT_CAP / 2**30:g} GiB); use fewer layers or points")
    mf = analyze_params(p)
    act, nz, sw = p.act, p.noise, p.sigma_w2
    q, c = mf.q_star, mf.c_star
    chi1, chic, chiq = mf.chi_1, mf.chi_c, mf.chi_q
    exact = method == "exact" and loss == "sum_squares"
    # |x~|^2/N (mean squared weight gradient per |delta|^2/N), x~_a.x~_b/N, the top-layer terms
    # and the exact recursion's sources, per point (in chunks: pair integrals)
    m2, K, pd, da2, pk, b1, b2 = per_chunk(
        lambda pc, qc, cc: _point_terms(pc, qc, cc, loss == "sum_squares", exact), p, q, c,
        n_out=7)

    if loss == "sum_squares":
        qt_top = 4 * pd  # E[(2 phi phi')^2], no noise on the output
        qtab_top = 4 * pk
        a_top = 2 * sw * nz.transpose_gain() * da2
    else:  # one readout y = v.x~^L of the noisy last layer, v ~ N(0, sigma_w^2/N): delta^L = g' 2 y v
        qt_top = chi1 * 4 * sw * m2
        qtab_top = chic * 4 * sw * K
        a_top = np.zeros_like(q)

    qt_aa = np.empty(q.shape + (depth,))
    qt_ab = np.empty_like(qt_aa)
    a = np.zeros_like(qt_aa)
    qt_aa[..., -1], qt_ab[..., -1] = qt_top, qtab_top
    if exact:
        a[..., -1] = a_top
    for i in range(depth - 1, 0, -1):  # layer l = i + 1 feeds layer l - 1 = i
        qt_aa[..., i - 1] = chi1 * qt_aa[..., i]
        qt_ab[..., i - 1] = chic * qt_ab[..., i]
        if exact:  # a = 0 (underflow deep down) adds nothing, even to an infinite source
            a2 = a[..., i] ** 2
            qt_aa[..., i - 1] += np.where(a2 == 0, 0.0, a2 * b1)
            qt_ab[..., i - 1] += np.where(a2 == 0, 0.0, a2 * b2)
            a[..., i - 1] = a[..., i] * chiq
    return GradientMetrics(
        act.name, nz, method, loss, depth, q, c, chi1, chic, chiq, qt_aa, qt_ab, a,
        qt_aa * m2[..., None], qt_ab * K[..., None])


def _point_terms(p, q, c, sum_squares, exact):
    """Per-point moments: E[g^2], K, PD, dA2, PK and the exact sources S_1, S_2 (0 if unused)."""
    act, nz = p.act, p.noise
    zero = np.zeros(q.shape)
    m2 = nz.second_moment(act, q)
    K = nz.pair_moments(act, q, c, ("K",))[0]
    pd, da2 = kernels.moments(act, ("PD", "dA2"), q) if sum_squares else (zero, zero)
    pk = kernels.pair(act, ("PK",), q, c)[0] if sum_squares else zero
    b1 = nz.backprop_source_single(act, q) if exact else zero
    b2 = nz.backprop_source_pair(act, q, c) if exact else zero
    return m2, K, pd, da2, pk, b1, b2
