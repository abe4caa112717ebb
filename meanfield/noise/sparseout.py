"""Sparseout (Khan and Stavness 2019): g = phi + sgn(phi) |phi|^(s/2) xi, xi = m/rho - 1.

The noise expectation is exact: xi is two-point, xi = r = (1 - rho)/rho with probability rho and
xi = -1 with probability 1 - rho (E xi = 0, E xi^2 = r). Moments are integrated numerically with
the zeros of phi treated as kinks (|phi|^s is not smooth there). docs/THEORY.md §6.

The backward moments are sums of J_p(q) = E[phi'(x)^2 |phi(x)|^p], x ~ N(0, q): E[g'^2] =
E[phi'^2] + c_s^2 r J_(s-2), and E[g'^2 g^2] = J_2 + ((1 + c_s)^2 + 2 c_s) r J_s
+ 2 c_s (1 + c_s) m_3 J_(3s/2 - 1) + c_s^2 m_4 J_(2s-2) with m_k = E[xi^k]. For p <= -1, J_p is
infinite (a zero x0 of phi with phi'(x0) != 0 makes the integrand ~ |x - x0|^p); for -1 < p < 0
it is finite, but as p -> -1 the mass piles up at the zeros ever closer than any quadrature node
reaches (J ~ 1/(p + 1)). So the singular part is subtracted in closed form: near x0 the
integrand is A_+- |u|^p, u = x - x0, A_+- = |phi'(x0+-)|^(2+p), and

    S(x) = A_+- |u|^p exp(x0 u / q)   has   E[S 1(+-u > 0)] = A_+- pdf_q(x0) (2q)^((p+1)/2) Gamma((p+1)/2) / 2,

(S pdf_q is a Gaussian bump in u at x0), while the remainder ~ |u|^(p+1) is integrated by the
kink-aware rule. This holds s down to 1 + 1e-6 and beyond.
"""
from __future__ import annotations

import math
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


