"""Activations: phi, phi', phi'' and, where they exist, closed-form Gaussian integrals.

An :class:`Activation` is a frozen record of numpy callables plus what the integrators need to
know: ``kinks`` (x where phi' or phi'' jumps: the piecewise rule splits there), ``zeros`` (x where
phi changes sign, the kinks of |phi|^s in Sparseout) and ``strip``, the distance from the real axis
of phi's nearest complex singularity (tanh: pi/2), which sets the trapezoid rule's step. Closed forms are keyed by name, all at
variance q (and correlation c for pairs), with x ~ N(0, q), (u1, u2) ~ N(0, q [[1, c], [c, 1]]):

=========  =====================================================
``A2``     E[phi(x)^2]
``dA2``    d/dq E[phi(x)^2] = E[phi'^2 + phi phi'']
``D2``     E[phi'(x)^2]
``PD``     E[phi(x)^2 phi'(x)^2]
``K``      E[phi(u1) phi(u2)]
``Kd``     E[phi'(u1) phi'(u2)]
``PK``     E[(phi phi')(u1) (phi phi')(u2)]
=========  =====================================================

Closed forms: linear; ReLU (arc-cosine kernel); erf(a x) (arcsin kernel); hard tanh (normal CDF in
1-D, bivariate-normal CDFs by Owen's T for K and Kd). Anything else is integrated numerically by
:mod:`meanfield.gauss`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

_SQRT_2PI = np.sqrt(2 * np.pi)


# scipy.special is imported on first use: it doubles the start-up time of the CLI, and the tanh,
# ReLU and linear paths never need it
def _erf(x):
    from scipy.special import erf
    return erf(x)


def expit(x):
    from scipy.special import expit as _expit
    return _expit(x)


def ndtr(x):
    from scipy.special import ndtr as _ndtr
    return _ndtr(x)


@dataclass(frozen=True)
class Activation:
    """An element-wise nonlinearity with its first two derivatives (numpy, vectorised)."""

    name: str
    phi: Callable[[np.ndarray], np.ndarray]
    dphi: Callable[[np.ndarray], np.ndarray]
    d2phi: Callable[[np.ndarray], np.ndarray]
    kinks: tuple[float, ...] = ()
    zeros: tuple[float, ...] = ()
    bounded: bool = False
    strip: float = np.inf
    closed: Mapping[str, Callable] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "closed", MappingProxyType(dict(self.closed)))

    def __repr__(self):
        return f"Activation({self.name!r})"

    @classmethod
    def from_sympy(cls, expr, symbol=None, name=None, *, kinks=(), zeros=None, bounded=False):
        """Build an activation from a sympy expression in one symbol; derivatives are exact.

        ``zeros`` defaults to the real roots sympy finds (used only by Sparseout's |phi|^s).
        """
        import sympy as sp  # only here: the numeric core must not need sympy

        expr = sp.sympify(expr)
        if symbol is None:
            free = sorted(expr.free_symbols, key=str)
            if len(free) != 1:
                raise ValueError(f"expr must have exactly one free symbol, found {free}")
            symbol = free[0]
        d1, d2 = sp.diff(expr, symbol), sp.diff(expr, symbol, 2)
        if zeros is None:
            try:
                zeros = tuple(float(r) for r in sp.solve(sp.Eq(expr, 0), symbol) if r.is_real)
            except (NotImplementedError, TypeError):
                zeros = ()
        fns = [_vectorised(sp.lambdify(symbol, e, modules=["numpy", "scipy"])) for e in (expr, d1, d2)]
        return cls(name or str(expr), *fns, kinks=tuple(kinks), zeros=tuple(zeros), bounded=bounded)

    @classmethod
    def from_callables(cls, name, phi, dphi, d2phi, *, kinks=(), zeros=(), bounded=False):
        """Build an activation from numpy callables phi, phi', phi'' (you vouch for them)."""
        return cls(name, _vectorised(phi), _vectorised(dphi), _vectorised(d2phi),
                   kinks=tuple(kinks), zeros=tuple(zeros), bounded=bounded)


def _vectorised(fn):
    """lambdify returns a scalar for constant expressions; broadcast it to the input's shape."""
    def wrapped(x):
        x = np.asarray(x, dtype=float)
        return np.broadcast_to(np.asarray(fn(x), dtype=float), x.shape)
    return wrapped


def _zero(x):
    return np.zeros_like(x)


def _one(x):
    return np.ones_like(x)


# ---------------------------------------------------------------------------------------------
# linear
def _linear():
    return Activation(
        "linear", lambda x: np.asarray(x, float), _one, _zero,
        zeros=(0.0,),
        closed={"A2": lambda q: q, "dA2": lambda q: np.ones_like(q), "D2": lambda q: np.ones_like(q),
                "PD": lambda q: q, "K": lambda q, c: q * c, "Kd": lambda q, c: np.ones_like(q * c),
                "PK": lambda q, c: q * c})


# ---------------------------------------------------------------------------------------------
# relu: arc-cosine kernel of degree 1 (Cho and Saul 2009)
def _relu_K(q, c):
    c = np.clip(c, -1.0, 1.0)
    return q / (2 * np.pi) * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c)


