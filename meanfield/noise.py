"""Noise layers and the Gaussian moments of the random element-wise map g(z, xi) (THEORY §2).

``keep`` is always the keep probability rho (rho = 1: no noise); PyTorch's ``p`` / Keras' ``rate``
is the drop probability 1 - rho. A layer is

- ``none``:      g = phi(z)
- ``dropout``:   g = phi(z) m / rho,                         m ~ Bernoulli(rho)
- ``sparseout``: g = phi + sgn(phi) |phi|^(s/2) xi,          xi = m / rho - 1

The noise expectation is done exactly: xi is two-point, xi = r = (1 - rho)/rho with probability
rho and xi = -1 with probability 1 - rho (E xi = 0, E xi^2 = r). For dropout every moment is an
activation integral times a power of 1/rho, so closed forms carry over; Sparseout moments are
integrated numerically with the zeros of phi treated as kinks (|phi|^s is not smooth there).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation
from .gauss import RTOL, expect, expect_pair

NOISE_KINDS = ("none", "dropout", "sparseout")
BACKWARDS = ("true", "code")


@dataclass(frozen=True)
class Noise:
    """A noise layer: ``kind`` in NOISE_KINDS; Sparseout's norm exponent ``s`` and ``backward``.

    backward = "true" uses dg/dz = phi' (1 + (s/2) |phi|^((s-2)/2) xi); "code" uses the reference
    implementation's phi' (1 + |phi|^((s-2)/2) xi), which is not the derivative unless s = 2.
    """

    kind: str = "dropout"
    s: float = 2.0
    backward: str = "true"

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {NOISE_KINDS}, got {self.kind!r}")
        if not (np.isfinite(self.s) and self.s > 0):
            raise ValueError(f"s (Sparseout norm exponent) must be a positive finite number, got {self.s!r}")
        if self.backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {self.backward!r}")

    @property
    def c_s(self):
        """Coefficient of the xi term in the backward factor: s/2 (true derivative) or 1 (code)."""
        return self.s / 2 if self.backward == "true" else 1.0


def make_noise(noise="dropout", s=2.0, backward="true") -> Noise:
    return noise if isinstance(noise, Noise) else Noise(noise, float(s), backward)


# ---------------------------------------------------------------------------------------------
# activation integrals: closed form when the activation has one, else kink-aware quadrature
Q_MIN = 1e-20  # q = 0 stands for the q -> 0 limit, evaluated here (relative error ~1e-20)


def _stein(fn, q):
    """d/dq E[fn(x)], x ~ N(0, q), as E[fn(x) (x^2/q - 1)] / (2q): no derivatives of fn needed.

    Pass q already clipped to >= Q_MIN (the integrand is O(1) even there: fn ~ q z^2).
    """
    return lambda x: fn(x) * (x * x / q[..., None] - 1) / (2 * q[..., None])


def _by_scale(fn, q, *more):
    """Apply fn to groups of points whose sqrt(q) agree within a factor 2, then reassemble.

    The trapezoid step of a batch is set by its widest Gaussian, so mixing q = 0.01 and q = 5
    would integrate every point with the step the widest one needs.
    """
    q = np.asarray(q, float)
    more = [np.broadcast_to(m, q.shape) for m in more]
    flat = q.ravel()
    bins = np.floor(np.log2(np.maximum(flat, 1e-300)) / 2)
    outs = None
    for b in np.unique(bins):
        idx = np.flatnonzero(bins == b)
        res = fn(flat[idx], *(m.ravel()[idx] for m in more))
        res = res if isinstance(res, list) else [res]
        if outs is None:
            outs = [np.empty(flat.size) for _ in res]
        for o, r in zip(outs, res):
            o[idx] = r
    return [o.reshape(q.shape) for o in outs]


def act_moments(act: Activation, keys, q):
    """Activation-only Gaussian integrals ``keys`` (see :mod:`meanfield.activations`) at variance
    q: closed forms where the activation has them, the rest by quadrature in one stacked pass."""
    q = np.asarray(q, float)
    q = np.maximum(q, Q_MIN) if "dA2" in keys else q  # dA2 at q = 0 is the q -> 0 limit
    out = {k: np.broadcast_to(act.closed[k](q), q.shape).astype(float) for k in keys if k in act.closed}
    missing = [k for k in keys if k not in act.closed]
    if missing:
        phi, dphi = act.phi, act.dphi

        def one(qg):
            parts = {"A2": lambda x: phi(x) ** 2, "D2": lambda x: dphi(x) ** 2,
                     "PD": lambda x: (phi(x) * dphi(x)) ** 2,
                     "dA2": _stein(lambda x: phi(x) ** 2, qg)}
            fns = [parts[k] for k in missing]
            return list(expect(lambda x: np.stack([fn(x) for fn in fns]), qg,
                               kinks=act.kinks, strip=act.strip))
        out.update(zip(missing, one(q) if q.ndim == 0 else _by_scale(one, q)))
    return [out[k] for k in keys]


def act_moment(act: Activation, key: str, q):
    """One activation-only Gaussian integral (see :func:`act_moments`)."""
    return act_moments(act, (key,), q)[0]


def act_pair(act: Activation, keys, q, c, rtol=RTOL):
    """Stacked pair integrals (``K``, ``Kd``, ``PK``) at variance q and correlation c."""
    q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
    missing = [k for k in keys if k not in act.closed]
    out = {k: act.closed[k](q, c) * np.ones_like(q) for k in keys if k in act.closed}
    if missing:
        parts = {"K": act.phi, "Kd": act.dphi, "PK": lambda x: act.phi(x) * act.dphi(x)}
        fns = [parts[k] for k in missing]

        def stacked(x):
            return np.stack([fn(x) for fn in fns])

        def one(qg, cg):
            return list(expect_pair(stacked, stacked, qg, cg, kinks=act.kinks, rtol=rtol, strip=act.strip))
        out.update(zip(missing, one(q, c) if q.ndim == 0 else _by_scale(one, q, c)))
    return [out[k] for k in keys]


# ---------------------------------------------------------------------------------------------
# Sparseout pointwise moments over the two-point xi
def _expand(a, ndim):
    a = np.asarray(a, float)
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


def _sparseout_parts(act, noise, x, keep):
    phi, dphi = act.phi(x), act.dphi(x)
    k = _expand(keep, x.ndim)
    r = (1 - k) / k
    mag = np.abs(phi)
    a = np.sign(phi) * mag ** (noise.s / 2)  # g = phi + a xi
    with np.errstate(divide="ignore"):
        b = np.where(mag > 0, noise.c_s * mag ** ((noise.s - 2) / 2), 0.0)  # g' = phi' (1 + b xi)
    return phi, dphi, a, b, k, r


def _two_point(fn, k, r):
    """E_xi[fn(xi)] for xi = r w.p. rho, -1 w.p. 1 - rho."""
    return k * fn(r) + (1 - k) * fn(-1.0)


def _sparseout_kinks(act):
    return tuple(sorted(set(act.kinks) | set(act.zeros)))


# ---------------------------------------------------------------------------------------------
# layer moments used by the maps
def _sparseout_m2(act, noise, keep):
    """x -> E_xi[g(x, xi)^2] = phi^2 + r |phi|^s, for keep already broadcast against q."""
    def m2(x):
        phi, _, _, _, _, r = _sparseout_parts(act, noise, x, keep)
        return phi ** 2 + r * np.abs(phi) ** noise.s
    return m2


def second_moment(act, noise, q, keep):
    """M2(q) = E_{z, xi}[g(sqrt(q) z, xi)^2]: the variance map is sigma_w^2 M2 + sigma_b^2."""
    if noise.kind != "sparseout":
        return act_moment(act, "A2", q) / keep
    q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(keep, float))
    return expect(_sparseout_m2(act, noise, keep), q, kinks=_sparseout_kinks(act))


def second_moment_slope(act, noise, q, keep):
    """dM2/dq = E[g'^2 + g g''] (Gaussian integration by parts); chi_q = sigma_w^2 dM2/dq."""
    if noise.kind != "sparseout":
        return act_moment(act, "dA2", q) / keep
    q, keep = np.broadcast_arrays(np.maximum(np.asarray(q, float), Q_MIN), np.asarray(keep, float))
    return expect(_stein(_sparseout_m2(act, noise, keep), q), q, kinks=_sparseout_kinks(act))


def second_moment_and_slope(act, noise, q, keep):
    """(M2, dM2/dq) together: one quadrature pass for dropout and no noise."""
    if noise.kind != "sparseout":
        a2, da2 = act_moments(act, ("A2", "dA2"), q)
        return a2 / keep, da2 / keep
    return second_moment(act, noise, q, keep), second_moment_slope(act, noise, q, keep)


def deriv_second_moment(act, noise, q, keep):
    """D(q) = E[g'^2]; chi_1 = sigma_w^2 D(q*). Sparseout: E[phi'^2 (1 + c_s^2 r |phi|^(s-2))]."""
    if noise.kind != "sparseout":
        return act_moment(act, "D2", q) / keep
    if noise.s <= 1 and act.zeros:
        # |phi|^(s-2) phi'^2 is not integrable through a zero of phi with phi' != 0
        return np.full(np.broadcast(q, keep).shape, np.inf)
    q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(keep, float))

    def d2(x):
        _, dphi, _, b, k, r = _sparseout_parts(act, noise, x, keep)
        return dphi ** 2 * (1 + r * b * b)
    # b^2 ~ |phi|^(s-2) is singular (integrably, s > 1) at the zeros of phi
    return expect(d2, q, kinks=_sparseout_kinks(act), singular=noise.s < 2)