def _structure(act):
    """expect() keywords for integrands in phi and |phi|^s: phi's, plus kinks at its zeros."""
    return {"kinks": tuple(sorted(set(act.kinks) | set(act.zeros))), "scale": act.scale,
            "width": act.width}


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

    def _m2(self, act, keep):
        """x -> E_xi[g(x, xi)^2] = phi^2 + r |phi|^s, for keep already broadcast against q."""
        def m2(x):
            phi, _, _, _, _, r = self._parts(act, x, keep)
            return phi ** 2 + r * np.abs(phi) ** self.s
        return m2

    # ------------------------------------------------------------------ protocol
    def second_moment(self, act, q):
        q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(self.keep, float))
        return expect(self._m2(act, keep), q, **_structure(act))

    def second_moment_slope(self, act, q):
        """dE[g^2]/dq; at q = 0 the exact limit, +inf for s < 2 (keep < 1) when phi(0) = 0 with
        phi'(0) != 0: E[r |phi|^s] ~ q^(s/2) there, so the origin always repels.

        Stein's form E[m2 (x^2/q - 1)] / (2q) of m2 = phi^2 + r |phi|^s is O(q^-1.5) from O(1/q)
        terms for a bounded phi (relative error ~1e-16 sqrt(q)); where the Gaussian reaches
        phi's asymptote t (:func:`~meanfield.kernels.reaches_tails`), t^2 + r |t|^s is
        subtracted first and its slope added in closed form (:func:`~meanfield.kernels.tail_power`),
        as :func:`~meanfield.kernels.moments` does for phi^2.
        """
        q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(self.keep, float))
        qp = kernels.origin_limit(q)
        m2, structure = self._m2(act, keep), _structure(act)
        # (weight per point, tail_power) of t^2 and r |t|^s, weight 0 where the tails are not reached
        parts = [] if act.tails is None else [
            (np.where(kernels.reaches_tails(act, qp), w, 0.0), t)
            for w, t in ((1.0, kernels.tail_power(act, 2.0)),
                         ((1 - keep) / keep, kernels.tail_power(act, self.s))) if t is not None]
        if parts:
            structure["kinks"] = tuple(sorted(set(structure["kinks"]).union(*(t[2] for _, t in parts))))

            def m2(x, m2=m2):
                return m2(x) - sum(w[..., None] * t[0](x) for w, t in parts)
        out = expect(kernels.stein(m2, qp), qp, **structure) + sum(w * t[1](qp) for w, t in parts)
        at_zero = [z for z in _zero_slopes(act) if z[0] == 0 and (z[1] > 0 or z[2] > 0)]
        if self.s < 2 and at_zero:
            out = np.where((q == 0) & (keep < 1), np.inf, out)
        return out

    def deriv_second_moment(self, act, q):
        """E[phi'^2] + c_s^2 r J_(s-2)(q) (module docstring); +inf for s <= 1 when phi has a
        zero with phi' != 0 there (every built-in activation but sigmoid)."""
        q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(self.keep, float))
        r = (1 - keep) / keep
        with np.errstate(invalid="ignore"):  # keep = 1 (r = 0): no noise term, even for J = inf
            return kernels.moment(act, "D2", q) + np.where(
                r > 0, self.c_s ** 2 * r * power_moment(act, q, self.s - 2), 0.0)

    def bounded_second_moment(self):
        return 1.0 / np.asarray(self.keep, float)  # 1 + r at |phi| = 1

    def q_limit(self, act):
        """Where |phi|^s, with phi's linear tail b x, reaches 1e300 at the quadrature window's edge
        x = 10 sqrt(q): (1e300^(1/s) / (10 |b|))^2 for s > 2 (s = 6: 1e98; s = 50: 1e10)."""
        s = np.asarray(self.s, float)
        b = 0.0 if act.bounded or act.tails is None else max(abs(act.tails[0][1]), abs(act.tails[1][1]))
        if b == 0:
            return np.full(s.shape, np.inf)
        return np.where(s > 2, (1e300 ** (1 / np.maximum(s, 2)) / (10 * b)) ** 2, np.inf)

    def backprop_source_single(self, act, q):
        """S_1 = E[g'^2 g^2] as a sum of J_p (module docstring); +inf for s <= 1/2 (J_(2s-2)
        diverges) when phi has a zero with phi' != 0."""
        q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(self.keep, float))
        r = (1 - keep) / keep
        m3 = keep * r ** 3 - (1 - keep)
        m4 = keep * r ** 4 + (1 - keep)
        c, s = self.c_s, self.s
        noisy = r > 0  # keep = 1: g = phi, and 0 * inf must not spoil S_1
        out = kernels.moment(act, "PD", q)
        for coef, p in (((1 + c) ** 2 * r + 2 * c * r, s), (2 * c * (1 + c) * m3, 1.5 * s - 1),
                        (c * c * m4, 2 * s - 2)):
            with np.errstate(invalid="ignore"):
                out = out + np.where(noisy, coef * power_moment(act, q, p), 0.0)
        return out

    def backprop_source_pair(self, act, q, c):
        """S_2 = E[(g'g)bar(u1) (g'g)bar(u2)], (g'g)bar = phi' (phi + c_s r sgn(phi) |phi|^(s-1)).

        For s < 1, (g'g)bar is singular at the zeros of phi (integrable), so with Psi = phi^2/2
        + (c_s r / s) |phi|^s, (g'g)bar = Psi', Gaussian integration by parts in both variables
        moves the derivatives onto smooth Gaussian weights (:func:`_stein_pair`); at c = 1 it is
        E[(g'g)bar^2] = J_2 + 2 c_s r J_s + c_s^2 r^2 J_(2s-2) (inf for s <= 1/2).
        """
        q, c, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float),
                                         np.asarray(self.keep, float))
        if self.s < 1:
            r = (1 - keep) / keep
            cs, s = self.c_s, self.s
            out = np.empty(q.shape)
            one, inner = c == 1, np.abs(c) < 1
            if np.any(one):
                qo, ro = q[one], r[one]
                with np.errstate(invalid="ignore"):  # r = 0 times J = inf
                    out[one] = power_moment(act, qo, 2.0) + np.where(
                        ro > 0, 2 * cs * ro * power_moment(act, qo, s)
                        + (cs * ro) ** 2 * power_moment(act, qo, 2 * s - 2), 0.0)
            if np.any(inner):
                def psi(x, rr):
                    phi = act.phi(x)
                    return 0.5 * phi * phi + (cs * rr / s) * np.abs(phi) ** s
                qi = q[inner]
                out[inner] = _stein_pair(psi, r[inner], kernels.origin_limit(qi),
                                         c[inner], _structure(act))
            rest = ~(one | inner)  # c = -1: left to the direct rule
            if np.any(rest):
                out[rest] = self._direct_pair_source(act, q[rest], c[rest], keep[rest])
            return out
        return self._direct_pair_source(act, q, c, keep)

    def _direct_pair_source(self, act, q, c, keep):
        def gg(x):
            phi, dphi, a, b, k, r = self._parts(act, x, keep)
            return _two_point(lambda xi: dphi * (1 + b * xi) * (phi + a * xi), k, r)
        return expect_pair(gg, gg, q, c, **_structure(act))

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


