"""Independent high-precision route for the core's Gaussian integrals: scipy quad and brentq.

Nothing here uses meanfield's quadrature; activations are re-typed as plain scalar functions so a
mistake in the core's phi, phi' cannot cancel out.
"""
import math
import warnings

from scipy.integrate import IntegrationWarning, quad
from scipy.optimize import brentq

PHI = {
    "tanh": (math.tanh, lambda x: 1 / math.cosh(x) ** 2 if abs(x) < 350 else 0.0),
    "erf": (lambda x: math.erf(math.sqrt(math.pi) / 2 * x), lambda x: math.exp(-math.pi / 4 * x * x)),
    "sigmoid": (lambda x: 1 / (1 + math.exp(-x)) if x > -700 else 0.0,
                lambda x: math.exp(-abs(x)) / (1 + math.exp(-abs(x))) ** 2),
    "gelu": (lambda x: x * 0.5 * math.erfc(-x / math.sqrt(2)),
             lambda x: 0.5 * math.erfc(-x / math.sqrt(2)) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    "silu": (lambda x: x / (1 + math.exp(-x)) if x > -700 else 0.0,
             lambda x: (1 / (1 + math.exp(-x))) * (1 + x * (1 - 1 / (1 + math.exp(-x)))) if x > -700 else 0.0),
    "relu": (lambda x: max(x, 0.0), lambda x: 1.0 if x > 0 else 0.0),
    "hard_tanh": (lambda x: min(max(x, -1.0), 1.0), lambda x: 1.0 if abs(x) < 1 else 0.0),
    "linear": (lambda x: x, lambda x: 1.0),
}
KINKS = {"relu": [0.0], "hard_tanh": [-1.0, 1.0]}
OPTS = dict(epsabs=1e-15, epsrel=1e-13, limit=400)


def gauss1(fn, q, kinks=(0.0,)):
    """E[fn(sqrt(q) z)] by quad on pieces split at the kinks (in x) and at 0."""
    s = math.sqrt(q)
    pts = sorted({k / s for k in kinks} | {0.0})
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    edges = [-40.0] + [p for p in pts if -40 < p < 40] + [40.0]
    with warnings.catch_warnings():
        # at epsrel 1e-13 QUADPACK's roundoff detector can fire near machine precision; the
        # comparisons in the tests are made at 1e-10
        warnings.simplefilter("ignore", IntegrationWarning)
        return sum(quad(lambda z: fn(s * z) * pdf(z), a, b, **OPTS)[0]
                   for a, b in zip(edges[:-1], edges[1:]))


def gauss2(f, g, q, c, kinks=(0.0,)):
    """E[f(u1) g(u2)], Var u = q, corr c, by nested quad (inner conditional on u1)."""
    s = math.sqrt(q)
    sc = math.sqrt(max(1 - c * c, 0.0))
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    def inner(x1):
        m, v = c * x1, s * sc
        if v == 0:
            return g(m)
        pts = sorted({(k - m) / v for k in kinks} | {0.0})
        edges = [-40.0] + [p for p in pts if -40 < p < 40] + [40.0]
        return sum(quad(lambda z: g(m + v * z) * pdf(z), a, b, **OPTS)[0]
                   for a, b in zip(edges[:-1], edges[1:]))
    return gauss1(lambda x1: f(x1) * inner(x1), q, kinks)


def q_star(name, sw, sb, keep):
    phi = PHI[name][0]
    kinks = KINKS.get(name, [0.0])
    F = lambda q: sw / keep * gauss1(lambda x: phi(x) ** 2, q, kinks) + sb - q
    hi = sw / keep + sb + 1.0 if name in ("tanh", "erf", "sigmoid", "hard_tanh") else 1e6
    return brentq(F, sb if sb > 0 else 1e-300, hi, xtol=1e-16, rtol=1e-15)


def chi_1(name, sw, q, keep):
    dphi = PHI[name][1]
    return sw / keep * gauss1(lambda x: dphi(x) ** 2, q, KINKS.get(name, [0.0]))


def c_star(name, sw, sb, keep, q):
    phi = PHI[name][0]
    kinks = KINKS.get(name, [0.0])
    G = lambda c: (sw * gauss2(phi, phi, q, c, kinks) + sb) / q - c
    return brentq(G, 0.0, 1.0 - 1e-12 if keep == 1 else 1.0, xtol=1e-15, rtol=1e-15)


def chi_c(name, sw, q, c):
    dphi = PHI[name][1]
    return sw * gauss2(dphi, dphi, q, c, KINKS.get(name, [0.0]))
