"""Gradient statistics of deep noisy networks at infinite width: GIA and the exact recursion (THEORY §4).

Setting (Huang et al. 2019): width N, L layers at the fixed point (q*, c*), layer l computes
z^l = W^l x~^{l-1} + b^l with x~ = g(z, xi) (noise on every hidden layer, independent masks per
input, the input x~^0 itself a noisy post-activation at the fixed point), output y = phi(z^L).
Weight-gradient metrics of layer l, with delta^l = dE/dz^l:

    g_aa^l = (|delta^{l,a}|^2 / N) (|x~^{l-1,a}|^2 / N) -> qt^l     E[g^2]
    g_ab^l = (delta^{l,a}.delta^{l,b} / N) (x~^{l-1,a}.x~^{l-1,b} / N) -> qt_ab^l  E[gbar(u1) gbar(u2)]

GIA: qt^{l-1} = chi_1 qt^l, qt_ab^{l-1} = chi_2 qt_ab^l. Exact (sum-of-squares loss on all N
outputs): W^{l T} delta^l = Zhat_l + a_l x~^{l-1} (Yang's transpose rule), a_L = 2 sigma_w^2
E[phi'^2 + phi phi''], a_l = a_{l+1} chi_q, and

    qt^{l-1}    = chi_1 qt^l    + a_l^2 E[g'^2 g^2]
    qt_ab^{l-1} = chi_2 qt_ab^l + a_l^2 E[(g'g)bar(u1) (g'g)bar(u2)].

With a readout loss (a fixed number of outputs through their own weights) the correction vanishes
and GIA is exact at infinite width.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .maps import analyze_params, params
from .noise import act_moment, act_pair, backprop_pair, backprop_single, pair_moments, second_moment

METHODS = ("exact", "gia")
LOSSES = ("sum_squares", "readout")


@dataclass(frozen=True)
class GradientMetrics:
    """Per-layer mean gradient metrics; the last axis is the layer, index 0 = layer 1 (input side).

    ``qt_aa``/``qt_ab``: backpropagated signal statistics |delta|^2/N and delta_a.delta_b/N;
    ``a``: the no-GIA correction coefficient a_l (zeros for GIA and for the readout loss).
    With ``loss='readout'`` the values are for one output and carry a factor N (multiply by
    n_outputs / width for a network of that width).
    """

    activation: str
    noise: str
    method: str
    loss: str
    depth: int
    keep: np.ndarray
    q_star: np.ndarray
    c_star: np.ndarray
    chi_1: np.ndarray
    chi_2: np.ndarray
    chi_q: np.ndarray
    qt_aa: np.ndarray
    qt_ab: np.ndarray
    a: np.ndarray
    g_aa: np.ndarray
    g_ab: np.ndarray

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
        return np.maximum(self.chi_2, self.chi_q ** 2) if self.method == "exact" else self.chi_2

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
                     s=2.0, backward="true", drop=None, method="exact", loss="sum_squares"):
    """Per-layer g_aa and g_ab at the fixed point, by the exact recursion or under GIA.

    Parameters broadcast (shape S); the result's per-layer arrays have shape S + (depth,).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    p = params(activation, sigma_w2, sigma_b2, keep, noise=noise, s=s, backward=backward, drop=drop)
    mf = analyze_params(p)
    act, nz, sw, k = p.act, p.noise, p.sigma_w2, p.keep
    q, c = mf.q_star, mf.c_star
    chi1, chi2, chiq = mf.chi_1, mf.chi_c, mf.chi_q
    m2 = second_moment(act, nz, q, k)  # |x~|^2 / N
    K = pair_moments(act, q, c, ("K",))[0]  # x~_a . x~_b / N

    if loss == "sum_squares":
        qt_top = 4 * act_moment(act, "PD", q)  # E[(2 phi phi')^2], no noise on the output
        qtab_top = 4 * act_pair(act, ("PK",), q, c)[0]
        a_top = 2 * sw * act_moment(act, "dA2", q)
    else:  # one readout y = v.x~^L of the noisy last layer, v ~ N(0, sigma_w^2/N): delta^L = g' 2 y v
        qt_top = chi1 * 4 * sw * m2
        qtab_top = chi2 * 4 * sw * K
        a_top = np.zeros_like(q)
    exact = method == "exact" and loss == "sum_squares"
    if exact:
        b1 = backprop_single(act, nz, q, k)
        b2 = backprop_pair(act, nz, q, c, k)

    qt_aa = np.empty(q.shape + (depth,))
    qt_ab = np.empty_like(qt_aa)
    a = np.zeros_like(qt_aa)
    qt_aa[..., -1], qt_ab[..., -1] = qt_top, qtab_top
    if exact:
        a[..., -1] = a_top
    for i in range(depth - 1, 0, -1):  # layer l = i + 1 feeds layer l - 1 = i
        qt_aa[..., i - 1] = chi1 * qt_aa[..., i]
        qt_ab[..., i - 1] = chi2 * qt_ab[..., i]
        if exact:
            qt_aa[..., i - 1] += a[..., i] ** 2 * b1
            qt_ab[..., i - 1] += a[..., i] ** 2 * b2
            a[..., i - 1] = a[..., i] * chiq
    return GradientMetrics(
        act.name, nz.kind, method, loss, depth, k, q, c, chi1, chi2, chiq, qt_aa, qt_ab, a,
        qt_aa * m2[..., None], qt_ab * K[..., None])


if __name__ == "__main__":
    from .gradients_cli import main

    raise SystemExit(main())
