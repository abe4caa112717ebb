"""Sparseout (Khan and Stavness 2019): g = phi + sgn(phi) |phi|^(s/2) xi, xi = m/rho - 1.

The noise expectation is exact: xi is two-point, xi = r = (1 - rho)/rho with probability rho and
xi = -1 with probability 1 - rho (E xi = 0, E xi^2 = r). Moments are integrated numerically with
the zeros of phi treated as kinks (|phi|^s is not smooth there). docs/THEORY.md §6.
"""
from __future__ import annotations

from dataclasses import InitVar, dataclass
from functools import lru_cache

import numpy as np

from .. import kernels
from ..gauss import expect, expect_pair
from .base import NoiseLayer, keep_field, param_field, register_noise

BACKWARDS = ("true", "code")


def _expand(a, ndim):
    a = np.asarray(a, float)
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


def _two_point(fn, keep, r):
    """E_xi[fn(xi)] for xi = r w.p. rho, -1 w.p. 1 - rho."""
    return keep * fn(r) + (1 - keep) * fn(-1.0)


@register_noise
@dataclass(frozen=True, eq=False, kw_only=True)
class Sparseout(NoiseLayer):
    """Sparseout noise on post-activations (docs/THEORY.md §6).

    Parameters
    ----------
    keep : float or array_like
        Keep probability rho in (0, 1]; or ``drop`` = 1 - rho. Keyword only.
    s : float
        Norm exponent s > 0 (s = 2 is inverted dropout). The paper calls it q.
    backward : {"true", "code"}
        ``"true"``: dg/dz = phi' (1 + (s/2) |phi|^((s-2)/2) xi), the derivative; ``"code"``: the
        reference implementation's phi' (1 + |phi|^((s-2)/2) xi), not the derivative unless s = 2.

    Notes
    -----
    For s <= 1, E[g'^2] diverges through every zero of phi with phi' != 0: chi_1 = inf.
    """

    name = "sparseout"
    keep: float | np.ndarray = keep_field()
    s: float = param_field("Sparseout norm exponent s > 0 (s = 2 is dropout)", 2.0, vectorised=False)
    backward: str = param_field("Sparseout backward factor: 'true' (the derivative) or 'code' "
                                "(the reference implementation's)", "true", vectorised=False,
                                cli_type=str, choices=BACKWARDS)
    drop: InitVar[float | np.ndarray | None] = None

    def __post_init__(self, drop):
        self._keep(drop)
        s = self.s
        if isinstance(s, (bool, str)) or not isinstance(s, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(s) and s > 0):
            raise ValueError(f"s (Sparseout norm exponent) must be a positive finite number, got {s!r}")
        self._set("s", float(s))
        if self.backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {self.backward!r}")

    @property
    def c_s(self):
        """Coefficient of the xi term in the backward factor: s/2 (true derivative) or 1 (code)."""
        return self.s / 2 if self.backward == "true" else 1.0

    # ------------------------------------------------------------------ pointwise parts
    def _parts(self, act, x, keep):
        """phi, phi', a, b, keep, r at x, with g = phi + a xi and g' = phi' (1 + b xi)."""
        phi, dphi = act.phi(x), act.dphi(x)
        k = _expand(keep, x.ndim)
        r = (1 - k) / k
        mag = np.abs(phi)
        a = np.sign(phi) * mag ** (self.s / 2)
        with np.errstate(divide="ignore"):
            b = np.where(mag > 0, self.c_s * mag ** ((self.s - 2) / 2), 0.0)
        return phi, dphi, a, b, k, r

    def _kinks(self, act):
        return tuple(sorted(set(act.kinks) | set(act.zeros)))

    def _m2(self, act, keep):
        """x -> E_xi[g(x, xi)^2] = phi^2 + r |phi|^s, for keep already broadcast against q."""
        def m2(x):
            phi, _, _, _, _, r = self._parts(act, x, keep)
            return phi ** 2 + r * np.abs(phi) ** self.s
        return m2

    # ------------------------------------------------------------------ protocol
    def second_moment(self, act, q):
        q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(self.keep, float))
        return expect(self._m2(act, keep), q, kinks=self._kinks(act))

    def second_moment_slope(self, act, q):
        q, keep = np.broadcast_arrays(np.maximum(np.asarray(q, float), kernels.Q_MIN),
                                      np.asarray(self.keep, float))
        return expect(kernels.stein(self._m2(act, keep), q), q, kinks=self._kinks(act))

    def deriv_second_moment(self, act, q):
        """E[phi'^2 (1 + c_s^2 r |phi|^(s-2))]; inf for s <= 1 when phi has a zero."""
        if self.s <= 1 and act.zeros:
            # |phi|^(s-2) phi'^2 is not integrable through a zero of phi with phi' != 0
            return np.full(np.broadcast(q, self.keep).shape, np.inf)
        q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(self.keep, float))

        def d2(x):
            _, dphi, _, b, _, r = self._parts(act, x, keep)
            return dphi ** 2 * (1 + r * b * b)
        # b^2 ~ |phi|^(s-2) is singular (integrably, s > 1) at the zeros of phi
        return expect(d2, q, kinks=self._kinks(act), singular=self.s < 2)

    def bounded_second_moment(self):
        return 1.0 / np.asarray(self.keep, float)  # 1 + r at |phi| = 1

    def backprop_source_single(self, act, q):
        q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(self.keep, float))

        def fn(x):
            phi, dphi, a, b, k, r = self._parts(act, x, keep)
            return _two_point(lambda xi: (dphi * (1 + b * xi) * (phi + a * xi)) ** 2, k, r)
        return expect(fn, q, kinks=self._kinks(act))

    def backprop_source_pair(self, act, q, c):
        q, c, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float),
                                         np.asarray(self.keep, float))

        def gg(x):
            phi, dphi, a, b, k, r = self._parts(act, x, keep)
            return _two_point(lambda xi: dphi * (1 + b * xi) * (phi + a * xi), k, r)
        return expect_pair(gg, gg, q, c, kinks=self._kinks(act))

    # ------------------------------------------------------------------ torch
    def torch_xi(self, u):
        keep = float(self.scalar().keep)
        return (u < keep).to(u.dtype) / keep - 1.0

    def torch_g(self, p, xi):
        """p + sgn(p) |p|^(s/2) xi, with the backward factor 1 + c_s |p|^((s-2)/2) xi.

        Where p = 0 the factor |p|^((s-2)/2) is taken as 1 for s = 2 and 0 otherwise (infinite
        for s < 2: a measure-zero event for smooth activations; a ReLU's zeros carry phi' = 0).
        """
        return _sparseout_function().apply(p, xi, self.s, self.c_s)


@lru_cache(maxsize=None)
def _sparseout_function():
    import torch

    class SparseoutFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, xi, s, c_s):
            ctx.save_for_backward(a, xi)
            ctx.s, ctx.c_s = s, c_s
            return a + torch.sign(a) * a.abs().pow(s / 2) * xi

        @staticmethod
        def backward(ctx, grad):
            a, xi = ctx.saved_tensors
            s = ctx.s
            power = torch.ones_like(a) if s == 2 else \
                torch.where(a != 0, a.abs().pow((s - 2) / 2), torch.zeros_like(a))
            return grad * (1 + ctx.c_s * power * xi), None, None, None

    return SparseoutFunction