def _stein_pair(psi, r, q, c, structure):
    """E[Psi'(u1) Psi'(u2)] for (u1, u2) centred Gaussian, variance q, correlation |c| < 1.

    With u2 = c u1 + sd z, sd = sqrt(q (1 - c^2)), integration by parts gives the inner
    h(x) = E[Psi'(c x + sd z)] = E[z Psi(c x + sd z)] / sd and h'(x) = c E[(z^2 - 1) Psi] / sd^2,
    and the outer E[Psi'(X) h(X)] = E[Psi(X) (X h(X) / q - h'(X))]: only Psi itself (continuous)
    is ever integrated. ``psi(x, r)`` takes r broadcast against x; ``structure`` are its
    :func:`~meanfield.gauss.expect` keywords (kinks, scale, width).
    """
    sd = np.sqrt(q * (1 - c) * (1 + c))
    rr = r[..., None]
    size = np.sqrt(expect(lambda x: psi(x, rr) ** 2, q, **structure))

    def outer(x):
        qq, cc, ss = q[..., None], c[..., None], sd[..., None]

        def weighted(y):
            z = (y - cc[..., None] * x[..., None]) / ss[..., None]
            w = (x[..., None] * z / (qq[..., None] * ss[..., None])
                 - cc[..., None] * (z * z - 1) / ss[..., None] ** 2)
            return psi(y, rr[..., None]) * w
        inner = expect(weighted, ss ** 2, cc * x, **structure,
                       floor=(size / (sd * sd) + size * np.abs(c) / (q * sd))[..., None])
        return psi(x, rr) * inner
    return expect(outer, q, **structure, floor=size * size / (q * (1 - c * c)))


def _zero_slopes(act):
    """[(x0, A_-, A_+)] for the zeros of phi: the one-sided slopes |phi'(x0 -+ 0)|."""
    out = []
    for x0 in act.zeros:
        side = np.array([np.nextafter(x0, -np.inf), np.nextafter(x0, np.inf)])
        a_minus, a_plus = np.abs(act.dphi(side))
        out.append((float(x0), float(a_minus), float(a_plus)))
    return out


def power_moment(act, q, p):
    """J_p(q) = E[phi'(x)^2 |phi(x)|^p], x ~ N(0, q), with |phi|^p taken as 0 where phi = 0.

    Parameters
    ----------
    act : Activation
    q : array_like
        Variances (q = 0 stands for the limit q -> 0, evaluated at Q_MIN).
    p : float
        Exponent; p <= -1 gives +inf where phi has a zero with phi' != 0 on a side; for
        -1 < p < 0 the singular part at each zero is subtracted in closed form (module docstring).

    Returns
    -------
    ndarray
        J_p, shaped like q.
    """
    q = kernels.origin_limit(q)
    # A_+- = |phi'(x0+-)|^(2+p) at the zeros where the integrand is singular
    zeros = [(x0, am ** (2 + p), ap ** (2 + p)) for x0, am, ap in _zero_slopes(act)
             if am > 0 or ap > 0] if p < 0 else []
    if p <= -1 and zeros:
        return np.full(q.shape, np.inf)
    structure = _structure(act)

    def f(x):  # in logs: |phi|^p overflows where phi underflows (GELU's tail), phi'^2 -> 0 there
        phi, dphi = act.phi(x), act.dphi(x)
        mag, slope = np.abs(phi), np.abs(dphi)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            val = np.exp(2 * np.log(slope) + p * np.log(mag))
        return np.where((mag > 0) & (slope > 0), val, 0.0)
    if not zeros:
        return expect(f, q, **structure)
    # subtract S = A |u|^p exp(x0 u / q) on each side of each zero; add E[S] in closed form
    qq = q[..., None]
    exact = np.zeros(q.shape)
    weight = 0.5 * (2 * q) ** ((p + 1) / 2) * math.gamma((p + 1) / 2)
    for x0, a_minus, a_plus in zeros:
        pdf0 = np.exp(-0.5 * x0 * x0 / q) / np.sqrt(2 * np.pi * q)
        exact = exact + (a_minus + a_plus) * pdf0 * weight

    def remainder(x):
        out = f(x)
        for x0, a_minus, a_plus in zeros:
            u = x - x0
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                s = np.where(u > 0, a_plus, a_minus) * np.abs(u) ** p * np.exp(x0 * u / qq)
            out = out - np.where(u == 0, 0.0, s)
        return out
    # the remainder cancels against the closed form: judge convergence on the total's scale
    return exact + expect(remainder, q, **structure, floor=np.abs(exact))


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