def pair_moments(act, q, c, keys=("K", "Kd"), rtol=RTOL):
    """E[gbar(u1) gbar(u2)] and E[gbar'(u1) gbar'(u2)]; gbar = phi for every noise here."""
    return act_pair(act, keys, q, c, rtol)


def backprop_single(act, noise, q, keep):
    """E_{z, xi}[g'^2 g^2]: the no-GIA source term of the single-input gradient recursion."""
    if noise.kind != "sparseout":
        return act_moment(act, "PD", q) / keep ** 3
    q, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(keep, float))

    def fn(x):
        phi, dphi, a, b, k, r = _sparseout_parts(act, noise, x, keep)
        return _two_point(lambda xi: (dphi * (1 + b * xi) * (phi + a * xi)) ** 2, k, r)
    return expect(fn, q, kinks=_sparseout_kinks(act))


def backprop_pair(act, noise, q, c, keep):
    """E[(g'g)bar(u1) (g'g)bar(u2)]: the no-GIA source term of the pair recursion."""
    if noise.kind != "sparseout":
        return act_pair(act, ("PK",), q, c)[0] / keep ** 2

    def gg(x):
        phi, dphi, a, b, k, r = _sparseout_parts(act, noise, x, keep)
        return _two_point(lambda xi: dphi * (1 + b * xi) * (phi + a * xi), k, r)
    q, c, keep = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float), np.asarray(keep, float))
    return expect_pair(gg, gg, q, c, kinks=_sparseout_kinks(act))