def _relu():
    return Activation(
        "relu", lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float), _zero,
        kinks=(0.0,), zeros=(0.0,),
        closed={"A2": lambda q: q / 2, "dA2": lambda q: np.full_like(q, 0.5),
                "D2": lambda q: np.full_like(q, 0.5), "PD": lambda q: q / 2, "K": _relu_K,
                "Kd": lambda q, c: (np.pi - np.arccos(np.clip(c, -1, 1))) / (2 * np.pi) + 0 * q,
                "PK": _relu_K})


# ---------------------------------------------------------------------------------------------
# hard tanh = clip(x, -1, 1); 1-D moments from the normal CDF, pairs by kink-aware quadrature
def _htanh_tail(q):
    t = 1 / np.sqrt(q)
    return t, ndtr(-t), np.exp(-0.5 * t * t) / _SQRT_2PI


def _htanh_PD(q):
    t, tail, pdf = _htanh_tail(q)
    return q * (1 - 2 * tail - 2 * t * pdf)  # E[x^2 1(|x| < 1)]


def _bvn(h, k, r, s):
    """Phi_2(h, k; r), standard bivariate normal CDF, for finite nonzero h, k and |r| < 1, by
    Owen's T: Phi_2 = (Phi(h) + Phi(k))/2 - T(h, a_h) - T(k, a_k) - [hk < 0]/2."""
    from scipy.special import owens_t
    return (0.5 * ndtr(h) + 0.5 * ndtr(k) - owens_t(h, (k - r * h) / (h * s))
            - owens_t(k, (h - r * k) / (k * s)) - np.where(h * k < 0, 0.5, 0.0))


def _htanh_pair(q, c):
    """K = E[clip(u1) clip(u2)] and Kd = P(|u1| < 1, |u2| < 1) of hard tanh, |c| < 1, from
    bivariate-normal rectangle moments.

    With X = u1/sqrt(q), Y = u2/sqrt(q) standard with correlation r = c and t = 1/sqrt(q), clip
    is sqrt(q) X on M = (-t, t) and -+1 on the tails L, U. Rectangle moments follow from Stein's
    identity E[X h(X, Y)] = E[h_x] + r E[h_y]: only boundary terms phi(edge) times a conditional
    normal probability (or mean) remain.
    """
    sd = np.sqrt(q)
    t, r = 1 / sd, c
    s = np.sqrt(1 - r * r)

    def pdf(x):
        return np.exp(-0.5 * x * x) / _SQRT_2PI

    def cond_p(lo, hi, x):  # P(lo < Y < hi | X = x)
        return ndtr((hi - r * x) / s) - ndtr((lo - r * x) / s)

    upper_upper = _bvn(-t, -t, r, s)                       # P(X > t, Y > t) = Phi_2(-t, -t; r)
    upper_lower = ndtr(-t) - _bvn(-t, t, r, s)            # P(X > t, Y < -t)
    mid_mid = _bvn(t, t, r, s) - 2 * _bvn(t, -t, r, s) + _bvn(-t, -t, r, s)
    # E[X; X in M, Y > t] = phi(-t) P(Y > t | X = -t) - phi(t) P(Y > t | X = t)
    #                       + r phi(t) P(-t < X < t | Y = t)
    ex_mid_up = (pdf(t) * (ndtr(-(t + r * t) / s) - ndtr(-(t - r * t) / s))
                 + r * pdf(t) * cond_p(-t, t, t))

    def m(x):  # E[Y 1(-t < Y < t) | X = x]
        al, be = (-t - r * x) / s, (t - r * x) / s
        return r * x * (ndtr(be) - ndtr(al)) + s * (pdf(al) - pdf(be))
    y_dx = pdf(t) * (m(-t) - m(t))                          # E[Y d_x 1(M x M)]
    y_dy = -t * pdf(t) * cond_p(-t, t, -t) - t * pdf(t) * cond_p(-t, t, t)  # E[Y d_y 1(M x M)]
    exy_mid = y_dx + r * (mid_mid + y_dy)
    K = q * exy_mid + 4 * sd * ex_mid_up + 2 * (upper_upper - upper_lower)
    return K, mid_mid


def _htanh_closed_pair(i):
    def fn(q, c):
        q, c = np.broadcast_arrays(np.asarray(q, float), np.asarray(c, float))
        inner = np.abs(c) < 1
        out = np.empty(q.shape)
        out[inner] = _htanh_pair(q[inner], c[inner])[i]
        # |c| = 1: u2 = +-u1 and the pair integral is 1-D (clip is odd, phi' even)
        qq = q[~inner]
        out[~inner] = (2 * _htanh_tail(qq)[1] + _htanh_PD(qq)) * np.sign(c[~inner]) if i == 0 else \
            1 - 2 * _htanh_tail(qq)[1]
        return out
    return fn


