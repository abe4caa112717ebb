"""Gaussian kernels of an activation alone: closed form where it has one, else quadrature.

At variance q (and correlation c for pairs), x ~ N(0, q), (u1, u2) ~ N(0, q [[1, c], [c, 1]]):

=========  =====================================================
``A2``     E[phi(x)^2]
``dA2``    d/dq E[phi(x)^2] = E[phi'^2 + phi phi''] (Gaussian integration by parts)
``D2``     E[phi'(x)^2]
``PD``     E[phi(x)^2 phi'(x)^2]
``K``      E[phi(u1) phi(u2)]
``Kd``     E[phi'(u1) phi'(u2)]
``PK``     E[(phi phi')(u1) (phi phi')(u2)]
=========  =====================================================

Noise layers (:mod:`meanfield.noise`) build every mean-field moment from these (docs/THEORY.md
§2-§4). Anything without a closed form is integrated by :mod:`meanfield.gauss`.
"""
from __future__ import annotations

import numpy as np

from .activations import Activation
from .gauss import RTOL, expect, expect_pair

__all__ = ["Q_MIN", "KEYS", "PAIR_KEYS", "moments", "moment", "pair", "stein", "by_scale"]

Q_MIN = 1e-20  # q = 0 stands for the q -> 0 limit, evaluated here (relative error ~1e-20)
KEYS = ("A2", "dA2", "D2", "PD")
PAIR_KEYS = ("K", "Kd", "PK")


def stein(fn, q):
    """x -> fn(x) (x^2/q - 1) / (2q), whose Gaussian mean is d/dq E[fn(x)], x ~ N(0, q).

    No derivatives of fn are needed. Pass q already clipped to >= Q_MIN (the integrand is O(1)
    even there: fn ~ q z^2).
    """
    return lambda x: fn(x) * (x * x / q[..., None] - 1) / (2 * q[..., None])


def by_scale(fn, q, *more):
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


def moments(act: Activation, keys, q):
    """One-variable kernels ``keys`` (subset of ``KEYS``) at variance q, stacked in one pass.

    Parameters
    ----------
    act : Activation
    keys : sequence of str
    q : array_like, shape S
        Variances >= 0 (q = 0 means the q -> 0 limit for ``dA2``).

    Returns
    -------
    list of ndarray, each of shape S
    """
    q = np.asarray(q, float)
    q = np.maximum(q, Q_MIN) if "dA2" in keys else q  # dA2 at q = 0 is the q -> 0 limit
    out = {k: np.broadcast_to(act.closed[k](q), q.shape).astype(float) for k in keys if k in act.closed}
    missing = [k for k in keys if k not in act.closed]
    if missing:
        phi, dphi = act.phi, act.dphi

        def one(qg):
            parts = {"A2": lambda x: phi(x) ** 2, "D2": lambda x: dphi(x) ** 2,
                     "PD": lambda x: (phi(x) * dphi(x)) ** 2,
                     "dA2": stein(lambda x: phi(x) ** 2, qg)}
            fns = [parts[k] for k in missing]
            return list(expect(lambda x: np.stack([fn(x) for fn in fns]), qg,
                               kinks=act.kinks, strip=act.strip))
        out.update(zip(missing, one(q) if q.ndim == 0 else by_scale(one, q)))
    return [out[k] for k in keys]


def moment(act: Activation, key: str, q):
    """One kernel (see :func:`moments`)."""
    return moments(act, (key,), q)[0]


def pair(act: Activation, keys, q, c, rtol=RTOL):
    """Pair kernels ``keys`` (subset of ``PAIR_KEYS``) at variance q and correlation c.

    Parameters
    ----------
    act : Activation
    keys : sequence of str
    q, c : array_like
        Broadcast together (shape S); q >= 0, -1 <= c <= 1.
    rtol : float
        Relative tolerance of the quadrature (closed forms are exact).

    Returns
    -------
    list of ndarray, each of shape S
    """
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
        out.update(zip(missing, one(q, c) if q.ndim == 0 else by_scale(one, q, c)))
    return [out[k] for k in keys]