def _hard_tanh():
    return Activation(
        "hard_tanh", lambda x: np.clip(x, -1.0, 1.0), lambda x: (np.abs(x) < 1).astype(float), _zero,
        kinks=(-1.0, 1.0), zeros=(0.0,), bounded=True,
        closed={"A2": lambda q: 2 * _htanh_tail(q)[1] + _htanh_PD(q),
                "D2": lambda q: 1 - 2 * _htanh_tail(q)[1],
                # phi phi'' = -delta(x + 1) - delta(x - 1): two point masses of the N(0, q) density
                "dA2": lambda q: 1 - 2 * _htanh_tail(q)[1] - 2 * _htanh_tail(q)[2] / np.sqrt(q),
                # PK (backprop only) stays with quadrature: its rectangle-moment form cancels badly
                # for q >> 1 (relative error 6e-10 at q = 50)
                "PD": _htanh_PD, "K": _htanh_closed_pair(0), "Kd": _htanh_closed_pair(1)})


# ---------------------------------------------------------------------------------------------
# erf(a x): arcsin kernel (Williams 1997)
def erf_activation(scale=np.sqrt(np.pi) / 2):
    """phi = erf(scale x); the papers use scale = sqrt(pi)/2 so that phi'(0) = 1."""
    a = float(scale)
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"erf scale must be a positive finite number, got {scale!r}")
    a2 = a * a
    k = 2 * a / np.sqrt(np.pi)

    def K(q, c):
        return 2 / np.pi * np.arcsin(2 * a2 * q * c / (1 + 2 * a2 * q))

    def Kd(q, c):
        return 4 * a2 / np.pi / np.sqrt((1 + 2 * a2 * q) ** 2 - (2 * a2 * q * c) ** 2)

    name = "erf" if np.isclose(a, np.sqrt(np.pi) / 2, rtol=0, atol=1e-15) else f"erf(scale={a:g})"
    return Activation(
        name, lambda x: _erf(a * x), lambda x: k * np.exp(-a2 * x * x),
        lambda x: -2 * a2 * x * k * np.exp(-a2 * x * x), zeros=(0.0,), bounded=True,
        closed={"A2": lambda q: K(q, 1.0), "D2": lambda q: 4 * a2 / np.pi / np.sqrt(1 + 4 * a2 * q),
                "dA2": lambda q: 4 * a2 / (np.pi * (1 + 2 * a2 * q) * np.sqrt(1 + 4 * a2 * q)),
                "K": K, "Kd": Kd})


# ---------------------------------------------------------------------------------------------
# smooth activations without closed forms
def _sech2(x):
    """1 - tanh(x)^2 without cancellation (relative accuracy matters in the tails)."""
    e = np.abs(x)
    e *= -2.0
    np.exp(e, out=e)
    den = e + 1.0
    den *= den
    e *= 4.0
    e /= den  # 4 e^{-2|x|} / (1 + e^{-2|x|})^2, in place: this is the hot loop of tanh's Kd
    return e


def _tanh():
    return Activation("tanh", np.tanh, _sech2, lambda x: -2 * np.tanh(x) * _sech2(x),
                      zeros=(0.0,), bounded=True, strip=np.pi / 2)


def _sigmoid():
    def d1(x):
        return expit(x) * expit(-x)  # s (1 - s) without cancellation

    def d2(x):
        return d1(x) * (expit(-x) - expit(x))
    return Activation("sigmoid", expit, d1, d2, bounded=True, strip=np.pi)


def _gelu():
    def pdf(x):
        return np.exp(-0.5 * x * x) / _SQRT_2PI
    return Activation("gelu", lambda x: x * ndtr(x), lambda x: ndtr(x) + x * pdf(x),
                      lambda x: (2 - x * x) * pdf(x), zeros=(0.0,))


def _silu():
    def d1(x):
        s, t = expit(x), expit(-x)
        return s * (1 + x * t)

    def d2(x):
        s, t = expit(x), expit(-x)
        return s * t * (2 + x * (t - s))
    return Activation("silu", lambda x: x * expit(x), d1, d2, zeros=(0.0,), strip=np.pi)


_BUILTIN = {"linear": _linear, "relu": _relu, "tanh": _tanh, "hard_tanh": _hard_tanh,
            "erf": erf_activation, "sigmoid": _sigmoid, "gelu": _gelu, "silu": _silu}
_ALIASES = {"htanh": "hard_tanh", "hardtanh": "hard_tanh", "swish": "silu", "identity": "linear"}
ACTIVATIONS = tuple(_BUILTIN)
_CACHE: dict[str, Activation] = {}


def get_activation(activation, **params) -> Activation:
    """Return an :class:`Activation` from a name in ``ACTIVATIONS`` (or an Activation itself).

    ``params`` go to the constructor (``get_activation("erf", scale=1.0)``).
    """
    if isinstance(activation, Activation):
        if params:
            raise ValueError("parameters can only be given with an activation name")
        return activation
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a name or an Activation, got {type(activation).__name__}")
    key = _ALIASES.get(activation.lower(), activation.lower())
    if key not in _BUILTIN:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)} "
                         "or build one with Activation.from_sympy / Activation.from_callables")
    if params:
        return _BUILTIN[key](**params)
    if key not in _CACHE:
        _CACHE[key] = _BUILTIN[key]()
    return _CACHE[key]
